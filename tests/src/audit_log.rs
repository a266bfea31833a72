//! [`AuditRecord`] / [`read_audit`]: the audit log, parsed strictly.

use super::*;

/// One line of the audit log. Unknown fields are refused, so nothing extra (a payload, a
/// secret) can slip into it unnoticed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// RFC 3339 time.
    pub time: String,
    /// Hex SHA-256 of the previous line (the hash chain); absent only in the log of a sigild
    /// from before the chain, which benchmarks run for comparison (`sigil audit verify` and
    /// `tests/audit_chain.rs` check the chain itself).
    #[serde(default)]
    pub prev: Option<String>,
    /// `sign`, `generate`, `delete`, or `public` (refused GetPublicKey calls only).
    pub op: String,
    /// Caller uid.
    pub uid: u32,
    /// Caller gid.
    pub gid: u32,
    /// Caller pid.
    pub pid: Option<i32>,
    /// Key id (as requested when not found).
    pub key_id: String,
    /// Key role (empty when no such key exists).
    pub role: String,
    /// Key GUN.
    pub gun: String,
    /// Backend name.
    pub backend: String,
    /// Algorithm name.
    pub algorithm: Option<String>,
    /// Hex SHA-256 of what was signed.
    pub sha256: Option<String>,
    /// `ok`, `denied`, `not_found`, `invalid` or `error`.
    pub outcome: String,
    /// Why it was refused.
    pub reason: Option<String>,
    /// Time spent, µs.
    pub latency_us: u64,
    /// On `suppressed` lines: how many refusals were counted instead of written.
    #[serde(default)]
    pub suppressed: Option<u64>,
    /// What sign-metadata (or the notary-signer endpoint) read from the bytes to sign.
    #[serde(default)]
    pub metadata: Option<AuditMetadata>,
}

/// The `metadata` object of an audit line (DESIGN §9).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditMetadata {
    /// `notary`, `tuf-1.0` or `x509`.
    pub dialect: String,
    /// `_type`, or `root-certificate`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Version (0 for a certificate).
    pub version: u64,
    /// Expiry as written.
    pub expires: String,
    /// Targets listed.
    pub targets: usize,
}

/// Every line of an audit log, parsed strictly (panics on a malformed line).
pub fn read_audit(path: &Path) -> Vec<AuditRecord> {
    read_json_lines(path, "an audit record")
}

/// Every line of a JSON-lines file as a `T` (no file: none); panics naming the file, the
/// line and `what` a line should have been when one does not parse.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Vec<T> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{}:{}: not {what} ({e}): {line}", path.display(), i + 1)
            })
        })
        .collect()
}
