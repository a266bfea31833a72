//! `sigil key list`: the keys sigild lets the caller see, as a table or JSON.

use clap::Args;

use crate::cli::GlobalArgs;
use crate::cmd::key::{parse_gun, parse_role};
use crate::daemon_client::{DaemonClient, KeyFilter};
use crate::error::Error;
use crate::output::{self, KeyJson};

/// List the keys sigild lets you see.
///
/// sigild only shows keys its policy lets you use, so an empty list may mean "no keys" or
/// "none for you". Human output is a table (KEY ID, ALGORITHM, ROLE, GUN, BACKEND); with
/// --json, an array of key objects including each public key in PEM.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only keys on this backend (as named in sigild's configuration).
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
    /// Only keys for this TUF role, e.g. targets or targets/releases.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub(crate) role: Option<String>,
    /// Only keys bound to this collection, e.g. example.com/app.
    #[arg(long, value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: Option<String>,
}

impl ListArgs {
    /// Lists keys, sorted by collection, role and key id for stable output.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut client = DaemonClient::connect(&global.socket).await?;
        let filter = KeyFilter {
            backend: self.backend.clone().unwrap_or_default(),
            gun: self.gun.clone().unwrap_or_default(),
            role: self.role.clone().unwrap_or_default(),
        };
        let mut keys = client.list_keys(&filter).await?;
        keys.sort_by(|a, b| (&a.gun, &a.role, &a.key_id).cmp(&(&b.gun, &b.role, &b.key_id)));
        if global.json {
            let keys: Vec<KeyJson> = keys.iter().map(KeyJson::from).collect();
            return output::print_json(&keys);
        }
        if keys.is_empty() {
            eprintln!(
                "no keys visible to you (sigild lists only the keys its policy lets you use)"
            );
            return Ok(());
        }
        output::print(&output::key_table(&keys))
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use crate::cmd::key;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<key::list::ListArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["sigil", "key", "list"], args].concat())?;
        match cli.command {
            Command::Key(key::Command::List(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_with_and_without_filters() {
        let args = parse(&[]).expect("bare");
        assert!(args.backend.is_none() && args.role.is_none() && args.gun.is_none());
        let args = parse(&[
            "--backend",
            "hsm",
            "--role",
            "targets",
            "--gun",
            "example.com/app",
        ])
        .expect("filters");
        assert_eq!(args.backend.as_deref(), Some("hsm"));
        assert_eq!(args.role.as_deref(), Some("targets"));
        assert_eq!(args.gun.as_deref(), Some("example.com/app"));
        assert!(parse(&["--role", ""]).is_err());
        assert!(parse(&["extra"]).is_err());
    }
}
