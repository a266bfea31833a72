//! A CI user whose policy grants one delegation key: publishes into it and nothing else.

use super::*;

/// The stranger (uid 65534) may only use the `targets/releases` key of `gun`.
fn ci_policy(gun: &str) -> String {
    format!(
        "[[policy]]\nname = \"ci-releases\"\nuids = [{OTHER_UID}]\n\
         keys = [{{ gun = \"{gun}\", role = \"targets/releases\" }}]\n\
         allow = [\"sign\", \"public\", \"list\"]\n"
    )
}

/// A copy of `sigil` and a home (trust dir, CA) that uid 65534 can use.
fn stranger_sigil(env: &Env, admin: &Sigil) -> Sigil {
    let home = env.dev.root().join("ci");
    fs::create_dir_all(&home).expect("ci home");
    let exe = home.join("sigil");
    fs::copy(sigil_exe(), &exe).expect("copying sigil");
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod");
    let ca = home.join("ca.crt");
    fs::copy(env.server.ca(), &ca).expect("copying the CA");
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o644)).expect("chmod");
    let owner = Some(nix::unistd::Uid::from_raw(OTHER_UID));
    let group = Some(nix::unistd::Gid::from_raw(OTHER_GID));
    nix::unistd::chown(&home, owner, group).expect("chown the ci home");
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).expect("chmod");
    Sigil {
        exe,
        ca: Some(ca),
        trust: home.join("trust"),
        home,
        uid: Some(OTHER_UID),
        ..admin.clone()
    }
}

#[test]
fn a_ci_user_allowed_only_a_delegation_key_publishes_into_it_and_nothing_else() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "running sigil as uid {OTHER_UID} needs root: run the e2e suite as root (CI does)"
    );
    let gun = "e2e.example/ci";
    let env = Env::start(&ci_policy(gun));
    let admin = env.sigil("admin");
    let base = b"base\n".to_vec();
    let base_path = env.target("base", &base);
    admin.ok(&["init", gun]);
    admin.ok(&["add", gun, "base", base_path.to_str().expect("utf8"), "-p"]);
    let key = admin
        .ok(&[
            "key",
            "generate",
            "--role",
            "targets/releases",
            "--gun",
            gun,
        ])
        .trim()
        .to_owned();
    let out = admin.ok(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        &key,
        "--all-paths",
        "-p",
    ]);
    assert!(
        out.contains("Addition of delegation role targets/releases"),
        "{out}"
    );
    let targets_before = env.server.metadata(gun, "targets");

    let ci = stranger_sigil(&env, &admin);
    // The CI user sees exactly its key.
    let keys = ci.json(&["key", "list"]);
    assert_eq!(keys.as_array().expect("array").len(), 1, "{keys}");
    assert_eq!(keys[0]["key_id"], key.as_str());
    let release = b"release built by CI\n".to_vec();
    let release_path = ci.home.join("release.tar");
    fs::write(&release_path, &release).expect("write");
    // While the admin holds the snapshot key, notary-server cannot make a snapshot for the
    // delegate's publish and says so with its own error code; the change stays staged.
    let err = ci.fails(&[
        "add",
        gun,
        "release.tar",
        release_path.to_str().expect("utf8"),
        "-r",
        "targets/releases",
        "-p",
    ]);
    assert!(err.contains("HTTP 400 INVALID_UPDATE"), "{err}");
    assert_eq!(
        ci.json(&["status", gun]).as_array().expect("array").len(),
        1
    );
    // As the lab: snapshot to the server, so a delegate needs only its own key.
    admin.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    let out = ci.ok(&["publish", gun]);
    assert!(out.contains("Successfully published"), "{out}");
    assert!(
        ci.json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );

    // The real notary client lists it under the delegation.
    let notary = env.notary("notary-reader");
    assert_eq!(
        notary_rows(&notary.ok(&["list", gun, "-r", "targets/releases"])),
        expected(&[("release.tar", &release, "targets/releases")])
    );
    assert_eq!(
        notary_rows(&notary.ok(&["list", gun])),
        expected(&[
            ("base", &base, "targets"),
            ("release.tar", &release, "targets/releases")
        ])
    );

    // And nothing else: not targets, not the delegation's definition, no new keys.
    ci.ok(&["reset", gun, "--all"]);
    let err = ci.fails(&[
        "add",
        gun,
        "evil",
        release_path.to_str().expect("utf8"),
        "-p",
    ]);
    assert!(err.contains("cannot sign targets"), "{err}");
    ci.ok(&["reset", gun, "--all"]);
    let err = ci.fails(&[
        "delegation",
        "add",
        gun,
        "targets/evil",
        &key,
        "--all-paths",
        "-p",
    ]);
    assert!(err.contains("cannot sign targets"), "{err}");
    ci.ok(&["reset", gun, "--all"]);
    let err = ci.fails(&["key", "rotate", gun, "targets"]);
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(
        ci.run(&["key", "rotate", gun, "targets"]).status.code(),
        Some(4)
    );
    let targets_after = env.server.metadata(gun, "targets");
    assert_eq!(
        sigil_tuf::schema::peek_version(&targets_after),
        sigil_tuf::schema::peek_version(&targets_before),
        "the CI user changed targets.json"
    );
    // The CI user's signatures (the refused publish and the accepted one) are audited as its
    // own, all with the delegation key.
    let audit = read_audit_lines(&env.dev.audit_log());
    let mine: Vec<_> = audit
        .iter()
        .filter(|l| l.uid == Some(OTHER_UID) && l.op == "sign")
        .collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(
        mine.iter().all(|l| l.key_id == key && l.outcome == "ok"),
        "{mine:?}"
    );
    assert_no_private_keys(&ci.trust);
    assert_no_private_keys(&admin.trust);
    assert_signatures_audited(&env, gun);
}
