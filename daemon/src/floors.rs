//! Version floors for `sign-metadata` (DESIGN §9): for each key — which has one GUN and one
//! role — the highest metadata version sigild has signed with it and the SHA-256 of those
//! bytes. Per key rather than per (GUN, role): a collection deleted and made again on
//! notary-server starts at version 1 with a new timestamp key, and a rotated key starts
//! fresh, while the key a client trusts can still never sign an older version. A request is admitted only above
//! the floor, or for the very same bytes again (a retry). The floor is raised — and written
//! durably to `state_dir/metadata-floors.json` — *before* the token signs: a crash between
//! the two leaves the floor raised with no signature out, which only costs a retry, whereas
//! the other order could hand out a signature the next start no longer knows about. Two
//! requests of one version with different bytes cannot both pass: the first raises the floor
//! under the lock before the second is checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, TryLockError};

use serde::{Deserialize, Serialize};

/// The file in the state dir.
pub const FILE_NAME: &str = "metadata-floors.json";

/// The floors and their file.
#[derive(Debug)]
pub struct Floors {
    path: PathBuf,
    floors: Mutex<BTreeMap<String, Floor>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Floor {
    gun: String,
    role: String,
    version: u64,
    sha256: [u8; 32],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    floors: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key_id: String,
    gun: String,
    role: String,
    version: u64,
    sha256: String,
}

/// Why a version is not admitted, or why the floor could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not above the floor.
    #[error("version {version} is not above version {floor}, the highest signed for {gun} {role}")]
    NotAbove {
        /// Asked.
        version: u64,
        /// Highest signed.
        floor: u64,
        /// GUN.
        gun: String,
        /// Role.
        role: String,
    },
    /// The floor's own version, with other bytes: two different documents of one version.
    #[error("version {version} of {gun} {role} was already signed with other content")]
    OtherContent {
        /// The version.
        version: u64,
        /// GUN.
        gun: String,
        /// Role.
        role: String,
    },
    /// The raised floor could not be written: nothing is signed.
    #[error("cannot record the version floor: {0}")]
    Unwritable(String),
}

impl Floors {
    /// Reads the floors kept in `dir` (none yet: empty). A file that does not parse stops
    /// sigild: starting without it would let every old version be signed again.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join(FILE_NAME);
        let mut floors = BTreeMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: FileFormat = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: not a floors file ({e})", path.display()))?;
                for e in file.floors {
                    let sha256 = hex::decode(&e.sha256)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| {
                            format!("{}: {:?} is not a SHA-256", path.display(), e.sha256)
                        })?;
                    floors.insert(
                        e.key_id,
                        Floor {
                            gun: e.gun,
                            role: e.role,
                            version: e.version,
                            sha256,
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        Ok(Self {
            path,
            floors: Mutex::new(floors),
        })
    }

    /// The highest version signed with `key_id`, if any.
    pub fn floor(&self, key_id: &str) -> Option<u64> {
        let floors = self.floors.lock().unwrap_or_else(|p| p.into_inner());
        floors.get(key_id).map(|f| f.version)
    }

    /// The verdict that needs no disk: `Some(Ok(()))` for the floor's own bytes again,
    /// `Some(Err(..))` for an older version or other bytes of the floor's version, `None` when
    /// the version is above the floor (only [`Self::admit`] may raise it) or when a raise is
    /// in progress. Never blocks — a raise holds the lock across its fsync — so the async
    /// runtime asks this first and goes to a blocking thread only for [`Self::admit`].
    pub fn check(
        &self,
        key_id: &str,
        gun: &str,
        role: &str,
        version: u64,
        sha256: &[u8; 32],
    ) -> Option<Result<(), Refusal>> {
        let floors = match self.floors.try_lock() {
            Ok(floors) => floors,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        decide(floors.get(key_id), gun, role, version, sha256)
    }

    /// Admits `version` with content hash `sha256` for the key `key_id` (of `gun` and `role`,
    /// named in messages and the file): the same bytes as the floor pass as they are; a higher
    /// version raises the floor and writes it before returning. Blocks on the disk: call it
    /// off the async runtime's threads.
    pub fn admit(
        &self,
        key_id: &str,
        gun: &str,
        role: &str,
        version: u64,
        sha256: [u8; 32],
    ) -> Result<(), Refusal> {
        let mut floors = self.floors.lock().unwrap_or_else(|p| p.into_inner());
        let key = key_id.to_owned();
        let previous = floors.get(&key).cloned();
        if let Some(verdict) = decide(previous.as_ref(), gun, role, version, &sha256) {
            return verdict;
        }
        floors.insert(
            key.clone(),
            Floor {
                gun: gun.to_owned(),
                role: role.to_owned(),
                version,
                sha256,
            },
        );
        if let Err(e) = self.write(&floors) {
            match previous {
                Some(f) => floors.insert(key, f),
                None => floors.remove(&key),
            };
            return Err(Refusal::Unwritable(e));
        }
        Ok(())
    }

    fn write(&self, floors: &BTreeMap<String, Floor>) -> Result<(), String> {
        let file = FileFormat {
            floors: floors
                .iter()
                .map(|(key_id, f)| Entry {
                    key_id: key_id.clone(),
                    gun: f.gun.clone(),
                    role: f.role.clone(),
                    version: f.version,
                    sha256: hex::encode(f.sha256),
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        crate::state_dir::write_private(&self.path, &bytes)
    }
}

/// What a request of `version` with `sha256` gets against the key's `floor`, when that can
/// be decided without raising it (see [`Floors::check`]).
fn decide(
    floor: Option<&Floor>,
    gun: &str,
    role: &str,
    version: u64,
    sha256: &[u8; 32],
) -> Option<Result<(), Refusal>> {
    match floor {
        Some(f) if f.version == version && f.sha256 == *sha256 => Some(Ok(())),
        Some(f) if f.version == version => Some(Err(Refusal::OtherContent {
            version,
            gun: gun.to_owned(),
            role: role.to_owned(),
        })),
        Some(f) if f.version > version => Some(Err(Refusal::NotAbove {
            version,
            floor: f.version,
            gun: gun.to_owned(),
            role: role.to_owned(),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rise_same_bytes_pass_and_the_floor_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let floors = Floors::open(dir.path()).expect("open");
        let admit = |key: &str, version, sha| floors.admit(key, "g", "timestamp", version, sha);
        admit("k1", 5, [1; 32]).expect("first");
        admit("k1", 5, [1; 32]).expect("same bytes again");
        let err = admit("k1", 5, [2; 32]).expect_err("other bytes");
        assert!(
            err.to_string()
                .contains("version 5 of g timestamp was already signed with other content"),
            "{err}"
        );
        let err = admit("k1", 4, [3; 32]).expect_err("older");
        assert!(err.to_string().contains("not above version 5"), "{err}");
        admit("k2", 1, [4; 32]).expect("a new key starts fresh");
        admit("k1", 9, [6; 32]).expect("higher");
        // The disk-free check agrees, and leaves a higher version to admit().
        assert!(matches!(
            floors.check("k1", "g", "timestamp", 9, &[6; 32]),
            Some(Ok(()))
        ));
        assert!(matches!(
            floors.check("k1", "g", "timestamp", 9, &[7; 32]),
            Some(Err(Refusal::OtherContent { .. }))
        ));
        assert!(matches!(
            floors.check("k1", "g", "timestamp", 3, &[6; 32]),
            Some(Err(Refusal::NotAbove { floor: 9, .. }))
        ));
        assert!(floors.check("k1", "g", "timestamp", 10, &[6; 32]).is_none());
        assert!(floors.check("k3", "g", "timestamp", 1, &[6; 32]).is_none());
        assert_eq!(floors.floor("k1"), Some(9), "check never raises");
        // While a raise holds the lock (across its fsync), check does not wait for it.
        let raising = floors.floors.lock().expect("lock");
        assert!(floors.check("k1", "g", "timestamp", 9, &[6; 32]).is_none());
        drop(raising);
        drop(floors);
        let again = Floors::open(dir.path()).expect("reopen");
        assert_eq!(again.floor("k1"), Some(9));
        assert_eq!(again.floor("k2"), Some(1));
        assert!(again.admit("k1", "g", "timestamp", 8, [7; 32]).is_err());
    }

    #[test]
    fn a_damaged_file_stops_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"{\"floors\":[{\"gun\":1}]}").expect("write");
        let err = Floors::open(dir.path()).expect_err("damaged");
        assert!(err.contains("not a floors file"), "{err}");
    }
}
