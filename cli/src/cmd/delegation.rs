//! `sigil delegation add|list|remove|purge`: delegating parts of a collection's target namespace to
//! other keys, as `notary delegation` does. Keys are x509 certificates or bare public keys (PEM
//! files), or sigild key ids whose public halves are fetched. Edits are staged like targets and
//! published with `sigil publish` (or -p).

use std::path::Path;

use clap::{Args, Subcommand};
use serde::Serialize;
use sigil_tuf::changelist::{Change, ChangeKind, DelegationChange};
use sigil_tuf::schema::check_delegation_name;
use sigil_tuf::x509::Certificate;
use sigil_tuf::{PublicKey, TufKey};

use crate::cli::GlobalArgs;
use crate::cmd::collection::{OfflineArg, fetch_verified_for_read, publish_staged};
use crate::daemon_client::DaemonClient;
use crate::error::Error;
use crate::key_ref::KeyId;
use crate::output;
use crate::repo::{Repo, parse_gun};

/// Parses a delegation role name (`targets/NAME`).
fn parse_delegation(role: &str) -> Result<String, String> {
    check_delegation_name(role).map_err(|e| e.to_string())?;
    Ok(role.to_owned())
}

/// Delegation management. Each variant's help comes from its `Args` struct's docs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Add(AddArgs),
    List(ListArgs),
    Remove(RemoveArgs),
    Purge(PurgeArgs),
}

impl Command {
    /// Runs the chosen subcommand.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        match self {
            Self::Add(args) => args.run(global).await,
            Self::List(args) => args.run(global).await,
            Self::Remove(args) => args.run(global).await,
            Self::Purge(args) => args.run(global).await,
        }
    }
}

/// Reads one key argument: a PEM certificate (→ `ecdsa-x509` / `rsa-x509`, re-encoded as notary
/// does so key ids agree), a PEM public key (→ bare `ecdsa` / `rsa` / `ed25519`), or a sigild
/// key id (its public half, bare).
pub(crate) async fn load_key(arg: &str, global: &GlobalArgs) -> Result<TufKey, Error> {
    let path = Path::new(arg);
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            what: "delegation key",
            path: arg.to_owned(),
            source,
        })?;
        let bad = |reason: String| Error::Usage(format!("{arg}: {reason}"));
        if text.contains("-----BEGIN CERTIFICATE-----") {
            let cert = Certificate::from_pem(&text).map_err(|e| bad(e.to_string()))?;
            let pem = cert.to_pem().map_err(|e| bad(e.to_string()))?;
            return TufKey::from_certificate_pem(&pem).map_err(|e| bad(e.to_string()));
        }
        if text.contains("-----BEGIN PUBLIC KEY-----") {
            let key = PublicKey::from_pem(&text).map_err(|e| bad(e.to_string()))?;
            return Ok(TufKey::from_public_key(&key));
        }
        return Err(bad(
            "neither a PEM certificate nor a PEM public key".to_owned()
        ));
    }
    let id: KeyId = arg.parse().map_err(|e: String| {
        Error::Usage(format!(
            "{arg:?} is not a file, and not a sigild key id either ({e})"
        ))
    })?;
    let mut client = DaemonClient::connect(&global.socket).await?;
    let key = client.public_key(&id).await?;
    Ok(TufKey::from_public_key(&key.public_key))
}

/// The key ids notary shows for delegation keys: canonical ids (of the bare key).
fn canonical_ids(keys: &[TufKey]) -> Vec<String> {
    keys.iter()
        .map(|k| k.canonical_id().unwrap_or_else(|_| k.id()))
        .collect()
}

fn describe_paths(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| {
            if p.is_empty() {
                "\"\" <all paths>".to_owned()
            } else {
                p.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits `--paths a,b --paths c` into prefixes.
fn split_paths(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::to_owned)
        .collect()
}

async fn stage(
    global: &GlobalArgs,
    gun: &str,
    kind: &ChangeKind,
    message: &str,
    publish: bool,
) -> Result<(), Error> {
    let change = Change::from_kind(kind).map_err(|e| Error::tuf("staging a delegation", e))?;
    Repo::trust_dir(global)?.stage(gun, &[change])?;
    output::print_line(message)?;
    if publish {
        publish_staged(global, &Repo::open(global, gun)?).await?;
    }
    Ok(())
}

/// Delegate target paths to keys (x509 certificates, public keys or sigild key ids).
///
/// Creates ROLE (threshold 1) or adds keys and paths to it. --all-paths lets the role sign any
/// target; --paths limits it to targets starting with the given prefixes.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// The delegated role, e.g. targets/releases.
    #[arg(value_name = "ROLE", value_parser = parse_delegation)]
    pub(crate) role: String,
    /// PEM certificate or public key files, or sigild key ids.
    #[arg(value_name = "CERT_OR_KEY")]
    pub(crate) keys: Vec<String>,
    /// The role may sign every target path.
    #[arg(long, conflicts_with = "paths")]
    pub(crate) all_paths: bool,
    /// Target path prefixes the role may sign (comma separated, repeatable).
    #[arg(long, value_name = "P,...")]
    pub(crate) paths: Vec<String>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub(crate) publish: bool,
}

impl AddArgs {
    /// Stages the delegation.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        if self.keys.is_empty() && self.paths.is_empty() && !self.all_paths {
            return Err(Error::Usage(
                "give keys (CERT_OR_KEY...) and/or paths (--all-paths, --paths)".into(),
            ));
        }
        let mut keys = Vec::new();
        for arg in &self.keys {
            keys.push(load_key(arg, global).await?);
        }
        let paths = if self.all_paths {
            vec![String::new()]
        } else {
            split_paths(&self.paths)
        };
        if paths.is_empty() {
            eprintln!(
                "note: {} has no paths yet, so it cannot sign any target; add --all-paths or \
                 --paths",
                self.role
            );
        }
        let message = format!(
            "Addition of delegation role {} with keys [{}], with paths [{}], to repository \
             {:?} staged for next publish.",
            self.role,
            canonical_ids(&keys).join(" "),
            describe_paths(&paths),
            self.gun
        );
        let kind = ChangeKind::CreateDelegation {
            role: self.role.clone(),
            change: DelegationChange {
                threshold: 1,
                add_keys: keys,
                add_paths: paths,
                ..Default::default()
            },
        };
        stage(global, &self.gun, &kind, &message, self.publish).await
    }
}

/// Remove a delegation, or some of its keys or paths.
///
/// Without KEY_IDs or path flags the whole role (and everything delegated under it) goes.
/// KEY_IDs are the ids `delegation list` shows (canonical) or the metadata's own.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// The delegated role.
    #[arg(value_name = "ROLE", value_parser = parse_delegation)]
    pub(crate) role: String,
    /// Keys to remove from the role.
    #[arg(value_name = "KEY_ID")]
    pub(crate) key_ids: Vec<String>,
    /// Remove every path from the role.
    #[arg(long, conflicts_with = "paths")]
    pub(crate) all_paths: bool,
    /// Path prefixes to remove (comma separated, repeatable).
    #[arg(long, value_name = "P,...")]
    pub(crate) paths: Vec<String>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub(crate) publish: bool,
}

impl RemoveArgs {
    /// Stages the removal.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let whole = self.key_ids.is_empty() && self.paths.is_empty() && !self.all_paths;
        let (kind, message) = if whole {
            (
                ChangeKind::DeleteDelegation {
                    role: self.role.clone(),
                },
                format!(
                    "Removal of delegation role {} from repository {:?} staged for next publish.",
                    self.role, self.gun
                ),
            )
        } else {
            (
                ChangeKind::UpdateDelegation {
                    role: self.role.clone(),
                    change: DelegationChange {
                        remove_keys: self
                            .key_ids
                            .iter()
                            .map(|k| k.to_ascii_lowercase())
                            .collect(),
                        remove_paths: split_paths(&self.paths),
                        clear_paths: self.all_paths,
                        ..Default::default()
                    },
                },
                format!(
                    "Removal of keys [{}] and paths [{}] from delegation role {} of repository \
                     {:?} staged for next publish.",
                    self.key_ids.join(" "),
                    if self.all_paths {
                        "all".to_owned()
                    } else {
                        split_paths(&self.paths).join(",")
                    },
                    self.role,
                    self.gun
                ),
            )
        };
        stage(global, &self.gun, &kind, &message, self.publish).await
    }
}

/// Remove keys from every delegation of a collection (as `notary delegation purge`).
///
/// For a compromised or retired key: every delegation under `targets` loses it at the next
/// publish; a delegation left without keys can no longer sign anything. KEY_IDs are the ids
/// `delegation list` shows (canonical) or the metadata's own.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// A key to remove (repeatable).
    #[arg(long = "key", value_name = "KEY_ID", required = true)]
    pub(crate) keys: Vec<String>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub(crate) publish: bool,
}

impl PurgeArgs {
    /// Stages the purge.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut keys = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Usage(format!("--key {key:?} is not a key id (hex)")));
            }
            keys.push(key.to_ascii_lowercase());
        }
        let message = format!(
            "Removal of keys [{}] from every delegation of repository {:?} staged for next \
             publish.",
            keys.join(" "),
            self.gun
        );
        let kind = ChangeKind::PurgeDelegationKeys {
            scope: "targets/*".into(),
            remove_keys: keys,
        };
        stage(global, &self.gun, &kind, &message, self.publish).await
    }
}

/// A delegation as `--json` prints it.
#[derive(Debug, Serialize)]
struct DelegationJson {
    role: String,
    paths: Vec<String>,
    /// Canonical key ids (of the bare keys), as `notary delegation list` shows them.
    key_ids: Vec<String>,
    /// The key ids as the metadata lists them (x509 keys hash their certificate).
    tuf_key_ids: Vec<String>,
    threshold: u64,
}

/// List the delegations of a collection, verified.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    #[command(flatten)]
    pub(crate) offline: OfflineArg,
}

impl ListArgs {
    /// Lists.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = Repo::open(global, &self.gun)?;
        let verified = fetch_verified_for_read(&repo, self.offline.offline).await?;
        let mut out = Vec::new();
        for role in verified.walk("targets") {
            let Some(m) = verified.targets_role(role) else {
                continue;
            };
            for d in m.body().delegated_roles() {
                let keys: Vec<TufKey> = m
                    .body()
                    .delegation(&d.name)
                    .map(|(_, keys)| keys.into_iter().map(|(_, k)| k.clone()).collect())
                    .unwrap_or_default();
                out.push(DelegationJson {
                    role: d.name.clone(),
                    paths: d.paths().to_vec(),
                    key_ids: canonical_ids(&keys),
                    tuf_key_ids: d.keyids.clone(),
                    threshold: d.threshold,
                });
            }
        }
        if global.json {
            return output::print_json(&out);
        }
        if out.is_empty() {
            eprintln!("No delegations present in this repository.");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = out
            .iter()
            .map(|d| {
                vec![
                    d.role.clone(),
                    describe_paths(&d.paths),
                    d.key_ids.join(","),
                    d.threshold.to_string(),
                ]
            })
            .collect();
        output::print(&format!(
            "\n{}",
            output::notary_table(&["ROLE", "PATHS", "KEY IDS", "THRESHOLD"], &rows)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as Top};
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        match Cli::try_parse_from([&["sigil", "delegation"], args].concat())?.command {
            Top::Delegation(c) => Ok(c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_and_remove_parse_notarys_shapes() {
        match parse(&[
            "add",
            "g/x",
            "targets/releases",
            "a.crt",
            "b.pem",
            "--paths",
            "rel/,beta/",
            "-p",
        ])
        .expect("add")
        {
            Command::Add(a) => {
                assert_eq!(a.keys, ["a.crt", "b.pem"]);
                assert_eq!(split_paths(&a.paths), ["rel/", "beta/"]);
                assert!(a.publish && !a.all_paths);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&[
                "add",
                "g/x",
                "targets/r",
                "k",
                "--all-paths",
                "--paths",
                "x"
            ])
            .is_err()
        );
        assert!(parse(&["add", "g/x", "releases", "k"]).is_err());
        assert!(parse(&["add", "g/x", "targets", "k"]).is_err());
        match parse(&["remove", "g/x", "targets/releases"]).expect("remove") {
            Command::Remove(r) => assert!(r.key_ids.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["list", "g/x"]).is_ok());
    }

    #[test]
    fn paths_are_described_as_notary_does() {
        assert_eq!(describe_paths(&[String::new()]), "\"\" <all paths>");
        assert_eq!(describe_paths(&["a/".into(), "b".into()]), "a/,b");
    }

    #[tokio::test]
    async fn key_files_become_tuf_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let pem = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEckdkDnUY0D5EAvhMCjAVFq/gJagl
njzqZfzl7SVdD1sqaYi5gmv4qDkbnCGJshESyRaeooNGYOwsIqFUeOIjPw==
-----END PUBLIC KEY-----
";
        let path = dir.path().join("k.pem");
        std::fs::write(&path, pem).expect("write");
        let global = Cli::try_parse_from(["sigil", "status", "g/x"])
            .expect("parse")
            .global;
        let key = load_key(path.to_str().expect("utf8"), &global)
            .await
            .expect("key");
        assert_eq!(key.keytype.as_str(), "ecdsa");
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "hello").expect("write");
        assert!(
            load_key(junk.to_str().expect("utf8"), &global)
                .await
                .is_err()
        );
        let err = load_key("not-a-file-nor-id", &global)
            .await
            .expect_err("neither");
        assert!(err.to_string().contains("not a file"), "{err}");
    }
}
