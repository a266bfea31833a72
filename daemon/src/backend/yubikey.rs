//! YubiKey PIV backend through the `yubikey` crate (PC/SC). A `YubiKey` handle needs `&mut`,
//! so one actor thread owns the device, fed by a channel: requests run one after the other on a
//! handle opened once (by serial) and kept open. It is reopened only after the device went away.
//!
//! Keys are generated on the device (ECDSA P-256): role `root` in slot 9c, everything else (and
//! a second root) in the retired slots 82–95, never in a slot that already holds a key or a
//! certificate. Role and GUN are recorded on the device as a certificate written into the key's
//! slot: its subject is `CN=sigil:<role>:<gun>` (`sigil-notary:` for notary-signer keys) and its
//! public key is the slot's. It is signed by a throwaway software key, so writing it needs
//! neither the PIN nor a touch. At start-up the key ring is rebuilt from these certificates.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret as _;
use x509_cert::der::asn1::{Any, SetOfVec};
use x509_cert::der::{Encode as _, Tag};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use yubikey::certificate::CertInfo;
use yubikey::piv::{self, AlgorithmId, SlotId};
use yubikey::{Certificate, MgmKey, PinPolicy, Serial, TouchPolicy, YubiKey};

use super::attestation::{self, Policies, Roots};
use super::pkcs11::{LABEL_PREFIX, NOTARY_LABEL_PREFIX, parse_label};
use super::workers::{Reply, Workers};
use super::{
    Algorithm, AttestationReport, BackendKey, BoxFuture, DeviceKey, Error, KeyLocator, KeyMeta,
    KeyOwner, PublicKey, SignInput,
};
use crate::config::{TouchSetting, YubikeyConfig};
use crate::secret::Pin;

/// The PIV "digital signature" slot, where root keys go first.
const ROOT_SLOT: u8 = 0x9c;
/// The retired key management slots, for every other key.
const RETIRED_SLOTS: std::ops::RangeInclusive<u8> = 0x82..=0x95;
/// How long a health probe waits for the actor. A sign waiting for a touch keeps the actor
/// busy for the device's touch timeout; the probe then reports the last known state.
const PROBE_WAIT: Duration = Duration::from_secs(1);
/// Issuer of the label certificates: they carry a label, they certify nothing.
const LABEL_ISSUER: &str = "sigil key label (not a CA)";
/// Prefix of the attestation record in a label certificate's OU.
const RECORD_PREFIX: &str = "sigil-attestation:";

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
        reply: Reply<()>,
    },
    Sign {
        slot: u8,
        algorithm: Algorithm,
        input: SignInput,
        reply: Reply<Vec<u8>>,
    },
    Attest {
        slot: u8,
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

/// Where the management key (needed to generate keys and write label certificates) comes from.
/// `yubikey` 0.8 speaks 3DES management keys only.
#[derive(Clone)]
pub enum ManagementKey {
    /// The factory default.
    Default,
    /// A key from `management_key_file` (zeroized on drop by the `yubikey` crate).
    Configured(MgmKey),
    /// Read from the device's PIN-protected data object after verifying the PIN.
    PinProtected,
}

impl std::fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl ManagementKey {
    fn describe(&self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Configured(_) => "configured",
            Self::PinProtected => "PIN-protected",
        }
    }

    /// Parses a management key file's content: 48 hex digits (3DES), whitespace around it
    /// ignored. Errors never show the key.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() != 48 {
            return Err(format!(
                "a management key is 48 hex digits (3DES); this one has {} characters",
                text.len()
            ));
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; 24]);
        hex::decode_to_slice(text, bytes.as_mut_slice())
            .map_err(|_| "the management key is not hex".to_owned())?;
        MgmKey::from_bytes(bytes.as_slice())
            .map(Self::Configured)
            .map_err(|_| "the management key is a weak 3DES key".to_owned())
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
    /// attestation roots generated keys are checked against.
    pub fn open(
        config: &YubikeyConfig,
        pin: Option<Pin>,
        roots: Roots,
        mgm: ManagementKey,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            serial: config.serial,
            healthy: AtomicBool::new(false),
            probe_queued: AtomicBool::new(false),
            keys: Mutex::new(HashMap::new()),
        });
        let yk = YubiKey::open_by_serial(Serial(config.serial)).map_err(|e| match e {
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
            spkis: HashMap::new(),
            mgm,
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

/// The error for a PIN the device refused with `tries` left: locked at none, else `wrong`
/// (which differs between a configured PIN and an operator's).
fn refused(backend: String, tries: u8, wrong: impl FnOnce(String, u8) -> Error) -> Error {
    if tries == 0 {
        Error::PinLocked { backend }
    } else {
        wrong(backend, tries)
    }
}

/// The slot a locator names, if it is a YubiKey locator.
fn yubikey_slot(locator: &KeyLocator) -> Option<u8> {
    match locator {
        KeyLocator::Yubikey { slot } => Some(*slot),
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
        let Some(slot) = yubikey_slot(&locator) else {
            return Box::pin(async { Err(Error::KeyNotFound) });
        };
        self.workers.submit(|reply| Job::Delete { slot, reply })
    }

    fn sign(
        &self,
        locator: KeyLocator,
        algorithm: Algorithm,
        input: SignInput,
    ) -> BoxFuture<'_, Result<Vec<u8>, Error>> {
        let Some(slot) = yubikey_slot(&locator) else {
            return Box::pin(async { Err(Error::KeyNotFound) });
        };
        self.workers.submit(|reply| Job::Sign {
            slot,
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
        let slot = yubikey_slot(locator)?;
        self.shared.keys().get(&slot).cloned()
    }

    fn unlock(&self, pin: Pin) -> BoxFuture<'_, Result<u8, Error>> {
        self.workers.submit(|reply| Job::Unlock { pin, reply })
    }

    fn attest(&self, locator: KeyLocator) -> BoxFuture<'_, Result<AttestationReport, Error>> {
        let Some(slot) = yubikey_slot(&locator) else {
            return Box::pin(async { Err(Error::KeyNotFound) });
        };
        self.workers.submit(|reply| Job::Attest { slot, reply })
    }
}

/// The one owner of the device handle.
struct Actor {
    shared: Arc<Shared>,
    /// `None` after the device went away, until it is opened again.
    yk: Option<YubiKey>,
    /// `None` until an operator unlocks the device (no `pin_file`).
    pin: Option<Pin>,
    /// The tries left were read and the PIN was accepted once.
    pin_checked: bool,
    /// The device refused the PIN, leaving this many tries: it is never offered again.
    pin_refused: Option<u8>,
    touch_root: TouchPolicy,
    touch_other: TouchPolicy,
    /// Attestation roots.
    roots: Roots,
    /// The public key in each sigil slot, as the key ring knows it.
    spkis: HashMap<u8, SubjectPublicKeyInfoOwned>,
    /// How to authenticate for key management.
    mgm: ManagementKey,
}

impl Actor {
    fn run(&mut self, job: Job) {
        match job {
            Job::Probe(reply) => {
                let result = self.with_device(Self::probe);
                self.shared.probe_queued.store(false, Ordering::Release);
                let _ = reply.send(result);
            }
            Job::Scan(reply) => {
                let _ = reply.send(self.with_device(Self::scan));
            }
            Job::Generate {
                algorithm,
                meta,
                reply,
            } => {
                let _ = reply.send(self.with_device(|a| a.generate(algorithm, &meta)));
            }
            Job::Delete { slot, reply } => {
                let _ = reply.send(self.with_device(|a| a.delete(slot)));
            }
            Job::Sign {
                slot,
                algorithm,
                input,
                reply,
            } => {
                let _ = reply.send(self.with_device(|a| a.sign(slot, algorithm, &input)));
            }
            Job::Attest { slot, reply } => {
                let _ = reply.send(self.with_device(|a| a.attest(slot)));
            }
            Job::Unlock { pin, reply } => {
                let _ = reply.send(self.with_device(|a| a.unlock(pin.clone())));
            }
        }
    }

    /// Runs `op` on the device, opening it first if needed. A handle that went stale (the card
    /// was removed and put back, or reset by another application) fails at its first PC/SC
    /// call, before any command reaches the card; `op` then runs once more on a fresh handle.
    fn with_device<T>(&mut self, op: impl Fn(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        let had_handle = self.yk.is_some();
        let mut result = op(self);
        if had_handle && matches!(result, Err(Error::TokenNotPresent { .. })) {
            result = op(self);
        }
        match &result {
            Err(Error::TokenNotPresent { .. }) => self.set_healthy(false),
            _ => self.set_healthy(true),
        }
        result
    }

    fn set_healthy(&self, healthy: bool) {
        if self.shared.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                tracing::info!(backend = %self.shared.name, serial = self.shared.serial, "YubiKey is back");
            } else {
                tracing::warn!(backend = %self.shared.name, serial = self.shared.serial, "YubiKey unavailable");
            }
        }
    }

    fn device(&mut self) -> Result<&mut YubiKey, Error> {
        if self.yk.is_none() {
            match YubiKey::open_by_serial(Serial(self.shared.serial)) {
                Ok(yk) => {
                    // A new session: the PIN's state on the device is unknown again.
                    self.pin_checked = false;
                    self.yk = Some(yk);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "opening the YubiKey failed");
                    return Err(self.absent());
                }
            }
        }
        self.yk.as_mut().ok_or_else(|| Error::TokenNotPresent {
            backend: self.shared.name.clone(),
        })
    }

    fn absent(&self) -> Error {
        Error::TokenNotPresent {
            backend: self.shared.name.clone(),
        }
    }

    /// Classifies a device error: PC/SC trouble drops the handle (the device is gone or was
    /// reset) and reads as "not present"; anything else names the operation.
    fn fail(&mut self, op: &'static str, e: yubikey::Error) -> Error {
        match e {
            yubikey::Error::PcscError { .. } | yubikey::Error::NotFound => {
                tracing::debug!(error = %e, op, "YubiKey PC/SC error; dropping the handle");
                self.yk = None;
                self.pin_checked = false;
                self.absent()
            }
            source => Error::Piv {
                backend: self.shared.name.clone(),
                op,
                source,
            },
        }
    }

    fn probe(&mut self) -> Result<(), Error> {
        let yk = self.device()?;
        // VERIFY without data: answers the tries left, spends none.
        match yk.get_pin_retries() {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail("read PIN retries", e)),
        }
    }

    /// The PIN tries left, read without spending one; an error when none or only the last
    /// one is left, which sigild never spends.
    fn tries_to_spare(&mut self) -> Result<u8, Error> {
        let backend = self.shared.name.clone();
        let yk = self.device()?;
        match yk.get_pin_retries() {
            Ok(0) => Err(Error::PinLocked { backend }),
            Ok(1) => Err(Error::PinFinalTry { backend }),
            Ok(tries) => Ok(tries),
            Err(e) => Err(self.fail("read PIN retries", e)),
        }
    }

    /// Verifies the PIN, refusing when it was refused before or only one try is left.
    fn verify_pin(&mut self) -> Result<(), Error> {
        let name = self.shared.name.clone();
        if self.pin.is_none() {
            return Err(Error::Locked { backend: name });
        }
        if let Some(retries) = self.pin_refused {
            return Err(Error::PinWrong {
                backend: name,
                retries,
            });
        }
        self.device()?;
        if !self.pin_checked {
            self.tries_to_spare()?;
        }
        let Some(pin) = &self.pin else {
            return Err(Error::Locked { backend: name });
        };
        let pin = pin.as_auth_pin().expose_secret().as_bytes();
        let yk = match self.yk.as_mut() {
            Some(yk) => yk,
            None => return Err(self.absent()),
        };
        match yk.verify_pin(pin) {
            Ok(()) => {
                self.pin_checked = true;
                Ok(())
            }
            Err(yubikey::Error::WrongPin { tries }) => {
                self.pin_refused = Some(tries);
                self.pin_checked = false;
                tracing::error!(backend = %name, tries_left = tries, "YubiKey refused the PIN; it will not be offered again");
                Err(refused(name, tries, |backend, retries| Error::PinWrong {
                    backend,
                    retries,
                }))
            }
            Err(e) => Err(self.fail("verify PIN", e)),
        }
    }

    /// `sigil token unlock`: reads the tries left (refusing at one or none), offers the PIN
    /// once, and keeps it only if the device accepts it. A refused PIN is not kept and not
    /// retried; a new unlock with another PIN is the operator's decision.
    fn unlock(&mut self, pin: Pin) -> Result<u8, Error> {
        let name = self.shared.name.clone();
        if !(6..=8).contains(&pin.len()) || !pin.as_auth_pin().expose_secret().is_ascii() {
            return Err(Error::BadPinFormat {
                backend: name,
                what: format!(
                    "a PIV PIN is 6 to 8 ASCII characters; this one has {} characters (nothing was sent to the device)",
                    pin.len()
                ),
            });
        }
        let retries = self.tries_to_spare()?;
        let yk = self.device()?;
        match yk.verify_pin(pin.as_auth_pin().expose_secret().as_bytes()) {
            Ok(()) => {
                self.pin = Some(pin);
                self.pin_refused = None;
                self.pin_checked = true;
                tracing::info!(backend = %name, "YubiKey unlocked by an operator");
                Ok(retries)
            }
            Err(yubikey::Error::WrongPin { tries }) => {
                tracing::error!(backend = %name, tries_left = tries, "YubiKey refused the PIN supplied by an operator; not retried");
                Err(refused(name, tries, |backend, retries| {
                    Error::UnlockPinWrong { backend, retries }
                }))
            }
            Err(e) => Err(self.fail("verify PIN", e)),
        }
    }

    fn scan(&mut self) -> Result<Vec<BackendKey>, Error> {
        let mut keys = Vec::new();
        for slot in std::iter::once(ROOT_SLOT).chain(RETIRED_SLOTS) {
            let Some(cert) = self.read_certificate(slot)? else {
                continue; // empty slot, or not a certificate we can read
            };
            let Some(meta) = label_of(&cert.cert.tbs_certificate.subject) else {
                continue;
            };
            let recorded = record_of(&cert.cert.tbs_certificate.subject);
            let spki_info = cert.cert.tbs_certificate.subject_public_key_info.clone();
            let spki = spki_info
                .to_der()
                .map_err(|e| self.bad(format!("slot {slot:02x}: certificate key: {e}")))?;
            let public = PublicKey::from_spki_der(&spki)
                .map_err(|e| self.bad(format!("slot {slot:02x}: certificate key: {e}")))?;
            // The record says what was attested at generation; only a chain that verifies
            // now makes the key attested.
            let mut device = self.attestation_of(slot, &spki_info)?;
            if let Some((policies, verified)) = recorded {
                if verified && !device.attested {
                    tracing::warn!(backend = %self.shared.name, slot = format!("{slot:02x}"), "key was attested when generated but its attestation does not verify now; treating it as not attested");
                }
                if device.policies.is_none() {
                    device.policies = Some(policies);
                }
            }
            self.remember(slot, spki_info, device);
            keys.push(BackendKey {
                public,
                meta,
                locator: KeyLocator::Yubikey { slot },
            });
        }
        Ok(keys)
    }

    /// Whether a slot holds anything: a certificate, or a key the device reports.
    fn slot_taken(&mut self, slot: u8) -> Result<bool, Error> {
        let slot_id = self.slot_id(slot)?;
        if self.read_certificate(slot)?.is_some() {
            return Ok(true);
        }
        let yk = self.device()?;
        match piv::metadata(yk, slot_id) {
            Ok(_) => Ok(true),
            Err(e @ yubikey::Error::PcscError { .. }) => Err(self.fail("read slot metadata", e)),
            Err(_) => Ok(false),
        }
    }

    /// The certificate stored for a slot, if there is one. An object that exists but is empty
    /// (what deleting a certificate leaves on some cards) counts as none: the `yubikey` crate's
    /// `Certificate::read` would index into it and panic.
    fn read_certificate(&mut self, slot: u8) -> Result<Option<Certificate>, Error> {
        let slot_id = self.slot_id(slot)?;
        let yk = self.device()?;
        match yk.fetch_object(certificate_object(slot)) {
            Ok(data) if !data.is_empty() => {}
            Ok(_) => return Ok(None),
            Err(e @ yubikey::Error::PcscError { .. }) => return Err(self.fail("read slot", e)),
            Err(_) => return Ok(None),
        }
        let yk = self.device()?;
        match Certificate::read(yk, slot_id) {
            Ok(cert) => Ok(Some(cert)),
            Err(e @ yubikey::Error::PcscError { .. }) => Err(self.fail("read slot", e)),
            Err(_) => Ok(None),
        }
    }

    fn generate(&mut self, algorithm: Algorithm, meta: &KeyMeta) -> Result<BackendKey, Error> {
        if algorithm != Algorithm::EcdsaP256 {
            return Err(Error::Unsupported {
                backend: self.shared.name.clone(),
                what: format!("{} (YubiKey keys are ecdsa-p256)", algorithm.as_str()),
            });
        }
        let is_root = meta.role == "root";
        let candidates: Vec<u8> = if is_root {
            std::iter::once(ROOT_SLOT).chain(RETIRED_SLOTS).collect()
        } else {
            RETIRED_SLOTS.collect()
        };
        let mut chosen = None;
        for slot in candidates {
            if !self.slot_taken(slot)? {
                chosen = Some(slot);
                break;
            }
        }
        let Some(slot) = chosen else {
            return Err(self.bad("no free PIV slot (9c, 82-95) left for a new key".into()));
        };
        let slot_id = self.slot_id(slot)?;
        let touch = if is_root {
            self.touch_root
        } else {
            self.touch_other
        };
        self.authenticate()?;
        let yk = self.device()?;
        let spki = match piv::generate(yk, slot_id, AlgorithmId::EccP256, PinPolicy::Default, touch)
        {
            Ok(spki) => spki,
            Err(e) => return Err(self.fail("generate", e)),
        };
        let prefix = match meta.owner {
            KeyOwner::Sigil => LABEL_PREFIX,
            KeyOwner::NotarySigner => NOTARY_LABEL_PREFIX,
        };
        let label = format!("{prefix}{}:{}", meta.role, meta.gun);
        let device = self.attestation_of(slot, &spki)?;
        let record = device.policies.map(|p| record_text(p, device.attested));
        let der = label_certificate(&spki, &label, record.as_deref())
            .map_err(|e| self.bad(format!("label certificate: {e}")))?;
        let cert = match Certificate::from_bytes(der) {
            Ok(cert) => cert,
            Err(e) => return Err(self.fail("label certificate", e)),
        };
        let yk = self.device()?;
        if let Err(e) = cert.write(yk, slot_id, CertInfo::Uncompressed) {
            return Err(self.fail("write label certificate", e));
        }
        let spki_der = spki
            .to_der()
            .map_err(|e| self.bad(format!("generated key: {e}")))?;
        let public = PublicKey::from_spki_der(&spki_der)
            .map_err(|e| self.bad(format!("generated key: {e}")))?;
        tracing::info!(backend = %self.shared.name, slot = format!("{slot:02x}"), role = %meta.role, gun = %meta.gun, attested = device.attested, touch = device.policies.map_or("unknown", |p| p.touch.as_str()), "YubiKey key generated");
        self.remember(slot, spki, device);
        Ok(BackendKey {
            public,
            meta: meta.clone(),
            locator: KeyLocator::Yubikey { slot },
        })
    }

    /// Removes the label certificate: the key leaves the key ring. PIV (before firmware 5.7)
    /// cannot delete a private key; it stays in the slot, unused, until the slot is reused.
    fn delete(&mut self, slot: u8) -> Result<(), Error> {
        let slot_id = self.slot_id(slot)?;
        self.authenticate()?;
        let yk = self.device()?;
        match Certificate::delete(yk, slot_id) {
            Ok(()) => {
                self.spkis.remove(&slot);
                self.shared.keys().remove(&slot);
                Ok(())
            }
            Err(e) => Err(self.fail("delete label certificate", e)),
        }
    }

    /// Authenticates with the management key, as configured. The PIN-protected key is read
    /// after verifying the PIN (so it needs an unlocked device).
    fn authenticate(&mut self) -> Result<(), Error> {
        let key = match &self.mgm {
            ManagementKey::Default => MgmKey::default(),
            ManagementKey::Configured(key) => key.clone(),
            ManagementKey::PinProtected => {
                self.verify_pin()?;
                let yk = self.device()?;
                match MgmKey::get_protected(yk) {
                    Ok(key) => key,
                    Err(e @ yubikey::Error::PcscError { .. }) => {
                        return Err(self.fail("read the PIN-protected management key", e));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "no PIN-protected management key");
                        return Err(self.bad(
                            "the device holds no PIN-protected management key (management_key = \"pin-protected\")".into(),
                        ));
                    }
                }
            }
        };
        let which = self.mgm.describe();
        let yk = self.device()?;
        match yk.authenticate(key) {
            Ok(()) => Ok(()),
            Err(e @ yubikey::Error::PcscError { .. }) => {
                Err(self.fail("authenticate with the management key", e))
            }
            Err(e) => {
                tracing::error!(backend = %self.shared.name, error = %e, which, "management key refused");
                Err(Error::MgmKeyRefused {
                    backend: self.shared.name.clone(),
                    which,
                })
            }
        }
    }

    fn remember(&mut self, slot: u8, spki: SubjectPublicKeyInfoOwned, device: DeviceKey) {
        self.spkis.insert(slot, spki);
        self.shared.keys().insert(slot, device);
    }

    /// The slot's attestation certificate and the device's F9 certificate, DER.
    fn fetch_attestation(&mut self, slot: u8) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let slot_id = self.slot_id(slot)?;
        let yk = self.device()?;
        let leaf = match piv::attest(yk, slot_id) {
            Ok(der) => der.to_vec(),
            Err(e) => return Err(self.fail("attest", e)),
        };
        let yk = self.device()?;
        let f9 = match Certificate::read(yk, SlotId::Attestation) {
            Ok(cert) => cert
                .cert
                .to_der()
                .map_err(|e| self.bad(format!("attestation (F9) certificate: {e}")))?,
            Err(e) => return Err(self.fail("read the attestation (F9) certificate", e)),
        };
        Ok((leaf, f9))
    }

    /// Fetches and checks a slot's attestation. Only a missing device is an error: a device
    /// without attestation, or a chain that does not verify, gives an unattested key.
    fn attestation_of(
        &mut self,
        slot: u8,
        spki: &SubjectPublicKeyInfoOwned,
    ) -> Result<DeviceKey, Error> {
        let mut device = DeviceKey {
            serial: self.shared.serial,
            slot,
            policies: None,
            attested: false,
        };
        let (leaf, f9) = match self.fetch_attestation(slot) {
            Ok(chain) => chain,
            Err(e @ Error::TokenNotPresent { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(backend = %self.shared.name, slot = format!("{slot:02x}"), error = %e, "no attestation for the key");
                return Ok(device);
            }
        };
        match attestation::verify(&leaf, &f9, &self.roots, spki) {
            Ok(policies) => {
                device.policies = Some(policies);
                device.attested = true;
            }
            Err(why) => {
                if !self.roots.is_empty() {
                    tracing::warn!(backend = %self.shared.name, slot = format!("{slot:02x}"), %why, "key attestation does not verify");
                }
                device.policies = attestation::policies(&leaf).ok();
            }
        }
        Ok(device)
    }

    /// AttestKey: the chain, fetched now, checked now.
    fn attest(&mut self, slot: u8) -> Result<AttestationReport, Error> {
        let spki = self.spkis.get(&slot).cloned().ok_or(Error::KeyNotFound)?;
        let (leaf, f9) = self.fetch_attestation(slot)?;
        let (policies, verified) = match attestation::verify(&leaf, &f9, &self.roots, &spki) {
            Ok(p) => (p, Ok(())),
            Err(why) => (
                attestation::policies(&leaf)
                    .map_err(|e| self.bad(format!("slot {slot:02x}: {e}")))?,
                Err(why),
            ),
        };
        Ok(AttestationReport {
            chain: vec![leaf, f9],
            policies,
            verified,
            serial: self.shared.serial,
        })
    }

    fn sign(
        &mut self,
        slot: u8,
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Result<Vec<u8>, Error> {
        let digest = match (algorithm, input) {
            (Algorithm::EcdsaP256, SignInput::Digest(d)) => d,
            _ => {
                return Err(Error::Unsupported {
                    backend: self.shared.name.clone(),
                    what: format!("{} signatures", algorithm.as_str()),
                });
            }
        };
        let slot_id = self.slot_id(slot)?;
        self.verify_pin()?;
        let yk = self.device()?;
        let der = match piv::sign_data(yk, digest, AlgorithmId::EccP256, slot_id) {
            Ok(der) => der,
            // The PIN was verified just before, so "security status not satisfied" means the
            // key's touch policy was not met in time.
            Err(yubikey::Error::AuthenticationError) => {
                return Err(Error::TouchTimeout {
                    backend: self.shared.name.clone(),
                    serial: self.shared.serial,
                    slot,
                });
            }
            Err(e) => return Err(self.fail("sign", e)),
        };
        let signature = p256::ecdsa::Signature::from_der(&der)
            .map_err(|e| self.bad(format!("slot {slot:02x}: signature is not DER ECDSA: {e}")))?;
        Ok(signature.to_bytes().to_vec())
    }

    fn slot_id(&self, slot: u8) -> Result<SlotId, Error> {
        SlotId::try_from(slot).map_err(|_| self.bad(format!("no PIV slot {slot:02x}")))
    }

    fn bad(&self, what: String) -> Error {
        Error::BadToken {
            backend: self.shared.name.clone(),
            what,
        }
    }
}

/// The PIV data object holding a key slot's certificate (SP 800-73-4 part 1, table 3).
fn certificate_object(slot: u8) -> u32 {
    match slot {
        0x9a => 0x5f_c105,
        0x9c => 0x5f_c10a,
        0x9d => 0x5f_c10b,
        0x9e => 0x5f_c101,
        // Retired key management slots 82..=95: objects 5FC10D..=5FC120.
        0x82..=0x95 => 0x5f_c10d + u32::from(slot - 0x82),
        _ => 0x5f_ff01, // F9, the attestation certificate
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

/// `CN=<label>` as a UTF8String, so any GUN fits without RFC 4514 escaping.
fn label_name(label: &str) -> Result<Name, x509_cert::der::Error> {
    let atv = x509_cert::attr::AttributeTypeAndValue {
        oid: const_oid::db::rfc4519::CN,
        value: Any::new(Tag::Utf8String, label.as_bytes())?,
    };
    let rdn = RelativeDistinguishedName::from(SetOfVec::try_from(vec![atv])?);
    Ok(RdnSequence::from(vec![rdn]))
}

/// The sigil key label in a certificate subject's CN, if there is one.
fn label_of(subject: &Name) -> Option<KeyMeta> {
    subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == const_oid::db::rfc4519::CN)
        .find_map(|atv| parse_label(atv.value.value()))
}

/// The attestation record written into a label certificate.
fn record_text(policies: Policies, verified: bool) -> String {
    format!(
        "{RECORD_PREFIX}pin={},touch={},verified={}",
        policies.pin.as_str(),
        policies.touch.as_str(),
        if verified { "yes" } else { "no" }
    )
}

/// The attestation record in a label certificate's subject, if any.
fn record_of(subject: &Name) -> Option<(Policies, bool)> {
    let text = subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == const_oid::db::rfc4519::OU)
        .find_map(|atv| {
            std::str::from_utf8(atv.value.value())
                .ok()?
                .strip_prefix(RECORD_PREFIX)
        })?;
    let (mut pin, mut touch, mut verified) = (None, None, None);
    for part in text.split(',') {
        match part.split_once('=')? {
            ("pin", v) => pin = attestation::PinPolicy::parse(v),
            ("touch", v) => touch = attestation::TouchPolicy::parse(v),
            ("verified", "yes") => verified = Some(true),
            ("verified", "no") => verified = Some(false),
            _ => return None,
        }
    }
    Some((
        Policies {
            pin: pin?,
            touch: touch?,
        },
        verified?,
    ))
}

/// A certificate for the slot's public key whose subject is the sigil label, signed by a
/// throwaway software key (the device key would need the PIN and maybe a touch).
fn label_certificate(
    spki: &SubjectPublicKeyInfoOwned,
    label: &str,
    record: Option<&str>,
) -> Result<Vec<u8>, String> {
    use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
    let signer = loop {
        let bytes: [u8; 32] = rand::random();
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
            break key;
        }
    };
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // and no leading zero byte
    let serial = x509_cert::serial_number::SerialNumber::new(&serial).map_err(|e| e.to_string())?;
    let validity = x509_cert::time::Validity::from_now(Duration::from_secs(100 * 365 * 86_400))
        .map_err(|e| e.to_string())?;
    let mut subject = label_name(label).map_err(|e| e.to_string())?;
    if let Some(record) = record {
        let atv = x509_cert::attr::AttributeTypeAndValue {
            oid: const_oid::db::rfc4519::OU,
            value: Any::new(Tag::Utf8String, record.as_bytes()).map_err(|e| e.to_string())?,
        };
        let rdn = SetOfVec::try_from(vec![atv]).map_err(|e| e.to_string())?;
        subject.0.push(RelativeDistinguishedName::from(rdn));
    }
    let issuer = label_name(LABEL_ISSUER).map_err(|e| e.to_string())?;
    // No extensions: the certificate is a label, not a credential.
    let profile = Profile::Manual {
        issuer: Some(issuer),
    };
    let builder =
        CertificateBuilder::new(profile, serial, validity, subject, spki.clone(), &signer)
            .map_err(|e| e.to_string())?;
    let cert = builder
        .build::<p256::ecdsa::DerSignature>()
        .map_err(|e| e.to_string())?;
    cert.to_der().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_cert::der::Decode as _;

    #[test]
    fn label_certificate_round_trips_role_gun_and_key() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).expect("spki");
        let label = "sigil:targets/releases:localhost:5000/app,with=odd+chars";
        let policies = Policies {
            pin: attestation::PinPolicy::Always,
            touch: attestation::TouchPolicy::Always,
        };
        let record = record_text(policies, true);
        let der = label_certificate(&spki, label, Some(&record)).expect("certificate");
        let cert = Certificate::from_bytes(der).expect("parses");
        let meta = label_of(&cert.cert.tbs_certificate.subject).expect("label");
        assert_eq!(
            record_of(&cert.cert.tbs_certificate.subject),
            Some((policies, true))
        );
        let bare = label_certificate(&spki, label, None).expect("certificate");
        let bare = x509_cert::Certificate::from_der(&bare).expect("parses");
        assert_eq!(record_of(&bare.tbs_certificate.subject), None);
        assert_eq!(meta.role, "targets/releases");
        assert_eq!(meta.gun, "localhost:5000/app,with=odd+chars");
        assert_eq!(meta.owner, KeyOwner::Sigil);
        assert_eq!(cert.cert.tbs_certificate.subject_public_key_info, spki);
    }

    #[test]
    fn management_key_files_are_48_hex_digits_and_never_echoed() {
        let good = "3f1c9e2a7b4d6805c1e2d3f4a5b6c7d8e9fa0b1c2d3e4f51";
        let key = ManagementKey::from_hex(&format!("{good}\n")).expect("key");
        assert_eq!(format!("{key:?}"), "configured");
        for bad in ["", "0102", &"zz".repeat(24), &format!("{good}00")] {
            let err = ManagementKey::from_hex(bad).expect_err(bad);
            assert!(!err.contains("3f1c"), "{err}");
        }
        // A weak DES key (all-zero halves) is refused by the crate.
        assert!(ManagementKey::from_hex(&"01".repeat(24)).is_err());
    }

    #[test]
    fn other_certificates_carry_no_label() {
        let name = label_name("YubiKey PIV Attestation 9c").expect("name");
        assert!(label_of(&name).is_none());
    }
}
