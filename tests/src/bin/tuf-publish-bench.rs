//! tuf-publish-bench answers issue 10's item 7 with numbers: how long does publishing 10,000
//! targets (known by length and hash) into a new TUF 1.0 repository take with `sigil tuf`
//! signing through sigild on a SoftHSM token, compared with python-tuf 7's Metadata API doing
//! the same with keys in memory? (BENCHMARKS.md, "Publishing 10,000 targets to a TUF 1.0
//! repository".) A binary of its own rather than a row of publish-bench: that one needs the
//! Notary PKI, notary-server and notary-signer, this one python-tuf and a static directory.
//!
//! It starts the release `sigild --dev` on a fresh SoftHSM token and, alternating which goes
//! first, runs each side `--runs` times into a fresh repository:
//!
//! * (a) sigil: `sigil tuf init` with four ECDSA P-256 keys generated on the token beforehand
//!   (not timed), `sigil tuf addhash REPO --manifest FILE`, `sigil tuf publish REPO`: targets
//!   v2, snapshot v2 and timestamp signed by sigild, consistent-snapshot files written;
//! * (b) python-tuf: `tests/py/tuf1_publish_bench.py publish REPO FILE`, one process that makes
//!   four ECDSA P-256 keys in memory, writes v1 of every role, adds the manifest's targets and
//!   writes targets, snapshot and timestamp v2 (python-tuf's `to_file`, compact JSON).
//!
//! Each command's wall clock is timed (spawn to exit). Every repository is then read back by
//! python-tuf's ngclient over a loopback HTTP server: it bootstraps from 1.root.json, downloads
//! the first and the last target (their content is put in place after the publish, untimed)
//! and the targets role it verified is compared with the manifest, entry by entry. It prints a
//! table, the medians and the ratio python-tuf/sigil.
//!
//! Run it with `cargo run --release -p sigil-e2e --bin tuf-publish-bench -- --help`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use serde::Serialize;
use sigil_e2e::DevDir;
use sigil_e2e::bench::{self, BoxError, Flags, fail, start_sigild, timed, timed_ok};
use sigil_e2e::notary::{Process, free_port};

const USAGE: &str = "\
tuf-publish-bench: publish N targets to a TUF 1.0 repository with `sigil tuf` (sigild, SoftHSM)
vs. python-tuf 7's Metadata API with in-memory keys

usage: tuf-publish-bench [options]
  --targets N             targets to publish                             (default 10000)
  --runs N                runs of each side, interleaved                 (default 3)
  --sigild PATH           the daemon     (default: built with `cargo build --release`, then
  --sigil PATH            the CLI         target/release/sigild and target/release/sigil)
  --json                  print the results as JSON instead of a table
  -h, --help              this text

Repositories, the SoftHSM token and the manifest go in a fresh directory under $TMPDIR
(default /tmp): the file system there is part of what is measured (both sides fsync every
metadata file they write).";

#[derive(Debug)]
struct Options {
    targets: usize,
    runs: usize,
    sigild: Option<PathBuf>,
    sigil: Option<PathBuf>,
    json: bool,
}

/// One publish of N targets into a fresh repository, seconds.
#[derive(Debug, Clone, Serialize)]
struct Run {
    /// `sigil` or `python-tuf`.
    mode: &'static str,
    run: usize,
    /// Making v1 of every role (sigil: `tuf init`; python-tuf: in its process).
    init_s: f64,
    /// Adding the targets, signing and writing targets, snapshot and timestamp v2 (sigil:
    /// `tuf addhash` + `tuf publish`; python-tuf: in its process).
    publish_s: f64,
    /// Wall clock of everything (sigil: its three processes; python-tuf: its one process,
    /// interpreter start and imports included).
    total_s: f64,
    /// Targets ngclient verified and found equal to the manifest.
    listed: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    targets: usize,
    runs: Vec<Run>,
    sigil_median_total_s: f64,
    python_median_total_s: f64,
    sigil_median_publish_s: f64,
    python_median_publish_s: f64,
    /// python-tuf ÷ sigil, medians.
    ratio_total: f64,
    ratio_publish: f64,
    nproc: usize,
    cpu: String,
    softhsm: String,
    load_before: String,
    load_after: String,
    workdir: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    bench::main("tuf-publish-bench", USAGE, &args, parse_args, run)
}

fn parse_args(args: &[String]) -> Result<Option<Options>, BoxError> {
    let mut o = Options {
        targets: 10_000,
        runs: 3,
        sigild: None,
        sigil: None,
        json: false,
    };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--targets" => o.targets = flags.positive(&flag)?,
            "--runs" => o.runs = flags.positive(&flag)?,
            "--sigild" => o.sigild = Some(PathBuf::from(flags.value(&flag)?)),
            "--sigil" => o.sigil = Some(PathBuf::from(flags.value(&flag)?)),
            "--json" => o.json = true,
            other => return Err(fail(format!("unknown option {other}"))),
        }
    }
    Ok(Some(o))
}

/// One target: name, content (only the first and the last are stored), hex SHA-256.
fn target(i: usize) -> (String, Vec<u8>, String) {
    let content = format!("tuf-publish-bench target {i}\n").into_bytes();
    let sha = sigil_e2e::sha256_hex(&content);
    (format!("tag-{i:05}"), content, sha)
}

/// The manifest both sides publish: `SHA256 LENGTH NAME` per line.
fn manifest_text(targets: usize) -> String {
    (0..targets)
        .map(|i| {
            let (name, content, sha) = target(i);
            format!("{sha} {} {name}\n", content.len())
        })
        .collect()
}

/// `python -m http.server` on 127.0.0.1 serving `dir`; stopped by its pid when dropped.
fn http_server(python: &Path, dir: &Path, log: &Path) -> Result<(Process, u16), BoxError> {
    let port = free_port();
    let mut cmd = Command::new(python);
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir);
    let server = Process::spawn("http.server", &mut cmd, log);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            return Err(fail(format!("http.server did not listen on port {port}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, port))
}

struct Bench<'a> {
    o: &'a Options,
    sigil: PathBuf,
    socket: PathBuf,
    python: PathBuf,
    script: PathBuf,
    work: PathBuf,
    manifest: PathBuf,
    port: u16,
}

impl Bench<'_> {
    fn sigil(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.sigil);
        cmd.env("SIGIL_SOCKET", &self.socket).args(args);
        cmd
    }

    /// A new ECDSA P-256 key on the token (not timed).
    fn key(&self, role: &str, run: usize) -> Result<String, BoxError> {
        let gun = format!("bench.example/tuf-{run}");
        let (out, _) = timed(&mut self.sigil(&["key", "generate", "--role", role, "--gun", &gun]))?;
        if !out.status.success() {
            return Err(fail(format!(
                "sigil key generate failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn run_sigil(&self, run: usize) -> Result<Run, BoxError> {
        let dir = format!("sigil-{run}");
        let repo = self.work.join(&dir);
        let repo_arg = repo.to_string_lossy().into_owned();
        let keys = ["root", "targets", "snapshot", "timestamp"]
            .iter()
            .map(|role| self.key(role, run))
            .collect::<Result<Vec<_>, _>>()?;
        let init = timed_ok(
            "sigil tuf init",
            &mut self.sigil(&[
                "tuf",
                "init",
                &repo_arg,
                "--root-key",
                &keys[0],
                "--targets-key",
                &keys[1],
                "--snapshot-key",
                &keys[2],
                "--timestamp-key",
                &keys[3],
            ]),
        )?;
        let manifest = self.manifest.to_string_lossy().into_owned();
        let add = timed_ok(
            "sigil tuf addhash",
            &mut self.sigil(&["tuf", "addhash", &repo_arg, "--manifest", &manifest]),
        )?;
        let publish = timed_ok(
            "sigil tuf publish",
            &mut self.sigil(&["tuf", "publish", &repo_arg]),
        )?;
        let listed = self.read_back(&dir, &repo)?;
        Ok(Run {
            mode: "sigil",
            run,
            init_s: init.as_secs_f64(),
            publish_s: (add + publish).as_secs_f64(),
            total_s: (init + add + publish).as_secs_f64(),
            listed,
        })
    }

    fn run_python(&self, run: usize) -> Result<Run, BoxError> {
        let dir = format!("python-{run}");
        let repo = self.work.join(&dir);
        let (out, total) = timed(
            Command::new(&self.python)
                .arg(&self.script)
                .arg("publish")
                .arg(&repo)
                .arg(&self.manifest),
        )?;
        if !out.status.success() {
            return Err(fail(format!(
                "tuf1_publish_bench.py publish failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let phases: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let seconds = |k: &str| {
            phases[k]
                .as_f64()
                .ok_or_else(|| fail(format!("no {k} in {phases}")))
        };
        let listed = self.read_back(&dir, &repo)?;
        Ok(Run {
            mode: "python-tuf",
            run,
            init_s: seconds("init_s")?,
            publish_s: seconds("publish_s")?,
            total_s: total.as_secs_f64(),
            listed,
        })
    }

    /// Stores the first and the last target under their consistent-snapshot names, then has
    /// ngclient download them and compare the verified targets role with the manifest.
    fn read_back(&self, dir: &str, repo: &Path) -> Result<usize, BoxError> {
        let mut names = Vec::new();
        for i in [0, self.o.targets - 1] {
            let (name, content, sha) = target(i);
            std::fs::create_dir_all(repo.join("targets"))?;
            std::fs::write(repo.join("targets").join(format!("{sha}.{name}")), content)?;
            names.push(name);
        }
        let base = format!("http://127.0.0.1:{}/{dir}", self.port);
        let (out, _) = timed(
            Command::new(&self.python)
                .arg(&self.script)
                .arg("read")
                .arg(format!("{base}/metadata/"))
                .arg(format!("{base}/targets/"))
                .arg(repo.join("metadata/1.root.json"))
                .arg(self.work.join(format!("client-{dir}")))
                .arg(&self.manifest)
                .args(&names),
        )?;
        if !out.status.success() {
            return Err(fail(format!(
                "ngclient refused the {dir} repository: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let listed = report["listed"].as_u64().unwrap_or(0) as usize;
        if listed != self.o.targets || report["downloaded"].as_array().map(Vec::len) != Some(2) {
            return Err(fail(format!("ngclient read back {report} from {dir}")));
        }
        Ok(listed)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run(o: &Options) -> Result<(), BoxError> {
    let (sigild_exe, sigil_exe) = match (&o.sigild, &o.sigil) {
        (Some(d), Some(c)) => (d.clone(), c.clone()),
        _ => {
            let release =
                bench::release_binaries(&["sigil-daemon", "sigil-cli"], "--sigild and --sigil")?;
            (
                o.sigild.clone().unwrap_or_else(|| release.join("sigild")),
                o.sigil.clone().unwrap_or_else(|| release.join("sigil")),
            )
        }
    };
    let python = sigil_e2e::python::tuf_venv();
    let load_before = bench::loadavg();
    let dev = DevDir::new();
    let sigild = start_sigild(&sigild_exe, &dev)?;
    let work = dev.root().join("repos");
    std::fs::create_dir_all(&work)?;
    let manifest = work.join("manifest.txt");
    std::fs::write(&manifest, manifest_text(o.targets))?;
    let (server, port) = http_server(&python, &work, &dev.logs().join("http.server.log"))?;
    let b = Bench {
        o,
        sigil: sigil_exe,
        socket: dev.socket(),
        python,
        script: sigil_e2e::workspace_root().join("tests/py/tuf1_publish_bench.py"),
        work: work.clone(),
        manifest,
        port,
    };
    eprintln!(
        "tuf-publish-bench: sigild pid {}, http.server pid {} on 127.0.0.1:{port}, {} targets, \
         {} runs each",
        sigild.pid(),
        server.pid(),
        o.targets,
        o.runs
    );
    let mut runs = Vec::new();
    for run in 0..o.runs {
        // Alternate which side goes first, so neither always meets a warmer page cache.
        let sigil_first = run % 2 == 0;
        for side in 0..2 {
            let r = if (side == 0) == sigil_first {
                b.run_sigil(run)?
            } else {
                b.run_python(run)?
            };
            eprintln!(
                "  run {run} {}: total {:.3} s (init {:.3}, publish {:.3}), {} listed",
                r.mode, r.total_s, r.init_s, r.publish_s, r.listed
            );
            runs.push(r);
        }
    }
    drop(server);
    drop(sigild);
    let pick = |mode: &str, f: fn(&Run) -> f64| {
        median(runs.iter().filter(|r| r.mode == mode).map(f).collect())
    };
    let report = Report {
        targets: o.targets,
        sigil_median_total_s: pick("sigil", |r| r.total_s),
        python_median_total_s: pick("python-tuf", |r| r.total_s),
        sigil_median_publish_s: pick("sigil", |r| r.publish_s),
        python_median_publish_s: pick("python-tuf", |r| r.publish_s),
        ratio_total: pick("python-tuf", |r| r.total_s) / pick("sigil", |r| r.total_s),
        ratio_publish: pick("python-tuf", |r| r.publish_s) / pick("sigil", |r| r.publish_s),
        runs,
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        cpu: bench::cpu_model(),
        softhsm: bench::softhsm_version(),
        load_before,
        load_after: bench::loadavg(),
        workdir: work.display().to_string(),
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "Publishing {} targets to a new TUF 1.0 repository (consistent snapshot); {} CPUs ({}); {}",
        r.targets, r.nproc, r.cpu, r.softhsm
    );
    println!("repositories under {}", r.workdir);
    println!("load before: {}", r.load_before);
    println!("load after:  {}\n", r.load_after);
    println!("| mode | run | init s | add + publish s | total s | listed by ngclient |");
    println!("|---|---:|---:|---:|---:|---:|");
    for run in &r.runs {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {} |",
            run.mode, run.run, run.init_s, run.publish_s, run.total_s, run.listed
        );
    }
    println!(
        "\nmedians: sigil {:.3} s total, {:.3} s add + publish; python-tuf {:.3} s total, {:.3} s \
         add + publish",
        r.sigil_median_total_s,
        r.sigil_median_publish_s,
        r.python_median_total_s,
        r.python_median_publish_s
    );
    println!(
        "ratio python-tuf/sigil: {:.2}× (total), {:.2}× (add + publish)",
        r.ratio_total, r.ratio_publish
    );
}
