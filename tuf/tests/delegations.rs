//! Delegations: Notary's path rules (prefixes, restricted by every parent), delegation chains,
//! hash prefixes, and which delegation failures skip a role versus fail the walk.

mod common;

use std::sync::Arc;

use common::{Keys, bare, days, published, republish, t0, verify};
use sigil_tuf::changelist::DelegationChange;
use sigil_tuf::schema::{Expires, Targets};
use sigil_tuf::sign::sign_role;
use sigil_tuf::sign::testing::{MemorySigner, block_on};
use sigil_tuf::{CollectionEditor, Error, FileMeta, Metadata, Signer, TufKey};

fn delegate(
    e: &mut CollectionEditor,
    role: &str,
    key: &TufKey,
    paths: &[&str],
) -> sigil_tuf::Result<()> {
    e.update_delegation(
        role,
        &DelegationChange {
            threshold: 1,
            add_keys: vec![key.clone()],
            add_paths: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        },
    )
}

/// Signs `body` as delegated role `role` of `parent` (read from the server) with `signer`,
/// and stores it; the caller re-signs snapshot and timestamp.
fn forge_delegation(server: &mut common::Server, role: &str, body: Targets, signer: &dyn Signer) {
    let parent_name = sigil_tuf::schema::parent_role(role);
    let parent = Metadata::<Targets>::from_bytes(parent_name, server.targets[parent_name].clone())
        .expect("parent");
    let (entry, keys) = parent.body().delegation(role).expect("delegated");
    let signed = block_on(sign_role(role, body, &keys, entry.threshold, &[signer]))
        .expect("the delegate signs");
    server
        .targets
        .insert(role.to_owned(), signed.to_vec().expect("bytes"));
}

fn resign(server: &mut common::Server, keys: &Keys, version: u64) {
    server.snapshot_with(keys.snapshot.as_ref(), version, t0());
    server.timestamp_with(version, t0());
}

#[test]
fn targets_outside_the_delegated_paths_are_not_trusted() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let d1 = Arc::new(MemorySigner::p256());
    let d1_key = bare(&d1);
    let mut signers = keys.client();
    signers.push(d1.as_ref());
    let v2 = republish(&mut server, &v1, &signers, t0(), |e| {
        delegate(e, "targets/releases", &d1_key, &["releases/"]).expect("delegate");
        e.add_target(
            "targets/releases",
            "releases/v1.tar",
            FileMeta::from_bytes(b"v1"),
        )
        .expect("inside the paths");
        let err = e
            .add_target("targets/releases", "other/b", FileMeta::from_bytes(b"b"))
            .expect_err("outside the paths");
        assert!(matches!(err, Error::PathNotDelegated { .. }), "{err}");
    });
    let found = v2.lookup("releases/v1.tar", &[]).expect("lookup");
    assert_eq!(found.role, "targets/releases");

    // The delegate's key signs a target outside its paths anyway.
    let mut body = v2
        .delegation("targets/releases")
        .expect("loaded")
        .body()
        .clone();
    body.version = 2;
    body.targets
        .insert("other/b".into(), FileMeta::from_bytes(b"evil"));
    forge_delegation(&mut server, "targets/releases", body, d1.as_ref());
    resign(&mut server, &keys, 10);
    let c = verify(&server, Some(&v2), t0()).expect("the walk itself succeeds");
    let err = c.lookup("other/b", &[]).expect_err("not delegated");
    assert!(
        matches!(&err, Error::PathNotDelegated { role, target } if role == "targets/releases" && target == "other/b"),
        "{err}"
    );
    let names: Vec<String> = c.list_targets(&[]).into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["app.tar", "releases/v1.tar"]);
}

#[test]
fn delegation_chains_restrict_paths_at_every_level() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let a = MemorySigner::ed25519();
    let b = MemorySigner::p256();
    let (a_key, b_key) = (bare(&a), bare(&b));
    let mut signers = keys.client();
    signers.push(&a);
    signers.push(&b);
    let v2 = republish(&mut server, &v1, &signers, t0(), |e| {
        delegate(e, "targets/a", &a_key, &["a/"]).expect("targets/a");
        delegate(e, "targets/a/b", &b_key, &["a/b/", "x/"]).expect("targets/a/b");
        assert_eq!(
            e.path_rule("targets/a/b").expect("rule").paths,
            ["a/b/".to_string()]
        );
        e.add_target("targets/a/b", "a/b/f", FileMeta::from_bytes(b"f"))
            .expect("allowed through the chain");
        let err = e
            .add_target("targets/a/b", "x/f", FileMeta::from_bytes(b"f"))
            .expect_err("x/ is not under targets/a's a/");
        assert!(matches!(err, Error::PathNotDelegated { .. }), "{err}");
        // A grandchild may not be delegated from the wrong parent.
        assert!(delegate(e, "targets/c/d", &b_key, &[""]).is_err());
    });
    assert_eq!(v2.walk("targets"), ["targets", "targets/a", "targets/a/b"]);
    let f = v2.lookup("a/b/f", &[]).expect("found through the chain");
    assert_eq!(f.role, "targets/a/b");
    assert_eq!(
        v2.lookup("a/b/f", &["targets/a/b"])
            .expect("from the leaf")
            .role,
        "targets/a/b"
    );
    // Removing targets/a removes targets/a/b with it.
    let v3 = republish(&mut server, &v2, &signers, t0(), |e| {
        e.remove_delegation("targets/a").expect("remove");
    });
    assert!(v3.delegations().is_empty());
    assert!(!v3.snapshot().body().meta.contains_key("targets/a/b"));
}

#[test]
fn path_hash_prefixes_are_honoured() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let d = MemorySigner::p256();
    let d_key = bare(&d);
    let mut signers = keys.client();
    signers.push(&d);
    let wanted = "h/file";
    let prefix =
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(wanted.as_bytes()))[..3].to_owned();
    let v2 = republish(&mut server, &v1, &signers, t0(), |e| {
        delegate(e, "targets/hashed", &d_key, &[]).expect("delegate without paths");
    });
    // No tool edits hash prefixes (notary has no flag for them): write targets by hand.
    let mut targets = v2.targets().body().clone();
    targets.version += 1;
    let d_entry = targets
        .delegations
        .as_mut()
        .and_then(|d| d.roles.iter_mut().find(|r| r.name == "targets/hashed"))
        .expect("entry");
    d_entry.paths = None;
    d_entry.path_hash_prefixes = Some(vec![prefix]);
    let tk = v2.root().body().role_keys(sigil_tuf::RoleType::Targets);
    let signed = block_on(sign_role("targets", targets, &tk, 1, &keys.client())).expect("sign");
    server
        .targets
        .insert("targets".into(), signed.to_vec().expect("bytes"));
    let mut body = Targets::new(1, Expires::after(t0(), days(30)).expect("expires"));
    body.targets
        .insert(wanted.into(), FileMeta::from_bytes(b"h"));
    body.targets
        .insert("h/other".into(), FileMeta::from_bytes(b"o"));
    forge_delegation(&mut server, "targets/hashed", body, &d);
    resign(&mut server, &keys, 10);
    let c = verify(&server, Some(&v2), t0()).expect("walk");
    assert_eq!(
        c.lookup(wanted, &[]).expect("prefix matches").role,
        "targets/hashed"
    );
    // "h/other" hashes elsewhere (checked: its digest does not share the 3-digit prefix).
    let other = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"h/other"));
    let wanted_hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(wanted.as_bytes()));
    assert_ne!(other[..3], wanted_hex[..3]);
    assert!(matches!(
        c.lookup("h/other", &[]),
        Err(Error::PathNotDelegated { .. })
    ));
}

fn with_releases(keys: &Keys) -> (common::Server, sigil_tuf::VerifiedCollection, MemorySigner) {
    let (mut server, v1) = published(keys, t0());
    let d = MemorySigner::p256();
    let d_key = bare(&d);
    let mut signers = keys.client();
    signers.push(&d);
    let v2 = republish(&mut server, &v1, &signers, t0(), |e| {
        delegate(e, "targets/releases", &d_key, &[""]).expect("delegate");
        e.add_target("targets/releases", "r.tar", FileMeta::from_bytes(b"r"))
            .expect("add");
    });
    (server, v2, d)
}

#[test]
fn an_under_signed_delegation_is_skipped_not_fatal() {
    let keys = Keys::new(t0());
    let (mut server, v2, _d) = with_releases(&keys);
    let stranger = MemorySigner::p256();
    let stranger_key = bare(&stranger);
    let body = v2
        .delegation("targets/releases")
        .expect("loaded")
        .body()
        .clone();
    let signed = block_on(sign_role(
        "targets/releases",
        body,
        &[(stranger_key.id().as_str(), &stranger_key)],
        1,
        &[&stranger],
    ))
    .expect("stranger signs");
    server
        .targets
        .insert("targets/releases".into(), signed.to_vec().expect("bytes"));
    resign(&mut server, &keys, 10);
    let c = verify(&server, None, t0()).expect("walk goes on");
    assert_eq!(c.skipped().len(), 1);
    assert_eq!(c.skipped()[0].role, "targets/releases");
    assert!(
        c.skipped()[0].reason.contains("threshold"),
        "{:?}",
        c.skipped()
    );
    assert!(matches!(
        c.lookup("r.tar", &[]),
        Err(Error::TargetNotFound { .. })
    ));
}

#[test]
fn an_expired_delegation_is_skipped() {
    let keys = Keys::new(t0());
    let (mut server, v2, d) = with_releases(&keys);
    let mut body = v2
        .delegation("targets/releases")
        .expect("loaded")
        .body()
        .clone();
    body.version = 2;
    body.expires = Expires::after(t0(), days(1)).expect("expires");
    forge_delegation(&mut server, "targets/releases", body, &d);
    server.snapshot_with(keys.snapshot.as_ref(), 10, t0());
    server.timestamp_with(10, t0() + days(2));
    let c = verify(&server, None, t0() + days(2)).expect("walk goes on");
    assert_eq!(c.skipped().len(), 1, "{:?}", c.skipped());
    assert!(c.skipped()[0].reason.contains("expired"));
    assert!(c.lookup("r.tar", &[]).is_err());
}

#[test]
fn a_delegation_that_does_not_match_the_snapshot_is_fatal() {
    let keys = Keys::new(t0());
    let (mut server, v2, d) = with_releases(&keys);
    let mut body = v2
        .delegation("targets/releases")
        .expect("loaded")
        .body()
        .clone();
    body.version = 2;
    forge_delegation(&mut server, "targets/releases", body, &d);
    // No new snapshot: it still lists version 1's hash.
    let err = verify(&server, None, t0()).expect_err("mismatch");
    assert!(
        matches!(&err, Error::HashMismatch { role, listed_in, .. } | Error::LengthMismatch { role, listed_in, .. }
            if role == "targets/releases" && listed_in == "snapshot"),
        "{err}"
    );
}

#[test]
fn delegations_never_published_are_not_fetched() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let d = MemorySigner::p256();
    let d_key = bare(&d);
    let v2 = republish(&mut server, &v1, &keys.client(), t0(), |e| {
        delegate(e, "targets/later", &d_key, &[""]).expect("delegate");
    });
    assert!(v2.delegations().is_empty() && v2.skipped().is_empty());
    assert_eq!(
        v2.targets().body().delegated_roles()[0].name,
        "targets/later"
    );
    let mut up = sigil_tuf::Updater::new(
        common::GUN,
        v2.root().bytes().to_vec(),
        sigil_tuf::RootTrust::Cached,
        t0(),
    )
    .expect("root");
    up.update_timestamp(server.timestamp.clone()).expect("ts");
    up.update_snapshot(server.snapshot.clone()).expect("snap");
    up.update_targets(server.targets["targets"].clone())
        .expect("targets");
    assert_eq!(up.next_delegation().expect("walk"), None);
    let err = up
        .update_delegation("targets/later", b"{}".to_vec())
        .expect_err("not in snapshot");
    assert!(matches!(err, Error::NotListed { .. }), "{err}");
    let err = up
        .update_delegation("targets/nobody", b"{}".to_vec())
        .expect_err("not delegated");
    assert!(matches!(err, Error::NoSuchRole { .. }), "{err}");
}
