//! `sigil key rotate GUN ROLE [-r]`: replaces a collection's root, targets or snapshot key with
//! a new key on a token (or one named with --key), or hands snapshot/timestamp to the server
//! (`-r`, a new server-managed key). The new root is signed by the old root keys and the new
//! ones, as notary requires, and published at once, like `notary key rotate`; staged changes
//! stay staged.

use std::time::SystemTime;

use clap::Args;
use sigil_tuf::x509::{ROOT_CERT_LIFETIME, build_root_certificate};
use sigil_tuf::{RoleType, TufKey};

use crate::cli::GlobalArgs;
use crate::cmd::collection::fetch_verified;
use crate::daemon_client::DaemonClient;
use crate::daemon_signer::{DaemonSigner, generate_key, visible_signers};
use crate::error::Error;
use crate::key_ref::KeyId;
use crate::output;
use crate::repo::{Repo, parse_gun};

fn parse_role(role: &str) -> Result<RoleType, String> {
    role.parse::<RoleType>().map_err(|e| e.to_string())
}

/// Rotate a collection's key and publish the new root.
///
/// root, targets and snapshot get a new key generated on the token (or the sigild key given
/// with --key); a new root key gets a certificate for the GUN signed on the token. With -r, the
/// server makes a new key and manages the role (snapshot or timestamp; timestamp is always
/// server-managed).
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// root, targets, snapshot or timestamp.
    #[arg(value_name = "ROLE", value_parser = parse_role)]
    pub(crate) role: RoleType,
    /// Let the server hold the new key (snapshot or timestamp).
    #[arg(short = 'r', long)]
    pub(crate) server_managed: bool,
    /// Use this existing sigild key instead of generating one.
    #[arg(long, value_name = "KEY_ID", conflicts_with = "server_managed")]
    pub(crate) key: Option<KeyId>,
    /// Backend to generate the new key on.
    #[arg(long, value_name = "NAME", conflicts_with = "key")]
    pub(crate) backend: Option<String>,
}

impl RotateArgs {
    /// Rotates and publishes.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let role = self.role;
        let gun = &self.gun;
        match (role, self.server_managed) {
            (RoleType::Timestamp, false) => {
                return Err(Error::Usage(
                    "the timestamp key is always held by the server: use -r".into(),
                ));
            }
            (RoleType::Root | RoleType::Targets, true) => {
                return Err(Error::Usage(format!(
                    "only snapshot and timestamp keys can be server-managed, not {role}"
                )));
            }
            _ => {}
        }
        let repo = Repo::open(global, gun)?;
        let verified = fetch_verified(&repo).await?;
        let daemon = DaemonClient::connect(&global.socket).await?;
        let new_key = if self.server_managed {
            repo.server.rotate_server_key(gun, role.as_str()).await?
        } else {
            let key = match &self.key {
                Some(id) => daemon.clone().public_key(id).await?,
                None => generate_key(&daemon, gun, role.as_str(), self.backend.as_deref()).await?,
            };
            if role == RoleType::Root {
                let signer = DaemonSigner::new(&daemon, key)?;
                let cert =
                    build_root_certificate(gun, &signer, SystemTime::now(), ROOT_CERT_LIFETIME)
                        .await
                        .map_err(|e| {
                            Error::tuf(format!("making the new root certificate of {gun}"), e)
                        })?;
                let pem = cert
                    .to_pem()
                    .map_err(|e| Error::tuf("encoding the root certificate", e))?;
                TufKey::from_certificate_pem(&pem)
                    .map_err(|e| Error::tuf("the new root certificate", e))?
            } else {
                TufKey::from_public_key(&key.public_key)
            }
        };
        let mut editor = repo.editor(Some(&verified))?;
        editor
            .rotate_keys(role, std::slice::from_ref(&new_key))
            .map_err(|e| Error::tuf(format!("rotating the {role} key of {gun}"), e))?;
        let signers = visible_signers(&daemon).await?;
        let signed = repo.sign(editor, &signers).await?;
        repo.upload(&signed).await?;
        eprintln!(
            "new {role} key {} ({}); published {}",
            new_key.canonical_id().unwrap_or_else(|_| new_key.id()),
            if self.server_managed {
                "held by the server"
            } else {
                "on the token"
            },
            signed
                .updates()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        output::print_line(&format!(
            "Successfully rotated {role} key for repository {gun}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::cmd::key;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<RotateArgs, clap::Error> {
        match Cli::try_parse_from([&["sigil", "key", "rotate"], args].concat())?.command {
            Command::Key(key::Command::Rotate(a)) => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rotate_parses_roles_and_server_management() {
        let a = parse(&["g/x", "snapshot", "-r"]).expect("snapshot -r");
        assert_eq!(a.role, RoleType::Snapshot);
        assert!(a.server_managed);
        let a = parse(&["g/x", "timestamp", "--server-managed"]).expect("timestamp");
        assert_eq!(a.role, RoleType::Timestamp);
        let a = parse(&["g/x", "root"]).expect("root");
        assert!(!a.server_managed && a.key.is_none());
        assert!(parse(&["g/x", "targets/releases"]).is_err());
        assert!(parse(&["g/x", "snapshot", "-r", "--key", &"ab".repeat(32)]).is_err());
    }
}
