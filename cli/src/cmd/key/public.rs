//! `sigil key public`: a key's public half, for people (summary + PEM), for tools that want a
//! PEM file (`--pem`), or for scripts (`--json`).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::error::Error;
use crate::key_ref::KeyId;
use crate::output::{self, KeyJson};

/// Show a key's public half (PEM) and what it is for.
///
/// By default prints the key id, algorithm, role, collection and backend, then the public key
/// in PEM. With --pem, prints only the PEM block, so `sigil key public KEY_ID --pem > key.pem`
/// gives a file that `sigil verify --public-key` and `openssl` accept. With --json, prints the
/// key object.
#[derive(Debug, Args)]
pub(crate) struct PublicArgs {
    /// The key's id (64 hex characters, as `sigil key list` shows it).
    #[arg(value_name = "KEY_ID")]
    pub(crate) key_id: KeyId,
    /// Print only the PEM `PUBLIC KEY` block.
    #[arg(long, conflicts_with = "json")]
    pub(crate) pem: bool,
}

impl PublicArgs {
    /// Fetches and prints the key.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut client = DaemonClient::connect(&global.socket).await?;
        let key = client.public_key(&self.key_id).await?;
        if global.json {
            output::print_json(&KeyJson::from(&key))
        } else if self.pem {
            output::print(&key.public_key.to_pem())
        } else {
            output::print(&output::key_summary(&key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::cmd::key;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<PublicArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["sigil", "key", "public"], args].concat())?;
        match cli.command {
            Command::Key(key::Command::Public(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_a_key_id_with_or_without_pem() {
        let id = "0f".repeat(32);
        let args = parse(&[&id]).expect("plain");
        assert_eq!(args.key_id.as_str(), id);
        assert!(!args.pem);
        assert!(parse(&[&id, "--pem"]).expect("pem").pem);
    }

    #[test]
    fn refuses_bad_ids_missing_ids_and_pem_with_json() {
        assert!(parse(&[]).is_err());
        let err = parse(&["abc"]).expect_err("short id");
        assert!(err.to_string().contains("64 hexadecimal"), "{err}");
        assert!(parse(&[&"0f".repeat(32), "--pem", "--json"]).is_err());
    }
}
