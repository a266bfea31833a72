//! sigil-bench exists to answer one question with numbers: how much does going through sigild
//! (gRPC over the Unix socket, policy, audit, worker hand-off) cost compared with signing
//! in-process through PKCS#11 on the same SoftHSM token? (DESIGN.md §7, BENCHMARKS.md.)
//!
//! It starts `target/release/sigild --dev DIR` on a throwaway token, generates one ECDSA P-256
//! key through the API, then for each client count N measures
//!
//! * `in-process`: N threads, one PKCS#11 session each, signing SHA-256 digests with
//!   `CKM_ECDSA` directly (the ceiling). cryptoki needs `SOFTHSM2_CONF` before `C_Initialize`
//!   and the environment may not be changed safely in-process, so this part runs in a child:
//!   the bench re-executes itself with `SOFTHSM2_CONF` set and a hidden flag, and reads the
//!   result as JSON from the child's stdout.
//! * `sigild`: N concurrent clients, each on its own Unix-socket connection, calling
//!   `Signer/Sign` with `sha256_digest`;
//! * `sign-metadata`: the same with a 1 KiB canonical Notary timestamp sent whole, for a key
//!   the bench's uid may only `sign-metadata` with: the cost of sigild reading what it signs.
//!
//! and prints throughput, p50 and p99 for both, their ratio and the latency sigild adds.
//! Run it with `cargo run --release -p sigil-e2e --bin sigil-bench -- --help`.

use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sigil_e2e::bench::{
    self, BoxError, Flags, Latencies, Load, Tally, cell, fail, loadavg, seconds,
};
use sigil_proto::sigil_v1 as pb;
use sigil_proto::sigil_v1::keys_client::KeysClient;
use sigil_proto::sigil_v1::signer_client::SignerClient;
use tonic::transport::Channel;

/// Hidden flag: run the in-process part (in the re-executed child) and print JSON.
const IN_PROCESS_FLAG: &str = "--in-process-child";
/// Token that `sigild --dev` creates.
const TOKEN_LABEL: &str = "sigil-dev";
/// Role and GUN of the benchmark key, and the label sigild gives it on the token.
const ROLE: &str = "targets";
const GUN: &str = "bench";
const KEY_LABEL: &str = "sigil:targets:bench";
/// Where SoftHSM2's module is found on common distributions (same list as sigild's).
const SOFTHSM_MODULES: [&str; 4] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// Above this share of the CPUs used by other processes, a run is flagged as noisy.
const BUSY_PCT: f64 = 5.0;

const USAGE: &str = "\
sigil-bench: signatures/s and latency through sigild vs. in-process PKCS#11 (same token)

usage: sigil-bench [options]
  --clients LIST        client counts, comma-separated        (default 1,4,16)
  --duration SECS       measured time per run                  (default 3)
  --warmup SECS         unmeasured time before each run        (default 0.5)
  --client-threads N    tokio worker threads for the gRPC clients; 1 = current-thread
                        runtime, the lightest on a small machine (default 1)
  --only MODE           run only `in-process`, or only `sigild` (its `sign-metadata` rows too:
                        a 1 KiB canonical timestamp signed by a metadata-only caller)
  --rpc-only            also measure Keys/GetPublicKey through sigild (`rpc-only`): the
                        request path without token, worker hand-off or audit line
  --repeat K            K rounds of everything, alternating; report the median round of
                        each cell (by signatures/s) and the range (default 1)
  --sigild PATH         the daemon binary (default: sigild next to this binary, else
                        target/release/sigild; built with cargo if missing)
  --pause SECS          after start-up, wait this long before measuring (attach perf)
  --keep                keep the temporary directory (token, config, audit log, log)
  --json                print the results as JSON instead of a table
  -h, --help            this text";

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    load: Load,
    client_threads: usize,
    only: Option<Mode>,
    rpc_only: bool,
    repeat: usize,
    sigild: Option<PathBuf>,
    pause: Duration,
    keep: bool,
    json: bool,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// `C_Sign` from threads of our own, one session each.
    InProcess,
    /// `Signer/Sign` through sigild.
    Sigild,
    /// `Keys/GetPublicKey` through sigild: the same socket, HTTP/2 and policy check, but no
    /// token call, no worker hand-off and no audit line. The floor of the request path.
    RpcOnly,
    /// `Signer/Sign` of a 1 KiB canonical timestamp (the same bytes each time) by a caller
    /// allowed only `sign-metadata`: the `sigild` row plus sending the message, hashing it and
    /// sigild's parse and checks (DESIGN §9).
    SignMetadata,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::InProcess => "in-process",
            Mode::Sigild => "sigild",
            Mode::RpcOnly => "rpc-only",
            Mode::SignMetadata => "sign-metadata",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunResult {
    mode: Mode,
    clients: usize,
    signatures: u64,
    seconds: f64,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    /// CPU time of the signing side (the in-process child, or the gRPC client) per signature,
    /// over the measured window, µs.
    client_cpu_us: Option<f64>,
    /// CPU time of sigild per signature over the measured window, µs (sigild runs only).
    daemon_cpu_us: Option<f64>,
    /// CPU used by everything else on the machine during the window, in % of all CPUs: a
    /// busy machine makes the numbers meaningless.
    other_cpu_pct: Option<f64>,
    /// With `--repeat`: how many rounds, and the lowest and highest signatures/s among them.
    #[serde(default)]
    rounds: usize,
    #[serde(default)]
    per_second_min: f64,
    #[serde(default)]
    per_second_max: f64,
}

/// Everything printed by `--json`.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    duration_s: f64,
    warmup_s: f64,
    client_threads: usize,
    runs: Vec<RunResult>,
    /// sigild throughput over in-process throughput, per client count.
    ratios: Vec<Ratio>,
    /// p50(sigild) − p50(in-process) at 1 client, µs.
    added_p50_us_at_1: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Ratio {
    clients: usize,
    throughput_ratio: f64,
    added_p50_us: f64,
}

#[derive(Debug, Serialize)]
struct Machine {
    nproc: usize,
    cpu: String,
    softhsm: String,
    loadavg_before: String,
    loadavg_after: String,
    /// What a blocking hand-off between two threads costs here (see [`wake_test`]).
    wake_round_trip: Vec<WakeCost>,
}

/// One row of [`wake_test`].
#[derive(Debug, Serialize)]
struct WakeCost {
    /// Busy work the answering thread does before it answers, µs.
    work_us: u64,
    /// Median round trip minus the work, µs.
    overhead_p50_us: f64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(IN_PROCESS_FLAG) {
        return bench::child_main("sigil-bench", || in_process_child(&args[1..]));
    }
    bench::main("sigil-bench", USAGE, &args, parse_args, run)
}

fn parse_args(args: &[String]) -> Result<Option<Options>, BoxError> {
    let mut o = Options {
        load: Load::default(),
        client_threads: 1,
        only: None,
        rpc_only: false,
        repeat: 1,
        sigild: None,
        pause: Duration::ZERO,
        keep: false,
        json: false,
    };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let flag = flag.as_str();
        match flag {
            "-h" | "--help" => return Ok(None),
            _ if o.load.take(flag, &mut flags)? => {}
            "--pause" => o.pause = flags.seconds(flag)?,
            "--client-threads" => {
                o.client_threads = flags.positive(flag)?;
            }
            "--only" => {
                o.only = Some(match flags.value(flag)?.as_str() {
                    "in-process" => Mode::InProcess,
                    "sigild" => Mode::Sigild,
                    other => return Err(fail(format!("--only {other:?}: in-process or sigild"))),
                });
            }
            "--rpc-only" => o.rpc_only = true,
            "--repeat" => {
                o.repeat = flags.positive(flag)?;
            }
            "--sigild" => o.sigild = Some(PathBuf::from(flags.value(flag)?)),
            "--keep" => o.keep = true,
            "--json" => o.json = true,
            other => return Err(fail(format!("unknown argument {other:?}"))),
        }
    }
    if o.load.duration.is_zero() {
        return Err(fail("--duration must be more than 0"));
    }
    Ok(Some(o))
}

// ---------------------------------------------------------------------------------------------
// The driver: start sigild, make a key, alternate in-process and sigild runs, report.

fn run(o: &Options) -> Result<(), BoxError> {
    let loadavg_before = loadavg();
    let wake_round_trip = wake_test()?;
    let sigild = locate_sigild(o.sigild.as_deref())?;
    let dir = tempfile::Builder::new().prefix("sigil-bench.").tempdir()?;
    let dir_path = dir.path().to_owned();
    metadata_policy(&sigild, &dir_path)?;
    let daemon = Daemon::start(&sigild, &dir_path)?;
    eprintln!(
        "sigil-bench: sigild pid {} serving {} ({})",
        daemon.pid(),
        daemon.socket.display(),
        sigild.display()
    );
    let client_rt = client_runtime(o.client_threads)?;
    let key_id = client_rt.block_on(generate_key(&daemon.socket, ROLE))?;
    eprintln!("sigil-bench: key {key_id} (ECDSA P-256, role {ROLE}, gun {GUN})");
    let metadata_key = client_rt.block_on(generate_key(&daemon.socket, "timestamp"))?;
    eprintln!(
        "sigil-bench: key {metadata_key} (ECDSA P-256, role timestamp, gun {GUN}; sign-metadata only)"
    );
    if !o.pause.is_zero() {
        eprintln!(
            "sigil-bench: pausing {:.1} s (sigild pid {})",
            o.pause.as_secs_f64(),
            daemon.pid()
        );
        std::thread::sleep(o.pause);
    }

    let mut all = Vec::new();
    for round in 0..o.repeat {
        if o.repeat > 1 {
            eprintln!("sigil-bench: round {} of {}", round + 1, o.repeat);
        }
        for &n in &o.load.clients {
            if o.only != Some(Mode::Sigild) {
                let r = in_process_run(&dir_path, n, o)?;
                progress(&r);
                all.push(r);
            }
            if o.only != Some(Mode::InProcess) {
                let mut modes = vec![Mode::Sigild, Mode::SignMetadata];
                if o.rpc_only {
                    modes.push(Mode::RpcOnly);
                }
                for mode in modes {
                    let key = if mode == Mode::SignMetadata {
                        &metadata_key
                    } else {
                        &key_id
                    };
                    let r = client_rt.block_on(sigild_run(
                        mode,
                        &daemon.socket,
                        daemon.pid(),
                        key,
                        n,
                        o,
                    ))?;
                    progress(&r);
                    all.push(r);
                }
            }
        }
    }
    let runs = medians(all);
    let audit_lines = count_lines(&dir_path.join("audit.jsonl"));
    // Dropping the client runtime closes every connection. It must go first: sigild's
    // graceful shutdown waits for its clients, and these only answer while their runtime runs.
    drop(client_rt);
    daemon.stop()?;
    if o.keep {
        let kept = dir.keep();
        eprintln!("sigil-bench: kept {}", kept.display());
    }

    let ratios = ratios(&runs);
    let report = Report {
        machine: Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: bench::cpu_model(),
            softhsm: bench::softhsm_version(),
            loadavg_before,
            loadavg_after: loadavg(),
            wake_round_trip,
        },
        duration_s: o.load.duration.as_secs_f64(),
        warmup_s: o.load.warmup.as_secs_f64(),
        client_threads: o.client_threads,
        added_p50_us_at_1: ratios
            .iter()
            .find(|r| r.clients == 1)
            .map(|r| r.added_p50_us),
        runs,
        ratios,
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
        if let Ok(lines) = audit_lines {
            println!("audit log: {lines} lines written during the run");
        }
    }
    Ok(())
}

fn progress(r: &RunResult) {
    eprintln!(
        "sigil-bench: {:<10} {:>3} clients: {:>8.0}/s  p50 {:>6.0} µs  p99 {:>6.0} µs  \
         CPU/sig: signer {} µs, sigild {} µs; others {}%{}",
        r.mode.as_str(),
        r.clients,
        r.per_second,
        r.p50_us,
        r.p99_us,
        cell(r.client_cpu_us),
        cell(r.daemon_cpu_us),
        cell(r.other_cpu_pct),
        if r.errors > 0 {
            format!("  ({} errors)", r.errors)
        } else {
            String::new()
        }
    );
}

/// One result per (mode, clients), in first-seen order: the median round by signatures/s,
/// carrying the range over all rounds.
fn medians(all: Vec<RunResult>) -> Vec<RunResult> {
    let mut cells: Vec<Vec<RunResult>> = Vec::new();
    for r in all {
        match cells
            .iter_mut()
            .find(|c| c[0].mode == r.mode && c[0].clients == r.clients)
        {
            Some(cell) => cell.push(r),
            None => cells.push(vec![r]),
        }
    }
    cells
        .into_iter()
        .map(|mut cell| {
            cell.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
            let rounds = cell.len();
            let (lo, hi) = (cell[0].per_second, cell[rounds - 1].per_second);
            let mut median = cell.swap_remove(rounds / 2);
            median.rounds = rounds;
            median.per_second_min = lo;
            median.per_second_max = hi;
            median
        })
        .collect()
}

fn ratios(runs: &[RunResult]) -> Vec<Ratio> {
    let find = |mode, n| runs.iter().find(|r| r.mode == mode && r.clients == n);
    let mut out = Vec::new();
    for r in runs.iter().filter(|r| r.mode == Mode::Sigild) {
        if let Some(base) = find(Mode::InProcess, r.clients) {
            out.push(Ratio {
                clients: r.clients,
                throughput_ratio: r.per_second / base.per_second,
                added_p50_us: r.p50_us - base.p50_us,
            });
        }
    }
    out
}

fn print_table(report: &Report) {
    let m = &report.machine;
    println!(
        "machine: {} CPUs, {}; SoftHSM {}; load average {} (before) / {} (after)",
        m.nproc, m.cpu, m.softhsm, m.loadavg_before, m.loadavg_after
    );
    let wake: Vec<String> = m
        .wake_round_trip
        .iter()
        .map(|w| format!("{:.0} µs with {} µs of work", w.overhead_p50_us, w.work_us))
        .collect();
    println!(
        "blocking hand-off between two threads (round trip beyond the work, p50): {}",
        wake.join(", ")
    );
    let rounds = report.runs.iter().map(|r| r.rounds).max().unwrap_or(1);
    println!(
        "each run: {:.1} s warm-up, {:.1} s measured; gRPC clients on {} runtime thread(s){}\n",
        report.warmup_s,
        report.duration_s,
        report.client_threads,
        if rounds > 1 {
            format!("; median of {rounds} alternating rounds (by calls/s), range in brackets")
        } else {
            String::new()
        }
    );
    println!(
        "| {:<13} | {:>7} | {:>21} | {:>7} | {:>7} | {:>5} | {:>13} | {:>13} | {:>8} |",
        "mode",
        "clients",
        "calls/s",
        "p50 µs",
        "p99 µs",
        "b/a",
        "client CPU µs",
        "sigild CPU µs",
        "others %"
    );
    println!(
        "|{:-<15}|{:->9}|{:->23}|{:->9}|{:->9}|{:->7}|{:->15}|{:->15}|{:->10}|",
        "", ":", ":", ":", ":", ":", ":", ":", ":"
    );
    for r in &report.runs {
        let ratio = match r.mode {
            Mode::Sigild => report
                .ratios
                .iter()
                .find(|x| x.clients == r.clients)
                .map_or_else(String::new, |x| format!("{:.2}", x.throughput_ratio)),
            Mode::SignMetadata => report
                .runs
                .iter()
                .find(|x| x.mode == Mode::Sigild && x.clients == r.clients)
                .map_or_else(String::new, |x| {
                    format!("{:.2}", r.per_second / x.per_second)
                }),
            Mode::InProcess | Mode::RpcOnly => String::new(),
        };
        let rate = if r.rounds > 1 {
            format!(
                "{:.0} [{:.0}–{:.0}]",
                r.per_second, r.per_second_min, r.per_second_max
            )
        } else {
            format!("{:.0}", r.per_second)
        };
        println!(
            "| {:<13} | {:>7} | {:>21} | {:>7.0} | {:>7.0} | {:>5} | {:>13} | {:>13} | {:>8} |",
            r.mode.as_str(),
            r.clients,
            rate,
            r.p50_us,
            r.p99_us,
            ratio,
            cell(r.client_cpu_us),
            cell(r.daemon_cpu_us),
            cell(r.other_cpu_pct)
        );
    }
    println!(
        "b/a: sigild / in-process; sign-metadata / sigild (the cost of reading what is signed).\n\
         calls: signatures (rpc-only: GetPublicKey calls, no token, hand-off or audit). \
         CPU µs: CPU time per call in the\nmeasured window (\"client\" is the signing \
         process in-process, the gRPC clients otherwise). others %: CPU used\nby other \
         processes then, in % of all CPUs.\n"
    );
    if let Some(added) = report.added_p50_us_at_1 {
        println!("added p50 at 1 client: {added:.0} µs (target ≤ 50 µs)");
    }
    let at4: Vec<String> = report
        .ratios
        .iter()
        .filter(|r| r.clients >= 4)
        .map(|r| format!("{:.2}× at {}", r.throughput_ratio, r.clients))
        .collect();
    if !at4.is_empty() {
        println!(
            "throughput sigild / in-process: {} (target ≥ 0.9× at ≥ 4 clients)",
            at4.join(", ")
        );
    }
    let errors: u64 = report.runs.iter().map(|r| r.errors).sum();
    if errors > 0 {
        println!("WARNING: {errors} failed signatures (not counted)");
    }
    let busiest = report
        .runs
        .iter()
        .filter_map(|r| r.other_cpu_pct)
        .fold(0.0, f64::max);
    if busiest > BUSY_PCT {
        println!(
            "WARNING: other processes used up to {busiest:.0}% of the CPUs during a run; \
             these numbers are not representative, re-run on a quiet machine"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// sigild: locate, start, stop.

/// The daemon: `--sigild`, else the release build from the current sources.
fn locate_sigild(explicit: Option<&Path>) -> Result<PathBuf, BoxError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => bench::release_binaries(&["sigil-daemon"], "--sigild PATH")?.join("sigild"),
    };
    if !path.is_file() {
        return Err(fail(format!("{}: no such file", path.display())));
    }
    Ok(path)
}

/// A running `sigild --dev`, stopped (SIGTERM to its PID, then SIGKILL) when dropped.
struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(sigild: &Path, dir: &Path) -> Result<Self, BoxError> {
        let log = dir.join("sigild.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(sigild)
            .arg("--dev")
            .arg(dir)
            .env_remove("SOFTHSM2_CONF")
            .env_remove("SIGIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", sigild.display())))?;
        let mut daemon = Self {
            child: Some(child),
            socket: dir.join("sigild.sock"),
            log,
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits until the socket accepts connections, or fails with sigild's log.
    fn wait_ready(&mut self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(fail(format!(
                    "sigild exited during start-up ({status}); its log:\n{}",
                    read_log(&self.log)
                )));
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "sigild did not open {} within 60 s; its log:\n{}",
                    self.socket.display(),
                    read_log(&self.log)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the PID we started, wait up to 10 s, then SIGKILL.
    fn stop(mut self) -> Result<(), BoxError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = terminate(&mut child)?;
        if !status.success() {
            return Err(fail(format!(
                "sigild did not stop cleanly ({status}); its log:\n{}",
                read_log(&self.log)
            )));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child);
        }
    }
}

fn terminate(child: &mut Child) -> Result<std::process::ExitStatus, BoxError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid = i32::try_from(child.id()).map_err(|_| fail("sigild pid out of range"))?;
    if child.try_wait()?.is_none() {
        // The PID is our own child and has not been reaped, so it cannot have been reused.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("sigil-bench: sigild ignored SIGTERM for 10 s; killing pid {pid}");
                child.kill()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(child.wait()?)
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

fn count_lines(path: &Path) -> io::Result<usize> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count())
}

// ---------------------------------------------------------------------------------------------
// Through sigild.

fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime, BoxError> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(rt)
}

/// One HTTP/2 connection of its own on sigild's socket.
async fn connect(socket: &Path) -> Result<Channel, BoxError> {
    sigil_e2e::unix_channel(
        sigil_e2e::unix_endpoint().connect_timeout(Duration::from_secs(10)),
        socket,
    )
    .await
    .map_err(|e| fail(format!("connecting to {}: {e}", socket.display())))
}

async fn generate_key(socket: &Path, role: &str) -> Result<String, BoxError> {
    let mut keys = KeysClient::new(connect(socket).await?);
    let key = keys
        .generate_key(pb::GenerateKeyRequest {
            backend: String::new(),
            role: role.into(),
            gun: GUN.into(),
            algorithm: pb::Algorithm::EcdsaP256.into(),
        })
        .await
        .map_err(|s| fail(format!("GenerateKey: {s}")))?
        .into_inner();
    Ok(key.key_id)
}

thread_local! {
    /// The [`Mode::SignMetadata`] message: one canonical 1 KiB Notary timestamp.
    static METADATA_PAYLOAD: Vec<u8> = sigil_e2e::metadata::timestamp_payload(42, 1024);
}

/// Lets the bench's own uid sign blind with the `targets` key (the `sigild` rows) but only
/// metadata with the `timestamp` key (the `sign-metadata` rows): `sigild --dev DIR --check`
/// writes the dev config, whose owner rule is narrowed to role `targets`, and a second rule
/// is added; `sigild --dev DIR` then reuses it.
fn metadata_policy(sigild: &Path, dir: &Path) -> Result<(), BoxError> {
    let out = Command::new(sigild)
        .arg("--dev")
        .arg(dir)
        .arg("--check")
        .env_remove("SOFTHSM2_CONF")
        .env_remove("SIGIL_CONFIG")
        .output()?;
    if !out.status.success() {
        return Err(fail(format!(
            "sigild --dev --check: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let path = dir.join("sigild.toml");
    let text = std::fs::read_to_string(&path)?;
    let owner = "keys = [{ gun = \"*\", role = \"*\" }]";
    if !text.contains(owner) {
        return Err(fail("the dev config has no owner rule to narrow"));
    }
    let uid = nix::unistd::getuid().as_raw();
    let text = text.replacen(
        owner,
        &format!("keys = [{{ gun = \"{GUN}\", role = \"{ROLE}\" }}]"),
        1,
    ) + &format!(
        "\n[[policy]]\nname = \"bench-metadata\"\nuids = [{uid}]\n\
             keys = [{{ gun = \"{GUN}\", role = \"timestamp\" }}]\n\
             allow = [\"sign-metadata\", \"generate\", \"list\", \"public\"]\n"
    );
    std::fs::write(&path, text)?;
    Ok(())
}

/// A digest that differs per call, made outside the timed region.
fn digest(thread: usize, i: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((thread as u64).to_le_bytes());
    h.update(i.to_le_bytes());
    h.finalize().into()
}

/// A client connection and the call it makes.
struct Caller {
    signer: SignerClient<Channel>,
    keys: KeysClient<Channel>,
    mode: Mode,
    key_id: String,
}

impl Caller {
    /// One call: Sign for [`Mode::Sigild`], GetPublicKey for [`Mode::RpcOnly`]. The request
    /// is built before the clock starts; the returned instant is when the call was made.
    async fn call(&mut self, client: usize, i: u64) -> (Instant, Result<(), tonic::Status>) {
        if self.mode == Mode::RpcOnly {
            let request = pb::GetPublicKeyRequest {
                key_id: self.key_id.clone(),
            };
            let t0 = Instant::now();
            (t0, self.keys.get_public_key(request).await.map(drop))
        } else if self.mode == Mode::SignMetadata {
            let request = pb::SignRequest {
                key_id: self.key_id.clone(),
                payload: Some(pb::sign_request::Payload::Message(
                    METADATA_PAYLOAD.with(Clone::clone),
                )),
                encoding: pb::SignatureEncoding::Raw.into(),
            };
            let t0 = Instant::now();
            (t0, self.signer.sign(request).await.map(drop))
        } else {
            let request = sign_request(&self.key_id, digest(client, i));
            let t0 = Instant::now();
            (t0, self.signer.sign(request).await.map(drop))
        }
    }
}

async fn sigild_run(
    mode: Mode,
    socket: &Path,
    daemon_pid: u32,
    key_id: &str,
    clients: usize,
    o: &Options,
) -> Result<RunResult, BoxError> {
    let mut callers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let channel = connect(socket).await?;
        callers.push(Caller {
            signer: SignerClient::new(channel.clone()),
            keys: KeysClient::new(channel),
            mode,
            key_id: key_id.to_owned(),
        });
    }
    // One untimed call each, so connections are fully set up before the clock starts.
    for c in &mut callers {
        c.call(usize::MAX, 0)
            .await
            .1
            .map_err(|e| fail(format!("{}: {e}", mode.as_str())))?;
    }
    let start = Instant::now();
    let window = (
        start + o.load.warmup,
        start + o.load.warmup + o.load.duration,
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (c, mut caller) in callers.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0u64;
            loop {
                let (t0, result) = caller.call(c, i).await;
                i += 1;
                let t1 = Instant::now();
                if t1 >= window.1 {
                    break;
                }
                if !tally.record(&result, t1 - t0, t1 >= window.0, 100) {
                    break;
                }
            }
            tally
        });
    }
    // Sample CPU time at the window's edges; this task runs on the same runtime thread as
    // the clients, which is fine: it wakes twice.
    tokio::time::sleep_until(window.0.into()).await;
    let cpu0 = (
        bench::process_cpu_ns(None),
        bench::process_cpu_ns(Some(daemon_pid)),
        bench::machine_busy_ns(),
    );
    tokio::time::sleep_until(window.1.into()).await;
    let cpu1 = (
        bench::process_cpu_ns(None),
        bench::process_cpu_ns(Some(daemon_pid)),
        bench::machine_busy_ns(),
    );
    let mut tallies = Vec::with_capacity(clients);
    while let Some(t) = tasks.join_next().await {
        tallies.push(t?);
    }
    let mut r = summarize(mode, clients, o.load.duration, tallies)?;
    r.client_cpu_us = bench::per_operation_us(cpu0.0, cpu1.0, r.signatures);
    r.daemon_cpu_us = bench::per_operation_us(cpu0.1, cpu1.1, r.signatures);
    r.other_cpu_pct = bench::others_cpu_pct(
        (cpu0.2, cpu1.2),
        &[(cpu0.0, cpu1.0), (cpu0.1, cpu1.1)],
        o.load.duration,
    );
    Ok(r)
}

fn sign_request(key_id: &str, digest: [u8; 32]) -> pb::SignRequest {
    pb::SignRequest {
        key_id: key_id.to_owned(),
        payload: Some(pb::sign_request::Payload::Sha256Digest(digest.to_vec())),
        encoding: pb::SignatureEncoding::Raw.into(),
    }
}

fn summarize(
    mode: Mode,
    clients: usize,
    duration: Duration,
    tallies: Vec<Tally>,
) -> Result<RunResult, BoxError> {
    let all = Latencies::merge(tallies);
    if all.count() == 0 {
        return Err(fail(format!(
            "{}: no signature completed with {clients} clients{}",
            mode.as_str(),
            all.first_error
                .as_ref()
                .map_or_else(String::new, |e| format!("; first error: {e}"))
        )));
    }
    if let Some(e) = &all.first_error {
        eprintln!(
            "sigil-bench: {}: {} errors, first: {e}",
            mode.as_str(),
            all.errors
        );
    }
    let seconds = duration.as_secs_f64();
    let per_second = all.count() as f64 / seconds;
    Ok(RunResult {
        mode,
        clients,
        signatures: all.count() as u64,
        seconds,
        per_second,
        p50_us: all.quantile_us(0.50),
        p99_us: all.quantile_us(0.99),
        errors: all.errors,
        client_cpu_us: None,
        daemon_cpu_us: None,
        other_cpu_pct: None,
        rounds: 1,
        per_second_min: per_second,
        per_second_max: per_second,
    })
}

// ---------------------------------------------------------------------------------------------
// In-process, in a re-executed child with SOFTHSM2_CONF set.

/// Runs the in-process part for `clients` threads in a child process and reads its JSON.
fn in_process_run(dir: &Path, clients: usize, o: &Options) -> Result<RunResult, BoxError> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .arg(IN_PROCESS_FLAG)
        .arg(dir)
        .arg(clients.to_string())
        .arg(o.load.warmup.as_secs_f64().to_string())
        .arg(o.load.duration.as_secs_f64().to_string())
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            fail(format!(
                "cannot re-execute myself for the in-process run: {e}"
            ))
        })?;
    if !output.status.success() {
        return Err(fail(format!(
            "in-process run with {clients} threads failed ({})",
            output.status
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        fail(format!(
            "in-process run printed something other than its result ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        ))
    })
}

/// The child: `--in-process-child DIR THREADS WARMUP DURATION`.
fn in_process_child(args: &[String]) -> Result<RunResult, BoxError> {
    let [dir, threads, warmup, duration] = args else {
        return Err(fail(format!(
            "{IN_PROCESS_FLAG} wants DIR THREADS WARMUP DURATION"
        )));
    };
    let dir = Path::new(dir);
    let threads: usize = threads
        .parse()
        .map_err(|_| fail(format!("bad thread count {threads:?}")))?;
    let warmup = seconds("warmup", warmup)?;
    let duration = seconds("duration", duration)?;
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        return Err(fail("SOFTHSM2_CONF is not set"));
    }
    let module = SOFTHSM_MODULES
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or_else(|| fail("SoftHSM2 module not found"))?;
    let pin_path = dir.join("user.pin");
    if std::fs::metadata(&pin_path)?.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "{} is readable by others",
            pin_path.display()
        )));
    }
    let pin = std::fs::read_to_string(&pin_path)?;
    let pin = AuthPin::from(pin.trim_end_matches(['\n', '\r']));

    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx
        .get_slots_with_initialized_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim_end() == TOKEN_LABEL)
                .unwrap_or(false)
        })
        .ok_or_else(|| fail(format!("no token labelled {TOKEN_LABEL:?}")))?;
    // One session per thread, opened and logged in before the clock starts (login state is
    // per application, so only the first login does anything).
    let mut sessions = Vec::with_capacity(threads);
    for _ in 0..threads {
        let session = ctx.open_rw_session(slot)?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(e.into()),
        }
        sessions.push(session);
    }
    let key = *sessions[0]
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(KEY_LABEL.as_bytes().to_vec()),
        ])?
        .first()
        .ok_or_else(|| fail(format!("no private key labelled {KEY_LABEL:?}")))?;
    // An untimed signature per session, like the untimed first call per sigild client.
    for s in &sessions {
        s.sign(&Mechanism::Ecdsa, key, &digest(usize::MAX, 0))?;
    }

    // `start` lines the threads up; `done` and `release` keep them alive (and idle) until
    // the CPU time has been read, so none of it drops out of the sum with an exited thread.
    let start = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(Barrier::new(threads + 1));
    let release = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(t, session)| {
            let (start, done, release) =
                (Arc::clone(&start), Arc::clone(&done), Arc::clone(&release));
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let window = (began + warmup, began + warmup + duration);
                let mut tally = Tally::default();
                let mut i = 0u64;
                loop {
                    let d = digest(t, i);
                    i += 1;
                    let t0 = Instant::now();
                    let result = session.sign(&Mechanism::Ecdsa, key, &d);
                    let t1 = Instant::now();
                    if t1 >= window.1 {
                        break;
                    }
                    if !tally.record(&result, t1 - t0, t1 >= window.0, 100) {
                        break;
                    }
                }
                done.wait();
                release.wait();
                tally
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(warmup);
    let cpu0 = (bench::process_cpu_ns(None), bench::machine_busy_ns());
    done.wait();
    let cpu1 = (bench::process_cpu_ns(None), bench::machine_busy_ns());
    release.wait();
    let mut tallies = Vec::with_capacity(threads);
    for h in handles {
        tallies.push(
            h.join()
                .map_err(|_| fail("an in-process signing thread panicked"))?,
        );
    }
    let mut r = summarize(Mode::InProcess, threads, duration, tallies)?;
    r.client_cpu_us = bench::per_operation_us(cpu0.0, cpu1.0, r.signatures);
    r.other_cpu_pct = bench::others_cpu_pct((cpu0.1, cpu1.1), &[(cpu0.0, cpu1.0)], duration);
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Machine description.

/// What a blocking round trip between two threads costs on this machine: one thread writes a
/// byte to a socket pair and blocks reading the answer; the other reads it, busy-works for W µs
/// and answers. On bare metal the overhead is a few µs whatever W is; on some virtual machines
/// it jumps to tens of µs as soon as W is long enough for the waiting CPU to halt, which is
/// the situation of every thread hand-off in sigild's sign path (the client waits for the
/// daemon, the daemon's reactor waits for the token worker).
fn wake_test() -> Result<Vec<WakeCost>, BoxError> {
    use std::io::Write as _;
    use std::os::unix::net::UnixStream;
    const ROUNDS: usize = 3000;
    let mut out = Vec::new();
    for work_us in [0u64, 45] {
        let (mut near, mut far) = UnixStream::pair()?;
        let work = Duration::from_micros(work_us);
        let answerer = std::thread::spawn(move || -> io::Result<()> {
            let mut byte = [0u8; 1];
            for _ in 0..ROUNDS {
                far.read_exact(&mut byte)?;
                let until = Instant::now() + work;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                far.write_all(&byte)?;
            }
            Ok(())
        });
        let mut trips = Vec::with_capacity(ROUNDS);
        let mut byte = [1u8; 1];
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            near.write_all(&byte)?;
            near.read_exact(&mut byte)?;
            trips.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        answerer
            .join()
            .map_err(|_| fail("wake test thread panicked"))??;
        trips.sort_unstable();
        let p50 = trips[trips.len() / 2] as f64 / 1000.0;
        out.push(WakeCost {
            work_us,
            overhead_p50_us: (p50 - work_us as f64).max(0.0),
        });
    }
    Ok(out)
}
