//! Editing and publishing: the notary changelist flow, server-managed snapshots, key
//! rotation, every key type, unknown fields surviving edits, and what the editor refuses.

mod common;

use std::sync::Arc;

use common::{GUN, Keys, Server, bare, published, republish, root_cert_key, t0, verify};
use sigil_tuf::changelist::{Change, ChangeKind, Changelist, DelegationChange};
use sigil_tuf::schema::{RoleType, Targets};
use sigil_tuf::sign::sign_role;
use sigil_tuf::sign::testing::{MemorySigner, UnpluggedSigner, block_on};
use sigil_tuf::{CollectionEditor, Error, FileMeta, Signer};

#[test]
fn changelist_flow_init_add_delegate_publish() {
    let trust = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new(t0());
    let releases = MemorySigner::ed25519();
    let cl = Changelist::for_gun(trust.path(), GUN).expect("changelist");
    for kind in [
        ChangeKind::AddTarget {
            role: "targets".into(),
            name: "hello.sh".into(),
            meta: FileMeta::from_bytes(b"#!/bin/sh\necho hello\n"),
        },
        ChangeKind::CreateDelegation {
            role: "targets/releases".into(),
            change: DelegationChange {
                threshold: 1,
                add_keys: vec![bare(&releases)],
                add_paths: vec!["releases/".into()],
                ..Default::default()
            },
        },
        ChangeKind::AddTarget {
            role: "targets/releases".into(),
            name: "releases/v1.tar".into(),
            meta: FileMeta::from_sha256(3, [7; 32]),
        },
        ChangeKind::RemoveTarget {
            role: "targets".into(),
            name: "never-added".into(),
        },
    ] {
        cl.add(&Change::from_kind(&kind).expect("encode"))
            .expect("stage");
    }
    let staged = cl.list().expect("list");
    assert_eq!(staged.len(), 4);

    let mut editor = CollectionEditor::create(GUN, &keys.collection_keys(), t0()).expect("create");
    editor
        .apply_changes(
            staged
                .iter()
                .map(|(path, change)| (path.display().to_string(), change)),
        )
        .expect("apply");
    let mut signers = keys.client();
    signers.push(&releases);
    let signed = block_on(editor.sign(&signers)).expect("sign");
    assert_eq!(
        signed.updates().keys().collect::<Vec<_>>(),
        ["root", "snapshot", "targets", "targets/releases"]
    );
    assert!(signed.snapshot_signed());
    let mut server = keys.server();
    server.publish(&signed, t0());
    cl.clear().expect("clear");
    assert!(cl.list().expect("list").is_empty());

    let c = verify(&server, None, t0()).expect("verifies");
    assert_eq!(c.targets().version(), 1);
    assert_eq!(
        c.lookup("releases/v1.tar", &[]).expect("lookup").role,
        "targets/releases"
    );
    assert_eq!(c.lookup("hello.sh", &[]).expect("lookup").meta.length, 21);
    // What the client would cache is exactly what it published.
    for (role, bytes) in signed.files() {
        assert_eq!(c.files()[role], bytes.as_slice(), "{role}");
    }
}

#[test]
fn server_managed_snapshot_is_left_to_the_server() {
    let keys = Keys::new(t0());
    let server_snapshot = Arc::new(MemorySigner::p256());
    let mut ck = keys.collection_keys();
    ck.snapshot = vec![bare(&server_snapshot)];
    let mut editor = CollectionEditor::create(GUN, &ck, t0()).expect("create");
    editor
        .add_target("targets", "a", FileMeta::from_bytes(b"a"))
        .expect("add");
    let signers: Vec<&dyn Signer> = vec![keys.root.as_ref(), keys.targets.as_ref()];
    let signed = block_on(editor.sign(&signers)).expect("sign");
    assert!(!signed.snapshot_signed());
    assert_eq!(
        signed.updates().keys().collect::<Vec<_>>(),
        ["root", "targets"]
    );
    let mut server = Server::new(keys.timestamp.clone(), Some(server_snapshot));
    server.publish(&signed, t0());
    let v1 = verify(&server, None, t0()).expect("verifies");

    // `key rotate GUN snapshot -r`: the server makes a new key; only root is published.
    let rotated = Arc::new(MemorySigner::p256());
    let new_key = bare(&rotated);
    let mut editor = CollectionEditor::from_collection(&v1, t0());
    editor
        .rotate_keys(RoleType::Snapshot, std::slice::from_ref(&new_key))
        .expect("rotate");
    let signed = block_on(editor.sign(&signers)).expect("sign");
    assert_eq!(signed.updates().keys().collect::<Vec<_>>(), ["root"]);
    server.snapshot_signer = Some(rotated);
    server.publish(&signed, t0());
    let v2 = verify(&server, Some(&v1), t0()).expect("follows the rotation");
    assert_eq!(v2.root().version(), 2);
    assert_eq!(v2.snapshot().version(), 2);
}

#[test]
fn targets_key_rotation_re_signs_targets() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let new_targets = MemorySigner::p256();
    let new_key = bare(&new_targets);
    let signers: Vec<&dyn Signer> = vec![keys.root.as_ref(), &new_targets, keys.snapshot.as_ref()];
    let v2 = republish(&mut server, &v1, &signers, t0(), |e| {
        e.rotate_keys(RoleType::Targets, std::slice::from_ref(&new_key))
            .expect("rotate")
    });
    assert_eq!((v2.root().version(), v2.targets().version()), (2, 2));
    assert_eq!(v2.targets().signed().signatures[0].keyid, new_key.id());
    // The old targets key is gone from root.
    assert!(
        !v2.root()
            .body()
            .keys
            .contains_key(&bare(&keys.targets).id())
    );
}

#[test]
fn every_key_type_signs_and_verifies() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    let rsa = MemorySigner::rsa(2048);
    let ed = MemorySigner::ed25519();
    let cert_signer = MemorySigner::p256();
    // A delegation key given as a certificate (`notary delegation add ... cert.pem`); any CN.
    let cert_key = root_cert_key(&cert_signer, "delegate@example.com", t0());
    let mut signers = keys.client();
    signers.extend([&rsa as &dyn Signer, &ed, &cert_signer]);
    let v2 = republish(&mut server, &v1, &signers, t0(), |e| {
        for (role, key) in [
            ("targets/rsa", bare(&rsa)),
            ("targets/ed", bare(&ed)),
            ("targets/x509", cert_key.clone()),
        ] {
            e.update_delegation(
                role,
                &DelegationChange {
                    threshold: 1,
                    add_keys: vec![key],
                    add_paths: vec![String::new()],
                    ..Default::default()
                },
            )
            .expect("delegate");
            e.add_target(
                role,
                &format!("{role}.bin"),
                FileMeta::from_bytes(role.as_bytes()),
            )
            .expect("add");
        }
    });
    let methods: Vec<String> = ["targets/rsa", "targets/ed", "targets/x509"]
        .iter()
        .map(|r| {
            v2.delegation(r).expect("verified").signed().signatures[0]
                .method
                .to_string()
        })
        .collect();
    assert_eq!(methods, ["rsapss", "eddsa", "ecdsa"]);
    assert_eq!(cert_key.keytype.as_str(), "ecdsa-x509");
    assert_eq!(
        cert_key.canonical_id().expect("canonical"),
        bare(&cert_signer).id()
    );
    // Removing a delegation key by its canonical id (what `notary key list` shows).
    let v3 = republish(&mut server, &v2, &signers, t0(), |e| {
        e.update_delegation(
            "targets/x509",
            &DelegationChange {
                add_keys: vec![bare(&ed)],
                remove_keys: vec![bare(&cert_signer).id()],
                ..Default::default()
            },
        )
        .expect("swap keys");
    });
    let (_, keys_now) = v3
        .targets()
        .body()
        .delegation("targets/x509")
        .expect("entry");
    assert_eq!(keys_now.len(), 1);
    assert_eq!(keys_now[0].0, bare(&ed).id());
}

#[test]
fn unknown_fields_survive_verification_and_editing() {
    let keys = Keys::new(t0());
    let (mut server, v1) = published(&keys, t0());
    // Another tool wrote fields we do not know, at every level, and signed them.
    let mut body: Targets = v1.targets().body().clone();
    body.version = 2;
    body.extra.insert(
        "x-vendor".into(),
        serde_json::json!({"b": [1, 2], "a": "é<\"q\\"}),
    );
    let app = body.targets.get_mut("app.tar").expect("target");
    app.custom = Some(serde_json::json!({"tag": "v1"}));
    app.extra.insert("x-note".into(), serde_json::json!(null));
    let tk = v1.root().body().role_keys(RoleType::Targets);
    let signed = block_on(sign_role("targets", body, &tk, 1, &keys.client())).expect("sign");
    let bytes = signed.to_vec().expect("bytes");
    // Canonical: sorted keys, non-ASCII and '<' raw, only quote and backslash escaped.
    assert!(String::from_utf8_lossy(&bytes).contains(r#""x-vendor":{"a":"é<\"q\\","b":[1,2]}"#));
    server.targets.insert("targets".into(), bytes.clone());
    server.snapshot_with(keys.snapshot.as_ref(), 2, t0());
    server.timestamp_with(2, t0());
    let v2 = verify(&server, Some(&v1), t0()).expect("unknown fields verify");
    assert_eq!(v2.targets().bytes(), bytes.as_slice());
    assert_eq!(v2.targets().signed().to_vec().expect("again"), bytes);

    // Editing keeps them.
    let v3 = republish(&mut server, &v2, &keys.client(), t0(), |e| {
        e.add_target("targets", "b", FileMeta::from_bytes(b"b"))
            .expect("add")
    });
    let t = v3.targets().body();
    assert_eq!(t.version, 3);
    assert!(t.extra.contains_key("x-vendor"));
    assert_eq!(
        t.targets["app.tar"].custom,
        Some(serde_json::json!({"tag": "v1"}))
    );
    assert!(t.targets["app.tar"].extra.contains_key("x-note"));
}

#[test]
fn the_editor_refuses_what_notary_refuses() {
    let keys = Keys::new(t0());
    let (_, v1) = published(&keys, t0());
    let mut e = CollectionEditor::from_collection(&v1, t0());
    let some_key = bare(&MemorySigner::p256());
    assert!(matches!(
        e.add_target("snapshot", "x", FileMeta::from_bytes(b"x")),
        Err(Error::InvalidRoleName { .. })
    ));
    assert!(matches!(
        e.add_target("targets", "a\nb", FileMeta::from_bytes(b"x")),
        Err(Error::InvalidTargetName { .. })
    ));
    assert!(matches!(
        e.add_target("targets/nobody", "x", FileMeta::from_bytes(b"x")),
        Err(Error::NoSuchRole { .. })
    ));
    let err = e
        .update_delegation(
            "targets/r",
            &DelegationChange {
                threshold: 2,
                add_keys: vec![some_key.clone()],
                ..Default::default()
            },
        )
        .expect_err("threshold above key count");
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    // Root keys must be certificates for this GUN.
    assert!(
        e.rotate_keys(RoleType::Root, std::slice::from_ref(&some_key))
            .is_err()
    );
    let other_gun = root_cert_key(&MemorySigner::p256(), "example.com/other", t0());
    assert!(e.rotate_keys(RoleType::Root, &[other_gun]).is_err());
    assert!(e.set_threshold(RoleType::Targets, 2).is_err());

    // Nothing to sign without the targets key; a token that fails is reported by key.
    e.witness("targets").expect("witness");
    let root_only: Vec<&dyn Signer> = vec![keys.root.as_ref()];
    let err = block_on(e.clone().sign(&root_only)).expect_err("no targets key");
    assert!(
        matches!(&err, Error::MissingSigners { role, available: 0, threshold: 1 } if role == "targets"),
        "{err}"
    );
    let unplugged = UnpluggedSigner(keys.targets.public_key().clone());
    let signers: Vec<&dyn Signer> = vec![keys.root.as_ref(), &unplugged];
    let err = block_on(e.sign(&signers)).expect_err("token gone");
    assert!(
        matches!(&err, Error::Sign { role, key_id, .. } if role == "targets" && *key_id == bare(&keys.targets).id()),
        "{err}"
    );
}

#[test]
fn nothing_changed_publishes_nothing() {
    let keys = Keys::new(t0());
    let (_, v1) = published(&keys, t0());
    let e = CollectionEditor::from_collection(&v1, t0());
    assert!(!e.is_dirty());
    let signed = block_on(e.sign(&keys.client())).expect("sign");
    assert!(signed.updates().is_empty());
}

#[test]
fn new_collections_need_root_certificates() {
    let keys = Keys::new(t0());
    let mut ck = keys.collection_keys();
    ck.root = vec![bare(&keys.root)];
    let err = CollectionEditor::create(GUN, &ck, t0()).expect_err("bare root key");
    assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
    let ck = keys.collection_keys();
    assert!(CollectionEditor::create("../escape", &ck, t0()).is_err());
}

/// `delegation purge`: staged as notary stages it (an update of the wildcard scope
/// `targets/*`), it removes the key from every delegation that has it, leaves the others,
/// and the result publishes and verifies; a scope that is not `<targets role>/*` is refused.
#[test]
fn purging_a_key_removes_it_from_every_delegation() {
    let keys = Keys::new(t0());
    let (compromised, releases, qa) = (
        MemorySigner::p256(),
        MemorySigner::p256(),
        MemorySigner::ed25519(),
    );
    let mut editor = CollectionEditor::create(GUN, &keys.collection_keys(), t0()).expect("create");
    for (role, signers) in [
        ("targets/releases", [&compromised, &releases]),
        ("targets/qa", [&compromised, &qa]),
    ] {
        editor
            .update_delegation(
                role,
                &DelegationChange {
                    threshold: 1,
                    add_keys: signers.iter().map(|s| bare(s)).collect(),
                    add_paths: vec![String::new()],
                    ..Default::default()
                },
            )
            .expect("delegate");
    }
    let other = MemorySigner::p256();
    editor
        .update_delegation(
            "targets/docs",
            &DelegationChange {
                threshold: 1,
                add_keys: vec![bare(&other)],
                add_paths: vec!["docs/".into()],
                ..Default::default()
            },
        )
        .expect("delegate");
    let signed = block_on(editor.sign(&keys.client())).expect("sign");
    let mut server = keys.server();
    server.publish(&signed, t0());
    let v1 = verify(&server, None, t0()).expect("verifies");

    let purge = ChangeKind::PurgeDelegationKeys {
        scope: "targets/*".into(),
        remove_keys: vec![bare(&compromised).id()],
    };
    let staged = Change::from_kind(&purge).expect("encode");
    assert_eq!(
        (staged.role.as_str(), staged.action.as_str()),
        ("targets/*", "update"),
        "notary's wire form"
    );
    assert_eq!(staged.decode("purge").expect("decode"), purge);
    let mut editor = CollectionEditor::from_collection(&v1, t0());
    editor.apply(&purge).expect("purge");
    let signed = block_on(editor.sign(&keys.client())).expect("sign");
    server.publish(&signed, t0());
    let v2 = verify(&server, Some(&v1), t0()).expect("verifies");
    let delegations = v2
        .targets()
        .signed()
        .signed
        .delegations
        .as_ref()
        .expect("delegations");
    let keyids = |role: &str| {
        delegations
            .roles
            .iter()
            .find(|r| r.name == role)
            .map(|r| r.keyids.clone())
            .expect(role)
    };
    assert_eq!(keyids("targets/releases"), vec![bare(&releases).id()]);
    assert_eq!(keyids("targets/qa"), vec![bare(&qa).id()]);
    assert_eq!(keyids("targets/docs"), vec![bare(&other).id()]);
    assert!(
        !delegations.keys.contains_key(&bare(&compromised).id()),
        "the key itself is gone"
    );

    // Only `<targets role>/*` is a purge scope.
    for scope in ["targets", "root/*", "*", "targets/releases"] {
        let bad = ChangeKind::PurgeDelegationKeys {
            scope: scope.into(),
            remove_keys: vec!["x".into()],
        };
        assert!(Change::from_kind(&bad).is_err(), "{scope}");
    }
}
