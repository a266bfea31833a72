//! When a signature may run on the caller's thread (inline) instead of a token worker.
//!
//! Inline signing saves a thread hand-off each way, which is most of a lone caller's wait; under
//! concurrent load it serialises I/O and token on the daemon's one I/O thread, so the workers
//! must sign then. The rule has no averaged state: a signature that finds another one in flight
//! hands the next [`HOLD`] to the workers, and every [`PROBE_EVERY`]th signature goes to them
//! anyway. The probe is what keeps the rule from locking in: an I/O thread that signs inline
//! never sees two of its own signatures overlap however many callers queue behind it (the
//! averaged rule this replaced could settle there at 4 clients: BENCHMARKS.md), but while a
//! probe is on a worker the next queued request does overlap it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A signature that overlaps another hands this many following ones to the workers.
pub(super) const HOLD: u64 = 64;
/// One signature in this many goes to the workers even when alone, to look for callers that
/// inline signing hides. Rare, because a probe is dear for a lone caller on a VM (a worker
/// woken after a long sleep): one in 64 cost a single client 10 % of its throughput here,
/// while one in 1,024 still finds hidden callers within a tenth of a second at 10k/s.
pub(super) const PROBE_EVERY: u64 = 1024;

/// One signature counted in the backend's in-flight count until dropped: by the worker before it
/// replies (so the caller's next signature does not see this one still in flight), or wherever
/// else the job ends (a full queue, a stopped backend).
pub(in crate::backend) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a signature in; returns it and how many others were in flight.
    pub(super) fn enter(count: &Arc<AtomicUsize>) -> (Self, usize) {
        let others = count.fetch_add(1, Ordering::AcqRel);
        (Self(Arc::clone(count)), others)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
pub(super) struct InlineRule {
    /// Signatures in progress on this token, inline or queued.
    in_flight: Arc<AtomicUsize>,
    /// Signatures decided so far.
    signs: AtomicU64,
    /// Inline signing stays off until `signs` reaches this.
    handoff_until: AtomicU64,
}

impl InlineRule {
    /// Counts a new signature in flight and decides it: `true` allows inline signing.
    pub(super) fn enter(&self) -> (InFlight, bool) {
        let (in_flight, others) = InFlight::enter(&self.in_flight);
        (in_flight, self.admits(others))
    }

    /// Decides one signature that found `others` signatures in flight: `true` allows inline
    /// signing (if the token is fast and a session is free).
    fn admits(&self, others: usize) -> bool {
        let n = self.signs.fetch_add(1, Ordering::Relaxed);
        if others > 0 {
            self.handoff_until
                .fetch_max(n.saturating_add(HOLD), Ordering::Relaxed);
            return false;
        }
        n >= self.handoff_until.load(Ordering::Relaxed) && !n.is_multiple_of(PROBE_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of `n` signatures the rule admits, `others(i)` being the in-flight count the
    /// i-th one finds.
    fn admitted(rule: &InlineRule, n: u64, others: impl Fn(u64) -> usize) -> u64 {
        (0..n).filter(|&i| rule.admits(others(i))).count() as u64
    }

    #[test]
    fn a_lone_caller_signs_inline_but_for_the_probes() {
        let rule = InlineRule::default();
        let n = 4 * PROBE_EVERY;
        assert_eq!(admitted(&rule, n, |_| 0), n - 4);
    }

    #[test]
    fn one_overlap_hands_the_next_signatures_to_the_workers_then_inline_resumes() {
        let rule = InlineRule::default();
        admitted(&rule, 100, |_| 0);
        assert!(!rule.admits(1), "an overlapping signature is never inline");
        assert_eq!(
            admitted(&rule, HOLD - 1, |_| 0),
            0,
            "held for HOLD signatures"
        );
        let after = admitted(&rule, 160, |_| 0);
        assert!(
            after >= 160 - 160 / PROBE_EVERY - 1,
            "alone again: inline again"
        );
    }

    #[test]
    fn concurrent_callers_keep_it_on_the_workers_even_with_gaps() {
        let rule = InlineRule::default();
        // Four callers on the workers: mostly 1-3 others in flight, now and then none.
        assert_eq!(
            admitted(&rule, 10_000, |i| if i % 20 == 0 { 0 } else { 1 }),
            0
        );
    }

    #[test]
    fn callers_hidden_by_inline_signing_are_found_within_one_probe_period() {
        // Inline signing on one I/O thread: other callers are queued, but no signature ever
        // overlaps another, except the one that follows a probe on a worker.
        let rule = InlineRule::default();
        let mut probe_pending = false;
        let mut inline_run = 0;
        let mut longest_inline_run = 0;
        for _ in 0..10_000 {
            let others = usize::from(probe_pending);
            let inline = rule.admits(others);
            probe_pending = !inline;
            inline_run = if inline { inline_run + 1 } else { 0 };
            longest_inline_run = longest_inline_run.max(inline_run);
        }
        assert!(longest_inline_run < PROBE_EVERY, "{longest_inline_run}");
    }

    #[test]
    fn a_signature_is_counted_out_wherever_it_is_dropped() {
        let count = Arc::new(AtomicUsize::new(0));
        let (first, others) = InFlight::enter(&count);
        assert_eq!(others, 0);
        let (second, others) = InFlight::enter(&count);
        assert_eq!(others, 1);
        // A job refused by a full queue is dropped unrun: it must not stay counted.
        drop(Some(second));
        drop(first);
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    /// The real path of a signature the worker queue refuses: `Workers::submit` drops the job.
    #[tokio::test]
    async fn a_signature_refused_by_a_full_queue_is_counted_out() {
        use super::super::super::workers::Workers;
        use super::super::super::{Algorithm, Error, SignInput};
        use super::super::Job;

        let count = Arc::new(AtomicUsize::new(0));
        let (open_gate, gate) = std::sync::mpsc::channel::<()>();
        let serve = move |queue: crossbeam_channel::Receiver<Job>| {
            let _ = gate.recv();
            for job in queue.iter() {
                job.fail(Error::KeyNotFound);
            }
        };
        let workers =
            Workers::start("test", 1, [("worker".to_owned(), serve)]).expect("starting a worker");
        let submit = |count: &Arc<AtomicUsize>| {
            let (in_flight, _) = InFlight::enter(count);
            workers.submit::<Vec<u8>>(|reply| Job::Sign {
                id: Arc::from(&b"key"[..]),
                algorithm: Algorithm::EcdsaP256,
                input: SignInput::Digest([0; 32]),
                reply,
                in_flight,
            })
        };
        let queued = submit(&count);
        let refused = submit(&count).await;
        assert!(matches!(refused, Err(Error::Busy { .. })), "{refused:?}");
        assert_eq!(
            count.load(Ordering::Relaxed),
            1,
            "only the queued one counts"
        );
        open_gate.send(()).expect("the worker waits");
        assert!(matches!(queued.await, Err(Error::KeyNotFound)));
        assert_eq!(
            count.load(Ordering::Relaxed),
            0,
            "counted out before its reply"
        );
    }

    #[test]
    fn a_huge_count_cannot_overflow() {
        let rule = InlineRule {
            signs: AtomicU64::new(u64::MAX - 1),
            ..InlineRule::default()
        };
        assert!(!rule.admits(3));
        assert_eq!(rule.handoff_until.load(Ordering::Relaxed), u64::MAX);
    }
}
