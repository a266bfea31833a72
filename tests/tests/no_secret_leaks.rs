//! The token PINs never leave their 0600 files: not in sigild's logs at trace level, not in the
//! audit log, not in any gRPC error, not in start-up errors, and not in the `Debug` or `Display`
//! of the daemon's secret, config and error types.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::Signal;
use sigil_e2e::{DevDir, Rpc, Stranger, client_exe, read_text, write_file};
use sigil_proto::sigil_v1 as pb;

/// The forms a PIN could take in a log: as is, hex, base64.
fn forms(secret: &str) -> Vec<String> {
    vec![
        secret.to_owned(),
        hex::encode(secret),
        hex::encode_upper(secret),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

fn assert_absent(secrets: &[(&str, String)], place: &str, text: &str) {
    for (name, secret) in secrets {
        assert!(secret.len() >= 8, "{name} is too short to search for");
        for form in forms(secret) {
            assert!(!text.contains(&form), "the {name} appears in {place}");
        }
    }
}

/// A trace-level daemon (`-vv` and `SIGIL_LOG=trace`) in dev mode.
fn start_tracing(dir: &DevDir) -> sigil_e2e::Daemon {
    dir.sigild_dev()
        .arg("-vv")
        .env("SIGIL_LOG", "trace")
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_never_reach_logs_audit_or_errors() {
    let dir = DevDir::new();
    let daemon = start_tracing(&dir);
    let mut client = daemon.client().await;
    let mut messages: Vec<String> = Vec::new();

    // Work that succeeds.
    let ecdsa = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let ed25519 = client
        .generate("snapshot", "example.com/app", pb::Algorithm::Ed25519)
        .await;
    let doomed = client
        .generate("timestamp", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    assert_eq!(client.list().await.len(), 3);
    client.public(&ecdsa.key_id).await.expect("GetPublicKey");
    for encoding in [pb::SignatureEncoding::Raw, pb::SignatureEncoding::Der] {
        client
            .sign_message(&ecdsa.key_id, b"m", encoding)
            .await
            .expect("sign");
        client
            .sign_digest(&ecdsa.key_id, &[1; 32], encoding)
            .await
            .expect("sign digest");
    }
    client
        .sign_message(&ed25519.key_id, b"m", pb::SignatureEncoding::Raw)
        .await
        .expect("sign");
    client.delete(&doomed.key_id).await.expect("DeleteKey");

    // Work that fails, keeping every message the daemon sends back.
    let unknown = "ab".repeat(32);
    let failures = [
        client
            .sign_message(&unknown, b"m", pb::SignatureEncoding::Raw)
            .await
            .err(),
        client
            .sign_digest(&ecdsa.key_id, &[1; 31], pb::SignatureEncoding::Raw)
            .await
            .err(),
        client
            .sign_digest(&ed25519.key_id, &[1; 32], pb::SignatureEncoding::Raw)
            .await
            .err(),
        client
            .sign_request(pb::SignRequest {
                key_id: ecdsa.key_id.clone(),
                payload: None,
                encoding: 0,
            })
            .await
            .err(),
        client.public("not-a-key-id").await.err(),
        client.delete(&doomed.key_id).await.err(),
        client
            .keys
            .generate_key(pb::GenerateKeyRequest {
                backend: "nope".into(),
                role: "targets".into(),
                gun: String::new(),
                algorithm: 0,
            })
            .await
            .err(),
    ];
    for status in failures {
        let status = status.expect("each of these requests must fail");
        messages.push(format!("{status:?}"));
    }
    let stranger = Stranger::new(client_exe!());
    for rpc in [
        Rpc::List,
        Rpc::Sign {
            key_id: ecdsa.key_id.clone(),
            message_hex: "00".into(),
        },
        Rpc::Generate {
            role: "root".into(),
            gun: String::new(),
        },
    ] {
        let outcome = stranger.run(daemon.socket(), &rpc);
        messages.push(format!("{outcome:?}"));
    }

    // A policy reload (SIGHUP) logs too.
    daemon.signal(Signal::SIGHUP);
    let waited = Instant::now();
    while !daemon.stderr().contains("policy reloaded") {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "no reload logged:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stopping sigild");
    assert!(status.success(), "{status}");

    // Start-up failures at trace level: a wrong PIN, an insecure PIN file, then a clean
    // --check run through every start-up step.
    let wrong_pin = "wrong-PIN-e2e-7f3a9c".to_owned();
    let wrong = dir.path().join("wrong.pin");
    write_file(&wrong, format!("{wrong_pin}\n"), 0o600);
    let config = dir.config().pin_file(&wrong).write("wrong-pin.toml");
    let refused = dir
        .sigild_config(&config)
        .arg("-vv")
        .env("SIGIL_LOG", "trace")
        .run_to_exit();
    assert!(
        refused.error_line().contains("PIN incorrect"),
        "{}",
        refused.stderr
    );
    write_file(&wrong, format!("{wrong_pin}\n"), 0o644);
    let refused = dir
        .sigild_config(&config)
        .arg("-vv")
        .env("SIGIL_LOG", "trace")
        .run_to_exit();
    assert!(
        refused.error_line().contains("mode 0644"),
        "{}",
        refused.stderr
    );
    let checked = dir
        .sigild_dev()
        .arg("-vv")
        .arg("--check")
        .env("SIGIL_LOG", "trace")
        .run_to_exit();
    assert!(checked.status.success(), "{}", checked.stderr);

    let secrets = [
        ("user PIN", dir.user_pin()),
        ("SO PIN", dir.so_pin()),
        ("wrong PIN", wrong_pin),
    ];
    // The logs searched are real trace logs, not empty files.
    let logs = dir.all_logs();
    assert!(
        logs.len() >= 8,
        "expected stderr and stdout of four runs: {logs:?}"
    );
    let traced: usize = logs
        .iter()
        .map(|(_, text)| text.matches("TRACE").count())
        .sum();
    assert!(traced > 50, "the daemon logged only {traced} trace lines");
    for (path, text) in &logs {
        assert_absent(&secrets, &path.display().to_string(), text);
    }
    let audit = read_text(&dir.audit_log());
    assert!(
        audit.lines().count() >= 15,
        "the audit log recorded the work:\n{audit}"
    );
    assert_absent(&secrets, "the audit log", &audit);
    for message in &messages {
        assert_absent(&secrets, &format!("the gRPC error {message}"), message);
    }
    // Nothing the daemon wrote next to the token holds a PIN either (the PIN files aside).
    for entry in std::fs::read_dir(dir.path()).expect("listing the dev dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && !name.ends_with(".pin") {
            assert_absent(&secrets, &path.display().to_string(), &read_text(&path));
        }
    }
}

/// In-process: the daemon's own types, formatted every way, never show a PIN.
#[test]
fn debug_and_display_of_secrets_configs_and_errors_never_show_the_pin() {
    use sigil_daemon::config::Config;
    use sigil_daemon::secret::{Pin, read_pin_file};

    let pin = "e2e-Secret-PIN-90210-xyzzy";
    let tmp = tempfile::tempdir().expect("tempdir");
    let pin_file = tmp.path().join("user.pin");
    write_file(&pin_file, format!("{pin}\n"), 0o600);
    let secrets = [("PIN", pin.to_owned())];
    let check = |what: &str, text: String| assert_absent(&secrets, what, &text);

    let read = read_pin_file(&pin_file);
    check("Debug of Ok(read_pin_file)", format!("{read:?}"));
    let read = read.expect("a 0600 PIN file is read");
    assert_eq!(
        read.len(),
        pin.len(),
        "the PIN was really read (without its newline)"
    );
    check("Debug of Pin", format!("{read:?} {read:#?}"));
    let made = Pin::new(zeroize_string(pin));
    check("Debug of Pin::new", format!("{made:?}"));

    write_file(&pin_file, format!("{pin}\n"), 0o644);
    let refused = read_pin_file(&pin_file).expect_err("0644 is refused");
    check(
        "PinFileError",
        format!("{refused} {refused:?} {refused:#?}"),
    );
    let startup = sigil_daemon::startup::Error::from(refused);
    check("startup::Error", format!("{startup} {startup:?}"));

    let base = format!(
        "[server]\nsocket = \"/run/sigil/sigild.sock\"\naudit_log = \"/tmp/audit.jsonl\"\n\n\
         [[backend]]\nname = \"hsm\"\ntype = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n\
         token_label = \"sigil\"\npin_file = {}\n",
        sigil_e2e::toml_path(&pin_file)
    );
    let config = Config::parse(&base, Path::new("ok.toml")).expect("a valid config");
    check("Debug of Config", format!("{config:?} {config:#?}"));

    // Someone writes the PIN inline where a PIN would naturally go: refused (unknown key),
    // without quoting it back.
    for inline in [
        base.replace(
            "token_label = \"sigil\"",
            &format!("token_label = \"sigil\"\npin = \"{pin}\""),
        ),
        base.replace("pin_file =", &format!("user_pin = \"{pin}\"\npin_file =")),
        format!(
            "{base}\n[[backend]]\nname = \"yk\"\ntype = \"yubikey\"\nserial = 1\npin = \"{pin}\"\n"
        ),
    ] {
        let err = Config::parse(&inline, Path::new("inline.toml")).expect_err("inline PIN");
        check(
            "a config error about an inline PIN",
            format!("{err} {err:?}"),
        );
        let startup = sigil_daemon::startup::Error::from(err);
        check("startup::Error", format!("{startup} {startup:?}"));
    }
}

fn zeroize_string(s: &str) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(s.to_owned())
}
