//! What protects a key: on the token it is generated sensitive and never extractable (read
//! back directly, not through sigild), and through sigild the per-key policy decides who may
//! see, read, sign with or delete it, with every refusal audited.

use std::process::Command;

use sigil_e2e::{
    AuditRecord, DEV_TOKEN_LABEL, DevDir, OTHER_GID, OTHER_UID, Rpc, SOFTHSM_MODULE, Stranger,
    client_exe, parse_public, read_audit, token_inspect_exe,
};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;

fn sign(key_id: &str) -> Rpc {
    Rpc::Sign {
        key_id: key_id.to_owned(),
        message_hex: hex::encode(b"a stranger's message"),
    }
}

fn stranger_lines<'a>(audit: &'a [AuditRecord], op: &str, key_id: &str) -> Vec<&'a AuditRecord> {
    audit
        .iter()
        .filter(|r| r.uid == OTHER_UID && r.op == op && r.key_id == key_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_keys_are_sensitive_and_never_extractable_on_the_token() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let keys = [
        client
            .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
            .await,
        client
            .generate(
                "targets/releases",
                "example.com/app",
                pb::Algorithm::Ed25519,
            )
            .await,
        client.generate("root", "", pb::Algorithm::Rsa3072Pss).await,
    ];

    // Read while the daemon runs: it holds no special lock on what the token reports.
    let report = dir.inspect_token(token_inspect_exe!());
    assert_eq!(report.login_error, None);
    assert_eq!(report.private_keys.len(), keys.len(), "{report:#?}");
    assert_eq!(report.public_key_count, keys.len(), "{report:#?}");
    for key in &keys {
        parse_public(key);
        let on_token = report
            .key(&key.key_id)
            .unwrap_or_else(|| panic!("key {} is not on the token: {report:#?}", key.key_id));
        assert_eq!(on_token.label, format!("sigil:{}:{}", key.role, key.gun));
        assert_eq!(on_token.id_hex.len(), 32, "a 16-byte random CKA_ID");
        for (flag, want) in [
            ("Sensitive", true),
            ("AlwaysSensitive", true),
            ("Extractable", false),
            ("NeverExtractable", true),
            ("Token", true),
            ("Private", true),
            ("Local", true),
            ("Sign", true),
            ("Decrypt", false),
            ("Unwrap", false),
            ("Derive", false),
        ] {
            assert_eq!(on_token.flag(flag), want, "{flag} on {on_token:#?}");
        }
        // No secret attribute can be read: the token answers "sensitive" for each that the
        // key type has, and a bulk read returns none of them.
        assert!(
            on_token.secret_values_returned.is_empty(),
            "secret values returned: {on_token:#?}"
        );
        let secret_names: &[&str] = match key.algorithm() {
            pb::Algorithm::Rsa3072Pss => &["PrivateExponent", "Prime1", "Prime2", "Coefficient"],
            _ => &["Value"],
        };
        for name in secret_names {
            assert_eq!(
                on_token.secret_attributes.get(*name).map(String::as_str),
                Some("sensitive"),
                "{name} on {on_token:#?}"
            );
        }
        for (name, answer) in &on_token.secret_attributes {
            assert!(
                !answer.starts_with("available"),
                "{name} is readable: {on_token:#?}"
            );
        }
    }

    // A second opinion from OpenSC's pkcs11-tool, which reads the same flags independently.
    let output = Command::new("pkcs11-tool")
        .args(["--module", SOFTHSM_MODULE, "--token-label", DEV_TOKEN_LABEL])
        .args([
            "--login",
            "--pin",
            &dir.user_pin(),
            "--list-objects",
            "--type",
            "privkey",
        ])
        .env("SOFTHSM2_CONF", dir.softhsm_conf())
        .output()
        .expect("running pkcs11-tool");
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pkcs11-tool: {listing}");
    let access: Vec<&str> = listing
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Access:"))
        .collect();
    assert_eq!(access.len(), keys.len(), "pkcs11-tool listing:\n{listing}");
    for line in access {
        assert!(
            line.contains("never extractable") && line.contains("always sensitive"),
            "pkcs11-tool says {line:?}:\n{listing}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_sees_nothing_under_the_dev_policy() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let public = parse_public(&key);
    let stranger = Stranger::new(client_exe!());
    let socket = daemon.socket();

    let listed = stranger.run(socket, &Rpc::List);
    assert_eq!(listed.code(), Code::Ok, "{listed:?}");
    assert!(
        listed.key_ids.is_empty(),
        "a stranger lists {:?}",
        listed.key_ids
    );

    let id = key.key_id.clone();
    for (rpc, want) in [
        (Rpc::Public { key_id: id.clone() }, Code::NotFound),
        (sign(&id), Code::NotFound),
        (Rpc::Delete { key_id: id.clone() }, Code::NotFound),
        (
            Rpc::Generate {
                role: "targets".into(),
                gun: "example.com/app".into(),
            },
            Code::PermissionDenied,
        ),
    ] {
        let outcome = stranger.run(socket, &rpc);
        assert_eq!(outcome.code(), want, "{rpc:?}: {outcome:?}");
        assert!(outcome.key_ids.is_empty() && outcome.signature_hex.is_empty());
        // NOT_FOUND for an invisible key reads exactly like an unknown key.
        if want == Code::NotFound {
            assert_eq!(outcome.message, format!("key {id} not found"), "{rpc:?}");
        }
    }

    // Nothing changed: the owner still sees and signs with the key.
    assert_eq!(client.list().await, vec![key.clone()]);
    let resp = client
        .sign_message(&id, b"owner", pb::SignatureEncoding::Raw)
        .await
        .expect("owner signs");
    public.verify(b"owner", &resp.signature).expect("verifies");

    let audit = read_audit(daemon.audit_log());
    let signs = stranger_lines(&audit, "sign", &id);
    assert_eq!(signs.len(), 1, "{audit:#?}");
    let line = signs[0];
    assert_eq!((line.outcome.as_str(), line.gid), ("not_found", OTHER_GID));
    assert!(line.pid.is_some(), "the stranger's pid is recorded");
    // The log is for administrators: it names the key that was probed.
    assert_eq!(
        (
            line.role.as_str(),
            line.gun.as_str(),
            line.algorithm.as_deref()
        ),
        ("targets", "example.com/app", Some("ecdsa-p256"))
    );
    assert!(
        line.sha256.is_none(),
        "nothing was hashed for an invisible key"
    );
    let publics = stranger_lines(&audit, "public", &id);
    assert_eq!(
        publics.len(),
        1,
        "a refused GetPublicKey is audited: {audit:#?}"
    );
    assert_eq!(publics[0].outcome, "not_found");
    let deletes = stranger_lines(&audit, "delete", &id);
    assert_eq!(deletes.len(), 1, "{audit:#?}");
    assert_eq!(deletes[0].outcome, "not_found");
    let generates: Vec<_> = audit
        .iter()
        .filter(|r| r.uid == OTHER_UID && r.op == "generate")
        .collect();
    assert_eq!(generates.len(), 1, "{audit:#?}");
    assert_eq!(generates[0].outcome, "denied");
    assert_eq!(generates[0].key_id, "", "no key was made");
    assert_eq!(
        (generates[0].role.as_str(), generates[0].gun.as_str()),
        ("targets", "example.com/app")
    );
    // Only ECDSA: the owner's one key, no key generated for the stranger.
    assert_eq!(
        dir.inspect_token(token_inspect_exe!()).private_keys.len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_and_public_grant_shows_one_key_and_still_refuses_signing() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let app = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let other = client
        .generate("targets", "example.com/other", pb::Algorithm::EcdsaP256)
        .await;
    let root = client.generate("root", "", pb::Algorithm::Ed25519).await;
    drop(client);
    assert!(daemon.stop().success());

    // Besides the glob grant, `sign` alone on `root` by (upper-case) key id: usable, unlisted.
    let config = dir
        .config()
        .append(&format!(
            "[[policy]]\nname = \"stranger-reads-app\"\nuids = [{OTHER_UID}]\n\
             keys = [{{ gun = \"example.com/app*\" }}]\nallow = [\"list\", \"public\"]\n\n\
             [[policy]]\nname = \"stranger-signs-root\"\ngids = [{OTHER_GID}]\n\
             keys = [{{ key_id = \"{root_id}\" }}]\nallow = [\"sign\"]\n",
            root_id = root.key_id.to_ascii_uppercase()
        ))
        .write("grant.toml");
    let daemon = dir.sigild_config(&config).spawn();
    let socket = daemon.socket();
    let stranger = Stranger::new(client_exe!());

    let listed = stranger.run(socket, &Rpc::List);
    assert_eq!(listed.code(), Code::Ok, "{listed:?}");
    assert_eq!(
        listed.key_ids,
        vec![app.key_id.clone()],
        "the stranger sees only the granted key"
    );

    let public = stranger.run(
        socket,
        &Rpc::Public {
            key_id: app.key_id.clone(),
        },
    );
    assert_eq!(public.code(), Code::Ok, "{public:?}");
    assert_eq!(public.key_ids, vec![app.key_id.clone()]);

    for (rpc, want) in [
        (sign(&app.key_id), Code::PermissionDenied),
        (
            Rpc::Delete {
                key_id: app.key_id.clone(),
            },
            Code::PermissionDenied,
        ),
        (sign(&other.key_id), Code::NotFound),
        (
            Rpc::Public {
                key_id: other.key_id.clone(),
            },
            Code::NotFound,
        ),
        (
            Rpc::Public {
                key_id: root.key_id.clone(),
            },
            Code::PermissionDenied,
        ),
        (
            Rpc::Generate {
                role: "targets".into(),
                gun: "example.com/app".into(),
            },
            Code::PermissionDenied,
        ),
    ] {
        let outcome = stranger.run(socket, &rpc);
        assert_eq!(outcome.code(), want, "{rpc:?}: {outcome:?}");
        assert!(
            outcome.signature_hex.is_empty() && outcome.key_ids.is_empty(),
            "{outcome:?}"
        );
    }

    // `sign` without `list`: the key is not listed, yet signs for its group.
    let signed = stranger.run(socket, &sign(&root.key_id));
    assert_eq!(signed.code(), Code::Ok, "{signed:?}");
    let signature = hex::decode(&signed.signature_hex).expect("hex");
    parse_public(&root)
        .verify(b"a stranger's message", &signature)
        .expect("the stranger's Ed25519 signature verifies");

    let audit = read_audit(daemon.audit_log());
    let root_signs = stranger_lines(&audit, "sign", &root.key_id);
    assert_eq!(root_signs.len(), 1, "{audit:#?}");
    assert_eq!(root_signs[0].outcome, "ok");
    let denied = stranger_lines(&audit, "sign", &app.key_id);
    assert_eq!(denied.len(), 1, "{audit:#?}");
    let line = denied[0];
    assert_eq!(
        (line.outcome.as_str(), line.uid, line.gid),
        ("denied", OTHER_UID, OTHER_GID)
    );
    // The stranger may see this key, so the line names it.
    assert_eq!(
        (line.role.as_str(), line.gun.as_str()),
        ("targets", "example.com/app")
    );
    assert_eq!(line.algorithm.as_deref(), Some("ecdsa-p256"));
    let hidden = stranger_lines(&audit, "sign", &other.key_id);
    assert_eq!(hidden.len(), 1, "{audit:#?}");
    assert_eq!(
        (hidden[0].outcome.as_str(), hidden[0].gun.as_str()),
        ("not_found", "example.com/other")
    );
    let probed = stranger_lines(&audit, "public", &other.key_id);
    assert_eq!(probed.len(), 1, "{audit:#?}");
    assert_eq!(probed[0].outcome, "not_found");
    // A granted GetPublicKey is not a refusal and leaves no line.
    assert!(
        stranger_lines(&audit, "public", &app.key_id).is_empty(),
        "{audit:#?}"
    );
    let delete = stranger_lines(&audit, "delete", &app.key_id);
    assert_eq!(delete.len(), 1, "{audit:#?}");
    assert_eq!(delete[0].outcome, "denied");

    // The owner's rights are untouched and all three keys are still there.
    let mut client = daemon.client().await;
    assert_eq!(client.list().await.len(), 3);
    let resp = client
        .sign_message(&app.key_id, b"owner", pb::SignatureEncoding::Der)
        .await
        .expect("owner signs");
    parse_public(&app)
        .verify(b"owner", &resp.signature)
        .expect("verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_deletes_a_key_for_good() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let doomed = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let kept = client
        .generate("targets", "example.com/app", pb::Algorithm::Ed25519)
        .await;
    assert_eq!(
        dir.inspect_token(token_inspect_exe!()).private_keys.len(),
        2
    );

    client.delete(&doomed.key_id).await.expect("DeleteKey");
    assert_eq!(client.list().await, vec![kept.clone()]);
    for status in [
        client
            .public(&doomed.key_id)
            .await
            .expect_err("public of a deleted key"),
        client
            .sign_message(&doomed.key_id, b"m", pb::SignatureEncoding::Raw)
            .await
            .expect_err("sign with a deleted key"),
        client
            .delete(&doomed.key_id)
            .await
            .expect_err("deleting twice"),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    // Both halves are gone from the token itself.
    let report = dir.inspect_token(token_inspect_exe!());
    assert!(report.key(&doomed.key_id).is_none(), "{report:#?}");
    assert!(report.key(&kept.key_id).is_some(), "{report:#?}");
    assert_eq!(
        (report.private_keys.len(), report.public_key_count),
        (1, 1),
        "{report:#?}"
    );

    let audit = read_audit(daemon.audit_log());
    let deletes: Vec<_> = audit
        .iter()
        .filter(|r| r.op == "delete" && r.key_id == doomed.key_id)
        .map(|r| (r.outcome.as_str(), r.role.as_str(), r.gun.as_str()))
        .collect();
    assert_eq!(
        deletes,
        vec![("ok", "targets", "example.com/app"), ("not_found", "", "")],
        "{audit:#?}"
    );

    drop(client);
    assert!(daemon.stop().success());
    let daemon = dir.start();
    let mut client = daemon.client().await;
    assert_eq!(
        client.list().await,
        vec![kept.clone()],
        "still gone after a restart"
    );
    let resp = client
        .sign_message(&kept.key_id, b"kept", pb::SignatureEncoding::Raw)
        .await
        .expect("the kept key still signs");
    parse_public(&kept)
        .verify(b"kept", &resp.signature)
        .expect("verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy_and_a_bad_file_keeps_the_old_one() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let app = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let other = client
        .generate("targets", "example.com/other", pb::Algorithm::EcdsaP256)
        .await;
    drop(client);
    assert!(daemon.stop().success());

    let owner_only = dir.config();
    let granted = dir.config().append(&format!(
        "[[policy]]\nname = \"stranger-signs-app\"\nuids = [{OTHER_UID}]\n\
         keys = [{{ gun = \"example.com/app\", role = \"targets\" }}]\n\
         allow = [\"list\", \"public\", \"sign\"]\n"
    ));
    let config = owner_only.write("hup.toml");
    let daemon = dir.sigild_config(&config).spawn();
    let socket = daemon.socket();
    let stranger = Stranger::new(client_exe!());
    let sees = |stranger: &Stranger| stranger.run(socket, &Rpc::List).key_ids;
    assert!(sees(&stranger).is_empty());
    assert_eq!(
        stranger.run(socket, &sign(&app.key_id)).code(),
        Code::NotFound
    );

    // Grant, reload: the stranger now sees and signs with exactly that key.
    granted.write("hup.toml");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("policy reloaded", 1);
    assert_eq!(sees(&stranger), vec![app.key_id.clone()]);
    let signed = stranger.run(socket, &sign(&app.key_id));
    assert_eq!(signed.code(), Code::Ok, "{signed:?}");
    let signature = hex::decode(&signed.signature_hex).expect("hex signature");
    parse_public(&app)
        .verify(b"a stranger's message", &signature)
        .expect("the stranger's signature verifies");
    assert_eq!(
        stranger.run(socket, &sign(&other.key_id)).code(),
        Code::NotFound
    );

    // A broken file is refused and the policy in force stays.
    std::fs::write(&config, format!("{}\nbogus_key = 1\n", granted.text())).expect("rewrite");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("policy not reloaded", 1);
    assert_eq!(sees(&stranger), vec![app.key_id.clone()], "old policy kept");

    // Revoke, reload: gone again.
    owner_only.write("hup.toml");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("policy reloaded", 2);
    assert!(sees(&stranger).is_empty());
    assert_eq!(
        stranger.run(socket, &sign(&app.key_id)).code(),
        Code::NotFound
    );

    let audit = read_audit(daemon.audit_log());
    let outcomes: Vec<&str> = stranger_lines(&audit, "sign", &app.key_id)
        .iter()
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(outcomes, vec!["not_found", "ok", "not_found"], "{audit:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_keys_cannot_be_attested_and_say_so() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    assert_eq!(key.backend_type, "pkcs11");
    assert_eq!((key.device_serial, key.attested), (0, false));
    assert!(key.touch_policy.is_empty());
    let status = client
        .keys
        .attest_key(pb::AttestKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .expect_err("PKCS#11 keys have no attestation");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("cannot attest"), "{status:?}");
    let status = client
        .keys
        .attest_key(pb::AttestKeyRequest {
            key_id: "ab".repeat(32),
        })
        .await
        .expect_err("unknown key");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}
