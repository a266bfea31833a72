//! `sigil`: the command line for sigild's keys, blob signatures and Notary trusted collections.
//! This file only parses the command line, sets up logging, dispatches to the command's module
//! and turns its error into one line on stderr and an exit code.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

mod cli;
mod cmd;
mod daemon_client;
mod daemon_signer;
mod error;
mod input;
mod key_ref;
mod notary_server;
mod output;
mod repo;
mod settings;
mod trust_dir;

use cli::{Cli, Command};
use error::{Error, exit};

fn main() -> ExitCode {
    // One TLS provider for the process (ring), whatever else a build links: rustls refuses to
    // pick one when two are compiled in (a test build unifies features across the workspace).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    init_tracing(cli.global.verbose);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => err.report(),
    }
}

/// Help and version go out as clap prints them; real parse errors become one line on stderr
/// and exit code 2, like every other failure.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Printing help can only fail on a closed stdout; there is nothing left to tell.
            let _ = err.print();
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(exit::USAGE))
        }
        _ => {
            eprintln!("sigil: error: {}", error::usage_line(err));
            let args: Vec<String> = std::env::args().skip(1).collect();
            if cmd::tuf::client::is_client_invocation(&args) {
                // The TUF conformance protocol: every failure of the client exits 1.
                return ExitCode::from(exit::FAILURE);
            }
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Runs the command on a single-threaded runtime: one connection, one request at a time.
fn run(cli: &Cli) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        match &cli.command {
            Command::Key(command) => command.run(&cli.global).await,
            Command::Token(command) => command.run(&cli.global).await,
            Command::Sign(args) => args.run(&cli.global).await,
            Command::Verify(args) => args.run(&cli.global).await,
            Command::Init(args) => args.run(&cli.global).await,
            Command::Add(args) => args.run(&cli.global).await,
            Command::Addhash(args) => args.run(&cli.global).await,
            Command::Remove(args) => args.run(&cli.global).await,
            Command::List(args) => args.run(&cli.global).await,
            Command::Lookup(args) => args.run(&cli.global).await,
            Command::Status(args) => args.run(&cli.global).await,
            Command::Reset(args) => args.run(&cli.global).await,
            Command::Publish(args) => args.run(&cli.global).await,
            Command::Delete(args) => args.run(&cli.global).await,
            Command::Delegation(command) => command.run(&cli.global).await,
            Command::Audit(command) => command.run(&cli.global).await,
            Command::Tuf(command) => command.run(&cli.global).await,
            Command::Completions(args) => args.run().await,
            Command::Manpages(args) => args.run().await,
        }
    })
}

/// Logs to stderr: warnings by default, more with each `-v`. The HTTP/2 stack stays one level
/// quieter than sigil itself.
fn init_tracing(verbose: u8) {
    let directives = match verbose {
        0 => "warn",
        1 => "warn,sigil=info",
        2 => "info,sigil=debug",
        _ => "debug,sigil=trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(directives))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .without_time()
        .init();
}
