//! timestamp.json: the length and hashes of the current snapshot. The server re-signs it
//! often, so a client learns quickly when it is being fed stale (frozen) metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dialect::{Dialect, Notary, TypeTag, kind};
use super::{Expires, Extra, FileMeta, RoleBody};
use crate::error::{Error, Result};

/// The body of timestamp.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Timestamp<D: Dialect = Notary> {
    /// `"_type"`: `Timestamp` or `timestamp`.
    #[serde(rename = "_type")]
    pub type_tag: TypeTag<D, kind::Timestamp>,
    /// The dialect's other header fields (`spec_version` in TUF 1.0).
    #[serde(flatten)]
    pub header: D::Header,
    /// Expiry.
    pub expires: Expires,
    /// Notary: `snapshot` → length and hashes of snapshot.json. TUF 1.0: `snapshot.json` →
    /// its version (and optional length, hashes).
    pub meta: BTreeMap<String, D::MetaFile>,
    /// Version.
    pub version: u64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl<D: Dialect> RoleBody for Timestamp<D> {
    type Dialect = D;
    const TYPE: &'static str = D::TIMESTAMP_TYPE;

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> &Expires {
        &self.expires
    }
}

impl<D: Dialect> Timestamp<D> {
    /// A timestamp in dialect `D` listing the snapshot file under `name` (Notary: `snapshot`,
    /// TUF 1.0: `snapshot.json`).
    pub fn listing_in(_: D, version: u64, expires: Expires, name: &str, meta: D::MetaFile) -> Self {
        let mut listed = BTreeMap::new();
        listed.insert(name.to_owned(), meta);
        Self {
            type_tag: TypeTag::new(),
            header: D::Header::default(),
            expires,
            meta: listed,
            version,
            extra: Extra::new(),
        }
    }
}

impl Timestamp {
    /// A timestamp pinning the snapshot file `snapshot` (its exact bytes).
    pub fn for_snapshot(version: u64, expires: Expires, snapshot: &[u8]) -> Self {
        Self::listing_in(
            Notary,
            version,
            expires,
            "snapshot",
            FileMeta::from_bytes(snapshot),
        )
    }

    /// The Notary snapshot's listing.
    pub fn snapshot(&self) -> Option<&FileMeta> {
        self.meta.get("snapshot")
    }

    /// Checks: version ≥ 1 and a well-formed snapshot listing.
    pub fn validate(&self) -> Result<()> {
        let v = self.version;
        if v < 1 {
            return Err(Error::invalid("timestamp", v, "version must be at least 1"));
        }
        let Some(m) = self.snapshot() else {
            return Err(Error::invalid("timestamp", v, "snapshot is not listed"));
        };
        m.check_hashes_structure()
            .map_err(|e| Error::invalid("timestamp", v, format!("snapshot: {e}")))
    }
}
