//! The daemon's async runtime: one I/O thread for every connection and protocol step, with
//! signing on the token workers beside it (or inline on this thread while signatures come one
//! at a time: `backend::pkcs11`).
//!
//! One thread, not one per core: a request costs the protocol stack 11 µs of CPU under load and
//! 25–35 µs one at a time (sigil-bench's rpc-only rows), so one thread carries far more
//! requests than a token signs. A second runtime thread bought no
//! parallelism on the 2-CPU machine the benchmarks run on; it cost work-stealing wake-ups
//! instead (notary-signer endpoint at 4 clients: 119–139 µs of CPU per signature with two
//! runtime threads, 87–97 µs with one; BENCHMARKS.md).

/// Builds the runtime: one worker thread (`sigild-rpc`) plus the thread that blocks on it.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sigild-rpc")
        .enable_all()
        .build()
}
