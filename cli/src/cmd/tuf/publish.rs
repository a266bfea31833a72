//! `sigil tuf publish` and `sigil tuf timestamp`: the staged roles go out with a new snapshot
//! and timestamp; or only a fresh timestamp (for a timer).

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;
use sigil_tuf::repository::{PublishReport, Repository};

use super::keys::{as_signers, online_signers};
use super::open;
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::output::{print_json, print_line};

/// Publish the staged changes: new versions of the changed roles, then snapshot, then timestamp.
///
/// Targets, delegated roles, snapshot and timestamp are signed with the keys sigild holds for
/// them; root is never signed here (see `sigil tuf sign`). Publishing refuses, writing nothing,
/// while a threshold is unmet, and names the keys that are missing. Files are written
/// crash-safely in the order root, targets roles, snapshot, timestamp.json, so a client never
/// sees a timestamp pointing at something not yet written.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
}

impl PublishArgs {
    /// Publishes.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut repo = open(&self.repo)?;
        publish_and_report(global, &mut repo).await
    }
}

/// Publishes `repo` with sigild's keys and prints what was written.
pub(crate) async fn publish_and_report(
    global: &GlobalArgs,
    repo: &mut Repository,
) -> Result<(), Error> {
    let context = format!("publishing {}", repo.layout().root().display());
    if repo.staged().is_empty() {
        if global.json {
            return print_json(&serde_json::json!({ "written": [] }));
        }
        return print_line("nothing staged: nothing to publish");
    }
    let signers = online_signers(global).await?;
    let report = repo
        .publish(&as_signers(&signers), SystemTime::now())
        .await
        .map_err(|e| Error::tuf(&context, e))?;
    print_report(global, &report)
}

/// Prints what was written: one line per file, or `{"written": [{role, version}]}`.
fn print_report(global: &GlobalArgs, report: &PublishReport) -> Result<(), Error> {
    if global.json {
        let written: Vec<serde_json::Value> = report
            .written
            .iter()
            .map(|(role, version)| serde_json::json!({ "role": role, "version": version }))
            .collect();
        return print_json(&serde_json::json!({ "written": written }));
    }
    for (role, version) in &report.written {
        print_line(&format!("published {role} v{version}"))?;
    }
    Ok(())
}

/// Write a fresh timestamp for the published snapshot (run it from a timer).
///
/// The timestamp's version goes up by one and its expiry is renewed (lifetime from
/// --expires timestamp=DAYS at init, 1 day by default). When the snapshot would expire before
/// the new timestamp, it is renewed too (same content, next version). Signed by the published
/// root's timestamp (and snapshot) keys through sigild; staged changes are left alone.
#[derive(Debug, Args)]
pub(crate) struct TimestampArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
}

impl TimestampArgs {
    /// Re-signs timestamp.json.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut repo = open(&self.repo)?;
        let signers = online_signers(global).await?;
        let report = repo
            .refresh_timestamp(&as_signers(&signers), SystemTime::now())
            .await
            .map_err(|e| {
                Error::tuf(
                    format!("refreshing the timestamp of {}", self.repo.display()),
                    e,
                )
            })?;
        print_report(global, &report)
    }
}
