//! snapshot.json: the length and hashes of root, targets and every delegation file, so that a
//! client can only ever see one consistent set of them (no mix-and-match).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::notary::{self, SnapshotTag};
use super::{Expires, Extra, FileMeta, Role};
use crate::error::{Error, Result};

/// The body of snapshot.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `"_type": "Snapshot"`.
    #[serde(rename = "_type")]
    pub type_tag: SnapshotTag,
    /// Expiry.
    pub expires: Expires,
    /// Role name (`root`, `targets`, `targets/...`) → length and hashes of its file.
    pub meta: BTreeMap<String, FileMeta>,
    /// Version.
    pub version: u64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Role for Snapshot {
    const TYPE: &'static str = SnapshotTag::TEXT;

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> &Expires {
        &self.expires
    }
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new(version: u64, expires: Expires) -> Self {
        Self {
            type_tag: SnapshotTag,
            expires,
            meta: BTreeMap::new(),
            version,
            extra: Extra::new(),
        }
    }

    /// Checks Notary's rules: version ≥ 1, root and targets listed with a sha256, and every
    /// entry's hashes well formed.
    pub fn validate(&self) -> Result<()> {
        let v = self.version;
        if v < 1 {
            return Err(Error::invalid("snapshot", v, "version must be at least 1"));
        }
        for role in ["root", "targets"] {
            match self.meta.get(role) {
                Some(m) if m.hashes.contains_key(notary::SHA256) => {}
                _ => {
                    return Err(Error::invalid(
                        "snapshot",
                        v,
                        format!("no sha256 listed for {role}"),
                    ));
                }
            }
        }
        for (role, m) in &self.meta {
            m.check_hashes_structure()
                .map_err(|e| Error::invalid("snapshot", v, format!("{role}: {e}")))?;
        }
        Ok(())
    }
}
