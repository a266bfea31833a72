//! The audit trail: one JSON line per Sign, GenerateKey and DeleteKey, refusals included, and
//! one per refused GetPublicKey, appended to `audit_log`. Writing it is part of the operation: if the line cannot be written,
//! the operation fails (fail closed) and a signature is withheld.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// One audit line. Holds digests and identifiers only, never payloads or secrets.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    /// `sign`, `generate`, `delete`, or `public` (refusals only).
    pub op: &'static str,
    /// The caller's credentials.
    pub uid: u32,
    /// The caller's gid.
    pub gid: u32,
    /// The caller's pid, when known.
    pub pid: Option<i32>,
    /// Key id (as requested when the key was not found).
    pub key_id: &'a str,
    /// Key role.
    pub role: &'a str,
    /// Key GUN.
    pub gun: &'a str,
    /// Backend name, when the key was found.
    pub backend: &'a str,
    /// Key algorithm, when known.
    pub algorithm: Option<&'static str>,
    /// Hex SHA-256 of what was signed (the digest, or the message's hash).
    pub sha256: Option<&'a str>,
    /// `ok`, `denied`, `not_found`, `invalid` or `error`.
    pub outcome: &'static str,
    /// Why it was refused or failed; never contains secrets.
    pub reason: Option<&'a str>,
    /// Time spent in the daemon, in microseconds.
    pub latency_us: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event<'a>,
}

/// The append-only audit file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating with mode 0600) the audit log for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line in a single write, so concurrent lines never interleave.
    pub fn record(&self, event: &Event<'_>) -> std::io::Result<()> {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut line = serde_json::to_vec(&Line { time, event })?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)
    }
}
