//! sigil-bench's report: medians of alternating rounds, ratios, the table.

use super::*;

pub(crate) fn progress(r: &RunResult) {
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
pub(crate) fn medians(all: Vec<RunResult>) -> Vec<RunResult> {
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

pub(crate) fn ratios(runs: &[RunResult]) -> Vec<Ratio> {
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

pub(crate) fn print_table(report: &Report) {
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
