//! The update walk of the specification's client workflow: root chain (§5.3), timestamp
//! (§5.4), snapshot (§5.5), top-level targets (§5.6), then, per target, the pre-order
//! depth-first search through delegations (§5.6.7) and the download of the artifact checked
//! against its length and hashes (§5.7). Local files are tried first and replaced only by
//! verified ones; a local timestamp or snapshot that no longer verifies under the current root
//! (its keys were rotated: fast-forward recovery, §5.3.11) is deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::names::{role_url, target_file_name, target_url};
use super::store::{Store, write_atomic};
use super::trusted::TrustedSet;
use super::{Fetcher, Limits, ROOT, TOP_TARGETS};
use crate::error::{Error, Result};
use crate::schema::dialect::HashValue as _;
use crate::schema::digest;
use crate::schema::tuf1::{self, delegation_matches, meta_name};

/// A target found in a trusted targets role.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    /// Target path.
    pub path: String,
    /// Length, hashes and custom data, as the role lists them.
    pub file: tuf1::TargetFile,
    /// The role that lists it.
    pub role: String,
}

/// One client update against one repository.
pub struct Updater<F> {
    fetcher: F,
    store: Store,
    trusted: TrustedSet,
    limits: Limits,
    refreshed: bool,
}

/// Errors that mean a stored file is unusable under the current root (bad or rotated-out
/// signatures, malformed): the file is forgotten rather than kept as a baseline.
fn no_longer_verifies(e: &Error) -> bool {
    matches!(
        e,
        Error::ThresholdNotMet { .. } | Error::Json { .. } | Error::Invalid { .. }
    )
}

fn not_found(what: &str) -> Error {
    Error::Fetch {
        what: what.to_owned(),
        reason: "the repository does not have it (HTTP 403/404)".into(),
    }
}

impl<F: Fetcher> Updater<F> {
    /// An updater trusting the `root.json` in `store`; `now` is the instant every expiry is
    /// checked against.
    pub fn new(store: Store, fetcher: F, limits: Limits, now: SystemTime) -> Result<Self> {
        let root = store.load(ROOT)?.ok_or_else(|| Error::Io {
            path: store.dir().join("root.json"),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no trusted root (initialise the metadata directory first)",
            ),
        })?;
        let trusted = TrustedSet::new(&root, now)?;
        Ok(Self {
            fetcher,
            store,
            trusted,
            limits,
            refreshed: false,
        })
    }

    /// The trusted metadata.
    pub fn trusted(&self) -> &TrustedSet {
        &self.trusted
    }

    /// Updates root, timestamp, snapshot and targets, storing each verified file. Done once per
    /// updater: later calls do nothing.
    pub async fn refresh(&mut self) -> Result<()> {
        if self.refreshed {
            return Ok(());
        }
        self.load_root().await?;
        self.load_timestamp().await?;
        self.load_snapshot().await?;
        self.load_targets(TOP_TARGETS, ROOT).await?;
        self.refreshed = true;
        Ok(())
    }

    fn consistent(&self) -> bool {
        self.trusted.root().body().consistent_snapshot
    }

    async fn load_root(&mut self) -> Result<()> {
        let first = self.trusted.root().version().saturating_add(1);
        let last = first.saturating_add(self.limits.max_root_rotations);
        for version in first..last {
            let name = role_url(ROOT, Some(version))?;
            let cap = self.limits.root_max_length;
            let Some(bytes) = self.fetcher.fetch(&name, false, cap).await? else {
                break;
            };
            self.trusted.update_root(&bytes)?;
            self.store.save(ROOT, &bytes)?;
        }
        Ok(())
    }

    async fn load_timestamp(&mut self) -> Result<()> {
        if let Some(local) = self.store.load("timestamp")?
            && let Err(e) = self.trusted.update_timestamp(&local)
            && self.trusted.timestamp().is_none()
            && no_longer_verifies(&e)
        {
            self.store.remove("timestamp")?;
        }
        let name = role_url("timestamp", None)?;
        let cap = self.limits.timestamp_max_length;
        let bytes = self
            .fetcher
            .fetch(&name, false, cap)
            .await?
            .ok_or_else(|| not_found(&name))?;
        if self.trusted.update_timestamp(&bytes)? {
            self.store.save("timestamp", &bytes)?;
        }
        Ok(())
    }

    async fn load_snapshot(&mut self) -> Result<()> {
        if let Some(local) = self.store.load("snapshot")? {
            match self.trusted.update_snapshot(&local, true) {
                Ok(()) => return Ok(()),
                Err(e) if self.trusted.snapshot().is_none() && no_longer_verifies(&e) => {
                    self.store.remove("snapshot")?;
                }
                Err(_) => {}
            }
        }
        let listing = self
            .trusted
            .timestamp()
            .and_then(|t| t.body().snapshot_meta())
            .ok_or_else(|| not_found("snapshot listing in timestamp"))?;
        let cap = listing.length.unwrap_or(self.limits.snapshot_max_length);
        let version = self.consistent().then_some(listing.version);
        let name = role_url("snapshot", version)?;
        let bytes = self
            .fetcher
            .fetch(&name, false, cap)
            .await?
            .ok_or_else(|| not_found(&name))?;
        self.trusted.update_snapshot(&bytes, false)?;
        self.store.save("snapshot", &bytes)
    }

    async fn load_targets(&mut self, role: &str, delegator: &str) -> Result<()> {
        if self.trusted.targets(role, delegator).is_some() {
            return Ok(());
        }
        if let Some(local) = self.store.load(role)?
            && self.trusted.update_targets(role, delegator, &local).is_ok()
        {
            return Ok(());
        }
        let snapshot = self
            .trusted
            .snapshot()
            .ok_or_else(|| not_found("snapshot"))?;
        let listing =
            snapshot
                .body()
                .meta
                .get(&meta_name(role))
                .ok_or_else(|| Error::NotListed {
                    role: role.to_owned(),
                    listed_in: "snapshot".into(),
                    version: snapshot.version(),
                })?;
        let cap = listing.length.unwrap_or(self.limits.targets_max_length);
        let version = self.consistent().then_some(listing.version);
        let name = role_url(role, version)?;
        let bytes = self
            .fetcher
            .fetch(&name, false, cap)
            .await?
            .ok_or_else(|| not_found(&name))?;
        self.trusted.update_targets(role, delegator, &bytes)?;
        self.store.save(role, &bytes)
    }

    /// Finds `path` by pre-order depth-first search from the top-level targets role: children
    /// in the order their delegator lists them, only those whose paths or hash prefixes match,
    /// none after a matching terminating delegation, each role visited once, at most
    /// [`Limits::max_delegations`] delegated roles. Refreshes first if needed.
    pub async fn target_info(&mut self, path: &str) -> Result<Option<TargetInfo>> {
        self.refresh().await?;
        let mut stack = vec![(TOP_TARGETS.to_owned(), ROOT.to_owned())];
        let mut visited = BTreeSet::new();
        while let Some((role, delegator)) = stack.pop() {
            if visited.len() > self.limits.max_delegations {
                return Err(Error::LimitExceeded {
                    role: role.clone(),
                    what: format!("searching {path:?} visits more delegated roles"),
                    limit: self.limits.max_delegations as u64,
                });
            }
            if visited.contains(&role) {
                continue;
            }
            self.load_targets(&role, &delegator).await?;
            visited.insert(role.clone());
            let Some(targets) = self.trusted.targets(&role, &delegator) else {
                return Err(not_found(&role));
            };
            if let Some(file) = targets.body().targets.get(path) {
                return Ok(Some(TargetInfo {
                    path: path.to_owned(),
                    file: file.clone(),
                    role,
                }));
            }
            let mut children = Vec::new();
            for child in targets.body().delegated_roles() {
                if delegation_matches(child, path) {
                    children.push((child.name.clone(), role.clone()));
                    if child.terminating == Some(true) {
                        stack.clear();
                        break;
                    }
                }
            }
            stack.extend(children.into_iter().rev());
        }
        Ok(None)
    }

    /// Where `info` is (or would be) stored in `dir`: one file named after the encoded path.
    pub fn target_path(info: &TargetInfo, dir: &Path) -> Result<PathBuf> {
        Ok(dir.join(target_file_name(&info.path)?))
    }

    /// The stored copy of `info` in `dir` if its length and hashes match (the artifact cache).
    pub fn cached_target(info: &TargetInfo, dir: &Path) -> Result<Option<PathBuf>> {
        let path = Self::target_path(info, dir)?;
        match std::fs::read(&path) {
            Ok(bytes) if check_target(info, &bytes).is_ok() => Ok(Some(path)),
            _ => Ok(None),
        }
    }

    /// Downloads `info` into `dir` unless a matching copy is there already: fetched with its
    /// listed length as the cap (`<hash>.<name>` with consistent snapshots), checked against
    /// every listed hash, written atomically. Returns the file's path.
    pub async fn download_target(&mut self, info: &TargetInfo, dir: &Path) -> Result<PathBuf> {
        if let Some(path) = Self::cached_target(info, dir)? {
            return Ok(path);
        }
        let file_name = target_file_name(&info.path)?;
        let prefix = self
            .consistent()
            .then(|| {
                info.file
                    .hashes
                    .values()
                    .next()
                    .map(|h| hex::encode(h.bytes()))
            })
            .flatten();
        let url = target_url(&info.path, prefix.as_deref());
        let bytes = self
            .fetcher
            .fetch(&url, true, info.file.length)
            .await?
            .ok_or_else(|| not_found(&info.path))?;
        check_target(info, &bytes)?;
        write_atomic(dir, &file_name, &bytes)?;
        Ok(dir.join(file_name))
    }
}

/// `bytes` have the listed length and every listed hash; an algorithm this crate cannot compute
/// fails (the artifact cannot be verified).
pub(crate) fn check_target(info: &TargetInfo, bytes: &[u8]) -> Result<()> {
    let mismatch = |reason: String| Error::TargetMismatch {
        name: info.path.clone(),
        role: info.role.clone(),
        reason,
    };
    if bytes.len() as u64 != info.file.length {
        return Err(mismatch(format!(
            "{} bytes, {} listed",
            bytes.len(),
            info.file.length
        )));
    }
    if info.file.hashes.is_empty() {
        return Err(mismatch("no hashes listed".into()));
    }
    for (alg, expected) in &info.file.hashes {
        match digest(alg, bytes) {
            Some(actual) if actual == expected.bytes() => {}
            Some(_) => return Err(mismatch(format!("{alg} differs"))),
            None => return Err(mismatch(format!("unsupported hash algorithm {alg:?}"))),
        }
    }
    Ok(())
}
