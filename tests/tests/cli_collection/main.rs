//! `sigil`'s trusted collections (issue 3, the CLI) against the real Notary 0.7.0: what sigil
//! publishes the real `notary` client lists, looks up and verifies, and the other way round;
//! key rotations (targets, snapshot and timestamp to the server, root) keep both clients
//! verifying; a CI user whose sigild policy grants only a delegation key publishes into that
//! delegation and nothing else; tampered, expired and replayed metadata is refused with an
//! error naming the role; with the server down reads fail unless `--offline`, which verifies
//! the cache again; 10,000 targets go out in one publish with one signature per role.
//!
//! notary-server keeps its timestamp (and, after `key rotate … -r`, snapshot) keys on the same
//! sigild through its notary-signer endpoint, so every signature in every published file can
//! be matched to a line of sigild's audit log, and the tests can sign a timestamp with the
//! server's own key to build the expired and replayed ones. Nothing here trusts sigil's own
//! output for a verdict: the real client, the bytes notary-server serves and the audit log do.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use sigil_e2e::cert_files::{self, Curve, LEAF_EXTENSIONS};
use sigil_e2e::notary::{
    CLIENT_PASSPHRASES, CommandOutput, NotaryClient, NotaryServer, Pki, SignedDoc, connect_signer,
    free_port, https_request, read_audit_lines, require_notary, sigild_behind_notary_server,
};
use sigil_e2e::{Daemon, DevDir, OTHER_GID, OTHER_UID, openssl_in, sha256_hex};
use sigil_tuf::schema::{Expires, Root, Signature, SignatureMethod, Targets, Timestamp};
use sigil_tuf::{Metadata, RoleType, Signed, TufKey};

mod ci_user;
mod hostile_server;
mod interop;
mod keys;
mod pinning;
mod scale;

/// The `sigil` binary, built once per test process from the current sources.
fn sigil_exe() -> &'static Path {
    sigil_e2e::sigil_cli()
}

/// sigild (with its notary-signer endpoint) on a fresh token and the real notary-server using
/// it as its signer.
struct Env {
    dev: DevDir,
    pki: Pki,
    signer_port: u16,
    daemon: Daemon,
    server: NotaryServer,
}

impl Env {
    /// Starts both; `policy` is extra TOML appended to sigild's config.
    fn start(policy: &str) -> Self {
        require_notary();
        let dev = DevDir::new();
        dev.init();
        let pki = Pki::new(&dev.root().join("pki"), "sigil-cli-e2e");
        let (daemon, signer_port, server) =
            sigild_behind_notary_server(&dev, &pki, policy, "sigild-cli.toml");
        Self {
            dev,
            pki,
            signer_port,
            daemon,
            server,
        }
    }

    /// A directory under the test's root.
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.dev.root().join(name);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        dir
    }

    /// `sigil` as the test's own user, with its own trust dir.
    fn sigil(&self, name: &str) -> Sigil {
        let home = self.dir(name);
        Sigil {
            exe: sigil_exe().to_owned(),
            socket: self.daemon.socket().to_owned(),
            server: self.server.url(),
            ca: Some(self.server.ca().to_owned()),
            trust: home.join("trust"),
            home,
            uid: None,
        }
    }

    /// The real notary client with its own trust dir.
    fn notary(&self, name: &str) -> NotaryClient {
        self.server.client(&self.dir(name))
    }

    /// Writes a target file; returns its path and content.
    fn target(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir("files").join(name);
        fs::write(&path, content).expect("writing a target");
        path
    }

    /// The current root of `gun` as notary-server serves it.
    fn root(&self, gun: &str) -> Metadata<Root> {
        Metadata::from_bytes("root", self.server.metadata(gun, "root")).expect("served root")
    }
}

/// The `sigil` CLI pointed at one server and trust dir.
#[derive(Debug, Clone)]
struct Sigil {
    exe: PathBuf,
    socket: PathBuf,
    server: String,
    ca: Option<PathBuf>,
    trust: PathBuf,
    home: PathBuf,
    uid: Option<u32>,
}

impl Sigil {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("SIGIL_SOCKET", &self.socket)
            .current_dir(&self.home)
            .arg("-s")
            .arg(&self.server)
            .arg("-d")
            .arg(&self.trust);
        if let Some(ca) = &self.ca {
            cmd.arg("--tlscacert").arg(ca);
        }
        if let Some(uid) = self.uid {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(uid).gid(OTHER_GID);
        }
        cmd.args(args);
        cmd
    }

    /// Runs `sigil ARGS…` with standard input from `stdin` (or nothing).
    fn run_with(&self, args: &[&str], stdin: Option<&Path>) -> CommandOutput {
        let mut cmd = self.command(args);
        cmd.stdin(match stdin {
            Some(p) => Stdio::from(fs::File::open(p).expect("stdin file")),
            None => Stdio::null(),
        });
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("running sigil {args:?}: {e}"));
        CommandOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> CommandOutput {
        self.run_with(args, None)
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sigil {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Runs and expects failure; returns the `sigil: error:` line.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "sigil {} should have failed:\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stderr
            .lines()
            .find(|l| l.starts_with("sigil: error: "))
            .unwrap_or_else(|| panic!("no error line in:\n{}", out.stderr))
            .to_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(&[&["--json"], args].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }
}

/// Rows of a `notary list` table: name → (sha256 hex, size, role).
fn notary_rows(table: &str) -> BTreeMap<String, (String, u64, String)> {
    table
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), 4, "unexpected list row {l:?} in:\n{table}");
            (
                cols[0].to_owned(),
                (
                    cols[1].to_owned(),
                    cols[2].parse().expect("size"),
                    cols[3].to_owned(),
                ),
            )
        })
        .collect()
}

/// What `sigil --json list` printed, in the same shape.
fn sigil_rows(json: &serde_json::Value) -> BTreeMap<String, (String, u64, String)> {
    json.as_array()
        .expect("array")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_owned(),
                (
                    t["sha256"].as_str().expect("sha256").to_owned(),
                    t["length"].as_u64().expect("length"),
                    t["role"].as_str().expect("role").to_owned(),
                ),
            )
        })
        .collect()
}

fn expected(items: &[(&str, &[u8], &str)]) -> BTreeMap<String, (String, u64, String)> {
    items
        .iter()
        .map(|(name, content, role)| {
            (
                (*name).to_owned(),
                (
                    sha256_hex(content),
                    content.len() as u64,
                    (*role).to_owned(),
                ),
            )
        })
        .collect()
}

/// The trust dir holds notary's layout and no private key material at all.
fn assert_no_private_keys(trust: &Path) {
    assert!(
        !trust.join("private").exists(),
        "{} has a private/ directory",
        trust.display()
    );
    let mut stack = vec![trust.to_owned()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = fs::read(&path).expect("read");
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("PRIVATE KEY") && !text.contains("\"private\":\""),
                "{} holds private key material",
                path.display()
            );
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
            if name.ends_with(".json") {
                let doc = SignedDoc::parse(&bytes);
                assert!(!doc.signatures.is_empty(), "{} is unsigned", path.display());
            } else {
                assert!(
                    name.ends_with(".change"),
                    "unexpected file {} in the trust dir",
                    path.display()
                );
            }
        }
    }
    assert!(files > 0, "{} is empty", trust.display());
}

/// Every signature in every file of `gun` that notary-server serves (each root version, the
/// current targets, snapshot, timestamp and delegations) verifies and is in sigild's audit log
/// as a successful `sign` of exactly those bytes by that key.
fn assert_signatures_audited(env: &Env, gun: &str) -> usize {
    let audit = read_audit_lines(&env.dev.audit_log());
    let signed: BTreeSet<(String, String)> = audit
        .iter()
        .filter(|l| l.op == "sign" && l.outcome == "ok")
        .filter_map(|l| l.sha256.clone().map(|d| (l.key_id.clone(), d)))
        .collect();
    let latest = env.root(gun);
    let mut files: Vec<(String, Vec<u8>)> = (1..=latest.version())
        .map(|v| {
            let r = env
                .server
                .get(&format!("/v2/{gun}/_trust/tuf/{v}.root.json"));
            assert_eq!(r.status, 200, "{v}.root.json of {gun}");
            (format!("{v}.root"), r.body)
        })
        .collect();
    let mut keys: BTreeMap<String, TufKey> = BTreeMap::new();
    for (_, bytes) in &files {
        let root: Metadata<Root> = Metadata::from_bytes("root", bytes.clone()).expect("root");
        keys.extend(root.body().keys.clone());
    }
    let mut pending = vec!["targets".to_owned()];
    while let Some(role) = pending.pop() {
        let bytes = env.server.metadata(gun, &role);
        let m: Metadata<Targets> = Metadata::from_bytes(&role, bytes.clone()).expect("targets");
        if let Some(d) = &m.body().delegations {
            keys.extend(d.keys.clone());
            pending.extend(d.roles.iter().map(|r| r.name.clone()));
        }
        files.push((role, bytes));
    }
    for role in ["snapshot", "timestamp"] {
        files.push((role.to_owned(), env.server.metadata(gun, role)));
    }
    let mut checked = 0;
    for (role, bytes) in files {
        let doc = SignedDoc::parse(&bytes);
        let digest = sha256_hex(&doc.signed_bytes);
        assert!(!doc.signatures.is_empty(), "{role} of {gun} is unsigned");
        for sig in &doc.signatures {
            let key = keys
                .get(&sig.key_id)
                .unwrap_or_else(|| panic!("{role}: signature by unknown key {}", sig.key_id));
            let method = serde_json::from_value::<SignatureMethod>(serde_json::json!(sig.method))
                .expect("method");
            key.verify(&method, &doc.signed_bytes, &sig.sig)
                .unwrap_or_else(|e| panic!("{role}: signature by {} fails: {e}", sig.key_id));
            let daemon_id = key.to_public_key().expect("public key").key_id();
            assert!(
                signed.contains(&(daemon_id.clone(), digest.clone())),
                "{role} of {gun}: the signature by {} (daemon key {daemon_id}) over sha256 \
                 {digest} is not in sigild's audit log",
                sig.key_id
            );
            checked += 1;
        }
    }
    checked
}
