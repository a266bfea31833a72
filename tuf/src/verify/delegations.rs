//! The delegation part of the walk: which delegated roles to fetch (a stack fed as each role
//! is loaded, so the walk is linear in the number of roles), loading and skipping them, the
//! bounds on how many and how deep, and the rollback baselines kept for roles not loaded.

use std::collections::BTreeMap;

use super::signatures::{any_key, check_threshold};
use super::{SkippedRole, Updater, check_expiry, check_rollback};
use crate::error::{Error, Result};
use crate::schema::{FileMeta, Metadata, Targets, TufKey, check_delegation_name, parent_role};

/// Most delegated roles one walk fetches. Each is a request and a signature check; Notary
/// collections have a few (`targets/releases`, a role per team). A repository that delegates
/// more is refused rather than walked for hours.
pub const MAX_DELEGATED_ROLES: usize = 1024;

/// Deepest delegation walked: `targets/a/b` is depth 2. Notary's names nest by path, and real
/// collections stop at one or two levels.
pub const MAX_DELEGATION_DEPTH: usize = 16;

/// Whether a delegation error is one the notary client tolerates (skips the role).
pub fn is_skippable(e: &Error) -> bool {
    matches!(e, Error::Expired { .. } | Error::ThresholdNotMet { .. })
}

impl Updater {
    pub(super) fn loaded(&self, role: &str) -> Option<&Metadata<Targets>> {
        if role == "targets" {
            self.targets.as_ref()
        } else {
            self.delegations.get(role)
        }
    }

    /// Queues the roles `role` delegates to, so they are taken in delegation order.
    pub(super) fn queue_children(&mut self, role: &str) {
        let Some(meta) = self.loaded(role) else {
            return;
        };
        let children: Vec<String> = meta
            .body()
            .delegated_roles()
            .iter()
            .rev()
            .map(|c| c.name.clone())
            .collect();
        self.pending.extend(children);
    }

    /// The next delegated role to fetch, in walk order (pre-order, delegation order), with
    /// what the snapshot says it must be; `None` when the walk is done. The caller passes its
    /// file to [`Updater::update_delegation`] (or [`Updater::skip_delegation`]).
    ///
    /// A role the snapshot does not list has never been published and holds no targets,
    /// unless it was trusted before: then the snapshot hides it, and that is refused
    /// ([`Error::Hidden`]), or a server holding the snapshot key could drop the rollback
    /// baseline once and serve an older version later. More than [`MAX_DELEGATED_ROLES`]
    /// roles or nesting deeper than [`MAX_DELEGATION_DEPTH`] are refused.
    pub fn next_delegation(&mut self) -> Result<Option<(String, FileMeta)>> {
        while let Some(role) = self.pending.pop() {
            let Some(meta) = self.role_meta(&role).cloned() else {
                if let Some(trusted) = self.prior.delegations.get(&role) {
                    return Err(Error::Hidden {
                        version: self.snapshot.as_ref().map_or(0, Metadata::version),
                        trusted: *trusted,
                        parent: parent_role(&role).to_owned(),
                        role,
                    });
                }
                continue;
            };
            let depth = role.matches('/').count();
            if depth > MAX_DELEGATION_DEPTH {
                return Err(Error::LimitExceeded {
                    role,
                    what: format!("delegation nested {depth} levels deep"),
                    limit: MAX_DELEGATION_DEPTH as u64,
                });
            }
            self.visited += 1;
            if self.visited > MAX_DELEGATED_ROLES {
                return Err(Error::LimitExceeded {
                    role,
                    what: format!("more than {MAX_DELEGATED_ROLES} delegated roles"),
                    limit: MAX_DELEGATED_ROLES as u64,
                });
            }
            return Ok(Some((role, meta)));
        }
        Ok(None)
    }

    /// Loads a delegated role's file: listed in snapshot, delegated by its (already loaded)
    /// parent, signed by the parent's threshold of the delegation's keys, not rolled back or
    /// expired. Its path rule is the parent's, restricted by the delegation.
    pub fn update_delegation(&mut self, role: &str, bytes: Vec<u8>) -> Result<()> {
        check_delegation_name(role)?;
        let parent_name = parent_role(role);
        let parent = self.loaded(parent_name).ok_or_else(|| Error::UpdateOrder {
            role: role.into(),
            needs: parent_name.into(),
        })?;
        let parent_version = parent.version();
        let (entry, keys) = parent
            .body()
            .delegation(role)
            .ok_or_else(|| Error::NoSuchRole {
                role: role.into(),
                reason: format!("not delegated by {parent_name} v{parent_version}"),
            })?;
        let parent_rule = self.rules.get(parent_name).cloned().unwrap_or_default();
        let rule = parent_rule.restrict(entry);
        let threshold = entry.threshold;
        let keys: Vec<(String, TufKey)> = keys
            .into_iter()
            .map(|(id, k)| (id.to_owned(), k.clone()))
            .collect();
        self.listed_in_snapshot(role, &bytes)?;
        let meta = Metadata::<Targets>::from_bytes(role, bytes)?;
        meta.body().validate(role)?;
        let key_refs: Vec<(&str, &TufKey)> = keys.iter().map(|(i, k)| (i.as_str(), k)).collect();
        check_threshold(role, meta.signed(), &key_refs, threshold, &any_key)?;
        check_rollback(role, meta.version(), self.prior.get(role))?;
        check_expiry(role, meta.body(), self.now)?;
        self.delegations.insert(role.to_owned(), meta);
        self.rules.insert(role.to_owned(), rule);
        self.queue_children(role);
        Ok(())
    }

    /// Records that a delegation could not be trusted, so the walk goes on without it (and
    /// without the roles it delegates to). Its rollback baseline is kept.
    pub fn skip_delegation(&mut self, role: &str, reason: &Error) {
        self.skipped.push(SkippedRole {
            role: role.to_owned(),
            reason: reason.to_string(),
        });
    }

    /// Whether `role` is no longer part of the collection: the nearest loaded role above it
    /// does not delegate to the chain leading to it (a delegation removed by whoever holds
    /// the parent's key). Only then is a trusted version forgotten.
    fn removed(&self, role: &str) -> bool {
        let mut current = role;
        loop {
            let parent = parent_role(current);
            if parent.is_empty() {
                return true;
            }
            if let Some(meta) = self.loaded(parent) {
                return meta.body().delegation(current).is_none();
            }
            current = parent;
        }
    }

    /// The rollback baselines for the next update: every role loaded now, and every role
    /// trusted before that was not removed from the collection (skipped, or under a skipped
    /// role), at the version trusted before.
    pub(super) fn baselines(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = self
            .prior
            .delegations
            .iter()
            .filter(|(role, _)| !self.removed(role))
            .map(|(role, v)| (role.clone(), *v))
            .collect();
        for (role, meta) in &self.delegations {
            let v = out.entry(role.clone()).or_default();
            *v = (*v).max(meta.version());
        }
        out
    }
}
