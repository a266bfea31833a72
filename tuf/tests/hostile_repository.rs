//! A hostile notary-server (or one holding the snapshot and timestamp keys) against the
//! client's walk: hiding a delegated role to roll it back, signature floods, root rotation
//! floods and repeats, and delegation trees too large or too deep. Each is refused with an
//! error that names the role and the bound.

mod common;

use std::time::Instant;

use common::{GUN, Keys, bare, published, republish, root_cert_key, t0, verify};
use sigil_tuf::changelist::DelegationChange;
use sigil_tuf::schema::{RoleType, Signature, Signed, Targets};
use sigil_tuf::sign::testing::MemorySigner;
use sigil_tuf::verify::{
    MAX_DELEGATED_ROLES, MAX_DELEGATION_DEPTH, MAX_ROOT_ROTATIONS, MAX_SIGNATURES,
    verify_signatures,
};
use sigil_tuf::{CollectionEditor, Error, FileMeta, RootTrust, TufKey, Updater};

const RELEASES: &str = "targets/releases";

fn delegate(e: &mut CollectionEditor, role: &str, key: &TufKey) {
    e.update_delegation(
        role,
        &DelegationChange {
            threshold: 1,
            add_keys: vec![key.clone()],
            add_paths: vec![String::new()],
            ..Default::default()
        },
    )
    .expect("delegate");
}

/// `targets/releases` published twice (v1 then v2); the server, its v1 file, and the client's
/// view of v2.
fn releases_v2(
    keys: &Keys,
    d: &MemorySigner,
) -> (common::Server, Vec<u8>, sigil_tuf::VerifiedCollection) {
    let (mut server, v1) = published(keys, t0());
    let d_key = bare(d);
    let mut signers = keys.client();
    signers.push(d);
    let c1 = republish(&mut server, &v1, &signers, t0(), |e| {
        delegate(e, RELEASES, &d_key);
        e.add_target(RELEASES, "r.tar", FileMeta::from_bytes(b"r1"))
            .expect("add");
    });
    assert_eq!(c1.delegation(RELEASES).expect("v1").version(), 1);
    let releases_v1 = server.targets[RELEASES].clone();
    let c2 = republish(&mut server, &c1, &signers, t0(), |e| {
        e.add_target(RELEASES, "r.tar", FileMeta::from_bytes(b"r2"))
            .expect("add");
    });
    assert_eq!(c2.delegation(RELEASES).expect("v2").version(), 2);
    (server, releases_v1, c2)
}

/// The server re-signs snapshot and timestamp (it may hold both keys) over its files.
fn resign(server: &mut common::Server, keys: &Keys, version: u64) {
    server.snapshot_with(keys.snapshot.as_ref(), version, t0());
    server.timestamp_with(version, t0());
}

#[test]
fn hiding_a_delegation_then_serving_an_older_one_is_refused() {
    let keys = Keys::new(t0());
    let d = MemorySigner::p256();
    let (server, releases_v1, c2) = releases_v2(&keys, &d);

    // Step 1: a snapshot that stops listing targets/releases while targets still delegates it.
    let mut hidden = server.clone();
    hidden.targets.remove(RELEASES);
    resign(&mut hidden, &keys, 10);
    let err = verify(&hidden, Some(&c2), t0()).expect_err("hiding must be refused");
    assert!(
        matches!(&err, Error::Hidden { role, trusted: 2, version: 10, parent }
            if role == RELEASES && parent == "targets"),
        "{err}"
    );
    assert!(err.to_string().contains("rollback"), "{err}");

    // Step 2: the genuinely signed v1, listed again by a fresh snapshot.
    let mut rolled_back = server.clone();
    rolled_back.targets.insert(RELEASES.into(), releases_v1);
    resign(&mut rolled_back, &keys, 11);
    let err = verify(&rolled_back, Some(&c2), t0()).expect_err("rollback must be refused");
    assert!(
        matches!(&err, Error::Rollback { role, version: 1, trusted: 2 } if role == RELEASES),
        "{err}"
    );
    // A first-time client has no baseline: it sees v1, as TUF allows.
    verify(&rolled_back, None, t0()).expect("no baseline, nothing to roll back");
}

#[test]
fn a_skipped_delegation_keeps_its_baseline() {
    let keys = Keys::new(t0());
    let d = MemorySigner::p256();
    let (server, releases_v1, c2) = releases_v2(&keys, &d);

    // An under-signed v3 (a stranger's signature) is skipped, not fatal...
    let stranger = MemorySigner::p256();
    let stranger_key = bare(&stranger);
    let mut body = c2.delegation(RELEASES).expect("v2").body().clone();
    body.version = 3;
    let forged = sigil_tuf::sign::testing::block_on(sigil_tuf::sign::sign_role(
        RELEASES,
        body,
        &[(stranger_key.id().as_str(), &stranger_key)],
        1,
        &[&stranger],
    ))
    .expect("stranger signs");
    let mut skipped = server.clone();
    skipped
        .targets
        .insert(RELEASES.into(), forged.to_vec().expect("bytes"));
    resign(&mut skipped, &keys, 10);
    let c3 = verify(&skipped, Some(&c2), t0()).expect("walk goes on");
    assert_eq!(c3.skipped().len(), 1, "{:?}", c3.skipped());
    assert!(c3.delegation(RELEASES).is_none());
    // ...and the v2 baseline survives it.
    assert_eq!(c3.prior_versions().delegations.get(RELEASES), Some(&2));

    let mut rolled_back = server.clone();
    rolled_back.targets.insert(RELEASES.into(), releases_v1);
    resign(&mut rolled_back, &keys, 11);
    let err = verify(&rolled_back, Some(&c3), t0()).expect_err("rollback must be refused");
    assert!(
        matches!(&err, Error::Rollback { role, version: 1, trusted: 2 } if role == RELEASES),
        "{err}"
    );
}

#[test]
fn a_removed_delegation_drops_its_baseline_and_may_come_back() {
    let keys = Keys::new(t0());
    let d = MemorySigner::p256();
    let (mut server, _, c2) = releases_v2(&keys, &d);
    let mut signers = keys.client();
    signers.push(&d);
    let c3 = republish(&mut server, &c2, &signers, t0(), |e| {
        e.remove_delegation(RELEASES).expect("remove")
    });
    assert!(c3.delegation(RELEASES).is_none());
    assert_eq!(c3.prior_versions().delegations.get(RELEASES), None);
    // Delegated afresh, the role starts over at version 1 and is accepted.
    let d_key = bare(&d);
    let c4 = republish(&mut server, &c3, &signers, t0(), |e| {
        delegate(e, RELEASES, &d_key);
        e.add_target(RELEASES, "r.tar", FileMeta::from_bytes(b"again"))
            .expect("add");
    });
    assert!(c4.delegation(RELEASES).is_some());
}

/// The published targets file of `server` with its signatures replaced by `signatures`.
fn with_signatures(server: &common::Server, signatures: Vec<Signature>) -> Signed<Targets> {
    let mut targets: Signed<Targets> =
        Signed::from_slice("targets", &server.targets["targets"]).expect("parse");
    targets.signatures = signatures;
    targets
}

#[test]
fn one_key_under_two_ids_counts_once_in_the_verifier() {
    let keys = Keys::new(t0());
    let (server, c) = published(&keys, t0());
    let genuine = Signed::<Targets>::from_slice("targets", &server.targets["targets"])
        .expect("parse")
        .signatures[0]
        .clone();
    // The targets key bare and as a certificate: two ids for one P-256 key.
    let bare_key = bare(&keys.targets);
    let cert_key = root_cert_key(&keys.targets, GUN, t0());
    assert_ne!(bare_key.id(), cert_key.id());
    let (bare_id, cert_id) = (bare_key.id(), cert_key.id());
    let both = [(bare_id.as_str(), &bare_key), (cert_id.as_str(), &cert_key)];
    let mut twice = genuine.clone();
    twice.keyid = cert_id.clone();
    let signed = with_signatures(&server, vec![genuine.clone(), twice]);
    verify_signatures("targets", &signed, &both, 1).expect("one of one");
    let err = verify_signatures("targets", &signed, &both, 2).expect_err("one key, not two");
    assert!(
        matches!(&err, Error::ThresholdNotMet { valid: 1, threshold: 2, reason, .. }
            if reason.contains("already counted")),
        "{err}"
    );
    // Only the first signature of a key id is looked at: a second one by the same id cannot
    // make up for a bad first.
    let mut bad = genuine.clone();
    bad.sig[5] ^= 1;
    let signed = with_signatures(&server, vec![bad, genuine]);
    let keys_of_targets = c.root().body().role_keys(RoleType::Targets);
    let err = verify_signatures("targets", &signed, &keys_of_targets, 1).expect_err("refused");
    assert!(
        matches!(&err, Error::ThresholdNotMet { valid: 0, reason, .. }
            if reason.contains("does not verify") && reason.contains("more than once")),
        "{err}"
    );
}

#[test]
fn a_signature_flood_is_refused_without_verifying_it() {
    let keys = Keys::new(t0());
    let (server, c) = published(&keys, t0());
    let genuine = Signed::<Targets>::from_slice("targets", &server.targets["targets"])
        .expect("parse")
        .signatures[0]
        .clone();
    let keys_of_targets = c.root().body().role_keys(RoleType::Targets);
    let junk = |i: usize| Signature {
        keyid: format!("{i:064x}"),
        ..genuine.clone()
    };
    // Up to the bound: the genuine signature counts and the walk stops there.
    let mut sigs = vec![genuine.clone()];
    sigs.extend((1..MAX_SIGNATURES).map(junk));
    let signed = with_signatures(&server, sigs);
    verify_signatures("targets", &signed, &keys_of_targets, 1).expect("within the bound");

    // Far past it, even with the genuine signature first: refused before any verification,
    // with a short error.
    let mut sigs = vec![genuine.clone()];
    sigs.extend((1..200_000).map(junk));
    let signed = with_signatures(&server, sigs);
    let started = Instant::now();
    let err = verify_signatures("targets", &signed, &keys_of_targets, 1).expect_err("flood");
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    assert!(
        matches!(&err, Error::ThresholdNotMet { valid: 0, reason, .. }
            if reason.contains("200000 signatures")),
        "{err}"
    );
    assert!(err.to_string().len() < 1000, "{}", err.to_string().len());

    // Many junk signatures under the bound give a short error too.
    let signed = with_signatures(&server, (1..MAX_SIGNATURES).map(junk).collect());
    let err = verify_signatures("targets", &signed, &keys_of_targets, 1).expect_err("junk");
    assert!(err.to_string().contains("more"), "{err}");
    assert!(err.to_string().len() < 2000, "{}", err.to_string().len());
}

#[test]
fn another_root_of_the_trusted_version_is_refused() {
    let keys = Keys::new(t0());
    let (_, v1) = published(&keys, t0());
    // The same root body with an extra (valid) signature: different bytes, same version 1.
    let mut root: Signed<sigil_tuf::schema::Root> =
        Signed::from_slice("root", v1.root().bytes()).expect("root");
    let extra = root.signatures[0].clone();
    root.signatures.push(extra);
    let mut up =
        Updater::new(GUN, v1.root().bytes().to_vec(), RootTrust::Cached, t0()).expect("v1");
    assert!(
        !up.update_root(v1.root().bytes().to_vec())
            .expect("same bytes")
    );
    let err = up
        .update_root(root.to_vec().expect("bytes"))
        .expect_err("must be refused");
    assert!(
        matches!(
            err,
            Error::RootVersion {
                version: 1,
                expected: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn root_rotations_per_update_are_bounded() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let up = Updater::new(GUN, v1.root().bytes().to_vec(), RootTrust::Cached, t0()).expect("v1");
    let range = up
        .intermediate_root_versions(1 + MAX_ROOT_ROTATIONS)
        .expect("32 ahead is allowed");
    assert_eq!(range, 2..1 + MAX_ROOT_ROTATIONS);
    let err = up
        .intermediate_root_versions(u64::MAX)
        .expect_err("absurd root version");
    assert!(
        matches!(&err, Error::LimitExceeded { role, limit, .. }
            if role == "root" && *limit == MAX_ROOT_ROTATIONS),
        "{err}"
    );

    // 33 genuine rotations: a client at v1 follows 32 of them, then stops.
    let mut current = v1.clone();
    for _ in 0..=MAX_ROOT_ROTATIONS {
        current = republish(&mut server, &current, &keys.client(), t0(), |e| {
            e.witness("root").expect("re-sign root")
        });
    }
    assert_eq!(current.root().version(), 2 + MAX_ROOT_ROTATIONS);
    let err = verify(&server, Some(&v1), t0()).expect_err("too far behind");
    assert!(
        matches!(&err, Error::LimitExceeded { role, .. } if role == "root"),
        "{err}"
    );
    let mut up =
        Updater::new(GUN, v1.root().bytes().to_vec(), RootTrust::Cached, t0()).expect("v1");
    for root in &server.roots[1..=MAX_ROOT_ROTATIONS as usize] {
        assert!(up.update_root(root.clone()).expect("within the bound"));
    }
    let err = up
        .update_root(server.roots[MAX_ROOT_ROTATIONS as usize + 1].clone())
        .expect_err("33rd rotation");
    assert!(matches!(&err, Error::LimitExceeded { .. }), "{err}");
}

#[test]
fn too_many_delegated_roles_are_refused() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let d = MemorySigner::p256();
    let d_key = bare(&d);
    let count = MAX_DELEGATED_ROLES + 1;
    let c = republish(&mut server, &v1, &keys.client(), t0(), |e| {
        for i in 0..count {
            delegate(e, &format!("targets/r{i}"), &d_key);
        }
    });
    // The server lists every one in its snapshot (the files themselves never get fetched).
    for i in 0..count {
        server
            .targets
            .insert(format!("targets/r{i}"), format!("r{i}").into_bytes());
    }
    resign(&mut server, &keys, 10);
    let mut up =
        Updater::new(GUN, c.root().bytes().to_vec(), RootTrust::Cached, t0()).expect("root");
    up.update_timestamp(server.timestamp.clone()).expect("ts");
    up.update_snapshot(server.snapshot.clone())
        .expect("snapshot");
    up.update_targets(server.targets["targets"].clone())
        .expect("targets");
    let started = Instant::now();
    let mut handed_out = 0;
    let err = loop {
        match up.next_delegation() {
            Ok(Some((role, _))) => {
                assert_eq!(role, format!("targets/r{handed_out}"), "delegation order");
                handed_out += 1;
            }
            Ok(None) => panic!("walked all {handed_out} roles"),
            Err(e) => break e,
        }
    };
    assert_eq!(handed_out, MAX_DELEGATED_ROLES);
    assert!(
        matches!(&err, Error::LimitExceeded { limit, .. } if *limit == MAX_DELEGATED_ROLES as u64),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}

#[test]
fn delegations_nested_too_deep_are_refused() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let d = MemorySigner::p256();
    let d_key = bare(&d);
    let mut signers = keys.client();
    signers.push(&d);
    let chain: Vec<String> = (1..=MAX_DELEGATION_DEPTH + 1)
        .map(|depth| format!("targets{}", "/a".repeat(depth)))
        .collect();
    let c = republish(&mut server, &v1, &signers, t0(), |e| {
        for role in &chain[..MAX_DELEGATION_DEPTH] {
            delegate(e, role, &d_key);
            e.add_target(role, "t", FileMeta::from_bytes(b"t"))
                .expect("add");
        }
    });
    assert_eq!(
        c.delegations().len(),
        MAX_DELEGATION_DEPTH,
        "16 levels walk"
    );
    // One level more, delegated and (by the server) listed in the snapshot.
    let deepest = chain[MAX_DELEGATION_DEPTH].clone();
    republish(&mut server, &c, &signers, t0(), |e| {
        delegate(e, &deepest, &d_key)
    });
    server.targets.insert(deepest.clone(), b"{}".to_vec());
    resign(&mut server, &keys, 20);
    let err = verify(&server, Some(&c), t0()).expect_err("17 levels");
    assert!(
        matches!(&err, Error::LimitExceeded { role, limit, .. }
            if *role == deepest && *limit == MAX_DELEGATION_DEPTH as u64),
        "{err}"
    );
}
