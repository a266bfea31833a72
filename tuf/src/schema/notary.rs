//! Everything that is specific to the Notary dialect of TUF, kept in one place; the TUF 1.0
//! serialisation is the sibling module [`super::tuf1`], both behind [`super::dialect::Dialect`].
//!
//! Notary's choices, as served by notary-server 0.7 and read by the notary client and docker:
//! - `_type` is capitalised: `Root`, `Targets` (delegations too), `Snapshot`, `Timestamp`;
//! - hashes in `meta` and `targets` are standard base64 (with padding) of sha256 and sha512;
//! - `keyval.public` is base64 of DER SPKI (`ecdsa`, `rsa`), of the raw key (`ed25519`), or of the
//!   PEM text of a certificate (`ecdsa-x509`, `rsa-x509`);
//! - signature methods `ecdsa` (raw r‖s over SHA-256), `rsapss` (SHA-256, salt 32), `eddsa`;
//! - `expires` is Go's RFC 3339 with trimmed nanoseconds, in UTC;
//! - default expiries: root 10 years, targets and snapshot 3 years, timestamp 14 days.

use std::time::Duration;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::dialect::{
    Dialect, HashValue, Header, MetadataKey, MetadataSignature, RoleListing, TypeTag, kind,
};
use super::{Expires, FileMeta, HashBytes, Signature, TufKey};
use crate::cjson;
use crate::error::{Error, Result};
use crate::key::PublicKey;

/// The base64 engine Notary uses for hashes, keys and signatures.
pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Encodes bytes the way Notary writes them in metadata.
pub fn encode_bytes(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes bytes written by [`encode_bytes`].
pub fn decode_bytes(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(text)
}

/// Hash algorithm names used in `hashes` maps, and the only ones Notary checks.
pub const SHA256: &str = "sha256";
/// See [`SHA256`].
pub const SHA512: &str = "sha512";

/// Default lifetime of root metadata and of the root certificate.
pub const ROOT_EXPIRY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default lifetime of targets (and delegation) metadata.
pub const TARGETS_EXPIRY: Duration = Duration::from_secs(3 * 365 * 24 * 3600);
/// Default lifetime of snapshot metadata.
pub const SNAPSHOT_EXPIRY: Duration = Duration::from_secs(3 * 365 * 24 * 3600);
/// Default lifetime of timestamp metadata (set by the server).
pub const TIMESTAMP_EXPIRY: Duration = Duration::from_secs(14 * 24 * 3600);

/// Formats a time as Go's `time.RFC3339Nano` in UTC: trailing zeros of the fraction trimmed,
/// no fraction at all when it is zero. This is how Notary writes `expires`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The Notary dialect (see the table in [`super::dialect`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Notary;

/// Notary bodies have no header fields besides `_type`, `version` and `expires`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NoHeader;

impl Header for NoHeader {}

impl Dialect for Notary {
    const NAME: &'static str = "Notary";
    const ROOT_TYPE: &'static str = "Root";
    const TARGETS_TYPE: &'static str = "Targets";
    const SNAPSHOT_TYPE: &'static str = "Snapshot";
    const TIMESTAMP_TYPE: &'static str = "Timestamp";
    const CONSISTENT_SNAPSHOT: bool = false;
    const HASHES: &'static [&'static str] = &[SHA256, SHA512];

    type Header = NoHeader;
    type Hash = HashBytes;
    type Key = TufKey;
    type Signature = Signature;
    type MetaFile = FileMeta<Notary>;

    fn canonical(value: &Value) -> Result<Vec<u8>> {
        cjson::from_value(value)
    }

    fn parse<T: DeserializeOwned>(role: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|source| Error::Json {
            role: role.to_owned(),
            source,
        })
    }

    fn check_parsed(_: &str, _: u64, _: &Expires, _: &[Signature]) -> Result<()> {
        Ok(())
    }

    fn format_time(t: OffsetDateTime) -> String {
        format_time(t)
    }

    fn file(signed: &Value, signatures: &Value) -> Result<Vec<u8>> {
        let signed = cjson::from_value(signed)?;
        let signatures = cjson::from_value(signatures)?;
        let mut out = Vec::with_capacity(signed.len() + signatures.len() + 32);
        out.extend_from_slice(b"{\"signed\":");
        out.extend_from_slice(&signed);
        out.extend_from_slice(b",\"signatures\":");
        out.extend_from_slice(&signatures);
        out.push(b'}');
        // Canonical JSON leaves control characters raw, which no JSON parser reads back; the
        // escapes decode to the same strings, so what the signatures cover is unchanged.
        Ok(cjson::escape_control_characters(out))
    }

    fn verify(key: &TufKey, signature: &Signature, message: &[u8]) -> Result<()> {
        key.verify(&signature.method, message, &signature.sig)
    }

    fn signature(keyid: &str, key: &TufKey, sig: Vec<u8>) -> Result<Signature> {
        let method = key
            .signature_method()
            .ok_or_else(|| Error::key(keyid, "no signature method for this key type"))?;
        Ok(Signature {
            keyid: keyid.to_owned(),
            method,
            sig,
        })
    }
}

impl HashValue for HashBytes {
    fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl RoleListing for FileMeta<Notary> {
    fn listed_version(&self) -> Option<u64> {
        None
    }

    fn check_bytes(&self, role: &str, listed_in: &str, version: u64, content: &[u8]) -> Result<()> {
        self.check(role, listed_in, version, content)
    }
}

impl MetadataKey for TufKey {
    fn key_id(&self) -> String {
        self.id()
    }

    fn public_key(&self) -> Result<PublicKey> {
        self.to_public_key()
    }
}

impl MetadataSignature for Signature {
    fn keyid(&self) -> &str {
        &self.keyid
    }

    fn sig(&self) -> &[u8] {
        &self.sig
    }
}

/// `"_type": "Root"`.
pub type RootTag = TypeTag<Notary, kind::Root>;
/// `"_type": "Targets"`, also used by delegated targets roles.
pub type TargetsTag = TypeTag<Notary, kind::Targets>;
/// `"_type": "Snapshot"`.
pub type SnapshotTag = TypeTag<Notary, kind::Snapshot>;
/// `"_type": "Timestamp"`.
pub type TimestampTag = TypeTag<Notary, kind::Timestamp>;

/// Serde helper for byte strings written as standard base64 (`#[serde(with = ...)]`).
pub(crate) mod base64_bytes {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_rfc3339nano_trims_the_fraction() {
        let t =
            OffsetDateTime::from_unix_timestamp_nanos(2_110_661_014_653_918_080).expect("in range");
        assert_eq!(format_time(t), "2036-11-18T22:43:34.65391808Z");
        let t = OffsetDateTime::from_unix_timestamp(0).expect("epoch");
        assert_eq!(format_time(t), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn tags_refuse_other_types() {
        assert!(serde_json::from_str::<RootTag>("\"Root\"").is_ok());
        assert!(serde_json::from_str::<RootTag>("\"root\"").is_err());
        assert_eq!(
            serde_json::to_string(&TimestampTag::new()).expect("ser"),
            "\"Timestamp\""
        );
    }
}
