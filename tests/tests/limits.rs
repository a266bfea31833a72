//! Resource bounds, end to end: a flood of idle TCP connections on the notary-signer endpoint
//! (no TLS handshake ever sent) neither takes sigild's descriptors nor stops the Unix API, and
//! the handshake timeout closes them; a full token queue is answered RESOURCE_EXHAUSTED.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sigil_e2e::notary::{Pki, connect_signer, free_port, sigild_notary_toml};
use sigil_e2e::{DAEMON_TIMEOUT, DevDir, parse_public, read_audit, read_text, write_file};
use sigil_proto::sigil_v1 as pb;
use tokio::io::AsyncReadExt as _;

/// The attacker's connections.
const FLOOD: usize = 2000;
/// The descriptor limit sigild runs under here: fewer than the flood, as on a host whose
/// LimitNOFILE is lower than what an attacker can open.
const SIGILD_NOFILE: u64 = 1024;
/// `[notary_signer] max_connections` in force (the default).
const NOTARY_CAP: usize = sigil_daemon::config::limits::NOTARY_MAX_CONNECTIONS;

/// Descriptors `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Lets this process open the flood: raises its soft descriptor limit towards the hard one.
fn allow_flood_descriptors() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let needed = FLOOD as u64 + 512;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= needed,
        "this test opens {FLOOD} connections; the hard RLIMIT_NOFILE is {hard} (raise it, e.g. ulimit -Hn {needed})"
    );
    if soft < needed {
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).expect("setrlimit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connections_on_the_notary_endpoint_leave_the_unix_api_serving() {
    allow_flood_descriptors();
    let dev = DevDir::new();
    dev.init();
    let pki = Pki::new(&dev.root().join("pki"), "limits");
    let port = free_port();
    let mut text = read_text(&dev.dev_config());
    text.push_str(&sigild_notary_toml(
        port,
        &pki,
        sigil_e2e::DEV_BACKEND,
        &[sigil_e2e::notary::SERVER_CLIENT_CN],
    ));
    text.push_str("handshake_timeout_secs = 2\n");
    let config = dev.path().join("limits.toml");
    write_file(&config, text, 0o600);
    let wrapper = [
        "prlimit".into(),
        format!("--nofile={SIGILD_NOFILE}:{SIGILD_NOFILE}").into(),
        "--".into(),
        "env".into(),
        format!("SOFTHSM2_CONF={}", dev.softhsm_conf().display()).into(),
    ];
    assert!(
        Path::new("/usr/bin/prlimit").exists(),
        "prlimit missing: apt-get install -y util-linux"
    );
    let mut daemon = dev.sigild_wrapped(&wrapper, &config).spawn();
    let pid = daemon.pid();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/limits", pb::Algorithm::EcdsaP256)
        .await;
    let public = parse_public(&key);

    // The flood: as many connections as the kernel will complete, none of which ever speaks.
    // Each records when sigild closes it.
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let closed = Arc::new(AtomicUsize::new(0));
    let settled = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let (closed, settled, connected) = (
            Arc::clone(&closed),
            Arc::clone(&settled),
            Arc::clone(&connected),
        );
        flood.push(tokio::spawn(async move {
            let connect = tokio::net::TcpStream::connect(addr);
            let stream = tokio::time::timeout(Duration::from_secs(3), connect).await;
            settled.fetch_add(1, Ordering::SeqCst);
            let Ok(Ok(mut stream)) = stream else {
                return false;
            };
            connected.fetch_add(1, Ordering::SeqCst);
            let mut byte = [0u8; 1];
            // Held open until sigild closes it (or the test ends and aborts this task).
            let _ = stream.read(&mut byte).await;
            closed.fetch_add(1, Ordering::SeqCst);
            true
        }));
    }

    // The real conditions: every connection attempt has ended (established, or given up
    // once the kernel's queue was full), and sigild has taken connections up to its cap.
    let started = Instant::now();
    let mut most = 0;
    while settled.load(Ordering::SeqCst) < FLOOD || most < NOTARY_CAP {
        assert!(
            started.elapsed() < DAEMON_TIMEOUT,
            "sigild never held {NOTARY_CAP} connections (at most {most} descriptors)"
        );
        assert!(
            daemon.is_running(),
            "sigild died under the flood:\n{}",
            daemon.stderr()
        );
        most = most.max(open_fds(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let established = connected.load(Ordering::SeqCst);
    assert!(
        established > NOTARY_CAP + 500,
        "the flood established only {established} connections"
    );

    // Meanwhile the Unix API answers: listing and signatures that verify.
    for i in 0..20 {
        let listed = tokio::time::timeout(Duration::from_secs(10), client.list())
            .await
            .unwrap_or_else(|_| panic!("ListKeys {i} timed out under the flood"));
        assert_eq!(listed.len(), 1);
        let message = format!("signed under the flood {i}").into_bytes();
        let signed = tokio::time::timeout(
            Duration::from_secs(10),
            client.sign_message(&key.key_id, &message, pb::SignatureEncoding::Raw),
        )
        .await
        .unwrap_or_else(|_| panic!("Sign {i} timed out under the flood"))
        .unwrap_or_else(|s| panic!("Sign {i} under the flood: {s:?}"));
        public
            .verify(&message, &signed.signature)
            .unwrap_or_else(|e| panic!("signature {i}: {e}"));
        most = most.max(open_fds(pid));
    }
    // A new Unix client connects too.
    let mut fresh = daemon.client().await;
    assert_eq!(fresh.list().await.len(), 1);
    eprintln!("sigild held at most {most} descriptors under the flood");
    assert!(
        most < NOTARY_CAP + 128,
        "sigild held {most} descriptors under the flood; the cap is {NOTARY_CAP} connections"
    );

    // Connections that never handshake are closed after handshake_timeout_secs, which hands
    // their slots to the ones waiting in the kernel's queue.
    let started = Instant::now();
    while closed.load(Ordering::SeqCst) < 2 * NOTARY_CAP {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} idle connections were closed by the handshake timeout",
            closed.load(Ordering::SeqCst)
        );
        most = most.max(open_fds(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(daemon.is_running(), "sigild died:\n{}", daemon.stderr());

    // The attacker goes away; a real notary-server identity is served again.
    for task in &flood {
        task.abort();
    }
    let deadline = Instant::now() + DAEMON_TIMEOUT;
    let mut api = loop {
        match connect_signer(port, &pki.ca(), Some(&pki.client())).await {
            Ok(api) => break api,
            Err(e) => {
                assert!(Instant::now() < deadline, "notary-signer endpoint: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let health = api
        .health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health over mTLS after the flood");
    assert_eq!(
        health.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    drop((client, fresh, api));
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(status.success(), "{status}");
}

/// With room for one queued job, a burst of concurrent signatures gets RESOURCE_EXHAUSTED for
/// what does not fit, at once; every signature returned verifies and is audited, and the
/// token serves again after the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_token_queue_answers_resource_exhausted_and_loses_nothing() {
    let dir = DevDir::new();
    dir.init();
    let text = dir
        .config()
        .sessions(1)
        .text()
        .replace("sessions = 1\n", "sessions = 1\nmax_queued_jobs = 1\n");
    let config = dir.path().join("queue.toml");
    write_file(&config, text, 0o600);
    let daemon = dir.sigild_config(&config).spawn();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/queue", pb::Algorithm::EcdsaP256)
        .await;
    let public = parse_public(&key);

    let mut tasks = Vec::new();
    for c in 0..4 {
        let client = daemon.client().await;
        for i in 0..50 {
            let mut client = client.clone();
            let key_id = key.key_id.clone();
            tasks.push(tokio::spawn(async move {
                let message = format!("burst {c} {i}").into_bytes();
                let answer = client
                    .sign_message(&key_id, &message, pb::SignatureEncoding::Raw)
                    .await;
                (message, answer)
            }));
        }
    }
    let (mut signed, mut busy) = (0, 0);
    for task in tasks {
        let (message, answer) = task.await.expect("sign task");
        match answer {
            Ok(resp) => {
                public
                    .verify(&message, &resp.signature)
                    .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&message)));
                signed += 1;
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    tonic::Code::ResourceExhausted,
                    "a refused signature: {status:?}"
                );
                assert!(
                    status.message().contains("max_queued_jobs"),
                    "the refusal names the setting: {status:?}"
                );
                busy += 1;
            }
        }
    }
    assert!(
        busy > 0,
        "200 concurrent signatures never filled a queue of 1"
    );
    assert!(signed > 0, "nothing was signed");
    let audit = read_audit(daemon.audit_log());
    let ok = audit
        .iter()
        .filter(|r| r.op == "sign" && r.outcome == "ok")
        .count();
    assert_eq!(ok, signed, "one ok audit line per returned signature");

    // After the burst, the token serves again.
    let message = b"after the burst".to_vec();
    let resp = client
        .sign_message(&key.key_id, &message, pb::SignatureEncoding::Raw)
        .await
        .expect("a signature after the burst");
    public.verify(&message, &resp.signature).expect("verifies");
    drop(client);
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(status.success(), "{status}");
}
