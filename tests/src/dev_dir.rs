//! [`DevDir`]: a fresh directory for `sigild --dev`; [`ConfigBuilder`] for custom
//! configurations over its token; [`Sigild`] (a command being prepared), [`Daemon`] (a running
//! daemon, stopped by its pid on drop) and [`Finished`] (one that was expected to refuse).

use super::*;

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
