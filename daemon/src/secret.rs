//! PINs as secret values from the file to the PKCS#11 call: never printed, never logged, wiped
//! from memory when dropped.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// A token PIN. Its `Debug` is redacted and its memory is zeroed on drop (via `secrecy`).
#[derive(Clone)]
pub struct Pin(SecretString);

impl Pin {
    /// Wraps a PIN that is already in memory (dev mode generates its own).
    pub fn new(pin: Zeroizing<String>) -> Self {
        Self(SecretString::from(pin.as_str()))
    }

    /// The PIN in the form cryptoki takes (`AuthPin` is `SecretString`), still secret.
    pub fn as_auth_pin(&self) -> &SecretString {
        &self.0
    }

    /// Whether two PINs are the same (so that a PIN a token refused is not offered again).
    pub fn same_as(&self, other: &Pin) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }

    /// Length in characters, for validation messages that must not show the PIN itself.
    pub fn len(&self) -> usize {
        self.0.expose_secret().chars().count()
    }

    /// Whether the PIN is empty.
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(REDACTED)")
    }
}

/// Why a PIN file could not be used. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum PinFileError {
    /// The file could not be opened or read.
    #[error("cannot read secret file {path}: {source}")]
    Read {
        /// The PIN file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error(
        "PIN file {path} has mode {mode:04o}: it must not be accessible by group or others (chmod 600 {path})"
    )]
    InsecureMode {
        /// The PIN file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds no PIN.
    #[error("PIN file {path} is empty")]
    Empty {
        /// The PIN file.
        path: PathBuf,
    },
}

/// Refuses a secret file (PIN, TLS key) that group or others can access.
pub fn check_private_file(path: &Path) -> Result<(), PinFileError> {
    let mode = std::fs::metadata(path)
        .map_err(|source| PinFileError::Read {
            path: path.to_owned(),
            source,
        })?
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PinFileError::InsecureMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads a PIN from `path`, refusing files that group or others can access. One trailing
/// newline is dropped; everything else is the PIN.
pub fn read_pin_file(path: &Path) -> Result<Pin, PinFileError> {
    let read_err = |source| PinFileError::Read {
        path: path.to_owned(),
        source,
    };
    // O_NOFOLLOW: the mode we check is the mode of the file we read.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(read_err)?;
    let mode = file.metadata().map_err(read_err)?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PinFileError::InsecureMode {
            path: path.to_owned(),
            mode,
        });
    }
    let mut content = Zeroizing::new(String::new());
    file.read_to_string(&mut content).map_err(read_err)?;
    let trimmed = content
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&content);
    if trimmed.is_empty() {
        return Err(PinFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Pin::new(Zeroizing::new(trimmed.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write(dir: &Path, content: &str, mode: u32) -> PathBuf {
        let path = dir.join("pin");
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn reads_pin_and_redacts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pin = read_pin_file(&write(dir.path(), "s3cr3t-pin\n", 0o600)).expect("read");
        assert_eq!(pin.len(), 10);
        assert_eq!(format!("{pin:?}"), "Pin(REDACTED)");
        assert!(!format!("{pin:?}").contains("s3cr3t"));
    }

    #[test]
    fn refuses_group_or_world_readable_files_without_showing_the_pin() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let err = read_pin_file(&write(dir.path(), "s3cr3t-pin", mode)).expect_err("mode");
            let msg = err.to_string();
            assert!(msg.contains("must not be accessible"), "{msg}");
            assert!(!msg.contains("s3cr3t") && !format!("{err:?}").contains("s3cr3t"));
        }
    }

    #[test]
    fn refuses_empty_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            read_pin_file(&write(dir.path(), "\n", 0o600)),
            Err(PinFileError::Empty { .. })
        ));
        assert!(matches!(
            read_pin_file(&dir.path().join("absent")),
            Err(PinFileError::Read { .. })
        ));
    }
}
