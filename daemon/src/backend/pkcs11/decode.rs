//! Decoding public keys from PKCS#11 attributes.

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectHandle};
use cryptoki::session::Session;

use super::super::{Error, PublicKey};
use super::{P256_PARAMS, classify};

pub(super) fn read_public(
    session: &Session,
    public: ObjectHandle,
    name: &str,
) -> Result<PublicKey, Error> {
    let bad = |what: String| Error::BadToken {
        backend: name.to_owned(),
        what,
    };
    let attrs = session
        .get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ],
        )
        .map_err(|e| classify(name, e))?;
    let (mut key_type, mut params, mut point, mut modulus, mut exponent) =
        (None, None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    let parsed = match (key_type, params.as_deref(), point.as_deref()) {
        (Some(KeyType::EC), Some(P256_PARAMS), Some(point)) => {
            PublicKey::from_p256_sec1(unwrap_octet_string(point))
        }
        (Some(KeyType::EC_EDWARDS), _, Some(point)) => {
            PublicKey::from_ed25519_bytes(unwrap_octet_string(point))
        }
        (Some(KeyType::RSA), _, _) => match (modulus, exponent) {
            (Some(n), Some(e)) => PublicKey::from_rsa_components(&n, &e),
            _ => return Err(bad("RSA public key without modulus or exponent".into())),
        },
        (t, _, _) => return Err(bad(format!("unsupported public key type {t:?}"))),
    };
    parsed.map_err(|e| bad(e.to_string()))
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point in the standard, raw in some modules.
pub(super) fn unwrap_octet_string(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => rest,
        _ => bytes,
    }
}
