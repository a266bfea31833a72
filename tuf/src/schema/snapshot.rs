//! snapshot.json: the length and hashes of root, targets and every delegation file, so that a
//! client can only ever see one consistent set of them (no mix-and-match).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dialect::{Dialect, Notary, TypeTag, kind};
use super::notary;
use super::{Expires, Extra, RoleBody};
use crate::error::{Error, Result};

/// The body of snapshot.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Snapshot<D: Dialect = Notary> {
    /// `"_type"`: `Snapshot` or `snapshot`.
    #[serde(rename = "_type")]
    pub type_tag: TypeTag<D, kind::Snapshot>,
    /// The dialect's other header fields (`spec_version` in TUF 1.0).
    #[serde(flatten)]
    pub header: D::Header,
    /// Expiry.
    pub expires: Expires,
    /// Notary: role name (`root`, `targets`, `targets/...`) → length and hashes of its file.
    /// TUF 1.0: file name (`targets.json`, `ROLE.json`) → version (and optional length, hashes).
    pub meta: BTreeMap<String, D::MetaFile>,
    /// Version.
    pub version: u64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl<D: Dialect> RoleBody for Snapshot<D> {
    type Dialect = D;
    const TYPE: &'static str = D::SNAPSHOT_TYPE;

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> &Expires {
        &self.expires
    }
}

impl Snapshot {
    /// An empty Notary snapshot.
    pub fn new(version: u64, expires: Expires) -> Self {
        Self::new_in(Notary, version, expires)
    }
}

impl<D: Dialect> Snapshot<D> {
    /// An empty snapshot in dialect `D`.
    pub fn new_in(_: D, version: u64, expires: Expires) -> Self {
        Self {
            type_tag: TypeTag::new(),
            header: D::Header::default(),
            expires,
            meta: BTreeMap::new(),
            version,
            extra: Extra::new(),
        }
    }
}

impl Snapshot {
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
