//! Issue 5, test 5: a Notary collection whose root key is on a YubiKey and whose targets and
//! snapshot keys are on a PKCS#11 token, both behind one sigild.
//!
//! One sigild serves two backends: `yubikey` (the virtual YubiKey: vyubikey + pcscd, through
//! the `yubikey` PIV backend) and `softhsm` (a SoftHSM token through the `pkcs11` backend).
//! The root key is generated on the card with touch "always" (`sigil key generate --backend
//! yubikey --role root`); `sigil init GUN --root-key KEY --backend softhsm -p` then makes the
//! targets and snapshot keys on SoftHSM and publishes to the real notary-server 0.7.0, which
//! takes its timestamp key from the real notary-signer (loopback, throwaway PKI). Touches are
//! given by the card's control socket (`auto-touch on`) while sigil signs. Under
//! `make test-yubikey` the same test runs on a physical YubiKey (`TestYubikey`): the person at
//! the keyboard touches it while asked to, and the attestation is checked up to its f9
//! certificate.
//!
//! The real `notary` client, from a fresh trust dir, lists and verifies what was published;
//! `sigil list` and `sigil verify` agree. The root key in the published root.json is checked
//! against what the card itself says: the key in the card's attestation certificate (which
//! chains to the card's attestation CA), whose SHA-256 SPKI is sigild's key id, and the audit
//! log shows the root signatures made on the `yubikey` backend. With the touch control off,
//! the same key refuses to sign: the touch policy is the card's, not a flag.
//!
//! Needs root and what `tests/yubikey/` and the notary tests need (`scripts/deps.sh`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sigil_e2e::notary::{
    CommandOutput, NotaryServer, NotarySigner, Pki, SignedDoc, TrustService, read_audit_lines,
    require_notary, verify_notary_signature,
};
use sigil_e2e::yubikey::{TestYubikey, spki_der, spki_sha256};
use sigil_e2e::{DEV_BACKEND, DevDir, openssl, sha256_hex};
use sigil_tuf::Metadata;
use sigil_tuf::schema::Root;

const GUN: &str = "e2e.example/yubikey-root";

/// The `sigil` binary, built once per test process from the current sources.
fn sigil_exe() -> &'static Path {
    sigil_e2e::sigil_cli()
}

/// `sigil` with its own HOME and trust dir, pointed at sigild and notary-server.
struct Sigil {
    socket: PathBuf,
    server: String,
    ca: PathBuf,
    home: PathBuf,
}

impl Sigil {
    fn run_with(&self, args: &[&str], stdin: Option<&Path>) -> CommandOutput {
        let output = Command::new(sigil_exe())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("SIGIL_SOCKET", &self.socket)
            .current_dir(&self.home)
            .arg("-s")
            .arg(&self.server)
            .arg("--tlscacert")
            .arg(&self.ca)
            .arg("-d")
            .arg(self.home.join("trust"))
            .args(args)
            .stdin(match stdin {
                Some(p) => Stdio::from(fs::File::open(p).expect("stdin file")),
                None => Stdio::null(),
            })
            .output()
            .unwrap_or_else(|e| panic!("running sigil {args:?}: {e}"));
        CommandOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn ok(&self, args: &[&str]) -> CommandOutput {
        let out = self.run_with(args, None);
        assert!(
            out.status.success(),
            "sigil {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr
        );
        out
    }
}

/// One attestation extension (`1.3.6.1.4.1.41482.3.<n>`) as OpenSSL dumps it, in hex.
fn yubico_extension(cert: &Path, n: u32) -> String {
    let (ok, asn1) = openssl(&["asn1parse".as_ref(), "-in".as_ref(), cert.as_os_str()]);
    assert!(ok, "{asn1}");
    let oid = format!(":1.3.6.1.4.1.41482.3.{n}");
    asn1.lines()
        .skip_while(|l| !l.ends_with(&oid))
        .nth(1)
        .and_then(|l| l.split("[HEX DUMP]:").nth(1))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn root_on_the_yubikey_targets_on_softhsm_published_to_notary_and_verified_by_both_clients() {
    require_notary();
    let card = TestYubikey::start(5_400_005, "--touch-timeout 3");
    let dev = DevDir::new();
    dev.init();

    // sigild with both backends: the dev SoftHSM token ("softhsm") and the YubiKey.
    let pin_file = dev.path().join("yubikey.pin");
    sigil_e2e::write_file(&pin_file, format!("{}\n", card.pin()), 0o600);
    let config = dev
        .config()
        .append(&format!(
            "[[backend]]\nname = \"yubikey\"\ntype = \"yubikey\"\nserial = {serial}\n\
             pin_file = {pin}\ntouch_root = \"always\"\n\
             allow_default_management_key = true\n",
            serial = card.serial,
            pin = sigil_e2e::toml_path(&pin_file),
        ))
        .write("sigild-two-backends.toml");
    let daemon = dev
        .sigild_wrapped(&card.wrapper(), &config)
        .env("SOFTHSM2_CONF", dev.softhsm_conf())
        .spawn();

    // The real notary-signer (memory storage) as notary-server's trust service.
    let pki = Pki::new(&dev.root().join("pki"), "sigil-yubikey-e2e");
    let signer = NotarySigner::start(&dev.root().join("notary-signer"), &pki);
    let server = NotaryServer::start(
        &dev.root().join("notary-server"),
        &pki,
        &TrustService::remote(signer.port()),
    );
    let home = dev.root().join("admin");
    fs::create_dir_all(&home).expect("admin home");
    let sigil = Sigil {
        socket: daemon.socket().to_owned(),
        server: server.url(),
        ca: server.ca().to_owned(),
        home,
    };

    // The root key, generated on the YubiKey.
    let root_id = sigil
        .ok(&[
            "key",
            "generate",
            "--backend",
            "yubikey",
            "--role",
            "root",
            "--gun",
            GUN,
        ])
        .stdout
        .trim()
        .to_owned();
    assert_eq!(root_id.len(), 64, "not a key id: {root_id:?}");

    // What the card says about it: the attestation certificate of the slot that holds it
    // chains to the card's attestation CA, carries the same public key, and records
    // touch "always" (and PIN "always" in 9c).
    let slot = card
        .slot_of(&root_id)
        .unwrap_or_else(|| panic!("no PIV slot of the card holds the root key {root_id}"));
    if !card.is_physical() {
        assert_eq!(slot, "9c", "a fresh card's root key goes to 9c");
    }
    let attest = card.attest(&slot, &dev.root().join("root-attest.pem"));
    assert_eq!(
        spki_sha256(&attest),
        root_id,
        "the attested key in slot {slot} is not sigild's root key"
    );
    let policy = yubico_extension(&attest, 8);
    assert!(
        policy.len() == 4 && policy.ends_with("02"),
        "attested PIN/touch policy of slot {slot} is {policy:?}, not touch always"
    );
    if slot == "9c" {
        assert_eq!(policy, "0302", "9c: PIN always, touch always");
    }

    // init with that root key; targets and snapshot are generated on SoftHSM. Every root
    // signature needs a touch: the card's control gives them while sigil runs.
    card.auto_touch(true);
    let started = Instant::now();
    let out = sigil.ok(&[
        "init",
        GUN,
        "--root-key",
        &root_id,
        "--backend",
        DEV_BACKEND,
        "-p",
    ]);
    assert!(out.stdout.contains("Successfully published"), "{out:?}");
    eprintln!("init -p with the root on the card: {:?}", started.elapsed());

    // add a target, publish.
    let content = sigil_e2e::pseudo_random_bytes("yubikey-root-target", 20_000);
    let file = dev.root().join("app.tar");
    fs::write(&file, &content).expect("target file");
    sigil.ok(&[
        "add",
        GUN,
        "app.tar",
        file.to_str().expect("utf-8 path"),
        "-p",
    ]);
    card.auto_touch(false);

    // Keys: root on the YubiKey, targets and snapshot on SoftHSM.
    let keys: serde_json::Value =
        serde_json::from_str(&sigil.ok(&["--json", "key", "list"]).stdout).expect("JSON");
    let backends: BTreeMap<String, (String, String)> = keys
        .as_array()
        .expect("key list")
        .iter()
        .filter(|k| k["gun"] == GUN)
        .map(|k| {
            (
                k["role"].as_str().expect("role").to_owned(),
                (
                    k["key_id"].as_str().expect("key_id").to_owned(),
                    k["backend"].as_str().expect("backend").to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(
        backends.get("root"),
        Some(&(root_id.clone(), "yubikey".to_owned())),
        "{keys:#}"
    );
    for role in ["targets", "snapshot"] {
        assert_eq!(
            backends.get(role).map(|(_, b)| b.as_str()),
            Some(DEV_BACKEND),
            "{role} key not on SoftHSM: {keys:#}"
        );
    }

    // The published root names exactly the card's key for role root (in its ecdsa-x509
    // certificate), the SoftHSM keys for targets and snapshot, and is signed by the card's key.
    let root_bytes = server.metadata(GUN, "root");
    let root: Metadata<Root> = Metadata::from_bytes("root", root_bytes.clone()).expect("root");
    let key_of = |role: &str| -> Vec<String> {
        root.body().roles[role]
            .keyids
            .iter()
            .map(|id| {
                root.body().keys[id]
                    .to_public_key()
                    .expect("public key")
                    .key_id()
            })
            .collect()
    };
    assert_eq!(key_of("root"), std::slice::from_ref(&root_id));
    assert_eq!(key_of("targets"), [backends["targets"].0.clone()]);
    assert_eq!(key_of("snapshot"), [backends["snapshot"].0.clone()]);
    // The signature on root.json verifies (p256, not sigil's code) with the public key in the
    // root certificate, as OpenSSL extracts it, and that is the card's key.
    let doc = SignedDoc::parse(&root_bytes);
    let root_role = doc.role_keys("root");
    assert_eq!(root_role.len(), 1, "one root key");
    assert_eq!(root_role[0].keytype, "ecdsa-x509");
    let cert = dev.root().join("root-in-metadata.pem");
    fs::write(&cert, &root_role[0].public).expect("root certificate");
    let cert_spki = spki_der(&cert);
    assert_eq!(sha256_hex(&cert_spki), root_id, "root certificate key");
    let by_root: Vec<_> = doc
        .signatures
        .iter()
        .filter(|s| s.key_id == root_role[0].id)
        .collect();
    assert_eq!(
        by_root.len(),
        1,
        "root.json signatures: {:?}",
        doc.signatures
    );
    verify_notary_signature(
        "ecdsa",
        &cert_spki,
        &by_root[0].method,
        &doc.signed_bytes,
        &by_root[0].sig,
    )
    .unwrap_or_else(|e| panic!("root.json's root signature does not verify: {e}"));

    // sigild's audit log: the root signatures were made on the yubikey backend, the others
    // on SoftHSM, and the root signature over the published root.json is one of them.
    let audit = read_audit_lines(&dev.audit_log());
    let signs: Vec<_> = audit
        .iter()
        .filter(|l| l.op == "sign" && l.outcome == "ok")
        .collect();
    let root_signs: Vec<_> = signs.iter().filter(|l| l.key_id == root_id).collect();
    assert!(
        root_signs.len() >= 2,
        "expected the root certificate and root.json signed on the card: {signs:#?}"
    );
    assert!(root_signs.iter().all(|l| l.backend == "yubikey"));
    assert!(
        root_signs
            .iter()
            .any(|l| l.sha256.as_deref() == Some(sha256_hex(&doc.signed_bytes).as_str())),
        "the published root.json was not signed through sigild's yubikey backend"
    );
    assert!(
        signs
            .iter()
            .filter(|l| l.key_id != root_id)
            .all(|l| l.backend == DEV_BACKEND),
        "{signs:#?}"
    );

    // The real notary client, fresh trust dir (TOFU on the card-signed root): list, verify.
    let notary = server.client(&dev.root().join("notary-reader"));
    let list = notary.ok(&["list", GUN]);
    let row: Vec<&str> = list
        .lines()
        .find(|l| l.starts_with("app.tar "))
        .unwrap_or_else(|| panic!("notary list does not show app.tar:\n{list}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "app.tar",
            sha256_hex(&content).as_str(),
            content.len().to_string().as_str(),
            "targets"
        ]
    );
    notary.ok(&[
        "verify",
        GUN,
        "app.tar",
        "-i",
        file.to_str().expect("utf-8 path"),
        "-q",
    ]);
    let tampered = dev.root().join("tampered.tar");
    fs::write(&tampered, [&content[..], b"!"].concat()).expect("tampered file");
    let out = notary.run(&[
        "verify",
        GUN,
        "app.tar",
        "-i",
        tampered.to_str().expect("utf-8 path"),
        "-q",
    ]);
    assert!(!out.status.success(), "notary verified tampered content");

    // sigil agrees, from its own fresh trust dir.
    let reader_home = dev.root().join("sigil-reader");
    fs::create_dir_all(&reader_home).expect("reader home");
    let reader = Sigil {
        home: reader_home,
        ..sigil
    };
    let listed: serde_json::Value =
        serde_json::from_str(&reader.ok(&["--json", "list", GUN]).stdout).expect("JSON");
    let entry = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["name"] == "app.tar")
        .unwrap_or_else(|| panic!("sigil list does not show app.tar: {listed:#}"));
    assert_eq!(entry["sha256"], sha256_hex(&content));
    assert_eq!(entry["length"], content.len());
    let out = reader.run_with(&["verify", GUN, "app.tar", "-q"], Some(&file));
    assert!(out.status.success(), "sigil verify: {}", out.stderr);
    let out = reader.run_with(&["verify", GUN, "app.tar", "-q"], Some(&tampered));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);

    // Without a touch the card does not sign with the root key.
    card.no_touch();
    let message = dev.root().join("untouched.txt");
    fs::write(&message, b"no touch, no signature").expect("message");
    let started = Instant::now();
    let out = reader.run_with(
        &["sign", "--key", &root_id, message.to_str().expect("utf-8")],
        None,
    );
    assert!(
        !out.status.success(),
        "the root key signed without a touch: {out:?}"
    );
    assert!(out.stderr.contains("touch"), "{}", out.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2), "{out:?}");

    server.stop();
    signer.stop();
    let log = daemon.stderr();
    assert!(daemon.stop().success(), "{log}");
}
