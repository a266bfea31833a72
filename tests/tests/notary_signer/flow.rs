//! The whole flow: an unchanged notary-server and the real client publish and verify through
//! sigild, across a restart; and the harness itself without sigild.

use super::*;

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
