//! The audit trail: one JSON line per Sign, GenerateKey, DeleteKey, AttestKey and token Unlock
//! (never the PIN), refusals included, and one per refused GetPublicKey, appended to
//! `audit_log`. Writing it is part of the operation: if the line cannot be written,
//! the operation fails (fail closed) and a signature is withheld.
//!
//! Refusals are rate-limited per caller (uid, or TLS client name) so that nobody can fill the
//! disk, and with it stop every signature, by asking for what they may not have: beyond
//! `limit` refusals in a window, the refusals are still answered but counted instead of written,
//! and one `suppressed` line per caller and window records how many there were.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
        })
    }
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
    limit: RefusalLimit,
    refusals: Mutex<HashMap<Counted, Window>>,
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

    /// Appends one line in a single write, so concurrent lines never interleave.
    fn write(&self, event: &Event<'_>) -> std::io::Result<()> {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut line = serde_json::to_vec(&Line { time, event })?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        append_whole(&mut file, &line)
    }
}

/// Appends `line` to `file` (opened for appending, and only appended to under the caller's
/// lock) or, when that fails part-way (a full disk), cuts the fragment off again: a torn line
/// would make every later line unreadable to a JSON-lines reader. The error is returned either
/// way, so the operation the line was for fails closed. The happy path is one `write`.
fn append_whole(file: &mut File, line: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while written < line.len() {
        match file.write(&line[written..]) {
            Ok(0) => {
                let e = std::io::Error::new(std::io::ErrorKind::WriteZero, "audit log write");
                return Err(cut_fragment(file, written, e));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(cut_fragment(file, written, e)),
        }
    }
    Ok(())
}

/// Truncates the `written` bytes of a torn line off the end of `file`; gives back `error`
/// (with the truncation's own failure logged: the line is then torn for good).
fn cut_fragment(file: &File, written: usize, error: std::io::Error) -> std::io::Error {
    if written > 0 {
        let cut = file
            .metadata()
            .and_then(|m| file.set_len(m.len().saturating_sub(written as u64)));
        if let Err(e) = cut {
            tracing::error!(error = %e, "could not remove a partly written audit line");
        }
    }
    error
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
