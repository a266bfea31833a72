//! Turning an editor into a [`SignedCollection`]: threshold checks before anything is signed,
//! version + 1 and fresh expiries, root rotation signed by old and new keys, and the
//! snapshot and timestamp signers notary-server or a local snapshot key use.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::cjson;
use crate::error::{Error, Result};
use crate::schema::notary;
use crate::schema::{
    Expires, FileMeta, Metadata, RoleType, Root, Signed, Snapshot, Timestamp, TufKey, parent_role,
};
use crate::sign::{Signer, distinct_keys, match_signers, sign_message, sign_role};

use super::CollectionEditor;

impl CollectionEditor {
    /// Signs only the next root (`sigil init` without publishing: targets and snapshot are
    /// signed once, when they are first published, so that a signer that keeps version
    /// floors — sigild's `sign-metadata` — never sees two different version 1s). Returns the
    /// root file.
    pub async fn sign_root(self, signers: &[&dyn Signer]) -> Result<Vec<u8>> {
        let Self {
            now,
            mut root,
            previous_root,
            ..
        } = self;
        require_root(&root, previous_root.as_ref(), signers)?;
        sign_next_root(&mut root, previous_root.as_ref(), now, signers).await
    }

    /// Signs every changed role with the signers at hand and returns the publishable
    /// collection. Fails, before signing anything, when a changed role (or a changed root's
    /// previous keys) cannot reach its threshold.
    pub async fn sign(self, signers: &[&dyn Signer]) -> Result<SignedCollection> {
        let Self {
            gun,
            now,
            mut root,
            root_dirty,
            previous_root,
            mut targets,
            snapshot,
            snapshot_dirty,
            mut files,
            removed,
            signed_root,
        } = self;
        let mut updates: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let first_publish = signed_root.is_some();
        if let Some(bytes) = signed_root {
            files.insert("root".into(), bytes.clone());
            updates.insert("root".into(), bytes);
        }

        // Check every threshold first so a missing token fails fast, not half-way.
        let dirty_targets: Vec<String> = targets
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(n, _)| n.clone())
            .collect();
        let mut plans = Vec::new();
        for name in &dirty_targets {
            let (keys, threshold) = if name == "targets" {
                (
                    owned(root.role_keys(RoleType::Targets)),
                    root.role(RoleType::Targets).map_or(0, |r| r.threshold),
                )
            } else {
                let parent = parent_role(name);
                let (entry, keys) = targets
                    .get(parent)
                    .and_then(|p| p.body.delegation(name))
                    .ok_or_else(|| Error::NoSuchRole {
                        role: name.clone(),
                        reason: format!("not delegated by {parent}"),
                    })?;
                (owned(keys), entry.threshold)
            };
            require(name, &keys, threshold, signers)?;
            plans.push((name.clone(), keys, threshold));
        }
        if root_dirty {
            let mut probe = root.clone();
            probe.version += 1;
            probe.validate()?;
            require_root(&root, previous_root.as_ref(), signers)?;
        }
        // Snapshot: re-signed when anything it lists changed and we hold its key. No signer
        // at all for it means the server holds it; some but too few is an error, not a
        // silent hand-over.
        let snapshot_keys = owned(root.role_keys(RoleType::Snapshot));
        let snapshot_threshold = root.role(RoleType::Snapshot).map_or(0, |r| r.threshold);
        let sign_snapshot = (!plans.is_empty()
            || root_dirty
            || first_publish
            || snapshot_dirty
            || !removed.is_empty())
            && !match_signers(&refs(&snapshot_keys), signers).is_empty();
        if sign_snapshot {
            require("snapshot", &snapshot_keys, snapshot_threshold, signers)?;
        }

        for (name, keys, threshold) in plans {
            let Some(state) = targets.get_mut(&name) else {
                continue;
            };
            let mut body = state.body.clone();
            body.version += 1;
            body.expires = Expires::after(now, notary::TARGETS_EXPIRY)?;
            let signed = sign_role(&name, body, &refs(&keys), threshold, signers).await?;
            let bytes = signed.to_vec()?;
            state.body = signed.signed;
            state.dirty = false;
            files.insert(name.clone(), bytes.clone());
            updates.insert(name, bytes);
        }

        if root_dirty {
            let bytes = sign_next_root(&mut root, previous_root.as_ref(), now, signers).await?;
            files.insert("root".into(), bytes.clone());
            updates.insert("root".into(), bytes);
        }

        let mut new_snapshot = None;
        if sign_snapshot {
            let mut body = match snapshot {
                Some(s) => s,
                None => Snapshot::new(0, Expires::after(now, notary::SNAPSHOT_EXPIRY)?),
            };
            body.meta.retain(|name, _| !removed.contains(name));
            for (name, bytes) in &files {
                body.meta.insert(name.clone(), FileMeta::from_bytes(bytes));
            }
            body.version += 1;
            body.expires = Expires::after(now, notary::SNAPSHOT_EXPIRY)?;
            body.validate()?;
            let signed = sign_role(
                "snapshot",
                body,
                &refs(&snapshot_keys),
                snapshot_threshold,
                signers,
            )
            .await?;
            let bytes = signed.to_vec()?;
            updates.insert("snapshot".into(), bytes.clone());
            new_snapshot = Some(Metadata::from_bytes("snapshot", bytes)?);
        }

        Ok(SignedCollection {
            gun,
            updates,
            files,
            snapshot: new_snapshot,
            removed,
        })
    }
}

fn owned(keys: Vec<(&str, &TufKey)>) -> Vec<(String, TufKey)> {
    keys.into_iter()
        .map(|(i, k)| (i.to_owned(), k.clone()))
        .collect()
}

fn refs(keys: &[(String, TufKey)]) -> Vec<(&str, &TufKey)> {
    keys.iter().map(|(i, k)| (i.as_str(), k)).collect()
}

fn require(
    role: &str,
    keys: &[(String, TufKey)],
    threshold: u64,
    signers: &[&dyn Signer],
) -> Result<()> {
    let available = distinct_keys(&match_signers(&refs(keys), signers));
    if threshold < 1 || (available as u64) < threshold {
        return Err(Error::MissingSigners {
            role: role.to_owned(),
            available,
            threshold,
        });
    }
    Ok(())
}

/// A root signature needs the new root's threshold and, after a rotation, the previous
/// root's too.
fn require_root(
    root: &Root,
    previous_root: Option<&(Vec<(String, TufKey)>, u64)>,
    signers: &[&dyn Signer],
) -> Result<()> {
    require(
        "root",
        &owned(root.role_keys(RoleType::Root)),
        root.role(RoleType::Root).map_or(0, |r| r.threshold),
        signers,
    )?;
    if let Some((keys, threshold)) = previous_root {
        require("root (previous keys)", keys, *threshold, signers)?;
    }
    Ok(())
}

/// A signed, publishable set of changes: what to POST to notary-server, and what the trust
/// dir should hold once the server accepted it.
#[derive(Debug, Clone)]
pub struct SignedCollection {
    gun: String,
    updates: BTreeMap<String, Vec<u8>>,
    files: BTreeMap<String, Vec<u8>>,
    snapshot: Option<Metadata<Snapshot>>,
    removed: BTreeSet<String>,
}

impl SignedCollection {
    /// The GUN.
    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// Role name → file to publish, one multipart part each (`filename` = role name). Empty
    /// when nothing changed.
    pub fn updates(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.updates
    }

    /// Whether the client signed snapshot (else the server must hold the snapshot key).
    pub fn snapshot_signed(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Root, targets and delegation files as they stand after this change (for the cache).
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    /// Delegations removed by this change (their cached files should go).
    pub fn removed(&self) -> &BTreeSet<String> {
        &self.removed
    }
}

/// Bumps `root` to its next version and expiry and signs it with its keys and, after a
/// rotation, the previous root's keys; returns the file.
async fn sign_next_root(
    root: &mut Root,
    previous_root: Option<&(Vec<(String, TufKey)>, u64)>,
    now: SystemTime,
    signers: &[&dyn Signer],
) -> Result<Vec<u8>> {
    root.version += 1;
    root.expires = Expires::after(now, notary::ROOT_EXPIRY)?;
    root.validate()?;
    let mut keys = owned(root.role_keys(RoleType::Root));
    if let Some((old, _)) = previous_root {
        for (id, k) in old {
            if !keys.iter().any(|(i, _)| i == id) {
                keys.push((id.clone(), k.clone()));
            }
        }
    }
    let message = cjson::to_vec(&*root)?;
    let matched = match_signers(&refs(&keys), signers);
    let signatures = sign_message("root", &message, &matched).await?;
    Signed {
        signed: root.clone(),
        signatures,
    }
    .to_vec()
}

/// What notary-server does after a publish: a timestamp over `snapshot` (its exact bytes),
/// signed by the timestamp key. Useful for tests and for a sigil-run server.
pub async fn sign_timestamp(
    root: &Root,
    snapshot: &[u8],
    version: u64,
    now: SystemTime,
    signers: &[&dyn Signer],
) -> Result<Signed<Timestamp>> {
    let body = Timestamp::for_snapshot(
        version,
        Expires::after(now, notary::TIMESTAMP_EXPIRY)?,
        snapshot,
    );
    let threshold = root.role(RoleType::Timestamp).map_or(0, |r| r.threshold);
    sign_role(
        "timestamp",
        body,
        &root.role_keys(RoleType::Timestamp),
        threshold,
        signers,
    )
    .await
}

/// What notary-server does when it holds the snapshot key: a snapshot over the given role
/// files, signed by the snapshot key.
pub async fn sign_snapshot(
    root: &Root,
    files: &BTreeMap<String, Vec<u8>>,
    version: u64,
    now: SystemTime,
    signers: &[&dyn Signer],
) -> Result<Signed<Snapshot>> {
    let mut body = Snapshot::new(version, Expires::after(now, notary::SNAPSHOT_EXPIRY)?);
    for (name, bytes) in files {
        body.meta.insert(name.clone(), FileMeta::from_bytes(bytes));
    }
    let threshold = root.role(RoleType::Snapshot).map_or(0, |r| r.threshold);
    sign_role(
        "snapshot",
        body,
        &root.role_keys(RoleType::Snapshot),
        threshold,
        signers,
    )
    .await
}
