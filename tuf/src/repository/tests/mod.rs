//! The repository workflow with in-memory keys: init → add → publish → verify, thresholds,
//! rotation (root needs its old and new keys), only changed roles bumped, hostile input
//! refused with nothing written, unknown fields kept.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::json;
use sha2::Digest as _;

use super::*;
use crate::Signer;
use crate::schema::tuf1::{self, Tuf1};
use crate::sign::testing::{MemorySigner, block_on};

pub(super) struct Keys {
    root: MemorySigner,
    targets: MemorySigner,
    snapshot: MemorySigner,
    timestamp: MemorySigner,
}

impl Keys {
    fn new() -> Self {
        Self {
            root: MemorySigner::p256(),
            targets: MemorySigner::ed25519(),
            snapshot: MemorySigner::p256(),
            timestamp: MemorySigner::p256(),
        }
    }

    fn online(&self) -> [&dyn Signer; 3] {
        [&self.targets, &self.snapshot, &self.timestamp]
    }

    fn init_keys(&self) -> InitKeys {
        InitKeys {
            root: vec![self.root.public_key().clone()],
            root_threshold: 1,
            targets: vec![self.targets.public_key().clone()],
            snapshot: vec![self.snapshot.public_key().clone()],
            timestamp: vec![self.timestamp.public_key().clone()],
        }
    }
}

pub(super) fn now() -> SystemTime {
    SystemTime::now()
}

pub(super) fn init(dir: &Path, keys: &Keys) -> Repository {
    let mut repo = block_on(Repository::init(
        dir,
        &keys.init_keys(),
        Settings::default(),
        &[&keys.root],
        now(),
    ))
    .expect("init");
    block_on(repo.publish(&keys.online(), now())).expect("first publish");
    repo
}

pub(super) fn file_target(dir: &Path, name: &str, content: &[u8]) -> NewTarget {
    let path = dir.join(format!("src-{}", name.replace('/', "_")));
    std::fs::write(&path, content).expect("write source");
    NewTarget {
        name: name.to_owned(),
        source: TargetSource::File(path),
        custom: None,
    }
}

fn versions(repo: &Repository) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = repo
        .published()
        .targets
        .iter()
        .map(|(n, m)| (n.clone(), m.version()))
        .collect();
    out.push((
        "snapshot".into(),
        repo.published()
            .snapshot
            .as_ref()
            .map_or(0, |s| s.version()),
    ));
    out.push((
        "timestamp".into(),
        repo.published()
            .timestamp
            .as_ref()
            .map_or(0, |s| s.version()),
    ));
    out
}

pub(super) fn metadata_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("metadata"))
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn init_add_publish_verify_writes_the_consistent_snapshot_layout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let dir = tmp.path().join("repo");
    let mut repo = init(&dir, &keys);
    assert_eq!(
        metadata_files(&dir),
        [
            "1.root.json",
            "1.snapshot.json",
            "1.targets.json",
            "timestamp.json"
        ]
    );
    let mut t = file_target(tmp.path(), "dir/a b.txt", b"hello\n");
    t.custom = Some(json!({"k": [1, 2]}));
    repo.add_targets("targets", &[t], now()).expect("add");
    let report = block_on(repo.publish(&keys.online(), now())).expect("publish");
    assert_eq!(
        report.written,
        [
            ("targets".to_owned(), 2),
            ("snapshot".to_owned(), 2),
            ("timestamp".to_owned(), 2)
        ]
    );
    let sha = hex::encode(sha2::Sha256::digest(b"hello\n"));
    assert_eq!(
        std::fs::read(dir.join(format!("targets/dir/{sha}.a b.txt"))).expect("stored"),
        b"hello\n"
    );
    let text = std::fs::read_to_string(dir.join("metadata/2.targets.json")).expect("targets");
    assert!(text.contains("\"spec_version\":\"1.0.31\""), "{text}");
    let expires = repo.published().targets["targets"]
        .body()
        .expires
        .as_str()
        .to_owned();
    assert_eq!(expires.len(), 20, "{expires}");
    let v = Repository::open(&dir)
        .expect("open")
        .verify(now(), &mut |_| {})
        .expect("verify");
    assert_eq!(v.root_chain, [1]);
    assert_eq!(v.files_checked, 1);

    // One changed byte in a stored target file and verify refuses it.
    let stored = dir.join(format!("targets/dir/{sha}.a b.txt"));
    std::fs::write(&stored, b"hellO\n").expect("tamper");
    let err = repo.verify(now(), &mut |_| {}).expect_err("tampered");
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
}

#[test]
fn only_changed_roles_get_new_versions_and_timestamp_refreshes_alone() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let dir = tmp.path().join("repo");
    let mut repo = init(&dir, &keys);
    let releases = MemorySigner::p256();
    repo.delegate(
        &Delegation {
            name: "releases".into(),
            parent: "targets".into(),
            keys: vec![releases.public_key().clone()],
            threshold: 1,
            rule: PathRule::Paths(vec!["releases/*".into()]),
            terminating: true,
        },
        now(),
    )
    .expect("delegate");
    let signers: [&dyn Signer; 4] = [&keys.targets, &keys.snapshot, &keys.timestamp, &releases];
    block_on(repo.publish(&signers, now())).expect("publish delegation");
    assert_eq!(
        versions(&repo),
        [
            ("releases".into(), 1),
            ("targets".into(), 2),
            ("snapshot".into(), 2),
            ("timestamp".into(), 2)
        ]
    );
    repo.add_targets(
        "releases",
        &[file_target(tmp.path(), "releases/v1.tar", b"v1")],
        now(),
    )
    .expect("add to releases");
    let report = block_on(repo.publish(&signers, now())).expect("publish");
    assert_eq!(
        report.written,
        [
            ("releases".to_owned(), 2),
            ("snapshot".to_owned(), 3),
            ("timestamp".to_owned(), 3)
        ]
    );
    assert_eq!(
        versions(&repo)[1],
        ("targets".into(), 2),
        "targets untouched"
    );
    // Outside the delegated paths: refused, nothing staged.
    let err = repo
        .add_targets(
            "releases",
            &[file_target(tmp.path(), "nightly/x", b"x")],
            now(),
        )
        .expect_err("outside");
    assert!(matches!(err, Error::PathNotDelegated { .. }), "{err}");
    assert!(repo.staged().is_empty());

    let report = block_on(repo.refresh_timestamp(&[&keys.timestamp], now())).expect("timestamp");
    assert_eq!(report.written, [("timestamp".to_owned(), 4)]);
    assert_eq!(versions(&repo)[2], ("snapshot".into(), 3));
    // Ten days on, the snapshot (7 days) would expire before a new timestamp: renewed too.
    let later = now() + Duration::from_secs(10 * 86_400);
    let signers2: [&dyn Signer; 2] = [&keys.snapshot, &keys.timestamp];
    let report = block_on(repo.refresh_timestamp(&signers2, later)).expect("timestamp");
    assert_eq!(
        report.written,
        [("snapshot".to_owned(), 4), ("timestamp".to_owned(), 5)]
    );
    // (Targets, 90 days, is still valid then; verify at that time sees fresh snapshot and
    // timestamp.)
    repo.verify(later, &mut |_| {}).expect("valid ten days on");
    // Nothing staged: publish writes nothing.
    assert!(
        block_on(repo.publish(&signers, now()))
            .expect("noop")
            .written
            .is_empty()
    );
    Repository::open(&dir)
        .expect("open")
        .verify(now(), &mut |_| {})
        .expect("verify");
}

#[test]
fn hash_prefix_delegations_take_only_their_bins() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let mut repo = init(&tmp.path().join("repo"), &keys);
    let bin = MemorySigner::p256();
    let name = "pkg/a.txt";
    let prefix = hex::encode(sha2::Sha256::digest(name.as_bytes()))[..2].to_owned();
    let other = if prefix.starts_with('0') { "1" } else { "0" };
    for (role, p) in [("bin-in", prefix.as_str()), ("bin-out", other)] {
        repo.delegate(
            &Delegation {
                name: role.into(),
                parent: "targets".into(),
                keys: vec![bin.public_key().clone()],
                threshold: 1,
                rule: PathRule::HashPrefixes(vec![p.to_owned()]),
                terminating: false,
            },
            now(),
        )
        .expect("delegate");
    }
    repo.add_targets("bin-in", &[file_target(tmp.path(), name, b"a")], now())
        .expect("in bin");
    let err = repo
        .add_targets("bin-out", &[file_target(tmp.path(), name, b"a")], now())
        .expect_err("other bin");
    assert!(matches!(err, Error::PathNotDelegated { .. }), "{err}");
    let signers: [&dyn Signer; 4] = [&keys.targets, &keys.snapshot, &keys.timestamp, &bin];
    block_on(repo.publish(&signers, now())).expect("publish");
    let v = repo.verify(now(), &mut |_| {}).expect("verify");
    assert_eq!(v.roles.len(), 6, "{:?}", v.roles);
}

#[test]
fn publish_refuses_while_root_threshold_is_unmet_and_names_the_missing_keys() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let (b, c) = (MemorySigner::p256(), MemorySigner::ed25519());
    let mut init_keys = keys.init_keys();
    init_keys.root = vec![
        keys.root.public_key().clone(),
        b.public_key().clone(),
        c.public_key().clone(),
    ];
    init_keys.root_threshold = 2;
    let dir = tmp.path().join("repo");
    block_on(Repository::init(
        &dir,
        &init_keys,
        Settings::default(),
        &[&keys.root],
        now(),
    ))
    .expect("init");
    let mut repo = Repository::open(&dir).expect("open");
    let err = block_on(repo.publish(&keys.online(), now())).expect_err("1 of 2");
    let text = err.to_string();
    assert!(
        text.contains(&b.key_id())
            && text.contains(&c.key_id())
            && !text.contains(&keys.root.key_id()),
        "{text}"
    );
    assert!(metadata_files(&dir).is_empty(), "nothing written");
    // A key that is not root's is refused; the second root key completes the threshold.
    assert!(block_on(repo.sign_staged("root", &[&keys.snapshot])).is_err());
    block_on(repo.sign_staged("root", &[&c])).expect("sign");
    repo.save().expect("save");
    let mut repo = Repository::open(&dir).expect("reopen");
    assert!(repo.status().expect("status").staged[0].missing.is_empty());
    block_on(repo.publish(&keys.online(), now())).expect("publish");
    repo.verify(now(), &mut |_| {}).expect("verify");
}

#[test]
fn root_rotation_needs_the_old_and_the_new_root_keys() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let dir = tmp.path().join("repo");
    let mut repo = init(&dir, &keys);
    let new_root = MemorySigner::p256();
    repo.rotate(
        "root",
        &[new_root.public_key().clone()],
        &[keys.root.key_id()],
        now(),
    )
    .expect("rotate");
    block_on(repo.sign_staged("root", &[&new_root])).expect("sign new");
    let err = block_on(repo.publish(&keys.online(), now())).expect_err("old missing");
    assert!(
        err.to_string().contains("previous root v1")
            && err.to_string().contains(&keys.root.key_id()),
        "{err}"
    );
    block_on(repo.sign_staged("root", &[&keys.root])).expect("sign old");
    block_on(repo.publish(&keys.online(), now())).expect("publish");
    // Rotating targets stages root and targets; the new targets key signs at publish.
    let new_targets = MemorySigner::p256();
    repo.rotate(
        "targets",
        &[new_targets.public_key().clone()],
        &[keys.targets.key_id()],
        now(),
    )
    .expect("rotate targets");
    block_on(repo.sign_staged("root", &[&new_root])).expect("sign root v3");
    let signers: [&dyn Signer; 3] = [&new_targets, &keys.snapshot, &keys.timestamp];
    let report = block_on(repo.publish(&signers, now())).expect("publish");
    assert_eq!(report.written[0], ("root".to_owned(), 3));
    let v = repo.verify(now(), &mut |_| {}).expect("verify");
    assert_eq!(v.root_chain, [1, 2, 3]);
    // Removing the last key of a role is refused.
    let err = repo
        .rotate("timestamp", &[], &[keys.timestamp.key_id()], now())
        .expect_err("no key left");
    assert!(err.to_string().contains("threshold"), "{err}");
}

#[test]
fn unknown_fields_survive_an_edit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let dir = tmp.path().join("repo");
    let repo = init(&dir, &keys);
    // A peer's tool added fields sigil does not know to targets v1 (re-signed by its key).
    let mut targets = repo.published().targets["targets"].signed().signed.clone();
    targets
        .extra
        .insert("x-peer".into(), json!({"a": [1, "b"]}));
    targets.targets.insert("old".into(), {
        let mut f = crate::schema::tuf1::TargetFile::from_bytes_in(Tuf1, b"old");
        f.extra.insert("x-file".into(), json!(true));
        f
    });
    let root = repo.root().expect("root").clone();
    let signed = block_on(crate::sign::sign_role(
        "targets",
        targets,
        &root.role_keys(crate::RoleType::Targets),
        1,
        &[&keys.targets],
    ))
    .expect("sign");
    std::fs::write(
        dir.join("metadata/1.targets.json"),
        signed.to_vec().expect("bytes"),
    )
    .expect("replace");
    let mut repo = Repository::open(&dir).expect("open");
    repo.add_targets("targets", &[file_target(tmp.path(), "new", b"n")], now())
        .expect("add");
    block_on(repo.publish(&keys.online(), now())).expect("publish");
    let body = repo.published().targets["targets"].body();
    assert_eq!(body.extra["x-peer"], json!({"a": [1, "b"]}));
    assert_eq!(body.targets["old"].extra["x-file"], json!(true));
    assert_eq!(body.version, 2);
}

#[test]
fn expiry_settings_apply_per_role() {
    let mut s = Settings::default();
    s.set_expiry("timestamp", 2).expect("set");
    s.set_expiry("targets", 30).expect("set");
    assert!(s.set_expiry("snapshot", 0).is_err());
    assert!(s.set_expiry("../x", 1).is_err());
    assert_eq!(s.lifetime("timestamp"), Duration::from_secs(2 * 86_400));
    assert_eq!(s.lifetime("releases"), Duration::from_secs(30 * 86_400));
    assert_eq!(s.lifetime("root"), Duration::from_secs(365 * 86_400));
}

#[test]
fn a_publish_interrupted_after_the_root_was_written_still_needs_the_old_root_and_completes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let dir = tmp.path().join("repo");
    let mut repo = init(&dir, &keys);
    let new_root = MemorySigner::p256();
    repo.rotate(
        "root",
        &[new_root.public_key().clone()],
        &[keys.root.key_id()],
        now(),
    )
    .expect("rotate");
    block_on(repo.sign_staged("root", &[&new_root])).expect("sign new");
    repo.save().expect("save");
    // The crash: 2.root.json is on disk (as publish writes it first), nothing else is.
    let staged = std::fs::read(dir.join(".sigil/staged/root.json")).expect("staged root");
    std::fs::write(dir.join("metadata/2.root.json"), &staged).expect("partial publish");
    let mut repo = Repository::open(&dir).expect("reopen");
    let err = block_on(repo.publish(&keys.online(), now())).expect_err("old root key missing");
    assert!(err.to_string().contains("previous root v1"), "{err}");
    // The real crash: a fully signed 2.root.json written, then nothing else.
    std::fs::remove_file(dir.join("metadata/2.root.json")).expect("undo");
    let mut repo = Repository::open(&dir).expect("reopen");
    block_on(repo.sign_staged("root", &[&keys.root])).expect("sign old");
    repo.save().expect("save");
    let staged = std::fs::read(dir.join(".sigil/staged/root.json")).expect("staged root");
    std::fs::write(dir.join("metadata/2.root.json"), &staged).expect("partial publish");
    let mut repo = Repository::open(&dir).expect("reopen");
    let report = block_on(repo.publish(&keys.online(), now())).expect("publish completes");
    assert_eq!(report.written[0], ("root".to_owned(), 2));
    let v = repo.verify(now(), &mut |_| {}).expect("verify");
    assert_eq!(v.root_chain, [1, 2]);
}

#[test]
fn re_delegating_with_new_keys_re_signs_the_delegated_role() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let mut repo = init(&tmp.path().join("repo"), &keys);
    let (old, new) = (MemorySigner::p256(), MemorySigner::ed25519());
    let delegation = |key: &MemorySigner| Delegation {
        name: "releases".into(),
        parent: "targets".into(),
        keys: vec![key.public_key().clone()],
        threshold: 1,
        rule: PathRule::Paths(vec!["releases/*".into()]),
        terminating: true,
    };
    repo.delegate(&delegation(&old), now()).expect("delegate");
    let signers: [&dyn Signer; 4] = [&keys.targets, &keys.snapshot, &keys.timestamp, &old];
    block_on(repo.publish(&signers, now())).expect("publish");
    repo.delegate(&delegation(&new), now())
        .expect("re-delegate");
    let signers: [&dyn Signer; 4] = [&keys.targets, &keys.snapshot, &keys.timestamp, &new];
    let report = block_on(repo.publish(&signers, now())).expect("publish");
    assert!(
        report.written.contains(&("releases".to_owned(), 2)),
        "{report:?}"
    );
    repo.verify(now(), &mut |_| {})
        .expect("releases v2 verifies with the new key");
}

mod hostile;
mod published_state;
