//! The audit log cannot be used to fill the disk (issue 12 item 2): request strings are
//! recorded only when short and printable (else as their length and SHA-256), and one caller's
//! refusals beyond `[server] audit_refusals_per_window` are counted in one `suppressed` line
//! per window instead of written one by one — while every other caller keeps signing.

use std::time::{Duration, Instant};

use sigil_e2e::{DevDir, OTHER_GID, OTHER_UID, Rpc, Stranger, client_exe, read_audit, sha256_hex};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;

/// A key id of control bytes just under the Sign size limit (4 MiB message limit plus
/// framing), so that only the audit path decides how big its line is.
const HUGE: usize = 4 * 1024 * 1024 - 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_control_byte_key_id_is_refused_and_its_audit_line_stays_small() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let hostile = "\u{1}\u{1b}[2J\n".repeat(HUGE / 6);
    let status = client
        .sign_message(&hostile, b"payload", pb::SignatureEncoding::Raw)
        .await
        .expect_err("a control-byte key id");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().len() < 512,
        "the error echoes the key id: {} bytes",
        status.message().len()
    );
    // GenerateKey: a GUN with a bidi override (it would read as example.com/app) and a
    // backend name of bell characters, small enough for any decoding limit on Keys.
    let status = client
        .keys
        .generate_key(pb::GenerateKeyRequest {
            backend: "\u{7}".repeat(300),
            role: "targets".into(),
            gun: "example.com/\u{202e}ppa".into(),
            algorithm: pb::Algorithm::EcdsaP256.into(),
        })
        .await
        .expect_err("a hostile GUN");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().len() < 512, "{}", status.message().len());
    drop(client);
    assert!(daemon.stop().success());

    let size = std::fs::metadata(dir.audit_log()).expect("audit log").len();
    assert!(size < 4096, "two refusals wrote {size} bytes of audit log");
    let audit = read_audit(&dir.audit_log());
    assert_eq!(audit.len(), 2, "{audit:#?}");
    let sign = &audit[0];
    assert_eq!(
        (sign.op.as_str(), sign.outcome.as_str()),
        ("sign", "invalid")
    );
    assert_eq!(
        sign.key_id,
        format!(
            "<{} bytes, sha256 {}>",
            hostile.len(),
            sha256_hex(hostile.as_bytes())
        ),
        "a malformed key id is recorded as its length and hash"
    );
    let generate = &audit[1];
    assert_eq!(
        (generate.op.as_str(), generate.outcome.as_str()),
        ("generate", "invalid")
    );
    for field in [&generate.gun, &generate.backend] {
        assert!(field.starts_with('<') && field.len() < 100, "{field:?}");
    }
    assert_eq!(generate.role, "targets");
    for line in std::fs::read_to_string(dir.audit_log())
        .expect("audit log")
        .lines()
    {
        assert!(
            line.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "non-printable bytes in an audit line: {line}"
        );
    }
}

/// 300 refusals from one uid with a limit of 5 per 10 s window: 5 lines, then one
/// `suppressed` line counting the other 295, written when the window closes although the
/// caller has gone quiet. Meanwhile a stranger signs, and its line is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refusals_is_summarised_and_others_still_sign() {
    const BURST: usize = 300;
    const LIMIT: usize = 5;
    const WINDOW: Duration = Duration::from_secs(10);
    let dir = DevDir::new();
    dir.init();
    let config = dir
        .config()
        .append(&format!(
            "[[policy]]\nname = \"stranger-signs\"\nuids = [{OTHER_UID}]\n\
             keys = [{{ gun = \"example.com/app\", role = \"targets\" }}]\nallow = [\"sign\"]\n"
        ))
        .text()
        .replacen(
            "[server]\n",
            &format!(
                "[server]\naudit_refusals_per_window = {LIMIT}\naudit_refusal_window_secs = {}\n",
                WINDOW.as_secs()
            ),
            1,
        );
    let path = dir.path().join("limited.toml");
    sigil_e2e::write_file(&path, config, 0o600);
    let daemon = dir.sigild_config(&path).spawn();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;

    let started = Instant::now();
    let socket = daemon.socket().to_owned();
    let key_id = key.key_id.clone();
    let stranger = tokio::task::spawn_blocking(move || {
        Stranger::new(client_exe!()).run(
            &socket,
            &Rpc::Sign {
                key_id,
                message_hex: hex::encode(b"signed during the burst"),
            },
        )
    });
    for i in 0..BURST {
        let status = client
            .public(&format!("{i:064x}"))
            .await
            .expect_err("no such key");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    let burst_took = started.elapsed();
    let signed = stranger.await.expect("stranger");
    assert_eq!(
        signed.code(),
        Code::Ok,
        "the stranger could not sign: {signed:?}"
    );
    assert!(
        burst_took < WINDOW,
        "the burst took {burst_took:?}, longer than the {WINDOW:?} window the test relies on"
    );

    // The summary comes when the window closes, with no further call from that uid.
    let own_uid = nix::unistd::getuid().as_raw();
    let deadline = Instant::now() + WINDOW * 3;
    let summary = loop {
        let audit = read_audit(&dir.audit_log());
        if let Some(line) = audit
            .iter()
            .find(|l| l.op == "suppressed" && l.uid == own_uid)
        {
            break line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no suppressed line within {:?}: {audit:#?}",
            WINDOW * 3
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        summary.suppressed,
        Some((BURST - LIMIT) as u64),
        "{summary:?}"
    );
    assert_eq!(summary.outcome, "suppressed");
    assert!(
        summary.reason.as_deref().is_some_and(
            |r| r.starts_with(&format!("{} refusals from uid {own_uid}", BURST - LIMIT))
        ),
        "{summary:?}"
    );
    let audit = read_audit(&dir.audit_log());
    let written = audit
        .iter()
        .filter(|l| l.uid == own_uid && l.op == "public" && l.outcome == "not_found")
        .count();
    assert_eq!(written, LIMIT, "refusal lines written for the noisy uid");
    assert!(
        audit.iter().any(|l| l.uid == OTHER_UID
            && l.gid == OTHER_GID
            && l.op == "sign"
            && l.outcome == "ok"
            && l.key_id == key.key_id),
        "the stranger's signature is audited: {audit:#?}"
    );
    let size = std::fs::metadata(dir.audit_log()).expect("audit log").len();
    assert!(size < 8 * 1024, "{BURST} refusals wrote {size} bytes");

    // The limit is per caller and per window: the owner still signs, and is audited.
    client
        .sign_message(&key.key_id, b"after the burst", pb::SignatureEncoding::Raw)
        .await
        .expect("the owner signs after its burst");
    drop(client);
    assert!(daemon.stop().success());
    let audit = read_audit(&dir.audit_log());
    assert!(
        audit
            .iter()
            .any(|l| l.uid == own_uid && l.op == "sign" && l.outcome == "ok"),
        "{audit:#?}"
    );
}
