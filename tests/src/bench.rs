//! What the benchmark binaries (`src/bin/*-bench.rs`) share: the command-line frame, building
//! the binaries they measure, timing commands, starting the release sigild, CPU accounting from `/proc`, and the machine facts a report
//! prints so that numbers from a loaded or different machine are recognisable as such.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::DevDir;
use crate::notary::Process;

/// Errors of a benchmark run: printed once, then the process exits non-zero.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error from a message.
pub fn fail(msg: impl Into<String>) -> BoxError {
    msg.into().into()
}

/// The common `main`: `parse` gives `None` for `--help` (usage on stdout, success), a parse
/// error prints the usage and exits 2, a failed run exits 1.
pub fn main<O>(
    name: &str,
    usage: &str,
    args: &[String],
    parse: impl FnOnce(&[String]) -> Result<Option<O>, BoxError>,
    run: impl FnOnce(&O) -> Result<(), BoxError>,
) -> ExitCode {
    let options = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{name}: {e}\n\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `main` of a benchmark's re-executed child (it measures in-process, where the library
/// under test wants its own process): prints what `measure` returns as one JSON line for the
/// parent, or the error on stderr.
pub fn child_main<T: serde::Serialize>(
    name: &str,
    measure: impl FnOnce() -> Result<T, BoxError>,
) -> ExitCode {
    let json = measure().and_then(|result| serde_json::to_string(&result).map_err(Into::into));
    match json {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name} (child): {e}");
            ExitCode::FAILURE
        }
    }
}

/// The load options the benchmarks share: how many concurrent clients, how long to measure,
/// how long to warm up first.
#[derive(Debug, Clone)]
pub struct Load {
    /// Client counts, one cell each (`--clients 1,4,16`).
    pub clients: Vec<usize>,
    /// Measured time per run (`--duration SECS`).
    pub duration: Duration,
    /// Unmeasured time before each run (`--warmup SECS`).
    pub warmup: Duration,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            clients: vec![1, 4, 16],
            duration: Duration::from_secs(3),
            warmup: Duration::from_millis(500),
        }
    }
}

impl Load {
    /// Takes `flag` (and its value) if it is one of these options: `Ok(false)` if not.
    pub fn take(&mut self, flag: &str, flags: &mut Flags<'_>) -> Result<bool, BoxError> {
        match flag {
            "--clients" => self.clients = flags.counts(flag)?,
            "--duration" => self.duration = flags.seconds(flag)?,
            "--warmup" => self.warmup = flags.seconds(flag)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Reads `--flag value` and `--flag=value` arguments one flag at a time.
pub struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
    inline: Option<String>,
}

impl<'a> Flags<'a> {
    /// Reads `args` (without the program name).
    pub fn new(args: &'a [String]) -> Self {
        Self {
            args: args.iter(),
            inline: None,
        }
    }

    /// The next flag (for `--flag=value`, the part before `=`).
    pub fn next_flag(&mut self) -> Option<String> {
        let arg = self.args.next()?;
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                self.inline = Some(value.to_owned());
                Some(flag.to_owned())
            }
            _ => {
                self.inline = None;
                Some(arg.clone())
            }
        }
    }

    /// The value of `flag`, the flag just read.
    pub fn value(&mut self, flag: &str) -> Result<String, BoxError> {
        self.inline
            .take()
            .or_else(|| self.args.next().cloned())
            .ok_or_else(|| fail(format!("{flag} needs a value")))
    }

    /// The value of `flag` as a positive integer.
    pub fn positive(&mut self, flag: &str) -> Result<usize, BoxError> {
        self.value(flag)?
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| fail(format!("{flag} wants a positive integer")))
    }

    /// The value of `flag` as comma-separated positive integers, e.g. `1,4,16`.
    pub fn counts(&mut self, flag: &str) -> Result<Vec<usize>, BoxError> {
        self.value(flag)?
            .split(',')
            .map(|s| s.trim().parse::<usize>().ok().filter(|&n| n > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| fail(format!("{flag} wants positive integers, e.g. 1,4,16")))
    }

    /// The value of `flag` as seconds.
    pub fn seconds(&mut self, flag: &str) -> Result<Duration, BoxError> {
        seconds(flag, &self.value(flag)?)
    }
}

/// What one client saw during a run: latencies of the calls that count, and errors.
#[derive(Debug, Default)]
pub struct Tally {
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Records a call that took `latency`: counted (`counts`: it fell inside the measured
    /// window) when it succeeded, else an error. Returns `false` once more than `max_errors`
    /// errors were seen: the client should stop.
    pub fn record<T, E: std::fmt::Display>(
        &mut self,
        result: &Result<T, E>,
        latency: Duration,
        counts: bool,
        max_errors: u64,
    ) -> bool {
        match result {
            Ok(_) if counts => {
                self.latencies
                    .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
            }
            Ok(_) => {}
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        self.errors <= max_errors
    }
}

/// Every client's latencies of one run, sorted, with the errors.
#[derive(Debug)]
pub struct Latencies {
    sorted_ns: Vec<u64>,
    /// Errors over all clients.
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Latencies {
    /// Merges the clients' tallies.
    pub fn merge(tallies: Vec<Tally>) -> Self {
        let mut sorted_ns = Vec::new();
        let (mut errors, mut first_error) = (0, None);
        for t in tallies {
            sorted_ns.extend(t.latencies);
            errors += t.errors;
            first_error = first_error.or(t.first_error);
        }
        sorted_ns.sort_unstable();
        Self {
            sorted_ns,
            errors,
            first_error,
        }
    }

    /// How many calls counted.
    pub fn count(&self) -> usize {
        self.sorted_ns.len()
    }

    /// The `q` quantile (0.5: median) in µs; 0 when nothing counted.
    pub fn quantile_us(&self, q: f64) -> f64 {
        let Some(last) = self.sorted_ns.len().checked_sub(1) else {
            return 0.0;
        };
        let index = ((last as f64) * q).round() as usize;
        self.sorted_ns[index.min(last)] as f64 / 1000.0
    }
}

/// A non-negative number of seconds given to `flag`, e.g. `3` or `0.5`.
pub fn seconds(flag: &str, s: &str) -> Result<Duration, BoxError> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| fail(format!("{flag} wants seconds, e.g. 3 or 0.5; got {s:?}")))
}

/// Longest any one command a benchmark times may run before it is killed (by its pid) and the
/// bench fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// How long sigild may take to serve its socket.
pub const SIGILD_START: Duration = Duration::from_secs(20);

/// Runs `cmd` to completion, output captured, and returns it with its wall time (spawn to
/// exit). The wait blocks in a helper thread rather than polling, so the time is not rounded
/// up to a poll interval; after [`COMMAND_TIMEOUT`] the child is killed by its pid.
pub fn timed(cmd: &mut Command) -> Result<(Output, Duration), BoxError> {
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("spawning {cmd:?}: {e}")))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let output = child.wait_with_output();
        let elapsed = started.elapsed();
        let _ = tx.send(output.map(|o| (o, elapsed)));
    });
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(result) => Ok(result?),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Err(fail(format!(
                "{cmd:?} still ran after {COMMAND_TIMEOUT:?}; killed pid {pid}"
            )))
        }
    }
}

/// [`timed`], failing with the command's output unless it succeeded; returns the time.
pub fn timed_ok(what: &str, cmd: &mut Command) -> Result<Duration, BoxError> {
    let (output, elapsed) = timed(cmd)?;
    if !output.status.success() {
        return Err(fail(format!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(elapsed)
}

/// The release `sigild --dev DIR` on a fresh token, serving its Unix socket.
pub fn start_sigild(binary: &Path, dev: &DevDir) -> Result<Process, BoxError> {
    let mut cmd = Command::new(binary);
    cmd.arg("--dev")
        .arg(dev.path())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("SIGIL_CONFIG")
        .env_remove("SIGIL_LOG");
    let mut process = Process::spawn("sigild", &mut cmd, &dev.logs().join("sigild.log"));
    let started = Instant::now();
    loop {
        if let Some(status) = process.exited() {
            return Err(fail(format!(
                "sigild exited ({status}) before serving:\n{}",
                process.log()
            )));
        }
        if std::os::unix::net::UnixStream::connect(dev.socket()).is_ok() {
            return Ok(process);
        }
        if started.elapsed() > SIGILD_START {
            return Err(fail(format!(
                "sigild did not serve {} within {SIGILD_START:?}:\n{}",
                dev.socket().display(),
                process.log()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds `packages`' binaries with the release profile from the current sources (a no-op
/// when fresh, so numbers are never those of a stale binary) and returns the directory they
/// are in. `escape` names the option that lets a user pass a binary instead.
pub fn release_binaries(packages: &[&str], escape: &str) -> Result<PathBuf, BoxError> {
    let mut args = vec!["--release"];
    for package in packages {
        args.extend(["-p", package]);
    }
    args.push("--bins");
    crate::cargo_build(&args).map_err(|e| fail(format!("{e}\n(or pass {escape})")))?;
    Ok(crate::target_dir().join("release"))
}

/// CPU time (ns) of every live thread of a process (`None`: this one), from schedstat, which
/// counts in ns rather than in 10 ms ticks.
pub fn process_cpu_ns(pid: Option<u32>) -> Option<u64> {
    let tasks = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let mut total = 0u64;
    for entry in std::fs::read_dir(tasks).ok()?.flatten() {
        // A thread may exit between listing and reading; it just drops out of the sum.
        if let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) {
            total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// Busy CPU time (ns) of the whole machine, from the first line of /proc/stat.
pub fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    // /proc/stat counts in USER_HZ, which is 100 on Linux whatever the kernel's HZ.
    Some(busy * 10_000_000)
}

/// What the rest of the machine used during `window`, in % of all its CPUs: the machine's busy
/// time (before, after) minus that of our processes (before, after each).
pub fn others_cpu_pct(
    machine: (Option<u64>, Option<u64>),
    ours: &[(Option<u64>, Option<u64>)],
    window: Duration,
) -> Option<f64> {
    let total = machine.1?.saturating_sub(machine.0?);
    let mut mine = 0u64;
    for (before, after) in ours {
        mine += after.as_ref()?.saturating_sub(before.as_ref().copied()?);
    }
    let cpus = std::thread::available_parallelism().ok()?.get() as f64;
    Some(total.saturating_sub(mine) as f64 / (window.as_nanos() as f64 * cpus) * 100.0)
}

/// CPU µs per operation between two readings in ns.
pub fn per_operation_us(before: Option<u64>, after: Option<u64>, operations: u64) -> Option<f64> {
    let (before, after) = (before?, after?);
    (operations > 0).then(|| after.saturating_sub(before) as f64 / 1000.0 / operations as f64)
}

/// An optional number for a table cell.
pub fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The load averages (1, 5, 15 min).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The CPU model, for the report header.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// `softhsm2-util --version`, for the report header.
pub fn softhsm_version() -> String {
    Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_take_fractions_and_refuse_nonsense() {
        assert_eq!(seconds("--x", "0.5").ok(), Some(Duration::from_millis(500)));
        for bad in ["-1", "NaN", "inf", "three", ""] {
            assert!(seconds("--x", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_take_values_inline_or_next_and_check_them() {
        let args: Vec<String> = ["--clients=1,4", "--rounds", "3", "--json", "--duration"]
            .map(String::from)
            .to_vec();
        let mut flags = Flags::new(&args);
        assert_eq!(flags.next_flag().as_deref(), Some("--clients"));
        assert_eq!(flags.counts("--clients").ok(), Some(vec![1, 4]));
        assert_eq!(flags.next_flag().as_deref(), Some("--rounds"));
        assert_eq!(flags.positive("--rounds").ok(), Some(3));
        assert_eq!(flags.next_flag().as_deref(), Some("--json"));
        assert_eq!(flags.next_flag().as_deref(), Some("--duration"));
        let missing = flags.seconds("--duration").expect_err("no value left");
        assert_eq!(missing.to_string(), "--duration needs a value");
        let zero: Vec<String> = vec!["--rounds=0".into()];
        let mut flags = Flags::new(&zero);
        flags.next_flag();
        assert!(flags.positive("--rounds").is_err());
    }

    #[test]
    fn tallies_count_only_measured_successes_and_stop_after_too_many_errors() {
        let ok: Result<(), String> = Ok(());
        let err: Result<(), String> = Err("boom".into());
        let mut a = Tally::default();
        assert!(
            a.record(&ok, Duration::from_micros(10), false, 1),
            "warm-up"
        );
        assert!(a.record(&ok, Duration::from_micros(30), true, 1));
        assert!(a.record(&err, Duration::ZERO, true, 1));
        assert!(
            !a.record(&err, Duration::ZERO, true, 1),
            "second error: stop"
        );
        let mut b = Tally::default();
        b.record(&ok, Duration::from_micros(20), true, 1);
        b.record(&ok, Duration::from_micros(40), true, 1);
        let all = Latencies::merge(vec![a, b]);
        assert_eq!((all.count(), all.errors), (3, 2));
        assert_eq!(all.first_error.as_deref(), Some("boom"));
        assert_eq!(all.quantile_us(0.5), 30.0);
        assert_eq!(all.quantile_us(0.99), 40.0);
        assert_eq!(Latencies::merge(Vec::new()).quantile_us(0.5), 0.0);
    }

    #[test]
    fn per_operation_needs_both_readings_and_an_operation() {
        assert_eq!(per_operation_us(Some(0), Some(5_000_000), 1000), Some(5.0));
        assert_eq!(per_operation_us(None, Some(1), 1), None);
        assert_eq!(per_operation_us(Some(0), Some(1), 0), None);
    }

    #[test]
    fn this_process_uses_some_cpu() {
        let before = process_cpu_ns(None).expect("schedstat of this process");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_ns(None).expect("schedstat") > before);
    }
}
