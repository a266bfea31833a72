//! `sigil tuf import-notary` (issue 10, items 5 and 6) against the real notary-server 0.7.0
//! (with sigild as its signer) and python-tuf's ngclient (PyPI `tuf` 7.0.0, in the venv
//! `tuf_repo.rs` uses): a collection sigil publishes, with a `targets/releases` delegation
//! limited to paths, moves to a TUF 1.0 repository signed by the same token keys; ngclient,
//! served the repository over loopback HTTP, downloads its targets and resolves the tag
//! `latest` to the digest `sigil lookup` gives from Notary. A CI uid allowed only the
//! releases key signs that role in both dialects and nothing else, as the audit log shows.
//! Verdicts come from ngclient, the served files and the audit log, not from sigil's output.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sigil_e2e::notary::{
    NotaryServer, Pki, free_port, require_notary, sigild_behind_notary_server,
};
use sigil_e2e::{Daemon, DevDir, OTHER_GID, OTHER_UID, sha256_hex};
use sigil_tuf::schema::tuf1::{self, Key};
use sigil_tuf::schema::{Root, Targets};
use sigil_tuf::{Metadata, PublicKey, RoleType};

/// `python -m http.server` serving a directory on 127.0.0.1, stopped by its pid on drop.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn start(python: &Path, dir: &Path) -> Self {
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

    fn url(&self, path: &str) -> String {
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
struct Env {
    dev: DevDir,
    _pki: Pki,
    daemon: Daemon,
    server: NotaryServer,
    python: PathBuf,
}

impl Env {
    fn start(policy: &str) -> Self {
        require_notary();
        // The same venv (name and packages) as tests/tests/tuf_repo.rs: `cryptography` lets
        // securesystemslib check ECDSA signatures.
        let python = sigil_e2e::python::venv(
            "tuf-venv",
            &["tuf==7.0.0", "securesystemslib[crypto]"],
            "import tuf.api.metadata, tuf.ngclient, cryptography",
        );
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
    fn admin(&self) -> Sigil {
        let home = self.dev.root().join("admin");
        fs::create_dir_all(&home).expect("admin home");
        Sigil {
            exe: sigil_e2e::sigil_cli().to_owned(),
            socket: self.daemon.socket().to_owned(),
            server: self.server.url(),
            ca: self.server.ca().to_owned(),
            trust: home.join("trust"),
            home,
            uid: None,
        }
    }

    /// `sigil` as uid 65534, with a copy of the binary and CA it can read.
    fn stranger(&self) -> Sigil {
        assert!(
            nix::unistd::geteuid().is_root(),
            "running sigil as uid {OTHER_UID} needs root: run the e2e suite as root (CI does)"
        );
        let home = self.dev.root().join("ci");
        fs::create_dir_all(&home).expect("ci home");
        let exe = home.join("sigil");
        fs::copy(sigil_e2e::sigil_cli(), &exe).expect("copying sigil");
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
    fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.dev.root().join("files").join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("files dir");
        fs::write(&path, content).expect("writing a file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        path.to_string_lossy().into_owned()
    }

    /// python-tuf's ngclient (trusted state in `client`, seeded with REPO's 1.root.json):
    /// downloads `names` and returns {name: {length, sha256, custom}}.
    fn ngclient_download(&self, repo: &Path, http: &HttpServer, names: &[&str]) -> Value {
        let state = self.dev.root().join("ngclient-download");
        let downloads = self.dev.root().join("downloads");
        let out = Command::new(&self.python)
            .arg(sigil_e2e::workspace_root().join("tests/py/ngclient_download.py"))
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
    fn ngclient_targetinfo(&self, repo: &Path, http: &HttpServer, names: &[&str]) -> Value {
        let out = Command::new(&self.python)
            .arg(sigil_e2e::workspace_root().join("tests/py/ngclient_targetinfo.py"))
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

fn chown_tree(path: &Path) {
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
struct Sigil {
    exe: PathBuf,
    socket: PathBuf,
    server: String,
    ca: PathBuf,
    trust: PathBuf,
    home: PathBuf,
    uid: Option<u32>,
}

impl Sigil {
    fn run(&self, args: &[&str]) -> Output {
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

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sigil {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[&["--json"], args].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }

    /// Runs and expects failure: (exit code, stderr).
    fn fails(&self, args: &[&str]) -> (i32, String) {
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
fn serve_target(repo: &Path, name: &str, content: &[u8]) {
    let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
    let path = repo
        .join("targets")
        .join(dir)
        .join(format!("{}.{base}", sha256_hex(content)));
    fs::create_dir_all(path.parent().expect("parent")).expect("targets dir");
    fs::write(path, content).expect("storing a target");
}

/// The public keys a Notary role's key ids name, in `keys`.
fn notary_publics<'a>(
    ids: impl IntoIterator<Item = (&'a str, &'a sigil_tuf::TufKey)>,
) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = ids
        .into_iter()
        .map(|(_, k)| k.to_public_key().expect("notary key"))
        .collect();
    keys.sort_by_key(PublicKey::key_id);
    keys
}

fn tuf1_publics<'a>(ids: impl IntoIterator<Item = (&'a str, &'a Key)>) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = ids
        .into_iter()
        .map(|(_, k)| k.to_public_key().expect("tuf key"))
        .collect();
    keys.sort_by_key(PublicKey::key_id);
    keys
}

fn read_tuf1<T: sigil_tuf::schema::RoleBody>(repo: &Path, file: &str) -> Metadata<T> {
    let bytes = fs::read(repo.join("metadata").join(file)).expect("reading metadata");
    Metadata::from_bytes(file, bytes).expect("TUF 1.0 metadata")
}

/// The highest published version of `role`.
fn latest(repo: &Path, role: &str) -> String {
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

const GUN: &str = "import.example/app";

#[test]
fn a_notary_collection_moves_to_tuf1_with_the_same_targets_keys_and_tag_digests() {
    let env = Env::start("");
    let admin = env.admin();
    let hello = b"hello from notary\n".to_vec();
    let release = b"release v1 built by CI\n".to_vec();
    let deep = b"a release several directories down\n".to_vec();
    let manifest = b"{\"schemaVersion\":2,\"config\":{}}".to_vec();
    let custom = env.file("custom.json", br#"{"built_by":"ci","n":3}"#);
    admin.ok(&["init", GUN]);
    admin.ok(&[
        "add",
        GUN,
        "hello.txt",
        &env.file("hello.txt", &hello),
        "--custom",
        &custom,
    ]);
    // A docker-style tag: only the image manifest's length and digest.
    admin.ok(&[
        "addhash",
        GUN,
        "latest",
        &manifest.len().to_string(),
        "--sha256",
        &sha256_hex(&manifest),
        "-p",
    ]);
    let releases_key = admin
        .ok(&[
            "key",
            "generate",
            "--role",
            "targets/releases",
            "--gun",
            GUN,
        ])
        .trim()
        .to_owned();
    admin.ok(&[
        "delegation",
        "add",
        GUN,
        "targets/releases",
        &releases_key,
        "--paths",
        "releases/",
        "-p",
    ]);
    admin.ok(&[
        "add",
        GUN,
        "releases/v1.tar",
        &env.file("v1.tar", &release),
        "-r",
        "targets/releases",
    ]);
    admin.ok(&[
        "add",
        GUN,
        "releases/a/b/c/deep.tar",
        &env.file("deep.tar", &deep),
        "-r",
        "targets/releases",
        "-p",
    ]);
    let notary_latest = admin.json(&["lookup", GUN, "latest"]);

    let repo = env.dev.root().join("tuf-repo");
    let summary = admin.json(&["tuf", "import-notary", GUN, repo.to_str().expect("utf8")]);
    assert_eq!(summary["targets"], 4, "{summary}");
    let releases = summary["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["notary_role"] == "targets/releases")
        .unwrap_or_else(|| panic!("no releases role in {summary}"));
    assert_eq!(releases["role"], "releases");
    assert_eq!(releases["keys"][0]["sigild_key_id"], releases_key.as_str());
    // Snapshot and timestamp keys were generated on the token for the GUN.
    let keys = admin.json(&["key", "list"]);
    for role in ["snapshot", "timestamp"] {
        let id = &summary[format!("{role}_key")]["sigild_key_id"];
        assert!(
            keys.as_array()
                .expect("keys")
                .iter()
                .any(|k| &k["key_id"] == id && k["role"] == role && k["gun"] == GUN),
            "{role} key {id} not on the token: {keys}"
        );
    }
    // Importing again into the same directory is refused, and changes nothing.
    let before = fs::read(repo.join("metadata/timestamp.json")).expect("timestamp");
    let (code, err) = admin.fails(&["tuf", "import-notary", GUN, repo.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already holds a repository"), "{err}");
    assert_eq!(
        fs::read(repo.join("metadata/timestamp.json")).expect("ts"),
        before
    );

    // Same keys: the TUF 1.0 root, targets and releases keys are the Notary collection's.
    let notary_root: Metadata<Root> =
        Metadata::from_bytes("root", env.server.metadata(GUN, "root")).expect("notary root");
    let notary_targets: Metadata<Targets> =
        Metadata::from_bytes("targets", env.server.metadata(GUN, "targets")).expect("targets");
    let tuf_root: Metadata<tuf1::Root> = read_tuf1(&repo, "1.root.json");
    for role in [RoleType::Root, RoleType::Targets] {
        assert_eq!(
            tuf1_publics(tuf_root.body().role_keys(role)),
            notary_publics(notary_root.body().role_keys(role)),
            "{role:?} keys differ"
        );
    }
    let tuf_targets: Metadata<tuf1::Targets> = read_tuf1(&repo, &latest(&repo, "targets"));
    let tuf_delegations = tuf_targets
        .body()
        .delegations
        .as_ref()
        .expect("delegations");
    let notary_delegations = notary_targets
        .body()
        .delegations
        .as_ref()
        .expect("delegations");
    let tuf_releases = tuf_delegations
        .role("releases")
        .expect("releases delegated");
    let notary_releases = notary_delegations
        .role("targets/releases")
        .expect("targets/releases");
    assert_eq!(
        tuf1_publics(tuf_delegations.role_keys(tuf_releases)),
        notary_publics(notary_delegations.role_keys(notary_releases)),
    );
    // The prefix became patterns that a TUF 1.0 client matches segment by segment.
    let paths = tuf_releases.paths();
    assert!(paths.contains(&"releases/*".to_owned()), "{paths:?}");
    assert!(paths.contains(&"releases/*/*/*/*".to_owned()), "{paths:?}");
    // Every hash Notary listed (sha256 and sha512), in hex.
    let hello_meta = &tuf_targets.body().targets["hello.txt"];
    assert_eq!(
        hex::encode(hello_meta.sha256().expect("sha256")),
        sha256_hex(&hello)
    );
    assert!(
        hello_meta.hashes.contains_key("sha512"),
        "{:?}",
        hello_meta.hashes
    );
    admin.ok(&["tuf", "verify", repo.to_str().expect("utf8")]);

    // ngclient reads it: targets downloaded (content served where consistent snapshots say)
    // with the lengths, hashes and custom data Notary listed.
    serve_target(&repo, "hello.txt", &hello);
    serve_target(&repo, "releases/v1.tar", &release);
    serve_target(&repo, "releases/a/b/c/deep.tar", &deep);
    let http = HttpServer::start(&env.python, &repo);
    let got = env.ngclient_download(
        &repo,
        &http,
        &["hello.txt", "releases/v1.tar", "releases/a/b/c/deep.tar"],
    );
    assert_eq!(got["hello.txt"]["sha256"], sha256_hex(&hello));
    assert_eq!(got["hello.txt"]["custom"]["built_by"], "ci", "{got}");
    assert_eq!(got["releases/v1.tar"]["sha256"], sha256_hex(&release));
    assert_eq!(got["releases/a/b/c/deep.tar"]["sha256"], sha256_hex(&deep));
    // `docker pull`-style: the tag resolves to the same digest in both dialects.
    let info = env.ngclient_targetinfo(&repo, &http, &["latest", "nightly"]);
    assert_eq!(
        info["latest"]["hashes"]["sha256"], notary_latest["sha256"],
        "{info}"
    );
    assert_eq!(notary_latest["sha256"], sha256_hex(&manifest));
    assert_eq!(info["latest"]["length"], manifest.len());
    assert!(info["nightly"].is_null(), "{info}");
}

/// uid 65534 may use only the `targets/releases` key of `GUN`.
fn ci_policy() -> String {
    format!(
        "[[policy]]\nname = \"ci-releases\"\nuids = [{OTHER_UID}]\n\
         keys = [{{ gun = \"{GUN}\", role = \"targets/releases\" }}]\n\
         allow = [\"sign\", \"public\", \"list\"]\n"
    )
}

#[test]
fn a_releases_key_allowed_to_a_ci_uid_signs_that_role_in_both_dialects_and_nothing_else() {
    let env = Env::start(&ci_policy());
    let admin = env.admin();
    admin.ok(&["init", GUN]);
    admin.ok(&["add", GUN, "base", &env.file("base", b"base\n"), "-p"]);
    let releases_key = admin
        .ok(&[
            "key",
            "generate",
            "--role",
            "targets/releases",
            "--gun",
            GUN,
        ])
        .trim()
        .to_owned();
    admin.ok(&[
        "delegation",
        "add",
        GUN,
        "targets/releases",
        &releases_key,
        "--all-paths",
        "-p",
    ]);
    // notary-server makes snapshots, so a delegate needs only its own key.
    admin.ok(&["key", "rotate", GUN, "snapshot", "-r"]);
    let keys = admin.json(&["key", "list"]);
    let key_of = |role: &str| -> String {
        keys.as_array()
            .expect("keys")
            .iter()
            .find(|k| k["role"] == role && k["gun"] == GUN)
            .unwrap_or_else(|| panic!("no {role} key in {keys}"))["key_id"]
            .as_str()
            .expect("key id")
            .to_owned()
    };
    let (root_key, targets_key) = (key_of("root"), key_of("targets"));

    // Notary dialect: the CI user publishes into targets/releases, not into targets.
    let ci = env.stranger();
    let rel = env.file("rel.tar", b"release by CI\n");
    ci.ok(&["add", GUN, "rel.tar", &rel, "-r", "targets/releases", "-p"]);
    let (_, err) = ci.fails(&["add", GUN, "evil", &rel, "-p"]);
    assert!(err.contains("cannot sign targets"), "{err}");
    ci.ok(&["reset", GUN, "--all"]);

    // The CI user cannot import (it holds no root key): the error names the key and role.
    let ci_repo = ci.home.join("tuf-by-ci");
    let (_, err) = ci.fails(&["tuf", "import-notary", GUN, ci_repo.to_str().expect("utf8")]);
    assert!(err.contains("role root needs 1"), "{err}");
    assert!(err.contains(&root_key), "{err}");
    assert!(
        !ci_repo.exists(),
        "a refused import wrote {}",
        ci_repo.display()
    );

    // TUF 1.0 dialect: the owner imports; the CI user stages and signs the releases role.
    let repo = env.dev.root().join("tuf-repo");
    let repo_arg = repo.to_str().expect("utf8").to_owned();
    // With snapshot and timestamp keys named instead of generated.
    let online: Vec<String> = ["snapshot", "timestamp"]
        .iter()
        .map(|role| {
            admin
                .ok(&[
                    "key",
                    "generate",
                    "--role",
                    role,
                    "--gun",
                    "tuf.example/online",
                ])
                .trim()
                .to_owned()
        })
        .collect();
    admin.ok(&[
        "tuf",
        "import-notary",
        GUN,
        &repo_arg,
        "--snapshot-key",
        &online[0],
        "--timestamp-key",
        &online[1],
    ]);
    let root: Metadata<tuf1::Root> = read_tuf1(&repo, "1.root.json");
    for (role, id) in [
        (RoleType::Snapshot, &online[0]),
        (RoleType::Timestamp, &online[1]),
    ] {
        let listed: Vec<String> = tuf1_publics(root.body().role_keys(role))
            .iter()
            .map(PublicKey::key_id)
            .collect();
        assert_eq!(listed, vec![id.clone()], "{role:?}");
    }
    chown_tree(&repo);
    let content = b"release v2 by CI\n";
    ci.ok(&[
        "tuf",
        "addhash",
        &repo_arg,
        "rel2.tar",
        &content.len().to_string(),
        "--sha256",
        &sha256_hex(content),
        "-r",
        "releases",
    ]);
    let signed = ci.json(&["tuf", "sign", &repo_arg, "releases", "--key", &releases_key]);
    assert_eq!(signed["role"], "releases", "{signed}");
    let staged: Value = serde_json::from_slice(
        &fs::read(repo.join(".sigil/staged/releases.json")).expect("staged releases"),
    )
    .expect("staged JSON");
    // Nothing else: root and targets keys are invisible to it (NOT_FOUND, exit 3).
    for (role, key) in [("root", &root_key), ("targets", &targets_key)] {
        let (code, err) = ci.fails(&["tuf", "sign", &repo_arg, role, "--key", key]);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("not found"), "{err}");
    }
    // Publishing needs the snapshot and timestamp keys, which the CI user does not have.
    let (_, err) = ci.fails(&["tuf", "publish", &repo_arg]);
    assert!(err.contains("snapshot"), "{err}");
    // The owner publishes; the CI user's signature on releases is what ngclient checks.
    admin.ok(&["tuf", "publish", &repo_arg]);
    admin.ok(&["tuf", "verify", &repo_arg]);
    let published: Value = serde_json::from_slice(
        &fs::read(repo.join("metadata").join(latest(&repo, "releases"))).expect("releases"),
    )
    .expect("published JSON");
    assert_eq!(published["signatures"], staged["signatures"]);
    let http = HttpServer::start(&env.python, &repo);
    let info = env.ngclient_targetinfo(&repo, &http, &["rel2.tar", "rel.tar"]);
    assert_eq!(
        info["rel2.tar"]["hashes"]["sha256"],
        sha256_hex(content),
        "{info}"
    );
    assert_eq!(
        info["rel.tar"]["hashes"]["sha256"],
        sha256_hex(b"release by CI\n")
    );

    // The audit log: the CI uid signed only with the releases key, in both dialects (a Notary
    // targets/releases and a TUF 1.0 releases document: two different digests), and was
    // refused the root and targets keys.
    // Lines of the Unix API and of the notary-signer endpoint differ in shape: read them as
    // JSON values.
    let audit: Vec<Value> = fs::read_to_string(env.daemon.audit_log())
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect();
    let ci_lines: Vec<&Value> = audit.iter().filter(|r| r["uid"] == OTHER_UID).collect();
    let ci_signed: Vec<&&Value> = ci_lines
        .iter()
        .filter(|r| r["op"] == "sign" && r["outcome"] == "ok")
        .collect();
    assert!(ci_signed.len() >= 2, "{ci_lines:#?}");
    assert!(
        ci_signed
            .iter()
            .all(|r| r["key_id"] == releases_key.as_str() && r["role"] == "targets/releases"),
        "{ci_signed:#?}"
    );
    let digests: std::collections::BTreeSet<String> =
        ci_signed.iter().map(|r| r["sha256"].to_string()).collect();
    assert!(digests.len() >= 2, "{ci_signed:#?}");
    for key in [&root_key, &targets_key] {
        assert!(
            ci_lines.iter().any(|r| r["key_id"] == key.as_str()
                && r["op"] == "public"
                && r["outcome"] == "not_found"),
            "no refusal of {key} audited: {ci_lines:#?}"
        );
        assert!(
            !ci_lines
                .iter()
                .any(|r| r["key_id"] == key.as_str() && r["outcome"] == "ok"),
            "the CI uid used {key}: {ci_lines:#?}"
        );
    }
}
