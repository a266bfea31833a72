//! Malformed requests, garbage on the socket and bad configurations: each gets its documented
//! status code or a clear start-up error naming the problem, and changes nothing (same keys,
//! still signing, token still usable).

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sigil_e2e::{
    Client, Daemon, DevDir, OTHER_UID, SOFTHSM_MODULE, parse_public, pkcs11_spy_path,
    pseudo_random_bytes, read_audit, read_text, read_until_closed, sign_message_request,
    token_inspect_exe, toml_path, write_file,
};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;

const MAX_MESSAGE_BYTES: usize = 1024;

/// A request of any of the four kinds, so cases can be listed in one table.
#[derive(Debug, Clone)]
enum Req {
    Sign(pb::SignRequest),
    Public(String),
    Delete(String),
    Generate(pb::GenerateKeyRequest),
}

impl Req {
    async fn send(self, client: &mut Client) -> Result<(), tonic::Status> {
        match self {
            Req::Sign(r) => client.sign_request(r).await.map(|_| ()),
            Req::Public(id) => client.public(&id).await.map(|_| ()),
            Req::Delete(id) => client.delete(&id).await,
            Req::Generate(r) => client.keys.generate_key(r).await.map(|_| ()),
        }
    }

    /// The audit `op` this request is recorded under when refused.
    fn op(&self) -> &'static str {
        match self {
            Req::Sign(_) => "sign",
            Req::Public(_) => "public",
            Req::Delete(_) => "delete",
            Req::Generate(_) => "generate",
        }
    }
}

fn digest_req(key_id: &str, digest: Vec<u8>) -> Req {
    Req::Sign(pb::SignRequest {
        key_id: key_id.to_owned(),
        payload: Some(pb::sign_request::Payload::Sha256Digest(digest)),
        encoding: pb::SignatureEncoding::Raw.into(),
    })
}

fn message_req(key_id: &str, message: Vec<u8>) -> Req {
    Req::Sign(sign_message_request(
        key_id,
        &message,
        pb::SignatureEncoding::Raw,
    ))
}

fn generate_req(role: &str, gun: &str, backend: &str) -> Req {
    Req::Generate(pb::GenerateKeyRequest {
        backend: backend.to_owned(),
        role: role.to_owned(),
        gun: gun.to_owned(),
        algorithm: pb::Algorithm::EcdsaP256.into(),
    })
}

/// A daemon with `max_message_bytes = 1024`, an ECDSA and an Ed25519 key.
async fn small_limit_daemon(dir: &DevDir) -> (Daemon, pb::PublicKey, pb::PublicKey) {
    dir.init();
    let config = dir
        .config()
        .max_message_bytes(MAX_MESSAGE_BYTES)
        .write("small-limit.toml");
    let daemon = dir.sigild_config(&config).spawn();
    let mut client = daemon.client().await;
    let ecdsa = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let ed25519 = client
        .generate("snapshot", "example.com/app", pb::Algorithm::Ed25519)
        .await;
    (daemon, ecdsa, ed25519)
}

/// Nothing changed: the same keys are listed and the ECDSA key still signs verifiably.
async fn assert_unchanged(
    client: &mut Client,
    baseline: &[pb::PublicKey],
    ecdsa: &pb::PublicKey,
    after: &str,
) {
    assert_eq!(
        client.list().await,
        baseline,
        "key list changed after {after}"
    );
    let message = format!("still signing after {after}");
    let resp = client
        .sign_message(
            &ecdsa.key_id,
            message.as_bytes(),
            pb::SignatureEncoding::Raw,
        )
        .await
        .unwrap_or_else(|s| panic!("signing failed after {after}: {s:?}"));
    parse_public(ecdsa)
        .verify(message.as_bytes(), &resp.signature)
        .unwrap_or_else(|e| panic!("signature after {after} does not verify: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_their_status_code_and_change_nothing() {
    let dir = DevDir::new();
    let (daemon, ecdsa, ed25519) = small_limit_daemon(&dir).await;
    let mut client = daemon.client().await;
    let baseline = client.list().await;
    let unknown = "0123456789abcdef".repeat(4);
    let e = ecdsa.key_id.as_str();

    // (what, request, code, audit outcome: None when the request never reaches the service)
    let cases: Vec<(&str, Req, Code, Option<&str>)> = vec![
        (
            "unknown key id",
            message_req(&unknown, b"m".to_vec()),
            Code::NotFound,
            Some("not_found"),
        ),
        (
            "31-byte digest",
            digest_req(e, vec![7; 31]),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "33-byte digest",
            digest_req(e, vec![7; 33]),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "empty digest",
            digest_req(e, Vec::new()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "message one byte over max_message_bytes",
            message_req(e, vec![b'x'; MAX_MESSAGE_BYTES + 1]),
            Code::ResourceExhausted,
            Some("invalid"),
        ),
        (
            "empty key_id",
            message_req("", b"m".to_vec()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "missing payload",
            Req::Sign(pb::SignRequest {
                key_id: e.to_owned(),
                payload: None,
                encoding: 0,
            }),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "upper-case key id",
            message_req(&e.to_ascii_uppercase(), b"m".to_vec()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "63-character key id",
            message_req(&e[..63], b"m".to_vec()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "non-hex key id",
            message_req(&"zz".repeat(32), b"m".to_vec()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "key id with a path in it",
            message_req(&format!("../{}", &e[3..]), b"m".to_vec()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "digest for an ed25519 key",
            digest_req(&ed25519.key_id, vec![7; 32]),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "GetPublicKey with a malformed id",
            Req::Public("xyz".into()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "GetPublicKey of an unknown key",
            Req::Public(unknown.clone()),
            Code::NotFound,
            Some("not_found"),
        ),
        (
            "DeleteKey with an empty id",
            Req::Delete(String::new()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "DeleteKey with an upper-case id",
            Req::Delete(e.to_ascii_uppercase()),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "DeleteKey of an unknown key",
            Req::Delete(unknown.clone()),
            Code::NotFound,
            Some("not_found"),
        ),
        (
            "GenerateKey with no role",
            generate_req("", "example.com/app", ""),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "GenerateKey with a space in the role",
            generate_req("a b", "", ""),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "GenerateKey with a role starting with /",
            generate_req("/root", "", ""),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "GenerateKey with a ':' in the role",
            generate_req("targets:x", "", ""),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "GenerateKey with a newline in the gun",
            generate_req("targets", "a\nb", ""),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "GenerateKey on an unknown backend",
            generate_req("targets", "", "nope"),
            Code::InvalidArgument,
            Some("invalid"),
        ),
        (
            "unknown signature encoding",
            Req::Sign(pb::SignRequest {
                key_id: e.to_owned(),
                payload: Some(pb::sign_request::Payload::Message(b"m".to_vec())),
                encoding: 7,
            }),
            Code::InvalidArgument,
            None,
        ),
        (
            "GenerateKey with an unknown algorithm",
            Req::Generate(pb::GenerateKeyRequest {
                backend: String::new(),
                role: "targets".into(),
                gun: String::new(),
                algorithm: 99,
            }),
            Code::InvalidArgument,
            None,
        ),
    ];

    for (what, req, code, audited) in cases {
        let op = req.op();
        let lines_before = read_audit(daemon.audit_log()).len();
        let status = req.send(&mut client).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what}: a refusal says why");
        assert!(!status.message().contains("internal"), "{what}: {status:?}");
        let audit = read_audit(daemon.audit_log());
        let new = &audit[lines_before..];
        if let Some(outcome) = audited {
            assert_eq!(new.len(), 1, "{what}: one audit line: {new:#?}");
            assert_eq!(
                (new[0].op.as_str(), new[0].outcome.as_str()),
                (op, outcome),
                "{what}"
            );
            assert_eq!(new[0].reason.as_deref(), Some(status.message()), "{what}");
        }
        assert_unchanged(&mut client, &baseline, &ecdsa, what).await;
    }

    // The limit is inclusive: exactly max_message_bytes is signed.
    let message = vec![b'y'; MAX_MESSAGE_BYTES];
    let resp = client
        .sign_message(e, &message, pb::SignatureEncoding::Raw)
        .await
        .expect("a message of exactly max_message_bytes");
    parse_public(&ecdsa)
        .verify(&message, &resp.signature)
        .expect("verifies");
    // The too-large message's refusal names the limit.
    let status = client
        .sign_message(
            e,
            &vec![b'x'; MAX_MESSAGE_BYTES + 1],
            pb::SignatureEncoding::Raw,
        )
        .await
        .expect_err("too large");
    assert!(status.message().contains("1024"), "{status:?}");

    // Nothing reached the token either.
    let report = dir.inspect_token(token_inspect_exe!());
    assert_eq!(report.private_keys.len(), 2, "{report:#?}");
}

/// The contract says RESOURCE_EXHAUSTED for a message over max_message_bytes "whatever its
/// size"; tonic itself refuses frames beyond its decoding limit (max_message_bytes + 64 KiB)
/// with OUT_OF_RANGE before the service sees them, which the daemon must translate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_beyond_the_frame_limit_is_resource_exhausted_too() {
    let dir = DevDir::new();
    let (daemon, ecdsa, _) = small_limit_daemon(&dir).await;
    let mut client = daemon.client().await;
    let baseline = client.list().await;
    for size in [
        MAX_MESSAGE_BYTES + 64 * 1024 + 1,
        256 * 1024,
        5 * 1024 * 1024,
    ] {
        let status = client
            .sign_message(&ecdsa.key_id, &vec![b'x'; size], pb::SignatureEncoding::Raw)
            .await
            .expect_err("an oversized message");
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{size} bytes: {status:?}"
        );
        assert_unchanged(&mut client, &baseline, &ecdsa, "an oversized frame").await;
    }
}

/// The Keys and Tokens services carry only short strings, so their frames are capped at 64 KiB:
/// a larger request is refused (RESOURCE_EXHAUSTED) before it is decoded, buffered field by
/// field or audited, and the daemon is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tokens_requests_have_a_small_frame_limit() {
    // The default max_message_bytes (4 MiB), which used to be the Keys limit too.
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let ecdsa = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let baseline = client.list().await;
    let audit_before = read_audit(daemon.audit_log()).len();
    let big = "x".repeat(100 * 1024);

    let status = client
        .keys
        .get_public_key(pb::GetPublicKeyRequest {
            key_id: big.clone(),
        })
        .await
        .expect_err("a 100 KiB key id");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let status = client
        .keys
        .generate_key(pb::GenerateKeyRequest {
            backend: String::new(),
            role: "targets".into(),
            gun: big.clone(),
            algorithm: pb::Algorithm::EcdsaP256.into(),
        })
        .await
        .expect_err("a 100 KiB GUN");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let channel = sigil_e2e::unix_channel(sigil_e2e::unix_endpoint(), daemon.socket())
        .await
        .expect("a channel");
    let status = pb::tokens_client::TokensClient::new(channel)
        .unlock(pb::UnlockRequest {
            backend: big,
            pin: b"123456".to_vec(),
        })
        .await
        .expect_err("a 100 KiB backend name");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    assert_eq!(
        read_audit(daemon.audit_log()).len(),
        audit_before,
        "nothing refused before decoding is audited"
    );
    assert_unchanged(
        &mut client,
        &baseline,
        &ecdsa,
        "oversized Keys and Tokens frames",
    )
    .await;
    // A request of ordinary size still gets its own answer (and its audit line).
    let status = client
        .public(&"ab".repeat(32))
        .await
        .expect_err("an unknown key");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

/// Refusals decided while decoding (an encoding or algorithm value the API does not define)
/// are Sign/GenerateKey refusals like any other and must leave their audit line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_decided_while_decoding_are_audited_too() {
    let dir = DevDir::new();
    let (daemon, ecdsa, _) = small_limit_daemon(&dir).await;
    let mut client = daemon.client().await;
    let cases = [
        (
            "unknown signature encoding",
            Req::Sign(pb::SignRequest {
                key_id: ecdsa.key_id.clone(),
                payload: Some(pb::sign_request::Payload::Message(b"m".to_vec())),
                encoding: 7,
            }),
        ),
        (
            "GenerateKey with an unknown algorithm",
            Req::Generate(pb::GenerateKeyRequest {
                backend: String::new(),
                role: "targets".into(),
                gun: String::new(),
                algorithm: 99,
            }),
        ),
    ];
    for (what, req) in cases {
        let op = req.op();
        let before = read_audit(daemon.audit_log()).len();
        let status = req.send(&mut client).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        let audit = read_audit(daemon.audit_log());
        let new: Vec<_> = audit[before..]
            .iter()
            .map(|r| (r.op.as_str(), r.outcome.as_str()))
            .collect();
        assert_eq!(
            new,
            vec![(op, "invalid")],
            "{what}: refused but not audited"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_half_open_connections_do_not_disturb_the_daemon() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let socket = daemon.socket().to_owned();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let baseline = client.list().await;

    // Random bytes: the daemon drops the connection.
    let mut raw = UnixStream::connect(&socket).expect("raw connect");
    raw.write_all(&pseudo_random_bytes("garbage", 64 * 1024))
        .ok();
    let (_, closed) = read_until_closed(&mut raw, Duration::from_secs(10));
    assert!(closed, "the daemon kept a garbage connection open");
    assert_unchanged(&mut client, &baseline, &key, "random bytes").await;

    // A valid HTTP/2 preface followed by garbage frames.
    let mut raw = UnixStream::connect(&socket).expect("raw connect");
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(pseudo_random_bytes("frames", 8 * 1024));
    raw.write_all(&bytes).ok();
    let (_, closed) = read_until_closed(&mut raw, Duration::from_secs(10));
    assert!(
        closed,
        "the daemon kept a connection with garbage frames open"
    );
    assert_unchanged(&mut client, &baseline, &key, "garbage HTTP/2 frames").await;

    // Half-open connections, held while others are served.
    let held = half_open_connections(&socket);
    let mut fresh = daemon.client().await;
    assert_unchanged(&mut fresh, &baseline, &key, "half-open connections").await;
    assert_unchanged(&mut client, &baseline, &key, "half-open connections").await;
    drop(held);
    assert_unchanged(&mut fresh, &baseline, &key, "half-open connections closed").await;
}

/// Connections that never finish the HTTP/2 handshake: silent ones, a partial preface, a full
/// preface and SETTINGS that then never answer, and one that closed its writing side.
fn half_open_connections(socket: &Path) -> Vec<UnixStream> {
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(UnixStream::connect(socket).expect("idle connection"));
    }
    let mut partial = UnixStream::connect(socket).expect("partial preface");
    partial
        .write_all(b"PRI * HTTP/2.0\r\n")
        .expect("partial preface write");
    held.push(partial);
    let mut silent_peer = UnixStream::connect(socket).expect("preface + SETTINGS");
    silent_peer
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("preface write");
    held.push(silent_peer);
    let half_closed = UnixStream::connect(socket).expect("half-closed connection");
    half_closed
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown(Write)");
    held.push(half_closed);
    held
}

/// Waits until sigild has taken every connection in `held` into its HTTP/2 layer: the server
/// sends its SETTINGS frame first thing on a connection it accepted, so each must carry one.
fn await_server_settings(held: &[UnixStream]) {
    for (i, mut conn) in held.iter().enumerate() {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut header = [0u8; 9];
        std::io::Read::read_exact(&mut conn, &mut header)
            .unwrap_or_else(|e| panic!("connection {i}: no SETTINGS frame from sigild: {e}"));
        assert_eq!(header[3], 0x4, "connection {i}: first frame is SETTINGS");
    }
}

/// SIGTERM drains in-flight requests; a connection with no request in flight (here, one that
/// never finished its handshake) must not keep the daemon from exiting. Any local user who
/// can reach the socket could otherwise stall every restart until the service manager kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_not_held_up_by_idle_connections() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let socket = daemon.socket().to_owned();
    let held = half_open_connections(&socket);
    await_server_settings(&held);
    let status = tokio::task::spawn_blocking(move || daemon.stop_within(Duration::from_secs(10)))
        .await
        .expect("stopping sigild");
    assert!(
        status.success(),
        "exit status with idle connections open: {status}"
    );
    assert!(!socket.exists(), "socket removed");
    drop(held);
}

fn config_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/config")
        .join(name)
}

#[test]
fn unknown_config_keys_are_refused_by_name() {
    let dir = DevDir::new();
    for (file, key) in [
        ("unknown_top_level_key.toml", "colour"),
        ("unknown_server_key.toml", "sokcet"),
        ("unknown_backend_key.toml", "token_lable"),
        ("unknown_policy_key.toml", "comment"),
        ("unknown_key_selector_key.toml", "rol"),
        ("unknown_notary_signer_key.toml", "listen_addr"),
        ("wrong_type_max_message_bytes.toml", "max_message_bytes"),
    ] {
        let path = config_data(file);
        assert!(path.is_file(), "missing test data {}", path.display());
        for check in [false, true] {
            let mut sigild = dir.sigild_config(&path);
            if check {
                sigild = sigild.arg("--check");
            }
            let done = sigild.run_to_exit();
            let line = done.error_line();
            assert!(
                line.contains(key),
                "{file} (--check: {check}): the error does not name `{key}`: {line}"
            );
            assert!(
                line.contains(file),
                "{file}: the error does not name the file: {line}"
            );
        }
    }
}

#[test]
fn check_accepts_a_good_config_without_serving() {
    let dir = DevDir::new();
    dir.init();
    let config = dir.config().write("good.toml");
    let done = dir.sigild_config(&config).arg("--check").run_to_exit();
    assert!(
        done.status.success(),
        "--check on a good config: {}",
        done.stderr
    );
    assert!(done.stdout.contains("configuration OK"), "{}", done.stdout);
    assert!(!dir.socket().exists(), "--check must not create the socket");
}

#[test]
fn a_pin_file_others_can_read_is_refused() {
    let dir = DevDir::new();
    dir.init();
    let pin = dir.user_pin_file();
    for mode in [0o644, 0o640, 0o604] {
        write_file(&pin, format!("{}\n", dir.user_pin()), mode);
        let done = dir.sigild_dev().run_to_exit();
        let line = done.error_line();
        assert!(
            line.contains(&format!("has mode {mode:04o}"))
                && line.contains("must not be accessible by group or others"),
            "mode {mode:o}: {line}"
        );
        assert!(
            line.contains(&pin.display().to_string()),
            "names the file: {line}"
        );
        assert!(!dir.socket().exists(), "nothing served");
    }
    write_file(&pin, format!("{}\n", dir.user_pin()), 0o600);
    let daemon = dir.start();
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_tried_once_and_leaves_the_token_usable() {
    let dir = DevDir::new();
    dir.init();
    let wrong = dir.path().join("wrong.pin");
    write_file(&wrong, "not-the-pin-123456\n", 0o600);

    // Through OpenSC's pkcs11-spy, which logs every PKCS#11 call sigild makes.
    let spy = pkcs11_spy_path().expect("pkcs11-spy.so (checked by require_tools)");
    let spy_log = dir.root().join("pkcs11-spy.log");
    let config = dir
        .config()
        .pin_file(&wrong)
        .module(&spy)
        .write("wrong-pin-spy.toml");
    let done = dir
        .sigild_config(&config)
        .env("PKCS11SPY", SOFTHSM_MODULE)
        .env("PKCS11SPY_OUTPUT", &spy_log)
        .run_to_exit();
    let line = done.error_line();
    assert!(line.contains("PIN incorrect"), "{line}");
    assert!(line.contains("not retried"), "{line}");
    let calls = read_text(&spy_log);
    let logins: Vec<&str> = calls.lines().filter(|l| l.ends_with(": C_Login")).collect();
    assert_eq!(
        logins.len(),
        1,
        "sigild must log in exactly once with a wrong PIN:\n{calls}"
    );
    assert!(calls.contains("CKR_PIN_INCORRECT"), "{calls}");

    // Again without the spy: same refusal.
    let config = dir.config().pin_file(&wrong).write("wrong-pin.toml");
    let line = dir
        .sigild_config(&config)
        .run_to_exit()
        .error_line()
        .to_owned();
    assert!(line.contains("PIN incorrect"), "{line}");

    // The token is neither locked nor at its last try, and the right PIN works.
    let report = dir.inspect_token(token_inspect_exe!());
    assert_eq!(report.login_error, None, "{report:#?}");
    assert!(
        !report.user_pin_locked && !report.user_pin_final_try,
        "{report:#?}"
    );
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "", pb::Algorithm::EcdsaP256)
        .await;
    let resp = client
        .sign_message(
            &key.key_id,
            b"after a wrong PIN",
            pb::SignatureEncoding::Raw,
        )
        .await
        .expect("signing with the right PIN");
    parse_public(&key)
        .verify(b"after a wrong PIN", &resp.signature)
        .expect("verifies");
}

#[test]
fn unsafe_or_taken_socket_paths_are_refused() {
    let dir = DevDir::new();
    dir.init();

    // A socket directory others, or its group, can write to, or that another user owns:
    // whoever can write there could swap the socket for their own.
    for (name, mode, owner, needle) in [
        (
            "world-writable",
            0o777,
            None,
            "writable by its group or others",
        ),
        (
            "group-writable",
            0o770,
            None,
            "writable by its group or others",
        ),
        ("foreign", 0o755, Some(65534), "owned by uid 65534"),
    ] {
        let unsafe_dir = dir.root().join(name);
        std::fs::create_dir(&unsafe_dir).expect("mkdir");
        std::fs::set_permissions(
            &unsafe_dir,
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .expect("chmod");
        if let Some(uid) = owner {
            assert!(
                nix::unistd::geteuid().is_root(),
                "this check needs root to give a directory away (run the tests as root, as `make test` in the container does)"
            );
            nix::unistd::chown(&unsafe_dir, Some(nix::unistd::Uid::from_raw(uid)), None)
                .expect("chown");
        }
        let config = dir
            .config()
            .socket(&unsafe_dir.join("sigild.sock"))
            .write(&format!("{name}.toml"));
        let line = dir
            .sigild_config(&config)
            .run_to_exit()
            .error_line()
            .to_owned();
        assert!(line.contains(needle), "{name}: {line}");
        assert!(
            !unsafe_dir.join("sigild.sock").exists(),
            "{name}: a socket was created"
        );
    }

    // A regular file where the socket should be is never removed.
    let file = dir.root().join("not-a-socket");
    write_file(&file, "precious", 0o600);
    let config = dir.config().socket(&file).write("file.toml");
    let line = dir
        .sigild_config(&config)
        .run_to_exit()
        .error_line()
        .to_owned();
    assert!(line.contains("not a socket"), "{line}");
    assert_eq!(read_text(&file), "precious");

    // A second daemon on a live socket refuses and leaves the first one serving: with the
    // same config its state dir's lock stops it; with a state dir of its own, the socket.
    let daemon = dir.start();
    let line = dir.sigild_dev().run_to_exit().error_line().to_owned();
    assert!(line.contains("in use by another sigild"), "{line}");
    let own_state = read_text(&dir.dev_config()).replace(
        &toml_path(&dir.path().join("state")),
        &toml_path(&dir.path().join("state-2")),
    );
    assert!(
        own_state.contains("state-2"),
        "the dev config names its state dir"
    );
    let second = dir.path().join("second.toml");
    write_file(&second, own_state, 0o600);
    let line = dir
        .sigild_config(&second)
        .run_to_exit()
        .error_line()
        .to_owned();
    assert!(line.contains("another process is serving"), "{line}");
    let mut first = daemon;
    assert!(first.is_running(), "the first daemon must keep running");
    assert!(
        UnixStream::connect(first.socket()).is_ok(),
        "and keep serving"
    );
    assert!(first.stop().success());
}

#[test]
fn policy_rules_naming_nobody_or_unknown_users_are_refused() {
    let dir = DevDir::new();
    dir.init();
    for (extra, needle) in [
        (
            "[[policy]]\nname = \"nobody\"\nkeys = [{ gun = \"*\" }]\nallow = [\"sign\"]\n",
            "names no users",
        ),
        (
            "[[policy]]\nname = \"ghost\"\nusers = [\"no-such-user-sigil-e2e\"]\nkeys = [{ gun = \"*\" }]\nallow = [\"sign\"]\n",
            "no-such-user-sigil-e2e",
        ),
        (
            &format!(
                "[[policy]]\nname = \"typo\"\nuids = [{OTHER_UID}]\nkeys = [{{ gun = \"*\" }}]\nallow = [\"sing\"]\n"
            ),
            "sing",
        ),
    ] {
        let config = dir.config().append(extra).write("bad-policy.toml");
        let line = dir
            .sigild_config(&config)
            .run_to_exit()
            .error_line()
            .to_owned();
        assert!(line.contains(needle), "{needle}: {line}");
    }
}
