//! The daemon's async runtime: one I/O thread for every connection and protocol step, with
//! signing on the token workers beside it, and a count of that thread's idle moments that tells
//! the sign path whether the thread has time to sign itself.
//!
//! One thread, not one per core: a request costs the protocol stack 11 µs of CPU under load and
//! 25–35 µs one at a time (sigil-bench's rpc-only rows), so one thread carries far more
//! requests than a token signs. A second runtime thread bought no
//! parallelism on the 2-CPU machine the benchmarks run on; it cost work-stealing wake-ups
//! instead (notary-signer endpoint at 4 clients: 119–139 µs of CPU per signature with two
//! runtime threads, 87–97 µs with one; BENCHMARKS.md).

use std::sync::atomic::{AtomicU64, Ordering};

/// How many times a runtime thread has gone idle (parked) since the process started.
static PARKS: AtomicU64 = AtomicU64::new(0);

/// Builds the runtime: one worker thread (`sigild-rpc`) plus the thread that blocks on it.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sigild-rpc")
        .on_thread_park(|| {
            PARKS.fetch_add(1, Ordering::Relaxed);
        })
        .enable_all()
        .build()
}

/// The park count: unchanged between two signatures means the I/O thread found more work
/// waiting each time it finished one, i.e. it is saturated. Always 0 outside [`build`]'s
/// runtime (tests that embed the service), which reads as "saturated": no inline signing.
pub fn parks() -> u64 {
    PARKS.load(Ordering::Relaxed)
}
