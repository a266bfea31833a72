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

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::key::PublicKey;
use crate::schema::targets::PathRule;
use crate::schema::{
    FileMeta, Metadata, Role, RoleType, Root, Signed, Snapshot, Targets, Timestamp, TufKey,
    check_delegation_name, check_targets_role, parent_role, peek_version,
};
use crate::x509::Certificate;

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

/// Counts distinct keys with a valid signature. `key_ok` may refuse a key (a root certificate
/// that is not valid for the GUN, say); reasons are collected for the error message.
fn count_valid(
    message: &[u8],
    signatures: &[crate::schema::Signature],
    keys: &[(&str, &TufKey)],
    key_ok: &dyn Fn(&TufKey) -> std::result::Result<(), String>,
) -> (usize, Vec<String>) {
    let mut valid: Vec<PublicKey> = Vec::new();
    let mut reasons = Vec::new();
    if signatures.is_empty() {
        reasons.push("no signatures".to_owned());
    }
    for sig in signatures {
        let short = sig.keyid.get(..8).unwrap_or(&sig.keyid);
        let Some((_, key)) = keys.iter().find(|(id, _)| *id == sig.keyid) else {
            reasons.push(format!(
                "signature by {short}… is not from a key of this role"
            ));
            continue;
        };
        if let Err(r) = key_ok(key) {
            reasons.push(format!("key {short}…: {r}"));
            continue;
        }
        if let Err(e) = key.verify(&sig.method, message, &sig.sig) {
            reasons.push(e.to_string());
            continue;
        }
        if let Ok(public) = key.to_public_key()
            && !valid.contains(&public)
        {
            valid.push(public);
        }
    }
    (valid.len(), reasons)
}

/// Checks that `signed` carries `threshold` valid signatures from `keys`.
fn check_threshold<T: Role>(
    role: &str,
    signed: &Signed<T>,
    keys: &[(&str, &TufKey)],
    threshold: u64,
    key_ok: &dyn Fn(&TufKey) -> std::result::Result<(), String>,
) -> Result<()> {
    let message = signed.canonical_signed()?;
    let (valid, reasons) = count_valid(&message, &signed.signatures, keys, key_ok);
    if threshold >= 1 && valid as u64 >= threshold {
        return Ok(());
    }
    Err(Error::ThresholdNotMet {
        role: role.to_owned(),
        version: signed.signed.version(),
        valid,
        threshold,
        reason: reasons.join("; "),
    })
}

/// Checks that `signed` carries valid signatures from at least `threshold` distinct keys among
/// `keys` (TUF id, key). `role` names it in the error.
pub fn verify_signatures<T: Role>(
    role: &str,
    signed: &Signed<T>,
    keys: &[(&str, &TufKey)],
    threshold: u64,
) -> Result<()> {
    check_threshold(role, signed, keys, threshold, &any_key)
}

fn any_key(_: &TufKey) -> std::result::Result<(), String> {
    Ok(())
}

/// The rule for root keys: certificates valid as root leaves for `gun` (at `now` if given).
fn root_key_ok(
    gun: &str,
    now: Option<SystemTime>,
) -> impl Fn(&TufKey) -> std::result::Result<(), String> + '_ {
    move |key: &TufKey| match key.certificate() {
        Ok(Some(cert)) => cert.check_root_leaf(gun, now),
        Ok(None) => Err(format!(
            "root keys must be certificates (ecdsa-x509 or rsa-x509), not {}",
            key.keytype
        )),
        Err(e) => Err(e.to_string()),
    }
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

/// Verifies a root against its own keys as `trust` says: structure, root-key certificates
/// (valid at `now` unless the root was trusted before), pins, threshold.
fn check_root_self(
    root: &Metadata<Root>,
    gun: &str,
    now: SystemTime,
    trust: &RootTrust,
) -> Result<()> {
    let cert_time = match trust {
        RootTrust::Cached => None,
        _ => Some(now),
    };
    let body = root.body();
    body.validate()?;
    let mut keys = body.role_keys(RoleType::Root);
    let key_ids = || {
        body.role(RoleType::Root)
            .map(|r| r.keyids.join(", "))
            .unwrap_or_default()
    };
    match trust {
        RootTrust::Cached | RootTrust::FirstUse => {}
        RootTrust::Pinned(pins) => {
            keys.retain(|(id, key)| {
                pins.iter()
                    .any(|p| p == id || key.canonical_id().is_ok_and(|c| c == *p))
            });
            if keys.is_empty() {
                return Err(Error::NotPinned {
                    version: body.version,
                    reason: format!("pinned {}; root keys are {}", pins.join(", "), key_ids()),
                });
            }
        }
        RootTrust::PinnedCa(cas) => {
            let mut why = Vec::new();
            keys.retain(|(id, key)| {
                let verdict = match key.certificate_chain() {
                    Ok(chain) => match chain.split_first() {
                        Some((leaf, intermediates)) => leaf.chains_to(intermediates, cas, now),
                        None => Err(format!("{} is not a certificate", key.keytype)),
                    },
                    Err(e) => Err(e.to_string()),
                };
                verdict
                    .map_err(|e| why.push(format!("key {id}: {e}")))
                    .is_ok()
            });
            if keys.is_empty() {
                return Err(Error::NotPinned {
                    version: body.version,
                    reason: format!(
                        "no root key's certificate chains to the pinned CA ({})",
                        why.join("; ")
                    ),
                });
            }
        }
    }
    let threshold = body.role(RoleType::Root).map_or(0, |r| r.threshold);
    check_threshold(
        "root",
        root.signed(),
        &keys,
        threshold,
        &root_key_ok(gun, cert_time),
    )
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
        })
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

    /// The root versions to fetch (`N.root.json`) before `latest` (the server's root.json):
    /// every version strictly between the trusted one and `latest`.
    pub fn intermediate_root_versions(&self, latest: u64) -> std::ops::Range<u64> {
        let next = self.root.version().saturating_add(1);
        next..latest.max(next)
    }

    /// Moves trust to the next root: version equal to (re-signed) or one above the trusted
    /// root, signed by the trusted root's root threshold and by its own, with root
    /// certificates valid now. Returns whether the root changed. Call before the timestamp.
    pub fn update_root(&mut self, bytes: Vec<u8>) -> Result<bool> {
        if bytes == self.root.bytes() {
            return Ok(false);
        }
        let new = Metadata::<Root>::from_bytes("root", bytes)?;
        let (version, trusted) = (new.version(), self.root.version());
        if version < trusted {
            return Err(Error::Rollback {
                role: "root".into(),
                version,
                trusted,
            });
        }
        if version > trusted + 1 {
            return Err(Error::RootVersion {
                version,
                expected: trusted + 1,
            });
        }
        new.body().validate()?;
        let old = self.root.body();
        let old_keys = old.role_keys(RoleType::Root);
        let old_threshold = old.role(RoleType::Root).map_or(0, |r| r.threshold);
        let message = new.signed().canonical_signed()?;
        let (valid, reasons) = count_valid(
            &message,
            &new.signed().signatures,
            &old_keys,
            &root_key_ok(&self.gun, None),
        );
        if old_threshold < 1 || (valid as u64) < old_threshold {
            return Err(Error::RootRotationUntrusted {
                version,
                trusted_version: trusted,
                valid,
                threshold: old_threshold,
                reason: reasons.join("; "),
            });
        }
        // A rotated root's own certificates must be valid now, as on first use.
        check_root_self(&new, &self.gun, self.now, &RootTrust::FirstUse)?;
        // Fast-forward recovery: new timestamp/snapshot keys reset their rollback baselines.
        for role in [RoleType::Timestamp, RoleType::Snapshot] {
            if old.role(role).map(|r| &r.keyids) != new.body().role(role).map(|r| &r.keyids) {
                match role {
                    RoleType::Timestamp => self.prior.timestamp = None,
                    _ => self.prior.snapshot = None,
                }
            }
        }
        self.root = new;
        self.timestamp = None;
        self.snapshot = None;
        self.targets = None;
        self.delegations.clear();
        self.rules.clear();
        self.skipped.clear();
        Ok(true)
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
        Ok(())
    }

    fn loaded(&self, role: &str) -> Option<&Metadata<Targets>> {
        if role == "targets" {
            self.targets.as_ref()
        } else {
            self.delegations.get(role)
        }
    }

    /// Delegated roles to fetch next, in walk order, with what the snapshot says they must be.
    /// Roles the snapshot does not list have never been published and hold no targets.
    pub fn pending_delegations(&self) -> Vec<(String, FileMeta)> {
        let mut out = Vec::new();
        self.collect_pending("targets", &mut out);
        out
    }

    fn collect_pending(&self, role: &str, out: &mut Vec<(String, FileMeta)>) {
        let Some(meta) = self.loaded(role) else {
            return;
        };
        for child in meta.body().delegated_roles() {
            if self.delegations.contains_key(&child.name) {
                self.collect_pending(&child.name, out);
            } else if !self.skipped.iter().any(|s| s.role == child.name)
                && let Some(m) = self.role_meta(&child.name)
            {
                out.push((child.name.clone(), m.clone()));
            }
        }
    }

    /// Loads a delegated role's file: listed in snapshot, delegated by its (already loaded)
    /// parent, signed by the parent's threshold of the delegation's keys, not rolled back or
    /// expired. Its path rule is the parent's, restricted by the delegation.
    pub fn update_delegation(&mut self, role: &str, bytes: Vec<u8>) -> Result<()> {
        check_delegation_name(role)?;
        let parent_name = parent_role(role);
        let parent = self.loaded(parent_name).ok_or_else(|| Error::UpdateOrder {
            role: role.into(),
            needs: parent_name.into(),
        })?;
        let parent_version = parent.version();
        let (entry, keys) = parent
            .body()
            .delegation(role)
            .ok_or_else(|| Error::NoSuchRole {
                role: role.into(),
                reason: format!("not delegated by {parent_name} v{parent_version}"),
            })?;
        let parent_rule = self.rules.get(parent_name).cloned().unwrap_or_default();
        let rule = parent_rule.restrict(entry);
        let threshold = entry.threshold;
        let keys: Vec<(String, TufKey)> = keys
            .into_iter()
            .map(|(id, k)| (id.to_owned(), k.clone()))
            .collect();
        self.listed_in_snapshot(role, &bytes)?;
        let meta = Metadata::<Targets>::from_bytes(role, bytes)?;
        meta.body().validate(role)?;
        let key_refs: Vec<(&str, &TufKey)> = keys.iter().map(|(i, k)| (i.as_str(), k)).collect();
        check_threshold(role, meta.signed(), &key_refs, threshold, &any_key)?;
        check_rollback(role, meta.version(), self.prior.get(role))?;
        check_expiry(role, meta.body(), self.now)?;
        self.delegations.insert(role.to_owned(), meta);
        self.rules.insert(role.to_owned(), rule);
        Ok(())
    }

    /// Records that a delegation could not be trusted, so the walk goes on without it.
    pub fn skip_delegation(&mut self, role: &str, reason: &Error) {
        self.skipped.push(SkippedRole {
            role: role.to_owned(),
            reason: reason.to_string(),
        });
    }

    /// Ends the walk: timestamp, snapshot and targets must have been loaded.
    pub fn finish(self) -> Result<VerifiedCollection> {
        let need = |role: &str| Error::UpdateOrder {
            role: "collection".into(),
            needs: role.into(),
        };
        Ok(VerifiedCollection {
            gun: self.gun,
            root: self.root,
            timestamp: self.timestamp.ok_or_else(|| need("timestamp"))?,
            snapshot: self.snapshot.ok_or_else(|| need("snapshot"))?,
            targets: self.targets.ok_or_else(|| need("targets"))?,
            delegations: self.delegations,
            rules: self.rules,
            skipped: self.skipped,
        })
    }
}

/// Whether a delegation error is one the notary client tolerates (skips the role).
pub fn is_skippable(e: &Error) -> bool {
    matches!(e, Error::Expired { .. } | Error::ThresholdNotMet { .. })
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
    loop {
        let pending: Vec<String> = up
            .pending_delegations()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| delegations.contains_key(name))
            .collect();
        let Some(role) = pending.into_iter().next() else {
            break;
        };
        let bytes = delegations.remove(&role).unwrap_or_default();
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

/// A collection whose every file has been verified for one GUN at one time.
#[derive(Debug, Clone)]
pub struct VerifiedCollection {
    gun: String,
    root: Metadata<Root>,
    timestamp: Metadata<Timestamp>,
    snapshot: Metadata<Snapshot>,
    targets: Metadata<Targets>,
    delegations: BTreeMap<String, Metadata<Targets>>,
    rules: BTreeMap<String, PathRule>,
    skipped: Vec<SkippedRole>,
}

impl VerifiedCollection {
    /// The GUN.
    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// root.json.
    pub fn root(&self) -> &Metadata<Root> {
        &self.root
    }

    /// timestamp.json.
    pub fn timestamp(&self) -> &Metadata<Timestamp> {
        &self.timestamp
    }

    /// snapshot.json.
    pub fn snapshot(&self) -> &Metadata<Snapshot> {
        &self.snapshot
    }

    /// targets.json.
    pub fn targets(&self) -> &Metadata<Targets> {
        &self.targets
    }

    /// A verified delegated role.
    pub fn delegation(&self, role: &str) -> Option<&Metadata<Targets>> {
        self.delegations.get(role)
    }

    /// Verified delegated roles by name.
    pub fn delegations(&self) -> &BTreeMap<String, Metadata<Targets>> {
        &self.delegations
    }

    /// `targets` or a verified delegation.
    pub fn targets_role(&self, role: &str) -> Option<&Metadata<Targets>> {
        if role == "targets" {
            Some(&self.targets)
        } else {
            self.delegations.get(role)
        }
    }

    /// The effective path rule of a verified targets role.
    pub fn path_rule(&self, role: &str) -> Option<&PathRule> {
        self.rules.get(role)
    }

    /// Delegations that were skipped (expired or under-signed) and why.
    pub fn skipped(&self) -> &[SkippedRole] {
        &self.skipped
    }

    /// The versions now trusted, as the baseline for the next update.
    pub fn prior_versions(&self) -> PriorVersions {
        PriorVersions {
            timestamp: Some(self.timestamp.version()),
            snapshot: Some(self.snapshot.version()),
            targets: Some(self.targets.version()),
            delegations: self
                .delegations
                .iter()
                .map(|(n, m)| (n.clone(), m.version()))
                .collect(),
        }
    }

    /// Every file by role name, to cache in the trust dir (`metadata/<role>.json`).
    pub fn files(&self) -> BTreeMap<String, &[u8]> {
        let mut out = BTreeMap::new();
        out.insert("root".to_owned(), self.root.bytes());
        out.insert("timestamp".to_owned(), self.timestamp.bytes());
        out.insert("snapshot".to_owned(), self.snapshot.bytes());
        out.insert("targets".to_owned(), self.targets.bytes());
        for (name, m) in &self.delegations {
            out.insert(name.clone(), m.bytes());
        }
        out
    }

    /// Verified targets roles under `start` (itself first), pre-order, in delegation order.
    pub fn walk<'a>(&'a self, start: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut stack: Vec<&str> = match self.targets_role(start) {
            Some(_) => vec![start],
            None => Vec::new(),
        };
        while let Some(role) = stack.pop() {
            out.push(role);
            if let Some(m) = self.targets_role(role) {
                for child in m.body().delegated_roles().iter().rev() {
                    if self.delegations.contains_key(&child.name) {
                        stack.push(child.name.as_str());
                    }
                }
            }
        }
        out
    }

    /// Targets visible from `roles` (default: `targets`), the first listing of each name in
    /// walk order winning, and only where the listing role may sign that path (`notary list`).
    pub fn list_targets(&self, roles: &[&str]) -> Vec<TargetEntry> {
        let roles: Vec<&str> = if roles.is_empty() {
            vec!["targets"]
        } else {
            roles.to_vec()
        };
        let mut out: BTreeMap<String, TargetEntry> = BTreeMap::new();
        for start in roles {
            for role in self.walk(start) {
                let (Some(m), Some(rule)) = (self.targets_role(role), self.rules.get(role)) else {
                    continue;
                };
                for (name, meta) in &m.body().targets {
                    if out.contains_key(name) || !rule.allows(name) {
                        continue;
                    }
                    out.insert(
                        name.clone(),
                        TargetEntry {
                            name: name.clone(),
                            role: role.to_owned(),
                            meta: meta.clone(),
                        },
                    );
                }
            }
        }
        out.into_values().collect()
    }

    /// Finds a target by name, walking from `roles` (default: `targets`) (`notary lookup`).
    /// A listing by a role that may not sign that path is refused.
    pub fn lookup(&self, name: &str, roles: &[&str]) -> Result<TargetEntry> {
        let roles: Vec<&str> = if roles.is_empty() {
            vec!["targets"]
        } else {
            roles.to_vec()
        };
        let mut refused = None;
        for start in &roles {
            check_targets_role(start)?;
            for role in self.walk(start) {
                let (Some(m), Some(rule)) = (self.targets_role(role), self.rules.get(role)) else {
                    continue;
                };
                if let Some(meta) = m.body().targets.get(name) {
                    if rule.allows(name) {
                        return Ok(TargetEntry {
                            name: name.to_owned(),
                            role: role.to_owned(),
                            meta: meta.clone(),
                        });
                    }
                    refused.get_or_insert_with(|| Error::PathNotDelegated {
                        role: role.to_owned(),
                        target: name.to_owned(),
                    });
                }
            }
        }
        Err(refused.unwrap_or_else(|| Error::TargetNotFound {
            name: name.to_owned(),
            reason: format!("in {}", roles.join(", ")),
        }))
    }

    /// Looks a target up and checks `content` against its length and hashes
    /// (`notary verify`): [`Error::LengthMismatch`] or [`Error::HashMismatch`] name the target
    /// and the role listing it.
    pub fn verify_target(&self, name: &str, content: &[u8], roles: &[&str]) -> Result<TargetEntry> {
        let entry = self.lookup(name, roles)?;
        entry.meta.check(
            name,
            &entry.role,
            self.targets_version(&entry.role),
            content,
        )?;
        Ok(entry)
    }

    fn targets_version(&self, role: &str) -> u64 {
        self.targets_role(role).map_or(0, Metadata::version)
    }
}
