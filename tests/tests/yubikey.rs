//! The `yubikey` backend through sigild on a virtual YubiKey (vyubikey: pcscd + vpcd + a PIV
//! card answering as a YubiKey 5.4.3): on-device root key with touch "always", signatures
//! checked by OpenSSL, the key ring rebuilt from the device after a restart, a wrong PIN never
//! retried, the last PIN try never spent, hot-plug without restart, and a touch timeout.
//!
//! Part of `make test`. Needs root, pcscd, vsmartcard-vpcd, opensc, yubico-piv-tool and the
//! vyubikey workspace member (built with libclang-dev); `scripts/deps.sh` installs them, and
//! without them the tests fail with the install command. `make test-vyubikey` runs only these.
//!
//! `make test-yubikey YUBIKEY_SERIAL=N` runs the same tests against that PHYSICAL YubiKey
//! (through the system pcscd; touches, unplugging and plugging in are asked for on the
//! terminal). Where a fresh virtual card pins down a slot (9c, then 82), a physical device that
//! already holds keys gets the first free slot instead, and the tests check that.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sigil_e2e::yubikey::{TestYubikey, write_yubikey_config};
use sigil_e2e::{Client, Daemon, DevDir, openssl, parse_public, sha256, write_file, write_pem};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

const GUN: &str = "example.com/yubikey";

/// A sigild configuration with one `yubikey` backend for `card` and an owner policy.
fn write_config(dir: &DevDir, card: &TestYubikey, pin: &str, backend_extra: &str) -> PathBuf {
    write_config_with(dir, card, Some(pin), backend_extra, "")
}

/// The same, with the PIN file optional and `extra` TOML appended (more rules, `[[require]]`).
/// A fresh virtual card keeps the factory-default management key, which these tests allow.
fn write_config_with(
    dir: &DevDir,
    card: &TestYubikey,
    pin: Option<&str>,
    backend_extra: &str,
    extra: &str,
) -> PathBuf {
    let backend_extra = format!("allow_default_management_key = true\n{backend_extra}");
    write_yubikey_config(dir, card, pin, &backend_extra, extra)
}

/// `attestation_roots = [<the card's test attestation CA>]`.
fn roots_line(card: &TestYubikey) -> String {
    format!("attestation_roots = [{:?}]", card.attestation_root())
}

/// Runs `sigil --socket SOCKET ARGS` and returns (success, stdout, stderr).
fn sigil(dir: &DevDir, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(sigil_e2e::sigil_cli())
        .arg("--socket")
        .arg(dir.socket())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sigil");
    if let Some(text) = stdin {
        use std::io::Write as _;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(text.as_bytes()).expect("writing stdin");
    }
    let output = child.wait_with_output().expect("sigil output");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn attest(client: &mut Client, key_id: &str) -> Result<pb::AttestKeyResponse, tonic::Status> {
    client
        .keys
        .attest_key(pb::AttestKeyRequest {
            key_id: key_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn start(dir: &DevDir, card: &TestYubikey, config: &Path) -> Daemon {
    dir.sigild_wrapped(&card.wrapper(), config).spawn()
}

async fn health(client: &mut Client) -> ServingStatus {
    let resp = client
        .health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
    resp.into_inner().status()
}

async fn wait_health(client: &mut Client, want: ServingStatus, daemon: &Daemon) {
    let started = Instant::now();
    while health(client).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "health never became {want:?}:\n{}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn generate_root(client: &mut Client) -> pb::PublicKey {
    client.generate("root", GUN, pb::Algorithm::EcdsaP256).await
}

/// Signs a digest (RAW) and checks it with the key's public half.
async fn sign_and_check(client: &mut Client, key: &pb::PublicKey, text: &str) {
    let digest = sha256(text.as_bytes());
    let resp = client
        .sign_digest(&key.key_id, &digest, pb::SignatureEncoding::Raw)
        .await
        .unwrap_or_else(|s| panic!("sign: {s:?}"));
    assert_eq!(resp.signature.len(), 64, "raw r||s");
    parse_public(key)
        .verify_digest(&digest, &resp.signature)
        .expect("the YubiKey's signature verifies");
}

fn status_message(result: Result<pb::SignResponse, tonic::Status>, code: Code) -> String {
    match result {
        Ok(_) => panic!("expected {code:?}, the signature was made"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status.message().to_owned()
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn root_key_on_the_yubikey_touch_always_verifies_with_openssl_and_survives_restart() {
    let card = TestYubikey::start(5_400_001, "--touch-timeout 5");
    let dir = DevDir::new();
    let config = write_config(&dir, &card, card.pin(), "");
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;

    let key = generate_root(&mut client).await;
    assert_eq!(key.role, "root");
    assert_eq!(key.backend, "yubikey");

    // On the device, in slot 9c on a fresh card (a physical one that already holds keys: the
    // first free slot), labelled with role and GUN.
    let slot = card
        .slot_of(&key.key_id)
        .unwrap_or_else(|| panic!("no slot holds {}\n{}", key.key_id, card.logs()));
    if !card.is_physical() {
        assert_eq!(slot, "9c", "a fresh card's first root key goes to 9c");
    }
    let out = card.piv_tool(&["-a", "read-certificate", "-s", &slot]);
    assert!(out.status.success(), "read-certificate {slot}: {out:?}");
    let cert = dir.root().join("root.crt.pem");
    write_file(&cert, &out.stdout, 0o644);
    let (ok, subject) = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-subject".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(
        ok && subject.contains(&format!("sigil:root:{GUN}")),
        "{subject}"
    );

    // Generated on the device with touch "always": the attestation (checked by OpenSSL up to
    // the card's attestation CA) says touch always (02), PIN always (03) in 9c, the PIV
    // default "once" (02) in a retired slot.
    let attest = card.attest(&slot, &dir.root().join("root-attest.pem"));
    let (ok, asn1) = openssl(&["asn1parse".as_ref(), "-in".as_ref(), attest.as_os_str()]);
    assert!(ok, "{asn1}");
    let policy = asn1
        .lines()
        .skip_while(|l| !l.ends_with(":1.3.6.1.4.1.41482.3.8"))
        .nth(1)
        .and_then(|l| l.split("[HEX DUMP]:").nth(1))
        .unwrap_or_default();
    let want = if slot == "9c" { "0302" } else { "0202" };
    assert_eq!(policy, want, "policy extension of slot {slot}:\n{asn1}");
    let attested_pub = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-pubkey".as_ref(),
        "-in".as_ref(),
        attest.as_os_str(),
    ]);
    assert_eq!(attested_pub.1.trim(), parse_public(&key).to_pem().trim());

    // Sign a message (DER) with a touch, verify with OpenSSL.
    let message = b"sigil: root metadata version 1 for example.com/yubikey".to_vec();
    card.touch();
    let resp = client
        .sign_message(&key.key_id, &message, pb::SignatureEncoding::Der)
        .await
        .unwrap_or_else(|s| panic!("sign with touch: {s:?}\n{}", card.logs()));
    let (msg, sig, pem) = (
        dir.root().join("msg"),
        dir.root().join("msg.sig"),
        dir.root().join("root.pem"),
    );
    std::fs::write(&msg, &message).expect("msg");
    std::fs::write(&sig, &resp.signature).expect("sig");
    write_pem(&pem, &parse_public(&key));
    let (ok, text) = openssl(&[
        "dgst".as_ref(),
        "-sha256".as_ref(),
        "-verify".as_ref(),
        pem.as_os_str(),
        "-signature".as_ref(),
        sig.as_os_str(),
        msg.as_os_str(),
    ]);
    assert!(ok && text.contains("Verified OK"), "{text}");

    // RAW over a digest, verified by the tuf crate.
    card.touch();
    sign_and_check(&mut client, &key, "second").await;

    // A restart rebuilds the key ring from the device.
    drop(client);
    assert!(daemon.stop().success());
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let keys = client.list().await;
    let found = keys
        .iter()
        .find(|k| k.key_id == key.key_id)
        .unwrap_or_else(|| panic!("root key not rebuilt after restart: {keys:?}"));
    assert_eq!((found.role.as_str(), found.gun.as_str()), ("root", GUN));
    card.touch();
    sign_and_check(&mut client, &key, "after restart").await;

    // A second root key does not overwrite the first: it goes to a retired slot (82 on a
    // fresh card).
    let second = generate_root(&mut client).await;
    assert_ne!(second.key_id, key.key_id);
    let second_slot = card
        .slot_of(&second.key_id)
        .unwrap_or_else(|| panic!("no slot holds the second root key"));
    assert_ne!(second_slot, slot);
    assert_ne!(second_slot, "9c");
    if !card.is_physical() {
        assert_eq!(second_slot, "82");
    }
    assert_eq!(card.slot_of(&key.key_id).as_deref(), Some(slot.as_str()));
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_pin_fails_precondition_naming_retries_and_is_never_retried() {
    let card = TestYubikey::start(5_400_002, "");
    // A PIN the device does not have.
    let wrong = if card.pin() == "654321" {
        "654320"
    } else {
        "654321"
    };
    let dir = DevDir::new();
    let config = write_config(&dir, &card, wrong, "touch_root = \"never\"");
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    // Generating needs the management key, not the PIN.
    let key = generate_root(&mut client).await;
    // 3 on a fresh card; whatever the device's maximum is on a physical one.
    let full = card.pin_tries();
    assert!(full >= 3, "{full} PIN tries");
    if !card.is_physical() {
        assert_eq!(full, 3);
    }
    let left = format!("{} tries left", full - 1);

    let digest = sha256(b"x");
    let first = status_message(
        client
            .sign_digest(&key.key_id, &digest, pb::SignatureEncoding::Raw)
            .await,
        Code::FailedPrecondition,
    );
    assert!(first.contains(&left), "{first}");
    assert!(first.contains("not retried"), "{first}");
    assert_eq!(card.pin_tries(), full - 1);

    // Never offered again.
    for _ in 0..3 {
        let again = status_message(
            client
                .sign_digest(&key.key_id, &digest, pb::SignatureEncoding::Raw)
                .await,
            Code::FailedPrecondition,
        );
        assert!(again.contains(&left), "{again}");
    }
    assert_eq!(
        card.pin_tries(),
        full - 1,
        "the daemon retried the wrong PIN"
    );
    assert!(!daemon.stderr().contains(wrong), "PIN in the log");
    drop(client);
    assert!(daemon.stop().success());

    // With one try left, the daemon refuses to spend it. (The tries are spent here with
    // yubico-piv-tool; TestYubikey restores a physical device's counter with the right PIN.)
    while card.pin_tries() > 1 {
        let out = card.piv_tool(&["-a", "verify-pin", "-P", wrong]);
        assert!(!out.status.success());
    }
    assert_eq!(card.pin_tries(), 1);
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let last = status_message(
        client
            .sign_digest(&key.key_id, &digest, pb::SignatureEncoding::Raw)
            .await,
        Code::FailedPrecondition,
    );
    assert!(last.contains("only one more PIN try"), "{last}");
    assert_eq!(card.pin_tries(), 1, "the daemon spent the last PIN try");
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_card_is_unavailable_and_not_serving_then_works_again_without_restart() {
    let card = TestYubikey::start(5_400_003, "");
    let dir = DevDir::new();
    let config = write_config(&dir, &card, card.pin(), "touch_root = \"never\"");
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let key = generate_root(&mut client).await;
    sign_and_check(&mut client, &key, "before removal").await;
    wait_health(&mut client, ServingStatus::Serving, &daemon).await;

    card.remove();
    let msg = status_message(
        client
            .sign_digest(&key.key_id, &sha256(b"gone"), pb::SignatureEncoding::Raw)
            .await,
        Code::Unavailable,
    );
    assert!(msg.contains("not present"), "{msg}");
    wait_health(&mut client, ServingStatus::NotServing, &daemon).await;

    card.insert();
    // The very next request reopens the device.
    sign_and_check(&mut client, &key, "after re-insert").await;
    wait_health(&mut client, ServingStatus::Serving, &daemon).await;
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn touch_not_given_in_time_is_a_clear_error_and_a_touch_then_signs() {
    let card = TestYubikey::start(5_400_004, "--touch-timeout 2");
    let dir = DevDir::new();
    let config = write_config(&dir, &card, card.pin(), "");
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let key = generate_root(&mut client).await;

    card.no_touch();
    let started = Instant::now();
    let msg = status_message(
        client
            .sign_digest(
                &key.key_id,
                &sha256(b"untouched"),
                pb::SignatureEncoding::Raw,
            )
            .await,
        Code::FailedPrecondition,
    );
    assert!(msg.contains("touch not given in time"), "{msg}");
    assert!(msg.contains(&card.serial.to_string()), "{msg}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    // Health stays SERVING: a missing touch is not a missing device.
    assert_eq!(health(&mut client).await, ServingStatus::Serving);

    card.touch();
    sign_and_check(&mut client, &key, "touched").await;
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn attestation_is_verified_at_generate_recorded_and_printed_as_a_chain_openssl_accepts() {
    let card = TestYubikey::start(5_400_005, "");
    let dir = DevDir::new();
    let config = write_config(&dir, &card, card.pin(), &roots_line(&card));
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;

    let root = generate_root(&mut client).await;
    assert_eq!(root.backend_type, "yubikey");
    assert_eq!(root.device_serial, card.serial);
    assert!(root.attested, "{root:?}\n{}", daemon.stderr());
    assert_eq!(
        (root.pin_policy.as_str(), root.touch_policy.as_str()),
        ("always", "always")
    );
    let other = client
        .generate("targets", GUN, pb::Algorithm::EcdsaP256)
        .await;
    assert!(other.attested);
    assert_eq!(other.touch_policy, "never");

    // The API: chain leaf first, verified, policies read back, the leaf's key is the key.
    let att = attest(&mut client, &root.key_id).await.expect("AttestKey");
    assert!(att.verified, "{att:?}");
    assert!(att.verify_error.is_empty());
    assert_eq!(att.chain_der.len(), 2);
    assert_eq!(
        (att.pin_policy.as_str(), att.touch_policy.as_str()),
        ("always", "always")
    );
    assert_eq!(att.device_serial, card.serial);

    // The CLI prints a PEM chain that OpenSSL verifies against the test attestation CA.
    let (ok, stdout, stderr) = sigil(&dir, &["key", "attest", &root.key_id], None);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("touch policy always") && stderr.contains("verified"),
        "{stderr}"
    );
    let blocks: Vec<String> = stdout
        .split_inclusive("-----END CERTIFICATE-----\n")
        .map(str::to_owned)
        .collect();
    assert_eq!(blocks.len(), 2, "{stdout}");
    let (leaf, f9) = (dir.root().join("leaf.pem"), dir.root().join("f9.pem"));
    write_file(&leaf, &blocks[0], 0o644);
    write_file(&f9, &blocks[1], 0o644);
    let ca = card.attestation_root();
    let (ok, text) = openssl(&[
        "verify".as_ref(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
        "-untrusted".as_ref(),
        f9.as_os_str(),
        leaf.as_os_str(),
    ]);
    assert!(ok && text.contains(": OK"), "{text}");
    let attested_pub = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-pubkey".as_ref(),
        "-in".as_ref(),
        leaf.as_os_str(),
    ]);
    assert_eq!(attested_pub.1.trim(), parse_public(&root).to_pem().trim());
    let (ok, json, stderr) = sigil(&dir, &["--json", "key", "attest", &root.key_id], None);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["verified"], true);
    assert_eq!(json["touch_policy"], "always");
    assert_eq!(json["pin_policy"], "always");
    assert_eq!(json["chain"].as_array().map(Vec::len), Some(2));

    // Recorded on the device with the label, and verified again after a restart.
    let out = card.piv_tool(&["-a", "read-certificate", "-s", "9c"]);
    let label = dir.root().join("label.pem");
    write_file(&label, &out.stdout, 0o644);
    let (_, subject) = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-subject".as_ref(),
        "-in".as_ref(),
        label.as_os_str(),
    ]);
    assert!(
        subject.contains("sigil-attestation:pin=always,touch=always,verified=yes"),
        "{subject}"
    );
    drop(client);
    assert!(daemon.stop().success());
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let again = client
        .public(&root.key_id)
        .await
        .expect("public after restart");
    assert!(
        again.attested && again.touch_policy == "always",
        "{again:?}"
    );

    // Without roots the policies are still read, but nothing is attested.
    drop(client);
    assert!(daemon.stop().success());
    let config = write_config(&dir, &card, card.pin(), "");
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let unrooted = client.public(&root.key_id).await.expect("public");
    assert!(!unrooted.attested);
    assert_eq!(unrooted.touch_policy, "always");
    let att = attest(&mut client, &root.key_id).await.expect("AttestKey");
    assert!(!att.verified);
    assert!(att.verify_error.contains("no attestation_roots"), "{att:?}");

    // Keys the caller cannot see are NOT_FOUND; the call is audited.
    let missing = attest(&mut client, &"0".repeat(64))
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);
    let audit = std::fs::read_to_string(dir.audit_log()).expect("audit log");
    assert!(
        audit.lines().any(|l| l.contains("\"op\":\"attest\"")),
        "{audit}"
    );
    assert!(daemon.stop().success());
}

/// `[[require]]`: root keys must be attested and touch-always.
const REQUIRE_ROOT: &str = "[[require]]\nname = \"attested-touch-root\"\nrole = \"root\"\n\
                            attested = true\ntouch = \"always\"\n";

/// A self-signed P-256 CA with the test CA's name but another key.
fn foreign_ca(dir: &DevDir) -> PathBuf {
    let (key, cert) = (
        dir.root().join("foreign.key"),
        dir.root().join("foreign.pem"),
    );
    let (ok, text) = openssl(&[
        "req".as_ref(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-days".as_ref(),
        "2".as_ref(),
        "-subj".as_ref(),
        "/CN=vyubikey Test PIV Attestation Root CA".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(ok, "{text}");
    cert
}

async fn generate_status(client: &mut Client, role: &str) -> Result<pb::PublicKey, tonic::Status> {
    client
        .keys
        .generate_key(pb::GenerateKeyRequest {
            backend: String::new(),
            role: role.to_owned(),
            gun: GUN.to_owned(),
            algorithm: pb::Algorithm::EcdsaP256.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn require_rules_refuse_unattested_or_touch_never_roots_at_generate_and_at_sign() {
    let card = TestYubikey::start(5_400_006, "--touch-timeout 5");
    let dir = DevDir::new();
    let roots = roots_line(&card);

    // Touch "never" for roots cannot meet touch = "always": refused before the device is touched.
    let config = write_config_with(
        &dir,
        &card,
        Some(card.pin()),
        &format!("{roots}\ntouch_root = \"never\""),
        REQUIRE_ROOT,
    );
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let refused = generate_status(&mut client, "root")
        .await
        .expect_err("touch never");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("need touch always")
            && refused.message().contains("nothing was generated"),
        "{refused:?}"
    );
    let out = card.piv_tool(&["-a", "read-certificate", "-s", "9c"]);
    assert!(!out.status.success(), "slot 9c was written: {out:?}");
    // Other roles are not covered by the rule.
    let targets = generate_status(&mut client, "targets")
        .await
        .expect("targets");
    drop(client);
    assert!(daemon.stop().success());

    // Attestation that does not chain to the configured root: generated, then discarded.
    let foreign = foreign_ca(&dir);
    let config = write_config_with(
        &dir,
        &card,
        Some(card.pin()),
        &format!("attestation_roots = [{foreign:?}]"),
        REQUIRE_ROOT,
    );
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let refused = generate_status(&mut client, "root")
        .await
        .expect_err("unattested");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("not attested") && refused.message().contains("discarded"),
        "{refused:?}"
    );
    let keys = client.list().await;
    assert_eq!(keys.len(), 1, "only the targets key: {keys:?}");
    assert_eq!(keys[0].key_id, targets.key_id);
    let out = card.piv_tool(&["-a", "read-certificate", "-s", "9c"]);
    assert!(
        !out.status.success(),
        "the refused key kept its label: {out:?}"
    );
    let audit = std::fs::read_to_string(dir.audit_log()).expect("audit log");
    let refusals = audit
        .lines()
        .filter(|l| l.contains("\"op\":\"generate\"") && l.contains("attested-touch-root"))
        .count();
    assert_eq!(refusals, 2, "{audit}");
    drop(client);
    assert!(daemon.stop().success());

    // A root made while no rule applied cannot sign once the rule is in force.
    let config = write_config(&dir, &card, card.pin(), "");
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let old_root = generate_root(&mut client).await;
    assert!(!old_root.attested);
    drop(client);
    assert!(daemon.stop().success());
    let config = write_config_with(&dir, &card, Some(card.pin()), &roots, REQUIRE_ROOT);
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    // Its chain verifies against the real root now, so it counts as attested: the rule is met.
    let seen = client.public(&old_root.key_id).await.expect("public");
    assert!(seen.attested && seen.touch_policy == "always", "{seen:?}");
    drop(client);
    assert!(daemon.stop().success());
    let config = write_config_with(
        &dir,
        &card,
        Some(card.pin()),
        &format!("attestation_roots = [{foreign:?}]"),
        REQUIRE_ROOT,
    );
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let msg = status_message(
        client
            .sign_digest(&old_root.key_id, &sha256(b"x"), pb::SignatureEncoding::Raw)
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        msg.contains("may not sign") && msg.contains("not attested"),
        "{msg}"
    );
    assert_eq!(card.pin_tries(), 3, "the PIN was used for a refused sign");
    drop(client);
    assert!(daemon.stop().success());

    // With the right root and touch "always" the rule is met: generated, and it signs.
    let daemon = start(
        &dir,
        &card,
        &write_config_with(&dir, &card, Some(card.pin()), &roots, REQUIRE_ROOT),
    );
    let mut client = daemon.client().await;
    let root = generate_root(&mut client).await;
    assert!(root.attested && root.touch_policy == "always", "{root:?}");
    card.touch();
    sign_and_check(&mut client, &root, "attested root").await;
    assert!(daemon.stop().success());
}

/// A policy rule letting the test's uid unlock the `yubikey` backend.
fn unlock_rule() -> String {
    format!(
        "[[policy]]\nname = \"ceremony\"\nuids = [{}]\ntokens = [\"yubikey\"]\nallow = [\"unlock\"]\n",
        nix::unistd::getuid().as_raw()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn without_pin_file_signing_waits_for_sigil_token_unlock_which_verifies_the_pin_once() {
    let card = TestYubikey::start(5_400_007, "");
    let dir = DevDir::new();
    let config = write_config_with(&dir, &card, None, "touch_root = \"never\"", "");
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    // Generating needs the management key only.
    let key = generate_root(&mut client).await;
    let digest = sha256(b"ceremony");
    let locked = status_message(
        client
            .sign_digest(&key.key_id, &digest, pb::SignatureEncoding::Raw)
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        locked.contains("token yubikey is locked: run `sigil token unlock yubikey`"),
        "{locked}"
    );
    // The owner rule does not include "unlock".
    let (ok, _, stderr) = sigil(
        &dir,
        &["token", "unlock", "yubikey", "--pin-stdin"],
        Some("123456\n"),
    );
    assert!(!ok && stderr.contains("permission denied"), "{stderr}");
    assert_eq!(card.pin_tries(), 3);
    drop(client);
    assert!(daemon.stop().success());

    let config = write_config_with(&dir, &card, None, "touch_root = \"never\"", &unlock_rule());
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    // Not a PIV PIN: refused before anything reaches the device.
    let (ok, _, stderr) = sigil(
        &dir,
        &["token", "unlock", "yubikey", "--pin-stdin"],
        Some("12\n"),
    );
    assert!(!ok && stderr.contains("6 to 8"), "{stderr}");
    assert_eq!(card.pin_tries(), 3);
    // A wrong PIN: verified once, tries named, not kept.
    let (ok, _, stderr) = sigil(
        &dir,
        &["token", "unlock", "yubikey", "--pin-stdin"],
        Some("654321\n"),
    );
    assert!(!ok && stderr.contains("2 tries left"), "{stderr}");
    assert_eq!(card.pin_tries(), 2);
    let still = status_message(
        client
            .sign_digest(&key.key_id, &digest, pb::SignatureEncoding::Raw)
            .await,
        Code::FailedPrecondition,
    );
    assert!(still.contains("is locked"), "{still}");
    assert_eq!(card.pin_tries(), 2, "a sign offered the refused PIN");
    // The right PIN, typed at the prompt on a terminal (a pty from `script`): not echoed,
    // unlocked, and signatures work.
    let command = format!(
        "{} --socket {} token unlock yubikey",
        sigil_e2e::sigil_cli().display(),
        dir.socket().display()
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg("(sleep 2; echo 123456) | script -qec \"$0\" /dev/null")
        .arg(&command)
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let tty = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{tty}");
    assert!(tty.contains("PIN for token yubikey:"), "{tty}");
    assert!(tty.contains("token yubikey unlocked"), "{tty}");
    assert!(!tty.contains("123456"), "the PIN was echoed: {tty}");
    sign_and_check(&mut client, &key, "after unlock").await;
    sign_and_check(&mut client, &key, "again").await;

    // With one try left, unlock refuses to spend it and says how to recover.
    for _ in 0..2 {
        let out = card.piv_tool(&["-a", "verify-pin", "-P", "000000"]);
        assert!(!out.status.success());
    }
    assert_eq!(card.pin_tries(), 1);
    let (ok, _, stderr) = sigil(
        &dir,
        &["token", "unlock", "yubikey", "--pin-stdin"],
        Some("123456\n"),
    );
    assert!(!ok && stderr.contains("only one more PIN try"), "{stderr}");
    assert!(stderr.contains("verify-pin"), "{stderr}");
    assert_eq!(card.pin_tries(), 1, "the daemon spent the last PIN try");

    // Every attempt is audited; no PIN anywhere in the log or the audit trail.
    let audit = std::fs::read_to_string(dir.audit_log()).expect("audit log");
    let unlocks: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"op\":\"unlock\""))
        .collect();
    assert_eq!(unlocks.len(), 5, "{audit}");
    assert_eq!(
        unlocks
            .iter()
            .filter(|l| l.contains("\"outcome\":\"ok\""))
            .count(),
        1
    );
    for secret in ["123456", "654321"] {
        assert!(!audit.contains(secret), "PIN in the audit log");
        assert!(!daemon.stderr().contains(secret), "PIN in sigild's log");
    }
    drop(client);
    assert!(daemon.stop().success());
}

/// A non-default 3DES management key for the tests (not a weak DES key).
const NEW_MGM_KEY: &str = "3f1c9e2a7b4d6805c1e2d3f4a5b6c7d8e9fa0b1c2d3e4f51";

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_management_key_is_taken_from_management_key_file_or_the_pin_protected_object() {
    let card = TestYubikey::start(5_400_008, "");
    let dir = DevDir::new();
    let out = card.piv_tool(&["-a", "set-mgm-key", "-n", NEW_MGM_KEY]);
    assert!(out.status.success(), "set-mgm-key: {out:?}");

    // The default key no longer works: a clear FAILED_PRECONDITION, nothing generated.
    let config = write_config(&dir, &card, card.pin(), "touch_root = \"never\"");
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let refused = generate_status(&mut client, "root")
        .await
        .expect_err("default key");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("refused the default management key"),
        "{refused:?}"
    );
    drop(client);
    assert!(daemon.stop().success());

    // management_key_file: generate, sign, remove.
    let mgm_file = dir.path().join("yubikey.mgm");
    write_file(&mgm_file, format!("{NEW_MGM_KEY}\n"), 0o600);
    let config = write_config(
        &dir,
        &card,
        card.pin(),
        &format!("touch_root = \"never\"\nmanagement_key_file = {mgm_file:?}"),
    );
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let key = generate_root(&mut client).await;
    sign_and_check(&mut client, &key, "configured management key").await;
    client.delete(&key.key_id).await.expect("DeleteKey");
    assert!(client.list().await.is_empty());
    assert!(
        !daemon.stderr().contains(NEW_MGM_KEY),
        "management key in the log"
    );
    drop(client);
    assert!(daemon.stop().success());

    // PIN-protected: the key in the PIN-protected object (tag 88 { 89: key }), read after
    // the PIN is verified.
    let object = dir.root().join("protected.bin");
    let mut data = vec![0x88, 0x1a, 0x89, 0x18];
    data.extend(hex::decode(NEW_MGM_KEY).expect("hex"));
    std::fs::write(&object, &data).expect("object");
    let object_arg = object.to_str().expect("utf-8 path");
    let key_arg = format!("--key={NEW_MGM_KEY}");
    let out = card.piv_tool(&[
        &key_arg,
        "-a",
        "write-object",
        "--id",
        "0x5fc109",
        "-f",
        "binary",
        "-i",
        object_arg,
    ]);
    assert!(out.status.success(), "write-object: {out:?}");
    let config = write_config(
        &dir,
        &card,
        card.pin(),
        "touch_root = \"never\"\nmanagement_key = \"pin-protected\"",
    );
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let key = generate_status(&mut client, "targets")
        .await
        .unwrap_or_else(|s| panic!("PIN-protected key: {s:?}\n{}", daemon.stderr()));
    sign_and_check(&mut client, &key, "PIN-protected management key").await;
    drop(client);
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigil_names_the_device_and_what_it_signs_before_a_touch_and_reports_a_touch_timeout() {
    let card = TestYubikey::start(5_400_009, "--touch-timeout 2");
    let dir = DevDir::new();
    let config = write_config(&dir, &card, card.pin(), &roots_line(&card));
    let daemon = start(&dir, &card, &config);
    let mut client = daemon.client().await;
    let root = generate_root(&mut client).await;
    let targets = client
        .generate("targets", GUN, pb::Algorithm::EcdsaP256)
        .await;

    // The key info the CLI fetches says where the key is and how it is guarded.
    let (ok, summary, stderr) = sigil(&dir, &["key", "public", &root.key_id], None);
    assert!(ok, "{stderr}");
    assert!(
        summary.contains(&format!(
            "device:    YubiKey {} (touch always, PIN always, attested)",
            card.serial
        )),
        "{summary}"
    );

    let file = dir.root().join("release-1.2.tar");
    std::fs::write(&file, b"release 1.2 contents").expect("file");
    let file_arg = file.to_str().expect("utf-8 path");
    let digest = sigil_e2e::sha256_hex(b"release 1.2 contents");
    let prompt = format!(
        "Touch YubiKey {} when it blinks to sign {file_arg} (sha256 {digest}) (key {}, role root, gun {GUN})",
        card.serial, root.key_id
    );
    card.auto_touch(true);
    let (ok, signature, stderr) = sigil(&dir, &["sign", "--key", &root.key_id, file_arg], None);
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&prompt), "{stderr}");
    assert!(!signature.trim().is_empty());

    // No touch: the prompt, then a clear error naming the device, and exit code 1.
    card.auto_touch(false);
    let output = Command::new(sigil_e2e::sigil_cli())
        .arg("--socket")
        .arg(dir.socket())
        .args(["sign", "--key", &root.key_id, file_arg])
        .stdin(Stdio::null())
        .output()
        .expect("sigil sign");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&prompt), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "YubiKey {} slot 9c: touch not given in time, nothing was signed",
            card.serial
        )),
        "{stderr}"
    );

    // A key that needs no touch signs without a prompt.
    let (ok, _, stderr) = sigil(&dir, &["sign", "--key", &targets.key_id, file_arg], None);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("Touch"), "{stderr}");
    drop(client);
    assert!(daemon.stop().success());
}
