//! Where every file of a repository lives (DESIGN §8), and the two ways files are touched:
//! crash-safe writes (temp file, fsync, rename, fsync of the directory, so a reader sees the old
//! file or the new one, never half of one) and size-limited reads (a hostile or corrupted file
//! cannot make sigil allocate without bound).
//!
//! ```text
//! REPO/metadata/N.root.json  N.targets.json  N.ROLE.json  N.snapshot.json  timestamp.json
//! REPO/targets/<dir>/<sha256>.<name>
//! REPO/.sigil/settings.json  REPO/.sigil/staged/ROLE.json     (never a private key)
//! ```

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::schema::tuf1::{is_safe_file_name, is_safe_target_path};

/// The largest metadata file sigil reads (a targets role with 10,000 entries is ~3 MB).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// The paths of one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The repository at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `REPO/metadata`: what clients fetch as the metadata URL.
    pub fn metadata_dir(&self) -> PathBuf {
        self.root.join("metadata")
    }

    /// `REPO/targets`: what clients fetch as the target base URL.
    pub fn targets_dir(&self) -> PathBuf {
        self.root.join("targets")
    }

    /// `REPO/.sigil`: settings and staged roles, outside what is served.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".sigil")
    }

    /// `REPO/.sigil/staged`.
    pub fn staged_dir(&self) -> PathBuf {
        self.state_dir().join("staged")
    }

    /// `REPO/.sigil/staged/ROLE.json`.
    pub fn staged_file(&self, role: &str) -> Result<PathBuf> {
        check_role_file_name(role)?;
        Ok(self.staged_dir().join(format!("{role}.json")))
    }

    /// `REPO/metadata/N.ROLE.json`, for root, targets, delegated roles and snapshot.
    pub fn versioned(&self, role: &str, version: u64) -> Result<PathBuf> {
        check_role_file_name(role)?;
        Ok(self.metadata_dir().join(format!("{version}.{role}.json")))
    }

    /// `REPO/metadata/timestamp.json` (never versioned: clients fetch it first).
    pub fn timestamp(&self) -> PathBuf {
        self.metadata_dir().join("timestamp.json")
    }

    /// `REPO/targets/<dir>/<sha256>.<name>` for target path `dir/name`.
    pub fn target_file(&self, target: &str, sha256: &[u8]) -> Result<PathBuf> {
        if !is_safe_target_path(target) {
            return Err(Error::InvalidTargetName {
                name: target.to_owned(),
                reason: "not a relative path of plain segments (no empty, '.', '..', '\\', \
                         control characters; at most 4096 bytes)"
                    .into(),
            });
        }
        let (dir, name) = target.rsplit_once('/').unwrap_or(("", target));
        let file = format!("{}.{name}", hex::encode(sha256));
        let mut path = self.targets_dir();
        if !dir.is_empty() {
            path.push(dir);
        }
        Ok(path.join(file))
    }
}

/// Refuses a role name that cannot safely name a file (`N.ROLE.json`).
pub(crate) fn check_role_file_name(role: &str) -> Result<()> {
    if is_safe_file_name(role) {
        Ok(())
    } else {
        Err(Error::InvalidRoleName {
            role: role.to_owned(),
            reason: "a role name must be a plain file name: not empty, '.' or '..', no '/', \
                     '\\' or control characters, at most 200 bytes"
                .into(),
        })
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one: a temp file in
/// the same directory, fsync, rename over `path`, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::repo(path, "has no parent directory"))?;
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
        file.write_all(bytes).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
        fs::rename(&tmp, path).map_err(io_error(path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync of a directory, so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Reads a metadata (or state) file of at most [`MAX_METADATA_BYTES`]; `None` if absent.
pub(crate) fn read_limited(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(Error::LimitExceeded {
            role: path.display().to_string(),
            what: "file size".into(),
            limit: MAX_METADATA_BYTES,
        });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_files_are_prefixed_by_their_hash_in_their_directory() {
        let l = Layout::new("/r");
        let sha = [0xab; 32];
        assert_eq!(
            l.target_file("a/b/c.txt", &sha).expect("path"),
            PathBuf::from(format!("/r/targets/a/b/{}.c.txt", "ab".repeat(32)))
        );
        assert_eq!(
            l.target_file("c", &sha).expect("path"),
            PathBuf::from(format!("/r/targets/{}.c", "ab".repeat(32)))
        );
        for bad in ["../x", "a/../b", "/abs", "a//b", "a\\b", "", "a/", "a\0b"] {
            assert!(l.target_file(bad, &sha).is_err(), "{bad:?}");
        }
        for bad in ["..", "a/b", "", "x\ny"] {
            assert!(l.versioned(bad, 1).is_err(), "{bad:?}");
            assert!(l.staged_file(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            l.versioned("bins", 3).expect("path"),
            PathBuf::from("/r/metadata/3.bins.json")
        );
    }
}
