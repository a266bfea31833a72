//! Helpers shared by the integration tests: test data paths, fixed clocks, and a small
//! in-memory "notary-server" that signs timestamps (and server-managed snapshots).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sigil_tuf::editor::{sign_snapshot, sign_timestamp};
use sigil_tuf::schema::{Root, Snapshot, peek_version};
use sigil_tuf::sign::testing::block_on;
use sigil_tuf::{CollectionFiles, Metadata, SignedCollection, Signer};

pub fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(data(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// 2026-11-22T00:00:00Z: the day after the notary fixtures were recorded.
pub fn fixture_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_305_600)
}

/// A whole-second clock for scenario tests (so expiries have no fraction).
pub fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 3600)
}

/// What notary-server holds for one collection: the current files, the timestamp key, and
/// (for server-managed snapshots) the snapshot key.
pub struct Server<'a> {
    pub root: Vec<u8>,
    pub roots: Vec<Vec<u8>>,
    pub targets: BTreeMap<String, Vec<u8>>,
    pub snapshot: Vec<u8>,
    pub timestamp: Vec<u8>,
    pub timestamp_signer: &'a dyn Signer,
    pub snapshot_signer: Option<&'a dyn Signer>,
}

impl<'a> Server<'a> {
    pub fn new(timestamp_signer: &'a dyn Signer, snapshot_signer: Option<&'a dyn Signer>) -> Self {
        Self {
            root: Vec::new(),
            roots: Vec::new(),
            targets: BTreeMap::new(),
            snapshot: Vec::new(),
            timestamp: Vec::new(),
            timestamp_signer,
            snapshot_signer,
        }
    }

    /// Accepts a publish the way notary-server does: store the files, make a snapshot if the
    /// client did not send one, and always a new timestamp.
    pub fn publish(&mut self, signed: &SignedCollection, now: SystemTime) {
        for (role, bytes) in signed.updates() {
            match role.as_str() {
                "root" => {
                    self.root = bytes.clone();
                    self.roots.push(bytes.clone());
                }
                "snapshot" => self.snapshot = bytes.clone(),
                _ => {
                    self.targets.insert(role.clone(), bytes.clone());
                }
            }
        }
        for gone in signed.removed() {
            self.targets.remove(gone);
        }
        if !signed.updates().contains_key("snapshot") {
            self.resign_snapshot(now);
        }
        self.resign_timestamp(now);
    }

    fn root_body(&self) -> Root {
        Metadata::<Root>::from_bytes("root", self.root.clone())
            .expect("root")
            .body()
            .clone()
    }

    pub fn resign_snapshot(&mut self, now: SystemTime) {
        let signer = self.snapshot_signer.expect("server holds the snapshot key");
        let mut files = self.targets.clone();
        files.insert("root".into(), self.root.clone());
        let version = if self.snapshot.is_empty() {
            1
        } else {
            peek_version(&self.snapshot).expect("version") + 1
        };
        let signed = block_on(sign_snapshot(
            &self.root_body(),
            &files,
            version,
            now,
            &[signer],
        ))
        .expect("server snapshot");
        self.snapshot = signed.to_vec().expect("bytes");
    }

    pub fn resign_timestamp(&mut self, now: SystemTime) {
        let version = if self.timestamp.is_empty() {
            1
        } else {
            peek_version(&self.timestamp).expect("version") + 1
        };
        let signed = block_on(sign_timestamp(
            &self.root_body(),
            &self.snapshot,
            version,
            now,
            &[self.timestamp_signer],
        ))
        .expect("server timestamp");
        self.timestamp = signed.to_vec().expect("bytes");
    }

    /// What a client downloads, given the root version it trusts.
    pub fn files(&self, trusted_root_version: u64) -> CollectionFiles {
        let mut delegations = self.targets.clone();
        let targets = delegations.remove("targets").expect("targets published");
        CollectionFiles {
            root_chain: self
                .roots
                .iter()
                .filter(|r| peek_version(r).is_some_and(|v| v > trusted_root_version))
                .cloned()
                .collect(),
            timestamp: self.timestamp.clone(),
            snapshot: self.snapshot.clone(),
            targets,
            delegations,
        }
    }

    pub fn snapshot_body(&self) -> Snapshot {
        Metadata::<Snapshot>::from_bytes("snapshot", self.snapshot.clone())
            .expect("snapshot")
            .body()
            .clone()
    }
}
