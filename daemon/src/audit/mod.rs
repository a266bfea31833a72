//! The audit trail: one JSON line per Sign, GenerateKey, DeleteKey, AttestKey and token Unlock
//! (never the PIN), refusals included, and one per refused GetPublicKey, appended to
//! `audit_log`. Writing it is part of the operation: if the line cannot be written,
//! the operation fails (fail closed) and a signature is withheld.
//!
//! Lines are hash-chained ([`chain`]): each carries `prev`, the SHA-256 of the line before it,
//! so `sigil audit verify` finds a line edited, removed, inserted or moved. SIGHUP reopens the
//! file ([`AuditLog::reopen`]) after logrotate renamed it.
//!
//! Refusals are rate-limited per caller (uid, or TLS client name) so that nobody can fill the
//! disk, and with it stop every signature, by asking for what they may not have: beyond
//! `limit` refusals in a window, the refusals are still answered but counted instead of written,
//! and one `suppressed` line per caller and window records how many there were.

mod chain;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::ser::SerializeMap as _;

use self::chain::ChainedFile;
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
    /// `sign`, `generate`, `delete`, `attest`, `unlock`, `public` (refusals only), or
    /// `suppressed` (the count of refusals over the per-caller limit).
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
    /// `ok`, `denied`, `not_found`, `invalid`, `exhausted`, `error`, or `suppressed` (the
    /// summary of refusals over the per-caller limit).
    pub outcome: &'static str,
    /// Why it was refused or failed; never contains secrets.
    pub reason: Option<&'a str>,
    /// Time spent in the daemon, in microseconds.
    pub latency_us: u64,
    /// On `suppressed` lines only: how many refusals of this caller were not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
    /// What sign-metadata (or the notary-signer endpoint) read from the metadata it was asked
    /// to sign, signed or refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a MetadataFacts>,
}

/// The facts of signed (or refused) metadata an audit line records (DESIGN §9).
#[derive(Debug, Clone, Serialize)]
pub struct MetadataFacts {
    /// `notary` or `tuf-1.0`.
    pub dialect: &'static str,
    /// `_type`: root, targets, snapshot or timestamp.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `version`.
    pub version: u64,
    /// `expires`, as written in the metadata.
    pub expires: String,
    /// Number of targets listed (targets roles).
    pub targets: usize,
}

/// Outcomes that are refusals (the caller's fault), which the per-caller limit applies to.
const REFUSALS: &[&str] = &["denied", "not_found", "invalid", "exhausted"];

/// How many refusals per caller are written per window; the rest are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLimit {
    /// Refusal lines written per caller and window.
    pub per_window: u32,
    /// The window.
    pub window: Duration,
}

impl Default for RefusalLimit {
    fn default() -> Self {
        Self {
            per_window: 100,
            window: Duration::from_secs(60),
        }
    }
}

/// Whom a refusal is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Counted {
    Uid(u32),
    Client(String),
}

/// The last caller seen under a [`Counted`] key, named on its `suppressed` line.
#[derive(Debug, Clone)]
enum LastWho {
    Unix(Caller),
    TlsClient(String),
}

impl LastWho {
    fn who(&self) -> Who<'_> {
        match self {
            Self::Unix(c) => Who::Unix(c),
            Self::TlsClient(name) => Who::TlsClient(name),
        }
    }
}

/// One caller's refusals in the current window.
#[derive(Debug)]
struct Window {
    opened: Instant,
    written: u32,
    suppressed: u64,
    last: LastWho,
}

/// A `suppressed` line still to be written.
struct Summary {
    who: LastWho,
    count: u64,
    limit: RefusalLimit,
}

impl Summary {
    fn write(&self, log: &AuditLog) -> std::io::Result<()> {
        let reason = format!(
            "{} refusals from {} were not written separately (more than {} in {} s)",
            self.count,
            match &self.who {
                LastWho::Unix(c) => format!("uid {}", c.uid),
                LastWho::TlsClient(name) => format!("client {name}"),
            },
            self.limit.per_window,
            self.limit.window.as_secs()
        );
        log.write(&Event {
            op: "suppressed",
            who: self.who.who(),
            key_id: "",
            role: "",
            gun: "",
            backend: "",
            algorithm: None,
            sha256: None,
            outcome: "suppressed",
            reason: Some(&reason),
            latency_us: 0,
            suppressed: Some(self.count),
            metadata: None,
        })
    }
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    /// Hex SHA-256 of the previous line ([`chain`]).
    prev: String,
    #[serde(flatten)]
    event: &'a Event<'a>,
}

/// The append-only audit file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<ChainedFile>,
    limit: RefusalLimit,
    refusals: Mutex<HashMap<Counted, Window>>,
}

impl AuditLog {
    /// Opens (creating with mode 0600) the audit log for appending, continuing its chain;
    /// refuses a symbolic link, anything but a regular file, and a file ending in a torn line.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = ChainedFile::open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            limit: RefusalLimit::default(),
            refusals: Mutex::default(),
        })
    }

    /// Sets the per-caller refusal limit.
    pub fn with_refusal_limit(mut self, limit: RefusalLimit) -> Self {
        self.limit = limit;
        self
    }

    /// The per-caller refusal limit (its window is how often [`Self::flush_suppressed`] is due).
    pub fn refusal_limit(&self) -> RefusalLimit {
        self.limit
    }

    /// Opens the log's path again (SIGHUP, after logrotate renamed the file away): later lines
    /// go to the file now at the path, the first of them chained to the last line written.
    /// On failure the old file stays in use.
    pub fn reopen(&self) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        *file = file.reopen(&self.path)?;
        Ok(())
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one event: written at once, unless it is a refusal over its caller's limit,
    /// which is only counted (and summarised when the caller's window closes).
    pub fn record(&self, event: &Event<'_>) -> std::io::Result<()> {
        if !REFUSALS.contains(&event.outcome) {
            return self.write(event);
        }
        let (counted, last) = match event.who {
            Who::Unix(c) => (Counted::Uid(c.uid), LastWho::Unix(*c)),
            Who::TlsClient(name) => (
                Counted::Client(name.to_owned()),
                LastWho::TlsClient(name.to_owned()),
            ),
        };
        let now = Instant::now();
        let (write, summary) = {
            let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            let window = refusals.entry(counted).or_insert_with(|| Window {
                opened: now,
                written: 0,
                suppressed: 0,
                last: last.clone(),
            });
            let mut summary = None;
            if now.duration_since(window.opened) >= self.limit.window {
                summary = self.close(window);
                window.opened = now;
            }
            window.last = last;
            let write = window.written < self.limit.per_window;
            if write {
                window.written += 1;
            } else {
                window.suppressed += 1;
            }
            (write, summary)
        };
        if let Some(summary) = summary {
            summary.write(self)?;
        }
        if write { self.write(event) } else { Ok(()) }
    }

    /// Ends a window: its summary, if it suppressed anything, and a fresh count.
    fn close(&self, window: &mut Window) -> Option<Summary> {
        let count = std::mem::take(&mut window.suppressed);
        window.written = 0;
        (count > 0).then(|| Summary {
            who: window.last.clone(),
            count,
            limit: self.limit,
        })
    }

    /// Writes the `suppressed` line of every window that has closed (and forgets callers that
    /// were quiet), so a burst is accounted for even when its caller goes silent. Run every
    /// window by the service; on drop, every open window is closed too.
    pub fn flush_suppressed(&self) -> std::io::Result<()> {
        self.flush(false)
    }

    fn flush(&self, all: bool) -> std::io::Result<()> {
        let summaries: Vec<Summary> = {
            let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            let mut due = Vec::new();
            refusals.retain(|_, window| {
                if !all && window.opened.elapsed() < self.limit.window {
                    return true;
                }
                due.extend(self.close(window));
                false
            });
            due
        };
        summaries.iter().try_for_each(|s| s.write(self))
    }

    /// Appends one line in a single write, chained to the one before; the lock spans both,
    /// so concurrent lines never interleave and the chain follows the file's order.
    fn write(&self, event: &Event<'_>) -> std::io::Result<()> {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let line = serde_json::to_vec(&Line {
            time,
            prev: file.prev_hex(),
            event,
        })?;
        file.append(&line)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.flush(true) {
            tracing::error!(error = %e, "could not write the last suppressed-refusal counts");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal<'a>(caller: &'a Caller) -> Event<'a> {
        Event {
            op: "sign",
            who: Who::Unix(caller),
            key_id: "",
            role: "",
            gun: "",
            backend: "",
            algorithm: None,
            sha256: None,
            outcome: "not_found",
            reason: Some("nope"),
            latency_us: 0,
            suppressed: None,
            metadata: None,
        }
    }

    #[test]
    fn refusals_over_the_limit_are_counted_then_summarised_per_caller() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let limit = RefusalLimit {
            per_window: 3,
            window: Duration::from_millis(200),
        };
        let log = AuditLog::open(&path)
            .expect("open")
            .with_refusal_limit(limit);
        let noisy = Caller {
            uid: 7,
            gid: 7,
            pid: None,
        };
        let quiet = Caller { uid: 8, ..noisy };
        for _ in 0..50 {
            log.record(&refusal(&noisy)).expect("record");
        }
        log.record(&refusal(&quiet)).expect("record");
        let ok = Event {
            outcome: "ok",
            ..refusal(&noisy)
        };
        log.record(&ok).expect("an ok line is never limited");
        let lines = || -> Vec<serde_json::Value> {
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect()
        };
        assert_eq!(lines().len(), 3 + 1 + 1);
        std::thread::sleep(Duration::from_millis(250));
        log.flush_suppressed().expect("flush");
        let all = lines();
        let summaries: Vec<_> = all.iter().filter(|l| l["op"] == "suppressed").collect();
        assert_eq!(summaries.len(), 1, "{all:?}");
        assert_eq!(summaries[0]["uid"], 7);
        assert_eq!(summaries[0]["suppressed"], 47);
        assert!(
            summaries[0]["reason"]
                .as_str()
                .expect("reason")
                .starts_with("47 refusals from uid 7")
        );
        // A new window writes again; dropping the log closes it with its own summary.
        for _ in 0..4 {
            log.record(&refusal(&noisy)).expect("record");
        }
        drop(log);
        let all = lines();
        assert_eq!(all.len(), 6 + 3 + 1, "{all:?}");
        assert_eq!(all.last().expect("last")["suppressed"], 1);
    }
}
