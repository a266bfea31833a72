//! The result of a walk: a collection whose every file was verified, and the reads over it
//! (`list`, `lookup`, `verify`) that honour each role's delegated paths.

use std::collections::BTreeMap;

use super::{PriorVersions, SkippedRole, TargetEntry};
use crate::error::{Error, Result};
use crate::schema::targets::PathRule;
use crate::schema::{Metadata, Root, Snapshot, Targets, Timestamp, check_targets_role};

/// A collection whose every file has been verified for one GUN at one time.
#[derive(Debug, Clone)]
pub struct VerifiedCollection {
    pub(super) gun: String,
    pub(super) root: Metadata<Root>,
    pub(super) timestamp: Metadata<Timestamp>,
    pub(super) snapshot: Metadata<Snapshot>,
    pub(super) targets: Metadata<Targets>,
    pub(super) delegations: BTreeMap<String, Metadata<Targets>>,
    /// Rollback baselines of delegated roles: the loaded ones and those trusted before and
    /// still delegated (skipped ones, say).
    pub(super) baselines: BTreeMap<String, u64>,
    pub(super) rules: BTreeMap<String, PathRule>,
    pub(super) skipped: Vec<SkippedRole>,
}

impl VerifiedCollection {
    /// The GUN.
    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// root.json.
    pub fn root(&self) -> &Metadata<Root> {
        &self.root
    }

    /// timestamp.json.
    pub fn timestamp(&self) -> &Metadata<Timestamp> {
        &self.timestamp
    }

    /// snapshot.json.
    pub fn snapshot(&self) -> &Metadata<Snapshot> {
        &self.snapshot
    }

    /// targets.json.
    pub fn targets(&self) -> &Metadata<Targets> {
        &self.targets
    }

    /// A verified delegated role.
    pub fn delegation(&self, role: &str) -> Option<&Metadata<Targets>> {
        self.delegations.get(role)
    }

    /// Verified delegated roles by name.
    pub fn delegations(&self) -> &BTreeMap<String, Metadata<Targets>> {
        &self.delegations
    }

    /// `targets` or a verified delegation.
    pub fn targets_role(&self, role: &str) -> Option<&Metadata<Targets>> {
        if role == "targets" {
            Some(&self.targets)
        } else {
            self.delegations.get(role)
        }
    }

    /// The effective path rule of a verified targets role.
    pub fn path_rule(&self, role: &str) -> Option<&PathRule> {
        self.rules.get(role)
    }

    /// Delegations that were skipped (expired or under-signed) and why.
    pub fn skipped(&self) -> &[SkippedRole] {
        &self.skipped
    }

    /// The versions now trusted, as the baseline for the next update.
    pub fn prior_versions(&self) -> PriorVersions {
        PriorVersions {
            timestamp: Some(self.timestamp.version()),
            snapshot: Some(self.snapshot.version()),
            targets: Some(self.targets.version()),
            delegations: self.baselines.clone(),
        }
    }

    /// Every file by role name, to cache in the trust dir (`metadata/<role>.json`).
    pub fn files(&self) -> BTreeMap<String, &[u8]> {
        let mut out = BTreeMap::new();
        out.insert("root".to_owned(), self.root.bytes());
        out.insert("timestamp".to_owned(), self.timestamp.bytes());
        out.insert("snapshot".to_owned(), self.snapshot.bytes());
        out.insert("targets".to_owned(), self.targets.bytes());
        for (name, m) in &self.delegations {
            out.insert(name.clone(), m.bytes());
        }
        out
    }

    /// Verified targets roles under `start` (itself first), pre-order, in delegation order.
    pub fn walk<'a>(&'a self, start: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut stack: Vec<&str> = match self.targets_role(start) {
            Some(_) => vec![start],
            None => Vec::new(),
        };
        while let Some(role) = stack.pop() {
            out.push(role);
            if let Some(m) = self.targets_role(role) {
                for child in m.body().delegated_roles().iter().rev() {
                    if self.delegations.contains_key(&child.name) {
                        stack.push(child.name.as_str());
                    }
                }
            }
        }
        out
    }

    /// Targets visible from `roles` (default: `targets`), the first listing of each name in
    /// walk order winning, and only where the listing role may sign that path (`notary list`).
    pub fn list_targets(&self, roles: &[&str]) -> Vec<TargetEntry> {
        let roles: Vec<&str> = if roles.is_empty() {
            vec!["targets"]
        } else {
            roles.to_vec()
        };
        let mut out: BTreeMap<String, TargetEntry> = BTreeMap::new();
        for start in roles {
            for role in self.walk(start) {
                let (Some(m), Some(rule)) = (self.targets_role(role), self.rules.get(role)) else {
                    continue;
                };
                for (name, meta) in &m.body().targets {
                    if out.contains_key(name) || !rule.allows(name) {
                        continue;
                    }
                    out.insert(
                        name.clone(),
                        TargetEntry {
                            name: name.clone(),
                            role: role.to_owned(),
                            meta: meta.clone(),
                        },
                    );
                }
            }
        }
        out.into_values().collect()
    }

    /// Finds a target by name, walking from `roles` (default: `targets`) (`notary lookup`).
    /// A listing by a role that may not sign that path is refused.
    pub fn lookup(&self, name: &str, roles: &[&str]) -> Result<TargetEntry> {
        let roles: Vec<&str> = if roles.is_empty() {
            vec!["targets"]
        } else {
            roles.to_vec()
        };
        let mut refused = None;
        for start in &roles {
            check_targets_role(start)?;
            for role in self.walk(start) {
                let (Some(m), Some(rule)) = (self.targets_role(role), self.rules.get(role)) else {
                    continue;
                };
                if let Some(meta) = m.body().targets.get(name) {
                    if rule.allows(name) {
                        return Ok(TargetEntry {
                            name: name.to_owned(),
                            role: role.to_owned(),
                            meta: meta.clone(),
                        });
                    }
                    refused.get_or_insert_with(|| Error::PathNotDelegated {
                        role: role.to_owned(),
                        target: name.to_owned(),
                    });
                }
            }
        }
        Err(refused.unwrap_or_else(|| Error::TargetNotFound {
            name: name.to_owned(),
            reason: format!("in {}", roles.join(", ")),
        }))
    }

    /// Looks a target up and checks `content` against its length and hashes
    /// (`notary verify`): [`Error::LengthMismatch`] or [`Error::HashMismatch`] name the target
    /// and the role listing it.
    pub fn verify_target(&self, name: &str, content: &[u8], roles: &[&str]) -> Result<TargetEntry> {
        let entry = self.lookup(name, roles)?;
        entry.meta.check(
            name,
            &entry.role,
            self.targets_version(&entry.role),
            content,
        )?;
        Ok(entry)
    }

    fn targets_version(&self, role: &str) -> u64 {
        self.targets_role(role).map_or(0, Metadata::version)
    }
}
