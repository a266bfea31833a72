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
use std::time::{Duration, Instant};

use sigil_e2e::yubikey::TestYubikey;
use sigil_e2e::{Client, Daemon, DevDir, openssl, parse_public, sha256, write_file, write_pem};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

const GUN: &str = "example.com/yubikey";

/// A sigild configuration with one `yubikey` backend for `card` and an owner policy.
fn write_config(dir: &DevDir, card: &TestYubikey, pin: &str, backend_extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.path()).expect("creating the sigil dir");
    let pin_file = dir.path().join("yubikey.pin");
    write_file(&pin_file, format!("{pin}\n"), 0o600);
    let text = format!(
        "[server]\nsocket = {socket:?}\nsocket_mode = \"0666\"\naudit_log = {audit:?}\n\n\
         [[backend]]\nname = \"yubikey\"\ntype = \"yubikey\"\nserial = {serial}\n\
         pin_file = {pin_file:?}\n{backend_extra}\n\n\
         [[policy]]\nname = \"owner\"\nuids = [{uid}]\nkeys = [{{ gun = \"*\", role = \"*\" }}]\n\
         allow = [\"sign\", \"public\", \"list\", \"generate\", \"delete\"]\n",
        socket = dir.socket(),
        audit = dir.audit_log(),
        serial = card.serial,
        uid = nix::unistd::getuid().as_raw(),
    );
    let path = dir.path().join("sigild.toml");
    write_file(&path, text, 0o600);
    path
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
