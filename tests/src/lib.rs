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
//!
//! Tests must not change their own environment (edition 2024 makes `set_var` unsafe, and unsafe
//! code is forbidden), so every child gets its environment on its `Command`.

pub mod bench;
pub mod cert_files;
pub mod metadata;
pub mod notary;
pub mod python;
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

fn on_path(command: &str) -> bool {
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

static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one `sigild --dev` token and everything the test writes around it.
///
/// Layout: `<tmp>/` (mode 0711, so uid 65534 can reach the socket) holds `logs/` (stderr and
/// stdout of every sigild started here, kept for the leak checks) and `sigil/`, the directory
/// `sigild --dev` creates and fills (token, PIN files, config, socket, audit log).
#[derive(Debug)]
pub struct DevDir {
    tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Default for DevDir {
    fn default() -> Self {
        Self::new()
    }
}

impl DevDir {
    /// Makes the directory; the token is created by the first `sigild --dev` run.
    pub fn new() -> Self {
        require_tools();
        let tmp = tempfile::Builder::new()
            .prefix("sigil-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o711))
            .expect("chmod 0711 on the temporary directory");
        fs::create_dir(tmp.path().join("logs")).expect("creating logs/");
        let dir = tmp.path().join("sigil");
        Self { tmp, dir }
    }

    /// The outer temporary directory (mode 0711).
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The `--dev` directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where every sigild started here logs its stderr and stdout.
    pub fn logs(&self) -> PathBuf {
        self.root().join("logs")
    }

    /// `sigild.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("sigild.sock")
    }

    /// `audit.jsonl`.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// The config dev mode writes.
    pub fn dev_config(&self) -> PathBuf {
        self.dir.join("sigild.toml")
    }

    /// The SoftHSM2 configuration dev mode writes; `SOFTHSM2_CONF` for `--config` runs.
    pub fn softhsm_conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// The user PIN file.
    pub fn user_pin_file(&self) -> PathBuf {
        self.dir.join("user.pin")
    }

    /// The SO PIN file.
    pub fn so_pin_file(&self) -> PathBuf {
        self.dir.join("so.pin")
    }

    /// The user PIN, without its trailing newline.
    pub fn user_pin(&self) -> String {
        read_text(&self.user_pin_file()).trim_end().to_owned()
    }

    /// The SO PIN, without its trailing newline.
    pub fn so_pin(&self) -> String {
        read_text(&self.so_pin_file()).trim_end().to_owned()
    }

    /// Creates the token, PINs and config without serving (`sigild --dev DIR --check`).
    pub fn init(&self) {
        let done = self.sigild_dev().arg("--check").run_to_exit();
        assert!(
            done.status.success(),
            "sigild --dev --check failed ({}):\n{}",
            done.status,
            done.stderr
        );
    }

    /// `sigild --dev DIR`, to be adjusted and started.
    pub fn sigild_dev(&self) -> Sigild {
        let mut sigild = Sigild::new(self);
        sigild.cmd.arg("--dev").arg(&self.dir);
        sigild
    }

    /// `sigild --config CONFIG` with `SOFTHSM2_CONF` pointing at this directory's token.
    pub fn sigild_config(&self, config: &Path) -> Sigild {
        let mut sigild = Sigild::new(self);
        sigild
            .cmd
            .arg("--config")
            .arg(config)
            .env("SOFTHSM2_CONF", self.softhsm_conf());
        sigild
    }

    /// `WRAPPER... sigild --config CONFIG` (e.g. `nsenter --mount=... --`), to be started in
    /// another namespace; the wrapper must exec sigild so the pid stays the daemon's.
    pub fn sigild_wrapped(&self, wrapper: &[std::ffi::OsString], config: &Path) -> Sigild {
        let mut daemon = Sigild::new(self);
        let (program, args) = wrapper.split_first().expect("a wrapper command");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .arg(sigild())
            .arg("--config")
            .arg(config)
            .env_remove("SOFTHSM2_CONF")
            .env_remove("SIGIL_CONFIG")
            .env_remove("SIGIL_LOG")
            .env_remove("PCSCLITE_CSOCK_NAME")
            .stdin(Stdio::null());
        daemon.cmd = cmd;
        daemon
    }

    /// Starts `sigild --dev DIR` and waits until it serves.
    pub fn start(&self) -> Daemon {
        self.sigild_dev().spawn()
    }

    /// A configuration over this directory's token, socket and audit log.
    pub fn config(&self) -> ConfigBuilder {
        ConfigBuilder {
            dir: self.dir.clone(),
            socket: self.socket(),
            max_message_bytes: None,
            sessions: None,
            pin_file: self.user_pin_file(),
            module: PathBuf::from(SOFTHSM_MODULE),
            owner_rule: true,
            extra: String::new(),
            audit_log: None,
        }
    }

    /// Reads the token directly through the `token-inspect` helper (`exe`, from
    /// `env!("CARGO_BIN_EXE_token-inspect")`), logging in with `pin_file`.
    pub fn inspect_token_with_pin(&self, exe: &Path, pin_file: &Path) -> TokenReport {
        let output = Command::new(exe)
            .arg(SOFTHSM_MODULE)
            .arg(DEV_TOKEN_LABEL)
            .arg(pin_file)
            .env("SOFTHSM2_CONF", self.softhsm_conf())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
        assert!(
            output.status.success(),
            "token-inspect failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "token-inspect printed something that is not a report ({e}):\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// [`Self::inspect_token_with_pin`] with the dev user PIN.
    pub fn inspect_token(&self, exe: &Path) -> TokenReport {
        self.inspect_token_with_pin(exe, &self.user_pin_file())
    }

    /// Every sigild stderr/stdout log written under [`Self::logs`], with its path.
    pub fn all_logs(&self) -> Vec<(PathBuf, String)> {
        let mut logs: Vec<_> = fs::read_dir(self.logs())
            .expect("listing logs/")
            .map(|e| e.expect("reading logs/ entry").path())
            .map(|p| {
                let text = read_text(&p);
                (p, text)
            })
            .collect();
        logs.sort();
        logs
    }
}

/// A custom sigild configuration over a [`DevDir`]'s token (same socket and audit log).
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    dir: PathBuf,
    socket: PathBuf,
    max_message_bytes: Option<usize>,
    sessions: Option<usize>,
    pin_file: PathBuf,
    module: PathBuf,
    owner_rule: bool,
    extra: String,
    audit_log: Option<PathBuf>,
}

impl ConfigBuilder {
    /// `[server] audit_log` (default: `audit.jsonl` in the dev directory).
    pub fn audit_log(mut self, path: &Path) -> Self {
        self.audit_log = Some(path.to_owned());
        self
    }

    /// `[server] max_message_bytes`.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = Some(n);
        self
    }

    /// The backend's `sessions` (PKCS#11 sessions signing in parallel).
    pub fn sessions(mut self, n: usize) -> Self {
        self.sessions = Some(n);
        self
    }

    /// The backend's `pin_file`.
    pub fn pin_file(mut self, path: &Path) -> Self {
        self.pin_file = path.to_owned();
        self
    }

    /// The backend's PKCS#11 `module`.
    pub fn module(mut self, path: &Path) -> Self {
        self.module = path.to_owned();
        self
    }

    /// `[server] socket`.
    pub fn socket(mut self, path: &Path) -> Self {
        self.socket = path.to_owned();
        self
    }

    /// Leaves out the rule that gives the test's own uid every right.
    pub fn without_owner_rule(mut self) -> Self {
        self.owner_rule = false;
        self
    }

    /// Appends raw TOML (e.g. another `[[policy]]`).
    pub fn append(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// The TOML text.
    pub fn text(&self) -> String {
        let mut text = format!(
            "# Written by the sigil end-to-end tests.\n\
             [server]\nsocket = {socket}\nsocket_mode = \"0666\"\naudit_log = {audit}\n\
             state_dir = {state}\n",
            socket = toml_path(&self.socket),
            audit = toml_path(
                self.audit_log
                    .as_deref()
                    .unwrap_or(&self.dir.join("audit.jsonl"))
            ),
            state = toml_path(&self.dir.join("state")),
        );
        if let Some(n) = self.max_message_bytes {
            text.push_str(&format!("max_message_bytes = {n}\n"));
        }
        text.push_str(&format!(
            "\n[[backend]]\nname = \"{DEV_BACKEND}\"\ntype = \"pkcs11\"\nmodule = {module}\n\
             token_label = \"{DEV_TOKEN_LABEL}\"\npin_file = {pin}\n",
            module = toml_path(&self.module),
            pin = toml_path(&self.pin_file),
        ));
        if let Some(n) = self.sessions {
            text.push_str(&format!("sessions = {n}\n"));
        }
        if self.owner_rule {
            text.push_str(&format!(
                "\n[[policy]]\nname = \"owner\"\nuids = [{uid}]\nkeys = [{{ gun = \"*\", role = \"*\" }}]\n\
                 allow = [\"sign\", \"public\", \"list\", \"generate\", \"delete\"]\n",
                uid = nix::unistd::getuid().as_raw()
            ));
        }
        text.push('\n');
        text.push_str(&self.extra);
        text
    }

    /// Writes the config as `<dev dir>/<name>` (mode 0600) and returns its path.
    pub fn write(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        write_file(&path, self.text(), 0o600);
        path
    }
}

/// A `sigild` command being prepared; stderr and stdout go to files under [`DevDir::logs`].
#[derive(Debug)]
pub struct Sigild {
    cmd: Command,
    socket: PathBuf,
    audit_log: PathBuf,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl Sigild {
    fn new(dir: &DevDir) -> Self {
        let n = SPAWNED.fetch_add(1, Ordering::SeqCst);
        let mut cmd = Command::new(sigild());
        // The daemon's environment is exactly what the test gives it.
        cmd.env_remove("SOFTHSM2_CONF")
            .env_remove("SIGIL_CONFIG")
            .env_remove("SIGIL_LOG")
            .env_remove("PKCS11SPY")
            .env_remove("PKCS11SPY_OUTPUT")
            .stdin(Stdio::null());
        Self {
            cmd,
            socket: dir.socket(),
            audit_log: dir.audit_log(),
            stderr: dir.logs().join(format!("sigild-{n}.stderr")),
            stdout: dir.logs().join(format!("sigild-{n}.stdout")),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Sets an environment variable for the daemon.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Where the daemon serves, when it is not the dev directory's socket.
    pub fn socket(mut self, path: &Path) -> Self {
        self.socket = path.to_owned();
        self
    }

    fn launch(&mut self) -> Child {
        let file = |p: &Path| {
            fs::File::create(p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()))
        };
        self.cmd
            .stderr(file(&self.stderr))
            .stdout(file(&self.stdout))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", sigild().display()))
    }

    /// Starts the daemon and waits (up to [`DAEMON_TIMEOUT`]) until its socket accepts a
    /// connection. Panics with its stderr if it exits first or never serves.
    pub fn spawn(mut self) -> Daemon {
        let child = self.launch();
        let mut daemon = Daemon {
            child: Some(child),
            socket: self.socket,
            audit_log: self.audit_log,
            stderr: self.stderr,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = daemon.try_wait() {
                panic!(
                    "sigild exited ({status}) before serving:\n{}",
                    daemon.stderr()
                );
            }
            if std::os::unix::net::UnixStream::connect(&daemon.socket).is_ok() {
                return daemon;
            }
            if started.elapsed() > DAEMON_TIMEOUT {
                panic!(
                    "sigild did not serve {} within {DAEMON_TIMEOUT:?}:\n{}",
                    daemon.socket.display(),
                    daemon.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a daemon that is expected to exit on its own (a refused start, or `--check`).
    /// Panics if it is still running after [`DAEMON_TIMEOUT`] or if it starts serving.
    pub fn run_to_exit(mut self) -> Finished {
        let mut child = self.launch();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for sigild") {
                break status;
            }
            if started.elapsed() > DAEMON_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sigild was expected to exit but still ran after {DAEMON_TIMEOUT:?} \
                     (serving: {}):\n{}",
                    std::os::unix::net::UnixStream::connect(&self.socket).is_ok(),
                    read_text(&self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Finished {
            status,
            stderr: read_text(&self.stderr),
            stdout: read_text(&self.stdout),
        }
    }
}

/// A sigild run that ended by itself.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Everything it wrote to stdout.
    pub stdout: String,
}

impl Finished {
    /// The `sigild: error: ...` line, panicking unless the run failed with exactly one.
    pub fn error_line(&self) -> &str {
        assert!(
            !self.status.success(),
            "sigild was expected to fail but exited {}:\n{}",
            self.status,
            self.stderr
        );
        assert_eq!(self.status.code(), Some(1), "exit status: {}", self.stderr);
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("sigild: error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one `sigild: error:` line:\n{}",
            self.stderr
        );
        errors[0]
    }
}

/// A running sigild, stopped by the pid it was spawned with when dropped (SIGTERM, then SIGKILL
/// after [`DAEMON_TIMEOUT`]).
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
    audit_log: PathBuf,
    stderr: PathBuf,
}

impl Daemon {
    /// The daemon's pid (dev mode re-executes itself, keeping it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The socket it serves on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its audit log.
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        read_text(&self.stderr)
    }

    /// The file its stderr goes to.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// A fresh connection with both API clients.
    pub async fn client(&self) -> Client {
        connect(&self.socket).await
    }

    /// Waits until `needle` has appeared at least `count` times in its stderr; panics with the
    /// log after [`DAEMON_TIMEOUT`].
    pub fn wait_for_log(&self, needle: &str, count: usize) {
        let started = Instant::now();
        while self.stderr().matches(needle).count() < count {
            assert!(
                started.elapsed() < DAEMON_TIMEOUT,
                "sigild did not log {needle:?} {count} time(s):\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is still running; reaps it if not.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("waiting for sigild"))
    }

    /// Sends a signal to the daemon's pid.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid()).expect("pid fits in i32");
        kill(Pid::from_raw(pid), signal).unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
    }

    /// SIGTERM, then waits for the exit status. Panics (after SIGKILL) if it does not exit
    /// within [`DAEMON_TIMEOUT`].
    pub fn stop(self) -> ExitStatus {
        self.stop_within(DAEMON_TIMEOUT)
    }

    /// SIGTERM, then waits up to `timeout` for the exit status; panics (after SIGKILL) if the
    /// daemon is still running then.
    pub fn stop_within(mut self, timeout: Duration) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("sigild was already stopped");
        };
        if let Some(status) = child.try_wait().expect("waiting for sigild") {
            panic!(
                "sigild had already exited ({status}) before SIGTERM:\n{}",
                self.stderr()
            );
        }
        let pid = i32::try_from(child.id()).expect("pid fits in i32");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM to sigild");
        match wait_timeout(&mut child, timeout) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sigild (pid {pid}) was still running {timeout:?} after SIGTERM; killed:\n{}",
                    self.stderr()
                );
            }
        }
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => return None,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if wait_timeout(&mut child, DAEMON_TIMEOUT).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sigil.v1 clients and the gRPC health client, on one connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// `sigil.v1.Keys`.
    pub keys: KeysClient<Channel>,
    /// `sigil.v1.Signer`.
    pub signer: SignerClient<Channel>,
    /// `grpc.health.v1.Health`.
    pub health: tonic_health::pb::health_client::HealthClient<Channel>,
}

/// Deadline for any one RPC, so a hung daemon fails a test instead of stalling the suite
/// (an RSA-3072 key generation on SoftHSM takes well under this).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// An endpoint for a connection over a Unix socket: the URI is required by the API but never
/// resolved, since [`unix_channel`] dials the socket itself.
pub fn unix_endpoint() -> Endpoint {
    Endpoint::from_static("http://[::]:50051")
}

/// A gRPC channel over the Unix socket at `socket`, with `endpoint`'s settings (timeouts).
pub async fn unix_channel(
    endpoint: Endpoint,
    socket: &Path,
) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_owned();
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

/// Opens a gRPC connection over the Unix socket at `socket`.
pub async fn try_connect(socket: &Path) -> Result<Client, tonic::transport::Error> {
    let endpoint = unix_endpoint()
        .timeout(RPC_TIMEOUT)
        .connect_timeout(DAEMON_TIMEOUT);
    let channel = unix_channel(endpoint, socket).await?;
    Ok(Client {
        keys: KeysClient::new(channel.clone()),
        signer: SignerClient::new(channel.clone()),
        health: tonic_health::pb::health_client::HealthClient::new(channel),
    })
}

/// [`try_connect`], panicking with the socket path on failure.
pub async fn connect(socket: &Path) -> Client {
    try_connect(socket)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e:?}", socket.display()))
}

impl Client {
    /// GenerateKey on the only backend; panics on failure.
    pub async fn generate(
        &mut self,
        role: &str,
        gun: &str,
        algorithm: pb::Algorithm,
    ) -> pb::PublicKey {
        self.keys
            .generate_key(pb::GenerateKeyRequest {
                backend: String::new(),
                role: role.to_owned(),
                gun: gun.to_owned(),
                algorithm: algorithm.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("GenerateKey {algorithm:?} {role} {gun}: {s:?}"))
            .into_inner()
    }

    /// ListKeys without filters; panics on failure.
    pub async fn list(&mut self) -> Vec<pb::PublicKey> {
        self.keys
            .list_keys(pb::ListKeysRequest::default())
            .await
            .unwrap_or_else(|s| panic!("ListKeys: {s:?}"))
            .into_inner()
            .keys
    }

    /// GetPublicKey.
    pub async fn public(&mut self, key_id: &str) -> Result<pb::PublicKey, tonic::Status> {
        self.keys
            .get_public_key(pb::GetPublicKeyRequest {
                key_id: key_id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// DeleteKey.
    pub async fn delete(&mut self, key_id: &str) -> Result<(), tonic::Status> {
        self.keys
            .delete_key(pb::DeleteKeyRequest {
                key_id: key_id.to_owned(),
            })
            .await
            .map(|_| ())
    }

    /// Sign with an arbitrary request.
    pub async fn sign_request(
        &mut self,
        req: pb::SignRequest,
    ) -> Result<pb::SignResponse, tonic::Status> {
        self.signer.sign(req).await.map(tonic::Response::into_inner)
    }

    /// Sign a message (hashed by the daemon).
    pub async fn sign_message(
        &mut self,
        key_id: &str,
        message: &[u8],
        encoding: pb::SignatureEncoding,
    ) -> Result<pb::SignResponse, tonic::Status> {
        self.sign_request(sign_message_request(key_id, message, encoding))
            .await
    }

    /// Sign a precomputed digest (any length, so malformed ones can be sent).
    pub async fn sign_digest(
        &mut self,
        key_id: &str,
        digest: &[u8],
        encoding: pb::SignatureEncoding,
    ) -> Result<pb::SignResponse, tonic::Status> {
        self.sign_request(pb::SignRequest {
            key_id: key_id.to_owned(),
            payload: Some(pb::sign_request::Payload::Sha256Digest(digest.to_vec())),
            encoding: encoding.into(),
        })
        .await
    }
}

/// A SignRequest over a message.
pub fn sign_message_request(
    key_id: &str,
    message: &[u8],
    encoding: pb::SignatureEncoding,
) -> pb::SignRequest {
    pb::SignRequest {
        key_id: key_id.to_owned(),
        payload: Some(pb::sign_request::Payload::Message(message.to_vec())),
        encoding: encoding.into(),
    }
}

/// Parses a key's SPKI with the `tuf` crate, checking that its key id is the SHA-256 of it.
pub fn parse_public(key: &pb::PublicKey) -> sigil_tuf::key::PublicKey {
    let public = sigil_tuf::key::PublicKey::from_spki_der(&key.spki_der)
        .unwrap_or_else(|e| panic!("key {} has an unparsable spki_der: {e}", key.key_id));
    assert_eq!(
        key.key_id,
        sha256_hex(&key.spki_der),
        "key_id is not sha256(spki_der)"
    );
    assert_eq!(
        public.key_id(),
        key.key_id,
        "tuf key id differs from the daemon's"
    );
    public
}

/// One line of the audit log. Unknown fields are refused, so nothing extra (a payload, a
/// secret) can slip into it unnoticed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// RFC 3339 time.
    pub time: String,
    /// Hex SHA-256 of the previous line (the hash chain).
    pub prev: String,
    /// `sign`, `generate`, `delete`, or `public` (refused GetPublicKey calls only).
    pub op: String,
    /// Caller uid.
    pub uid: u32,
    /// Caller gid.
    pub gid: u32,
    /// Caller pid.
    pub pid: Option<i32>,
    /// Key id (as requested when not found).
    pub key_id: String,
    /// Key role (empty when no such key exists).
    pub role: String,
    /// Key GUN.
    pub gun: String,
    /// Backend name.
    pub backend: String,
    /// Algorithm name.
    pub algorithm: Option<String>,
    /// Hex SHA-256 of what was signed.
    pub sha256: Option<String>,
    /// `ok`, `denied`, `not_found`, `invalid` or `error`.
    pub outcome: String,
    /// Why it was refused.
    pub reason: Option<String>,
    /// Time spent, µs.
    pub latency_us: u64,
    /// On `suppressed` lines: how many refusals were counted instead of written.
    #[serde(default)]
    pub suppressed: Option<u64>,
    /// What sign-metadata (or the notary-signer endpoint) read from the bytes to sign.
    #[serde(default)]
    pub metadata: Option<AuditMetadata>,
}

/// The `metadata` object of an audit line (DESIGN §9).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditMetadata {
    /// `notary`, `tuf-1.0` or `x509`.
    pub dialect: String,
    /// `_type`, or `root-certificate`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Version (0 for a certificate).
    pub version: u64,
    /// Expiry as written.
    pub expires: String,
    /// Targets listed.
    pub targets: usize,
}

/// Every line of an audit log, parsed strictly (panics on a malformed line).
pub fn read_audit(path: &Path) -> Vec<AuditRecord> {
    read_json_lines(path, "an audit record")
}

/// Every line of a JSON-lines file as a `T` (no file: none); panics naming the file, the
/// line and `what` a line should have been when one does not parse.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Vec<T> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{}:{}: not {what} ({e}): {line}", path.display(), i + 1)
            })
        })
        .collect()
}

/// One RPC for the `sigil-e2e-client` helper, passed to it as JSON on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Rpc {
    /// ListKeys.
    List,
    /// GetPublicKey.
    Public {
        /// Key id.
        key_id: String,
    },
    /// Sign a message, RAW encoding.
    Sign {
        /// Key id.
        key_id: String,
        /// Message, hex.
        message_hex: String,
    },
    /// Sign a precomputed SHA-256 digest, RAW encoding.
    SignDigest {
        /// Key id.
        key_id: String,
        /// The digest, hex.
        digest_hex: String,
    },
    /// GenerateKey (ECDSA P-256).
    Generate {
        /// Role.
        role: String,
        /// GUN.
        gun: String,
    },
    /// GenerateKey (ECDSA P-256) on a named backend.
    GenerateOn {
        /// Backend name.
        backend: String,
        /// Role.
        role: String,
        /// GUN.
        gun: String,
    },
    /// DeleteKey.
    Delete {
        /// Key id.
        key_id: String,
    },
}

/// What the helper saw: who it ran as, and the RPC's status and result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcOutcome {
    /// The helper's real uid.
    pub uid: u32,
    /// The helper's real gid.
    pub gid: u32,
    /// The helper's supplementary groups.
    pub groups: Vec<u32>,
    /// gRPC status code (`tonic::Code as i32`); 0 for OK.
    pub code: i32,
    /// gRPC status message.
    pub message: String,
    /// Keys returned (ListKeys, GetPublicKey, GenerateKey).
    pub key_ids: Vec<String>,
    /// Signature, hex (Sign).
    pub signature_hex: String,
}

impl RpcOutcome {
    /// The status code.
    pub fn code(&self) -> tonic::Code {
        tonic::Code::from_i32(self.code)
    }
}

/// Performs `rpc` on `client`, reporting the outcome (used by the helper binary).
pub async fn perform(client: &mut Client, rpc: &Rpc) -> RpcOutcome {
    let mut outcome = RpcOutcome {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        groups: nix::unistd::getgroups()
            .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default(),
        code: 0,
        message: String::new(),
        key_ids: Vec::new(),
        signature_hex: String::new(),
    };
    let result: Result<(), tonic::Status> = match rpc {
        Rpc::List => client
            .keys
            .list_keys(pb::ListKeysRequest::default())
            .await
            .map(|r| outcome.key_ids = r.into_inner().keys.into_iter().map(|k| k.key_id).collect()),
        Rpc::Public { key_id } => client
            .public(key_id)
            .await
            .map(|k| outcome.key_ids = vec![k.key_id]),
        Rpc::Sign {
            key_id,
            message_hex,
        } => {
            let message = hex::decode(message_hex).unwrap_or_default();
            client
                .sign_message(key_id, &message, pb::SignatureEncoding::Raw)
                .await
                .map(|r| outcome.signature_hex = hex::encode(r.signature))
        }
        Rpc::SignDigest { key_id, digest_hex } => {
            let digest = hex::decode(digest_hex).unwrap_or_default();
            client
                .sign_request(pb::SignRequest {
                    key_id: key_id.clone(),
                    payload: Some(pb::sign_request::Payload::Sha256Digest(digest)),
                    encoding: pb::SignatureEncoding::Raw.into(),
                })
                .await
                .map(|r| outcome.signature_hex = hex::encode(r.signature))
        }
        Rpc::Generate { role, gun } => client
            .keys
            .generate_key(pb::GenerateKeyRequest {
                backend: String::new(),
                role: role.clone(),
                gun: gun.clone(),
                algorithm: pb::Algorithm::EcdsaP256.into(),
            })
            .await
            .map(|r| outcome.key_ids = vec![r.into_inner().key_id]),
        Rpc::GenerateOn { backend, role, gun } => client
            .keys
            .generate_key(pb::GenerateKeyRequest {
                backend: backend.clone(),
                role: role.clone(),
                gun: gun.clone(),
                algorithm: pb::Algorithm::EcdsaP256.into(),
            })
            .await
            .map(|r| outcome.key_ids = vec![r.into_inner().key_id]),
        Rpc::Delete { key_id } => client.delete(key_id).await,
    };
    if let Err(status) = result {
        outcome.code = status.code() as i32;
        outcome.message = status.message().to_owned();
    }
    outcome
}

/// Runs the `sigil-e2e-client` helper as uid/gid 65534 with no supplementary groups.
#[derive(Debug)]
pub struct Stranger {
    exe: PathBuf,
    _copy: Option<tempfile::TempDir>,
}

/// `Path` of the `sigil-e2e-client` helper binary, for [`Stranger::new`]. A macro because
/// `CARGO_BIN_EXE_*` exists only when compiling this crate's integration tests.
#[macro_export]
macro_rules! client_exe {
    () => {
        std::path::Path::new(env!("CARGO_BIN_EXE_sigil-e2e-client"))
    };
}

/// `Path` of the `token-inspect` helper binary, for [`DevDir::inspect_token`].
#[macro_export]
macro_rules! token_inspect_exe {
    () => {
        std::path::Path::new(env!("CARGO_BIN_EXE_token-inspect"))
    };
}

fn reachable_by_others(path: &Path) -> bool {
    let file_ok = fs::metadata(path).is_ok_and(|m| m.mode() & 0o005 == 0o005);
    file_ok
        && path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .all(|dir| fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0))
}

impl Stranger {
    /// Prepares to run `exe` (see [`client_exe!`]) as uid 65534. Panics unless the tests run
    /// as root, which switching uid needs. If uid 65534 cannot reach `exe` (a private target
    /// directory), a copy is made in a 0711 temporary directory with mode 0755.
    pub fn new(exe: &Path) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "running a client as uid {OTHER_UID} needs root: run the e2e suite as root (CI does)"
        );
        if reachable_by_others(exe) {
            return Self {
                exe: exe.to_owned(),
                _copy: None,
            };
        }
        let dir = tempfile::Builder::new()
            .prefix("sigil-e2e-client-")
            .tempdir()
            .expect("temporary directory for the client copy");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).expect("chmod 0711");
        let copy = dir.path().join("sigil-e2e-client");
        fs::copy(exe, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", exe.display()));
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        Self {
            exe: copy,
            _copy: Some(dir),
        }
    }

    /// Performs `rpc` against `socket` as uid/gid 65534. std drops the supplementary groups
    /// when it switches uid; the helper reports its identity so the tests can check.
    pub fn run(&self, socket: &Path, rpc: &Rpc) -> RpcOutcome {
        self.run_with_gid(socket, rpc, OTHER_GID)
    }

    /// Performs `rpc` as uid 65534 with gid `gid` (as a setgid program of that group would).
    pub fn run_with_gid(&self, socket: &Path, rpc: &Rpc, gid: u32) -> RpcOutcome {
        use std::os::unix::process::CommandExt as _;
        let output = Command::new(&self.exe)
            .arg(socket)
            .arg(serde_json::to_string(rpc).expect("Rpc serialises"))
            .uid(OTHER_UID)
            .gid(gid)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {} as uid {OTHER_UID}: {e}", self.exe.display()));
        assert!(
            output.status.success(),
            "sigil-e2e-client {rpc:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let outcome: RpcOutcome = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "sigil-e2e-client printed no outcome ({e}):\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        assert_eq!(
            (outcome.uid, outcome.gid, outcome.groups.as_slice()),
            (OTHER_UID, gid, &[][..]),
            "the helper did not run as uid {OTHER_UID}, gid {gid} without supplementary groups"
        );
        outcome
    }
}

/// What `token-inspect` found on the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenReport {
    /// `CKF_USER_PIN_COUNT_LOW` (SoftHSM sets it after a wrong PIN).
    pub user_pin_count_low: bool,
    /// `CKF_USER_PIN_FINAL_TRY`.
    pub user_pin_final_try: bool,
    /// `CKF_USER_PIN_LOCKED`.
    pub user_pin_locked: bool,
    /// Why C_Login failed; `None` when the PIN was accepted.
    pub login_error: Option<String>,
    /// Every private key object on the token.
    pub private_keys: Vec<PrivateKeyReport>,
    /// How many public key objects are on the token.
    pub public_key_count: usize,
}

/// One private key object, as the token describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrivateKeyReport {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id_hex: String,
    /// Daemon key id computed from the public key object with the same `CKA_ID`.
    pub key_id: Option<String>,
    /// `CKA_KEY_TYPE`.
    pub key_type: String,
    /// Boolean attributes by name (`Sensitive`, `Extractable`, ...); absent when unreadable.
    pub flags: BTreeMap<String, bool>,
    /// Secret-bearing attributes (`Value`, or RSA's private exponent and primes) as
    /// `C_GetAttributeValue` answers for each alone: `sensitive`, `available(N)`,
    /// `unavailable` or `type_invalid`.
    pub secret_attributes: BTreeMap<String, String>,
    /// Secret-bearing attributes that a bulk `get_attributes` call returned a value for.
    pub secret_values_returned: Vec<String>,
}

impl PrivateKeyReport {
    /// A boolean attribute; panics if the token did not report it.
    pub fn flag(&self, name: &str) -> bool {
        *self
            .flags
            .get(name)
            .unwrap_or_else(|| panic!("{}: attribute {name} not reported", self.label))
    }
}

impl TokenReport {
    /// The private key whose public half has this daemon key id.
    pub fn key(&self, key_id: &str) -> Option<&PrivateKeyReport> {
        self.private_keys
            .iter()
            .find(|k| k.key_id.as_deref() == Some(key_id))
    }
}

/// Writes a key's PEM (from the `tuf` crate) to `path`.
pub fn write_pem(path: &Path, key: &sigil_tuf::key::PublicKey) {
    write_file(path, key.to_pem(), 0o644);
}

/// Runs `openssl ARGS…` in `dir`, panicking with its stderr unless it succeeds.
pub fn openssl_in(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl (apt-get install -y openssl): {e}"));
    assert!(
        output.status.success(),
        "openssl {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `openssl` with `args`; returns whether it succeeded, and its combined output.
pub fn openssl(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Reads whatever a raw connection sends until EOF or `timeout`; returns the bytes and whether
/// the peer closed the connection.
pub fn read_until_closed(
    stream: &mut std::os::unix::net::UnixStream,
    timeout: Duration,
) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set_read_timeout");
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < timeout {
        match stream.read(&mut buf) {
            Ok(0) => return (received, true),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (received, true),
            Err(e) => panic!("reading from the raw connection: {e}"),
        }
    }
    (received, false)
}
