//! The audit trail: one JSON line per Sign, GenerateKey, DeleteKey, AttestKey and token Unlock
//! (never the PIN), refusals included, and one per refused GetPublicKey, appended to
//! `audit_log`. Writing it is part of the operation: if the line cannot be written,
//! the operation fails (fail closed) and a signature is withheld.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde::ser::SerializeMap as _;

use crate::policy::Caller;

/// Who asked: a local process (peer credentials) or a TLS client (certificate identity).
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// A caller on the Unix socket.
    Unix(&'a Caller),
    /// A notary-signer client, named by its certificate's CN or SAN.
    TlsClient(&'a str),
}

/// Serialises as `"who": {"uid":…,"gid":…,"pid":…}` or `"who": {"client":"…"}`.
impl Serialize for Who<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Who::Unix(c) => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("uid", &c.uid)?;
                map.serialize_entry("gid", &c.gid)?;
                map.serialize_entry("pid", &c.pid)?;
                map.end()
            }
            Who::TlsClient(name) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("client", name)?;
                map.end()
            }
        }
    }
}

/// One audit line. Holds digests and identifiers only, never payloads or secrets.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    /// `sign`, `generate`, `delete`, or `public` (refusals only).
    pub op: &'static str,
    /// The caller, flattened into the line: `uid`/`gid`/`pid`, or `client`.
    #[serde(flatten)]
    pub who: Who<'a>,
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
