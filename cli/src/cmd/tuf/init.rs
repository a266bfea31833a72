//! `sigil tuf init`: a new repository with root, targets, snapshot and timestamp keys.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;
use sigil_tuf::repository::{InitKeys, Repository, Settings};

use super::keys::{KeyArg, publics, resolve, signers};
use super::publish::publish_and_report;
use crate::cli::GlobalArgs;
use crate::error::Error;

/// Create a TUF 1.0 repository in REPO (an empty or new directory).
///
/// Each key is a sigild key id (as `sigil key list` shows it; the key may live on any of
/// sigild's backends, e.g. two YubiKeys and an HSM), or a PEM public key file for a key held
/// on another machine. Root v1 is signed by the root keys given by key id; when that meets
/// --root-threshold, the repository is published at once (metadata/1.root.json,
/// 1.targets.json, 1.snapshot.json, timestamp.json). Otherwise root stays staged until more
/// root keys sign it with `sigil tuf sign REPO root --key ID` and `sigil tuf publish` runs.
///
/// Lifetimes default to root 365 days, targets and delegated roles 90, snapshot 7 and
/// timestamp 1; --expires ROLE=DAYS changes one (kept in REPO/.sigil/settings.json).
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
    /// A root key (repeat for several).
    #[arg(long = "root-key", value_name = "ID|PEM", required = true)]
    pub(crate) root_keys: Vec<KeyArg>,
    /// How many root keys must sign root.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) root_threshold: u64,
    /// The targets key (repeatable).
    #[arg(long = "targets-key", value_name = "ID|PEM", required = true)]
    pub(crate) targets_keys: Vec<KeyArg>,
    /// The snapshot key (repeatable).
    #[arg(long = "snapshot-key", value_name = "ID|PEM", required = true)]
    pub(crate) snapshot_keys: Vec<KeyArg>,
    /// The timestamp key (repeatable).
    #[arg(long = "timestamp-key", value_name = "ID|PEM", required = true)]
    pub(crate) timestamp_keys: Vec<KeyArg>,
    /// A role's metadata lifetime in days, e.g. timestamp=1 (repeatable).
    #[arg(long = "expires", value_name = "ROLE=DAYS", value_parser = parse_expiry)]
    pub(crate) expires: Vec<(String, u64)>,
}

fn parse_expiry(text: &str) -> Result<(String, u64), String> {
    let (role, days) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not ROLE=DAYS"))?;
    let days = days
        .parse::<u64>()
        .map_err(|e| format!("{text:?}: days: {e}"))?;
    Ok((role.to_owned(), days))
}

impl InitArgs {
    /// Creates, signs root with the keys at hand, and publishes when root's threshold is met.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut settings = Settings::default();
        for (role, days) in &self.expires {
            settings
                .set_expiry(role, *days)
                .map_err(|e| Error::Usage(format!("--expires {role}={days}: {e}")))?;
        }
        let root = resolve(global, &self.root_keys).await?;
        let keys = InitKeys {
            root: publics(&root),
            root_threshold: self.root_threshold,
            targets: publics(&resolve(global, &self.targets_keys).await?),
            snapshot: publics(&resolve(global, &self.snapshot_keys).await?),
            timestamp: publics(&resolve(global, &self.timestamp_keys).await?),
        };
        let context = format!("creating {}", self.repo.display());
        let mut repo = Repository::init(
            &self.repo,
            &keys,
            settings,
            &signers(&root),
            SystemTime::now(),
        )
        .await
        .map_err(|e| Error::tuf(&context, e))?;
        let missing = repo
            .missing_signatures("root")
            .map_err(|e| Error::tuf(&context, e))?;
        if !missing.is_empty() {
            eprintln!(
                "root v1 is staged in {}: {}\nsign it with `sigil tuf sign {} root --key ID` where those keys are, then run `sigil tuf publish`",
                self.repo.display(),
                missing
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                self.repo.display()
            );
            return Ok(());
        }
        publish_and_report(global, &mut repo).await
    }
}
