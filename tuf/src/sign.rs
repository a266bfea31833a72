//! Signing goes through the async [`Signer`] trait so this crate never holds a private key: the
//! CLI implements it with a client of sigild (keys on tokens), tests with in-memory keys.
//!
//! A signer returns signature bytes in the encoding of the Notary method for its key type:
//! `ecdsa` → raw `r || s` (64 bytes for P-256) over SHA-256(message); `rsapss` → RSASSA-PSS with
//! SHA-256, MGF1-SHA-256 and a 32-byte salt; `eddsa` → Ed25519 over the message. sigild's `RAW`
//! encoding gives exactly this. The TUF 1.0 dialect converts raw ECDSA to the DER it writes
//! ([`crate::schema::Dialect::signature`]), so one signer serves both dialects.

use async_trait::async_trait;

use crate::error::{Error, Result, SignError};
use crate::key::PublicKey;
use crate::schema::dialect::{Dialect, MetadataKey};
use crate::schema::{Notary, RoleBody, Signature, Signed, TufKey};

/// Something that can sign with one private key it never reveals.
#[async_trait]
pub trait Signer: Send + Sync {
    /// The public half of the key.
    fn public_key(&self) -> &PublicKey;

    /// Signs `message` (the whole message: hashing, where the method needs it, is the
    /// signer's job) and returns the signature in the Notary encoding described above.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;

    /// The daemon's key id (hex SHA-256 of the DER SPKI); TUF ids come from [`TufKey`].
    fn key_id(&self) -> String {
        self.public_key().key_id()
    }
}

/// A metadata key (with its TUF id) paired with the signer that holds it.
pub(crate) struct Matched<'a, K = TufKey> {
    pub(crate) key_id: String,
    pub(crate) key: &'a K,
    pub(crate) public: PublicKey,
    pub(crate) signer: &'a dyn Signer,
}

/// Pairs each key with the first signer whose public key it is. Keys that cannot be decoded or
/// have no signer are left out.
pub(crate) fn match_signers<'a, K: MetadataKey>(
    keys: &[(&str, &'a K)],
    signers: &[&'a dyn Signer],
) -> Vec<Matched<'a, K>> {
    let mut out = Vec::new();
    for (id, key) in keys {
        let Ok(public) = key.public_key() else {
            continue;
        };
        if let Some(signer) = signers.iter().find(|s| *s.public_key() == public) {
            out.push(Matched::<'a, K> {
                key_id: (*id).to_owned(),
                key,
                public,
                signer: *signer,
            });
        }
    }
    out
}

/// Number of distinct public keys among matched keys (an x509 key and the bare key inside it
/// are one key).
pub(crate) fn distinct_keys<K>(matched: &[Matched<'_, K>]) -> usize {
    let mut seen: Vec<&PublicKey> = Vec::new();
    for m in matched {
        if !seen.contains(&&m.public) {
            seen.push(&m.public);
        }
    }
    seen.len()
}

/// Signs `message` with every matched key and checks each signature before keeping it, so a
/// misbehaving signer is caught here rather than by the server.
pub(crate) async fn sign_message(
    role: &str,
    message: &[u8],
    matched: &[Matched<'_>],
) -> Result<Vec<Signature>> {
    sign_message_in(Notary, role, message, matched).await
}

/// [`sign_message`] in dialect `D`: signature entries as `D` writes them.
pub(crate) async fn sign_message_in<D: Dialect>(
    _: D,
    role: &str,
    message: &[u8],
    matched: &[Matched<'_, D::Key>],
) -> Result<Vec<D::Signature>> {
    let mut out = Vec::with_capacity(matched.len());
    for m in matched {
        let sig = m.signer.sign(message).await.map_err(|source| Error::Sign {
            role: role.to_owned(),
            key_id: m.key_id.clone(),
            source,
        })?;
        let signature = D::signature(&m.key_id, m.key, sig)?;
        D::verify(m.key, &signature, message).map_err(|e| Error::Sign {
            role: role.to_owned(),
            key_id: m.key_id.clone(),
            source: format!("the signer's signature does not verify: {e}").into(),
        })?;
        out.push(signature);
    }
    Ok(out)
}

/// Signs a role body with every available key among `keys`, requiring at least `threshold`
/// distinct keys (checked before anything is signed, so no token is touched in vain). The
/// signatures are written in the body's dialect.
pub async fn sign_role<T: RoleBody>(
    role: &str,
    body: T,
    keys: &[(&str, &<T::Dialect as Dialect>::Key)],
    threshold: u64,
    signers: &[&dyn Signer],
) -> Result<Signed<T>> {
    let matched = match_signers(keys, signers);
    let available = distinct_keys(&matched);
    if (available as u64) < threshold {
        return Err(Error::MissingSigners {
            role: role.to_owned(),
            available,
            threshold,
        });
    }
    let mut signed = Signed {
        signed: body,
        signatures: Vec::new(),
    };
    let message = signed.canonical_signed()?;
    signed.signatures = sign_message_in(T::Dialect::default(), role, &message, &matched).await?;
    Ok(signed)
}

/// Software keys and a minimal executor, for tests (here and in the CLI and e2e crates).
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use async_trait::async_trait;
    use p256::ecdsa::signature::RandomizedSigner as _;
    use p256::ecdsa::signature::SignatureEncoding as _;
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    use rand_core::OsRng;
    use sha2::{Digest as _, Sha256};

    use super::Signer;
    use crate::error::SignError;
    use crate::key::PublicKey;

    enum Secret {
        P256(p256::ecdsa::SigningKey),
        Ed25519(ed25519_dalek::SigningKey),
        Rsa(rsa::pss::BlindedSigningKey<Sha256>),
    }

    /// A private key in memory, signing as a token would.
    pub struct MemorySigner {
        secret: Secret,
        public: PublicKey,
    }

    impl MemorySigner {
        /// A fresh P-256 key.
        pub fn p256() -> Self {
            let sk = p256::ecdsa::SigningKey::random(&mut OsRng);
            let public = PublicKey::EcdsaP256(*sk.verifying_key());
            Self {
                secret: Secret::P256(sk),
                public,
            }
        }

        /// A fresh Ed25519 key.
        pub fn ed25519() -> Self {
            let mut seed = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut OsRng, &mut seed);
            let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
            let public = PublicKey::Ed25519(sk.verifying_key());
            Self {
                secret: Secret::Ed25519(sk),
                public,
            }
        }

        /// A fresh RSA key of `bits` (2048 keeps tests fast; Notary's minimum).
        pub fn rsa(bits: usize) -> Self {
            #[allow(clippy::expect_used)]
            let sk = rsa::RsaPrivateKey::new(&mut OsRng, bits).expect("RSA key generation");
            let public = PublicKey::Rsa(sk.to_public_key());
            Self {
                secret: Secret::Rsa(rsa::pss::BlindedSigningKey::<Sha256>::new(sk)),
                public,
            }
        }
    }

    #[async_trait]
    impl Signer for MemorySigner {
        fn public_key(&self) -> &PublicKey {
            &self.public
        }

        async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
            Ok(match &self.secret {
                Secret::P256(sk) => {
                    let digest = Sha256::digest(message);
                    let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest)?;
                    sig.to_bytes().to_vec()
                }
                Secret::Ed25519(sk) => {
                    use ed25519_dalek::Signer as _;
                    sk.sign(message).to_bytes().to_vec()
                }
                Secret::Rsa(sk) => sk.sign_with_rng(&mut OsRng, message).to_vec(),
            })
        }
    }

    /// A signer that always fails, like a token that was unplugged.
    pub struct UnpluggedSigner(pub PublicKey);

    #[async_trait]
    impl Signer for UnpluggedSigner {
        fn public_key(&self) -> &PublicKey {
            &self.0
        }

        async fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, SignError> {
            Err("token not present".into())
        }
    }

    struct ThreadWaker(std::thread::Thread);

    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Runs a future to completion on this thread (enough for in-memory signers and tests).
    pub fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(out) => return out,
                Poll::Pending => std::thread::park(),
            }
        }
    }
}
