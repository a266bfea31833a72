//! The actor: the one thread that owns the device handle and runs jobs one after the other.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use x509_cert::spki::SubjectPublicKeyInfoOwned;
use yubikey::piv::{self, AlgorithmId, SlotId};
use yubikey::{Serial, TouchPolicy, YubiKey};

use super::super::attestation::Roots;
use super::super::{Algorithm, DeviceKey, Error, SignInput};
use super::{Job, ManagementKey, Shared};
use crate::secret::Pin;

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
    /// The public key in each sigil slot, as the key ring knows it.
    pub(super) spkis: HashMap<u8, SubjectPublicKeyInfoOwned>,
    /// How to authenticate for key management.
    pub(super) mgm: ManagementKey,
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

    pub(super) fn remember(
        &mut self,
        slot: u8,
        spki: SubjectPublicKeyInfoOwned,
        device: DeviceKey,
    ) {
        self.spkis.insert(slot, spki);
        self.shared.keys().insert(slot, device);
    }

    pub(super) fn sign(
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
