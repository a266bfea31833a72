//! Harness for sigil's end-to-end tests: builds and spawns the real `sigild` on a throwaway
//! SoftHSM2 token in a fresh directory, talks to it over its Unix socket with the real gRPC
//! API, runs clients as another uid, and inspects the token and audit log from outside.
//!
//! Nothing here mocks the daemon. The pieces:
//!
//! - [`require_tools`]: fails (never skips) with the install command when SoftHSM2, OpenSSL or
//!   OpenSC's `pkcs11-tool` / `pkcs11-spy.so` are missing.
//! - [`sigild`]: the daemon binary, rebuilt once per test process with
//!   `cargo build -p sigil-daemon --bins` so the tests never run a stale daemon.
//! - [`DevDir`]: a fresh directory for `sigild --dev`, with the paths the daemon writes there,
//!   and [`ConfigBuilder`] for custom configurations over the same token.
//! - [`Sigild`] (a command being prepared), [`Daemon`] (a running daemon, stopped by its pid on
//!   drop) and [`Finished`] (a daemon that was expected to refuse to start).
//! - [`Client`]: tonic clients over the socket, with helpers that panic with context.
//! - [`Rpc`] / [`RpcOutcome`] / [`Stranger`]: one RPC made by the `sigil-e2e-client` helper
//!   binary running as uid/gid 65534, reported as JSON.
//! - [`TokenReport`]: what the `token-inspect` helper binary reads directly from the token.
//! - [`AuditRecord`] / [`read_audit`]: the audit log, parsed strictly.
//! - [`tmpfs`]: a small tmpfs for an audit log, and filling it (a full disk).
//! - [`scrape`]: HTTP/1 scrapes of sigild's metrics endpoint and their samples.
//!
//! Tests must not change their own environment (edition 2024 makes `set_var` unsafe, and unsafe
//! code is forbidden), so every child gets its environment on its `Command`.

mod audit_log;
pub mod bench;
pub mod cert_files;
mod client;
mod dev_dir;
pub mod metadata;
pub mod notary;
pub mod python;
pub mod scrape;
mod stranger;
pub mod tmpfs;
mod token_report;
pub mod tuf_lab;
pub mod yubikey;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use sigil_proto::sigil_v1 as pb;
use tonic::transport::{Channel, Endpoint};

pub use audit_log::*;
pub use client::*;
pub use dev_dir::*;
pub use stranger::*;
pub use token_report::*;

pub use pb::keys_client::KeysClient;
pub use pb::signer_client::SignerClient;

/// The SoftHSM2 PKCS#11 module that `sigild --dev` uses.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Token label of the dev token.
pub const DEV_TOKEN_LABEL: &str = "sigil-dev";
/// Backend name in the dev configuration.
pub const DEV_BACKEND: &str = "softhsm";
/// The stranger: uid of `nobody`.
pub const OTHER_UID: u32 = 65534;
/// The stranger's gid (`nogroup`).
pub const OTHER_GID: u32 = 65534;
/// How long a daemon may take to start serving or to exit.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(20);

/// Where OpenSC installs `pkcs11-spy.so`, which logs every PKCS#11 call a process makes.
const PKCS11_SPY_CANDIDATES: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so",
    "/usr/lib/aarch64-linux-gnu/pkcs11-spy.so",
    "/usr/lib64/pkcs11-spy.so",
    "/usr/lib/pkcs11-spy.so",
];

/// Whether `command` is an executable file in a directory of `$PATH`.
pub fn on_path(command: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            fs::metadata(dir.join(command)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
    })
}

/// Panics with the install command if a tool the suite needs is missing. Never skips.
pub fn require_tools() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        if !on_path("softhsm2-util") || !Path::new(SOFTHSM_MODULE).exists() {
            panic!("SoftHSM2 missing: run `make deps` or `apt-get install -y softhsm2`");
        }
        if !on_path("openssl") {
            panic!("OpenSSL missing: run `make deps` or `apt-get install -y openssl`");
        }
        if !on_path("pkcs11-tool") {
            panic!("pkcs11-tool missing: run `make deps` or `apt-get install -y opensc`");
        }
        if pkcs11_spy_path().is_none() {
            panic!(
                "pkcs11-spy.so (OpenSC) missing, looked in {}: run `apt-get install -y opensc-pkcs11`",
                PKCS11_SPY_CANDIDATES.join(", ")
            );
        }
    });
}

/// OpenSC's PKCS#11 call logger, if installed.
pub fn pkcs11_spy_path() -> Option<PathBuf> {
    PKCS11_SPY_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace root when
/// relative), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Runs `cargo build --quiet ARGS` in the workspace: a no-op when the binaries are fresh.
///
/// Cargo gives the running test or `cargo run` binary variables that describe *its* crate.
/// Some build scripts (ring's, for one) track e.g. `CARGO_MANIFEST_DIR`, so passing them on
/// would make this build and every ordinary `cargo build` rebuild half the tree in turn: they
/// are removed. The error carries cargo's output.
pub fn cargo_build(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .args(["build", "--quiet"])
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    const PER_CRATE: [&str; 7] = [
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if PER_CRATE.iter().any(|p| key.starts_with(p)) || key == "OUT_DIR" {
            build.env_remove(key);
        }
    }
    let output = build
        .output()
        .map_err(|e| format!("cannot run {cargo:?} to build {args:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build {}` failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The `sigild` binary, built (once per test process) from the current sources.
///
/// `cargo test -p sigil-e2e` does not build another crate's binaries, and a binary left over
/// from an earlier build would test old code, so this runs `cargo build --workspace --bins`
/// the first time it is called ([`workspace_bin`]); that is a no-op when the binary is fresh.
/// Panics with cargo's output if the build fails.
pub fn sigild() -> &'static Path {
    static SIGILD: OnceLock<PathBuf> = OnceLock::new();
    SIGILD.get_or_init(|| {
        require_tools();
        workspace_bin("sigild", "")
    })
}

/// The `sigil` CLI binary, built (once per test process) from the current sources, as
/// [`sigild`] is.
pub fn sigil_cli() -> &'static Path {
    static SIGIL: OnceLock<PathBuf> = OnceLock::new();
    SIGIL.get_or_init(|| workspace_bin("sigil", ""))
}

/// `cargo build --quiet --workspace --bins` (debug profile), then `target/debug/BIN`. The same
/// command as `make build`: with `-p PACKAGE` cargo would unify features for that package
/// alone and compile the daemon a second time, and `make test` would test that copy. `hint`
/// is added to the panic message when the build fails.
pub fn workspace_bin(bin: &str, hint: &str) -> PathBuf {
    if let Err(e) = cargo_build(&["--workspace", "--bins"]) {
        panic!("{e}{hint}");
    }
    let path = target_dir().join("debug").join(bin);
    assert!(
        path.is_file(),
        "cargo built the workspace but {} does not exist",
        path.display()
    );
    path
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// SHA-256 as bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// Deterministic pseudo-random bytes (a SHA-256 chain over `seed`): garbage that is the same
/// on every run, so a failure can be replayed.
pub fn pseudo_random_bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = sha256(seed.as_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = sha256(&block);
    }
    out.truncate(len);
    out
}

/// A TOML basic string holding `path` (JSON string escapes are valid TOML).
pub fn toml_path(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("a string always serialises")
}

/// Writes `contents` to `path` with permission bits `mode`.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>, mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Reads a file that must exist, as text (lossily).
pub fn read_text(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}
