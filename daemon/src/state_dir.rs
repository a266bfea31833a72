//! `[server] state_dir`: what sigild must remember across restarts (YubiKey slot bindings,
//! sign-metadata version floors). The directory is sigild's alone — created 0700, refused if
//! it is a symlink, someone else's or writable by others — and locked for the life of the
//! process, so two daemons never share one by accident (each would raise floors the other
//! does not see). Files in it are replaced whole and durably ([`write_private`]).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Name of the lock file inside the state dir.
const LOCK_FILE: &str = "sigild.lock";

/// A prepared state dir, locked while this value lives.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl StateDir {
    /// Prepares `dir` ([`prepare`]) and takes its lock; names the holder's pid when another
    /// sigild has it.
    pub fn open(dir: &Path) -> Result<Self, String> {
        prepare(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(format!(
                    "in use by another sigild (pid {}); each sigild needs a state_dir of its own",
                    holder.trim()
                ));
            }
            Err((_, e)) => return Err(format!("cannot lock {}: {e}", path.display())),
        };
        let pid = std::process::id().to_string();
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| lock.write_all(pid.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self {
            path: dir.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes sure `dir` is a directory only sigild's user can write: created (0700) if missing,
/// refused if it is a symlink, someone else's, or group/other-writable. The error says what.
pub fn prepare(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create it: {e}"))?;
        }
        Err(e) => return Err(e.to_string()),
        Ok(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("not a directory (symlinks are refused)".into());
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!("owned by uid {}, not by sigild's user", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o}; chmod 700 it)",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Replaces `path` with `bytes` (mode 0600) so that a crash at any point leaves either the old
/// file or the new one: a fresh temporary file, flushed to disk, renamed over `path`, and the
/// directory flushed too.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let err = |e: std::io::Error| format!("{}: {e}", tmp.display());
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    out.write_all(bytes)
        .and_then(|()| out.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let first = StateDir::open(&state).expect("first");
        let err = StateDir::open(&state).expect_err("second");
        assert!(
            err.contains(&format!(
                "in use by another sigild (pid {})",
                std::process::id()
            )),
            "{err}"
        );
        drop(first);
        StateDir::open(&state).expect("free again");
    }

    #[test]
    fn a_replaced_file_is_whole_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("floors.json");
        write_private(&path, b"one").expect("write");
        write_private(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").mode() & 0o777,
            0o600
        );
    }
}
