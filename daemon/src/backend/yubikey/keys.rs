//! The device's key slots: scanning them into the key ring, generating and deleting keys.

use x509_cert::der::Encode as _;
use yubikey::certificate::CertInfo;
use yubikey::piv::{self, AlgorithmId};
use yubikey::{Certificate, PinPolicy};

use super::super::pkcs11::{LABEL_PREFIX, NOTARY_LABEL_PREFIX};
use super::super::{Algorithm, BackendKey, Error, KeyLocator, KeyMeta, KeyOwner, PublicKey};
use super::actor::Actor;
use super::label::{label_certificate, label_of, record_of, record_text};
use super::{RETIRED_SLOTS, ROOT_SLOT};

impl Actor {
    pub(super) fn scan(&mut self) -> Result<Vec<BackendKey>, Error> {
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
    pub(super) fn slot_taken(&mut self, slot: u8) -> Result<bool, Error> {
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
    pub(super) fn delete(&mut self, slot: u8) -> Result<(), Error> {
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
