//! The notary-signer endpoint's keys: created per (GUN, role) for notary-server, visible only
//! to that endpoint.
//!
//! notary-server calls CreateKey whenever it has no timestamp or snapshot key for a GUN —
//! on every GET of a missing GUN's `timestamp.key` by anyone who can read the server. So a
//! key made for (GUN, role) that has not signed yet is handed out again rather than another
//! one made, creation is serialised, and what may be created is capped
//! (`[notary_signer] max_keys`, `max_keys_per_gun`, `max_new_keys_per_hour`): beyond a cap,
//! RESOURCE_EXHAUSTED, and the token is not touched.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sigil_tuf::key::SignatureEncoding;

use super::validate::{check_gun, shown};
use super::{Error, GenerateRequest, Payload, Signature, SigningService};
use crate::audit::Who;
use crate::backend::KeyOwner;
use crate::config::NotarySignerConfig;
use crate::keyring::KeyEntry;

/// The window of `max_new_keys_per_hour`.
const HOUR: Duration = Duration::from_secs(3600);

/// Caps on the keys the endpoint creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotaryCaps {
    /// Endpoint keys held on the tokens in all.
    pub max_keys: usize,
    /// Endpoint keys held for one GUN (timestamp and snapshot, rotations included).
    pub max_keys_per_gun: usize,
    /// Keys generated in any hour.
    pub max_new_keys_per_hour: usize,
}

impl Default for NotaryCaps {
    fn default() -> Self {
        Self {
            max_keys: 1024,
            max_keys_per_gun: 16,
            max_new_keys_per_hour: 60,
        }
    }
}

impl NotaryCaps {
    /// The caps `[notary_signer]` sets.
    pub fn from_config(config: &NotarySignerConfig) -> Self {
        Self {
            max_keys: config.max_keys,
            max_keys_per_gun: config.max_keys_per_gun,
            max_new_keys_per_hour: config.max_new_keys_per_hour,
        }
    }
}

/// CreateKey's state: one creation at a time, and when the last ones happened.
#[derive(Debug)]
pub(super) struct Creation {
    caps: NotaryCaps,
    recent: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl Creation {
    pub(super) fn new(caps: NotaryCaps) -> Self {
        Self {
            caps,
            recent: tokio::sync::Mutex::default(),
        }
    }
}

impl SigningService {
    /// notary-signer CreateKey: the timestamp or snapshot key for a GUN — one made earlier that
    /// has not signed yet, else a new one on the configured backend, within the caps.
    pub async fn notary_create_key(
        &self,
        client: &str,
        backend: &str,
        req: GenerateRequest,
    ) -> Result<Arc<KeyEntry>, Error> {
        let mut scope = self
            .scope("generate", Who::TlsClient(client))
            .asked_name(&req.role, &req.gun)
            .asked_backend(backend)
            .algorithm(req.algorithm);
        if !matches!(req.role.as_str(), "timestamp" | "snapshot") {
            let refused = Err(Error::PermissionDenied(format!(
                "the notary-signer endpoint only creates timestamp and snapshot keys, not {}",
                shown(&req.role)
            )));
            return self.audit_generate(scope, refused).await;
        }
        if let Err(e) = check_gun(&req.gun) {
            return self.audit_generate(scope, Err(e)).await;
        }
        // One creation at a time: two calls for one (GUN, role) get one key, and the caps
        // count what is really there.
        let mut recent = self.notary.recent.lock().await;
        if let Some(unused) = self.unused_notary_key(&req) {
            scope.note(format!(
                "returned key {} again: made for this gun and role and not used to sign yet",
                unused.key_id
            ));
            return self.audit_generate(scope, Ok(unused)).await;
        }
        let result = match self.check_caps(&req.gun, &mut recent) {
            Ok(()) => match self.pick_backend(backend) {
                Ok(index) => self.generate_on(index, &req, KeyOwner::NotarySigner).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if result.is_ok() {
            recent.push_back(Instant::now());
        }
        self.audit_generate(scope, result).await
    }

    /// A key this process made for (GUN, role, algorithm) that has not signed yet.
    fn unused_notary_key(&self, req: &GenerateRequest) -> Option<Arc<KeyEntry>> {
        self.keyring.all().into_iter().find(|k| {
            k.meta.owner == KeyOwner::NotarySigner
                && k.meta.gun == req.gun
                && k.meta.role == req.role
                && k.algorithm() == req.algorithm
                && k.unused()
        })
    }

    /// Refuses a new key beyond the caps; `recent` holds the creation times of the last hour.
    fn check_caps(&self, gun: &str, recent: &mut VecDeque<Instant>) -> Result<(), Error> {
        let caps = self.notary.caps;
        while recent.front().is_some_and(|at| at.elapsed() >= HOUR) {
            recent.pop_front();
        }
        if recent.len() >= caps.max_new_keys_per_hour {
            return Err(Error::Exhausted(format!(
                "the notary-signer endpoint created {} keys in the last hour, its limit \
                 (notary_signer.max_new_keys_per_hour); nothing was generated",
                recent.len()
            )));
        }
        let held: Vec<_> = self
            .keyring
            .all()
            .into_iter()
            .filter(|k| k.meta.owner == KeyOwner::NotarySigner)
            .collect();
        if held.len() >= caps.max_keys {
            return Err(Error::Exhausted(format!(
                "the tokens hold {} notary-signer keys, the limit (notary_signer.max_keys); \
                 nothing was generated",
                held.len()
            )));
        }
        let for_gun = held.iter().filter(|k| k.meta.gun == gun).count();
        if for_gun >= caps.max_keys_per_gun {
            return Err(Error::Exhausted(format!(
                "the tokens hold {for_gun} notary-signer keys for gun {gun:?}, the limit \
                 (notary_signer.max_keys_per_gun); nothing was generated"
            )));
        }
        Ok(())
    }

    /// The identity a notary-signer client is known by: the first of its certificate's names
    /// (CN, then SANs, as the handshake proved them) that the policy's `allowed_clients` lists
    /// (as of the last SIGHUP). Any other client is refused here, and the refusal of the call
    /// `op` on `key_id` audited under the certificate's first name.
    pub fn notary_client(
        &self,
        names: &[String],
        op: &'static str,
        key_id: &str,
    ) -> Result<String, Error> {
        if let Some(name) = self.policy().notary_client(names) {
            return Ok(name.clone());
        }
        let shown = names
            .first()
            .map_or("<unnamed certificate>", String::as_str);
        let refusal = Error::PermissionDenied(format!(
            "client certificate ({}) is not in notary_signer.allowed_clients",
            names.join(", ")
        ));
        Err(self.refuse(op, Who::TlsClient(shown), key_id, None, refusal))
    }

    /// notary-signer GetKeyInfo: only keys created through that endpoint exist for it.
    pub fn notary_key(&self, notary_id: &str) -> Result<Arc<KeyEntry>, Error> {
        self.keyring
            .get_notary(notary_id)
            .ok_or_else(|| Error::KeyNotFound(shown(notary_id).into_owned()))
    }

    /// notary-signer GetKeyInfo: [`Self::notary_key`], counting a key found as a `public` call
    /// (one not found is audited, and counted, by the caller through [`Self::refuse`]).
    pub fn notary_key_info(&self, notary_id: &str) -> Result<Arc<KeyEntry>, Error> {
        let key = self.notary_key(notary_id)?;
        self.count_unaudited("public");
        Ok(key)
    }

    /// notary-signer Sign: SHA-256 of `content` (ECDSA, raw r||s) or Ed25519 over it, audited
    /// with the client certificate's identity as the caller.
    pub async fn notary_sign(
        &self,
        client: &str,
        notary_id: &str,
        content: Vec<u8>,
    ) -> Result<Signature, Error> {
        let mut scope = self
            .scope("sign", Who::TlsClient(client))
            .asked_key(notary_id);
        let result = match self.notary_key(notary_id) {
            Ok(key) => {
                let payload = Payload::Message(content);
                match self.check_payload(&payload) {
                    Ok(()) => self.sign_notary_metadata(key, payload, &mut scope).await,
                    Err(e) => {
                        scope.key(&key);
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        self.finish(&scope, result)
    }

    /// notary-server's keys sign only metadata of their own role, with rising versions and a
    /// bounded expiry: the implied sign-metadata rule (DESIGN §9), then the shared core.
    async fn sign_notary_metadata(
        &self,
        key: Arc<KeyEntry>,
        payload: Payload,
        scope: &mut super::audit_event::Scope<'_>,
    ) -> Result<Signature, Error> {
        scope.key(&key);
        let mut known = None;
        if let Payload::Message(content) = &payload {
            known = self.admit_metadata(&key, content, scope).await?;
        }
        self.sign_with(key, payload, known, SignatureEncoding::Raw, scope)
            .await
    }

    /// notary-signer DeleteKey (notary-server 0.7.0 never calls it).
    pub async fn notary_delete(&self, client: &str, notary_id: &str) -> Result<(), Error> {
        let mut scope = self
            .scope("delete", Who::TlsClient(client))
            .asked_key(notary_id);
        let result = match self.notary_key(notary_id) {
            Ok(key) => {
                scope.key(&key);
                self.delete_key(&key).await
            }
            Err(e) => Err(e),
        };
        self.finish(&scope, result)
    }
}
