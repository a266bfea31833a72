//! The actor: the one thread that owns the device handle and runs jobs one after the other.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use x509_cert::spki::SubjectPublicKeyInfoOwned;
use yubikey::piv::{self, AlgorithmId, SlotId};
use yubikey::{Serial, TouchPolicy, YubiKey};

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};
use x509_cert::der::Encode as _;

use super::super::attestation::Roots;
use super::super::{Algorithm, DeviceKey, Error, SignInput};
use super::binding::Bindings;
use super::{Job, ManagementKey, Shared};
use crate::secret::Pin;

/// A key of the key ring: its public key as sigild bound it to the slot.
#[derive(Clone)]
pub(super) struct BoundKey {
    pub(super) spki: SubjectPublicKeyInfoOwned,
    /// SHA-256 of the DER SubjectPublicKeyInfo: what a [`super::KeyLocator`] names.
    pub(super) fingerprint: [u8; 32],
    /// For checking each signature before it is returned.
    pub(super) verifying: p256::ecdsa::VerifyingKey,
}

/// The one owner of the device handle.
pub(super) struct Actor {
    pub(super) shared: Arc<Shared>,
    /// `None` after the device went away, until it is opened again.
    pub(super) yk: Option<YubiKey>,
    /// `None` until an operator unlocks the device (no `pin_file`).
    pub(super) pin: Option<Pin>,
    /// The tries left were read and the PIN was accepted once.
    pub(super) pin_checked: bool,
    /// The device refused the PIN, leaving this many tries: it is never offered again.
    pub(super) pin_refused: Option<u8>,
    pub(super) touch_root: TouchPolicy,
    pub(super) touch_other: TouchPolicy,
    /// Attestation roots.
    pub(super) roots: Roots,
    /// The key in each slot of the key ring, as sigild bound it.
    pub(super) bound: HashMap<u8, BoundKey>,
    /// The slot bindings kept in the state directory.
    pub(super) bindings: Bindings,
    /// How to authenticate for key management.
    pub(super) mgm: ManagementKey,
    /// Slots whose labelled keys an earlier sigild made, to bind on the first start with
    /// bindings (`adopt_slots`).
    pub(super) adopt: Vec<u8>,
}

impl Actor {
    pub(super) fn run(&mut self, job: Job) {
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
            Job::Delete { slot, key, reply } => {
                let _ = reply.send(self.with_device(|a| a.delete(slot, &key)));
            }
            Job::Sign {
                slot,
                key,
                algorithm,
                input,
                reply,
            } => {
                let _ = reply.send(self.with_device(|a| a.sign(slot, &key, algorithm, &input)));
            }
            Job::Attest { slot, key, reply } => {
                let _ = reply.send(self.with_device(|a| a.attest(slot, &key)));
            }
            Job::Unlock { pin, reply } => {
                let _ = reply.send(self.with_device(|a| a.unlock(pin.clone())));
            }
        }
    }

    /// Runs `op` on the device, opening it first if needed. A handle that went stale (the card
    /// was removed and put back, or reset by another application) fails at its first PC/SC
    /// call, before any command reaches the card; `op` then runs once more on a fresh handle.
    pub(super) fn with_device<T>(
        &mut self,
        op: impl Fn(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
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

    pub(super) fn set_healthy(&self, healthy: bool) {
        if self.shared.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                tracing::info!(backend = %self.shared.name, serial = self.shared.serial, "YubiKey is back");
            } else {
                tracing::warn!(backend = %self.shared.name, serial = self.shared.serial, "YubiKey unavailable");
            }
        }
    }

    pub(super) fn device(&mut self) -> Result<&mut YubiKey, Error> {
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

    pub(super) fn absent(&self) -> Error {
        Error::TokenNotPresent {
            backend: self.shared.name.clone(),
        }
    }

    /// Classifies a device error: PC/SC trouble drops the handle (the device is gone or was
    /// reset) and reads as "not present"; anything else names the operation.
    pub(super) fn fail(&mut self, op: &'static str, e: yubikey::Error) -> Error {
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

    pub(super) fn probe(&mut self) -> Result<(), Error> {
        let yk = self.device()?;
        // VERIFY without data: answers the tries left, spends none.
        match yk.get_pin_retries() {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail("read PIN retries", e)),
        }
    }

    /// Puts a slot's key into the key ring.
    pub(super) fn remember(&mut self, slot: u8, key: BoundKey, device: DeviceKey) {
        self.bound.insert(slot, key);
        self.shared.keys().insert(slot, device);
    }

    /// The key bound to `slot`, if it is still the one a job was queued for (`key`, the
    /// SHA-256 of its SubjectPublicKeyInfo). A key deleted, or deleted and replaced, while the
    /// job waited is not used.
    pub(super) fn bound_key(&self, slot: u8, key: &[u8; 32]) -> Result<BoundKey, Error> {
        match self.bound.get(&slot) {
            Some(bound) if bound.fingerprint == *key => Ok(bound.clone()),
            _ => {
                tracing::warn!(backend = %self.shared.name, slot = format!("{slot:02x}"), key = %hex::encode(key), "the key this request was queued for is no longer in the slot; refused");
                Err(Error::KeyNotFound)
            }
        }
    }

    /// Signs with the key bound to `slot` if it is still `key`, and returns the signature only
    /// if it verifies with that key: a key replaced behind sigild's back (by anyone holding the
    /// management key) signs nothing sigild hands out.
    pub(super) fn sign(
        &mut self,
        slot: u8,
        key: &[u8; 32],
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
        let bound = self.bound_key(slot, key)?;
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
        if bound.verifying.verify_prehash(digest, &signature).is_err() {
            tracing::error!(backend = %self.shared.name, serial = self.shared.serial, slot = format!("{slot:02x}"), key = %hex::encode(key), "the device signed with another key than the one sigild bound to the slot (replaced behind sigild's back?); signature discarded");
            return Err(self.bad(format!(
                "slot {slot:02x} no longer holds the key sigild generated there; nothing was signed"
            )));
        }
        Ok(signature.to_bytes().to_vec())
    }

    pub(super) fn slot_id(&self, slot: u8) -> Result<SlotId, Error> {
        SlotId::try_from(slot).map_err(|_| self.bad(format!("no PIV slot {slot:02x}")))
    }

    pub(super) fn bad(&self, what: String) -> Error {
        Error::BadToken {
            backend: self.shared.name.clone(),
            what,
        }
    }
}

impl BoundKey {
    /// The ring entry for a P-256 key with this SubjectPublicKeyInfo.
    pub(super) fn new(spki: SubjectPublicKeyInfoOwned) -> Result<Self, String> {
        let der = spki.to_der().map_err(|e| e.to_string())?;
        let verifying =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
                .map_err(|e| format!("not a P-256 key: {e}"))?;
        Ok(Self {
            fingerprint: Sha256::digest(&der).into(),
            spki,
            verifying,
        })
    }
}
