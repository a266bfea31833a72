//! The signing service: authorise → key ring → backend → audit. Every transport (the sigil
//! API, later the notary-signer endpoint) is a thin adapter over this one path to the tokens.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use sigil_tuf::key::SignatureEncoding;

use crate::audit::{AuditLog, Event, Who};
use crate::backend::{self, Algorithm, AttestationReport, Backend, KeyMeta, KeyOwner, SignInput};
use crate::config::Op;
use crate::keyring::{KeyEntry, KeyRing};
use crate::policy::{Caller, KeyFacts, KeyView, Policy};

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
    /// The token is absent or unplugged.
    #[error("token unavailable: {0}")]
    Unavailable(String),
    /// The token is locked or refused the PIN.
    #[error("{0}")]
    TokenLocked(String),
    /// The key or backend cannot do this (no attestation, a `[[require]]` rule not met).
    #[error("{0}")]
    Precondition(String),
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
            B::KeyNotFound => Self::Internal("key vanished from the token".into()),
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

/// The one path from a request to a token.
pub struct SigningService {
    backends: Vec<Arc<dyn Backend>>,
    keyring: KeyRing,
    policy: RwLock<Arc<Policy>>,
    audit: AuditLog,
    max_message_bytes: usize,
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
    /// Builds the service and its key ring from what the tokens hold.
    pub async fn new(
        backends: Vec<Arc<dyn Backend>>,
        policy: Policy,
        audit: AuditLog,
        max_message_bytes: usize,
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
        Ok(Self {
            backends,
            keyring,
            policy: RwLock::new(Arc::new(policy)),
            audit,
            max_message_bytes,
        })
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

    /// Replaces the policy (SIGHUP).
    pub fn replace_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
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

    /// Keys the caller may list, filtered.
    pub fn list_keys(&self, caller: &Caller, filter: &KeyFilter) -> Vec<Arc<KeyEntry>> {
        let policy = self.policy();
        self.keyring
            .all()
            .into_iter()
            .filter(|k| {
                k.meta.owner == KeyOwner::Sigil
                    && (filter.backend.is_empty() || filter.backend == k.backend_name)
                    && (filter.gun.is_empty() || filter.gun == k.meta.gun)
                    && (filter.role.is_empty() || filter.role == k.meta.role)
                    && policy.ops(caller, &view(k)).contains(Op::List)
            })
            .collect()
    }

    /// A key's public half, if the caller may read it.
    /// Refusals are audited: a caller probing for keys it may not use leaves a trace.
    pub fn public_key(&self, caller: &Caller, key_id: &str) -> Result<Arc<KeyEntry>, Error> {
        let started = Instant::now();
        let result = self.authorise(caller, key_id, Op::Public);
        if let Err(e) = &result {
            let key = self.keyring.get(key_id);
            self.audit(
                "public",
                Who::Unix(caller),
                key_id,
                key.as_deref(),
                None,
                Some(e),
                started,
            )?;
        }
        result
    }

    /// `sigil token unlock`: hands an operator's PIN to a backend, which verifies it once.
    /// Allowed by a policy rule with `unlock` for the backend; audited (op `unlock`, never the
    /// PIN). Answers the PIN tries reported before the verification.
    pub async fn unlock(
        &self,
        caller: &Caller,
        backend: &str,
        pin: crate::secret::Pin,
    ) -> Result<u8, Error> {
        let started = Instant::now();
        let result = async {
            if backend.is_empty() {
                return Err(Error::BadRequest("backend is required".into()));
            }
            // Policy first: a caller without the right learns nothing about the backends.
            if !self.policy().may_unlock(caller, backend) {
                return Err(Error::PermissionDenied(format!(
                    "policy does not allow uid {} to unlock backend {backend:?}",
                    caller.uid
                )));
            }
            let index = self.pick_backend(backend)?;
            if pin.is_empty() {
                return Err(Error::BadRequest("the PIN is empty".into()));
            }
            Ok(self.backends[index].unlock(pin).await?)
        }
        .await;
        let reason = result.as_ref().err().map(ToString::to_string);
        let event = Event {
            op: "unlock",
            who: Who::Unix(caller),
            key_id: "",
            role: "",
            gun: "",
            backend,
            algorithm: None,
            sha256: None,
            outcome: outcome(result.as_ref().err()),
            reason: reason.as_deref(),
            latency_us: micros(started),
        };
        self.audit.record(&event).map_err(|e| audit_failed(&e))?;
        result
    }

    /// A key's attestation chain, fetched from the device now, if the caller may read the
    /// key's public half. Audited (op `attest`) whatever the outcome.
    pub async fn attest(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<(Arc<KeyEntry>, AttestationReport), Error> {
        let started = Instant::now();
        let result = async {
            let key = self.authorise(caller, key_id, Op::Public)?;
            let report = self.backend_of(&key)?.attest(key.locator.clone()).await?;
            Ok((key, report))
        }
        .await;
        let key = self.keyring.get(key_id);
        self.audit(
            "attest",
            Who::Unix(caller),
            key_id,
            key.as_deref(),
            None,
            result.as_ref().err(),
            started,
        )?;
        result
    }

    /// Finds a key and checks `op`: invisible keys are `KeyNotFound`, visible ones without
    /// the right are `PermissionDenied`.
    fn authorise(&self, caller: &Caller, key_id: &str, op: Op) -> Result<Arc<KeyEntry>, Error> {
        check_key_id(key_id)?;
        // Keys notary-server created through the notary-signer endpoint are its alone: the
        // Unix-socket API can neither see nor use them, whatever the policy says.
        let key = self
            .keyring
            .get(key_id)
            .filter(|k| k.meta.owner == KeyOwner::Sigil)
            .ok_or_else(|| Error::KeyNotFound(key_id.to_owned()))?;
        let ops = self.policy().ops(caller, &view(&key));
        if ops.is_empty() {
            return Err(Error::KeyNotFound(key_id.to_owned()));
        }
        if !ops.contains(op) {
            return Err(Error::PermissionDenied(format!(
                "policy does not allow uid {} to {} with key {key_id}",
                caller.uid,
                op.as_str()
            )));
        }
        Ok(key)
    }

    /// Signs with a key, auditing the attempt whatever its outcome.
    pub async fn sign(
        &self,
        caller: &Caller,
        key_id: &str,
        payload: Option<Payload>,
        encoding: SignatureEncoding,
    ) -> Result<Signature, Error> {
        let started = Instant::now();
        let mut digest_hex = None;
        let result = self
            .sign_inner(caller, key_id, payload, encoding, &mut digest_hex)
            .await;
        // The audit log is for administrators: it names the key whenever it exists.
        let key = match &result {
            Ok(signed) => Some(Arc::clone(&signed.key)),
            Err(_) => self.keyring.get(key_id),
        };
        self.audit(
            "sign",
            Who::Unix(caller),
            key_id,
            key.as_deref(),
            digest_hex.as_deref(),
            result.as_ref().err(),
            started,
        )?;
        result
    }

    async fn sign_inner(
        &self,
        caller: &Caller,
        key_id: &str,
        payload: Option<Payload>,
        encoding: SignatureEncoding,
        digest_hex: &mut Option<String>,
    ) -> Result<Signature, Error> {
        let payload = payload.ok_or_else(|| {
            Error::BadRequest("payload is required: set message or sha256_digest".into())
        })?;
        self.check_payload(&payload)?;
        let key = self.authorise(caller, key_id, Op::Sign)?;
        self.sign_with(key, payload, encoding, digest_hex).await
    }

    /// Size and shape checks that need no key: they run before any lookup.
    fn check_payload(&self, payload: &Payload) -> Result<(), Error> {
        check_payload(payload, self.max_message_bytes)
    }

    /// The signing core shared by every front door: hash as the algorithm needs, sign on the
    /// token, encode. `digest_hex` receives what the audit line records.
    async fn sign_with(
        &self,
        key: Arc<KeyEntry>,
        payload: Payload,
        encoding: SignatureEncoding,
        digest_hex: &mut Option<String>,
    ) -> Result<Signature, Error> {
        let algorithm = key.algorithm();
        let (input, digest) = match (algorithm.signs_digest(), payload) {
            (true, Payload::Message(m)) => {
                let d: [u8; 32] = Sha256::digest(&m).into();
                (SignInput::Digest(d), d)
            }
            (true, Payload::Digest(d)) => {
                let d: [u8; 32] = d.as_slice().try_into().map_err(|_| {
                    Error::BadRequest("sha256_digest must be exactly 32 bytes".into())
                })?;
                (SignInput::Digest(d), d)
            }
            (false, Payload::Message(m)) => {
                let d: [u8; 32] = Sha256::digest(&m).into();
                (SignInput::Message(m), d)
            }
            (false, Payload::Digest(_)) => {
                return Err(Error::BadRequest(format!(
                    "{algorithm} keys sign whole messages: send message, not sha256_digest"
                )));
            }
        };
        *digest_hex = Some(hex::encode(digest));
        let needs = self.policy().needs(&key.meta.gun, &key.meta.role);
        if needs.any()
            && let Some(why) = needs.unmet(&facts(key.device.as_ref()))
        {
            return Err(Error::Precondition(format!(
                "key {} may not sign: {why}",
                key.key_id
            )));
        }
        let backend = self.backend_of(&key)?;
        let raw = backend.sign(key.locator.clone(), algorithm, input).await?;
        let (bytes, encoding) = match (algorithm, encoding) {
            (Algorithm::EcdsaP256, SignatureEncoding::Der) => (
                sigil_tuf::key::p256_raw_to_der(&raw)
                    .map_err(|e| Error::Internal(format!("token returned a bad signature: {e}")))?,
                SignatureEncoding::Der,
            ),
            _ => (raw, SignatureEncoding::Raw),
        };
        Ok(Signature {
            bytes,
            key,
            encoding,
        })
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
        let key = self.keyring.get(key_id);
        let reason = error.to_string();
        let (role, gun) = match (&key, requested) {
            (Some(k), _) => (k.meta.role.as_str(), k.meta.gun.as_str()),
            (None, Some(asked)) => asked,
            (None, None) => ("", ""),
        };
        let event = Event {
            op,
            who,
            key_id,
            role,
            gun,
            backend: key.as_deref().map_or("", |k| k.backend_name.as_str()),
            algorithm: key.as_deref().map(|k| k.algorithm().as_str()),
            sha256: None,
            outcome: outcome(Some(&error)),
            reason: Some(&reason),
            latency_us: 0,
        };
        match self.audit.record(&event) {
            Ok(()) => error,
            Err(e) => audit_failed(&e),
        }
    }

    /// Generates a key on a backend, if policy allows `generate` for its role and GUN.
    pub async fn generate(
        &self,
        caller: &Caller,
        req: GenerateRequest,
    ) -> Result<Arc<KeyEntry>, Error> {
        let started = Instant::now();
        let result = self.generate_inner(caller, &req).await;
        self.audit_generate(Who::Unix(caller), &req, result, started)
            .await
    }

    async fn generate_inner(
        &self,
        caller: &Caller,
        req: &GenerateRequest,
    ) -> Result<Arc<KeyEntry>, Error> {
        check_role(&req.role)?;
        check_gun(&req.gun)?;
        let index = self.pick_backend(&req.backend)?;
        let ops = self.policy().ops(
            caller,
            &KeyView {
                key_id: "",
                gun: &req.gun,
                role: &req.role,
            },
        );
        if !ops.contains(Op::Generate) {
            return Err(Error::PermissionDenied(format!(
                "policy does not allow uid {} to generate keys for role {:?} gun {:?}",
                caller.uid, req.role, req.gun
            )));
        }
        self.generate_on(index, req, KeyOwner::Sigil).await
    }

    async fn generate_on(
        &self,
        index: usize,
        req: &GenerateRequest,
        owner: KeyOwner,
    ) -> Result<Arc<KeyEntry>, Error> {
        let backend = &self.backends[index];
        let meta = KeyMeta {
            role: req.role.clone(),
            gun: req.gun.clone(),
            owner,
        };
        // [[require]] rules: refuse up front what the backend cannot deliver, and check the
        // new key's attestation afterwards (discarding the key when it falls short).
        let needs = self.policy().needs(&req.gun, &req.role);
        if needs.any() {
            let plan = backend.generation_plan(&req.role);
            let rules = needs.rules.join(", ");
            if needs.attested
                && let Err(why) = &plan.attestable
            {
                return Err(Error::Precondition(format!(
                    "requirement {rules}: {} keys must be attested, but {why}; nothing was generated",
                    req.role
                )));
            }
            if let Some(want) = needs.touch {
                match plan.touch {
                    Some(have) if have >= want => {}
                    Some(have) => {
                        return Err(Error::Precondition(format!(
                            "requirement {rules}: {} keys need touch {}, but backend {:?} generates them with touch {} (set touch_root / touch_other); nothing was generated",
                            req.role,
                            want.as_str(),
                            backend.name(),
                            have.as_str()
                        )));
                    }
                    None => {
                        return Err(Error::Precondition(format!(
                            "requirement {rules}: {} keys need an attested touch policy, which backend {:?} cannot give; nothing was generated",
                            req.role,
                            backend.name()
                        )));
                    }
                }
            }
        }
        let key = backend.generate(req.algorithm, meta).await?;
        let device = backend.device_key(&key.locator);
        if needs.any()
            && let Some(why) = needs.unmet(&facts(device.as_ref()))
        {
            let discarded = match backend.delete(key.locator.clone()).await {
                Ok(()) => "the new key was discarded (its label removed from the device)",
                Err(e) => {
                    tracing::error!(error = %e, "could not discard a key that failed a requirement");
                    "the new key could not be discarded from the device; it is not in the key ring"
                }
            };
            return Err(Error::Precondition(format!("{why}; {discarded}")));
        }
        self.keyring
            .insert(KeyEntry::new(index, backend.name(), key).with_device(device))
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Audits a generation; an unrecordable new key is removed again (fail closed).
    async fn audit_generate(
        &self,
        who: Who<'_>,
        req: &GenerateRequest,
        result: Result<Arc<KeyEntry>, Error>,
        started: Instant,
    ) -> Result<Arc<KeyEntry>, Error> {
        let audited = result.as_ref().ok();
        let reason = result.as_ref().err().map(ToString::to_string);
        let event = Event {
            op: "generate",
            who,
            key_id: audited.map_or("", |k| k.key_id.as_str()),
            role: &req.role,
            gun: &req.gun,
            backend: audited.map_or(req.backend.as_str(), |k| k.backend_name.as_str()),
            algorithm: Some(req.algorithm.as_str()),
            sha256: None,
            outcome: outcome(result.as_ref().err()),
            reason: reason.as_deref(),
            latency_us: micros(started),
        };
        if let Err(e) = self.audit.record(&event) {
            if let Ok(key) = &result {
                self.keyring.remove(&key.key_id);
                if let Ok(backend) = self.backend_of(key) {
                    let _ = backend.delete(key.locator.clone()).await;
                }
            }
            return Err(audit_failed(&e));
        }
        result
    }

    /// notary-signer CreateKey: a timestamp or snapshot key for a GUN, generated on the
    /// configured backend and visible only to the notary-signer endpoint.
    pub async fn notary_create_key(
        &self,
        client: &str,
        backend: &str,
        req: GenerateRequest,
    ) -> Result<Arc<KeyEntry>, Error> {
        let started = Instant::now();
        let result = async {
            if !matches!(req.role.as_str(), "timestamp" | "snapshot") {
                return Err(Error::PermissionDenied(format!(
                    "the notary-signer endpoint only creates timestamp and snapshot keys, not {:?}",
                    req.role
                )));
            }
            check_gun(&req.gun)?;
            let index = self.pick_backend(backend)?;
            self.generate_on(index, &req, KeyOwner::NotarySigner).await
        }
        .await;
        self.audit_generate(Who::TlsClient(client), &req, result, started)
            .await
    }

    /// notary-signer GetKeyInfo: only keys created through that endpoint exist for it.
    pub fn notary_key(&self, notary_id: &str) -> Result<Arc<KeyEntry>, Error> {
        self.keyring
            .get_notary(notary_id)
            .ok_or_else(|| Error::KeyNotFound(notary_id.to_owned()))
    }

    /// notary-signer Sign: SHA-256 of `content` (ECDSA, raw r||s) or Ed25519 over it, audited
    /// with the client certificate's identity as the caller.
    pub async fn notary_sign(
        &self,
        client: &str,
        notary_id: &str,
        content: Vec<u8>,
    ) -> Result<Signature, Error> {
        let started = Instant::now();
        let mut digest_hex = None;
        let key = self.notary_key(notary_id);
        let result = match &key {
            Ok(key) => {
                let payload = Payload::Message(content);
                match self.check_payload(&payload) {
                    Ok(()) => {
                        self.sign_with(
                            Arc::clone(key),
                            payload,
                            SignatureEncoding::Raw,
                            &mut digest_hex,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            Err(_) => Err(Error::KeyNotFound(notary_id.to_owned())),
        };
        self.audit(
            "sign",
            Who::TlsClient(client),
            key.as_ref().map_or(notary_id, |k| k.key_id.as_str()),
            key.as_deref().ok(),
            digest_hex.as_deref(),
            result.as_ref().err(),
            started,
        )?;
        result
    }

    /// notary-signer DeleteKey (notary-server 0.7.0 never calls it).
    pub async fn notary_delete(&self, client: &str, notary_id: &str) -> Result<(), Error> {
        let started = Instant::now();
        let key = self.notary_key(notary_id);
        let result = match &key {
            Ok(key) => self.delete_key(key).await,
            Err(_) => Err(Error::KeyNotFound(notary_id.to_owned())),
        };
        self.audit(
            "delete",
            Who::TlsClient(client),
            key.as_ref().map_or(notary_id, |k| k.key_id.as_str()),
            key.as_deref().ok(),
            None,
            result.as_ref().err(),
            started,
        )?;
        result
    }

    /// Deletes a key from its token, if policy allows `delete`.
    pub async fn delete(&self, caller: &Caller, key_id: &str) -> Result<(), Error> {
        let started = Instant::now();
        let found = self.keyring.get(key_id);
        let result = match self.authorise(caller, key_id, Op::Delete) {
            Ok(key) => self.delete_key(&key).await,
            Err(e) => Err(e),
        };
        self.audit(
            "delete",
            Who::Unix(caller),
            key_id,
            found.as_deref(),
            None,
            result.as_ref().err(),
            started,
        )?;
        result
    }

    async fn delete_key(&self, key: &Arc<KeyEntry>) -> Result<(), Error> {
        self.backend_of(key)?.delete(key.locator.clone()).await?;
        self.keyring.remove(&key.key_id);
        Ok(())
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
                    "unknown backend {name:?} (configured: {})",
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

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &self,
        op: &'static str,
        who: Who<'_>,
        key_id: &str,
        key: Option<&KeyEntry>,
        sha256: Option<&str>,
        error: Option<&Error>,
        started: Instant,
    ) -> Result<(), Error> {
        let reason = error.map(|e| e.to_string());
        let event = Event {
            op,
            who,
            key_id,
            role: key.map(|k| k.meta.role.as_str()).unwrap_or(""),
            gun: key.map(|k| k.meta.gun.as_str()).unwrap_or(""),
            backend: key.map(|k| k.backend_name.as_str()).unwrap_or(""),
            algorithm: key.map(|k| k.algorithm().as_str()),
            sha256,
            outcome: outcome(error),
            reason: reason.as_deref(),
            latency_us: micros(started),
        };
        self.audit.record(&event).map_err(|e| audit_failed(&e))
    }
}

fn audit_failed(e: &std::io::Error) -> Error {
    Error::Internal(format!(
        "cannot write the audit log, operation refused: {e}"
    ))
}

fn outcome(error: Option<&Error>) -> &'static str {
    match error {
        None => "ok",
        Some(Error::PermissionDenied(_)) => "denied",
        Some(Error::KeyNotFound(_)) => "not_found",
        Some(Error::BadRequest(_) | Error::TooLarge { .. }) => "invalid",
        Some(_) => "error",
    }
}

/// What the key ring knows about a key's attestation, for `[[require]]` rules.
fn facts(device: Option<&backend::DeviceKey>) -> KeyFacts {
    device.map_or_else(KeyFacts::default, |d| KeyFacts {
        attested: d.attested,
        touch: d.policies.map(|p| p.touch),
    })
}

fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn view(key: &KeyEntry) -> KeyView<'_> {
    KeyView {
        key_id: &key.key_id,
        gun: &key.meta.gun,
        role: &key.meta.role,
    }
}

/// Size and shape of a payload, against the configured `max_message_bytes`.
pub fn check_payload(payload: &Payload, max_message_bytes: usize) -> Result<(), Error> {
    match payload {
        Payload::Message(m) if m.len() > max_message_bytes => Err(Error::TooLarge {
            size: m.len(),
            max: max_message_bytes,
        }),
        Payload::Digest(d) if d.len() != 32 => Err(Error::BadRequest(format!(
            "sha256_digest must be exactly 32 bytes, got {}",
            d.len()
        ))),
        _ => Ok(()),
    }
}

/// Key ids are the SHA-256 of the public key, in lowercase hex.
pub fn check_key_id(key_id: &str) -> Result<(), Error> {
    if key_id.is_empty() {
        return Err(Error::BadRequest("key_id is required".into()));
    }
    if key_id.len() != 64
        || !key_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Error::BadRequest(
            "key_id must be 64 lowercase hex characters (SHA-256 of the public key)".into(),
        ));
    }
    Ok(())
}

/// Roles are TUF role names: `root`, `targets`, `targets/releases`, …
pub fn check_role(role: &str) -> Result<(), Error> {
    let ok = !role.is_empty()
        && role.len() <= 255
        && !role.starts_with('/')
        && !role.ends_with('/')
        && !role.contains("//")
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "role {role:?} is not a valid role name (letters, digits, '/', '_', '-', '.'; e.g. targets/releases)"
        )))
    }
}

/// GUNs are collection names such as `example.com/app` or `localhost:5000/app`.
pub fn check_gun(gun: &str) -> Result<(), Error> {
    if gun.len() > 255 || gun.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::BadRequest(format!(
            "gun {gun:?} is not a valid collection name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_key_ids_roles_and_guns() {
        assert!(check_key_id("").is_err());
        assert!(check_key_id(&"A".repeat(64)).is_err());
        assert!(check_key_id(&"a".repeat(63)).is_err());
        assert!(check_key_id(&"a".repeat(64)).is_ok());
        for good in ["root", "targets", "targets/releases", "snapshot"] {
            assert!(check_role(good).is_ok(), "{good}");
        }
        for bad in ["", "/root", "targets/", "a b", "a:b", "targets//x"] {
            assert!(check_role(bad).is_err(), "{bad}");
        }
        assert!(check_gun("localhost:5000/app").is_ok());
        assert!(check_gun("").is_ok());
        assert!(check_gun("a\nb").is_err());
    }
}
