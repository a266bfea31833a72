//! `sigil token …`: administering the tokens behind sigild. Today: supplying a YubiKey's PIN
//! at run time (`unlock`), for backends configured without `pin_file`.

use std::io::Write as _;
use std::os::fd::AsFd as _;

use clap::{Args, Subcommand};
use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::error::Error;
use crate::output;

/// Token administration through sigild.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Unlock(UnlockArgs),
}

impl Command {
    /// Runs the chosen subcommand.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        match self {
            Self::Unlock(args) => args.run(global).await,
        }
    }
}

/// Supply a token's PIN to sigild (YubiKey backends without pin_file).
///
/// Prompts for the PIN on the terminal without echo (or reads one line from standard input
/// with --pin-stdin) and sends it to sigild, which reads the PIN tries left first, refuses to
/// spend the last one, and verifies the PIN once on the device. A wrong PIN is reported with
/// the tries left and is never retried. The PIN is then kept in sigild's memory (wiped on
/// exit) until it stops; signatures fail with FAILED_PRECONDITION until the token is unlocked.
/// Needs a policy rule with "unlock" in allow and the backend in its tokens.
#[derive(Debug, Args)]
pub(crate) struct UnlockArgs {
    /// The backend's name in sigild's configuration.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Read the PIN from the first line of standard input instead of prompting.
    #[arg(long)]
    pub(crate) pin_stdin: bool,
}

impl UnlockArgs {
    /// Reads the PIN and sends it.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let pin = if self.pin_stdin {
            read_pin_line(&mut std::io::stdin().lock()).map_err(|source| Error::Read {
                what: "PIN",
                path: "standard input".into(),
                source,
            })?
        } else {
            prompt_pin(&format!("PIN for token {}: ", self.name))?
        };
        if pin.is_empty() {
            return Err(Error::Usage("no PIN given".into()));
        }
        let mut client = DaemonClient::connect(&global.socket).await?;
        let before = client.unlock(&self.name, pin).await?;
        if global.json {
            output::print_json(&serde_json::json!({
                "token": self.name,
                "unlocked": true,
                "pin_tries_before": before,
            }))
        } else {
            eprintln!("token {} unlocked", self.name);
            Ok(())
        }
    }
}

/// One line, without its line ending, in memory that is wiped when dropped.
fn read_pin_line(input: &mut impl std::io::BufRead) -> std::io::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    input.read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// Prompts on the controlling terminal with echo off, restoring the terminal afterwards.
fn prompt_pin(prompt: &str) -> Result<Zeroizing<String>, Error> {
    let no_tty = |source| Error::Read {
        what: "PIN (no terminal to prompt on: use --pin-stdin)",
        path: "/dev/tty".into(),
        source,
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(no_tty)?;
    let saved = termios::tcgetattr(tty.as_fd()).map_err(|e| no_tty(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &quiet).map_err(|e| no_tty(e.into()))?;
    let result = (|| {
        let mut out = &tty;
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
        read_pin_line(&mut std::io::BufReader::new(&tty))
    })();
    let restored = termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &saved);
    let pin = result.map_err(no_tty)?;
    restored.map_err(|e| no_tty(e.into()))?;
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as Top};
    use clap::Parser as _;

    #[test]
    fn parses_name_and_pin_stdin() {
        let cli =
            Cli::try_parse_from(["sigil", "token", "unlock", "yk", "--pin-stdin"]).expect("parse");
        match cli.command {
            Top::Token(Command::Unlock(args)) => {
                assert_eq!(args.name, "yk");
                assert!(args.pin_stdin);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["sigil", "token", "unlock"]).is_err());
    }

    #[test]
    fn a_pin_line_loses_only_its_line_ending() {
        let mut input = std::io::Cursor::new(b"123456\r\nrest".to_vec());
        assert_eq!(read_pin_line(&mut input).expect("read").as_str(), "123456");
        let mut input = std::io::Cursor::new(b" 12 34 ".to_vec());
        assert_eq!(read_pin_line(&mut input).expect("read").as_str(), " 12 34 ");
    }
}
