//! `verify`: a full check of the published repository as a client would make it, from
//! `1.root.json` (each root signed by a threshold of its predecessor's keys and of its own),
//! through timestamp, snapshot and every targets role reachable by delegation, down to the
//! length and hashes of every target file stored here. `status`: what is published and what
//! is staged, with the signatures each staged role still needs.

use std::fs::File;
use std::io::Read as _;
use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::layout::io_error;
use super::{MissingSignatures, Repository, read_metadata};
use crate::error::{Error, Result};
use crate::schema::dialect::verify_threshold;
use crate::schema::tuf1::{self, meta_name};
use crate::schema::{DelegatedRole, Metadata, RoleBody, RoleType};

/// One verified (or published) role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleReport {
    /// Role name.
    pub role: String,
    /// Version.
    pub version: u64,
    /// `expires`.
    pub expires: String,
    /// Targets it lists (targets roles only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<usize>,
}

/// The outcome of [`Repository::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Every root version checked in the chain, 1 first.
    pub root_chain: Vec<u64>,
    /// The roles a client loads, in the order it loads them.
    pub roles: Vec<RoleReport>,
    /// Target files stored under `targets/` whose length and hashes were checked.
    pub files_checked: usize,
    /// Targets listed but not stored here (added with `addhash`, served elsewhere).
    pub not_stored: Vec<String>,
}

/// A staged role in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagedReport {
    /// Role name.
    pub role: String,
    /// The version it will be published as.
    pub version: u64,
    /// Signatures it carries.
    pub signatures: usize,
    /// Thresholds not met yet (empty: ready; targets roles are signed at publish).
    #[serde(serialize_with = "display_list")]
    pub missing: Vec<MissingSignatures>,
}

fn display_list<S: serde::Serializer>(
    items: &[MissingSignatures],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq as _;
    let mut seq = s.serialize_seq(Some(items.len()))?;
    for m in items {
        seq.serialize_element(&serde_json::json!({
            "key_set": m.key_set,
            "valid": m.valid,
            "threshold": m.threshold,
            "missing_keys": m.missing,
        }))?;
    }
    seq.end()
}

/// The outcome of [`Repository::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Published roles (root, timestamp, snapshot, targets roles).
    pub published: Vec<RoleReport>,
    /// Staged roles.
    pub staged: Vec<StagedReport>,
}

impl Repository {
    /// What is published and what is staged.
    pub fn status(&self) -> Result<Status> {
        let mut published = Vec::new();
        if let Some(root) = &self.published.root {
            published.push(report(root, None));
        }
        if let Some(t) = &self.published.timestamp {
            published.push(report(t, None));
        }
        if let Some(s) = &self.published.snapshot {
            published.push(report(s, None));
        }
        for t in self.published.targets.values() {
            published.push(report(t, Some(t.body().targets.len())));
        }
        let mut staged = Vec::new();
        for name in self.staged.names() {
            let (version, signatures) = match (&self.staged.root, self.staged.targets.get(&name)) {
                (Some(root), _) if name == "root" => (root.signed.version, root.signatures.len()),
                (_, Some(t)) => (t.signed.version, t.signatures.len()),
                _ => continue,
            };
            staged.push(StagedReport {
                missing: self.missing_signatures(&name)?,
                role: name,
                version,
                signatures,
            });
        }
        Ok(Status { published, staged })
    }

    /// Verifies the published repository from `1.root.json` at time `now`, including every
    /// stored target file. `progress` is told each target file checked (for long runs).
    pub fn verify(&self, now: SystemTime, progress: &mut dyn FnMut(&str)) -> Result<VerifyReport> {
        let layout = &self.layout;
        let mut root: Metadata<tuf1::Root> = read_metadata(layout, "root", 1)?;
        check_role(&root, &root.body().clone(), RoleType::Root)?;
        let mut chain = vec![1];
        loop {
            let next = root.version() + 1;
            if !layout.versioned("root", next)?.exists() {
                break;
            }
            let new: Metadata<tuf1::Root> = read_metadata(layout, "root", next)?;
            check_role(&new, root.body(), RoleType::Root)?;
            check_role(&new, &new.body().clone(), RoleType::Root)?;
            root = new;
            chain.push(next);
        }
        let root_body = root.body();
        root_body.validate()?;
        let mut roles = vec![report(&root, None)];
        expired(&root, now)?;

        let bytes = super::layout::read_limited(&layout.timestamp())?
            .ok_or_else(|| Error::repo(layout.timestamp(), "is missing"))?;
        let timestamp = Metadata::<tuf1::Timestamp>::from_bytes("timestamp", bytes)?;
        check_role(&timestamp, root_body, RoleType::Timestamp)?;
        timestamp.body().validate()?;
        expired(&timestamp, now)?;
        roles.push(report(&timestamp, None));
        let listing = timestamp
            .body()
            .snapshot_meta()
            .ok_or_else(|| Error::invalid("timestamp", timestamp.version(), "no snapshot"))?;
        let snapshot: Metadata<tuf1::Snapshot> =
            read_metadata(layout, "snapshot", listing.version)?;
        listing.check(
            "snapshot",
            "timestamp",
            timestamp.version(),
            snapshot.bytes(),
        )?;
        check_role(&snapshot, root_body, RoleType::Snapshot)?;
        snapshot.body().validate()?;
        expired(&snapshot, now)?;
        roles.push(report(&snapshot, None));

        let mut files_checked = 0;
        let mut not_stored = Vec::new();
        let top = root_body.role_keys(RoleType::Targets);
        let mut queue = vec![Pending {
            name: "targets".into(),
            keys: top
                .into_iter()
                .map(|(i, k)| (i.to_owned(), k.clone()))
                .collect(),
            threshold: root_body.role(RoleType::Targets).map_or(1, |r| r.threshold),
            chain: Vec::new(),
        }];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(p) = queue.pop() {
            if !seen.insert(p.name.clone()) {
                continue;
            }
            let name = &p.name;
            let listed =
                snapshot
                    .body()
                    .meta
                    .get(&meta_name(name))
                    .ok_or_else(|| Error::NotListed {
                        role: name.clone(),
                        listed_in: "snapshot".into(),
                        version: snapshot.version(),
                    })?;
            let meta: Metadata<tuf1::Targets> = read_metadata(layout, name, listed.version)?;
            listed.check(name, "snapshot", snapshot.version(), meta.bytes())?;
            let refs: Vec<(&str, &tuf1::Key)> =
                p.keys.iter().map(|(i, k)| (i.as_str(), k)).collect();
            verify_threshold(name, meta.signed(), &refs, p.threshold)?;
            meta.body().validate(name)?;
            expired(&meta, now)?;
            for (target, file) in &meta.body().targets {
                if let Some(outside) = p
                    .chain
                    .iter()
                    .find(|d| !tuf1::delegation_matches(d, target))
                {
                    return Err(Error::PathNotDelegated {
                        role: outside.name.clone(),
                        target: target.clone(),
                    });
                }
                let sha256 = file.sha256().unwrap_or_default().to_vec();
                let path = layout.target_file(target, &sha256)?;
                if !path.exists() {
                    not_stored.push(target.clone());
                    continue;
                }
                progress(target);
                check_file(&path, target, name, meta.version(), file)?;
                files_checked += 1;
            }
            roles.push(report(&meta, Some(meta.body().targets.len())));
            // Pushed in reverse so the first delegation is checked first.
            for d in meta.body().delegated_roles().iter().rev() {
                let keys = meta
                    .body()
                    .delegation(&d.name)
                    .map(|(_, keys)| keys)
                    .unwrap_or_default();
                let mut chain = p.chain.clone();
                chain.push(d.clone());
                queue.push(Pending {
                    name: d.name.clone(),
                    keys: keys
                        .into_iter()
                        .map(|(i, k)| (i.to_owned(), k.clone()))
                        .collect(),
                    threshold: d.threshold,
                    chain,
                });
            }
        }
        Ok(VerifyReport {
            root_chain: chain,
            roles,
            files_checked,
            not_stored,
        })
    }
}

/// A targets role still to check: the keys and threshold it must meet and the delegations
/// above it (a target must match every one of them to be reachable).
struct Pending {
    name: String,
    keys: Vec<(String, tuf1::Key)>,
    threshold: u64,
    chain: Vec<DelegatedRole>,
}

fn report<T: RoleBody>(meta: &Metadata<T>, targets: Option<usize>) -> RoleReport {
    RoleReport {
        role: meta.role().to_owned(),
        version: meta.version(),
        expires: meta.body().expires().as_str().to_owned(),
        targets,
    }
}

fn check_role<T: RoleBody<Dialect = tuf1::Tuf1>>(
    meta: &Metadata<T>,
    root: &tuf1::Root,
    role: RoleType,
) -> Result<()> {
    let threshold = root.role(role).map_or(1, |r| r.threshold);
    verify_threshold(meta.role(), meta.signed(), &root.role_keys(role), threshold)?;
    Ok(())
}

fn expired<T: RoleBody>(meta: &Metadata<T>, now: SystemTime) -> Result<()> {
    let expires = meta.body().expires();
    if expires.is_expired_at(now) {
        return Err(Error::Expired {
            role: meta.role().to_owned(),
            version: meta.version(),
            expires: expires.as_str().to_owned(),
        });
    }
    Ok(())
}

/// Streams a stored target file through SHA-256, checking length and hashes.
fn check_file(
    path: &std::path::Path,
    target: &str,
    role: &str,
    version: u64,
    file: &tuf1::TargetFile,
) -> Result<()> {
    let mut input = File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        length += n as u64;
    }
    if length != file.length {
        return Err(Error::LengthMismatch {
            role: target.to_owned(),
            listed_in: role.to_owned(),
            version,
            expected: file.length,
            actual: length,
        });
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if file.sha256() != Some(&digest[..]) {
        return Err(Error::HashMismatch {
            role: target.to_owned(),
            listed_in: role.to_owned(),
            version,
            algorithm: "sha256".into(),
        });
    }
    Ok(())
}
