//! The TUF 1.0 client (`sigil_tuf::client`) against in-memory repositories: the update walk
//! and the attacks the TUF conformance suite checks (rollback, fast-forward and its recovery,
//! freeze, mix-and-match, bad signatures and thresholds, key rotation, hash and length
//! mismatch, length caps; delegation rules and hostile names in `delegations.rs`), each
//! asserting the error and what was stored.

mod delegations;
mod repo;

use std::time::Duration;

use repo::{Client, Repo, days, sign};
use sigil_tuf::Error;
use sigil_tuf::schema::RoleType;
use sigil_tuf::schema::tuf1::MetaFile;

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn refresh_fetches_versioned_files_and_stores_them_unversioned() {
    let repo = Repo::new();
    let client = Client::new(&repo);
    client.refresh(&repo).expect("refresh");
    assert_eq!(
        client.requests(),
        strs(&[
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "metadata/1.snapshot.json",
            "metadata/1.targets.json"
        ])
    );
    assert_eq!(
        client.stored(),
        strs(&[
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ])
    );
    let stored = std::fs::read(client.metadata_dir().join("snapshot.json")).expect("read");
    assert_eq!(stored, repo.served["metadata/1.snapshot.json"]);

    // A second run with nothing new fetches only the next root and the timestamp.
    client.refresh(&repo).expect("refresh again");
    assert_eq!(
        client.requests(),
        strs(&["metadata/2.root.json", "metadata/timestamp.json"])
    );
}

#[test]
fn targets_download_by_hash_prefixed_name_and_are_cached() {
    let mut repo = Repo::new();
    repo.add_target("targets", "dir/a.txt", b"hello");
    repo.publish(&["targets", "snapshot", "timestamp"]);
    let client = Client::new(&repo);
    let paths = client.download(&repo, &["dir/a.txt"]).expect("download");
    assert_eq!(std::fs::read(&paths[0]).expect("read"), b"hello");
    assert_eq!(client.downloaded(), strs(&["dir%2Fa.txt"]));
    let hash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    assert!(
        client
            .requests()
            .contains(&format!("targets/dir/{hash}.a.txt"))
    );

    client.download(&repo, &["dir/a.txt"]).expect("cached");
    assert!(!client.requests().iter().any(|r| r.starts_with("targets/")));

    // Without consistent snapshots, names are unversioned and targets fetched by path.
    let mut plain = Repo::new();
    plain.root.consistent_snapshot = false;
    plain.add_target("targets", "b.txt", b"plain");
    plain.publish(&["root", "targets", "snapshot", "timestamp"]);
    let client = Client::new(&plain);
    client.download(&plain, &["b.txt"]).expect("download");
    assert_eq!(
        client.requests()[1..],
        strs(&[
            "metadata/3.root.json",
            "metadata/timestamp.json",
            "metadata/snapshot.json",
            "metadata/targets.json",
            "targets/b.txt"
        ])
    );
}

#[test]
fn a_tampered_or_oversized_target_is_refused_and_nothing_is_written() {
    let mut repo = Repo::new();
    repo.add_target("targets", "a.txt", b"hello");
    repo.publish(&["targets", "snapshot", "timestamp"]);
    let key = repo
        .served
        .keys()
        .find(|k| k.starts_with("targets/") && k.ends_with(".a.txt"))
        .expect("served")
        .clone();
    repo.served.insert(key.clone(), b"hellO".to_vec());
    let client = Client::new(&repo);
    let err = client.download(&repo, &["a.txt"]).expect_err("tampered");
    assert!(matches!(err, Error::TargetMismatch { .. }), "{err}");
    assert!(client.downloaded().is_empty());

    repo.served.insert(key.clone(), b"hello, and more".to_vec());
    let err = client.download(&repo, &["a.txt"]).expect_err("too long");
    assert!(matches!(err, Error::Fetch { .. }), "{err}");
    assert!(client.downloaded().is_empty());
    repo.served.insert(key, b"hello".to_vec());

    // A listed hash the client cannot compute cannot vouch for the content.
    let file = repo.targets.get_mut("targets").expect("targets");
    let meta = file.targets.get_mut("a.txt").expect("a.txt");
    let sha = meta.hashes.remove("sha256").expect("sha256");
    meta.hashes.insert("unknown-hash".into(), sha);
    repo.publish(&["targets", "snapshot", "timestamp"]);
    let err = client
        .download(&repo, &["a.txt"])
        .expect_err("unknown hash");
    assert!(matches!(err, Error::TargetMismatch { .. }), "{err}");
    assert!(client.downloaded().is_empty());
}

#[test]
fn root_rotation_needs_the_old_and_the_new_threshold() {
    let mut repo = Repo::new();
    let client = Client::new(&repo);
    let old = repo.signers["root"].clone();
    let new = repo.rotate(RoleType::Root);

    // v2 signed only by its own new key: the trusted v1 keys did not approve it.
    repo.root.version = 2;
    repo.publish_root_signed_by(std::slice::from_ref(&new));
    let err = client.refresh(&repo).expect_err("unapproved");
    assert!(matches!(err, Error::RootRotationUntrusted { .. }), "{err}");
    assert_eq!(client.version("root"), Some(1));

    // v2 signed only by the old key: not by a threshold of its own keys.
    repo.publish_root_signed_by(&old);
    let err = client.refresh(&repo).expect_err("not self-signed");
    assert!(matches!(err, Error::ThresholdNotMet { .. }), "{err}");
    assert_eq!(client.version("root"), Some(1));

    // Both: accepted, and stored.
    let both = [old, vec![new]].concat();
    repo.publish_root_signed_by(&both);
    client.refresh(&repo).expect("rotation");
    assert_eq!(client.version("root"), Some(2));
}

#[test]
fn root_versions_follow_one_another_and_rotations_are_bounded() {
    let mut repo = Repo::new();
    let client = Client::new(&repo);
    repo.root.version = 2;
    let v3 = {
        let mut r = repo.root.clone();
        r.version = 3;
        sign("root", r, &repo.signers["root"])
    };
    repo.served.insert("metadata/2.root.json".into(), v3);
    let err = client.refresh(&repo).expect_err("skips a version");
    assert!(matches!(err, Error::RootVersion { .. }), "{err}");

    let mut repo = Repo::new();
    let mut client = Client::new(&repo);
    for _ in 0..5 {
        repo.publish(&["root"]);
    }
    client.limits.max_root_rotations = 3;
    client.refresh(&repo).expect("refresh");
    assert_eq!(client.version("root"), Some(4));
    assert!(
        !client
            .requests()
            .contains(&"metadata/5.root.json".to_owned())
    );
}

#[test]
fn rollbacks_of_timestamp_snapshot_and_targets_are_refused() {
    let mut repo = Repo::new();
    let client = Client::new(&repo);
    repo.publish(&["targets", "snapshot", "timestamp"]);
    client.refresh(&repo).expect("refresh");

    // Timestamp v1 served again.
    let mut old = repo.clone();
    old.timestamp.version = 0;
    old.publish(&["timestamp"]);
    let err = client.refresh(&old).expect_err("timestamp rollback");
    assert!(
        matches!(err, Error::Rollback { ref role, .. } if role == "timestamp"),
        "{err}"
    );
    assert_eq!(client.version("timestamp"), Some(2));

    // A newer timestamp listing an older snapshot.
    let mut attack = repo.clone();
    attack
        .timestamp
        .meta
        .insert("snapshot.json".into(), MetaFile::new(1));
    attack.publish(&["timestamp"]);
    let err = client.refresh(&attack).expect_err("snapshot rollback");
    assert!(
        matches!(err, Error::Rollback { ref role, .. } if role == "snapshot"),
        "{err}"
    );

    // A newer snapshot listing an older targets, and one dropping a role.
    for change in [Some(MetaFile::new(1)), None] {
        let client = Client::new(&repo);
        client.refresh(&repo).expect("refresh");
        let mut attack = repo.clone();
        match change {
            Some(meta) => attack.snapshot.meta.insert("targets.json".into(), meta),
            None => attack.snapshot.meta.remove("targets.json"),
        };
        attack.publish(&["snapshot", "timestamp"]);
        let err = client.refresh(&attack).expect_err("targets rollback");
        assert!(
            matches!(err, Error::Rollback { .. } | Error::Invalid { .. }),
            "{err}"
        );
        assert_eq!(client.version("snapshot"), Some(2));
    }
}

#[test]
fn rotating_timestamp_and_snapshot_keys_recovers_from_fast_forward() {
    let mut repo = Repo::new();
    let client = Client::new(&repo);
    for _ in 0..9 {
        repo.publish(&["snapshot", "timestamp"]);
    }
    client.refresh(&repo).expect("refresh");
    assert_eq!(client.version("timestamp"), Some(10));
    assert_eq!(client.version("snapshot"), Some(10));

    // Same keys, lower versions: refused.
    repo.timestamp.version = 0;
    repo.snapshot.version = 0;
    repo.publish(&["snapshot", "timestamp"]);
    assert!(client.refresh(&repo).is_err());
    assert_eq!(client.version("timestamp"), Some(10));

    // New keys in root v2: the stored files no longer verify and are deleted (even when
    // the update then fails), and v1 is accepted.
    repo.rotate(RoleType::Timestamp);
    repo.rotate(RoleType::Snapshot);
    repo.publish(&["root"]);
    let served = repo
        .served
        .remove("metadata/timestamp.json")
        .expect("timestamp");
    assert!(client.refresh(&repo).is_err());
    assert_eq!(client.version("timestamp"), None);
    repo.served.insert("metadata/timestamp.json".into(), served);
    repo.timestamp.version = 0;
    repo.snapshot.version = 0;
    repo.publish(&["snapshot", "timestamp"]);
    client.refresh(&repo).expect("recovered");
    assert_eq!(client.version("timestamp"), Some(1));
    assert_eq!(client.version("snapshot"), Some(1));
}

#[test]
fn expired_metadata_is_refused_and_never_stored() {
    let mut repo = Repo::new();
    repo.timestamp.expires = days(1);
    repo.publish(&["timestamp"]);
    let mut client = Client::new(&repo);
    client.now += Duration::from_secs(2 * 86_400);
    let err = client.refresh(&repo).expect_err("frozen timestamp");
    assert!(
        matches!(err, Error::Expired { ref role, .. } if role == "timestamp"),
        "{err}"
    );
    assert_eq!(client.stored(), strs(&["root.json"]));

    // An expired final root stops the update before timestamp; an expired intermediate
    // root does not matter once a fresh one replaces it.
    let mut repo = Repo::new();
    let mut client = Client::new(&repo);
    client.now += Duration::from_secs(40 * 86_400);
    let err = client.refresh(&repo).expect_err("root expired");
    assert!(
        matches!(err, Error::Expired { ref role, .. } if role == "root"),
        "{err}"
    );
    for role in ["root", "targets", "snapshot", "timestamp"] {
        match role {
            "root" => repo.root.expires = days(60),
            "targets" => repo.targets.get_mut("targets").expect("t").expires = days(60),
            "snapshot" => repo.snapshot.expires = days(60),
            _ => repo.timestamp.expires = days(60),
        }
        repo.publish(&[role]);
    }
    client
        .refresh(&repo)
        .expect("fresh root replaces the expired one");
    assert_eq!(client.version("root"), Some(2));
}

#[test]
fn mixed_and_matched_or_tampered_metadata_is_refused() {
    let mut repo = Repo::new();
    repo.publish(&["targets", "snapshot", "timestamp"]);
    // A validly signed snapshot that is not the one timestamp lists.
    let mut other = repo.snapshot.clone();
    other.expires = days(29);
    repo.served.insert(
        "metadata/2.snapshot.json".into(),
        sign("snapshot", other, &repo.signers["snapshot"]),
    );
    let client = Client::new(&repo);
    let err = client.refresh(&repo).expect_err("mix and match");
    assert!(
        matches!(
            err,
            Error::HashMismatch { .. } | Error::LengthMismatch { .. }
        ),
        "{err}"
    );
    assert_eq!(client.stored(), strs(&["root.json", "timestamp.json"]));

    // One flipped byte in targets.
    let mut repo = Repo::new();
    let mut bytes = repo.served["metadata/1.targets.json"].clone();
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    repo.served.insert("metadata/1.targets.json".into(), bytes);
    let client = Client::new(&repo);
    let err = client.refresh(&repo).expect_err("tampered targets");
    assert!(
        matches!(err, Error::HashMismatch { .. } | Error::Json { .. }),
        "{err}"
    );
    assert!(!client.stored().contains(&"targets.json".to_owned()));
}

#[test]
fn thresholds_count_distinct_valid_signatures() {
    let mut repo = Repo::new();
    let second = std::sync::Arc::new(sigil_tuf::sign::testing::MemorySigner::ed25519());
    let first = repo.signers["snapshot"][0].clone();
    repo.root
        .set_role_keys(RoleType::Snapshot, &[repo::key(&first), repo::key(&second)]);
    repo.set_threshold(RoleType::Snapshot, 2);
    repo.publish(&["root", "snapshot", "timestamp"]);
    let client = Client::new(&repo);
    let err = client.refresh(&repo).expect_err("one of two");
    assert!(
        matches!(err, Error::ThresholdNotMet { ref role, .. } if role == "snapshot"),
        "{err}"
    );
    assert_eq!(client.version("root"), Some(2));

    repo.signers
        .insert("snapshot".into(), vec![first.clone(), second]);
    repo.publish(&["snapshot", "timestamp"]);
    client.refresh(&repo).expect("two of two");

    // The same key's signature twice is one signature (refused as a duplicate).
    repo.signers
        .insert("snapshot".into(), vec![first.clone(), first]);
    repo.publish(&["snapshot", "timestamp"]);
    assert!(client.refresh(&repo).is_err());
    assert_eq!(client.version("snapshot"), Some(3));
}

#[test]
fn files_longer_than_their_cap_are_refused() {
    let mut repo = Repo::new();
    repo.timestamp
        .extra
        .insert("x-pad".into(), "p".repeat(20_000).into());
    repo.publish(&["timestamp"]);
    let client = Client::new(&repo);
    let err = client.refresh(&repo).expect_err("huge timestamp");
    assert!(matches!(err, Error::Fetch { .. }), "{err}");

    // Snapshot longer than timestamp lists: the cap is the listed length.
    let mut repo = Repo::new();
    let mut bytes = repo.served["metadata/1.snapshot.json"].clone();
    bytes.push(b' ');
    repo.served.insert("metadata/1.snapshot.json".into(), bytes);
    let client = Client::new(&repo);
    let err = client.refresh(&repo).expect_err("long snapshot");
    assert!(matches!(err, Error::Fetch { .. }), "{err}");
}
