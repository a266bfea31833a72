//! Issue 12, L4: a `sigil:` label on a PKCS#11 token is a name anyone holding the user PIN can
//! write. A key imported under one (CKA_LOCAL false), or generated extractable or not
//! sensitive, stays out of sigild's key ring and is logged; keys sigild generated are kept.

use std::process::{Command, Stdio};

use sigil_e2e::{DevDir, openssl};
use sigil_proto::sigil_v1 as pb;

fn pkcs11_tool(dir: &DevDir, args: &[&str]) -> String {
    let output = Command::new("pkcs11-tool")
        .args(["--module", sigil_e2e::SOFTHSM_MODULE, "--token-label"])
        .arg(sigil_e2e::DEV_TOKEN_LABEL)
        .args(["--login", "--pin"])
        .arg(dir.user_pin())
        .args(args)
        .env("SOFTHSM2_CONF", dir.softhsm_conf())
        .stdin(Stdio::null())
        .output()
        .expect("running pkcs11-tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "pkcs11-tool {args:?}: {text}");
    text
}

fn ossl(args: &[&str]) {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let (ok, text) = openssl(&args);
    assert!(ok, "openssl {args:?}: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_imported_or_extractable_under_a_sigil_label_are_left_out() {
    let dir = DevDir::new();
    dir.init();
    let work = dir.root().join("foreign");
    std::fs::create_dir_all(&work).expect("work dir");
    let path = |name: &str| work.join(name).to_str().expect("UTF-8").to_owned();

    // sigild's own key, for comparison.
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let own = client
        .generate("targets", "example.com/own", pb::Algorithm::EcdsaP256)
        .await;
    drop(client);
    assert!(daemon.stop().success());

    // A key made outside the token, imported (both halves) under a sigil label.
    ossl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &path("k.pem"),
    ]);
    ossl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &path("k.pem"),
        "-outform",
        "DER",
        "-out",
        &path("k.der"),
    ]);
    ossl(&[
        "ec",
        "-in",
        &path("k.pem"),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        &path("k.pub.der"),
    ]);
    let imported = "sigil:root:example.com/imported";
    for (file, kind) in [("k.der", "privkey"), ("k.pub.der", "pubkey")] {
        pkcs11_tool(
            &dir,
            &[
                "--write-object",
                &path(file),
                "--type",
                kind,
                "--id",
                "5151",
                "--label",
                imported,
                "--usage-sign",
                "--sensitive",
            ],
        );
    }
    // A key generated on the token, but extractable.
    pkcs11_tool(
        &dir,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--id",
            "5252",
            "--label",
            "sigil:targets:example.com/extractable",
            "--usage-sign",
            "--sensitive",
            "--extractable",
        ],
    );

    let daemon = dir.start();
    let mut client = daemon.client().await;
    let listed: Vec<String> = client
        .list()
        .await
        .into_iter()
        .map(|k| format!("{}:{}", k.role, k.gun))
        .collect();
    assert_eq!(
        listed,
        vec!["targets:example.com/own".to_owned()],
        "only sigild's own key is in the ring\n{}",
        daemon.stderr()
    );
    let log = daemon.stderr();
    for (id, why) in [("5151", "local=false"), ("5252", "extractable=true")] {
        assert!(
            log.lines().any(|l| l.contains("left out of the key ring")
                && l.contains(id)
                && l.contains(why)),
            "no log line for key {id} ({why}):\n{log}"
        );
    }
    assert!(
        client
            .sign_digest(&own.key_id, &[7u8; 32], pb::SignatureEncoding::Raw)
            .await
            .is_ok()
    );
    drop(client);
    assert!(daemon.stop().success());
}
