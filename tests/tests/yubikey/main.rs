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

mod attestation;
mod card;
mod secrets;

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
