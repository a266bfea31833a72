//! notary-signer's contract (CreateKey, Sign), refused calls audited, health following the
//! token.

use super::*;

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
