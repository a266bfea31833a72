//! The real Notary 0.7.0 metadata (tests/data/notary): every file parses, re-serialises to the
//! same bytes, and verifies; the served collections pass the full update walk; key ids and
//! canonical key ids match the ones the notary client computed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{data, fixture_now, read};
use sigil_tuf::schema::{RoleType, Root, Snapshot, Targets, Timestamp, TufKey};
use sigil_tuf::verify::{CollectionFiles, verify_collection, verify_signatures};
use sigil_tuf::{Error, Metadata, PriorVersions, RootTrust, Signed, Updater};

const GUN: &str = "example.com/scripts";

/// Keys (with their ids) and a threshold, as a role is checked against them.
type KeyCheck<'a> = &'a dyn Fn(&[(&str, &TufKey)], u64) -> bool;

/// Every JSON file under tests/data/notary, relative path → bytes.
fn all_files() -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                let rel = path.strip_prefix(base).expect("rel").display().to_string();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    let base = data("notary");
    walk(&base, &base, &mut out);
    out
}

fn type_of(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("signed")?.get("_type")?.as_str().map(str::to_owned)
}

fn round_trip<T: sigil_tuf::schema::Role>(name: &str, bytes: &[u8]) -> Signed<T> {
    let signed = Signed::<T>::from_slice(name, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again = signed.to_vec().expect("serialise");
    assert!(
        again == bytes,
        "{name}: re-serialisation differs\n{}\n{}",
        String::from_utf8_lossy(bytes),
        String::from_utf8_lossy(&again)
    );
    signed
}

#[test]
fn every_fixture_parses_and_reserialises_byte_identically() {
    let files = all_files();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (name, bytes) in &files {
        let kind = match type_of(bytes).as_deref() {
            Some("Root") => {
                round_trip::<Root>(name, bytes)
                    .signed
                    .validate()
                    .expect("root structure");
                "Root"
            }
            Some("Targets") => {
                round_trip::<Targets>(name, bytes);
                "Targets"
            }
            Some("Snapshot") => {
                round_trip::<Snapshot>(name, bytes)
                    .signed
                    .validate()
                    .expect("snapshot");
                "Snapshot"
            }
            Some("Timestamp") => {
                round_trip::<Timestamp>(name, bytes)
                    .signed
                    .validate()
                    .expect("timestamp");
                "Timestamp"
            }
            Some(other) => panic!("{name}: unexpected _type {other}"),
            None if name.ends_with(".key.json") => {
                // Key replies are Go struct order (public before private), not canonical.
                let key: TufKey = serde_json::from_slice(bytes).expect("key reply");
                assert_eq!(serde_json::to_vec(&key).expect("ser"), *bytes, "{name}");
                key.to_public_key().expect("usable key");
                "key"
            }
            None => {
                assert!(name.ends_with("changefeed.json"), "{name}: not metadata");
                "other"
            }
        };
        *counts.entry(kind.to_owned()).or_default() += 1;
    }
    assert!(
        counts["Root"] >= 10 && counts["Targets"] >= 10,
        "{counts:?}"
    );
    assert!(
        counts["Snapshot"] >= 8 && counts["Timestamp"] >= 15,
        "{counts:?}"
    );
    assert_eq!(counts["key"], 4);
}

/// Every signed fixture verifies against the keys of some root (top-level roles) or of some
/// targets file that delegates to it (delegations).
#[test]
fn every_fixture_signature_verifies() {
    let files = all_files();
    let roots: Vec<Root> = files
        .iter()
        .filter(|(_, b)| type_of(b).as_deref() == Some("Root"))
        .map(|(n, b)| Signed::<Root>::from_slice(n, b).expect("root").signed)
        .collect();
    let delegators: Vec<Targets> = files
        .iter()
        .filter(|(_, b)| type_of(b).as_deref() == Some("Targets"))
        .map(|(n, b)| Signed::<Targets>::from_slice(n, b).expect("targets").signed)
        .collect();
    let top_level = |role: RoleType, check: KeyCheck<'_>| {
        roots.iter().any(|r| {
            let threshold = r.role(role).map_or(0, |x| x.threshold);
            check(&r.role_keys(role), threshold)
        })
    };
    let mut checked = 0;
    for (name, bytes) in &files {
        let ok = match type_of(bytes).as_deref() {
            Some("Root") => {
                let s = Signed::<Root>::from_slice(name, bytes).expect("root");
                let keys = s.signed.role_keys(RoleType::Root);
                let threshold = s.signed.role(RoleType::Root).map_or(0, |r| r.threshold);
                verify_signatures("root", &s, &keys, threshold).is_ok()
            }
            Some("Snapshot") => {
                let s = Signed::<Snapshot>::from_slice(name, bytes).expect("snapshot");
                top_level(RoleType::Snapshot, &|k, t| {
                    verify_signatures("snapshot", &s, k, t).is_ok()
                })
            }
            Some("Timestamp") => {
                let s = Signed::<Timestamp>::from_slice(name, bytes).expect("timestamp");
                top_level(RoleType::Timestamp, &|k, t| {
                    verify_signatures("timestamp", &s, k, t).is_ok()
                })
            }
            Some("Targets") => {
                let s = Signed::<Targets>::from_slice(name, bytes).expect("targets");
                top_level(RoleType::Targets, &|k, t| {
                    verify_signatures("targets", &s, k, t).is_ok()
                }) || delegators.iter().any(|d| {
                    d.delegated_roles().iter().any(|r| {
                        let (entry, keys) = d.delegation(&r.name).expect("entry");
                        verify_signatures(&r.name, &s, &keys, entry.threshold).is_ok()
                    })
                })
            }
            _ => continue,
        };
        assert!(ok, "{name}: no known key set verifies it");
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} files checked");
}

#[test]
fn a_tampered_byte_breaks_the_signature() {
    let bytes = read("notary/server/targets/releases.json");
    let text = String::from_utf8(bytes).expect("utf8");
    let tampered = text.replace("\"length\":27", "\"length\":28");
    let s = Signed::<Targets>::from_slice("targets/releases", tampered.as_bytes()).expect("parse");
    let targets = Signed::<Targets>::from_slice("targets", &read("notary/server/targets.json"))
        .expect("targets")
        .signed;
    let (entry, keys) = targets.delegation("targets/releases").expect("delegated");
    let err = verify_signatures("targets/releases", &s, &keys, entry.threshold)
        .expect_err("must be refused");
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, version: 1, valid: 0, threshold: 1, .. } if role == "targets/releases"),
        "{err}"
    );
}

fn server_files() -> CollectionFiles {
    let mut delegations = BTreeMap::new();
    delegations.insert(
        "targets/releases".to_owned(),
        read("notary/server/targets/releases.json"),
    );
    delegations.insert(
        "targets/rsa".to_owned(),
        read("notary/server/targets/rsa.json"),
    );
    CollectionFiles {
        root_chain: vec![
            read("notary/server/2.root.json"),
            read("notary/server/3.root.json"),
        ],
        timestamp: read("notary/server/timestamp.json"),
        snapshot: read("notary/server/snapshot.json"),
        targets: read("notary/server/targets.json"),
        delegations,
    }
}

#[test]
fn server_collection_passes_the_full_walk_from_the_first_root() {
    let c = verify_collection(
        GUN,
        read("notary/server/1.root.json"),
        RootTrust::FirstUse,
        server_files(),
        PriorVersions::default(),
        fixture_now(),
    )
    .expect("walk");
    assert_eq!(c.root().version(), 3);
    assert_eq!(c.timestamp().version(), 6);
    assert_eq!(c.snapshot().version(), 7);
    assert_eq!(c.targets().version(), 5);
    assert!(c.skipped().is_empty(), "{:?}", c.skipped());
    assert_eq!(
        c.delegations().keys().collect::<Vec<_>>(),
        ["targets/releases", "targets/rsa"]
    );
    let listed: Vec<(String, String)> = c
        .list_targets(&[])
        .into_iter()
        .map(|t| (t.name, t.role))
        .collect();
    assert!(listed.contains(&("release.sh".into(), "targets/releases".into())));
    assert!(listed.contains(&("rsa-team.sh".into(), "targets/rsa".into())));
    let release = c.lookup("release.sh", &[]).expect("lookup");
    assert_eq!(
        (release.role.as_str(), release.meta.length),
        ("targets/releases", 27)
    );
    assert!(matches!(
        c.lookup("nope", &[]),
        Err(Error::TargetNotFound { .. })
    ));
    // Walking from one delegation only sees its targets.
    let rsa_only: Vec<String> = c
        .list_targets(&["targets/rsa"])
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(rsa_only, ["rsa-team.sh"]);
    // The files to cache are the served bytes.
    assert_eq!(
        c.files()["targets"],
        read("notary/server/targets.json").as_slice()
    );
}

#[test]
fn server_collection_walks_from_a_cached_or_pinned_root() {
    let mut files = server_files();
    files.root_chain.clear();
    verify_collection(
        GUN,
        read("notary/server/root.json"),
        RootTrust::Cached,
        files.clone(),
        PriorVersions::default(),
        fixture_now(),
    )
    .expect("cached root");
    // The canonical id of the root certificate's key is the name of notary's private key
    // file (`private/b843c3….key` in the recorded trust dir).
    let pin = "b843c3917f21f8b50f7d558daa3f45138f3376a85c904eb4e9d4d331b00c0c8f".to_owned();
    verify_collection(
        GUN,
        read("notary/server/root.json"),
        RootTrust::Pinned(vec![pin]),
        files.clone(),
        PriorVersions::default(),
        fixture_now(),
    )
    .expect("pinned root");
    let err = verify_collection(
        GUN,
        read("notary/server/root.json"),
        RootTrust::Pinned(vec!["00".repeat(32)]),
        files.clone(),
        PriorVersions::default(),
        fixture_now(),
    )
    .expect_err("must be refused");
    assert!(matches!(err, Error::NotPinned { version: 3, .. }), "{err}");
    // Another GUN: the root certificate's CN does not match, so no root key counts.
    let err = verify_collection(
        "example.com/other",
        read("notary/server/root.json"),
        RootTrust::FirstUse,
        files,
        PriorVersions::default(),
        fixture_now(),
    )
    .expect_err("must be refused");
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, version: 3, valid: 0, reason, .. }
            if role == "root" && reason.contains("does not match GUN")),
        "{err}"
    );
}

#[test]
fn canonical_key_ids_match_the_notary_client() {
    let root = Signed::<Root>::from_slice("root", &read("notary/server/root.json"))
        .expect("root")
        .signed;
    let (root_id, root_key) = root.role_keys(RoleType::Root)[0];
    assert_eq!(root_key.id(), root_id);
    assert_eq!(
        root_key.canonical_id().expect("canonical"),
        "b843c3917f21f8b50f7d558daa3f45138f3376a85c904eb4e9d4d331b00c0c8f"
    );
    let cert = root_key.certificate().expect("cert").expect("x509");
    assert_eq!(cert.common_name().as_deref(), Some(GUN));
    cert.verify_self_signed().expect("self-signed");
    cert.check_root_leaf(GUN, Some(fixture_now()))
        .expect("valid root leaf");
    // The targets key is bare: its id is its canonical id (`private/1ea436….key`).
    let (targets_id, targets_key) = root.role_keys(RoleType::Targets)[0];
    assert_eq!(
        targets_id,
        "1ea4368dd8751d732631c61a80497764adb84eb1733155eb697b5a13f21167b9"
    );
    assert_eq!(targets_key.canonical_id().expect("canonical"), targets_id);

    let targets = Signed::<Targets>::from_slice("targets", &read("notary/server/targets.json"))
        .expect("targets")
        .signed;
    let canonical = |role: &str| {
        let (_, keys) = targets.delegation(role).expect("delegated");
        keys[0].1.canonical_id().expect("canonical")
    };
    assert_eq!(
        canonical("targets/releases"),
        "b506cd737ebd8d361f57e2ac440c54070bcb3ed057ff1e5dc7b0738075cd7348"
    );
    assert_eq!(
        canonical("targets/rsa"),
        "8635991701972b53cae310f418dcfaf8daed155189a2af1bcd1c714ffa0540dc"
    );
}

#[test]
fn docker_made_collection_verifies() {
    let root = read("notary/docker/root.json");
    let gun = Signed::<Root>::from_slice("root", &root)
        .expect("root")
        .signed
        .role_keys(RoleType::Root)[0]
        .1
        .certificate()
        .expect("cert")
        .expect("x509")
        .common_name()
        .expect("cn");
    assert_eq!(gun, "example.com/docker-made");
    let c = verify_collection(
        &gun,
        root,
        RootTrust::FirstUse,
        CollectionFiles {
            root_chain: vec![],
            timestamp: read("notary/docker/timestamp.json"),
            snapshot: read("notary/docker/snapshot.json"),
            targets: read("notary/docker/targets.json"),
            delegations: BTreeMap::new(),
        },
        PriorVersions::default(),
        fixture_now(),
    )
    .expect("docker walk");
    let roles: Vec<&str> = c
        .targets()
        .body()
        .delegated_roles()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(roles, ["targets/alice", "targets/releases"]);
    // Delegations were never published: nothing to fetch, nothing skipped.
    assert!(c.delegations().is_empty() && c.skipped().is_empty());
}

/// Replays what the notary client saw during the recorded demo: after `key rotate targets`
/// it trusted root v1 and the v1 timestamp, and the server now serves root v2.
#[test]
fn recorded_client_follows_the_targets_key_rotation() {
    let mut prior = PriorVersions::default();
    prior.observe("timestamp", &read("notary/http/014-timestamp.json"));
    prior.observe(
        "snapshot",
        &read("notary/http/010-snapshot.2f67815d346aef8d5bdc405c9c39562290092683f4756fb39784a72fe1b5abf0.json"),
    );
    prior.observe(
        "targets",
        &read("notary/http/011-targets.961e326414721ba687df0bc528a5d0b48a2360963ac43426bb1b0b28bc43de49.json"),
    );
    assert_eq!(
        (prior.timestamp, prior.snapshot, prior.targets),
        (Some(1), Some(2), Some(2))
    );
    let mut up = Updater::new(
        GUN,
        read("notary/http/013-root.json"),
        RootTrust::Cached,
        fixture_now(),
    )
    .expect("cached root v1")
    .with_prior(prior.clone());
    let latest = read("notary/http/018-root.json");
    assert!(up.intermediate_root_versions(2).expect("range").is_empty());
    assert!(up.update_root(latest).expect("rotation v1 → v2"));
    up.update_timestamp(read("notary/http/019-timestamp.json"))
        .expect("timestamp v2");
    let snap_hex = up
        .snapshot_meta()
        .and_then(|m| m.sha256_hex())
        .expect("hex");
    assert_eq!(
        snap_hex,
        "cfc6f1c53079d30caf37fcad611577655e3cb7900aa9694c46b92132f69e0c0d"
    );
    up.update_snapshot(read(&format!("notary/http/020-snapshot.{snap_hex}.json")))
        .expect("snapshot v3");
    let targets_hex = up
        .role_meta("targets")
        .and_then(|m| m.sha256_hex())
        .expect("hex");
    up.update_targets(read(&format!("notary/http/024-targets.{targets_hex}.json")))
        .expect("targets v3, signed by the new targets key");
    let c = up.finish().expect("finish");
    assert_eq!(c.root().version(), 2);

    // Serving the old timestamp again is a rollback.
    let mut up = Updater::new(
        GUN,
        read("notary/http/018-root.json"),
        RootTrust::Cached,
        fixture_now(),
    )
    .expect("root v2")
    .with_prior(c.prior_versions());
    let err = up
        .update_timestamp(read("notary/http/014-timestamp.json"))
        .expect_err("must be refused");
    assert!(
        matches!(&err, Error::Rollback { role, version: 1, trusted: 2 } if role == "timestamp"),
        "{err}"
    );
    // And the pre-rotation targets file no longer verifies against root v2.
    let old_targets = Metadata::<Targets>::from_bytes(
        "targets",
        read("notary/http/011-targets.961e326414721ba687df0bc528a5d0b48a2360963ac43426bb1b0b28bc43de49.json"),
    )
    .expect("parse");
    let root_v2 =
        Metadata::<Root>::from_bytes("root", read("notary/http/018-root.json")).expect("root");
    let keys = root_v2.body().role_keys(RoleType::Targets);
    assert!(verify_signatures("targets", old_targets.signed(), &keys, 1).is_err());
}

#[test]
fn fixtures_are_frozen_in_time() {
    // The recorded timestamp expires 14 days after the demo: a client two weeks later must
    // refuse it (freeze attack), even though every signature is still valid.
    let later = fixture_now() + common::days(14);
    let err = verify_collection(
        GUN,
        read("notary/server/1.root.json"),
        RootTrust::FirstUse,
        server_files(),
        PriorVersions::default(),
        later,
    )
    .expect_err("must be refused");
    assert!(
        matches!(&err, Error::Expired { role, version: 6, .. } if role == "timestamp"),
        "{err}"
    );
}
