//! `sigil tuf sign`: one more signature on a staged role (root ceremonies, threshold roles).

use std::path::PathBuf;

use clap::Args;

use super::keys::{KeyArg, resolve, signers};
use super::{open, save};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::output::{print_json, print_line};

/// Add signatures to a staged role with keys held by this machine's sigild.
///
/// For ceremonies: a new root (from init or rotate) or a role with threshold above 1 collects
/// its signatures one key at a time, each where its key lives (copy REPO/.sigil/staged between
/// machines, or share REPO). A new root must be signed by a threshold of its own root keys and
/// of the previous root's. `sigil tuf status` shows what is still missing; `publish` refuses
/// until every threshold is met.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
    /// The staged role to sign (root, targets or a delegated role).
    #[arg(value_name = "ROLE")]
    pub(crate) role: String,
    /// A sigild key id of a key of the role (repeatable).
    #[arg(long = "key", value_name = "ID", required = true)]
    pub(crate) keys: Vec<KeyArg>,
}

impl SignArgs {
    /// Signs and saves the staged role.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        if self.keys.iter().any(|k| matches!(k, KeyArg::PemFile(_))) {
            return Err(Error::Usage(
                "sign needs keys sigild holds here (key ids), not public key files".into(),
            ));
        }
        let mut repo = open(&self.repo)?;
        let keys = resolve(global, &self.keys).await?;
        let context = format!("signing {} in {}", self.role, self.repo.display());
        let signed = repo
            .sign_staged(&self.role, &signers(&keys))
            .await
            .map_err(|e| Error::tuf(&context, e))?;
        save(&repo)?;
        let missing = repo
            .missing_signatures(&self.role)
            .map_err(|e| Error::tuf(&context, e))?;
        if global.json {
            return print_json(&serde_json::json!({
                "role": self.role,
                "signed_by": signed,
                "missing": missing.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }));
        }
        print_line(&format!("signed {} with {}", self.role, signed.join(", ")))?;
        if missing.is_empty() {
            print_line(&format!(
                "{}: every threshold is met; run `sigil tuf publish`",
                self.role
            ))
        } else {
            for m in &missing {
                print_line(&format!("still needed: {m}"))?;
            }
            Ok(())
        }
    }
}
