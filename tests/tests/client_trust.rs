//! How the real `sigil` binary decides what to trust, end to end against a loopback
//! notary-server: `trust_pinning.certs` and `trust_pinning.disable_tofu` from the config file
//! as the CLI applies them on a first read, and `--offline` over a cache whose timestamp has
//! expired since (refused, naming the role, never shown as current).

mod loopback_notary;

use std::time::{Duration, SystemTime};

use loopback_notary::{Client, GUN, HostileServer, Publisher, honest, stderr, stdout};
use sigil_tuf::RoleType;
use sigil_tuf::schema::notary::TIMESTAMP_EXPIRY;

fn root_key_id(publisher: &Publisher) -> String {
    publisher
        .root_body()
        .role(RoleType::Root)
        .expect("root role")
        .keyids[0]
        .clone()
}

#[test]
fn disable_tofu_refuses_an_unpinned_root_and_a_pinned_key_id_is_trusted() {
    let (server, publisher) = honest();
    let id = root_key_id(&publisher);

    let client = Client::new(r#"{"trust_pinning":{"disable_tofu":true}}"#);
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("disable_tofu") && err.contains(GUN), "{err}");
    assert!(!client.cached("root").exists(), "nothing trusted");

    // Pinned by the root key's id: trusted although TOFU is off.
    let client = Client::new(&format!(
        r#"{{"trust_pinning":{{"disable_tofu":true,"certs":{{"{GUN}":["{id}"]}}}}}}"#
    ));
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("app.tar"), "{}", stdout(&out));
    assert!(client.cached("root").exists());
}

#[test]
fn a_root_whose_keys_are_not_the_pinned_ones_is_refused() {
    let (server, _publisher) = honest();
    // Another collection's root key id pinned for this GUN: the server's root is refused,
    // with TOFU left on (a pin wins over trust on first use).
    let mut other = Publisher::new();
    other.publish(|_, _| {});
    let wrong = root_key_id(&other);
    let client = Client::new(&format!(
        r#"{{"trust_pinning":{{"certs":{{"{GUN}":["{wrong}"]}}}}}}"#
    ));
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("none of its root keys is pinned") && err.contains(&wrong),
        "{err}"
    );
    assert!(!client.cached("root").exists(), "nothing trusted");

    // A pin for another GUN does not apply: trust on first use.
    let client = Client::new(&format!(
        r#"{{"trust_pinning":{{"certs":{{"other.example/app":["{wrong}"]}}}}}}"#
    ));
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn offline_reads_of_an_expired_cache_are_refused() {
    let server = HostileServer::start();
    let mut publisher = Publisher::new();
    publisher.publish(|e, _| {
        e.add_target(
            "targets",
            "app.tar",
            sigil_tuf::FileMeta::from_bytes(b"app"),
        )
        .expect("add")
    });
    // A timestamp that expires four seconds from now.
    let signed_at = SystemTime::now() - TIMESTAMP_EXPIRY + Duration::from_secs(4);
    publisher.resign_timestamp_at(signed_at);
    server.serve(&publisher.files);
    let client = Client::new("{}");
    let (out, _) = client.run(&server, &["list", GUN]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, _) = client.run(&server, &["list", GUN, "--offline"]);
    assert!(out.status.success(), "fresh cache: {}", stderr(&out));
    assert!(stdout(&out).contains("app.tar"));

    std::thread::sleep(Duration::from_secs(6));
    // The server now has nothing: `--offline` must not ask it anyway.
    server.serve(&Default::default());
    let (out, _) = client.run(&server, &["list", GUN, "--offline"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cache") && err.contains("timestamp v2: expired at"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let (out, _) = client.run(&server, &["lookup", GUN, "app.tar", "--offline"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}
