//! Issue 12, L2 and L3: what another local user can do to sigild's process and its dev
//! directory.
//!
//! - `sigild --dev DIR` reuses the config, token store and softhsm2.conf it finds in DIR, so it
//!   refuses a DIR (or such a file) that is not the caller's or that others may write.
//! - sigild makes itself non-dumpable first thing: another process of the same uid cannot read
//!   its `/proc/PID/environ` (or ptrace it, or read its memory), and it leaves no core dump.
//!
//! Needs root (to chown to, and run as, uid 65534) and `setpriv` (util-linux).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, chown};
use sigil_e2e::{DevDir, read_text, write_file};

/// The unprivileged user the tests act as.
const NOBODY: u32 = 65534;

fn require_root_and_setpriv() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root: they chown files to uid {NOBODY} and run processes as it"
    );
    assert!(
        Path::new("/usr/bin/setpriv").exists(),
        "setpriv missing: apt-get install -y util-linux"
    );
}

/// `setpriv` prefix that runs a command as uid/gid 65534 with no supplementary groups.
fn as_nobody(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        &NOBODY.to_string(),
        "--regid",
        &NOBODY.to_string(),
        "--clear-groups",
        "--",
    ])
    .arg(program)
    .stdin(Stdio::null());
    cmd
}

fn give_to_nobody(path: &Path) {
    chown(
        path,
        Some(Uid::from_raw(NOBODY)),
        Some(Gid::from_raw(NOBODY)),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

#[test]
fn dev_mode_refuses_a_directory_someone_else_could_have_prepared() {
    require_root_and_setpriv();

    // Group-writable: another member could have written the config.
    let dir = DevDir::new();
    std::fs::create_dir(dir.path()).expect("dev dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let line = dir.sigild_dev().run_to_exit().error_line().to_owned();
    assert!(line.contains("writable by group or others"), "{line}");
    assert!(
        !dir.path().join("sigild.toml").exists(),
        "nothing is written"
    );

    // Another user's directory.
    let dir = DevDir::new();
    std::fs::create_dir(dir.path()).expect("dev dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    give_to_nobody(dir.path());
    let line = dir.sigild_dev().run_to_exit().error_line().to_owned();
    assert!(line.contains(&format!("owned by uid {NOBODY}")), "{line}");

    // Our directory, but a softhsm2.conf planted in it by someone else (pointing the token
    // store wherever they like).
    let dir = DevDir::new();
    std::fs::create_dir(dir.path()).expect("dev dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let planted = dir.path().join("softhsm2.conf");
    write_file(&planted, "directories.tokendir = /tmp\n", 0o644);
    give_to_nobody(&planted);
    let line = dir.sigild_dev().run_to_exit().error_line().to_owned();
    assert!(line.contains("softhsm2.conf"), "{line}");
    assert!(line.contains(&format!("owned by uid {NOBODY}")), "{line}");

    // Our own directory still works (and is reused on the next start).
    let dir = DevDir::new();
    let daemon = dir.sigild_dev().spawn();
    assert!(daemon.stop().success());
    let daemon = dir.sigild_dev().spawn();
    assert!(daemon.stop().success());
}

/// Reads `/proc/PID/environ` as uid 65534: Ok(bytes) or the error output.
fn read_environ_as_nobody(pid: u32) -> Result<Vec<u8>, String> {
    let out = as_nobody(Path::new("/bin/cat"))
        .arg(format!("/proc/{pid}/environ"))
        .output()
        .expect("running cat as nobody");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn another_process_of_the_same_user_cannot_read_sigild_s_environment_or_memory() {
    require_root_and_setpriv();
    let dir = DevDir::new();
    std::fs::create_dir(dir.path()).expect("dev dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    give_to_nobody(dir.path());
    let stderr = dir.logs().join("sigild-nobody.stderr");
    let mut sigild = as_nobody(sigil_e2e::sigild())
        .arg("--dev")
        .arg(dir.path())
        .env("SIGIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("starting sigild as nobody");
    // setpriv execs sigild, which re-executes itself for SoftHSM: one pid throughout.
    let pid = sigild.id();
    let started = Instant::now();
    while !dir.socket().exists() {
        if let Ok(Some(status)) = sigild.try_wait() {
            panic!("sigild exited ({status}):\n{}", read_text(&stderr));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sigild did not start:\n{}",
            read_text(&stderr)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The same check against an ordinary process of the same uid succeeds: it is the
    // non-dumpable flag, not the uid, that keeps it out.
    let mut control = as_nobody(Path::new("/bin/sleep"))
        .arg("30")
        .spawn()
        .expect("sleep as nobody");
    std::thread::sleep(Duration::from_millis(200));
    let control_env = read_environ_as_nobody(control.id());
    let _ = control.kill();
    let _ = control.wait();
    assert!(
        control_env.is_ok(),
        "the control process's environment is unreadable too: {control_env:?}"
    );

    let sigild_env = read_environ_as_nobody(pid);
    let _ = kill(
        Pid::from_raw(i32::try_from(pid).expect("pid")),
        Signal::SIGTERM,
    );
    let status = sigild.wait().expect("waiting for sigild");
    match sigild_env {
        Ok(env) => panic!(
            "uid {NOBODY} read sigild's environment ({} bytes): sigild is dumpable",
            env.len()
        ),
        Err(e) => assert!(e.contains("Permission denied"), "{e}"),
    }
    assert!(status.success(), "{status}:\n{}", read_text(&stderr));
}
