//! PKCS#11 backend through cryptoki. A cryptoki `Session` is `Send` but not `Sync`, so each
//! worker thread owns one session, opened once and logged in once (login state is per
//! application), and takes jobs from a shared queue; callers await a oneshot reply.
//!
//! A hand-off to a worker costs two thread wake-ups (tens of µs each on a VM), more than a
//! fast token takes to sign (SoftHSM: ~45 µs). So while signatures come one at a time, a sign
//! whose token call has been measured to be short runs on the caller's thread (the daemon's
//! one I/O thread, [`crate::runtime`]), with a session from a small pool
//! ([`Shared::sign_inline`]). Under load the workers sign instead, so the I/O thread reads and
//! answers while the token signs ([`inline_rule`] decides); slow tokens (network HSMs, RSA on a
//! smart card) always go through the workers, so the I/O thread is never blocked for long.
//!
//! Tokens disappear (unplugged, or a module that lost its store). The health probe then resets
//! the module (`C_Finalize`, `C_Initialize`, login, re-scan) while no job runs, so the daemon
//! recovers without a restart. Object handles do not survive a reset, so keys are located by
//! their `CKA_ID` and resolved to handles of the current incarnation of the token.
//!
//! Keys carry `CKA_LABEL = "sigil:<role>:<gun>"` (`sigil-notary:` for keys made through the
//! notary-signer endpoint) and a random `CKA_ID` shared by both halves, which is all the key
//! ring needs to be rebuilt from the token at start-up.

mod decode;
mod inline_rule;
mod scan;
mod session;
mod template;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::workers::{Reply, Workers};
use super::{Algorithm, BackendKey, BoxFuture, Error, KeyLocator, KeyMeta, KeyOwner, SignInput};
use crate::config::{Pkcs11Config, TokenSelector};
use crate::secret::Pin;
use inline_rule::{InFlight, InlineRule};
pub(crate) use scan::parse_label;
use worker::worker;

/// DER OID of prime256v1 (NIST P-256), as `CKA_EC_PARAMS` wants it.
pub(super) const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER OID of id-Ed25519 (1.3.101.112).
pub(super) const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// Ed25519 named by curve name, which some modules (and pkcs11-tool) use instead of the OID.
pub(super) const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
/// Label prefix that marks a key as sigil's.
pub(crate) const LABEL_PREFIX: &str = "sigil:";
/// Label prefix of keys created through the notary-signer endpoint.
pub(crate) const NOTARY_LABEL_PREFIX: &str = "sigil-notary:";
/// Modulus size of generated RSA keys.
pub(super) const RSA_BITS: u64 = 3072;
/// Token calls measured to take less than this on average run on the caller's thread: about
/// what a hand-off to a worker and back costs, and short enough not to stall the runtime.
pub(super) const INLINE_BELOW: Duration = Duration::from_micros(250);

pub(super) enum Job {
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
        /// Counted out before the reply is sent, or when the job is dropped unrun.
        in_flight: InFlight,
    },
}

/// Private and public object handles of a key, valid for one incarnation of the token.
pub(super) type Handles = HashMap<Arc<[u8]>, (ObjectHandle, ObjectHandle)>;

/// One incarnation of the token as the module sees it; a reset replaces it.
pub(super) struct Token {
    /// Bumped by every reset; sessions from older generations are dead.
    pub(super) generation: u64,
    /// The token's slot, `None` while it is missing.
    pub(super) slot: Option<Slot>,
    /// `CKA_ID` → handles. Jobs add and remove keys while holding the token for reading.
    pub(super) handles: RwLock<Handles>,
    /// An idle session held for the incarnation's lifetime: modules (SoftHSM among them)
    /// invalidate object handles when a slot's last session closes.
    pub(super) keeper: Option<std::sync::Mutex<Session>>,
}

/// State the workers share: the module, how to find the token again, and the PIN for the
/// login after a reset.
pub(super) struct Shared {
    pub(super) name: String,
    pub(super) ctx: Pkcs11,
    pub(super) selector: TokenSelector,
    /// Replaced when SIGHUP reads the PIN file again.
    pub(super) pin: Mutex<Pin>,
    pub(super) healthy: AtomicBool,
    /// Set once the token refused the PIN: it is never offered again.
    pub(super) pin_refused: AtomicBool,
    /// Jobs hold it for reading; a reset holds it for writing, so it never races a job.
    pub(super) token: RwLock<Token>,
    /// Signatures in flight, and whether a new one may run on the caller's thread.
    inline_rule: InlineRule,
    /// Sessions for signing on the caller's thread; at most `inline_max` exist.
    pub(super) inline: Mutex<InlinePool>,
    pub(super) inline_max: usize,
    /// Moving average of the token's sign time per algorithm, in ns (`u64::MAX`: unknown).
    pub(super) sign_nanos: [AtomicU64; 3],
    /// Keys made by other tools, adopted by `CKA_ID` (config `existing_keys`).
    pub(super) existing: Vec<(Vec<u8>, KeyMeta)>,
}

/// Idle sessions for inline signing, and how many exist (idle or in use).
#[derive(Default)]
pub(super) struct InlinePool {
    pub(super) idle: Vec<(u64, Session)>,
    pub(super) open: usize,
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
            inline_rule: InlineRule::default(),
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
        let (in_flight, inline) = shared.inline_rule.enter();
        if inline && let Some(result) = shared.sign_inline(&id, algorithm, &input) {
            drop(in_flight);
            return Box::pin(std::future::ready(result));
        }
        self.workers.submit(|reply| Job::Sign {
            id,
            algorithm,
            input,
            reply,
            in_flight,
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

/// Errors after which the session is not worth keeping: the next job opens a new one.
pub(super) fn breaks_session(e: &Error) -> bool {
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
pub(super) fn classify(backend: &str, e: CkError) -> Error {
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
