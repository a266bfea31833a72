//! Prometheus metrics (`[metrics]`, off by default). They are counted where every call is
//! already accounted for, the audit path ([`crate::service`]'s `record`), so no handler can
//! forget them; a call counts under the same `op` and `outcome` its audit line carries.
//!
//! Labels are bounded on purpose: `op` and `outcome` are fixed strings, `backend` a configured
//! backend name, `role` one of [`ROLES`]. No key id, GUN, uid or other caller-chosen string is
//! ever a label, so neither the series count nor what a scraper learns grows with the callers.
//! When `[metrics]` is absent the service holds no [`Metrics`] and the sign path does nothing
//! more than test an `Option`.

mod serve;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use serve::{Error, Server, start};

/// The `role` label values: a key's role is mapped onto these, so a caller naming roles
/// cannot add series.
pub const ROLES: &[&str] = &[
    "root",
    "targets",
    "snapshot",
    "timestamp",
    "delegation",
    "other",
];

/// Upper bounds of the sign latency buckets, in seconds: SoftHSM signs in tens of
/// microseconds, a YubiKey in tens of milliseconds, a touch takes seconds.
const SIGN_SECONDS_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SignatureLabels {
    op: &'static str,
    backend: Arc<str>,
    role: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendLabels {
    backend: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The key a call was about, as metrics may name it.
#[derive(Debug, Clone, Copy)]
pub struct KeyLabels<'a> {
    /// The configured backend that holds the key.
    pub backend: &'a str,
    /// The key's role (mapped onto [`ROLES`]).
    pub role: &'a str,
}

/// Every metric sigild exports, in their registry. Counters are atomics: recording takes no
/// lock beyond the label family's read lock once a series exists.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    signatures: Family<SignatureLabels, Counter>,
    sign_seconds: Family<BackendLabels, Histogram, fn() -> Histogram>,
    tokens: Family<BackendLabels, Gauge>,
    audit_failures: Counter,
    reloads: Family<OutcomeLabels, Counter>,
    /// The configured backends' names, made once: a signature's labels share them instead of
    /// copying the name for every call.
    backends: Vec<Arc<str>>,
}

impl Metrics {
    /// The metrics of a daemon with these backends (their token gauges start at 0).
    pub fn new<'a>(backends: impl IntoIterator<Item = &'a str>) -> Self {
        let mut registry = Registry::with_prefix("sigil");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Calls on the API socket and the notary-signer endpoint, by audit op and outcome",
            requests.clone(),
        );
        let signatures = Family::<SignatureLabels, Counter>::default();
        registry.register(
            "signatures",
            "Sign calls that reached a key, by op, backend, key role and outcome",
            signatures.clone(),
        );
        let sign_seconds: Family<BackendLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(SIGN_SECONDS_BUCKETS));
        registry.register_with_unit(
            "sign_duration",
            "Time sigild took for a successful signature, request to answer, by backend",
            Unit::Seconds,
            sign_seconds.clone(),
        );
        let tokens = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "token_present",
            "1 while the backend's token answers, else 0",
            tokens.clone(),
        );
        let backends: Vec<Arc<str>> = backends.into_iter().map(Arc::from).collect();
        for backend in &backends {
            tokens
                .get_or_create(&BackendLabels {
                    backend: Arc::clone(backend),
                })
                .set(0);
        }
        let audit_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Audit lines that could not be written (each failed its call: fail closed)",
            audit_failures.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "SIGHUP policy reloads, by outcome (ok, or error: the old policy stays)",
            reloads.clone(),
        );
        Self {
            registry,
            requests,
            signatures,
            sign_seconds,
            tokens,
            audit_failures,
            reloads,
            backends,
        }
    }

    /// The shared name of a configured backend (a copy for one that is not configured).
    fn backend(&self, name: &str) -> Arc<str> {
        self.backends
            .iter()
            .find(|b| ***b == *name)
            .map_or_else(|| Arc::from(name), Arc::clone)
    }

    /// Counts one finished call: its request, and for `sign` calls that reached a key its
    /// signature (and, when it succeeded, its latency).
    pub fn call(
        &self,
        op: &'static str,
        outcome: &'static str,
        key: Option<KeyLabels<'_>>,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels { op, outcome })
            .inc();
        let Some(key) = key.filter(|_| op == "sign") else {
            return;
        };
        let backend = self.backend(key.backend);
        self.signatures
            .get_or_create(&SignatureLabels {
                op,
                backend: Arc::clone(&backend),
                role: role_label(key.role),
                outcome,
            })
            .inc();
        if outcome == "ok" {
            self.sign_seconds
                .get_or_create(&BackendLabels { backend })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Counts an audit line that could not be written.
    pub fn audit_write_failed(&self) {
        self.audit_failures.inc();
    }

    /// Counts a SIGHUP policy reload.
    pub fn policy_reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// The OpenMetrics text exposition, with each token gauge set from `present` first.
    pub fn encode<'a>(&self, present: impl IntoIterator<Item = (&'a str, bool)>) -> String {
        for (backend, up) in present {
            self.tokens
                .get_or_create(&BackendLabels {
                    backend: self.backend(backend),
                })
                .set(i64::from(up));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A key role as a label: the four top-level TUF roles by name, delegated targets roles
/// (`targets/...`) as `delegation`, anything else as `other`.
pub fn role_label(role: &str) -> &'static str {
    match role {
        "root" => "root",
        "targets" => "targets",
        "snapshot" => "snapshot",
        "timestamp" => "timestamp",
        r if r.starts_with("targets/") => "delegation",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_onto_the_fixed_set_and_labels_carry_nothing_else() {
        for (role, label) in [
            ("root", "root"),
            ("targets/releases", "delegation"),
            ("timestamp", "timestamp"),
            ("my-secret-gun-role", "other"),
            ("", "other"),
        ] {
            assert_eq!(role_label(role), label);
            assert!(ROLES.contains(&label));
        }
        let metrics = Metrics::new(["hsm"]);
        let key = KeyLabels {
            backend: "hsm",
            role: "key-id-like-0123",
        };
        metrics.call("sign", "ok", Some(key), Duration::from_micros(70));
        metrics.call("sign", "denied", Some(key), Duration::from_micros(70));
        metrics.call("list", "ok", None, Duration::ZERO);
        metrics.policy_reload(false);
        let text = metrics.encode([("hsm", true)]);
        assert!(!text.contains("key-id-like"), "{text}");
        for line in [
            "sigil_requests_total{op=\"sign\",outcome=\"ok\"} 1",
            "sigil_requests_total{op=\"list\",outcome=\"ok\"} 1",
            "sigil_signatures_total{op=\"sign\",backend=\"hsm\",role=\"other\",outcome=\"denied\"} 1",
            "sigil_sign_duration_seconds_count{backend=\"hsm\"} 1",
            "sigil_sign_duration_seconds_bucket{le=\"0.0001\",backend=\"hsm\"} 1",
            "sigil_token_present{backend=\"hsm\"} 1",
            "sigil_audit_write_failures_total 0",
            "sigil_policy_reloads_total{outcome=\"error\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
