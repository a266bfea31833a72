//! Signing: the Unix-socket Sign call and the core every front door shares (hash as the
//! algorithm needs, check `[[require]]`, sign on the token, encode).

use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use sigil_tuf::key::SignatureEncoding;

use super::audit_event::Scope;
use super::{Error, Payload, Signature, SigningService, facts};
use crate::audit::Who;
use crate::backend::{Algorithm, SignInput};
use crate::config::Op;
use crate::keyring::KeyEntry;
use crate::policy::Caller;

impl SigningService {
    /// Signs with a key, auditing the attempt whatever its outcome.
    pub async fn sign(
        &self,
        caller: &Caller,
        key_id: &str,
        payload: Option<Payload>,
        encoding: SignatureEncoding,
    ) -> Result<Signature, Error> {
        let mut scope = self.scope("sign", Who::Unix(caller)).asked_key(key_id);
        let result = self
            .sign_inner(caller, key_id, payload, encoding, &mut scope)
            .await;
        // The audit log is for administrators: it names the key whenever it exists.
        if scope.found().is_none()
            && let Some(key) = self.keyring.get(key_id)
        {
            scope.key(&key);
        }
        self.finish(&scope, result)
    }

    async fn sign_inner(
        &self,
        caller: &Caller,
        key_id: &str,
        payload: Option<Payload>,
        encoding: SignatureEncoding,
        scope: &mut Scope<'_>,
    ) -> Result<Signature, Error> {
        let payload = payload.ok_or_else(|| {
            Error::BadRequest("payload is required: set message or sha256_digest".into())
        })?;
        self.check_payload(&payload)?;
        let (key, ops) = self
            .authorise_any(caller, key_id, &[Op::Sign, Op::SignMetadata])
            .await?;
        let mut known = None;
        if !ops.contains(Op::Sign) {
            // Only sign-metadata: sigild reads what it signs (DESIGN §9).
            scope.key(&key);
            let Payload::Message(message) = &payload else {
                return Err(Error::PermissionDenied(
                    "sign-metadata: send the metadata's canonical bytes as message, not a digest"
                        .into(),
                ));
            };
            known = self.admit_metadata(&key, message, scope).await?;
        }
        self.sign_with(key, payload, known, encoding, scope).await
    }

    /// The sign-metadata checks ([`super::metadata`]), recording what the metadata says in the
    /// audit scope whatever the verdict. Returns the message's SHA-256 if the checks computed
    /// it, for [`Self::sign_with`].
    pub(super) async fn admit_metadata(
        &self,
        key: &KeyEntry,
        message: &[u8],
        scope: &mut Scope<'_>,
    ) -> Result<Option<[u8; 32]>, Error> {
        let mut seen = None;
        let verdict = self.guard.admit(key, message, &mut seen).await;
        if let Some(facts) = seen {
            scope.metadata(facts);
        }
        verdict
    }

    /// Size and shape checks that need no key: they run before any lookup.
    pub(super) fn check_payload(&self, payload: &Payload) -> Result<(), Error> {
        super::validate::check_payload(payload, self.max_message_bytes)
    }

    /// The signing core shared by every front door: hash as the algorithm needs, sign on the
    /// token, encode. `known_sha256` is the SHA-256 of a `Message` payload when the caller has
    /// already computed it from those very bytes (the sign-metadata checks do). The scope
    /// receives the key and the digest the audit line records.
    pub(super) async fn sign_with(
        &self,
        key: Arc<KeyEntry>,
        payload: Payload,
        known_sha256: Option<[u8; 32]>,
        encoding: SignatureEncoding,
        scope: &mut Scope<'_>,
    ) -> Result<Signature, Error> {
        scope.key(&key);
        let algorithm = key.algorithm();
        let sha256 = |m: &[u8]| known_sha256.unwrap_or_else(|| Sha256::digest(m).into());
        let (input, digest) = match (algorithm.signs_digest(), payload) {
            (true, Payload::Message(m)) => {
                let d = sha256(&m);
                (SignInput::Digest(d), d)
            }
            (true, Payload::Digest(d)) => {
                let d: [u8; 32] = d.as_slice().try_into().map_err(|_| {
                    Error::BadRequest("sha256_digest must be exactly 32 bytes".into())
                })?;
                (SignInput::Digest(d), d)
            }
            (false, Payload::Message(m)) => {
                let d = sha256(&m);
                (SignInput::Message(m), d)
            }
            (false, Payload::Digest(_)) => {
                return Err(Error::BadRequest(format!(
                    "{algorithm} keys sign whole messages: send message, not sha256_digest"
                )));
            }
        };
        scope.digest(hex::encode(digest));
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
        // From now on the key has signed: the notary-signer endpoint never hands it out again
        // as a new key.
        key.mark_used();
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
}
