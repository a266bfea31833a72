//! targets.json and delegated targets roles: the signed list of target files, and delegations
//! of parts of the namespace to other keys, with Notary's path rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::dialect::{Dialect, Notary, TypeTag, kind};
use super::{Expires, Extra, FileMeta, RoleBody, is_delegation, parent_role};
use crate::error::{Error, Result};

/// Keys with their TUF ids, as a role lists them.
pub type KeyRefs<'a, K> = Vec<(&'a str, &'a K)>;

/// One delegation: a child role, its keys and threshold, and the target paths it may sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelegatedRole {
    /// Full role name, a child of the delegating role (`targets/releases`).
    pub name: String,
    /// Key ids, each present in [`Delegations::keys`].
    pub keyids: Vec<String>,
    /// Distinct valid signatures required.
    pub threshold: u64,
    /// TUF 1.0: whether the search for a target stops at this role when its paths match
    /// (required there). Notary does not use it; it is kept when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating: Option<bool>,
    /// Path prefixes the role may sign (Notary semantics: plain prefixes, `""` means all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Hex prefixes of SHA-256(target path) the role may sign (TUF; notary 0.7 ignores them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl DelegatedRole {
    /// A delegation of `paths` to `keyids`.
    pub fn new(name: &str, keyids: Vec<String>, threshold: u64, paths: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            keyids,
            threshold,
            terminating: None,
            paths: Some(paths),
            path_hash_prefixes: None,
            extra: Extra::new(),
        }
    }

    /// The paths as listed (empty when absent).
    pub fn paths(&self) -> &[String] {
        self.paths.as_deref().unwrap_or_default()
    }

    /// The hash prefixes as listed (empty when absent).
    pub fn path_hash_prefixes(&self) -> &[String] {
        self.path_hash_prefixes.as_deref().unwrap_or_default()
    }
}

/// What a role may sign: the effective rule after restricting a delegation by its parents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathRule {
    /// Allowed path prefixes.
    pub paths: Vec<String>,
    /// Allowed hex prefixes of SHA-256(path).
    pub hash_prefixes: Vec<String>,
}

impl PathRule {
    /// The top-level targets role may sign everything.
    pub fn everything() -> Self {
        Self {
            paths: vec![String::new()],
            hash_prefixes: Vec::new(),
        }
    }

    /// Whether `target` is allowed: it starts with one of the paths, or the hex SHA-256 of the
    /// path starts with one of the hash prefixes.
    pub fn allows(&self, target: &str) -> bool {
        if self.paths.iter().any(|p| target.starts_with(p.as_str())) {
            return true;
        }
        if self.hash_prefixes.is_empty() {
            return false;
        }
        let digest = hex::encode(Sha256::digest(target.as_bytes()));
        self.hash_prefixes
            .iter()
            .any(|p| digest.starts_with(&p.to_ascii_lowercase()))
    }

    /// The rule of `child` under this (parent) rule. Paths follow notary's
    /// `RestrictDelegationPathPrefixes`: a child path counts only if a parent path is a prefix
    /// of it. A hash prefix counts only if it extends one of the parent's hash prefixes, or if
    /// the parent allows every path.
    pub fn restrict(&self, child: &DelegatedRole) -> Self {
        let paths = child
            .paths()
            .iter()
            .filter(|c| self.paths.iter().any(|p| c.starts_with(p.as_str())))
            .cloned()
            .collect();
        let parent_all = self.paths.iter().any(String::is_empty);
        let hash_prefixes = child
            .path_hash_prefixes()
            .iter()
            .filter(|c| {
                parent_all
                    || self
                        .hash_prefixes
                        .iter()
                        .any(|p| c.to_ascii_lowercase().starts_with(&p.to_ascii_lowercase()))
            })
            .cloned()
            .collect();
        Self {
            paths,
            hash_prefixes,
        }
    }
}

/// The `delegations` object of a targets role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Delegations<D: Dialect = Notary> {
    /// Keys of all delegated roles, by TUF key id.
    pub keys: BTreeMap<String, D::Key>,
    /// Delegated roles, in priority order.
    pub roles: Vec<DelegatedRole>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl<D: Dialect> Default for Delegations<D> {
    fn default() -> Self {
        Self {
            keys: BTreeMap::new(),
            roles: Vec::new(),
            extra: Extra::new(),
        }
    }
}

impl<D: Dialect> Delegations<D> {
    /// The delegation named `name`.
    pub fn role(&self, name: &str) -> Option<&DelegatedRole> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The keys of a delegated role with their ids (ids without a key are skipped).
    pub fn role_keys<'a>(&'a self, role: &'a DelegatedRole) -> Vec<(&'a str, &'a D::Key)> {
        role.keyids
            .iter()
            .filter_map(|id| self.keys.get(id).map(|k| (id.as_str(), k)))
            .collect()
    }

    /// Drops keys no delegated role uses any more.
    pub fn prune_keys(&mut self) {
        let used: std::collections::BTreeSet<String> = self
            .roles
            .iter()
            .flat_map(|r| r.keyids.iter().cloned())
            .collect();
        self.keys.retain(|id, _| used.contains(id));
    }
}

/// The body of targets.json or of a delegated role's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Targets<D: Dialect = Notary> {
    /// `"_type"`: `Targets` or `targets`.
    #[serde(rename = "_type")]
    pub type_tag: TypeTag<D, kind::Targets>,
    /// The dialect's other header fields (`spec_version` in TUF 1.0).
    #[serde(flatten)]
    pub header: D::Header,
    /// Delegations. Notary always writes the object (empty when there are none); TUF 1.0
    /// writes it only when there are delegations. Optional so that documents without it
    /// re-serialise unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations<D>>,
    /// Expiry.
    pub expires: Expires,
    /// Target path → length and hashes.
    pub targets: BTreeMap<String, FileMeta<D>>,
    /// Version.
    pub version: u64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl<D: Dialect> RoleBody for Targets<D> {
    type Dialect = D;
    const TYPE: &'static str = D::TARGETS_TYPE;

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> &Expires {
        &self.expires
    }
}

impl Targets {
    /// An empty Notary targets role, with the empty `delegations` object Notary writes.
    pub fn new(version: u64, expires: Expires) -> Self {
        Self {
            delegations: Some(Delegations::default()),
            ..Self::new_in(Notary, version, expires)
        }
    }
}

impl<D: Dialect> Targets<D> {
    /// An empty targets role in dialect `D`, without a `delegations` object.
    pub fn new_in(_: D, version: u64, expires: Expires) -> Self {
        Self {
            type_tag: TypeTag::new(),
            header: D::Header::default(),
            delegations: None,
            expires,
            targets: BTreeMap::new(),
            version,
            extra: Extra::new(),
        }
    }

    /// The delegated roles (none when `delegations` is absent).
    pub fn delegated_roles(&self) -> &[DelegatedRole] {
        self.delegations
            .as_ref()
            .map(|d| d.roles.as_slice())
            .unwrap_or_default()
    }

    /// The delegation entry for `name`, with its keys.
    pub fn delegation(&self, name: &str) -> Option<(&DelegatedRole, KeyRefs<'_, D::Key>)> {
        let d = self.delegations.as_ref()?;
        let role = d.role(name)?;
        Some((role, d.role_keys(role)))
    }
}

impl Targets {
    /// Checks Notary's structural rules for the role named `name`: version ≥ 1; each delegation
    /// is a valid name directly under `name`, has threshold ≥ 1 and only known keys; keys are
    /// stored under their own ids; hashes are well formed; hash prefixes are hex.
    pub fn validate(&self, name: &str) -> Result<()> {
        let v = self.version;
        if v < 1 {
            return Err(Error::invalid(name, v, "version must be at least 1"));
        }
        for (target, meta) in &self.targets {
            meta.check_hashes_structure()
                .map_err(|e| Error::invalid(name, v, format!("target {target:?}: {e}")))?;
        }
        let Some(d) = &self.delegations else {
            return Ok(());
        };
        for (id, key) in &d.keys {
            if key.id() != *id {
                return Err(Error::invalid(
                    name,
                    v,
                    format!("delegation key listed as {id} has id {}", key.id()),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for role in &d.roles {
            let bad = |reason: String| Error::invalid(name, v, format!("{}: {reason}", role.name));
            if !is_delegation(&role.name) || parent_role(&role.name) != name {
                return Err(bad(format!("is not a delegation directly under {name}")));
            }
            if !seen.insert(role.name.as_str()) {
                return Err(bad("delegated twice".into()));
            }
            if role.threshold < 1 {
                return Err(bad("threshold must be at least 1".into()));
            }
            if let Some(missing) = role.keyids.iter().find(|id| !d.keys.contains_key(*id)) {
                return Err(bad(format!("lists unknown key {missing}")));
            }
            if let Some(p) = role
                .path_hash_prefixes()
                .iter()
                .find(|p| !p.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(bad(format!("path hash prefix {p:?} is not hex")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(paths: &[&str], prefixes: &[&str]) -> DelegatedRole {
        let mut r = DelegatedRole::new(
            "targets/x",
            vec![],
            1,
            paths.iter().map(|s| s.to_string()).collect(),
        );
        if !prefixes.is_empty() {
            r.path_hash_prefixes = Some(prefixes.iter().map(|s| s.to_string()).collect());
        }
        r
    }

    #[test]
    fn paths_are_prefixes_and_empty_means_all() {
        let all = PathRule::everything().restrict(&role(&[""], &[]));
        assert!(all.allows("anything/at/all"));
        let releases = all.restrict(&role(&["releases/"], &[]));
        assert!(releases.allows("releases/v1.tar"));
        assert!(!releases.allows("nightly/v1.tar"));
        // notary restricts by prefix: "rel" is not under "releases/", so it is dropped.
        let child = releases.restrict(&role(&["rel", "releases/stable/"], &[]));
        assert_eq!(child.paths, vec!["releases/stable/".to_string()]);
        assert!(!child.allows("releases/v1.tar"));
        assert!(child.allows("releases/stable/v1.tar"));
        let none = PathRule::everything().restrict(&role(&[], &[]));
        assert!(!none.allows("x"));
    }

    #[test]
    fn hash_prefixes_match_the_hex_sha256_of_the_path() {
        let digest = hex::encode(Sha256::digest(b"file.txt"));
        let rule = PathRule::everything().restrict(&role(&[], &[&digest[..2]]));
        assert!(rule.allows("file.txt"));
        let other = if digest.starts_with('0') { "1" } else { "0" };
        let rule = PathRule::everything().restrict(&role(&[], &[other]));
        assert!(!rule.allows("file.txt"));
        // Under a parent limited to paths, hash prefixes are not granted.
        let parent = PathRule::everything().restrict(&role(&["a/"], &[]));
        assert!(
            parent
                .restrict(&role(&[], &[&digest[..2]]))
                .hash_prefixes
                .is_empty()
        );
    }
}
