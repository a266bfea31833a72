//! What a signer may learn about metadata before it signs it (DESIGN §9, `sign-metadata`):
//! the message must be the canonical bytes of one `signed` object, in the Notary or the TUF
//! 1.0 dialect, and [`inspect`] says which dialect, which role type, which version, when it
//! expires and which target paths it lists. sigild uses this to refuse metadata of another
//! role, an old version or a too-long life; it is the same model the client and the editor
//! read, not a second parser.
//!
//! Only canonical bytes are accepted: those are what every client verifies, so anything else
//! would be a signature nobody can use — or bytes crafted to read differently to sigild and to
//! a client (duplicate keys, numbers canonical JSON cannot carry, which [`cjson::parse_strict`]
//! refuses).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cjson;
use crate::error::{Error, Result};
use crate::schema::dialect::Dialect;
use crate::schema::tuf1::Tuf1;
use crate::schema::{Expires, Notary, RoleBody, RoleType, Root, Snapshot, Targets, Timestamp};

/// Largest version accepted: Go's and Python's readers hold it in a signed 64-bit integer.
pub const MAX_VERSION: u64 = (1 << 63) - 1;

/// The facts sigild checks and audits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// `notary` or `tuf-1.0`.
    pub dialect: &'static str,
    /// The role type from `_type` (a delegated role is `targets`).
    pub kind: RoleType,
    /// `version`.
    pub version: u64,
    /// `expires`.
    pub expires: Expires,
    /// Target paths listed (targets roles; empty otherwise).
    pub target_paths: Vec<String>,
}

/// What a message to be signed is: metadata, or the TBSCertificate of a root key's
/// certificate (the Notary root key signs its own certificate at `init` and rotation).
#[derive(Debug)]
pub enum Signable {
    /// The canonical `signed` object of a metadata file.
    Metadata(Inspected),
    /// A certificate about to be signed, as an unsigned view.
    RootCertificate(Box<crate::x509::Certificate>),
}

/// Reads `message` as a DER TBSCertificate (it starts with a DER SEQUENCE, which no JSON text
/// does) or else as metadata ([`inspect`]).
pub fn inspect_signable(message: &[u8]) -> Result<Signable> {
    if message.first() == Some(&0x30) {
        return crate::x509::Certificate::unsigned_from_tbs_der(message)
            .map(|c| Signable::RootCertificate(Box::new(c)))
            .map_err(|e| not_metadata(e.to_string()));
    }
    inspect(message).map(Signable::Metadata)
}

/// Reads `message` as the canonical `signed` object of one metadata file.
pub fn inspect(message: &[u8]) -> Result<Inspected> {
    // Canonical JSON keeps control characters raw (a PEM key's newlines, as OLPC and Go both
    // write them), which no JSON reader takes: escape them to read, and compare the canonical
    // form (raw again) with the message below.
    let readable = cjson::escape_control_characters(message.to_vec());
    let value = cjson::parse_strict(&readable).map_err(|e| not_metadata(format!("{e}")))?;
    let kind = value
        .as_object()
        .ok_or_else(|| not_metadata("not a JSON object".into()))?
        .get("_type")
        .and_then(Value::as_str)
        .ok_or_else(|| not_metadata("no \"_type\" text".into()))?;
    match kind {
        "Root" => body::<Root<Notary>>(value, message, RoleType::Root),
        "Targets" => body::<Targets<Notary>>(value, message, RoleType::Targets),
        "Snapshot" => body::<Snapshot<Notary>>(value, message, RoleType::Snapshot),
        "Timestamp" => body::<Timestamp<Notary>>(value, message, RoleType::Timestamp),
        "root" => body::<Root<Tuf1>>(value, message, RoleType::Root),
        "targets" => body::<Targets<Tuf1>>(value, message, RoleType::Targets),
        "snapshot" => body::<Snapshot<Tuf1>>(value, message, RoleType::Snapshot),
        "timestamp" => body::<Timestamp<Tuf1>>(value, message, RoleType::Timestamp),
        other => Err(not_metadata(format!(
            "\"_type\" {:?} is not a role type of Notary or TUF 1.0",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

/// Paths a targets body lists (kept apart so [`body`] stays generic over the role type).
trait TargetPaths {
    fn target_paths(&self) -> Vec<String> {
        Vec::new()
    }
}
impl<D: Dialect> TargetPaths for Root<D> {}
impl<D: Dialect> TargetPaths for Snapshot<D> {}
impl<D: Dialect> TargetPaths for Timestamp<D> {}
impl<D: Dialect> TargetPaths for Targets<D> {
    fn target_paths(&self) -> Vec<String> {
        self.targets.keys().cloned().collect()
    }
}

fn body<T: RoleBody + DeserializeOwned + TargetPaths>(
    value: Value,
    message: &[u8],
    kind: RoleType,
) -> Result<Inspected> {
    let canonical = <T::Dialect as Dialect>::canonical(&value)?;
    if canonical != message {
        return Err(not_metadata(format!(
            "not the canonical JSON of a {} {kind} body (sign exactly the canonical bytes of \
             \"signed\")",
            T::Dialect::NAME
        )));
    }
    let parsed: T = serde_json::from_value(value)
        .map_err(|e| not_metadata(format!("not a {} {kind} body: {e}", T::Dialect::NAME)))?;
    let version = parsed.version();
    if version == 0 || version > MAX_VERSION {
        return Err(Error::invalid(
            kind.as_str(),
            version,
            "version must be between 1 and 2^63-1",
        ));
    }
    T::Dialect::check_parsed(kind.as_str(), version, parsed.expires(), &[])?;
    Ok(Inspected {
        dialect: if T::Dialect::NAME == Notary::NAME {
            "notary"
        } else {
            "tuf-1.0"
        },
        kind,
        version,
        expires: parsed.expires().clone(),
        target_paths: parsed.target_paths(),
    })
}

fn not_metadata(reason: String) -> Error {
    Error::NotMetadata { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tuf1;

    fn canonical_tuf1_timestamp(version: u64) -> Vec<u8> {
        let value = serde_json::json!({
            "_type": "timestamp",
            "spec_version": "1.0.31",
            "version": version,
            "expires": "2030-01-01T00:00:00Z",
            "meta": {"snapshot.json": {"version": 3}}
        });
        tuf1::Tuf1::canonical(&value).expect("canonical")
    }

    #[test]
    fn both_dialects_are_recognised() {
        let facts = inspect(&canonical_tuf1_timestamp(7)).expect("tuf1 timestamp");
        assert_eq!(
            (facts.dialect, facts.kind, facts.version),
            ("tuf-1.0", RoleType::Timestamp, 7)
        );
        let notary = serde_json::json!({
            "_type": "Targets",
            "delegations": {"keys": {}, "roles": []},
            "expires": "2030-01-01T00:00:00Z",
            "targets": {"releases/a": {"length": 1, "hashes": {"sha256": "AA=="}}},
            "version": 4
        });
        let bytes = cjson::from_value(&notary).expect("canonical");
        let facts = inspect(&bytes).expect("notary targets");
        assert_eq!(
            (facts.dialect, facts.kind, facts.version),
            ("notary", RoleType::Targets, 4)
        );
        assert_eq!(facts.target_paths, vec!["releases/a".to_owned()]);
    }

    #[test]
    fn raw_control_characters_of_canonical_json_are_read() {
        let value = serde_json::json!({
            "_type": "root",
            "spec_version": "1.0.31",
            "version": 1,
            "expires": "2030-01-01T00:00:00Z",
            "consistent_snapshot": true,
            "keys": {"ab": {"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256",
                "keyval": {"public": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}}},
            "roles": {}
        });
        let bytes = tuf1::Tuf1::canonical(&value).expect("canonical");
        assert!(
            bytes.contains(&b'\n'),
            "canonical JSON keeps the newline raw"
        );
        let facts = inspect(&bytes).expect("a root with a PEM key");
        assert_eq!((facts.kind, facts.version), (RoleType::Root, 1));
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        let mut spaced = canonical_tuf1_timestamp(1);
        spaced.insert(1, b' ');
        let huge = {
            let mut v = b"{\"a\":".repeat(1000);
            v.extend(b"1");
            v.extend(b"}".repeat(1000));
            v
        };
        for (bytes, says) in [
            (b"not json".to_vec(), "not TUF metadata"),
            (b"\xff\xfe".to_vec(), "not TUF metadata"),
            (
                br#"{"_type":"timestamp","_type":"root"}"#.to_vec(),
                "duplicate",
            ),
            (br#"{"_type":"Builder"}"#.to_vec(), "not a role type"),
            (
                br#"{"_type":"timestamp","version":1.0}"#.to_vec(),
                "not TUF metadata",
            ),
            (spaced, "canonical"),
            (huge, "not TUF metadata"),
            (canonical_tuf1_timestamp(1 << 63), "2^63"),
            (canonical_tuf1_timestamp(0), "between 1"),
        ] {
            let err = inspect(&bytes).expect_err(says).to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }
}
