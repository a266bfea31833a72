//! The TUF 1.0 specification dialect (1.0.x, as python-tuf, go-tuf, tough and tuf-on-ci read
//! it): the [`Tuf1`] marker, its header, hex hashes, snapshot/timestamp listings, key objects
//! and signatures, the structural rules python-tuf's Metadata API enforces, and the names of the
//! model's instances (`tuf1::Root` is `schema::Root<Tuf1>`). The differences from Notary are in
//! the table of [`super::dialect`].

mod key;
mod paths;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

use super::dialect::{Dialect, HashValue, Header, MetadataKey, MetadataSignature, RoleListing};
use super::{Expires, Extra, RoleType};
use crate::cjson::{self, Mode};
use crate::error::{Error, Result};
use crate::key::PublicKey;

pub use paths::{delegation_matches, path_matches};

pub use key::{
    KEYTYPE_ECDSA, KEYTYPE_ECDSA_P256, KEYTYPE_ED25519, KEYTYPE_RSA, Key, KeyVal,
    SCHEME_ECDSA_P256, SCHEME_ED25519, SCHEME_RSA_PSS_SHA256, Signature,
};

/// The TUF 1.0 dialect (see the table in [`super::dialect`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Tuf1;

/// The specification version sigil writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// root.json in TUF 1.0.
pub type Root = super::Root<Tuf1>;
/// targets.json or a delegated targets role in TUF 1.0.
pub type Targets = super::Targets<Tuf1>;
/// snapshot.json in TUF 1.0.
pub type Snapshot = super::Snapshot<Tuf1>;
/// timestamp.json in TUF 1.0.
pub type Timestamp = super::Timestamp<Tuf1>;
/// `delegations` of a TUF 1.0 targets role.
pub type Delegations = super::Delegations<Tuf1>;
/// A target file: length, hex hashes, optional `custom`.
pub type TargetFile = super::FileMeta<Tuf1>;

/// `spec_version`: `1.x` or `1.x.y` (as python-tuf reads it); other majors are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpecVersion(String);

impl SpecVersion {
    /// Checks a `spec_version` text.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let numeric = parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !(2..=3).contains(&parts.len()) || !numeric {
            return Err(format!("spec_version {text:?} is not MAJOR.MINOR[.PATCH]"));
        }
        if parts[0] != "1" {
            return Err(format!(
                "unsupported spec_version {text:?}: only TUF 1.x metadata is read"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SpecVersion {
    fn default() -> Self {
        Self(SPEC_VERSION.to_owned())
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SpecVersion {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SpecVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The header fields of every TUF 1.0 body besides `_type`, `version` and `expires`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tuf1Header {
    /// `spec_version`.
    pub spec_version: SpecVersion,
}

impl Header for Tuf1Header {}

/// A digest written as lowercase hex (uppercase is refused: python-tuf compares hex text,
/// and the text must re-serialise byte for byte).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HexBytes(pub Vec<u8>);

impl HashValue for HexBytes {
    fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom(format!(
                "hash {text:?} is not lowercase hex"
            )));
        }
        hex::decode(&text)
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("hash {text:?} is not hex: {e}")))
    }
}

/// How snapshot and timestamp list a metadata file: its version, and optionally its length
/// and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaFile {
    /// Version of the listed file.
    pub version: u64,
    /// Length in bytes, when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Hash algorithm → digest, when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, HexBytes>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl MetaFile {
    /// A listing by version only (what python-tuf writes by default).
    pub fn new(version: u64) -> Self {
        Self {
            version,
            length: None,
            hashes: None,
            extra: Extra::new(),
        }
    }

    /// A listing by version, length and SHA-256 of the file's exact bytes.
    pub fn with_bytes(version: u64, bytes: &[u8]) -> Self {
        let hashes = Tuf1::HASHES
            .iter()
            .filter_map(|alg| Some(((*alg).to_owned(), HexBytes(super::digest(alg, bytes)?))))
            .collect();
        Self {
            version,
            length: Some(bytes.len() as u64),
            hashes: Some(hashes),
            extra: Extra::new(),
        }
    }

    /// Checks `content` against the length and hashes listed (a listing by version only
    /// checks nothing here). An algorithm this crate cannot compute fails, as in python-tuf.
    /// `role` is the file checked, `listed_in`/`version` the listing role, for errors.
    pub fn check(&self, role: &str, listed_in: &str, version: u64, content: &[u8]) -> Result<()> {
        if let Some(length) = self.length
            && length != content.len() as u64
        {
            return Err(Error::LengthMismatch {
                role: role.to_owned(),
                listed_in: listed_in.to_owned(),
                version,
                expected: length,
                actual: content.len() as u64,
            });
        }
        for (alg, expected) in self.hashes.iter().flatten() {
            let Some(actual) = super::digest(alg, content) else {
                return Err(Error::invalid(
                    listed_in,
                    version,
                    format!("{role} is listed with unsupported hash algorithm {alg:?}"),
                ));
            };
            if actual != expected.0 {
                return Err(Error::HashMismatch {
                    role: role.to_owned(),
                    listed_in: listed_in.to_owned(),
                    version,
                    algorithm: alg.clone(),
                });
            }
        }
        Ok(())
    }

    fn validate(&self, name: &str, listed_in: &str, version: u64) -> Result<()> {
        if self.version < 1 {
            return Err(Error::invalid(
                listed_in,
                version,
                format!("{name}: version must be at least 1"),
            ));
        }
        check_version(listed_in, self.version)?;
        if self.hashes.as_ref().is_some_and(BTreeMap::is_empty) {
            return Err(Error::invalid(
                listed_in,
                version,
                format!("{name}: hashes must not be empty when present"),
            ));
        }
        Ok(())
    }
}

/// The largest version accepted: 2^63 − 1, what every implementation's integer type holds.
pub const MAX_VERSION: u64 = i64::MAX as u64;

fn check_version(role: &str, version: u64) -> Result<()> {
    if version > MAX_VERSION {
        return Err(Error::Invalid {
            role: role.to_owned(),
            version,
            reason: format!("version {version} is above 2^63-1"),
        });
    }
    Ok(())
}

/// Whether `text` is an `expires` as TUF 1.0 writes it: exactly `YYYY-MM-DDTHH:MM:SSZ`.
fn is_expires_form(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

impl Dialect for Tuf1 {
    const NAME: &'static str = "TUF 1.0";
    const ROOT_TYPE: &'static str = "root";
    const TARGETS_TYPE: &'static str = "targets";
    const SNAPSHOT_TYPE: &'static str = "snapshot";
    const TIMESTAMP_TYPE: &'static str = "timestamp";
    const CONSISTENT_SNAPSHOT: bool = true;
    const HASHES: &'static [&'static str] = &["sha256"];

    type Header = Tuf1Header;
    type Hash = HexBytes;
    type Key = Key;
    type Signature = Signature;
    type MetaFile = MetaFile;

    fn canonical(value: &Value) -> Result<Vec<u8>> {
        cjson::from_value_in(Mode::Olpc, value)
    }

    fn parse<T: DeserializeOwned>(role: &str, bytes: &[u8]) -> Result<T> {
        let json = |source| Error::Json {
            role: role.to_owned(),
            source,
        };
        let value = cjson::parse_strict(bytes).map_err(json)?;
        serde_json::from_value(value).map_err(json)
    }

    fn check_parsed(
        role: &str,
        version: u64,
        expires: &Expires,
        signatures: &[Signature],
    ) -> Result<()> {
        check_version(role, version)?;
        if version < 1 {
            return Err(Error::invalid(role, version, "version must be at least 1"));
        }
        if !is_expires_form(expires.as_str()) {
            return Err(Error::Time {
                value: expires.as_str().to_owned(),
                reason: "TUF 1.0 expires must be exactly YYYY-MM-DDTHH:MM:SSZ".into(),
            });
        }
        let mut seen = BTreeSet::new();
        for sig in signatures {
            if !seen.insert(sig.keyid.as_str()) {
                return Err(Error::invalid(
                    role,
                    version,
                    format!("more than one signature by key {}", sig.keyid),
                ));
            }
        }
        Ok(())
    }

    fn format_time(t: OffsetDateTime) -> String {
        let t = t.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    fn file(signed: &Value, signatures: &Value) -> Result<Vec<u8>> {
        // Canonical JSON of the whole envelope, with control characters escaped so that the
        // file is valid JSON: one line, keys sorted, the same bytes for the same document.
        let mut envelope = serde_json::Map::new();
        envelope.insert("signatures".into(), signatures.clone());
        envelope.insert("signed".into(), signed.clone());
        cjson::from_value_in(Mode::OlpcFile, &Value::Object(envelope))
    }

    fn verify(key: &Key, signature: &Signature, message: &[u8]) -> Result<()> {
        key.verify(message, &signature.sig)
    }

    fn signature(keyid: &str, key: &Key, sig: Vec<u8>) -> Result<Signature> {
        Ok(Signature {
            keyid: keyid.to_owned(),
            sig: key.signature_bytes(sig)?,
            extra: Extra::new(),
        })
    }
}

impl RoleListing for MetaFile {
    fn listed_version(&self) -> Option<u64> {
        Some(self.version)
    }

    fn check_bytes(&self, role: &str, listed_in: &str, version: u64, content: &[u8]) -> Result<()> {
        self.check(role, listed_in, version, content)
    }
}

impl MetadataKey for Key {
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

/// Checks a role's key ids: each listed once and each defined in `keys`.
fn check_keyids(
    role: &str,
    version: u64,
    what: &str,
    keyids: &[String],
    keys: &BTreeMap<String, Key>,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for id in keyids {
        if !seen.insert(id) {
            return Err(Error::invalid(
                role,
                version,
                format!("{what} lists key {id} twice"),
            ));
        }
        if !keys.contains_key(id) {
            return Err(Error::invalid(
                role,
                version,
                format!("{what} lists key {id} that is not defined"),
            ));
        }
    }
    Ok(())
}

impl Root {
    /// Checks the specification's structural rules: exactly the four top-level roles, each
    /// with threshold ≥ 1 and distinct, defined key ids.
    pub fn validate(&self) -> Result<()> {
        let v = self.version;
        let names: BTreeSet<&str> = self.roles.keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = RoleType::ALL.iter().map(|r| r.as_str()).collect();
        if names != expected {
            return Err(Error::invalid(
                "root",
                v,
                format!("roles must be exactly root, targets, snapshot, timestamp, not {names:?}"),
            ));
        }
        for (name, role) in &self.roles {
            if role.threshold < 1 {
                return Err(Error::invalid(
                    "root",
                    v,
                    format!("{name} threshold must be at least 1"),
                ));
            }
            check_keyids("root", v, name, &role.keyids, &self.keys)?;
        }
        Ok(())
    }
}

impl Targets {
    /// Checks the specification's structural rules for the targets role `name`: every target
    /// lists at least one hash; delegated role names are unique, non-empty and not top-level
    /// names; each has threshold ≥ 1, distinct defined key ids, `terminating`, and exactly one
    /// of `paths` and `path_hash_prefixes` (hash prefixes in lowercase hex).
    pub fn validate(&self, name: &str) -> Result<()> {
        let v = self.version;
        for (target, file) in &self.targets {
            if file.hashes.is_empty() {
                return Err(Error::invalid(
                    name,
                    v,
                    format!("target {target:?} lists no hashes"),
                ));
            }
        }
        let Some(d) = &self.delegations else {
            return Ok(());
        };
        let mut seen = BTreeSet::new();
        for role in &d.roles {
            let bad = |reason: String| {
                Error::invalid(name, v, format!("delegation {:?}: {reason}", role.name))
            };
            if role.name.is_empty() || RoleType::ALL.iter().any(|r| r.as_str() == role.name) {
                return Err(bad(
                    "a delegated role cannot be empty or a top-level role name".into(),
                ));
            }
            if !seen.insert(role.name.as_str()) {
                return Err(bad("delegated twice".into()));
            }
            if role.threshold < 1 {
                return Err(bad("threshold must be at least 1".into()));
            }
            if role.terminating.is_none() {
                return Err(bad("terminating is required".into()));
            }
            match (&role.paths, &role.path_hash_prefixes) {
                (Some(_), None) => {}
                (None, Some(prefixes)) => {
                    if let Some(p) = prefixes
                        .iter()
                        .find(|p| !p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                    {
                        return Err(bad(format!("path hash prefix {p:?} is not lowercase hex")));
                    }
                }
                _ => {
                    return Err(bad(
                        "exactly one of paths and path_hash_prefixes must be set".into(),
                    ));
                }
            }
            check_keyids(
                name,
                v,
                &format!("delegation {:?}", role.name),
                &role.keyids,
                &d.keys,
            )?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// Checks every listing: version ≥ 1 and ≤ 2^63 − 1, hashes non-empty when present.
    pub fn validate(&self) -> Result<()> {
        for (name, meta) in &self.meta {
            meta.validate(name, "snapshot", self.version)?;
        }
        Ok(())
    }
}

impl Timestamp {
    /// A timestamp listing the snapshot as `snapshot.json`.
    pub fn for_snapshot_meta(version: u64, expires: Expires, snapshot: MetaFile) -> Self {
        Self::listing_in(Tuf1, version, expires, SNAPSHOT_FILE, snapshot)
    }

    /// The listing of `snapshot.json`.
    pub fn snapshot_meta(&self) -> Option<&MetaFile> {
        self.meta.get(SNAPSHOT_FILE)
    }

    /// Checks that `snapshot.json` is listed, well formed.
    pub fn validate(&self) -> Result<()> {
        let Some(meta) = self.snapshot_meta() else {
            return Err(Error::invalid(
                "timestamp",
                self.version,
                "snapshot.json is not listed",
            ));
        };
        meta.validate(SNAPSHOT_FILE, "timestamp", self.version)
    }
}

/// The name under which timestamp lists the snapshot.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// The name under which snapshot lists a targets role's file (`targets.json`, `ROLE.json`).
pub fn meta_name(role: &str) -> String {
    format!("{role}.json")
}

/// Whether `name` (a role name) can be used as one component of a file name
/// (`N.ROLE.json`) without leaving the metadata directory or meaning something else to a
/// file system or URL: not empty, at most 200 bytes, not `.` or `..`, and free of `/`, `\`,
/// NUL and control characters. Role names in TUF 1.0 are free-form, so the repository layer
/// must check this before it writes or fetches a file named after a role.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// Whether a target path can be stored under `targets/` and fetched by URL: relative
/// segments separated by `/`, each a safe file name (so no empty, `.` or `..` segment, no
/// backslash, NUL or control character), at most 4096 bytes.
pub fn is_safe_target_path(path: &str) -> bool {
    path.len() <= 4096 && path.split('/').all(is_safe_file_name)
}

#[cfg(test)]
mod tests;
