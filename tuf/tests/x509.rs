//! The root key certificate built around an async signer matches what `notary init` makes
//! (compared field by field with the recorded one), and certificates parse into keys.

mod common;

use std::time::Duration;

use common::{days, read, t0};
use sigil_tuf::schema::{KeyType, RoleType, Root, Signed};
use sigil_tuf::sign::testing::{MemorySigner, UnpluggedSigner, block_on};
use sigil_tuf::x509::{Certificate, ROOT_CERT_LIFETIME, build_root_certificate};
use sigil_tuf::{Error, Signer, TufKey};
use x509_cert::der::{Decode as _, Encode as _, Tagged as _};

const GUN: &str = "example.com/scripts";

/// The certificate `notary init` made during the recorded demo.
fn notary_cert() -> x509_cert::Certificate {
    let root = Signed::<Root>::from_slice("root", &read("notary/server/root.json"))
        .expect("root")
        .signed;
    let key = root.role_keys(RoleType::Root)[0].1.clone();
    let cert = key.certificate().expect("cert").expect("x509");
    x509_cert::Certificate::from_der(&cert.to_der().expect("der")).expect("reparse")
}

fn built(gun: &str) -> (MemorySigner, Certificate) {
    let signer = MemorySigner::p256();
    let cert = block_on(build_root_certificate(
        gun,
        &signer,
        t0(),
        ROOT_CERT_LIFETIME,
    ))
    .expect("build");
    (signer, cert)
}

#[test]
fn root_certificate_matches_notary_init() {
    let (signer, cert) = built(GUN);
    let ours = x509_cert::Certificate::from_der(&cert.to_der().expect("der")).expect("der");
    let theirs = notary_cert();
    let (o, t) = (&ours.tbs_certificate, &theirs.tbs_certificate);
    assert_eq!(o.version, t.version);
    assert_eq!(o.signature, t.signature, "ecdsa-with-SHA256");
    assert_eq!(ours.signature_algorithm, theirs.signature_algorithm);
    // Same subject and issuer encoding (CN as PrintableString) for the same GUN.
    assert_eq!(
        o.subject.to_der().expect("der"),
        t.subject.to_der().expect("der")
    );
    assert_eq!(
        o.issuer.to_der().expect("der"),
        t.issuer.to_der().expect("der")
    );
    // Same extensions, byte for byte: KeyUsage, EKU codeSigning, BasicConstraints CA:FALSE.
    assert_eq!(o.extensions, t.extensions);
    // Validity: ten 365-day years, as UTCTime (like notary's 2026 → 2036 certificate).
    let validity = |c: &x509_cert::Certificate| {
        c.tbs_certificate
            .validity
            .not_after
            .to_system_time()
            .duration_since(c.tbs_certificate.validity.not_before.to_system_time())
            .expect("ordered")
    };
    assert_eq!(validity(&ours), validity(&theirs));
    assert_eq!(validity(&ours), Duration::from_secs(3650 * 24 * 3600));
    assert!(matches!(
        o.validity.not_before,
        x509_cert::time::Time::UtcTime(_)
    ));
    // A positive serial of up to 128 bits, like Go's.
    let serial = o.serial_number.as_bytes();
    assert!(!serial.is_empty() && serial.len() <= 16 && serial[0] & 0x80 == 0);
    // Signed by the token key, over the TBSCertificate.
    cert.verify_self_signed().expect("self-signature");
    assert_eq!(cert.public_key().expect("key"), *signer.public_key());
    assert_eq!(cert.not_before(), t0());
    cert.check_root_leaf(GUN, Some(t0()))
        .expect("valid root leaf");
}

#[test]
fn root_certificate_becomes_an_ecdsa_x509_key() {
    let (signer, cert) = built(GUN);
    let pem = cert.to_pem().expect("pem");
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE-----\n")
            && pem.ends_with("-----END CERTIFICATE-----\n")
    );
    let key = TufKey::from_certificate_pem(&pem).expect("key");
    assert_eq!(key.keytype, KeyType::EcdsaX509);
    // keyval.public is base64 of the PEM text itself.
    assert_eq!(key.public_bytes().expect("bytes"), pem.as_bytes());
    assert_eq!(
        key.canonical_id().expect("canonical"),
        TufKey::from_public_key(signer.public_key()).id()
    );
    assert_ne!(key.id(), key.canonical_id().expect("canonical"));
    assert_eq!(Certificate::from_pem(&pem).expect("parse"), cert);
}

#[test]
fn gun_outside_printable_string_uses_utf8_string() {
    let gun = "registry.example.com/team_a/app";
    let (_, cert) = built(gun);
    assert_eq!(cert.common_name().as_deref(), Some(gun));
    cert.verify_self_signed().expect("self-signature");
    let ours = x509_cert::Certificate::from_der(&cert.to_der().expect("der")).expect("der");
    let atv = &ours.tbs_certificate.subject.0[0].0.as_slice()[0];
    assert_eq!(atv.value.tag(), x509_cert::der::Tag::Utf8String);
}

#[test]
fn root_leaf_checks_follow_the_notary_client() {
    let (_, cert) = built(GUN);
    assert!(
        cert.check_root_leaf("example.com/other", Some(t0()))
            .is_err()
    );
    assert!(cert.check_root_leaf(GUN, Some(t0() + days(3651))).is_err());
    // notBefore may be up to a day ahead (clock skew), not more.
    assert!(
        cert.check_root_leaf(GUN, Some(t0() - days(1) + Duration::from_secs(60)))
            .is_ok()
    );
    assert!(cert.check_root_leaf(GUN, Some(t0() - days(2))).is_err());
    // Without a clock (a cached root), only the static checks apply.
    assert!(cert.check_root_leaf(GUN, None).is_ok());
    assert!(!cert.is_ca() && !cert.uses_sha1());
    // Wildcard CNs match GUN prefixes.
    let (_, wild) = built("example.com/*");
    assert!(wild.check_root_leaf(GUN, Some(t0())).is_ok());
    assert!(wild.check_root_leaf("other.org/x", Some(t0())).is_err());
}

#[test]
fn only_p256_tokens_can_make_root_certificates() {
    let ed = MemorySigner::ed25519();
    let err =
        block_on(build_root_certificate(GUN, &ed, t0(), ROOT_CERT_LIFETIME)).expect_err("ed25519");
    assert!(matches!(err, Error::Certificate { .. }), "{err}");
    let gone = UnpluggedSigner(MemorySigner::p256().public_key().clone());
    let err = block_on(build_root_certificate(GUN, &gone, t0(), ROOT_CERT_LIFETIME))
        .expect_err("token gone");
    assert!(
        matches!(&err, Error::Sign { role, .. } if role == "root certificate"),
        "{err}"
    );
}

#[test]
fn a_certificate_chain_yields_its_leaf() {
    let (signer, leaf) = built(GUN);
    let (_, other) = built("example.com/ca");
    let chain = format!(
        "{}{}",
        leaf.to_pem().expect("pem"),
        other.to_pem().expect("pem")
    );
    let parsed = Certificate::from_pem(&chain).expect("chain");
    assert_eq!(parsed.public_key().expect("key"), *signer.public_key());
    assert!(Certificate::from_pem("not a certificate").is_err());
}
