//! Both directions with the real notary client, and reads with the server down (`--offline`).

use super::*;

#[test]
fn sigil_publishes_and_the_real_notary_client_lists_looks_up_and_verifies() {
    let env = Env::start("");
    let sigil = env.sigil("admin");
    let gun = "e2e.example/sigil-made";
    let a = b"#!/bin/sh\necho signed by a key on a token\n".to_vec();
    let b = sigil_e2e::pseudo_random_bytes("b.bin", 70_000);
    let c_digest = sigil_e2e::sha256(b"the manifest of image c");
    let a_path = env.target("a.sh", &a);
    let b_path = env.target("b.bin", &b);

    let out = sigil.ok(&["init", gun]);
    assert!(out.contains("Initialized"), "{out}");
    assert_eq!(
        sigil.ok(&["status", gun]).trim(),
        format!("No unpublished changes for {gun}")
    );
    sigil.ok(&[
        "add",
        gun,
        "a.sh",
        a_path.to_str().expect("utf8"),
        "b.bin",
        b_path.to_str().expect("utf8"),
    ]);
    // Custom data must be JSON; a bad file stages nothing.
    let not_json = env.target("not.json", b"{ tag: v1");
    let err = sigil.fails(&[
        "addhash",
        gun,
        "images/c",
        "1234",
        &hex::encode(c_digest),
        "--custom",
        not_json.to_str().expect("utf8"),
    ]);
    assert!(err.contains("custom data must be JSON"), "{err}");
    assert_eq!(
        sigil.json(&["status", gun]).as_array().map(Vec::len),
        Some(2)
    );
    let custom = serde_json::json!({"tag": "v1.2.3", "platforms": ["linux/amd64"]});
    let custom_file = env.target("custom.json", custom.to_string().as_bytes());
    sigil.ok(&[
        "addhash",
        gun,
        "images/c",
        "1234",
        "--sha256",
        &hex::encode(c_digest),
        "--custom",
        custom_file.to_str().expect("utf8"),
    ]);
    let status = sigil.json(&["status", gun]);
    let staged: Vec<&str> = status
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["path"].as_str().expect("path"))
        .collect();
    assert_eq!(staged, ["a.sh", "b.bin", "images/c"]);
    let table = sigil.ok(&["status", gun]);
    assert!(
        table.contains("#    ACTION    SCOPE      TYPE      PATH"),
        "{table}"
    );
    let out = sigil.ok(&["publish", gun]);
    assert!(out.contains("Successfully published"), "{out}");
    assert!(
        sigil
            .json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );

    // The real client, with a fresh trust dir (trust on first use of sigil's root).
    let notary = env.notary("notary-reader");
    let mut want = expected(&[("a.sh", &a, "targets"), ("b.bin", &b, "targets")]);
    want.insert(
        "images/c".into(),
        (hex::encode(c_digest), 1234, "targets".into()),
    );
    assert_eq!(notary_rows(&notary.ok(&["list", gun])), want);
    assert_eq!(
        notary.ok(&["lookup", gun, "a.sh"]).trim(),
        format!("a.sh sha256:{} {}", sha256_hex(&a), a.len())
    );
    notary.ok(&[
        "verify",
        gun,
        "b.bin",
        "-i",
        b_path.to_str().expect("utf8"),
        "-q",
    ]);
    // sigil agrees with itself and with notary.
    assert_eq!(sigil_rows(&sigil.json(&["list", gun])), want);
    let table = sigil.ok(&["list", gun]);
    assert!(table.starts_with("NAME    "), "{table}");
    assert_eq!(
        sigil.ok(&["lookup", gun, "a.sh"]).trim(),
        format!("a.sh sha256:{} {}", sha256_hex(&a), a.len())
    );
    let out = sigil.run_with(&["verify", gun, "a.sh"], Some(&a_path));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.as_bytes() == &a[..],
        "verify passes the content through"
    );
    let out = sigil.run_with(&["verify", gun, "b.bin", "-q"], Some(&b_path));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "-q prints nothing on stdout");
    let tampered = env.target("tampered", &[&a[..], b"rm -rf /\n"].concat());
    let out = sigil.run_with(&["verify", gun, "a.sh"], Some(&tampered));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "tampered content must not be output");
    assert!(
        out.stderr.contains("does NOT match target \"a.sh\""),
        "{}",
        out.stderr
    );
    let err = sigil.fails(&["lookup", gun, "missing"]);
    assert!(err.contains("not found"), "{err}");
    // The custom data went out signed (notary's client verified the same targets.json above).
    let looked_up = sigil.json(&["lookup", gun, "images/c"]);
    assert_eq!(looked_up["custom"], custom, "{looked_up}");
    assert!(sigil.json(&["lookup", gun, "a.sh"]).get("custom").is_none());

    // remove, staged then published with -p; notary sees it gone.
    sigil.ok(&["remove", gun, "b.bin", "-p"]);
    want.remove("b.bin");
    assert_eq!(notary_rows(&notary.ok(&["list", gun])), want);

    // status/reset: staged changes can be dropped one by one or all at once.
    sigil.ok(&["addhash", gun, "x", "1", &hex::encode(c_digest)]);
    sigil.ok(&["addhash", gun, "y", "2", &hex::encode(c_digest)]);
    sigil.ok(&["reset", gun, "-n", "0"]);
    let left = sigil.json(&["status", gun]);
    assert_eq!(left[0]["path"], "y");
    sigil.ok(&["reset", gun, "--all"]);
    assert!(
        sigil
            .json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );

    assert_no_private_keys(&sigil.trust);
    let checked = assert_signatures_audited(&env, gun);
    assert_eq!(checked, 4, "root, targets, snapshot and timestamp");
}

#[test]
fn the_real_notary_client_publishes_and_sigil_lists_looks_up_and_verifies() {
    let env = Env::start("");
    let gun = "e2e.example/notary-made";
    let notary = env.notary("notary-writer");
    let hello = b"hello from the real notary client\n".to_vec();
    let release = b"release 1.0\n".to_vec();
    let hello_path = env.target("hello.txt", &hello);
    let release_path = env.target("release.txt", &release);
    notary.ok(&["init", gun]);
    notary.ok(&["add", gun, "hello.txt", hello_path.to_str().expect("utf8")]);
    notary.ok(&["publish", gun]);
    // A delegation with an x509 certificate, and a target signed into it by its key.
    let keys = env.dir("delegate");
    let (cert, key) = (keys.join("d.crt"), keys.join("d.key"));
    let (ok, out) = sigil_e2e::openssl(&[
        "req".as_ref(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
        "-days".as_ref(),
        "30".as_ref(),
        "-subj".as_ref(),
        "/CN=delegate".as_ref(),
    ]);
    assert!(ok, "openssl: {out}");
    notary.ok(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        cert.to_str().expect("utf8"),
        "--all-paths",
    ]);
    notary.ok(&["publish", gun]);
    notary.ok(&[
        "key",
        "import",
        key.to_str().expect("utf8"),
        "--role",
        "targets/releases",
        "--gun",
        gun,
    ]);
    notary.ok(&[
        "add",
        gun,
        "release.txt",
        release_path.to_str().expect("utf8"),
        "-r",
        "targets/releases",
    ]);
    notary.ok(&["publish", gun]);

    let sigil = env.sigil("sigil-reader");
    let want = expected(&[
        ("hello.txt", &hello, "targets"),
        ("release.txt", &release, "targets/releases"),
    ]);
    assert_eq!(notary_rows(&notary.ok(&["list", gun])), want);
    assert_eq!(sigil_rows(&sigil.json(&["list", gun])), want);
    assert_eq!(notary_rows(&sigil.ok(&["list", gun])), want);
    assert_eq!(
        sigil.ok(&["lookup", gun, "release.txt"]).trim(),
        notary.ok(&["lookup", gun, "release.txt"]).trim()
    );
    let only_releases = sigil.json(&["list", gun, "-r", "targets/releases"]);
    assert_eq!(only_releases.as_array().expect("array").len(), 1);
    let out = sigil.run_with(&["verify", gun, "hello.txt", "-q"], Some(&hello_path));
    assert!(out.status.success(), "{}", out.stderr);
    let out = sigil.run_with(&["verify", gun, "hello.txt"], Some(&release_path));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    // Delegation key ids agree with notary's (canonical ids of the certificate's key).
    let notary_delegations = notary.ok(&["delegation", "list", gun]);
    let listed = sigil.json(&["delegation", "list", gun]);
    let id = listed[0]["key_ids"][0].as_str().expect("key id");
    assert!(
        notary_delegations.contains(id),
        "{id} not in:\n{notary_delegations}"
    );
    assert_eq!(listed[0]["role"], "targets/releases");
    assert_eq!(listed[0]["paths"][0], "");
    assert_no_private_keys(&sigil.trust);
}

/// With the server down a read fails like the real notary client's ("client is offline"),
/// never falling back to possibly stale data by itself; with `--offline`, `list`, `lookup`,
/// `verify` and `delegation list` read the trust dir's cache of the last verified read,
/// verified again. A trust dir that never read the GUN, or a tampered cache, is an error; a
/// publish fails with the connection error and keeps its staged change.
#[test]
fn with_the_server_down_reads_fail_unless_offline_which_verifies_the_cache_again() {
    let env = Env::start("");
    let gun = "e2e.example/offline";
    let notary = env.notary("notary-writer");
    let hello = b"hello while the server is up\n".to_vec();
    let hello_path = env.target("hello.txt", &hello);
    notary.ok(&["init", gun]);
    notary.ok(&["add", gun, "hello.txt", hello_path.to_str().expect("utf8")]);
    notary.ok(&["publish", gun]);

    let sigil = env.sigil("sigil-reader");
    let want = expected(&[("hello.txt", &hello, "targets")]);
    assert_eq!(sigil_rows(&sigil.json(&["list", gun])), want);
    let tampered = env.sigil("sigil-tampered");
    tampered.ok(&["list", gun]);
    let never_read = env.sigil("sigil-never-read");
    let online_lookup = sigil.ok(&["lookup", gun, "hello.txt"]);
    // --offline reads the same while the server is up, without asking it.
    assert_eq!(sigil_rows(&sigil.json(&["list", gun, "--offline"])), want);

    let Env {
        server,
        daemon,
        dev,
        ..
    } = env;
    server.stop();

    // Both clients refuse to read without the server unless told to.
    let notary_out = notary.run(&["list", gun]);
    assert!(!notary_out.status.success(), "{}", notary_out.stdout);
    let out = sigil.run(&["list", gun]);
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("sigil: error: cannot reach the notary server"),
        "{}",
        out.stderr
    );

    assert_eq!(sigil_rows(&sigil.json(&["list", gun, "--offline"])), want);
    assert_eq!(
        sigil.ok(&["lookup", gun, "hello.txt", "--offline"]),
        online_lookup
    );
    let out = sigil.run_with(
        &["verify", gun, "hello.txt", "-q", "--offline"],
        Some(&hello_path),
    );
    assert!(out.status.success(), "{}", out.stderr);
    let other = dev.root().join("other.txt");
    fs::write(&other, b"not hello\n").expect("write");
    let out = sigil.run_with(&["verify", gun, "hello.txt", "--offline"], Some(&other));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        sigil.json(&["delegation", "list", gun, "--offline"]),
        serde_json::json!([]),
        "no delegations, read from the cache"
    );

    // Nothing cached: says so, names the way out.
    let err = never_read.fails(&["list", gun, "--offline"]);
    assert!(
        err.contains("no trust data for e2e.example/offline is cached"),
        "{err}"
    );

    // A cache changed on disk does not verify.
    let cached = tampered
        .trust
        .join("tuf")
        .join(gun)
        .join("metadata/targets.json");
    let text = fs::read_to_string(&cached).expect("cached targets.json");
    let forged = text.replacen("hello.txt", "hellO.txt", 1);
    assert_ne!(forged, text, "the cached targets name hello.txt");
    fs::write(&cached, forged).expect("write");
    let err = tampered.fails(&["list", gun, "--offline"]);
    assert!(
        err.contains("trust dir's cache") && err.contains("targets"),
        "{err}"
    );

    // Writes need the server: the publish fails, the change stays staged.
    sigil.ok(&["add", gun, "later.txt", hello_path.to_str().expect("utf8")]);
    let err = sigil.fails(&["publish", gun]);
    assert!(err.contains("cannot reach the notary server"), "{err}");
    let status = sigil.json(&["status", gun]);
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{status}");
    drop(daemon);
}
