//! `sigil tuf`: TUF 1.0 specification repositories (DESIGN.md §8). Each verb lives in its own
//! file; this one only assembles the command group.

pub(crate) mod client;
mod http;

use clap::Subcommand;

use crate::cli::GlobalArgs;
use crate::error::Error;

/// The `sigil tuf` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Client(client::ClientArgs),
}

impl Command {
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        match self {
            Self::Client(args) => args.run(global).await,
        }
    }
}
