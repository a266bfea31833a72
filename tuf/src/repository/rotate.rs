//! Key rotation for any role. A top-level role's keys live in root, so rotating one stages a
//! new root (which then needs a threshold of the old root's keys and of its own); a delegated
//! role's keys live in its delegator, which is staged. The rotated role itself is staged too
//! (except snapshot and timestamp, re-signed at every publish anyway), so it is re-signed with
//! its new keys.

use std::time::SystemTime;

use super::{Repository, check_threshold};
use crate::error::{Error, Result};
use crate::key::PublicKey;
use crate::schema::tuf1::Key;
use crate::schema::{RoleKeys, RoleType};

impl Repository {
    /// Adds `add` to role `role`'s keys and removes the keys `remove` names (by TUF key id or
    /// sigild key id). The threshold stays; it must still be reachable.
    pub fn rotate(
        &mut self,
        role: &str,
        add: &[PublicKey],
        remove: &[String],
        now: SystemTime,
    ) -> Result<()> {
        let new_keys: Vec<Key> = add.iter().map(Key::from_public_key).collect();
        if let Ok(top) = role.parse::<RoleType>() {
            let root = self.root()?;
            let current = root
                .role(top)
                .cloned()
                .unwrap_or(RoleKeys::new(Vec::new(), 1));
            let ids = rotated_ids(role, &current.keyids, &root.keys, &new_keys, remove)?;
            check_threshold(role, ids.len(), current.threshold)?;
            let staged = self.stage_root(now)?;
            for key in &new_keys {
                staged.keys.insert(key.id(), key.clone());
            }
            if let Some(entry) = staged.roles.get_mut(role) {
                entry.keyids = ids;
            }
            let used: Vec<String> = staged
                .roles
                .values()
                .flat_map(|r| r.keyids.clone())
                .collect();
            staged.keys.retain(|id, _| used.contains(id));
            staged.validate()?;
            if top == RoleType::Targets {
                self.stage_targets("targets", now)?;
            }
            return Ok(());
        }
        let (parent, delegated) = self.delegator(role).ok_or_else(|| Error::NoSuchRole {
            role: role.to_owned(),
            reason: "no role delegates to it".into(),
        })?;
        let threshold = delegated.threshold;
        let current_ids = delegated.keyids.clone();
        let parent_keys = self
            .targets_role(&parent)
            .and_then(|t| t.delegations.as_ref())
            .map(|d| d.keys.clone())
            .unwrap_or_default();
        let ids = rotated_ids(role, &current_ids, &parent_keys, &new_keys, remove)?;
        check_threshold(role, ids.len(), threshold)?;
        let body = self.stage_targets(&parent, now)?;
        let delegations = body.delegations.get_or_insert_with(Default::default);
        for key in &new_keys {
            delegations.keys.insert(key.id(), key.clone());
        }
        if let Some(entry) = delegations.roles.iter_mut().find(|r| r.name == role) {
            entry.keyids = ids;
        }
        delegations.prune_keys();
        body.validate(&parent)?;
        self.stage_targets(role, now)?;
        Ok(())
    }
}

/// The role's key ids after adding `add` and removing what `remove` names; every name in
/// `remove` must be a current key of the role.
fn rotated_ids(
    role: &str,
    current: &[String],
    keys: &std::collections::BTreeMap<String, Key>,
    add: &[Key],
    remove: &[String],
) -> Result<Vec<String>> {
    let mut ids: Vec<String> = current.to_vec();
    for name in remove {
        let name = name.to_ascii_lowercase();
        let found = ids.iter().position(|id| {
            *id == name
                || keys
                    .get(id)
                    .and_then(|k| k.to_public_key().ok())
                    .is_some_and(|p| p.key_id() == name)
        });
        match found {
            Some(i) => {
                ids.remove(i);
            }
            None => {
                return Err(Error::key(
                    &name,
                    format!("is not a key of {role} (nothing to remove)"),
                ));
            }
        }
    }
    for key in add {
        let id = key.id();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if add.is_empty() && remove.is_empty() {
        return Err(Error::invalid(
            role,
            0,
            "nothing to rotate: give a key to add or remove",
        ));
    }
    Ok(ids)
}
