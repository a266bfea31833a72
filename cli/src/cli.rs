//! The command line's shape: global flags and the command tree. Each command's own arguments
//! live next to its `run()` in `cmd/`; this file only assembles them.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::cmd::{audit, collection, delegation, docs, key, sign, token, tuf, verify};
use crate::error::EXIT_CODES_HELP;

/// Default socket of a system-wide sigild.
pub(crate) const DEFAULT_SOCKET: &str = "/run/sigil/sigild.sock";

/// Heading of the flags every command accepts.
const GLOBAL: &str = "Global options";

/// sigil: use signing keys held on hardware tokens by sigild, without ever reading them.
///
/// Keys are generated on a PKCS#11 token or YubiKey and stay there; sigild signs with them on
/// behalf of callers its policy allows. This command talks to sigild over its Unix socket to
/// list, generate and remove keys and to sign files. Signatures are verified locally, so
/// `sigil verify --public-key` needs neither sigild nor a token.
///
/// It also runs Notary trusted collections (Docker Content Trust) with the notary client's
/// verbs: init, add, addhash, remove, publish, list, lookup, verify, status, reset, key rotate,
/// delegation. The notary server is -s URL (default https://notary-server:4443, as notary), its
/// CA --tlscacert, the trust dir -d (default ~/.sigil/trust); a notary-style config.json (-c,
/// default ~/.sigil/config.json) may set them. The trust dir never holds a private key.
#[derive(Debug, Parser)]
#[command(name = "sigil", version, after_help = EXIT_CODES_HELP)]
pub(crate) struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags accepted before or after any command.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// Path of sigild's Unix socket.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "SIGIL_SOCKET",
        value_name = "PATH",
        default_value = DEFAULT_SOCKET
    )]
    pub(crate) socket: PathBuf,

    /// Print results as JSON on stdout, for scripts (errors still go to stderr).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) json: bool,

    /// Log more to stderr: -v for info, -vv for debug, -vvv for trace (default: warnings).
    #[arg(short, long, global = true, help_heading = GLOBAL, action = ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Notary server URL for trusted collections [default: https://notary-server:4443].
    #[arg(short = 's', long, global = true, help_heading = GLOBAL, value_name = "URL")]
    pub(crate) server: Option<String>,

    /// CA certificate (PEM) to trust for the notary server instead of the system roots.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "CA_FILE")]
    pub(crate) tlscacert: Option<PathBuf>,

    /// Trust dir for collection metadata and staged changes [default: ~/.sigil/trust].
    #[arg(short = 'd', long, global = true, help_heading = GLOBAL, value_name = "DIR")]
    pub(crate) trust_dir: Option<PathBuf>,

    /// Config file in notary's config.json format [default: ~/.sigil/config.json if present].
    #[arg(short = 'c', long, global = true, help_heading = GLOBAL, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// The top-level commands. A command's help comes from its `Args` struct's docs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List, generate, show, remove, rotate and attest keys held by sigild.
    #[command(subcommand)]
    Key(key::Command),
    /// Administer the tokens behind sigild (unlock a YubiKey with its PIN).
    #[command(subcommand)]
    Token(token::Command),
    Sign(sign::SignArgs),
    Verify(verify::VerifyArgs),
    Init(collection::InitArgs),
    Add(collection::AddArgs),
    Addhash(collection::AddhashArgs),
    Remove(collection::RemoveArgs),
    List(collection::ListArgs),
    Lookup(collection::LookupArgs),
    Status(collection::StatusArgs),
    Reset(collection::ResetArgs),
    Publish(collection::PublishArgs),
    Delete(collection::DeleteArgs),
    /// Add, list and remove delegations of a trusted collection.
    #[command(subcommand)]
    Delegation(delegation::Command),
    /// Check sigild's audit log (its hash chain), offline.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Make and maintain TUF 1.0 repositories (static files any web server serves).
    #[command(subcommand)]
    Tuf(tuf::Command),
    Completions(docs::CompletionsArgs),
    Manpages(docs::ManpagesArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_command() {
        let cli = Cli::try_parse_from(["sigil", "--json", "-vv", "key", "list"]).expect("parse");
        assert!(cli.global.json);
        assert_eq!(cli.global.verbose, 2);
        let cli = Cli::try_parse_from(["sigil", "key", "list", "--socket", "/tmp/s.sock", "-v"])
            .expect("parse");
        assert_eq!(cli.global.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(cli.global.verbose, 1);
        assert!(!cli.global.json);
    }

    #[test]
    fn socket_defaults_to_the_system_path() {
        // SIGIL_SOCKET may be set in the developer's shell; only check when it is not.
        if std::env::var_os("SIGIL_SOCKET").is_none() {
            let cli = Cli::try_parse_from(["sigil", "key", "list"]).expect("parse");
            assert_eq!(cli.global.socket, PathBuf::from(DEFAULT_SOCKET));
        }
    }

    #[test]
    fn help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for line in [
            "3  not found: key",
            "4  permission denied",
            "5  unavailable: cannot connect to sigild",
        ] {
            assert!(help.contains(line), "{line:?} missing from:\n{help}");
        }
    }

    #[test]
    fn a_missing_command_is_a_usage_error() {
        let err = Cli::try_parse_from(["sigil"]).expect_err("no command");
        assert_eq!(err.exit_code(), 2);
    }
}
