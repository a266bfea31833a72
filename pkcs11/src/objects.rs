//! sigild's keys as PKCS#11 objects: each key the caller may list is a private key object
//! (sign only, sensitive, never extractable) and a public key object, both built from the
//! SubjectPublicKeyInfo sigild hands out. Nothing here talks to sigild or touches C memory.

use cryptoki_sys::{
    CK_ATTRIBUTE_TYPE, CK_BBOOL, CK_FALSE, CK_KEY_TYPE, CK_OBJECT_CLASS, CK_TRUE, CK_ULONG,
    CKA_ALWAYS_AUTHENTICATE, CKA_ALWAYS_SENSITIVE, CKA_CLASS, CKA_COEFFICIENT, CKA_DECRYPT,
    CKA_DERIVE, CKA_EC_PARAMS, CKA_EC_POINT, CKA_ENCRYPT, CKA_EXPONENT_1, CKA_EXPONENT_2,
    CKA_EXTRACTABLE, CKA_ID, CKA_KEY_TYPE, CKA_LABEL, CKA_LOCAL, CKA_MODIFIABLE, CKA_MODULUS,
    CKA_MODULUS_BITS, CKA_NEVER_EXTRACTABLE, CKA_PRIME_1, CKA_PRIME_2, CKA_PRIVATE,
    CKA_PRIVATE_EXPONENT, CKA_PUBLIC_EXPONENT, CKA_PUBLIC_KEY_INFO, CKA_SENSITIVE, CKA_SIGN,
    CKA_SIGN_RECOVER, CKA_TOKEN, CKA_UNWRAP, CKA_VALUE, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_WRAP,
    CKK_EC, CKK_EC_EDWARDS, CKK_RSA, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY,
};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use sigil_proto::sigil_v1 as pb;

/// DER OBJECT IDENTIFIER prime256v1 (1.2.840.10045.3.1.7): CKA_EC_PARAMS of a P-256 key.
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER OBJECT IDENTIFIER id-Ed25519 (1.3.101.112): CKA_EC_PARAMS of an Ed25519 key.
pub const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER PrintableString "edwards25519", the other spelling PKCS#11 3.0 allows for Ed25519.
pub const ED25519_PARAMS_NAME: &[u8] = b"\x13\x0cedwards25519";

/// Private-key attributes that would reveal the key: refused with CKR_ATTRIBUTE_SENSITIVE.
const SENSITIVE: [CK_ATTRIBUTE_TYPE; 7] = [
    CKA_VALUE,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
];

/// The signature scheme a key is for, which fixes the mechanisms it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256.
    P256,
    /// Pure Ed25519.
    Ed25519,
    /// RSA-3072 with PSS (SHA-256, MGF1-SHA-256, 32-byte salt).
    Rsa3072,
}

impl KeyKind {
    /// Length of one signature, known before signing so length queries never reach sigild.
    pub fn signature_len(self) -> usize {
        match self {
            Self::P256 | Self::Ed25519 => 64,
            Self::Rsa3072 => 384,
        }
    }
}

/// One of sigild's keys with the attributes of its two objects.
#[derive(Debug, Clone)]
pub struct Key {
    /// sigild's key id (lowercase hex).
    pub key_id: String,
    /// Backend holding it: the slot it appears in.
    pub backend: String,
    /// Its scheme.
    pub kind: KeyKind,
    common: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
}

/// What a lookup of one attribute found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The value.
    Value(&'a [u8]),
    /// The key does not let it out (CKR_ATTRIBUTE_SENSITIVE).
    Sensitive,
    /// Not an attribute of this object (CKR_ATTRIBUTE_TYPE_INVALID).
    Invalid,
}

fn ulong(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

fn bool_attr(v: bool) -> Vec<u8> {
    vec![if v { CK_TRUE } else { CK_FALSE } as CK_BBOOL]
}

/// A DER OCTET STRING around `bytes` (CKA_EC_POINT's encoding); `bytes` is at most 65 long.
fn octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    #[allow(clippy::cast_possible_truncation)] // EC points here are at most 65 bytes.
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
    out
}

impl Key {
    /// The objects for one key from sigild; `None` for a key this module cannot describe
    /// (an algorithm newer than it, or an SPKI that does not parse).
    pub fn from_wire(key: &pb::PublicKey) -> Option<Self> {
        let id = hex::decode(&key.key_id).ok()?;
        let label = format!("{}:{}", key.role, key.gun).into_bytes();
        let mut common = vec![
            (CKA_TOKEN, bool_attr(true)),
            (CKA_PRIVATE, bool_attr(false)),
            (CKA_MODIFIABLE, bool_attr(false)),
            (CKA_LOCAL, bool_attr(true)),
            (CKA_DERIVE, bool_attr(false)),
            (CKA_ID, id),
            (CKA_LABEL, label),
            (CKA_PUBLIC_KEY_INFO, key.spki_der.clone()),
        ];
        let kind = match pb::Algorithm::try_from(key.algorithm).ok()? {
            pb::Algorithm::EcdsaP256 => {
                let point = spki_bits(&key.spki_der)?;
                (point.len() == 65).then_some(())?;
                common.push((CKA_KEY_TYPE, ulong(CKK_EC as CK_KEY_TYPE)));
                common.push((CKA_EC_PARAMS, P256_PARAMS.to_vec()));
                common.push((CKA_EC_POINT, octet_string(&point)));
                KeyKind::P256
            }
            pb::Algorithm::Ed25519 => {
                let point = spki_bits(&key.spki_der)?;
                (point.len() == 32).then_some(())?;
                common.push((CKA_KEY_TYPE, ulong(CKK_EC_EDWARDS)));
                common.push((CKA_EC_PARAMS, ED25519_PARAMS.to_vec()));
                common.push((CKA_EC_POINT, octet_string(&point)));
                KeyKind::Ed25519
            }
            pb::Algorithm::Rsa3072Pss => {
                let public = rsa::RsaPublicKey::from_public_key_der(&key.spki_der).ok()?;
                common.push((CKA_KEY_TYPE, ulong(CKK_RSA)));
                common.push((CKA_MODULUS, public.n().to_bytes_be()));
                common.push((CKA_MODULUS_BITS, ulong((public.size() * 8) as CK_ULONG)));
                common.push((CKA_PUBLIC_EXPONENT, public.e().to_bytes_be()));
                KeyKind::Rsa3072
            }
            pb::Algorithm::Unspecified => return None,
        };
        Some(Self {
            key_id: key.key_id.clone(),
            backend: key.backend.clone(),
            kind,
            common,
        })
    }

    /// One attribute of the private (`private` true) or public key object.
    pub fn attribute(&self, private: bool, kind: CK_ATTRIBUTE_TYPE) -> Lookup<'_> {
        if let Some((_, v)) = self.common.iter().find(|(k, _)| *k == kind) {
            return Lookup::Value(v);
        }
        if private && SENSITIVE.contains(&kind) {
            return Lookup::Sensitive;
        }
        let value: Option<&'static [u8]> = match (private, kind) {
            (true, CKA_CLASS) => Some(CLASS_PRIVATE),
            (false, CKA_CLASS) => Some(CLASS_PUBLIC),
            (true, CKA_SIGN | CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE | CKA_NEVER_EXTRACTABLE) => {
                Some(TRUE)
            }
            (
                true,
                CKA_EXTRACTABLE
                | CKA_DECRYPT
                | CKA_UNWRAP
                | CKA_SIGN_RECOVER
                | CKA_ALWAYS_AUTHENTICATE,
            ) => Some(FALSE),
            (false, CKA_VERIFY) => Some(TRUE),
            (false, CKA_ENCRYPT | CKA_WRAP | CKA_VERIFY_RECOVER) => Some(FALSE),
            _ => None,
        };
        value.map_or(Lookup::Invalid, Lookup::Value)
    }

    /// Whether every attribute of `template` has exactly this value on the object.
    pub fn matches(&self, private: bool, template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> bool {
        template
            .iter()
            .all(|(kind, want)| matches!(self.attribute(private, *kind), Lookup::Value(v) if v == want.as_slice()))
    }
}

const TRUE: &[u8] = &[CK_TRUE as CK_BBOOL];
const FALSE: &[u8] = &[CK_FALSE as CK_BBOOL];
const CLASS_PRIVATE: &[u8] = &(CKO_PRIVATE_KEY as CK_OBJECT_CLASS).to_ne_bytes();
const CLASS_PUBLIC: &[u8] = &(CKO_PUBLIC_KEY as CK_OBJECT_CLASS).to_ne_bytes();

/// The subjectPublicKey bits of a DER SubjectPublicKeyInfo.
fn spki_bits(der: &[u8]) -> Option<Vec<u8>> {
    let info = spki::SubjectPublicKeyInfoRef::try_from(der).ok()?;
    info.subject_public_key.as_bytes().map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 public key made with `openssl ecparam -genkey`.
    const P256_SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEckdkDnUY0D5EAvhMCjAVFq/gJagl
njzqZfzl7SVdD1sqaYi5gmv4qDkbnCGJshESyRaeooNGYOwsIqFUeOIjPw==
-----END PUBLIC KEY-----
";

    fn p256() -> Key {
        let spki_der = spki::der::pem::decode_vec(P256_SPKI_PEM.as_bytes())
            .expect("pem")
            .1;
        Key::from_wire(&pb::PublicKey {
            key_id: "ab".repeat(32),
            backend: "softhsm".into(),
            role: "targets".into(),
            gun: "example.com/app".into(),
            algorithm: pb::Algorithm::EcdsaP256.into(),
            spki_der,
            ..Default::default()
        })
        .expect("a P-256 key converts")
    }

    #[test]
    fn a_p256_key_has_the_attributes_tools_look_for() {
        let key = p256();
        assert_eq!(
            key.attribute(true, CKA_LABEL),
            Lookup::Value(b"targets:example.com/app")
        );
        assert_eq!(key.attribute(true, CKA_ID), Lookup::Value(&[0xab; 32]));
        assert_eq!(
            key.attribute(true, CKA_EC_PARAMS),
            Lookup::Value(P256_PARAMS)
        );
        let Lookup::Value(point) = key.attribute(false, CKA_EC_POINT) else {
            panic!("no EC point");
        };
        assert_eq!(&point[..3], &[0x04, 65, 0x04]);
        assert_eq!(key.attribute(true, CKA_SENSITIVE), Lookup::Value(TRUE));
        assert_eq!(key.attribute(true, CKA_EXTRACTABLE), Lookup::Value(FALSE));
        assert_eq!(key.attribute(true, CKA_VALUE), Lookup::Sensitive);
        assert_eq!(key.attribute(false, CKA_SIGN), Lookup::Invalid);
        assert_eq!(key.attribute(false, CKA_VERIFY), Lookup::Value(TRUE));
    }

    #[test]
    fn templates_match_on_every_attribute() {
        let key = p256();
        let class = (CKA_CLASS, ulong(CKO_PRIVATE_KEY as CK_ULONG));
        assert!(key.matches(true, std::slice::from_ref(&class)));
        assert!(!key.matches(false, std::slice::from_ref(&class)));
        assert!(key.matches(true, &[class.clone(), (CKA_ID, vec![0xab; 32])]));
        assert!(!key.matches(true, &[class, (CKA_ID, vec![0xab; 31])]));
        assert!(!key.matches(true, &[(CKA_VALUE, vec![])]));
        assert!(key.matches(false, &[]));
    }
}
