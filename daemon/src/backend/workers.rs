//! Threads that own a token handle and take jobs from one queue. Token handles are not `Sync`
//! (a cryptoki `Session`, a `YubiKey`) and their calls block, so they live on their own threads
//! and async callers await a oneshot reply: the PKCS#11 backend runs `sessions` of these, the
//! YubiKey backend one per device.
//!
//! The queue is bounded (`max_queued_jobs`): a job that finds it full is answered
//! [`Error::Busy`] at once (RESOURCE_EXHAUSTED to the caller) rather than waiting on the I/O
//! thread or piling up memory behind a slow token.

use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::BoxFuture;
use super::error::Error;

/// Where a job sends its result.
pub(super) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// The queue and the threads serving it.
pub(super) struct Workers<J> {
    backend: String,
    capacity: usize,
    jobs: Option<crossbeam_channel::Sender<J>>,
    threads: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static> Workers<J> {
    /// Starts one thread per `(name, serve)`, each running `serve` on the shared queue of
    /// `capacity` jobs until the queue is closed and empty. Only the threads hold the
    /// receiving end, so once they are all gone a job cannot be queued (it reads as
    /// [`Error::Stopped`]) instead of waiting forever.
    pub(super) fn start<F>(
        backend: &str,
        capacity: usize,
        threads: impl IntoIterator<Item = (String, F)>,
    ) -> Result<Self, Error>
    where
        F: FnOnce(crossbeam_channel::Receiver<J>) + Send + 'static,
    {
        let capacity = capacity.max(1);
        let (jobs, queue) = crossbeam_channel::bounded(capacity);
        let mut workers = Self {
            backend: backend.to_owned(),
            capacity,
            jobs: Some(jobs),
            threads: Vec::new(),
        };
        for (name, serve) in threads {
            let queue = queue.clone();
            // On failure `workers` drops here: the queue closes and started threads are joined.
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || serve(queue))
                .map_err(|e| Error::BadToken {
                    backend: backend.to_owned(),
                    what: format!("cannot start a token thread: {e}"),
                })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Queues the job `make` builds around a reply channel and awaits its answer. A full
    /// queue answers [`Error::Busy`] without queueing (never blocking the caller's thread);
    /// after [`Self::stop`], or if the threads died, the answer is [`Error::Stopped`].
    pub(super) fn submit<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> J,
    ) -> BoxFuture<'static, Result<T, Error>> {
        let (tx, rx) = oneshot::channel();
        // Err(true): the queue is full; Err(false): it is closed. The job is dropped either way.
        let sent = match &self.jobs {
            Some(jobs) => jobs.try_send(make(tx)).map_err(|e| e.is_full()),
            None => Err(false),
        };
        let backend = self.backend.clone();
        let capacity = self.capacity;
        Box::pin(async move {
            match sent {
                Ok(()) => rx.await.unwrap_or(Err(Error::Stopped { backend })),
                Err(true) => Err(Error::Busy {
                    backend,
                    queued: capacity,
                }),
                Err(false) => Err(Error::Stopped { backend }),
            }
        })
    }
}

impl<J> Workers<J> {
    /// Closes the queue and waits for the threads, which finish the jobs already queued.
    /// Idempotent; also done on drop.
    pub(super) fn stop(&mut self) {
        self.jobs.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl<J> Drop for Workers<J> {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Job {
        Double(u32, Reply<u32>),
    }

    fn serve(queue: crossbeam_channel::Receiver<Job>) {
        for Job::Double(n, reply) in queue {
            let _ = reply.send(Ok(n * 2));
        }
    }

    #[tokio::test]
    async fn jobs_are_answered_until_stopped() {
        let mut workers = Workers::start("test", 16, [("t0".into(), serve), ("t1".into(), serve)])
            .expect("start");
        // All queued before any is awaited: both threads take from the one queue.
        let pending: Vec<_> = (0..10)
            .map(|n| workers.submit(|reply| Job::Double(n, reply)))
            .collect();
        let mut answers = Vec::new();
        for answer in pending {
            answers.push(answer.await.expect("answer"));
        }
        assert_eq!(answers, (0..10).map(|n| n * 2).collect::<Vec<_>>());
        workers.stop();
        let after = workers.submit(|reply| Job::Double(1, reply)).await;
        assert!(matches!(after, Err(Error::Stopped { backend }) if backend == "test"));
    }

    #[tokio::test]
    async fn a_job_dropped_unanswered_reads_as_stopped() {
        let workers = Workers::start(
            "test",
            16,
            [("t".into(), |queue: crossbeam_channel::Receiver<Job>| {
                for job in queue {
                    drop(job);
                }
            })],
        )
        .expect("start");
        let answer = workers.submit(|reply| Job::Double(1, reply)).await;
        assert!(matches!(answer, Err(Error::Stopped { .. })));
    }

    #[tokio::test]
    async fn jobs_are_refused_once_every_thread_is_gone() {
        let workers = Workers::start(
            "test",
            16,
            [("t".into(), |queue: crossbeam_channel::Receiver<Job>| {
                // Serves one job, then the thread ends as a panicking one would.
                if let Ok(Job::Double(n, reply)) = queue.recv() {
                    let _ = reply.send(Ok(n));
                }
            })],
        )
        .expect("start");
        assert_eq!(
            workers.submit(|r| Job::Double(7, r)).await.expect("first"),
            7
        );
        let mut answer = workers.submit(|r| Job::Double(8, r)).await;
        // The thread may still be on its way out when the second job is sent; then the job
        // is dropped with the queue and the answer is the same.
        for _ in 0..100 {
            if answer.is_err() {
                break;
            }
            answer = workers.submit(|r| Job::Double(8, r)).await;
        }
        assert!(matches!(answer, Err(Error::Stopped { .. })), "{answer:?}");
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_and_loses_nothing_queued() {
        // The one thread waits for the test's go-ahead, so the queue fills up behind it.
        let (go, wait) = crossbeam_channel::bounded::<()>(0);
        let workers = Workers::start(
            "test",
            2,
            [(
                "t".into(),
                move |queue: crossbeam_channel::Receiver<Job>| {
                    let _ = wait.recv();
                    serve(queue);
                },
            )],
        )
        .expect("start");
        let queued: Vec<_> = (0..2)
            .map(|n| workers.submit(|r| Job::Double(n, r)))
            .collect();
        let refused = workers.submit(|r| Job::Double(9, r)).await;
        assert!(
            matches!(&refused, Err(Error::Busy { backend, queued: 2 }) if backend == "test"),
            "{refused:?}"
        );
        go.send(()).expect("go-ahead");
        let mut answers = Vec::new();
        for answer in queued {
            answers.push(answer.await.expect("a queued job is answered"));
        }
        assert_eq!(answers, [0, 2]);
        let after = workers.submit(|r| Job::Double(5, r)).await;
        assert_eq!(after.expect("room again"), 10);
    }
}
