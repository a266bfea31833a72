//! timestamp.json: the length and hashes of the current snapshot. The server re-signs it
//! often, so a client learns quickly when it is being fed stale (frozen) metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::notary::TimestampTag;
use super::{Expires, Extra, FileMeta, Role};
use crate::error::{Error, Result};

/// The body of timestamp.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    /// `"_type": "Timestamp"`.
    #[serde(rename = "_type")]
    pub type_tag: TimestampTag,
    /// Expiry.
    pub expires: Expires,
    /// `snapshot` → length and hashes of snapshot.json.
    pub meta: BTreeMap<String, FileMeta>,
    /// Version.
    pub version: u64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Role for Timestamp {
    const TYPE: &'static str = TimestampTag::TEXT;

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> &Expires {
        &self.expires
    }
}

impl Timestamp {
    /// A timestamp pinning the snapshot file `snapshot` (its exact bytes).
    pub fn for_snapshot(version: u64, expires: Expires, snapshot: &[u8]) -> Self {
        let mut meta = BTreeMap::new();
        meta.insert("snapshot".to_owned(), FileMeta::from_bytes(snapshot));
        Self {
            type_tag: TimestampTag,
            expires,
            meta,
            version,
            extra: Extra::new(),
        }
    }

    /// The snapshot's listing.
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
