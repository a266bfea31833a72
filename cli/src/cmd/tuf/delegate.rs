//! `sigil tuf delegate`: hand part of the target namespace to other keys.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{ArgGroup, Args};
use sigil_tuf::repository::{Delegation, PathRule};

use super::keys::{KeyArg, publics, resolve};
use super::{open, save};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::output::print_line;

/// Delegate targets matching path patterns, or hash prefixes of their path, to ROLE's keys.
///
/// The parent (-r, default targets) is staged with the delegation; a new ROLE is staged empty
/// at version 1. Patterns use `*`, `?` and `[set]` within one path segment (`releases/*`
/// matches releases/v1.tar, not releases/a/v1.tar). Hash prefixes are lowercase hex prefixes
/// of the SHA-256 of the target path (hash-bin delegation). Delegating an existing ROLE under
/// the same parent replaces its keys and paths. Role names are unique in the repository and
/// must be plain file names.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("rule").required(true).args(["paths", "hash_prefixes"])))]
pub(crate) struct DelegateArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
    /// The delegated role's name.
    #[arg(value_name = "ROLE")]
    pub(crate) role: String,
    /// A key of the role: sigild key id or PEM public key file (repeatable).
    #[arg(long = "key", value_name = "ID|PEM", required = true)]
    pub(crate) keys: Vec<KeyArg>,
    /// Path patterns, comma-separated.
    #[arg(long, value_name = "P,...", value_delimiter = ',')]
    pub(crate) paths: Vec<String>,
    /// Path hash prefixes (lowercase hex), comma-separated.
    #[arg(long, value_name = "H,...", value_delimiter = ',')]
    pub(crate) hash_prefixes: Vec<String>,
    /// How many of the role's keys must sign it.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) threshold: u64,
    /// Clients stop searching other roles for a target matched here.
    #[arg(long)]
    pub(crate) terminating: bool,
    /// The delegating role (default: targets).
    #[arg(
        short = 'r',
        long = "role",
        value_name = "PARENT",
        default_value = "targets"
    )]
    pub(crate) parent: String,
}

impl DelegateArgs {
    /// Stages the delegation.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let keys = resolve(global, &self.keys).await?;
        let rule = if self.paths.is_empty() {
            PathRule::HashPrefixes(self.hash_prefixes.clone())
        } else {
            PathRule::Paths(self.paths.clone())
        };
        let mut repo = open(&self.repo)?;
        repo.delegate(
            &Delegation {
                name: self.role.clone(),
                parent: self.parent.clone(),
                keys: publics(&keys),
                threshold: self.threshold,
                rule,
                terminating: self.terminating,
            },
            SystemTime::now(),
        )
        .map_err(|e| Error::tuf(format!("delegating {} from {}", self.role, self.parent), e))?;
        save(&repo)?;
        print_line(&format!(
            "staged delegation of {} from {}; run `sigil tuf publish`",
            self.role, self.parent
        ))
    }
}
