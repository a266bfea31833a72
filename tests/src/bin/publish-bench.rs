//! publish-bench answers issue 3's benchmark with numbers: how long does publishing 10,000
//! targets (known by size and hash, as docker tags are) take with `sigil` signing through
//! sigild on a SoftHSM token, compared with the real `notary` 0.7.0 client, against the same
//! real notary-server? (BENCHMARKS.md, "Publishing 10,000 targets".)
//!
//! It makes a throwaway PKI, starts the real notary-signer (memory storage; or no signer with
//! `--trust-service local`), the real notary-server using it, and the release `sigild --dev` on a
//! fresh SoftHSM token, then for two GUNs, each from a fresh trust dir after an `init -p` that
//! is timed on its own:
//!
//! * (a) `sigil addhash GUN --manifest FILE` (N lines `NAME SIZE sha256:HEX`), then
//!   `sigil publish GUN`;
//! * (b) `notary addhash GUN NAME SIZE --sha256 HEX` N times, one process after the other as a
//!   user's shell loop would run them, then `notary publish GUN`;
//!
//! and times each command's wall clock (spawn to exit). Both publishes are then checked with
//! the real `notary list` from fresh trust dirs: N rows each, every name, size and digest as
//! staged. It prints a table and the ratio notary/sigil.
//!
//! Run it with `cargo run --release -p sigil-e2e --bin publish-bench -- --help`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use sigil_e2e::DevDir;
use sigil_e2e::bench::{self, BoxError, Flags, fail, start_sigild, timed, timed_ok};
use sigil_e2e::notary::{
    NotaryClient, NotaryServer, NotarySigner, Pki, TrustService, read_audit_lines, require_notary,
};

const USAGE: &str = "\
publish-bench: publish N targets (addhash) with sigil (sigild, SoftHSM) vs. the real notary client

usage: publish-bench [options]
  --targets N             targets to publish                             (default 10000)
  --trust-service KIND    notary-server's timestamp key: `notary-signer` (the real notary-signer,
                          memory storage) or `local` (in notary-server)  (default notary-signer)
  --sigild PATH           the daemon     (default: built with `cargo build --release`, then
  --sigil PATH            the CLI         target/release/sigild and target/release/sigil)
  --json                  print the results as JSON instead of a table
  -h, --help              this text

Trust dirs, the SoftHSM token and the manifest go in a fresh directory under $TMPDIR (default
/tmp): the file system there is part of what is measured (both clients keep one changelist
file per staged target).";

/// The two collections.
const SIGIL_GUN: &str = "bench.example/sigil";
const NOTARY_GUN: &str = "bench.example/notary";

#[derive(Debug)]
struct Options {
    targets: usize,
    local: bool,
    sigild: Option<PathBuf>,
    sigil: Option<PathBuf>,
    json: bool,
}

/// One client's measurements, seconds.
#[derive(Debug, Clone, Serialize)]
struct Mode {
    /// `sigil` or `notary`.
    mode: &'static str,
    gun: &'static str,
    targets: usize,
    /// Processes run for the add step.
    add_processes: usize,
    init_s: f64,
    add_s: f64,
    publish_s: f64,
    /// add + publish (init excluded).
    total_s: f64,
    targets_per_s: f64,
    /// Rows `notary list` showed afterwards, all matching what was staged.
    listed: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    nproc: usize,
    cpu: String,
    uptime_before: String,
    uptime_after: String,
    /// Where the trust dirs, the token and the manifest were (`$TMPDIR`).
    workdir: String,
    sigil_version: String,
    notary_version: String,
    trust_service: &'static str,
    targets: usize,
    /// Signatures sigild made (audit log) for sigil's publish of the targets.
    sigild_signatures_for_publish: usize,
    results: Vec<Mode>,
    /// notary total / sigil total (add + publish).
    ratio_total: f64,
    /// notary publish / sigil publish.
    ratio_publish: f64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    bench::main("publish-bench", USAGE, &args, parse_args, run)
}

fn parse_args(args: &[String]) -> Result<Option<Options>, BoxError> {
    let mut o = Options {
        targets: 10_000,
        local: false,
        sigild: None,
        sigil: None,
        json: false,
    };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let flag = flag.as_str();
        match flag {
            "-h" | "--help" => return Ok(None),
            "--targets" => {
                o.targets = flags.positive(flag)?;
            }
            "--trust-service" => {
                o.local = match flags.value(flag)?.as_str() {
                    "local" => true,
                    "notary-signer" => false,
                    other => {
                        return Err(fail(format!(
                            "--trust-service is `notary-signer` or `local`, not {other:?}"
                        )));
                    }
                }
            }
            "--sigild" => o.sigild = Some(PathBuf::from(flags.value(flag)?)),
            "--sigil" => o.sigil = Some(PathBuf::from(flags.value(flag)?)),
            "--json" => o.json = true,
            other => return Err(fail(format!("unknown argument {other:?}"))),
        }
    }
    Ok(Some(o))
}

/// The release sigild and sigil: as given, else built from the current sources with cargo (a
/// no-op when fresh) so the numbers are never those of stale binaries.
fn locate_binaries(o: &Options) -> Result<(PathBuf, PathBuf), BoxError> {
    let release = if o.sigild.is_none() || o.sigil.is_none() {
        bench::release_binaries(&["sigil-daemon", "sigil-cli"], "--sigild and --sigil")?
    } else {
        sigil_e2e::target_dir().join("release")
    };
    let sigild = o.sigild.clone().unwrap_or_else(|| release.join("sigild"));
    let sigil = o.sigil.clone().unwrap_or_else(|| release.join("sigil"));
    for path in [&sigild, &sigil] {
        if !path.is_file() {
            return Err(fail(format!("no binary at {}", path.display())));
        }
    }
    Ok((sigild, sigil))
}

/// `sigil` with its own HOME and trust dir, talking to one server and one sigild.
struct Sigil {
    exe: PathBuf,
    socket: PathBuf,
    server: String,
    ca: PathBuf,
    home: PathBuf,
}

impl Sigil {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("SIGIL_SOCKET", &self.socket)
            .current_dir(&self.home)
            .arg("-s")
            .arg(&self.server)
            .arg("--tlscacert")
            .arg(&self.ca)
            .arg("-d")
            .arg(self.home.join("trust"))
            .args(args);
        cmd
    }
}

/// One target of the benchmark: name, size, hex SHA-256.
fn target(i: usize) -> (String, u64, String) {
    (
        format!("tag-{i:05}"),
        1000 + i as u64,
        sigil_e2e::sha256_hex(format!("publish-bench manifest {i}").as_bytes()),
    )
}

/// Checks `notary list GUN` (from a fresh trust dir) against the staged targets; returns the
/// number of rows.
fn verify_listed(client: &NotaryClient, gun: &str, targets: usize) -> Result<usize, BoxError> {
    let (output, _) = timed(&mut client.command(&["list", gun]))?;
    let table = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(fail(format!(
            "notary list {gun} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let mut rows = BTreeMap::new();
    for line in table.lines().skip(2).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [name, digest, size, role] = cols[..] else {
            return Err(fail(format!("notary list {gun}: unexpected row {line:?}")));
        };
        rows.insert(
            name.to_owned(),
            (digest.to_owned(), size.to_owned(), role.to_owned()),
        );
    }
    if rows.len() != targets {
        return Err(fail(format!(
            "notary list {gun} shows {} targets, expected {targets}",
            rows.len()
        )));
    }
    for i in 0..targets {
        let (name, size, digest) = target(i);
        let want = (digest, size.to_string(), "targets".to_owned());
        if rows.get(&name) != Some(&want) {
            return Err(fail(format!(
                "notary list {gun}: {name} is {:?}, expected {want:?}",
                rows.get(&name)
            )));
        }
    }
    Ok(rows.len())
}

fn first_line(mut cmd: Command) -> String {
    cmd.stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn uptime() -> String {
    let line = first_line(Command::new("uptime"));
    if line.is_empty() {
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
    } else {
        line
    }
}

fn notary_version() -> String {
    let mut dpkg = Command::new("dpkg-query");
    dpkg.args(["-W", "-f", "${Version}", "notary"]);
    let version = first_line(dpkg);
    if version.is_empty() {
        "notary (version unknown)".to_owned()
    } else {
        format!("notary {version} (Debian)")
    }
}

fn mode(
    name: &'static str,
    gun: &'static str,
    targets: usize,
    add_processes: usize,
    times: [Duration; 3],
    listed: usize,
) -> Mode {
    let [init, add, publish] = times.map(|d| d.as_secs_f64());
    Mode {
        mode: name,
        gun,
        targets,
        add_processes,
        init_s: init,
        add_s: add,
        publish_s: publish,
        total_s: add + publish,
        targets_per_s: targets as f64 / (add + publish),
        listed,
    }
}

fn run(o: &Options) -> Result<(), BoxError> {
    require_notary();
    let (sigild_exe, sigil_exe) = locate_binaries(o)?;
    let uptime_before = uptime();
    let dev = DevDir::new();
    let pki = Pki::new(&dev.root().join("pki"), "publish-bench");
    let signer = if o.local {
        None
    } else {
        Some(NotarySigner::start(&dev.root().join("notary-signer"), &pki))
    };
    let trust = match &signer {
        Some(s) => TrustService::remote(s.port()),
        None => TrustService::Local,
    };
    let server = NotaryServer::start(&dev.root().join("notary-server"), &pki, &trust);
    let sigild = start_sigild(&sigild_exe, &dev)?;
    eprintln!(
        "publish-bench: notary-server pid {} on {}, {}, sigild pid {} ({})",
        server.pid(),
        server.url(),
        match &signer {
            Some(s) => format!("notary-signer pid {} on 127.0.0.1:{}", s.pid(), s.port()),
            None => "trust_service local".to_owned(),
        },
        sigild.pid(),
        sigild_exe.display()
    );

    let manifest = dev.root().join("manifest.txt");
    let mut text = String::with_capacity(o.targets * 90);
    for i in 0..o.targets {
        let (name, size, digest) = target(i);
        text.push_str(&format!("{name} {size} sha256:{digest}\n"));
    }
    std::fs::write(&manifest, text)?;
    let manifest_arg = manifest
        .to_str()
        .ok_or_else(|| fail("the temporary directory is not UTF-8"))?;

    // (a) sigil.
    let home = dev.root().join("sigil-client");
    std::fs::create_dir_all(&home)?;
    let sigil = Sigil {
        exe: sigil_exe.clone(),
        socket: dev.socket(),
        server: server.url(),
        ca: pki.ca(),
        home,
    };
    eprintln!("publish-bench: sigil init {SIGIL_GUN} -p");
    let init = timed_ok("sigil init", &mut sigil.command(&["init", SIGIL_GUN, "-p"]))?;
    let signs_before = count_signatures(&dev);
    eprintln!(
        "publish-bench: sigil addhash {SIGIL_GUN} --manifest ({} lines)",
        o.targets
    );
    let add = timed_ok(
        "sigil addhash --manifest",
        &mut sigil.command(&["addhash", SIGIL_GUN, "--manifest", manifest_arg]),
    )?;
    eprintln!("publish-bench: sigil publish {SIGIL_GUN}");
    let publish = timed_ok("sigil publish", &mut sigil.command(&["publish", SIGIL_GUN]))?;
    let sigild_signatures = count_signatures(&dev) - signs_before;
    let sigil_times = [init, add, publish];

    // (b) the real notary client.
    let notary = server.client(&dev.root().join("notary-client"));
    eprintln!("publish-bench: notary init {NOTARY_GUN} -p");
    let init = timed_ok(
        "notary init",
        &mut notary.command(&["init", NOTARY_GUN, "-p"]),
    )?;
    eprintln!(
        "publish-bench: notary addhash ×{} (one process each)",
        o.targets
    );
    let started = Instant::now();
    for i in 0..o.targets {
        let (name, size, digest) = target(i);
        let size = size.to_string();
        timed_ok(
            "notary addhash",
            &mut notary.command(&["addhash", NOTARY_GUN, &name, &size, "--sha256", &digest]),
        )?;
        if (i + 1) % 1000 == 0 {
            eprintln!(
                "publish-bench:   {} added, {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let add = started.elapsed();
    eprintln!("publish-bench: notary publish {NOTARY_GUN}");
    let publish = timed_ok(
        "notary publish",
        &mut notary.command(&["publish", NOTARY_GUN]),
    )?;
    let notary_times = [init, add, publish];

    // Both checked with the real client, from fresh trust dirs.
    eprintln!("publish-bench: notary list (fresh trust dirs)");
    let listed_sigil = verify_listed(
        &server.client(&dev.root().join("reader-sigil")),
        SIGIL_GUN,
        o.targets,
    )?;
    let listed_notary = verify_listed(
        &server.client(&dev.root().join("reader-notary")),
        NOTARY_GUN,
        o.targets,
    )?;
    let uptime_after = uptime();

    let mut sigil_version = Command::new(&sigil_exe);
    sigil_version.arg("--version");
    let results = vec![
        mode("sigil", SIGIL_GUN, o.targets, 1, sigil_times, listed_sigil),
        mode(
            "notary",
            NOTARY_GUN,
            o.targets,
            o.targets,
            notary_times,
            listed_notary,
        ),
    ];
    let report = Report {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: bench::cpu_model(),
        uptime_before,
        uptime_after,
        workdir: dev.root().display().to_string(),
        sigil_version: first_line(sigil_version),
        notary_version: notary_version(),
        trust_service: if o.local { "local" } else { "notary-signer" },
        targets: o.targets,
        sigild_signatures_for_publish: sigild_signatures,
        ratio_total: results[1].total_s / results[0].total_s,
        ratio_publish: results[1].publish_s / results[0].publish_s,
        results,
    };
    drop(sigild);
    drop(server);
    drop(signer);
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Signatures made through sigild's Unix socket so far (its audit log).
fn count_signatures(dev: &DevDir) -> usize {
    read_audit_lines(&dev.audit_log())
        .iter()
        .filter(|l| l.op == "sign" && l.uid.is_some() && l.outcome == "ok")
        .count()
}

fn print_table(report: &Report) {
    println!(
        "Publishing {} targets (addhash) to the real notary-server 0.7.0 on 127.0.0.1 \
         (trust_service {}); {} CPUs ({}); {}; {}",
        report.targets,
        report.trust_service,
        report.nproc,
        report.cpu,
        report.sigil_version,
        report.notary_version
    );
    println!("trust dirs, token and manifest under {}", report.workdir);
    println!("load before: {}", report.uptime_before);
    println!("load after:  {}\n", report.uptime_after);
    println!(
        "| mode | targets | add processes | init s (not in total) | add s | publish s | total s | targets/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in &report.results {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            m.mode,
            m.targets,
            m.add_processes,
            m.init_s,
            m.add_s,
            m.publish_s,
            m.total_s,
            m.targets_per_s
        );
    }
    println!(
        "\nratio notary/sigil: {:.1}× (add + publish), {:.1}× (publish alone)",
        report.ratio_total, report.ratio_publish
    );
    println!(
        "verified: `notary list` from fresh trust dirs shows {} and {} targets, every name, size \
         and digest as staged; sigild made {} signatures for sigil's publish",
        report.results[0].listed, report.results[1].listed, report.sigild_signatures_for_publish
    );
}
