//! The signing service: authorise → key ring → backend → audit. Every transport (the sigil
//! API on the Unix socket, the notary-signer endpoint) is a thin adapter over this one path to
//! the tokens. By job: [`validate`] checks request strings, [`audit_event`] builds every audit
//! line, [`sign`] signs, [`keys`] lists, generates, deletes, attests and unlocks, and
//! [`notary`] serves the notary-signer endpoint's keys.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sigil_tuf::key::SignatureEncoding;

use crate::audit::{AuditLog, RefusalLimit};
use crate::backend::{self, Algorithm, Backend, KeyOwner};
use crate::config::{Config, Op};
use crate::keyring::{KeyEntry, KeyRing};
use crate::metrics::Metrics;
use crate::policy::{Caller, GroupCache, KeyFacts, KeyView, Ops, Policy};

mod audit_event;
mod keys;
mod metadata;
mod notary;
mod sign;
pub mod validate;

pub use metadata::MetadataGuard;
pub use notary::NotaryCaps;
use validate::shown;
pub use validate::{check_gun, check_key_id, check_payload, check_role};

/// Why a request was refused or failed. Messages are safe to send to the caller; `Internal`
/// keeps its detail for the daemon's log only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such key, or one the caller may not see.
    #[error("key {0} not found")]
    KeyNotFound(String),
    /// The caller may see the key but not do this with it (the message says what policy refused).
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The message is over `max_message_bytes`.
    #[error("message is {size} bytes; the limit is {max} bytes (send sha256_digest instead)")]
    TooLarge {
        /// Size received.
        size: usize,
        /// Configured limit.
        max: usize,
    },
    /// Too much is already waiting for the token; retry later.
    #[error("{0}")]
    Busy(String),
    /// The token is absent or unplugged.
    #[error("token unavailable: {0}")]
    Unavailable(String),
    /// The audit log cannot be written (a full disk, say): nothing is signed until it can be,
    /// and the caller may retry. The detail is logged, not returned.
    #[error("the audit log cannot be written; operation refused")]
    AuditUnavailable(String),
    /// The token is locked or refused the PIN.
    #[error("{0}")]
    TokenLocked(String),
    /// The key or backend cannot do this (no attestation, a `[[require]]` rule not met).
    #[error("{0}")]
    Precondition(String),
    /// A cap on what callers may make sigild create was reached (`[notary_signer]` key caps).
    #[error("{0}")]
    Exhausted(String),
    /// Anything else; the detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl From<backend::Error> for Error {
    fn from(e: backend::Error) -> Self {
        use backend::Error as B;
        match e {
            B::TokenNotPresent { .. } | B::Stopped { .. } => Self::Unavailable(e.to_string()),
            B::PinIncorrect { .. }
            | B::PinWrong { .. }
            | B::PinLocked { .. }
            | B::PinFinalTry { .. }
            | B::TouchTimeout { .. }
            | B::Locked { .. }
            | B::UnlockPinWrong { .. } => Self::TokenLocked(e.to_string()),
            B::Unsupported { .. } | B::BadPinFormat { .. } => Self::BadRequest(e.to_string()),
            B::NoAttestation { .. } | B::NotUnlockable { .. } | B::MgmKeyRefused { .. } => {
                Self::Precondition(e.to_string())
            }
            B::Busy { .. } => Self::Busy(e.to_string()),
            // The ring still lists the key, but the token does not show it: the token was
            // pulled (SoftHSM's store moved away answers this way before the slot goes), or
            // the key was deleted behind sigild's back. Either way retrying may help.
            B::KeyNotFound => Self::Unavailable("the key is not on the token right now".into()),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// What to sign, as the caller sent it.
#[derive(Debug)]
pub enum Payload {
    /// The daemon hashes it (or, for Ed25519, signs it whole).
    Message(Vec<u8>),
    /// A precomputed SHA-256 digest; must be 32 bytes.
    Digest(Vec<u8>),
}

/// A finished signature and the key that made it.
#[derive(Debug)]
pub struct Signature {
    /// Signature bytes in `encoding`.
    pub bytes: Vec<u8>,
    /// The signing key.
    pub key: Arc<KeyEntry>,
    /// How `bytes` are encoded.
    pub encoding: SignatureEncoding,
}

/// Filters for ListKeys; empty strings match anything.
#[derive(Debug, Default)]
pub struct KeyFilter {
    /// Backend name.
    pub backend: String,
    /// GUN.
    pub gun: String,
    /// Role.
    pub role: String,
}

/// What GenerateKey asks for.
#[derive(Debug)]
pub struct GenerateRequest {
    /// Backend name; empty picks the only backend.
    pub backend: String,
    /// Role.
    pub role: String,
    /// GUN (may be empty).
    pub gun: String,
    /// Algorithm.
    pub algorithm: Algorithm,
}

/// The service's limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message a Sign may carry (`[server] max_message_bytes`).
    pub max_message_bytes: usize,
    /// Refusals audited per caller and window (`[server] audit_refusals_*`).
    pub refusals: RefusalLimit,
    /// Caps on keys the notary-signer endpoint creates.
    pub notary: NotaryCaps,
}

impl Limits {
    /// The limits a configuration sets.
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_message_bytes: config.server.max_message_bytes,
            refusals: RefusalLimit {
                per_window: config.server.audit_refusals_per_window,
                window: Duration::from_secs(config.server.audit_refusal_window_secs),
            },
            notary: config
                .notary_signer
                .as_ref()
                .map(NotaryCaps::from_config)
                .unwrap_or_default(),
        }
    }
}

/// The one path from a request to a token.
pub struct SigningService {
    backends: Vec<Arc<dyn Backend>>,
    keyring: KeyRing,
    policy: RwLock<Arc<Policy>>,
    groups: GroupCache,
    audit: Arc<AuditLog>,
    max_message_bytes: usize,
    notary: notary::Creation,
    guard: MetadataGuard,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for SigningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningService")
            .field(
                "backends",
                &self.backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
            )
            .field("keys", &self.keyring.len())
            .finish()
    }
}

impl SigningService {
    /// Builds the service and its key ring from what the tokens hold, and starts the task that
    /// writes the audit log's suppressed-refusal summaries (it ends with the service).
    pub async fn new(
        backends: Vec<Arc<dyn Backend>>,
        policy: Policy,
        audit: AuditLog,
        limits: Limits,
    ) -> Result<Self, Error> {
        let keyring = KeyRing::default();
        for (index, backend) in backends.iter().enumerate() {
            for key in backend.scan().await? {
                let device = backend.device_key(&key.locator);
                keyring
                    .insert(KeyEntry::new(index, backend.name(), key).with_device(device))
                    .map_err(|e| Error::Internal(e.to_string()))?;
            }
        }
        let audit = Arc::new(audit.with_refusal_limit(limits.refusals));
        audit_event::spawn_summaries(&audit);
        Ok(Self {
            backends,
            keyring,
            policy: RwLock::new(Arc::new(policy)),
            groups: GroupCache::system(),
            audit,
            max_message_bytes: limits.max_message_bytes,
            notary: notary::Creation::new(limits.notary),
            guard: MetadataGuard::default(),
            metrics: None,
        })
    }

    /// Sets what `sign-metadata` and the notary-signer endpoint check before signing (without
    /// it, they refuse: there is no state dir for version floors).
    pub fn with_metadata_guard(mut self, guard: MetadataGuard) -> Self {
        self.guard = guard;
        self
    }

    /// Counts every call into `metrics` (`[metrics]`); without it nothing is counted.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The metrics calls are counted into, when `[metrics]` is set.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// Each backend's name and whether its token answered its last call (the health task
    /// probes every backend twice a second), for the `token_present` gauge.
    pub fn tokens_present(&self) -> Vec<(&str, bool)> {
        self.backends
            .iter()
            .map(|b| (b.name(), b.healthy()))
            .collect()
    }

    /// Number of keys held.
    pub fn key_count(&self) -> usize {
        self.keyring.len()
    }

    /// Whether every backend answered its last call.
    pub fn healthy(&self) -> bool {
        self.backends.iter().all(|b| b.healthy())
    }

    /// Asks every backend's token whether it is usable now.
    pub async fn probe(&self) -> bool {
        let mut all = true;
        for backend in &self.backends {
            all &= backend.probe().await;
        }
        all
    }

    /// Replaces the policy (SIGHUP), counting a successful reload.
    pub fn replace_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        if let Some(metrics) = &self.metrics {
            metrics.policy_reload(true);
        }
    }

    /// Counts a SIGHUP reload that kept the old policy (the file or its policy was bad).
    pub fn policy_not_reloaded(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.policy_reload(false);
        }
    }

    /// SIGHUP: the `[[metadata]]` rules of a reloaded configuration.
    pub fn replace_metadata_rules(&self, config: &crate::config::Config) -> Result<(), String> {
        self.guard.replace_rules(config)
    }

    /// SIGHUP: opens the audit log's path again, so that after logrotate renamed the file
    /// away new lines go to a new file (chained to the last line of the old one).
    pub fn reopen_audit_log(&self) -> std::io::Result<()> {
        self.audit.reopen()
    }

    /// SIGHUP: reopens every backend's token — with the PIN read again from its file where
    /// `pins` has one for it — and brings the key ring in line with what each token now holds
    /// (keys made or removed behind sigild's back). Answers, per backend, its key count or why
    /// it could not be reopened (it then stays unhealthy until a probe or the next SIGHUP).
    pub async fn reopen_tokens(
        &self,
        mut pins: Vec<(String, crate::secret::Pin)>,
    ) -> Vec<(String, Result<usize, backend::Error>)> {
        let mut outcome = Vec::with_capacity(self.backends.len());
        for (index, backend) in self.backends.iter().enumerate() {
            let pin = pins
                .iter()
                .position(|(name, _)| name == backend.name())
                .map(|at| pins.swap_remove(at).1);
            let result = backend.reopen(pin).await.map(|keys| {
                let found: Vec<KeyEntry> = keys
                    .into_iter()
                    .map(|key| KeyEntry::new(index, backend.name(), key))
                    .collect();
                for old in self.keyring.all() {
                    if old.backend == index && !found.iter().any(|k| k.key_id == old.key_id) {
                        self.keyring.remove(&old.key_id);
                    }
                }
                let count = found.len();
                for key in found {
                    if self.keyring.get(&key.key_id).is_none() {
                        // A duplicate id on another backend stays with the one that had it.
                        let _ = self.keyring.insert(key);
                    }
                }
                count
            });
            outcome.push((backend.name().to_owned(), result));
        }
        outcome
    }

    fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The caller's supplementary groups, when some rule of `policy` names groups (else none,
    /// without a lookup).
    async fn groups(&self, policy: &Policy, caller: &Caller) -> Arc<[u32]> {
        if policy.names_groups() {
            self.groups.groups(caller).await
        } else {
            Arc::from([])
        }
    }

    /// Finds a key and checks `op`: invisible keys are `KeyNotFound`, visible ones without
    /// the right are `PermissionDenied`.
    async fn authorise(
        &self,
        caller: &Caller,
        key_id: &str,
        op: Op,
    ) -> Result<Arc<KeyEntry>, Error> {
        self.authorise_any(caller, key_id, &[op])
            .await
            .map(|(key, _)| key)
    }

    /// [`Self::authorise`] for a call that any of `ops` permits; answers which of them the
    /// caller has.
    async fn authorise_any(
        &self,
        caller: &Caller,
        key_id: &str,
        any_of: &[Op],
    ) -> Result<(Arc<KeyEntry>, Ops), Error> {
        check_key_id(key_id)?;
        // Keys notary-server created through the notary-signer endpoint are its alone: the
        // Unix-socket API can neither see nor use them, whatever the policy says.
        let key = self
            .keyring
            .get(key_id)
            .filter(|k| k.meta.owner == KeyOwner::Sigil)
            .ok_or_else(|| Error::KeyNotFound(key_id.to_owned()))?;
        let policy = self.policy();
        let groups = self.groups(&policy, caller).await;
        let ops = policy.ops(caller, &groups, &view(&key));
        if ops.is_empty() {
            return Err(Error::KeyNotFound(key_id.to_owned()));
        }
        if !any_of.iter().any(|op| ops.contains(*op)) {
            let names: Vec<&str> = any_of.iter().map(|op| op.as_str()).collect();
            return Err(Error::PermissionDenied(format!(
                "policy does not allow uid {} to {} with key {key_id}",
                caller.uid,
                names.join(" or ")
            )));
        }
        Ok((key, ops))
    }

    fn backend_of(&self, key: &KeyEntry) -> Result<&Arc<dyn Backend>, Error> {
        self.backends
            .get(key.backend)
            .ok_or_else(|| Error::Internal(format!("no backend #{}", key.backend)))
    }

    fn pick_backend(&self, name: &str) -> Result<usize, Error> {
        if name.is_empty() {
            return match self.backends.len() {
                1 => Ok(0),
                _ => Err(Error::BadRequest(format!(
                    "backend is required when several are configured ({})",
                    self.backend_names()
                ))),
            };
        }
        self.backends
            .iter()
            .position(|b| b.name() == name)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "unknown backend {} (configured: {})",
                    shown(name),
                    self.backend_names()
                ))
            })
    }

    fn backend_names(&self) -> String {
        self.backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the key ring knows about a key's attestation, for `[[require]]` rules.
fn facts(device: Option<&backend::DeviceKey>) -> KeyFacts {
    device.map_or_else(KeyFacts::default, |d| KeyFacts {
        attested: d.attested,
        touch: d.policies.map(|p| p.touch),
    })
}

fn view(key: &KeyEntry) -> KeyView<'_> {
    KeyView {
        key_id: &key.key_id,
        gun: &key.meta.gun,
        role: &key.meta.role,
    }
}
