//! `sigil tuf` (issue 10, the tough half of item 4) against the real sigild on a SoftHSM2
//! token, with awslabs' tough (crates.io `tough`, its `RepositoryLoader`, file:// transport)
//! loading the repository at every step: init, add, delegation by paths and by hash prefixes
//! (nested, threshold 2), rotation of the targets key and of the root key (a client that holds
//! only root v1 follows the chain), a timestamp refresh; a tampered byte in a stored target or
//! in published metadata is refused by tough. The verdicts come from tough, not from sigil.
//!
//! tough builds a consistent-snapshot target's file name as `HASH.NAME` with the whole target
//! name (`HASH.dir/file`), where python-tuf's ngclient uses `dir/HASH.file`, which is what
//! sigil stores (DESIGN §8); so tough downloads targets without a directory part here, and targets
//! with one are checked through the metadata tough verified (length and SHA-256).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sigil_e2e::{Daemon, DevDir, sha256_hex};
use sigil_proto::sigil_v1 as pb;
use sigil_tuf::PublicKey;
use sigil_tuf::schema::tuf1::Key;
use tough::{IntoVec, RepositoryLoader, TargetName};
use url::Url;

const GUN: &str = "tuf.example/tough";

struct Env {
    dev: DevDir,
    daemon: Daemon,
    repo: PathBuf,
    /// root v1 as published at init: what a client that was shipped with it trusts.
    root_v1: Vec<u8>,
}

impl Env {
    async fn start() -> Self {
        let dev = DevDir::new();
        dev.init();
        let daemon = dev.start();
        let repo = dev.root().join("repo");
        Self {
            dev,
            daemon,
            repo,
            root_v1: Vec::new(),
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

    fn sigil(&self, verb: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
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
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("writing stdin");
        }
        drop(input);
        child.wait_with_output().expect("sigil output")
    }

    /// `sigil tuf VERB REPO ARGS`, which must succeed.
    fn tuf(&self, verb: &str, args: &[&str]) {
        self.tuf_stdin(verb, args, None);
    }

    fn tuf_stdin(&self, verb: &str, args: &[&str], stdin: Option<&[u8]>) {
        let out = self.sigil(verb, args, stdin);
        assert!(
            out.status.success(),
            "sigil tuf {verb} {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.dev.root().join(name);
        std::fs::write(&path, content).expect("write");
        path.to_string_lossy().into_owned()
    }

    /// tough, trusting root v1, loads the repository from file:// URLs; `datastore` keeps the
    /// client's state between loads (as a long-lived client would).
    async fn tough(&self, datastore: &str) -> tough::error::Result<tough::Repository> {
        let url = |dir: &str| {
            Url::from_directory_path(self.repo.join(dir)).expect("file:// URL of the repository")
        };
        let store = self.dev.root().join("tough").join(datastore);
        std::fs::create_dir_all(&store).expect("datastore");
        RepositoryLoader::new(&self.root_v1, url("metadata"), url("targets"))
            .datastore(store)
            .load()
            .await
    }

    async fn tough_ok(&self, datastore: &str) -> tough::Repository {
        self.tough(datastore)
            .await
            .unwrap_or_else(|e| panic!("tough refused the repository: {e:?}"))
    }
}

fn tuf_id(key: &PublicKey) -> String {
    Key::from_public_key(key).id()
}

/// Key ids that signed `signatures`, sorted.
fn signers(signatures: &[tough::schema::Signature]) -> Vec<String> {
    let mut ids: Vec<String> = signatures.iter().map(|s| hex::encode(&s.keyid)).collect();
    ids.sort();
    ids
}

/// A target as tough verified it (in any role of the tree): (length, hex SHA-256).
fn listed(repo: &tough::Repository, name: &str) -> Option<(u64, String)> {
    let name = TargetName::new(name).expect("target name");
    repo.all_targets()
        .find(|(n, _)| **n == name)
        .map(|(_, t)| (t.length, hex::encode(&t.hashes.sha256)))
}

/// Downloads `name` through tough (length and hash checked by it).
async fn download(repo: &tough::Repository, name: &str) -> tough::error::Result<Vec<u8>> {
    let target = TargetName::new(name).expect("target name");
    let stream = repo
        .read_target(&target)
        .await?
        .unwrap_or_else(|| panic!("tough does not list {name}"));
    stream.into_vec().await
}

/// tough's refusal for content that differs from what signed metadata lists (possibly inside
/// a transport error, the stream being checked as it is read).
fn assert_hash_mismatch(err: &tough::error::Error) {
    let text = format!("{err:?}");
    assert!(
        text.contains("HashMismatch"),
        "not a hash mismatch: {}",
        &text[..text.len().min(600)]
    );
}

fn flip_byte(path: &Path, needle: &[u8], replacement: &[u8]) -> Vec<u8> {
    let original = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let at = original
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{} lacks {:?}", path.display(), needle));
    let mut bytes = original.clone();
    bytes[at..at + needle.len()].copy_from_slice(replacement);
    std::fs::write(path, &bytes).expect("tamper");
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tough_loads_every_step_of_a_repository_sigil_maintains() {
    let mut env = Env::start().await;
    let (root, root_pk) = env.key("root", pb::Algorithm::EcdsaP256).await;
    let (targets, targets_pk) = env.key("targets", pb::Algorithm::EcdsaP256).await;
    let (snapshot, _) = env.key("snapshot", pb::Algorithm::EcdsaP256).await;
    let (timestamp, _) = env.key("timestamp", pb::Algorithm::EcdsaP256).await;

    // init: root, targets, snapshot v1 and timestamp.json.
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
        ],
    );
    env.root_v1 = std::fs::read(env.repo.join("metadata/1.root.json")).expect("1.root.json");
    let r = env.tough_ok("long-lived").await;
    assert_eq!(r.root().signed.version.get(), 1);
    assert!(r.root().signed.consistent_snapshot);
    assert_eq!(signers(&r.root().signatures), vec![tuf_id(&root_pk)]);
    assert_eq!(r.targets().signed.version.get(), 1);
    assert_eq!(r.all_targets().count(), 0);

    // add: a file with custom data, a file in a directory, and targets known by hash only.
    let hello = b"hello, tough\n";
    let custom = env.file("custom.json", br#"{"app": {"build": 42}}"#);
    env.tuf(
        "add",
        &["hello.txt", &env.file("hello", hello), "--custom", &custom],
    );
    let nested = b"in a directory";
    env.tuf("add", &["files/nested.txt", &env.file("nested", nested)]);
    let hashed = b"known by hash";
    let manifest = format!("{} {} hashed.bin\n", sha256_hex(hashed), hashed.len());
    env.tuf_stdin("addhash", &["--manifest", "-"], Some(manifest.as_bytes()));
    std::fs::write(
        env.repo
            .join(format!("targets/{}.hashed.bin", sha256_hex(hashed))),
        hashed,
    )
    .expect("upload hashed.bin");
    env.tuf("publish", &[]);
    let r = env.tough_ok("long-lived").await;
    assert_eq!(r.targets().signed.version.get(), 2);
    assert_eq!(signers(&r.targets().signatures), vec![tuf_id(&targets_pk)]);
    assert_eq!(download(&r, "hello.txt").await.expect("hello"), hello);
    assert_eq!(download(&r, "hashed.bin").await.expect("hashed"), hashed);
    let hello_target = r
        .targets()
        .signed
        .targets
        .get(&TargetName::new("hello.txt").expect("name"))
        .expect("hello.txt listed");
    assert_eq!(hello_target.custom["app"]["build"], 42);
    assert_eq!(
        listed(&r, "files/nested.txt"),
        Some((nested.len() as u64, sha256_hex(nested)))
    );

    // Delegations: by paths (terminating) with a nested threshold-2 role, and by hash prefix
    // (an Ed25519 key).
    let (releases, releases_pk) = env.key("releases", pb::Algorithm::EcdsaP256).await;
    env.tuf(
        "delegate",
        &[
            "releases",
            "--key",
            &releases,
            "--paths",
            "releases-*",
            "--terminating",
        ],
    );
    let (bins, bins_pk) = env.key("bins", pb::Algorithm::Ed25519).await;
    let tool_name = "tool.tar";
    let prefix = &sha256_hex(tool_name.as_bytes())[..2];
    env.tuf(
        "delegate",
        &["bins", "--key", &bins, "--hash-prefixes", prefix],
    );
    env.tuf("publish", &[]);
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
            "releases-stable-*",
            "-r",
            "releases",
        ],
    );
    env.tuf("publish", &[]);
    let (v1, tool, stable) = (
        b"release one".as_slice(),
        b"binned tool".as_slice(),
        b"stable".as_slice(),
    );
    env.tuf(
        "add",
        &["releases-v1.tar", &env.file("v1", v1), "-r", "releases"],
    );
    env.tuf("add", &[tool_name, &env.file("tool", tool), "-r", "bins"]);
    env.tuf(
        "add",
        &[
            "releases-stable-1.tar",
            &env.file("stable", stable),
            "-r",
            "stable",
        ],
    );
    env.tuf("publish", &[]);
    let r = env.tough_ok("long-lived").await;
    assert_eq!(download(&r, "releases-v1.tar").await.expect("v1"), v1);
    assert_eq!(download(&r, tool_name).await.expect("tool"), tool);
    assert_eq!(
        download(&r, "releases-stable-1.tar").await.expect("stable"),
        stable
    );
    let delegated = |name: &str| {
        r.delegated_role(name)
            .unwrap_or_else(|| panic!("tough has no delegated role {name}"))
    };
    let releases_role = delegated("releases");
    assert!(releases_role.terminating);
    assert_eq!(
        signers(
            &releases_role
                .targets
                .as_ref()
                .expect("releases loaded")
                .signatures
        ),
        vec![tuf_id(&releases_pk)]
    );
    assert_eq!(
        signers(&delegated("bins").targets.as_ref().expect("bins").signatures),
        vec![tuf_id(&bins_pk)]
    );
    assert_eq!(
        delegated("stable")
            .targets
            .as_ref()
            .expect("stable")
            .signatures
            .len(),
        2,
        "stable signed by both of its keys"
    );
    assert_eq!(
        r.targets().signed.version.get(),
        3,
        "the delegations changed targets once"
    );

    // Rotate the targets key: root v2 signed by the root key, targets re-signed by the new key.
    let (targets2, targets2_pk) = env.key("targets", pb::Algorithm::EcdsaP256).await;
    env.tuf(
        "rotate",
        &["targets", "--key", &targets2, "--remove", &targets],
    );
    env.tuf("sign", &["root", "--key", &root]);
    env.tuf("publish", &[]);
    let r = env.tough_ok("long-lived").await;
    assert_eq!(r.root().signed.version.get(), 2);
    assert_eq!(signers(&r.targets().signatures), vec![tuf_id(&targets2_pk)]);
    assert_eq!(download(&r, "hello.txt").await.expect("hello"), hello);

    // Rotate the root key: root v3 signed by the new key and the old one.
    let (root2, root2_pk) = env.key("root", pb::Algorithm::EcdsaP256).await;
    env.tuf("rotate", &["root", "--key", &root2, "--remove", &root]);
    env.tuf("sign", &["root", "--key", &root]);
    env.tuf("publish", &[]);
    let r = env.tough_ok("long-lived").await;
    let mut both = vec![tuf_id(&root_pk), tuf_id(&root2_pk)];
    both.sort();
    assert_eq!(r.root().signed.version.get(), 3);
    assert_eq!(signers(&r.root().signatures), both);
    // A fresh client holding only root v1 walks v1 -> v2 -> v3 too.
    assert_eq!(env.tough_ok("fresh").await.root().signed.version.get(), 3);

    // A timestamp refresh alone.
    let timestamp_before = r.timestamp().signed.version.get();
    let snapshot_before = r.snapshot().signed.version.get();
    env.tuf("timestamp", &[]);
    let r = env.tough_ok("long-lived").await;
    assert_eq!(r.timestamp().signed.version.get(), timestamp_before + 1);
    assert_eq!(r.snapshot().signed.version.get(), snapshot_before);

    // A tampered byte in a stored target: tough refuses its content.
    let stored = env
        .repo
        .join(format!("targets/{}.hello.txt", sha256_hex(hello)));
    let original = flip_byte(&stored, b"tough", b"touch");
    let err = download(&r, "hello.txt")
        .await
        .expect_err("tampered target accepted");
    assert_hash_mismatch(&err);
    std::fs::write(&stored, &original).expect("restore");
    assert_eq!(download(&r, "hello.txt").await.expect("restored"), hello);

    // A tampered byte in published metadata (the current targets role, still valid JSON).
    let current = env.repo.join(format!(
        "metadata/{}.targets.json",
        r.targets().signed.version.get()
    ));
    let original = flip_byte(&current, b"\"build\":42", b"\"build\":43");
    let err = env
        .tough("tamper-metadata")
        .await
        .expect_err("tampered metadata accepted");
    assert_hash_mismatch(&err);
    std::fs::write(&current, &original).expect("restore");
    env.tough_ok("after-restore").await;
}
