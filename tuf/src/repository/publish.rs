//! Publishing: each staged role gets its next version, then a new snapshot lists every targets
//! role and a new timestamp lists the snapshot. Nothing is written until every signature is
//! made and every threshold met. Files go out in the order that keeps each moment consistent
//! for a client that reads timestamp first: root, targets and delegated roles, snapshot, and
//! `timestamp.json` last (its rename is the moment the new state becomes visible).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::SystemTime;

use super::layout::{read_limited, write_atomic};
use super::signing::{KeySet, add_signatures, missing};
use super::{Repository, load_published, next_version, unsigned};
use crate::error::{Error, Result};
use crate::schema::tuf1::{self, MetaFile, Tuf1, meta_name};
use crate::schema::{Expires, Metadata, RoleType, Signed};
use crate::sign::Signer;

/// What a publish wrote, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// (role, version) of each file written.
    pub written: Vec<(String, u64)>,
}

impl Repository {
    /// Publishes the staged roles (see the module docs). Targets and delegated roles that still
    /// lack signatures are signed with `signers`; root never is (see
    /// [`Repository::sign_staged`]). Refuses, writing nothing, while any threshold is unmet,
    /// naming the missing keys. With nothing staged, writes nothing.
    pub async fn publish(
        &mut self,
        signers: &[&dyn Signer],
        now: SystemTime,
    ) -> Result<PublishReport> {
        if self.staged.is_empty() {
            return Ok(PublishReport::default());
        }
        let mut unmet = Vec::new();
        if self.staged.root.is_some() {
            unmet.extend(self.missing_signatures("root")?);
        }
        let names: Vec<String> = self.staged.targets.keys().cloned().collect();
        for name in &names {
            let sets = self.key_sets(name)?;
            let expires = Expires::after_in(Tuf1, now, self.settings.lifetime(name))?;
            if let Some(role) = self.staged.targets.get_mut(name) {
                // Not signed by anyone yet: its lifetime starts now, not at the edit.
                if role.signatures.is_empty() {
                    role.signed.expires = expires;
                }
                // One canonical form for signing and for the threshold check.
                let message = role.canonical_signed()?;
                add_signatures(name, role, &message, &sets, signers).await?;
                unmet.extend(missing(name, role, &message, &sets)?);
            }
        }
        if !unmet.is_empty() {
            return Err(Error::Unsigned(unmet));
        }
        if let Some(root) = &self.staged.root {
            root.signed.validate()?;
        }
        for (name, role) in &self.staged.targets {
            role.signed.validate(name)?;
        }

        let mut snapshot_body = tuf1::Snapshot::new_in(
            Tuf1,
            match &self.published.snapshot {
                Some(s) => next_version("snapshot", s.version())?,
                None => 1,
            },
            Expires::after_in(Tuf1, now, self.settings.lifetime("snapshot"))?,
        );
        if let Some(old) = &self.published.snapshot {
            snapshot_body.extra = old.body().extra.clone();
        }
        let mut files: Vec<(String, u64, Vec<u8>)> = Vec::new();
        if let Some(root) = &self.staged.root {
            files.push(("root".into(), root.signed.version, root.to_vec()?));
        }
        let tree = self.role_tree()?;
        for name in &tree {
            let (version, bytes) = match (
                self.staged.targets.get(name),
                self.published.targets.get(name),
            ) {
                (Some(staged), _) => {
                    let bytes = staged.to_vec()?;
                    files.push((name.clone(), staged.signed.version, bytes.clone()));
                    (staged.signed.version, bytes)
                }
                (None, Some(published)) => (published.version(), published.bytes().to_vec()),
                (None, None) => {
                    return Err(Error::NoSuchRole {
                        role: name.clone(),
                        reason: "delegated but has no metadata".into(),
                    });
                }
            };
            snapshot_body
                .meta
                .insert(meta_name(name), MetaFile::with_bytes(version, &bytes));
        }
        let snapshot = self.sign_new("snapshot", snapshot_body, signers).await?;
        let snapshot_bytes = snapshot.to_vec()?;
        let timestamp = self
            .new_timestamp(
                MetaFile::with_bytes(snapshot.signed.version, &snapshot_bytes),
                signers,
                now,
                false,
            )
            .await?;
        files.push((
            "snapshot".into(),
            snapshot.signed.version,
            snapshot_bytes.clone(),
        ));

        let mut report = PublishReport::default();
        for (name, version, bytes) in &files {
            let path = self.layout.versioned(name, *version)?;
            if name == "root"
                && let Some(existing) = read_limited(&path)?
                && existing != *bytes
            {
                return Err(Error::repo(
                    &path,
                    "already exists with other content; a published root is never replaced",
                ));
            }
            write_atomic(&path, bytes)?;
            report.written.push((name.clone(), *version));
        }
        let timestamp_bytes = timestamp.to_vec()?;
        write_atomic(&self.layout.timestamp(), &timestamp_bytes)?;
        report
            .written
            .push(("timestamp".into(), timestamp.signed.version));
        // What clients now fetch, from the documents and bytes just written: reading them back
        // would parse the targets roles again (a third of a 10,000-target publish).
        let staged = std::mem::take(&mut self.staged);
        let mut written: BTreeMap<String, Vec<u8>> = files
            .into_iter()
            .map(|(name, _, bytes)| (name, bytes))
            .collect();
        let mut take = |name: &str| written.remove(name).unwrap_or_default();
        if let Some(root) = staged.root {
            self.published.root = Some(Metadata::from_written("root", take("root"), root));
        }
        let mut old = std::mem::take(&mut self.published.targets);
        let mut staged_targets = staged.targets;
        for name in tree {
            let current = match staged_targets.remove(&name) {
                Some(signed) => Metadata::from_written(&name, take(&name), signed),
                None => old.remove(&name).ok_or_else(|| Error::NoSuchRole {
                    role: name.clone(),
                    reason: "delegated but has no metadata".into(),
                })?,
            };
            self.published.targets.insert(name, current);
        }
        self.published.snapshot =
            Some(Metadata::from_written("snapshot", snapshot_bytes, snapshot));
        self.published.timestamp = Some(Metadata::from_written(
            "timestamp",
            timestamp_bytes,
            timestamp,
        ));
        self.save()?;
        Ok(report)
    }

    /// Writes a fresh timestamp for the published snapshot (for a timer): next version, new
    /// expiry, signed by the published root's timestamp keys. When the snapshot would expire
    /// before the new timestamp, it is renewed first (same listing, next version, new expiry,
    /// the published root's snapshot keys), so a timer alone keeps clients going.
    pub async fn refresh_timestamp(
        &mut self,
        signers: &[&dyn Signer],
        now: SystemTime,
    ) -> Result<PublishReport> {
        let nothing = || {
            Error::repo(
                self.layout.root(),
                "nothing published yet (run `sigil tuf publish`)",
            )
        };
        let current = self.published.timestamp.as_ref().ok_or_else(nothing)?;
        let snapshot = self.published.snapshot.as_ref().ok_or_else(nothing)?;
        let mut listing = current.body().snapshot_meta().cloned().ok_or_else(|| {
            Error::invalid(
                "timestamp",
                current.version(),
                "snapshot.json is not listed",
            )
        })?;
        let timestamp_expires = Expires::after_in(Tuf1, now, self.settings.lifetime("timestamp"))?;
        let mut report = PublishReport::default();
        let mut renewed = None;
        if snapshot.body().expires.to_system_time() < timestamp_expires.to_system_time() {
            let mut body = snapshot.body().clone();
            body.version = next_version("snapshot", body.version)?;
            body.expires = Expires::after_in(Tuf1, now, self.settings.lifetime("snapshot"))?;
            let set = self.published_key_set(RoleType::Snapshot)?;
            let signed = sign_with("snapshot", body, &[set], signers).await?;
            let bytes = signed.to_vec()?;
            listing = MetaFile::with_bytes(signed.signed.version, &bytes);
            renewed = Some((signed.signed.version, bytes));
        }
        let timestamp = self.new_timestamp(listing, signers, now, true).await?;
        if let Some((version, bytes)) = renewed {
            write_atomic(&self.layout.versioned("snapshot", version)?, &bytes)?;
            report.written.push(("snapshot".into(), version));
        }
        write_atomic(&self.layout.timestamp(), &timestamp.to_vec()?)?;
        report
            .written
            .push(("timestamp".into(), timestamp.signed.version));
        self.published = load_published(&self.layout)?;
        Ok(report)
    }

    /// The keys the published root names for `role`.
    fn published_key_set(&self, role: RoleType) -> Result<KeySet> {
        let root = self
            .published
            .root
            .as_ref()
            .ok_or_else(|| Error::repo(self.layout.root(), "no published root"))?
            .body();
        Ok(KeySet {
            label: format!("root v{}", root.version),
            keys: root
                .role_keys(role)
                .into_iter()
                .map(|(id, k)| (id.to_owned(), k.clone()))
                .collect(),
            threshold: root.role(role).map_or(1, |r| r.threshold),
        })
    }

    async fn new_timestamp(
        &self,
        listing: MetaFile,
        signers: &[&dyn Signer],
        now: SystemTime,
        published_root: bool,
    ) -> Result<Signed<tuf1::Timestamp>> {
        let version = match &self.published.timestamp {
            Some(t) => next_version("timestamp", t.version())?,
            None => 1,
        };
        let expires = Expires::after_in(Tuf1, now, self.settings.lifetime("timestamp"))?;
        let mut body = tuf1::Timestamp::for_snapshot_meta(version, expires, listing);
        if let Some(old) = &self.published.timestamp {
            body.extra = old.body().extra.clone();
        }
        if published_root {
            let set = self.published_key_set(RoleType::Timestamp)?;
            return sign_with("timestamp", body, &[set], signers).await;
        }
        self.sign_new("timestamp", body, signers).await
    }

    async fn sign_new<T: crate::schema::RoleBody<Dialect = Tuf1>>(
        &self,
        role: &str,
        body: T,
        signers: &[&dyn Signer],
    ) -> Result<Signed<T>> {
        let sets = self.key_sets(role)?;
        sign_with(role, body, &sets, signers).await
    }

    /// Targets and every role reachable from it through delegations, breadth first.
    pub(crate) fn role_tree(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from(["targets".to_owned()]);
        while let Some(name) = queue.pop_front() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(role) = self.targets_role(&name) {
                queue.extend(role.delegated_roles().iter().map(|d| d.name.clone()));
            }
            out.push(name);
        }
        Ok(out)
    }
}

async fn sign_with<T: crate::schema::RoleBody<Dialect = Tuf1>>(
    role: &str,
    body: T,
    sets: &[KeySet],
    signers: &[&dyn Signer],
) -> Result<Signed<T>> {
    let mut signed = unsigned(body);
    let message = signed.canonical_signed()?;
    add_signatures(role, &mut signed, &message, sets, signers).await?;
    let unmet = missing(role, &signed, &message, sets)?;
    if !unmet.is_empty() {
        return Err(Error::Unsigned(unmet));
    }
    Ok(signed)
}
