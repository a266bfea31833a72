//! The one place an audit event is built. A call opens a [`Scope`] when it starts, fills in
//! what it learns (the key, the digest, what was asked), and [`SigningService::finish`]es it
//! with its result: one line per call, whatever stopped it. Every string a request supplied
//! passes through [`shown`] here, and the reason is capped, so no request can make a line
//! longer than a few hundred bytes (or put control bytes in it).

use std::borrow::Cow;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::validate::{MAX_SHOWN, shown};
use super::{Error, SigningService};
use crate::audit::{AuditLog, Event, MetadataFacts, Who};
use crate::backend::Algorithm;
use crate::keyring::KeyEntry;
use crate::metrics::KeyLabels;

/// Longest `reason` written; a longer one is cut and says how long it was.
const MAX_REASON: usize = 1024;

/// What an audited call has learnt so far.
#[derive(Debug)]
pub(super) struct Scope<'a> {
    op: &'static str,
    who: Who<'a>,
    started: Instant,
    asked_key: &'a str,
    key: Option<Arc<KeyEntry>>,
    asked_name: Option<(&'a str, &'a str)>,
    asked_backend: &'a str,
    algorithm: Option<Algorithm>,
    sha256: Option<String>,
    note: Option<String>,
    metadata: Option<MetadataFacts>,
}

impl<'a> Scope<'a> {
    /// The key id the caller named (recorded when no key was found).
    pub(super) fn asked_key(mut self, key_id: &'a str) -> Self {
        self.asked_key = key_id;
        self
    }

    /// The (role, GUN) the caller named (recorded when no key was found).
    pub(super) fn asked_name(mut self, role: &'a str, gun: &'a str) -> Self {
        self.asked_name = Some((role, gun));
        self
    }

    /// The backend the caller named (recorded when no key was found).
    pub(super) fn asked_backend(mut self, backend: &'a str) -> Self {
        self.asked_backend = backend;
        self
    }

    /// The algorithm asked for (recorded when no key was found).
    pub(super) fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// The key the call is about; the line then names its id, role, GUN, backend, algorithm.
    pub(super) fn key(&mut self, key: &Arc<KeyEntry>) {
        self.key = Some(Arc::clone(key));
    }

    /// The looked-up key, if any.
    pub(super) fn found(&self) -> Option<&Arc<KeyEntry>> {
        self.key.as_ref()
    }

    /// Hex SHA-256 of what is signed.
    pub(super) fn digest(&mut self, sha256: String) {
        self.sha256 = Some(sha256);
    }

    /// A remark for a successful call (why it did what it did).
    pub(super) fn note(&mut self, note: String) {
        self.note = Some(note);
    }

    /// What the metadata to sign says (sign-metadata, the notary-signer endpoint).
    pub(super) fn metadata(&mut self, facts: MetadataFacts) {
        self.metadata = Some(facts);
    }
}

impl SigningService {
    /// Opens the audit scope of a call.
    pub(super) fn scope<'a>(&self, op: &'static str, who: Who<'a>) -> Scope<'a> {
        Scope {
            op,
            who,
            started: Instant::now(),
            asked_key: "",
            key: None,
            asked_name: None,
            asked_backend: "",
            algorithm: None,
            sha256: None,
            note: None,
            metadata: None,
        }
    }

    /// Records the call's line and hands its result back; a line that cannot be written fails
    /// the call (fail closed).
    pub(super) fn finish<T>(
        &self,
        scope: &Scope<'_>,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        self.record(scope, result.as_ref().err())?;
        result
    }

    /// Builds and writes the one line of a call.
    pub(super) fn record(&self, scope: &Scope<'_>, error: Option<&Error>) -> Result<(), Error> {
        let key = scope.key.as_deref();
        let client;
        let who = match scope.who {
            Who::TlsClient(name) => {
                client = shown(name);
                Who::TlsClient(&client)
            }
            unix => unix,
        };
        let (role, gun) = match (key, scope.asked_name) {
            (Some(k), _) => (Cow::from(&k.meta.role), Cow::from(&k.meta.gun)),
            (None, Some((role, gun))) => (shown(role), shown(gun)),
            (None, None) => (Cow::from(""), Cow::from("")),
        };
        let key_id = key.map_or_else(|| shown(scope.asked_key), |k| Cow::from(&k.key_id));
        let backend = key.map_or_else(
            || shown(scope.asked_backend),
            |k| Cow::from(&k.backend_name),
        );
        let reason = error
            .map(ToString::to_string)
            .or_else(|| scope.note.clone());
        let reason = reason.as_deref().map(capped);
        let event = Event {
            op: scope.op,
            who,
            key_id: &key_id,
            role: &role,
            gun: &gun,
            backend: &backend,
            algorithm: key
                .map(KeyEntry::algorithm)
                .or(scope.algorithm)
                .map(Algorithm::as_str),
            sha256: scope.sha256.as_deref(),
            outcome: outcome(error),
            reason: reason.as_deref(),
            latency_us: u64::try_from(scope.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            suppressed: None,
            metadata: scope.metadata.as_ref(),
        };
        let written = self.audit.record(&event).map_err(|e| audit_failed(&e));
        if let Some(metrics) = &self.metrics {
            if written.is_err() {
                metrics.audit_write_failed();
            }
            // A call whose line could not be written failed: it counts as the error it became.
            let outcome = if written.is_ok() {
                event.outcome
            } else {
                "error"
            };
            let key = key.map(|k| KeyLabels {
                backend: &k.backend_name,
                role: &k.meta.role,
            });
            metrics.call(scope.op, outcome, key, scope.started.elapsed());
        }
        written
    }

    /// Counts a successful call that writes no audit line (ListKeys, a public key read): the
    /// metrics cover every call, the audit log every one that uses or probes for a key.
    pub(super) fn count_unaudited(&self, op: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.call(op, "ok", None, std::time::Duration::ZERO);
        }
    }

    /// Audits a call refused before it reached the service (while decoding, or a TLS client
    /// not allowed) and returns the refusal, so every call leaves exactly one line whatever
    /// stopped it. The line names the key's role and GUN when the key exists.
    pub fn refuse(
        &self,
        op: &'static str,
        who: Who<'_>,
        key_id: &str,
        requested: Option<(&str, &str)>,
        error: Error,
    ) -> Error {
        let mut scope = self.scope(op, who).asked_key(key_id);
        if let Some((role, gun)) = requested {
            scope = scope.asked_name(role, gun);
        }
        if let Some(key) = self.keyring.get(key_id) {
            scope.key(&key);
        }
        match self.record(&scope, Some(&error)) {
            Ok(()) => error,
            Err(failed) => failed,
        }
    }
}

/// Writes the audit log's suppressed-refusal summaries every window, for as long as the log
/// lives (the task holds it weakly).
pub(super) fn spawn_summaries(audit: &Arc<AuditLog>) {
    let log: Weak<AuditLog> = Arc::downgrade(audit);
    let every = audit.refusal_limit().window;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(log) = log.upgrade() else { return };
            if let Err(e) = log.flush_suppressed() {
                tracing::error!(error = %e, "cannot write suppressed-refusal counts to the audit log");
            }
        }
    });
}

/// A reason cut to [`MAX_REASON`] bytes, saying how long it was.
fn capped(reason: &str) -> Cow<'_, str> {
    if reason.len() <= MAX_REASON {
        return Cow::Borrowed(reason);
    }
    let mut end = MAX_REASON - MAX_SHOWN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… (cut; {} bytes in all)",
        &reason[..end],
        reason.len()
    ))
}

pub(super) fn audit_failed(e: &std::io::Error) -> Error {
    Error::AuditUnavailable(format!("cannot write the audit log: {e}"))
}

fn outcome(error: Option<&Error>) -> &'static str {
    match error {
        None => "ok",
        Some(Error::PermissionDenied(_)) => "denied",
        Some(Error::KeyNotFound(_)) => "not_found",
        Some(Error::BadRequest(_) | Error::TooLarge { .. }) => "invalid",
        Some(Error::Exhausted(_)) => "exhausted",
        Some(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(capped("short"), "short");
        let long = "é".repeat(MAX_REASON);
        let cut = capped(&long);
        assert!(cut.len() < MAX_REASON + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!("(cut; {} bytes in all)", long.len())));
    }
}
