//! sigild under concurrent load: 16 clients, each on its own connection, make 500 ECDSA
//! signatures apiece over distinct messages; every signature verifies and the audit log holds
//! exactly one line per signature, each with the digest of what was signed. Once with the
//! default single PKCS#11 session, once with four sessions while an RSA key is generated on
//! the token at the same time.

use std::collections::BTreeSet;
use std::time::Instant;

use sigil_e2e::{Daemon, DevDir, parse_public, read_audit, sha256};
use sigil_proto::sigil_v1 as pb;
use sigil_tuf::key::Algorithm;

const CLIENTS: usize = 16;
const SIGNATURES_PER_CLIENT: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_sign_8000_times_and_every_signature_is_audited_once() {
    let dir = DevDir::new();
    let daemon = dir.start();
    assert_eq!(token_threads(&daemon), 1, "one session by default");
    sign_under_load(daemon, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_four_sessions_signing_goes_on_while_a_key_is_generated() {
    let dir = DevDir::new();
    dir.init();
    let config = dir.config().sessions(4).write("sessions.toml");
    let daemon = dir.sigild_config(&config).spawn();
    assert_eq!(token_threads(&daemon), 4, "sessions = 4");
    sign_under_load(daemon, true).await;
}

/// How many PKCS#11 worker threads (named `pkcs11-<backend>-<n>`) sigild runs.
fn token_threads(daemon: &Daemon) -> usize {
    let tasks = format!("/proc/{}/task", daemon.pid());
    std::fs::read_dir(&tasks)
        .unwrap_or_else(|e| panic!("{tasks}: {e}"))
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("pkcs11-"))
        .count()
}

/// The load, checked; with `generate_meanwhile`, an RSA-3072 key is generated while the
/// clients sign, and must succeed too.
async fn sign_under_load(daemon: Daemon, generate_meanwhile: bool) {
    let mut client = daemon.client().await;
    let keys = [
        client
            .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
            .await,
        client
            .generate("snapshot", "example.com/app", pb::Algorithm::EcdsaP256)
            .await,
    ];

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let mut client = daemon.client().await;
        let key_id = keys[c % keys.len()].key_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut signed = Vec::with_capacity(SIGNATURES_PER_CLIENT);
            for i in 0..SIGNATURES_PER_CLIENT {
                let message = format!("client {c} signature {i}").into_bytes();
                // Half over the message (RAW), half over a digest (DER).
                let resp = if i % 2 == 0 {
                    client
                        .sign_message(&key_id, &message, pb::SignatureEncoding::Raw)
                        .await
                } else {
                    client
                        .sign_digest(&key_id, &sha256(&message), pb::SignatureEncoding::Der)
                        .await
                }
                .unwrap_or_else(|s| panic!("client {c} signature {i}: {s:?}"));
                assert_eq!(resp.key_id, key_id);
                signed.push((message, resp.signature, Instant::now()));
            }
            (c, signed)
        }));
    }
    // The generation's start and end, to count the signatures that completed in between.
    let generated = generate_meanwhile.then(|| {
        let mut client = client.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let key = client
                .generate("targets/rsa", "example.com/app", pb::Algorithm::Rsa3072Pss)
                .await;
            (key, began, Instant::now())
        })
    });
    let mut results = Vec::with_capacity(CLIENTS);
    for task in tasks {
        results.push(task.await.expect("signing task"));
    }
    let elapsed = started.elapsed();
    let total = CLIENTS * SIGNATURES_PER_CLIENT;
    eprintln!(
        "{total} signatures by {CLIENTS} clients in {elapsed:.2?} ({:.0}/s, debug build)",
        total as f64 / elapsed.as_secs_f64()
    );

    let publics: Vec<_> = keys.iter().map(parse_public).collect();
    let mut expected_digests = BTreeSet::new();
    for (c, signed) in &results {
        assert_eq!(signed.len(), SIGNATURES_PER_CLIENT);
        let public = &publics[c % keys.len()];
        for (message, signature, _) in signed {
            public
                .verify(message, signature)
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(message)));
            assert!(
                expected_digests.insert(hex::encode(sha256(message))),
                "messages are distinct"
            );
        }
    }

    let audit = read_audit(daemon.audit_log());
    let signs: Vec<_> = audit.iter().filter(|r| r.op == "sign").collect();
    assert_eq!(signs.len(), total, "one audit line per signature");
    assert!(
        signs.iter().all(|r| r.outcome == "ok"),
        "every sign line is ok"
    );
    let our_pid = i32::try_from(std::process::id()).expect("pid");
    assert!(
        signs.iter().all(|r| r.uid == 0 && r.pid == Some(our_pid)),
        "every line names the test process"
    );
    let audited: BTreeSet<String> = signs
        .iter()
        .map(|r| r.sha256.clone().expect("sign lines carry the digest"))
        .collect();
    assert_eq!(
        audited, expected_digests,
        "the audited digests are exactly what was signed"
    );
    for key in &keys {
        let n = signs.iter().filter(|r| r.key_id == key.key_id).count();
        assert_eq!(n, total / keys.len(), "lines for key {}", key.key_id);
    }
    if let Some(task) = generated {
        let (rsa, began, ended) = task.await.expect("generate task");
        let meanwhile = results
            .iter()
            .flat_map(|(_, signed)| signed)
            .filter(|(_, _, done)| *done > began && *done < ended)
            .count();
        eprintln!(
            "{meanwhile} signatures completed during the {:.2?} RSA generation",
            ended - began
        );
        // One round per client at least: the generation did not hold up the other sessions.
        assert!(
            meanwhile >= CLIENTS,
            "only {meanwhile} signatures completed while the RSA key was generated ({:.2?})",
            ended - began
        );
        assert!(
            matches!(parse_public(&rsa).algorithm(), Algorithm::Rsa3072Pss),
            "an RSA key"
        );
        assert!(
            audit
                .iter()
                .any(|r| r.op == "generate" && r.key_id == rsa.key_id && r.outcome == "ok"),
            "the generation is audited"
        );
    }

    drop(client);
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(status.success(), "{status}");
}
