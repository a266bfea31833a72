//! sigild's policy, audit and key ring need no dialect switch (issue 10, item 6): a CI uid
//! allowed only the `targets/releases` key signs that role in Notary (`sigil add -r
//! targets/releases -p` against the real notary-server) and in TUF 1.0 (`sigil tuf sign REPO
//! releases` in a repository imported from the collection), and nothing else; the audit log
//! shows which key each uid used and the refusals.

use std::fs;

use serde_json::Value;
use sigil_e2e::tuf_lab::{HttpServer, Lab, chown_tree, latest, read_tuf1, tuf1_publics};
use sigil_e2e::{OTHER_UID, sha256_hex};
use sigil_tuf::schema::tuf1;
use sigil_tuf::{Metadata, PublicKey, RoleType};

const GUN: &str = "import.example/app";

/// uid 65534 may use only the `targets/releases` key of `GUN`.
fn ci_policy() -> String {
    format!(
        "[[policy]]\nname = \"ci-releases\"\nuids = [{OTHER_UID}]\n\
         keys = [{{ gun = \"{GUN}\", role = \"targets/releases\" }}]\n\
         allow = [\"sign\", \"public\", \"list\"]\n"
    )
}

#[test]
fn a_releases_key_allowed_to_a_ci_uid_signs_that_role_in_both_dialects_and_nothing_else() {
    let env = Lab::start(&ci_policy());
    let admin = env.admin();
    admin.ok(&["init", GUN]);
    admin.ok(&["add", GUN, "base", &env.file("base", b"base\n"), "-p"]);
    let releases_key = admin.generate_key("targets/releases", GUN);
    admin.ok(&[
        "delegation",
        "add",
        GUN,
        "targets/releases",
        &releases_key,
        "--all-paths",
        "-p",
    ]);
    // notary-server makes snapshots, so a delegate needs only its own key.
    admin.ok(&["key", "rotate", GUN, "snapshot", "-r"]);
    let keys = admin.json(&["key", "list"]);
    let key_of = |role: &str| -> String {
        keys.as_array()
            .expect("keys")
            .iter()
            .find(|k| k["role"] == role && k["gun"] == GUN)
            .unwrap_or_else(|| panic!("no {role} key in {keys}"))["key_id"]
            .as_str()
            .expect("key id")
            .to_owned()
    };
    let (root_key, targets_key) = (key_of("root"), key_of("targets"));

    // Notary dialect: the CI user publishes into targets/releases, not into targets.
    let ci = env.stranger();
    let rel = env.file("rel.tar", b"release by CI\n");
    ci.ok(&["add", GUN, "rel.tar", &rel, "-r", "targets/releases", "-p"]);
    let (_, err) = ci.fails(&["add", GUN, "evil", &rel, "-p"]);
    assert!(err.contains("cannot sign targets"), "{err}");
    ci.ok(&["reset", GUN, "--all"]);

    // The CI user cannot import (it holds no root key): the error names the key and role.
    let ci_repo = ci.home.join("tuf-by-ci");
    let (_, err) = ci.fails(&["tuf", "import-notary", GUN, ci_repo.to_str().expect("utf8")]);
    assert!(err.contains("role root needs 1"), "{err}");
    assert!(err.contains(&root_key), "{err}");
    assert!(
        !ci_repo.exists(),
        "a refused import wrote {}",
        ci_repo.display()
    );

    // TUF 1.0 dialect: the owner imports; the CI user stages and signs the releases role.
    let repo = env.dev.root().join("tuf-repo");
    let repo_arg = repo.to_str().expect("utf8").to_owned();
    // With snapshot and timestamp keys named instead of generated.
    let online: Vec<String> = ["snapshot", "timestamp"]
        .iter()
        .map(|role| admin.generate_key(role, "tuf.example/online"))
        .collect();
    admin.ok(&[
        "tuf",
        "import-notary",
        GUN,
        &repo_arg,
        "--snapshot-key",
        &online[0],
        "--timestamp-key",
        &online[1],
    ]);
    let root: Metadata<tuf1::Root> = read_tuf1(&repo, "1.root.json");
    for (role, id) in [
        (RoleType::Snapshot, &online[0]),
        (RoleType::Timestamp, &online[1]),
    ] {
        let listed: Vec<String> = tuf1_publics(root.body().role_keys(role))
            .iter()
            .map(PublicKey::key_id)
            .collect();
        assert_eq!(listed, vec![id.clone()], "{role:?}");
    }
    chown_tree(&repo);
    let content = b"release v2 by CI\n";
    ci.ok(&[
        "tuf",
        "addhash",
        &repo_arg,
        "rel2.tar",
        &content.len().to_string(),
        "--sha256",
        &sha256_hex(content),
        "-r",
        "releases",
    ]);
    let signed = ci.json(&["tuf", "sign", &repo_arg, "releases", "--key", &releases_key]);
    assert_eq!(signed["role"], "releases", "{signed}");
    let staged: Value = serde_json::from_slice(
        &fs::read(repo.join(".sigil/staged/releases.json")).expect("staged releases"),
    )
    .expect("staged JSON");
    // Nothing else: root and targets keys are invisible to it (NOT_FOUND, exit 3).
    for (role, key) in [("root", &root_key), ("targets", &targets_key)] {
        let (code, err) = ci.fails(&["tuf", "sign", &repo_arg, role, "--key", key]);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("not found"), "{err}");
    }
    // Publishing needs the snapshot and timestamp keys, which the CI user does not have.
    let (_, err) = ci.fails(&["tuf", "publish", &repo_arg]);
    assert!(err.contains("snapshot"), "{err}");
    // The owner publishes; the CI user's signature on releases is what ngclient checks.
    admin.ok(&["tuf", "publish", &repo_arg]);
    admin.ok(&["tuf", "verify", &repo_arg]);
    let published: Value = serde_json::from_slice(
        &fs::read(repo.join("metadata").join(latest(&repo, "releases"))).expect("releases"),
    )
    .expect("published JSON");
    assert_eq!(published["signatures"], staged["signatures"]);
    let http = HttpServer::start(&env.python, &repo);
    let info = env.ngclient_targetinfo(&repo, &http, &["rel2.tar", "rel.tar"]);
    assert_eq!(
        info["rel2.tar"]["hashes"]["sha256"],
        sha256_hex(content),
        "{info}"
    );
    assert_eq!(
        info["rel.tar"]["hashes"]["sha256"],
        sha256_hex(b"release by CI\n")
    );

    // The audit log: the CI uid signed only with the releases key, in both dialects (a Notary
    // targets/releases and a TUF 1.0 releases document: two different digests), and was
    // refused the root and targets keys.
    // Lines of the Unix API and of the notary-signer endpoint differ in shape: read them as
    // JSON values.
    let audit: Vec<Value> = fs::read_to_string(env.daemon.audit_log())
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect();
    let ci_lines: Vec<&Value> = audit.iter().filter(|r| r["uid"] == OTHER_UID).collect();
    let ci_signed: Vec<&&Value> = ci_lines
        .iter()
        .filter(|r| r["op"] == "sign" && r["outcome"] == "ok")
        .collect();
    assert!(ci_signed.len() >= 2, "{ci_lines:#?}");
    assert!(
        ci_signed
            .iter()
            .all(|r| r["key_id"] == releases_key.as_str() && r["role"] == "targets/releases"),
        "{ci_signed:#?}"
    );
    let digests: std::collections::BTreeSet<String> =
        ci_signed.iter().map(|r| r["sha256"].to_string()).collect();
    assert!(digests.len() >= 2, "{ci_signed:#?}");
    for key in [&root_key, &targets_key] {
        assert!(
            ci_lines.iter().any(|r| r["key_id"] == key.as_str()
                && r["op"] == "public"
                && r["outcome"] == "not_found"),
            "no refusal of {key} audited: {ci_lines:#?}"
        );
        assert!(
            !ci_lines
                .iter()
                .any(|r| r["key_id"] == key.as_str() && r["outcome"] == "ok"),
            "the CI uid used {key}: {ci_lines:#?}"
        );
    }
}
