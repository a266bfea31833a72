//! `--load-generator`: each run driven by an external notary-signer load generator (a program
//! taking signer-load's flags and printing its JSON line) instead of the built-in clients.

use std::path::Path;
use std::process::{Command, Stdio};

use sigil_e2e::bench::{self, BoxError, fail};
use sigil_e2e::notary::Pki;

use super::{Cpu, GUN, Options, RunResult, Target};

/// One run of the external load generator against `target` (`--load-generator`): its own
/// CreateKey, warm-up and verification of sampled signatures; its JSON line is the result.
/// The server's CPU is the generator's own reading over the measured phase (`--watch-pid`).
pub(super) fn external_run(
    program: &Path,
    target: Target<'_>,
    pki: &Pki,
    clients: usize,
    o: &Options,
) -> Result<RunResult, BoxError> {
    let client = pki.client();
    let before = Cpu::now(target.pid);
    let out = Command::new(program)
        .arg("--addr")
        .arg(format!("127.0.0.1:{}", target.port))
        .arg("--ca")
        .arg(pki.ca())
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .args(["--server-name", "127.0.0.1", "--connections", "1", "--json"])
        .args(["--concurrency", &clients.to_string()])
        .args(["--duration", &o.load.duration.as_secs_f64().to_string()])
        .args([
            "--warmup",
            &(o.load.warmup.as_millis().max(1) * 2).to_string(),
        ])
        .args(["--watch-pid", &target.pid.to_string()])
        .args(["--gun", GUN, "--label", target.name])
        .stdin(Stdio::null())
        .output()?;
    let after = Cpu::now(target.pid);
    if !out.status.success() {
        return Err(fail(format!(
            "{} against {} failed ({}):\n{}",
            program.display(),
            target.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let line: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("{}: not one JSON line: {e}", program.display())))?;
    let number = |path: &[&str]| {
        path.iter()
            .try_fold(&line, |v, k| v.get(k))
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| {
                fail(format!(
                    "{}: no {} in {line}",
                    program.display(),
                    path.join(".")
                ))
            })
    };
    let (ok, errors) = (number(&["ok"])?, number(&["errors"])?);
    if errors > 0.0 || number(&["verify_failed"])? > 0.0 {
        return Err(fail(format!(
            "{}: errors or failed verifications: {line}",
            target.name
        )));
    }
    Ok(RunResult {
        target: target.name,
        clients,
        signatures: ok as u64,
        seconds: number(&["elapsed_s"])?,
        per_second: number(&["sigs_per_s"])?,
        p50_us: number(&["lat_us", "p50"])?,
        p99_us: number(&["lat_us", "p99"])?,
        server_cpu_us_per_sig: Some(number(&["server_cpu_s"])? * 1e6 / ok),
        // The generator's own CPU counts as "others" here: it is not the bench process.
        others_cpu_pct: bench::others_cpu_pct(
            (before.machine, after.machine),
            &[(before.server, after.server)],
            after.at - before.at,
        ),
    })
}
