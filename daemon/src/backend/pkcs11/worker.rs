//! The worker threads: each owns a session and runs queued jobs in order.

use std::sync::atomic::Ordering;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;

use super::super::workers::Reply;
use super::super::{Algorithm, Error, SignInput};
use super::scan::scan;
use super::session::WorkerSession;
use super::template::generate;
use super::{Job, Shared, Token, breaks_session, classify};

/// One worker: owns its session, reopens it when the token comes back, runs jobs in order.
pub(super) fn worker(
    shared: &Shared,
    mut session: WorkerSession,
    jobs: &crossbeam_channel::Receiver<Job>,
) {
    for job in jobs.iter() {
        let job = match job {
            Job::Probe(reply) => {
                let _ = reply.send(shared.probe(&mut session));
                continue;
            }
            Job::Reopen { pin, reply } => {
                let _ = reply.send(shared.reopen(pin));
                continue;
            }
            job => job,
        };
        let token = shared.read_token();
        let s = match shared.session_for(&token, &mut session) {
            Ok(s) => s,
            Err(e) => {
                shared.healthy.store(false, Ordering::Relaxed);
                job.fail(e);
                continue;
            }
        };
        let keep = run(shared, &token, s, job);
        if !keep {
            shared.healthy.store(false, Ordering::Relaxed);
            // Same generation: closing it is safe.
            session = None;
        }
    }
}

/// Runs a job and replies; returns whether the session is still worth keeping.
pub(super) fn run(shared: &Shared, token: &Token, session: &Session, job: Job) -> bool {
    let name = &shared.name;
    pub(super) fn answer<T>(reply: Reply<T>, result: Result<T, Error>) -> bool {
        let keep = !matches!(&result, Err(e) if breaks_session(e));
        let _ = reply.send(result);
        keep
    }
    let handles = |id: &[u8]| {
        token
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .ok_or(Error::KeyNotFound)
    };
    match job {
        Job::Sign {
            id,
            algorithm,
            input,
            reply,
            in_flight,
        } => {
            let result = handles(&id)
                .and_then(|(private, _)| shared.timed_sign(session, private, algorithm, &input));
            drop(in_flight);
            answer(reply, result)
        }
        Job::Scan(reply) => answer(reply, scan(session, token, name, &shared.existing)),
        Job::Generate {
            algorithm,
            meta,
            reply,
        } => answer(reply, generate(session, token, algorithm, &meta, name)),
        Job::Delete { id, reply } => {
            let result = handles(&id).and_then(|(private, public)| {
                session
                    .destroy_object(private)
                    .and_then(|()| session.destroy_object(public))
                    .map_err(|e| classify(name, e))
            });
            if result.is_ok() {
                token
                    .handles
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            }
            answer(reply, result)
        }
        // Handled by the worker loop itself (they reset the module).
        Job::Probe(reply) => answer(reply, Ok(())),
        Job::Reopen { reply, .. } => answer(reply, Ok(Vec::new())),
    }
}

impl Job {
    pub(super) fn fail(self, err: Error) {
        match self {
            Job::Probe(r) | Job::Delete { reply: r, .. } => drop(r.send(Err(err))),
            Job::Scan(r) | Job::Reopen { reply: r, .. } => drop(r.send(Err(err))),
            Job::Generate { reply, .. } => drop(reply.send(Err(err))),
            Job::Sign {
                reply, in_flight, ..
            } => {
                drop(in_flight);
                drop(reply.send(Err(err)));
            }
        }
    }
}

/// The token is present, the session alive and still logged in.
pub(super) fn probe(shared: &Shared, token: &Token, session: &Session) -> Result<(), Error> {
    let name = &shared.name;
    let slot = token.slot.ok_or_else(|| Error::TokenNotPresent {
        backend: name.clone(),
    })?;
    shared
        .ctx
        .get_token_info(slot)
        .map_err(|e| classify(name, e))?;
    let info = session.get_session_info().map_err(|e| classify(name, e))?;
    match info.session_state() {
        cryptoki::session::SessionState::RwUser | cryptoki::session::SessionState::RoUser => Ok(()),
        _ => Err(Error::Pkcs11 {
            backend: name.clone(),
            source: CkError::Pkcs11(
                RvError::UserNotLoggedIn,
                cryptoki::context::Function::GetSessionInfo,
            ),
        }),
    }
}

pub(super) fn sign(
    session: &Session,
    private: ObjectHandle,
    algorithm: Algorithm,
    input: &SignInput,
    name: &str,
) -> Result<Vec<u8>, Error> {
    let pss = PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    };
    let (mechanism, data): (Mechanism<'_>, &[u8]) = match (algorithm, input) {
        (Algorithm::EcdsaP256, SignInput::Digest(d)) => (Mechanism::Ecdsa, d),
        (Algorithm::Rsa3072Pss, SignInput::Digest(d)) => (Mechanism::RsaPkcsPss(pss), d),
        (Algorithm::Ed25519, SignInput::Message(m)) => (
            Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            m,
        ),
        _ => {
            return Err(Error::Unsupported {
                backend: name.to_owned(),
                what: format!("{algorithm} over this kind of input"),
            });
        }
    };
    session
        .sign(&mechanism, private, data)
        .map_err(|e| classify(name, e))
}
