//! TUF 1.0 repositories on disk (DESIGN §8): a static tree any web server or object store can
//! serve, made and maintained with keys that stay on tokens (every signature goes through the
//! async [`Signer`](crate::Signer) trait).
//!
//! A [`Repository`] is opened from its directory: the published metadata (the latest root, and
//! the snapshot, targets and delegated roles the current `timestamp.json` leads to), the
//! [`Settings`] and the [`Staged`] roles. Edits ([`Repository::add_targets`],
//! [`Repository::delegate`], [`Repository::rotate`], ...) only change staged roles, saved under
//! `REPO/.sigil/` with [`Repository::save`]; [`Repository::publish`] gives each changed role
//! the next version, then writes a new snapshot and timestamp, in the order that keeps every
//! state a client can see consistent: root, targets and delegated roles, snapshot, timestamp.
//!
//! Root is only ever signed with the keys a caller names for it ([`Repository::sign_staged`]),
//! never picked up automatically at publish, so a root ceremony collects its signatures one key
//! (one machine) at a time; publish refuses while a threshold is unmet and names the keys that
//! can still sign.

mod check;
mod delegate;
mod import;
mod layout;
mod publish;
mod rotate;
mod signing;
mod state;
mod targets;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::schema::tuf1::{self, Tuf1};
use crate::schema::{Expires, Metadata, RoleType, Signed};

pub use check::{RoleReport, StagedReport, Status, VerifyReport};
pub use delegate::{Delegation, PathRule};
pub use import::{
    ImportedKeys, ImportedRole, NotaryImport, PREFIX_DEPTH, prefix_patterns, tuf1_role_name,
};
pub use layout::{Layout, MAX_METADATA_BYTES};
pub use publish::PublishReport;
pub use signing::MissingSignatures;
pub use state::{MAX_EXPIRY_DAYS, Settings, Staged};
pub use targets::{ManifestEntry, NewTarget, TargetSource, parse_manifest, parse_sha256};

/// The keys of the four top-level roles of a new repository.
#[derive(Debug, Clone)]
pub struct InitKeys {
    /// Root keys (e.g. two YubiKeys and an HSM key).
    pub root: Vec<crate::PublicKey>,
    /// How many root keys must sign root.
    pub root_threshold: u64,
    /// Targets keys (threshold 1).
    pub targets: Vec<crate::PublicKey>,
    /// Snapshot keys (threshold 1).
    pub snapshot: Vec<crate::PublicKey>,
    /// Timestamp keys (threshold 1).
    pub timestamp: Vec<crate::PublicKey>,
}

/// The metadata a client can currently fetch.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The highest `N.root.json`.
    pub root: Option<Metadata<tuf1::Root>>,
    /// Targets and delegated roles at the versions the current snapshot lists.
    pub targets: BTreeMap<String, Metadata<tuf1::Targets>>,
    /// The snapshot `timestamp.json` lists.
    pub snapshot: Option<Metadata<tuf1::Snapshot>>,
    /// `timestamp.json`.
    pub timestamp: Option<Metadata<tuf1::Timestamp>>,
}

/// A repository opened for reading and editing.
#[derive(Debug, Clone)]
pub struct Repository {
    layout: Layout,
    settings: Settings,
    published: Published,
    staged: Staged,
}

impl Repository {
    /// Opens the repository at `dir`: reads (without verifying: see [`Repository::verify`])
    /// the published metadata, settings and staged roles.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let layout = Layout::new(dir.as_ref());
        if !layout.metadata_dir().is_dir() && !layout.state_dir().is_dir() {
            return Err(Error::repo(
                layout.root(),
                "not a sigil TUF repository (no metadata/ or .sigil/; run `sigil tuf init`)",
            ));
        }
        let published = load_published(&layout)?;
        Ok(Self {
            settings: Settings::load(&layout)?,
            staged: Staged::load(&layout)?,
            published,
            layout,
        })
    }

    /// Starts a repository in `dir` (which must hold no repository yet): root v1 with `keys`,
    /// an empty targets v1, both staged. Root is signed by `root_signers` (those of its keys
    /// the caller holds here); publish once root's threshold is met.
    pub async fn init(
        dir: impl AsRef<Path>,
        keys: &InitKeys,
        settings: Settings,
        root_signers: &[&dyn crate::Signer],
        now: SystemTime,
    ) -> Result<Self> {
        let layout = Layout::new(dir.as_ref());
        if layout.metadata_dir().exists() || layout.state_dir().exists() {
            return Err(Error::repo(
                layout.root(),
                "already holds a repository (metadata/ or .sigil/ exists)",
            ));
        }
        let mut root = tuf1::Root::new_in(
            Tuf1,
            1,
            Expires::after_in(Tuf1, now, settings.lifetime("root"))?,
        );
        let mut thresholds = vec![(RoleType::Root, &keys.root, keys.root_threshold)];
        thresholds.push((RoleType::Targets, &keys.targets, 1));
        thresholds.push((RoleType::Snapshot, &keys.snapshot, 1));
        thresholds.push((RoleType::Timestamp, &keys.timestamp, 1));
        for (role, public, threshold) in thresholds {
            let mut seen = std::collections::BTreeSet::new();
            let tuf_keys: Vec<tuf1::Key> = public
                .iter()
                .map(tuf1::Key::from_public_key)
                .filter(|k| seen.insert(k.id()))
                .collect();
            check_threshold(role.as_str(), tuf_keys.len(), threshold)?;
            root.set_role_keys(role, &tuf_keys);
            if let Some(r) = root.roles.get_mut(role.as_str()) {
                r.threshold = threshold;
            }
        }
        root.validate()?;
        let targets = tuf1::Targets::new_in(
            Tuf1,
            1,
            Expires::after_in(Tuf1, now, settings.lifetime("targets"))?,
        );
        let mut repo = Self {
            layout,
            settings,
            published: Published::default(),
            staged: Staged::default(),
        };
        repo.staged.root = Some(unsigned(root));
        repo.staged
            .targets
            .insert("targets".to_owned(), unsigned(targets));
        if !root_signers.is_empty() {
            repo.sign_staged("root", root_signers).await?;
        }
        fs::create_dir_all(repo.layout.targets_dir())
            .map_err(layout::io_error(&repo.layout.targets_dir()))?;
        repo.settings.save(&repo.layout)?;
        repo.save()?;
        Ok(repo)
    }

    /// Writes the staged roles to `REPO/.sigil/staged/`.
    pub fn save(&self) -> Result<()> {
        self.staged.save(&self.layout)
    }

    /// The paths.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What is published.
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// What is staged.
    pub fn staged(&self) -> &Staged {
        &self.staged
    }

    /// The root that edits build on: the staged one, else the published one.
    pub fn root(&self) -> Result<&tuf1::Root> {
        if let Some(root) = &self.staged.root {
            return Ok(&root.signed);
        }
        self.published
            .root
            .as_ref()
            .map(Metadata::body)
            .ok_or_else(|| Error::repo(self.layout.root(), "no root (run `sigil tuf init`)"))
    }

    /// A targets role as edits see it: staged, else published.
    pub fn targets_role(&self, name: &str) -> Option<&tuf1::Targets> {
        self.staged
            .targets
            .get(name)
            .map(|s| &s.signed)
            .or_else(|| self.published.targets.get(name).map(Metadata::body))
    }

    /// Every targets role name (staged or published).
    pub fn targets_role_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .staged
            .targets
            .keys()
            .chain(self.published.targets.keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The role that delegates to `name` and its delegation entry.
    pub(crate) fn delegator(&self, name: &str) -> Option<(String, &crate::schema::DelegatedRole)> {
        self.targets_role_names().into_iter().find_map(|parent| {
            let role = self.targets_role(&parent)?;
            let d = role.delegated_roles().iter().find(|d| d.name == name)?;
            Some((parent, d))
        })
    }

    /// Stages targets role `name` for an edit (the published body, next version, fresh expiry,
    /// signatures dropped since the body changes) and returns its body.
    pub(crate) fn stage_targets(
        &mut self,
        name: &str,
        now: SystemTime,
    ) -> Result<&mut tuf1::Targets> {
        let expires = Expires::after_in(Tuf1, now, self.settings.lifetime(name))?;
        if !self.staged.targets.contains_key(name) {
            let published = self
                .published
                .targets
                .get(name)
                .ok_or_else(|| Error::NoSuchRole {
                    role: name.to_owned(),
                    reason: "not a targets role of this repository".into(),
                })?;
            let mut body = published.body().clone();
            body.version = next_version(name, body.version)?;
            self.staged.targets.insert(name.to_owned(), unsigned(body));
        }
        let staged = self
            .staged
            .targets
            .get_mut(name)
            .ok_or_else(|| Error::repo(name, "staged role vanished"))?;
        staged.signatures.clear();
        staged.signed.expires = expires;
        Ok(&mut staged.signed)
    }

    /// Stages root for an edit, as [`Self::stage_targets`] does.
    pub(crate) fn stage_root(&mut self, now: SystemTime) -> Result<&mut tuf1::Root> {
        let expires = Expires::after_in(Tuf1, now, self.settings.lifetime("root"))?;
        if self.staged.root.is_none() {
            let mut body = self.root()?.clone();
            body.version = next_version("root", body.version)?;
            self.staged.root = Some(unsigned(body));
        }
        let staged = self
            .staged
            .root
            .as_mut()
            .ok_or_else(|| Error::repo("root", "staged root vanished"))?;
        staged.signatures.clear();
        staged.signed.expires = expires;
        Ok(&mut staged.signed)
    }
}

pub(crate) fn unsigned<T: crate::schema::RoleBody>(body: T) -> Signed<T> {
    Signed {
        signed: body,
        signatures: Vec::new(),
    }
}

pub(crate) fn next_version(role: &str, version: u64) -> Result<u64> {
    version
        .checked_add(1)
        .filter(|v| *v <= tuf1::MAX_VERSION)
        .ok_or_else(|| Error::invalid(role, version, "no version left after this one"))
}

pub(crate) fn check_threshold(role: &str, keys: usize, threshold: u64) -> Result<()> {
    if keys == 0 || threshold == 0 || threshold > keys as u64 {
        return Err(Error::BadThreshold {
            role: role.to_owned(),
            keys,
            threshold,
        });
    }
    Ok(())
}

/// Reads what clients can fetch: the highest root, then timestamp → snapshot → the targets
/// roles the snapshot lists. Parsed strictly, not verified.
fn load_published(layout: &Layout) -> Result<Published> {
    let mut published = Published::default();
    let dir = layout.metadata_dir();
    let mut highest = 0u64;
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(v) = name
                .strip_suffix(".root.json")
                .and_then(|n| n.parse::<u64>().ok())
            {
                highest = highest.max(v);
            }
        }
    }
    if highest > 0 {
        published.root = Some(read_metadata(layout, "root", highest)?);
    }
    let Some(bytes) = layout::read_limited(&layout.timestamp())? else {
        return Ok(published);
    };
    let timestamp = Metadata::<tuf1::Timestamp>::from_bytes("timestamp", bytes)?;
    let listed = timestamp
        .body()
        .snapshot_meta()
        .map(|m| m.version)
        .ok_or_else(|| {
            Error::invalid(
                "timestamp",
                timestamp.version(),
                "snapshot.json is not listed",
            )
        })?;
    let snapshot: Metadata<tuf1::Snapshot> = read_metadata(layout, "snapshot", listed)?;
    for (file, meta) in &snapshot.body().meta {
        let Some(role) = file.strip_suffix(".json") else {
            continue;
        };
        let targets = read_metadata(layout, role, meta.version)?;
        published.targets.insert(role.to_owned(), targets);
    }
    published.snapshot = Some(snapshot);
    published.timestamp = Some(timestamp);
    Ok(published)
}

pub(crate) fn read_metadata<T: crate::schema::RoleBody>(
    layout: &Layout,
    role: &str,
    version: u64,
) -> Result<Metadata<T>> {
    let path = layout.versioned(role, version)?;
    let bytes = layout::read_limited(&path)?
        .ok_or_else(|| Error::repo(&path, "is missing but the current metadata needs it"))?;
    let meta = Metadata::<T>::from_bytes(role, bytes)?;
    if meta.version() != version {
        return Err(Error::invalid(
            role,
            meta.version(),
            format!("{} holds version {}", path.display(), meta.version()),
        ));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests;
