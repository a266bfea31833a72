//! sigil-bench's ceiling: in-process PKCS#11 signing, in a re-executed child with
//! SOFTHSM2_CONF set; and the machine description.

use super::*;

/// Runs the in-process part for `clients` threads in a child process and reads its JSON.
pub(crate) fn in_process_run(
    dir: &Path,
    clients: usize,
    o: &Options,
) -> Result<RunResult, BoxError> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .arg(IN_PROCESS_FLAG)
        .arg(dir)
        .arg(clients.to_string())
        .arg(o.load.warmup.as_secs_f64().to_string())
        .arg(o.load.duration.as_secs_f64().to_string())
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            fail(format!(
                "cannot re-execute myself for the in-process run: {e}"
            ))
        })?;
    if !output.status.success() {
        return Err(fail(format!(
            "in-process run with {clients} threads failed ({})",
            output.status
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        fail(format!(
            "in-process run printed something other than its result ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        ))
    })
}

/// The child: `--in-process-child DIR THREADS WARMUP DURATION`.
pub(crate) fn in_process_child(args: &[String]) -> Result<RunResult, BoxError> {
    let [dir, threads, warmup, duration] = args else {
        return Err(fail(format!(
            "{IN_PROCESS_FLAG} wants DIR THREADS WARMUP DURATION"
        )));
    };
    let dir = Path::new(dir);
    let threads: usize = threads
        .parse()
        .map_err(|_| fail(format!("bad thread count {threads:?}")))?;
    let warmup = seconds("warmup", warmup)?;
    let duration = seconds("duration", duration)?;
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        return Err(fail("SOFTHSM2_CONF is not set"));
    }
    let module = SOFTHSM_MODULES
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or_else(|| fail("SoftHSM2 module not found"))?;
    let pin_path = dir.join("user.pin");
    if std::fs::metadata(&pin_path)?.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "{} is readable by others",
            pin_path.display()
        )));
    }
    let pin = std::fs::read_to_string(&pin_path)?;
    let pin = AuthPin::from(pin.trim_end_matches(['\n', '\r']));

    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx
        .get_slots_with_initialized_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim_end() == TOKEN_LABEL)
                .unwrap_or(false)
        })
        .ok_or_else(|| fail(format!("no token labelled {TOKEN_LABEL:?}")))?;
    // One session per thread, opened and logged in before the clock starts (login state is
    // per application, so only the first login does anything).
    let mut sessions = Vec::with_capacity(threads);
    for _ in 0..threads {
        let session = ctx.open_rw_session(slot)?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(e.into()),
        }
        sessions.push(session);
    }
    let key = *sessions[0]
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(KEY_LABEL.as_bytes().to_vec()),
        ])?
        .first()
        .ok_or_else(|| fail(format!("no private key labelled {KEY_LABEL:?}")))?;
    // An untimed signature per session, like the untimed first call per sigild client.
    for s in &sessions {
        s.sign(&Mechanism::Ecdsa, key, &digest(usize::MAX, 0))?;
    }

    // `start` lines the threads up; `done` and `release` keep them alive (and idle) until
    // the CPU time has been read, so none of it drops out of the sum with an exited thread.
    let start = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(Barrier::new(threads + 1));
    let release = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(t, session)| {
            let (start, done, release) =
                (Arc::clone(&start), Arc::clone(&done), Arc::clone(&release));
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let window = (began + warmup, began + warmup + duration);
                let mut tally = Tally::default();
                let mut i = 0u64;
                loop {
                    let d = digest(t, i);
                    i += 1;
                    let t0 = Instant::now();
                    let result = session.sign(&Mechanism::Ecdsa, key, &d);
                    let t1 = Instant::now();
                    if t1 >= window.1 {
                        break;
                    }
                    if !tally.record(&result, t1 - t0, t1 >= window.0, 100) {
                        break;
                    }
                }
                done.wait();
                release.wait();
                tally
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(warmup);
    let cpu0 = (bench::process_cpu_ns(None), bench::machine_busy_ns());
    done.wait();
    let cpu1 = (bench::process_cpu_ns(None), bench::machine_busy_ns());
    release.wait();
    let mut tallies = Vec::with_capacity(threads);
    for h in handles {
        tallies.push(
            h.join()
                .map_err(|_| fail("an in-process signing thread panicked"))?,
        );
    }
    let mut r = summarize(Mode::InProcess, threads, duration, tallies)?;
    r.client_cpu_us = bench::per_operation_us(cpu0.0, cpu1.0, r.signatures);
    r.other_cpu_pct = bench::others_cpu_pct((cpu0.1, cpu1.1), &[(cpu0.0, cpu1.0)], duration);
    Ok(r)
}

/// What a blocking round trip between two threads costs on this machine: one thread writes a
/// byte to a socket pair and blocks reading the answer; the other reads it, busy-works for W µs
/// and answers. On bare metal the overhead is a few µs whatever W is; on some virtual machines
/// it jumps to tens of µs as soon as W is long enough for the waiting CPU to halt, which is
/// the situation of every thread hand-off in sigild's sign path (the client waits for the
/// daemon, the daemon's reactor waits for the token worker).
pub(crate) fn wake_test() -> Result<Vec<WakeCost>, BoxError> {
    use std::io::Write as _;
    use std::os::unix::net::UnixStream;
    const ROUNDS: usize = 3000;
    let mut out = Vec::new();
    for work_us in [0u64, 45] {
        let (mut near, mut far) = UnixStream::pair()?;
        let work = Duration::from_micros(work_us);
        let answerer = std::thread::spawn(move || -> io::Result<()> {
            let mut byte = [0u8; 1];
            for _ in 0..ROUNDS {
                far.read_exact(&mut byte)?;
                let until = Instant::now() + work;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                far.write_all(&byte)?;
            }
            Ok(())
        });
        let mut trips = Vec::with_capacity(ROUNDS);
        let mut byte = [1u8; 1];
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            near.write_all(&byte)?;
            near.read_exact(&mut byte)?;
            trips.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        answerer
            .join()
            .map_err(|_| fail("wake test thread panicked"))??;
        trips.sort_unstable();
        let p50 = trips[trips.len() / 2] as f64 / 1000.0;
        out.push(WakeCost {
            work_us,
            overhead_p50_us: (p50 - work_us as f64).max(0.0),
        });
    }
    Ok(out)
}
