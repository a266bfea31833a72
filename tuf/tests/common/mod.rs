//! Helpers shared by the integration tests: test data paths, fixed clocks, and a small
//! in-memory "notary-server" that signs timestamps (and server-managed snapshots).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use sigil_tuf::editor::{sign_snapshot, sign_timestamp};
use sigil_tuf::schema::{Root, peek_version};
use sigil_tuf::sign::testing::{MemorySigner, block_on};
use sigil_tuf::verify::verify_collection;
use sigil_tuf::x509::{ROOT_CERT_LIFETIME, build_root_certificate};
use sigil_tuf::{
    CollectionEditor, CollectionFiles, CollectionKeys, FileMeta, Metadata, PriorVersions,
    RootTrust, SignedCollection, Signer, TufKey, VerifiedCollection,
};

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
#[derive(Clone)]
pub struct Server {
    pub root: Vec<u8>,
    pub roots: Vec<Vec<u8>>,
    pub targets: BTreeMap<String, Vec<u8>>,
    pub snapshot: Vec<u8>,
    pub timestamp: Vec<u8>,
    pub timestamp_signer: Arc<MemorySigner>,
    pub snapshot_signer: Option<Arc<MemorySigner>>,
}

impl Server {
    pub fn new(
        timestamp_signer: Arc<MemorySigner>,
        snapshot_signer: Option<Arc<MemorySigner>>,
    ) -> Self {
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

    pub fn root_body(&self) -> Root {
        Metadata::<Root>::from_bytes("root", self.root.clone())
            .expect("root")
            .body()
            .clone()
    }

    /// A new snapshot over the current files, signed by `signer` (the server's key unless an
    /// attacker's is given).
    pub fn snapshot_with(&mut self, signer: &dyn Signer, version: u64, now: SystemTime) {
        let mut files = self.targets.clone();
        files.insert("root".into(), self.root.clone());
        let signed = block_on(sign_snapshot(
            &self.root_body(),
            &files,
            version,
            now,
            &[signer],
        ))
        .expect("snapshot");
        self.snapshot = signed.to_vec().expect("bytes");
    }

    pub fn resign_snapshot(&mut self, now: SystemTime) {
        let signer = self
            .snapshot_signer
            .clone()
            .expect("server holds the snapshot key");
        let version = next_version(&self.snapshot);
        self.snapshot_with(signer.as_ref(), version, now);
    }

    pub fn timestamp_with(&mut self, version: u64, now: SystemTime) {
        let signer = self.timestamp_signer.clone();
        let signed = block_on(sign_timestamp(
            &self.root_body(),
            &self.snapshot,
            version,
            now,
            &[signer.as_ref() as &dyn Signer],
        ))
        .expect("server timestamp");
        self.timestamp = signed.to_vec().expect("bytes");
    }

    pub fn resign_timestamp(&mut self, now: SystemTime) {
        let version = next_version(&self.timestamp);
        self.timestamp_with(version, now);
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

    /// The first root: what a first-time client trusts.
    pub fn first_root(&self) -> Vec<u8> {
        self.roots.first().cloned().expect("published")
    }
}

fn next_version(file: &[u8]) -> u64 {
    if file.is_empty() {
        1
    } else {
        peek_version(file).expect("version") + 1
    }
}

pub const GUN: &str = "example.com/app";

/// A root certificate key for `GUN` on `signer`.
pub fn root_cert_key(signer: &MemorySigner, gun: &str, now: SystemTime) -> TufKey {
    let cert = block_on(build_root_certificate(gun, signer, now, ROOT_CERT_LIFETIME))
        .expect("root certificate");
    TufKey::from_certificate_pem(&cert.to_pem().expect("pem")).expect("x509 key")
}

pub fn bare(signer: &MemorySigner) -> TufKey {
    TufKey::from_public_key(signer.public_key())
}

/// The keys of a collection whose client holds root, targets and snapshot keys.
pub struct Keys {
    pub root: Arc<MemorySigner>,
    pub targets: Arc<MemorySigner>,
    pub snapshot: Arc<MemorySigner>,
    pub timestamp: Arc<MemorySigner>,
    pub root_key: TufKey,
}

impl Keys {
    pub fn new(now: SystemTime) -> Self {
        let root = Arc::new(MemorySigner::p256());
        let root_key = root_cert_key(&root, GUN, now);
        Self {
            root,
            targets: Arc::new(MemorySigner::p256()),
            snapshot: Arc::new(MemorySigner::p256()),
            timestamp: Arc::new(MemorySigner::p256()),
            root_key,
        }
    }

    pub fn collection_keys(&self) -> CollectionKeys {
        CollectionKeys {
            root: vec![self.root_key.clone()],
            targets: vec![bare(&self.targets)],
            snapshot: vec![bare(&self.snapshot)],
            timestamp: vec![bare(&self.timestamp)],
        }
    }

    /// The client's signers.
    pub fn client(&self) -> Vec<&dyn Signer> {
        vec![
            self.root.as_ref() as &dyn Signer,
            self.targets.as_ref(),
            self.snapshot.as_ref(),
        ]
    }

    pub fn server(&self) -> Server {
        Server::new(self.timestamp.clone(), None)
    }
}

/// A published collection with one target, `app.tar` = `b"app v1"`, and the client's
/// verified view of it.
pub fn published(keys: &Keys, now: SystemTime) -> (Server, VerifiedCollection) {
    let mut editor = CollectionEditor::create(GUN, &keys.collection_keys(), now).expect("create");
    editor
        .add_target("targets", "app.tar", FileMeta::from_bytes(b"app v1"))
        .expect("add");
    let signed = block_on(editor.sign(&keys.client())).expect("sign");
    let mut server = keys.server();
    server.publish(&signed, now);
    let c = verify(&server, None, now).expect("honest collection verifies");
    (server, c)
}

/// A client's walk: first use from the server's first root, or from a cached collection.
pub fn verify(
    server: &Server,
    cached: Option<&VerifiedCollection>,
    now: SystemTime,
) -> sigil_tuf::Result<VerifiedCollection> {
    match cached {
        None => verify_collection(
            GUN,
            server.first_root(),
            RootTrust::FirstUse,
            server.files(1),
            PriorVersions::default(),
            now,
        ),
        Some(c) => verify_collection(
            GUN,
            c.root().bytes().to_vec(),
            RootTrust::Cached,
            server.files(c.root().version()),
            c.prior_versions(),
            now,
        ),
    }
}

/// Edits a verified collection and publishes it.
pub fn republish(
    server: &mut Server,
    cached: &VerifiedCollection,
    signers: &[&dyn Signer],
    now: SystemTime,
    edit: impl FnOnce(&mut CollectionEditor),
) -> VerifiedCollection {
    let mut editor = CollectionEditor::from_collection(cached, now);
    edit(&mut editor);
    let signed = block_on(editor.sign(signers)).expect("sign");
    server.publish(&signed, now);
    verify(server, Some(cached), now).expect("re-published collection verifies")
}
