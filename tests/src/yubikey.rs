//! A virtual YubiKey per test: `vyubikey/harness.sh` runs pcscd and the vyubikey card in a
//! private mount namespace (pcscd 1.9.9 always serves `/run/pcscd/pcscd.comm`, so each card
//! gets its own tmpfs there) and a private network namespace with only `lo` (vpcd listens on
//! 0.0.0.0, which cannot be configured; there, only the card can reach it), and everything
//! that must see the card — sigild, yubico-piv-tool, opensc-tool — is started inside the mount
//! namespace with `nsenter --mount` (PC/SC is a Unix socket, so they keep the host network).
//!
//! The harness runs a small holder process (`sleep`) as its command; the holder's
//! `/proc/PID/ns/mnt` is the namespace to enter, and killing it makes the harness stop pcscd and
//! the card by their pids. The tests need root (for `unshare -m`) and the packages named in
//! [`require_vyubikey_tools`]; without them they fail with the install command, never skip.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{DevDir, read_text, workspace_bin, workspace_root, write_file};

/// How long the harness may take to bring the card up (it builds nothing).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails with the install command when something the virtual YubiKey needs is missing.
pub fn require_vyubikey_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the virtual YubiKey tests need root: vyubikey/harness.sh gives each card a private \
         /run/pcscd with `unshare -m` (run `make test-vyubikey` as root, as CI does)"
    );
    let needs = [
        ("/usr/sbin/pcscd", "pcscd"),
        (
            "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
            "vsmartcard-vpcd",
        ),
        ("/usr/bin/opensc-tool", "opensc"),
        ("/usr/bin/yubico-piv-tool", "yubico-piv-tool"),
        ("/usr/bin/nsenter", "util-linux"),
        ("/usr/bin/unshare", "util-linux"),
        ("/usr/bin/ip", "iproute2"),
    ];
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    assert!(
        missing.is_empty(),
        "the virtual YubiKey tests need: apt-get install -y --no-install-recommends {} \
         (plus libclang-dev to build vyubikey)",
        missing.join(" ")
    );
}

/// The vyubikey binary (a workspace member), built once per test process with
/// `cargo build -p vyubikey --bins` so the tests never run a stale card.
pub fn vyubikey_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("vyubikey", " (vyubikey needs libclang-dev)"))
}

/// A running virtual YubiKey (pcscd + vyubikey in their own mount namespace). Dropping it
/// stops both, by the pids the harness started.
#[derive(Debug)]
pub struct VirtualYubikey {
    harness: Option<Child>,
    holder: u32,
    /// The card's serial number.
    pub serial: u32,
    /// The harness's scratch directory (pcscd.log, vyubikey.log).
    pub state: PathBuf,
    /// The card's control socket.
    pub control: PathBuf,
    /// vpcd's TCP port, inside the card's own network namespace.
    pub port: u16,
    _tmp: tempfile::TempDir,
}

impl VirtualYubikey {
    /// Starts pcscd and a fresh card with `serial`; `card_args` go to vyubikey
    /// (e.g. `--touch-timeout 2`). Waits until pcscd sees the card.
    pub fn start(serial: u32, card_args: &str) -> Self {
        require_vyubikey_tools();
        Self::start_with(vyubikey_bin(), serial, card_args)
    }

    /// [`Self::start`] with a given vyubikey binary (e.g. a release build for benchmarks).
    pub fn start_with(bin: &Path, serial: u32, card_args: &str) -> Self {
        require_vyubikey_tools();
        let tmp = tempfile::Builder::new()
            .prefix("sigil-vyubikey-")
            .tempdir()
            .expect("temporary directory");
        let ready = tmp.path().join("ready");
        let harness = workspace_root().join("vyubikey").join("harness.sh");
        let child = Command::new(&harness)
            // --private-net: vpcd listens on 0.0.0.0 whatever it is told, so the card's
            // namespace gets its own network with only `lo`: nothing outside can reach it.
            .args(["--private-net", "--serial", &serial.to_string(), "--"])
            .args([
                "bash",
                "-c",
                "{ env | grep '^VYUBIKEY_'; echo \"HOLDER=$$\"; } >\"$0.tmp\" && mv \"$0.tmp\" \"$0\" \
                 && exec sleep 100000",
            ])
            .arg(&ready)
            .env("VYUBIKEY_BIN", bin)
            .env("VYUBIKEY_ARGS", card_args)
            .env_remove("VYUBIKEY_IN_NS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(tmp.path().join("harness.stderr"))
                    .expect("harness stderr file"),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", harness.display()));
        let mut card = Self {
            harness: Some(child),
            holder: 0,
            serial,
            state: PathBuf::new(),
            control: PathBuf::new(),
            port: 0,
            _tmp: tmp,
        };
        let started = Instant::now();
        while !ready.exists() {
            if let Some(Ok(Some(status))) = card.harness.as_mut().map(Child::try_wait) {
                panic!(
                    "vyubikey/harness.sh exited ({status}) before the card was ready:\n{}",
                    read_text(&card._tmp.path().join("harness.stderr"))
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the virtual YubiKey was not ready within {START_TIMEOUT:?}:\n{}",
                read_text(&card._tmp.path().join("harness.stderr"))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for line in read_text(&ready).lines() {
            if let Some((key, value)) = line.split_once('=') {
                match key {
                    "HOLDER" => card.holder = value.parse().expect("holder pid"),
                    "VYUBIKEY_STATE" => card.state = PathBuf::from(value),
                    "VYUBIKEY_CONTROL" => card.control = PathBuf::from(value),
                    "VYUBIKEY_PORT" => card.port = value.parse().expect("vpcd port"),
                    _ => {}
                }
            }
        }
        assert!(
            card.holder != 0 && card.control.is_absolute(),
            "harness ready file incomplete:\n{}",
            read_text(&ready)
        );
        card
    }

    /// The pid of a process inside the card's namespaces (the harness's holder).
    pub fn holder_pid(&self) -> u32 {
        self.holder
    }

    /// `nsenter --mount=/proc/HOLDER/ns/mnt --`: prefix for commands that must see this card.
    pub fn wrapper(&self) -> Vec<OsString> {
        vec![
            "nsenter".into(),
            format!("--mount=/proc/{}/ns/mnt", self.holder).into(),
            "--".into(),
        ]
    }

    /// A command run inside the card's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.holder))
            .arg("--")
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Sends one control command (`touch`, `remove`, `insert`, `status`, `auto-touch on`) and
    /// returns the reply line.
    pub fn ctl(&self, command: &str) -> String {
        let output = Command::new(vyubikey_bin())
            .arg("ctl")
            .arg(&self.control)
            .args(command.split_whitespace())
            .stdin(Stdio::null())
            .output()
            .expect("running vyubikey ctl");
        assert!(
            output.status.success(),
            "vyubikey ctl {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Waits until pcscd reports the card present (or absent).
    pub fn wait_present(&self, present: bool) {
        let want = if present { "Yes" } else { "No" };
        let started = Instant::now();
        loop {
            let output = self
                .command("opensc-tool")
                .arg("-l")
                .output()
                .expect("opensc-tool -l");
            let text = String::from_utf8_lossy(&output.stdout);
            if text
                .lines()
                .any(|l| l.contains(want) && l.contains("Yubico YubiKey vpcd 00 00"))
            {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "pcscd did not report the card {}:\n{text}",
                if present { "present" } else { "absent" }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `yubico-piv-tool ARGS` inside the namespace.
    pub fn piv_tool(&self, args: &[&str]) -> Output {
        self.command("yubico-piv-tool")
            .args(args)
            .output()
            .expect("running yubico-piv-tool")
    }

    /// The PIN tries left, as `yubico-piv-tool -a status` reports them.
    pub fn pin_tries(&self) -> u32 {
        pin_tries_in(&self.piv_tool(&["-a", "status"]))
    }

    /// The card's logs (pcscd with every APDU, vyubikey), for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- vyubikey.log\n{}",
            std::fs::read_to_string(self.state.join("vyubikey.log")).unwrap_or_default()
        )
    }
}

impl Drop for VirtualYubikey {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.holder)
            && pid > 0
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if let Some(mut child) = self.harness.take() {
            let started = Instant::now();
            while matches!(child.try_wait(), Ok(None)) {
                if started.elapsed() > START_TIMEOUT {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
        // The harness keeps its logs when its command was killed; keep them only for a
        // failing test.
        if std::thread::panicking() {
            eprintln!("virtual YubiKey logs kept in {}", self.state.display());
        } else if self.state.starts_with(std::env::temp_dir()) {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

/// Writes `DIR/sigild.toml`: one `yubikey` backend named "yubikey" for `card` (with a PIN file
/// when `pin` is given, and `backend_extra` TOML lines), sigild's state under `DIR/state`, an
/// owner rule for the test's uid, and `extra` TOML appended (more rules, `[[require]]`).
pub fn write_yubikey_config(
    dir: &DevDir,
    card: &TestYubikey,
    pin: Option<&str>,
    backend_extra: &str,
    extra: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir.path()).expect("creating the sigil dir");
    let pin_line = match pin {
        Some(pin) => {
            let pin_file = dir.path().join("yubikey.pin");
            write_file(&pin_file, format!("{pin}\n"), 0o600);
            format!("pin_file = {pin_file:?}")
        }
        None => String::new(),
    };
    let text = format!(
        "[server]\nsocket = {socket:?}\nsocket_mode = \"0666\"\naudit_log = {audit:?}\n\
         state_dir = {state:?}\n\n\
         [[backend]]\nname = \"yubikey\"\ntype = \"yubikey\"\nserial = {serial}\n\
         {pin_line}\n{backend_extra}\n\n\
         [[policy]]\nname = \"owner\"\nuids = [{uid}]\nkeys = [{{ gun = \"*\", role = \"*\" }}]\n\
         allow = [\"sign\", \"public\", \"list\", \"generate\", \"delete\"]\n{extra}\n",
        socket = dir.socket(),
        audit = dir.audit_log(),
        state = dir.path().join("state"),
        serial = card.serial,
        uid = nix::unistd::getuid().as_raw(),
    );
    let path = dir.path().join("sigild.toml");
    write_file(&path, text, 0o600);
    path
}

/// The PIN of a fresh virtual card (and the PIV default).
pub const DEFAULT_PIN: &str = "123456";
/// The slots sigild's `yubikey` backend uses: 9c, then the retired slots 82–95.
pub const SIGIL_SLOTS: [&str; 21] = [
    "9c", "82", "83", "84", "85", "86", "87", "88", "89", "8a", "8b", "8c", "8d", "8e", "8f", "90",
    "91", "92", "93", "94", "95",
];

/// Names the PHYSICAL YubiKey (its serial) that [`TestYubikey`] uses instead of a virtual one.
/// Only `make test-yubikey` sets it (from `YUBIKEY_SERIAL`); `make test` removes it.
pub const PHYSICAL_SERIAL_ENV: &str = "SIGIL_TEST_YUBIKEY_SERIAL";
/// The physical YubiKey's PIN (default [`DEFAULT_PIN`]).
pub const PHYSICAL_PIN_ENV: &str = "SIGIL_TEST_YUBIKEY_PIN";
/// For a physical YubiKey: Yubico's PIV attestation root CA (PEM), which attestation tests need.
pub const PHYSICAL_ATTESTATION_ROOT_ENV: &str = "SIGIL_TEST_YUBIKEY_ATTESTATION_ROOT";
/// How long a person gets to unplug, plug in or touch the physical YubiKey.
const HUMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// The YubiKey a backend test runs against: a fresh virtual card per test, or, when
/// [`PHYSICAL_SERIAL_ENV`] is set, that physical YubiKey through the system's pcscd, with the
/// touches, removals and insertions asked of the person at the keyboard.
#[derive(Debug)]
pub struct TestYubikey {
    /// `None` for the physical device.
    card: Option<VirtualYubikey>,
    /// The device's serial number (what sigild's `serial` names).
    pub serial: u32,
    pin: String,
    /// Tests in one process take turns on a physical device.
    _turn: Option<std::sync::MutexGuard<'static, ()>>,
}

impl TestYubikey {
    /// A fresh virtual YubiKey with `serial` and vyubikey flags `card_args`; or the physical
    /// YubiKey named by [`PHYSICAL_SERIAL_ENV`] (then `serial` and `card_args` are unused: the
    /// device's touch timeout is its own, about 15 s).
    pub fn start(serial: u32, card_args: &str) -> Self {
        match physical_serial() {
            Some(physical) => Self::physical(physical),
            None => {
                let card = VirtualYubikey::start(serial, card_args);
                Self {
                    serial: card.serial,
                    card: Some(card),
                    pin: DEFAULT_PIN.to_owned(),
                    _turn: None,
                }
            }
        }
    }

    fn physical(serial: u32) -> Self {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        for (path, pkg) in [
            ("/usr/bin/yubico-piv-tool", "yubico-piv-tool"),
            ("/usr/bin/opensc-tool", "opensc"),
        ] {
            assert!(
                Path::new(path).exists(),
                "{path} missing: apt-get install -y --no-install-recommends {pkg}"
            );
        }
        assert!(
            Path::new("/run/pcscd/pcscd.comm").exists(),
            "the physical YubiKey is reached through the system pcscd, which is not running: \
             systemctl start pcscd.socket (or run pcscd)"
        );
        let pin = std::env::var(PHYSICAL_PIN_ENV).unwrap_or_else(|_| DEFAULT_PIN.to_owned());
        let device = Self {
            card: None,
            serial,
            pin,
            _turn: Some(turn),
        };
        let status = device.piv_tool(&["-a", "status"]);
        let text = String::from_utf8_lossy(&status.stdout);
        let seen = text
            .lines()
            .find_map(|l| l.strip_prefix("Serial Number:"))
            .map(str::trim)
            .unwrap_or("none");
        assert_eq!(
            seen,
            serial.to_string(),
            "yubico-piv-tool sees YubiKey {seen}, not {serial}: attach only the YubiKey named by \
             YUBIKEY_SERIAL (yubico-piv-tool and opensc-tool in the tests use the first one)\n{}",
            String::from_utf8_lossy(&status.stderr)
        );
        // Start from a full PIN counter (a right PIN resets it), without ever spending the
        // last tries on a PIN that may be wrong.
        let tries = device.pin_tries();
        assert!(
            tries >= 2,
            "YubiKey {serial} has {tries} PIN tries left: unblock it with its PUK first"
        );
        device.restore_pin_counter();
        device
    }

    /// Whether this is a physical device.
    pub fn is_physical(&self) -> bool {
        self.card.is_none()
    }

    /// The attestation root CA the device's F9 certificate chains to: the virtual card's test
    /// CA, or for a physical YubiKey the PEM file named by [`PHYSICAL_ATTESTATION_ROOT_ENV`]
    /// (Yubico's PIV attestation root, which is not shipped here).
    pub fn attestation_root(&self) -> PathBuf {
        match &self.card {
            Some(card) => card.state.join("ca.pem"),
            None => std::env::var_os(PHYSICAL_ATTESTATION_ROOT_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    panic!(
                        "set {PHYSICAL_ATTESTATION_ROOT_ENV} to Yubico's PIV attestation root CA \
                         (PEM) to run the attestation tests on a physical YubiKey"
                    )
                }),
        }
    }

    /// The user PIN.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// Prefix for commands that must see the card: `nsenter --mount=…` for the virtual card
    /// (see [`VirtualYubikey::wrapper`]), `env` (no change) for a physical one. The prefix
    /// execs the command, so its pid is the command's.
    pub fn wrapper(&self) -> Vec<OsString> {
        match &self.card {
            Some(card) => card.wrapper(),
            None => vec!["env".into()],
        }
    }

    /// A command that sees the card.
    pub fn command(&self, program: &str) -> Command {
        match &self.card {
            Some(card) => card.command(program),
            None => {
                let mut cmd = Command::new(program);
                cmd.stdin(Stdio::null());
                cmd
            }
        }
    }

    /// `yubico-piv-tool ARGS` where the card is visible.
    pub fn piv_tool(&self, args: &[&str]) -> Output {
        self.command("yubico-piv-tool")
            .args(args)
            .output()
            .expect("running yubico-piv-tool")
    }

    /// The PIN tries left.
    pub fn pin_tries(&self) -> u32 {
        pin_tries_in(&self.piv_tool(&["-a", "status"]))
    }

    /// Verifies the right PIN with yubico-piv-tool, which resets the tries to the maximum.
    pub fn restore_pin_counter(&self) {
        let out = self.piv_tool(&["-a", "verify-pin", "-P", &self.pin]);
        assert!(
            out.status.success(),
            "YubiKey {}: the PIN ({PHYSICAL_PIN_ENV}) was refused: {}",
            self.serial,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Gives one touch: an operation waiting for it takes it, else the next one does. On a
    /// physical device, asks for it.
    pub fn touch(&self) {
        match &self.card {
            Some(card) => {
                let reply = card.ctl("touch");
                assert!(
                    reply == "ok armed" || reply == "ok touched",
                    "touch: {reply}"
                );
            }
            None => self.ask("touch the YubiKey once when it blinks (the next signature)"),
        }
    }

    /// The virtual card's `status` line (`present=1 waiting=9c grants=0 auto_touch=0`); a
    /// physical device has none.
    pub fn ctl_status(&self) -> String {
        match &self.card {
            Some(card) => card.ctl("status"),
            None => panic!("a physical YubiKey has no control socket"),
        }
    }

    /// Every touch the card asks for is given at once (`on`), or none (`off`).
    pub fn auto_touch(&self, on: bool) {
        match &self.card {
            Some(card) => {
                let reply = card.ctl(if on {
                    "auto-touch on"
                } else {
                    "auto-touch off"
                });
                assert_eq!(reply, "ok", "auto-touch");
            }
            None if on => self.ask("touch the YubiKey EVERY time it blinks, until told to stop"),
            None => self.ask("stop touching the YubiKey"),
        }
    }

    /// The next signature must get no touch (it times out). Virtual: nothing to do.
    pub fn no_touch(&self) {
        if self.card.is_none() {
            self.ask("do NOT touch the YubiKey now: waiting for its touch timeout (~15 s)");
        }
    }

    /// Takes the card out and waits until pcscd sees it gone.
    pub fn remove(&self) {
        match &self.card {
            Some(card) => {
                assert_eq!(card.ctl("remove"), "ok");
                card.wait_present(false);
            }
            None => {
                self.ask("UNPLUG the YubiKey now");
                self.wait_physical(false);
            }
        }
    }

    /// Puts the card back and waits until pcscd sees it.
    pub fn insert(&self) {
        match &self.card {
            Some(card) => {
                assert_eq!(card.ctl("insert"), "ok");
                card.wait_present(true);
            }
            None => {
                self.ask("PLUG the YubiKey back in now");
                self.wait_physical(true);
            }
        }
    }

    /// Polls `opensc-tool -l` until a Yubico reader with a card is listed (or none is).
    fn wait_physical(&self, present: bool) {
        let started = Instant::now();
        loop {
            let output = self.command("opensc-tool").arg("-l").output();
            let listed = output.as_ref().is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.contains("Yes") && l.contains("Yubico"))
            });
            if listed == present {
                return;
            }
            assert!(
                started.elapsed() < HUMAN_TIMEOUT,
                "the YubiKey was not {} within {HUMAN_TIMEOUT:?}",
                if present { "plugged in" } else { "unplugged" }
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Tells the person at the keyboard what to do (on the terminal when there is one, since
    /// the test harness captures stderr).
    fn ask(&self, what: &str) {
        use std::io::Write as _;
        let line = format!("\n>>> YubiKey {}: {what}\n", self.serial);
        match std::fs::OpenOptions::new().write(true).open("/dev/tty") {
            Ok(mut tty) => {
                let _ = tty.write_all(line.as_bytes());
            }
            Err(_) => eprint!("{line}"),
        }
    }

    /// The card's logs, for failure messages.
    pub fn logs(&self) -> String {
        match &self.card {
            Some(card) => card.logs(),
            None => format!("(physical YubiKey {}: no card logs)", self.serial),
        }
    }

    /// The slot (of [`SIGIL_SLOTS`]) whose certificate holds the key with sigild key id
    /// `key_id` (SHA-256 of the DER SubjectPublicKeyInfo, as OpenSSL reads it).
    pub fn slot_of(&self, key_id: &str) -> Option<String> {
        find_slot(|args| self.piv_tool(args), key_id)
    }

    /// `yubico-piv-tool -a attest -s SLOT` written to `out`, checked with OpenSSL: it is signed
    /// by the card's attestation certificate (slot f9), which chains to the virtual card's
    /// attestation CA. (Yubico's root CA is not shipped here: for a physical device the chain
    /// is checked up to its f9 certificate.)
    pub fn attest(&self, slot: &str, out: &Path) -> PathBuf {
        let attest = self.piv_tool(&["-a", "attest", "-s", slot]);
        assert!(
            attest.status.success(),
            "yubico-piv-tool -a attest -s {slot}: {}",
            String::from_utf8_lossy(&attest.stderr)
        );
        std::fs::write(out, &attest.stdout).expect("writing the attestation");
        let f9 = self.piv_tool(&["-a", "read-certificate", "-s", "f9"]);
        assert!(f9.status.success(), "read-certificate f9: {f9:?}");
        let f9_path = out.with_extension("f9.pem");
        std::fs::write(&f9_path, &f9.stdout).expect("writing the f9 certificate");
        let (ok, text) = match &self.card {
            Some(card) => {
                let ca = card.state.join("ca.pem");
                crate::openssl(&[
                    "verify".as_ref(),
                    "-CAfile".as_ref(),
                    ca.as_os_str(),
                    "-untrusted".as_ref(),
                    f9_path.as_os_str(),
                    out.as_os_str(),
                ])
            }
            None => crate::openssl(&[
                "verify".as_ref(),
                "-partial_chain".as_ref(),
                "-CAfile".as_ref(),
                f9_path.as_os_str(),
                out.as_os_str(),
            ]),
        };
        assert!(
            ok && text.contains(": OK"),
            "the attestation of slot {slot} does not verify: {text}"
        );
        out.to_owned()
    }
}

impl Drop for TestYubikey {
    fn drop(&mut self) {
        // A physical device is left with a full PIN counter (tests spend tries on purpose).
        if self.card.is_none() && !std::thread::panicking() {
            self.restore_pin_counter();
        } else if self.card.is_none() {
            let _ = self.piv_tool(&["-a", "verify-pin", "-P", &self.pin]);
        }
    }
}

/// The PIN tries left in `yubico-piv-tool -a status` output; panics with it if there are none.
fn pin_tries_in(status: &Output) -> u32 {
    let text = String::from_utf8_lossy(&status.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("PIN tries left:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no PIN tries in yubico-piv-tool -a status:\n{text}{}",
                String::from_utf8_lossy(&status.stderr)
            )
        })
}

/// The physical YubiKey's serial from [`PHYSICAL_SERIAL_ENV`], if set.
pub fn physical_serial() -> Option<u32> {
    let value = std::env::var(PHYSICAL_SERIAL_ENV).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| {
        panic!("{PHYSICAL_SERIAL_ENV}={value:?} is not a YubiKey serial number")
    }))
}

/// The slot (of [`SIGIL_SLOTS`]) whose certificate, as `yubico-piv-tool -a read-certificate`
/// (run by `piv_tool`) reads it, holds the key with sigild key id `key_id`.
pub fn find_slot(piv_tool: impl Fn(&[&str]) -> Output, key_id: &str) -> Option<String> {
    let dir = tempfile::Builder::new()
        .prefix("sigil-yk-slots-")
        .tempdir()
        .expect("temporary directory");
    SIGIL_SLOTS.iter().find_map(|slot| {
        let out = piv_tool(&["-a", "read-certificate", "-s", slot]);
        if !out.status.success() || out.stdout.is_empty() {
            return None;
        }
        let cert = dir.path().join(format!("{slot}.pem"));
        std::fs::write(&cert, &out.stdout).expect("writing a certificate");
        (spki_sha256(&cert) == key_id).then(|| (*slot).to_owned())
    })
}

/// SHA-256 of the DER SubjectPublicKeyInfo of a PEM certificate (sigild's key id for its key),
/// extracted by OpenSSL.
pub fn spki_sha256(cert: &Path) -> String {
    crate::sha256_hex(&spki_der(cert))
}

/// The DER SubjectPublicKeyInfo of a PEM certificate, extracted by OpenSSL.
pub fn spki_der(cert: &Path) -> Vec<u8> {
    let pub_pem = cert.with_extension("spki.pem");
    let pub_der = cert.with_extension("spki.der");
    let (ok, text) = crate::openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-pubkey".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
        "-out".as_ref(),
        pub_pem.as_os_str(),
    ]);
    assert!(ok, "openssl x509 -pubkey -in {}: {text}", cert.display());
    let (ok, text) = crate::openssl(&[
        "pkey".as_ref(),
        "-pubin".as_ref(),
        "-in".as_ref(),
        pub_pem.as_os_str(),
        "-outform".as_ref(),
        "DER".as_ref(),
        "-out".as_ref(),
        pub_der.as_os_str(),
    ]);
    assert!(ok, "openssl pkey -outform DER: {text}");
    std::fs::read(&pub_der).expect("reading the DER public key")
}
