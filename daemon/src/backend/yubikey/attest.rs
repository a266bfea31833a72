//! Attestation of a slot's key: fetched from the device and checked against the roots.

use x509_cert::der::Encode as _;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use yubikey::Certificate;
use yubikey::piv::{self, SlotId};

use super::super::attestation;
use super::super::{AttestationReport, DeviceKey, Error};
use super::actor::Actor;

impl Actor {
    /// The slot's attestation certificate and the device's F9 certificate, DER.
    pub(super) fn fetch_attestation(&mut self, slot: u8) -> Result<(Vec<u8>, Vec<u8>), Error> {
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
    /// without attestation, or a chain that does not verify, gives an unattested key. Also
    /// answers whether the device attests that it generated `spki` itself (`Err`: why not).
    pub(super) fn attestation_of(
        &mut self,
        slot: u8,
        spki: &SubjectPublicKeyInfoOwned,
    ) -> Result<(DeviceKey, Result<(), String>), Error> {
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
                return Ok((device, Err(format!("no attestation: {e}"))));
            }
        };
        let generated = attestation::generated_on_device(&leaf, &f9, spki);
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
        Ok((device, generated))
    }

    /// AttestKey: the chain, fetched now, checked now.
    pub(super) fn attest(&mut self, slot: u8, key: &[u8; 32]) -> Result<AttestationReport, Error> {
        let spki = self.bound_key(slot, key)?.spki;
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
}
