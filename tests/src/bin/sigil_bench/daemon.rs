//! sigil-bench's sigild: locate, start, stop.

use super::*;

/// The daemon: `--sigild`, else the release build from the current sources.
pub(crate) fn locate_sigild(explicit: Option<&Path>) -> Result<PathBuf, BoxError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => bench::release_binaries(&["sigil-daemon"], "--sigild PATH")?.join("sigild"),
    };
    if !path.is_file() {
        return Err(fail(format!("{}: no such file", path.display())));
    }
    Ok(path)
}

/// A running `sigild --dev`, stopped (SIGTERM to its PID, then SIGKILL) when dropped.
pub(crate) struct Daemon {
    child: Option<Child>,
    pub(crate) socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn start(sigild: &Path, dir: &Path) -> Result<Self, BoxError> {
        let log = dir.join("sigild.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(sigild)
            .arg("--dev")
            .arg(dir)
            .env_remove("SOFTHSM2_CONF")
            .env_remove("SIGIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", sigild.display())))?;
        let mut daemon = Self {
            child: Some(child),
            socket: dir.join("sigild.sock"),
            log,
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits until the socket accepts connections, or fails with sigild's log.
    pub(crate) fn wait_ready(&mut self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(fail(format!(
                    "sigild exited during start-up ({status}); its log:\n{}",
                    read_log(&self.log)
                )));
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "sigild did not open {} within 60 s; its log:\n{}",
                    self.socket.display(),
                    read_log(&self.log)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the PID we started, wait up to 10 s, then SIGKILL.
    pub(crate) fn stop(mut self) -> Result<(), BoxError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = terminate(&mut child)?;
        if !status.success() {
            return Err(fail(format!(
                "sigild did not stop cleanly ({status}); its log:\n{}",
                read_log(&self.log)
            )));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child);
        }
    }
}

pub(crate) fn terminate(child: &mut Child) -> Result<std::process::ExitStatus, BoxError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid = i32::try_from(child.id()).map_err(|_| fail("sigild pid out of range"))?;
    if child.try_wait()?.is_none() {
        // The PID is our own child and has not been reaped, so it cannot have been reused.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("sigil-bench: sigild ignored SIGTERM for 10 s; killing pid {pid}");
                child.kill()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(child.wait()?)
}

pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

pub(crate) fn count_lines(path: &Path) -> io::Result<usize> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count())
}
