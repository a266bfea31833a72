//! sigild under concurrent load: 16 clients, each on its own connection, make 500 ECDSA
//! signatures apiece over distinct messages; every signature verifies and the audit log holds
//! exactly one line per signature, each with the digest of what was signed.

use std::collections::BTreeSet;
use std::time::Instant;

use sigil_e2e::{DevDir, parse_public, read_audit, sha256};
use sigil_proto::sigil_v1 as pb;

const CLIENTS: usize = 16;
const SIGNATURES_PER_CLIENT: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_sign_8000_times_and_every_signature_is_audited_once() {
    let dir = DevDir::new();
    let daemon = dir.start();
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
                signed.push((message, resp.signature));
            }
            (c, signed)
        }));
    }
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
        for (message, signature) in signed {
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

    drop(client);
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(status.success(), "{status}");
}
