//! A lab for moving Notary collections to TUF 1.0 (tests/tests/tuf_import.rs and
//! tuf_policy.rs): sigild on a fresh SoftHSM token as the real notary-server's signer, `sigil`
//! as the owner or as uid 65534, python-tuf's ngclient (the `tuf-venv` venv of
//! tests/tests/tuf_repo.rs) and a loopback HTTP server for a repository, stopped by its pid.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sigil_tuf::schema::tuf1::Key;
use sigil_tuf::{Metadata, PublicKey};

use crate::notary::{NotaryServer, Pki, free_port, require_notary, sigild_behind_notary_server};
use crate::{Daemon, DevDir, OTHER_GID, OTHER_UID, sha256_hex};

/// `python -m http.server` serving a directory on 127.0.0.1, stopped by its pid on drop.
pub struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    /// Serves `dir` with `python`'s http.server on a free port, once it listens.
    pub fn start(python: &Path, dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new(python)
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python -m http.server");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "http.server did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    /// The URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sigild on a fresh token, the real notary-server using it as its signer, the tuf venv.
pub struct Lab {
    /// sigild's directory (token, socket, audit log) and the test's scratch space.
    pub dev: DevDir,
    _pki: Pki,
    /// sigild, also notary-server's signer.
    pub daemon: Daemon,
    /// The real notary-server.
    pub server: NotaryServer,
    /// Python of the `tuf-venv` venv (python-tuf).
    pub python: PathBuf,
}

impl Lab {
    /// Starts sigild (with `policy`, extra TOML, appended to its config) and notary-server.
    pub fn start(policy: &str) -> Self {
        require_notary();
        let python = crate::python::tuf_venv();
        let dev = DevDir::new();
        dev.init();
        let pki = Pki::new(&dev.root().join("pki"), "sigil-import-e2e");
        let (daemon, _, server) = sigild_behind_notary_server(&dev, &pki, policy, "import.toml");
        Self {
            dev,
            _pki: pki,
            daemon,
            server,
            python,
        }
    }

    /// `sigil` as the test's user, with the notary server, its CA and a trust dir.
    pub fn admin(&self) -> Sigil {
        let home = self.dev.root().join("admin");
        fs::create_dir_all(&home).expect("admin home");
        Sigil {
            exe: crate::sigil_cli().to_owned(),
            socket: self.daemon.socket().to_owned(),
            server: self.server.url(),
            ca: self.server.ca().to_owned(),
            trust: home.join("trust"),
            home,
            uid: None,
        }
    }

    /// `sigil` as uid 65534, with a copy of the binary and CA it can read.
    pub fn stranger(&self) -> Sigil {
        assert!(
            nix::unistd::geteuid().is_root(),
            "running sigil as uid {OTHER_UID} needs root: run the e2e suite as root (CI does)"
        );
        let home = self.dev.root().join("ci");
        fs::create_dir_all(&home).expect("ci home");
        let exe = home.join("sigil");
        fs::copy(crate::sigil_cli(), &exe).expect("copying sigil");
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod");
        let ca = home.join("ca.crt");
        fs::copy(self.server.ca(), &ca).expect("copying the CA");
        fs::set_permissions(&ca, fs::Permissions::from_mode(0o644)).expect("chmod");
        chown_tree(&home);
        Sigil {
            exe,
            ca,
            trust: home.join("trust"),
            home,
            uid: Some(OTHER_UID),
            ..self.admin()
        }
    }

    /// A file under the test's root.
    pub fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.dev.root().join("files").join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("files dir");
        fs::write(&path, content).expect("writing a file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        path.to_string_lossy().into_owned()
    }

    /// python-tuf's ngclient (trusted state kept between calls, seeded with REPO's 1.root.json):
    /// downloads `names` and returns {name: {length, sha256, custom}}.
    pub fn ngclient_download(&self, repo: &Path, http: &HttpServer, names: &[&str]) -> Value {
        let state = self.dev.root().join("ngclient-download");
        let downloads = self.dev.root().join("downloads");
        let out = Command::new(&self.python)
            .arg(crate::workspace_root().join("tests/py/ngclient_download.py"))
            .arg("--metadata-dir")
            .arg(&state)
            .args(["--metadata-url", &http.url("metadata/")])
            .args(["--targets-url", &http.url("targets/")])
            .arg("--download-dir")
            .arg(&downloads)
            .arg("--root")
            .arg(repo.join("metadata/1.root.json"))
            .args(names)
            .output()
            .expect("running ngclient_download.py");
        assert!(
            out.status.success(),
            "ngclient refused the imported repository:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("ngclient JSON");
        report["targets"].clone()
    }

    /// ngclient's `get_targetinfo` for `names`: {name: {length, hashes, custom} | null}.
    pub fn ngclient_targetinfo(&self, repo: &Path, http: &HttpServer, names: &[&str]) -> Value {
        let out = Command::new(&self.python)
            .arg(crate::workspace_root().join("tests/py/ngclient_targetinfo.py"))
            .arg("--metadata-dir")
            .arg(self.dev.root().join("ngclient-info"))
            .args(["--metadata-url", &http.url("metadata/")])
            .arg("--root")
            .arg(repo.join("metadata/1.root.json"))
            .args(names)
            .output()
            .expect("running ngclient_targetinfo.py");
        assert!(
            out.status.success(),
            "ngclient refused the imported repository:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ngclient JSON")
    }
}

/// Gives `path` and everything under it to uid/gid 65534.
pub fn chown_tree(path: &Path) {
    let owner = Some(nix::unistd::Uid::from_raw(OTHER_UID));
    let group = Some(nix::unistd::Gid::from_raw(OTHER_GID));
    nix::unistd::chown(path, owner, group).expect("chown");
    if path.is_dir() {
        for entry in fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path());
        }
    }
}

/// The `sigil` CLI pointed at one notary server and trust dir.
#[derive(Debug, Clone)]
pub struct Sigil {
    exe: PathBuf,
    socket: PathBuf,
    server: String,
    ca: PathBuf,
    trust: PathBuf,
    /// Its home (and working directory).
    pub home: PathBuf,
    uid: Option<u32>,
}

impl Sigil {
    /// Runs `sigil ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.exe);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("SIGIL_SOCKET", &self.socket)
            .current_dir(&self.home)
            .arg("-s")
            .arg(&self.server)
            .arg("-d")
            .arg(&self.trust)
            .arg("--tlscacert")
            .arg(&self.ca)
            .args(args)
            .stdin(Stdio::null());
        if let Some(uid) = self.uid {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(uid).gid(OTHER_GID);
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("running sigil {args:?}: {e}"))
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sigil {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sigil key generate --role ROLE --gun GUN`: the new key's id.
    pub fn generate_key(&self, role: &str, gun: &str) -> String {
        self.ok(&["key", "generate", "--role", role, "--gun", gun])
            .trim()
            .to_owned()
    }

    /// Runs with `--json` and expects success; returns the parsed stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[&["--json"], args].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }

    /// Runs and expects failure: (exit code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "sigil {} should have failed",
            args.join(" ")
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Copies `content` to where a consistent-snapshot client fetches target `name`.
pub fn serve_target(repo: &Path, name: &str, content: &[u8]) {
    let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
    let path = repo
        .join("targets")
        .join(dir)
        .join(format!("{}.{base}", sha256_hex(content)));
    fs::create_dir_all(path.parent().expect("parent")).expect("targets dir");
    fs::write(path, content).expect("storing a target");
}

/// The public keys of Notary `(key id, key)` pairs (inside certificates), sorted by daemon key id.
pub fn notary_publics<'a>(
    ids: impl IntoIterator<Item = (&'a str, &'a sigil_tuf::TufKey)>,
) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = ids
        .into_iter()
        .map(|(_, k)| k.to_public_key().expect("notary key"))
        .collect();
    keys.sort_by_key(PublicKey::key_id);
    keys
}

/// The public keys of TUF 1.0 `(key id, key)` pairs, sorted by daemon key id.
pub fn tuf1_publics<'a>(ids: impl IntoIterator<Item = (&'a str, &'a Key)>) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = ids
        .into_iter()
        .map(|(_, k)| k.to_public_key().expect("tuf key"))
        .collect();
    keys.sort_by_key(PublicKey::key_id);
    keys
}

/// Parses `REPO/metadata/FILE`.
pub fn read_tuf1<T: sigil_tuf::schema::RoleBody>(repo: &Path, file: &str) -> Metadata<T> {
    let bytes = fs::read(repo.join("metadata").join(file)).expect("reading metadata");
    Metadata::from_bytes(file, bytes).expect("TUF 1.0 metadata")
}

/// The highest published version of `role`.
pub fn latest(repo: &Path, role: &str) -> String {
    let mut best = 0u64;
    for entry in fs::read_dir(repo.join("metadata")).expect("metadata dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(v) = name
            .strip_suffix(&format!(".{role}.json"))
            .and_then(|v| v.parse::<u64>().ok())
        {
            best = best.max(v);
        }
    }
    assert!(best > 0, "no {role} published");
    format!("{best}.{role}.json")
}
