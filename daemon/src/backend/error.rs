//! backend::Error: what went wrong at a token, with the failing PKCS#11 function kept next to
//! its return value. Never carries a PIN.

use std::path::PathBuf;

/// A token-level failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot load PKCS#11 module {module}: {source}")]
    ModuleLoad {
        /// The module path.
        module: PathBuf,
        /// The loader's error.
        source: cryptoki::error::Error,
    },
    /// No slot holds a token matching the configured selector.
    #[error("backend {backend:?}: no token with {selector} (tokens present: {present})")]
    TokenNotFound {
        /// Backend name.
        backend: String,
        /// The configured selector.
        selector: String,
        /// Labels of the tokens that were found.
        present: String,
    },
    /// The token is gone (unplugged, removed, or the module lost it).
    #[error("backend {backend:?}: token not present")]
    TokenNotPresent {
        /// Backend name.
        backend: String,
    },
    /// The PIN was refused. The daemon never retries it.
    #[error("backend {backend:?}: PIN incorrect (not retried; fix the PIN file and restart)")]
    PinIncorrect {
        /// Backend name.
        backend: String,
    },
    /// The token has locked the PIN.
    #[error("backend {backend:?}: PIN locked on the token (unlock it with the SO PIN)")]
    PinLocked {
        /// Backend name.
        backend: String,
    },
    /// Only one PIN try remains, so the daemon refuses to spend it.
    #[error(
        "backend {backend:?}: the token allows only one more PIN try; refusing to risk locking it (verify the right PIN by hand, which resets the counter, e.g. `yubico-piv-tool -a verify-pin` for a YubiKey, or unblock the PIN with the PUK / SO PIN)"
    )]
    PinFinalTry {
        /// Backend name.
        backend: String,
    },
    /// The key is no longer on the token.
    #[error("key not on the token")]
    KeyNotFound,
    /// The module does not offer what was asked for.
    #[error("backend {backend:?} does not support {what}")]
    Unsupported {
        /// Backend name.
        backend: String,
        /// What is missing, e.g. the algorithm.
        what: String,
    },
    /// Any other PKCS#11 failure, with the function that failed.
    #[error("backend {backend:?}: {source}")]
    Pkcs11 {
        /// Backend name.
        backend: String,
        /// cryptoki's error, which names the function and return value.
        source: cryptoki::error::Error,
    },
    /// The token returned something sigil cannot use (e.g. a malformed public key).
    #[error("backend {backend:?}: {what}")]
    BadToken {
        /// Backend name.
        backend: String,
        /// What was wrong.
        what: String,
    },
    /// The PIN was refused by a device that reports the tries left. Never retried.
    #[error(
        "backend {backend:?}: PIN incorrect, {retries} tries left (not retried; fix the PIN file and restart)"
    )]
    PinWrong {
        /// Backend name.
        backend: String,
        /// PIN tries left on the device.
        retries: u8,
    },
    /// A signature needing a touch was not confirmed in time.
    #[error(
        "backend {backend:?}: YubiKey {serial} slot {slot:02x}: touch not given in time, nothing was signed (touch the key while it blinks)"
    )]
    TouchTimeout {
        /// Backend name.
        backend: String,
        /// Device serial.
        serial: u32,
        /// PIV slot.
        slot: u8,
    },
    /// Any other YubiKey PIV failure, with the operation that failed.
    #[error("backend {backend:?}: YubiKey {op}: {source}")]
    Piv {
        /// Backend name.
        backend: String,
        /// What the backend was doing.
        op: &'static str,
        /// The yubikey crate's error.
        source: ::yubikey::Error,
    },
    /// The token's PIN has not been supplied yet (no `pin_file`).
    #[error("token {backend} is locked: run `sigil token unlock {backend}`")]
    Locked {
        /// Backend name.
        backend: String,
    },
    /// A PIN supplied through `sigil token unlock` was refused. Never retried.
    #[error(
        "backend {backend:?}: PIN incorrect, {retries} tries left (not retried; run `sigil token unlock {backend}` again with the right PIN)"
    )]
    UnlockPinWrong {
        /// Backend name.
        backend: String,
        /// PIN tries left on the device.
        retries: u8,
    },
    /// The token takes its PIN from `pin_file` only.
    #[error(
        "backend {backend:?} cannot be unlocked at run time (only type = \"yubikey\" backends can; this one reads pin_file)"
    )]
    NotUnlockable {
        /// Backend name.
        backend: String,
    },
    /// A supplied PIN is not a PIN the device can take (nothing was sent to it).
    #[error("backend {backend:?}: {what}")]
    BadPinFormat {
        /// Backend name.
        backend: String,
        /// What is wrong with it (never the PIN itself).
        what: String,
    },
    /// The device refused the configured management key.
    #[error(
        "backend {backend:?}: the YubiKey refused the {which} management key (check management_key / management_key_file)"
    )]
    MgmKeyRefused {
        /// Backend name.
        backend: String,
        /// Which key was tried: "default", "configured", "PIN-protected".
        which: &'static str,
    },
    /// The device still takes the factory-default management key, with which any local user
    /// could relabel its keys or import keys of their own.
    #[error(
        "backend {backend:?}: YubiKey {serial} still has the factory-default management key, with which any local user can relabel its keys or import keys of their own; set a new one (ykman piv access change-management-key --generate --protect, then management_key = \"pin-protected\"; or yubico-piv-tool -a set-mgm-key -n KEY and management_key_file), or set allow_default_management_key = true for a test device"
    )]
    DefaultManagementKey {
        /// Backend name.
        backend: String,
        /// Device serial.
        serial: u32,
    },
    /// The slot bindings in the state directory cannot be read or written.
    #[error("backend {backend:?}: YubiKey slot bindings: {what}")]
    Bindings {
        /// Backend name.
        backend: String,
        /// What went wrong (path and cause).
        what: String,
    },
    /// The backend cannot attest keys (PKCS#11 tokens have no attestation).
    #[error(
        "backend {backend:?} cannot attest keys: attestation needs a YubiKey backend (type = \"yubikey\")"
    )]
    NoAttestation {
        /// Backend name.
        backend: String,
    },
    /// The backend's worker threads have stopped.
    #[error("backend {backend:?} is shutting down")]
    Stopped {
        /// Backend name.
        backend: String,
    },
    /// The backend's job queue is full; nothing was queued.
    #[error(
        "backend {backend:?} is busy: {queued} jobs already wait for the token (max_queued_jobs); retry later"
    )]
    Busy {
        /// Backend name.
        backend: String,
        /// The queue's capacity.
        queued: usize,
    },
}
