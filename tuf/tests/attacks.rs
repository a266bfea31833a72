//! One test per TUF attack, each built in code with in-memory keys and a simulated
//! notary-server, each refused with the error that names the role, version and reason.

mod common;

use std::sync::Arc;

use common::{GUN, Keys, bare, days, published, republish, root_cert_key, t0, verify};
use sigil_tuf::schema::{RoleType, Root, Signed, Targets};
use sigil_tuf::sign::sign_role;
use sigil_tuf::sign::testing::{MemorySigner, block_on};
use sigil_tuf::verify::verify_collection;
use sigil_tuf::{Error, FileMeta, Metadata, PriorVersions, RootTrust, Signer, Updater};

fn add_app(content: &'static [u8]) -> impl FnOnce(&mut sigil_tuf::CollectionEditor) {
    move |e| {
        e.add_target("targets", "app.tar", FileMeta::from_bytes(content))
            .expect("add")
    }
}

#[test]
fn honest_collections_verify_and_update() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    assert_eq!(v1.targets().version(), 1);
    assert_eq!(v1.root().version(), 1);
    v1.verify_target("app.tar", b"app v1", &[])
        .expect("content matches");
    let v2 = republish(
        &mut server,
        &v1,
        &keys.client(),
        t0() + days(1),
        add_app(b"app v2"),
    );
    assert_eq!(v2.targets().version(), 2);
    assert_eq!(v2.snapshot().version(), 2);
    v2.verify_target("app.tar", b"app v2", &[])
        .expect("new content");
}

#[test]
fn rollback_of_timestamp_is_refused() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let stale = server.clone();
    let v2 = republish(&mut server, &v1, &keys.client(), t0(), add_app(b"app v2"));
    let err = verify(&stale, Some(&v2), t0()).expect_err("must be refused");
    assert!(
        matches!(&err, Error::Rollback { role, version: 1, trusted: 2 } if role == "timestamp"),
        "{err}"
    );
}

#[test]
fn rollback_of_targets_is_refused() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let mut stale = server.clone();
    let v2 = republish(&mut server, &v1, &keys.client(), t0(), add_app(b"app v2"));
    // An attacker holding the snapshot and timestamp keys re-signs fresh, higher-versioned
    // snapshot and timestamp around the old targets file.
    stale.snapshot_with(keys.snapshot.as_ref(), 10, t0());
    stale.timestamp_with(10, t0());
    let err = verify(&stale, Some(&v2), t0()).expect_err("must be refused");
    assert!(
        matches!(&err, Error::Rollback { role, version: 1, trusted: 2 } if role == "targets"),
        "{err}"
    );
}

#[test]
fn expired_timestamp_is_a_freeze_attack() {
    let keys = Keys::new(t0());
    let (server, _) = published(&keys, t0());
    let err = verify(&server, None, t0() + days(15)).expect_err("must be refused");
    assert!(
        matches!(&err, Error::Expired { role, version: 1, .. } if role == "timestamp"),
        "{err}"
    );
}

#[test]
fn expired_root_is_refused() {
    let keys = Keys::new(t0());
    let (server, v1) = published(&keys, t0());
    // Eleven years on, with a fresh timestamp: the cached root itself has expired.
    let later = t0() + days(11 * 365);
    let mut fresh = server.clone();
    fresh.resign_timestamp(later);
    let err = verify(&fresh, Some(&v1), later).expect_err("must be refused");
    assert!(
        matches!(&err, Error::Expired { role, version: 1, .. } if role == "root"),
        "{err}"
    );
}

#[test]
fn mix_and_match_snapshot_is_refused() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let old = server.clone();
    // Same length contents and the same clock: files differ only in their hashes.
    republish(&mut server, &v1, &keys.client(), t0(), add_app(b"app v2"));
    let mut mixed = server.clone();
    mixed.snapshot = old.snapshot.clone();
    let err = verify(&mixed, None, t0()).expect_err("must be refused");
    assert!(
        matches!(&err, Error::HashMismatch { role, listed_in, version: 2, algorithm }
            if role == "snapshot" && listed_in == "timestamp" && algorithm == "sha256"),
        "{err}"
    );
    // The same with targets: the current snapshot and an older (validly signed) targets.
    let mut mixed = server.clone();
    mixed.targets = old.targets.clone();
    let err = verify(&mixed, None, t0()).expect_err("must be refused");
    assert!(
        matches!(&err, Error::HashMismatch { role, listed_in, version: 2, .. }
            if role == "targets" && listed_in == "snapshot"),
        "{err}"
    );
    // And with root: a snapshot listing another root than the one trusted.
    let mut mixed = old.clone();
    mixed.root = server.root.clone();
    let other = Keys::new(t0());
    let (foreign, _) = published(&other, t0());
    mixed.roots = foreign.roots.clone();
    assert!(verify(&mixed, None, t0()).is_err());
}

#[test]
fn wrong_target_hash_is_refused() {
    let keys = Keys::new(t0());
    let (_, c) = published(&keys, t0());
    let err = c
        .verify_target("app.tar", b"app v9", &[])
        .expect_err("must be refused");
    assert!(
        matches!(&err, Error::HashMismatch { role, listed_in, version: 1, algorithm }
            if role == "app.tar" && listed_in == "targets" && algorithm == "sha256"),
        "{err}"
    );
}

#[test]
fn wrong_target_length_is_refused() {
    let keys = Keys::new(t0());
    let (_, c) = published(&keys, t0());
    let err = c
        .verify_target("app.tar", b"app v1 with a payload", &[])
        .expect_err("must be refused");
    assert!(
        matches!(&err, Error::LengthMismatch { role, listed_in, expected: 6, actual: 21, .. }
            if role == "app.tar" && listed_in == "targets"),
        "{err}"
    );
}

/// A collection whose targets role has two keys and threshold 2.
fn two_key_targets() -> (Keys, Arc<MemorySigner>, common::Server) {
    let keys = Keys::new(t0());
    let second = Arc::new(MemorySigner::p256());
    let mut ck = keys.collection_keys();
    ck.targets.push(bare(&second));
    let mut editor = sigil_tuf::CollectionEditor::create(GUN, &ck, t0()).expect("create");
    editor
        .set_threshold(RoleType::Targets, 2)
        .expect("threshold 2");
    editor
        .add_target("targets", "app.tar", FileMeta::from_bytes(b"app v1"))
        .expect("add");
    let mut signers = keys.client();
    signers.push(second.as_ref());
    let signed = block_on(editor.sign(&signers)).expect("sign with both");
    let mut server = keys.server();
    server.publish(&signed, t0());
    (keys, second, server)
}

#[test]
fn thresholds_above_one_are_enforced() {
    let (keys, _second, server) = two_key_targets();
    let c = verify(&server, None, t0()).expect("two of two");
    assert_eq!(c.targets().signed().signatures.len(), 2);

    // The editor will not sign with one key of two.
    let editor = sigil_tuf::CollectionEditor::from_collection(&c, t0());
    let mut editor = editor;
    editor.witness("targets").expect("witness");
    let err = block_on(editor.sign(&keys.client())).expect_err("must be refused");
    assert!(
        matches!(&err, Error::MissingSigners { role, available: 1, threshold: 2 } if role == "targets"),
        "{err}"
    );

    // An under-signed targets file (one signature dropped) is refused.
    let mut tampered = server.clone();
    let mut targets: Signed<Targets> =
        Signed::from_slice("targets", &tampered.targets["targets"]).expect("parse");
    targets.signatures.truncate(1);
    tampered
        .targets
        .insert("targets".into(), targets.to_vec().expect("bytes"));
    tampered.snapshot_with(keys.snapshot.as_ref(), 2, t0());
    tampered.timestamp_with(2, t0());
    let err = verify(&tampered, None, t0()).expect_err("must be refused");
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, version: 1, valid: 1, threshold: 2, .. } if role == "targets"),
        "{err}"
    );

    // Two signatures by the same key count once.
    let sig = targets.signatures[0].clone();
    targets.signatures.push(sig);
    tampered
        .targets
        .insert("targets".into(), targets.to_vec().expect("bytes"));
    tampered.snapshot_with(keys.snapshot.as_ref(), 3, t0());
    tampered.timestamp_with(3, t0());
    let err = verify(&tampered, None, t0()).expect_err("must be refused");
    assert!(
        matches!(
            &err,
            Error::ThresholdNotMet {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn one_key_listed_twice_counts_once() {
    // The same P-256 key as a bare key and as a certificate: two key ids, one key.
    let keys = Keys::new(t0());
    let mut ck = keys.collection_keys();
    ck.targets.push(root_cert_key(&keys.targets, GUN, t0()));
    let mut editor = sigil_tuf::CollectionEditor::create(GUN, &ck, t0()).expect("create");
    editor
        .set_threshold(RoleType::Targets, 2)
        .expect("threshold");
    let err = block_on(editor.sign(&keys.client())).expect_err("must be refused");
    assert!(
        matches!(
            &err,
            Error::MissingSigners {
                available: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_signature_is_refused() {
    let keys = Keys::new(t0());
    let (mut server, _) = published(&keys, t0());
    let mut targets: Signed<Targets> =
        Signed::from_slice("targets", &server.targets["targets"]).expect("parse");
    targets.signatures[0].sig[10] ^= 0x01;
    server
        .targets
        .insert("targets".into(), targets.to_vec().expect("bytes"));
    server.snapshot_with(keys.snapshot.as_ref(), 2, t0());
    server.timestamp_with(2, t0());
    let err = verify(&server, None, t0()).expect_err("must be refused");
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, version: 1, valid: 0, threshold: 1, reason }
            if role == "targets" && reason.contains("does not verify")),
        "{err}"
    );
}

#[test]
fn root_rotated_without_the_old_signature_is_refused() {
    let keys = Keys::new(t0());
    let (server, v1) = published(&keys, t0());
    let attacker = MemorySigner::p256();
    let attacker_key = root_cert_key(&attacker, GUN, t0());
    let mut forged: Root = v1.root().body().clone();
    forged.version = 2;
    forged.set_role_keys(RoleType::Root, &[attacker_key]);
    let keys_ref = forged.role_keys(RoleType::Root);
    let keys_owned: Vec<(String, sigil_tuf::TufKey)> = keys_ref
        .iter()
        .map(|(i, k)| (i.to_string(), (*k).clone()))
        .collect();
    let key_refs: Vec<(&str, &sigil_tuf::TufKey)> =
        keys_owned.iter().map(|(i, k)| (i.as_str(), k)).collect();
    let signed = block_on(sign_role(
        "root",
        forged.clone(),
        &key_refs,
        1,
        &[&attacker],
    ))
    .expect("self-signed forgery");
    let mut up = Updater::new(GUN, server.first_root(), RootTrust::Cached, t0()).expect("v1");
    let err = up
        .update_root(signed.to_vec().expect("bytes"))
        .expect_err("must be refused");
    assert!(
        matches!(
            &err,
            Error::RootRotationUntrusted {
                version: 2,
                trusted_version: 1,
                valid: 0,
                threshold: 1,
                ..
            }
        ),
        "{err}"
    );

    // Signed by the old key only, not by its own new key: refused too.
    let old_refs = v1.root().body().role_keys(RoleType::Root);
    let signed = block_on(sign_role(
        "root",
        forged,
        &old_refs,
        1,
        &[keys.root.as_ref() as &dyn Signer],
    ))
    .expect("old key signs");
    let err = up
        .update_root(signed.to_vec().expect("bytes"))
        .expect_err("must be refused");
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, version: 2, valid: 0, .. } if role == "root"),
        "{err}"
    );
}

#[test]
fn legitimate_root_rotation_is_followed_one_version_at_a_time() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let new_root = MemorySigner::p256();
    let new_key = root_cert_key(&new_root, GUN, t0());
    // The editor signs the rotated root with the new and the previous root keys.
    let mut signers = keys.client();
    signers.push(&new_root);
    let v2 = republish(&mut server, &v1, &signers, t0(), |e| {
        e.rotate_keys(RoleType::Root, std::slice::from_ref(&new_key))
            .expect("rotate root")
    });
    assert_eq!(v2.root().version(), 2);
    assert_eq!(v2.root().signed().signatures.len(), 2);
    // Once more, signed now by the new root key only (it is the previous one).
    let signers: Vec<&dyn Signer> = vec![&new_root, keys.targets.as_ref(), keys.snapshot.as_ref()];
    let v3 = republish(&mut server, &v2, &signers, t0(), |e| {
        e.witness("root").expect("re-sign root")
    });
    assert_eq!(v3.root().version(), 3);
    // A client that trusted v1 follows 1 → 2 → 3.
    verify(&server, Some(&v1), t0()).expect("chain from v1");
    // Skipping v2 is refused.
    let mut files = server.files(1);
    files.root_chain.remove(0);
    let err = verify_collection(
        GUN,
        v1.root().bytes().to_vec(),
        RootTrust::Cached,
        files,
        PriorVersions::default(),
        t0(),
    )
    .expect_err("must be refused");
    assert!(
        matches!(
            err,
            Error::RootVersion {
                version: 3,
                expected: 2
            }
        ),
        "{err}"
    );
    // Serving root v1 to a client at v3 is a rollback.
    let mut up =
        Updater::new(GUN, v3.root().bytes().to_vec(), RootTrust::Cached, t0()).expect("v3");
    let err = up
        .update_root(v1.root().bytes().to_vec())
        .expect_err("must be refused");
    assert!(
        matches!(&err, Error::Rollback { role, version: 1, trusted: 3 } if role == "root"),
        "{err}"
    );
}

#[test]
fn root_certificate_for_another_gun_is_refused() {
    let keys = Keys::new(t0());
    let (server, _) = published(&keys, t0());
    let err = verify_collection(
        "example.com/elsewhere",
        server.first_root(),
        RootTrust::FirstUse,
        server.files(1),
        PriorVersions::default(),
        t0(),
    )
    .expect_err("must be refused");
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, reason, .. }
            if role == "root" && reason.contains("does not match GUN")),
        "{err}"
    );
}

#[test]
fn timestamp_signed_by_a_stranger_is_refused() {
    let keys = Keys::new(t0());
    let (mut server, _) = published(&keys, t0());
    // sign_timestamp only signs with the root's timestamp key, so forge by hand.
    let body = sigil_tuf::schema::Timestamp::for_snapshot(
        9,
        sigil_tuf::schema::Expires::after(t0(), days(1)).expect("expires"),
        &server.snapshot,
    );
    let stranger = MemorySigner::p256();
    let stranger_key = bare(&stranger);
    let signed = block_on(sign_role(
        "timestamp",
        body,
        &[(stranger_key.id().as_str(), &stranger_key)],
        1,
        &[&stranger],
    ))
    .expect("stranger signs");
    server.timestamp = signed.to_vec().expect("bytes");
    let err = verify(&server, None, t0()).expect_err("must be refused");
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, version: 9, valid: 0, .. } if role == "timestamp"),
        "{err}"
    );
}

#[test]
fn tampered_bytes_are_caught_by_the_snapshot_hash() {
    // A byte changed inside `signed` after publishing: the snapshot hash catches it before
    // any signature is checked.
    let keys = Keys::new(t0());
    let (mut server, _) = published(&keys, t0());
    let text = String::from_utf8(server.targets["targets"].clone()).expect("utf8");
    server.targets.insert(
        "targets".into(),
        text.replace("\"length\":6", "\"length\":7").into_bytes(),
    );
    let err = verify(&server, None, t0()).expect_err("must be refused");
    assert!(
        matches!(&err, Error::HashMismatch { role, listed_in, .. } if role == "targets" && listed_in == "snapshot"),
        "{err}"
    );
    // The tampered file itself still parses: it is the hash, not the parser, that refuses it.
    let parsed = Metadata::<Targets>::from_bytes("targets", server.targets["targets"].clone())
        .expect("parse");
    assert_eq!(parsed.body().targets["app.tar"].length, 7);
}
