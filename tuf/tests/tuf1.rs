//! The TUF 1.0 dialect against a repository python-tuf's Metadata API built
//! (`tests/data/tuf1/gen.py`): every file parses, its canonical `signed` bytes are the ones
//! python-tuf signed, key ids match, every signature verifies; and metadata sigil signs with
//! in-memory P-256 (DER), Ed25519 and RSA-PSS keys reads back and verifies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::json;
use sha2::{Digest as _, Sha256};
use sigil_tuf::schema::dialect::{MetadataKey, verify_threshold};
use sigil_tuf::schema::tuf1::{self, Key, MetaFile, TargetFile, Tuf1};
use sigil_tuf::schema::{DelegatedRole, Expires, Metadata, RoleBody, RoleKeys, RoleType, Signed};
use sigil_tuf::sign::sign_role;
use sigil_tuf::sign::testing::{MemorySigner, block_on};
use sigil_tuf::{Error, Signer};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tuf1")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses a fixture, checks that its canonical `signed` is what python-tuf signed and that
/// sigil's own file of it parses back to the same document.
fn load<T: RoleBody<Dialect = Tuf1> + PartialEq + std::fmt::Debug>(name: &str) -> Metadata<T> {
    let digests: BTreeMap<String, String> =
        serde_json::from_slice(&data("signed-sha256.json")).expect("digests");
    let meta =
        Metadata::<T>::from_bytes(name, data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let canonical = meta.signed().canonical_signed().expect("canonical");
    assert_eq!(
        hex::encode(Sha256::digest(&canonical)),
        digests[name],
        "{name}: canonical signed bytes differ from python-tuf's"
    );
    let ours = meta.signed().to_vec().expect("serialise");
    let back = Signed::<T>::from_slice(name, &ours).expect("re-parse");
    assert_eq!(&back, meta.signed(), "{name}");
    assert_eq!(back.to_vec().expect("again"), ours, "{name}: not stable");
    meta
}

fn assert_ids_match(keys: &BTreeMap<String, Key>) {
    assert!(!keys.is_empty());
    for (id, key) in keys {
        assert_eq!(
            &key.id(),
            id,
            "key id computed differently from securesystemslib"
        );
        key.to_public_key().expect("supported key");
    }
}

#[test]
fn python_tuf_repository_parses_round_trips_and_verifies() {
    let root = load::<tuf1::Root>("1.root.json");
    let targets = load::<tuf1::Targets>("1.targets.json");
    let releases = load::<tuf1::Targets>("1.releases.json");
    let bins = load::<tuf1::Targets>("3.bins.json");
    let snapshot = load::<tuf1::Snapshot>("1.snapshot.json");
    let timestamp = load::<tuf1::Timestamp>("timestamp.json");

    let r = root.body();
    r.validate().expect("root rules");
    assert!(r.consistent_snapshot);
    assert_eq!(r.header.spec_version.as_str(), "1.0.31");
    assert_eq!(
        r.extra["x-sigil-test"],
        json!({"nested": [1, "two", null, true]})
    );
    assert_ids_match(&r.keys);
    let types: Vec<&str> = r.keys.values().map(|k| k.keytype.as_str()).collect();
    for t in ["ecdsa", "ed25519", "rsa"] {
        assert!(types.contains(&t), "{t} missing in {types:?}");
    }

    // Root is signed by both of its keys (threshold 2); the others by their role's key.
    let count = verify_threshold("root", root.signed(), &r.role_keys(RoleType::Root), 2)
        .expect("root threshold");
    assert_eq!(count.valid.len(), 2);
    let role = |t: RoleType| (r.role_keys(t), r.role(t).map_or(0, |k| k.threshold));
    let (keys, threshold) = role(RoleType::Targets);
    verify_threshold("targets", targets.signed(), &keys, threshold).expect("targets");
    let (keys, threshold) = role(RoleType::Snapshot);
    verify_threshold("snapshot", snapshot.signed(), &keys, threshold).expect("snapshot (rsa-pss)");
    let (keys, threshold) = role(RoleType::Timestamp);
    verify_threshold("timestamp", timestamp.signed(), &keys, threshold).expect("timestamp");

    let t = targets.body();
    t.validate("targets").expect("targets rules");
    assert_ids_match(&t.delegations.as_ref().expect("delegations").keys);
    let hello = &t.targets["files/hello.txt"];
    hello
        .check("files/hello.txt", "targets", 1, b"hello\n")
        .expect("target hashes");
    assert_eq!(hello.hashes.len(), 2);
    assert_eq!(
        hello.custom,
        Some(json!({"app": {"arch": "amd64", "build": 42}}))
    );
    assert!(
        t.targets
            .contains_key("files/ünï \"quoted\" \\ back\tslash.txt")
    );
    for (name, meta) in [("releases", &releases), ("bins", &bins)] {
        let (delegated, keys) = t.delegation(name).expect("delegated");
        assert!(delegated.terminating.is_some());
        verify_threshold(name, meta.signed(), &keys, delegated.threshold)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        meta.body().validate(name).expect("delegated rules");
    }
    let (rel, _) = t.delegation("releases").expect("releases");
    assert_eq!(rel.paths(), ["releases/*"]);
    assert_eq!(rel.terminating, Some(true));
    assert!(tuf1::delegation_matches(rel, "releases/v1.tar"));
    assert!(!tuf1::delegation_matches(rel, "releases/a/v1.tar"));
    for target in releases.body().targets.keys() {
        assert!(tuf1::delegation_matches(rel, target), "{target}");
    }
    let (b, _) = t.delegation("bins").expect("bins");
    assert_eq!(b.path_hash_prefixes(), ["00", "8f", "e3"]);
    assert_eq!(b.terminating, Some(false));
    assert_eq!(bins.version(), 3);

    snapshot.body().validate().expect("snapshot rules");
    let listed = &snapshot.body().meta["targets.json"];
    listed
        .check("targets", "snapshot", 1, targets.bytes())
        .expect("snapshot lists targets.json's bytes");
    assert_eq!(snapshot.body().meta["bins.json"], MetaFile::new(3));
    timestamp.body().validate().expect("timestamp rules");
    timestamp
        .body()
        .snapshot_meta()
        .expect("snapshot.json")
        .check("snapshot", "timestamp", 1, snapshot.bytes())
        .expect("timestamp lists snapshot.json's bytes");

    // One changed byte inside `signed` and the signatures no longer count.
    let mut tampered = targets.signed().clone();
    tampered.signed.version += 1;
    let (keys, threshold) = role(RoleType::Targets);
    assert!(matches!(
        verify_threshold("targets", &tampered, &keys, threshold),
        Err(Error::ThresholdNotMet { valid: 0, .. })
    ));
}

#[test]
fn sigil_signs_tuf1_metadata_with_every_key_type() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let expires = Expires::after_in(Tuf1, now, Duration::from_secs(86_400)).expect("expires");
    assert_eq!(expires.as_str(), "2027-01-16T08:00:00Z");
    let p256 = MemorySigner::p256();
    let ed = MemorySigner::ed25519();
    let rsa = MemorySigner::rsa(2048);
    let signers: [&dyn Signer; 3] = [&p256, &ed, &rsa];
    let keys: Vec<Key> = signers
        .iter()
        .map(|s| Key::from_public_key(s.public_key()))
        .collect();
    let ids: Vec<String> = keys.iter().map(MetadataKey::key_id).collect();

    let mut root = tuf1::Root::new_in(Tuf1, 1, expires.clone());
    for key in &keys {
        root.keys.insert(key.id(), key.clone());
    }
    for role in RoleType::ALL {
        root.roles
            .insert(role.as_str().into(), RoleKeys::new(ids.clone(), 3));
    }
    root.validate().expect("valid root");
    let refs: Vec<(&str, &Key)> = ids.iter().map(String::as_str).zip(&keys).collect();
    let signed = block_on(sign_role("root", root, &refs, 3, &signers)).expect("sign");
    let file = signed.to_vec().expect("file");
    assert!(
        file.starts_with(b"{\"signatures\":[{\"keyid\":"),
        "{}",
        String::from_utf8_lossy(&file)
    );
    let back = Metadata::<tuf1::Root>::from_bytes("root", file).expect("parse");
    assert_eq!(back.body().header.spec_version.as_str(), tuf1::SPEC_VERSION);
    assert!(back.body().consistent_snapshot);
    let count = verify_threshold("root", back.signed(), &refs, 3).expect("all three verify");
    assert_eq!(count.valid, ids);
    // The P-256 signature is DER (a SEQUENCE), not raw r||s.
    let p256_sig = &back.signed().signatures[0].sig;
    assert_eq!(p256_sig[0], 0x30, "DER");
    assert_ne!(p256_sig.len(), 64);

    let mut targets = tuf1::Targets::new_in(Tuf1, 1, expires.clone());
    let mut file_meta = TargetFile::from_bytes_in(Tuf1, b"payload");
    file_meta.custom = Some(json!({"k": "v"}));
    targets.targets.insert("dir/a.txt".into(), file_meta);
    let mut delegated = DelegatedRole::new(
        "role with spaces",
        vec![ids[1].clone()],
        1,
        vec!["dir/*".into()],
    );
    delegated.terminating = Some(true);
    let delegations = targets.delegations.get_or_insert_with(Default::default);
    delegations.keys.insert(ids[1].clone(), keys[1].clone());
    delegations.roles.push(delegated);
    targets.validate("targets").expect("valid targets");
    let signed = block_on(sign_role("targets", targets, &refs[..1], 1, &signers)).expect("sign");
    let targets_file = signed.to_vec().expect("file");
    let back =
        Metadata::<tuf1::Targets>::from_bytes("targets", targets_file.clone()).expect("parse");
    verify_threshold("targets", back.signed(), &refs[..1], 1).expect("verifies");

    let mut snapshot = tuf1::Snapshot::new_in(Tuf1, 1, expires.clone());
    snapshot.meta.insert(
        tuf1::meta_name("targets"),
        MetaFile::with_bytes(1, &targets_file),
    );
    snapshot.validate().expect("valid snapshot");
    let signed = block_on(sign_role("snapshot", snapshot, &refs[2..], 1, &signers)).expect("sign");
    let snapshot_file = signed.to_vec().expect("file");
    let back =
        Metadata::<tuf1::Snapshot>::from_bytes("snapshot", snapshot_file.clone()).expect("parse");
    verify_threshold("snapshot", back.signed(), &refs[2..], 1).expect("rsa-pss verifies");

    let ts =
        tuf1::Timestamp::for_snapshot_meta(1, expires, MetaFile::with_bytes(1, &snapshot_file));
    ts.validate().expect("valid timestamp");
    let signed = block_on(sign_role("timestamp", ts, &refs[..1], 1, &signers)).expect("sign");
    let ts_file = signed.to_vec().expect("file");
    Metadata::<tuf1::Timestamp>::from_bytes("timestamp", ts_file.clone()).expect("parse");

    // For a manual check with python-tuf: SIGIL_TUF1_EMIT_DIR=/some/dir writes the files
    // (tests/data/tuf1/verify.py reads them).
    if let Some(dir) = std::env::var_os("SIGIL_TUF1_EMIT_DIR") {
        let dir = PathBuf::from(dir);
        let root_file = Metadata::<tuf1::Root>::from_signed(
            "root",
            block_on(sign_role(
                "root",
                emitted_root(&keys, &ids),
                &refs,
                3,
                &signers,
            ))
            .expect("sign"),
        )
        .expect("root");
        for (name, bytes) in [
            ("1.root.json", root_file.bytes().to_vec()),
            ("1.targets.json", targets_file),
            ("1.snapshot.json", snapshot_file),
            ("timestamp.json", ts_file),
        ] {
            std::fs::write(dir.join(name), bytes).expect("write");
        }
    }
}

/// A root for the emitted files: all three keys sign root, P-256 targets and timestamp,
/// RSA snapshot, as in the test above; expiring a day from now.
fn emitted_root(keys: &[Key], ids: &[String]) -> tuf1::Root {
    let expires =
        Expires::after_in(Tuf1, SystemTime::now(), Duration::from_secs(86_400)).expect("expires");
    let mut root = tuf1::Root::new_in(Tuf1, 1, expires);
    for key in keys {
        root.keys.insert(key.id(), key.clone());
    }
    root.roles
        .insert("root".into(), RoleKeys::new(ids.to_vec(), 3));
    root.roles
        .insert("targets".into(), RoleKeys::new(vec![ids[0].clone()], 1));
    root.roles
        .insert("snapshot".into(), RoleKeys::new(vec![ids[2].clone()], 1));
    root.roles
        .insert("timestamp".into(), RoleKeys::new(vec![ids[0].clone()], 1));
    root
}
