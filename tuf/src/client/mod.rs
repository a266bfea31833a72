//! A TUF 1.0 client (the specification's §5 client workflow) for repositories python-tuf,
//! go-tuf, tough and sigil publish:
//!
//! - [`TrustedSet`]: the metadata trusted so far and the checks each new file must pass before
//!   it joins it (signatures, thresholds, versions, hashes, expiry), with no IO at all;
//! - [`Store`]: the local metadata directory, written only with verified files under
//!   unversioned, file-system-safe names;
//! - [`Updater`]: the update walk (root chain, timestamp, snapshot, targets), the pre-order
//!   search through delegations and the artifact download with its cache, fetching through a
//!   [`Fetcher`] so the library never opens a socket.

mod names;
mod store;
mod trusted;
mod updater;

use async_trait::async_trait;

use crate::error::Result;

pub use names::{quote, target_file_name};
pub use store::Store;
pub use trusted::TrustedSet;
pub use updater::{TargetInfo, Updater};

/// The top-level targets role, the start of every target search.
pub const TOP_TARGETS: &str = "targets";
/// The role that delegates the top-level targets role.
pub const ROOT: &str = "root";

/// Gets repository files. Implementations stream the body and fail once it passes `max_len`
/// bytes, so a hostile server cannot fill memory (an endless-data attack).
#[async_trait]
pub trait Fetcher: Send {
    /// Fetches `name` (already URL-safe, e.g. `2.root.json` or `a/b/<sha256>.c.txt`) from the
    /// metadata base (`target == false`) or the targets base. `Ok(None)` when the server
    /// answers that it does not have the file (HTTP 403 or 404).
    async fn fetch(&mut self, name: &str, target: bool, max_len: u64) -> Result<Option<Vec<u8>>>;
}

/// Bounds on what the client accepts from a repository, as python-tuf's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Root versions fetched in one update (each rotation is verified one step at a time).
    pub max_root_rotations: u64,
    /// Delegated roles visited in one target search.
    pub max_delegations: usize,
    /// Largest root file.
    pub root_max_length: u64,
    /// Largest timestamp file.
    pub timestamp_max_length: u64,
    /// Largest snapshot file when timestamp does not list its length.
    pub snapshot_max_length: u64,
    /// Largest targets role file when snapshot does not list its length.
    pub targets_max_length: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_root_rotations: 256,
            max_delegations: 32,
            root_max_length: 512_000,
            timestamp_max_length: 16_384,
            snapshot_max_length: 2_000_000,
            targets_max_length: 5_000_000,
        }
    }
}
