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

#[path = "sigil_bench/daemon.rs"]
mod daemon;
#[path = "sigil_bench/in_process.rs"]
mod in_process;
#[path = "sigil_bench/report.rs"]
mod report;

use daemon::{Daemon, count_lines, locate_sigild};
use in_process::{in_process_child, in_process_run, wake_test};
use report::{medians, print_table, progress, ratios};

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
  --no-metadata         leave out the sign-metadata rows (and their policy: for a sigild from
                        before sign-metadata, to compare the blind rows)
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
    no_metadata: bool,
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
        no_metadata: false,
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
            "--no-metadata" => o.no_metadata = true,
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
    if !o.no_metadata {
        metadata_policy(&sigild, &dir_path)?;
    }
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
                let mut modes = vec![Mode::Sigild];
                if !o.no_metadata {
                    modes.push(Mode::SignMetadata);
                }
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
