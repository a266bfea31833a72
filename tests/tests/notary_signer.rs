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

/// Tests 1, 2 and 3 of the issue, in one story because each builds on the last:
///
/// 1. notary-server with `trust_service.type = "remote"` pointing at sigild (no notary-signer
///    anywhere) is healthy after its first "Trust operational" check, and the real `notary`
///    client runs init, add, publish, list, `key rotate … snapshot -r`, add, publish, list.
///    What the server serves is then verified independently: every role's signature, the
///    hash chain timestamp → snapshot → targets, and the published targets.
/// 2. The timestamp and snapshot keys root names are sigild's (GetKeyInfo returns the same
///    public keys) and sit on the SoftHSM token as sensitive, never-extractable private keys
///    labelled `sigil-notary:<role>:<gun>`; every signature sigild made is in its audit log
///    with notary-server's certificate identity, including the ones behind the served
///    timestamp and snapshot.
/// 3. After a sigild restart, notary-server signs fresh timestamps with the same key id and
///    the client still verifies.
#[test]
fn real_notary_server_and_client_work_through_sigild_and_survive_its_restart() {
    let mut signer = Signer::start(&[SERVER_CLIENT_CN]);
    let rt = runtime();
    let server = signer.notary_server();
    // Readiness: makes notary-server call CreateKey at once (its health check waits 10 s).
    let probe = server.wait_server_key("e2e.example/probe", "timestamp", RECONNECT_TIMEOUT);
    assert_eq!(probe["keytype"], "ecdsa", "{probe}");

    // 1. The real client, end to end.
    let client = server.client(&signer.dev.root().join("notary-client"));
    let files = signer.dev.root().join("files");
    let (first, first_bytes) = write_target(&files, "first");
    let (second, second_bytes) = write_target(&files, "second");
    let (third, third_bytes) = write_target(&files, "third");
    let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    client.ok(&["init", GUN, "-p"]);
    client.ok(&["add", GUN, "first", &path(&first)]);
    client.ok(&["publish", GUN]);
    let listed = client.ok(&["list", GUN]);
    assert!(listed.contains("first"), "notary list:\n{listed}");
    let before_rotation = check_repository(&server, &[("first", &first_bytes)]);
    client.ok(&["key", "rotate", GUN, "snapshot", "-r"]);
    client.ok(&["add", GUN, "second", &path(&second)]);
    client.ok(&["publish", GUN]);
    let listed = client.ok(&["list", GUN]);
    assert!(
        listed.contains("first") && listed.contains("second"),
        "notary list:\n{listed}"
    );
    let repo = check_repository(
        &server,
        &[("first", &first_bytes), ("second", &second_bytes)],
    );
    assert_eq!(
        repo.timestamp_key, before_rotation.timestamp_key,
        "the timestamp key did not change"
    );
    assert_ne!(
        repo.snapshot_key, before_rotation.snapshot_key,
        "`key rotate snapshot -r` gave the snapshot key to the server"
    );

    // 2. Those server-managed keys are sigild's, on the token, and every use is audited.
    rt.block_on(async {
        let mut api = signer.api().await;
        for (key, role) in [
            (&repo.timestamp_key, "timestamp"),
            (&repo.snapshot_key, "snapshot"),
        ] {
            let info = api
                .key_info(&key.id)
                .await
                .unwrap_or_else(|s| panic!("GetKeyInfo {role} {}: {s:?}", key.id));
            assert_eq!(info.public_key, key.public, "{role} public key");
            assert_eq!(info.role, role);
            let key_info = info.key_info.expect("keyInfo");
            assert_eq!(key_info.key_id.expect("keyID").id, key.id);
            assert_eq!(key_info.algorithm.expect("algorithm").algorithm, "ecdsa");
        }
    });
    let report = signer.dev.inspect_token(token_inspect_exe!());
    for (key, role) in [
        (&repo.timestamp_key, "timestamp"),
        (&repo.snapshot_key, "snapshot"),
    ] {
        let daemon_id = sha256_hex(&key.public);
        let private = report.key(&daemon_id).unwrap_or_else(|| {
            panic!("no private key for the {role} key {daemon_id} on the token: {report:?}")
        });
        assert_eq!(private.label, format!("sigil-notary:{role}:{GUN}"));
        assert_eq!(private.key_type, "CKK_EC", "{private:?}");
        for (flag, want) in [
            ("Sensitive", true),
            ("AlwaysSensitive", true),
            ("Extractable", false),
            ("NeverExtractable", true),
            ("Local", true),
            ("Token", true),
        ] {
            assert_eq!(private.flag(flag), want, "{role} key: {flag}");
        }
        assert!(
            private.secret_values_returned.is_empty(),
            "the token gave out {:?} of the {role} key",
            private.secret_values_returned
        );
        assert_eq!(
            private.secret_attributes.get("Value").map(String::as_str),
            Some("sensitive"),
            "{role} key: CKA_VALUE"
        );
    }
    let key_ids = [
        sha256_hex(&repo.timestamp_key.public),
        sha256_hex(&repo.snapshot_key.public),
        sha256_hex(&before_rotation.timestamp_key.public),
    ];
    let audit = signer.audit();
    let signs: Vec<&AuditLine> = audit.iter().filter(|l| l.op == "sign").collect();
    assert!(signs.len() >= 3, "signatures audited: {signs:#?}");
    for line in &signs {
        assert_eq!(line.client.as_deref(), Some(SERVER_CLIENT_CN), "{line:?}");
        assert_eq!(
            (line.uid, line.gid, line.pid),
            (None, None, None),
            "{line:?}"
        );
        assert_eq!(line.outcome, "ok", "{line:?}");
        assert_eq!(line.gun, GUN, "{line:?}");
        assert!(key_ids.contains(&line.key_id), "{line:?}");
    }
    for (doc, key) in [
        (&repo.timestamp, &repo.timestamp_key),
        (
            &SignedDoc::parse(&server.metadata(GUN, "snapshot")),
            &repo.snapshot_key,
        ),
    ] {
        let digest = sha256_hex(&doc.signed_bytes);
        assert!(
            signs
                .iter()
                .any(|l| l.sha256.as_deref() == Some(digest.as_str())
                    && l.key_id == sha256_hex(&key.public)),
            "no audited signature over the served document {digest}"
        );
    }
    let generated: Vec<&AuditLine> = audit.iter().filter(|l| l.op == "generate").collect();
    assert!(
        generated.len() >= 3,
        "probe timestamp, timestamp, snapshot: {generated:#?}"
    );
    for line in &generated {
        assert_eq!(line.client.as_deref(), Some(SERVER_CLIENT_CN), "{line:?}");
        assert_eq!(line.outcome, "ok", "{line:?}");
        assert!(matches!(line.role.as_str(), "timestamp" | "snapshot"));
    }

    // notary-server's own health endpoint, once its first signer check has run.
    if let Some(wait) =
        (SERVER_HEALTH_PERIOD + Duration::from_secs(2)).checked_sub(server.started().elapsed())
    {
        std::thread::sleep(wait);
    }
    let health = server.health();
    assert_eq!(
        (health.status, health.text().trim()),
        (200, "{}"),
        "notary-server health"
    );

    // 3. Restart sigild: the keys are rebuilt from the token, and notary-server signs a fresh
    //    timestamp with the same key once it has reconnected.
    let pid_before = signer.daemon().pid();
    signer.restart();
    assert_ne!(signer.daemon().pid(), pid_before);
    rt.block_on(async {
        let mut api = signer.api().await;
        for key in [&repo.timestamp_key, &repo.snapshot_key] {
            let info = api
                .key_info(&key.id)
                .await
                .unwrap_or_else(|s| panic!("GetKeyInfo {} after restart: {s:?}", key.id));
            assert_eq!(info.public_key, key.public);
        }
    });
    client.ok(&["add", GUN, "third", &path(&third)]);
    publish_retrying(&client, &server, RECONNECT_TIMEOUT);
    let listed = client.ok(&["list", GUN]);
    assert!(listed.contains("third"), "notary list:\n{listed}");
    let after = check_repository(
        &server,
        &[
            ("first", &first_bytes),
            ("second", &second_bytes),
            ("third", &third_bytes),
        ],
    );
    assert!(
        after.timestamp.version() > repo.timestamp.version(),
        "a fresh timestamp: version {} after {}",
        after.timestamp.version(),
        repo.timestamp.version()
    );
    assert_eq!(
        after.timestamp_key.id, repo.timestamp_key.id,
        "same timestamp key id"
    );
    assert_eq!(
        after.snapshot_key.id, repo.snapshot_key.id,
        "same snapshot key id"
    );
    let digest = sha256_hex(&after.timestamp.signed_bytes);
    assert!(
        signer
            .audit()
            .iter()
            .any(|l| l.op == "sign" && l.sha256.as_deref() == Some(digest.as_str())),
        "the fresh timestamp's signature is audited"
    );
    server.wait_health(true, SERVER_HEALTH_TIMEOUT);
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

/// Test 4: who gets in, and what they can reach.
///
/// - A client certificate from another CA (even with notary-server's CN) or none at all is
///   refused at the TLS handshake, with TLS 1.2 and 1.3, and a gRPC client gets nowhere; the
///   allowed identities complete the handshake.
/// - A certificate from the right CA whose names are not in `allowed_clients` gets
///   PERMISSION_DENIED; a client allowed by its SAN alone gets in.
/// - Root, targets and delegation keys generated through the Unix-socket API do not exist for
///   the endpoint: GetKeyInfo, Sign and DeleteKey by daemon key id or by Notary key id are all
///   NOT_FOUND, CreateKey refuses those roles, and the keys are untouched afterwards.
#[test]
fn strangers_are_refused_and_no_other_key_is_reachable() {
    let signer = Signer::start(&[SERVER_CLIENT_CN, SAN_CLIENT]);
    let who = strangers(&signer);
    let ca = signer.pki.ca();
    let allowed = signer.pki.client();
    let foreign = who.other_ca.client();
    for (name, versions) in [
        ("TLS 1.2", &[&rustls::version::TLS12][..]),
        ("TLS 1.3", &[&rustls::version::TLS13][..]),
    ] {
        for (label, identity) in [
            ("allowed client", &allowed),
            ("SAN client", &who.san_client),
        ] {
            assert_eq!(
                sigil_e2e::notary::tls_handshake(signer.port, &ca, Some(identity), versions),
                Handshake::Accepted,
                "{name}: {label}"
            );
        }
        for (label, identity) in [("other CA", Some(&foreign)), ("no certificate", None)] {
            let outcome = sigil_e2e::notary::tls_handshake(signer.port, &ca, identity, versions);
            assert!(
                matches!(outcome, Handshake::Refused(_)),
                "{name}: {label} was not refused: {outcome:?}"
            );
        }
    }
    let audited_before = signer.audit().len();

    let rt = runtime();
    rt.block_on(async {
        // gRPC over the refused handshakes: nothing gets through.
        for (label, identity) in [("other CA", Some(&foreign)), ("no certificate", None)] {
            let outcome = match connect_signer(signer.port, &ca, identity).await {
                Err(e) => format!("connect: {e:?}"),
                Ok(mut api) => match api.key_info(&"0".repeat(64)).await {
                    Ok(answer) => panic!("{label}: GetKeyInfo answered {answer:?}"),
                    Err(status) => {
                        assert!(
                            matches!(status.code(), Code::Unavailable | Code::Unknown),
                            "{label}: {status:?}"
                        );
                        format!("{status:?}")
                    }
                },
            };
            assert!(!outcome.is_empty());
        }

        // Right CA, wrong name: PERMISSION_DENIED on every RPC, naming the certificate.
        let mut intruder = signer.api_as(&who.intruder).await;
        let denied = intruder
            .create_key("ecdsa", "timestamp", GUN)
            .await
            .expect_err("an intruder's CreateKey");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        assert!(denied.message().contains("intruder"), "{denied:?}");
        let denied = intruder
            .sign(&"0".repeat(64), b"{}")
            .await
            .expect_err("an intruder's Sign");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

        // Keys of every other role, made through the Unix socket.
        let mut local = signer.daemon.as_ref().expect("running").client().await;
        let mut daemon_keys = Vec::new();
        for role in ["root", "targets", "targets/releases"] {
            daemon_keys.push((
                role,
                local.generate(role, GUN, v1::Algorithm::EcdsaP256).await,
            ));
        }
        let mut api = signer.api().await;
        let mut san = signer.api_as(&who.san_client).await;
        for (role, key) in &daemon_keys {
            let ids = [key.key_id.clone(), notary_key_id("ecdsa", &key.spki_der)];
            for id in &ids {
                for endpoint in [&mut api, &mut san] {
                    let status = endpoint.key_info(id).await.expect_err("GetKeyInfo");
                    assert_eq!(status.code(), Code::NotFound, "{role} {id}: {status:?}");
                    let status = endpoint.sign(id, b"{}").await.expect_err("Sign");
                    assert_eq!(status.code(), Code::NotFound, "{role} {id}: {status:?}");
                    let status = endpoint.delete_key(id).await.expect_err("DeleteKey");
                    assert_eq!(status.code(), Code::NotFound, "{role} {id}: {status:?}");
                }
            }
        }
        for role in ["root", "targets", "targets/releases"] {
            let status = api
                .create_key("ecdsa", role, GUN)
                .await
                .expect_err("CreateKey for a role the endpoint does not own");
            assert!(
                matches!(
                    status.code(),
                    Code::PermissionDenied | Code::InvalidArgument
                ),
                "CreateKey {role}: {status:?}"
            );
        }
        // The daemon's keys are all still there and usable through the socket.
        let listed: Vec<String> = local.list().await.into_iter().map(|k| k.key_id).collect();
        for (role, key) in &daemon_keys {
            assert!(listed.contains(&key.key_id), "{role} key vanished");
            local
                .sign_message(&key.key_id, b"still mine", v1::SignatureEncoding::Raw)
                .await
                .unwrap_or_else(|s| panic!("{role} key unusable after the attempts: {s:?}"));
        }
    });

    // Nothing was created for those roles on the token.
    let report = signer.dev.inspect_token(token_inspect_exe!());
    let notary_labels: Vec<&str> = report
        .private_keys
        .iter()
        .map(|k| k.label.as_str())
        .filter(|l| l.starts_with("sigil-notary:"))
        .collect();
    assert!(notary_labels.is_empty(), "{notary_labels:?}");

    // The refused handshakes left no trace in the audit log (they never became calls); every
    // NOT_FOUND sign attempt is there with the client's identity.
    assert_eq!(audited_before, 0, "refused handshakes are not calls");
    let audit = signer.audit();
    let refused_signs: Vec<&AuditLine> = audit
        .iter()
        .filter(|l| {
            l.op == "sign" && matches!(l.client.as_deref(), Some(SERVER_CLIENT_CN | SAN_CLIENT))
        })
        .collect();
    assert_eq!(refused_signs.len(), 3 * 2 * 2, "{refused_signs:#?}");
    for line in refused_signs {
        assert_eq!(line.outcome, "not_found", "{line:?}");
        assert!(
            matches!(line.client.as_deref(), Some(SERVER_CLIENT_CN | SAN_CLIENT)),
            "{line:?}"
        );
    }
}

/// The endpoint's contract with notary-server (notary/README.md §(c)) beyond the flow:
///
/// - CreateKey `ecdsa` and `ed25519` return the Notary TUF key id of exactly the public bytes
///   returned (DER SPKI, raw 32 bytes); GetKeyInfo returns the same key and its role.
/// - Sign hashes the canonical JSON itself: raw r‖s (`ecdsa`) or Ed25519 (`eddsa`), verified
///   here with `p256` / `ed25519-dalek` over the bytes sent.
/// - `rsa` is answered with a clear unsupported error; an unknown key id is NOT_FOUND.
/// - Every Sign, found or not, is one audit line with the calling certificate's identity (CN
///   or SAN) and the SHA-256 of what was signed.
/// - The scoping is symmetric: keys created through the endpoint do not exist for the
///   Unix-socket API either, even for a caller whose policy covers every GUN and role.
#[test]
fn create_key_and_sign_follow_notary_signers_contract() {
    let signer = Signer::start(&[SERVER_CLIENT_CN, SAN_CLIENT]);
    let who = strangers(&signer);
    // What notary-server sends: canonical metadata of the key's role (sigild refuses other
    // bytes on this endpoint, DESIGN §9).
    let week = Duration::from_secs(7 * 86_400);
    let timestamp = metadata::notary("Timestamp", 1, week, &[]);
    let snapshot = metadata::notary("Snapshot", 1, week, &[]);
    let content_of = |role: &str| {
        if role == "timestamp" {
            &timestamp
        } else {
            &snapshot
        }
    };
    let content = timestamp.as_slice();
    let rt = runtime();
    let expected_signs = rt.block_on(async {
        let mut api = signer.api().await;
        let mut san = signer.api_as(&who.san_client).await;
        let mut expected = Vec::new();
        for (algorithm, role, keytype, method) in [
            ("ecdsa", "timestamp", "ecdsa", "ecdsa"),
            ("ed25519", "snapshot", "ed25519", "eddsa"),
        ] {
            let created = api
                .create_key(algorithm, role, GUN)
                .await
                .unwrap_or_else(|s| panic!("CreateKey {algorithm}: {s:?}"));
            let info = created.key_info.expect("keyInfo");
            let id = info.key_id.expect("keyID").id;
            assert_eq!(info.algorithm.expect("algorithm").algorithm, keytype);
            assert_eq!(
                id,
                notary_key_id(keytype, &created.public_key),
                "{algorithm}: the key id is the Notary TUF key id of the returned public key"
            );
            if algorithm == "ed25519" {
                assert_eq!(created.public_key.len(), 32, "raw Ed25519 public key");
            }
            let got = api.key_info(&id).await.expect("GetKeyInfo");
            assert_eq!(got.public_key, created.public_key);
            assert_eq!(got.role, role);

            let content = content_of(role).as_slice();
            for (endpoint, caller) in [(&mut api, SERVER_CLIENT_CN), (&mut san, SAN_CLIENT)] {
                let signature = endpoint
                    .sign(&id, content)
                    .await
                    .unwrap_or_else(|s| panic!("Sign {algorithm}: {s:?}"));
                assert_eq!(signature.algorithm.expect("algorithm").algorithm, method);
                assert_eq!(
                    signature
                        .key_info
                        .and_then(|k| k.key_id)
                        .map(|k| k.id)
                        .as_deref(),
                    Some(id.as_str())
                );
                assert_eq!(signature.content.len(), 64, "{method} signature length");
                verify_notary_signature(
                    keytype,
                    &created.public_key,
                    method,
                    content,
                    &signature.content,
                )
                .unwrap_or_else(|e| panic!("{method} signature does not verify: {e}"));
                expected.push((caller, daemon_key_id(keytype, &created.public_key), "ok"));
            }
        }

        let rsa = api
            .create_key("rsa", "timestamp", GUN)
            .await
            .expect_err("CreateKey rsa");
        assert!(
            rsa.code() != Code::Ok && rsa.code() != Code::Internal,
            "{rsa:?}"
        );
        assert!(
            rsa.message().contains("unsupported") && rsa.message().contains("rsa"),
            "a clear unsupported-algorithm error: {rsa:?}"
        );

        let unknown = sha256_hex(b"no such key");
        let status = api
            .key_info(&unknown)
            .await
            .expect_err("unknown GetKeyInfo");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        let status = san.sign(&unknown, content).await.expect_err("unknown Sign");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        expected.push((SAN_CLIENT, unknown, "not_found"));
        expected
    });

    let audit = signer.audit();
    let signs: Vec<(&str, &str, &str)> = audit
        .iter()
        .filter(|l| l.op == "sign")
        .map(|l| {
            assert_eq!((l.uid, l.gid), (None, None), "{l:?}");
            (
                l.client.as_deref().unwrap_or("<none>"),
                l.key_id.as_str(),
                l.outcome.as_str(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str, &str)> = expected_signs
        .iter()
        .map(|(c, k, o)| (*c, k.as_str(), *o))
        .collect();
    assert_eq!(signs, expected, "one audit line per Sign, in order");
    for line in audit.iter().filter(|l| l.op == "sign" && l.outcome == "ok") {
        let digest = sha256_hex(content_of(&line.role));
        assert_eq!(line.sha256.as_deref(), Some(digest.as_str()), "{line:?}");
        assert_eq!(line.gun, GUN, "{line:?}");
    }
    let generated: Vec<(&str, &str)> = audit
        .iter()
        .filter(|l| l.op == "generate" && l.outcome == "ok")
        .map(|l| (l.role.as_str(), l.client.as_deref().unwrap_or("<none>")))
        .collect();
    assert_eq!(
        generated,
        [
            ("timestamp", SERVER_CLIENT_CN),
            ("snapshot", SERVER_CLIENT_CN)
        ]
    );
    let notary_keys: Vec<String> = expected_signs
        .iter()
        .filter(|(_, _, outcome)| *outcome == "ok")
        .map(|(_, key_id, _)| key_id.clone())
        .collect();
    rt.block_on(async {
        let mut local = signer.daemon.as_ref().expect("running").client().await;
        let listed: Vec<String> = local.list().await.into_iter().map(|k| k.key_id).collect();
        for key_id in &notary_keys {
            assert!(
                !listed.contains(key_id),
                "ListKeys shows notary key {key_id}"
            );
            let status = local.public(key_id).await.expect_err("GetPublicKey");
            assert_eq!(status.code(), Code::NotFound, "{key_id}: {status:?}");
            let status = local
                .sign_message(key_id, content, v1::SignatureEncoding::Raw)
                .await
                .expect_err("Sign through the socket");
            assert_eq!(status.code(), Code::NotFound, "{key_id}: {status:?}");
        }
    });
}

/// Refusals are calls too: the audit module promises one line per Sign, GenerateKey and
/// DeleteKey "refusals included", and the issue says every call through the endpoint is
/// audited with the client certificate identity. A certificate from the right CA that is not
/// in `allowed_clients`, and an unsupported CreateKey algorithm, must leave a line each.
#[test]
fn refused_notary_calls_are_audited() {
    let signer = Signer::start(&[SERVER_CLIENT_CN]);
    let who = strangers(&signer);
    let rt = runtime();
    rt.block_on(async {
        let mut intruder = signer.api_as(&who.intruder).await;
        let status = intruder
            .sign(&"0".repeat(64), b"{}")
            .await
            .expect_err("an intruder's Sign");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let status = intruder
            .create_key("ecdsa", "timestamp", GUN)
            .await
            .expect_err("an intruder's CreateKey");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let mut api = signer.api().await;
        api.create_key("rsa", "timestamp", GUN)
            .await
            .expect_err("CreateKey rsa");
    });
    let audit = signer.audit();
    let seen: Vec<(&str, Option<&str>, &str)> = audit
        .iter()
        .map(|l| (l.op.as_str(), l.client.as_deref(), l.outcome.as_str()))
        .collect();
    let mut missing = Vec::new();
    if !seen.contains(&("sign", Some("intruder"), "denied")) {
        missing.push("the intruder's Sign (PERMISSION_DENIED)");
    }
    if !seen.contains(&("generate", Some("intruder"), "denied")) {
        missing.push("the intruder's CreateKey (PERMISSION_DENIED)");
    }
    if !seen.iter().any(|(op, client, outcome)| {
        *op == "generate" && *client == Some(SERVER_CLIENT_CN) && *outcome != "ok"
    }) {
        missing.push("the allowed client's CreateKey rsa (unsupported algorithm)");
    }
    assert!(
        missing.is_empty(),
        "refused calls missing from the audit log: {missing:?}; the log holds {seen:?}"
    );
}

/// Test 5: the token goes away (its directory is moved out of SoftHSM's token store) while
/// sigild and notary-server run. sigild's health for both notary names turns NOT_SERVING, a
/// Sign fails UNAVAILABLE, and notary-server's health endpoint reports the signer; when the
/// token comes back, the same sigild process serves again (same key, valid signatures) and
/// notary-server is healthy again.
#[test]
fn health_follows_the_token_without_restarting_sigild() {
    let mut signer = Signer::start(&[SERVER_CLIENT_CN]);
    let server = signer.notary_server();
    let key = server.wait_server_key(GUN, "timestamp", RECONNECT_TIMEOUT);
    let public = base64::engine::general_purpose::STANDARD
        .decode(key["keyval"]["public"].as_str().expect("keyval.public"))
        .expect("base64 public key");
    let id = notary_key_id("ecdsa", &public);
    let content = &metadata::notary("Timestamp", 7, Duration::from_secs(86_400), &[]);
    let pid = signer.daemon().pid();
    let rt = runtime();
    let mut api = rt.block_on(signer.api());

    rt.block_on(async {
        api.wait_health(ServingStatus::Serving, DAEMON_TIMEOUT)
            .await;
        // Several signs, so that sessions for signing on sigild's own threads exist before
        // the token goes (the first sign measures the token; later ones may run inline).
        for _ in 0..4 {
            let signature = api.sign(&id, content).await.expect("Sign with the token");
            verify_notary_signature("ecdsa", &public, "ecdsa", content, &signature.content)
                .expect("a valid signature");
        }
    });
    // Let notary-server's first signer check pass before the token goes.
    server.wait_health(true, SERVER_HEALTH_TIMEOUT);

    let parked = ParkedToken::park(&signer.dev);
    rt.block_on(async {
        api.wait_health(ServingStatus::NotServing, DAEMON_TIMEOUT)
            .await;
        let status = api
            .sign(&id, content)
            .await
            .expect_err("Sign without the token");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    });
    signer.daemon().wait_for_log("backend health changed", 1);
    let unhealthy = server.wait_health(false, SERVER_HEALTH_TIMEOUT);
    assert_eq!(unhealthy.status, 503, "{}", unhealthy.text());
    assert!(
        unhealthy.text().contains("Trust operational"),
        "notary-server names the failing check: {}",
        unhealthy.text()
    );

    parked.restore();
    rt.block_on(async {
        api.wait_health(ServingStatus::Serving, DAEMON_TIMEOUT)
            .await;
        let signature = api
            .sign(&id, content)
            .await
            .expect("Sign after the token came back");
        verify_notary_signature("ecdsa", &public, "ecdsa", content, &signature.content)
            .expect("a valid signature from the same key");
    });
    signer.daemon().wait_for_log("token reopened", 1);
    assert!(signer.daemon().is_running());
    assert_eq!(signer.daemon().pid(), pid, "no restart");
    let healthy = server.wait_health(true, SERVER_HEALTH_TIMEOUT);
    assert_eq!(healthy.text().trim(), "{}");
}

/// The harness itself, as issue 3's interop tests use it: notary-server with no signer
/// (`local`) and with the real notary-signer (`remote`) both hand out timestamp keys, and the
/// real client can publish through either.
#[test]
fn harness_runs_notary_without_sigild() {
    require_notary();
    let dir = tempfile::Builder::new()
        .prefix("sigil-e2e-notary-")
        .tempdir()
        .expect("a temporary directory");
    let pki = Pki::new(&dir.path().join("pki"), "harness");
    let real_signer = sigil_e2e::notary::NotarySigner::start(&dir.path().join("signer"), &pki);
    for (name, trust, keytype) in [
        ("local", TrustService::Local, "ed25519"),
        ("remote", TrustService::remote(real_signer.port()), "ecdsa"),
    ] {
        let server = NotaryServer::start(&dir.path().join(name), &pki, &trust);
        let key = server.wait_server_key(GUN, "timestamp", RECONNECT_TIMEOUT);
        assert_eq!(key["keytype"], keytype, "{name}: {key}");
        let client = server.client(&dir.path().join(format!("{name}-client")));
        let (file, bytes) = write_target(&dir.path().join(format!("{name}-files")), "only");
        client.ok(&["init", GUN, "-p"]);
        client.ok(&["add", GUN, "only", file.to_str().expect("UTF-8 path"), "-p"]);
        check_repository(&server, &[("only", &bytes)]);
    }
}
