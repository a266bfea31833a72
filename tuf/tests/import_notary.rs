//! A verified Notary collection moved to a TUF 1.0 repository (`repository::import`): nested
//! delegations keep their keys and effective paths under TUF 1.0 names, targets keep every
//! hash, the root key is the one inside Notary's root certificate, and the result passes the
//! repository's own full verification.

mod common;

use std::sync::Arc;

use common::{Keys, bare, published, republish, t0};
use sigil_tuf::changelist::DelegationChange;
use sigil_tuf::repository::{NotaryImport, PathRule, Repository};
use sigil_tuf::schema::tuf1::path_matches;
use sigil_tuf::sign::testing::{MemorySigner, block_on};
use sigil_tuf::{CollectionEditor, FileMeta, Signer, TufKey};

fn delegate(e: &mut CollectionEditor, role: &str, key: &TufKey, paths: &[&str]) {
    e.update_delegation(
        role,
        &DelegationChange {
            threshold: 1,
            add_keys: vec![key.clone()],
            add_paths: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        },
    )
    .expect("delegate");
}

#[test]
fn nested_delegations_keep_keys_effective_paths_and_every_hash() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let releases = Arc::new(MemorySigner::p256());
    let stable = Arc::new(MemorySigner::p256());
    let mut signers = keys.client();
    signers.push(releases.as_ref());
    signers.push(stable.as_ref());
    let collection = republish(&mut server, &v1, &signers, t0(), |e| {
        delegate(e, "targets/releases", &bare(&releases), &["releases/"]);
        // "other/" is not under the parent's "releases/": Notary drops it from the rule.
        delegate(
            e,
            "targets/releases/stable",
            &bare(&stable),
            &["releases/stable/", "other/"],
        );
        e.add_target(
            "targets/releases",
            "releases/v1.tar",
            FileMeta::from_bytes(b"v1"),
        )
        .expect("add");
        e.add_target(
            "targets/releases/stable",
            "releases/stable/v2.tar",
            FileMeta::from_bytes(b"v2"),
        )
        .expect("add");
    });

    let plan = NotaryImport::from_collection(&collection).expect("plan");
    let names: Vec<(&str, &str, &str)> = plan
        .roles
        .iter()
        .map(|r| {
            (
                r.notary_name.as_str(),
                r.delegation.name.as_str(),
                r.delegation.parent.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("targets/releases", "releases", "targets"),
            ("targets/releases/stable", "releases.stable", "releases"),
        ]
    );
    let PathRule::Paths(stable_paths) = &plan.roles[1].delegation.rule else {
        panic!("{:?}", plan.roles[1].delegation.rule)
    };
    assert!(
        stable_paths
            .iter()
            .all(|p| p.starts_with("releases/stable/")),
        "{stable_paths:?}"
    );
    assert!(
        stable_paths
            .iter()
            .any(|p| path_matches(p, "releases/stable/a/b.tar"))
    );
    assert!(!stable_paths.iter().any(|p| path_matches(p, "other/x")));
    // Root: the key inside the x509 certificate, not the certificate.
    assert_eq!(
        plan.root.keys[0].1.key_id(),
        keys.root.public_key().key_id()
    );
    assert_eq!(plan.target_count(), 3);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("repo");
    let (snapshot, timestamp) = (MemorySigner::p256(), MemorySigner::p256());
    let mut repo = block_on(Repository::import_notary(
        &path,
        &plan,
        snapshot.public_key().clone(),
        timestamp.public_key().clone(),
        &[keys.root.as_ref() as &dyn Signer],
        t0(),
    ))
    .expect("import");
    let online: Vec<&dyn Signer> = vec![
        keys.targets.as_ref(),
        releases.as_ref(),
        stable.as_ref(),
        &snapshot,
        &timestamp,
    ];
    block_on(repo.publish(&online, t0())).expect("publish");
    let report = Repository::open(&path)
        .expect("open")
        .verify(t0(), &mut |_| {})
        .expect("the imported repository verifies");
    let loaded: Vec<(&str, Option<usize>)> = report
        .roles
        .iter()
        .map(|r| (r.role.as_str(), r.targets))
        .collect();
    assert_eq!(
        loaded,
        [
            ("root", None),
            ("timestamp", None),
            ("snapshot", None),
            ("targets", Some(1)),
            ("releases", Some(1)),
            ("releases.stable", Some(1)),
        ]
    );

    let repo = Repository::open(&path).expect("open");
    let v2 = &repo
        .targets_role("releases.stable")
        .expect("stable")
        .targets["releases/stable/v2.tar"];
    let notary = FileMeta::from_bytes(b"v2");
    for alg in ["sha256", "sha512"] {
        assert_eq!(
            hex::encode(&v2.hashes[alg].0),
            hex::encode(&notary.hashes[alg].0),
            "{alg}"
        );
    }
    // The delegation's key is the Notary delegation's key.
    let targets = repo.targets_role("targets").expect("targets");
    let delegations = targets.delegations.as_ref().expect("delegations");
    let entry = delegations.role("releases").expect("releases");
    let listed: Vec<_> = delegations
        .role_keys(entry)
        .into_iter()
        .map(|(_, k)| k.to_public_key().expect("key").key_id())
        .collect();
    assert_eq!(listed, vec![releases.public_key().key_id()]);

    // A second import into the same directory is refused.
    let err = block_on(Repository::import_notary(
        &path,
        &plan,
        snapshot.public_key().clone(),
        timestamp.public_key().clone(),
        &[keys.root.as_ref() as &dyn Signer],
        t0(),
    ))
    .expect_err("exists");
    assert!(
        err.to_string().contains("already holds a repository"),
        "{err}"
    );
}
