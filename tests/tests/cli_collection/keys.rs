//! Key changes the real notary client must follow: `delegation purge` and `key rotate`.

use super::*;

/// `sigil delegation purge`: a key shared by two delegations is removed from both in one
/// publish; the real notary client sees the delegations without it and still verifies.
#[test]
fn purging_a_key_removes_it_from_every_delegation_for_the_real_notary_client_too() {
    let env = Env::start("");
    let gun = "e2e.example/purge";
    let sigil = env.sigil("admin");
    sigil.ok(&["init", gun, "-p"]);
    let key = |n: &str| {
        sigil
            .ok(&[
                "key",
                "generate",
                "--role",
                "targets/releases",
                "--gun",
                &format!("{gun}/{n}"),
            ])
            .trim()
            .to_owned()
    };
    let (shared, releases, qa) = (key("shared"), key("releases"), key("qa"));
    sigil.ok(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        &shared,
        &releases,
        "--all-paths",
    ]);
    sigil.ok(&[
        "delegation",
        "add",
        gun,
        "targets/qa",
        &shared,
        &qa,
        "--all-paths",
        "-p",
    ]);
    let ids = |listed: &serde_json::Value, role: &str| -> Vec<String> {
        let mut ids: Vec<String> = listed
            .as_array()
            .expect("array")
            .iter()
            .find(|d| d["role"] == role)
            .unwrap_or_else(|| panic!("{role} not listed: {listed}"))["key_ids"]
            .as_array()
            .expect("key_ids")
            .iter()
            .map(|k| k.as_str().expect("id").to_owned())
            .collect();
        ids.sort();
        ids
    };
    let before = sigil.json(&["delegation", "list", gun]);
    let (r, q) = (ids(&before, "targets/releases"), ids(&before, "targets/qa"));
    let common: Vec<&String> = r.iter().filter(|id| q.contains(id)).collect();
    assert_eq!(common.len(), 1, "one key in both: {before}");
    let doomed = common[0].clone();

    // Bad input stages nothing.
    let err = sigil.fails(&["delegation", "purge", gun, "--key", "not-hex!"]);
    assert!(err.contains("is not a key id"), "{err}");
    assert!(
        sigil
            .json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );

    let out = sigil.ok(&["delegation", "purge", gun, "--key", &doomed, "-p"]);
    assert!(out.contains("Successfully published"), "{out}");
    let after = sigil.json(&["delegation", "list", gun]);
    let keep = |ids: &[String]| -> Vec<String> {
        ids.iter().filter(|id| **id != doomed).cloned().collect()
    };
    assert_eq!(ids(&after, "targets/releases"), keep(&r));
    assert_eq!(ids(&after, "targets/qa"), keep(&q));

    // The real client, from a fresh trust dir: verifies, and the key is gone everywhere.
    let notary = env.notary("notary-purge");
    notary.ok(&["list", gun]);
    let listed = notary.ok(&["delegation", "list", gun]);
    assert!(
        !listed.contains(&doomed),
        "{doomed} still delegated:\n{listed}"
    );
    for id in keep(&r).iter().chain(keep(&q).iter()) {
        assert!(listed.contains(id.as_str()), "{id} missing:\n{listed}");
    }
}

#[test]
fn rotating_keys_keeps_the_real_notary_client_verifying() {
    let env = Env::start("");
    let gun = "e2e.example/rotations";
    let sigil = env.sigil("admin");
    let one = b"one\n".to_vec();
    let two = b"two\n".to_vec();
    let one_path = env.target("one", &one);
    let two_path = env.target("two", &two);
    sigil.ok(&["init", gun, "-p"]);
    sigil.ok(&["add", gun, "one", one_path.to_str().expect("utf8"), "-p"]);
    let early = env.notary("notary-early");
    assert_eq!(
        notary_rows(&early.ok(&["list", gun])),
        expected(&[("one", &one, "targets")])
    );
    let before = env.root(gun);
    let key_of = |root: &Metadata<Root>, role: RoleType| -> Vec<String> {
        root.body()
            .role(role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default()
    };

    for (args, role) in [
        (vec!["key", "rotate", gun, "targets"], RoleType::Targets),
        (
            vec!["key", "rotate", gun, "snapshot", "-r"],
            RoleType::Snapshot,
        ),
        (vec!["key", "rotate", gun, "root"], RoleType::Root),
        (
            vec!["key", "rotate", gun, "timestamp", "-r"],
            RoleType::Timestamp,
        ),
    ] {
        let old = env.root(gun);
        let out = sigil.ok(&args);
        assert!(out.contains("Successfully rotated"), "{out}");
        let new = env.root(gun);
        assert_eq!(new.version(), old.version() + 1, "{args:?}");
        assert_ne!(key_of(&new, role), key_of(&old, role), "{args:?}");
    }
    // Server-managed keys are the ones notary-server now hands out.
    let root = env.root(gun);
    for role in ["snapshot", "timestamp"] {
        let server_key: TufKey =
            serde_json::from_value(env.server.server_key(gun, role).json()).expect("key");
        let rt = if role == "snapshot" {
            RoleType::Snapshot
        } else {
            RoleType::Timestamp
        };
        assert_eq!(key_of(&root, rt), [server_key.id()], "{role}");
    }
    // The rotated root is signed by the old root key and the new one.
    let rotated = env.server.get(&format!(
        "/v2/{gun}/_trust/tuf/{}.root.json",
        before.version() + 3
    ));
    assert_eq!(SignedDoc::parse(&rotated.body).signatures.len(), 2);

    sigil.ok(&["add", gun, "two", two_path.to_str().expect("utf8"), "-p"]);
    let want = expected(&[("one", &one, "targets"), ("two", &two, "targets")]);
    // The client that trusted the first root walks every rotation; a fresh one trusts the last.
    assert_eq!(notary_rows(&early.ok(&["list", gun])), want);
    assert_eq!(
        notary_rows(&env.notary("notary-fresh").ok(&["list", gun])),
        want
    );
    early.ok(&[
        "verify",
        gun,
        "two",
        "-i",
        two_path.to_str().expect("utf8"),
        "-q",
    ]);
    assert_eq!(
        sigil_rows(&env.sigil("sigil-fresh").json(&["list", gun])),
        want
    );
    assert_eq!(sigil_rows(&sigil.json(&["list", gun])), want);
    // Root keys on the token; no private key in any trust dir.
    assert_no_private_keys(&sigil.trust);
    let checked = assert_signatures_audited(&env, gun);
    assert!(checked >= 9, "only {checked} signatures checked");
    // Refusals are clear.
    let err = sigil.fails(&["key", "rotate", gun, "timestamp"]);
    assert!(err.contains("use -r"), "{err}");
    let err = sigil.fails(&["key", "rotate", gun, "targets", "-r"]);
    assert!(err.contains("only snapshot and timestamp"), "{err}");
}
