//! Bad configurations, PIN files and socket paths: a clear start-up error naming the problem.

use super::*;

fn config_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/config")
        .join(name)
}

#[test]
fn unknown_config_keys_are_refused_by_name() {
    let dir = DevDir::new();
    for (file, key) in [
        ("unknown_top_level_key.toml", "colour"),
        ("unknown_server_key.toml", "sokcet"),
        ("unknown_backend_key.toml", "token_lable"),
        ("unknown_policy_key.toml", "comment"),
        ("unknown_key_selector_key.toml", "rol"),
        ("unknown_notary_signer_key.toml", "listen_addr"),
        ("wrong_type_max_message_bytes.toml", "max_message_bytes"),
    ] {
        let path = config_data(file);
        assert!(path.is_file(), "missing test data {}", path.display());
        for check in [false, true] {
            let mut sigild = dir.sigild_config(&path);
            if check {
                sigild = sigild.arg("--check");
            }
            let done = sigild.run_to_exit();
            let line = done.error_line();
            assert!(
                line.contains(key),
                "{file} (--check: {check}): the error does not name `{key}`: {line}"
            );
            assert!(
                line.contains(file),
                "{file}: the error does not name the file: {line}"
            );
        }
    }
}

#[test]
fn check_accepts_a_good_config_without_serving() {
    let dir = DevDir::new();
    dir.init();
    let config = dir.config().write("good.toml");
    let done = dir.sigild_config(&config).arg("--check").run_to_exit();
    assert!(
        done.status.success(),
        "--check on a good config: {}",
        done.stderr
    );
    assert!(done.stdout.contains("configuration OK"), "{}", done.stdout);
    assert!(!dir.socket().exists(), "--check must not create the socket");
}

#[test]
fn a_pin_file_others_can_read_is_refused() {
    let dir = DevDir::new();
    dir.init();
    let pin = dir.user_pin_file();
    for mode in [0o644, 0o640, 0o604] {
        write_file(&pin, format!("{}\n", dir.user_pin()), mode);
        let done = dir.sigild_dev().run_to_exit();
        let line = done.error_line();
        assert!(
            line.contains(&format!("has mode {mode:04o}"))
                && line.contains("must not be accessible by group or others"),
            "mode {mode:o}: {line}"
        );
        assert!(
            line.contains(&pin.display().to_string()),
            "names the file: {line}"
        );
        assert!(!dir.socket().exists(), "nothing served");
    }
    write_file(&pin, format!("{}\n", dir.user_pin()), 0o600);
    let daemon = dir.start();
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_tried_once_and_leaves_the_token_usable() {
    let dir = DevDir::new();
    dir.init();
    let wrong = dir.path().join("wrong.pin");
    write_file(&wrong, "not-the-pin-123456\n", 0o600);

    // Through OpenSC's pkcs11-spy, which logs every PKCS#11 call sigild makes.
    let spy = pkcs11_spy_path().expect("pkcs11-spy.so (checked by require_tools)");
    let spy_log = dir.root().join("pkcs11-spy.log");
    let config = dir
        .config()
        .pin_file(&wrong)
        .module(&spy)
        .write("wrong-pin-spy.toml");
    let done = dir
        .sigild_config(&config)
        .env("PKCS11SPY", SOFTHSM_MODULE)
        .env("PKCS11SPY_OUTPUT", &spy_log)
        .run_to_exit();
    let line = done.error_line();
    assert!(line.contains("PIN incorrect"), "{line}");
    assert!(line.contains("not retried"), "{line}");
    let calls = read_text(&spy_log);
    let logins: Vec<&str> = calls.lines().filter(|l| l.ends_with(": C_Login")).collect();
    assert_eq!(
        logins.len(),
        1,
        "sigild must log in exactly once with a wrong PIN:\n{calls}"
    );
    assert!(calls.contains("CKR_PIN_INCORRECT"), "{calls}");

    // Again without the spy: same refusal.
    let config = dir.config().pin_file(&wrong).write("wrong-pin.toml");
    let line = dir
        .sigild_config(&config)
        .run_to_exit()
        .error_line()
        .to_owned();
    assert!(line.contains("PIN incorrect"), "{line}");

    // The token is neither locked nor at its last try, and the right PIN works.
    let report = dir.inspect_token(token_inspect_exe!());
    assert_eq!(report.login_error, None, "{report:#?}");
    assert!(
        !report.user_pin_locked && !report.user_pin_final_try,
        "{report:#?}"
    );
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "", pb::Algorithm::EcdsaP256)
        .await;
    let resp = client
        .sign_message(
            &key.key_id,
            b"after a wrong PIN",
            pb::SignatureEncoding::Raw,
        )
        .await
        .expect("signing with the right PIN");
    parse_public(&key)
        .verify(b"after a wrong PIN", &resp.signature)
        .expect("verifies");
}

#[test]
fn unsafe_or_taken_socket_paths_are_refused() {
    let dir = DevDir::new();
    dir.init();

    // A socket directory others, or its group, can write to, or that another user owns:
    // whoever can write there could swap the socket for their own.
    for (name, mode, owner, needle) in [
        (
            "world-writable",
            0o777,
            None,
            "writable by its group or others",
        ),
        (
            "group-writable",
            0o770,
            None,
            "writable by its group or others",
        ),
        ("foreign", 0o755, Some(65534), "owned by uid 65534"),
    ] {
        let unsafe_dir = dir.root().join(name);
        std::fs::create_dir(&unsafe_dir).expect("mkdir");
        std::fs::set_permissions(
            &unsafe_dir,
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .expect("chmod");
        if let Some(uid) = owner {
            assert!(
                nix::unistd::geteuid().is_root(),
                "this check needs root to give a directory away (run the tests as root, as `make test` in the container does)"
            );
            nix::unistd::chown(&unsafe_dir, Some(nix::unistd::Uid::from_raw(uid)), None)
                .expect("chown");
        }
        let config = dir
            .config()
            .socket(&unsafe_dir.join("sigild.sock"))
            .write(&format!("{name}.toml"));
        let line = dir
            .sigild_config(&config)
            .run_to_exit()
            .error_line()
            .to_owned();
        assert!(line.contains(needle), "{name}: {line}");
        assert!(
            !unsafe_dir.join("sigild.sock").exists(),
            "{name}: a socket was created"
        );
    }

    // A regular file where the socket should be is never removed.
    let file = dir.root().join("not-a-socket");
    write_file(&file, "precious", 0o600);
    let config = dir.config().socket(&file).write("file.toml");
    let line = dir
        .sigild_config(&config)
        .run_to_exit()
        .error_line()
        .to_owned();
    assert!(line.contains("not a socket"), "{line}");
    assert_eq!(read_text(&file), "precious");

    // A second daemon on a live socket refuses and leaves the first one serving: with the
    // same config its state dir's lock stops it; with a state dir of its own, the socket.
    let daemon = dir.start();
    let line = dir.sigild_dev().run_to_exit().error_line().to_owned();
    assert!(line.contains("in use by another sigild"), "{line}");
    let own_state = read_text(&dir.dev_config()).replace(
        &toml_path(&dir.path().join("state")),
        &toml_path(&dir.path().join("state-2")),
    );
    assert!(
        own_state.contains("state-2"),
        "the dev config names its state dir"
    );
    let second = dir.path().join("second.toml");
    write_file(&second, own_state, 0o600);
    let line = dir
        .sigild_config(&second)
        .run_to_exit()
        .error_line()
        .to_owned();
    assert!(line.contains("another process is serving"), "{line}");
    let mut first = daemon;
    assert!(first.is_running(), "the first daemon must keep running");
    assert!(
        UnixStream::connect(first.socket()).is_ok(),
        "and keep serving"
    );
    assert!(first.stop().success());
}

#[test]
fn policy_rules_naming_nobody_or_unknown_users_are_refused() {
    let dir = DevDir::new();
    dir.init();
    for (extra, needle) in [
        (
            "[[policy]]\nname = \"nobody\"\nkeys = [{ gun = \"*\" }]\nallow = [\"sign\"]\n",
            "names no users",
        ),
        (
            "[[policy]]\nname = \"ghost\"\nusers = [\"no-such-user-sigil-e2e\"]\nkeys = [{ gun = \"*\" }]\nallow = [\"sign\"]\n",
            "no-such-user-sigil-e2e",
        ),
        (
            &format!(
                "[[policy]]\nname = \"typo\"\nuids = [{OTHER_UID}]\nkeys = [{{ gun = \"*\" }}]\nallow = [\"sing\"]\n"
            ),
            "sing",
        ),
    ] {
        let config = dir.config().append(extra).write("bad-policy.toml");
        let line = dir
            .sigild_config(&config)
            .run_to_exit()
            .error_line()
            .to_owned();
        assert!(line.contains(needle), "{needle}: {line}");
    }
}
