//! The same YubiKey through Yubico's PKCS#11 module (ykcs11) and sigild's `pkcs11` backend,
//! on the virtual YubiKey: a key made on the card with `yubico-piv-tool` and adopted by
//! `existing_keys` is listed with its role and GUN, signs through sigild, and OpenSSL verifies
//! the signature with the key the card exported. sigild cannot make keys there (ykcs11 refuses
//! its template) nor delete a key it did not make, and says what to do instead.
//!
//! Part of `make test` (root, the virtual YubiKey's packages and `ykcs11`).

use std::path::Path;

use sigil_e2e::yubikey::TestYubikey;
use sigil_e2e::{DevDir, openssl, parse_public, sha256, write_file};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;

/// Yubico's PKCS#11 module (Debian package `ykcs11`).
const YKCS11: &str = "/usr/lib/x86_64-linux-gnu/libykcs11.so";
const GUN: &str = "example.com/ykcs11";
const ROLE: &str = "targets/releases";

/// SHA-256 of the DER SubjectPublicKeyInfo in a PEM public key file (sigild's key id).
fn key_id_of_pem(pem: &Path) -> String {
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .expect("running openssl pkey");
    assert!(der.status.success(), "openssl pkey: {der:?}");
    hex::encode(sha256(&der.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_made_with_yubico_piv_tool_signs_through_ykcs11_and_the_pkcs11_backend() {
    assert!(
        Path::new(YKCS11).exists(),
        "{YKCS11} missing: apt-get install -y --no-install-recommends ykcs11 (or `make deps`)"
    );
    let card = TestYubikey::start(5_400_031, "");
    assert!(
        !card.is_physical(),
        "this test generates a key in slot 9a: virtual card only"
    );
    let dir = DevDir::new();
    std::fs::create_dir_all(dir.path()).expect("creating the sigil dir");

    // Slot 9a (ykcs11 id 01): PIN once per session, no touch. (9c wants the PIN for every
    // signature, CKA_ALWAYS_AUTHENTICATE, which the pkcs11 backend does not give.)
    let public = dir.path().join("9a.pub.pem");
    let generated = card.piv_tool(&[
        "-a",
        "generate",
        "-s",
        "9a",
        "-A",
        "ECCP256",
        "--pin-policy=once",
        "--touch-policy=never",
        "-o",
        public.to_str().expect("UTF-8 path"),
    ]);
    assert!(generated.status.success(), "{generated:?}");
    let card_key_id = key_id_of_pem(&public);

    let pin_file = dir.path().join("ykcs11.pin");
    write_file(&pin_file, format!("{}\n", card.pin()), 0o600);
    let config = dir.path().join("sigild.toml");
    write_file(
        &config,
        format!(
            "[server]\nsocket = {socket:?}\nsocket_mode = \"0666\"\naudit_log = {audit:?}\n\n\
             [[backend]]\nname = \"yubikey-p11\"\ntype = \"pkcs11\"\nmodule = {YKCS11:?}\n\
             token_label = \"YubiKey PIV #{serial}\"\npin_file = {pin_file:?}\n\
             existing_keys = [{{ id = \"01\", role = {ROLE:?}, gun = {GUN:?} }}]\n\n\
             [[policy]]\nname = \"owner\"\nuids = [{uid}]\nkeys = [{{ gun = \"*\", role = \"*\" }}]\n\
             allow = [\"sign\", \"public\", \"list\", \"generate\", \"delete\"]\n",
            socket = dir.socket(),
            audit = dir.audit_log(),
            serial = card.serial,
            uid = nix::unistd::getuid().as_raw(),
        ),
        0o600,
    );
    let daemon = dir.sigild_wrapped(&card.wrapper(), &config).spawn();
    let mut client = daemon.client().await;

    // Listed with the configured role and GUN; the very key the card made.
    let keys = client.list().await;
    assert_eq!(keys.len(), 1, "{keys:#?}\n{}", daemon.stderr());
    let key = &keys[0];
    assert_eq!((key.role.as_str(), key.gun.as_str()), (ROLE, GUN));
    assert_eq!(key.key_id, card_key_id, "sigild's key is the card's 9a key");

    // Signs through ykcs11; the signature verifies with the tuf crate and with OpenSSL.
    let message = b"signed on a YubiKey through ykcs11".to_vec();
    let digest = sha256(&message);
    let raw = client
        .sign_digest(&key.key_id, &digest, pb::SignatureEncoding::Raw)
        .await
        .unwrap_or_else(|s| panic!("sign: {s:?}\n{}", daemon.stderr()));
    parse_public(key)
        .verify_digest(&digest, &raw.signature)
        .expect("the raw signature verifies");
    let der = client
        .sign_message(&key.key_id, &message, pb::SignatureEncoding::Der)
        .await
        .expect("sign, DER");
    let (msg_file, sig_file) = (dir.path().join("msg"), dir.path().join("msg.sig"));
    std::fs::write(&msg_file, &message).expect("message");
    std::fs::write(&sig_file, &der.signature).expect("signature");
    let (ok, text) = openssl(&[
        "dgst".as_ref(),
        "-sha256".as_ref(),
        "-verify".as_ref(),
        public.as_os_str(),
        "-signature".as_ref(),
        sig_file.as_os_str(),
        msg_file.as_os_str(),
    ]);
    assert!(ok && text.contains("Verified OK"), "{text}");

    // No key generation there, and the adopted key cannot be deleted through sigild.
    let refused = client
        .keys
        .generate_key(pb::GenerateKeyRequest {
            backend: "yubikey-p11".into(),
            role: "targets".into(),
            gun: GUN.into(),
            algorithm: pb::Algorithm::EcdsaP256.into(),
        })
        .await
        .expect_err("ykcs11 refuses sigil's key template");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("existing_keys"),
        "the error says what to do: {refused:?}"
    );
    let refused = client
        .delete(&key.key_id)
        .await
        .expect_err("not sigild's key to delete");
    assert!(refused.message().contains("did not make"), "{refused:?}");
    assert_eq!(client.list().await.len(), 1, "nothing changed");
    client
        .sign_digest(&key.key_id, &digest, pb::SignatureEncoding::Raw)
        .await
        .expect("still signs");
    let audit = std::fs::read_to_string(dir.audit_log()).expect("audit log");
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"op\":\"sign\""))
            .count(),
        3,
        "every signature audited:\n{audit}"
    );
}
