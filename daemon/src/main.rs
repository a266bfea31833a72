//! sigild: parse flags, load the configuration, set up logging, open the tokens, serve the
//! API on the Unix socket (its own, or one systemd passes), tell systemd when it is ready,
//! drain on SIGTERM and reload the policy and reopen the tokens on SIGHUP.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use sigil_daemon::config::Config;
use sigil_daemon::policy::Policy;
use sigil_daemon::{dev, metrics, rpc, runtime, startup};
use tokio::signal::unix::{SignalKind, signal};

/// How long in-flight requests get to finish after SIGTERM before remaining connections close.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps signing keys on hardware tokens and lets authorised local users sign with them.
#[derive(Debug, Parser)]
#[command(
    name = "sigild",
    version,
    after_help = "\
The configuration is read from --config, else $SIGIL_CONFIG, else /etc/sigil/sigild.toml.
See sigild.toml.example for every setting. Signals: SIGTERM/SIGINT stop accepting, finish
in-flight requests and exit 0; SIGHUP reopens the audit log (logrotate: rename, then HUP),
reloads the [[policy]] and [[metadata]] rules (and notary_signer allowed_clients) and reopens
the tokens; other changed settings are logged as needing a restart.
Under systemd, sigild takes the API socket from socket activation (sigild.socket) when one
is passed, and reports readiness through $NOTIFY_SOCKET (Type=notify)."
)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, value_name = "PATH", conflicts_with = "dev")]
    config: Option<PathBuf>,
    /// Run on a throwaway SoftHSM token under DIR (created if missing), serving DIR/sigild.sock
    /// to the invoking user only. For demos and tests, never for production.
    #[arg(long, value_name = "DIR")]
    dev: Option<PathBuf>,
    /// Check the configuration and the tokens, then exit without serving.
    #[arg(long)]
    check: bool,
    /// More logging (-v debug, -vv trace). PINs are never logged at any level.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Write the sigild(8) man page into DIR and exit (for packaging; `make man` runs it).
    #[arg(long, value_name = "DIR", hide = true, exclusive = true)]
    generate_man: Option<PathBuf>,
}

fn main() -> ExitCode {
    // First thing, before any PIN or token key material is in memory: no core dumps, and no
    // ptrace or /proc/PID/{mem,environ} access for other processes of the same uid. Kept across
    // the dev mode's re-exec because every exec runs this again.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("sigild: error: cannot make the process non-dumpable (PR_SET_DUMPABLE): {e}");
        return ExitCode::FAILURE;
    }
    // The notary-signer endpoint's TLS is ring's, whatever else a build links: rustls refuses
    // to pick a provider when two are compiled in (a test build unifies features across the
    // workspace), so name it once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    init_tracing(args.verbose);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sigild: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// sigild's page goes in section 8 (system daemons), generated from the same clap definition
/// that parses its flags. The help's closing text (configuration, signals) becomes its own
/// section instead of clap_mangen's "EXTRA", and SEE ALSO points at the client.
fn write_man_page(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    use clap::CommandFactory as _;
    use clap_mangen::roff::{Roff, roman};
    std::fs::create_dir_all(dir)?;
    let cmd = Args::command();
    let closing = cmd.get_after_help().map(|text| text.to_string());
    let man = clap_mangen::Man::new(cmd.after_help(None::<&str>)).section("8");
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    let mut roff = Roff::new();
    if let Some(closing) = closing {
        roff.control("SH", ["CONFIGURATION AND SIGNALS"])
            .text([roman(closing.replace('\n', " "))]);
    }
    roff.control("SH", ["SEE ALSO"]).text([roman(
        "sigil(1); sigild.toml.example for every setting; the README's \"Running sigild in \
         production\".",
    )]);
    page.extend_from_slice(roff.to_roff().as_bytes());
    std::fs::write(&path, page)?;
    Ok(path)
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = &args.generate_man {
        let page = write_man_page(dir)?;
        println!("man page written to {}", page.display());
        return Ok(());
    }
    // Dev set-up may re-execute the process, so it runs before any thread exists.
    let config_path = match &args.dev {
        Some(dir) => dev::prepare(dir)?,
        None => Config::resolve_path(args.config.as_deref()),
    };
    let config = Config::load(&config_path)?;
    // Reading LISTEN_FDS clears it from the environment: before any thread exists.
    let activated = activated_socket()?;
    let runtime = runtime::build()?;
    runtime.block_on(async {
        let service = Arc::new(startup::build(&config).await?);
        tracing::info!(
            config = %config_path.display(),
            keys = service.key_count(),
            backends = config.backends.len(),
            "tokens open"
        );
        if args.check {
            println!("configuration OK: {}", config_path.display());
            return Ok(());
        }
        // Before the API socket, so that a metrics address already taken stops sigild before
        // it serves; stops (and removes its socket) when dropped, as the daemon returns.
        let _metrics = metrics::start(&service, config.metrics.as_ref())?;
        let from_systemd = activated.is_some();
        let listener = match activated {
            Some(socket) => {
                tracing::info!(
                    config_socket = %config.server.socket.display(),
                    "API socket passed by systemd (socket activation); its mode and group are the socket unit's"
                );
                rpc::adopt(socket)?
            }
            None => rpc::bind(&config.server)?,
        };
        tracing::info!(socket = %config.server.socket.display(), "serving");
        let reloader = tokio::spawn(reload_on_sighup(
            Arc::clone(&service),
            config_path.clone(),
            config.clone(),
        ));
        // One signal stops every listener; each drains its own in-flight requests.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signals = tokio::spawn(async move {
            shutdown_signal().await;
            tell_systemd(&[sd_notify::NotifyState::Stopping]);
            let _ = stop.send(true);
        });
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let stopped_again = stopped.clone();
        let notary = config.notary_signer.as_ref().map(|ns| {
            tracing::info!(listen = %ns.listen, backend = %ns.backend, "serving notary-signer API");
            rpc::notary::serve(
                Arc::clone(&service),
                ns,
                &config.server,
                until_stopped(stopped.clone()),
            )
        });
        let unix = rpc::serve(
            service,
            listener,
            &config.server,
            until_stopped(stopped),
        );
        // The API socket is listening and the tokens are open: ready. (A notary-signer port
        // that turns out to be taken still stops the daemon, which systemd then sees.)
        tell_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("serving"),
        ]);
        // A listener that fails (e.g. its port is taken) stops the daemon rather than leaving
        // it half up.
        let serving = async {
            match notary {
                Some(notary) => tokio::try_join!(unix, notary).map(|_| ()),
                None => unix.await,
            }
        };
        // Draining waits for connections to close; one that never finishes its handshake must
        // not hold a stop or restart hostage, so the drain gets a bounded grace period.
        let mut after_signal = stopped_again;
        let grace = async move {
            let _ = after_signal.wait_for(|stop| *stop).await;
            tokio::time::sleep(DRAIN_GRACE).await;
        };
        let served = tokio::select! {
            served = serving => served,
            () = grace => {
                tracing::warn!(grace = ?DRAIN_GRACE, "connections still open after the drain period; closing them");
                Ok(())
            }
        };
        signals.abort();
        reloader.abort();
        // A socket systemd passed stays: it is the socket unit's, and keeps queueing clients.
        if !from_systemd {
            let _ = std::fs::remove_file(&config.server.socket);
        }
        served?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The API socket systemd passed, if it started sigild through socket activation for this very
/// process (`LISTEN_PID`). Exactly one socket is expected: the Unix API socket.
fn activated_socket() -> Result<Option<std::os::unix::net::UnixListener>, String> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return Ok(None);
    }
    let mut passed = listenfd::ListenFd::from_env();
    if passed.len() != 1 {
        return Err(format!(
            "socket activation passed {} sockets; sigild takes exactly one, the API socket \
             (ListenStream= in sigild.socket)",
            passed.len()
        ));
    }
    passed.take_unix_listener(0).map_err(|e| {
        format!("socket activation: the passed socket is not a listening Unix stream socket: {e}")
    })
}

/// Tells systemd how sigild is doing (`Type=notify`); without `$NOTIFY_SOCKET`, nothing.
fn tell_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can still be stopped, just not gracefully.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// SIGHUP: reopen the audit log (logrotate's rename-then-create), re-read the configuration
/// and swap in its policy and `[[metadata]]` rules — the `[[policy]]` and
/// `[[require]]` rules and `[notary_signer] allowed_clients` (a bad file keeps the old one) —
/// then reopen every token with its PIN file read again. Whatever else changed (`[server]`,
/// the rest of `[notary_signer]`, backends) takes a restart, and the log says so by name.
async fn reload_on_sighup(
    service: Arc<sigil_daemon::service::SigningService>,
    path: PathBuf,
    running: Config,
) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match service.reopen_audit_log() {
            Ok(()) => tracing::info!("audit log reopened (SIGHUP)"),
            Err(e) => {
                tracing::error!(error = %e, "audit log not reopened (SIGHUP): still writing to the file opened before")
            }
        }
        let config = match Config::load(&path) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "policy not reloaded, tokens not reopened: keeping the old configuration");
                service.policy_not_reloaded();
                continue;
            }
        };
        match Policy::load(&config) {
            Ok(policy) => {
                tracing::info!(rules = ?policy.rule_names(), "policy reloaded");
                service.replace_policy(policy);
            }
            Err(e) => {
                tracing::error!(error = %e, "policy not reloaded; keeping the old one");
                service.policy_not_reloaded();
            }
        }
        match service.replace_metadata_rules(&config) {
            Ok(()) => tracing::info!(rules = config.metadata.len(), "[[metadata]] rules reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "[[metadata]] rules not reloaded; keeping the old ones")
            }
        }
        for setting in needs_restart(&running, &config) {
            tracing::warn!(
                setting,
                "changed in the configuration but not applied by SIGHUP: restart sigild to apply it"
            );
        }
        let pins = startup::reread_pins(&config);
        for (backend, result) in service.reopen_tokens(pins).await {
            match result {
                Ok(keys) => tracing::info!(%backend, keys, "token reopened (SIGHUP)"),
                Err(e) => tracing::error!(%backend, error = %e, "token not reopened (SIGHUP)"),
            }
        }
    }
}

/// The settings that differ between the running configuration and a reloaded one but that
/// only a restart applies.
fn needs_restart(running: &Config, reloaded: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.server, &reloaded.server);
    let mut changed = Vec::new();
    let mut check = |differs: bool, name: &'static str| {
        if differs {
            changed.push(name);
        }
    };
    check(a.socket != b.socket, "server.socket");
    check(a.socket_group != b.socket_group, "server.socket_group");
    check(a.socket_mode != b.socket_mode, "server.socket_mode");
    check(a.audit_log != b.audit_log, "server.audit_log");
    check(a.state_dir != b.state_dir, "server.state_dir");
    check(running.metrics != reloaded.metrics, "[metrics]");
    check(
        a.max_message_bytes != b.max_message_bytes,
        "server.max_message_bytes",
    );
    check(
        a.audit_refusals_per_window != b.audit_refusals_per_window
            || a.audit_refusal_window_secs != b.audit_refusal_window_secs,
        "server.audit_refusals_per_window / audit_refusal_window_secs",
    );
    let names = |c: &Config| {
        c.backends
            .iter()
            .map(|b| b.name().to_owned())
            .collect::<Vec<_>>()
    };
    check(
        names(running) != names(reloaded),
        "[[backend]] (names or order)",
    );
    match (&running.notary_signer, &reloaded.notary_signer) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            check(a.listen != b.listen, "notary_signer.listen");
            check(
                a.tls_cert != b.tls_cert || a.tls_key != b.tls_key || a.client_ca != b.client_ca,
                "notary_signer.tls_cert / tls_key / client_ca",
            );
            check(a.backend != b.backend, "notary_signer.backend");
            check(
                a.max_keys != b.max_keys
                    || a.max_keys_per_gun != b.max_keys_per_gun
                    || a.max_new_keys_per_hour != b.max_new_keys_per_hour,
                "notary_signer.max_keys / max_keys_per_gun / max_new_keys_per_hour",
            );
        }
        _ => check(true, "[notary_signer] (added or removed)"),
    }
    changed
}
