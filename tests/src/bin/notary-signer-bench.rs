//! notary-signer-bench exists to answer one question with numbers: for what notary-server asks
//! of its signer on every publish (`proto.Signer/Sign` over mutual TLS), how does sigild's
//! notary-signer endpoint, with its keys on a SoftHSM token, compare with the real
//! notary-signer 0.7.0 keeping software keys in memory? (Issue 4, BENCHMARKS.md.)
//!
//! It makes a throwaway PKI, starts (a) the real `notary-signer` (memory storage) and (b) the
//! release `sigild` with `[notary_signer]` on a fresh SoftHSM token, creates one ECDSA P-256
//! timestamp key on each through `proto.KeyManagement/CreateKey`, checks one signature from
//! each, then for each client count N drives both with the same client: N concurrent clients,
//! each on its own mutual-TLS connection, signing the same 1 KiB canonical timestamp payload
//! in a loop. Runs of (a) and (b) alternate (several rounds, the median is reported) so that
//! load from other processes on a shared machine hits both alike. It prints throughput, p50,
//! p99 and the signer process's CPU time per signature for both, the ratio b/a, and how busy
//! other processes kept the machine meanwhile.
//!
//! Run it with `cargo run --release -p sigil-e2e --bin notary-signer-bench -- --help`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use sigil_e2e::DevDir;
use sigil_e2e::bench::{self, BoxError, Flags, Load, cell, fail, loadavg};
use sigil_e2e::notary::{
    NotarySigner, Pki, Process, SERVER_CLIENT_CN, SignerApi, connect_signer, free_port,
    notary_key_id, read_audit_lines, require_notary, verify_notary_signature, wait_mtls,
    write_sigild_config,
};

#[path = "notary_signer_bench/external.rs"]
mod external;
#[path = "notary_signer_bench/report.rs"]
mod report;

use external::external_run;
use report::{median, print_table, slowest};

const USAGE: &str = "\
notary-signer-bench: proto.Signer/Sign through sigild (SoftHSM) vs. the real notary-signer

usage: notary-signer-bench [options]
  --clients LIST        concurrent clients, comma-separated       (default 1,4,16)
  --duration SECS       measured time per run                      (default 3)
  --warmup SECS         unmeasured time before each run            (default 0.5)
  --rounds N            runs per target and client count, alternating (a) and (b); the
                        median run is reported                     (default 3)
  --client-threads N    tokio worker threads for the clients; 1 = current-thread runtime,
                        the lightest on a small machine            (default 1)
  --load-generator PATH drive each run with this external notary-signer load generator
                        instead of the built-in clients: a program taking signer-load's
                        flags (--addr --ca --cert --key --concurrency --duration --json
                        --watch-pid ...) and printing its JSON line; it makes its own key
                        per run and verifies sampled signatures (BENCHMARKS.md)
  --sigild PATH         the daemon (default: `cargo build --release -p sigil-daemon`, then
                        target/release/sigild)
  --metrics             run sigild with [metrics] on (never scraped): what counting costs
  --json                print the results as JSON instead of a table
  -h, --help            this text";

/// Role and GUN of the benchmark keys.
const ROLE: &str = "timestamp";
const GUN: &str = "bench.example/notary-signer";
/// Size of the signed payload.
const PAYLOAD_BYTES: usize = 1024;

#[derive(Debug)]
struct Options {
    load: Load,
    rounds: usize,
    client_threads: usize,
    load_generator: Option<PathBuf>,
    metrics: bool,
    sigild: Option<PathBuf>,
    json: bool,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct RunResult {
    /// `notary-signer` or `sigild`.
    target: &'static str,
    clients: usize,
    signatures: u64,
    seconds: f64,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU time of the signer process per signature (warm-up included), µs.
    server_cpu_us_per_sig: Option<f64>,
    /// CPU used by other processes during the run, % of the machine (noise indicator).
    others_cpu_pct: Option<f64>,
}

/// sigild (b) against notary-signer (a) at one client count.
#[derive(Debug, Clone, Serialize)]
struct Ratio {
    clients: usize,
    /// Throughput b/a (≥ 1.0: sigild is at least as fast).
    throughput_b_over_a: f64,
    /// p50 latency b/a (≤ 1.0: sigild answers at least as fast).
    p50_b_over_a: f64,
    /// Stability: the slowest run's throughput over the median run's, for (a) and (b).
    a_min_over_median: f64,
    b_min_over_median: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    nproc: usize,
    loadavg_before: String,
    loadavg_after: String,
    payload_bytes: usize,
    duration_s: f64,
    warmup_s: f64,
    client_threads: usize,
    rounds: usize,
    sigild_audit_lines: usize,
    /// Every run, in the order measured.
    all_runs: Vec<RunResult>,
    /// The median run (by throughput) of each target and client count.
    runs: Vec<RunResult>,
    ratios: Vec<Ratio>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    bench::main("notary-signer-bench", USAGE, &args, parse_args, run)
}

fn parse_args(args: &[String]) -> Result<Option<Options>, BoxError> {
    let mut o = Options {
        load: Load::default(),
        rounds: 3,
        client_threads: 1,
        load_generator: None,
        metrics: false,
        sigild: None,
        json: false,
    };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let flag = flag.as_str();
        match flag {
            "-h" | "--help" => return Ok(None),
            _ if o.load.take(flag, &mut flags)? => {}
            "--rounds" => {
                o.rounds = flags.positive(flag)?;
            }
            "--client-threads" => {
                o.client_threads = flags.positive(flag)?;
            }
            "--sigild" => o.sigild = Some(PathBuf::from(flags.value(flag)?)),
            "--load-generator" => o.load_generator = Some(PathBuf::from(flags.value(flag)?)),
            "--json" => o.json = true,
            "--metrics" => o.metrics = true,
            other => return Err(fail(format!("unknown argument {other:?}"))),
        }
    }
    if o.load.duration.is_zero() {
        return Err(fail("--duration must be more than 0"));
    }
    Ok(Some(o))
}

/// The release sigild: `--sigild`, else built from the current sources.
fn locate_sigild(explicit: Option<&Path>) -> Result<PathBuf, BoxError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => bench::release_binaries(&["sigil-daemon"], "--sigild")?.join("sigild"),
    };
    if !path.is_file() {
        return Err(fail(format!("no sigild at {}", path.display())));
    }
    Ok(path)
}

/// The release sigild with `[notary_signer]`, on a fresh `--dev` token.
struct Sigild {
    process: Process,
    port: u16,
    audit_log: PathBuf,
}

impl Sigild {
    fn start(binary: &Path, dev: &DevDir, pki: &Pki, metrics: bool) -> Result<Self, BoxError> {
        let check = Command::new(binary)
            .arg("--dev")
            .arg(dev.path())
            .arg("--check")
            .env_remove("SOFTHSM2_CONF")
            .env_remove("SIGIL_CONFIG")
            .env_remove("SIGIL_LOG")
            .stdin(Stdio::null())
            .output()?;
        if !check.status.success() {
            return Err(fail(format!(
                "sigild --dev --check failed ({}):\n{}",
                check.status,
                String::from_utf8_lossy(&check.stderr)
            )));
        }
        let port = free_port();
        let config = write_sigild_config(dev, port, pki, &[SERVER_CLIENT_CN]);
        // An external load generator signs a fixed timestamp that expires in 2036: the
        // operator's [[metadata]] rule for the bench GUN admits it (the default is 14 days).
        let mut text = sigil_e2e::read_text(&config);
        text.push_str(&format!(
            "\n[[metadata]]\nrole = \"{ROLE}\"\ngun = \"{GUN}\"\nmax_expires = \"4000d\"\n"
        ));
        if metrics {
            // Counted but never scraped: what counting costs the sign path.
            text.push_str(&format!(
                "\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
                free_port()
            ));
        }
        sigil_e2e::write_file(&config, text, 0o600);
        let mut cmd = Command::new(binary);
        cmd.arg("--config")
            .arg(&config)
            .env("SOFTHSM2_CONF", dev.softhsm_conf())
            .env_remove("SIGIL_CONFIG")
            .env_remove("SIGIL_LOG");
        let mut process = Process::spawn("sigild", &mut cmd, &dev.logs().join("sigild.log"));
        let log = process.log_path().to_owned();
        wait_mtls(
            port,
            &pki.ca(),
            &pki.client(),
            Duration::from_secs(20),
            || process.exited().is_none(),
            || sigil_e2e::read_text(&log),
        );
        Ok(Self {
            process,
            port,
            audit_log: dev.audit_log(),
        })
    }
}

/// Creates the timestamp key on a signer and checks one signature from it; returns its id.
async fn prepare(port: u16, pki: &Pki, content: &[u8], name: &str) -> Result<String, BoxError> {
    let mut api = connect_signer(port, &pki.ca(), Some(&pki.client())).await?;
    let created = api.create_key("ecdsa", ROLE, GUN).await?;
    let id = created
        .key_info
        .and_then(|k| k.key_id)
        .map(|k| k.id)
        .ok_or_else(|| fail(format!("{name}: CreateKey returned no key id")))?;
    if id != notary_key_id("ecdsa", &created.public_key) {
        return Err(fail(format!(
            "{name}: key id {id} is not the Notary key id"
        )));
    }
    let signature = api.sign(&id, content).await?;
    verify_notary_signature(
        "ecdsa",
        &created.public_key,
        "ecdsa",
        content,
        &signature.content,
    )
    .map_err(|e| fail(format!("{name}: signature does not verify: {e}")))?;
    Ok(id)
}

/// CPU readings at the start or end of a run.
#[derive(Clone, Copy)]
struct Cpu {
    machine: Option<u64>,
    server: Option<u64>,
    bench: Option<u64>,
    at: Instant,
}

impl Cpu {
    fn now(server: u32) -> Self {
        Self {
            machine: bench::machine_busy_ns(),
            server: bench::process_cpu_ns(Some(server)),
            bench: bench::process_cpu_ns(None),
            at: Instant::now(),
        }
    }
}

/// One client's loop: sign until `end`, keeping latencies of what finished after `measure`;
/// also returns how many signatures it made in all.
async fn client_loop(
    mut api: SignerApi,
    id: String,
    content: Vec<u8>,
    measure: Instant,
    end: Instant,
) -> Result<(Vec<Duration>, u64), BoxError> {
    let mut latencies = Vec::new();
    let mut total = 0;
    loop {
        let started = Instant::now();
        if started >= end {
            return Ok((latencies, total));
        }
        api.sign(&id, &content).await?;
        total += 1;
        let done = Instant::now();
        if started >= measure {
            latencies.push(done - started);
        }
    }
}

/// Where one target listens.
#[derive(Clone, Copy)]
struct Target<'a> {
    name: &'static str,
    port: u16,
    pid: u32,
    key_id: &'a str,
}

async fn measure(
    target: Target<'_>,
    pki: &Pki,
    content: &[u8],
    clients: usize,
    o: &Options,
) -> Result<RunResult, BoxError> {
    let result = match &o.load_generator {
        Some(program) => external_run(program, target, pki, clients, o)?,
        None => built_in_run(target, pki, content, clients, o).await?,
    };
    eprintln!(
        "notary-signer-bench: {:<13} {:>3} clients: {:>7.0}/s  p50 {:>7.0} µs  p99 {:>7.0} µs  \
         server CPU/sig {} µs, others {}%",
        result.target,
        result.clients,
        result.per_second,
        result.p50_us,
        result.p99_us,
        cell(result.server_cpu_us_per_sig),
        cell(result.others_cpu_pct)
    );
    Ok(result)
}

/// One run of the built-in clients: `clients` connections from this process, each signing
/// `content` in a loop.
async fn built_in_run(
    target: Target<'_>,
    pki: &Pki,
    content: &[u8],
    clients: usize,
    o: &Options,
) -> Result<RunResult, BoxError> {
    let mut apis = Vec::with_capacity(clients);
    for _ in 0..clients {
        apis.push(connect_signer(target.port, &pki.ca(), Some(&pki.client())).await?);
    }
    let before = Cpu::now(target.pid);
    let start = Instant::now();
    let measure_from = start + o.load.warmup;
    let end = measure_from + o.load.duration;
    let tasks: Vec<_> = apis
        .into_iter()
        .map(|api| {
            tokio::spawn(client_loop(
                api,
                target.key_id.to_owned(),
                content.to_vec(),
                measure_from,
                end,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut total = 0u64;
    for task in tasks {
        let (l, n) = task.await??;
        latencies.extend(l);
        total += n;
    }
    let after = Cpu::now(target.pid);
    let seconds = o.load.duration.as_secs_f64();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    let others_cpu_pct = bench::others_cpu_pct(
        (before.machine, after.machine),
        &[(before.server, after.server), (before.bench, after.bench)],
        after.at - before.at,
    );
    let result = RunResult {
        target: target.name,
        clients,
        signatures: latencies.len() as u64,
        seconds,
        per_second: latencies.len() as f64 / seconds,
        p50_us: quantile(0.50),
        p99_us: quantile(0.99),
        server_cpu_us_per_sig: bench::per_operation_us(before.server, after.server, total),
        others_cpu_pct,
    };
    Ok(result)
}

fn run(o: &Options) -> Result<(), BoxError> {
    require_notary();
    let loadavg_before = loadavg();
    let binary = locate_sigild(o.sigild.as_deref())?;
    let dev = DevDir::new();
    let pki = Pki::new(&dev.root().join("pki"), "notary-signer-bench");
    let notary_signer = NotarySigner::start(&dev.root().join("notary-signer"), &pki);
    let sigild = Sigild::start(&binary, &dev, &pki, o.metrics)?;
    eprintln!(
        "notary-signer-bench: (a) notary-signer pid {} on 127.0.0.1:{}, (b) sigild pid {} on \
         127.0.0.1:{} ({})",
        notary_signer.pid(),
        notary_signer.port(),
        sigild.process.pid(),
        sigild.port,
        binary.display()
    );
    let content = sigil_e2e::metadata::timestamp_payload(42, PAYLOAD_BYTES);
    let rt = if o.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.client_threads)
            .enable_all()
            .build()?
    };
    let all_runs = rt.block_on(async {
        let a_id = prepare(notary_signer.port(), &pki, &content, "notary-signer").await?;
        let b_id = prepare(sigild.port, &pki, &content, "sigild").await?;
        let a = Target {
            name: "notary-signer",
            port: notary_signer.port(),
            pid: notary_signer.pid(),
            key_id: &a_id,
        };
        let b = Target {
            name: "sigild",
            port: sigild.port,
            pid: sigild.process.pid(),
            key_id: &b_id,
        };
        let mut runs = Vec::new();
        for &n in &o.load.clients {
            for round in 0..o.rounds {
                // Alternate which goes first, so drifting load hits both alike.
                let order = if round % 2 == 0 { [a, b] } else { [b, a] };
                for target in order {
                    runs.push(measure(target, &pki, &content, n, o).await?);
                }
            }
        }
        Ok::<_, BoxError>(runs)
    })?;
    let sigild_audit_lines = read_audit_lines(&sigild.audit_log)
        .iter()
        .filter(|l| l.op == "sign")
        .count();
    let runs: Vec<RunResult> = o
        .load
        .clients
        .iter()
        .flat_map(|&n| {
            [
                median(&all_runs, "notary-signer", n),
                median(&all_runs, "sigild", n),
            ]
        })
        .flatten()
        .collect();
    let ratios: Vec<Ratio> = o
        .load
        .clients
        .iter()
        .filter_map(|&n| {
            let a = runs
                .iter()
                .find(|r| r.clients == n && r.target == "notary-signer")?;
            let b = runs
                .iter()
                .find(|r| r.clients == n && r.target == "sigild")?;
            Some(Ratio {
                clients: n,
                throughput_b_over_a: b.per_second / a.per_second,
                p50_b_over_a: b.p50_us / a.p50_us,
                a_min_over_median: slowest(&all_runs, a.target, n) / a.per_second,
                b_min_over_median: slowest(&all_runs, b.target, n) / b.per_second,
            })
        })
        .collect();
    let report = Report {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg_before,
        loadavg_after: loadavg(),
        payload_bytes: content.len(),
        duration_s: o.load.duration.as_secs_f64(),
        warmup_s: o.load.warmup.as_secs_f64(),
        client_threads: o.client_threads,
        rounds: o.rounds,
        sigild_audit_lines,
        all_runs,
        runs,
        ratios,
    };
    drop(sigild);
    drop(notary_signer);
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}
