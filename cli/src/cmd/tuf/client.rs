//! `sigil tuf client`: the TUF 1.0 client as the TUF conformance suite drives it (its
//! CLIENT-CLI protocol): `init ROOT`, `refresh`, `download`, exit 0 on success and 1 on any
//! failure, usage errors included (see [`is_client_invocation`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::{Args, Subcommand};
use sigil_tuf::client::{Limits, Store, TrustedSet, Updater};

use super::http::{HttpFetcher, base_url};
use crate::cli::GlobalArgs;
use crate::error::Error;

/// Update and download from a TUF 1.0 repository, verifying everything (TUF client workflow).
///
/// The metadata dir holds the metadata trusted so far under unversioned names (root.json,
/// timestamp.json, snapshot.json, targets.json, one file per delegated role with its name
/// percent-encoded); a file is written there only after it verified. Start with `init ROOT`
/// (a root.json obtained out of band), then `refresh` updates root (one version at a time,
/// each signed by the old and the new root's keys), timestamp, snapshot and targets, refusing
/// rollbacks, expired metadata, bad signatures and files that differ from their listing.
/// `download` refreshes, then finds each --target-name through the delegations, downloads it
/// from --target-base-url (as `<sha256>.<name>` when the repository uses consistent
/// snapshots), checks its length and hashes and stores it in --target-dir under its path
/// percent-encoded into one file name; a stored copy that still matches is not fetched again.
///
/// Options come before the command, in any order. Exit status: 0 on success, 1 on any failure
/// (usage errors included), as the TUF conformance suite's CLIENT-CLI protocol requires.
#[derive(Debug, Args)]
#[command(after_help = "Exit codes:\n  0  success\n  1  any failure")]
pub(crate) struct ClientArgs {
    /// Directory of the trusted metadata (created by init).
    #[arg(long, value_name = "DIR")]
    metadata_dir: PathBuf,
    /// Base URL of the repository's metadata (e.g. https://example.org/metadata/).
    #[arg(long, value_name = "URL")]
    metadata_url: Option<String>,
    /// Target path to download; repeat for several, processed in order by one updater.
    #[arg(long = "target-name", value_name = "PATH")]
    target_names: Vec<String>,
    /// Base URL of the repository's targets.
    #[arg(long, value_name = "URL")]
    target_base_url: Option<String>,
    /// Directory the verified targets are stored in (created if missing).
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Trust ROOT (a TUF 1.0 root.json, signed by its own root keys) as the starting root.
    Init {
        /// The initial root.json, obtained out of band.
        root: PathBuf,
    },
    /// Update the trusted top-level metadata from --metadata-url.
    Refresh,
    /// Refresh, then download each --target-name into --target-dir.
    Download,
}

/// Whether the command line (without the program name) is a `sigil tuf client` invocation,
/// whose usage errors must exit 1 rather than sigil's usual 2.
pub(crate) fn is_client_invocation(args: &[String]) -> bool {
    args.iter()
        .position(|a| a == "tuf")
        .is_some_and(|i| args[i + 1..].iter().any(|a| a == "client"))
}

fn required<'a, T: ?Sized>(value: Option<&'a T>, flag: &str, action: &str) -> Result<&'a T, Error> {
    value.ok_or_else(|| Error::Usage(format!("{action} needs {flag}")))
}

impl ClientArgs {
    pub(crate) async fn run(&self, _global: &GlobalArgs) -> Result<(), Error> {
        // Every failure of this command exits 1, whatever its kind elsewhere in sigil.
        self.run_inner()
            .await
            .map_err(|e| Error::TufClient(Box::new(e)))
    }

    async fn run_inner(&self) -> Result<(), Error> {
        match &self.action {
            Action::Init { root } => self.init(root),
            Action::Refresh => {
                let mut updater = self.updater("refresh")?;
                updater
                    .refresh()
                    .await
                    .map_err(|e| Error::tuf("refresh", e))?;
                eprintln!(
                    "sigil: metadata in {} is up to date",
                    self.metadata_dir.display()
                );
                Ok(())
            }
            Action::Download => self.download().await,
        }
    }

    fn init(&self, root: &Path) -> Result<(), Error> {
        let bytes = std::fs::read(root).map_err(|source| Error::Read {
            what: "trusted root",
            path: root.display().to_string(),
            source,
        })?;
        TrustedSet::new(&bytes, SystemTime::now())
            .map_err(|e| Error::tuf(format!("trusted root {}", root.display()), e))?;
        std::fs::create_dir_all(&self.metadata_dir).map_err(|source| Error::Write {
            path: self.metadata_dir.clone(),
            source,
        })?;
        Store::new(&self.metadata_dir)
            .save("root", &bytes)
            .map_err(|e| Error::tuf("init", e))?;
        eprintln!(
            "sigil: {} trusted as the initial root in {}",
            root.display(),
            self.metadata_dir.display()
        );
        Ok(())
    }

    fn updater(&self, action: &str) -> Result<Updater<HttpFetcher>, Error> {
        let metadata = required(self.metadata_url.as_deref(), "--metadata-url", action)?;
        let metadata = base_url("--metadata-url", metadata)?;
        let targets = self
            .target_base_url
            .as_deref()
            .map(|u| base_url("--target-base-url", u))
            .transpose()?;
        let fetcher = HttpFetcher::new(Some(metadata), targets)?;
        Updater::new(
            Store::new(&self.metadata_dir),
            fetcher,
            Limits::default(),
            SystemTime::now(),
        )
        .map_err(|e| Error::tuf("trusted metadata", e))
    }

    async fn download(&self) -> Result<(), Error> {
        required(
            self.target_base_url.as_deref(),
            "--target-base-url",
            "download",
        )?;
        let dir = required(self.target_dir.as_deref(), "--target-dir", "download")?;
        if self.target_names.is_empty() {
            return Err(Error::Usage("download needs --target-name".into()));
        }
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;
        let mut updater = self.updater("download")?;
        for name in &self.target_names {
            let info = updater
                .target_info(name)
                .await
                .map_err(|e| Error::tuf(format!("looking up {name:?}"), e))?
                .ok_or_else(|| Error::NotFound {
                    message: format!("target {name:?} is not in the repository"),
                })?;
            let path = updater
                .download_target(&info, dir)
                .await
                .map_err(|e| Error::tuf(format!("downloading {name:?}"), e))?;
            println!("{name}\t{}", path.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> ClientArgs {
        let cli = Cli::try_parse_from(["sigil", "tuf", "client"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Tuf(super::super::Command::Client(args)) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn options_come_in_any_order_before_the_command() {
        let args = parse(&[
            "--target-name",
            "a",
            "--metadata-url",
            "http://h/m",
            "--metadata-dir",
            "/d",
            "--target-name",
            "b/c",
            "--target-dir",
            "/t",
            "--target-base-url",
            "http://h/t",
            "download",
        ]);
        assert_eq!(args.target_names, ["a", "b/c"]);
        assert_eq!(args.metadata_dir, PathBuf::from("/d"));
        assert!(matches!(args.action, Action::Download));
        let args = parse(&["--metadata-dir", "/d", "init", "/r.json"]);
        assert!(matches!(args.action, Action::Init { root } if root == Path::new("/r.json")));
    }

    #[test]
    fn client_invocations_are_recognised_for_their_exit_code() {
        let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert!(is_client_invocation(&words(
            "tuf client --metadata-dir d bogus"
        )));
        assert!(is_client_invocation(&words("-v tuf client")));
        assert!(!is_client_invocation(&words("key list")));
        assert!(!is_client_invocation(&words("client tuf")));
    }

    #[test]
    fn base_urls_must_be_http_and_end_in_a_slash() {
        assert_eq!(
            base_url("--metadata-url", "http://h:1/repo/metadata")
                .expect("ok")
                .as_str(),
            "http://h:1/repo/metadata/"
        );
        assert!(base_url("--metadata-url", "file:///etc").is_err());
        assert!(base_url("--metadata-url", "http://h/m?x=1").is_err());
        assert!(base_url("--metadata-url", "not a url").is_err());
    }
}
