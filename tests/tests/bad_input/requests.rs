//! Malformed requests on the API socket: each gets its status code, is audited, and changes
//! nothing; frame limits per service.

use super::*;

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
