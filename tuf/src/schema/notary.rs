//! Everything that is specific to the Notary dialect of TUF, kept in one place so that a TUF 1.0
//! serialisation (lower-case `_type`, hex hashes, `spec_version`, DER ECDSA) can be added as a
//! sibling module instead of a fork of the model.
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
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

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

macro_rules! type_tag {
    ($(#[$doc:meta])* $name:ident, $text:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl $name {
            /// The `_type` value.
            pub const TEXT: &'static str = $text;
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                if text == $text {
                    Ok($name)
                } else {
                    Err(serde::de::Error::custom(format!(
                        "_type is {text:?}, expected {:?}",
                        $text
                    )))
                }
            }
        }
    };
}

type_tag!(
    /// `"_type": "Root"`.
    RootTag,
    "Root"
);
type_tag!(
    /// `"_type": "Targets"`, also used by delegated targets roles.
    TargetsTag,
    "Targets"
);
type_tag!(
    /// `"_type": "Snapshot"`.
    SnapshotTag,
    "Snapshot"
);
type_tag!(
    /// `"_type": "Timestamp"`.
    TimestampTag,
    "Timestamp"
);

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
            serde_json::to_string(&TimestampTag).expect("ser"),
            "\"Timestamp\""
        );
    }
}
