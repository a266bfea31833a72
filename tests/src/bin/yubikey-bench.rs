//! yubikey-bench answers issue 5's benchmark: what does going through sigild cost on a YubiKey,
//! a device that takes milliseconds per signature, compared with the `yubikey` crate (the one
//! sigild's backend uses) called directly in-process on the same card, same key and slot, same
//! digest? (BENCHMARKS.md, "YubiKey".)
//!
//! It starts a virtual YubiKey (vyubikey + pcscd in a private mount and network namespace,
//! `vyubikey/harness.sh`; root needed), or uses a physical one with `--yubikey-serial N`, and
//! the release `sigild` with one `yubikey` backend (touch "never", so no one has to touch) inside
//! that namespace. One ECDSA P-256 root key is generated through sigild (slot 9c on a fresh
//! card). Then, in alternating rounds:
//!
//! * `in-process`: a child of this benchmark, re-executed inside the card's namespace, opens the
//!   card by serial with the `yubikey` crate and does what sigild's backend does per signature:
//!   `verify_pin` (9c's PIN policy is "always") then `piv::sign_data` over the SHA-256 digest.
//!   sigild is stopped meanwhile, so nothing else talks to the card.
//! * `sigild`: N clients on sigild's Unix socket calling `Signer/Sign` with that digest (the
//!   card serialises them: more clients only queue).
//!
//! It prints signatures/s, p50 and p99 for both, their ratio, and what sigild adds to p50.
//! Run it with `cargo run --release -p sigil-e2e --bin yubikey-bench -- --help`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sigil_e2e::bench::{self, BoxError, Flags, Latencies, Load, Tally, fail, loadavg, seconds};
use sigil_e2e::notary::Process;
use sigil_e2e::yubikey::{DEFAULT_PIN, VirtualYubikey, find_slot, vyubikey_bin};
use sigil_proto::sigil_v1 as pb;
use sigil_proto::sigil_v1::keys_client::KeysClient;
use sigil_proto::sigil_v1::signer_client::SignerClient;
use tonic::transport::Channel;

/// Hidden flag: run the in-process part (in the re-executed child) and print JSON.
const IN_PROCESS_FLAG: &str = "--in-process-child";
const GUN: &str = "bench.example/yubikey";
/// Serial of the virtual card.
const VIRTUAL_SERIAL: u32 = 5_400_777;

const USAGE: &str = "\
yubikey-bench: signatures/s and latency on a YubiKey through sigild vs. the yubikey crate in-process

usage: yubikey-bench [options]          (root: the virtual card runs in its own namespaces)
  --clients LIST        sigild client counts, comma-separated      (default 1,4)
  --duration SECS       measured time per run                       (default 5)
  --warmup SECS         unmeasured time before each run             (default 1)
  --repeat K            K alternating rounds; the median round of each cell is reported,
                        with the range                              (default 3)
  --sigild PATH         the daemon (default: target/release/sigild, built if missing)
  --yubikey-serial N    use this PHYSICAL YubiKey through the system pcscd instead of the
                        virtual one: generates a P-256 key (touch never) in slot 9c or a free
                        retired slot 82-95, and spends no PIN tries unless the PIN is wrong
  --pin PIN             the card's PIN                              (default 123456)
  --json                print the results as JSON instead of a table
  -h, --help            this text";

#[derive(Debug, Clone)]
struct Options {
    load: Load,
    repeat: usize,
    sigild: Option<PathBuf>,
    physical: Option<u32>,
    pin: String,
    json: bool,
}

/// One measured run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunResult {
    mode: String,
    clients: usize,
    signatures: u64,
    seconds: f64,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    #[serde(default)]
    per_second_min: f64,
    #[serde(default)]
    per_second_max: f64,
    #[serde(default)]
    rounds: usize,
    /// sigild's CPU time per signature over the window, µs (sigild runs only).
    #[serde(default)]
    daemon_cpu_us: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    device: String,
    duration_s: f64,
    warmup_s: f64,
    runs: Vec<RunResult>,
    /// sigild at 1 client over in-process: throughput ratio and added p50 (µs).
    throughput_ratio: Option<f64>,
    added_p50_us: Option<f64>,
    loadavg_before: String,
    loadavg_after: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(IN_PROCESS_FLAG) {
        return bench::child_main("yubikey-bench", || in_process_child(&args[1..]));
    }
    bench::main("yubikey-bench", USAGE, &args, parse_args, run)
}

fn parse_args(args: &[String]) -> Result<Option<Options>, BoxError> {
    let mut o = Options {
        load: Load {
            clients: vec![1, 4],
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
        },
        repeat: 3,
        sigild: None,
        physical: None,
        pin: DEFAULT_PIN.to_owned(),
        json: false,
    };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let flag = flag.as_str();
        match flag {
            "-h" | "--help" => return Ok(None),
            _ if o.load.take(flag, &mut flags)? => {}
            "--repeat" => {
                o.repeat = flags.positive(flag)?;
            }
            "--sigild" => o.sigild = Some(PathBuf::from(flags.value(flag)?)),
            "--yubikey-serial" => {
                o.physical = Some(
                    flags
                        .value(flag)?
                        .parse()
                        .map_err(|_| fail("--yubikey-serial needs a number"))?,
                );
            }
            "--pin" => o.pin = flags.value(flag)?,
            "--json" => o.json = true,
            other => return Err(fail(format!("unknown option {other}"))),
        }
    }
    Ok(Some(o))
}

/// Where the card is: the virtual one (its namespace) or a physical one (the system pcscd).
struct Device {
    serial: u32,
    /// Prefix that puts a command where the card is visible (`nsenter --mount=…`), or nothing.
    wrapper: Vec<String>,
    description: String,
    _card: Option<VirtualYubikey>,
}

impl Device {
    fn open(o: &Options) -> Result<Self, BoxError> {
        if let Some(serial) = o.physical {
            eprintln!(
                "yubikey-bench: using the PHYSICAL YubiKey {serial} through the system pcscd; \
                 a P-256 key will be generated on it (slot 9c, else a free retired slot)"
            );
            return Ok(Self {
                serial,
                wrapper: Vec::new(),
                description: format!("physical YubiKey, serial {serial}"),
                _card: None,
            });
        }
        if !nix::unistd::geteuid().is_root() {
            return Err(fail(
                "the virtual YubiKey needs root (unshare -m for its own pcscd); run as root, \
                 or use --yubikey-serial with a physical one",
            ));
        }
        // A release card when there is one (make bench builds it), else the debug build.
        let release = sigil_e2e::workspace_root().join("target/release/vyubikey");
        let bin = if release.is_file() {
            release
        } else {
            vyubikey_bin().to_owned()
        };
        let card = VirtualYubikey::start_with(&bin, VIRTUAL_SERIAL, "");
        Ok(Self {
            serial: VIRTUAL_SERIAL,
            wrapper: card
                .wrapper()
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect(),
            description: format!(
                "virtual YubiKey 5.4.3 ({}, pcscd + vpcd)",
                bin.strip_prefix(sigil_e2e::workspace_root())
                    .unwrap_or(&bin)
                    .display()
            ),
            _card: Some(card),
        })
    }

    fn command(&self, program: &Path) -> Command {
        match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

fn run(o: &Options) -> Result<(), BoxError> {
    let loadavg_before = loadavg();
    let sigild = match &o.sigild {
        Some(p) => {
            std::fs::canonicalize(p).map_err(|e| fail(format!("--sigild {}: {e}", p.display())))?
        }
        None => bench::release_binaries(&["sigil-daemon"], "--sigild PATH")?.join("sigild"),
    };
    let device = Device::open(o)?;
    let dir = tempfile::Builder::new()
        .prefix("yubikey-bench-")
        .tempdir()?;
    let config = write_config(dir.path(), &device, &o.pin)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // The key, generated through sigild.
    let daemon = start_sigild(&device, &sigild, dir.path(), &config)?;
    let socket = dir.path().join("sigild.sock");
    let key_id = rt.block_on(generate_key(&socket))?;
    stop(daemon, dir.path())?;
    let piv_tool = |args: &[&str]| {
        device
            .command(Path::new("yubico-piv-tool"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running yubico-piv-tool")
    };
    let slot = find_slot(piv_tool, &key_id)
        .ok_or_else(|| fail(format!("no PIV slot holds the new key {key_id}")))?;
    eprintln!(
        "yubikey-bench: key {key_id} in slot {slot} of YubiKey {}",
        device.serial
    );
    let digest: [u8; 32] = sigil_e2e::sha256(b"yubikey-bench: the same digest for both");

    let mut all = Vec::new();
    for round in 0..o.repeat {
        let r = in_process_run(&device, &slot, &key_id, &digest, o)?;
        progress(round, &r);
        all.push(r);
        let daemon = start_sigild(&device, &sigild, dir.path(), &config)?;
        for &clients in &o.load.clients {
            let r = rt.block_on(sigild_run(
                &socket,
                daemon.pid(),
                &key_id,
                &digest,
                clients,
                o,
            ))?;
            progress(round, &r);
            all.push(r);
        }
        stop(daemon, dir.path())?;
    }
    let runs = medians(all);
    let inproc = runs.iter().find(|r| r.mode == "in-process");
    let one = runs.iter().find(|r| r.mode == "sigild" && r.clients == 1);
    let report = Report {
        device: device.description.clone(),
        duration_s: o.load.duration.as_secs_f64(),
        warmup_s: o.load.warmup.as_secs_f64(),
        throughput_ratio: inproc.zip(one).map(|(a, b)| b.per_second / a.per_second),
        added_p50_us: inproc.zip(one).map(|(a, b)| b.p50_us - a.p50_us),
        runs,
        loadavg_before,
        loadavg_after: loadavg(),
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn write_config(dir: &Path, device: &Device, pin: &str) -> Result<PathBuf, BoxError> {
    use std::os::unix::fs::PermissionsExt as _;
    let pin_file = dir.join("yubikey.pin");
    std::fs::write(&pin_file, format!("{pin}\n"))?;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600))?;
    let text = format!(
        "[server]\nsocket = {socket:?}\naudit_log = {audit:?}\nstate_dir = {state:?}\n\n\
         [[backend]]\nname = \"yubikey\"\ntype = \"yubikey\"\nserial = {serial}\n\
         pin_file = {pin_file:?}\ntouch_root = \"never\"\nallow_default_management_key = true\n\n\
         [[policy]]\nname = \"bench\"\nuids = [{uid}]\nkeys = [{{ gun = \"{GUN}\", role = \"*\" }}]\n\
         allow = [\"sign\", \"public\", \"list\", \"generate\"]\n",
        socket = dir.join("sigild.sock"),
        audit = dir.join("audit.jsonl"),
        state = dir.join("state"),
        serial = device.serial,
        uid = nix::unistd::getuid().as_raw(),
    );
    let path = dir.join("sigild.toml");
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

/// sigild (release) where the card is visible; returns once its socket accepts connections.
fn start_sigild(
    device: &Device,
    sigild: &Path,
    dir: &Path,
    config: &Path,
) -> Result<Process, BoxError> {
    let socket = dir.join("sigild.sock");
    let _ = std::fs::remove_file(&socket);
    let mut cmd = device.command(sigild);
    cmd.arg("--config")
        .arg(config)
        .env_remove("SIGIL_CONFIG")
        .env("SIGIL_LOG", "warn");
    let mut daemon = Process::spawn("sigild", &mut cmd, &dir.join("sigild.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if daemon.exited().is_some() || Instant::now() > deadline {
            return Err(fail(format!("sigild did not serve:\n{}", daemon.log())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(daemon)
}

fn stop(daemon: Process, dir: &Path) -> Result<(), BoxError> {
    match daemon.stop() {
        Some(status) if status.success() => Ok(()),
        status => Err(fail(format!(
            "sigild did not stop cleanly ({status:?}):\n{}",
            std::fs::read_to_string(dir.join("sigild.log")).unwrap_or_default()
        ))),
    }
}

/// One HTTP/2 connection of its own on sigild's socket.
async fn connect(socket: &Path) -> Result<Channel, BoxError> {
    sigil_e2e::unix_channel(sigil_e2e::unix_endpoint(), socket)
        .await
        .map_err(|e| fail(format!("connecting to {}: {e}", socket.display())))
}

async fn generate_key(socket: &Path) -> Result<String, BoxError> {
    let mut keys = KeysClient::new(connect(socket).await?);
    let key = keys
        .generate_key(pb::GenerateKeyRequest {
            backend: String::new(),
            role: "root".into(),
            gun: GUN.into(),
            algorithm: pb::Algorithm::EcdsaP256.into(),
        })
        .await
        .map_err(|s| fail(format!("GenerateKey: {s}")))?
        .into_inner();
    Ok(key.key_id)
}

async fn sigild_run(
    socket: &Path,
    pid: u32,
    key_id: &str,
    digest: &[u8; 32],
    clients: usize,
    o: &Options,
) -> Result<RunResult, BoxError> {
    let request = pb::SignRequest {
        key_id: key_id.to_owned(),
        payload: Some(pb::sign_request::Payload::Sha256Digest(digest.to_vec())),
        encoding: pb::SignatureEncoding::Raw.into(),
    };
    let mut signers = Vec::new();
    for _ in 0..clients {
        let mut signer = SignerClient::new(connect(socket).await?);
        // One untimed call: the connection is set up and the PIN checked before the clock.
        signer
            .sign(request.clone())
            .await
            .map_err(|s| fail(format!("Sign: {s}")))?;
        signers.push(signer);
    }
    let start = Instant::now();
    let window = (
        start + o.load.warmup,
        start + o.load.warmup + o.load.duration,
    );
    let mut tasks = tokio::task::JoinSet::new();
    for mut signer in signers {
        let request = request.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let t0 = Instant::now();
                let result = signer.sign(request.clone()).await;
                let t1 = Instant::now();
                if t1 >= window.1 {
                    break;
                }
                if !tally.record(&result, t1 - t0, t0 >= window.0, 20) {
                    break;
                }
            }
            tally
        });
    }
    tokio::time::sleep_until(window.0.into()).await;
    let cpu0 = bench::process_cpu_ns(Some(pid));
    tokio::time::sleep_until(window.1.into()).await;
    let cpu1 = bench::process_cpu_ns(Some(pid));
    let mut tallies = Vec::new();
    while let Some(t) = tasks.join_next().await {
        tallies.push(t?);
    }
    let mut r = summarize("sigild", clients, o.load.duration, tallies)?;
    r.daemon_cpu_us = cpu0
        .zip(cpu1)
        .filter(|_| r.signatures > 0)
        .map(|(a, b)| b.saturating_sub(a) as f64 / 1000.0 / r.signatures as f64);
    Ok(r)
}

/// Runs the in-process part in a child where the card is visible, and reads its JSON.
fn in_process_run(
    device: &Device,
    slot: &str,
    key_id: &str,
    digest: &[u8; 32],
    o: &Options,
) -> Result<RunResult, BoxError> {
    let exe = std::env::current_exe()?;
    let output = device
        .command(&exe)
        .arg(IN_PROCESS_FLAG)
        .arg(device.serial.to_string())
        .arg(slot)
        .arg(key_id)
        .arg(hex::encode(digest))
        .arg(o.load.warmup.as_secs_f64().to_string())
        .arg(o.load.duration.as_secs_f64().to_string())
        .env("YUBIKEY_BENCH_PIN", &o.pin)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(fail(format!("in-process child failed ({})", output.status)));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The child: open the card by serial, then verify the PIN and sign, as sigild's backend does.
fn in_process_child(args: &[String]) -> Result<RunResult, BoxError> {
    use yubikey::piv::{self, AlgorithmId, SlotId};
    let [serial, slot, key_id, digest, warmup, duration] = args else {
        return Err(fail("usage: SERIAL SLOT KEY_ID DIGEST_HEX WARMUP DURATION"));
    };
    let serial: u32 = serial.parse()?;
    let slot = SlotId::try_from(u8::from_str_radix(slot, 16)?)
        .map_err(|e| fail(format!("slot {slot}: {e}")))?;
    let digest = hex::decode(digest)?;
    let warmup = seconds("warmup", warmup)?;
    let duration = seconds("duration", duration)?;
    let pin = std::env::var("YUBIKEY_BENCH_PIN").unwrap_or_else(|_| DEFAULT_PIN.to_owned());
    let mut yk = yubikey::YubiKey::open_by_serial(yubikey::Serial(serial))
        .map_err(|e| fail(format!("opening YubiKey {serial}: {e}")))?;
    let sign = |yk: &mut yubikey::YubiKey| -> Result<Vec<u8>, BoxError> {
        yk.verify_pin(pin.as_bytes())
            .map_err(|e| fail(format!("verify_pin: {e}")))?;
        let der = piv::sign_data(yk, &digest, AlgorithmId::EccP256, slot)
            .map_err(|e| fail(format!("sign_data: {e}")))?;
        Ok(der.to_vec())
    };
    // The first signature is checked against the key sigild generated: same key, same slot.
    let der = sign(&mut yk)?;
    let raw = p256::ecdsa::Signature::from_der(&der)
        .map_err(|e| fail(format!("signature is not DER ECDSA: {e}")))?;
    check_same_key(&mut yk, slot, key_id, &digest, &raw.to_bytes())?;
    let start = Instant::now();
    let window = (start + warmup, start + warmup + duration);
    let mut tally = Tally::default();
    loop {
        let t0 = Instant::now();
        let result = sign(&mut yk);
        let t1 = Instant::now();
        if t1 >= window.1 {
            break;
        }
        if !tally.record(&result, t1 - t0, t0 >= window.0, 20) {
            break;
        }
    }
    summarize("in-process", 1, duration, vec![tally])
}

/// The slot's certificate key is `key_id` and verifies the signature.
fn check_same_key(
    yk: &mut yubikey::YubiKey,
    slot: yubikey::piv::SlotId,
    key_id: &str,
    digest: &[u8],
    raw: &[u8],
) -> Result<(), BoxError> {
    use p256::pkcs8::EncodePublicKey as _;
    let cert = yubikey::Certificate::read(yk, slot)
        .map_err(|e| fail(format!("reading the slot's certificate: {e}")))?;
    let point = cert.subject_pki().subject_public_key.raw_bytes();
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
        .map_err(|e| fail(format!("slot key: {e}")))?;
    let spki = key
        .to_public_key_der()
        .map_err(|e| fail(format!("slot key: {e}")))?;
    if sigil_e2e::sha256_hex(spki.as_bytes()) != key_id {
        return Err(fail("the slot holds another key than sigild generated"));
    }
    let public = sigil_tuf::key::PublicKey::from_spki_der(spki.as_bytes())
        .map_err(|e| fail(format!("slot key: {e}")))?;
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| fail("digest is not 32 bytes"))?;
    public
        .verify_digest(&digest, raw)
        .map_err(|e| fail(format!("the in-process signature does not verify: {e}")))
}

fn summarize(
    mode: &str,
    clients: usize,
    duration: Duration,
    tallies: Vec<Tally>,
) -> Result<RunResult, BoxError> {
    let all = Latencies::merge(tallies);
    if let Some(e) = &all.first_error {
        eprintln!("yubikey-bench: {mode}: {} errors, first: {e}", all.errors);
    }
    if all.count() == 0 {
        return Err(fail(format!("{mode}: no signature completed")));
    }
    let per_second = all.count() as f64 / duration.as_secs_f64();
    Ok(RunResult {
        mode: mode.to_owned(),
        clients,
        signatures: all.count() as u64,
        seconds: duration.as_secs_f64(),
        per_second,
        p50_us: all.quantile_us(0.5),
        p99_us: all.quantile_us(0.99),
        errors: all.errors,
        per_second_min: per_second,
        per_second_max: per_second,
        rounds: 1,
        daemon_cpu_us: None,
    })
}

fn progress(round: usize, r: &RunResult) {
    eprintln!(
        "yubikey-bench: round {} {:>10} {:>2} clients: {:>7.1} sig/s, p50 {:>8.0} µs, p99 {:>8.0} µs",
        round + 1,
        r.mode,
        r.clients,
        r.per_second,
        r.p50_us,
        r.p99_us
    );
}

/// Per (mode, clients): the median round by signatures/s, with the range over the rounds.
fn medians(all: Vec<RunResult>) -> Vec<RunResult> {
    let mut cells: Vec<(String, usize)> = Vec::new();
    for r in &all {
        if !cells.contains(&(r.mode.clone(), r.clients)) {
            cells.push((r.mode.clone(), r.clients));
        }
    }
    cells
        .into_iter()
        .filter_map(|(mode, clients)| {
            let mut rounds: Vec<&RunResult> = all
                .iter()
                .filter(|r| r.mode == mode && r.clients == clients)
                .collect();
            rounds.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
            let mut median = (*rounds.get(rounds.len() / 2)?).clone();
            median.per_second_min = rounds.first()?.per_second;
            median.per_second_max = rounds.last()?.per_second;
            median.rounds = rounds.len();
            Some(median)
        })
        .collect()
}

fn print_table(report: &Report) {
    println!(
        "device: {}; {} s per run after {} s warm-up; load {} -> {}",
        report.device,
        report.duration_s,
        report.warmup_s,
        report.loadavg_before,
        report.loadavg_after
    );
    println!();
    println!("| mode | clients | sig/s [range] | p50 µs | p99 µs | sigild CPU µs/sig | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &report.runs {
        println!(
            "| {} | {} | {:.1} [{:.1}–{:.1}] | {:.0} | {:.0} | {} | {} |",
            r.mode,
            r.clients,
            r.per_second,
            r.per_second_min,
            r.per_second_max,
            r.p50_us,
            r.p99_us,
            r.daemon_cpu_us
                .map_or_else(String::new, |c| format!("{c:.0}")),
            r.errors
        );
    }
    println!();
    match (report.throughput_ratio, report.added_p50_us) {
        (Some(ratio), Some(added)) => println!(
            "sigild / in-process at 1 client: {ratio:.3}x signatures/s, {added:+.0} µs p50"
        ),
        _ => println!("no ratio: a mode did not run"),
    }
}
