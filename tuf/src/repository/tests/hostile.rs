//! Hostile input: names that would leave the repository, bad hex and thresholds, and
//! published metadata that is malformed, oversized or names files outside metadata/.

use super::*;

#[test]
fn hostile_names_and_values_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let dir = tmp.path().join("repo");
    let mut repo = init(&dir, &keys);
    let before = metadata_files(&dir);
    for bad in [
        "../escape",
        "a/../../b",
        "/etc/passwd",
        "a//b",
        "a\\b",
        "",
        "x\u{1}y",
    ] {
        let t = file_target(tmp.path(), "ok", b"x");
        let t = NewTarget {
            name: bad.into(),
            ..t
        };
        assert!(repo.add_targets("targets", &[t], now()).is_err(), "{bad:?}");
    }
    let k = MemorySigner::p256();
    for bad in ["..", "a/b", "root", "targets", "", "x\ny"] {
        let d = Delegation {
            name: bad.into(),
            parent: "targets".into(),
            keys: vec![k.public_key().clone()],
            threshold: 1,
            rule: PathRule::Paths(vec!["*".into()]),
            terminating: false,
        };
        assert!(repo.delegate(&d, now()).is_err(), "{bad:?}");
    }
    let d = Delegation {
        name: "bins".into(),
        parent: "targets".into(),
        keys: vec![k.public_key().clone()],
        threshold: 2,
        rule: PathRule::HashPrefixes(vec!["0G".into()]),
        terminating: false,
    };
    assert!(repo.delegate(&d, now()).is_err(), "bad hex and threshold");
    assert!(parse_manifest(&format!("{} 12 a\n", "zz".repeat(32))).is_err());
    assert!(parse_manifest(&format!("{} -1 a\n", "ab".repeat(32))).is_err());
    assert!(parse_manifest("abcd 1 a\n").is_err());
    let ok = parse_manifest(&format!("# c\n\n{} 12 a b\n", "AB".repeat(32))).expect("manifest");
    assert_eq!(ok[0].name, "a b");
    assert!(repo.staged().is_empty(), "nothing staged");
    assert!(!dir.join(".sigil/staged/targets.json").exists());
    assert_eq!(metadata_files(&dir), before);
    let stored: Vec<_> = std::fs::read_dir(dir.join("targets"))
        .expect("targets")
        .flatten()
        .collect();
    assert!(stored.is_empty(), "no target file stored: {stored:?}");
    assert!(!tmp.path().join("escape").exists());
}

#[test]
fn hostile_published_metadata_is_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::new();
    let dir = tmp.path().join("repo");
    let repo = init(&dir, &keys);
    let timestamp = dir.join("metadata/timestamp.json");
    let good = std::fs::read(&timestamp).expect("timestamp");
    let text = String::from_utf8(good.clone()).expect("utf-8");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Duplicate keys: readers disagree on which one counts.
        (
            "duplicate",
            text.replacen("{\"signatures\"", "{\"signatures\":[],\"signatures\"", 1)
                .into_bytes(),
        ),
        // A version no implementation can hold.
        (
            "2^63",
            text.replace("\"version\":1", "\"version\":9223372036854775808")
                .into_bytes(),
        ),
        (
            "wrong type",
            text.replace("\"version\":1", "\"version\":\"1\"")
                .into_bytes(),
        ),
        ("not json", b"\x00\x01".to_vec()),
    ];
    for (what, bytes) in cases {
        std::fs::write(&timestamp, &bytes).expect("write");
        let err = Repository::open(&dir).expect_err(what);
        assert!(err.to_string().contains("timestamp"), "{what}: {err}");
    }
    std::fs::write(&timestamp, &good).expect("restore");

    // A snapshot listing a role whose file name would leave metadata/.
    let mut snapshot = repo
        .published()
        .snapshot
        .as_ref()
        .expect("snapshot")
        .body()
        .clone();
    snapshot
        .meta
        .insert("../../escape.json".into(), tuf1::MetaFile::new(1));
    let signed = block_on(crate::sign::sign_role(
        "snapshot",
        snapshot,
        &repo
            .root()
            .expect("root")
            .role_keys(crate::RoleType::Snapshot),
        1,
        &[&keys.snapshot],
    ))
    .expect("sign");
    std::fs::write(
        dir.join("metadata/1.snapshot.json"),
        signed.to_vec().expect("bytes"),
    )
    .expect("write");
    let err = Repository::open(&dir).expect_err("escape");
    assert!(matches!(err, Error::InvalidRoleName { .. }), "{err}");

    // A metadata file above the size cap is not read into memory.
    let file = std::fs::File::create(dir.join("metadata/1.snapshot.json")).expect("create");
    file.set_len(MAX_METADATA_BYTES + 10).expect("sparse");
    let err = Repository::open(&dir).expect_err("huge");
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
}
