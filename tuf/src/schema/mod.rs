//! The TUF metadata model: the signed envelope, signatures, role documents, file metadata and
//! role names, generic over the [`Dialect`] that serialises them ([`Notary`] by default, or
//! [`Tuf1`]; see the table in [`dialect`]). Unknown fields are kept everywhere (`extra`),
//! because a signature covers the canonical form of the whole document, including fields we do
//! not know.

pub mod dialect;
mod file_meta;
pub mod key;
pub mod notary;
pub mod root;
pub mod snapshot;
pub mod targets;
pub mod timestamp;
pub mod tuf1;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{Error, Result};

pub use dialect::{Dialect, Notary, Tuf1};
pub use file_meta::{FileMeta, HashBytes, digest};
pub use key::{KeyType, KeyVal, TufKey};
pub use root::{RoleKeys, Root};
pub use snapshot::Snapshot;
pub use targets::{DelegatedRole, Delegations, Targets};
pub use timestamp::Timestamp;

/// Unknown fields of a JSON object, kept so the canonical form (and so signatures) survive.
pub type Extra = BTreeMap<String, Value>;

/// The four top-level roles named in root.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleType {
    /// `root`: names every top-level key.
    Root,
    /// `targets`: lists targets and delegates.
    Targets,
    /// `snapshot`: pins the versions (hashes) of root, targets and delegations.
    Snapshot,
    /// `timestamp`: pins the snapshot; re-signed often by the server.
    Timestamp,
}

impl RoleType {
    /// All four, in the order a client loads them after root.
    pub const ALL: [RoleType; 4] = [Self::Root, Self::Timestamp, Self::Snapshot, Self::Targets];

    /// The role's name in root.json, file names and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Targets => "targets",
            Self::Snapshot => "snapshot",
            Self::Timestamp => "timestamp",
        }
    }
}

impl fmt::Display for RoleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RoleType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::InvalidRoleName {
                role: s.to_owned(),
                reason: "not one of root, targets, snapshot, timestamp".into(),
            })
    }
}

/// Whether `name` is a valid delegated role name as Notary defines it: `targets/` followed by
/// `[-a-z0-9_/]`, shorter than 256 bytes, and already clean (no `//`, `.`/`..` or trailing `/`).
pub fn is_delegation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("targets/") else {
        return false;
    };
    name.len() < 256
        && !rest.is_empty()
        && name
            .bytes()
            .all(|b| matches!(b, b'-' | b'_' | b'/' | b'a'..=b'z' | b'0'..=b'9'))
        && rest.split('/').all(|seg| !seg.is_empty())
}

/// Checks that `name` is a delegation name, with a reason when it is not.
pub fn check_delegation_name(name: &str) -> Result<()> {
    if is_delegation(name) {
        Ok(())
    } else {
        Err(Error::InvalidRoleName {
            role: name.to_owned(),
            reason: "a delegation is targets/NAME[/NAME...] using only a-z, 0-9, '-', '_'".into(),
        })
    }
}

/// Checks that targets can be listed in `name`: `targets` itself or a delegation.
pub fn check_targets_role(name: &str) -> Result<()> {
    if name == "targets" {
        Ok(())
    } else {
        check_delegation_name(name)
    }
}

/// The role that delegates to `name`: `targets/a/b` → `targets/a`, `targets/a` → `targets`.
pub fn parent_role(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// What every role document (`signed` body) offers, in any dialect.
pub trait RoleBody: Serialize + DeserializeOwned + Clone {
    /// The serialisation the document is written in.
    type Dialect: Dialect;
    /// The `_type` value in this dialect.
    const TYPE: &'static str;
    /// Version, starting at 1.
    fn version(&self) -> u64;
    /// Expiry.
    fn expires(&self) -> &Expires;
}

/// A role document in the Notary dialect: what the Notary update walk and editor take.
pub trait Role: RoleBody<Dialect = Notary> {}

impl<T: RoleBody<Dialect = Notary>> Role for T {}

/// An `expires` time: the text exactly as written (so re-serialisation is byte-identical) and
/// the instant it denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expires {
    text: String,
    at: OffsetDateTime,
}

impl Expires {
    /// Parses an RFC 3339 time (Notary writes up to nine fractional digits).
    pub fn parse(text: &str) -> Result<Self> {
        let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| Error::Time {
                value: text.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            text: text.to_owned(),
            at,
        })
    }

    /// The given instant, written as Notary writes it.
    pub fn from_system_time(t: SystemTime) -> Result<Self> {
        Self::from_system_time_in(Notary, t)
    }

    /// `now + lifetime`, written as Notary writes it.
    pub fn after(now: SystemTime, lifetime: Duration) -> Result<Self> {
        Self::after_in(Notary, now, lifetime)
    }

    /// The given instant, written as dialect `D` writes it (TUF 1.0 drops the fraction, so the
    /// instant is truncated to the second).
    pub fn from_system_time_in<D: Dialect>(_: D, t: SystemTime) -> Result<Self> {
        let text = D::format_time(OffsetDateTime::from(t));
        Self::parse(&text)
    }

    /// `now + lifetime`, written as dialect `D` writes it.
    pub fn after_in<D: Dialect>(dialect: D, now: SystemTime, lifetime: Duration) -> Result<Self> {
        let t = now.checked_add(lifetime).ok_or_else(|| Error::Time {
            value: format!("now + {lifetime:?}"),
            reason: "out of range".into(),
        })?;
        Self::from_system_time_in(dialect, t)
    }

    /// The text as written in the metadata.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The instant.
    pub fn to_system_time(&self) -> SystemTime {
        SystemTime::from(self.at)
    }

    /// Whether the metadata is expired at `now`: strictly after the expiry, as Go's
    /// `expires.Before(now)` in notary.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        OffsetDateTime::from(now) > self.at
    }
}

impl fmt::Display for Expires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Expires {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Expires {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How a signature was made, as named in `method`. Parsing lower-cases, as Notary does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignatureMethod {
    /// `ecdsa`: ECDSA over SHA-256, raw `r || s`.
    Ecdsa,
    /// `rsapss`: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32.
    RsaPss,
    /// `eddsa`: Ed25519 over the message.
    Ed25519,
    /// `rsapkcs1v15`: RSA PKCS#1 v1.5 over SHA-256 (accepted when verifying).
    RsaPkcs1v15,
    /// Anything else; never verifies.
    Other(String),
}

impl SignatureMethod {
    /// The name written in metadata.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ecdsa => "ecdsa",
            Self::RsaPss => "rsapss",
            Self::Ed25519 => "eddsa",
            Self::RsaPkcs1v15 => "rsapkcs1v15",
            Self::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa" => Self::Ecdsa,
            "rsapss" => Self::RsaPss,
            "eddsa" => Self::Ed25519,
            "rsapkcs1v15" => Self::RsaPkcs1v15,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for SignatureMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SignatureMethod {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SignatureMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// One signature over the canonical `signed` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// TUF key id of the signing key.
    pub keyid: String,
    /// Signature scheme.
    pub method: SignatureMethod,
    /// Signature bytes (base64 in JSON).
    #[serde(with = "notary::base64_bytes")]
    pub sig: Vec<u8>,
}

/// The signature entries of role `T`'s dialect.
pub type SignatureOf<T> = <<T as RoleBody>::Dialect as Dialect>::Signature;

/// The signed envelope: `{"signed": <canonical role body>, "signatures": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T: RoleBody> {
    /// The role body that the signatures cover.
    pub signed: T,
    /// Signatures over the canonical JSON of `signed`.
    pub signatures: Vec<SignatureOf<T>>,
}

impl<T: RoleBody> Signed<T> {
    /// Parses served bytes with the dialect's rules. `role` names the file in errors.
    pub fn from_slice(role: &str, bytes: &[u8]) -> Result<Self> {
        let signed: Self = T::Dialect::parse(role, bytes)?;
        T::Dialect::check_parsed(
            role,
            signed.signed.version(),
            signed.signed.expires(),
            &signed.signatures,
        )?;
        Ok(signed)
    }

    /// The canonical JSON of `signed`: the bytes every signature covers.
    pub fn canonical_signed(&self) -> Result<Vec<u8>> {
        T::Dialect::canonical(&to_value(&self.signed)?)
    }

    /// The file as the dialect writes it: Notary puts `signed` first with no whitespace; TUF 1.0
    /// writes the whole envelope canonically, control characters escaped.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        T::Dialect::file(&to_value(&self.signed)?, &to_value(&self.signatures)?)
    }
}

fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Canonical {
        reason: e.to_string(),
    })
}

/// A role file as received or produced: its exact bytes (hashed by snapshot and timestamp,
/// written to the trust dir, sent to the server) and the parsed document.
#[derive(Debug, Clone)]
pub struct Metadata<T: RoleBody> {
    role: String,
    bytes: Vec<u8>,
    signed: Signed<T>,
}

impl<T: Role<Dialect = Notary>> Metadata<T> {
    /// Length and hashes of the bytes, as Notary's snapshot and timestamp list them.
    pub fn file_meta(&self) -> FileMeta {
        FileMeta::from_bytes(&self.bytes)
    }
}

impl<T: RoleBody> Metadata<T> {
    /// Parses `bytes` as the metadata of `role` (`root`, `targets/releases`, ...).
    pub fn from_bytes(role: &str, bytes: Vec<u8>) -> Result<Self> {
        let signed = Signed::from_slice(role, &bytes)?;
        Ok(Self {
            role: role.to_owned(),
            bytes,
            signed,
        })
    }

    /// A document and the bytes [`Signed::to_vec`] made of it (a file just written), kept
    /// without serialising or parsing again.
    pub(crate) fn from_written(role: &str, bytes: Vec<u8>, signed: Signed<T>) -> Self {
        Self {
            role: role.to_owned(),
            bytes,
            signed,
        }
    }

    /// Serialises a signed document.
    pub fn from_signed(role: &str, signed: Signed<T>) -> Result<Self> {
        Ok(Self {
            role: role.to_owned(),
            bytes: signed.to_vec()?,
            signed,
        })
    }

    /// Role name.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The envelope.
    pub fn signed(&self) -> &Signed<T> {
        &self.signed
    }

    /// The role body.
    pub fn body(&self) -> &T {
        &self.signed.signed
    }

    /// The body's version.
    pub fn version(&self) -> u64 {
        self.signed.signed.version()
    }

    /// Gives back the bytes and the envelope.
    pub fn into_parts(self) -> (Vec<u8>, Signed<T>) {
        (self.bytes, self.signed)
    }
}

/// Parses just the version of a role file without checking anything else, to learn which
/// versions a trust dir's cache had (a rollback baseline) or which root versions to fetch.
pub fn peek_version(bytes: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Body {
        version: u64,
    }
    #[derive(Deserialize)]
    struct Envelope {
        signed: Body,
    }
    serde_json::from_slice::<Envelope>(bytes)
        .ok()
        .map(|e| e.signed.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_names_follow_notary() {
        for ok in ["targets/releases", "targets/a/b-c_9", "targets/x"] {
            assert!(is_delegation(ok), "{ok}");
        }
        for bad in [
            "targets",
            "targets/",
            "targets//a",
            "targets/a/",
            "targets/A",
            "targets/../x",
            "targets/./x",
            "root",
            "targetsx/a",
        ] {
            assert!(!is_delegation(bad), "{bad}");
        }
        assert!(!is_delegation(&format!("targets/{}", "a".repeat(250))));
        assert_eq!(parent_role("targets/a/b"), "targets/a");
        assert_eq!(parent_role("targets/a"), "targets");
    }

    #[test]
    fn expires_keeps_its_text_and_compares_instants() {
        let e = Expires::parse("2036-11-18T22:43:34.65391808Z").expect("parse");
        assert_eq!(e.as_str(), "2036-11-18T22:43:34.65391808Z");
        assert!(!e.is_expired_at(e.to_system_time()));
        assert!(e.is_expired_at(e.to_system_time() + Duration::from_nanos(1)));
        assert!(Expires::parse("2036-11-18").is_err());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            Expires::after(now, Duration::from_secs(1))
                .expect("after")
                .as_str(),
            "2023-11-14T22:13:21Z"
        );
    }

    #[test]
    fn methods_are_lower_cased() {
        let m: SignatureMethod = serde_json::from_str("\"ECDSA\"").expect("parse");
        assert_eq!(m, SignatureMethod::Ecdsa);
        assert_eq!(serde_json::to_string(&m).expect("ser"), "\"ecdsa\"");
    }

    proptest::proptest! {
        /// Any targets document (names, hashes, custom data, unknown fields) re-serialises to
        /// the bytes it was read from, and parses back to the same model.
        #[test]
        fn targets_documents_round_trip(
            files in proptest::collection::btree_map(
                "\\PC{0,12}",
                (0u64..1 << 40, proptest::array::uniform32(proptest::prelude::any::<u8>()), proptest::option::of("\\PC{0,6}")),
                0..6,
            ),
            extra in proptest::collection::btree_map("x_[a-z]{1,6}", proptest::prelude::any::<i64>(), 0..3),
            version in 1u64..1_000_000,
        ) {
            let mut t = Targets::new(version, Expires::parse("2030-01-02T03:04:05.5Z").expect("time"));
            for (name, (length, digest, custom)) in files {
                let mut meta = FileMeta::from_sha256(length, digest);
                meta.custom = custom.map(Value::String);
                t.targets.insert(name, meta);
            }
            for (k, v) in extra {
                t.extra.insert(k, Value::from(v));
            }
            let signed = Signed {
                signed: t,
                signatures: vec![Signature {
                    keyid: "ab".repeat(32),
                    method: SignatureMethod::Ecdsa,
                    sig: vec![7; 64],
                }],
            };
            let bytes = signed.to_vec().expect("serialise");
            let back = Signed::<Targets>::from_slice("targets", &bytes).expect("parse");
            proptest::prop_assert_eq!(&back, &signed);
            proptest::prop_assert_eq!(back.to_vec().expect("again"), bytes);
        }
    }

    /// Found by the `notary` fuzz target (fuzz/crashes/notary/): a string with an escaped
    /// control character parsed, but the file written back carried it raw and did not parse.
    #[test]
    fn control_characters_in_strings_survive_the_file_round_trip() {
        let mut t = Targets::new(1, Expires::parse("2030-01-02T03:04:05Z").expect("time"));
        t.targets
            .insert("a\nb\u{1}\"c".to_owned(), FileMeta::from_bytes(b"x"));
        let signed = Signed {
            signed: t,
            signatures: vec![],
        };
        let bytes = signed.to_vec().expect("serialise");
        assert!(
            !bytes.iter().any(|b| *b < 0x20),
            "raw control character in the file"
        );
        let back = Signed::<Targets>::from_slice("targets", &bytes).expect("the file parses");
        assert_eq!(back, signed);
        let canonical = back.canonical_signed().expect("canonical");
        assert!(
            canonical.windows(3).any(|w| w == b"a\nb"),
            "the signed canonical form keeps the raw newline"
        );
    }
}
