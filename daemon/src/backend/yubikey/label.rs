//! Label certificates: a slot's role and GUN, and its attestation record, written on the device.

use std::time::Duration;

use x509_cert::der::asn1::{Any, SetOfVec};
use x509_cert::der::{Encode as _, Tag};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use super::super::KeyMeta;
use super::super::attestation::{self, Policies};
use super::super::pkcs11::parse_label;

/// Issuer of the label certificates: they carry a label, they certify nothing.
const LABEL_ISSUER: &str = "sigil key label (not a CA)";
/// Prefix of the attestation record in a label certificate's OU.
const RECORD_PREFIX: &str = "sigil-attestation:";

/// `CN=<label>` as a UTF8String, so any GUN fits without RFC 4514 escaping.
pub(super) fn label_name(label: &str) -> Result<Name, x509_cert::der::Error> {
    let atv = x509_cert::attr::AttributeTypeAndValue {
        oid: const_oid::db::rfc4519::CN,
        value: Any::new(Tag::Utf8String, label.as_bytes())?,
    };
    let rdn = RelativeDistinguishedName::from(SetOfVec::try_from(vec![atv])?);
    Ok(RdnSequence::from(vec![rdn]))
}

/// The sigil key label in a certificate subject's CN, if there is one.
pub(super) fn label_of(subject: &Name) -> Option<KeyMeta> {
    subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == const_oid::db::rfc4519::CN)
        .find_map(|atv| parse_label(atv.value.value()))
}

/// The attestation record written into a label certificate.
pub(super) fn record_text(policies: Policies, verified: bool) -> String {
    format!(
        "{RECORD_PREFIX}pin={},touch={},verified={}",
        policies.pin.as_str(),
        policies.touch.as_str(),
        if verified { "yes" } else { "no" }
    )
}

/// The attestation record in a label certificate's subject, if any.
pub(super) fn record_of(subject: &Name) -> Option<(Policies, bool)> {
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
pub(super) fn label_certificate(
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
    use super::super::super::KeyOwner;
    use super::*;
    use x509_cert::der::Decode as _;
    use yubikey::Certificate;

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
    fn other_certificates_carry_no_label() {
        let name = label_name("YubiKey PIV Attestation 9c").expect("name");
        assert!(label_of(&name).is_none());
    }
}
