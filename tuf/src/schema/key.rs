//! Notary's public key objects (`{"keytype", "keyval": {"public", "private": null}}`): their
//! TUF key ids, canonical key ids, conversion to [`PublicKey`] and signature checks per method.
//! The crate's daemon-facing key type ([`crate::key`]) knows nothing of these encodings.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::notary;
use super::{Extra, SignatureMethod};
use crate::cjson;
use crate::error::{Error, Result};
use crate::key::PublicKey;
use crate::x509::Certificate;

/// Notary's smallest accepted RSA modulus.
const MIN_RSA_BITS: usize = 2048;

/// The `keytype` of a TUF key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `ecdsa`: base64 DER SPKI.
    Ecdsa,
    /// `ecdsa-x509`: base64 of the PEM text of a certificate.
    EcdsaX509,
    /// `rsa`: base64 DER SPKI.
    Rsa,
    /// `rsa-x509`: base64 of the PEM text of a certificate.
    RsaX509,
    /// `ed25519`: base64 of the raw 32 bytes.
    Ed25519,
    /// Any other type: kept, never used to verify.
    Other(String),
}

impl KeyType {
    /// The name written in metadata.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ecdsa => "ecdsa",
            Self::EcdsaX509 => "ecdsa-x509",
            Self::Rsa => "rsa",
            Self::RsaX509 => "rsa-x509",
            Self::Ed25519 => "ed25519",
            Self::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "ecdsa" => Self::Ecdsa,
            "ecdsa-x509" => Self::EcdsaX509,
            "rsa" => Self::Rsa,
            "rsa-x509" => Self::RsaX509,
            "ed25519" => Self::Ed25519,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether `public` holds a certificate.
    pub fn is_x509(&self) -> bool {
        matches!(self, Self::EcdsaX509 | Self::RsaX509)
    }

    /// The signature method Notary uses with this key type.
    pub fn signature_method(&self) -> Option<SignatureMethod> {
        match self {
            Self::Ecdsa | Self::EcdsaX509 => Some(SignatureMethod::Ecdsa),
            Self::Rsa | Self::RsaX509 => Some(SignatureMethod::RsaPss),
            Self::Ed25519 => Some(SignatureMethod::Ed25519),
            Self::Other(_) => None,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for KeyType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// `keyval`: the public part (base64 text, kept verbatim) and a private part that metadata
/// always leaves `null`. Field order is Notary's struct order, which its `.key` replies use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyVal {
    /// Base64 text of the public key bytes (see [`KeyType`]).
    pub public: String,
    /// Always `null` in metadata.
    pub private: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A public key as it appears in root.json `keys` and in `delegations.keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TufKey {
    /// Key type.
    pub keytype: KeyType,
    /// Key value.
    pub keyval: KeyVal,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl TufKey {
    /// A key of `keytype` whose public bytes are `public`.
    pub fn new(keytype: KeyType, public: &[u8]) -> Self {
        Self {
            keytype,
            keyval: KeyVal {
                public: notary::encode_bytes(public),
                private: None,
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }

    /// The bare key (`ecdsa`, `rsa` or `ed25519`) for a public key.
    pub fn from_public_key(key: &PublicKey) -> Self {
        match key {
            PublicKey::EcdsaP256(_) => Self::new(KeyType::Ecdsa, &key.to_spki_der()),
            PublicKey::Rsa(_) => Self::new(KeyType::Rsa, &key.to_spki_der()),
            PublicKey::Ed25519(k) => Self::new(KeyType::Ed25519, k.as_bytes()),
        }
    }

    /// An `ecdsa-x509` or `rsa-x509` key for a PEM certificate (the text is kept verbatim,
    /// so the key id is the one Notary computes for the same file).
    pub fn from_certificate_pem(pem: &str) -> Result<Self> {
        let cert = Certificate::from_pem(pem)?;
        let keytype = match cert.public_key()? {
            PublicKey::EcdsaP256(_) => KeyType::EcdsaX509,
            PublicKey::Rsa(_) => KeyType::RsaX509,
            PublicKey::Ed25519(_) => {
                return Err(Error::cert("Notary has no x509 key type for Ed25519"));
            }
        };
        Ok(Self::new(keytype, pem.as_bytes()))
    }

    /// The TUF key id: hex SHA-256 of the canonical JSON of `{keytype, keyval{private: null,
    /// public}}`. For x509 keys this hashes the certificate.
    pub fn id(&self) -> String {
        let value = json!({
            "keytype": self.keytype.as_str(),
            "keyval": { "private": null, "public": self.keyval.public },
        });
        // Strings and null always have a canonical form.
        let bytes = cjson::from_value(&value).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// The canonical key id (`utils.CanonicalKeyID`): the id of the bare key inside a
    /// certificate, and the plain id otherwise. Notary names private keys and lists keys by it.
    pub fn canonical_id(&self) -> Result<String> {
        match self.keytype {
            KeyType::EcdsaX509 | KeyType::RsaX509 => {
                Ok(Self::from_public_key(&self.to_public_key()?).id())
            }
            _ => Ok(self.id()),
        }
    }

    /// The decoded `public` bytes.
    pub fn public_bytes(&self) -> Result<Vec<u8>> {
        notary::decode_bytes(&self.keyval.public)
            .map_err(|e| Error::key(&self.id(), format!("public is not base64: {e}")))
    }

    /// The certificate of an x509 key, `None` for bare keys.
    pub fn certificate(&self) -> Result<Option<Certificate>> {
        if !self.keytype.is_x509() {
            return Ok(None);
        }
        let pem = String::from_utf8(self.public_bytes()?)
            .map_err(|_| Error::key(&self.id(), "certificate PEM is not UTF-8"))?;
        Certificate::from_pem(&pem)
            .map(Some)
            .map_err(|e| Error::key(&self.id(), e.to_string()))
    }

    /// For x509 key types, the certificate followed by any others in the PEM (the
    /// intermediates of a CA-issued root key); empty for bare keys.
    pub fn certificate_chain(&self) -> Result<Vec<Certificate>> {
        if !self.keytype.is_x509() {
            return Ok(Vec::new());
        }
        let pem = String::from_utf8(self.public_bytes()?)
            .map_err(|_| Error::key(&self.id(), "certificate PEM is not UTF-8"))?;
        Certificate::from_pem_bundle(&pem).map_err(|e| Error::key(&self.id(), e.to_string()))
    }

    /// The public key, checked against the key type.
    pub fn to_public_key(&self) -> Result<PublicKey> {
        let id = || self.id();
        let key = match &self.keytype {
            KeyType::Ecdsa | KeyType::Rsa => PublicKey::from_spki_der(&self.public_bytes()?)
                .map_err(|e| Error::key(&id(), e.to_string()))?,
            KeyType::Ed25519 => PublicKey::from_ed25519_bytes(&self.public_bytes()?)
                .map_err(|e| Error::key(&id(), e.to_string()))?,
            KeyType::EcdsaX509 | KeyType::RsaX509 => match self.certificate()? {
                Some(cert) => cert.public_key()?,
                None => return Err(Error::key(&id(), "no certificate")),
            },
            KeyType::Other(t) => {
                return Err(Error::key(&id(), format!("unsupported key type {t:?}")));
            }
        };
        let matches = matches!(
            (&self.keytype, &key),
            (KeyType::Ecdsa | KeyType::EcdsaX509, PublicKey::EcdsaP256(_))
                | (KeyType::Rsa | KeyType::RsaX509, PublicKey::Rsa(_))
                | (KeyType::Ed25519, PublicKey::Ed25519(_))
        );
        if !matches {
            return Err(Error::key(
                &id(),
                format!("{} key holds a {} key", self.keytype, key.algorithm()),
            ));
        }
        if let PublicKey::Rsa(k) = &key {
            use rsa::traits::PublicKeyParts as _;
            if k.size() * 8 < MIN_RSA_BITS {
                return Err(Error::key(&id(), "RSA keys must have at least 2048 bits"));
            }
        }
        Ok(key)
    }

    /// The signature method this key signs with in Notary metadata.
    pub fn signature_method(&self) -> Option<SignatureMethod> {
        self.keytype.signature_method()
    }

    /// Verifies a metadata signature made with `method` over `message` (the canonical body),
    /// with Notary's rules: `ecdsa` must be raw `r || s` of exactly 64 bytes (not DER).
    pub fn verify(&self, method: &SignatureMethod, message: &[u8], sig: &[u8]) -> Result<()> {
        let key = self.to_public_key()?;
        let bad = |reason: &str| Error::key(&self.id(), reason.to_owned());
        match (method, &key) {
            (SignatureMethod::Ecdsa, PublicKey::EcdsaP256(_)) => {
                if sig.len() != 64 {
                    return Err(bad("ecdsa signature is not 64 bytes of raw r||s"));
                }
                key.verify(message, sig)
                    .map_err(|_| bad("ecdsa signature does not verify"))
            }
            (SignatureMethod::RsaPss, PublicKey::Rsa(_)) => key
                .verify(message, sig)
                .map_err(|_| bad("rsapss signature does not verify")),
            (SignatureMethod::RsaPkcs1v15, PublicKey::Rsa(k)) => {
                let digest = Sha256::digest(message);
                k.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, sig)
                    .map_err(|_| bad("rsapkcs1v15 signature does not verify"))
            }
            (SignatureMethod::Ed25519, PublicKey::Ed25519(_)) => key
                .verify(message, sig)
                .map_err(|_| bad("eddsa signature does not verify")),
            (method, key) => Err(bad(&format!(
                "method {method} cannot be used with a {} key",
                key.algorithm()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From fixtures/server/snapshot.key.json (a reply of notary-server, fields in struct order).
    const SNAPSHOT_KEY: &str = r#"{"keytype":"ecdsa","keyval":{"public":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElYZmezEJAXZHkFBUWc880llwkE7vu0uIQXGF6KY/pVoxnvIyBS+r2sBi4O98kY55ZhBlCHCw7XM/tJ0SGDOz/Q==","private":null}}"#;

    #[test]
    fn key_reply_parses_and_keeps_struct_order() {
        let key: TufKey = serde_json::from_str(SNAPSHOT_KEY).expect("parse");
        assert_eq!(key.keytype, KeyType::Ecdsa);
        assert_eq!(serde_json::to_string(&key).expect("ser"), SNAPSHOT_KEY);
        let public = key.to_public_key().expect("p256");
        assert_eq!(TufKey::from_public_key(&public), key);
        assert_eq!(key.canonical_id().expect("id"), key.id());
    }

    #[test]
    fn unknown_key_types_parse_but_do_not_verify() {
        let key: TufKey =
            serde_json::from_str(r#"{"keytype":"dsa","keyval":{"private":null,"public":"AA=="}}"#)
                .expect("parse");
        assert_eq!(key.keytype, KeyType::Other("dsa".into()));
        assert!(key.to_public_key().is_err());
        assert!(key.verify(&SignatureMethod::Ecdsa, b"m", &[0; 64]).is_err());
    }

    #[test]
    fn type_mismatch_is_refused() {
        let key: TufKey = serde_json::from_str(SNAPSHOT_KEY).expect("parse");
        let mut wrong = key.clone();
        wrong.keytype = KeyType::Rsa;
        assert!(wrong.to_public_key().is_err());
        assert!(
            key.verify(&SignatureMethod::RsaPss, b"m", &[0; 256])
                .is_err()
        );
    }
}
