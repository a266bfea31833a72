//! The listing of one file: length, hashes and custom data of a target (both dialects), or of a
//! role file in Notary's snapshot and timestamp; and the hash algorithms this crate computes.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha512};

use super::dialect::{Dialect, HashValue, Notary};
use super::{Extra, notary};
use crate::error::{Error, Result};

/// A hash value (base64 in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HashBytes(#[serde(with = "notary::base64_bytes")] pub Vec<u8>);

/// Length, hashes and optional custom data of a file: a target in targets metadata, or (in
/// Notary) a role file in snapshot and timestamp metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct FileMeta<D: Dialect = Notary> {
    /// Length in bytes.
    pub length: u64,
    /// Hash algorithm → digest. Notary writes sha256 and sha512, TUF 1.0 sha256.
    pub hashes: BTreeMap<String, D::Hash>,
    /// Opaque application data (`custom`), kept as given (including an explicit `null`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub custom: Option<Value>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl FileMeta {
    /// sha256, sha512 and length of `content`, as Notary lists targets and role files.
    pub fn from_bytes(content: &[u8]) -> Self {
        Self::from_bytes_in(Notary, content)
    }

    /// A target known only by its length and SHA-256 (`addhash`).
    pub fn from_sha256(length: u64, sha256: [u8; 32]) -> Self {
        Self::from_sha256_in(Notary, length, sha256)
    }
}

/// The digest of `content` with a hash algorithm this crate checks (`sha224`, `sha256`,
/// `sha384`, `sha512`), `None` for others.
pub fn digest(algorithm: &str, content: &[u8]) -> Option<Vec<u8>> {
    Some(match algorithm {
        "sha224" => sha2::Sha224::digest(content).to_vec(),
        notary::SHA256 => Sha256::digest(content).to_vec(),
        "sha384" => sha2::Sha384::digest(content).to_vec(),
        notary::SHA512 => Sha512::digest(content).to_vec(),
        _ => return None,
    })
}

impl<D: Dialect> FileMeta<D> {
    /// Length and the dialect's hashes ([`Dialect::HASHES`]) of `content`.
    pub fn from_bytes_in(_: D, content: &[u8]) -> Self {
        let hashes = D::HASHES
            .iter()
            .filter_map(|alg| {
                Some((
                    (*alg).to_owned(),
                    D::Hash::from_bytes(digest(alg, content)?),
                ))
            })
            .collect();
        Self {
            length: content.len() as u64,
            hashes,
            custom: None,
            extra: Extra::new(),
        }
    }

    /// A file known only by its length and SHA-256.
    pub fn from_sha256_in(_: D, length: u64, sha256: [u8; 32]) -> Self {
        let mut hashes = BTreeMap::new();
        hashes.insert(
            notary::SHA256.to_owned(),
            D::Hash::from_bytes(sha256.to_vec()),
        );
        Self {
            length,
            hashes,
            custom: None,
            extra: Extra::new(),
        }
    }

    /// The SHA-256 digest, if listed.
    pub fn sha256(&self) -> Option<&[u8]> {
        self.hashes.get(notary::SHA256).map(HashValue::bytes)
    }

    /// The SHA-256 in hex: the form used in consistent URLs (`snapshot.<hex>.json`).
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256().map(hex::encode)
    }

    /// Checks the hash structure: at least one of sha256/sha512, each of the right size.
    pub fn check_hashes_structure(&self) -> std::result::Result<(), String> {
        let mut known = 0;
        for (alg, value) in &self.hashes {
            let size = match alg.as_str() {
                notary::SHA256 => 32,
                notary::SHA512 => 64,
                _ => continue,
            };
            if value.bytes().len() != size {
                return Err(format!(
                    "{alg} is {} bytes, expected {size}",
                    value.bytes().len()
                ));
            }
            known += 1;
        }
        if known == 0 {
            return Err("no sha256 or sha512 hash".into());
        }
        Ok(())
    }

    /// Checks `content` against this listing: same length, and every sha256/sha512 listed
    /// matches (at least one must be). `role` is the file being checked, `listed_in`/`version`
    /// the role that lists it; they only name things in errors.
    pub fn check(&self, role: &str, listed_in: &str, version: u64, content: &[u8]) -> Result<()> {
        if content.len() as u64 != self.length {
            return Err(Error::LengthMismatch {
                role: role.to_owned(),
                listed_in: listed_in.to_owned(),
                version,
                expected: self.length,
                actual: content.len() as u64,
            });
        }
        let mut checked = 0;
        for (alg, value) in &self.hashes {
            let actual = match alg.as_str() {
                notary::SHA256 => Sha256::digest(content).to_vec(),
                notary::SHA512 => Sha512::digest(content).to_vec(),
                _ => continue,
            };
            if actual != value.bytes() {
                return Err(Error::HashMismatch {
                    role: role.to_owned(),
                    listed_in: listed_in.to_owned(),
                    version,
                    algorithm: alg.clone(),
                });
            }
            checked += 1;
        }
        if checked == 0 {
            return Err(Error::invalid(
                listed_in,
                version,
                format!("{role} is listed without a sha256 or sha512 hash"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cjson;

    #[test]
    fn file_meta_checks_length_and_every_hash() {
        let meta = FileMeta::from_bytes(b"hello");
        meta.check("t", "targets", 1, b"hello").expect("matches");
        assert!(matches!(
            meta.check("t", "targets", 1, b"hell"),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            meta.check("t", "targets", 1, b"hellp"),
            Err(Error::HashMismatch { .. })
        ));
        let mut only_sha512 = meta.clone();
        only_sha512.hashes.remove(notary::SHA256);
        only_sha512
            .check("t", "targets", 1, b"hello")
            .expect("sha512 alone");
        let mut none = meta;
        none.hashes.clear();
        assert!(none.check("t", "targets", 1, b"hello").is_err());
    }

    #[test]
    fn custom_null_survives() {
        let m: FileMeta =
            serde_json::from_str(r#"{"custom":null,"hashes":{},"length":1}"#).expect("parse");
        assert_eq!(
            cjson::to_vec(&m).expect("cjson"),
            br#"{"custom":null,"hashes":{},"length":1}"#
        );
    }
}
