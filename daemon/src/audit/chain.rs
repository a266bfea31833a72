//! The audit file itself, hash-chained: every line carries `prev`, the hex SHA-256 of the
//! previous line's bytes (without its newline), so that a line edited, removed, inserted or
//! moved breaks the chain where `sigil audit verify` finds it. The first line of a file chains
//! to the last line sigild wrote before (the file logrotate renamed away), or to zeros when
//! sigild starts on an empty log.
//!
//! The file is opened without following symbolic links (a link planted at the log path would
//! otherwise let whoever controls it point sigild's appends at another file), must be a regular
//! file, and is continued from its own last line at start. A file that ends in a partial line
//! is refused: that happens only after a failed write whose clean-up failed too, and the
//! operator should look at it before more lines are chained to it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// `prev` of the first line sigild ever writes to an empty log.
pub(super) const GENESIS: [u8; 32] = [0; 32];

/// How far back from the end a start looks for the last line (lines are a few hundred bytes:
/// request strings are bounded before they are recorded).
const LAST_LINE_WINDOW: u64 = 1 << 20;

/// An open audit file and the hash of the last line in the chain.
#[derive(Debug)]
pub(super) struct ChainedFile {
    file: File,
    prev: [u8; 32],
}

impl ChainedFile {
    /// Opens (creating with mode 0600) the log at `path`, continuing from its last line.
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        let file = open_no_follow(path)?;
        let prev = last_line_hash(&file)?;
        Ok(Self { file, prev })
    }

    /// Opens `path` again (after logrotate renamed the old file away, SIGHUP): the new file's
    /// first line chains to the last line written to the old one.
    pub(super) fn reopen(&self, path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: open_no_follow(path)?,
            prev: self.prev,
        })
    }

    /// The `prev` of the next line, as hex.
    pub(super) fn prev_hex(&self) -> String {
        hex::encode(self.prev)
    }

    /// Appends `line` (one JSON object, no newline) as a whole line; the chain moves on only
    /// when it was written in full.
    pub(super) fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let mut whole = Vec::with_capacity(line.len() + 1);
        whole.extend_from_slice(line);
        whole.push(b'\n');
        append_whole(&mut self.file, &whole)?;
        self.prev = Sha256::digest(line).into();
        Ok(())
    }
}

/// Opens for reading and appending, refusing a symbolic link and anything but a regular file.
fn open_no_follow(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it is a symbolic link; sigild writes its audit log only to a regular file",
                )
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    Ok(file)
}

/// The SHA-256 of the file's last line, or [`GENESIS`] for an empty file.
fn last_line_hash(file: &File) -> io::Result<[u8; 32]> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(GENESIS);
    }
    let window = len.min(LAST_LINE_WINDOW);
    let mut tail = vec![0; usize::try_from(window).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut tail, len - window)?;
    let Some((&b'\n', body)) = tail.split_last() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it ends in a partial line (a write was cut short); inspect the log and remove the \
             fragment before starting sigild",
        ));
    };
    let line = match body.iter().rposition(|&b| b == b'\n') {
        Some(newline) => &body[newline + 1..],
        None if window == len => body,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("its last line is longer than {LAST_LINE_WINDOW} bytes"),
            ));
        }
    };
    Ok(Sha256::digest(line).into())
}

/// Appends `line` to `file` (opened for appending, and only appended to under the caller's
/// lock) or, when that fails part-way (a full disk), cuts the fragment off again: a torn line
/// would make every later line unreadable to a JSON-lines reader. The error is returned either
/// way, so the operation the line was for fails closed. The happy path is one `write`.
fn append_whole(file: &mut File, line: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while written < line.len() {
        match file.write(&line[written..]) {
            Ok(0) => {
                let e = std::io::Error::new(std::io::ErrorKind::WriteZero, "audit log write");
                return Err(cut_fragment(file, written, e));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(cut_fragment(file, written, e)),
        }
    }
    Ok(())
}

/// Truncates the `written` bytes of a torn line off the end of `file`; gives back `error`
/// (with the truncation's own failure logged: the line is then torn for good).
fn cut_fragment(file: &File, written: usize, error: std::io::Error) -> std::io::Error {
    if written > 0 {
        let cut = file
            .metadata()
            .and_then(|m| file.set_len(m.len().saturating_sub(written as u64)));
        if let Err(e) = cut {
            tracing::error!(error = %e, "could not remove a partly written audit line");
        }
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_continues_from_the_last_line_and_a_reopen_from_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let mut log = ChainedFile::open(&path).expect("open");
        assert_eq!(log.prev, GENESIS);
        log.append(br#"{"n":1}"#).expect("append");
        log.append(br#"{"n":2}"#).expect("append");
        let again = ChainedFile::open(&path).expect("open again");
        assert_eq!(again.prev, <[u8; 32]>::from(Sha256::digest(br#"{"n":2}"#)));
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).expect("rotate");
        let rotated = log.reopen(&path).expect("reopen");
        assert_eq!(rotated.prev, again.prev);
        assert_eq!(std::fs::metadata(&path).expect("new file").len(), 0);
    }

    #[test]
    fn symlinks_other_file_types_and_partial_lines_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"").expect("target");
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = ChainedFile::open(&link).expect_err("symlink");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = ChainedFile::open(dir.path()).expect_err("a directory");
        assert!(!err.to_string().is_empty());
        let torn = dir.path().join("torn.jsonl");
        std::fs::write(&torn, b"{\"n\":1}\n{\"n\":").expect("torn");
        let err = ChainedFile::open(&torn).expect_err("torn");
        assert!(err.to_string().contains("partial line"), "{err}");
    }
}
