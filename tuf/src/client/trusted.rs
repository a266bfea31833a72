//! The metadata a client trusts, and the checks of the specification's client workflow (§5.3 to
//! §5.6) each new file passes before it joins the set. No IO here: the [`super::Updater`] fetches
//! and stores, this type decides.
//!
//! The order of the checks follows the specification: signatures before versions, versions
//! before expiry, expiry of a role checked against one instant fixed when the update starts. A
//! file that fails only its expiry or its version-against-listing check still becomes the
//! rollback baseline (as in python-tuf): the caller then fails, but a later file in the same
//! update is compared with it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::schema::dialect::verify_threshold;
use crate::schema::tuf1::{self, Key, SNAPSHOT_FILE, meta_name};
use crate::schema::{Expires, Metadata, RoleType};

/// One trusted targets role and the role whose delegation it was verified against.
#[derive(Debug, Clone)]
struct TrustedTargets {
    meta: Metadata<tuf1::Targets>,
    delegator: String,
}

/// Root, timestamp, snapshot and the targets roles trusted so far in one update.
#[derive(Debug, Clone)]
pub struct TrustedSet {
    now: SystemTime,
    root: Metadata<tuf1::Root>,
    timestamp: Option<Metadata<tuf1::Timestamp>>,
    snapshot: Option<Metadata<tuf1::Snapshot>>,
    targets: BTreeMap<String, TrustedTargets>,
}

/// Whether `expires` has passed at `now` (at the very second it is expired, as in python-tuf).
fn expired(expires: &Expires, now: SystemTime) -> bool {
    OffsetDateTime::from(now) >= OffsetDateTime::from(expires.to_system_time())
}

fn check_fresh(role: &str, version: u64, expires: &Expires, now: SystemTime) -> Result<()> {
    if expired(expires, now) {
        return Err(Error::Expired {
            role: role.to_owned(),
            version,
            expires: expires.as_str().to_owned(),
        });
    }
    Ok(())
}

fn order(role: &str, needs: &str) -> Error {
    Error::UpdateOrder {
        role: role.to_owned(),
        needs: needs.to_owned(),
    }
}

impl TrustedSet {
    /// Starts from the locally trusted root: well formed and signed by a threshold of its own
    /// root keys (it may be expired: a newer root can still replace it). `now` is the instant
    /// every expiry is checked against.
    pub fn new(root: &[u8], now: SystemTime) -> Result<Self> {
        let root = Metadata::<tuf1::Root>::from_bytes("root", root.to_vec())?;
        root.body().validate()?;
        let (keys, threshold) = top_level_keys(root.body(), RoleType::Root);
        verify_threshold("root", root.signed(), &keys, threshold)?;
        Ok(Self {
            now,
            root,
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
        })
    }

    /// The trusted root.
    pub fn root(&self) -> &Metadata<tuf1::Root> {
        &self.root
    }

    /// The trusted timestamp, if loaded.
    pub fn timestamp(&self) -> Option<&Metadata<tuf1::Timestamp>> {
        self.timestamp.as_ref()
    }

    /// The trusted snapshot, if loaded.
    pub fn snapshot(&self) -> Option<&Metadata<tuf1::Snapshot>> {
        self.snapshot.as_ref()
    }

    /// The targets role `role`, if it was verified against `delegator`'s delegation (`root` for
    /// `targets`). A role reached through another delegator must be verified again.
    pub fn targets(&self, role: &str, delegator: &str) -> Option<&Metadata<tuf1::Targets>> {
        self.targets
            .get(role)
            .filter(|t| t.delegator == delegator)
            .map(|t| &t.meta)
    }

    /// §5.3: the next root, signed by a threshold of the trusted root's keys and of its own,
    /// exactly one version above it. Only before timestamp is loaded.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<()> {
        if self.timestamp.is_some() {
            return Err(order("root", "no timestamp (root comes first)"));
        }
        let new = Metadata::<tuf1::Root>::from_bytes("root", bytes.to_vec())?;
        let trusted_version = self.root.version();
        let (old_keys, old_threshold) = top_level_keys(self.root.body(), RoleType::Root);
        match verify_threshold("root", new.signed(), &old_keys, old_threshold) {
            Err(Error::ThresholdNotMet {
                version,
                valid,
                threshold,
                reason,
                ..
            }) => {
                return Err(Error::RootRotationUntrusted {
                    version,
                    trusted_version,
                    valid,
                    threshold,
                    reason,
                });
            }
            other => other?,
        };
        if new.version() != trusted_version + 1 {
            return Err(Error::RootVersion {
                version: new.version(),
                expected: trusted_version + 1,
            });
        }
        new.body().validate()?;
        let (keys, threshold) = top_level_keys(new.body(), RoleType::Root);
        verify_threshold("root", new.signed(), &keys, threshold)?;
        self.root = new;
        Ok(())
    }

    /// §5.4: a timestamp signed by root's timestamp keys, not older than the trusted one, not
    /// listing an older snapshot. Returns `false` when it has the trusted version (the trusted
    /// one is kept, §5.4.3.1). The final root must not have expired (§5.3.10).
    pub fn update_timestamp(&mut self, bytes: &[u8]) -> Result<bool> {
        if self.snapshot.is_some() {
            return Err(order("timestamp", "no snapshot (timestamp comes first)"));
        }
        let root = self.root.body();
        check_fresh("root", root.version, &root.expires, self.now)?;
        let new = Metadata::<tuf1::Timestamp>::from_bytes("timestamp", bytes.to_vec())?;
        let (keys, threshold) = top_level_keys(root, RoleType::Timestamp);
        verify_threshold("timestamp", new.signed(), &keys, threshold)?;
        new.body().validate()?;
        if let Some(old) = &self.timestamp {
            if new.version() < old.version() {
                return Err(rollback("timestamp", new.version(), old.version()));
            }
            if new.version() == old.version() {
                return Ok(false);
            }
            let (new_snap, old_snap) = (snapshot_version(new.body()), snapshot_version(old.body()));
            if new_snap < old_snap {
                return Err(rollback("snapshot", new_snap, old_snap));
            }
        }
        let (version, expires) = (new.version(), new.body().expires.clone());
        self.timestamp = Some(new);
        check_fresh("timestamp", version, &expires, self.now)?;
        Ok(true)
    }

    /// §5.5: a snapshot matching timestamp's listing (length and hashes, unless `local`: the
    /// stored copy is re-verified by signature only), signed by root's snapshot keys, listing
    /// every role the trusted snapshot listed at no lower version; then not expired and of the
    /// version timestamp lists.
    pub fn update_snapshot(&mut self, bytes: &[u8], local: bool) -> Result<()> {
        let Some(timestamp) = &self.timestamp else {
            return Err(order("snapshot", "timestamp"));
        };
        if !self.targets.is_empty() {
            return Err(order("snapshot", "no targets role (snapshot comes first)"));
        }
        let ts = timestamp.body();
        check_fresh("timestamp", ts.version, &ts.expires, self.now)?;
        let listing = ts
            .snapshot_meta()
            .ok_or_else(|| Error::invalid("timestamp", ts.version, "snapshot.json not listed"))?;
        if !local {
            listing.check("snapshot", "timestamp", ts.version, bytes)?;
        }
        let new = Metadata::<tuf1::Snapshot>::from_bytes("snapshot", bytes.to_vec())?;
        let (keys, threshold) = top_level_keys(self.root.body(), RoleType::Snapshot);
        verify_threshold("snapshot", new.signed(), &keys, threshold)?;
        new.body().validate()?;
        if let Some(old) = &self.snapshot {
            for (name, old_meta) in &old.body().meta {
                let Some(new_meta) = new.body().meta.get(name) else {
                    return Err(Error::invalid(
                        "snapshot",
                        new.version(),
                        format!(
                            "{name} v{} was listed in the trusted snapshot v{} and is gone \
                             (a rollback)",
                            old_meta.version,
                            old.version()
                        ),
                    ));
                };
                if new_meta.version < old_meta.version {
                    return Err(rollback(name, new_meta.version, old_meta.version));
                }
            }
        }
        self.snapshot = Some(new);
        self.check_snapshot_final().map(|_| ())
    }

    /// The trusted snapshot is not expired and has the version timestamp lists.
    fn check_snapshot_final(&self) -> Result<&Metadata<tuf1::Snapshot>> {
        let (Some(timestamp), Some(snapshot)) = (&self.timestamp, &self.snapshot) else {
            return Err(order("targets", "snapshot"));
        };
        let s = snapshot.body();
        check_fresh("snapshot", s.version, &s.expires, self.now)?;
        let listed = snapshot_version(timestamp.body());
        if s.version != listed {
            return Err(Error::invalid(
                "snapshot",
                s.version,
                format!(
                    "timestamp v{} lists snapshot v{listed}",
                    timestamp.version()
                ),
            ));
        }
        Ok(snapshot)
    }

    /// §5.6 and §5.7: the targets role `role` as delegated by `delegator` (`root` for the
    /// top-level `targets`): listed in snapshot with these exact bytes' length and hashes and
    /// this version, signed by a threshold of the delegation's keys, not expired.
    pub fn update_targets(&mut self, role: &str, delegator: &str, bytes: &[u8]) -> Result<()> {
        let snapshot = self.check_snapshot_final()?;
        let snap_version = snapshot.version();
        let listing = snapshot
            .body()
            .meta
            .get(&meta_name(role))
            .ok_or_else(|| Error::NotListed {
                role: role.to_owned(),
                listed_in: "snapshot".into(),
                version: snap_version,
            })?
            .clone();
        let (keys, threshold) = self.delegation_keys(role, delegator)?;
        listing.check(role, "snapshot", snap_version, bytes)?;
        let new = Metadata::<tuf1::Targets>::from_bytes(role, bytes.to_vec())?;
        let refs: Vec<(&str, &Key)> = keys.iter().map(|(id, k)| (id.as_str(), k)).collect();
        verify_threshold(role, new.signed(), &refs, threshold)?;
        new.body().validate(role)?;
        if new.version() != listing.version {
            return Err(Error::invalid(
                role,
                new.version(),
                format!("snapshot v{snap_version} lists {role} v{}", listing.version),
            ));
        }
        check_fresh(role, new.version(), &new.body().expires, self.now)?;
        self.targets.insert(
            role.to_owned(),
            TrustedTargets {
                meta: new,
                delegator: delegator.to_owned(),
            },
        );
        Ok(())
    }

    /// The keys and threshold `delegator` gives `role`.
    fn delegation_keys(&self, role: &str, delegator: &str) -> Result<(Vec<(String, Key)>, u64)> {
        let owned = |keys: Vec<(&str, &Key)>| {
            keys.into_iter()
                .map(|(id, k)| (id.to_owned(), k.clone()))
                .collect::<Vec<_>>()
        };
        if role == super::TOP_TARGETS && delegator == super::ROOT {
            let (keys, threshold) = top_level_keys(self.root.body(), RoleType::Targets);
            return Ok((owned(keys), threshold));
        }
        let parent = self
            .targets
            .get(delegator)
            .ok_or_else(|| order(role, delegator))?;
        let (entry, keys) =
            parent
                .meta
                .body()
                .delegation(role)
                .ok_or_else(|| Error::NoSuchRole {
                    role: role.to_owned(),
                    reason: format!("{delegator} does not delegate it"),
                })?;
        Ok((owned(keys), entry.threshold))
    }
}

/// The keys and threshold root gives a top-level role (none when absent: validate refuses it).
fn top_level_keys(root: &tuf1::Root, role: RoleType) -> (Vec<(&str, &Key)>, u64) {
    let threshold = root.role(role).map_or(1, |r| r.threshold);
    (root.role_keys(role), threshold)
}

fn snapshot_version(timestamp: &tuf1::Timestamp) -> u64 {
    timestamp.meta.get(SNAPSHOT_FILE).map_or(0, |m| m.version)
}

fn rollback(role: &str, version: u64, trusted: u64) -> Error {
    Error::Rollback {
        role: role.to_owned(),
        version,
        trusted,
    }
}
