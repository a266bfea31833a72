//! The virtual YubiKey checked by tools no one here wrote (issue 5, "the virtual YubiKey"):
//! Yubico's `yubico-piv-tool` (status, verify-pin, generate, attest) and Yubico's PKCS#11
//! module `ykcs11` through OpenSC's `pkcs11-tool` (list, sign), with OpenSSL verifying the
//! attestation chain and the signatures. The same checks as `vyubikey/validate.sh`, as tests
//! of the default suite: each step asserts what the tool printed, not only its exit code.
//!
//! Each test runs its own card (pcscd + vyubikey in a private mount namespace, see
//! `tests/src/yubikey.rs`). Needs root and `pcscd vsmartcard-vpcd opensc ykcs11
//! yubico-piv-tool` (`scripts/deps.sh`); without them the tests fail with the install command.

use std::path::{Path, PathBuf};
use std::process::Output;

use sigil_e2e::openssl;
use sigil_e2e::yubikey::{DEFAULT_PIN, VirtualYubikey, require_vyubikey_tools};

/// Yubico's PKCS#11 module (Debian package `ykcs11`).
const YKCS11: &str = "/usr/lib/x86_64-linux-gnu/libykcs11.so";

/// ykcs11's object id of slot 9a and 9c keys.
const ID_9A: &str = "01";
const ID_9C: &str = "02";

fn require_ykcs11() {
    require_vyubikey_tools();
    assert!(
        Path::new(YKCS11).exists(),
        "{YKCS11} missing: apt-get install -y --no-install-recommends ykcs11 (or `make deps`)"
    );
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `yubico-piv-tool ARGS`, expects success; returns stdout and stderr.
fn piv_ok(card: &VirtualYubikey, args: &[&str]) -> (String, String) {
    let output = card.piv_tool(args);
    let (out, err) = text(&output);
    assert!(
        output.status.success(),
        "yubico-piv-tool {} failed ({}):\n{out}{err}\n{}",
        args.join(" "),
        output.status,
        card.logs()
    );
    (out, err)
}

/// `pkcs11-tool --module ykcs11 ARGS` inside the card's namespace.
fn pkcs11_tool(card: &VirtualYubikey, args: &[&str]) -> Output {
    card.command("pkcs11-tool")
        .arg("--module")
        .arg(YKCS11)
        .args(args)
        .output()
        .expect("running pkcs11-tool")
}

fn pkcs11_ok(card: &VirtualYubikey, args: &[&str]) -> String {
    let output = pkcs11_tool(card, args);
    let (out, err) = text(&output);
    assert!(
        output.status.success(),
        "pkcs11-tool {} failed ({}):\n{out}{err}\n{}",
        args.join(" "),
        output.status,
        card.logs()
    );
    format!("{out}{err}")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A field of `yubico-piv-tool -a status` ("Serial Number:\t7654321").
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name:?} in yubico-piv-tool -a status:\n{status}"))
        .trim()
        .to_owned()
}

/// Yubico attestation extension `1.3.6.1.4.1.41482.3.<n>`, hex, as `openssl asn1parse` dumps
/// it.
fn yubico_extension(cert: &Path, n: u32) -> String {
    let (ok, asn1) = openssl(&["asn1parse".as_ref(), "-in".as_ref(), cert.as_os_str()]);
    assert!(ok, "{asn1}");
    let oid = format!(":1.3.6.1.4.1.41482.3.{n}");
    asn1.lines()
        .skip_while(|l| !l.ends_with(&oid))
        .nth(1)
        .and_then(|l| l.split("[HEX DUMP]:").nth(1))
        .unwrap_or_else(|| panic!("no extension {oid} in {}:\n{asn1}", cert.display()))
        .to_owned()
}

/// A positive integer as a DER INTEGER, hex (uppercase, as asn1parse prints).
fn der_integer_hex(value: u32) -> String {
    let bytes = value.to_be_bytes();
    let mut body: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    if body.first().is_none_or(|&b| b & 0x80 != 0) {
        body.insert(0, 0);
    }
    let mut der = vec![0x02, u8::try_from(body.len()).expect("short")];
    der.extend(body);
    hex::encode_upper(der)
}

/// The public key (PEM) of a certificate, as OpenSSL prints it.
fn cert_pubkey(cert: &Path) -> String {
    let (ok, out) = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-pubkey".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(ok, "{out}");
    out
}

/// A public key file normalised by OpenSSL (PEM).
fn pubkey_pem(public: &Path) -> String {
    let (ok, out) = openssl(&[
        "pkey".as_ref(),
        "-pubin".as_ref(),
        "-in".as_ref(),
        public.as_os_str(),
    ]);
    assert!(ok, "{out}");
    out
}

/// `openssl dgst -sha256 -verify PUB -signature SIG DATA` must say "Verified OK".
fn assert_verifies(public: &Path, sig: &Path, data: &Path) {
    let (ok, out) = openssl(&[
        "dgst".as_ref(),
        "-sha256".as_ref(),
        "-verify".as_ref(),
        public.as_os_str(),
        "-signature".as_ref(),
        sig.as_os_str(),
        data.as_os_str(),
    ]);
    assert!(
        ok && out.trim() == "Verified OK",
        "openssl did not verify {}: {out}",
        sig.display()
    );
}

/// Generates a P-256 key in `slot` with yubico-piv-tool; returns the public key file.
fn generate(card: &VirtualYubikey, dir: &Path, slot: &str, touch: &str) -> PathBuf {
    let public = dir.join(format!("{slot}.pub"));
    let (out, err) = piv_ok(
        card,
        &[
            "-a",
            "generate",
            "-s",
            slot,
            "-A",
            "ECCP256",
            &format!("--touch-policy={touch}"),
            "-o",
            path(&public),
        ],
    );
    assert!(
        format!("{out}{err}").contains("Successfully generated a new private key."),
        "{out}{err}"
    );
    let (ok, described) = openssl(&[
        "pkey".as_ref(),
        "-pubin".as_ref(),
        "-noout".as_ref(),
        "-text".as_ref(),
        "-in".as_ref(),
        public.as_os_str(),
    ]);
    assert!(
        ok && described.contains("ASN1 OID: prime256v1"),
        "{slot}: not a P-256 key:\n{described}"
    );
    public
}

/// Attests `slot` with yubico-piv-tool and verifies the chain card key → F9 → CA with
/// OpenSSL; returns the attestation certificate.
fn attest(card: &VirtualYubikey, dir: &Path, slot: &str) -> PathBuf {
    let (pem, _) = piv_ok(card, &["-a", "attest", "-s", slot]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let cert = dir.join(format!("{slot}-attest.pem"));
    std::fs::write(&cert, &pem).expect("attestation");
    let (f9, _) = piv_ok(card, &["-a", "read-certificate", "-s", "f9"]);
    let f9_path = dir.join("f9.pem");
    std::fs::write(&f9_path, &f9).expect("f9 certificate");
    let ca = card.state.join("ca.pem");
    let (ok, out) = openssl(&[
        "verify".as_ref(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
        "-untrusted".as_ref(),
        f9_path.as_os_str(),
        cert.as_os_str(),
    ]);
    assert!(
        ok && out.trim() == format!("{}: OK", cert.display()),
        "attestation of {slot} does not chain to the card's CA: {out}"
    );
    cert
}

#[test]
fn yubico_piv_tool_status_verify_pin_generate_and_attest() {
    let card = VirtualYubikey::start(7_654_321, "");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path();

    // status: a YubiKey 5.4.3 with our serial and 3 PIN tries.
    let (status, _) = piv_ok(&card, &["-a", "status"]);
    assert_eq!(status_field(&status, "Version"), "5.4.3", "{status}");
    assert_eq!(status_field(&status, "Serial Number"), "7654321");
    assert_eq!(status_field(&status, "PIN tries left"), "3");
    assert!(!status_field(&status, "CHUID").is_empty());

    // verify-pin: right, wrong (2 tries left), right again (counter reset).
    let (out, err) = piv_ok(&card, &["-a", "verify-pin", "-P", DEFAULT_PIN]);
    assert_eq!(format!("{out}{err}").trim(), "Successfully verified PIN.");
    let wrong = card.piv_tool(&["-a", "verify-pin", "-P", "654321"]);
    let (out, err) = text(&wrong);
    assert!(!wrong.status.success(), "a wrong PIN was accepted: {out}");
    assert!(
        err.contains("Pin verification failed, 2 tries left before pin is blocked."),
        "{out}{err}"
    );
    assert_eq!(card.pin_tries(), 2);
    let (out, err) = piv_ok(&card, &["-a", "verify-pin", "-P", DEFAULT_PIN]);
    assert_eq!(format!("{out}{err}").trim(), "Successfully verified PIN.");
    assert_eq!(card.pin_tries(), 3, "the right PIN resets the counter");

    // generate 9c, attest it: same key, Yubico extensions (firmware, serial, policies).
    let public = generate(&card, dir, "9c", "never");
    let cert = attest(&card, dir, "9c");
    assert_eq!(cert_pubkey(&cert), pubkey_pem(&public), "attested key");
    let (ok, subject) = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-subject".as_ref(),
        "-issuer".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(ok, "{subject}");
    assert!(
        subject.contains("subject=CN = YubiKey PIV Attestation 9c")
            && subject.contains("issuer=CN = Yubico PIV Attestation"),
        "{subject}"
    );
    assert_eq!(yubico_extension(&cert, 3), "050403", "firmware 5.4.3");
    assert_eq!(
        yubico_extension(&cert, 7),
        der_integer_hex(7_654_321),
        "serial"
    );
    // 9c: PIN always (03) by default; generated with touch never (01).
    assert_eq!(yubico_extension(&cert, 8), "0301", "PIN/touch policy");

    // vpcd listens on 0.0.0.0 (it cannot be told otherwise), but in the card's own network
    // namespace, which has only `lo`: /proc/PID/net/tcp lists the sockets of PID's network
    // namespace, so vpcd's listener shows there, in a namespace that is not ours (sigild and
    // the tools reach pcscd over its Unix socket and keep the host's network).
    assert_ne!(card.port, 0);
    let holder = card.holder_pid();
    let netns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("netns");
    assert_ne!(
        netns(&holder.to_string()),
        netns("self"),
        "the card shares the host's network namespace"
    );
    let listening = |table: &str, port: u16| {
        std::fs::read_to_string(table)
            .expect("reading the TCP table")
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // local_address is "HEXIP:HEXPORT"; state 0A is LISTEN.
                cols.len() > 3 && cols[3] == "0A" && cols[1] == format!("00000000:{port:04X}")
            })
    };
    for port in [card.port, card.port + 1] {
        assert!(
            listening(&format!("/proc/{holder}/net/tcp"), port),
            "vpcd does not listen on 0.0.0.0:{port} in the card's namespace"
        );
    }

    // An empty slot has nothing to attest.
    let empty = card.piv_tool(&["-a", "attest", "-s", "9d"]);
    assert!(!empty.status.success(), "attested an empty slot: {empty:?}");
}

#[test]
fn ykcs11_lists_signs_verifiable_signatures_honours_touch_and_survives_replug() {
    require_ykcs11();
    let card = VirtualYubikey::start(7_654_322, "--touch-timeout 1");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path();
    let public_9c = generate(&card, dir, "9c", "never");

    // List: the token is Yubico's, named after the serial; the 9c key is there with ykcs11's
    // id 02, its private half sensitive and never extractable.
    let slots = pkcs11_ok(&card, &["-L"]);
    assert!(
        slots.contains("token label        : YubiKey PIV #7654322")
            && slots.contains("token manufacturer : Yubico (www.yubico.com)")
            && slots.contains("serial num         : 7654322"),
        "{slots}"
    );
    let objects = pkcs11_ok(&card, &["--login", "--pin", DEFAULT_PIN, "-O"]);
    let key_9c = objects
        .split("Private Key Object; EC")
        .skip(1)
        .find(|block| block.contains(&format!("ID:         {ID_9C}")))
        .unwrap_or_else(|| panic!("ykcs11 lists no private key {ID_9C}:\n{objects}"));
    assert!(
        key_9c.contains("Private key for Digital Signature")
            && key_9c.contains("never extractable"),
        "{key_9c}"
    );

    // Sign with 9c (ECDSA-SHA256), OpenSSL verifies with the key yubico-piv-tool exported.
    let data = dir.join("data.bin");
    std::fs::write(&data, sigil_e2e::pseudo_random_bytes("ykcs11", 1000)).expect("data");
    let sign = |id: &str, sig: &Path| {
        pkcs11_tool(
            &card,
            &[
                "--login",
                "--pin",
                DEFAULT_PIN,
                "--sign",
                "--id",
                id,
                "--mechanism",
                "ECDSA-SHA256",
                "--signature-format",
                "openssl",
                "-i",
                path(&data),
                "-o",
                path(sig),
            ],
        )
    };
    let sig = dir.join("9c.sig");
    let out = sign(ID_9C, &sig);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", card.logs());
    assert!(
        stderr.contains("Using signature algorithm ECDSA-SHA256"),
        "{stdout}{stderr}"
    );
    assert_verifies(&public_9c, &sig, &data);

    // Touch always on 9a (attested as such): no touch, no signature; a touch, a signature.
    let public_9a = generate(&card, dir, "9a", "always");
    let cert = attest(&card, dir, "9a");
    assert_eq!(yubico_extension(&cert, 8), "0202", "PIN once, touch always");
    assert_eq!(
        card.ctl("status"),
        "present=1 waiting=- grants=0 auto_touch=0"
    );
    let untouched = dir.join("9a-untouched.sig");
    let out = sign(ID_9A, &untouched);
    assert!(
        !out.status.success(),
        "signed with a touch-always key without a touch"
    );
    assert!(
        !untouched.exists() || std::fs::metadata(&untouched).is_ok_and(|m| m.len() == 0),
        "a signature was written without a touch"
    );
    assert_eq!(card.ctl("touch"), "ok armed");
    let touched = dir.join("9a.sig");
    let out = sign(ID_9A, &touched);
    assert!(out.status.success(), "{:?}\n{}", text(&out), card.logs());
    assert_verifies(&public_9a, &touched, &data);

    // Hot-plug: removed, pcscd shows an empty reader and ykcs11 cannot sign; re-inserted, the
    // same key signs again.
    assert_eq!(card.ctl("remove"), "ok");
    card.wait_present(false);
    let gone = dir.join("gone.sig");
    assert!(!sign(ID_9C, &gone).status.success(), "signed with no card");
    assert_eq!(card.ctl("insert"), "ok");
    card.wait_present(true);
    let again = dir.join("again.sig");
    let out = sign(ID_9C, &again);
    assert!(out.status.success(), "{:?}\n{}", text(&out), card.logs());
    assert_verifies(&public_9c, &again, &data);
}
