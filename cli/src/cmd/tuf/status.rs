//! `sigil tuf status` (published and staged roles) and `sigil tuf verify` (a full check of
//! what is published, from 1.root.json down to every stored target file).

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;

use super::open;
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::output::{print_json, print_line};

/// Show the published roles (version, expiry, target count) and the staged ones, with the
/// signatures each still needs.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
}

impl StatusArgs {
    /// Prints the status.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = open(&self.repo)?;
        let status = repo
            .status()
            .map_err(|e| Error::tuf(format!("status of {}", self.repo.display()), e))?;
        if global.json {
            return print_json(&status);
        }
        print_line("published:")?;
        for r in &status.published {
            let targets = r
                .targets
                .map(|n| format!(", {n} target(s)"))
                .unwrap_or_default();
            print_line(&format!(
                "  {} v{} (expires {}{targets})",
                r.role, r.version, r.expires
            ))?;
        }
        if status.staged.is_empty() {
            return print_line("nothing staged");
        }
        print_line("staged:")?;
        for s in &status.staged {
            print_line(&format!(
                "  {} v{} ({} signature(s))",
                s.role, s.version, s.signatures
            ))?;
            // Root is signed only by `sign` (and init/rotate); the others at publish.
            let when = if s.role == "root" {
                "needs (sigil tuf sign)"
            } else {
                "signed at publish by sigild's keys"
            };
            for m in &s.missing {
                print_line(&format!("    {when}: {m}"))?;
            }
        }
        Ok(())
    }
}

/// Verify the published repository as a client would, from metadata/1.root.json.
///
/// Checks every root in the chain (each signed by a threshold of the previous root's keys and
/// of its own), timestamp, snapshot and every targets role reachable by delegation (signatures,
/// thresholds, versions, lengths and hashes, expiry, delegated paths), then the length and
/// SHA-256 of every target file stored under targets/. Exit 1 on the first problem, naming it.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
}

impl VerifyArgs {
    /// Verifies and prints a summary.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = open(&self.repo)?;
        let mut checked = 0usize;
        let report = repo
            .verify(SystemTime::now(), &mut |_| {
                checked += 1;
                if checked.is_multiple_of(1000) {
                    eprintln!("checked {checked} target files...");
                }
            })
            .map_err(|e| Error::tuf(format!("verifying {}", self.repo.display()), e))?;
        if global.json {
            return print_json(&report);
        }
        let chain: Vec<String> = report.root_chain.iter().map(u64::to_string).collect();
        print_line(&format!("root chain: v{}", chain.join(" -> v")))?;
        for r in &report.roles {
            print_line(&format!(
                "  {} v{} ok (expires {})",
                r.role, r.version, r.expires
            ))?;
        }
        print_line(&format!(
            "{} stored target file(s) match; {} target(s) listed but stored elsewhere",
            report.files_checked,
            report.not_stored.len()
        ))
    }
}
