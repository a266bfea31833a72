//! `sigil tuf import-notary`: a Notary trusted collection moved to a new TUF 1.0 repository,
//! signed by the same token keys. The collection is read through the verified walk (as `sigil
//! list` reads it), the keys of every role are matched to sigild's keys by public key, and
//! nothing is written before every check has passed.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;
use serde_json::json;
use sigil_tuf::repository::{ImportedKeys, Layout, NotaryImport, PathRule, Repository};
use sigil_tuf::schema::tuf1::Key;

use super::keys::{as_signers, connect, online_signers};
use crate::cli::GlobalArgs;
use crate::cmd::collection::fetch_verified;
use crate::daemon_client::{DaemonClient, KeyInfo};
use crate::daemon_signer::{DaemonSigner, generate_key, visible_signers};
use crate::error::Error;
use crate::key_ref::KeyId;
use crate::output::{print_json, print_line};
use crate::repo::{Repo, parse_gun};

/// Make a TUF 1.0 repository in REPO from the Notary trusted collection GUN.
///
/// The collection is fetched from the notary server (-s, --tlscacert, -d as for `sigil list`)
/// and verified; only verified metadata is used. REPO gets the same targets (names, lengths,
/// every hash, custom data) and delegations, signed by the same keys: the root key (the public
/// key inside Notary's root certificate), the targets key and each delegation's keys, found in
/// sigild by public key (TUF 1.0 gives them new key ids). Notary's snapshot and timestamp keys
/// belong to notary-server, so REPO gets its own: --snapshot-key and --timestamp-key, or new
/// keys generated on the token (role snapshot / timestamp, the GUN; --backend picks where).
///
/// Delegation `targets/x/y` becomes role `x.y`. Notary path prefixes become TUF 1.0 patterns,
/// one per depth (`releases/` → `releases/*`, `releases/*/*`, ... down to 8 segments or the
/// deepest target); "all paths" becomes the 16 one-digit path_hash_prefixes. Target content is
/// not in Notary: copy the files to REPO/targets/<dir>/<sha256>.<name> to serve them. REPO
/// must not hold a repository yet.
#[derive(Debug, Args)]
pub(crate) struct ImportNotaryArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// The new repository's directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
    /// Snapshot key (a sigild key id) instead of a new one.
    #[arg(long = "snapshot-key", value_name = "ID")]
    pub(crate) snapshot_key: Option<KeyId>,
    /// Timestamp key (a sigild key id) instead of a new one.
    #[arg(long = "timestamp-key", value_name = "ID")]
    pub(crate) timestamp_key: Option<KeyId>,
    /// Backend to generate the snapshot and timestamp keys on (may be left out when sigild
    /// has one backend).
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
}

/// A role's keys matched to sigild: (Notary key id, TUF 1.0 key id, sigild key id if held).
struct Matched {
    notary_role: String,
    tuf_role: String,
    keys: Vec<(String, String, Option<String>)>,
    threshold: u64,
}

impl ImportNotaryArgs {
    /// Verifies, matches keys, writes and publishes.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let layout = Layout::new(&self.repo);
        if layout.metadata_dir().exists() || layout.state_dir().exists() {
            return Err(Error::Usage(format!(
                "{} already holds a repository; import-notary makes a new one (choose another \
                 directory)",
                self.repo.display()
            )));
        }
        let notary = Repo::open(global, &self.gun)?;
        eprintln!("verifying {} from {} ...", self.gun, notary.server.url());
        let collection = fetch_verified(&notary).await?;
        let import = NotaryImport::from_collection(&collection)
            .map_err(|e| Error::tuf(format!("importing {}", self.gun), e))?;
        for note in &import.notes {
            eprintln!("note: {note}");
        }
        eprintln!("matching the collection's keys to sigild's keys ...");
        let client = connect(global).await?;
        let held = visible_signers(&client).await?;
        let matched = match_keys(&import, &held)?;
        let root_signers: Vec<&DaemonSigner> = held
            .iter()
            .filter(|s| {
                matched[0]
                    .keys
                    .iter()
                    .any(|(_, _, id)| id.as_deref() == Some(s.info().key_id.as_str()))
            })
            .collect();
        let snapshot = self
            .online_key(&client, "snapshot", self.snapshot_key.as_ref())
            .await?;
        let timestamp = self
            .online_key(&client, "timestamp", self.timestamp_key.as_ref())
            .await?;
        eprintln!(
            "writing {} targets in {} role(s) to {} ...",
            import.target_count(),
            import.roles.len() + 1,
            self.repo.display()
        );
        let context = format!("importing {} into {}", self.gun, self.repo.display());
        let signers: Vec<&dyn sigil_tuf::Signer> = root_signers
            .iter()
            .map(|s| *s as &dyn sigil_tuf::Signer)
            .collect();
        let mut repo = Repository::import_notary(
            &self.repo,
            &import,
            snapshot.public_key.clone(),
            timestamp.public_key.clone(),
            &signers,
            SystemTime::now(),
        )
        .await
        .map_err(|e| Error::tuf(&context, e))?;
        eprintln!("publishing {} ...", self.repo.display());
        let online = online_signers(global).await?;
        let report = repo
            .publish(&as_signers(&online), SystemTime::now())
            .await
            .map_err(|e| {
                Error::tuf(
                    format!(
                        "publishing {} (staged: fix the cause, then `sigil tuf publish {}`)",
                        self.repo.display(),
                        self.repo.display()
                    ),
                    e,
                )
            })?;
        self.print_summary(global, &import, &matched, &snapshot, &timestamp, &report)
    }

    /// The key for snapshot or timestamp: the one named, else a new one on the token.
    async fn online_key(
        &self,
        client: &DaemonClient,
        role: &str,
        given: Option<&KeyId>,
    ) -> Result<KeyInfo, Error> {
        match given {
            Some(id) => client.clone().public_key(id).await,
            None => generate_key(client, &self.gun, role, self.backend.as_deref()).await,
        }
    }

    fn print_summary(
        &self,
        global: &GlobalArgs,
        import: &NotaryImport,
        matched: &[Matched],
        snapshot: &KeyInfo,
        timestamp: &KeyInfo,
        report: &sigil_tuf::repository::PublishReport,
    ) -> Result<(), Error> {
        if global.json {
            let roles: Vec<serde_json::Value> = matched
                .iter()
                .map(|m| {
                    let delegation = import.roles.iter().find(|r| r.notary_name == m.notary_role);
                    let targets = match delegation {
                        None if m.notary_role == "targets" => Some(import.targets.len()),
                        None => None,
                        Some(r) => r.targets.as_ref().map(|t| t.len()),
                    };
                    let (paths, hash_prefixes) = match delegation.map(|r| &r.delegation.rule) {
                        Some(PathRule::Paths(p)) => (Some(p.clone()), None),
                        Some(PathRule::HashPrefixes(h)) => (None, Some(h.clone())),
                        None => (None, None),
                    };
                    json!({
                        "notary_role": m.notary_role,
                        "role": m.tuf_role,
                        "threshold": m.threshold,
                        "targets": targets,
                        "paths": paths,
                        "path_hash_prefixes": hash_prefixes,
                        "keys": m.keys.iter().map(|(notary, tuf, sigild)| json!({
                            "notary_key_id": notary,
                            "tuf_key_id": tuf,
                            "sigild_key_id": sigild,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let online = |k: &KeyInfo| {
                json!({
                    "sigild_key_id": k.key_id,
                    "tuf_key_id": Key::from_public_key(&k.public_key).id(),
                })
            };
            return print_json(&json!({
                "gun": self.gun,
                "repo": self.repo,
                "targets": import.target_count(),
                "roles": roles,
                "snapshot_key": online(snapshot),
                "timestamp_key": online(timestamp),
                "notes": import.notes,
                "written": report.written.iter().map(|(role, version)| json!({
                    "role": role, "version": version,
                })).collect::<Vec<_>>(),
            }));
        }
        print_line(&format!(
            "imported {} into {}: {} target(s), {} delegation(s)",
            self.gun,
            self.repo.display(),
            import.target_count(),
            import.roles.len()
        ))?;
        for m in matched {
            let held: Vec<&str> = m.keys.iter().filter_map(|(_, _, s)| s.as_deref()).collect();
            print_line(&format!(
                "  {} -> {} (threshold {}), signed with sigild key(s) {}",
                m.notary_role,
                m.tuf_role,
                m.threshold,
                held.join(", ")
            ))?;
        }
        print_line(&format!(
            "  snapshot key {}, timestamp key {}",
            snapshot.key_id, timestamp.key_id
        ))?;
        for (role, version) in &report.written {
            print_line(&format!("published {role} v{version}"))?;
        }
        Ok(())
    }
}

/// Matches every role's keys to the keys sigild lets the caller use; each role needs at least
/// its threshold of them. The first entry is root.
fn match_keys(import: &NotaryImport, held: &[DaemonSigner]) -> Result<Vec<Matched>, Error> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (role, keys) in import.signing_roles() {
        let tuf_role = match role {
            "root" | "targets" => role.to_owned(),
            _ => import
                .roles
                .iter()
                .find(|r| r.notary_name == role)
                .map_or_else(|| role.to_owned(), |r| r.delegation.name.clone()),
        };
        let m = match_role(role, tuf_role, keys, held);
        let found = m.keys.iter().filter(|(_, _, s)| s.is_some()).count() as u64;
        if found < m.threshold {
            let missing: Vec<String> = m
                .keys
                .iter()
                .zip(&keys.keys)
                .filter(|((_, _, sigild), _)| sigild.is_none())
                .map(|((notary, _, _), (_, public))| {
                    format!("key {notary} (public key id {})", public.key_id())
                })
                .collect();
            problems.push(format!(
                "role {role} needs {} of its keys in sigild, {found} found; not held by sigild \
                 (or not visible to you): {}",
                m.threshold,
                missing.join(", ")
            ));
        }
        out.push(m);
    }
    if !problems.is_empty() {
        return Err(Error::MissingKey(problems.join("; ")));
    }
    Ok(out)
}

fn match_role(role: &str, tuf_role: String, keys: &ImportedKeys, held: &[DaemonSigner]) -> Matched {
    Matched {
        notary_role: role.to_owned(),
        tuf_role,
        threshold: keys.threshold,
        keys: keys
            .keys
            .iter()
            .map(|(notary, public)| {
                let daemon_id = public.key_id();
                let sigild = held
                    .iter()
                    .find(|s| s.info().key_id == daemon_id)
                    .map(|s| s.info().key_id.clone());
                (notary.clone(), Key::from_public_key(public).id(), sigild)
            })
            .collect(),
    }
}
