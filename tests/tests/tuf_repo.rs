//! `sigil tuf` (issue 10, items 1, 2 and the python-tuf half of 4) against the real sigild on a
//! SoftHSM2 token, with python-tuf's ngclient (PyPI `tuf` 7.0.0, in a venv the test makes)
//! reading the repository over a loopback HTTP server at every step: init, add (with custom
//! data), delegation by paths and by hash prefixes, rotation of the targets key and of the root
//! key (a client that trusted the old root follows), a timestamp refresh; a tampered byte in a
//! stored target or a published metadata file is refused by ngclient and by `sigil tuf verify`.
//! A 2-of-3 root ceremony: publish refuses until `sigil tuf sign` adds the second root
//! signature, naming the missing keys. The verdicts come from ngclient and the files, not from
//! sigil's own output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sigil_e2e::tuf_lab::HttpServer;
use sigil_e2e::{Daemon, DevDir, sha256_hex};
use sigil_proto::sigil_v1 as pb;
use sigil_tuf::PublicKey;
use sigil_tuf::schema::tuf1::Key;

const GUN: &str = "tuf.example/repo";

struct Env {
    dev: DevDir,
    daemon: Daemon,
    repo: PathBuf,
    python: PathBuf,
    server: HttpServer,
}

impl Env {
    async fn start() -> Self {
        let python = sigil_e2e::python::tuf_venv();
        let dev = DevDir::new();
        dev.init();
        let daemon = dev.start();
        let repo = dev.root().join("repo");
        std::fs::create_dir_all(&repo).expect("repo dir");
        let server = HttpServer::start(&python, &repo);
        Self {
            dev,
            daemon,
            repo,
            python,
            server,
        }
    }

    /// A new key on the token: (sigild key id, public key).
    async fn key(&self, role: &str, algorithm: pb::Algorithm) -> (String, PublicKey) {
        let key = self
            .daemon
            .client()
            .await
            .generate(role, GUN, algorithm)
            .await;
        let public = PublicKey::from_spki_der(&key.spki_der).expect("spki");
        (key.key_id, public)
    }

    fn sigil(&self, args: &[&str]) -> Output {
        Command::new(sigil_e2e::sigil_cli())
            .env("SIGIL_SOCKET", self.daemon.socket())
            .args(args)
            .output()
            .expect("running sigil")
    }

    /// Runs `sigil tuf ARGS` (REPO is inserted after the verb) and returns stdout.
    fn tuf(&self, verb: &str, args: &[&str]) -> String {
        let repo = self.repo.to_string_lossy().into_owned();
        let mut all = vec!["tuf", verb, repo.as_str()];
        all.extend_from_slice(args);
        let out = self.sigil(&all);
        assert!(
            out.status.success(),
            "sigil {} failed:\n{}",
            all.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sigil tuf VERB REPO ARGS` with `input` on standard input; returns stdout.
    fn tuf_stdin(&self, verb: &str, args: &[&str], input: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = Command::new(sigil_e2e::sigil_cli())
            .env("SIGIL_SOCKET", self.daemon.socket())
            .args(["tuf", verb])
            .arg(&self.repo)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running sigil");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("writing stdin");
        let out = child.wait_with_output().expect("sigil output");
        assert!(
            out.status.success(),
            "sigil tuf {verb} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn tuf_fails(&self, verb: &str, args: &[&str]) -> String {
        let repo = self.repo.to_string_lossy().into_owned();
        let mut all = vec!["tuf", verb, repo.as_str()];
        all.extend_from_slice(args);
        let out = self.sigil(&all);
        assert!(
            !out.status.success(),
            "sigil {} succeeded but must fail",
            all.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.dev.root().join(name);
        std::fs::write(&path, content).expect("write");
        path.to_string_lossy().into_owned()
    }

    /// ngclient with trusted state in `client` (seeded with 1.root.json), downloading
    /// `targets` into a fresh directory.
    fn ngclient(&self, client: &str, targets: &[&str]) -> Result<Value, String> {
        let state = self.dev.root().join("clients").join(client);
        let downloads = tempfile::tempdir_in(self.dev.root()).expect("download dir");
        let out = Command::new(&self.python)
            .arg(sigil_e2e::workspace_root().join("tests/py/ngclient_download.py"))
            .arg("--metadata-dir")
            .arg(&state)
            .args(["--metadata-url", &self.server.url("metadata/")])
            .args(["--targets-url", &self.server.url("targets/")])
            .arg("--download-dir")
            .arg(downloads.path())
            .arg("--root")
            .arg(self.repo.join("metadata/1.root.json"))
            .args(targets)
            .output()
            .expect("running ngclient_download.py");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(serde_json::from_slice(&out.stdout).expect("ngclient JSON"))
    }

    fn ngclient_ok(&self, client: &str, targets: &[&str]) -> Value {
        self.ngclient(client, targets)
            .unwrap_or_else(|e| panic!("ngclient refused the repository: {e}"))
    }
}

fn tuf_id(key: &PublicKey) -> String {
    Key::from_public_key(key).id()
}

fn trusted(report: &Value, role: &str) -> (u64, Vec<String>) {
    let r = &report["trusted"][role];
    let version = r["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("{role} in {report}"));
    let keyids = r["keyids"]
        .as_array()
        .expect("keyids")
        .iter()
        .map(|k| k.as_str().expect("id").to_owned())
        .collect();
    (version, keyids)
}

fn flip_last_byte(path: &Path) -> Vec<u8> {
    let original = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = original.clone();
    let i = bytes.len() - 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, &bytes).expect("tamper");
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngclient_reads_every_step_of_a_repository_sigil_maintains() {
    let env = Env::start().await;
    let (root, root_pk) = env.key("root", pb::Algorithm::EcdsaP256).await;
    let (targets, targets_pk) = env.key("targets", pb::Algorithm::EcdsaP256).await;
    let (snapshot, _) = env.key("snapshot", pb::Algorithm::EcdsaP256).await;
    let (timestamp, _) = env.key("timestamp", pb::Algorithm::EcdsaP256).await;

    // init: published at once (root threshold 1 met by the root key sigild holds).
    env.tuf(
        "init",
        &[
            "--root-key",
            &root,
            "--targets-key",
            &targets,
            "--snapshot-key",
            &snapshot,
            "--timestamp-key",
            &timestamp,
            "--expires",
            "timestamp=2",
        ],
    );
    let r = env.ngclient_ok("long-lived", &[]);
    assert_eq!(trusted(&r, "root"), (1, vec![tuf_id(&root_pk)]));
    assert_eq!(trusted(&r, "targets").0, 1);

    // add, with custom data.
    let hello = b"hello from a token-signed TUF 1.0 repository\n";
    let custom = env.file("custom.json", br#"{"app": {"build": 42}}"#);
    env.tuf(
        "add",
        &[
            "files/hello.txt",
            &env.file("hello", hello),
            "--custom",
            &custom,
        ],
    );
    env.tuf("publish", &[]);
    let r = env.ngclient_ok("long-lived", &["files/hello.txt"]);
    assert_eq!(r["targets"]["files/hello.txt"]["sha256"], sha256_hex(hello));
    assert_eq!(
        r["targets"]["files/hello.txt"]["custom"]["app"]["build"],
        42
    );
    assert_eq!(trusted(&r, "targets"), (2, vec![tuf_id(&targets_pk)]));

    // Delegation by paths, and by hash prefixes (an Ed25519 key: sigild signs the message).
    let (releases, releases_pk) = env.key("releases", pb::Algorithm::EcdsaP256).await;
    env.tuf(
        "delegate",
        &[
            "releases",
            "--key",
            &releases,
            "--paths",
            "releases/*",
            "--terminating",
        ],
    );
    let (bins, bins_pk) = env.key("bins", pb::Algorithm::Ed25519).await;
    let bin_target = "pkg/tool.tar";
    let prefix = &sha256_hex(bin_target.as_bytes())[..2];
    env.tuf(
        "delegate",
        &["bins", "--key", &bins, "--hash-prefixes", prefix],
    );
    env.tuf("publish", &[]);
    let v1 = b"release one";
    env.tuf(
        "add",
        &["releases/v1.tar", &env.file("v1", v1), "-r", "releases"],
    );
    let tool = b"binned tool";
    env.tuf("add", &[bin_target, &env.file("tool", tool), "-r", "bins"]);
    let refused = env.tuf_fails(
        "add",
        &["nightly/x.tar", &env.file("x", b"x"), "-r", "releases"],
    );
    assert!(refused.contains("outside the paths delegated"), "{refused}");
    env.tuf("publish", &[]);
    let r = env.ngclient_ok(
        "long-lived",
        &["releases/v1.tar", bin_target, "files/hello.txt"],
    );
    assert_eq!(r["targets"]["releases/v1.tar"]["sha256"], sha256_hex(v1));
    assert_eq!(r["targets"][bin_target]["sha256"], sha256_hex(tool));
    assert_eq!(trusted(&r, "releases").1, vec![tuf_id(&releases_pk)]);
    assert_eq!(trusted(&r, "bins").1, vec![tuf_id(&bins_pk)]);
    assert_eq!(
        trusted(&r, "targets").0,
        3,
        "only the changed roles got new versions"
    );

    // Targets known by hash only, from a manifest on stdin (the content is uploaded by other
    // means: here copied to where a consistent-snapshot client fetches it).
    let (one, two) = (b"first by hash".as_slice(), b"second, by hash".as_slice());
    let manifest = format!(
        "# sha256 length name\n{} {} hashed/one.bin\n\n{} {} hashed/two words.bin\n",
        sha256_hex(one),
        one.len(),
        sha256_hex(two),
        two.len()
    );
    env.tuf_stdin("addhash", &["--manifest", "-"], manifest.as_bytes());
    for (name, content) in [("one.bin", one), ("two words.bin", two)] {
        let dir = env.repo.join("targets/hashed");
        std::fs::create_dir_all(&dir).expect("hashed dir");
        std::fs::write(dir.join(format!("{}.{name}", sha256_hex(content))), content)
            .expect("upload");
    }
    // A nested delegation with threshold 2: both keys sign at publish through sigild.
    let (stable_a, _) = env.key("stable", pb::Algorithm::EcdsaP256).await;
    let (stable_b, _) = env.key("stable", pb::Algorithm::EcdsaP256).await;
    env.tuf(
        "delegate",
        &[
            "stable",
            "--key",
            &stable_a,
            "--key",
            &stable_b,
            "--threshold",
            "2",
            "--paths",
            "releases/stable-*",
            "-r",
            "releases",
        ],
    );
    let stable = b"stable release";
    env.tuf("publish", &[]);
    env.tuf(
        "add",
        &[
            "releases/stable-1.tar",
            &env.file("stable", stable),
            "-r",
            "stable",
        ],
    );
    env.tuf("publish", &[]);
    let r = env.ngclient_ok(
        "long-lived",
        &[
            "hashed/one.bin",
            "hashed/two words.bin",
            "releases/stable-1.tar",
        ],
    );
    assert_eq!(
        r["targets"]["hashed/two words.bin"]["sha256"],
        sha256_hex(two)
    );
    assert_eq!(
        r["targets"]["releases/stable-1.tar"]["sha256"],
        sha256_hex(stable)
    );
    assert_eq!(
        trusted(&r, "stable").1.len(),
        2,
        "signed by both stable keys"
    );
    // remove: gone for the client too.
    env.tuf("remove", &["hashed/one.bin"]);
    env.tuf("publish", &[]);
    let err = env
        .ngclient("long-lived", &["hashed/one.bin"])
        .expect_err("removed target");
    assert!(err.contains("not in the repository"), "{err}");
    // Hostile names are refused and change nothing.
    let before = std::fs::read_dir(env.repo.join("metadata"))
        .expect("ls")
        .count();
    let evil = env.file("evil", b"evil");
    for (verb, args) in [
        ("add", vec!["../../escape", evil.as_str()]),
        ("add", vec!["a/./b", evil.as_str()]),
        ("addhash", vec!["x", "1", "--sha256", "00"]),
        (
            "delegate",
            vec!["../evil", "--key", &stable_a, "--paths", "*"],
        ),
        (
            "delegate",
            vec!["timestamp", "--key", &stable_a, "--paths", "*"],
        ),
        (
            "delegate",
            vec!["bins2", "--key", &stable_a, "--hash-prefixes", "0G"],
        ),
    ] {
        let err = env.tuf_fails(verb, &args);
        assert!(err.contains("sigil: error:"), "{verb} {args:?}: {err}");
    }
    assert!(!env.dev.root().join("escape").exists());
    assert_eq!(
        std::fs::read_dir(env.repo.join("metadata"))
            .expect("ls")
            .count(),
        before
    );
    assert!(env.tuf("status", &[]).contains("nothing staged"));

    // Rotate the targets key: root v2 (signed by the root key), targets re-signed by the new key.
    let (targets2, targets2_pk) = env.key("targets", pb::Algorithm::EcdsaP256).await;
    env.tuf(
        "rotate",
        &["targets", "--key", &targets2, "--remove", &targets],
    );
    let refused = env.tuf_fails("publish", &[]);
    assert!(
        refused.contains(&root),
        "publish must name the root key: {refused}"
    );
    env.tuf("sign", &["root", "--key", &root]);
    env.tuf("publish", &[]);
    let r = env.ngclient_ok("long-lived", &["files/hello.txt"]);
    assert_eq!(trusted(&r, "root").0, 2);
    assert_eq!(trusted(&r, "targets"), (6, vec![tuf_id(&targets2_pk)]));

    // Rotate the root key: root v3 signed by the new key (here) and the old one (sign).
    let (root2, root2_pk) = env.key("root", pb::Algorithm::EcdsaP256).await;
    env.tuf("rotate", &["root", "--key", &root2, "--remove", &root]);
    let refused = env.tuf_fails("publish", &[]);
    assert!(
        refused.contains("previous root v2") && refused.contains(&root),
        "publish must ask for the old root key: {refused}"
    );
    env.tuf("sign", &["root", "--key", &root]);
    env.tuf("publish", &[]);
    let r = env.ngclient_ok("long-lived", &["files/hello.txt"]);
    let (version, mut signers) = trusted(&r, "root");
    signers.sort();
    let mut both = vec![tuf_id(&root_pk), tuf_id(&root2_pk)];
    both.sort();
    assert_eq!(
        (version, signers),
        (3, both),
        "the client followed root v1 -> v3"
    );
    // A fresh client starting from 1.root.json walks the whole chain too.
    assert_eq!(trusted(&env.ngclient_ok("fresh", &[]), "root").0, 3);

    // A timestamp refresh alone.
    let before = trusted(&r, "timestamp").0;
    let snapshot_before = trusted(&r, "snapshot").0;
    env.tuf("timestamp", &[]);
    let r = env.ngclient_ok("long-lived", &[]);
    assert_eq!(trusted(&r, "timestamp").0, before + 1);
    assert_eq!(trusted(&r, "snapshot").0, snapshot_before);

    let verified: Value = serde_json::from_str(&env.tuf("verify", &["--json"])).expect("json");
    assert_eq!(verified["root_chain"], serde_json::json!([1, 2, 3]));
    assert_eq!(verified["files_checked"], 5);

    // A tampered byte in a stored target: ngclient and verify refuse it.
    let stored = env
        .repo
        .join(format!("targets/files/{}.hello.txt", sha256_hex(hello)));
    let original = flip_last_byte(&stored);
    let err = env
        .ngclient("tamper-target", &["files/hello.txt"])
        .expect_err("tampered target");
    assert!(err.contains("LengthOrHashMismatchError"), "{err}");
    assert!(env.tuf_fails("verify", &[]).contains("differs"));
    std::fs::write(&stored, &original).expect("restore");

    // A tampered byte in published metadata (the current targets role; still valid JSON).
    let listed = env.repo.join("metadata/6.targets.json");
    let original = std::fs::read(&listed).expect("targets");
    let text = String::from_utf8(original.clone()).expect("utf-8");
    assert!(text.contains("\"build\":42"), "{text}");
    std::fs::write(&listed, text.replace("\"build\":42", "\"build\":43")).expect("tamper");
    let err = env
        .ngclient("tamper-metadata", &["files/hello.txt"])
        .expect_err("tampered metadata");
    assert!(err.contains("LengthOrHashMismatchError"), "{err}");
    assert!(env.tuf_fails("verify", &[]).contains("differs"));
    std::fs::write(&listed, &original).expect("restore");
    env.ngclient_ok("after-restore", &["files/hello.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_of_three_root_ceremony_collects_signatures_with_sign() {
    let env = Env::start().await;
    // Root key B lives on another machine: its own sigild and token. C stays offline.
    let other = DevDir::new();
    other.init();
    let other_daemon = other.start();
    let b = other_daemon
        .client()
        .await
        .generate("root", GUN, pb::Algorithm::EcdsaP256)
        .await;
    let b_pk = PublicKey::from_spki_der(&b.spki_der).expect("spki");
    let (b, b_pem) = (b.key_id, env.file("b.pem", b_pk.to_pem().as_bytes()));
    let (a, a_pk) = env.key("root", pb::Algorithm::EcdsaP256).await;
    let (c, c_pk) = env.key("root", pb::Algorithm::EcdsaP256).await;
    let c_pem = env.file("c.pem", c_pk.to_pem().as_bytes());
    let (targets, _) = env.key("targets", pb::Algorithm::EcdsaP256).await;
    let (snapshot, _) = env.key("snapshot", pb::Algorithm::EcdsaP256).await;
    let (timestamp, _) = env.key("timestamp", pb::Algorithm::EcdsaP256).await;
    env.tuf(
        "init",
        &[
            "--root-key",
            &a,
            "--root-key",
            &b_pem,
            "--root-key",
            &c_pem,
            "--root-threshold",
            "2",
            "--targets-key",
            &targets,
            "--snapshot-key",
            &snapshot,
            "--timestamp-key",
            &timestamp,
        ],
    );
    assert!(
        !env.repo.join("metadata/1.root.json").exists(),
        "root v1 must stay staged below its threshold"
    );
    let refused = env.tuf_fails("publish", &[]);
    assert!(
        refused.contains(&b) && refused.contains(&c) && refused.contains("1 of the 2"),
        "publish must name the missing keys: {refused}"
    );
    assert!(!env.repo.join("metadata").join("timestamp.json").exists());
    let status: Value = serde_json::from_str(&env.tuf("status", &["--json"])).expect("json");
    assert_eq!(status["staged"][0]["role"], "root");
    let missing = &status["staged"][0]["missing"][0]["missing_keys"];
    assert_eq!(missing.as_array().map(Vec::len), Some(2), "{status}");

    // A key that is not a root key is refused; B signs on its machine (the staged root is
    // carried over in the repository directory).
    let wrong = env.tuf_fails("sign", &["root", "--key", &targets]);
    assert!(wrong.contains("not keys of this role"), "{wrong}");
    let repo = env.repo.to_string_lossy().into_owned();
    let signed = Command::new(sigil_e2e::sigil_cli())
        .env("SIGIL_SOCKET", other_daemon.socket())
        .args(["--json", "tuf", "sign", &repo, "root", "--key", &b])
        .output()
        .expect("sigil tuf sign on the other machine");
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let signed: Value = serde_json::from_slice(&signed.stdout).expect("sign --json");
    assert_eq!(signed["signed_by"], serde_json::json!([b]), "{signed}");
    assert_eq!(signed["missing"], serde_json::json!([]), "{signed}");
    env.tuf("publish", &[]);
    let r = env.ngclient_ok("client", &[]);
    let (version, mut signers) = trusted(&r, "root");
    signers.sort();
    let mut expected = vec![tuf_id(&a_pk), tuf_id(&b_pk)];
    expected.sort();
    assert_eq!((version, signers), (1, expected));
    env.tuf("verify", &[]);

    // The other machine's sigild audited exactly that signature: over root v1's signed bytes.
    let root = sigil_tuf::Metadata::<sigil_tuf::schema::tuf1::Root>::from_bytes(
        "root",
        std::fs::read(env.repo.join("metadata/1.root.json")).expect("1.root.json"),
    )
    .expect("root v1");
    let digest = sha256_hex(&root.signed().canonical_signed().expect("canonical"));
    let lines = sigil_e2e::notary::read_audit_lines(other_daemon.audit_log());
    let signs: Vec<_> = lines.iter().filter(|l| l.op == "sign").collect();
    assert_eq!(signs.len(), 1, "{lines:?}");
    assert_eq!(
        (
            signs[0].key_id.as_str(),
            signs[0].sha256.as_deref(),
            signs[0].outcome.as_str()
        ),
        (b.as_str(), Some(digest.as_str()), "ok")
    );
}
