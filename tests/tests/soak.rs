//! Soak under faults: 16 clients make 10,000 sign attempts each against one sigild while the
//! token is unplugged and plugged back in, and while the filesystem holding the audit log
//! fills up and frees again. What must hold: no invalid signature is ever returned; both faults
//! answer UNAVAILABLE (nothing else); every returned signature has its `ok` audit line and no
//! `ok` line lacks its signature; the audit log stays well-formed JSON lines (a write cut short
//! by the full disk leaves no fragment); and sigild serves again after each fault without a
//! restart.
//!
//! Bounded: 160,000 attempts at most, a deadline on the whole run, and clients that back off
//! for a few milliseconds after a refusal so that a fault does not turn into a busy loop.
//! Needs root (a tmpfs is mounted for the audit log), as the e2e suite does in CI.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sigil_e2e::notary::ParkedToken;
use sigil_e2e::tmpfs::{TmpfsMount, fill};
use sigil_e2e::{DevDir, parse_public, read_audit, sha256};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;

const CLIENTS: usize = 16;
const ATTEMPTS_PER_CLIENT: usize = 10_000;
/// The whole run, faults included; a debug build signs several thousand a second.
const DEADLINE: Duration = Duration::from_secs(600);
/// Size of the audit log's filesystem: room for every line of the run (~300 bytes each).
const AUDIT_FS: &str = "96m";
/// How long a client waits after a refusal before its next attempt.
const BACKOFF: Duration = Duration::from_millis(3);

/// Counters the clients share with the fault driver.
#[derive(Default)]
struct Progress {
    attempts: AtomicUsize,
    unavailable: AtomicUsize,
    audit_refused: AtomicUsize,
    other: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_through_a_pulled_token_and_a_full_audit_disk() {
    let dir = Arc::new(DevDir::new());
    dir.init();
    let audit_dir = dir.root().join("audit-fs");
    let mount = TmpfsMount::mount(&audit_dir, AUDIT_FS);
    let audit_log = audit_dir.join("audit.jsonl");
    let config = dir.config().audit_log(&audit_log).write("soak.toml");
    let mut daemon = dir.sigild_config(&config).spawn();
    let pid = daemon.pid();

    let mut admin = daemon.client().await;
    let key = admin
        .generate("targets", "soak.example/app", pb::Algorithm::EcdsaP256)
        .await;
    let public = parse_public(&key);

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let mut clients = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let mut client = daemon.client().await;
        let key_id = key.key_id.clone();
        let progress = Arc::clone(&progress);
        clients.push(tokio::spawn(async move {
            let mut signed = Vec::new();
            let mut unexpected = Vec::new();
            for i in 0..ATTEMPTS_PER_CLIENT {
                assert!(
                    started.elapsed() < DEADLINE,
                    "the soak test ran out of time"
                );
                let message = format!("soak client {c} attempt {i}").into_bytes();
                let result = client
                    .sign_message(&key_id, &message, pb::SignatureEncoding::Raw)
                    .await;
                progress.attempts.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(resp) => signed.push((message, resp.signature)),
                    Err(status) => {
                        match status.code() {
                            Code::Unavailable if status.message().contains("audit log") => {
                                &progress.audit_refused
                            }
                            Code::Unavailable => &progress.unavailable,
                            _ => {
                                if unexpected.len() < 3 {
                                    unexpected.push(format!("client {c} attempt {i}: {status:?}"));
                                }
                                &progress.other
                            }
                        }
                        .fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(BACKOFF).await;
                    }
                }
            }
            (signed, unexpected)
        }));
    }

    // The faults, each while the clients keep signing; each waits until the clients have seen
    // it (refusals counted), so the test proves the fault was real.
    let total = CLIENTS * ATTEMPTS_PER_CLIENT;
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(120);
        while !done() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let driver = {
        let progress = Arc::clone(&progress);
        let dev = Arc::clone(&dir);
        let filler = audit_dir.join("filler");
        tokio::task::spawn_blocking(move || {
            wait_for("a fifth of the attempts", &|| {
                progress.attempts.load(Ordering::Relaxed) >= total / 5
            });
            let parked = ParkedToken::park(&dev);
            wait_for("refusals without the token", &|| {
                progress.unavailable.load(Ordering::Relaxed) >= 50
            });
            parked.restore();
            wait_for("half of the attempts", &|| {
                progress.attempts.load(Ordering::Relaxed) >= total / 2
            });
            let filled = fill(&filler);
            eprintln!("audit filesystem filled with {filled} bytes");
            wait_for("refusals for the full audit disk", &|| {
                progress.audit_refused.load(Ordering::Relaxed) >= 50
            });
            std::fs::remove_file(&filler).expect("removing the filler");
        })
    };

    let mut returned = Vec::with_capacity(total);
    let mut unexpected = Vec::new();
    for client in clients {
        let (signed, odd) = client.await.expect("a client task");
        returned.extend(signed);
        unexpected.extend(odd);
    }
    let other = progress.other.load(Ordering::Relaxed);
    if other > 0 {
        let log = daemon.stderr();
        let details: BTreeSet<&str> = log
            .lines()
            .filter_map(|l| l.split_once("detail=").map(|(_, d)| d))
            .collect();
        panic!(
            "{other} answers were neither a signature, UNAVAILABLE nor an audit refusal; \
             e.g. {unexpected:?}\nsigild's error details:\n{}",
            details.into_iter().collect::<Vec<_>>().join("\n")
        );
    }
    driver.await.expect("the fault driver");
    let elapsed = started.elapsed();
    let unavailable = progress.unavailable.load(Ordering::Relaxed);
    let audit_refused = progress.audit_refused.load(Ordering::Relaxed);
    eprintln!(
        "{total} attempts in {elapsed:.1?}: {} signatures, {unavailable} UNAVAILABLE, \
         {audit_refused} refused for the audit log",
        returned.len()
    );
    assert!(
        unavailable > 0 && audit_refused > 0,
        "both faults were seen"
    );

    // No invalid signature, ever.
    let mut digests = BTreeSet::new();
    for (message, signature) in &returned {
        public
            .verify(message, signature)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(message)));
        assert!(digests.insert(hex::encode(sha256(message))), "distinct");
    }

    // Recovered without a restart: the same process signs.
    assert!(daemon.is_running(), "sigild is still running");
    assert_eq!(daemon.pid(), pid);
    let after = admin
        .sign_message(&key.key_id, b"after the faults", pb::SignatureEncoding::Raw)
        .await
        .expect("sigild signs after the faults");
    public
        .verify(b"after the faults", &after.signature)
        .expect("valid");
    digests.insert(hex::encode(sha256(b"after the faults")));

    // Every line parses (a failed write left no fragment), and the ok sign lines are exactly
    // the signatures returned.
    let audit = read_audit(&audit_log);
    let ok: Vec<_> = audit
        .iter()
        .filter(|r| r.op == "sign" && r.outcome == "ok")
        .collect();
    let audited: BTreeSet<String> = ok
        .iter()
        .map(|r| r.sha256.clone().expect("sign lines carry the digest"))
        .collect();
    assert_eq!(ok.len(), audited.len(), "one ok line per signature");
    assert_eq!(
        audited, digests,
        "the ok audit lines are exactly the signatures returned"
    );

    drop(admin);
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(status.success(), "{status}");
    drop(mount);
}
