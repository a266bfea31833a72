//! The card's secrets: without a PIN file signing waits for `sigil token unlock`; a changed
//! management key comes from its file or the PIN-protected object.

use super::*;

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
