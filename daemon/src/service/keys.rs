//! Key management on the Unix socket: list, public key, attestation, generation, deletion,
//! and supplying a token's PIN (`unlock`).

use std::sync::Arc;

use super::audit_event::Scope;
use super::validate::{check_gun, check_role, shown};
use super::{Error, GenerateRequest, KeyFilter, SigningService, facts, view};
use crate::audit::Who;
use crate::backend::{AttestationReport, KeyMeta, KeyOwner};
use crate::config::Op;
use crate::keyring::{KeyEntry, KeyRing};
use crate::policy::{Caller, KeyView};

impl SigningService {
    /// Keys the caller may list, filtered.
    pub async fn list_keys(&self, caller: &Caller, filter: &KeyFilter) -> Vec<Arc<KeyEntry>> {
        self.count_unaudited("list");
        let policy = self.policy();
        let groups = self.groups(&policy, caller).await;
        self.keyring
            .all()
            .into_iter()
            .filter(|k| {
                k.meta.owner == KeyOwner::Sigil
                    && (filter.backend.is_empty() || filter.backend == k.backend_name)
                    && (filter.gun.is_empty() || filter.gun == k.meta.gun)
                    && (filter.role.is_empty() || filter.role == k.meta.role)
                    && policy.ops(caller, &groups, &view(k)).contains(Op::List)
            })
            .collect()
    }

    /// A key's public half, if the caller may read it.
    /// Refusals are audited: a caller probing for keys it may not use leaves a trace.
    pub async fn public_key(&self, caller: &Caller, key_id: &str) -> Result<Arc<KeyEntry>, Error> {
        let scope = self.scope("public", Who::Unix(caller)).asked_key(key_id);
        let result = self.authorise(caller, key_id, Op::Public).await;
        if result.is_err() {
            return self.finish(&self.with_key(scope, key_id), result);
        }
        self.count_unaudited("public");
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
        let scope = self
            .scope("unlock", Who::Unix(caller))
            .asked_backend(backend);
        let result = async {
            if backend.is_empty() {
                return Err(Error::BadRequest("backend is required".into()));
            }
            // Policy first: a caller without the right learns nothing about the backends.
            let policy = self.policy();
            let groups = self.groups(&policy, caller).await;
            if !policy.may_unlock(caller, &groups, backend) {
                return Err(Error::PermissionDenied(format!(
                    "policy does not allow uid {} to unlock backend {}",
                    caller.uid,
                    shown(backend)
                )));
            }
            let index = self.pick_backend(backend)?;
            if pin.is_empty() {
                return Err(Error::BadRequest("the PIN is empty".into()));
            }
            Ok(self.backends[index].unlock(pin).await?)
        }
        .await;
        self.finish(&scope, result)
    }

    /// A key's attestation chain, fetched from the device now, if the caller may read the
    /// key's public half. Audited (op `attest`) whatever the outcome.
    pub async fn attest(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<(Arc<KeyEntry>, AttestationReport), Error> {
        let scope = self.scope("attest", Who::Unix(caller)).asked_key(key_id);
        let result = async {
            let key = self.authorise(caller, key_id, Op::Public).await?;
            let report = self.backend_of(&key)?.attest(key.locator.clone()).await?;
            Ok((key, report))
        }
        .await;
        self.finish(&self.with_key(scope, key_id), result)
    }

    /// Deletes a key from its token, if policy allows `delete`.
    pub async fn delete(&self, caller: &Caller, key_id: &str) -> Result<(), Error> {
        let scope = self.scope("delete", Who::Unix(caller)).asked_key(key_id);
        let scope = self.with_key(scope, key_id);
        let result = match self.authorise(caller, key_id, Op::Delete).await {
            Ok(key) => self.delete_key(&key).await,
            Err(e) => Err(e),
        };
        self.finish(&scope, result)
    }

    /// The audit log is for administrators: a line names the key whenever it exists.
    fn with_key<'a>(&self, mut scope: Scope<'a>, key_id: &str) -> Scope<'a> {
        if let Some(key) = self.keyring.get(key_id) {
            scope.key(&key);
        }
        scope
    }

    pub(super) async fn delete_key(&self, key: &Arc<KeyEntry>) -> Result<(), Error> {
        self.backend_of(key)?.delete(key.locator.clone()).await?;
        self.keyring.remove(&key.key_id);
        Ok(())
    }

    /// Generates a key on a backend, if policy allows `generate` for its role and GUN.
    pub async fn generate(
        &self,
        caller: &Caller,
        req: GenerateRequest,
    ) -> Result<Arc<KeyEntry>, Error> {
        let scope = self
            .scope("generate", Who::Unix(caller))
            .asked_name(&req.role, &req.gun)
            .asked_backend(&req.backend)
            .algorithm(req.algorithm);
        let result = self.generate_inner(caller, &req).await;
        self.audit_generate(scope, result).await
    }

    async fn generate_inner(
        &self,
        caller: &Caller,
        req: &GenerateRequest,
    ) -> Result<Arc<KeyEntry>, Error> {
        check_role(&req.role)?;
        check_gun(&req.gun)?;
        // Policy before the backend: a caller without the right learns no backend names.
        let policy = self.policy();
        let groups = self.groups(&policy, caller).await;
        let ops = policy.ops(
            caller,
            &groups,
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
        let index = self.pick_backend(&req.backend)?;
        self.generate_on(index, req, KeyOwner::Sigil).await
    }

    pub(super) async fn generate_on(
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
        insert(
            &self.keyring,
            KeyEntry::new(index, backend.name(), key)
                .with_device(device)
                .generated(),
        )
    }

    /// Audits a generation; an unrecordable new key is removed again (fail closed).
    pub(super) async fn audit_generate(
        &self,
        mut scope: Scope<'_>,
        result: Result<Arc<KeyEntry>, Error>,
    ) -> Result<Arc<KeyEntry>, Error> {
        if let Ok(key) = &result {
            scope.key(key);
        }
        if let Err(e) = self.record(&scope, result.as_ref().err()) {
            if let Ok(key) = &result {
                self.keyring.remove(&key.key_id);
                if let Ok(backend) = self.backend_of(key) {
                    let _ = backend.delete(key.locator.clone()).await;
                }
            }
            return Err(e);
        }
        result
    }
}

fn insert(keyring: &KeyRing, entry: KeyEntry) -> Result<Arc<KeyEntry>, Error> {
    keyring
        .insert(entry)
        .map_err(|e| Error::Internal(e.to_string()))
}
