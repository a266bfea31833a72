//! Signing through sigild's Unix socket with every algorithm, verified locally with the `tuf`
//! crate and cross-checked with OpenSSL; keys outlive the daemon; SIGTERM drains in-flight
//! requests, exits 0 and removes the socket.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sigil_e2e::{
    Client, DEV_BACKEND, DevDir, openssl, parse_public, read_audit, sha256, write_pem,
};
use sigil_proto::sigil_v1 as pb;
use sigil_tuf::key::{Algorithm, PublicKey};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

const RAW: pb::SignatureEncoding = pb::SignatureEncoding::Raw;
const DER: pb::SignatureEncoding = pb::SignatureEncoding::Der;

fn tuf_algorithm(a: pb::Algorithm) -> Algorithm {
    match a {
        pb::Algorithm::EcdsaP256 | pb::Algorithm::Unspecified => Algorithm::EcdsaP256,
        pb::Algorithm::Ed25519 => Algorithm::Ed25519,
        pb::Algorithm::Rsa3072Pss => Algorithm::Rsa3072Pss,
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `openssl dgst -sha256 [opts] -verify pub.pem -signature sig file`.
fn openssl_dgst_verify(pem: &Path, sig: &Path, file: &Path, extra: &[&str]) -> (bool, String) {
    let mut args: Vec<&OsStr> = vec![os("dgst"), os("-sha256")];
    args.extend(extra.iter().map(|s| os(s)));
    args.extend([
        os("-verify"),
        pem.as_os_str(),
        os("-signature"),
        sig.as_os_str(),
        file.as_os_str(),
    ]);
    openssl(&args)
}

/// Signs `message` every valid way for `key`, checking each response and signature.
async fn sign_every_way(client: &mut Client, key: &pb::PublicKey, public: &PublicKey, work: &Path) {
    let id = &key.key_id;
    let algorithm = public.algorithm();
    let message = format!("sigil e2e: a message for {algorithm} key {id}").into_bytes();
    let digest = sha256(&message);
    let msg_file = work.join(format!("{id}.msg"));
    let pem = work.join(format!("{id}.pem"));
    std::fs::write(&msg_file, &message).expect("writing the message file");
    write_pem(&pem, public);
    // The PEM the tuf crate writes round-trips to the same key.
    assert_eq!(
        PublicKey::from_pem(&std::fs::read_to_string(&pem).expect("pem")).expect("pem parses"),
        *public
    );

    let check = |resp: &pb::SignResponse, encoding: pb::SignatureEncoding| {
        assert_eq!(resp.key_id, *id);
        assert_eq!(resp.algorithm, key.algorithm, "algorithm echoed");
        assert_eq!(
            resp.encoding, encoding as i32,
            "{algorithm}: encoding reported"
        );
    };

    // Over the message, RAW (also the meaning of UNSPECIFIED).
    for requested in [RAW, pb::SignatureEncoding::Unspecified] {
        let resp = client
            .sign_message(id, &message, requested)
            .await
            .unwrap_or_else(|s| panic!("{algorithm}: sign message {requested:?}: {s:?}"));
        check(&resp, RAW);
        let expected_len = match algorithm {
            Algorithm::EcdsaP256 | Algorithm::Ed25519 => 64,
            Algorithm::Rsa3072Pss => 384,
        };
        assert_eq!(
            resp.signature.len(),
            expected_len,
            "{algorithm}: RAW signature size"
        );
        public
            .verify(&message, &resp.signature)
            .unwrap_or_else(|e| panic!("{algorithm}: RAW signature over the message: {e}"));
        assert!(
            public
                .verify(b"a different message", &resp.signature)
                .is_err(),
            "{algorithm}: a signature must not verify over another message"
        );
    }

    match algorithm {
        Algorithm::EcdsaP256 => {
            let der = client
                .sign_message(id, &message, DER)
                .await
                .expect("ECDSA DER sign");
            check(&der, DER);
            assert_eq!(der.signature[0], 0x30, "DER signature is a SEQUENCE");
            public
                .verify(&message, &der.signature)
                .expect("DER signature verifies");
            for (encoding, wanted) in [(RAW, RAW), (DER, DER)] {
                let resp = client
                    .sign_digest(id, &digest, encoding)
                    .await
                    .unwrap_or_else(|s| panic!("ECDSA sign digest {encoding:?}: {s:?}"));
                check(&resp, wanted);
                public
                    .verify_digest(&digest, &resp.signature)
                    .expect("signature over the digest verifies");
                public
                    .verify(&message, &resp.signature)
                    .expect("a digest signature is a message signature");
            }
            // OpenSSL agrees on the DER signature, and refuses it over a tampered file.
            let sig_file = work.join(format!("{id}.sig.der"));
            std::fs::write(&sig_file, &der.signature).expect("writing the signature");
            let (ok, out) = openssl_dgst_verify(&pem, &sig_file, &msg_file, &[]);
            assert!(ok && out.contains("Verified OK"), "openssl refused: {out}");
            let tampered = work.join(format!("{id}.tampered"));
            std::fs::write(&tampered, b"tampered").expect("writing the tampered file");
            let (ok, out) = openssl_dgst_verify(&pem, &sig_file, &tampered, &[]);
            assert!(!ok, "openssl accepted a signature over another file: {out}");
        }
        Algorithm::Ed25519 => {
            // One encoding only: DER is ignored and RAW reported.
            let resp = client
                .sign_message(id, &message, DER)
                .await
                .expect("Ed25519 sign");
            check(&resp, RAW);
            public
                .verify(&message, &resp.signature)
                .expect("Ed25519 verifies");
            let sig_file = work.join(format!("{id}.sig"));
            std::fs::write(&sig_file, &resp.signature).expect("writing the signature");
            let (ok, out) = openssl(&[
                os("pkeyutl"),
                os("-verify"),
                os("-pubin"),
                os("-inkey"),
                pem.as_os_str(),
                os("-rawin"),
                os("-in"),
                msg_file.as_os_str(),
                os("-sigfile"),
                sig_file.as_os_str(),
            ]);
            assert!(
                ok && out.contains("Signature Verified Successfully"),
                "openssl: {out}"
            );
        }
        Algorithm::Rsa3072Pss => {
            let resp = client
                .sign_digest(id, &digest, RAW)
                .await
                .expect("RSA sign digest");
            check(&resp, RAW);
            public
                .verify_digest(&digest, &resp.signature)
                .expect("RSA digest verifies");
            let sig_file = work.join(format!("{id}.sig"));
            std::fs::write(&sig_file, &resp.signature).expect("writing the signature");
            let pss = [
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-sigopt",
                "rsa_mgf1_md:sha256",
            ];
            let (ok, out) = openssl_dgst_verify(&pem, &sig_file, &msg_file, &pss);
            assert!(
                ok && out.contains("Verified OK"),
                "openssl refused RSA-PSS: {out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_generates_lists_and_signs_verifiably() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    assert!(
        client.list().await.is_empty(),
        "a fresh token holds no keys"
    );

    // gRPC health: the server and both API services report SERVING (the daemon folds
    // backend health in shortly after it starts), and an unknown name is NOT_FOUND.
    for service in ["", "sigil.v1.Keys", "sigil.v1.Signer"] {
        let waited = Instant::now();
        loop {
            let answer = client
                .health
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .map(|r| r.into_inner().status());
            if let Ok(ServingStatus::Serving) = answer {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "health of {service:?}: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let unknown = client
        .health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown health service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let specs = [
        (pb::Algorithm::EcdsaP256, "targets", "example.com/app"),
        (
            pb::Algorithm::Ed25519,
            "targets/releases",
            "example.com/app",
        ),
        (pb::Algorithm::Rsa3072Pss, "root", ""),
    ];
    let mut generated = Vec::new();
    for (algorithm, role, gun) in specs {
        let key = client.generate(role, gun, algorithm).await;
        assert_eq!(
            (key.role.as_str(), key.gun.as_str(), key.backend.as_str()),
            (role, gun, DEV_BACKEND)
        );
        assert_eq!(key.algorithm, algorithm as i32);
        let public = parse_public(&key);
        assert_eq!(public.algorithm(), tuf_algorithm(algorithm));
        generated.push((key, public));
    }
    // UNSPECIFIED means ECDSA P-256.
    let default = client
        .generate("snapshot", "example.com/app", pb::Algorithm::Unspecified)
        .await;
    assert_eq!(default.algorithm, pb::Algorithm::EcdsaP256 as i32);
    let default_public = parse_public(&default);
    generated.push((default, default_public));

    let mut expected: Vec<pb::PublicKey> = generated.iter().map(|(k, _)| k.clone()).collect();
    expected.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    let mut listed = client.list().await;
    listed.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    assert_eq!(
        listed, expected,
        "ListKeys returns exactly the generated keys"
    );

    // Filters.
    let filtered = |backend: &str, gun: &str, role: &str| pb::ListKeysRequest {
        backend: backend.into(),
        gun: gun.into(),
        role: role.into(),
    };
    for (request, want) in [
        (filtered("", "", "targets"), 1),
        (filtered("", "example.com/app", ""), 3),
        (filtered(DEV_BACKEND, "", ""), 4),
        (filtered("other-backend", "", ""), 0),
        (filtered("", "example.com/app", "targets/releases"), 1),
    ] {
        let keys = client
            .keys
            .list_keys(request.clone())
            .await
            .expect("ListKeys with filters")
            .into_inner()
            .keys;
        assert_eq!(keys.len(), want, "{request:?}");
        for key in keys {
            assert!(request.role.is_empty() || key.role == request.role);
            assert!(request.gun.is_empty() || key.gun == request.gun);
        }
    }

    let work = dir.root().join("work");
    std::fs::create_dir(&work).expect("work dir");
    for (key, public) in &generated {
        assert_eq!(
            client.public(&key.key_id).await.expect("GetPublicKey"),
            *key
        );
        sign_every_way(&mut client, key, public, &work).await;
    }

    // Every signature above was audited once, with the digest of what was signed.
    let audit = read_audit(daemon.audit_log());
    let signs: Vec<_> = audit.iter().filter(|r| r.op == "sign").collect();
    assert!(signs.iter().all(|r| r.outcome == "ok" && r.uid == 0));
    assert!(
        signs
            .iter()
            .all(|r| r.pid == Some(i32::try_from(std::process::id()).expect("pid")))
    );
    assert_eq!(
        audit
            .iter()
            .filter(|r| r.op == "generate" && r.outcome == "ok")
            .count(),
        4
    );
    for (key, public) in &generated {
        let message = format!(
            "sigil e2e: a message for {} key {}",
            public.algorithm(),
            key.key_id
        );
        let digest = hex::encode(sha256(message.as_bytes()));
        let lines: Vec<_> = signs.iter().filter(|r| r.key_id == key.key_id).collect();
        assert!(!lines.is_empty(), "no audit line for {}", key.key_id);
        for line in lines {
            assert_eq!(line.sha256.as_deref(), Some(digest.as_str()));
            assert_eq!(
                (line.role.as_str(), line.gun.as_str()),
                (key.role.as_str(), key.gun.as_str())
            );
            assert_eq!(line.backend, DEV_BACKEND);
            assert_eq!(line.algorithm.as_deref(), Some(public.algorithm().as_str()));
            assert!(
                line.time.starts_with("20") && line.time.ends_with('Z'),
                "RFC 3339 UTC time: {}",
                line.time
            );
            assert!(line.latency_us < 60_000_000, "latency {}", line.latency_us);
        }
    }
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(
        status.success(),
        "sigild exit status after SIGTERM: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_restart_and_sigterm_drains_in_flight_requests() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let socket = daemon.socket().to_owned();
    let mut client = daemon.client().await;
    // GUNs with a port (':' is also the label separator) and non-ASCII text must come back
    // from the token unchanged.
    let keys = [
        client
            .generate(
                "targets",
                "registry.example.com:5000/app",
                pb::Algorithm::EcdsaP256,
            )
            .await,
        client
            .generate("snapshot", "例え.jp/アプリ", pb::Algorithm::EcdsaP256)
            .await,
        client
            .generate("targets/releases", "", pb::Algorithm::Ed25519)
            .await,
    ];
    let publics: Vec<PublicKey> = keys.iter().map(parse_public).collect();

    // Four clients, each on its own connection, sign back to back until the daemon stops.
    let stopping = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for c in 0..4 {
        let mut client = daemon.client().await;
        let key = keys[c % 2].clone();
        let public = publics[c % 2].clone();
        let stopping = Arc::clone(&stopping);
        loops.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for i in 0.. {
                let message = format!("drain {c} {i}");
                match client
                    .sign_message(&key.key_id, message.as_bytes(), RAW)
                    .await
                {
                    Ok(resp) => {
                        public
                            .verify(message.as_bytes(), &resp.signature)
                            .expect("a signature returned while draining verifies");
                        ok += 1;
                    }
                    Err(status) => {
                        assert!(
                            stopping.load(Ordering::SeqCst),
                            "sign failed before SIGTERM: {status:?}"
                        );
                        // Refused or cut off by the shutdown (a request sent after the
                        // GOAWAY fails in the client's transport, which tonic may report as
                        // INTERNAL), never an answer from the service.
                        let transport = std::error::Error::source(&status)
                            .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
                        assert!(
                            transport
                                || matches!(
                                    status.code(),
                                    tonic::Code::Unavailable | tonic::Code::Cancelled
                                ),
                            "unexpected status while stopping: {status:?}"
                        );
                        return ok;
                    }
                }
            }
            ok
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stopping.store(true, Ordering::SeqCst);
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(
        status.success(),
        "sigild exit status after SIGTERM: {status}"
    );
    assert!(!socket.exists(), "the socket must be removed on SIGTERM");
    let mut answered = 0;
    for handle in loops {
        let ok = handle.await.expect("signing loop");
        assert!(ok > 0, "a client got no signature in 400 ms");
        answered += ok;
    }
    // Draining: every signature the daemon made (and audited) reached its client.
    let made = read_audit(&dir.audit_log())
        .iter()
        .filter(|r| r.op == "sign" && r.outcome == "ok")
        .count();
    assert_eq!(made, answered, "signatures made vs. signatures received");

    // Same token, new process: the key ring is rebuilt from the token alone.
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let mut listed = client.list().await;
    listed.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    let mut expected = keys.to_vec();
    expected.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    assert_eq!(listed, expected, "the same keys after a restart");
    for (key, public) in keys.iter().zip(&publics) {
        let message = b"signed after a restart";
        let resp = client
            .sign_message(&key.key_id, message, RAW)
            .await
            .expect("sign");
        public
            .verify(message, &resp.signature)
            .expect("a key signs after a restart with the same public key");
    }
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(
        status.success(),
        "sigild exit status after SIGTERM: {status}"
    );
    assert!(!socket.exists(), "the socket must be removed on SIGTERM");
}

/// Runs OpenSC's pkcs11-tool on the dev token, as an administrator would; panics on failure.
fn pkcs11_tool(dir: &DevDir, args: &[&str]) -> String {
    let output = std::process::Command::new("pkcs11-tool")
        .args(["--module", sigil_e2e::SOFTHSM_MODULE, "--token-label"])
        .arg(sigil_e2e::DEV_TOKEN_LABEL)
        .args(args)
        .env("SOFTHSM2_CONF", dir.softhsm_conf())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running pkcs11-tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "pkcs11-tool {args:?}: {text}");
    text
}

/// SIGHUP reopens the token with its PIN file read again: a PIN changed on the token takes
/// effect without a restart once the file has it, a refused PIN is not offered again by the
/// next SIGHUP, and keys removed from the token behind sigild's back leave the key ring.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reopens_the_token_with_its_pin_file_read_again() {
    let dir = DevDir::new();
    dir.init();
    // Through OpenSC's pkcs11-spy, which logs every PKCS#11 call sigild makes.
    let spy = sigil_e2e::pkcs11_spy_path().expect("pkcs11-spy.so (checked by require_tools)");
    let spy_log = dir.root().join("pkcs11-spy.log");
    let config = dir.config().module(&spy).write("spy.toml");
    let mut daemon = dir
        .sigild_config(&config)
        .env("PKCS11SPY", sigil_e2e::SOFTHSM_MODULE)
        .env("PKCS11SPY_OUTPUT", &spy_log)
        .spawn();
    let pid = daemon.pid();
    let mut client = daemon.client().await;
    let kept = client
        .generate("targets", "example.com/kept", pb::Algorithm::EcdsaP256)
        .await;
    let gone = client
        .generate("targets", "example.com/gone", pb::Algorithm::EcdsaP256)
        .await;
    let digest = sha256(b"sighup");
    client
        .sign_digest(&kept.key_id, &digest, RAW)
        .await
        .expect("sign before the PIN changes");

    // An administrator changes the user PIN on the token; the PIN file still has the old one.
    let old_pin = dir.user_pin();
    let new_pin = "654321-changed";
    pkcs11_tool(
        &dir,
        &[
            "--login",
            "--pin",
            &old_pin,
            "--change-pin",
            "--new-pin",
            new_pin,
        ],
    );
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("token not reopened", 1);
    let refused = client
        .sign_digest(&kept.key_id, &digest, RAW)
        .await
        .expect_err("the old PIN no longer logs in");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    // The same file again: the refused PIN is not offered a second time.
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("token not reopened", 2);
    let calls = std::fs::read_to_string(&spy_log).expect("the spy log");
    assert_eq!(
        calls.matches("CKR_PIN_INCORRECT").count(),
        1,
        "the old PIN is offered once, not once per SIGHUP:\n{calls}"
    );

    // Meanwhile a key is removed from the token behind sigild's back.
    for kind in ["privkey", "pubkey"] {
        pkcs11_tool(
            &dir,
            &[
                "--login",
                "--pin",
                new_pin,
                "--delete-object",
                "--type",
                kind,
                "--label",
                "sigil:targets:example.com/gone",
            ],
        );
    }

    // The PIN file gets the new PIN: the next SIGHUP reopens the token, same process.
    sigil_e2e::write_file(&dir.user_pin_file(), format!("{new_pin}\n"), 0o600);
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("token reopened (SIGHUP)", 1);
    let signed = client
        .sign_digest(&kept.key_id, &digest, RAW)
        .await
        .expect("sign after the reopen");
    parse_public(&kept)
        .verify_digest(&digest, &signed.signature)
        .expect("a valid signature from the same key");
    let listed: Vec<String> = client.list().await.into_iter().map(|k| k.key_id).collect();
    assert_eq!(
        listed,
        vec![kept.key_id.clone()],
        "the removed key left the ring"
    );
    let status = client
        .sign_digest(&gone.key_id, &digest, RAW)
        .await
        .expect_err("the removed key");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(daemon.is_running());
    assert_eq!(daemon.pid(), pid, "no restart");
    assert!(
        !daemon.stderr().contains(new_pin) && !daemon.stderr().contains(&old_pin),
        "no PIN in the log"
    );
}
