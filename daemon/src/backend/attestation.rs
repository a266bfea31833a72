//! YubiKey PIV attestation: the device signs, with its attestation key (slot F9), a certificate
//! for a key it generated, carrying the key's PIN and touch policies (Yubico extension
//! `1.3.6.1.4.1.41482.3.8`: two bytes, PIN policy then touch policy). The F9 certificate is
//! itself signed by the vendor's attestation root. This module checks such a chain against the
//! configured roots; it talks to no device.
//!
//! Checked: leaf issuer = F9 subject and the leaf's signature under the F9 key; F9 issuer = a
//! root's subject and its signature under that root's key; the leaf's public key equals the key
//! the daemon generated; the policy extension is present and well formed. Not checked: validity
//! periods (attestation proves where a key was made, not that a credential is current, and
//! Yubico's F9 certificates outlive the roots' nominal dates on older devices).

use std::path::Path;

use const_oid::ObjectIdentifier;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

/// Yubico's PIN/touch policy extension in attestation certificates.
pub const POLICY_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.8");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// A PIV PIN policy as the device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinPolicy {
    /// No PIN needed.
    Never,
    /// PIN once per session.
    Once,
    /// PIN before every use.
    Always,
    /// Biometric match once (YubiKey Bio).
    MatchOnce,
    /// Biometric match every time (YubiKey Bio).
    MatchAlways,
}

impl PinPolicy {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Never,
            2 => Self::Once,
            3 => Self::Always,
            4 => Self::MatchOnce,
            5 => Self::MatchAlways,
            _ => return None,
        })
    }

    /// The name used in the API, the label certificate and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Once => "once",
            Self::Always => "always",
            Self::MatchOnce => "match-once",
            Self::MatchAlways => "match-always",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Never,
            Self::Once,
            Self::Always,
            Self::MatchOnce,
            Self::MatchAlways,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// A PIV touch policy as the device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TouchPolicy {
    /// No touch needed.
    Never,
    /// A touch counts for 15 seconds.
    Cached,
    /// Every use needs a touch.
    Always,
}

impl TouchPolicy {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Never,
            2 => Self::Always,
            // 4 is "cached, fixed" on firmware 5.x: cached, and cannot be changed.
            3 | 4 => Self::Cached,
            _ => return None,
        })
    }

    /// The name used in the API, the label certificate and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Cached => "cached",
            Self::Always => "always",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Never, Self::Cached, Self::Always]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The policies an attestation certificate states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    /// PIN policy.
    pub pin: PinPolicy,
    /// Touch policy.
    pub touch: TouchPolicy,
}

/// The configured attestation roots.
#[derive(Debug, Clone, Default)]
pub struct Roots(Vec<Certificate>);

impl Roots {
    /// Reads every certificate from each PEM file. A file with none, or a malformed one, is an
    /// error naming the file.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Self, String> {
        let mut certs = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("attestation root {}: {e}", path.display()))?;
            let found = Certificate::load_pem_chain(text.as_bytes()).map_err(|e| {
                format!(
                    "attestation root {}: not a PEM certificate: {e}",
                    path.display()
                )
            })?;
            if found.is_empty() {
                return Err(format!(
                    "attestation root {}: no certificate in it",
                    path.display()
                ));
            }
            certs.extend(found);
        }
        Ok(Self(certs))
    }

    /// Whether no roots are configured (nothing can verify).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds roots from certificates already parsed (tests).
    pub fn from_certs(certs: Vec<Certificate>) -> Self {
        Self(certs)
    }
}

/// Reads the policy extension of an attestation certificate, without checking anything else.
pub fn policies(leaf_der: &[u8]) -> Result<Policies, String> {
    let leaf = Certificate::from_der(leaf_der).map_err(|e| format!("attestation: {e}"))?;
    policies_of(&leaf)
}

fn policies_of(leaf: &Certificate) -> Result<Policies, String> {
    let ext = leaf
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == POLICY_OID)
        .ok_or("attestation certificate has no PIN/touch policy extension")?;
    match ext.extn_value.as_bytes() {
        [pin, touch, ..] => Ok(Policies {
            pin: PinPolicy::from_byte(*pin)
                .ok_or_else(|| format!("attestation: unknown PIN policy {pin:#04x}"))?,
            touch: TouchPolicy::from_byte(*touch)
                .ok_or_else(|| format!("attestation: unknown touch policy {touch:#04x}"))?,
        }),
        _ => Err("attestation: policy extension is too short".into()),
    }
}

/// Checks `leaf` (the slot's attestation) and `intermediate` (the device's F9 certificate)
/// against `roots` and the key the daemon generated, and returns the attested policies.
pub fn verify(
    leaf_der: &[u8],
    intermediate_der: &[u8],
    roots: &Roots,
    generated: &SubjectPublicKeyInfoOwned,
) -> Result<Policies, String> {
    let (leaf, f9) = attested_by_device(leaf_der, intermediate_der, generated)?;
    if roots.is_empty() {
        return Err("no attestation_roots configured".into());
    }
    let anchored = roots.0.iter().any(|root| {
        root.tbs_certificate.subject == f9.tbs_certificate.issuer
            && check_signature(&f9, &root.tbs_certificate.subject_public_key_info).is_ok()
    });
    if !anchored {
        return Err(format!(
            "the device's attestation certificate (issuer {}) is not signed by any configured attestation root",
            f9.tbs_certificate.issuer
        ));
    }
    policies_of(&leaf)
}

/// Checks that an attestation names `key` and is signed by the device's F9 key, whatever that
/// chains to. A YubiKey attests only keys it generated itself (an imported key gets no
/// attestation), so this says "generated on this device" even without configured roots.
pub fn generated_on_device(
    leaf_der: &[u8],
    intermediate_der: &[u8],
    key: &SubjectPublicKeyInfoOwned,
) -> Result<(), String> {
    attested_by_device(leaf_der, intermediate_der, key).map(|_| ())
}

/// The leaf and F9 certificates, once the leaf is known to attest `key` and to be signed by F9.
fn attested_by_device(
    leaf_der: &[u8],
    intermediate_der: &[u8],
    key: &SubjectPublicKeyInfoOwned,
) -> Result<(Certificate, Certificate), String> {
    let leaf = Certificate::from_der(leaf_der).map_err(|e| format!("attestation: {e}"))?;
    let f9 = Certificate::from_der(intermediate_der)
        .map_err(|e| format!("attestation intermediate (F9): {e}"))?;
    if &leaf.tbs_certificate.subject_public_key_info != key {
        return Err("the attested public key is not the key in the slot".into());
    }
    if leaf.tbs_certificate.issuer != f9.tbs_certificate.subject {
        return Err("the attestation was not issued by the device's F9 certificate".into());
    }
    check_signature(&leaf, &f9.tbs_certificate.subject_public_key_info)
        .map_err(|e| format!("attestation signature: {e}"))?;
    Ok((leaf, f9))
}

/// Verifies `cert`'s signature with `issuer`: ECDSA (P-256 or P-384 key) with SHA-256 or
/// SHA-384, or RSA PKCS#1 v1.5 / SHA-256 (Yubico's roots and F9 keys use one or the other).
fn check_signature(cert: &Certificate, issuer: &SubjectPublicKeyInfoOwned) -> Result<(), String> {
    use p256::pkcs8::DecodePublicKey as _;
    use rsa::signature::Verifier as _;
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("re-encoding: {e}"))?;
    let signature = cert
        .signature
        .as_bytes()
        .ok_or("signature is not a whole number of bytes")?;
    let issuer_der = issuer.to_der().map_err(|e| format!("issuer key: {e}"))?;
    match cert.signature_algorithm.oid {
        oid @ (ECDSA_SHA256 | ECDSA_SHA384) => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
            use sha2::Digest as _;
            let digest = if oid == ECDSA_SHA256 {
                sha2::Sha256::digest(&tbs).to_vec()
            } else {
                sha2::Sha384::digest(&tbs).to_vec()
            };
            let bad = |_| "does not verify".to_owned();
            if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(&issuer_der) {
                let sig = p256::ecdsa::Signature::from_der(signature)
                    .map_err(|e| format!("malformed ECDSA signature: {e}"))?;
                key.verify_prehash(&digest, &sig).map_err(bad)
            } else if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(&issuer_der) {
                let sig = p384::ecdsa::Signature::from_der(signature)
                    .map_err(|e| format!("malformed ECDSA signature: {e}"))?;
                key.verify_prehash(&digest, &sig).map_err(bad)
            } else {
                Err("issuer key is not ECDSA P-256 or P-384".into())
            }
        }
        RSA_SHA256 => {
            let key = rsa::RsaPublicKey::from_public_key_der(&issuer_der)
                .map_err(|e| format!("issuer key is not RSA: {e}"))?;
            let key = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
            let sig = rsa::pkcs1v15::Signature::try_from(signature)
                .map_err(|e| format!("malformed RSA signature: {e}"))?;
            key.verify(&tbs, &sig).map_err(|_| "does not verify".into())
        }
        other => Err(format!("unsupported signature algorithm {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr as _;
    use std::time::Duration;
    use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
    use x509_cert::ext::{AsExtension, Extension};
    use x509_cert::name::Name;

    struct PolicyExt([u8; 2]);
    impl AsExtension for PolicyExt {
        fn critical(&self, _: &Name, _: &[Extension]) -> bool {
            false
        }
    }
    impl const_oid::AssociatedOid for PolicyExt {
        const OID: ObjectIdentifier = POLICY_OID;
    }
    impl x509_cert::der::Encode for PolicyExt {
        fn encoded_len(&self) -> x509_cert::der::Result<x509_cert::der::Length> {
            Ok(x509_cert::der::Length::new(2))
        }
        fn encode(&self, w: &mut impl x509_cert::der::Writer) -> x509_cert::der::Result<()> {
            w.write(&self.0)
        }
    }

    fn key(seed: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("key")
    }

    fn spki(k: &p256::ecdsa::SigningKey) -> SubjectPublicKeyInfoOwned {
        SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).expect("spki")
    }

    fn cert(
        subject: &str,
        issuer: &str,
        subject_key: &SubjectPublicKeyInfoOwned,
        signer: &p256::ecdsa::SigningKey,
        policy: Option<[u8; 2]>,
    ) -> Vec<u8> {
        let serial = x509_cert::serial_number::SerialNumber::new(&[1]).expect("serial");
        let validity =
            x509_cert::time::Validity::from_now(Duration::from_secs(86_400)).expect("validity");
        let mut builder = CertificateBuilder::new(
            Profile::Manual {
                issuer: Some(Name::from_str(issuer).expect("issuer")),
            },
            serial,
            validity,
            Name::from_str(subject).expect("subject"),
            subject_key.clone(),
            signer,
        )
        .expect("builder");
        if let Some(p) = policy {
            builder.add_extension(&PolicyExt(p)).expect("ext");
        }
        builder
            .build::<p256::ecdsa::DerSignature>()
            .expect("build")
            .to_der()
            .expect("der")
    }

    #[test]
    fn a_good_chain_verifies_and_reads_policies_and_bad_ones_do_not() {
        let (root, f9, slot, other) = (key(1), key(2), key(3), key(4));
        let root_der = cert("CN=root", "CN=root", &spki(&root), &root, None);
        let f9_der = cert("CN=f9", "CN=root", &spki(&f9), &root, None);
        let leaf = cert("CN=leaf", "CN=f9", &spki(&slot), &f9, Some([3, 2]));
        let roots = Roots::from_certs(vec![Certificate::from_der(&root_der).expect("root")]);
        let got = verify(&leaf, &f9_der, &roots, &spki(&slot)).expect("verifies");
        assert_eq!(
            got,
            Policies {
                pin: PinPolicy::Always,
                touch: TouchPolicy::Always
            }
        );
        assert_eq!(policies(&leaf).expect("policies"), got);

        // Another key in the slot.
        assert!(verify(&leaf, &f9_der, &roots, &spki(&other)).is_err());
        // An F9 certificate from another root.
        let stranger = cert("CN=root", "CN=root", &spki(&other), &other, None);
        let foreign = Roots::from_certs(vec![Certificate::from_der(&stranger).expect("root")]);
        let err = verify(&leaf, &f9_der, &foreign, &spki(&slot)).expect_err("foreign root");
        assert!(err.contains("not signed by any configured"), "{err}");
        // No roots.
        assert!(verify(&leaf, &f9_der, &Roots::default(), &spki(&slot)).is_err());
        // A leaf not signed by F9.
        let forged = cert("CN=leaf", "CN=f9", &spki(&slot), &other, Some([3, 2]));
        assert!(verify(&forged, &f9_der, &roots, &spki(&slot)).is_err());
        // No policy extension.
        let bare = cert("CN=leaf", "CN=f9", &spki(&slot), &f9, None);
        assert!(verify(&bare, &f9_der, &roots, &spki(&slot)).is_err());
    }

    /// A throwaway RSA-2048 key for the test below (Yubico's attestation roots and F9 keys are
    /// RSA on most devices). Generated with `openssl genpkey`; it protects nothing.
    const TEST_RSA_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDfE6bb1Q39ilJL
FOtkI5INUkBa20I6dht0m1ZHRbDsUoOaArzGQlMp0gFVEZZZLznYfa/V375tlWKJ
Du9SjGXUyiIfT5Iu9wobdsfs6L+oleVmWZOfoZH2P2UTeZJqUXXYVzI8z3Zx/fnG
w89W23iZBDqrdmPmbcrEEH8YYgoXjJw4ocvUYLn8NmqTvmhNZDosLnolTn4BLQZH
6ZFTawYMSkwqONUyFtH15nJCixs32rNx0bivngGPvTNgFjYqdc351tStVjd+Ekn4
i9iKKgwyVAiJBir3sPJunA19oTV8i2JnXZLKMRGjco17xHIkQiig3DuiRv+vEB2v
Ti+t6dkLAgMBAAECggEAUz2bCvbylIRz9s5kk+ZuDoh9uSmOChCeaCG6zTelMFoN
/387/+Mp8zYJBzxb1QW5WR51aaJnBa8zqJ8pEK2RJhkTKInhq6LFY8AsFCw5sGfW
xR1x56Q7uh6n0d+Qkhm5lrPa7DQiJ6E0/kV87hVRaA/a8LZpysd3XTgmpOuYhnZf
/ktSEDQoszpD219xr+e8VNvtt5g2PHiYDHj4VBbTjDEKVWy0vpME7Tk+tc6/g9i2
eo6Ze7ocRfrp5f6XCREgCMgtOKxDKCwv29TQzlvbW6loc6iD/7/t79DWVlOIZO+w
NeDkoklAPaCFk1wJYnLITY6AhXwc+cyDFQNk07XmeQKBgQD9usXH9sKqomUKvLde
EyfLG7bcMyQV2fjE5uNYHKXMon7+go5A8i051Nbh/kE2zEO/zY8Dr/H7sgqvf7jX
JIWr8otXuIwErGh90W83OPeosY2VMFidwazuxV8yTpUow7PQ80Bc4GplrwGlyLCw
Psd0UvpYIPHOnqtP6k8Fk6wzFwKBgQDhEqllx6HBmXRXsGLdzqZen33cR1XyJfsq
tERteyhXT23Wctfk6it8gu/NvviieY1GlBNuo3OJVdQZMiXQ676wxiDJy19fSzoZ
88ok/AVDYZJpdAgdm06KbnNcz1O/1q+hZAX8m7yd4FrjaKb8JZsVx9bKpLK9v0fv
CC/qpKTSLQKBgQDC5MgvBNgagYrjaHnhBQ238Z3QHmhFcJypgkB22epw+RBbJqVm
NZ+PoHE+PjKRiO0xUw/bYTaagvO6Qn0UpLUYksF9q//BRz0sB8dJv7RcG6YJRo2K
/815ypmI5tuj6E8i3PY/YRHY8Uhus20ks9Q5AdPSBdw3PaGRTQVN31SSGQKBgQCo
LVOak8LQcKO4ajpV1vYFulNHZ55W4/57eFuxGteX9efy17lueXOpBAW/zTTn4r+n
vzmN8GCCfDmR4iDTrXO9jy4s2uQWxpVRkxK29AHSyXOnjGYMCWJ0mfdloB3KONbf
V2gJyyzzIxOG3Un5Gvh5G+vpW4ubsPRFLe7v+7qUuQKBgDlHzYtqs1cqAcTct1Y9
c25Mtok3XajWH1WoYBLSbtxXnfnI8ma2m3lN5pk/z8Ro2vRtFqGp3FfXgoizHtoW
dff1DozLONdKBrG0vN/lt8qdijyh4xKAV0uNe/8gIkngcytLxSH/XMsdT4zD0yot
6nJ19rAqoK4bVApnpb0Ig9C9
-----END PRIVATE KEY-----";

    #[test]
    fn an_rsa_root_and_rsa_f9_certificate_verify_too() {
        use rsa::pkcs8::DecodePrivateKey as _;
        let rsa_key = rsa::RsaPrivateKey::from_pkcs8_pem(TEST_RSA_KEY).expect("rsa key");
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_key.clone());
        let rsa_spki = SubjectPublicKeyInfoOwned::from_key(rsa_key.to_public_key()).expect("spki");
        let build = |subject: &str, issuer: &str, key: &SubjectPublicKeyInfoOwned| {
            let serial = x509_cert::serial_number::SerialNumber::new(&[2]).expect("serial");
            let validity =
                x509_cert::time::Validity::from_now(Duration::from_secs(86_400)).expect("validity");
            CertificateBuilder::new(
                Profile::Manual {
                    issuer: Some(Name::from_str(issuer).expect("issuer")),
                },
                serial,
                validity,
                Name::from_str(subject).expect("subject"),
                key.clone(),
                &signer,
            )
            .expect("builder")
            .build::<rsa::pkcs1v15::Signature>()
            .expect("build")
            .to_der()
            .expect("der")
        };
        // Root and F9 share the RSA key here; what matters is the RSA signature path. The leaf
        // is signed by the F9 key, also RSA.
        let root_der = build("CN=rsa root", "CN=rsa root", &rsa_spki);
        let f9_der = build("CN=rsa f9", "CN=rsa root", &rsa_spki);
        let slot = key(9);
        let serial = x509_cert::serial_number::SerialNumber::new(&[3]).expect("serial");
        let validity =
            x509_cert::time::Validity::from_now(Duration::from_secs(86_400)).expect("validity");
        let mut leaf = CertificateBuilder::new(
            Profile::Manual {
                issuer: Some(Name::from_str("CN=rsa f9").expect("issuer")),
            },
            serial,
            validity,
            Name::from_str("CN=leaf").expect("subject"),
            spki(&slot),
            &signer,
        )
        .expect("builder");
        leaf.add_extension(&PolicyExt([2, 3])).expect("ext");
        let leaf = leaf
            .build::<rsa::pkcs1v15::Signature>()
            .expect("build")
            .to_der()
            .expect("der");
        let roots = Roots::from_certs(vec![Certificate::from_der(&root_der).expect("root")]);
        let got = verify(&leaf, &f9_der, &roots, &spki(&slot)).expect("RSA chain verifies");
        assert_eq!(
            got,
            Policies {
                pin: PinPolicy::Once,
                touch: TouchPolicy::Cached
            }
        );
        let mut tampered = leaf.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(verify(&tampered, &f9_der, &roots, &spki(&slot)).is_err());
    }

    #[test]
    fn a_p384_root_signing_with_sha384_verifies() {
        let root = p384::ecdsa::SigningKey::from_slice(&[5u8; 48]).expect("p384 key");
        let root_spki = SubjectPublicKeyInfoOwned::from_key(*root.verifying_key()).expect("spki");
        let (f9, slot) = (key(6), key(7));
        let serial = x509_cert::serial_number::SerialNumber::new(&[4]).expect("serial");
        let validity =
            x509_cert::time::Validity::from_now(Duration::from_secs(86_400)).expect("validity");
        let sign_p384 = |subject: &str, spki: SubjectPublicKeyInfoOwned| {
            CertificateBuilder::new(
                Profile::Manual {
                    issuer: Some(Name::from_str("CN=p384 root").expect("issuer")),
                },
                serial.clone(),
                validity,
                Name::from_str(subject).expect("subject"),
                spki,
                &root,
            )
            .expect("builder")
            .build::<p384::ecdsa::DerSignature>()
            .expect("build")
            .to_der()
            .expect("der")
        };
        let root_der = sign_p384("CN=p384 root", root_spki);
        let f9_der = sign_p384("CN=f9", spki(&f9));
        let leaf = cert("CN=leaf", "CN=f9", &spki(&slot), &f9, Some([1, 1]));
        let roots = Roots::from_certs(vec![Certificate::from_der(&root_der).expect("root")]);
        let got = verify(&leaf, &f9_der, &roots, &spki(&slot)).expect("P-384 root verifies");
        assert_eq!(got.touch, TouchPolicy::Never);
    }

    #[test]
    fn policy_names_round_trip() {
        for p in [TouchPolicy::Never, TouchPolicy::Cached, TouchPolicy::Always] {
            assert_eq!(TouchPolicy::parse(p.as_str()), Some(p));
        }
        for p in [PinPolicy::Never, PinPolicy::Once, PinPolicy::Always] {
            assert_eq!(PinPolicy::parse(p.as_str()), Some(p));
        }
        assert!(
            TouchPolicy::Always > TouchPolicy::Cached && TouchPolicy::Cached > TouchPolicy::Never
        );
    }
}
