//! Delegated targets roles in the editor, with notary's semantics: create or edit one, purge
//! keys from delegations (`delegation purge`), remove one with everything delegated under it.

use crate::changelist::DelegationChange;
use crate::error::{Error, Result};
use crate::schema::{DelegatedRole, check_delegation_name, parent_role};

use super::CollectionEditor;

impl CollectionEditor {
    /// Creates a delegation or edits it, with notary's semantics: add keys (ids computed),
    /// remove keys by TUF or canonical id, set the threshold when non-zero, clear/add/remove
    /// path prefixes. The role must keep at least `threshold` keys.
    pub fn update_delegation(&mut self, role: &str, change: &DelegationChange) -> Result<()> {
        check_delegation_name(role)?;
        if !change.new_name.is_empty() && change.new_name != role {
            return Err(Error::InvalidRoleName {
                role: change.new_name.clone(),
                reason: "renaming delegations is not supported".into(),
            });
        }
        let parent = parent_role(role).to_owned();
        let state = self.targets_mut(&parent)?;
        let delegations = state.body.delegations.get_or_insert_with(Default::default);
        let index = match delegations.roles.iter().position(|r| r.name == role) {
            Some(i) => i,
            None => {
                delegations
                    .roles
                    .push(DelegatedRole::new(role, Vec::new(), 1, Vec::new()));
                delegations.roles.len() - 1
            }
        };
        let mut entry = delegations.roles[index].clone();
        for key in &change.add_keys {
            key.to_public_key()?;
            let id = key.id();
            delegations.keys.insert(id.clone(), key.clone());
            if !entry.keyids.contains(&id) {
                entry.keyids.push(id);
            }
        }
        if !change.remove_keys.is_empty() {
            let keys = &delegations.keys;
            entry.keyids.retain(|id| {
                let canonical = keys.get(id).and_then(|k| k.canonical_id().ok());
                !change
                    .remove_keys
                    .iter()
                    .any(|r| r == id || Some(r) == canonical.as_ref())
            });
        }
        if change.threshold > 0 {
            entry.threshold = change.threshold;
        }
        let mut paths = if change.clear_paths {
            Vec::new()
        } else {
            entry.paths().to_vec()
        };
        for p in &change.add_paths {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
        paths.retain(|p| !change.remove_paths.contains(p));
        entry.paths = Some(paths);
        if entry.keyids.is_empty() || (entry.keyids.len() as u64) < entry.threshold {
            return Err(Error::Invalid {
                role: parent,
                version: state.body.version,
                reason: format!(
                    "delegation {role} would have {} key(s) for threshold {}",
                    entry.keyids.len(),
                    entry.threshold
                ),
            });
        }
        delegations.roles[index] = entry;
        delegations.prune_keys();
        state.dirty = true;
        self.removed.remove(role);
        Ok(())
    }

    /// Removes keys (by TUF or canonical id) from every delegation under `scope`'s role
    /// (`targets/*`: all of them), in every delegating role at hand, as notary's `delegation
    /// purge` does; returns the delegations that lost a key. Thresholds are not checked: a
    /// delegation left without enough keys can no longer sign, which is the point.
    pub fn purge_delegation_keys(
        &mut self,
        scope: &str,
        remove_keys: &[String],
    ) -> Result<Vec<String>> {
        let base = crate::changelist::purge_base(scope)?;
        let under = format!("{base}/");
        let mut purged = Vec::new();
        for state in self.targets.values_mut() {
            let Some(delegations) = state.body.delegations.as_mut() else {
                continue;
            };
            let doomed: Vec<String> = delegations
                .keys
                .iter()
                .filter(|(id, key)| {
                    let canonical = key.canonical_id().ok();
                    remove_keys
                        .iter()
                        .any(|r| r == *id || Some(r) == canonical.as_ref())
                })
                .map(|(id, _)| id.clone())
                .collect();
            if doomed.is_empty() {
                continue;
            }
            let mut changed = false;
            for role in &mut delegations.roles {
                if !role.name.starts_with(&under) {
                    continue;
                }
                let before = role.keyids.len();
                role.keyids.retain(|id| !doomed.contains(id));
                if role.keyids.len() != before {
                    purged.push(role.name.clone());
                    changed = true;
                }
            }
            if changed {
                delegations.prune_keys();
                state.dirty = true;
            }
        }
        purged.sort();
        Ok(purged)
    }

    /// Removes a delegation and everything delegated under it.
    pub fn remove_delegation(&mut self, role: &str) -> Result<()> {
        check_delegation_name(role)?;
        let parent = parent_role(role).to_owned();
        let state = self.targets_mut(&parent)?;
        let Some(d) = state.body.delegations.as_mut() else {
            return Err(Error::NoSuchRole {
                role: role.into(),
                reason: format!("not delegated by {parent}"),
            });
        };
        let before = d.roles.len();
        d.roles.retain(|r| r.name != role);
        if d.roles.len() == before {
            return Err(Error::NoSuchRole {
                role: role.into(),
                reason: format!("not delegated by {parent}"),
            });
        }
        d.prune_keys();
        state.dirty = true;
        let prefix = format!("{role}/");
        let gone: Vec<String> = self
            .targets
            .keys()
            .chain(self.files.keys())
            .chain(self.snapshot.iter().flat_map(|s| s.meta.keys()))
            .filter(|n| *n == role || n.starts_with(&prefix))
            .cloned()
            .collect();
        for name in gone {
            self.targets.remove(&name);
            self.files.remove(&name);
            self.removed.insert(name);
        }
        Ok(())
    }
}
