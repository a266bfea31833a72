//! The local metadata directory: one file per trusted role under its unversioned name
//! (`root.json`, `timestamp.json`, `snapshot.json`, `targets.json`, `<encoded role>.json`).
//! Files are written only after verification, atomically (temporary file, then rename), so an
//! interrupted update leaves the previous trusted file in place.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::names::role_file;
use crate::error::{Error, Result};

/// The metadata directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir` (which must exist).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trusted file of `role`, `None` when there is none.
    pub fn load(&self, role: &str) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(role_file(role)?);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Stores verified bytes of `role`.
    pub fn save(&self, role: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir, &role_file(role)?, bytes)
    }

    /// Forgets `role` (a file that no longer verifies under the current root).
    pub fn remove(&self, role: &str) -> Result<()> {
        let path = self.dir.join(role_file(role)?);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }
}

/// Writes `bytes` to `dir/name` through a hidden temporary file renamed into place. `name` must
/// be a single safe component (see [`super::names`]).
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.part", std::process::id()));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(&path)(e)
    })
}
