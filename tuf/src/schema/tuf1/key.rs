//! TUF 1.0 key objects (`{keytype, scheme, keyval{public}}`) and signature entries
//! (`{keyid, sig}` in hex), with the key ids and signature checks securesystemslib uses.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::super::Extra;
use crate::cjson::{self, Mode};
use crate::error::{Error, Result};
use crate::key::{PublicKey, p256_raw_to_der};

/// `keytype` of ECDSA keys (PEM SubjectPublicKeyInfo).
pub const KEYTYPE_ECDSA: &str = "ecdsa";
/// Older `keytype` of P-256 keys that securesystemslib still reads.
pub const KEYTYPE_ECDSA_P256: &str = "ecdsa-sha2-nistp256";
/// `keytype` of Ed25519 keys (hex of the raw 32 bytes).
pub const KEYTYPE_ED25519: &str = "ed25519";
/// `keytype` of RSA keys (PEM SubjectPublicKeyInfo).
pub const KEYTYPE_RSA: &str = "rsa";
/// ECDSA on P-256 over SHA-256, DER signatures.
pub const SCHEME_ECDSA_P256: &str = "ecdsa-sha2-nistp256";
/// Ed25519.
pub const SCHEME_ED25519: &str = "ed25519";
/// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
pub const SCHEME_RSA_PSS_SHA256: &str = "rsassa-pss-sha256";

/// The smallest RSA modulus accepted, as for Notary.
const MIN_RSA_BITS: usize = 2048;

/// `keyval`: the public key text, kept verbatim (the key id hashes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyVal {
    /// PEM SubjectPublicKeyInfo (`ecdsa`, `rsa`) or hex of the raw key (`ed25519`).
    pub public: String,
    /// Unknown fields (part of the key id).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A public key as it appears in root `keys` and `delegations.keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// `ecdsa`, `ed25519`, `rsa`, or another type (kept, never verifies).
    pub keytype: String,
    /// Signature scheme: `ecdsa-sha2-nistp256`, `ed25519`, `rsassa-pss-sha256`, or another.
    pub scheme: String,
    /// Key value.
    pub keyval: KeyVal,
    /// Unknown fields (not part of the key id, as in securesystemslib).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Key {
    /// The key object for a public key: P-256 → `ecdsa`/`ecdsa-sha2-nistp256` with PEM,
    /// Ed25519 → `ed25519` with hex, RSA → `rsa`/`rsassa-pss-sha256` with PEM.
    pub fn from_public_key(key: &PublicKey) -> Self {
        let (keytype, scheme, public) = match key {
            PublicKey::EcdsaP256(_) => (KEYTYPE_ECDSA, SCHEME_ECDSA_P256, key.to_pem()),
            PublicKey::Ed25519(k) => (KEYTYPE_ED25519, SCHEME_ED25519, hex::encode(k.as_bytes())),
            PublicKey::Rsa(_) => (KEYTYPE_RSA, SCHEME_RSA_PSS_SHA256, key.to_pem()),
        };
        Self {
            keytype: keytype.to_owned(),
            scheme: scheme.to_owned(),
            keyval: KeyVal {
                public,
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }

    /// The key id securesystemslib computes: hex SHA-256 of the OLPC canonical JSON of
    /// `{"keytype", "scheme", "keyval"}` (unknown top-level fields left out, unknown `keyval`
    /// fields included).
    pub fn id(&self) -> String {
        let mut keyval = Map::new();
        for (k, v) in &self.keyval.extra {
            keyval.insert(k.clone(), v.clone());
        }
        keyval.insert("public".into(), Value::String(self.keyval.public.clone()));
        let mut object = Map::new();
        object.insert("keytype".into(), Value::String(self.keytype.clone()));
        object.insert("scheme".into(), Value::String(self.scheme.clone()));
        object.insert("keyval".into(), Value::Object(keyval));
        // A float inside an unknown keyval field cannot be canonical; such a key gets the id
        // of its known fields only and never matches a listed id.
        let bytes = cjson::from_value_in(Mode::Olpc, &Value::Object(object)).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// The public key, checked against `keytype` and `scheme`.
    pub fn to_public_key(&self) -> Result<PublicKey> {
        let bad = |reason: String| Error::key(&self.id(), reason);
        let key = match (self.keytype.as_str(), self.scheme.as_str()) {
            (KEYTYPE_ECDSA | KEYTYPE_ECDSA_P256, SCHEME_ECDSA_P256) => {
                match PublicKey::from_pem(&self.keyval.public) {
                    Ok(k @ PublicKey::EcdsaP256(_)) => k,
                    Ok(other) => {
                        return Err(bad(format!(
                            "{} key holds a {} key",
                            self.scheme,
                            other.algorithm()
                        )));
                    }
                    Err(e) => return Err(bad(format!("public is not a P-256 PEM key: {e}"))),
                }
            }
            (KEYTYPE_ED25519, SCHEME_ED25519) => {
                let raw = hex::decode(&self.keyval.public)
                    .map_err(|e| bad(format!("ed25519 public is not hex: {e}")))?;
                PublicKey::from_ed25519_bytes(&raw).map_err(|e| bad(e.to_string()))?
            }
            (KEYTYPE_RSA, SCHEME_RSA_PSS_SHA256) => {
                match PublicKey::from_pem(&self.keyval.public) {
                    Ok(PublicKey::Rsa(k)) => {
                        use rsa::traits::PublicKeyParts as _;
                        if k.size() * 8 < MIN_RSA_BITS {
                            return Err(bad("RSA keys must have at least 2048 bits".into()));
                        }
                        PublicKey::Rsa(k)
                    }
                    Ok(other) => {
                        return Err(bad(format!("rsa key holds a {} key", other.algorithm())));
                    }
                    Err(e) => return Err(bad(format!("public is not an RSA PEM key: {e}"))),
                }
            }
            (keytype, scheme) => {
                return Err(bad(format!(
                    "unsupported key type {keytype:?} with scheme {scheme:?}"
                )));
            }
        };
        Ok(key)
    }

    /// Verifies `sig` over `message` (the canonical body) with the key's scheme: DER ECDSA
    /// over SHA-256, Ed25519, or RSASSA-PSS over SHA-256 with a salt of the digest length
    /// (securesystemslib) or the maximum length (OpenSSL's default).
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> Result<()> {
        let key = self.to_public_key()?;
        let bad = |reason: &str| Error::key(&self.id(), format!("{}: {reason}", self.scheme));
        match &key {
            PublicKey::EcdsaP256(_) => {
                let parsed = p256::ecdsa::Signature::from_der(sig)
                    .map_err(|_| bad("signature is not DER"))?;
                key.verify(message, &parsed.to_bytes())
                    .map_err(|_| bad("signature does not verify"))
            }
            PublicKey::Ed25519(_) => key
                .verify(message, sig)
                .map_err(|_| bad("signature does not verify")),
            PublicKey::Rsa(k) => {
                if key.verify(message, sig).is_ok() {
                    return Ok(());
                }
                use rsa::traits::PublicKeyParts as _;
                let em_len = (k.n().bits() - 1).div_ceil(8);
                let max_salt = em_len.saturating_sub(32 + 2);
                let digest = Sha256::digest(message);
                k.verify(rsa::Pss::new_with_salt::<Sha256>(max_salt), &digest, sig)
                    .map_err(|_| bad("signature does not verify"))
            }
        }
    }

    /// The signature bytes to write for what a [`crate::Signer`] returned: ECDSA signers
    /// return raw `r || s`, which TUF 1.0 writes as DER.
    pub fn signature_bytes(&self, sig: Vec<u8>) -> Result<Vec<u8>> {
        if self.scheme == SCHEME_ECDSA_P256 && sig.len() == 64 {
            return p256_raw_to_der(&sig).map_err(|e| Error::key(&self.id(), e.to_string()));
        }
        Ok(sig)
    }
}

/// One signature: the key id and the signature bytes in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Key id of the signing key.
    pub keyid: String,
    /// Signature bytes (lowercase hex in JSON; either case is read).
    #[serde(with = "hex_any_case")]
    pub sig: Vec<u8>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

mod hex_any_case {
    use super::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text).map_err(|e| serde::de::Error::custom(format!("sig is not hex: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_schemes_parse_but_never_verify() {
        let key: Key = serde_json::from_str(
            r#"{"keytype":"ecdsa","scheme":"ecdsa-sha2-nistp384","keyval":{"public":"x"},"x-custom":1}"#,
        )
        .expect("parse");
        assert_eq!(key.extra.get("x-custom"), Some(&Value::from(1)));
        let err = key.verify(b"m", &[0; 8]).expect_err("unsupported");
        assert!(err.to_string().contains("unsupported key type"), "{err}");
    }

    #[test]
    fn rsa_pss_accepts_digest_length_and_maximum_salts_only() {
        use rsa::signature::RandomizedSigner as _;
        use rsa::signature::SignatureEncoding as _;
        let sk = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("rsa");
        let key = Key::from_public_key(&PublicKey::Rsa(sk.to_public_key()));
        assert_eq!(key.scheme, SCHEME_RSA_PSS_SHA256);
        let msg = b"canonical body";
        // 2048 bits: emLen 256, so the maximum salt is 256 - 32 - 2.
        for (salt, ok) in [(32, true), (222, true), (20, false)] {
            let signer = rsa::pss::BlindedSigningKey::<Sha256>::new_with_salt_len(sk.clone(), salt);
            let sig = signer.sign_with_rng(&mut rand_core::OsRng, msg).to_vec();
            assert_eq!(key.verify(msg, &sig).is_ok(), ok, "salt {salt}");
            assert!(key.verify(b"other body", &sig).is_err());
        }
    }

    #[test]
    fn key_id_ignores_top_level_unknown_fields_but_not_keyval_ones() {
        let base: Key = serde_json::from_str(
            r#"{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"00"}}"#,
        )
        .expect("parse");
        let mut top = base.clone();
        top.extra.insert("x".into(), Value::from(1));
        assert_eq!(top.id(), base.id());
        let mut inner = base.clone();
        inner.keyval.extra.insert("x".into(), Value::from(1));
        assert_ne!(inner.id(), base.id());
    }
}
