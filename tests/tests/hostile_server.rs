//! The real `sigil` binary against a hostile notary-server on loopback (plain HTTP, a port
//! picked free, stopped when the test ends): one that streams endless data, one that trickles
//! it, one that hides a delegated role and then rolls it back to an older genuinely signed
//! version, and one that serves target names meant to fool a terminal. Each is refused (or
//! escaped) with a clear error within a bound.
//!
//! The legitimate publisher is simulated with in-memory keys (sigil-tuf's editor, as the tuf
//! crate's own tests do); what is under test is the CLI's fetch, verification and trust dir.

mod loopback_notary;

use std::time::Duration;

use loopback_notary::{
    Client, GUN, HostileServer, Publisher, RELEASES, Reply, honest, stderr, stdout,
};
use sigil_tuf::FileMeta;

#[test]
fn an_endless_timestamp_is_cut_off_at_its_cap() {
    let (server, publisher) = honest();
    server.set("timestamp.json", Reply::Endless);
    let client = Client::new("{}");
    let (out, took) = client.run(&server, &["list", GUN]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("timestamp.json") && err.contains("more than the 1048576 bytes"),
        "{err}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    // Nothing half-read was cached beyond the root trusted on first use.
    assert!(!client.cached("timestamp").exists());

    // The same for a role whose length the timestamp lists: cut at that length.
    server.serve(&publisher.files);
    let snapshot_hex = sigil_e2e::sha256_hex(&publisher.files["snapshot"]);
    server.set(&format!("snapshot.{snapshot_hex}.json"), Reply::Endless);
    let (out, took) = client.run(&server, &["list", GUN]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let listed = publisher.files["snapshot"].len();
    assert!(
        err.contains(&format!("more than the {listed} bytes")),
        "{err}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_trickling_server_is_given_up_on_at_the_read_deadline() {
    let (server, _publisher) = honest();
    server.set("timestamp.json", Reply::Trickle);
    let client = Client::new(r#"{"remote_server":{"read_deadline_seconds":3}}"#);
    let (out, took) = client.run(&server, &["list", GUN]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("read deadline of 3 s") && err.contains(GUN),
        "{err}"
    );
    assert!(took >= Duration::from_secs(3), "took {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn a_hidden_delegation_cannot_be_rolled_back_through_the_cli() {
    let (server, mut publisher) = honest();
    publisher.publish(|e, key| {
        e.update_delegation(
            RELEASES,
            &sigil_tuf::changelist::DelegationChange {
                threshold: 1,
                add_keys: vec![key.clone()],
                add_paths: vec![String::new()],
                ..Default::default()
            },
        )
        .expect("delegate");
        e.add_target(RELEASES, "r.tar", FileMeta::from_bytes(b"r1"))
            .expect("add");
    });
    let releases_v1 = publisher.files[RELEASES].clone();
    publisher.publish(|e, _| {
        e.add_target(RELEASES, "r.tar", FileMeta::from_bytes(b"r2 fixed"))
            .expect("add");
    });
    server.serve(&publisher.files);
    let client = Client::new("{}");
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("r.tar"), "{}", stdout(&out));
    let cached_v2 = std::fs::read(client.cached(RELEASES)).expect("releases cached");
    assert_eq!(sigil_tuf::schema::peek_version(&cached_v2), Some(2));

    // The server (holding snapshot and timestamp keys) stops listing targets/releases.
    let mut hidden = publisher.files.clone();
    hidden.remove(RELEASES);
    let attacker = &mut publisher;
    attacker.resign_snapshot(&hidden);
    server.serve(&attacker.files);
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(RELEASES) && err.contains("no longer lists it") && err.contains("rollback"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(client.cached(RELEASES)).expect("baseline kept"),
        cached_v2
    );

    // Then serves the older, genuinely signed v1 again.
    let mut rolled_back = hidden.clone();
    rolled_back.insert(RELEASES.into(), releases_v1);
    attacker.resign_snapshot(&rolled_back);
    server.serve(&attacker.files);
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{RELEASES} v1: older than the trusted v2 (rollback)"
        )),
        "{err}"
    );
}

#[test]
fn target_names_cannot_drive_the_terminal_but_json_keeps_them_exact() {
    let server = HostileServer::start();
    let mut publisher = Publisher::new();
    let name = "invoice\u{202e}fdp.exe";
    publisher.publish(|e, _| {
        e.add_target("targets", name, FileMeta::from_bytes(b"x"))
            .expect("add")
    });
    server.serve(&publisher.files);
    let client = Client::new("{}");
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(!table.contains('\u{202e}'), "{table:?}");
    assert!(table.contains("invoice\\u{202e}fdp.exe"), "{table:?}");
    let (out, _) = client.run(&server, &["--json", "list", GUN]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json[0]["name"], name, "{json}");
}
