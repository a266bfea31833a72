//! `sigil tuf ...`: TUF 1.0 repositories (DESIGN §8), made and maintained with sigild's keys.
//! Each verb's arguments and `run()` live in the file named after it; `keys.rs` turns key
//! arguments into public keys and sigild signers.

pub(crate) mod client;
mod delegate;
mod http;
mod import;
mod init;
mod keys;
mod publish;
mod rotate;
mod sign;
mod status;
mod targets;

use clap::Subcommand;

use crate::cli::GlobalArgs;
use crate::error::Error;

/// The `sigil tuf` verbs. A verb's help comes from its `Args` struct's docs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Init(init::InitArgs),
    Add(targets::AddArgs),
    Addhash(targets::AddhashArgs),
    Remove(targets::RemoveArgs),
    Delegate(delegate::DelegateArgs),
    Rotate(rotate::RotateArgs),
    Sign(sign::SignArgs),
    Publish(publish::PublishArgs),
    Timestamp(publish::TimestampArgs),
    Status(status::StatusArgs),
    Verify(status::VerifyArgs),
    ImportNotary(import::ImportNotaryArgs),
    Client(client::ClientArgs),
}

impl Command {
    /// Runs the verb.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        match self {
            Self::Client(args) => args.run(global).await,
            Self::Init(args) => args.run(global).await,
            Self::Add(args) => args.run(global).await,
            Self::Addhash(args) => args.run(global).await,
            Self::Remove(args) => args.run(global).await,
            Self::Delegate(args) => args.run(global).await,
            Self::Rotate(args) => args.run(global).await,
            Self::Sign(args) => args.run(global).await,
            Self::Publish(args) => args.run(global).await,
            Self::Timestamp(args) => args.run(global).await,
            Self::Status(args) => args.run(global).await,
            Self::Verify(args) => args.run(global).await,
            Self::ImportNotary(args) => args.run(global).await,
        }
    }
}

/// Opens the repository at `dir`, naming it in the error.
pub(crate) fn open(dir: &std::path::Path) -> Result<sigil_tuf::repository::Repository, Error> {
    sigil_tuf::repository::Repository::open(dir)
        .map_err(|e| Error::tuf(format!("opening {}", dir.display()), e))
}

/// Saves the staged roles of `repo`.
pub(crate) fn save(repo: &sigil_tuf::repository::Repository) -> Result<(), Error> {
    repo.save()
        .map_err(|e| Error::tuf(format!("saving {}", repo.layout().root().display()), e))
}
