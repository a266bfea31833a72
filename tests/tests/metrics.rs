//! Prometheus metrics (issue 13 item 3), scraped from a running sigild with a real HTTP/1
//! client: exact counts of signatures, refusals and reloads, bounded labels that never carry a
//! key id or GUN, a Unix-socket listener with its mode, metrics off by default, and bad or
//! taken `listen` values refused at start.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sigil_e2e::metadata;
use sigil_e2e::notary::{
    Pki, SERVER_CLIENT_CN, connect_signer, free_port, sigild_notary_toml, wait_mtls,
};
use sigil_e2e::scrape::{
    OPENMETRICS, Samples, check_with_python_parser, listening_tcp_sockets, over_tcp, request,
    scrape,
};
use sigil_e2e::tmpfs::{TmpfsMount, fill};
use sigil_e2e::{DAEMON_TIMEOUT, DEV_BACKEND, DevDir, Rpc, Stranger, client_exe, read_audit};
use sigil_proto::sigil_v1 as pb;
use tokio::io::AsyncReadExt as _;
use tonic::Code;

const GUN: &str = "example.com/metrics-gun";

fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Our uid may sign with targets keys of [`GUN`], and only read snapshot keys.
fn policy() -> String {
    format!(
        "[[policy]]\nname = \"release\"\nuids = [{uid}]\n\
         keys = [{{ gun = \"{GUN}\", role = \"targets\" }}]\n\
         allow = [\"sign\", \"public\", \"list\", \"generate\"]\n\n\
         [[policy]]\nname = \"look-only\"\nuids = [{uid}]\n\
         keys = [{{ gun = \"{GUN}\", role = \"snapshot\" }}]\n\
         allow = [\"public\", \"list\", \"generate\"]\n",
        uid = uid()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_signatures_refusals_and_reloads_exactly_without_key_ids_or_guns() {
    const SIGNED: usize = 5;
    const DENIED: usize = 3;
    const UNSEEN: usize = 2;
    let dir = DevDir::new();
    dir.init();
    let port = free_port();
    let builder = dir.config().without_owner_rule().append(&format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        policy()
    ));
    let config = builder.write("metrics.toml");
    let mut daemon = dir.sigild_config(&config).spawn();
    daemon.wait_for_log("serving metrics", 1);
    assert_eq!(
        listening_tcp_sockets(daemon.pid()).len(),
        1,
        "the metrics port is the daemon's one TCP listener"
    );

    let mut client = daemon.client().await;
    let signer = client
        .generate("targets", GUN, pb::Algorithm::EcdsaP256)
        .await;
    let looker = client
        .generate("snapshot", GUN, pb::Algorithm::EcdsaP256)
        .await;
    for i in 0..SIGNED {
        client
            .sign_message(
                &signer.key_id,
                format!("release {i}").as_bytes(),
                pb::SignatureEncoding::Raw,
            )
            .await
            .expect("an allowed signature");
    }
    for _ in 0..DENIED {
        let refused = client
            .sign_message(&looker.key_id, b"no", pb::SignatureEncoding::Raw)
            .await
            .expect_err("the policy only lets us read snapshot keys");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
    // Another uid, which no rule names, does not even see the key.
    let stranger = Stranger::new(client_exe!());
    for _ in 0..UNSEEN {
        let outcome = stranger.run(
            daemon.socket(),
            &Rpc::Sign {
                key_id: signer.key_id.clone(),
                message_hex: hex::encode(b"not yours"),
            },
        );
        assert_eq!(outcome.code(), Code::NotFound, "{outcome:?}");
    }
    assert_eq!(client.list().await.len(), 2);

    let samples = scrape(port).await;
    let n = |v: usize| v as f64;
    let requests =
        |op, outcome| samples.get("sigil_requests_total", &[("op", op), ("outcome", outcome)]);
    assert_eq!(requests("sign", "ok"), n(SIGNED), "{}", samples.text);
    assert_eq!(requests("sign", "denied"), n(DENIED), "{}", samples.text);
    assert_eq!(requests("sign", "not_found"), n(UNSEEN), "{}", samples.text);
    assert_eq!(requests("generate", "ok"), 2.0, "{}", samples.text);
    assert_eq!(requests("list", "ok"), 1.0, "{}", samples.text);
    let signatures = |role, outcome| {
        samples.get(
            "sigil_signatures_total",
            &[
                ("op", "sign"),
                ("backend", DEV_BACKEND),
                ("role", role),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(signatures("targets", "ok"), n(SIGNED), "{}", samples.text);
    assert_eq!(
        signatures("snapshot", "denied"),
        n(DENIED),
        "{}",
        samples.text
    );
    assert_eq!(
        signatures("targets", "not_found"),
        n(UNSEEN),
        "{}",
        samples.text
    );
    assert_eq!(signatures("snapshot", "ok"), 0.0, "{}", samples.text);
    let backend = [("backend", DEV_BACKEND)];
    assert_eq!(
        samples.get("sigil_sign_duration_seconds_count", &backend),
        n(SIGNED),
        "{}",
        samples.text
    );
    assert_eq!(
        samples.get(
            "sigil_sign_duration_seconds_bucket",
            &[("le", "+Inf"), ("backend", DEV_BACKEND)]
        ),
        n(SIGNED),
        "{}",
        samples.text
    );
    assert!(samples.get("sigil_sign_duration_seconds_sum", &backend) > 0.0);
    assert_eq!(samples.get("sigil_token_present", &backend), 1.0);
    assert!(samples.has("sigil_audit_write_failures_total", &[]));
    assert_eq!(samples.get("sigil_audit_write_failures_total", &[]), 0.0);
    // The metrics agree with the audit log, line for line.
    let audit = read_audit(daemon.audit_log());
    let lines = |outcome: &str| {
        audit
            .iter()
            .filter(|r| r.op == "sign" && r.outcome == outcome)
            .count()
    };
    assert_eq!(
        (lines("ok"), lines("denied"), lines("not_found")),
        (SIGNED, DENIED, UNSEEN)
    );
    // Bounded labels only: nothing a caller chose, no key id, no GUN.
    assert_eq!(
        samples.label_names(),
        ["backend", "le", "op", "outcome", "role"]
    );
    for secret in [
        signer.key_id.as_str(),
        looker.key_id.as_str(),
        GUN,
        "metrics-gun",
    ] {
        assert!(
            !samples.text.contains(secret),
            "{secret} in the exposition:\n{}",
            samples.text
        );
    }
    check_with_python_parser(&samples);
    // Only GET /metrics.
    let elsewhere = over_tcp(port, "GET", "/").await;
    assert_eq!(elsewhere.status, 404);
    let posted = over_tcp(port, "POST", "/metrics").await;
    assert_eq!(posted.status, 405);

    // SIGHUP with a good file: one ok reload; with a broken one: one error, still serving.
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("policy reloaded", 1);
    let samples = scrape(port).await;
    let reloads = |outcome| samples.get("sigil_policy_reloads_total", &[("outcome", outcome)]);
    assert_eq!(
        (reloads("ok"), reloads("error")),
        (1.0, 0.0),
        "{}",
        samples.text
    );
    std::fs::write(&config, "[server\nbroken = ").expect("break the config");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("keeping the old configuration", 1);
    client
        .sign_message(&signer.key_id, b"after", pb::SignatureEncoding::Raw)
        .await
        .expect("still signing after a bad reload");
    let samples = scrape(port).await;
    let reloads = |outcome| samples.get("sigil_policy_reloads_total", &[("outcome", outcome)]);
    assert_eq!(
        (reloads("ok"), reloads("error")),
        (1.0, 1.0),
        "{}",
        samples.text
    );
    assert_eq!(
        samples.get("sigil_requests_total", &[("op", "sign"), ("outcome", "ok")]),
        n(SIGNED + 1)
    );
    assert!(daemon.is_running());
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notary_signer_endpoints_calls_are_counted_like_the_sockets() {
    const SIGNED: usize = 3;
    let dir = DevDir::new();
    dir.init();
    let pki = Pki::new(&dir.root().join("pki"), "metrics");
    let (port, metrics_port) = (free_port(), free_port());
    let config = dir
        .config()
        .append(&sigild_notary_toml(
            port,
            &pki,
            DEV_BACKEND,
            &[SERVER_CLIENT_CN],
        ))
        .append(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ))
        .write("metrics-notary.toml");
    let mut daemon = dir.sigild_config(&config).spawn();
    let stderr = daemon.stderr_path().to_owned();
    wait_mtls(
        port,
        &pki.ca(),
        &pki.client(),
        DAEMON_TIMEOUT,
        || daemon.is_running(),
        || std::fs::read_to_string(&stderr).unwrap_or_default(),
    );
    let mut api = connect_signer(port, &pki.ca(), Some(&pki.client()))
        .await
        .expect("connect to the notary-signer endpoint");
    let created = api
        .create_key("ecdsa", "timestamp", GUN)
        .await
        .expect("CreateKey");
    let id = created.key_info.and_then(|k| k.key_id).expect("key id").id;
    api.key_info(&id).await.expect("GetKeyInfo");
    let content = metadata::notary("Timestamp", 1, Duration::from_secs(86_400), &[]);
    for _ in 0..SIGNED {
        api.sign(&id, &content).await.expect("Sign");
    }
    let unknown = api
        .sign(&"0".repeat(64), &content)
        .await
        .expect_err("no such key");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    let samples = scrape(metrics_port).await;
    let requests =
        |op, outcome| samples.get("sigil_requests_total", &[("op", op), ("outcome", outcome)]);
    assert_eq!(requests("generate", "ok"), 1.0, "{}", samples.text);
    assert_eq!(requests("public", "ok"), 1.0, "{}", samples.text);
    assert_eq!(requests("sign", "ok"), SIGNED as f64, "{}", samples.text);
    assert_eq!(requests("sign", "not_found"), 1.0, "{}", samples.text);
    assert_eq!(
        samples.get(
            "sigil_signatures_total",
            &[
                ("op", "sign"),
                ("backend", DEV_BACKEND),
                ("role", "timestamp"),
                ("outcome", "ok"),
            ],
        ),
        SIGNED as f64,
        "{}",
        samples.text
    );
    for secret in [id.as_str(), GUN, SERVER_CLIENT_CN] {
        assert!(
            !samples.text.contains(secret),
            "{secret}:\n{}",
            samples.text
        );
    }
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_that_cannot_be_written_are_counted_as_failures_of_their_calls() {
    const REFUSED: usize = 4;
    let dir = DevDir::new();
    dir.init();
    let audit_dir = dir.root().join("audit-fs");
    let _mount = TmpfsMount::mount(&audit_dir, "1m");
    let port = free_port();
    let config = dir
        .config()
        .audit_log(&audit_dir.join("audit.jsonl"))
        .append(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))
        .write("metrics-audit.toml");
    let daemon = dir.sigild_config(&config).spawn();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", GUN, pb::Algorithm::EcdsaP256)
        .await;
    let filler = audit_dir.join("filler");
    fill(&filler);
    // The audit file's last page may still hold a line or two: sign until the disk refuses.
    let mut signed = 0;
    let mut refused = 0;
    while refused < REFUSED {
        match client
            .sign_message(&key.key_id, b"m", pb::SignatureEncoding::Raw)
            .await
        {
            Ok(_) => {
                assert_eq!(refused, 0, "a signature after an audit refusal");
                signed += 1;
                assert!(signed < 100, "the full audit disk never refused a line");
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                refused += 1;
            }
        }
    }
    let samples = scrape(port).await;
    assert_eq!(
        samples.get("sigil_audit_write_failures_total", &[]),
        REFUSED as f64,
        "{}",
        samples.text
    );
    let requests = |outcome| {
        samples.get(
            "sigil_requests_total",
            &[("op", "sign"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (requests("ok"), requests("error")),
        (signed as f64, REFUSED as f64)
    );
    assert_eq!(
        samples.get(
            "sigil_signatures_total",
            &[
                ("op", "sign"),
                ("backend", DEV_BACKEND),
                ("role", "targets"),
                ("outcome", "error"),
            ],
        ),
        REFUSED as f64
    );
    assert_eq!(
        samples.get(
            "sigil_sign_duration_seconds_count",
            &[("backend", DEV_BACKEND)]
        ),
        signed as f64
    );
    std::fs::remove_file(&filler).expect("free the audit disk");
    client
        .sign_message(&key.key_id, b"m", pb::SignatureEncoding::Raw)
        .await
        .expect("signing again once the line can be written");
    let samples = scrape(port).await;
    assert_eq!(
        samples.get("sigil_requests_total", &[("op", "sign"), ("outcome", "ok")]),
        (signed + 1) as f64
    );
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_hold_the_endpoint_past_the_head_deadline() {
    /// sigild's bounds: connections served at once, and the time to send a request head.
    const SLOTS: usize = 16;
    const HEAD_DEADLINE: Duration = Duration::from_secs(5);
    let dir = DevDir::new();
    dir.init();
    let port = free_port();
    let config = dir
        .config()
        .append(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))
        .write("metrics-idle.toml");
    let daemon = dir.sigild_config(&config).spawn();
    daemon.wait_for_log("serving metrics", 1);
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..SLOTS {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    // Every slot is taken by a connection that says nothing: a scrape waits unanswered...
    let waiting = tokio::spawn(over_tcp(port, "GET", "/metrics"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "more than {SLOTS} connections served at once"
    );
    // ...until the head deadline closes the idle ones, and it is served.
    let got = waiting.await.expect("scrape task");
    assert_eq!(got.status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= HEAD_DEADLINE - Duration::from_millis(500) && waited < 3 * HEAD_DEADLINE,
        "served after {waited:?}"
    );
    for mut stream in idle {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest))
            .await
            .expect("an idle connection left open past the head deadline")
            .expect("read");
    }
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_listener_replaces_only_a_stale_socket_is_0660_and_is_scraped() {
    let dir = DevDir::new();
    dir.init();
    let socket = dir.path().join("metrics.sock");
    // A stale socket (its listener is gone) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    let config = dir
        .config()
        .append(&format!("[metrics]\nlisten = \"{}\"\n", socket.display()))
        .write("metrics-unix.toml");
    let daemon = dir.sigild_config(&config).spawn();
    daemon.wait_for_log("serving metrics", 1);
    let meta = std::fs::symlink_metadata(&socket).expect("metrics socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert!(
        listening_tcp_sockets(daemon.pid()).is_empty(),
        "a Unix-socket listener opens no TCP port"
    );
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect to the metrics socket");
    let got = request(stream, "GET", "/metrics").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.content_type, OPENMETRICS);
    let samples = Samples::parse(&got.body);
    assert_eq!(
        samples.get("sigil_token_present", &[("backend", DEV_BACKEND)]),
        1.0
    );
    assert!(daemon.stop().success());
    assert!(!socket.exists(), "the metrics socket is removed on exit");

    // A file that is not a socket is never removed.
    std::fs::write(&socket, "keep me").expect("a regular file");
    let refused = dir.sigild_config(&config).run_to_exit();
    let line = refused.error_line();
    assert!(
        line.contains(&socket.display().to_string()) && line.contains("not a socket"),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&socket).expect("kept"), "keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_by_default() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let key = daemon
        .client()
        .await
        .generate("targets", GUN, pb::Algorithm::EcdsaP256)
        .await;
    daemon
        .client()
        .await
        .sign_message(&key.key_id, b"m", pb::SignatureEncoding::Raw)
        .await
        .expect("sign");
    assert!(
        listening_tcp_sockets(daemon.pid()).is_empty(),
        "sigild without [metrics] listens on TCP"
    );
    assert!(
        !daemon.stderr().contains("serving metrics"),
        "{}",
        daemon.stderr()
    );
    assert!(daemon.stop().success());
}

#[test]
fn bad_or_taken_listen_values_stop_sigild_at_start_naming_them() {
    let dir = DevDir::new();
    dir.init();
    let refused = |listen: &str| {
        let config = dir
            .config()
            .append(&format!("[metrics]\nlisten = \"{listen}\"\n"))
            .write("bad-metrics.toml");
        let done = dir.sigild_config(&config).run_to_exit();
        done.error_line().to_owned()
    };
    let line = refused("run/metrics.sock");
    assert!(
        line.contains("metrics.listen \"run/metrics.sock\"") && line.contains("must be absolute"),
        "{line}"
    );
    let line = refused("localhost:9464");
    assert!(line.contains("metrics.listen \"localhost:9464\""), "{line}");
    // An address that is taken: the error names it, and the API socket never served.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let addr = taken.local_addr().expect("addr").to_string();
    let line = refused(&addr);
    assert!(
        line.contains(&format!("cannot serve metrics on {addr}")),
        "{line}"
    );
    assert!(!dir.socket().exists(), "the API socket was bound");
}
