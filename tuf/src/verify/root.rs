//! Trusting a root: checking one against its own keys (first use, pins, a cached root) and
//! following rotations one version at a time, at most [`MAX_ROOT_ROTATIONS`] per update.

use std::time::SystemTime;

use super::signatures::{check_threshold, count_valid, root_key_ok};
use super::{RootTrust, Updater};
use crate::error::{Error, Result};
use crate::schema::{Metadata, RoleType, Root};

/// Most root versions one update walks past the trusted root (python-tuf's default too): a
/// server announcing root v1000000 cannot make the client fetch and verify a million roots.
/// A client further behind than this is told so and can start again from a fresh pin.
pub const MAX_ROOT_ROTATIONS: u64 = 32;

/// Verifies a root against its own keys as `trust` says: structure, root-key certificates
/// (valid at `now` unless the root was trusted before), pins, threshold.
pub(super) fn check_root_self(
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

impl Updater {
    /// The root versions to fetch (`N.root.json`) before `latest` (the server's root.json):
    /// every version strictly between the trusted one and `latest`. Refused when `latest` is
    /// more than [`MAX_ROOT_ROTATIONS`] versions ahead, before anything is fetched.
    pub fn intermediate_root_versions(&self, latest: u64) -> Result<std::ops::Range<u64>> {
        let next = self.root.version().saturating_add(1);
        let ahead = latest.saturating_sub(self.root.version());
        if self.rotations.saturating_add(ahead) > MAX_ROOT_ROTATIONS {
            return Err(Self::too_many_rotations(ahead));
        }
        Ok(next..latest.max(next))
    }

    fn too_many_rotations(ahead: u64) -> Error {
        Error::LimitExceeded {
            role: "root".into(),
            what: format!("{ahead} root rotations in one update"),
            limit: MAX_ROOT_ROTATIONS,
        }
    }

    /// Moves trust to the next root: exactly one version above the trusted root (the same
    /// bytes again are a no-op; another file of the trusted version is refused), signed by
    /// the trusted root's root threshold and by its own, with root certificates valid now.
    /// Returns whether the root changed. Call before the timestamp.
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
        if version != trusted.saturating_add(1) {
            return Err(Error::RootVersion {
                version,
                expected: trusted.saturating_add(1),
            });
        }
        if self.rotations >= MAX_ROOT_ROTATIONS {
            return Err(Self::too_many_rotations(self.rotations + 1));
        }
        new.body().validate()?;
        let old = self.root.body();
        let old_keys = old.role_keys(RoleType::Root);
        let old_threshold = old.role(RoleType::Root).map_or(0, |r| r.threshold);
        let message = new.signed().canonical_signed()?;
        let (valid, reason) = count_valid(
            &message,
            &new.signed().signatures,
            &old_keys,
            old_threshold,
            &root_key_ok(&self.gun, None),
        );
        if old_threshold < 1 || (valid as u64) < old_threshold {
            return Err(Error::RootRotationUntrusted {
                version,
                trusted_version: trusted,
                valid,
                threshold: old_threshold,
                reason,
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
        self.rotations += 1;
        self.reset_after_root();
        Ok(true)
    }
}
