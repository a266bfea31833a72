//! The audit log is tamper-evident (DESIGN §10, issue 11 item 3): every line sigild writes is
//! chained to the one before, `sigil audit verify` names the first line that breaks the chain
//! after an edit, a deletion or a reordering, SIGHUP reopens the log so that logrotate's
//! rename-then-create keeps one chain across files, and a log path that is a symbolic link or
//! not a regular file stops sigild at start.

use std::path::Path;
use std::process::Output;

use nix::sys::signal::Signal;
use sigil_e2e::{DevDir, sigil_cli};
use sigil_proto::sigil_v1 as pb;

fn audit_verify(files: &[&Path], json: bool) -> Output {
    let mut cmd = std::process::Command::new(sigil_cli());
    cmd.args(["audit", "verify"]);
    if json {
        cmd.arg("--json");
    }
    cmd.args(files).output().expect("run sigil audit verify")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes `lines` to `path` (one per line) and returns the line `sigil audit verify` names.
fn broken_at(path: &Path, lines: &[String]) -> (u64, String) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .expect("write copy");
    let out = audit_verify(&[path], true);
    assert_eq!(out.status.code(), Some(1), "a tampered log must fail");
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json verdict");
    assert_eq!(verdict["ok"], false);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        verdict["broken"]["line"].as_u64().expect("line number"),
        stderr,
    )
}

async fn sign_some(daemon: &sigil_e2e::Daemon, key_id: &str, n: usize) {
    let mut client = daemon.client().await;
    for i in 0..n {
        client
            .sign_message(
                key_id,
                format!("payload {i}").as_bytes(),
                pb::SignatureEncoding::Raw,
            )
            .await
            .expect("sign");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_holds_across_rotation_and_names_the_first_bad_line() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let key = daemon
        .client()
        .await
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    sign_some(&daemon, &key.key_id, 5).await;

    let log = dir.audit_log();
    let out = audit_verify(&[&log], false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("audit chain OK: 6 lines"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // logrotate: rename, create, SIGHUP; then more lines in the new file.
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&log, &rotated).expect("rename");
    std::fs::write(&log, b"").expect("create");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("audit log reopened", 1);
    sign_some(&daemon, &key.key_id, 3).await;
    assert!(daemon.stop().success());
    assert_eq!(lines(&rotated).len(), 6, "the old file got no more lines");
    assert_eq!(lines(&log).len(), 3, "new lines go to the new file");
    let out = audit_verify(&[&rotated, &log], true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (verdict["ok"].clone(), verdict["lines"].clone()),
        (true.into(), 9.into())
    );
    // The new file alone continues a line it was not given; in the wrong order, it breaks.
    let alone: serde_json::Value =
        serde_json::from_slice(&audit_verify(&[&log], true).stdout).expect("json");
    assert!(alone["continues"].is_string(), "{alone}");
    let out = audit_verify(&[&log, &rotated], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit.jsonl.1:1:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A restart continues the chain from the file's last line.
    let daemon = dir.start();
    sign_some(&daemon, &key.key_id, 1).await;
    assert!(daemon.stop().success());
    assert!(audit_verify(&[&rotated, &log], false).status.success());

    let all = lines(&rotated);
    let copy = dir.path().join("tampered.jsonl");
    // An edit: the outcome of line 3 changed; the line after it no longer follows.
    let mut edited = all.clone();
    edited[2] = edited[2].replace("\"outcome\":\"ok\"", "\"outcome\":\"denied\"");
    assert_ne!(edited[2], all[2], "line 3 is a signature");
    let (line, stderr) = broken_at(&copy, &edited);
    assert_eq!(line, 4, "{stderr}");
    assert!(stderr.contains("tampered.jsonl:4:"), "{stderr}");
    // A deletion of line 4, a swap of lines 2 and 5.
    let mut deleted = all.clone();
    deleted.remove(3);
    assert_eq!(broken_at(&copy, &deleted).0, 4);
    let mut swapped = all.clone();
    swapped.swap(1, 4);
    assert_eq!(broken_at(&copy, &swapped).0, 2);
    // A line appended by hand without the chain.
    let mut forged = all;
    forged.push(r#"{"op":"sign","outcome":"ok"}"#.to_owned());
    assert_eq!(broken_at(&copy, &forged).0, 7);
}

#[test]
fn a_symlinked_or_unusable_log_path_stops_sigild_at_start() {
    let dir = DevDir::new();
    dir.init();
    let elsewhere = dir.path().join("elsewhere.jsonl");
    std::fs::write(&elsewhere, b"").expect("target");
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
    let config = dir.config().audit_log(&link).write("link.toml");
    let done = dir.sigild_config(&config).run_to_exit();
    assert!(!done.status.success());
    assert!(
        done.error_line().contains("symbolic link"),
        "{}",
        done.error_line()
    );
    assert!(!dir.socket().exists(), "nothing served");
    assert_eq!(std::fs::metadata(&elsewhere).expect("target").len(), 0);

    let directory = dir.path().join("a-directory");
    std::fs::create_dir(&directory).expect("mkdir");
    let config = dir.config().audit_log(&directory).write("dir.toml");
    let done = dir.sigild_config(&config).run_to_exit();
    assert!(!done.status.success());
    assert!(
        done.error_line().contains("cannot open audit log"),
        "{}",
        done.error_line()
    );

    let torn = dir.path().join("torn.jsonl");
    std::fs::write(&torn, b"{\"prev\":\"00\"}\n{\"op\":").expect("torn");
    let config = dir.config().audit_log(&torn).write("torn.toml");
    let done = dir.sigild_config(&config).run_to_exit();
    assert!(
        done.error_line().contains("partial line"),
        "{}",
        done.error_line()
    );
}
