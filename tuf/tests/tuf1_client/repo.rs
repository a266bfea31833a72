//! An in-memory TUF 1.0 repository signed with in-memory keys, served by a [`Fetcher`] that
//! records every request and enforces the length cap the client asks for (as the CLI's HTTP
//! fetcher does), and a client with temporary metadata and target directories.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use sigil_tuf::client::{Fetcher, Limits, Store, TargetInfo, Updater, quote};
use sigil_tuf::schema::tuf1::{self, Key, MetaFile, TargetFile, Tuf1};
use sigil_tuf::schema::{DelegatedRole, Delegations, Expires, RoleBody, RoleKeys, RoleType};
use sigil_tuf::sign::sign_role;
use sigil_tuf::sign::testing::{MemorySigner, block_on};
use sigil_tuf::{Error, Result, Signer};

pub(crate) type Signers = Vec<Arc<MemorySigner>>;

pub(crate) fn key(signer: &MemorySigner) -> Key {
    Key::from_public_key(signer.public_key())
}

pub(crate) fn days(n: u64) -> Expires {
    Expires::after_in(Tuf1, SystemTime::now(), Duration::from_secs(n * 86_400)).expect("expires")
}

/// Signs `body` with exactly `signers` (whatever the role's keys and threshold are).
pub(crate) fn sign<T: RoleBody<Dialect = Tuf1>>(
    role: &str,
    body: T,
    signers: &[Arc<MemorySigner>],
) -> Vec<u8> {
    let keys: Vec<(String, Key)> = signers.iter().map(|s| (key(s).id(), key(s))).collect();
    let refs: Vec<(&str, &Key)> = keys.iter().map(|(i, k)| (i.as_str(), k)).collect();
    let dyns: Vec<&dyn Signer> = signers.iter().map(|s| s.as_ref() as &dyn Signer).collect();
    let signed = block_on(sign_role(role, body, &refs, 1, &dyns)).expect("sign");
    signed.to_vec().expect("serialise")
}

/// The repository: role bodies, who signs them, and the files served.
#[derive(Clone)]
pub(crate) struct Repo {
    pub(crate) signers: BTreeMap<String, Signers>,
    pub(crate) root: tuf1::Root,
    pub(crate) targets: BTreeMap<String, tuf1::Targets>,
    pub(crate) snapshot: tuf1::Snapshot,
    pub(crate) timestamp: tuf1::Timestamp,
    pub(crate) served: BTreeMap<String, Vec<u8>>,
}

impl Repo {
    /// Root, targets, snapshot and timestamp at v1, one Ed25519 key each, consistent snapshots.
    pub(crate) fn new() -> Self {
        let mut root = tuf1::Root::new_in(Tuf1, 0, days(30));
        let mut signers = BTreeMap::new();
        for role in RoleType::ALL {
            let signer = Arc::new(MemorySigner::ed25519());
            root.set_role_keys(role, &[key(&signer)]);
            signers.insert(role.as_str().to_owned(), vec![signer]);
        }
        let mut targets = BTreeMap::new();
        targets.insert("targets".into(), tuf1::Targets::new_in(Tuf1, 0, days(30)));
        let mut repo = Self {
            signers,
            root,
            targets,
            snapshot: tuf1::Snapshot::new_in(Tuf1, 0, days(30)),
            timestamp: tuf1::Timestamp::for_snapshot_meta(0, days(30), MetaFile::new(1)),
            served: BTreeMap::new(),
        };
        repo.publish(&["root", "targets", "snapshot", "timestamp"]);
        repo
    }

    /// Bumps each role's version, signs it with its signers and serves it; snapshot and
    /// timestamp list what was published before them (with length and hashes).
    pub(crate) fn publish(&mut self, roles: &[&str]) {
        for role in roles {
            match *role {
                "root" => {
                    self.root.version += 1;
                    let signers = self.signers["root"].clone();
                    self.publish_root_signed_by(&signers);
                }
                "snapshot" => {
                    self.snapshot.version += 1;
                    let bytes = sign("snapshot", self.snapshot.clone(), &self.signers["snapshot"]);
                    let v = self.snapshot.version;
                    self.timestamp
                        .meta
                        .insert("snapshot.json".into(), MetaFile::with_bytes(v, &bytes));
                    self.served
                        .insert(format!("metadata/{v}.snapshot.json"), bytes.clone());
                    self.served.insert("metadata/snapshot.json".into(), bytes);
                }
                "timestamp" => {
                    self.timestamp.version += 1;
                    let bytes = sign(
                        "timestamp",
                        self.timestamp.clone(),
                        &self.signers["timestamp"],
                    );
                    self.served.insert("metadata/timestamp.json".into(), bytes);
                }
                role => {
                    let body = self.targets.get_mut(role).expect("targets role");
                    body.version += 1;
                    let (v, body) = (body.version, body.clone());
                    let bytes = sign(role, body, &self.signers[role]);
                    self.snapshot
                        .meta
                        .insert(format!("{role}.json"), MetaFile::with_bytes(v, &bytes));
                    self.served
                        .insert(format!("metadata/{v}.{}.json", quote(role)), bytes.clone());
                    self.served
                        .insert(format!("metadata/{}.json", quote(role)), bytes);
                }
            }
        }
    }

    /// Serves the current root (version unchanged) signed by `signers`.
    pub(crate) fn publish_root_signed_by(&mut self, signers: &[Arc<MemorySigner>]) {
        let bytes = sign("root", self.root.clone(), signers);
        self.served.insert(
            format!("metadata/{}.root.json", self.root.version),
            bytes.clone(),
        );
        self.served.insert("metadata/root.json".into(), bytes);
    }

    /// Replaces the keys of a top-level role by one new key (not yet published).
    pub(crate) fn rotate(&mut self, role: RoleType) -> Arc<MemorySigner> {
        let signer = Arc::new(MemorySigner::ed25519());
        self.root.set_role_keys(role, &[key(&signer)]);
        self.signers
            .insert(role.as_str().into(), vec![signer.clone()]);
        signer
    }

    /// Lists `content` as `path` in `role` and serves it as `<sha256>.<name>`.
    pub(crate) fn add_target(&mut self, role: &str, path: &str, content: &[u8]) {
        let file = TargetFile::from_bytes_in(Tuf1, content);
        self.targets
            .get_mut(role)
            .expect("role")
            .targets
            .insert(path.into(), file);
        let (dir, base) = path.rsplit_once('/').map_or(("", path), |(d, b)| (d, b));
        let sep = if dir.is_empty() { "" } else { "/" };
        let hash = hex::encode(Sha256::digest(content));
        self.served
            .insert(format!("targets/{dir}{sep}{hash}.{base}"), content.to_vec());
        self.served
            .insert(format!("targets/{path}"), content.to_vec());
    }

    /// Delegates `paths` (or, with `hash_prefixes`, those prefixes) from `parent` to a new role
    /// `name` with a new key; the role's body starts empty (publish it).
    pub(crate) fn delegate(
        &mut self,
        parent: &str,
        name: &str,
        paths: &[&str],
        terminating: bool,
    ) -> &mut DelegatedRole {
        let signer = Arc::new(MemorySigner::ed25519());
        let k = key(&signer);
        let mut role = DelegatedRole::new(
            name,
            vec![k.id()],
            1,
            paths.iter().map(|p| (*p).to_owned()).collect(),
        );
        role.terminating = Some(terminating);
        self.signers.insert(name.into(), vec![signer]);
        self.targets
            .entry(name.into())
            .or_insert_with(|| tuf1::Targets::new_in(Tuf1, 0, days(30)));
        let d = self
            .targets
            .get_mut(parent)
            .expect("parent")
            .delegations
            .get_or_insert_with(Delegations::default);
        d.keys.insert(k.id(), k);
        d.roles.push(role);
        d.roles.last_mut().expect("pushed")
    }

    pub(crate) fn set_threshold(&mut self, role: RoleType, threshold: u64) {
        let keys = self.root.roles.get_mut(role.as_str()).expect("role");
        *keys = RoleKeys::new(keys.keyids.clone(), threshold);
    }

    /// A fetcher over what is served now.
    pub(crate) fn fetcher(&self, log: &Log) -> MemFetcher {
        MemFetcher {
            served: Arc::new(self.served.clone()),
            log: log.clone(),
        }
    }
}

/// The requests made, as `metadata/NAME` and `targets/NAME`.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

pub(crate) struct MemFetcher {
    served: Arc<BTreeMap<String, Vec<u8>>>,
    log: Log,
}

#[async_trait]
impl Fetcher for MemFetcher {
    async fn fetch(&mut self, name: &str, target: bool, max_len: u64) -> Result<Option<Vec<u8>>> {
        let key = format!("{}/{name}", if target { "targets" } else { "metadata" });
        self.log.lock().expect("log").push(key.clone());
        match self.served.get(&key) {
            None => Ok(None),
            Some(bytes) if bytes.len() as u64 > max_len => Err(Error::Fetch {
                what: key,
                reason: format!("longer than {max_len}"),
            }),
            Some(bytes) => Ok(Some(bytes.clone())),
        }
    }
}

/// A client: metadata and target directories, initialised with the repository's root v1.
pub(crate) struct Client {
    pub(crate) home: tempfile::TempDir,
    pub(crate) log: Log,
    pub(crate) limits: Limits,
    pub(crate) now: SystemTime,
}

impl Client {
    pub(crate) fn new(repo: &Repo) -> Self {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(home.path().join("metadata")).expect("mkdir");
        std::fs::create_dir(home.path().join("targets")).expect("mkdir");
        std::fs::write(
            home.path().join("metadata/root.json"),
            &repo.served["metadata/1.root.json"],
        )
        .expect("root");
        Self {
            home,
            log: Log::default(),
            limits: Limits::default(),
            now: SystemTime::now(),
        }
    }

    pub(crate) fn metadata_dir(&self) -> PathBuf {
        self.home.path().join("metadata")
    }

    pub(crate) fn target_dir(&self) -> PathBuf {
        self.home.path().join("targets")
    }

    pub(crate) fn updater(&self, repo: &Repo) -> Result<Updater<MemFetcher>> {
        Updater::new(
            Store::new(self.metadata_dir()),
            repo.fetcher(&self.log),
            self.limits,
            self.now,
        )
    }

    /// One `refresh` run; the log is cleared first.
    pub(crate) fn refresh(&self, repo: &Repo) -> Result<()> {
        self.log.lock().expect("log").clear();
        block_on(self.updater(repo)?.refresh())
    }

    /// One `download` run for `paths`, in order, with one updater.
    pub(crate) fn download(&self, repo: &Repo, paths: &[&str]) -> Result<Vec<PathBuf>> {
        self.log.lock().expect("log").clear();
        let mut updater = self.updater(repo)?;
        let mut out = Vec::new();
        for path in paths {
            let info: TargetInfo =
                block_on(updater.target_info(path))?.ok_or_else(|| Error::TargetNotFound {
                    name: (*path).to_owned(),
                    reason: String::new(),
                })?;
            out.push(block_on(
                updater.download_target(&info, &self.target_dir()),
            )?);
        }
        Ok(out)
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// The version of the stored file of `role`, if any.
    pub(crate) fn version(&self, role: &str) -> Option<u64> {
        let bytes =
            std::fs::read(self.metadata_dir().join(format!("{}.json", quote(role)))).ok()?;
        sigil_tuf::schema::peek_version(&bytes)
    }

    pub(crate) fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.metadata_dir())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    pub(crate) fn downloaded(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.target_dir())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}
