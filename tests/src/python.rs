//! Python virtual environments for the tests that drive real Python peers (grpcio,
//! python-tuf, PyKCS11): made once under the target directory with packages from PyPI, and
//! shared by every test and test binary that asks for the same one. Creation holds an
//! exclusive `flock` on `<venv>.lock`, so tests running at once never install into the same
//! venv together (two concurrent `pip install`s leave a half-installed package behind).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

use crate::target_dir;

/// `target/<name>/bin/python`, with `packages` installed: made (or completed) when
/// `import_check` (Python statements, e.g. `import grpc`) fails in it. Panics with the
/// install command when python3 or its venv module is missing, or when pip fails.
pub fn venv(name: &str, packages: &[&str], import_check: &str) -> PathBuf {
    let venv = target_dir().join(name);
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", import_check])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let lock_path = target_dir().join(format!("{name}.lock"));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", lock_path.display()));
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking {}: {e}", lock_path.display()));
    if ready(&python) {
        return python;
    }
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .expect("python3 missing: apt-get install -y python3 python3-venv");
        assert!(
            made.status.success(),
            "python3 -m venv failed (apt-get install -y python3-venv):\n{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages)
        .output()
        .expect("running pip");
    assert!(
        pip.status.success(),
        "pip install {} failed (PyPI reachable?):\n{}",
        packages.join(" "),
        String::from_utf8_lossy(&pip.stderr)
    );
    assert!(
        ready(&python),
        "`{import_check}` fails after pip install {}",
        packages.join(" ")
    );
    python
}

/// The venv with python-tuf 7 (ngclient and the Metadata API) that every TUF 1.0 test shares.
/// `securesystemslib[crypto]` brings pyca/cryptography, without which securesystemslib can
/// neither check an ECDSA or Ed25519 signature (ngclient then refuses every one of them) nor
/// sign with an in-memory key.
pub fn tuf_venv() -> PathBuf {
    venv(
        "tuf-venv",
        &["tuf==7.0.0", "securesystemslib[crypto]"],
        "import tuf.api.metadata, tuf.ngclient, cryptography",
    )
}
