//! Delegations: a targets role hands a part of the target namespace (path patterns or hash
//! prefixes of the path) to other keys, with a threshold, possibly terminating the search, and
//! possibly nested (`-r PARENT`). Role names become file names (`N.ROLE.json`), so they are
//! checked, and must be unique in the whole repository.

use std::time::SystemTime;

use super::layout::check_role_file_name;
use super::{Repository, check_threshold, unsigned};
use crate::error::{Error, Result};
use crate::key::PublicKey;
use crate::schema::tuf1::{self, Key, Tuf1};
use crate::schema::{DelegatedRole, Expires, Extra, RoleType};

/// Which targets a delegated role may sign for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRule {
    /// Path patterns (`*`, `?`, `[set]` within one `/`-separated segment).
    Paths(Vec<String>),
    /// Lowercase hex prefixes of the SHA-256 of the target path (hash-bin delegation).
    HashPrefixes(Vec<String>),
}

/// A delegation to create or replace.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// The delegated role's name.
    pub name: String,
    /// The delegating role (`targets` or a delegated role).
    pub parent: String,
    /// Its keys.
    pub keys: Vec<PublicKey>,
    /// How many of them must sign.
    pub threshold: u64,
    /// Which targets it may sign for.
    pub rule: PathRule,
    /// Whether a client stops searching after this role.
    pub terminating: bool,
}

impl PathRule {
    fn check(&self, role: &str) -> Result<()> {
        let bad = |reason: String| Error::InvalidRoleName {
            role: role.to_owned(),
            reason,
        };
        match self {
            Self::Paths(paths) => {
                if paths.is_empty() {
                    return Err(bad("at least one path pattern is needed".into()));
                }
                if let Some(p) = paths
                    .iter()
                    .find(|p| p.is_empty() || p.len() > 4096 || p.chars().any(char::is_control))
                {
                    return Err(bad(format!(
                        "path pattern {p:?} is empty, too long or holds a control character"
                    )));
                }
            }
            Self::HashPrefixes(prefixes) => {
                if prefixes.is_empty() {
                    return Err(bad("at least one hash prefix is needed".into()));
                }
                if let Some(p) = prefixes.iter().find(|p| {
                    p.is_empty()
                        || p.len() > 64
                        || !p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                }) {
                    return Err(bad(format!(
                        "hash prefix {p:?} is not 1 to 64 lowercase hex digits"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Repository {
    /// Creates (or replaces, under the same parent) a delegation; the parent is staged, and the
    /// delegated role too (a new one empty at version 1, an existing one at its next version).
    pub fn delegate(&mut self, d: &Delegation, now: SystemTime) -> Result<()> {
        check_role_file_name(&d.name)?;
        if d.name.parse::<RoleType>().is_ok() {
            return Err(Error::InvalidRoleName {
                role: d.name.clone(),
                reason: "a top-level role name cannot be delegated".into(),
            });
        }
        self.check_targets_role(&d.parent)?;
        if let Some((other, _)) = self.delegator(&d.name)
            && other != d.parent
        {
            return Err(Error::InvalidRoleName {
                role: d.name.clone(),
                reason: format!("already delegated by {other}; role names are unique"),
            });
        }
        if d.name == d.parent || self.is_ancestor(&d.name, &d.parent) {
            return Err(Error::InvalidRoleName {
                role: d.name.clone(),
                reason: format!("delegating to it from {} would make a cycle", d.parent),
            });
        }
        d.rule.check(&d.name)?;
        let keys: Vec<Key> = d.keys.iter().map(Key::from_public_key).collect();
        let mut seen = std::collections::BTreeSet::new();
        let ids: Vec<String> = keys
            .iter()
            .map(Key::id)
            .filter(|id| seen.insert(id.clone()))
            .collect();
        check_threshold(&d.name, ids.len(), d.threshold)?;
        let (paths, path_hash_prefixes) = match &d.rule {
            PathRule::Paths(p) => (Some(p.clone()), None),
            PathRule::HashPrefixes(h) => (None, Some(h.clone())),
        };
        let entry = DelegatedRole {
            name: d.name.clone(),
            keyids: ids,
            threshold: d.threshold,
            terminating: Some(d.terminating),
            paths,
            path_hash_prefixes,
            extra: Extra::new(),
        };
        let is_new = self.targets_role(&d.name).is_none();
        let parent = self.stage_targets(&d.parent, now)?;
        let delegations = parent.delegations.get_or_insert_with(Default::default);
        match delegations.roles.iter_mut().find(|r| r.name == d.name) {
            Some(existing) => {
                // Keep fields this crate does not know.
                let extra = std::mem::take(&mut existing.extra);
                *existing = DelegatedRole { extra, ..entry };
            }
            None => delegations.roles.push(entry),
        }
        for key in keys {
            delegations.keys.insert(key.id(), key);
        }
        delegations.prune_keys();
        parent.validate(&d.parent)?;
        if is_new {
            let expires = Expires::after_in(Tuf1, now, self.settings.lifetime(&d.name))?;
            let body = tuf1::Targets::new_in(Tuf1, 1, expires);
            self.staged.targets.insert(d.name.clone(), unsigned(body));
        } else {
            // Its keys may have changed: staged, so it is re-signed by the ones now delegated.
            self.stage_targets(&d.name, now)?;
        }
        Ok(())
    }

    /// Whether `ancestor` delegates (directly or not) to `role`.
    fn is_ancestor(&self, ancestor: &str, role: &str) -> bool {
        let mut current = role.to_owned();
        for _ in 0..64 {
            match self.delegator(&current) {
                Some((parent, _)) if parent == ancestor => return true,
                Some((parent, _)) => current = parent,
                None => return false,
            }
        }
        true
    }
}
