//! The device's key slots: scanning them into the key ring, generating and deleting keys.

use x509_cert::der::Encode as _;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use yubikey::certificate::CertInfo;
use yubikey::piv::{self, AlgorithmId, Origin};
use yubikey::{Certificate, PinPolicy};

use super::super::pkcs11::{LABEL_PREFIX, NOTARY_LABEL_PREFIX};
use super::super::{Algorithm, BackendKey, Error, KeyLocator, KeyMeta, KeyOwner, PublicKey};
use super::actor::{Actor, BoundKey};
use super::binding::Binding;
use super::label::{label_certificate, label_of, record_of, record_text};
use super::{RETIRED_SLOTS, ROOT_SLOT};

impl Actor {
    /// The key ring: every slot whose label and key are still what sigild bound to it, whose
    /// key the device generated, and whose label passes the checks requests pass. Every other
    /// labelled slot is logged and left out.
    pub(super) fn scan(&mut self) -> Result<Vec<BackendKey>, Error> {
        let mut keys = Vec::new();
        let mut ring = Vec::new();
        for slot in std::iter::once(ROOT_SLOT).chain(RETIRED_SLOTS) {
            let bound = self.bindings.get(slot).cloned();
            let Some(cert) = self.read_certificate(slot)? else {
                if bound.is_some() {
                    self.left_out(slot, "its label certificate is gone");
                }
                continue; // empty slot, or not a certificate we can read
            };
            let subject = &cert.cert.tbs_certificate.subject;
            let Some(meta) = label_of(subject) else {
                if bound.is_some() {
                    self.left_out(
                        slot,
                        "its certificate no longer carries a valid sigil label",
                    );
                }
                continue;
            };
            let adopting = bound.is_none() && self.bindings.first() && self.adopt.contains(&slot);
            let bound = match bound {
                Some(bound) => bound,
                None if adopting => {
                    let spki = cert
                        .cert
                        .tbs_certificate
                        .subject_public_key_info
                        .to_der()
                        .map_err(|e| self.bad(format!("slot {slot:02x}: certificate key: {e}")))?;
                    Binding::new(&meta, &spki)
                }
                None => {
                    let why = format!(
                        "it is labelled {}:{} but sigild generated no key there (no binding in {}; \
                         a key made by a sigild before bindings is taken over by listing the slot \
                         in adopt_slots before the first start with bindings)",
                        meta.role,
                        meta.gun,
                        self.bindings.path().display()
                    );
                    self.left_out(slot, &why);
                    continue;
                }
            };
            let recorded = record_of(subject);
            let spki_info = cert.cert.tbs_certificate.subject_public_key_info.clone();
            let spki = spki_info
                .to_der()
                .map_err(|e| self.bad(format!("slot {slot:02x}: certificate key: {e}")))?;
            if !bound.matches(&meta, &spki) {
                self.left_out(
                    slot,
                    "its label or key is not what sigild bound to the slot (rewritten behind sigild's back)",
                );
                continue;
            }
            if let Err(why) = self.key_origin(slot, &spki_info)? {
                self.left_out(slot, &why);
                continue;
            }
            // The record says what was attested at generation; only a chain that verifies
            // now makes the key attested.
            let (mut device, generated) = self.attestation_of(slot, &spki_info)?;
            if let Err(why) = generated {
                let why = format!("the device does not attest that it generated the key: {why}");
                self.left_out(slot, &why);
                continue;
            }
            if let Some((policies, verified)) = recorded {
                if verified && !device.attested {
                    tracing::warn!(backend = %self.shared.name, slot = format!("{slot:02x}"), "key was attested when generated but its attestation does not verify now; treating it as not attested");
                }
                if device.policies.is_none() {
                    device.policies = Some(policies);
                }
            }
            let public = PublicKey::from_spki_der(&spki)
                .map_err(|e| self.bad(format!("slot {slot:02x}: certificate key: {e}")))?;
            if adopting {
                self.bindings
                    .bind(slot, bound)
                    .map_err(|what| Error::Bindings {
                        backend: self.shared.name.clone(),
                        what,
                    })?;
                tracing::warn!(backend = %self.shared.name, serial = self.shared.serial, slot = format!("{slot:02x}"), role = %meta.role, gun = %meta.gun, "YubiKey slot adopted (adopt_slots) and bound; remove it from adopt_slots");
            }
            let key = BoundKey::new(spki_info)
                .map_err(|e| self.bad(format!("slot {slot:02x}: certificate key: {e}")))?;
            keys.push(BackendKey {
                public,
                meta,
                locator: KeyLocator::Yubikey {
                    slot,
                    key: key.fingerprint,
                },
            });
            ring.push((slot, key, device));
        }
        self.bound.clear();
        self.shared.keys().clear();
        for (slot, key, device) in ring {
            self.remember(slot, key, device);
        }
        Ok(keys)
    }

    fn left_out(&self, slot: u8, why: &str) {
        tracing::warn!(backend = %self.shared.name, serial = self.shared.serial, slot = format!("{slot:02x}"), why, "YubiKey slot left out of the key ring");
    }

    /// What the device's metadata (firmware 5.3+) says about the key in `slot`: an imported
    /// key, or one that is not the key its certificate names, is refused (`Err`: why). Older
    /// firmware has no metadata; the attestation decides there.
    fn key_origin(
        &mut self,
        slot: u8,
        spki: &SubjectPublicKeyInfoOwned,
    ) -> Result<Result<(), String>, Error> {
        let slot_id = self.slot_id(slot)?;
        let yk = self.device()?;
        match piv::metadata(yk, slot_id) {
            Ok(metadata) => {
                if metadata.origin == Some(Origin::Imported) {
                    return Ok(Err(
                        "its key was imported, not generated on the device".into()
                    ));
                }
                match metadata.public {
                    Some(public)
                        if public.subject_public_key.raw_bytes()
                            != spki.subject_public_key.raw_bytes() =>
                    {
                        Ok(Err(
                            "the key in the slot is not the key its certificate names".into(),
                        ))
                    }
                    _ => Ok(Ok(())),
                }
            }
            Err(yubikey::Error::NotSupported) => Ok(Ok(())),
            Err(e @ yubikey::Error::PcscError { .. }) => Err(self.fail("read slot metadata", e)),
            Err(e) => Ok(Err(format!("no key in the slot ({e})"))),
        }
    }

    /// Whether a slot holds anything: a certificate, or a key the device reports.
    pub(super) fn slot_taken(&mut self, slot: u8) -> Result<bool, Error> {
        let slot_id = self.slot_id(slot)?;
        if self.bindings.get(slot).is_some() {
            return Ok(true);
        }
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
    pub(super) fn read_certificate(&mut self, slot: u8) -> Result<Option<Certificate>, Error> {
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

    pub(super) fn generate(
        &mut self,
        algorithm: Algorithm,
        meta: &KeyMeta,
    ) -> Result<BackendKey, Error> {
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
        let (device, _) = self.attestation_of(slot, &spki)?;
        let spki_der = spki
            .to_der()
            .map_err(|e| self.bad(format!("generated key: {e}")))?;
        let public = PublicKey::from_spki_der(&spki_der)
            .map_err(|e| self.bad(format!("generated key: {e}")))?;
        let key =
            BoundKey::new(spki.clone()).map_err(|e| self.bad(format!("generated key: {e}")))?;
        // Bound before the label is written: a label on the device never names a key sigild
        // has not recorded.
        self.bindings
            .bind(slot, Binding::new(meta, &spki_der))
            .map_err(|what| Error::Bindings {
                backend: self.shared.name.clone(),
                what,
            })?;
        let record = device.policies.map(|p| record_text(p, device.attested));
        let der = label_certificate(&spki, &label, record.as_deref())
            .map_err(|e| self.bad(format!("label certificate: {e}")))?;
        let cert = match Certificate::from_bytes(der) {
            Ok(cert) => cert,
            Err(e) => return Err(self.fail("label certificate", e)),
        };
        let yk = self.device()?;
        if let Err(e) = cert.write(yk, slot_id, CertInfo::Uncompressed) {
            let err = self.fail("write label certificate", e);
            if let Err(what) = self.bindings.unbind(slot) {
                tracing::error!(backend = %self.shared.name, slot = format!("{slot:02x}"), %what, "binding of a key without label not removed");
            }
            return Err(err);
        }
        tracing::info!(backend = %self.shared.name, slot = format!("{slot:02x}"), role = %meta.role, gun = %meta.gun, attested = device.attested, touch = device.policies.map_or("unknown", |p| p.touch.as_str()), "YubiKey key generated");
        let fingerprint = key.fingerprint;
        self.remember(slot, key, device);
        Ok(BackendKey {
            public,
            meta: meta.clone(),
            locator: KeyLocator::Yubikey {
                slot,
                key: fingerprint,
            },
        })
    }

    /// Unbinds the slot (the key leaves the key ring for good) and removes its label
    /// certificate. PIV (before firmware 5.7) cannot delete a private key; it stays in the
    /// slot, unused, and the slot is not reused.
    pub(super) fn delete(&mut self, slot: u8, key: &[u8; 32]) -> Result<(), Error> {
        self.bound_key(slot, key)?;
        let slot_id = self.slot_id(slot)?;
        self.authenticate()?;
        self.bindings.unbind(slot).map_err(|what| Error::Bindings {
            backend: self.shared.name.clone(),
            what,
        })?;
        self.bound.remove(&slot);
        self.shared.keys().remove(&slot);
        let yk = self.device()?;
        match Certificate::delete(yk, slot_id) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail("delete label certificate", e)),
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
