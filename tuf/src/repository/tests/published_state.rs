//! After a publish, the repository's view of what clients fetch is built from the documents it
//! just wrote rather than read back from disk: it must equal what opening the directory reads,
//! and later edits and publishes on the same value must go on from it.

use super::*;

/// Every published role of `repo` against a fresh [`Repository::open`] of its directory: the
/// same roles, byte for byte.
fn assert_same_as_on_disk(repo: &Repository) {
    let disk = Repository::open(repo.layout().root()).expect("open");
    let (mem, disk) = (repo.published(), disk.published());
    let bytes = |m: Option<&[u8]>| m.map(<[u8]>::to_vec);
    assert_eq!(
        bytes(mem.root.as_ref().map(|m| m.bytes())),
        bytes(disk.root.as_ref().map(|m| m.bytes()))
    );
    assert_eq!(
        bytes(mem.snapshot.as_ref().map(|m| m.bytes())),
        bytes(disk.snapshot.as_ref().map(|m| m.bytes()))
    );
    assert_eq!(
        bytes(mem.timestamp.as_ref().map(|m| m.bytes())),
        bytes(disk.timestamp.as_ref().map(|m| m.bytes()))
    );
    let roles = |p: &Published| -> Vec<(String, Vec<u8>)> {
        p.targets
            .iter()
            .map(|(n, m)| (n.clone(), m.bytes().to_vec()))
            .collect()
    };
    assert_eq!(roles(mem), roles(disk));
}

#[test]
fn the_published_state_after_publish_equals_what_open_reads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let mut repo = init(&tmp.path().join("repo"), &keys);
    assert_same_as_on_disk(&repo);

    let bin = MemorySigner::p256();
    repo.delegate(
        &Delegation {
            name: "bins".into(),
            parent: "targets".into(),
            keys: vec![bin.public_key().clone()],
            threshold: 1,
            rule: PathRule::Paths(vec!["bins/*".into()]),
            terminating: false,
        },
        now(),
    )
    .expect("delegate");
    repo.add_targets("targets", &[file_target(tmp.path(), "a.txt", b"a")], now())
        .expect("add");
    let signers: [&dyn Signer; 4] = [&keys.targets, &keys.snapshot, &keys.timestamp, &bin];
    block_on(repo.publish(&signers, now())).expect("publish");
    assert_same_as_on_disk(&repo);

    // Only the delegated role changes: targets stays at the version published before.
    repo.add_targets("bins", &[file_target(tmp.path(), "bins/b", b"b")], now())
        .expect("add to bins");
    let report = block_on(repo.publish(&signers, now())).expect("publish bins");
    assert!(
        !report.written.iter().any(|(r, _)| r == "targets"),
        "{report:?}"
    );
    assert_same_as_on_disk(&repo);

    // A root rotation: root v2 becomes the published root in memory too.
    let new_root = MemorySigner::p256();
    repo.rotate(
        "root",
        &[new_root.public_key().clone()],
        &[keys.root.key_id()],
        now(),
    )
    .expect("rotate");
    block_on(repo.sign_staged("root", &[&new_root, &keys.root])).expect("sign root");
    block_on(repo.publish(&signers, now())).expect("publish root");
    assert_eq!(repo.root().expect("root").version, 2);
    assert_same_as_on_disk(&repo);
    let v = repo.verify(now(), &mut |_| {}).expect("verify");
    assert_eq!(v.root_chain, [1, 2]);
}
