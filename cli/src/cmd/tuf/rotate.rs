//! `sigil tuf rotate`: change a role's keys, root included.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;

use super::keys::{KeyArg, publics, resolve, signers};
use super::{open, save};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::output::print_line;

/// Add a key to ROLE (and remove an old one), for any role including root.
///
/// A top-level role's keys are listed in root, so this stages a new root version; it must be
/// signed by a threshold of the old root's keys and of the new root's before `publish`: the new
/// root key(s) given by key id sign here, the others with `sigil tuf sign REPO root --key ID`.
/// A delegated role's keys are listed by its parent, which is staged (and signed at publish).
/// The rotated role is staged too, to be re-signed by its new keys. --remove takes a sigild key
/// id or a TUF key id (the old key need not be in sigild any more).
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
    /// The role whose keys change.
    #[arg(value_name = "ROLE")]
    pub(crate) role: String,
    /// A new key: sigild key id or PEM public key file (repeatable).
    #[arg(long = "key", value_name = "NEW_ID|PEM")]
    pub(crate) keys: Vec<KeyArg>,
    /// A key to remove, by sigild or TUF key id (repeatable).
    #[arg(long = "remove", value_name = "OLD_ID")]
    pub(crate) remove: Vec<String>,
}

impl RotateArgs {
    /// Stages the rotation.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        if self.keys.is_empty() && self.remove.is_empty() {
            return Err(Error::Usage(
                "give --key NEW_ID and/or --remove OLD_ID".into(),
            ));
        }
        let keys = resolve(global, &self.keys).await?;
        let mut repo = open(&self.repo)?;
        let context = format!("rotating {} in {}", self.role, self.repo.display());
        repo.rotate(&self.role, &publics(&keys), &self.remove, SystemTime::now())
            .map_err(|e| Error::tuf(&context, e))?;
        if self.role == "root" && !signers(&keys).is_empty() {
            repo.sign_staged("root", &signers(&keys))
                .await
                .map_err(|e| Error::tuf(&context, e))?;
        }
        save(&repo)?;
        print_line(&format!("staged new keys for {}", self.role))?;
        if repo.staged().root.is_some() {
            for m in repo
                .missing_signatures("root")
                .map_err(|e| Error::tuf(&context, e))?
            {
                print_line(&format!("root still needs: {m}"))?;
            }
        }
        Ok(())
    }
}
