//! [`Process`]: a child started by a test, stopped by its pid on drop, its output kept.

use super::*;

/// A child process this harness spawned, its stdout and stderr in one log file. Dropping it
/// stops it by its own pid: SIGTERM, then SIGKILL after [`START_TIMEOUT`].
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Spawns `cmd` (stdin closed, output to `log`), named `name` in panics.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Self {
        let file =
            fs::File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = file.try_clone().expect("duplicating the log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        read_text(&self.log)
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its exit status, if it has exited (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("waiting for a child"))
    }

    /// Panics with its log if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited ({status}):\n{}", self.name, self.log());
        }
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits; SIGKILL if it is still running after [`START_TIMEOUT`].
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A child environment with nothing from ours but PATH: Notary's daemons read any
/// `NOTARY_SERVER_*` / `NOTARY_SIGNER_*` variable as a config override.
pub(crate) fn scrubbed(program: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| CHILD_PATH.into()),
        )
        .env("HOME", home)
        .current_dir(home);
    cmd
}
