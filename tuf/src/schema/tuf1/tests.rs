//! Hostile and odd input for the TUF 1.0 dialect, and round trips of every role type.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::schema::{DelegatedRole, FileMeta, RoleBody, RoleKeys, Signed};
use crate::sign::Signer as _;

const EXPIRES: &str = "2030-01-02T03:04:05Z";

fn expires() -> Expires {
    Expires::parse(EXPIRES).expect("time")
}

/// A minimal valid root body as JSON, to be broken one field at a time.
fn root_json() -> Value {
    json!({
        "_type": "root",
        "spec_version": "1.0.31",
        "version": 1,
        "expires": EXPIRES,
        "consistent_snapshot": true,
        "keys": {},
        "roles": {},
    })
}

fn envelope(signed: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"signed": signed, "signatures": []})).expect("json")
}

fn parse_root(bytes: &[u8]) -> Result<Signed<Root>> {
    Signed::<Root>::from_slice("root", bytes)
}

fn err_text(bytes: &[u8]) -> String {
    parse_root(bytes).expect_err("must be refused").to_string()
}

#[test]
fn minimal_root_parses() {
    let signed = parse_root(&envelope(root_json())).expect("valid");
    assert_eq!(signed.signed.version, 1);
}

#[test]
fn wrong_types_are_refused_with_the_role_named() {
    for (field, value) in [
        ("version", json!("1")),
        ("version", json!(-1)),
        ("consistent_snapshot", json!("yes")),
        ("keys", json!([])),
        ("expires", json!(20300102)),
        ("_type", json!("Root")),
        ("_type", json!("targets")),
    ] {
        let mut root = root_json();
        root[field] = value.clone();
        let err = err_text(&envelope(root));
        assert!(
            err.starts_with("root: malformed metadata"),
            "{field}={value}: {err}"
        );
    }
    let err = err_text(br#"{"signed": [], "signatures": []}"#);
    assert!(err.contains("malformed"), "{err}");
}

#[test]
fn huge_versions_are_refused() {
    let mut root = root_json();
    root["version"] = json!(1u64 << 63);
    let err = err_text(&envelope(root));
    assert!(err.contains("above 2^63-1"), "{err}");
    // 2^64 does not fit any integer type: it is read as a float and refused as such.
    let text = String::from_utf8(envelope(root_json()))
        .expect("utf8")
        .replace("\"version\":1", "\"version\":18446744073709551616");
    let err = err_text(text.as_bytes());
    assert!(err.contains("not canonical"), "{err}");
    let mut root = root_json();
    root["version"] = json!(0);
    assert!(err_text(&envelope(root)).contains("at least 1"));
}

#[test]
fn duplicate_keys_are_refused_at_any_depth() {
    let err = err_text(br#"{"signed": {"version": 1, "version": 2}, "signatures": []}"#);
    assert!(err.contains("duplicate key \"version\""), "{err}");
    let text = String::from_utf8(envelope(root_json()))
        .expect("utf8")
        .replace("\"keys\":{}", "\"keys\":{\"a\":{},\"a\":{}}");
    assert!(err_text(text.as_bytes()).contains("duplicate key \"a\""));
}

#[test]
fn floats_and_negative_zero_are_refused() {
    for number in ["1.0", "1e0", "-0", "1.5"] {
        let text = String::from_utf8(envelope(root_json()))
            .expect("utf8")
            .replace("\"version\":1", &format!("\"version\":{number}"));
        let err = err_text(text.as_bytes());
        assert!(err.contains("not canonical"), "{number}: {err}");
    }
    // Also inside unknown fields, which a signature covers too.
    let mut root = root_json();
    root["x-custom"] = json!({"n": 0.5});
    assert!(err_text(&envelope(root)).contains("not canonical"));
}

#[test]
fn spec_versions_of_other_majors_are_refused() {
    for ok in ["1.0.31", "1.0", "1.99.0", "1.0.0"] {
        let mut root = root_json();
        root["spec_version"] = json!(ok);
        let signed = parse_root(&envelope(root)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(signed.signed.header.spec_version.as_str(), ok);
    }
    for (bad, why) in [
        ("2.0.0", "unsupported spec_version"),
        ("0.9", "unsupported spec_version"),
        ("1", "not MAJOR.MINOR"),
        ("1.0.0.0", "not MAJOR.MINOR"),
        ("1.x.0", "not MAJOR.MINOR"),
        ("v1.0.0", "not MAJOR.MINOR"),
    ] {
        let mut root = root_json();
        root["spec_version"] = json!(bad);
        let err = err_text(&envelope(root));
        assert!(err.contains(why), "{bad}: {err}");
    }
    let mut root = root_json();
    root.as_object_mut().expect("object").remove("spec_version");
    assert!(err_text(&envelope(root)).contains("spec_version"));
}

#[test]
fn expires_must_be_the_exact_form_python_tuf_reads() {
    for bad in [
        "2030-01-02T03:04:05.5Z",
        "2030-01-02T03:04:05+00:00",
        "2030-01-02t03:04:05z",
        "2030-01-02 03:04:05Z",
    ] {
        let mut root = root_json();
        root["expires"] = json!(bad);
        assert!(parse_root(&envelope(root)).is_err(), "{bad}");
    }
    assert_eq!(
        Tuf1::format_time(
            OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_999_999_999).expect("t")
        ),
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn two_signatures_by_one_key_are_refused() {
    let sig = json!({"keyid": "ab", "sig": "00"});
    let bytes = serde_json::to_vec(&json!({"signed": root_json(), "signatures": [sig, sig]}))
        .expect("json");
    assert!(err_text(&bytes).contains("more than one signature by key ab"));
}

#[test]
fn hashes_must_be_lowercase_hex() {
    let t = json!({
        "_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": EXPIRES,
        "targets": {"a": {"length": 1, "hashes": {"sha256": "AB"}}},
    });
    let err = Signed::<Targets>::from_slice("targets", &envelope(t))
        .expect_err("uppercase")
        .to_string();
    assert!(err.contains("not lowercase hex"), "{err}");
}

#[test]
fn structural_rules_follow_the_specification() {
    let mut root = Root::new_in(Tuf1, 1, expires());
    assert!(root.validate().is_err(), "no roles");
    let key = Key::from_public_key(crate::sign::testing::MemorySigner::ed25519().public_key());
    root.keys.insert(key.id(), key.clone());
    for role in RoleType::ALL {
        root.roles
            .insert(role.as_str().into(), RoleKeys::new(vec![key.id()], 1));
    }
    root.validate().expect("valid");
    let mut twice = root.clone();
    twice
        .roles
        .insert("root".into(), RoleKeys::new(vec![key.id(), key.id()], 1));
    assert!(
        twice
            .validate()
            .expect_err("twice")
            .to_string()
            .contains("twice")
    );
    let mut undefined = root.clone();
    undefined
        .roles
        .insert("root".into(), RoleKeys::new(vec!["cd".into()], 1));
    assert!(undefined.validate().is_err());
    let mut extra_role = root.clone();
    extra_role
        .roles
        .insert("mirror".into(), RoleKeys::new(vec![key.id()], 1));
    assert!(extra_role.validate().is_err());

    let mut targets = Targets::new_in(Tuf1, 1, expires());
    let d = targets.delegations.get_or_insert_with(Default::default);
    d.keys.insert(key.id(), key.clone());
    let mut role = DelegatedRole::new("a", vec![key.id()], 1, vec!["a/*".into()]);
    d.roles.push(role.clone());
    assert!(
        targets
            .validate("targets")
            .expect_err("terminating")
            .to_string()
            .contains("terminating")
    );
    role.terminating = Some(false);
    let set = |t: &mut Targets, r: &DelegatedRole| {
        t.delegations.as_mut().expect("d").roles = vec![r.clone()];
    };
    set(&mut targets, &role);
    targets.validate("targets").expect("valid");
    let mut both = role.clone();
    both.path_hash_prefixes = Some(vec!["ab".into()]);
    set(&mut targets, &both);
    assert!(targets.validate("targets").is_err(), "paths and prefixes");
    let mut neither = role.clone();
    neither.paths = None;
    set(&mut targets, &neither);
    assert!(targets.validate("targets").is_err(), "neither");
    let mut top = role.clone();
    top.name = "snapshot".into();
    set(&mut targets, &top);
    assert!(targets.validate("targets").is_err(), "top-level name");
    let mut prefixes = neither;
    prefixes.path_hash_prefixes = Some(vec!["AB".into()]);
    set(&mut targets, &prefixes);
    assert!(targets.validate("targets").is_err(), "uppercase prefix");

    let ts = Timestamp::listing_in(Tuf1, 1, expires(), "other.json", MetaFile::new(1));
    assert!(
        ts.validate()
            .expect_err("no snapshot")
            .to_string()
            .contains("snapshot.json")
    );
    let mut snap = Snapshot::new_in(Tuf1, 1, expires());
    snap.meta
        .insert("targets.json".into(), MetaFile::new(1 << 63));
    assert!(
        snap.validate()
            .expect_err("huge")
            .to_string()
            .contains("2^63-1")
    );
}

#[test]
fn meta_file_checks_what_it_lists() {
    let m = MetaFile::with_bytes(2, b"abc");
    m.check("s", "timestamp", 1, b"abc").expect("same");
    assert!(matches!(
        m.check("s", "timestamp", 1, b"abd"),
        Err(Error::HashMismatch { .. })
    ));
    assert!(matches!(
        m.check("s", "timestamp", 1, b"ab"),
        Err(Error::LengthMismatch { .. })
    ));
    MetaFile::new(2)
        .check("s", "timestamp", 1, b"anything")
        .expect("version only");
    let mut odd = MetaFile::new(2);
    odd.hashes = Some(BTreeMap::from([("blake2b".to_owned(), HexBytes(vec![0]))]));
    assert!(
        odd.check("s", "timestamp", 1, b"x").is_err(),
        "unknown algorithm fails"
    );
}

#[test]
fn safe_names() {
    for ok in ["targets", "role with spaces", "ünï", "a.b", "..a"] {
        assert!(is_safe_file_name(ok), "{ok}");
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a\\b",
        "a\0b",
        "a\nb",
        &"x".repeat(201),
    ] {
        assert!(!is_safe_file_name(bad), "{bad:?}");
    }
    assert!(is_safe_target_path("dir/sub/file.tar"));
    for bad in ["/etc/passwd", "a/../b", "a//b", "a/", "./a", "a\\b"] {
        assert!(!is_safe_target_path(bad), "{bad:?}");
    }
}

#[test]
fn threshold_counts_each_key_once() {
    use crate::schema::dialect::count_signatures;
    let signer = crate::sign::testing::MemorySigner::p256();
    let key = Key::from_public_key(signer.public_key());
    let msg = b"message";
    let raw = crate::sign::testing::block_on(crate::Signer::sign(&signer, msg)).expect("sign");
    let sig = Tuf1::signature(&key.id(), &key, raw).expect("der");
    // The same key listed under a second id: one key, even with two signatures.
    let mut alias = key.clone();
    alias.extra.insert("x".into(), json!(1));
    let other = Signature {
        keyid: "alias".into(),
        ..sig.clone()
    };
    let id = key.id();
    let keys = [(id.as_str(), &key), ("alias", &alias)];
    let count = count_signatures::<Tuf1>(msg, &[sig.clone(), other], &keys, 2);
    assert_eq!(count.valid, vec![id.clone()]);
    assert!(
        count.reasons.iter().any(|r| r.contains("already counted")),
        "{:?}",
        count.reasons
    );
    // Stops at the threshold.
    let count = count_signatures::<Tuf1>(msg, &[sig.clone(), sig.clone()], &keys, 1);
    assert_eq!(count.valid.len(), 1);
    assert!(count.reasons.is_empty());
    // Raw r||s is not what TUF 1.0 carries.
    let mut raw_sig = sig;
    raw_sig.sig = p256::ecdsa::Signature::from_der(&raw_sig.sig)
        .expect("der")
        .to_bytes()
        .to_vec();
    assert!(
        key.verify(msg, &raw_sig.sig)
            .expect_err("raw")
            .to_string()
            .contains("not DER")
    );
}

fn arb_extra() -> impl Strategy<Value = Extra> {
    proptest::collection::btree_map(
        "x-[a-z]{1,6}",
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::from),
            Just(Value::Null),
        ],
        0..3,
    )
}

fn arb_key() -> impl Strategy<Value = Key> {
    (
        "[a-z0-9-]{1,12}",
        "[a-z0-9-]{1,20}",
        "[\\PC\\n\\t\\x01]{0,40}",
        arb_extra(),
    )
        .prop_map(|(keytype, scheme, public, extra)| Key {
            keytype,
            scheme,
            keyval: KeyVal {
                public,
                extra: Extra::new(),
            },
            extra,
        })
}

fn arb_signatures() -> impl Strategy<Value = Vec<Signature>> {
    proptest::collection::btree_map(
        "[0-9a-f]{64}",
        proptest::collection::vec(any::<u8>(), 0..80),
        0..3,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(keyid, sig)| Signature {
                keyid,
                sig,
                extra: Extra::new(),
            })
            .collect()
    })
}

fn arb_file() -> impl Strategy<Value = TargetFile> {
    (
        0u64..1 << 40,
        proptest::collection::btree_map(
            "sha(256|512)",
            proptest::collection::vec(any::<u8>(), 1..64),
            1..3,
        ),
        proptest::option::of("\\PC{0,8}"),
        arb_extra(),
    )
        .prop_map(|(length, hashes, custom, extra)| FileMeta {
            length,
            hashes: hashes.into_iter().map(|(k, v)| (k, HexBytes(v))).collect(),
            custom: custom.map(|c| json!({ "c": c })),
            extra,
        })
}

fn arb_meta_file() -> impl Strategy<Value = MetaFile> {
    (
        1u64..=MAX_VERSION,
        proptest::option::of(0u64..1 << 40),
        any::<bool>(),
        arb_extra(),
    )
        .prop_map(|(version, length, hashed, extra)| MetaFile {
            version,
            length,
            hashes: hashed
                .then(|| BTreeMap::from([("sha256".to_owned(), HexBytes(vec![0xab; 32]))])),
            extra,
        })
}

/// Serialises, parses back and compares, and checks the file is stable.
fn round_trip<T: RoleBody<Dialect = Tuf1> + PartialEq + std::fmt::Debug>(
    body: T,
    signatures: Vec<Signature>,
) -> std::result::Result<(), TestCaseError> {
    let signed = Signed {
        signed: body,
        signatures,
    };
    let bytes = signed.to_vec().expect("serialise");
    let back = Signed::<T>::from_slice("role", &bytes).expect("parse");
    prop_assert_eq!(&back, &signed);
    prop_assert_eq!(back.to_vec().expect("again"), bytes);
    Ok(())
}

proptest! {
    #[test]
    fn roots_round_trip(
        keys in proptest::collection::vec(arb_key(), 0..3),
        threshold in 1u64..5,
        version in 1u64..=MAX_VERSION,
        consistent in any::<bool>(),
        extra in arb_extra(),
        signatures in arb_signatures(),
    ) {
        let mut root = Root::new_in(Tuf1, version, expires());
        root.consistent_snapshot = consistent;
        root.extra = extra;
        let ids: Vec<String> = keys.iter().map(Key::id).collect();
        for key in keys {
            root.keys.insert(key.id(), key);
        }
        for role in RoleType::ALL {
            root.roles.insert(role.as_str().into(), RoleKeys::new(ids.clone(), threshold));
        }
        round_trip(root, signatures)?;
    }

    #[test]
    fn targets_round_trip(
        files in proptest::collection::btree_map("\\PC{0,12}", arb_file(), 0..4),
        keys in proptest::collection::vec(arb_key(), 0..2),
        roles in proptest::collection::vec(("\\PC{1,10}", any::<bool>(), any::<bool>(), proptest::collection::vec("[0-9a-f]{1,4}", 1..3)), 0..3),
        version in 1u64..=MAX_VERSION,
        extra in arb_extra(),
        signatures in arb_signatures(),
    ) {
        let mut t = Targets::new_in(Tuf1, version, expires());
        t.targets = files;
        t.extra = extra;
        if !roles.is_empty() {
            let d = t.delegations.get_or_insert_with(Default::default);
            let ids: Vec<String> = keys.iter().map(Key::id).collect();
            for key in keys {
                d.keys.insert(key.id(), key);
            }
            for (name, terminating, by_hash, patterns) in roles {
                let mut role = DelegatedRole::new(&name, ids.clone(), 1, patterns.clone());
                role.terminating = Some(terminating);
                if by_hash {
                    role.paths = None;
                    role.path_hash_prefixes = Some(patterns);
                }
                d.roles.push(role);
            }
        }
        round_trip(t, signatures)?;
    }

    #[test]
    fn snapshots_round_trip(
        meta in proptest::collection::btree_map("\\PC{1,10}\\.json", arb_meta_file(), 0..4),
        version in 1u64..=MAX_VERSION,
        signatures in arb_signatures(),
    ) {
        let mut s = Snapshot::new_in(Tuf1, version, expires());
        s.meta = meta;
        round_trip(s, signatures)?;
    }

    #[test]
    fn timestamps_round_trip(
        meta in arb_meta_file(),
        version in 1u64..=MAX_VERSION,
        extra in arb_extra(),
        signatures in arb_signatures(),
    ) {
        let mut t = Timestamp::for_snapshot_meta(version, expires(), meta);
        t.extra = extra;
        t.validate().expect("valid");
        round_trip(t, signatures)?;
    }
}
