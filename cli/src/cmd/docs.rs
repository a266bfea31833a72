//! `sigil completions SHELL` and `sigil manpages DIR` (what `make man` runs): both are
//! generated from the same clap command tree that parses the arguments, so they cannot drift
//! from what the binary accepts.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::Error;
use crate::output;

/// Print a shell completion script for sigil to standard output.
///
/// Load it for the current shell or install it where the shell looks for completions:
///
///   bash: sigil completions bash > /usr/share/bash-completion/completions/sigil
///
///   zsh:  sigil completions zsh > /usr/share/zsh/vendor-completions/_sigil
///
///   fish: sigil completions fish > /usr/share/fish/vendor_completions.d/sigil.fish
///
/// or, for one session, `source <(sigil completions bash)`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

impl CompletionsArgs {
    pub(crate) async fn run(&self) -> Result<(), Error> {
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "sigil", &mut script);
        let script = String::from_utf8(script)
            .map_err(|e| Error::Internal(format!("completion script is not UTF-8: {e}")))?;
        output::print(&script)
    }
}

/// Write sigil's man pages into DIR: sigil.1 and one page per command (sigil-tuf-publish.1 ...).
///
/// For packaging: `make man` writes them to target/man/man1; install them under
/// /usr/share/man/man1 (or /usr/local/share/man/man1).
#[derive(Debug, Args)]
pub(crate) struct ManpagesArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

impl ManpagesArgs {
    pub(crate) async fn run(&self) -> Result<(), Error> {
        write_man_pages(&self.dir)?;
        output::print_line(&format!("man pages written to {}", self.dir.display()))
    }
}

/// Renders the whole command tree, one page per visible command, named like `sigil-tuf-init.1`.
fn write_man_pages(dir: &Path) -> Result<(), Error> {
    let failed = |source| Error::Write {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut root = Cli::command().disable_help_subcommand(true);
    // Building sets each subcommand's display name ("sigil-tuf-init"), the page's name.
    root.build();
    let mut pending = vec![root];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
        let path = dir.join(clap_mangen::Man::new(cmd.clone()).get_filename());
        let page = render_page(cmd).map_err(failed)?;
        std::fs::write(&path, page).map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

/// clap_mangen's page, except that the text after the options (our `after_help`: "Examples:",
/// "Exit codes:") gets its own heading and keeps its lines, where clap_mangen would reflow it
/// under "EXTRA" and run the example commands together.
fn render_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let after = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|text| text.to_string());
    let cmd = cmd.after_help(None::<&str>).after_long_help(None::<&str>);
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(concat!("sigil ", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    if let Some(after) = after {
        let mut lines = after.lines();
        let heading = match lines.next().unwrap_or_default().trim_end_matches(':') {
            "Exit codes" => "EXIT STATUS".to_owned(),
            other => other.to_uppercase(),
        };
        let mut roff = clap_mangen::roff::Roff::new();
        roff.control("SH", [heading.as_str()]).control("nf", []);
        for line in lines {
            roff.text([clap_mangen::roff::roman(line)]);
        }
        roff.control("fi", []);
        page.extend_from_slice(roff.to_roff().as_bytes());
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_gets_a_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_man_pages(dir.path()).expect("man pages");
        for page in [
            "sigil.1",
            "sigil-tuf-publish.1",
            "sigil-key-generate.1",
            "sigil-manpages.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
            assert!(
                text.starts_with(".ie \\n(.g .ds Aq"),
                "{page} is not roff:\n{text}"
            );
        }
        assert!(!dir.path().join("sigil-help.1").exists());
        let top = std::fs::read_to_string(dir.path().join("sigil.1")).expect("sigil.1");
        assert!(
            top.contains("SIGIL_SOCKET"),
            "the socket's variable is documented"
        );
        assert!(
            top.contains(".SH \"EXIT STATUS\"\n.nf\n"),
            "exit codes keep their lines:\n{top}"
        );
        assert!(!top.contains("EXTRA"));
        let sign = std::fs::read_to_string(dir.path().join("sigil-sign.1")).expect("sign page");
        assert!(sign.contains(".SH EXAMPLES\n.nf\n"), "{sign}");
    }
}
