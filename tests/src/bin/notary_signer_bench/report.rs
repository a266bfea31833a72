//! The medians, the stability column and the table notary-signer-bench prints.

use sigil_e2e::bench::cell;

use super::{Report, RunResult};

/// The lowest throughput among `runs` of `target` at `clients`.
pub(super) fn slowest(runs: &[RunResult], target: &str, clients: usize) -> f64 {
    runs.iter()
        .filter(|r| r.target == target && r.clients == clients)
        .map(|r| r.per_second)
        .fold(f64::INFINITY, f64::min)
}

/// The run with the median throughput among `runs` of `target` at `clients`.
pub(super) fn median(runs: &[RunResult], target: &str, clients: usize) -> Option<RunResult> {
    let mut these: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.target == target && r.clients == clients)
        .collect();
    these.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    these.get(these.len() / 2).map(|r| (*r).clone())
}

pub(super) fn print_table(report: &Report) {
    println!(
        "proto.Signer/Sign, ECDSA P-256, {} B canonical timestamp, mutual TLS on 127.0.0.1, \
         one connection per client; median of {} alternating runs of {:.1} s (after {:.1} s \
         warm-up) per cell; {} CPUs, load {} before, {} after",
        report.payload_bytes,
        report.rounds,
        report.duration_s,
        report.warmup_s,
        report.nproc,
        report.loadavg_before,
        report.loadavg_after
    );
    println!(
        "(a) notary-signer 0.7.0, memory storage, software key    (b) sigild, SoftHSM token key\n"
    );
    println!(
        "| clients | (a) sig/s | (a) p50 µs | (a) p99 µs | (a) CPU µs/sig | (b) sig/s | (b) p50 µs | (b) p99 µs | (b) CPU µs/sig | b/a throughput | b/a p50 | slowest/median (a, b) | others' CPU % (a, b) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ratio in &report.ratios {
        let find = |t: &str| {
            report
                .runs
                .iter()
                .find(|r| r.clients == ratio.clients && r.target == t)
        };
        if let (Some(a), Some(b)) = (find("notary-signer"), find("sigild")) {
            println!(
                "| {} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.2}, {:.2} | {}, {} |",
                ratio.clients,
                a.per_second,
                a.p50_us,
                a.p99_us,
                cell(a.server_cpu_us_per_sig),
                b.per_second,
                b.p50_us,
                b.p99_us,
                cell(b.server_cpu_us_per_sig),
                ratio.throughput_b_over_a,
                ratio.p50_b_over_a,
                ratio.a_min_over_median,
                ratio.b_min_over_median,
                cell(a.others_cpu_pct),
                cell(b.others_cpu_pct)
            );
        }
    }
    println!(
        "\nsigild audit log: {} sign lines (every signature audited)",
        report.sigild_audit_lines
    );
}
