//! Attestation: verified at generate, recorded and printed as a chain OpenSSL accepts, and the
//! policy's `[[require]]` rules that refuse unattested or touch-never root keys.

use super::*;

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
