//! Token backends behind one trait, speaking domain types only. The service above never sees
//! PKCS#11 or PIV details; a backend never sees callers or policy.

pub mod attestation;
pub mod error;
pub mod pkcs11;
mod workers;
pub mod yubikey;

use std::future::Future;
use std::pin::Pin;

pub use error::Error;
pub use sigil_tuf::key::{Algorithm, PublicKey};

/// A boxed future, so that backends can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a key is for, stored on the token with the key so the key ring can be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    /// TUF role, e.g. `root`, `targets`, `targets/releases`.
    pub role: String,
    /// Collection name; empty when the key is not bound to one.
    pub gun: String,
    /// Which front door created the key, and so which one may use it.
    pub owner: KeyOwner,
}

/// The interface a key was created through. Keys made for notary-server (timestamp and
/// snapshot) live in their own namespace: the notary-signer endpoint sees only those, so a
/// compromised notary-server can never reach root, targets or delegation keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner {
    /// Created through the sigil API.
    Sigil,
    /// Created by notary-server through the notary-signer compatible endpoint.
    NotarySigner,
}

/// Where a backend finds a key's private half again. Opaque to everything but the backend,
/// and stable across restarts and token resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocator {
    /// A PKCS#11 key pair, found by the `CKA_ID` both halves share.
    Pkcs11 {
        /// The `CKA_ID`.
        id: std::sync::Arc<[u8]>,
    },
    /// A YubiKey PIV key, found by its slot (`0x9c`, or a retired slot `0x82`..=`0x95`).
    Yubikey {
        /// The PIV slot (key reference).
        slot: u8,
        /// SHA-256 of the key's DER SubjectPublicKeyInfo: a request queued for this key never
        /// uses another key that took its slot meanwhile.
        key: [u8; 32],
    },
}

/// A key as a backend reports it.
#[derive(Debug, Clone)]
pub struct BackendKey {
    /// Its public half.
    pub public: PublicKey,
    /// Its purpose.
    pub meta: KeyMeta,
    /// How the backend finds it.
    pub locator: KeyLocator,
}

/// What a device knows about a key beyond its public half (YubiKey PIV keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKey {
    /// Device serial number.
    pub serial: u32,
    /// PIV slot.
    pub slot: u8,
    /// PIN and touch policies from the key's attestation; `None` when it could not be read.
    pub policies: Option<attestation::Policies>,
    /// Whether the attestation chain verified against the configured roots (then `policies`
    /// are attested, not just reported).
    pub attested: bool,
}

/// A key's attestation, fetched from the device and checked just now.
#[derive(Debug, Clone)]
pub struct AttestationReport {
    /// DER certificates, leaf first: the slot's attestation, then the device's F9 certificate.
    pub chain: Vec<Vec<u8>>,
    /// The policies the attestation states.
    pub policies: attestation::Policies,
    /// `Ok` when the chain verified against the configured roots, else why not.
    pub verified: Result<(), String>,
    /// Device serial number.
    pub serial: u32,
}

/// What a backend will make of a new key, known before generating it.
#[derive(Debug, Clone)]
pub struct GenerationPlan {
    /// `Ok` when the new key's attestation can be verified, else why not.
    pub attestable: Result<(), String>,
    /// The touch policy the key will get; `None` when the token has no touch policy.
    pub touch: Option<attestation::TouchPolicy>,
}

/// What to sign: a SHA-256 digest for ECDSA and RSA-PSS, the message itself for Ed25519.
#[derive(Debug, Clone)]
pub enum SignInput {
    /// A SHA-256 digest.
    Digest([u8; 32]),
    /// A whole message.
    Message(Vec<u8>),
}

/// A token that holds non-extractable keys and signs with them.
pub trait Backend: Send + Sync {
    /// The configured backend name.
    fn name(&self) -> &str;

    /// Whether the token answered its last call; false after a removal or a broken session.
    fn healthy(&self) -> bool;

    /// Asks the token whether it is there and usable (a cheap call), updating `healthy`.
    fn probe(&self) -> BoxFuture<'_, bool>;

    /// Every sigil key on the token, read at start-up to build the key ring.
    fn scan(&self) -> BoxFuture<'_, Result<Vec<BackendKey>, Error>>;

    /// Generates a key pair on the token: sensitive, never extractable.
    fn generate(
        &self,
        algorithm: Algorithm,
        meta: KeyMeta,
    ) -> BoxFuture<'_, Result<BackendKey, Error>>;

    /// Destroys both halves of a key.
    fn delete(&self, locator: KeyLocator) -> BoxFuture<'_, Result<(), Error>>;

    /// Signs with a key. ECDSA signatures come back raw (`r || s`).
    fn sign(
        &self,
        locator: KeyLocator,
        algorithm: Algorithm,
        input: SignInput,
    ) -> BoxFuture<'_, Result<Vec<u8>, Error>>;

    /// SIGHUP: reopen the token — fresh module state and login, with `pin` when its PIN file
    /// was read again — and list its keys anew. The default only lists them, for backends that
    /// reopen their device on their own.
    fn reopen(
        &self,
        _pin: Option<crate::secret::Pin>,
    ) -> BoxFuture<'_, Result<Vec<BackendKey>, Error>> {
        self.scan()
    }

    /// What a key generated now for `role` would be like (attestation, touch).
    fn generation_plan(&self, _role: &str) -> GenerationPlan {
        GenerationPlan {
            attestable: Err(format!(
                "backend {:?} has no attestation (only type = \"yubikey\" backends do)",
                self.name()
            )),
            touch: None,
        }
    }

    /// What the device knows about a key (serial, slot, attested policies); `None` for tokens
    /// that report nothing beyond the key (PKCS#11).
    fn device_key(&self, _locator: &KeyLocator) -> Option<DeviceKey> {
        None
    }

    /// Verifies an operator-supplied PIN once and keeps it for later signatures; answers the
    /// PIN tries the device reported before the verification. Tokens that read their PIN from a file only refuse.
    fn unlock(&self, _pin: crate::secret::Pin) -> BoxFuture<'_, Result<u8, Error>> {
        let backend = self.name().to_owned();
        Box::pin(async move { Err(Error::NotUnlockable { backend }) })
    }

    /// Fetches and checks a key's attestation. Tokens without attestation refuse.
    fn attest(&self, _locator: KeyLocator) -> BoxFuture<'_, Result<AttestationReport, Error>> {
        let backend = self.name().to_owned();
        Box::pin(async move { Err(Error::NoAttestation { backend }) })
    }
}

impl KeyLocator {
    /// The kind of backend that made the locator: `pkcs11` or `yubikey`.
    pub fn backend_type(&self) -> &'static str {
        match self {
            Self::Pkcs11 { .. } => "pkcs11",
            Self::Yubikey { .. } => "yubikey",
        }
    }
}
