//! YubiKey PIV backend through the `yubikey` crate (PC/SC). A `YubiKey` handle needs `&mut`,
//! so one actor thread owns the device, fed by a channel: requests run one after the other on a
//! handle opened once (by serial) and kept open. It is reopened only after the device went away.
//!
//! Keys are generated on the device (ECDSA P-256): role `root` in slot 9c, everything else (and
//! a second root) in the retired slots 82–95, never in a slot that already holds a key or a
//! certificate. Role and GUN are recorded on the device as a certificate written into the key's
//! slot: its subject is `CN=sigil:<role>:<gun>` (`sigil-notary:` for notary-signer keys) and its
//! public key is the slot's. It is signed by a throwaway software key, so writing it needs
//! neither the PIN nor a touch. At start-up the key ring is rebuilt from these certificates,
//! but only for slots whose label and key match what sigild bound to them when it generated the
//! key ([`binding`], kept in `[server] state_dir`), whose key the device generated (metadata
//! origin, and an attestation by the device's F9 key), and whose role and GUN pass the checks
//! requests pass. A queued signature names the key it was queued for (the SHA-256 of its
//! SubjectPublicKeyInfo in the [`KeyLocator`]), and a signature that does not verify with that
//! key is not returned.
//!
//! The device is reachable by any local user through pcscd, so sigild refuses to run one that
//! still has the factory-default management key unless `allow_default_management_key = true`.
//!
//! The PIN comes from `pin_file` and is verified before each signature (slot 9c's PIN policy is
//! "always"). The tries left are read before the first verify; with one left the backend refuses
//! to spend it, and a refused PIN is never offered again. The `yubikey` crate keeps its own
//! copy of a verified PIN in zeroizing memory (`SecretVec`); ours is a `secret::Pin`.
//!
//! A PC/SC error (card removed, reader gone) drops the handle and marks the backend unhealthy;
//! the next request or health probe opens the device again.
//!
//! Attestation: right after generating, the backend fetches the slot's attestation certificate
//! and the device's F9 certificate, checks them against `attestation_roots`
//! ([`super::attestation`]) and records the attested PIN/touch policies, and whether they
//! verified, in the label certificate (a second subject attribute,
//! `OU=sigil-attestation:pin=…,touch=…,verified=yes|no`). At start-up each key's attestation is
//! fetched and checked again: only a chain that verifies now makes a key "attested".

mod actor;
mod attest;
mod binding;
mod keys;
mod label;
mod mgm;
mod pin;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use yubikey::{Serial, TouchPolicy, YubiKey};

use super::attestation::{self, Roots};
use super::workers::{Reply, Workers};
use super::{
    Algorithm, AttestationReport, BackendKey, BoxFuture, DeviceKey, Error, KeyLocator, KeyMeta,
    SignInput,
};
use crate::config::{TouchSetting, YubikeyConfig};
use crate::secret::Pin;
use actor::Actor;
pub use mgm::ManagementKey;

/// The PIV "digital signature" slot, where root keys go first.
const ROOT_SLOT: u8 = 0x9c;
/// The retired key management slots, for every other key.
const RETIRED_SLOTS: std::ops::RangeInclusive<u8> = 0x82..=0x95;
/// How long a health probe waits for the actor. A sign waiting for a touch keeps the actor
/// busy for the device's touch timeout; the probe then reports the last known state.
const PROBE_WAIT: Duration = Duration::from_secs(1);

enum Job {
    Probe(Reply<()>),
    Scan(Reply<Vec<BackendKey>>),
    Generate {
        algorithm: Algorithm,
        meta: KeyMeta,
        reply: Reply<BackendKey>,
    },
    Delete {
        slot: u8,
        key: [u8; 32],
        reply: Reply<()>,
    },
    Sign {
        slot: u8,
        key: [u8; 32],
        algorithm: Algorithm,
        input: SignInput,
        reply: Reply<Vec<u8>>,
    },
    Attest {
        slot: u8,
        key: [u8; 32],
        reply: Reply<AttestationReport>,
    },
    Unlock {
        pin: Pin,
        reply: Reply<u8>,
    },
}

/// What the async side and the actor share.
struct Shared {
    name: String,
    serial: u32,
    healthy: AtomicBool,
    /// A probe is queued and not answered yet: do not queue another.
    probe_queued: AtomicBool,
    /// What the device said about each key slot (attestation), for the key ring.
    keys: Mutex<HashMap<u8, DeviceKey>>,
}

impl Shared {
    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<u8, DeviceKey>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}
/// A YubiKey (PIV) served by one actor thread that owns the device handle.
pub struct YubikeyBackend {
    shared: Arc<Shared>,
    /// Whether attestation roots are configured.
    has_roots: bool,
    touch_root: TouchPolicy,
    touch_other: TouchPolicy,
    /// One thread: the actor.
    workers: Workers<Job>,
}

impl YubikeyBackend {
    /// Opens the YubiKey with the configured serial and starts its actor. Fails when the
    /// device is not there. The PIN is not used until the first signature; without one (no
    /// `pin_file`) the backend is locked until [`super::Backend::unlock`]. `roots` are the
    /// attestation roots generated keys are checked against; `state_dir` keeps the slot
    /// bindings ([`binding`]). A device that still takes the factory-default management key is
    /// refused unless the config allows it.
    pub fn open(
        config: &YubikeyConfig,
        pin: Option<Pin>,
        roots: Roots,
        mgm: ManagementKey,
        state_dir: &Path,
    ) -> Result<Self, Error> {
        let bindings =
            binding::Bindings::load(state_dir, config.serial).map_err(|what| Error::Bindings {
                backend: config.name.clone(),
                what,
            })?;
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            serial: config.serial,
            healthy: AtomicBool::new(false),
            probe_queued: AtomicBool::new(false),
            keys: Mutex::new(HashMap::new()),
        });
        let mut yk = YubiKey::open_by_serial(Serial(config.serial)).map_err(|e| match e {
            yubikey::Error::NotFound | yubikey::Error::PcscError { .. } => Error::TokenNotFound {
                backend: config.name.clone(),
                selector: format!("YubiKey serial {}", config.serial),
                present: present_serials(),
            },
            source => Error::Piv {
                backend: config.name.clone(),
                op: "open",
                source,
            },
        })?;
        tracing::info!(
            backend = %config.name,
            serial = config.serial,
            version = %yk.version(),
            reader = yk.name(),
            locked = pin.is_none(),
            "YubiKey opened"
        );
        match mgm::uses_default_key(&mut yk) {
            Ok(false) => {}
            Ok(true) if config.allow_default_management_key => tracing::warn!(
                backend = %config.name,
                serial = config.serial,
                "YubiKey has the factory-default management key (allowed by allow_default_management_key: test devices only)"
            ),
            Ok(true) => {
                return Err(Error::DefaultManagementKey {
                    backend: config.name.clone(),
                    serial: config.serial,
                });
            }
            Err(source) => {
                return Err(Error::Piv {
                    backend: config.name.clone(),
                    op: "read the management key's metadata",
                    source,
                });
            }
        }
        shared.healthy.store(true, Ordering::Relaxed);
        let has_roots = !roots.is_empty();
        let mut actor = Actor {
            shared: Arc::clone(&shared),
            yk: Some(yk),
            pin,
            pin_checked: false,
            pin_refused: None,
            touch_root: touch_policy(config.touch_root),
            touch_other: touch_policy(config.touch_other),
            roots,
            bound: HashMap::new(),
            bindings,
            mgm,
            adopt: config.adopt_slots.clone(),
        };
        let serve = move |jobs: crossbeam_channel::Receiver<Job>| {
            for job in jobs {
                actor.run(job);
            }
        };
        let workers = Workers::start(
            &config.name,
            config.max_queued_jobs,
            [(format!("yubikey-{}", config.serial), serve)],
        )?;
        Ok(Self {
            shared,
            has_roots,
            touch_root: touch_policy(config.touch_root),
            touch_other: touch_policy(config.touch_other),
            workers,
        })
    }
}

/// The slot and key (SHA-256 of its SubjectPublicKeyInfo) a locator names, if it is a YubiKey
/// locator.
fn yubikey_slot(locator: &KeyLocator) -> Option<(u8, [u8; 32])> {
    match locator {
        KeyLocator::Yubikey { slot, key } => Some((*slot, *key)),
        KeyLocator::Pkcs11 { .. } => None,
    }
}

impl super::Backend for YubikeyBackend {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    fn probe(&self) -> BoxFuture<'_, bool> {
        if self.shared.probe_queued.swap(true, Ordering::AcqRel) {
            // The actor is busy (e.g. a sign waiting for a touch) and has not reached the
            // last probe yet: report what it last saw.
            return Box::pin(async move { self.healthy() });
        }
        let answer = self.workers.submit(Job::Probe);
        Box::pin(async move {
            match tokio::time::timeout(PROBE_WAIT, answer).await {
                Ok(result) => result
                    .inspect_err(|e| tracing::debug!(error = %e, "YubiKey probe failed"))
                    .is_ok(),
                Err(_) => self.healthy(),
            }
        })
    }

    fn scan(&self) -> BoxFuture<'_, Result<Vec<BackendKey>, Error>> {
        self.workers.submit(Job::Scan)
    }

    fn generate(
        &self,
        algorithm: Algorithm,
        meta: KeyMeta,
    ) -> BoxFuture<'_, Result<BackendKey, Error>> {
        self.workers.submit(|reply| Job::Generate {
            algorithm,
            meta,
            reply,
        })
    }

    fn delete(&self, locator: KeyLocator) -> BoxFuture<'_, Result<(), Error>> {
        let Some((slot, key)) = yubikey_slot(&locator) else {
            return Box::pin(async { Err(Error::KeyNotFound) });
        };
        self.workers
            .submit(|reply| Job::Delete { slot, key, reply })
    }

    fn sign(
        &self,
        locator: KeyLocator,
        algorithm: Algorithm,
        input: SignInput,
    ) -> BoxFuture<'_, Result<Vec<u8>, Error>> {
        let Some((slot, key)) = yubikey_slot(&locator) else {
            return Box::pin(async { Err(Error::KeyNotFound) });
        };
        self.workers.submit(|reply| Job::Sign {
            slot,
            key,
            algorithm,
            input,
            reply,
        })
    }

    fn generation_plan(&self, role: &str) -> super::GenerationPlan {
        let touch = if role == "root" {
            self.touch_root
        } else {
            self.touch_other
        };
        super::GenerationPlan {
            attestable: if self.has_roots {
                Ok(())
            } else {
                Err(format!(
                    "backend {:?} has no attestation_roots configured",
                    self.shared.name
                ))
            },
            touch: Some(match touch {
                TouchPolicy::Always => attestation::TouchPolicy::Always,
                TouchPolicy::Cached => attestation::TouchPolicy::Cached,
                _ => attestation::TouchPolicy::Never,
            }),
        }
    }

    fn device_key(&self, locator: &KeyLocator) -> Option<DeviceKey> {
        let (slot, _) = yubikey_slot(locator)?;
        self.shared.keys().get(&slot).cloned()
    }

    fn unlock(&self, pin: Pin) -> BoxFuture<'_, Result<u8, Error>> {
        self.workers.submit(|reply| Job::Unlock { pin, reply })
    }

    fn attest(&self, locator: KeyLocator) -> BoxFuture<'_, Result<AttestationReport, Error>> {
        let Some((slot, key)) = yubikey_slot(&locator) else {
            return Box::pin(async { Err(Error::KeyNotFound) });
        };
        self.workers
            .submit(|reply| Job::Attest { slot, key, reply })
    }
}

fn touch_policy(setting: TouchSetting) -> TouchPolicy {
    match setting {
        TouchSetting::Always => TouchPolicy::Always,
        TouchSetting::Cached => TouchPolicy::Cached,
        TouchSetting::Never => TouchPolicy::Never,
    }
}

/// Serials of the YubiKeys PC/SC can see, for the "not found" message.
fn present_serials() -> String {
    let mut serials = Vec::new();
    if let Ok(mut ctx) = yubikey::reader::Context::open()
        && let Ok(readers) = ctx.iter()
    {
        for reader in readers {
            if let Ok(yk) = reader.open() {
                serials.push(yk.serial().to_string());
            }
        }
    }
    if serials.is_empty() {
        "none".into()
    } else {
        serials.join(", ")
    }
}
