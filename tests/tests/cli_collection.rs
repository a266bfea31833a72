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

#[test]
fn sigil_publishes_and_the_real_notary_client_lists_looks_up_and_verifies() {
    let env = Env::start("");
    let sigil = env.sigil("admin");
    let gun = "e2e.example/sigil-made";
    let a = b"#!/bin/sh\necho signed by a key on a token\n".to_vec();
    let b = sigil_e2e::pseudo_random_bytes("b.bin", 70_000);
    let c_digest = sigil_e2e::sha256(b"the manifest of image c");
    let a_path = env.target("a.sh", &a);
    let b_path = env.target("b.bin", &b);

    let out = sigil.ok(&["init", gun]);
    assert!(out.contains("Initialized"), "{out}");
    assert_eq!(
        sigil.ok(&["status", gun]).trim(),
        format!("No unpublished changes for {gun}")
    );
    sigil.ok(&[
        "add",
        gun,
        "a.sh",
        a_path.to_str().expect("utf8"),
        "b.bin",
        b_path.to_str().expect("utf8"),
    ]);
    // Custom data must be JSON; a bad file stages nothing.
    let not_json = env.target("not.json", b"{ tag: v1");
    let err = sigil.fails(&[
        "addhash",
        gun,
        "images/c",
        "1234",
        &hex::encode(c_digest),
        "--custom",
        not_json.to_str().expect("utf8"),
    ]);
    assert!(err.contains("custom data must be JSON"), "{err}");
    assert_eq!(
        sigil.json(&["status", gun]).as_array().map(Vec::len),
        Some(2)
    );
    let custom = serde_json::json!({"tag": "v1.2.3", "platforms": ["linux/amd64"]});
    let custom_file = env.target("custom.json", custom.to_string().as_bytes());
    sigil.ok(&[
        "addhash",
        gun,
        "images/c",
        "1234",
        "--sha256",
        &hex::encode(c_digest),
        "--custom",
        custom_file.to_str().expect("utf8"),
    ]);
    let status = sigil.json(&["status", gun]);
    let staged: Vec<&str> = status
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["path"].as_str().expect("path"))
        .collect();
    assert_eq!(staged, ["a.sh", "b.bin", "images/c"]);
    let table = sigil.ok(&["status", gun]);
    assert!(
        table.contains("#    ACTION    SCOPE      TYPE      PATH"),
        "{table}"
    );
    let out = sigil.ok(&["publish", gun]);
    assert!(out.contains("Successfully published"), "{out}");
    assert!(
        sigil
            .json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );

    // The real client, with a fresh trust dir (trust on first use of sigil's root).
    let notary = env.notary("notary-reader");
    let mut want = expected(&[("a.sh", &a, "targets"), ("b.bin", &b, "targets")]);
    want.insert(
        "images/c".into(),
        (hex::encode(c_digest), 1234, "targets".into()),
    );
    assert_eq!(notary_rows(&notary.ok(&["list", gun])), want);
    assert_eq!(
        notary.ok(&["lookup", gun, "a.sh"]).trim(),
        format!("a.sh sha256:{} {}", sha256_hex(&a), a.len())
    );
    notary.ok(&[
        "verify",
        gun,
        "b.bin",
        "-i",
        b_path.to_str().expect("utf8"),
        "-q",
    ]);
    // sigil agrees with itself and with notary.
    assert_eq!(sigil_rows(&sigil.json(&["list", gun])), want);
    let table = sigil.ok(&["list", gun]);
    assert!(table.starts_with("NAME    "), "{table}");
    assert_eq!(
        sigil.ok(&["lookup", gun, "a.sh"]).trim(),
        format!("a.sh sha256:{} {}", sha256_hex(&a), a.len())
    );
    let out = sigil.run_with(&["verify", gun, "a.sh"], Some(&a_path));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.as_bytes() == &a[..],
        "verify passes the content through"
    );
    let out = sigil.run_with(&["verify", gun, "b.bin", "-q"], Some(&b_path));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "-q prints nothing on stdout");
    let tampered = env.target("tampered", &[&a[..], b"rm -rf /\n"].concat());
    let out = sigil.run_with(&["verify", gun, "a.sh"], Some(&tampered));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "tampered content must not be output");
    assert!(
        out.stderr.contains("does NOT match target \"a.sh\""),
        "{}",
        out.stderr
    );
    let err = sigil.fails(&["lookup", gun, "missing"]);
    assert!(err.contains("not found"), "{err}");
    // The custom data went out signed (notary's client verified the same targets.json above).
    let looked_up = sigil.json(&["lookup", gun, "images/c"]);
    assert_eq!(looked_up["custom"], custom, "{looked_up}");
    assert!(sigil.json(&["lookup", gun, "a.sh"]).get("custom").is_none());

    // remove, staged then published with -p; notary sees it gone.
    sigil.ok(&["remove", gun, "b.bin", "-p"]);
    want.remove("b.bin");
    assert_eq!(notary_rows(&notary.ok(&["list", gun])), want);

    // status/reset: staged changes can be dropped one by one or all at once.
    sigil.ok(&["addhash", gun, "x", "1", &hex::encode(c_digest)]);
    sigil.ok(&["addhash", gun, "y", "2", &hex::encode(c_digest)]);
    sigil.ok(&["reset", gun, "-n", "0"]);
    let left = sigil.json(&["status", gun]);
    assert_eq!(left[0]["path"], "y");
    sigil.ok(&["reset", gun, "--all"]);
    assert!(
        sigil
            .json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );

    assert_no_private_keys(&sigil.trust);
    let checked = assert_signatures_audited(&env, gun);
    assert_eq!(checked, 4, "root, targets, snapshot and timestamp");
}

#[test]
fn the_real_notary_client_publishes_and_sigil_lists_looks_up_and_verifies() {
    let env = Env::start("");
    let gun = "e2e.example/notary-made";
    let notary = env.notary("notary-writer");
    let hello = b"hello from the real notary client\n".to_vec();
    let release = b"release 1.0\n".to_vec();
    let hello_path = env.target("hello.txt", &hello);
    let release_path = env.target("release.txt", &release);
    notary.ok(&["init", gun]);
    notary.ok(&["add", gun, "hello.txt", hello_path.to_str().expect("utf8")]);
    notary.ok(&["publish", gun]);
    // A delegation with an x509 certificate, and a target signed into it by its key.
    let keys = env.dir("delegate");
    let (cert, key) = (keys.join("d.crt"), keys.join("d.key"));
    let (ok, out) = sigil_e2e::openssl(&[
        "req".as_ref(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
        "-days".as_ref(),
        "30".as_ref(),
        "-subj".as_ref(),
        "/CN=delegate".as_ref(),
    ]);
    assert!(ok, "openssl: {out}");
    notary.ok(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        cert.to_str().expect("utf8"),
        "--all-paths",
    ]);
    notary.ok(&["publish", gun]);
    notary.ok(&[
        "key",
        "import",
        key.to_str().expect("utf8"),
        "--role",
        "targets/releases",
        "--gun",
        gun,
    ]);
    notary.ok(&[
        "add",
        gun,
        "release.txt",
        release_path.to_str().expect("utf8"),
        "-r",
        "targets/releases",
    ]);
    notary.ok(&["publish", gun]);

    let sigil = env.sigil("sigil-reader");
    let want = expected(&[
        ("hello.txt", &hello, "targets"),
        ("release.txt", &release, "targets/releases"),
    ]);
    assert_eq!(notary_rows(&notary.ok(&["list", gun])), want);
    assert_eq!(sigil_rows(&sigil.json(&["list", gun])), want);
    assert_eq!(notary_rows(&sigil.ok(&["list", gun])), want);
    assert_eq!(
        sigil.ok(&["lookup", gun, "release.txt"]).trim(),
        notary.ok(&["lookup", gun, "release.txt"]).trim()
    );
    let only_releases = sigil.json(&["list", gun, "-r", "targets/releases"]);
    assert_eq!(only_releases.as_array().expect("array").len(), 1);
    let out = sigil.run_with(&["verify", gun, "hello.txt", "-q"], Some(&hello_path));
    assert!(out.status.success(), "{}", out.stderr);
    let out = sigil.run_with(&["verify", gun, "hello.txt"], Some(&release_path));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    // Delegation key ids agree with notary's (canonical ids of the certificate's key).
    let notary_delegations = notary.ok(&["delegation", "list", gun]);
    let listed = sigil.json(&["delegation", "list", gun]);
    let id = listed[0]["key_ids"][0].as_str().expect("key id");
    assert!(
        notary_delegations.contains(id),
        "{id} not in:\n{notary_delegations}"
    );
    assert_eq!(listed[0]["role"], "targets/releases");
    assert_eq!(listed[0]["paths"][0], "");
    assert_no_private_keys(&sigil.trust);
}

/// With the server down a read fails like the real notary client's ("client is offline"),
/// never falling back to possibly stale data by itself; with `--offline`, `list`, `lookup`,
/// `verify` and `delegation list` read the trust dir's cache of the last verified read,
/// verified again. A trust dir that never read the GUN, or a tampered cache, is an error; a
/// publish fails with the connection error and keeps its staged change.
#[test]
fn with_the_server_down_reads_fail_unless_offline_which_verifies_the_cache_again() {
    let env = Env::start("");
    let gun = "e2e.example/offline";
    let notary = env.notary("notary-writer");
    let hello = b"hello while the server is up\n".to_vec();
    let hello_path = env.target("hello.txt", &hello);
    notary.ok(&["init", gun]);
    notary.ok(&["add", gun, "hello.txt", hello_path.to_str().expect("utf8")]);
    notary.ok(&["publish", gun]);

    let sigil = env.sigil("sigil-reader");
    let want = expected(&[("hello.txt", &hello, "targets")]);
    assert_eq!(sigil_rows(&sigil.json(&["list", gun])), want);
    let tampered = env.sigil("sigil-tampered");
    tampered.ok(&["list", gun]);
    let never_read = env.sigil("sigil-never-read");
    let online_lookup = sigil.ok(&["lookup", gun, "hello.txt"]);
    // --offline reads the same while the server is up, without asking it.
    assert_eq!(sigil_rows(&sigil.json(&["list", gun, "--offline"])), want);

    let Env {
        server,
        daemon,
        dev,
        ..
    } = env;
    server.stop();

    // Both clients refuse to read without the server unless told to.
    let notary_out = notary.run(&["list", gun]);
    assert!(!notary_out.status.success(), "{}", notary_out.stdout);
    let out = sigil.run(&["list", gun]);
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("sigil: error: cannot reach the notary server"),
        "{}",
        out.stderr
    );

    assert_eq!(sigil_rows(&sigil.json(&["list", gun, "--offline"])), want);
    assert_eq!(
        sigil.ok(&["lookup", gun, "hello.txt", "--offline"]),
        online_lookup
    );
    let out = sigil.run_with(
        &["verify", gun, "hello.txt", "-q", "--offline"],
        Some(&hello_path),
    );
    assert!(out.status.success(), "{}", out.stderr);
    let other = dev.root().join("other.txt");
    fs::write(&other, b"not hello\n").expect("write");
    let out = sigil.run_with(&["verify", gun, "hello.txt", "--offline"], Some(&other));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        sigil.json(&["delegation", "list", gun, "--offline"]),
        serde_json::json!([]),
        "no delegations, read from the cache"
    );

    // Nothing cached: says so, names the way out.
    let err = never_read.fails(&["list", gun, "--offline"]);
    assert!(
        err.contains("no trust data for e2e.example/offline is cached"),
        "{err}"
    );

    // A cache changed on disk does not verify.
    let cached = tampered
        .trust
        .join("tuf")
        .join(gun)
        .join("metadata/targets.json");
    let text = fs::read_to_string(&cached).expect("cached targets.json");
    let forged = text.replacen("hello.txt", "hellO.txt", 1);
    assert_ne!(forged, text, "the cached targets name hello.txt");
    fs::write(&cached, forged).expect("write");
    let err = tampered.fails(&["list", gun, "--offline"]);
    assert!(
        err.contains("trust dir's cache") && err.contains("targets"),
        "{err}"
    );

    // Writes need the server: the publish fails, the change stays staged.
    sigil.ok(&["add", gun, "later.txt", hello_path.to_str().expect("utf8")]);
    let err = sigil.fails(&["publish", gun]);
    assert!(err.contains("cannot reach the notary server"), "{err}");
    let status = sigil.json(&["status", gun]);
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{status}");
    drop(daemon);
}

/// A CA (P-384, signing with SHA-384) and a P-256 root key certificate it issued for GUN
/// `leaf_cn` with extended key usage `eku`: `NAME-ca.crt`, `NAME-leaf.crt`, and the key as
/// notary imports it (encrypted under the root passphrase), `NAME-leaf.enc.key`.
fn ca_and_root_key(dir: &Path, name: &str, leaf_cn: &str, eku: &str) {
    let ca = format!("{name}-ca");
    cert_files::self_signed_ca(dir, &ca, Curve::P384, "-sha384");
    let leaf = format!("{name}-leaf");
    let extensions = format!("{LEAF_EXTENSIONS}extendedKeyUsage={eku}\n");
    cert_files::issue(dir, &leaf, leaf_cn, &ca, &extensions, "-sha384");
    let leaf_key = format!("{leaf}.key");
    // notary imports only encrypted root keys (PKCS#8, PBKDF2 with HMAC-SHA1), under its
    // root passphrase.
    let (_, root_passphrase) = CLIENT_PASSPHRASES[0];
    openssl_in(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            &leaf_key,
            "-v2",
            "aes-256-cbc",
            "-v2prf",
            "hmacWithSHA1",
            "-passout",
            &format!("pass:{root_passphrase}"),
            "-out",
            &format!("{name}-leaf.enc.key"),
        ],
    );
}

/// `trust_pinning.ca` in config.json: a collection whose root key certificate was issued by
/// the CA pinned for the GUN's prefix is trusted on first sight, one from another CA is
/// refused naming the pin, and the real notary client with the same config agrees both ways.
#[test]
fn a_ca_pinned_for_the_gun_prefix_decides_first_trust_as_for_the_notary_client() {
    let env = Env::start("");
    let gun = "e2e.example/ca-pinned/app";
    let pki = env.dir("root-pki");
    ca_and_root_key(&pki, "good", gun, "serverAuth,codeSigning");
    ca_and_root_key(&pki, "other", "nobody", "serverAuth");
    // As `notary init` makes them: code signing only.
    let gun_code = "e2e.example/ca-pinned/code-signing-only";
    ca_and_root_key(&pki, "code", gun_code, "codeSigning");
    let path = |f: &str| pki.join(f).to_str().expect("utf8").to_owned();
    let writer = env.notary("notary-writer");
    let hello = b"signed under a CA-issued root key\n".to_vec();
    let hello_path = env.target("hello.txt", &hello);
    writer.ok(&[
        "init",
        gun,
        "--rootkey",
        &path("good-leaf.enc.key"),
        "--rootcert",
        &path("good-leaf.crt"),
    ]);
    writer.ok(&["add", gun, "hello.txt", hello_path.to_str().expect("utf8")]);
    writer.ok(&["publish", gun]);
    writer.ok(&[
        "init",
        gun_code,
        "--rootkey",
        &path("code-leaf.enc.key"),
        "--rootcert",
        &path("code-leaf.crt"),
        "-p",
    ]);

    let config = |name: &str, ca: &str| {
        let file = pki.join(format!("{name}.json"));
        let json = serde_json::json!({ "trust_pinning": { "ca": {
            "e2e.example/ca-pinned/": ca, "e2e.example/": path("other-ca.crt") } } });
        fs::write(&file, json.to_string()).expect("config");
        file.to_str().expect("utf8").to_owned()
    };
    // The longest prefix decides: the good CA, although e2e.example/ pins the other one.
    let pinned_good = config("pinned-good", &path("good-ca.crt"));
    let pinned_other = config("pinned-other", &path("other-ca.crt"));
    let want = expected(&[("hello.txt", &hello, "targets")]);

    let sigil = env.sigil("sigil-good");
    let listed = sigil.json(&["-c", &pinned_good, "list", gun]);
    assert_eq!(sigil_rows(&listed), want);
    let notary_good = env.notary("notary-good");
    assert_eq!(
        notary_rows(&notary_good.ok(&["-c", &pinned_good, "list", gun])),
        want
    );

    let refused = env.sigil("sigil-other");
    let err = refused.fails(&["-c", &pinned_other, "list", gun]);
    assert!(
        err.contains("none of its root keys is pinned")
            && err.contains("not issued by the pinned CA"),
        "{err}"
    );
    assert!(
        !refused
            .trust
            .join("tuf")
            .join(gun)
            .join("metadata/root.json")
            .exists(),
        "a refused root must not be cached"
    );
    let notary_other = env.notary("notary-other");
    let out = notary_other.run(&["-c", &pinned_other, "list", gun]);
    assert!(!out.status.success(), "notary accepted:\n{}", out.stdout);

    // A CA-issued root certificate without serverAuth does not chain, for either client.
    let pinned_code = config("pinned-code", &path("code-ca.crt"));
    let err = env
        .sigil("sigil-code")
        .fails(&["-c", &pinned_code, "list", gun_code]);
    assert!(err.contains("without serverAuth"), "{err}");
    let out = env
        .notary("notary-code")
        .run(&["-c", &pinned_code, "list", gun_code]);
    assert!(!out.status.success(), "notary accepted:\n{}", out.stdout);

    // A CA file that is not one is a configuration error naming it.
    let junk = pki.join("junk.crt");
    fs::write(&junk, "not a certificate\n").expect("write");
    let pinned_junk = config("pinned-junk", junk.to_str().expect("utf8"));
    let err = env
        .sigil("sigil-junk")
        .fails(&["-c", &pinned_junk, "list", gun]);
    assert!(
        err.contains("junk.crt") && err.contains("trust_pinning.ca"),
        "{err}"
    );
}

/// The root key on the token, certified by the organisation's CA from a request signed on the
/// token (`sigil key csr`, then `sigil init --rootcert`): the real notary client pinning that
/// CA trusts what sigil publishes, and so does sigil with a fresh trust dir; certificates for
/// another GUN or another key are refused before anything is published.
#[test]
fn a_token_root_key_certified_by_a_pinned_ca_is_trusted_by_the_notary_client() {
    let env = Env::start("");
    let gun = "e2e.example/ca-pinned/hsm-root";
    let pki = env.dir("org-pki");
    // The org CA, and a leaf it issued for an unrelated key and GUN.
    ca_and_root_key(&pki, "org", "elsewhere.example/app", "serverAuth");
    let path = |f: &str| pki.join(f).to_str().expect("utf8").to_owned();
    let certify = |public: &str, cn: &str, out: &str| {
        openssl_in(
            &pki,
            &[
                "x509",
                "-new",
                "-force_pubkey",
                public,
                "-subj",
                &format!("/CN={}", cn.replace('/', "\\/")),
                "-CA",
                "org-ca.crt",
                "-CAkey",
                "org-ca.key",
                "-sha384",
                "-days",
                "20",
                "-extfile",
                "org-leaf.ext",
                "-out",
                out,
            ],
        );
    };
    let sigil = env.sigil("sigil-owner");
    let root_key = sigil
        .ok(&["key", "generate", "--role", "root", "--gun", gun])
        .trim()
        .to_owned();
    // A certificate request signed on the token; OpenSSL checks it and the CA issues from it.
    fs::write(
        pki.join("hsm-root.csr"),
        sigil.ok(&["key", "csr", &root_key]),
    )
    .expect("csr");
    let verified = Command::new("openssl")
        .args([
            "req",
            "-in",
            "hsm-root.csr",
            "-verify",
            "-noout",
            "-subject",
        ])
        .current_dir(&pki)
        .output()
        .expect("openssl req");
    let said = String::from_utf8_lossy(&verified.stdout).into_owned()
        + &String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{said}");
    assert!(
        said.contains("verify OK") && said.contains(gun),
        "the request verifies and names the GUN: {said}"
    );
    cert_files::sign_request(
        &pki,
        "hsm-root.csr",
        "org-ca",
        "org-leaf.ext",
        "-sha384",
        "hsm-root.crt",
    );
    openssl_in(
        &pki,
        &[
            "ec",
            "-in",
            "org-leaf.key",
            "-pubout",
            "-out",
            "stranger.pub",
        ],
    );
    certify("stranger.pub", gun, "stranger.crt");

    // Refused before anything reaches the server.
    let err = sigil.fails(&["init", gun, "--rootcert", &path("org-leaf.crt")]);
    assert!(err.contains("does not match GUN"), "{err}");
    let err = sigil.fails(&[
        "init",
        gun,
        "--root-key",
        &root_key,
        "--rootcert",
        &path("stranger.crt"),
    ]);
    assert!(err.contains("certifies another key"), "{err}");
    let err = sigil.fails(&["init", gun, "--rootcert", &path("stranger.crt")]);
    assert!(err.contains("no sigild key you may use"), "{err}");
    assert_eq!(sigil.run(&["list", gun]).status.code(), Some(3));

    // The key is found by the certificate alone.
    let out = sigil.run(&["init", gun, "--rootcert", &path("hsm-root.crt"), "-p"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains(&root_key), "{}", out.stderr);
    let hello = b"signed under the org CA's root\n".to_vec();
    let hello_path = env.target("hello.txt", &hello);
    sigil.ok(&[
        "add",
        gun,
        "hello.txt",
        hello_path.to_str().expect("utf8"),
        "-p",
    ]);

    // The published root's key is the CA-issued certificate of the token's key.
    let root = env.root(gun);
    let keys = root.body().role_keys(RoleType::Root);
    assert_eq!(keys.len(), 1);
    let chain = keys[0].1.certificate_chain().expect("certificate");
    let org_ca = sigil_tuf::x509::Certificate::from_pem_bundle(
        &fs::read_to_string(pki.join("org-ca.crt")).expect("ca"),
    )
    .expect("ca parses");
    assert_eq!(chain[0].chains_to(&[], &org_ca, SystemTime::now()), Ok(()));

    let pinned = pki.join("pinned.json");
    let json =
        serde_json::json!({ "trust_pinning": { "ca": { "e2e.example/": path("org-ca.crt") } } });
    fs::write(&pinned, json.to_string()).expect("config");
    let pinned = pinned.to_str().expect("utf8");
    let want = expected(&[("hello.txt", &hello, "targets")]);
    let notary = env.notary("notary-pinned");
    assert_eq!(notary_rows(&notary.ok(&["-c", pinned, "list", gun])), want);
    let fresh = env.sigil("sigil-pinned");
    assert_eq!(sigil_rows(&fresh.json(&["-c", pinned, "list", gun])), want);
    assert_signatures_audited(&env, gun);
}

/// `sigil delegation purge`: a key shared by two delegations is removed from both in one
/// publish; the real notary client sees the delegations without it and still verifies.
#[test]
fn purging_a_key_removes_it_from_every_delegation_for_the_real_notary_client_too() {
    let env = Env::start("");
    let gun = "e2e.example/purge";
    let sigil = env.sigil("admin");
    sigil.ok(&["init", gun, "-p"]);
    let key = |n: &str| {
        sigil
            .ok(&[
                "key",
                "generate",
                "--role",
                "targets/releases",
                "--gun",
                &format!("{gun}/{n}"),
            ])
            .trim()
            .to_owned()
    };
    let (shared, releases, qa) = (key("shared"), key("releases"), key("qa"));
    sigil.ok(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        &shared,
        &releases,
        "--all-paths",
    ]);
    sigil.ok(&[
        "delegation",
        "add",
        gun,
        "targets/qa",
        &shared,
        &qa,
        "--all-paths",
        "-p",
    ]);
    let ids = |listed: &serde_json::Value, role: &str| -> Vec<String> {
        let mut ids: Vec<String> = listed
            .as_array()
            .expect("array")
            .iter()
            .find(|d| d["role"] == role)
            .unwrap_or_else(|| panic!("{role} not listed: {listed}"))["key_ids"]
            .as_array()
            .expect("key_ids")
            .iter()
            .map(|k| k.as_str().expect("id").to_owned())
            .collect();
        ids.sort();
        ids
    };
    let before = sigil.json(&["delegation", "list", gun]);
    let (r, q) = (ids(&before, "targets/releases"), ids(&before, "targets/qa"));
    let common: Vec<&String> = r.iter().filter(|id| q.contains(id)).collect();
    assert_eq!(common.len(), 1, "one key in both: {before}");
    let doomed = common[0].clone();

    // Bad input stages nothing.
    let err = sigil.fails(&["delegation", "purge", gun, "--key", "not-hex!"]);
    assert!(err.contains("is not a key id"), "{err}");
    assert!(
        sigil
            .json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );

    let out = sigil.ok(&["delegation", "purge", gun, "--key", &doomed, "-p"]);
    assert!(out.contains("Successfully published"), "{out}");
    let after = sigil.json(&["delegation", "list", gun]);
    let keep = |ids: &[String]| -> Vec<String> {
        ids.iter().filter(|id| **id != doomed).cloned().collect()
    };
    assert_eq!(ids(&after, "targets/releases"), keep(&r));
    assert_eq!(ids(&after, "targets/qa"), keep(&q));

    // The real client, from a fresh trust dir: verifies, and the key is gone everywhere.
    let notary = env.notary("notary-purge");
    notary.ok(&["list", gun]);
    let listed = notary.ok(&["delegation", "list", gun]);
    assert!(
        !listed.contains(&doomed),
        "{doomed} still delegated:\n{listed}"
    );
    for id in keep(&r).iter().chain(keep(&q).iter()) {
        assert!(listed.contains(id.as_str()), "{id} missing:\n{listed}");
    }
}

#[test]
fn rotating_keys_keeps_the_real_notary_client_verifying() {
    let env = Env::start("");
    let gun = "e2e.example/rotations";
    let sigil = env.sigil("admin");
    let one = b"one\n".to_vec();
    let two = b"two\n".to_vec();
    let one_path = env.target("one", &one);
    let two_path = env.target("two", &two);
    sigil.ok(&["init", gun, "-p"]);
    sigil.ok(&["add", gun, "one", one_path.to_str().expect("utf8"), "-p"]);
    let early = env.notary("notary-early");
    assert_eq!(
        notary_rows(&early.ok(&["list", gun])),
        expected(&[("one", &one, "targets")])
    );
    let before = env.root(gun);
    let key_of = |root: &Metadata<Root>, role: RoleType| -> Vec<String> {
        root.body()
            .role(role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default()
    };

    for (args, role) in [
        (vec!["key", "rotate", gun, "targets"], RoleType::Targets),
        (
            vec!["key", "rotate", gun, "snapshot", "-r"],
            RoleType::Snapshot,
        ),
        (vec!["key", "rotate", gun, "root"], RoleType::Root),
        (
            vec!["key", "rotate", gun, "timestamp", "-r"],
            RoleType::Timestamp,
        ),
    ] {
        let old = env.root(gun);
        let out = sigil.ok(&args);
        assert!(out.contains("Successfully rotated"), "{out}");
        let new = env.root(gun);
        assert_eq!(new.version(), old.version() + 1, "{args:?}");
        assert_ne!(key_of(&new, role), key_of(&old, role), "{args:?}");
    }
    // Server-managed keys are the ones notary-server now hands out.
    let root = env.root(gun);
    for role in ["snapshot", "timestamp"] {
        let server_key: TufKey =
            serde_json::from_value(env.server.server_key(gun, role).json()).expect("key");
        let rt = if role == "snapshot" {
            RoleType::Snapshot
        } else {
            RoleType::Timestamp
        };
        assert_eq!(key_of(&root, rt), [server_key.id()], "{role}");
    }
    // The rotated root is signed by the old root key and the new one.
    let rotated = env.server.get(&format!(
        "/v2/{gun}/_trust/tuf/{}.root.json",
        before.version() + 3
    ));
    assert_eq!(SignedDoc::parse(&rotated.body).signatures.len(), 2);

    sigil.ok(&["add", gun, "two", two_path.to_str().expect("utf8"), "-p"]);
    let want = expected(&[("one", &one, "targets"), ("two", &two, "targets")]);
    // The client that trusted the first root walks every rotation; a fresh one trusts the last.
    assert_eq!(notary_rows(&early.ok(&["list", gun])), want);
    assert_eq!(
        notary_rows(&env.notary("notary-fresh").ok(&["list", gun])),
        want
    );
    early.ok(&[
        "verify",
        gun,
        "two",
        "-i",
        two_path.to_str().expect("utf8"),
        "-q",
    ]);
    assert_eq!(
        sigil_rows(&env.sigil("sigil-fresh").json(&["list", gun])),
        want
    );
    assert_eq!(sigil_rows(&sigil.json(&["list", gun])), want);
    // Root keys on the token; no private key in any trust dir.
    assert_no_private_keys(&sigil.trust);
    let checked = assert_signatures_audited(&env, gun);
    assert!(checked >= 9, "only {checked} signatures checked");
    // Refusals are clear.
    let err = sigil.fails(&["key", "rotate", gun, "timestamp"]);
    assert!(err.contains("use -r"), "{err}");
    let err = sigil.fails(&["key", "rotate", gun, "targets", "-r"]);
    assert!(err.contains("only snapshot and timestamp"), "{err}");
}

/// The stranger (uid 65534) may only use the `targets/releases` key of `gun`.
fn ci_policy(gun: &str) -> String {
    format!(
        "[[policy]]\nname = \"ci-releases\"\nuids = [{OTHER_UID}]\n\
         keys = [{{ gun = \"{gun}\", role = \"targets/releases\" }}]\n\
         allow = [\"sign\", \"public\", \"list\"]\n"
    )
}

/// A copy of `sigil` and a home (trust dir, CA) that uid 65534 can use.
fn stranger_sigil(env: &Env, admin: &Sigil) -> Sigil {
    let home = env.dev.root().join("ci");
    fs::create_dir_all(&home).expect("ci home");
    let exe = home.join("sigil");
    fs::copy(sigil_exe(), &exe).expect("copying sigil");
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod");
    let ca = home.join("ca.crt");
    fs::copy(env.server.ca(), &ca).expect("copying the CA");
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o644)).expect("chmod");
    let owner = Some(nix::unistd::Uid::from_raw(OTHER_UID));
    let group = Some(nix::unistd::Gid::from_raw(OTHER_GID));
    nix::unistd::chown(&home, owner, group).expect("chown the ci home");
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).expect("chmod");
    Sigil {
        exe,
        ca: Some(ca),
        trust: home.join("trust"),
        home,
        uid: Some(OTHER_UID),
        ..admin.clone()
    }
}

#[test]
fn a_ci_user_allowed_only_a_delegation_key_publishes_into_it_and_nothing_else() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "running sigil as uid {OTHER_UID} needs root: run the e2e suite as root (CI does)"
    );
    let gun = "e2e.example/ci";
    let env = Env::start(&ci_policy(gun));
    let admin = env.sigil("admin");
    let base = b"base\n".to_vec();
    let base_path = env.target("base", &base);
    admin.ok(&["init", gun]);
    admin.ok(&["add", gun, "base", base_path.to_str().expect("utf8"), "-p"]);
    let key = admin
        .ok(&[
            "key",
            "generate",
            "--role",
            "targets/releases",
            "--gun",
            gun,
        ])
        .trim()
        .to_owned();
    let out = admin.ok(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        &key,
        "--all-paths",
        "-p",
    ]);
    assert!(
        out.contains("Addition of delegation role targets/releases"),
        "{out}"
    );
    let targets_before = env.server.metadata(gun, "targets");

    let ci = stranger_sigil(&env, &admin);
    // The CI user sees exactly its key.
    let keys = ci.json(&["key", "list"]);
    assert_eq!(keys.as_array().expect("array").len(), 1, "{keys}");
    assert_eq!(keys[0]["key_id"], key.as_str());
    let release = b"release built by CI\n".to_vec();
    let release_path = ci.home.join("release.tar");
    fs::write(&release_path, &release).expect("write");
    // While the admin holds the snapshot key, notary-server cannot make a snapshot for the
    // delegate's publish and says so with its own error code; the change stays staged.
    let err = ci.fails(&[
        "add",
        gun,
        "release.tar",
        release_path.to_str().expect("utf8"),
        "-r",
        "targets/releases",
        "-p",
    ]);
    assert!(err.contains("HTTP 400 INVALID_UPDATE"), "{err}");
    assert_eq!(
        ci.json(&["status", gun]).as_array().expect("array").len(),
        1
    );
    // As the lab: snapshot to the server, so a delegate needs only its own key.
    admin.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    let out = ci.ok(&["publish", gun]);
    assert!(out.contains("Successfully published"), "{out}");
    assert!(
        ci.json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );

    // The real notary client lists it under the delegation.
    let notary = env.notary("notary-reader");
    assert_eq!(
        notary_rows(&notary.ok(&["list", gun, "-r", "targets/releases"])),
        expected(&[("release.tar", &release, "targets/releases")])
    );
    assert_eq!(
        notary_rows(&notary.ok(&["list", gun])),
        expected(&[
            ("base", &base, "targets"),
            ("release.tar", &release, "targets/releases")
        ])
    );

    // And nothing else: not targets, not the delegation's definition, no new keys.
    ci.ok(&["reset", gun, "--all"]);
    let err = ci.fails(&[
        "add",
        gun,
        "evil",
        release_path.to_str().expect("utf8"),
        "-p",
    ]);
    assert!(err.contains("cannot sign targets"), "{err}");
    ci.ok(&["reset", gun, "--all"]);
    let err = ci.fails(&[
        "delegation",
        "add",
        gun,
        "targets/evil",
        &key,
        "--all-paths",
        "-p",
    ]);
    assert!(err.contains("cannot sign targets"), "{err}");
    ci.ok(&["reset", gun, "--all"]);
    let err = ci.fails(&["key", "rotate", gun, "targets"]);
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(
        ci.run(&["key", "rotate", gun, "targets"]).status.code(),
        Some(4)
    );
    let targets_after = env.server.metadata(gun, "targets");
    assert_eq!(
        sigil_tuf::schema::peek_version(&targets_after),
        sigil_tuf::schema::peek_version(&targets_before),
        "the CI user changed targets.json"
    );
    // The CI user's signatures (the refused publish and the accepted one) are audited as its
    // own, all with the delegation key.
    let audit = read_audit_lines(&env.dev.audit_log());
    let mine: Vec<_> = audit
        .iter()
        .filter(|l| l.uid == Some(OTHER_UID) && l.op == "sign")
        .collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(
        mine.iter().all(|l| l.key_id == key && l.outcome == "ok"),
        "{mine:?}"
    );
    assert_no_private_keys(&ci.trust);
    assert_no_private_keys(&admin.trust);
    assert_signatures_audited(&env, gun);
}

/// Path suffix → the bytes served for it instead of the server's.
type Overrides = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A plain-HTTP proxy on loopback in front of notary-server: GETs are forwarded, except paths
/// ending with an overridden suffix, which get the bytes the test chose.
struct Proxy {
    port: u16,
    overrides: Overrides,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: u16, ca: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let overrides: Overrides = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s, ca) = (overrides.clone(), stop.clone(), ca.to_owned());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !s.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(600) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, upstream, &ca, &o),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            overrides,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, suffix: &str, body: Vec<u8>) {
        let mut o = self.overrides.lock().expect("lock");
        o.retain(|(s, _)| s != suffix);
        o.push((suffix.to_owned(), body));
    }

    fn clear(&self) {
        self.overrides.lock().expect("lock").clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    upstream: u16,
    ca: &Path,
    overrides: &Mutex<Vec<(String, Vec<u8>)>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method != "GET" {
        (405, b"only GET through this proxy".to_vec())
    } else if let Some((_, body)) = overrides
        .lock()
        .expect("lock")
        .iter()
        .find(|(suffix, _)| path.ends_with(suffix.as_str()))
    {
        (200, body.clone())
    } else {
        match https_request(upstream, ca, "GET", path) {
            Ok(r) => (r.status, r.body),
            Err(e) => (502, e.to_string().into_bytes()),
        }
    };
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let _ = stream.write_all(&body);
}

/// A timestamp over `snapshot`, signed with the server's timestamp key through sigild's
/// notary-signer endpoint, as notary-server itself would sign it.
fn timestamp(env: &Env, gun: &str, version: u64, expires: SystemTime, snapshot: &[u8]) -> Vec<u8> {
    let root = env.root(gun);
    let key_id = root.body().role_keys(RoleType::Timestamp)[0].0.to_owned();
    let body = Timestamp::for_snapshot(
        version,
        Expires::from_system_time(expires).expect("time"),
        snapshot,
    );
    let message = sigil_tuf::cjson::to_vec(&body).expect("canonical");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sig = runtime.block_on(async {
        let mut api = connect_signer(env.signer_port, &env.pki.ca(), Some(&env.pki.client()))
            .await
            .expect("connect to the notary-signer endpoint");
        api.sign(&key_id, &message).await.expect("sign").content
    });
    Signed {
        signed: body,
        signatures: vec![Signature {
            keyid: key_id,
            method: SignatureMethod::Ecdsa,
            sig,
        }],
    }
    .to_vec()
    .expect("serialise")
}

fn version_of(bytes: &[u8]) -> u64 {
    sigil_tuf::schema::peek_version(bytes).expect("version")
}

#[test]
fn tampered_expired_and_replayed_metadata_is_refused_naming_the_role() {
    let env = Env::start("");
    let gun = "e2e.example/attacks";
    let admin = env.sigil("admin");
    let file = env.target("f", b"f\n");
    admin.ok(&["init", gun, "-p"]);
    admin.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    admin.ok(&["add", gun, "f", file.to_str().expect("utf8"), "-p"]);
    let old_timestamp = env.server.metadata(gun, "timestamp");
    let old_snapshot = env.server.metadata(gun, "snapshot");
    admin.ok(&["add", gun, "g", file.to_str().expect("utf8"), "-p"]);

    // A client that has seen the latest versions, going through the proxy.
    let proxy = Proxy::start(env.server.port(), env.server.ca());
    let client = Sigil {
        server: proxy.url(),
        ca: None,
        ..env.sigil("victim")
    };
    assert_eq!(
        client.json(&["list", gun]).as_array().expect("array").len(),
        2
    );
    let root_path = client.trust.join(format!("tuf/{gun}/metadata/root.json"));

    // 1. A byte flipped in the cached (trusted) root.
    let good_root = fs::read(&root_path).expect("cached root");
    let mut bad_root = good_root.clone();
    let at = bad_root
        .windows(9)
        .position(|w| w == b"\"expires\"")
        .expect("expires")
        + 13;
    bad_root[at] = if bad_root[at] == b'1' { b'2' } else { b'1' };
    fs::write(&root_path, &bad_root).expect("flip");
    let err = client.fails(&["list", gun]);
    assert!(
        err.contains("trusted root") && err.contains("root v"),
        "{err}"
    );
    fs::write(&root_path, &good_root).expect("restore");
    client.ok(&["list", gun]);

    // 2. A byte flipped in the targets.json the server serves.
    let targets = env.server.metadata(gun, "targets");
    let mut bad_targets = targets.clone();
    let at = bad_targets
        .windows(4)
        .position(|w| w == b"\"g\":")
        .expect("target g")
        + 1;
    bad_targets[at] = b'h';
    let hash = sha256_hex(&targets);
    proxy.set(&format!("/targets.{hash}.json"), bad_targets);
    let err = client.fails(&["list", gun]);
    assert!(err.contains("targets:") && err.contains("differs"), "{err}");
    proxy.clear();

    // 3. An old timestamp served again.
    proxy.set("/timestamp.json", old_timestamp.clone());
    let err = client.fails(&["list", gun]);
    assert!(
        err.contains("timestamp v") && err.contains("rollback"),
        "{err}"
    );
    proxy.clear();

    // 4. An expired timestamp, properly signed by the server's timestamp key. sigild signs
    //    nothing already expired (DESIGN §9), so it is signed to expire in two seconds and
    //    served once it has.
    let current = env.server.metadata(gun, "timestamp");
    let snapshot = env.server.metadata(gun, "snapshot");
    let expired = timestamp(
        &env,
        gun,
        version_of(&current) + 1,
        SystemTime::now() + Duration::from_secs(2),
        &snapshot,
    );
    std::thread::sleep(Duration::from_secs(3));
    proxy.set("/timestamp.json", expired);
    let err = client.fails(&["list", gun]);
    assert!(
        err.contains("timestamp v") && err.contains("expired"),
        "{err}"
    );
    proxy.clear();

    // 5. A fresh, validly signed timestamp pointing at an older snapshot (which the server
    //    still has by its hash): the snapshot rollback is caught. (Version + 2: sigild's
    //    version floor refuses a second, different + 1.)
    let replay = timestamp(
        &env,
        gun,
        version_of(&current) + 2,
        SystemTime::now() + Duration::from_secs(3600),
        &old_snapshot,
    );
    proxy.set("/timestamp.json", replay);
    let err = client.fails(&["list", gun]);
    assert!(
        err.contains("snapshot v") && err.contains("rollback"),
        "{err}"
    );
    proxy.clear();

    // Nothing was cached from the refused updates: the honest server still verifies.
    assert_eq!(
        client.json(&["list", gun]).as_array().expect("array").len(),
        2
    );
    // The real client refuses the same tampered targets.
    let mut bad = targets.clone();
    bad[at] = b'h';
    proxy.set(&format!("/targets.{hash}.json"), bad);
    let notary = NotaryClient::new(&proxy.url(), env.server.ca(), &env.dir("notary-victim"));
    let out = notary.run(&["list", gun]);
    assert!(
        !out.status.success(),
        "notary accepted tampered targets:\n{}",
        out.stdout
    );

    // Clear errors for an unreachable server and a TLS failure.
    let unreachable = Sigil {
        server: format!("https://127.0.0.1:{}", free_port()),
        ..env.sigil("nowhere")
    };
    let err = unreachable.fails(&["list", gun]);
    assert!(err.contains("cannot reach the notary server"), "{err}");
    assert_eq!(unreachable.run(&["list", gun]).status.code(), Some(5));
    let no_ca = Sigil {
        ca: None,
        ..env.sigil("no-ca")
    };
    let err = no_ca.fails(&["list", gun]);
    assert!(err.contains("TLS") && err.contains("--tlscacert"), "{err}");
    // No trust data on the server.
    let err = admin.fails(&[
        "addhash",
        "e2e.example/never-initialised",
        "x",
        "1",
        &"00".repeat(32),
        "-p",
    ]);
    assert!(err.contains("no trust data"), "{err}");
}

#[test]
fn ten_thousand_targets_go_out_in_one_publish_with_one_signature_per_role() {
    let env = Env::start("");
    let gun = "e2e.example/bulk";
    let sigil = env.sigil("ci");
    sigil.ok(&["init", gun, "-p"]);
    let manifest = env.dir("files").join("tags.txt");
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!(
            "tag-{i:05} {} sha256:{}\n",
            1000 + i,
            sha256_hex(format!("manifest {i}").as_bytes())
        ));
    }
    fs::write(&manifest, text).expect("manifest");
    let signs_before = read_audit_lines(&env.dev.audit_log())
        .iter()
        .filter(|l| l.op == "sign" && l.uid.is_some())
        .count();
    let started = Instant::now();
    let out = sigil.run(&[
        "addhash",
        gun,
        "--manifest",
        manifest.to_str().expect("utf8"),
        "-p",
    ]);
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("applying 10000 staged changes"),
        "{}",
        out.stderr
    );
    eprintln!("sigil addhash --manifest (10,000 targets) -p: {elapsed:?}");
    let signs: Vec<_> = read_audit_lines(&env.dev.audit_log())
        .into_iter()
        .filter(|l| l.op == "sign" && l.uid.is_some())
        .skip(signs_before)
        .collect();
    let roles: Vec<&str> = signs.iter().map(|l| l.role.as_str()).collect();
    assert_eq!(
        roles.len(),
        2,
        "one targets and one snapshot signature: {roles:?}"
    );
    assert!(
        roles.contains(&"targets") && roles.contains(&"snapshot"),
        "{roles:?}"
    );
    let rows = notary_rows(&env.notary("notary-reader").ok(&["list", gun]));
    assert_eq!(rows.len(), 10_000);
    assert_eq!(
        rows["tag-09999"],
        (sha256_hex(b"manifest 9999"), 10_999, "targets".to_owned())
    );
    assert!(
        sigil
            .json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );
}
