//! A notary-server stand-in for the CLI tests: plain HTTP on 127.0.0.1 (a port picked free,
//! stopped when dropped) serving whatever metadata the test chose, honest or hostile, plus
//! the legitimate publisher simulated with in-memory keys (sigil-tuf's editor) and a `sigil`
//! client with its own trust dir and config. What is under test is the real `sigil` binary.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use sigil_tuf::editor::{sign_snapshot, sign_timestamp};
use sigil_tuf::sign::testing::{MemorySigner, block_on};
use sigil_tuf::verify::verify_collection;
use sigil_tuf::x509::{ROOT_CERT_LIFETIME, build_root_certificate};
use sigil_tuf::{
    CollectionEditor, CollectionFiles, CollectionKeys, FileMeta, Metadata, PriorVersions,
    RootTrust, Signer, TufKey, VerifiedCollection,
};

pub const GUN: &str = "hostile.example/app";
pub const RELEASES: &str = "targets/releases";

/// What the server answers for one path.
#[derive(Clone)]
pub enum Reply {
    /// These bytes, with a Content-Length.
    Bytes(Vec<u8>),
    /// Chunked, no Content-Length, 64 KiB chunks until the client gives up.
    Endless,
    /// Chunked, one small chunk every 200 ms, forever.
    Trickle,
}

/// Tail after `_trust/tuf/` → reply. Unknown tails get notary's 404 envelope.
type Routes = Arc<Mutex<BTreeMap<String, Reply>>>;

/// A hostile notary-server on 127.0.0.1.
pub struct HostileServer {
    port: u16,
    routes: Routes,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HostileServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let routes: Routes = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (routes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (r, s) = (r.clone(), s.clone());
                        std::thread::spawn(move || answer(stream, &r, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            routes,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, tail: &str, reply: Reply) {
        self.routes
            .lock()
            .expect("lock")
            .insert(tail.to_owned(), reply);
    }

    /// Serves `files` (role → bytes) by name and by content hash, and nothing else.
    pub fn serve(&self, files: &BTreeMap<String, Vec<u8>>) {
        let mut routes = self.routes.lock().expect("lock");
        routes.clear();
        for (role, bytes) in files {
            let hex = sigil_e2e::sha256_hex(bytes);
            routes.insert(format!("{role}.json"), Reply::Bytes(bytes.clone()));
            routes.insert(format!("{role}.{hex}.json"), Reply::Bytes(bytes.clone()));
        }
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut stream: TcpStream, routes: &Mutex<BTreeMap<String, Reply>>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let tail = path
        .split_once("/_trust/tuf/")
        .map_or("", |(_, tail)| tail)
        .to_owned();
    let reply = routes.lock().expect("lock").get(&tail).cloned();
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    match reply {
        Some(Reply::Bytes(body)) => {
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(&body);
        }
        Some(Reply::Endless) => {
            let _ = stream.write_all(chunked.as_bytes());
            let chunk = vec![b'{'; 64 * 1024];
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            while !stop.load(Ordering::SeqCst) && stream.write_all(&frame).is_ok() {}
        }
        Some(Reply::Trickle) => {
            let _ = stream.write_all(chunked.as_bytes());
            while !stop.load(Ordering::SeqCst) && stream.write_all(b"1\r\n{\r\n").is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        None => {
            let body = br#"{"errors":[{"code":"METADATA_NOT_FOUND","message":"You have requested metadata that does not exist.","detail":{}}]}"#;
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(body);
        }
    }
}

/// The collection's publisher (root, targets, snapshot keys) and the server's timestamp key,
/// and the files as published so far.
pub struct Publisher {
    pub root: MemorySigner,
    pub targets: MemorySigner,
    pub snapshot: MemorySigner,
    pub timestamp: MemorySigner,
    pub releases: MemorySigner,
    pub files: BTreeMap<String, Vec<u8>>,
    pub verified: Option<VerifiedCollection>,
    pub timestamp_version: u64,
}

impl Publisher {
    pub fn new() -> Self {
        Self {
            root: MemorySigner::p256(),
            targets: MemorySigner::p256(),
            snapshot: MemorySigner::p256(),
            timestamp: MemorySigner::p256(),
            releases: MemorySigner::p256(),
            files: BTreeMap::new(),
            verified: None,
            timestamp_version: 0,
        }
    }

    pub fn signers(&self) -> Vec<&dyn Signer> {
        vec![&self.root, &self.targets, &self.snapshot, &self.releases]
    }

    pub fn bare(s: &MemorySigner) -> TufKey {
        TufKey::from_public_key(s.public_key())
    }

    /// Applies `edit` to the collection (a new one the first time), signs and publishes it.
    pub fn publish(&mut self, edit: impl FnOnce(&mut CollectionEditor, &TufKey)) {
        let now = SystemTime::now();
        let mut editor = match &self.verified {
            Some(v) => CollectionEditor::from_collection(v, now),
            None => {
                let cert = block_on(build_root_certificate(
                    GUN,
                    &self.root,
                    now,
                    ROOT_CERT_LIFETIME,
                ))
                .expect("root certificate");
                let keys = CollectionKeys {
                    root: vec![
                        TufKey::from_certificate_pem(&cert.to_pem().expect("pem")).expect("key"),
                    ],
                    targets: vec![Self::bare(&self.targets)],
                    snapshot: vec![Self::bare(&self.snapshot)],
                    timestamp: vec![Self::bare(&self.timestamp)],
                };
                CollectionEditor::create(GUN, &keys, now).expect("create")
            }
        };
        edit(&mut editor, &Self::bare(&self.releases));
        let signed = block_on(editor.sign(&self.signers())).expect("sign");
        for (role, bytes) in signed.updates() {
            self.files.insert(role.clone(), bytes.clone());
        }
        for gone in signed.removed() {
            self.files.remove(gone);
        }
        self.resign_timestamp();
        let mut delegations = self.files.clone();
        delegations.retain(|role, _| role.starts_with("targets/"));
        let verified = verify_collection(
            GUN,
            self.files["root"].clone(),
            RootTrust::FirstUse,
            CollectionFiles {
                root_chain: Vec::new(),
                timestamp: self.files["timestamp"].clone(),
                snapshot: self.files["snapshot"].clone(),
                targets: self.files["targets"].clone(),
                delegations,
            },
            PriorVersions::default(),
            now,
        )
        .expect("the publisher's collection verifies");
        self.verified = Some(verified);
    }

    /// What a server holding the snapshot and timestamp keys can do: a fresh snapshot over
    /// `files` (root, targets and delegations) and a fresh timestamp over it.
    pub fn resign_snapshot(&mut self, files: &BTreeMap<String, Vec<u8>>) {
        let root = self.root_body();
        let mut listed = files.clone();
        listed.retain(|role, _| !matches!(role.as_str(), "snapshot" | "timestamp"));
        let version = sigil_tuf::schema::peek_version(&self.files["snapshot"]).expect("v") + 1;
        let snapshot = block_on(sign_snapshot(
            &root,
            &listed,
            version,
            SystemTime::now(),
            &[&self.snapshot as &dyn Signer],
        ))
        .expect("snapshot");
        self.files = files.clone();
        self.files
            .insert("snapshot".into(), snapshot.to_vec().expect("bytes"));
        self.resign_timestamp();
    }

    pub fn resign_timestamp(&mut self) {
        self.resign_timestamp_at(SystemTime::now());
    }

    /// A new timestamp signed as at `now` (it expires 14 days after that).
    pub fn resign_timestamp_at(&mut self, now: SystemTime) {
        self.timestamp_version += 1;
        let root = self.root_body();
        let ts = block_on(sign_timestamp(
            &root,
            &self.files["snapshot"],
            self.timestamp_version,
            now,
            &[&self.timestamp as &dyn Signer],
        ))
        .expect("timestamp");
        self.files
            .insert("timestamp".into(), ts.to_vec().expect("bytes"));
    }

    pub fn root_body(&self) -> sigil_tuf::schema::Root {
        Metadata::<sigil_tuf::schema::Root>::from_bytes("root", self.files["root"].clone())
            .expect("root")
            .body()
            .clone()
    }
}

/// A `sigil` client with its own trust dir and config file (and HOME, so no user config leaks
/// in).
pub struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.json"), config).expect("config");
        Self { dir }
    }

    pub fn trust(&self) -> PathBuf {
        self.dir.path().join("trust")
    }

    pub fn cached(&self, role: &str) -> PathBuf {
        self.trust()
            .join("tuf")
            .join(GUN)
            .join("metadata")
            .join(format!("{role}.json"))
    }

    pub fn run(&self, server: &HostileServer, args: &[&str]) -> (Output, Duration) {
        let started = Instant::now();
        let out = Command::new(sigil_e2e::sigil_cli())
            .env("HOME", self.dir.path())
            .args(["-s", &server.url(), "-d"])
            .arg(self.trust())
            .arg("-c")
            .arg(self.dir.path().join("config.json"))
            .args(args)
            .output()
            .expect("run sigil");
        (out, started.elapsed())
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A published collection with `app.tar`, served honestly.
pub fn honest() -> (HostileServer, Publisher) {
    let server = HostileServer::start();
    let mut publisher = Publisher::new();
    publisher.publish(|e, _| {
        e.add_target("targets", "app.tar", FileMeta::from_bytes(b"app"))
            .expect("add")
    });
    server.serve(&publisher.files);
    (server, publisher)
}
