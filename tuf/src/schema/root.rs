//! root.json: the keys of the collection and which of them (and how many) sign each top-level
//! role. Everything else a client trusts follows from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dialect::{Dialect, MetadataKey, Notary, TypeTag, kind};
use super::{Expires, Extra, RoleBody, RoleType};
use crate::error::{Error, Result};

/// The keys and threshold of one top-level role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// TUF key ids, each present in [`Root::keys`].
    pub keyids: Vec<String>,
    /// Distinct valid signatures required.
    pub threshold: u64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl RoleKeys {
    /// A role signed by `keyids`, `threshold` of them required.
    pub fn new(keyids: Vec<String>, threshold: u64) -> Self {
        Self {
            keyids,
            threshold,
            extra: Extra::new(),
        }
    }
}

/// The body of root.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Root<D: Dialect = Notary> {
    /// `"_type"`: `Root` (Notary) or `root` (TUF 1.0).
    #[serde(rename = "_type")]
    pub type_tag: TypeTag<D, kind::Root>,
    /// The dialect's other header fields (`spec_version` in TUF 1.0).
    #[serde(flatten)]
    pub header: D::Header,
    /// Notary always writes `false`: it fetches by hash, not by versioned name. sigil's
    /// TUF 1.0 repositories write `true` (`N.ROLE.json` file names).
    pub consistent_snapshot: bool,
    /// Expiry.
    pub expires: Expires,
    /// Every key of every top-level role, by TUF key id.
    pub keys: BTreeMap<String, D::Key>,
    /// `root`, `targets`, `snapshot`, `timestamp` → keys and threshold.
    pub roles: BTreeMap<String, RoleKeys>,
    /// Version.
    pub version: u64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl<D: Dialect> RoleBody for Root<D> {
    type Dialect = D;
    const TYPE: &'static str = D::ROOT_TYPE;

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> &Expires {
        &self.expires
    }
}

impl Root {
    /// An empty Notary root (no keys, no roles) at `version`.
    pub fn new(version: u64, expires: Expires) -> Self {
        Self::new_in(Notary, version, expires)
    }
}

impl<D: Dialect> Root<D> {
    /// An empty root (no keys, no roles) at `version` in dialect `D`, with the dialect's
    /// header and `consistent_snapshot` choice.
    pub fn new_in(_: D, version: u64, expires: Expires) -> Self {
        Self {
            type_tag: TypeTag::new(),
            header: D::Header::default(),
            consistent_snapshot: D::CONSISTENT_SNAPSHOT,
            expires,
            keys: BTreeMap::new(),
            roles: BTreeMap::new(),
            version,
            extra: Extra::new(),
        }
    }

    /// The keys and threshold of a top-level role.
    pub fn role(&self, role: RoleType) -> Option<&RoleKeys> {
        self.roles.get(role.as_str())
    }

    /// The keys of a top-level role, with their ids, in the order root lists them. Ids listed
    /// without a key are skipped ([`Root::validate`] refuses them).
    pub fn role_keys(&self, role: RoleType) -> Vec<(&str, &D::Key)> {
        self.role(role)
            .map(|r| {
                r.keyids
                    .iter()
                    .filter_map(|id| self.keys.get(id).map(|k| (id.as_str(), k)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replaces the keys of a top-level role, keeping its threshold (1 for a new role), and
    /// drops keys no role uses any more.
    pub fn set_role_keys(&mut self, role: RoleType, keys: &[D::Key]) {
        let ids: Vec<String> = keys.iter().map(MetadataKey::key_id).collect();
        for key in keys {
            self.keys.insert(key.key_id(), key.clone());
        }
        let entry = self
            .roles
            .entry(role.as_str().to_owned())
            .or_insert_with(|| RoleKeys::new(Vec::new(), 1));
        entry.keyids = ids;
        let used: std::collections::BTreeSet<&String> =
            self.roles.values().flat_map(|r| r.keyids.iter()).collect();
        self.keys.retain(|id, _| used.contains(id));
    }
}

impl Root {
    /// Checks Notary's structural rules: version ≥ 1, all four roles present with threshold ≥ 1,
    /// every listed key id present, and every key stored under its own id.
    pub fn validate(&self) -> Result<()> {
        let v = self.version;
        if v < 1 {
            return Err(Error::invalid("root", v, "version must be at least 1"));
        }
        for (id, key) in &self.keys {
            if key.id() != *id {
                return Err(Error::invalid(
                    "root",
                    v,
                    format!("key listed as {id} has id {}", key.id()),
                ));
            }
        }
        for role in RoleType::ALL {
            let Some(r) = self.role(role) else {
                return Err(Error::invalid("root", v, format!("no {role} role")));
            };
            if r.threshold < 1 {
                return Err(Error::invalid(
                    "root",
                    v,
                    format!("{role} threshold must be at least 1"),
                ));
            }
            if let Some(missing) = r.keyids.iter().find(|id| !self.keys.contains_key(*id)) {
                return Err(Error::invalid(
                    "root",
                    v,
                    format!("{role} lists key {missing} that root does not define"),
                ));
            }
        }
        Ok(())
    }
}
