//! The card itself: a root key with touch "always" that OpenSSL verifies and that survives a
//! restart, a wrong PIN never retried, a removed card, a touch not given in time, and what
//! `sigil` prints before a touch.

use super::*;

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
