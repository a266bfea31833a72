//! Sessions: the token incarnation, worker and inline sessions, module resets, and the
//! heuristics that decide when a signature runs on the caller's thread.

use std::sync::RwLockReadGuard;
use std::sync::atomic::Ordering;
use std::time::Instant;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, UserType};

use super::super::{Algorithm, BackendKey, Error, SignInput};
use super::scan::scan;
use super::worker::probe;
use super::worker::sign;
use super::{INLINE_BELOW, Shared, Token, breaks_session, classify, initialize, locate};
use crate::secret::Pin;

/// A worker's session, tagged with the token generation it belongs to.
pub(super) type WorkerSession = Option<(u64, Session)>;

impl Shared {
    pub(super) fn read_token(&self) -> RwLockReadGuard<'_, Token> {
        // Token state is replaced whole under the write lock; a panic cannot leave it torn.
        self.token.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a read-write session on the current token and makes sure the application is
    /// logged in. A PIN the token refused once is never offered again.
    pub(super) fn open_session(&self, token: &Token) -> Result<Session, Error> {
        if self.pin_refused.load(Ordering::Relaxed) {
            return Err(Error::PinIncorrect {
                backend: self.name.clone(),
            });
        }
        let slot = token.slot.ok_or_else(|| Error::TokenNotPresent {
            backend: self.name.clone(),
        })?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| classify(&self.name, e))?;
        let pin = self.pin.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match session.login(UserType::User, Some(pin.as_auth_pin())) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => {
                let err = classify(&self.name, e);
                if matches!(err, Error::PinIncorrect { .. } | Error::PinLocked { .. }) {
                    self.pin_refused.store(true, Ordering::Relaxed);
                }
                Err(err)
            }
        }
    }

    /// The worker's session for the current generation, opened if needed.
    pub(super) fn session_for<'s>(
        &self,
        token: &Token,
        session: &'s mut WorkerSession,
    ) -> Result<&'s Session, Error> {
        if session
            .as_ref()
            .is_some_and(|(g, _)| *g != token.generation)
        {
            // After a reset the module may hand the old handle number to another session:
            // closing it would close someone else's. Forget it instead.
            if let Some((_, stale)) = session.take() {
                std::mem::forget(stale);
            }
        }
        if session.is_none() {
            *session = Some((token.generation, self.open_session(token)?));
        }
        match session {
            Some((_, s)) => Ok(s),
            None => Err(Error::TokenNotPresent {
                backend: self.name.clone(),
            }),
        }
    }

    /// Signs and folds the token's time into the algorithm's moving average.
    pub(super) fn timed_sign(
        &self,
        session: &Session,
        private: ObjectHandle,
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Result<Vec<u8>, Error> {
        let started = Instant::now();
        let result = sign(session, private, algorithm, input, &self.name);
        if result.is_ok() {
            let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let average = &self.sign_nanos[algorithm_index(algorithm)];
            // Racing updates may drop a sample; the average stays an average.
            average.store(
                fold_average(average.load(Ordering::Relaxed), took),
                Ordering::Relaxed,
            );
        }
        result
    }

    /// Signs on the calling thread when the token has been fast for this algorithm and an
    /// inline session is free; `None` sends the job to the workers instead. Never waits: a
    /// reset in progress or a busy pool also means `None`.
    pub(super) fn sign_inline(
        &self,
        id: &[u8],
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Option<Result<Vec<u8>, Error>> {
        let average = self.sign_nanos[algorithm_index(algorithm)].load(Ordering::Relaxed);
        if !fast_enough(average) || !self.healthy.load(Ordering::Relaxed) {
            return None;
        }
        let token = self.token.try_read().ok()?;
        let private = token
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(private, _)| *private)?;
        let mut session = self.take_inline(&token)?;
        let result = match self.session_for(&token, &mut session) {
            Ok(s) => self.timed_sign(s, private, algorithm, input),
            Err(e) => Err(e),
        };
        if matches!(&result, Err(e) if breaks_session(e)) {
            self.healthy.store(false, Ordering::Relaxed);
            // Same generation (the read lock is held): closing it is safe.
            session = None;
        }
        self.give_back_inline(session);
        Some(result)
    }

    /// An idle inline session, or room to open one (`Some(None)`); `None` when all are busy.
    pub(super) fn take_inline(&self, token: &Token) -> Option<WorkerSession> {
        let mut pool = self.inline.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((generation, session)) = pool.idle.pop() {
            if generation == token.generation {
                return Some(Some((generation, session)));
            }
            // A session of an older incarnation: its handle may now be another's; forget it.
            std::mem::forget(session);
            pool.open -= 1;
        }
        if pool.open < self.inline_max {
            pool.open += 1;
            return Some(None);
        }
        None
    }

    pub(super) fn give_back_inline(&self, session: WorkerSession) {
        let mut pool = self.inline.lock().unwrap_or_else(|p| p.into_inner());
        match session {
            Some(session) => pool.idle.push(session),
            None => pool.open -= 1,
        }
    }

    /// SIGHUP: takes a PIN read again from its file, resets the module and lists the keys.
    /// A PIN the token refused is offered again only if the file now holds a different one.
    pub(super) fn reopen(&self, pin: Option<Pin>) -> Result<Vec<BackendKey>, Error> {
        if let Some(pin) = pin {
            let mut current = self.pin.lock().unwrap_or_else(|p| p.into_inner());
            if !pin.same_as(&current) {
                *current = pin;
                self.pin_refused.store(false, Ordering::Relaxed);
            }
        }
        // Every worker's session belongs to the old incarnation now; `session_for` replaces
        // it at the worker's next job.
        let result = self.reset();
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// Checks the token; when it is gone or broken, resets the module to pick it up again.
    pub(super) fn probe(&self, session: &mut WorkerSession) -> Result<(), Error> {
        let checked = {
            let token = self.read_token();
            self.session_for(&token, session)
                .and_then(|s| probe(self, &token, s))
        };
        let result = match checked {
            Ok(()) => Ok(()),
            // Re-login would offer a refused PIN again.
            Err(e) if self.pin_refused.load(Ordering::Relaxed) => Err(e),
            Err(e) => {
                tracing::debug!(backend = %self.name, error = %e, "token unusable; resetting the module");
                self.reset().map(drop)
            }
        };
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// `C_Finalize` + `C_Initialize`, find the token, log in, and re-resolve every key's
    /// handles, with every worker kept out meanwhile; answers the keys found.
    pub(super) fn reset(&self) -> Result<Vec<BackendKey>, Error> {
        let mut token = self.token.write().unwrap_or_else(|p| p.into_inner());
        token.generation += 1;
        token.slot = None;
        if let Some(stale) = token.keeper.take() {
            std::mem::forget(stale);
        }
        let handles = token.handles.get_mut().unwrap_or_else(|p| p.into_inner());
        handles.clear();
        // Ends every session of every worker: they are forgotten, never closed, afterwards.
        let _ = self.ctx.clone().finalize();
        initialize(&self.ctx).map_err(|e| classify(&self.name, e))?;
        let slot = locate(&self.ctx, &self.selector, &self.name)?;
        token.slot = Some(slot);
        let session = self.open_session(&token)?;
        let keys = scan(&session, &token, &self.name, &self.existing)?;
        token.keeper = Some(std::sync::Mutex::new(session));
        tracing::info!(backend = %self.name, keys = keys.len(), "token reopened");
        Ok(keys)
    }
}

/// Folds a sign time (ns) into a moving average (`u64::MAX`: no sample yet). The new sample
/// weighs 1/8, so one slow call is enough to move a fast average past [`INLINE_BELOW`].
pub(super) fn fold_average(average: u64, took: u64) -> u64 {
    if average == u64::MAX {
        took
    } else {
        average - average / 8 + took / 8
    }
}

/// Whether an average sign time (ns) is short enough to sign on the caller's thread; an
/// unmeasured token is not.
pub(super) fn fast_enough(average: u64) -> bool {
    u128::from(average) < INLINE_BELOW.as_nanos()
}

/// Index of an algorithm in [`Shared::sign_nanos`].
pub(super) fn algorithm_index(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::EcdsaP256 => 0,
        Algorithm::Ed25519 => 1,
        Algorithm::Rsa3072Pss => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_measured_fast_token_signs_inline() {
        assert!(!fast_enough(u64::MAX), "unmeasured: through the workers");
        assert!(fast_enough(45_000), "SoftHSM-like 45 µs: inline");
        assert!(!fast_enough(2_000_000), "a 2 ms token: through the workers");
    }

    #[test]
    fn the_first_sample_sets_the_average_and_one_slow_call_ends_inline_signing() {
        let fast = fold_average(u64::MAX, 45_000);
        assert_eq!(fast, 45_000);
        let steady = (0..100).fold(fast, |avg, _| fold_average(avg, 50_000));
        assert!(fast_enough(steady) && (45_000..=50_000).contains(&steady));
        // A token that became slow (10 ms) moves the average past the limit at once.
        assert!(!fast_enough(fold_average(steady, 10_000_000)));
        // And a long-fast token only comes back once its calls are fast again.
        let recovering = (0..40).fold(10_000_000, |avg, _| fold_average(avg, 45_000));
        assert!(fast_enough(recovering));
    }
}
