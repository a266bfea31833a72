//! Trusted collections with the notary client's verbs: `init`, `add`, `addhash`, `remove`,
//! `list`, `lookup`, `status`, `reset`, `publish`, `delete`, and the collection form of
//! `verify`. Changes are staged in the trust dir's changelist (notary's format) until
//! `publish` (or `-p`) applies them all, signs each changed role once through sigild and sends
//! them to the server in one atomic publish.
//!
//! `add` and `addhash` take many targets per call — several on the command line or a manifest
//! file — so a CI job can stage thousands and publish them with one signature per role.

mod changes;
mod lifecycle;
mod read;
mod stage;

use clap::Args;
use sigil_tuf::VerifiedCollection;
use sigil_tuf::changelist::{Change, ChangeKind};
use sigil_tuf::schema::check_targets_role;

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::error::Error;
use crate::output;
use crate::repo::Repo;

pub(crate) use changes::{ResetArgs, StatusArgs};
pub(crate) use lifecycle::{DeleteArgs, InitArgs, PublishArgs};
pub(crate) use read::{ListArgs, LookupArgs, verify_target};
pub(crate) use stage::{AddArgs, AddhashArgs, RemoveArgs};

/// Parses a `-r` role: `targets` or a delegation such as `targets/releases`.
pub(crate) fn parse_targets_role(role: &str) -> Result<String, String> {
    check_targets_role(role).map_err(|e| e.to_string())?;
    Ok(role.to_owned())
}

/// The roles given with `-r`, or `targets`.
fn roles_or_targets(roles: &[String]) -> Vec<String> {
    if roles.is_empty() {
        vec!["targets".to_owned()]
    } else {
        roles.to_vec()
    }
}

fn encode(kind: &ChangeKind) -> Result<Change, Error> {
    Change::from_kind(kind).map_err(|e| Error::tuf("staging a change", e))
}

/// Publishes every staged change of `repo` and removes them from the changelist once the
/// server accepted them.
pub(crate) async fn publish_staged(global: &GlobalArgs, repo: &Repo) -> Result<(), Error> {
    let staged = repo.trust.staged(&repo.gun)?;
    eprintln!("Pushing changes to {}", repo.gun);
    let daemon = DaemonClient::connect(&global.socket).await?;
    let roles = repo.publish(&daemon, &staged).await?;
    let names: Vec<String> = staged.into_iter().map(|(name, _)| name).collect();
    repo.trust.remove_staged(&repo.gun, &names)?;
    if roles.is_empty() {
        output::print_line(&format!("No changes to publish for {}", repo.gun))
    } else {
        output::print_line(&format!(
            "Successfully published changes for repository {}",
            repo.gun
        ))
    }
}

/// Stages `changes` for `gun`, then publishes when `-p` was given.
async fn stage_and_maybe_publish(
    global: &GlobalArgs,
    gun: &str,
    changes: &[Change],
    message: &str,
    publish: bool,
) -> Result<(), Error> {
    let trust = Repo::trust_dir(global)?;
    trust.stage(gun, changes)?;
    output::print_line(message)?;
    if publish {
        publish_staged(global, &Repo::open(global, gun)?).await?;
    }
    Ok(())
}

/// `--offline` for the commands that only read a collection.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct OfflineArg {
    /// Read the trust dir's cache of the last verified read instead of the server: verified
    /// again (signatures, hashes, expiry), no network. Without it an unreachable server is an
    /// error, never a silent fall-back to possibly stale data.
    #[arg(long)]
    pub(crate) offline: bool,
}

/// Fetches and verifies; no trust data is an error.
pub(crate) async fn fetch_verified(repo: &Repo) -> Result<VerifiedCollection, Error> {
    let verified = repo.fetch().await?;
    verified.ok_or_else(|| no_collection(repo))
}

/// [`fetch_verified`] for commands that only read; with `offline`, the trust dir's cache of
/// the last verified read instead, verified again and without contacting the server.
pub(crate) async fn fetch_verified_for_read(
    repo: &Repo,
    offline: bool,
) -> Result<VerifiedCollection, Error> {
    if !offline {
        return fetch_verified(repo).await;
    }
    repo.cached().await?.ok_or_else(|| Error::NothingCached {
        gun: repo.gun.clone(),
    })
}

fn no_collection(repo: &Repo) -> Error {
    Error::NoCollection {
        gun: repo.gun.clone(),
        server: repo.server.url().to_owned(),
    }
}
