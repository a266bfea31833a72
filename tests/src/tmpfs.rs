//! A small tmpfs for an audit log, and filling it, so tests can make sigild's audit writes
//! fail the way a full disk does (needs root, as the e2e suite runs in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for a test, unmounted (lazily, so a straggling open file cannot keep it)
/// when dropped.
#[derive(Debug)]
pub struct TmpfsMount(PathBuf);

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (mount's `size=` value, e.g. `96m`) at `at`, creating it.
    pub fn mount(at: &Path, size: &str) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the test mounts a tmpfs for the audit log: run the e2e suite as root (CI does)"
        );
        std::fs::create_dir_all(at).expect("creating the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "sigil-test"])
            .arg(at)
            .status()
            .expect("running mount (util-linux)");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Self(at.to_owned())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `path` with one file until it is full; returns how much it wrote.
pub fn fill(path: &Path) -> u64 {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("creating the filler");
    let block = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // The last partial page may still take a few bytes; write them one at a time.
    while file.write(&[0]).is_ok_and(|n| n == 1) {
        written += 1;
    }
    written
}
