//! `sigil key remove`: deletes a key from its token. Irreversible, so it shows the key and asks
//! on the terminal first, unless `--yes`; with no terminal and no `--yes` it refuses.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, IsTerminal as _, Write};

use clap::Args;

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::error::Error;
use crate::key_ref::KeyId;
use crate::output::{self, KeyJson};

/// Delete a key from its token, irreversibly.
///
/// Shows the key and asks for confirmation on the terminal; signatures it made stay valid but
/// nothing can ever sign with it again. In scripts (no terminal), pass --yes. Prints what was
/// removed (with --json, the removed key's object).
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The key's id (64 hex characters, as `sigil key list` shows it).
    #[arg(value_name = "KEY_ID")]
    pub(crate) key_id: KeyId,
    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

impl RemoveArgs {
    /// Looks the key up, confirms, deletes, reports.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut client = DaemonClient::connect(&global.socket).await?;
        let key = client.public_key(&self.key_id).await?;
        let description = format!("key {} ({})", key.key_id, output::describe_key(&key));
        if !self.yes {
            let prompt =
                format!("Remove {description}? This cannot be undone. Type 'yes' to confirm: ");
            if !ask_on_terminal(&prompt, &self.key_id)? {
                return Err(Error::NotConfirmed {
                    key_id: self.key_id.to_string(),
                });
            }
        }
        client.delete_key(&self.key_id).await?;
        if global.json {
            output::print_json(&KeyJson::from(&key))
        } else {
            output::print_line(&format!("removed {description}"))
        }
    }
}

/// Asks on stdin if it is a terminal, else on /dev/tty; refuses when there is no terminal.
fn ask_on_terminal(prompt: &str, key_id: &KeyId) -> Result<bool, Error> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return confirm(prompt, &mut stdin.lock(), &mut io::stderr()).map_err(Error::Prompt);
    }
    match OpenOptions::new().read(true).write(true).open("/dev/tty") {
        Ok(tty) => {
            let mut reader = BufReader::new(tty.try_clone().map_err(Error::Prompt)?);
            let mut writer = tty;
            confirm(prompt, &mut reader, &mut writer).map_err(Error::Prompt)
        }
        Err(_) => Err(Error::Usage(format!(
            "refusing to remove key {key_id} without confirmation: there is no terminal to ask \
             on; pass --yes to remove it"
        ))),
    }
}

/// Writes `prompt` and reads one line; only `yes` (any case) confirms, since a stray `y` is
/// too easy for something irreversible. End of input is a no.
fn confirm(prompt: &str, input: &mut impl BufRead, output: &mut impl Write) -> io::Result<bool> {
    output.write_all(prompt.as_bytes())?;
    output.flush()?;
    let mut answer = String::new();
    if input.read_line(&mut answer)? == 0 {
        writeln!(output)?;
        return Ok(false);
    }
    let answer = answer.trim();
    Ok(answer.eq_ignore_ascii_case("yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::cmd::key;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<RemoveArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["sigil", "key", "remove"], args].concat())?;
        match cli.command {
            Command::Key(key::Command::Remove(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_key_id_and_yes() {
        let id = "aa".repeat(32);
        assert!(!parse(&[&id]).expect("plain").yes);
        assert!(parse(&[&id, "--yes"]).expect("long").yes);
        assert!(parse(&["-y", &id]).expect("short").yes);
        assert!(parse(&[]).is_err());
        assert!(parse(&["not-a-key"]).is_err());
    }

    #[test]
    fn only_yes_confirms() {
        for (answer, expected) in [
            ("yes\n", true),
            ("y\n", false),
            ("  YES  \r\n", true),
            ("no\n", false),
            ("\n", false),
            ("yess\n", false),
            ("", false),
        ] {
            let mut output = Vec::new();
            let got = confirm("Remove? ", &mut answer.as_bytes(), &mut output).expect("io");
            assert_eq!(got, expected, "{answer:?}");
            assert!(output.starts_with(b"Remove? "));
        }
    }
}
