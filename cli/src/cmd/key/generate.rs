//! `sigil key generate`: asks sigild to create a key on a token. The key id goes alone to stdout
//! so that `KEY=$(sigil key generate …)` works; the description goes to stderr.

use clap::Args;
use tracing::warn;

use crate::cli::GlobalArgs;
use crate::cmd::key::{AlgorithmArg, is_tuf_role, parse_gun, parse_role};
use crate::daemon_client::{DaemonClient, NewKey};
use crate::error::Error;
use crate::output::{self, KeyJson};

/// Generate a new key on a token; prints its key id.
///
/// The private key is created on the token (never imported, never exported) and tagged with its
/// role and collection, so sigild's policy can decide who may use it. Stdout gets only the new
/// key id, so `KEY=$(sigil key generate --role targets --gun example.com/app)` works; a
/// description goes to stderr. With --json, stdout gets the key object instead.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Backend (token) to generate on, as named in sigild's configuration; may be left out when
    /// sigild has only one backend.
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
    /// TUF role the key will serve: root, targets, snapshot, timestamp or a delegation such as
    /// targets/releases.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub(crate) role: String,
    /// Collection (GUN) the key belongs to, e.g. example.com/app; leave out for none.
    #[arg(long, value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: Option<String>,
    /// Key algorithm.
    #[arg(
        long,
        value_enum,
        value_name = "ALGORITHM",
        default_value = "ecdsa-p256"
    )]
    pub(crate) algorithm: AlgorithmArg,
}

impl GenerateArgs {
    /// Generates the key and reports it.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        if !is_tuf_role(&self.role) {
            warn!(
                "role {:?} is not a TUF role (root, targets, snapshot, timestamp or targets/NAME); \
                 trusted collections will not use this key",
                self.role
            );
        }
        let new = NewKey {
            backend: self.backend.clone().unwrap_or_default(),
            role: self.role.clone(),
            gun: self.gun.clone().unwrap_or_default(),
            algorithm: self.algorithm.0,
        };
        let mut client = DaemonClient::connect(&global.socket).await?;
        let key = client.generate_key(&new).await?;
        if key.algorithm() != new.algorithm {
            return Err(Error::BadDaemonKey {
                key_id: key.key_id.clone(),
                reason: format!("asked for {} but got {}", new.algorithm, key.algorithm()),
            });
        }
        if global.json {
            return output::print_json(&KeyJson::from(&key));
        }
        eprintln!("generated {}", output::describe_key(&key));
        output::print_line(&key.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::cmd::key;
    use clap::Parser as _;
    use sigil_tuf::Algorithm;

    fn parse(args: &[&str]) -> Result<GenerateArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["sigil", "key", "generate"], args].concat())?;
        match cli.command {
            Command::Key(key::Command::Generate(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_to_ecdsa_and_no_backend_or_gun() {
        let args = parse(&["--role", "targets"]).expect("minimal");
        assert_eq!(args.algorithm.0, Algorithm::EcdsaP256);
        assert_eq!(args.backend, None);
        assert_eq!(args.gun, None);
    }

    #[test]
    fn parses_every_option_and_algorithm() {
        for (name, algorithm) in [
            ("ecdsa-p256", Algorithm::EcdsaP256),
            ("ed25519", Algorithm::Ed25519),
            ("rsa-3072", Algorithm::Rsa3072Pss),
        ] {
            let args = parse(&[
                "--backend",
                "hsm",
                "--role",
                "targets/releases",
                "--gun",
                "example.com/app",
                "--algorithm",
                name,
            ])
            .expect("full");
            assert_eq!(args.algorithm.0, algorithm);
            assert_eq!(args.backend.as_deref(), Some("hsm"));
            assert_eq!(args.role, "targets/releases");
            assert_eq!(args.gun.as_deref(), Some("example.com/app"));
        }
    }

    #[test]
    fn refuses_missing_or_empty_role_bad_gun_and_unknown_algorithm() {
        assert!(parse(&[]).is_err());
        let err = parse(&["--role", ""]).expect_err("empty role");
        assert!(err.to_string().contains("role must not be empty"), "{err}");
        assert!(parse(&["--role", "targets", "--gun", "example.com/*"]).is_err());
        assert!(parse(&["--role", "targets", "--algorithm", "dsa"]).is_err());
        assert_eq!(
            parse(&["--role", ""]).expect_err("usage").exit_code(),
            i32::from(crate::error::exit::USAGE)
        );
    }
}
