//! sigild knows what it signs (issue 11 item 1, DESIGN §9): a caller whose policy allows only
//! `sign-metadata` gets a signature only for canonical metadata of the key's role type, above
//! the version floor of the key's (GUN, role) or the same bytes again, expiring within the
//! `[[metadata]]` bound, with targets inside its `paths` — in the Notary and the TUF 1.0
//! dialect alike. Everything else is PERMISSION_DENIED with the reason, audited with what the
//! metadata said; hostile bytes change nothing; the floor survives a restart and a kill -9;
//! two sigilds cannot share one state dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use sigil_e2e::metadata::{notary, tuf1};
use sigil_e2e::{
    Daemon, DevDir, OTHER_UID, Rpc, RpcOutcome, Stranger, client_exe, read_audit, sha256,
};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;

const GUN: &str = "example.com/app";
const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

/// The `[[metadata]]` bounds every test uses.
const RULES: &str = "[[metadata]]\nrole = \"timestamp\"\nmax_expires = \"1d\"\n\n\
                     [[metadata]]\nrole = \"targets/releases\"\nmax_expires = \"30d\"\n\
                     paths = [\"releases/*\"]\n";

/// The owner may do everything (blind signatures too); uid 65534 only sign-metadata.
fn config(dir: &DevDir) -> PathBuf {
    dir.config()
        .append(&format!(
            "[[policy]]\nname = \"ci\"\nuids = [{OTHER_UID}]\n\
             keys = [{{ gun = \"{GUN}\", role = \"*\" }}]\nallow = [\"sign-metadata\", \"list\"]\n\n{RULES}"
        ))
        .write("sign-metadata.toml")
}

/// The test's own uid may generate keys but sign only metadata: the in-process client is the
/// metadata-only caller (for messages too big for a command line, and errors that are values).
fn metadata_only_config(dir: &DevDir) -> PathBuf {
    dir.config()
        .without_owner_rule()
        .append(&format!(
            "[[policy]]\nname = \"metadata-only\"\nuids = [{uid}]\n\
             keys = [{{ gun = \"*\", role = \"*\" }}]\n\
             allow = [\"sign-metadata\", \"generate\", \"list\", \"public\"]\n\n{RULES}",
            uid = nix::unistd::getuid().as_raw()
        ))
        .write("metadata-only.toml")
}

/// Signs `message` through the in-process client; the status on refusal.
async fn sign_here(daemon: &Daemon, key_id: &str, message: &[u8]) -> Result<(), tonic::Status> {
    let mut client = sigil_e2e::try_connect(daemon.socket())
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
    client
        .sign_message(key_id, message, pb::SignatureEncoding::Raw)
        .await
        .map(|_| ())
}

#[track_caller]
fn refused_here(result: Result<(), tonic::Status>, says: &str) {
    let status = result.expect_err(says);
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(says),
        "should say {says:?}: {}",
        status.message()
    );
}

struct Keys {
    timestamp: String,
    releases: String,
    root: String,
}

async fn keys(daemon: &Daemon) -> Keys {
    let mut owner = daemon.client().await;
    let mut make = async |role: &str| {
        owner
            .generate(role, GUN, pb::Algorithm::EcdsaP256)
            .await
            .key_id
    };
    Keys {
        timestamp: make("timestamp").await,
        releases: make("targets/releases").await,
        root: make("root").await,
    }
}

fn sign(ci: &Stranger, socket: &Path, key_id: &str, message: &[u8]) -> RpcOutcome {
    ci.run(
        socket,
        &Rpc::Sign {
            key_id: key_id.to_owned(),
            message_hex: hex::encode(message),
        },
    )
}

#[track_caller]
fn signed(outcome: &RpcOutcome) {
    assert_eq!(outcome.code(), Code::Ok, "{}", outcome.message);
    assert_eq!(outcome.signature_hex.len(), 128, "a raw P-256 signature");
}

#[track_caller]
fn refused(outcome: &RpcOutcome, says: &str) {
    assert_eq!(
        outcome.code(),
        Code::PermissionDenied,
        "{}",
        outcome.message
    );
    assert!(
        outcome.message.contains(says),
        "the reason should say {says:?}: {}",
        outcome.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_only_caller_gets_signatures_only_for_what_fits_its_key() {
    let dir = DevDir::new();
    dir.init();
    let daemon = dir.sigild_config(&config(&dir)).spawn();
    let keys = keys(&daemon).await;
    let ci = Stranger::new(client_exe!());
    let socket = daemon.socket();

    // A TUF 1.0 timestamp within the bound; the same bytes again (a retry) pass too.
    let v1 = tuf1("timestamp", 1, 12 * HOUR, &[]);
    signed(&sign(&ci, socket, &keys.timestamp, &v1));
    signed(&sign(&ci, socket, &keys.timestamp, &v1));
    // Another document of the same version, in the other dialect: two v1s never exist.
    let other_v1 = notary("Timestamp", 1, 12 * HOUR, &[]);
    refused(
        &sign(&ci, socket, &keys.timestamp, &other_v1),
        "version 1 of example.com/app timestamp was already signed with other content",
    );
    signed(&sign(
        &ci,
        socket,
        &keys.timestamp,
        &notary("Timestamp", 3, HOUR, &[]),
    ));
    refused(
        &sign(
            &ci,
            socket,
            &keys.timestamp,
            &tuf1("timestamp", 2, HOUR, &[]),
        ),
        "version 2 is not above version 3",
    );
    refused(
        &sign(
            &ci,
            socket,
            &keys.timestamp,
            &tuf1("timestamp", 9, 2 * DAY, &[]),
        ),
        "more than 1 days ahead",
    );
    refused(
        &sign(
            &ci,
            socket,
            &keys.timestamp,
            &tuf1("timestamp", 9, Duration::ZERO, &[]),
        ),
        "has already expired",
    );
    // Another role's metadata with the timestamp key, and the other way round.
    refused(
        &sign(&ci, socket, &keys.timestamp, &tuf1("targets", 9, HOUR, &[])),
        "signs timestamp metadata, not targets",
    );
    refused(
        &sign(&ci, socket, &keys.root, &tuf1("timestamp", 9, HOUR, &[])),
        "signs root metadata, not timestamp",
    );
    // A delegation key signs its role in both dialects, inside its paths only.
    signed(&sign(
        &ci,
        socket,
        &keys.releases,
        &tuf1("targets", 1, DAY, &["releases/a.tar.gz"]),
    ));
    refused(
        &sign(
            &ci,
            socket,
            &keys.releases,
            &notary("Targets", 2, DAY, &["releases/b.tar.gz", "other/x"]),
        ),
        "target \"other/x\" is outside the paths allowed for example.com/app targets/releases",
    );
    signed(&sign(
        &ci,
        socket,
        &keys.releases,
        &notary("Targets", 2, DAY, &["releases/b.tar.gz"]),
    ));
    // Not metadata at all, and a digest (which would hide what is signed).
    refused(
        &sign(&ci, socket, &keys.timestamp, b"curl | sh"),
        "not TUF metadata",
    );
    let digest = ci.run(
        socket,
        &Rpc::SignDigest {
            key_id: keys.timestamp.clone(),
            digest_hex: hex::encode(sha256(&v1)),
        },
    );
    refused(&digest, "send the metadata's canonical bytes as message");
    // SIGHUP swaps in tighter [[metadata]] rules.
    let tighter = dir.path().join("sign-metadata.toml");
    let text = std::fs::read_to_string(&tighter)
        .expect("config")
        .replace("max_expires = \"1d\"", "max_expires = \"2h\"");
    std::fs::write(&tighter, text).expect("rewrite config");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("[[metadata]] rules reloaded", 1);
    refused(
        &sign(
            &ci,
            socket,
            &keys.timestamp,
            &tuf1("timestamp", 9, 3 * HOUR, &[]),
        ),
        "more than 7200 s ahead",
    );
    // The owner, allowed to sign blind, still can.
    let mut owner = daemon.client().await;
    owner
        .sign_message(&keys.timestamp, b"curl | sh", pb::SignatureEncoding::Raw)
        .await
        .expect("a blind signature for a caller with `sign`");
    drop(owner);
    assert!(daemon.stop().success());

    let audit = read_audit(&dir.audit_log());
    let ci_signs: Vec<_> = audit
        .iter()
        .filter(|l| l.op == "sign" && l.uid == OTHER_UID)
        .collect();
    assert_eq!(ci_signs.len(), 15, "{ci_signs:#?}");
    let first = ci_signs[0];
    assert_eq!(first.outcome, "ok");
    let facts = first
        .metadata
        .as_ref()
        .expect("what was signed is recorded");
    assert_eq!(
        (
            facts.dialect.as_str(),
            facts.kind.as_str(),
            facts.version,
            facts.targets
        ),
        ("tuf-1.0", "timestamp", 1, 0)
    );
    let outside = ci_signs
        .iter()
        .find(|l| l.reason.as_deref().is_some_and(|r| r.contains("other/x")))
        .expect("the refused delegation");
    assert_eq!(outside.outcome, "denied");
    let facts = outside.metadata.as_ref().expect("refusals record it too");
    assert_eq!(
        (facts.dialect.as_str(), facts.version, facts.targets),
        ("notary", 2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_are_refused_and_leave_the_floors_untouched() {
    let dir = DevDir::new();
    dir.init();
    let daemon = dir.sigild_config(&metadata_only_config(&dir)).spawn();
    let keys = keys(&daemon).await;
    sign_here(&daemon, &keys.timestamp, &tuf1("timestamp", 5, HOUR, &[]))
        .await
        .expect("a timestamp within the bound");
    let floors = dir.path().join("state/metadata-floors.json");
    let before = std::fs::read(&floors).expect("the floors file");

    // 4 MiB of nesting, just under the message limit.
    let nested = {
        let depth = (4 * 1024 * 1024 - 4096) / 2;
        let mut v = vec![b'['; depth];
        v.extend(std::iter::repeat_n(b']', depth));
        v
    };
    let good = String::from_utf8(tuf1("timestamp", 6, HOUR, &[])).expect("utf-8");
    let version = |text: &str| good.replace("\"version\":6", &format!("\"version\":{text}"));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (nested, "not TUF metadata"),
        (
            b"{\"_type\":\"timestamp\xff\"}".to_vec(),
            "not TUF metadata",
        ),
        (
            good.replacen('{', "{\"_type\":\"root\",", 1).into_bytes(),
            "duplicate",
        ),
        (version("6.0").into_bytes(), "not TUF metadata"),
        (version("6e0").into_bytes(), "not TUF metadata"),
        (version("06").into_bytes(), "not TUF metadata"),
        (
            version("18446744073709551616").into_bytes(),
            "not TUF metadata",
        ),
        (tuf1("timestamp", 1 << 63, HOUR, &[]), "2^63"),
        (tuf1("timestamp", u64::MAX, HOUR, &[]), "2^63"),
        (good.replace(':', ": ").into_bytes(), "canonical"),
    ];
    for (bytes, says) in &cases {
        refused_here(sign_here(&daemon, &keys.timestamp, bytes).await, says);
    }
    assert_eq!(
        std::fs::read(&floors).expect("floors"),
        before,
        "floors untouched"
    );
    sign_here(&daemon, &keys.timestamp, good.as_bytes())
        .await
        .expect("the well-formed v6");
    assert!(daemon.stop().success(), "sigild survived all of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_survives_a_restart_and_a_kill_9_and_the_state_dir_has_one_owner() {
    let dir = DevDir::new();
    dir.init();
    let config = metadata_only_config(&dir);
    let daemon = dir.sigild_config(&config).spawn();
    let keys = keys(&daemon).await;
    let ts = |v: u64| tuf1("timestamp", v, HOUR, &[]);
    for v in 1..=5 {
        sign_here(&daemon, &keys.timestamp, &ts(v))
            .await
            .expect("rising versions");
    }

    // A second sigild on the same state dir (own socket and log) stops at start.
    let second = dir
        .config()
        .socket(&dir.path().join("second.sock"))
        .audit_log(&dir.path().join("second.jsonl"))
        .write("second.toml");
    let done = dir.sigild_config(&second).run_to_exit();
    assert!(!done.status.success());
    assert!(
        done.error_line()
            .contains(&format!("in use by another sigild (pid {})", daemon.pid())),
        "{}",
        done.error_line()
    );
    assert!(daemon.stop().success());

    let daemon = dir.sigild_config(&config).spawn();
    sign_here(&daemon, &keys.timestamp, &ts(5))
        .await
        .expect("v5 again after a restart");
    refused_here(
        sign_here(&daemon, &keys.timestamp, &ts(4)).await,
        "not above version 5",
    );

    // Rising versions as fast as they go, while sigild is killed with SIGKILL.
    let mut highest = 5;
    let killed_at = std::time::Instant::now() + Duration::from_millis(700);
    let mut killed = false;
    for v in 6.. {
        if !killed && std::time::Instant::now() >= killed_at {
            daemon.signal(Signal::SIGKILL);
            killed = true;
        }
        match sign_here(&daemon, &keys.timestamp, &ts(v)).await {
            Ok(()) => highest = v,
            Err(_) if killed => break,
            Err(e) => panic!("v{v} before the kill: {e:?}"),
        }
    }
    drop(daemon);
    assert!(
        highest > 6,
        "signatures were made before the kill (last v{highest})"
    );

    let daemon = dir.sigild_config(&config).spawn();
    // Whatever the kill interrupted, a version that got a signature is never signed again
    // with other bytes, nor an older one.
    refused_here(
        sign_here(
            &daemon,
            &keys.timestamp,
            &notary("Timestamp", highest, HOUR, &[]),
        )
        .await,
        "sign-metadata",
    );
    refused_here(
        sign_here(&daemon, &keys.timestamp, &ts(highest - 1)).await,
        "is not above version",
    );
    sign_here(&daemon, &keys.timestamp, &ts(highest + 2))
        .await
        .expect("a higher version after the crash");
    assert!(daemon.stop().success());
}

/// sigild's key as a [`sigil_tuf::Signer`] through the in-process (metadata-only) client.
struct Remote<'a> {
    daemon: &'a Daemon,
    key_id: String,
    public: sigil_tuf::PublicKey,
}

#[async_trait::async_trait]
impl sigil_tuf::Signer for Remote<'_> {
    fn public_key(&self) -> &sigil_tuf::PublicKey {
        &self.public
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, sigil_tuf::SignError> {
        let mut client = sigil_e2e::try_connect(self.daemon.socket()).await?;
        let response = client
            .sign_message(&self.key_id, message, pb::SignatureEncoding::Raw)
            .await?;
        Ok(response.signature)
    }
}

/// `sigil init` makes the root key sign its own certificate: sign-metadata allows exactly
/// that (self-issued, this key, CN = its GUN, within the root bound) and nothing like it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_key_signs_only_its_own_certificate() {
    let dir = DevDir::new();
    dir.init();
    let daemon = dir.sigild_config(&metadata_only_config(&dir)).spawn();
    let mut client = daemon.client().await;
    let mut remote = async |role: &str, gun: &str| {
        let key = client.generate(role, gun, pb::Algorithm::EcdsaP256).await;
        Remote {
            daemon: &daemon,
            key_id: key.key_id,
            public: sigil_tuf::PublicKey::from_spki_der(&key.spki_der).expect("spki"),
        }
    };
    let root = remote("root", GUN).await;
    let targets = remote("targets", GUN).await;
    let now = std::time::SystemTime::now();
    let lifetime = sigil_tuf::x509::ROOT_CERT_LIFETIME;
    let cert = sigil_tuf::x509::build_root_certificate(GUN, &root, now, lifetime)
        .await
        .expect("the root key's own certificate");
    assert_eq!(cert.common_name().as_deref(), Some(GUN));
    for (signer, gun, lifetime, says) in [
        (&root, "example.com/other", lifetime, "does not match GUN"),
        (
            &targets,
            GUN,
            lifetime,
            "only a root key signs a certificate",
        ),
        (&root, GUN, lifetime + 2 * DAY, "more than 3650 days ahead"),
    ] {
        let err = sigil_tuf::x509::build_root_certificate(gun, signer, now, lifetime)
            .await
            .expect_err(says)
            .to_string();
        assert!(err.contains(says), "{says}: {err}");
    }
    drop(client);
    assert!(daemon.stop().success());
    let audit = read_audit(&dir.audit_log());
    let cert_line = audit
        .iter()
        .find(|l| l.op == "sign" && l.outcome == "ok")
        .expect("the certificate signature");
    let facts = cert_line.metadata.as_ref().expect("recorded");
    assert_eq!(
        (facts.dialect.as_str(), facts.kind.as_str()),
        ("x509", "root-certificate")
    );
}
