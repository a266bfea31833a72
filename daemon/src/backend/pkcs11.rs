//! PKCS#11 backend through cryptoki. A cryptoki `Session` is `Send` but not `Sync`, so each
//! worker thread owns one session, opened once and logged in once (login state is per
//! application), and takes jobs from a shared queue. Token calls block, so they never run on
//! the async reactor: callers await a oneshot reply instead.
//!
//! A hand-off to a worker costs two thread wake-ups (tens of µs each on a VM), more than a
//! fast token takes to sign (SoftHSM: ~45 µs). So while signatures come one at a time, a sign
//! whose token call has been measured to be short runs on the caller's thread (the daemon's
//! one I/O thread, [`crate::runtime`]), with a session from a small pool
//! ([`Shared::sign_inline`]). Under load — other signatures in flight, or the I/O thread
//! finding requests waiting each time it finishes one — the workers sign instead, so the I/O
//! thread reads and answers while the token signs; slow tokens (network HSMs, RSA on a smart
//! card) always go through the workers, so the I/O thread is never blocked for long.
//!
//! Tokens disappear (unplugged, or a module that lost its store). The health probe then resets
//! the module (`C_Finalize`, `C_Initialize`, login, re-scan) while no job runs, so the daemon
//! recovers without a restart. Object handles do not survive a reset, so keys are located by
//! their `CKA_ID` and resolved to handles of the current incarnation of the token.
//!
//! Keys carry `CKA_LABEL = "sigil:<role>:<gun>"` (`sigil-notary:` for keys made through the
//! notary-signer endpoint) and a random `CKA_ID` shared by both halves, which is all the key
//! ring needs to be rebuilt from the token at start-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use super::workers::{Reply, Workers};
use super::{
    Algorithm, BackendKey, BoxFuture, Error, KeyLocator, KeyMeta, KeyOwner, PublicKey, SignInput,
};
use crate::config::{Pkcs11Config, TokenSelector};
use crate::runtime;
use crate::secret::Pin;

/// DER OID of prime256v1 (NIST P-256), as `CKA_EC_PARAMS` wants it.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER OID of id-Ed25519 (1.3.101.112).
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// Ed25519 named by curve name, which some modules (and pkcs11-tool) use instead of the OID.
const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
/// Label prefix that marks a key as sigil's.
pub(super) const LABEL_PREFIX: &str = "sigil:";
/// Label prefix of keys created through the notary-signer endpoint.
pub(super) const NOTARY_LABEL_PREFIX: &str = "sigil-notary:";
/// Modulus size of generated RSA keys.
const RSA_BITS: u64 = 3072;
/// Token calls measured to take less than this on average run on the caller's thread: about
/// what a hand-off to a worker and back costs, and short enough not to stall the runtime.
const INLINE_BELOW: Duration = Duration::from_micros(250);
/// Inline signing while fewer than this many other signatures (in 1/256ths, averaged) are in
/// flight when one starts: one caller at a time, give or take an overlap.
const INLINE_CONCURRENCY: u64 = 128;
/// Inline signing while fewer than this share (in 1/256ths, averaged) of signatures found the
/// I/O thread saturated: one such signature (weight 1/8 = 32) hands the next dozen or so to
/// the workers, so the I/O thread keeps reading while the token signs. Measured on the
/// notary-signer endpoint: a looser limit let 4 clients settle on inline signing, which
/// serialises I/O and token on one thread (BENCHMARKS.md).
const INLINE_SATURATION: u64 = 8;

enum Job {
    Probe(Reply<()>),
    Reopen {
        pin: Option<Pin>,
        reply: Reply<Vec<BackendKey>>,
    },
    Scan(Reply<Vec<BackendKey>>),
    Generate {
        algorithm: Algorithm,
        meta: KeyMeta,
        reply: Reply<BackendKey>,
    },
    Delete {
        id: Arc<[u8]>,
        reply: Reply<()>,
    },
    Sign {
        id: Arc<[u8]>,
        algorithm: Algorithm,
        input: SignInput,
        reply: Reply<Vec<u8>>,
    },
}

/// Private and public object handles of a key, valid for one incarnation of the token.
type Handles = HashMap<Arc<[u8]>, (ObjectHandle, ObjectHandle)>;

/// One incarnation of the token as the module sees it; a reset replaces it.
struct Token {
    /// Bumped by every reset; sessions from older generations are dead.
    generation: u64,
    /// The token's slot, `None` while it is missing.
    slot: Option<Slot>,
    /// `CKA_ID` → handles. Jobs add and remove keys while holding the token for reading.
    handles: RwLock<Handles>,
    /// An idle session held for the incarnation's lifetime: modules (SoftHSM among them)
    /// invalidate object handles when a slot's last session closes.
    keeper: Option<std::sync::Mutex<Session>>,
}

/// State the workers share: the module, how to find the token again, and the PIN for the
/// login after a reset.
struct Shared {
    name: String,
    ctx: Pkcs11,
    selector: TokenSelector,
    /// Replaced when SIGHUP reads the PIN file again.
    pin: Mutex<Pin>,
    healthy: AtomicBool,
    /// Set once the token refused the PIN: it is never offered again.
    pin_refused: AtomicBool,
    /// Jobs hold it for reading; a reset holds it for writing, so it never races a job.
    token: RwLock<Token>,
    /// Signatures in progress on this token, inline or queued.
    signs_in_flight: AtomicUsize,
    /// Moving average of `signs_in_flight` seen by each new signature, in 1/256ths: inline
    /// signing pays off for one caller at a time, while under concurrent load the workers
    /// overlap token calls with the runtime's I/O. Averaged so the mode does not flap.
    concurrency: AtomicU64,
    /// [`runtime::parks`] when the last signature started.
    last_parks: AtomicU64,
    /// Moving average, in 1/256ths, of signatures that found the I/O thread had not gone idle
    /// since the previous one. One I/O thread never overlaps its own inline signatures, so
    /// `concurrency` stays 0 however many callers queue behind it; this sees them.
    saturation: AtomicU64,
    /// Sessions for signing on the caller's thread; at most `inline_max` exist.
    inline: Mutex<InlinePool>,
    inline_max: usize,
    /// Moving average of the token's sign time per algorithm, in ns (`u64::MAX`: unknown).
    sign_nanos: [AtomicU64; 3],
    /// Keys made by other tools, adopted by `CKA_ID` (config `existing_keys`).
    existing: Vec<(Vec<u8>, KeyMeta)>,
}

/// Idle sessions for inline signing, and how many exist (idle or in use).
#[derive(Default)]
struct InlinePool {
    idle: Vec<(u64, Session)>,
    open: usize,
}

/// A PKCS#11 token served by a small pool of worker threads, one session each.
pub struct Pkcs11Backend {
    shared: Arc<Shared>,
    workers: Workers<Job>,
}

fn initialize(ctx: &Pkcs11) -> Result<(), CkError> {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Finds the token and refuses to spend a last PIN try or to use a locked PIN.
fn locate(ctx: &Pkcs11, selector: &TokenSelector, name: &str) -> Result<Slot, Error> {
    let slot = find_slot(ctx, selector, name)?;
    let info = ctx.get_token_info(slot).map_err(|e| classify(name, e))?;
    if info.user_pin_locked() {
        return Err(Error::PinLocked {
            backend: name.to_owned(),
        });
    }
    if info.user_pin_final_try() {
        return Err(Error::PinFinalTry {
            backend: name.to_owned(),
        });
    }
    Ok(slot)
}

impl Pkcs11Backend {
    /// Loads the module, finds the token, logs in once (a wrong PIN stops here, untried again)
    /// and starts `config.sessions` worker threads, each with its own session.
    pub fn open(config: &Pkcs11Config, pin: Pin) -> Result<Self, Error> {
        let workers = config.sessions.max(1);
        let name = config.name.clone();
        let selector = config.selector().map_err(|e| Error::BadToken {
            backend: name.clone(),
            what: e.to_string(),
        })?;
        let module_err = |source| Error::ModuleLoad {
            module: config.module.clone(),
            source,
        };
        let mut existing = Vec::with_capacity(config.existing_keys.len());
        for key in &config.existing_keys {
            let id = key.id_bytes().map_err(|e| Error::BadToken {
                backend: name.clone(),
                what: e.to_string(),
            })?;
            let meta = KeyMeta {
                role: key.role.clone(),
                gun: key.gun.clone(),
                owner: KeyOwner::Sigil,
            };
            existing.push((id, meta));
        }
        let ctx = Pkcs11::new(&config.module).map_err(module_err)?;
        initialize(&ctx).map_err(module_err)?;
        let slot = locate(&ctx, &selector, &name)?;
        let shared = Arc::new(Shared {
            name,
            ctx,
            selector,
            pin: Mutex::new(pin),
            healthy: AtomicBool::new(true),
            pin_refused: AtomicBool::new(false),
            token: RwLock::new(Token {
                generation: 0,
                slot: Some(slot),
                handles: RwLock::new(HashMap::new()),
                keeper: None,
            }),
            signs_in_flight: AtomicUsize::new(0),
            concurrency: AtomicU64::new(0),
            last_parks: AtomicU64::new(0),
            saturation: AtomicU64::new(0),
            inline: Mutex::new(InlinePool::default()),
            inline_max: workers,
            sign_nanos: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            existing,
        });
        // Logging in here makes a wrong PIN stop start-up, before any worker exists.
        let keeper = shared.open_session(&shared.read_token())?;
        shared
            .token
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .keeper = Some(std::sync::Mutex::new(keeper));
        let threads = (0..workers).map(|i| {
            let shared = Arc::clone(&shared);
            let name = format!("pkcs11-{}-{i}", shared.name);
            (name, move |jobs| worker(&shared, None, &jobs))
        });
        let workers = Workers::start(&config.name, config.max_queued_jobs, threads)?;
        Ok(Self { shared, workers })
    }
}

impl Drop for Pkcs11Backend {
    fn drop(&mut self) {
        // The workers finish the jobs already queued first.
        self.workers.stop();
        // Inline sessions of an older incarnation must not be closed (see `session_for`).
        let generation = self.shared.read_token().generation;
        let mut pool = self.shared.inline.lock().unwrap_or_else(|p| p.into_inner());
        for (g, session) in pool.idle.drain(..) {
            if g != generation {
                std::mem::forget(session);
            }
        }
    }
}

/// The `CKA_ID` of a PKCS#11 locator; any other locator names no key here.
fn pkcs11_id(locator: &KeyLocator) -> Option<Arc<[u8]>> {
    match locator {
        KeyLocator::Pkcs11 { id } => Some(Arc::clone(id)),
        KeyLocator::Yubikey { .. } => None,
    }
}

impl super::Backend for Pkcs11Backend {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    fn probe(&self) -> BoxFuture<'_, bool> {
        let answer = self.workers.submit(Job::Probe);
        Box::pin(async move {
            answer
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "token probe failed"))
                .is_ok()
        })
    }

    fn scan(&self) -> BoxFuture<'_, Result<Vec<BackendKey>, Error>> {
        self.workers.submit(Job::Scan)
    }

    fn reopen(&self, pin: Option<Pin>) -> BoxFuture<'_, Result<Vec<BackendKey>, Error>> {
        self.workers.submit(|reply| Job::Reopen { pin, reply })
    }

    fn generate(
        &self,
        algorithm: Algorithm,
        meta: KeyMeta,
    ) -> BoxFuture<'_, Result<BackendKey, Error>> {
        self.workers.submit(|reply| Job::Generate {
            algorithm,
            meta,
            reply,
        })
    }

    fn delete(&self, locator: KeyLocator) -> BoxFuture<'_, Result<(), Error>> {
        let Some(id) = pkcs11_id(&locator) else {
            return Box::pin(async { Err(Error::KeyNotFound) });
        };
        if self.shared.existing.iter().any(|(e, _)| **e == *id) {
            let err = Error::Unsupported {
                backend: self.shared.name.clone(),
                what: "deleting a key sigild did not make (it is in existing_keys); delete it \
                       with the tool that made it and remove it from the configuration"
                    .into(),
            };
            return Box::pin(async { Err(err) });
        }
        self.workers.submit(|reply| Job::Delete { id, reply })
    }

    fn sign(
        &self,
        locator: KeyLocator,
        algorithm: Algorithm,
        input: SignInput,
    ) -> BoxFuture<'_, Result<Vec<u8>, Error>> {
        let Some(id) = pkcs11_id(&locator) else {
            return Box::pin(async { Err(Error::KeyNotFound) });
        };
        let shared = &self.shared;
        let others = shared.signs_in_flight.fetch_add(1, Ordering::AcqRel);
        let concurrency = fold_concurrency(shared.concurrency.load(Ordering::Relaxed), others);
        shared.concurrency.store(concurrency, Ordering::Relaxed);
        let parks = runtime::parks();
        let busy = shared.last_parks.swap(parks, Ordering::Relaxed) == parks;
        let saturation =
            fold_concurrency(shared.saturation.load(Ordering::Relaxed), usize::from(busy));
        shared.saturation.store(saturation, Ordering::Relaxed);
        if concurrency < INLINE_CONCURRENCY && saturation < INLINE_SATURATION {
            let inline = shared.sign_inline(&id, algorithm, &input);
            if let Some(result) = inline {
                shared.signs_in_flight.fetch_sub(1, Ordering::AcqRel);
                return Box::pin(std::future::ready(result));
            }
        }
        // Still counted in flight: the worker that runs the job counts it out.
        self.workers.submit(|reply| Job::Sign {
            id,
            algorithm,
            input,
            reply,
        })
    }
}

fn find_slot(ctx: &Pkcs11, selector: &TokenSelector, backend: &str) -> Result<Slot, Error> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| classify(backend, e))?;
    let mut present = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let matches = match selector {
            TokenSelector::Label(label) => info.label().trim_end() == label,
            TokenSelector::Serial(serial) => info.serial_number().trim_end() == serial,
            TokenSelector::Slot(id) => slot.id() == *id,
        };
        if matches {
            return Ok(slot);
        }
        present.push(format!("{:?}", info.label().trim_end()));
    }
    Err(Error::TokenNotFound {
        backend: backend.to_owned(),
        selector: selector.to_string(),
        present: if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        },
    })
}

/// A worker's session, tagged with the token generation it belongs to.
type WorkerSession = Option<(u64, Session)>;

impl Shared {
    fn read_token(&self) -> RwLockReadGuard<'_, Token> {
        // Token state is replaced whole under the write lock; a panic cannot leave it torn.
        self.token.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a read-write session on the current token and makes sure the application is
    /// logged in. A PIN the token refused once is never offered again.
    fn open_session(&self, token: &Token) -> Result<Session, Error> {
        if self.pin_refused.load(Ordering::Relaxed) {
            return Err(Error::PinIncorrect {
                backend: self.name.clone(),
            });
        }
        let slot = token.slot.ok_or_else(|| Error::TokenNotPresent {
            backend: self.name.clone(),
        })?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| classify(&self.name, e))?;
        let pin = self.pin.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match session.login(UserType::User, Some(pin.as_auth_pin())) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => {
                let err = classify(&self.name, e);
                if matches!(err, Error::PinIncorrect { .. } | Error::PinLocked { .. }) {
                    self.pin_refused.store(true, Ordering::Relaxed);
                }
                Err(err)
            }
        }
    }

    /// The worker's session for the current generation, opened if needed.
    fn session_for<'s>(
        &self,
        token: &Token,
        session: &'s mut WorkerSession,
    ) -> Result<&'s Session, Error> {
        if session
            .as_ref()
            .is_some_and(|(g, _)| *g != token.generation)
        {
            // After a reset the module may hand the old handle number to another session:
            // closing it would close someone else's. Forget it instead.
            if let Some((_, stale)) = session.take() {
                std::mem::forget(stale);
            }
        }
        if session.is_none() {
            *session = Some((token.generation, self.open_session(token)?));
        }
        match session {
            Some((_, s)) => Ok(s),
            None => Err(Error::TokenNotPresent {
                backend: self.name.clone(),
            }),
        }
    }

    /// Signs and folds the token's time into the algorithm's moving average.
    fn timed_sign(
        &self,
        session: &Session,
        private: ObjectHandle,
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Result<Vec<u8>, Error> {
        let started = Instant::now();
        let result = sign(session, private, algorithm, input, &self.name);
        if result.is_ok() {
            let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let average = &self.sign_nanos[algorithm_index(algorithm)];
            // Racing updates may drop a sample; the average stays an average.
            average.store(
                fold_average(average.load(Ordering::Relaxed), took),
                Ordering::Relaxed,
            );
        }
        result
    }

    /// Signs on the calling thread when the token has been fast for this algorithm and an
    /// inline session is free; `None` sends the job to the workers instead. Never waits: a
    /// reset in progress or a busy pool also means `None`.
    fn sign_inline(
        &self,
        id: &[u8],
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Option<Result<Vec<u8>, Error>> {
        let average = self.sign_nanos[algorithm_index(algorithm)].load(Ordering::Relaxed);
        if !fast_enough(average) || !self.healthy.load(Ordering::Relaxed) {
            return None;
        }
        let token = self.token.try_read().ok()?;
        let private = token
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(private, _)| *private)?;
        let mut session = self.take_inline(&token)?;
        let result = match self.session_for(&token, &mut session) {
            Ok(s) => self.timed_sign(s, private, algorithm, input),
            Err(e) => Err(e),
        };
        if matches!(&result, Err(e) if breaks_session(e)) {
            self.healthy.store(false, Ordering::Relaxed);
            // Same generation (the read lock is held): closing it is safe.
            session = None;
        }
        self.give_back_inline(session);
        Some(result)
    }

    /// An idle inline session, or room to open one (`Some(None)`); `None` when all are busy.
    fn take_inline(&self, token: &Token) -> Option<WorkerSession> {
        let mut pool = self.inline.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((generation, session)) = pool.idle.pop() {
            if generation == token.generation {
                return Some(Some((generation, session)));
            }
            // A session of an older incarnation: its handle may now be another's; forget it.
            std::mem::forget(session);
            pool.open -= 1;
        }
        if pool.open < self.inline_max {
            pool.open += 1;
            return Some(None);
        }
        None
    }

    fn give_back_inline(&self, session: WorkerSession) {
        let mut pool = self.inline.lock().unwrap_or_else(|p| p.into_inner());
        match session {
            Some(session) => pool.idle.push(session),
            None => pool.open -= 1,
        }
    }

    /// SIGHUP: takes a PIN read again from its file, resets the module and lists the keys.
    /// A PIN the token refused is offered again only if the file now holds a different one.
    fn reopen(&self, pin: Option<Pin>) -> Result<Vec<BackendKey>, Error> {
        if let Some(pin) = pin {
            let mut current = self.pin.lock().unwrap_or_else(|p| p.into_inner());
            if !pin.same_as(&current) {
                *current = pin;
                self.pin_refused.store(false, Ordering::Relaxed);
            }
        }
        // Every worker's session belongs to the old incarnation now; `session_for` replaces
        // it at the worker's next job.
        let result = self.reset();
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// Checks the token; when it is gone or broken, resets the module to pick it up again.
    fn probe(&self, session: &mut WorkerSession) -> Result<(), Error> {
        let checked = {
            let token = self.read_token();
            self.session_for(&token, session)
                .and_then(|s| probe(self, &token, s))
        };
        let result = match checked {
            Ok(()) => Ok(()),
            // Re-login would offer a refused PIN again.
            Err(e) if self.pin_refused.load(Ordering::Relaxed) => Err(e),
            Err(e) => {
                tracing::debug!(backend = %self.name, error = %e, "token unusable; resetting the module");
                self.reset().map(drop)
            }
        };
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// `C_Finalize` + `C_Initialize`, find the token, log in, and re-resolve every key's
    /// handles, with every worker kept out meanwhile; answers the keys found.
    fn reset(&self) -> Result<Vec<BackendKey>, Error> {
        let mut token = self.token.write().unwrap_or_else(|p| p.into_inner());
        token.generation += 1;
        token.slot = None;
        if let Some(stale) = token.keeper.take() {
            std::mem::forget(stale);
        }
        let handles = token.handles.get_mut().unwrap_or_else(|p| p.into_inner());
        handles.clear();
        // Ends every session of every worker: they are forgotten, never closed, afterwards.
        let _ = self.ctx.clone().finalize();
        initialize(&self.ctx).map_err(|e| classify(&self.name, e))?;
        let slot = locate(&self.ctx, &self.selector, &self.name)?;
        token.slot = Some(slot);
        let session = self.open_session(&token)?;
        let keys = scan(&session, &token, &self.name, &self.existing)?;
        token.keeper = Some(std::sync::Mutex::new(session));
        tracing::info!(backend = %self.name, keys = keys.len(), "token reopened");
        Ok(keys)
    }
}

/// Counts a queued signature out of [`Shared::signs_in_flight`] when its job is done.
struct SignDone<'a>(&'a AtomicUsize);

impl Drop for SignDone<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One worker: owns its session, reopens it when the token comes back, runs jobs in order.
fn worker(shared: &Shared, mut session: WorkerSession, jobs: &crossbeam_channel::Receiver<Job>) {
    for job in jobs.iter() {
        let job = match job {
            Job::Probe(reply) => {
                let _ = reply.send(shared.probe(&mut session));
                continue;
            }
            Job::Reopen { pin, reply } => {
                let _ = reply.send(shared.reopen(pin));
                continue;
            }
            job => job,
        };
        let _sign = matches!(job, Job::Sign { .. }).then(|| SignDone(&shared.signs_in_flight));
        let token = shared.read_token();
        let s = match shared.session_for(&token, &mut session) {
            Ok(s) => s,
            Err(e) => {
                shared.healthy.store(false, Ordering::Relaxed);
                job.fail(e);
                continue;
            }
        };
        let keep = run(shared, &token, s, job);
        if !keep {
            shared.healthy.store(false, Ordering::Relaxed);
            // Same generation: closing it is safe.
            session = None;
        }
    }
}

/// Runs a job and replies; returns whether the session is still worth keeping.
fn run(shared: &Shared, token: &Token, session: &Session, job: Job) -> bool {
    let name = &shared.name;
    fn answer<T>(reply: Reply<T>, result: Result<T, Error>) -> bool {
        let keep = !matches!(&result, Err(e) if breaks_session(e));
        let _ = reply.send(result);
        keep
    }
    let handles = |id: &[u8]| {
        token
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .ok_or(Error::KeyNotFound)
    };
    match job {
        Job::Sign {
            id,
            algorithm,
            input,
            reply,
        } => {
            let result = handles(&id)
                .and_then(|(private, _)| shared.timed_sign(session, private, algorithm, &input));
            answer(reply, result)
        }
        Job::Scan(reply) => answer(reply, scan(session, token, name, &shared.existing)),
        Job::Generate {
            algorithm,
            meta,
            reply,
        } => answer(reply, generate(session, token, algorithm, &meta, name)),
        Job::Delete { id, reply } => {
            let result = handles(&id).and_then(|(private, public)| {
                session
                    .destroy_object(private)
                    .and_then(|()| session.destroy_object(public))
                    .map_err(|e| classify(name, e))
            });
            if result.is_ok() {
                token
                    .handles
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            }
            answer(reply, result)
        }
        // Handled by the worker loop itself (they reset the module).
        Job::Probe(reply) => answer(reply, Ok(())),
        Job::Reopen { reply, .. } => answer(reply, Ok(Vec::new())),
    }
}

impl Job {
    fn fail(self, err: Error) {
        match self {
            Job::Probe(r) | Job::Delete { reply: r, .. } => drop(r.send(Err(err))),
            Job::Scan(r) | Job::Reopen { reply: r, .. } => drop(r.send(Err(err))),
            Job::Generate { reply, .. } => drop(reply.send(Err(err))),
            Job::Sign { reply, .. } => drop(reply.send(Err(err))),
        }
    }
}

/// The token is present, the session alive and still logged in.
fn probe(shared: &Shared, token: &Token, session: &Session) -> Result<(), Error> {
    let name = &shared.name;
    let slot = token.slot.ok_or_else(|| Error::TokenNotPresent {
        backend: name.clone(),
    })?;
    shared
        .ctx
        .get_token_info(slot)
        .map_err(|e| classify(name, e))?;
    let info = session.get_session_info().map_err(|e| classify(name, e))?;
    match info.session_state() {
        cryptoki::session::SessionState::RwUser | cryptoki::session::SessionState::RoUser => Ok(()),
        _ => Err(Error::Pkcs11 {
            backend: name.clone(),
            source: CkError::Pkcs11(
                RvError::UserNotLoggedIn,
                cryptoki::context::Function::GetSessionInfo,
            ),
        }),
    }
}

fn sign(
    session: &Session,
    private: ObjectHandle,
    algorithm: Algorithm,
    input: &SignInput,
    name: &str,
) -> Result<Vec<u8>, Error> {
    let pss = PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    };
    let (mechanism, data): (Mechanism<'_>, &[u8]) = match (algorithm, input) {
        (Algorithm::EcdsaP256, SignInput::Digest(d)) => (Mechanism::Ecdsa, d),
        (Algorithm::Rsa3072Pss, SignInput::Digest(d)) => (Mechanism::RsaPkcsPss(pss), d),
        (Algorithm::Ed25519, SignInput::Message(m)) => (
            Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            m,
        ),
        _ => {
            return Err(Error::Unsupported {
                backend: name.to_owned(),
                what: format!("{algorithm} over this kind of input"),
            });
        }
    };
    session
        .sign(&mechanism, private, data)
        .map_err(|e| classify(name, e))
}

fn generate(
    session: &Session,
    token: &Token,
    algorithm: Algorithm,
    meta: &KeyMeta,
    name: &str,
) -> Result<BackendKey, Error> {
    let mut id = [0u8; 16];
    session
        .generate_random_slice(&mut id)
        .map_err(|e| classify(name, e))?;
    let prefix = match meta.owner {
        KeyOwner::Sigil => LABEL_PREFIX,
        KeyOwner::NotarySigner => NOTARY_LABEL_PREFIX,
    };
    let label = format!("{prefix}{}:{}", meta.role, meta.gun).into_bytes();
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Label(label.clone()),
        Attribute::Id(id.to_vec()),
    ];
    // Never extractable, never readable, usable for signing only.
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label),
        Attribute::Id(id.to_vec()),
    ];
    let mechanism = match algorithm {
        Algorithm::EcdsaP256 => {
            public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
            Mechanism::EccKeyPairGen
        }
        Algorithm::Ed25519 => {
            public.push(Attribute::EcParams(ED25519_OID.to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
        Algorithm::Rsa3072Pss => {
            public.push(Attribute::ModulusBits(RSA_BITS.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let mut generated = session.generate_key_pair(&mechanism, &public, &private);
    if algorithm == Algorithm::Ed25519
        && matches!(
            generated,
            Err(CkError::Pkcs11(
                RvError::DomainParamsInvalid
                    | RvError::CurveNotSupported
                    | RvError::AttributeValueInvalid,
                _
            ))
        )
    {
        // Some modules only know Ed25519 by its curve name.
        if let Some(last) = public.last_mut() {
            *last = Attribute::EcParams(ED25519_NAME.to_vec());
        }
        generated = session.generate_key_pair(&mechanism, &public, &private);
    }
    let (pub_handle, priv_handle) = match generated {
        Ok(pair) => pair,
        Err(CkError::Pkcs11(
            RvError::MechanismInvalid | RvError::CurveNotSupported | RvError::DomainParamsInvalid,
            _,
        )) => {
            return Err(Error::Unsupported {
                backend: name.to_owned(),
                what: format!("generating {algorithm} keys"),
            });
        }
        // ykcs11, for one: it wants CKA_ID to name a PIV slot and keys made after an SO login.
        Err(CkError::Pkcs11(
            RvError::AttributeValueInvalid
            | RvError::AttributeTypeInvalid
            | RvError::TemplateInconsistent
            | RvError::TemplateIncomplete,
            _,
        )) => {
            return Err(Error::Unsupported {
                backend: name.to_owned(),
                what: "generating keys with sigil's template (random CKA_ID, sigil label, \
                       sensitive, never extractable), which this token refuses: make the key \
                       with the token's own tool and name it in existing_keys"
                    .into(),
            });
        }
        Err(e) => return Err(classify(name, e)),
    };
    let checked = check_non_extractable(session, priv_handle, name)
        .and_then(|()| read_public(session, pub_handle, name));
    match checked {
        Ok(key) => {
            let id: Arc<[u8]> = id.into();
            token
                .handles
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(Arc::clone(&id), (priv_handle, pub_handle));
            Ok(BackendKey {
                public: key,
                meta: meta.clone(),
                locator: KeyLocator::Pkcs11 { id },
            })
        }
        Err(e) => {
            // Leave nothing half-made on the token.
            let _ = session.destroy_object(priv_handle);
            let _ = session.destroy_object(pub_handle);
            Err(e)
        }
    }
}

/// Refuses a token that did not honour the non-extractable template.
fn check_non_extractable(session: &Session, key: ObjectHandle, name: &str) -> Result<(), Error> {
    let attrs = session
        .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable])
        .map_err(|e| classify(name, e))?;
    let sensitive = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Sensitive(true)));
    let extractable = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Extractable(true)));
    if sensitive && !extractable {
        Ok(())
    } else {
        Err(Error::BadToken {
            backend: name.to_owned(),
            what: "token did not keep the new key sensitive and non-extractable".to_owned(),
        })
    }
}

/// Every sigil key on the token; also records their handles for this incarnation.
/// Finds sigil's keys on the token (by label) and the adopted ones (by `CKA_ID`), and records
/// their handles for this incarnation of the token.
fn scan(
    session: &Session,
    token: &Token,
    name: &str,
    existing: &[(Vec<u8>, KeyMeta)],
) -> Result<Vec<BackendKey>, Error> {
    let privates = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Token(true),
        ])
        .map_err(|e| classify(name, e))?;
    let mut keys = Vec::new();
    let mut found = Handles::new();
    for private in privates {
        let attrs = session
            .get_attributes(
                private,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysAuthenticate,
                ],
            )
            .map_err(|e| classify(name, e))?;
        let mut label = None;
        let mut id = None;
        let (mut sensitive, mut extractable, mut always_auth) = (false, true, false);
        for a in attrs {
            match a {
                Attribute::Label(l) => label = Some(l),
                Attribute::Id(i) => id = Some(i),
                Attribute::Sensitive(b) => sensitive = b,
                Attribute::Extractable(b) => extractable = b,
                Attribute::AlwaysAuthenticate(b) => always_auth = b,
                _ => {}
            }
        }
        let Some(id) = id else { continue };
        let meta = match label.as_deref().and_then(parse_label) {
            Some(meta) => meta,
            None => {
                let Some((_, meta)) = existing.iter().find(|(e, _)| *e == id) else {
                    continue; // neither ours nor adopted
                };
                let hex_id = hex::encode(&id);
                if !sensitive || extractable {
                    tracing::warn!(backend = name, id = %hex_id, "existing key can leave the token (not sensitive, or extractable); not used");
                    continue;
                }
                if always_auth {
                    tracing::warn!(backend = name, id = %hex_id, "existing key wants the PIN for every signature (CKA_ALWAYS_AUTHENTICATE), which this backend does not give; not used (on a YubiKey: another slot than 9c, or type = \"yubikey\")");
                    continue;
                }
                meta.clone()
            }
        };
        let publics = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(id.clone()),
            ])
            .map_err(|e| classify(name, e))?;
        let Some(&public) = publics.first() else {
            tracing::warn!(backend = name, role = %meta.role, "sigil private key without its public half; skipped");
            continue;
        };
        let id: Arc<[u8]> = id.into();
        keys.push(BackendKey {
            public: read_public(session, public, name)?,
            meta,
            locator: KeyLocator::Pkcs11 {
                id: Arc::clone(&id),
            },
        });
        found.insert(id, (private, public));
    }
    for (id, meta) in existing {
        if !found.contains_key(id.as_slice()) {
            tracing::warn!(backend = name, id = %hex::encode(id), role = %meta.role, "existing key not on the token (or not usable)");
        }
    }
    *token.handles.write().unwrap_or_else(|p| p.into_inner()) = found;
    Ok(keys)
}

/// `sigil:<role>:<gun>` or `sigil-notary:<role>:<gun>`; roles never contain `:`, GUNs may
/// (registry ports).
pub(super) fn parse_label(label: &[u8]) -> Option<KeyMeta> {
    let label = std::str::from_utf8(label).ok()?;
    let (owner, rest) = if let Some(rest) = label.strip_prefix(LABEL_PREFIX) {
        (KeyOwner::Sigil, rest)
    } else {
        (
            KeyOwner::NotarySigner,
            label.strip_prefix(NOTARY_LABEL_PREFIX)?,
        )
    };
    let (role, gun) = rest.split_once(':')?;
    Some(KeyMeta {
        role: role.to_owned(),
        gun: gun.to_owned(),
        owner,
    })
}

fn read_public(session: &Session, public: ObjectHandle, name: &str) -> Result<PublicKey, Error> {
    let bad = |what: String| Error::BadToken {
        backend: name.to_owned(),
        what,
    };
    let attrs = session
        .get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ],
        )
        .map_err(|e| classify(name, e))?;
    let (mut key_type, mut params, mut point, mut modulus, mut exponent) =
        (None, None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    let parsed = match (key_type, params.as_deref(), point.as_deref()) {
        (Some(KeyType::EC), Some(P256_PARAMS), Some(point)) => {
            PublicKey::from_p256_sec1(unwrap_octet_string(point))
        }
        (Some(KeyType::EC_EDWARDS), _, Some(point)) => {
            PublicKey::from_ed25519_bytes(unwrap_octet_string(point))
        }
        (Some(KeyType::RSA), _, _) => match (modulus, exponent) {
            (Some(n), Some(e)) => PublicKey::from_rsa_components(&n, &e),
            _ => return Err(bad("RSA public key without modulus or exponent".into())),
        },
        (t, _, _) => return Err(bad(format!("unsupported public key type {t:?}"))),
    };
    parsed.map_err(|e| bad(e.to_string()))
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point in the standard, raw in some modules.
fn unwrap_octet_string(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => rest,
        _ => bytes,
    }
}

/// Folds a sign time (ns) into a moving average (`u64::MAX`: no sample yet). The new sample
/// weighs 1/8, so one slow call is enough to move a fast average past [`INLINE_BELOW`].
fn fold_average(average: u64, took: u64) -> u64 {
    if average == u64::MAX {
        took
    } else {
        average - average / 8 + took / 8
    }
}

/// Folds a count (other signatures in flight; 1 for "the I/O thread was saturated") into a
/// moving average in 1/256ths; new samples weigh 1/8.
fn fold_concurrency(average: u64, others: usize) -> u64 {
    let sample = u64::try_from(others).unwrap_or(u64::MAX / 512).min(1 << 16) * 256;
    average - average / 8 + sample / 8
}

/// Whether an average sign time (ns) is short enough to sign on the caller's thread; an
/// unmeasured token is not.
fn fast_enough(average: u64) -> bool {
    u128::from(average) < INLINE_BELOW.as_nanos()
}

/// Index of an algorithm in [`Shared::sign_nanos`].
fn algorithm_index(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::EcdsaP256 => 0,
        Algorithm::Ed25519 => 1,
        Algorithm::Rsa3072Pss => 2,
    }
}

/// Errors after which the session is not worth keeping: the next job opens a new one.
fn breaks_session(e: &Error) -> bool {
    match e {
        Error::TokenNotPresent { .. } | Error::PinIncorrect { .. } | Error::PinLocked { .. } => {
            true
        }
        Error::Pkcs11 {
            source: CkError::Pkcs11(rv, _),
            ..
        } => matches!(
            rv,
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
        ),
        _ => false,
    }
}

/// Maps a cryptoki error to a backend error the service can act on.
fn classify(backend: &str, e: CkError) -> Error {
    let backend = backend.to_owned();
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => Error::PinIncorrect { backend },
        CkError::Pkcs11(RvError::PinLocked, _) => Error::PinLocked { backend },
        CkError::Pkcs11(
            RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SlotIdInvalid
            | RvError::DeviceError,
            _,
        ) => Error::TokenNotPresent { backend },
        CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _) => {
            Error::KeyNotFound
        }
        source => Error::Pkcs11 { backend, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_averaged_so_one_overlap_does_not_end_inline_signing() {
        // One caller at a time: nothing else in flight, the average stays at 0.
        let alone = (0..50).fold(0, |avg, _| fold_concurrency(avg, 0));
        assert!(alone < INLINE_CONCURRENCY);
        // A single overlap moves it by 1/8 only.
        assert!(fold_concurrency(alone, 1) < INLINE_CONCURRENCY);
        // Four callers: usually 1-3 others in flight, well past the limit, and it stays there.
        let busy = (0..50).fold(alone, |avg, i| fold_concurrency(avg, 1 + i % 3));
        assert!(busy >= INLINE_CONCURRENCY);
        assert!(
            fold_concurrency(busy, 0) >= INLINE_CONCURRENCY,
            "no flapping on one gap"
        );
        // Back to one caller: inline again after a few signatures.
        let quiet = (0..20).fold(busy, |avg, _| fold_concurrency(avg, 0));
        assert!(quiet < INLINE_CONCURRENCY);
        // A huge count cannot overflow.
        assert!(fold_concurrency(u64::MAX / 2, usize::MAX) > 0);
    }

    #[test]
    fn one_saturated_signature_hands_the_next_ones_to_the_workers() {
        // One caller: the I/O thread goes idle before every signature.
        let idle = (0..50).fold(0, |avg, _| fold_concurrency(avg, 0));
        assert!(idle < INLINE_SATURATION);
        // The first signature that finds requests waiting stops inline signing...
        let hit = fold_concurrency(idle, 1);
        assert!(hit >= INLINE_SATURATION);
        // ...for a while, not just for the next one.
        let after = |n| (0..n).fold(hit, |avg, _| fold_concurrency(avg, 0));
        assert!(after(8) >= INLINE_SATURATION);
        assert!(after(30) < INLINE_SATURATION, "idle again: inline again");
        // Under load half the signatures still follow an idle moment: that is saturated.
        let load = (0..100).fold(idle, |avg, i| fold_concurrency(avg, i % 2));
        assert!(load >= INLINE_SATURATION);
    }

    #[test]
    fn only_a_measured_fast_token_signs_inline() {
        assert!(!fast_enough(u64::MAX), "unmeasured: through the workers");
        assert!(fast_enough(45_000), "SoftHSM-like 45 µs: inline");
        assert!(!fast_enough(2_000_000), "a 2 ms token: through the workers");
    }

    #[test]
    fn the_first_sample_sets_the_average_and_one_slow_call_ends_inline_signing() {
        let fast = fold_average(u64::MAX, 45_000);
        assert_eq!(fast, 45_000);
        let steady = (0..100).fold(fast, |avg, _| fold_average(avg, 50_000));
        assert!(fast_enough(steady) && (45_000..=50_000).contains(&steady));
        // A token that became slow (10 ms) moves the average past the limit at once.
        assert!(!fast_enough(fold_average(steady, 10_000_000)));
        // And a long-fast token only comes back once its calls are fast again.
        let recovering = (0..40).fold(10_000_000, |avg, _| fold_average(avg, 45_000));
        assert!(fast_enough(recovering));
    }

    #[test]
    fn labels_round_trip_role_gun_and_owner() {
        let meta = parse_label(b"sigil:targets/releases:localhost:5000/app").expect("sigil");
        assert_eq!(meta.role, "targets/releases");
        assert_eq!(meta.gun, "localhost:5000/app");
        assert_eq!(meta.owner, KeyOwner::Sigil);
        let meta = parse_label(b"sigil-notary:timestamp:example.com/app").expect("notary");
        assert_eq!(meta.owner, KeyOwner::NotarySigner);
        assert_eq!(meta.role, "timestamp");
        assert!(parse_label(b"p256-sign").is_none());
        assert!(parse_label(b"sigil:rootonly").is_none());
    }
}
