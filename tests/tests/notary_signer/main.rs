//! sigild's notary-signer endpoint (issue 4) against the real Notary 0.7.0: an unchanged
//! notary-server keeps its timestamp and snapshot keys on sigild's SoftHSM token, the real
//! `notary` client publishes and verifies through it, the keys survive a restart, strangers are
//! refused at the TLS handshake, the endpoint cannot reach any other key, and its health
//! follows the token. What notary-server serves is checked again here with `p256`, and the
//! token is read directly, so no claim rests on sigild's own word.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sigil_e2e::notary::{
    AuditLine, CertKey, Handshake, NotaryClient, NotaryServer, ParkedToken, Pki, RoleKey,
    SERVER_CLIENT_CN, SERVER_HEALTH_PERIOD, SignedDoc, SignerApi, TrustService, Usage,
    connect_signer, daemon_key_id, free_port, notary_key_id, read_audit_lines, require_notary,
    verify_notary_signature, wait_mtls, write_sigild_config,
};
use sigil_e2e::{
    DAEMON_TIMEOUT, Daemon, DevDir, metadata, read_text, sha256_hex, token_inspect_exe,
};
use sigil_proto::sigil_v1 as v1;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

mod contract;
mod flow;
mod isolation;

/// The repository the real client publishes.
const GUN: &str = "e2e.example/notary-flow";
/// A second allowed client, named by a DNS SAN only (its CN is not allowed).
const SAN_CLIENT: &str = "san-client.e2e.invalid";
/// How long notary-server's health may take to follow the signer (its check runs every 10 s).
const SERVER_HEALTH_TIMEOUT: Duration = Duration::from_secs(35);
/// How long notary-server may take to reach a restarted signer (gRPC reconnect backoff).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(40);

/// A runtime for the gRPC parts of an otherwise blocking test (processes, HTTPS, the client).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// sigild on a fresh dev token with `[notary_signer]` on a free loopback port.
struct Signer {
    dev: DevDir,
    pki: Pki,
    port: u16,
    config: PathBuf,
    daemon: Option<Daemon>,
}

impl Signer {
    fn start(allowed: &[&str]) -> Self {
        require_notary();
        let dev = DevDir::new();
        dev.init();
        let pki = Pki::new(&dev.root().join("pki"), "sigil-e2e");
        let port = free_port();
        let config = write_sigild_config(&dev, port, &pki, allowed);
        let mut signer = Self {
            dev,
            pki,
            port,
            config,
            daemon: None,
        };
        signer.spawn();
        signer
    }

    fn spawn(&mut self) {
        let mut daemon = self.dev.sigild_config(&self.config).spawn();
        let stderr = daemon.stderr_path().to_owned();
        wait_mtls(
            self.port,
            &self.pki.ca(),
            &self.pki.client(),
            DAEMON_TIMEOUT,
            || daemon.is_running(),
            || read_text(&stderr),
        );
        self.daemon = Some(daemon);
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("sigild is running")
    }

    /// SIGTERM (it must exit cleanly), then a new sigild on the same config and token.
    fn restart(&mut self) {
        let daemon = self.daemon.take().expect("sigild is running");
        let status = daemon.stop();
        assert!(status.success(), "sigild exited {status} on SIGTERM");
        self.spawn();
    }

    /// A gRPC connection presenting `identity`.
    async fn api_as(&self, identity: &CertKey) -> SignerApi {
        connect_signer(self.port, &self.pki.ca(), Some(identity))
            .await
            .unwrap_or_else(|e| panic!("connecting to the notary-signer endpoint: {e:?}"))
    }

    /// A gRPC connection as notary-server's client identity.
    async fn api(&self) -> SignerApi {
        self.api_as(&self.pki.client()).await
    }

    fn audit(&self) -> Vec<AuditLine> {
        read_audit_lines(&self.dev.audit_log())
    }

    fn notary_server(&self) -> NotaryServer {
        NotaryServer::start(
            &self.dev.root().join("notary-server"),
            &self.pki,
            &TrustService::remote(self.port),
        )
    }
}

fn write_target(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    std::fs::create_dir_all(dir).expect("creating the targets dir");
    let content = format!("{name}: a target published through sigild's notary-signer endpoint\n");
    let path = dir.join(name);
    std::fs::write(&path, &content).expect("writing a target");
    (path, content.into_bytes())
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn sha256_b64(data: &[u8]) -> String {
    b64(&sigil_e2e::sha256(data))
}

/// What [`check_repository`] found.
struct Repository {
    timestamp_key: RoleKey,
    snapshot_key: RoleKey,
    timestamp: SignedDoc,
}

/// Fetches root, timestamp, snapshot and targets of [`GUN`] from notary-server and checks them
/// with our own verifier: every role signed by a key its root names, timestamp → snapshot →
/// targets hashes and lengths consistent with the served bytes, and exactly `expected` targets
/// with the right hashes.
fn check_repository(server: &NotaryServer, expected: &[(&str, &[u8])]) -> Repository {
    let root = SignedDoc::parse(&server.metadata(GUN, "root"));
    let timestamp_bytes = server.metadata(GUN, "timestamp");
    let snapshot_bytes = server.metadata(GUN, "snapshot");
    let targets_bytes = server.metadata(GUN, "targets");
    let timestamp = SignedDoc::parse(&timestamp_bytes);
    let snapshot = SignedDoc::parse(&snapshot_bytes);
    let targets = SignedDoc::parse(&targets_bytes);

    let timestamp_keys = root.role_keys("timestamp");
    let snapshot_keys = root.role_keys("snapshot");
    assert_eq!(timestamp_keys.len(), 1, "one timestamp key in root");
    assert_eq!(snapshot_keys.len(), 1, "one snapshot key in root");
    let timestamp_key = timestamp.verified_by(&timestamp_keys);
    let snapshot_key = snapshot.verified_by(&snapshot_keys);
    targets.verified_by(&root.role_keys("targets"));

    let meta = |doc: &SignedDoc, role: &str, bytes: &[u8]| {
        let entry = &doc.signed["meta"][role];
        assert_eq!(
            entry["hashes"]["sha256"].as_str(),
            Some(sha256_b64(bytes).as_str()),
            "{role} hash in {}",
            doc.signed
        );
        assert_eq!(entry["length"].as_u64(), Some(bytes.len() as u64));
    };
    meta(&timestamp, "snapshot", &snapshot_bytes);
    meta(&snapshot, "targets", &targets_bytes);

    let listed = targets.signed["targets"]
        .as_object()
        .expect("targets.targets is an object");
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "published targets"
    );
    for (name, content) in expected {
        assert_eq!(
            listed[*name]["hashes"]["sha256"].as_str(),
            Some(sha256_b64(content).as_str()),
            "hash of {name}"
        );
        assert_eq!(listed[*name]["length"].as_u64(), Some(content.len() as u64));
    }
    Repository {
        timestamp_key,
        snapshot_key,
        timestamp,
    }
}

/// `notary publish`, retried while notary-server's gRPC client reconnects to a restarted
/// signer (a failed publish keeps the changelist, so retrying is safe).
fn publish_retrying(client: &NotaryClient, server: &NotaryServer, timeout: Duration) {
    let started = Instant::now();
    loop {
        let out = client.run(&["publish", GUN]);
        if out.status.success() {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "notary publish kept failing for {timeout:?}:\n{}\n{}\nnotary-server log:\n{}",
            out.stdout,
            out.stderr,
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The PKI of the handshake tests: a client named by SAN only, one from our CA that is not
/// allowed, and a second CA whose client certificate even carries notary-server's CN.
struct Strangers {
    san_client: CertKey,
    intruder: CertKey,
    other_ca: Pki,
}

fn strangers(signer: &Signer) -> Strangers {
    let san_client = signer.pki.issue(
        "san-client",
        "not-an-allowed-cn",
        Usage::Client,
        &[&format!("DNS:{SAN_CLIENT}")],
    );
    let intruder = signer.pki.issue("intruder", "intruder", Usage::Client, &[]);
    let other_ca = Pki::new(&signer.dev.root().join("other-pki"), "other");
    Strangers {
        san_client,
        intruder,
        other_ca,
    }
}
