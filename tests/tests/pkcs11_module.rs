//! `libsigil_pkcs11.so` driven by the real tools people sign with: OpenSC's pkcs11-tool,
//! OpenSSL's pkcs11 engine, python-tuf with securesystemslib's HSMSigner and OpenSSH's agent
//! and ssh-keygen, against a real
//! sigild on a SoftHSM token. Every signature is checked by an independent verifier
//! (OpenSSL, python-tuf) and found in sigild's audit log with the caller's uid; a second uid
//! sees only what sigild's policy grants it.
//!
//! The shell commands and the Python script below are the ones README.md shows (the
//! `readme_shows_the_commands_the_tests_run` test keeps them identical).

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sigil_e2e::{
    AuditRecord, DevDir, OTHER_GID, OTHER_UID, cargo_build, read_audit, target_dir, workspace_root,
};
use sigil_proto::sigil_v1 as pb;

/// Lists the slots: one per sigild backend the caller can see.
const LIST_SLOTS: &str = r#"pkcs11-tool --module "$MODULE" -L"#;
/// Lists the objects: the caller's keys, a private and a public object each.
const LIST_OBJECTS: &str = r#"pkcs11-tool --module "$MODULE" -O"#;
/// Signs a SHA-256 digest with CKM_ECDSA and verifies it with OpenSSL against the public key
/// read back through the module.
const SIGN_DIGEST: &str = r#"openssl dgst -sha256 -binary release.tar > release.sha256
pkcs11-tool --module "$MODULE" --sign -m ECDSA --id "$KEY" -i release.sha256 -o release.sig --signature-format openssl
pkcs11-tool --module "$MODULE" --read-object --type pubkey --id "$KEY" -o key.der
openssl dgst -sha256 -verify key.der -keyform DER -signature release.sig release.tar"#;
/// Signs the message itself with CKM_ECDSA_SHA256 (sigild hashes it).
const SIGN_MESSAGE: &str = r#"pkcs11-tool --module "$MODULE" --sign -m ECDSA-SHA256 --id "$KEY" -i release.tar -o release.sig --signature-format openssl
openssl dgst -sha256 -verify key.der -keyform DER -signature release.sig release.tar"#;
/// OpenSSL 3 through libp11's pkcs11 engine, the key named by a `pkcs11:` URI.
const OPENSSL_ENGINE: &str = r#"PKCS11_MODULE_PATH="$MODULE" openssl pkeyutl -engine pkcs11 -keyform engine -sign \
    -inkey 'pkcs11:token=softhsm;object=targets%3Aexample.com%2Fapp;type=private' \
    -in release.sha256 -out release.sig
openssl pkeyutl -verify -pubin -inkey key.der -keyform DER -in release.sha256 -sigfile release.sig"#;
/// python-tuf signs a root with the key through HSMSigner.
const PYTHON_TUF: &str = r#"PYKCS11LIB="$MODULE" python3 sign_root.py"#;
/// The script `PYTHON_TUF` runs.
const SIGN_ROOT_PY: &str = r#"import os
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import HSMSigner
from tuf.api.metadata import Metadata, Root

# The key's PKCS#11 CKA_ID is its sigild key id; HSMSigner takes it as an integer.
hsm_keyid = int.from_bytes(bytes.fromhex(os.environ["KEY"]), "big")
uri, public_key = HSMSigner.import_(hsm_keyid, "softhsm")
# sigild holds the PIN: the secrets handler is asked for one and returns none.
signer = HSMSigner.from_priv_key_uri(uri, public_key, lambda _: "")

root = Metadata(Root(expires=datetime.now(timezone.utc) + timedelta(days=365)))
for role in ("root", "targets", "snapshot", "timestamp"):
    root.signed.add_key(public_key, role)
root.sign(signer)
root.to_file("root.json")

signed = Metadata.from_file("root.json")
signed.verify_delegate("root", signed)
print("root.json verified with key", public_key.keyid)
"#;

/// OpenSSH: ssh-agent loads the module (allowed by `-P`), ssh-add asks for a PIN the module
/// ignores, and `ssh-keygen -Y sign` signs a file with the agent's key; `-Y verify` checks it.
const SSH_AGENT: &str = r#"eval "$(ssh-agent -s -P "$MODULE")" > /dev/null
trap 'ssh-agent -k > /dev/null' EXIT
SSH_ASKPASS=/bin/true SSH_ASKPASS_REQUIRE=force ssh-add -s "$MODULE"
ssh-keygen -D "$MODULE" > sigil_key.pub
ssh-keygen -Y sign -f sigil_key.pub -n file release.tar
echo "release@example.com $(cat sigil_key.pub)" > allowed_signers
ssh-keygen -Y verify -f allowed_signers -I release@example.com -n file -s release.tar.sig < release.tar"#;

/// `target/debug/libsigil_pkcs11.so`, built once per test process (`cargo build --workspace
/// --bins` does not build cdylibs).
fn module() -> &'static Path {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| {
        if let Err(e) = cargo_build(&["--workspace", "--lib"]) {
            panic!("{e}");
        }
        let path = target_dir().join("debug").join("libsigil_pkcs11.so");
        assert!(
            path.is_file(),
            "cargo built but {} is missing",
            path.display()
        );
        path
    })
}

/// Runs `script` with `sh -eu` in `work`, with MODULE, SIGIL_SOCKET and `env` set, as `uid`
/// (None: this process's); returns (success, stdout + stderr).
fn sh(work: &Path, env: &[(&str, &str)], uid: Option<u32>, script: &str) -> (bool, String) {
    let mut cmd = Command::new("sh");
    cmd.args(["-eu", "-c", script])
        .current_dir(work)
        .stdin(Stdio::null())
        .env("MODULE", module());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(uid) = uid {
        cmd.uid(uid).gid(OTHER_GID);
    }
    let output = cmd.output().expect("running sh");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// [`sh`] as this process, panicking with the output unless it succeeds.
fn run(work: &Path, env: &[(&str, &str)], script: &str) -> String {
    let (ok, text) = sh(work, env, None, script);
    assert!(ok, "`{script}` failed:\n{text}");
    text
}

/// A work directory with the file the examples sign.
fn workdir(dir: &DevDir) -> PathBuf {
    let work = dir.root().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::write(
        work.join("release.tar"),
        b"sigil pkcs11 e2e: release contents\n",
    )
    .expect("release.tar");
    work
}

/// A P-256 key for targets:example.com/app, made through sigild.
async fn app_key(daemon: &sigil_e2e::Daemon) -> pb::PublicKey {
    let mut client = daemon.client().await;
    client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await
}

/// The successful sign records for `key_id` by `uid`.
fn signs_by(audit: &[AuditRecord], key_id: &str, uid: u32) -> usize {
    audit
        .iter()
        .filter(|r| r.op == "sign" && r.outcome == "ok" && r.key_id == key_id && r.uid == uid)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_tool_lists_and_signs_and_openssl_verifies() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let key = app_key(&daemon).await;
    let socket = daemon.socket().display().to_string();
    let env = [
        ("SIGIL_SOCKET", socket.as_str()),
        ("KEY", key.key_id.as_str()),
    ];
    let work = workdir(&dir);

    let slots = run(&work, &env, LIST_SLOTS);
    assert!(slots.contains("token label        : softhsm"), "{slots}");
    let objects = run(&work, &env, LIST_OBJECTS);
    assert_eq!(
        objects
            .matches("label:      targets:example.com/app")
            .count(),
        2,
        "{objects}"
    );
    assert!(
        objects.contains(&format!("ID:         {}", key.key_id)),
        "{objects}"
    );
    assert!(
        objects.contains("Access:     sensitive, always sensitive, never extractable, local"),
        "{objects}"
    );

    let signed = run(&work, &env, SIGN_DIGEST);
    assert!(signed.contains("Verified OK"), "{signed}");
    // The public key the module hands out is the one sigild holds.
    let der = std::fs::read(work.join("key.der")).expect("key.der");
    assert_eq!(
        der, key.spki_der,
        "the module's public key differs from sigild's"
    );
    let signed = run(&work, &env, SIGN_MESSAGE);
    assert!(signed.contains("Verified OK"), "{signed}");

    // Each signature is in the audit log under this uid.
    let audit = read_audit(daemon.audit_log());
    assert_eq!(
        signs_by(&audit, &key.key_id, nix::unistd::getuid().as_raw()),
        2,
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_signs_through_the_pkcs11_engine() {
    let engine = Path::new("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so");
    assert!(
        engine.exists(),
        "OpenSSL's pkcs11 engine missing: run `make deps` or `apt-get install -y libengine-pkcs11-openssl`"
    );
    let dir = DevDir::new();
    let daemon = dir.start();
    let key = app_key(&daemon).await;
    let socket = daemon.socket().display().to_string();
    let env = [
        ("SIGIL_SOCKET", socket.as_str()),
        ("KEY", key.key_id.as_str()),
    ];
    let work = workdir(&dir);

    run(&work, &env, SIGN_DIGEST);
    let out = run(&work, &env, OPENSSL_ENGINE);
    assert!(out.contains("Signature Verified Successfully"), "{out}");
    let audit = read_audit(daemon.audit_log());
    assert_eq!(
        signs_by(&audit, &key.key_id, nix::unistd::getuid().as_raw()),
        2,
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_agent_signs_and_ssh_keygen_verifies() {
    for tool in ["ssh-agent", "ssh-add", "ssh-keygen"] {
        assert!(
            sigil_e2e::on_path(tool),
            "{tool} missing: run `make deps` or `apt-get install -y openssh-client`"
        );
    }
    let dir = DevDir::new();
    let daemon = dir.start();
    let key = app_key(&daemon).await;
    let socket = daemon.socket().display().to_string();
    let env = [("SIGIL_SOCKET", socket.as_str())];
    let work = workdir(&dir);

    let out = run(&work, &env, SSH_AGENT);
    assert!(
        out.contains("Good \"file\" signature for release@example.com with ECDSA key"),
        "{out}"
    );
    let public = std::fs::read_to_string(work.join("sigil_key.pub")).expect("sigil_key.pub");
    assert!(
        public.starts_with("ecdsa-sha2-nistp256 ")
            && public.trim_end().ends_with(" targets:example.com/app"),
        "{public}"
    );
    // The agent's PKCS#11 helper signed through sigild, as this uid, with that key.
    let audit = read_audit(daemon.audit_log());
    assert_eq!(
        signs_by(&audit, &key.key_id, nix::unistd::getuid().as_raw()),
        1,
        "{audit:#?}"
    );
}

/// A venv under the target directory with python-tuf 7 and securesystemslib's HSM extra
/// (shared, flock-guarded creation: `sigil_e2e::python`).
fn python_venv() -> PathBuf {
    let python = sigil_e2e::python::venv(
        "pkcs11-venv",
        &["tuf>=7,<8", "securesystemslib[hsm]>=1.3"],
        "import tuf.api.metadata, securesystemslib.signer",
    );
    python
        .parent()
        .and_then(std::path::Path::parent)
        .expect("venv/bin/python")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_tuf_signs_a_root_with_hsm_signer() {
    let venv = python_venv();
    let dir = DevDir::new();
    let daemon = dir.start();
    // HSMSigner passes the id as an integer, which drops leading zero bytes: use a key
    // whose id has none (as the README says).
    let mut key = app_key(&daemon).await;
    while key.key_id.starts_with("00") {
        key = app_key(&daemon).await;
    }
    let socket = daemon.socket().display().to_string();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("SIGIL_SOCKET", socket.as_str()),
        ("KEY", key.key_id.as_str()),
        ("PATH", path.as_str()),
    ];
    let work = workdir(&dir);
    std::fs::write(work.join("sign_root.py"), SIGN_ROOT_PY).expect("sign_root.py");

    let out = run(&work, &env, PYTHON_TUF);
    assert!(out.contains("root.json verified with key"), "{out}");
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("root.json")).expect("root.json"))
            .expect("root.json parses");
    assert_eq!(
        root["signatures"].as_array().map(Vec::len),
        Some(1),
        "{root}"
    );
    let audit = read_audit(daemon.audit_log());
    assert_eq!(
        signs_by(&audit, &key.key_id, nix::unistd::getuid().as_raw()),
        1,
        "{audit:#?}"
    );
}

/// A copy of the module that uid 65534 can load (the target directory may be private).
fn module_for_stranger(dir: &DevDir) -> PathBuf {
    let copy = dir.root().join("libsigil_pkcs11.so");
    std::fs::copy(module(), &copy).expect("copying the module");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_uid_sees_only_what_the_policy_grants() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "switching to uid {OTHER_UID} needs root"
    );
    let dir = DevDir::new();
    let daemon = dir.start();
    let owners = app_key(&daemon).await;
    let mut client = daemon.client().await;
    let granted = client
        .generate("targets", "example.com/stranger", pb::Algorithm::EcdsaP256)
        .await;
    drop(client);
    assert!(daemon.stop().success());

    let config = dir
        .config()
        .append(&format!(
            "[[policy]]\nname = \"stranger\"\nuids = [{OTHER_UID}]\n\
             keys = [{{ gun = \"example.com/stranger\" }}]\nallow = [\"list\", \"public\", \"sign\"]\n"
        ))
        .write("stranger.toml");
    let daemon = dir.sigild_config(&config).spawn();
    let socket = daemon.socket().display().to_string();
    let work = workdir(&dir);
    let module = module_for_stranger(&dir);
    let module = module.to_str().expect("utf-8 path");
    let as_stranger = |key: &str, script: &str| {
        sh(
            &work,
            &[("SIGIL_SOCKET", &socket), ("KEY", key), ("MODULE", module)],
            Some(OTHER_UID),
            script,
        )
    };

    let (ok, objects) = as_stranger(&granted.key_id, LIST_OBJECTS);
    assert!(ok, "{objects}");
    assert!(
        objects.contains(&granted.key_id),
        "the granted key is listed:\n{objects}"
    );
    assert!(
        !objects.contains(&owners.key_id),
        "the owner's key leaked:\n{objects}"
    );
    assert!(!objects.contains("example.com/app"), "{objects}");

    // The owner's key cannot be named, so no sign reaches it; the granted one signs.
    let (ok, out) = as_stranger(&owners.key_id, SIGN_DIGEST);
    assert!(!ok, "the stranger signed with the owner's key:\n{out}");
    let (ok, out) = as_stranger(&granted.key_id, SIGN_DIGEST);
    assert!(ok && out.contains("Verified OK"), "{out}");
    let audit = read_audit(daemon.audit_log());
    assert_eq!(
        signs_by(&audit, &granted.key_id, OTHER_UID),
        1,
        "{audit:#?}"
    );
    assert!(
        !audit
            .iter()
            .any(|r| r.key_id == owners.key_id && r.uid == OTHER_UID && r.outcome == "ok"),
        "{audit:#?}"
    );
    drop(daemon);

    // With no grant at all (the dev policy), the stranger sees no slot and cannot sign.
    let daemon = dir.start();
    let socket = daemon.socket().display().to_string();
    let (_, slots) = sh(
        &work,
        &[("SIGIL_SOCKET", &socket), ("MODULE", module)],
        Some(OTHER_UID),
        LIST_SLOTS,
    );
    assert!(
        slots.contains("No slots.") && !slots.contains("softhsm"),
        "{slots}"
    );
    let (ok, out) = sh(
        &work,
        &[
            ("SIGIL_SOCKET", &socket),
            ("KEY", &granted.key_id),
            ("MODULE", module),
        ],
        Some(OTHER_UID),
        SIGN_DIGEST,
    );
    assert!(!ok, "{out}");
    let audit = read_audit(daemon.audit_log());
    assert_eq!(
        signs_by(&audit, &granted.key_id, OTHER_UID),
        1,
        "no new signature: {audit:#?}"
    );
}

#[test]
fn readme_shows_the_commands_the_tests_run() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    for command in [
        LIST_SLOTS,
        LIST_OBJECTS,
        SIGN_DIGEST,
        SIGN_MESSAGE,
        OPENSSL_ENGINE,
        PYTHON_TUF,
        SIGN_ROOT_PY,
        SSH_AGENT,
    ] {
        assert!(readme.contains(command), "README.md lacks:\n{command}");
    }
}
