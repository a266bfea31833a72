//! First trust decided by a CA pinned for the GUN prefix, as the notary client decides it.

use super::*;

/// A CA (P-384, signing with SHA-384) and a P-256 root key certificate it issued for GUN
/// `leaf_cn` with extended key usage `eku`: `NAME-ca.crt`, `NAME-leaf.crt`, and the key as
/// notary imports it (encrypted under the root passphrase), `NAME-leaf.enc.key`.
fn ca_and_root_key(dir: &Path, name: &str, leaf_cn: &str, eku: &str) {
    let ca = format!("{name}-ca");
    cert_files::self_signed_ca(dir, &ca, Curve::P384, "-sha384");
    let leaf = format!("{name}-leaf");
    let extensions = format!("{LEAF_EXTENSIONS}extendedKeyUsage={eku}\n");
    cert_files::issue(dir, &leaf, leaf_cn, &ca, &extensions, "-sha384");
    let leaf_key = format!("{leaf}.key");
    // notary imports only encrypted root keys (PKCS#8, PBKDF2 with HMAC-SHA1), under its
    // root passphrase.
    let (_, root_passphrase) = CLIENT_PASSPHRASES[0];
    openssl_in(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            &leaf_key,
            "-v2",
            "aes-256-cbc",
            "-v2prf",
            "hmacWithSHA1",
            "-passout",
            &format!("pass:{root_passphrase}"),
            "-out",
            &format!("{name}-leaf.enc.key"),
        ],
    );
}

/// `trust_pinning.ca` in config.json: a collection whose root key certificate was issued by
/// the CA pinned for the GUN's prefix is trusted on first sight, one from another CA is
/// refused naming the pin, and the real notary client with the same config agrees both ways.
#[test]
fn a_ca_pinned_for_the_gun_prefix_decides_first_trust_as_for_the_notary_client() {
    let env = Env::start("");
    let gun = "e2e.example/ca-pinned/app";
    let pki = env.dir("root-pki");
    ca_and_root_key(&pki, "good", gun, "serverAuth,codeSigning");
    ca_and_root_key(&pki, "other", "nobody", "serverAuth");
    // As `notary init` makes them: code signing only.
    let gun_code = "e2e.example/ca-pinned/code-signing-only";
    ca_and_root_key(&pki, "code", gun_code, "codeSigning");
    let path = |f: &str| pki.join(f).to_str().expect("utf8").to_owned();
    let writer = env.notary("notary-writer");
    let hello = b"signed under a CA-issued root key\n".to_vec();
    let hello_path = env.target("hello.txt", &hello);
    writer.ok(&[
        "init",
        gun,
        "--rootkey",
        &path("good-leaf.enc.key"),
        "--rootcert",
        &path("good-leaf.crt"),
    ]);
    writer.ok(&["add", gun, "hello.txt", hello_path.to_str().expect("utf8")]);
    writer.ok(&["publish", gun]);
    writer.ok(&[
        "init",
        gun_code,
        "--rootkey",
        &path("code-leaf.enc.key"),
        "--rootcert",
        &path("code-leaf.crt"),
        "-p",
    ]);

    let config = |name: &str, ca: &str| {
        let file = pki.join(format!("{name}.json"));
        let json = serde_json::json!({ "trust_pinning": { "ca": {
            "e2e.example/ca-pinned/": ca, "e2e.example/": path("other-ca.crt") } } });
        fs::write(&file, json.to_string()).expect("config");
        file.to_str().expect("utf8").to_owned()
    };
    // The longest prefix decides: the good CA, although e2e.example/ pins the other one.
    let pinned_good = config("pinned-good", &path("good-ca.crt"));
    let pinned_other = config("pinned-other", &path("other-ca.crt"));
    let want = expected(&[("hello.txt", &hello, "targets")]);

    let sigil = env.sigil("sigil-good");
    let listed = sigil.json(&["-c", &pinned_good, "list", gun]);
    assert_eq!(sigil_rows(&listed), want);
    let notary_good = env.notary("notary-good");
    assert_eq!(
        notary_rows(&notary_good.ok(&["-c", &pinned_good, "list", gun])),
        want
    );

    let refused = env.sigil("sigil-other");
    let err = refused.fails(&["-c", &pinned_other, "list", gun]);
    assert!(
        err.contains("none of its root keys is pinned")
            && err.contains("not issued by the pinned CA"),
        "{err}"
    );
    assert!(
        !refused
            .trust
            .join("tuf")
            .join(gun)
            .join("metadata/root.json")
            .exists(),
        "a refused root must not be cached"
    );
    let notary_other = env.notary("notary-other");
    let out = notary_other.run(&["-c", &pinned_other, "list", gun]);
    assert!(!out.status.success(), "notary accepted:\n{}", out.stdout);

    // A CA-issued root certificate without serverAuth does not chain, for either client.
    let pinned_code = config("pinned-code", &path("code-ca.crt"));
    let err = env
        .sigil("sigil-code")
        .fails(&["-c", &pinned_code, "list", gun_code]);
    assert!(err.contains("without serverAuth"), "{err}");
    let out = env
        .notary("notary-code")
        .run(&["-c", &pinned_code, "list", gun_code]);
    assert!(!out.status.success(), "notary accepted:\n{}", out.stdout);

    // A CA file that is not one is a configuration error naming it.
    let junk = pki.join("junk.crt");
    fs::write(&junk, "not a certificate\n").expect("write");
    let pinned_junk = config("pinned-junk", junk.to_str().expect("utf8"));
    let err = env
        .sigil("sigil-junk")
        .fails(&["-c", &pinned_junk, "list", gun]);
    assert!(
        err.contains("junk.crt") && err.contains("trust_pinning.ca"),
        "{err}"
    );
}

/// The root key on the token, certified by the organisation's CA from a request signed on the
/// token (`sigil key csr`, then `sigil init --rootcert`): the real notary client pinning that
/// CA trusts what sigil publishes, and so does sigil with a fresh trust dir; certificates for
/// another GUN or another key are refused before anything is published.
#[test]
fn a_token_root_key_certified_by_a_pinned_ca_is_trusted_by_the_notary_client() {
    let env = Env::start("");
    let gun = "e2e.example/ca-pinned/hsm-root";
    let pki = env.dir("org-pki");
    // The org CA, and a leaf it issued for an unrelated key and GUN.
    ca_and_root_key(&pki, "org", "elsewhere.example/app", "serverAuth");
    let path = |f: &str| pki.join(f).to_str().expect("utf8").to_owned();
    let certify = |public: &str, cn: &str, out: &str| {
        openssl_in(
            &pki,
            &[
                "x509",
                "-new",
                "-force_pubkey",
                public,
                "-subj",
                &format!("/CN={}", cn.replace('/', "\\/")),
                "-CA",
                "org-ca.crt",
                "-CAkey",
                "org-ca.key",
                "-sha384",
                "-days",
                "20",
                "-extfile",
                "org-leaf.ext",
                "-out",
                out,
            ],
        );
    };
    let sigil = env.sigil("sigil-owner");
    let root_key = sigil
        .ok(&["key", "generate", "--role", "root", "--gun", gun])
        .trim()
        .to_owned();
    // A certificate request signed on the token; OpenSSL checks it and the CA issues from it.
    fs::write(
        pki.join("hsm-root.csr"),
        sigil.ok(&["key", "csr", &root_key]),
    )
    .expect("csr");
    let verified = Command::new("openssl")
        .args([
            "req",
            "-in",
            "hsm-root.csr",
            "-verify",
            "-noout",
            "-subject",
        ])
        .current_dir(&pki)
        .output()
        .expect("openssl req");
    let said = String::from_utf8_lossy(&verified.stdout).into_owned()
        + &String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{said}");
    assert!(
        said.contains("verify OK") && said.contains(gun),
        "the request verifies and names the GUN: {said}"
    );
    cert_files::sign_request(
        &pki,
        "hsm-root.csr",
        "org-ca",
        "org-leaf.ext",
        "-sha384",
        "hsm-root.crt",
    );
    openssl_in(
        &pki,
        &[
            "ec",
            "-in",
            "org-leaf.key",
            "-pubout",
            "-out",
            "stranger.pub",
        ],
    );
    certify("stranger.pub", gun, "stranger.crt");

    // Refused before anything reaches the server.
    let err = sigil.fails(&["init", gun, "--rootcert", &path("org-leaf.crt")]);
    assert!(err.contains("does not match GUN"), "{err}");
    let err = sigil.fails(&[
        "init",
        gun,
        "--root-key",
        &root_key,
        "--rootcert",
        &path("stranger.crt"),
    ]);
    assert!(err.contains("certifies another key"), "{err}");
    let err = sigil.fails(&["init", gun, "--rootcert", &path("stranger.crt")]);
    assert!(err.contains("no sigild key you may use"), "{err}");
    assert_eq!(sigil.run(&["list", gun]).status.code(), Some(3));

    // The key is found by the certificate alone.
    let out = sigil.run(&["init", gun, "--rootcert", &path("hsm-root.crt"), "-p"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains(&root_key), "{}", out.stderr);
    let hello = b"signed under the org CA's root\n".to_vec();
    let hello_path = env.target("hello.txt", &hello);
    sigil.ok(&[
        "add",
        gun,
        "hello.txt",
        hello_path.to_str().expect("utf8"),
        "-p",
    ]);

    // The published root's key is the CA-issued certificate of the token's key.
    let root = env.root(gun);
    let keys = root.body().role_keys(RoleType::Root);
    assert_eq!(keys.len(), 1);
    let chain = keys[0].1.certificate_chain().expect("certificate");
    let org_ca = sigil_tuf::x509::Certificate::from_pem_bundle(
        &fs::read_to_string(pki.join("org-ca.crt")).expect("ca"),
    )
    .expect("ca parses");
    assert_eq!(chain[0].chains_to(&[], &org_ca, SystemTime::now()), Ok(()));

    let pinned = pki.join("pinned.json");
    let json =
        serde_json::json!({ "trust_pinning": { "ca": { "e2e.example/": path("org-ca.crt") } } });
    fs::write(&pinned, json.to_string()).expect("config");
    let pinned = pinned.to_str().expect("utf8");
    let want = expected(&[("hello.txt", &hello, "targets")]);
    let notary = env.notary("notary-pinned");
    assert_eq!(notary_rows(&notary.ok(&["-c", pinned, "list", gun])), want);
    let fresh = env.sigil("sigil-pinned");
    assert_eq!(sigil_rows(&fresh.json(&["-c", pinned, "list", gun])), want);
    assert_signatures_audited(&env, gun);
}
