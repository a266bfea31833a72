//! The file a command signs or verifies: a path, or `-` for standard input. Hashing streams the
//! input on a blocking thread, so a multi-gigabyte file never has to fit in memory and never
//! crosses the socket.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// Where to read a file from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// Standard input (`-` on the command line).
    Stdin,
    /// A file on disk.
    Path(PathBuf),
}

impl Input {
    /// `-` means standard input; anything else is a path.
    pub(crate) fn from_arg(arg: &Path) -> Self {
        if arg.as_os_str() == "-" {
            Self::Stdin
        } else {
            Self::Path(arg.to_owned())
        }
    }

    /// SHA-256 of the whole input, read in chunks on a blocking thread.
    pub(crate) async fn sha256(&self, what: &'static str) -> Result<[u8; 32], Error> {
        let input = self.clone();
        run_blocking(move || {
            let mut hasher = Sha256::new();
            io::copy(&mut input.open(what)?, &mut hasher).map_err(|e| input.read_error(what, e))?;
            Ok(hasher.finalize().into())
        })
        .await
    }

    /// The whole input in memory (for Ed25519, which signs messages, not digests).
    pub(crate) async fn read_all(&self, what: &'static str) -> Result<Vec<u8>, Error> {
        let input = self.clone();
        run_blocking(move || {
            let mut bytes = Vec::new();
            input
                .open(what)?
                .read_to_end(&mut bytes)
                .map_err(|e| input.read_error(what, e))?;
            Ok(bytes)
        })
        .await
    }

    fn open(&self, what: &'static str) -> Result<Box<dyn Read + Send>, Error> {
        match self {
            Self::Stdin => Ok(Box::new(io::stdin())),
            Self::Path(path) => File::open(path)
                .map(|f| Box::new(f) as Box<dyn Read + Send>)
                .map_err(|e| self.read_error(what, e)),
        }
    }

    /// A read failure naming this input.
    pub(crate) fn read_error(&self, what: &'static str, source: io::Error) -> Error {
        Error::Read {
            what,
            path: self.to_string(),
            source,
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdin => f.write_str("standard input"),
            Self::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Runs blocking file I/O off the runtime's only thread, keeping the daemon connection serviced.
async fn run_blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| Error::Internal(format!("reading input failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn dash_is_stdin_and_anything_else_a_path() {
        assert_eq!(Input::from_arg(Path::new("-")), Input::Stdin);
        assert_eq!(
            Input::from_arg(Path::new("./-")),
            Input::Path(PathBuf::from("./-"))
        );
    }

    #[tokio::test]
    async fn hashing_streams_the_whole_file() {
        let mut file = tempfile::NamedTempFile::new().expect("tempfile");
        let chunk = vec![0x5a_u8; 100_000];
        for _ in 0..5 {
            file.write_all(&chunk).expect("write");
        }
        let input = Input::Path(file.path().to_owned());
        let digest = input.sha256("file to sign").await.expect("hash");
        let all = input.read_all("file to sign").await.expect("read");
        assert_eq!(all.len(), 500_000);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&all)));
    }

    #[tokio::test]
    async fn a_missing_file_is_named_in_the_error() {
        let input = Input::Path(PathBuf::from("/nonexistent/sigil-test"));
        let err = input.sha256("file to sign").await.expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read file to sign /nonexistent/sigil-test:"),
            "{err}"
        );
    }
}
