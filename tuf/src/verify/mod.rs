//! A client's full update walk over a Notary collection, with no IO: the caller fetches bytes
//! (from notary-server or the trust dir) and feeds them to an [`Updater`] in order — root chain,
//! timestamp, snapshot, targets, delegations — and gets a [`VerifiedCollection`] back.
//!
//! Checked on the way: root pinning (trust on first use, pinned key ids, or a cached root); the
//! root rotation chain (each new root signed by the previous root's threshold and by its own);
//! root certificates (CN = GUN, validity, no SHA-1), as the notary client requires; thresholds
//! over distinct keys; expiry (freeze attacks); versions against what was trusted before
//! (rollback); lengths and hashes from timestamp → snapshot → targets and delegations
//! (mix-and-match, tampering); delegation names, keys and path rules.
//!
//! Like the notary client, an expired or under-signed *delegation* does not fail the walk: it
//! is skipped and reported, and its targets are not trusted. Everything else is fatal.
//!
//! A hostile server is also bounded: signatures per file ([`signatures::MAX_SIGNATURES`],
//! each key verified once), root rotations per update ([`root::MAX_ROOT_ROTATIONS`]), and
//! delegated roles per walk and their depth ([`delegations::MAX_DELEGATED_ROLES`],
//! [`delegations::MAX_DELEGATION_DEPTH`]). A delegated role trusted before keeps its
//! rollback baseline until its parent stops delegating it; a snapshot that merely stops
//! listing it is refused ([`Error::Hidden`]).

mod collection;
pub mod delegations;
pub mod root;
pub mod signatures;

use std::collections::BTreeMap;
use std::time::SystemTime;

pub use collection::VerifiedCollection;
pub use delegations::{MAX_DELEGATED_ROLES, MAX_DELEGATION_DEPTH, is_skippable};
pub use root::MAX_ROOT_ROTATIONS;
pub use signatures::{MAX_SIGNATURES, verify_signatures};

use crate::error::{Error, Result};
use crate::schema::targets::PathRule;
use crate::schema::{
    FileMeta, Metadata, Role, RoleType, Root, Snapshot, Targets, Timestamp, TufKey, peek_version,
};
use crate::x509::Certificate;
use root::check_root_self;
use signatures::{any_key, check_threshold};

/// How the first root given to an [`Updater`] is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootTrust {
    /// A root trusted before (the trust dir's cached root.json). Its signatures are checked
    /// against its own keys to catch corruption; certificate expiry is not checked, because a
    /// newer root may replace it.
    Cached,
    /// Trust on first use: accept the root if its root certificates are valid for the GUN now
    /// and it is signed by its own threshold.
    FirstUse,
    /// Like [`RootTrust::FirstUse`], but only root keys whose TUF or canonical key id is in the
    /// list count (Notary's `trust_pinning.certs`).
    Pinned(Vec<String>),
    /// Like [`RootTrust::FirstUse`], but only root keys whose certificate chains to one of these
    /// CA certificates now count (Notary's `trust_pinning.ca`).
    PinnedCa(Vec<Certificate>),
}

/// Versions trusted before this update (from the trust dir's cache): anything older is a
/// rollback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriorVersions {
    /// timestamp.json version.
    pub timestamp: Option<u64>,
    /// snapshot.json version.
    pub snapshot: Option<u64>,
    /// targets.json version.
    pub targets: Option<u64>,
    /// Delegated role → version.
    pub delegations: BTreeMap<String, u64>,
}

impl PriorVersions {
    /// Records the version of a cached role file. Unparseable files are ignored, as the notary
    /// client ignores a corrupt cache.
    pub fn observe(&mut self, role: &str, bytes: &[u8]) {
        let Some(v) = peek_version(bytes) else {
            return;
        };
        match role {
            "timestamp" => self.timestamp = Some(v),
            "snapshot" => self.snapshot = Some(v),
            "targets" => self.targets = Some(v),
            "root" => {}
            name => {
                self.delegations.insert(name.to_owned(), v);
            }
        }
    }

    fn get(&self, role: &str) -> Option<u64> {
        match role {
            "timestamp" => self.timestamp,
            "snapshot" => self.snapshot,
            "targets" => self.targets,
            name => self.delegations.get(name).copied(),
        }
    }
}

/// A delegated role that was skipped during the walk, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRole {
    /// Role name.
    pub role: String,
    /// The error that made it untrusted.
    pub reason: String,
}

/// A target as found in a verified role.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetEntry {
    /// Target path.
    pub name: String,
    /// Role that lists it.
    pub role: String,
    /// Length and hashes.
    pub meta: FileMeta,
}

fn check_expiry<T: Role>(role: &str, body: &T, now: SystemTime) -> Result<()> {
    if body.expires().is_expired_at(now) {
        return Err(Error::Expired {
            role: role.to_owned(),
            version: body.version(),
            expires: body.expires().to_string(),
        });
    }
    Ok(())
}

fn check_rollback(role: &str, version: u64, prior: Option<u64>) -> Result<()> {
    match prior {
        Some(trusted) if version < trusted => Err(Error::Rollback {
            role: role.to_owned(),
            version,
            trusted,
        }),
        _ => Ok(()),
    }
}

/// Feeds a collection's files through the update walk, one step at a time.
#[derive(Debug)]
pub struct Updater {
    gun: String,
    now: SystemTime,
    root: Metadata<Root>,
    prior: PriorVersions,
    timestamp: Option<Metadata<Timestamp>>,
    snapshot: Option<Metadata<Snapshot>>,
    targets: Option<Metadata<Targets>>,
    delegations: BTreeMap<String, Metadata<Targets>>,
    rules: BTreeMap<String, PathRule>,
    skipped: Vec<SkippedRole>,
    /// Delegated roles still to visit (a stack: the next one on top).
    pending: Vec<String>,
    /// Delegated roles handed out by [`Updater::next_delegation`] so far.
    visited: usize,
    /// Root rotations followed in this update.
    rotations: u64,
}

impl Updater {
    /// Starts from a root trusted as `trust` says, for collection `gun`, checking times
    /// against `now`.
    pub fn new(gun: &str, root: Vec<u8>, trust: RootTrust, now: SystemTime) -> Result<Self> {
        let root = Metadata::<Root>::from_bytes("root", root)?;
        check_root_self(&root, gun, now, &trust)?;
        Ok(Self {
            gun: gun.to_owned(),
            now,
            root,
            prior: PriorVersions::default(),
            timestamp: None,
            snapshot: None,
            targets: None,
            delegations: BTreeMap::new(),
            rules: BTreeMap::new(),
            skipped: Vec::new(),
            pending: Vec::new(),
            visited: 0,
            rotations: 0,
        })
    }

    /// Forgets everything loaded under the previous root.
    fn reset_after_root(&mut self) {
        self.timestamp = None;
        self.snapshot = None;
        self.targets = None;
        self.delegations.clear();
        self.rules.clear();
        self.skipped.clear();
        self.pending.clear();
        self.visited = 0;
    }

    /// Sets the versions trusted before, for rollback checks.
    pub fn with_prior(mut self, prior: PriorVersions) -> Self {
        self.prior = prior;
        self
    }

    /// The root trusted so far.
    pub fn root(&self) -> &Metadata<Root> {
        &self.root
    }

    fn top_level_keys(&self, role: RoleType) -> (Vec<(&str, &TufKey)>, u64) {
        let root = self.root.body();
        (
            root.role_keys(role),
            root.role(role).map_or(0, |r| r.threshold),
        )
    }

    /// Loads timestamp.json, after checking that the trusted root has not expired.
    pub fn update_timestamp(&mut self, bytes: Vec<u8>) -> Result<()> {
        check_expiry("root", self.root.body(), self.now)?;
        let ts = Metadata::<Timestamp>::from_bytes("timestamp", bytes)?;
        ts.body().validate()?;
        let (keys, threshold) = self.top_level_keys(RoleType::Timestamp);
        check_threshold("timestamp", ts.signed(), &keys, threshold, &any_key)?;
        check_rollback("timestamp", ts.version(), self.prior.get("timestamp"))?;
        check_expiry("timestamp", ts.body(), self.now)?;
        self.timestamp = Some(ts);
        Ok(())
    }

    /// What the timestamp says snapshot.json must be (its sha256 hex names the consistent URL
    /// `snapshot.<hex>.json`).
    pub fn snapshot_meta(&self) -> Option<&FileMeta> {
        self.timestamp.as_ref().and_then(|t| t.body().snapshot())
    }

    /// Loads snapshot.json: length and hashes as the timestamp lists them, signatures,
    /// version, expiry, and the root it lists must be the trusted root.
    pub fn update_snapshot(&mut self, bytes: Vec<u8>) -> Result<()> {
        let ts = self.timestamp.as_ref().ok_or_else(|| Error::UpdateOrder {
            role: "snapshot".into(),
            needs: "timestamp".into(),
        })?;
        let listed = ts.body().snapshot().ok_or_else(|| Error::NotListed {
            role: "snapshot".into(),
            listed_in: "timestamp".into(),
            version: ts.version(),
        })?;
        listed.check("snapshot", "timestamp", ts.version(), &bytes)?;
        let snap = Metadata::<Snapshot>::from_bytes("snapshot", bytes)?;
        snap.body().validate()?;
        let (keys, threshold) = self.top_level_keys(RoleType::Snapshot);
        check_threshold("snapshot", snap.signed(), &keys, threshold, &any_key)?;
        check_rollback("snapshot", snap.version(), self.prior.get("snapshot"))?;
        check_expiry("snapshot", snap.body(), self.now)?;
        if let Some(root_meta) = snap.body().meta.get("root") {
            root_meta.check("root", "snapshot", snap.version(), self.root.bytes())?;
        }
        self.snapshot = Some(snap);
        Ok(())
    }

    /// What the snapshot says a role file must be (sha256 hex for `<role>.<hex>.json`).
    pub fn role_meta(&self, role: &str) -> Option<&FileMeta> {
        self.snapshot.as_ref().and_then(|s| s.body().meta.get(role))
    }

    fn listed_in_snapshot(&self, role: &str, bytes: &[u8]) -> Result<()> {
        let snap = self.snapshot.as_ref().ok_or_else(|| Error::UpdateOrder {
            role: role.into(),
            needs: "snapshot".into(),
        })?;
        let listed = snap.body().meta.get(role).ok_or_else(|| Error::NotListed {
            role: role.into(),
            listed_in: "snapshot".into(),
            version: snap.version(),
        })?;
        listed.check(role, "snapshot", snap.version(), bytes)
    }

    /// Loads targets.json.
    pub fn update_targets(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.listed_in_snapshot("targets", &bytes)?;
        let targets = Metadata::<Targets>::from_bytes("targets", bytes)?;
        targets.body().validate("targets")?;
        let (keys, threshold) = self.top_level_keys(RoleType::Targets);
        check_threshold("targets", targets.signed(), &keys, threshold, &any_key)?;
        check_rollback("targets", targets.version(), self.prior.get("targets"))?;
        check_expiry("targets", targets.body(), self.now)?;
        self.targets = Some(targets);
        self.rules
            .insert("targets".to_owned(), PathRule::everything());
        self.delegations.clear();
        self.pending.clear();
        self.queue_children("targets");
        Ok(())
    }

    /// Ends the walk: timestamp, snapshot and targets must have been loaded. Roles still
    /// queued are left out (their targets are not trusted), but a hidden one is refused here
    /// as in [`Updater::next_delegation`].
    pub fn finish(mut self) -> Result<VerifiedCollection> {
        let need = |role: &str| Error::UpdateOrder {
            role: "collection".into(),
            needs: role.into(),
        };
        while self.next_delegation()?.is_some() {}
        let baselines = self.baselines();
        Ok(VerifiedCollection {
            gun: self.gun,
            root: self.root,
            timestamp: self.timestamp.ok_or_else(|| need("timestamp"))?,
            snapshot: self.snapshot.ok_or_else(|| need("snapshot"))?,
            targets: self.targets.ok_or_else(|| need("targets"))?,
            delegations: self.delegations,
            baselines,
            rules: self.rules,
            skipped: self.skipped,
        })
    }
}

/// Every file of a collection, as fetched: the bytes the [`Updater`] needs.
#[derive(Debug, Clone, Default)]
pub struct CollectionFiles {
    /// Roots after the trusted one, in version order (intermediates, then the latest).
    pub root_chain: Vec<Vec<u8>>,
    /// timestamp.json.
    pub timestamp: Vec<u8>,
    /// snapshot.json.
    pub snapshot: Vec<u8>,
    /// targets.json.
    pub targets: Vec<u8>,
    /// Delegated role → file.
    pub delegations: BTreeMap<String, Vec<u8>>,
}

/// Runs the whole walk over files already fetched.
pub fn verify_collection(
    gun: &str,
    trusted_root: Vec<u8>,
    trust: RootTrust,
    files: CollectionFiles,
    prior: PriorVersions,
    now: SystemTime,
) -> Result<VerifiedCollection> {
    let mut up = Updater::new(gun, trusted_root, trust, now)?.with_prior(prior);
    for root in files.root_chain {
        up.update_root(root)?;
    }
    up.update_timestamp(files.timestamp)?;
    up.update_snapshot(files.snapshot)?;
    up.update_targets(files.targets)?;
    let mut delegations = files.delegations;
    while let Some((role, _)) = up.next_delegation()? {
        let Some(bytes) = delegations.remove(&role) else {
            continue;
        };
        if let Err(e) = up.update_delegation(&role, bytes) {
            if is_skippable(&e) {
                up.skip_delegation(&role, &e);
            } else {
                return Err(e);
            }
        }
    }
    up.finish()
}
