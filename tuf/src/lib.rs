//! Pure TUF / Notary logic for sigil. No sockets and no tokens live here, so everything in this
//! crate can be tested with in-memory keys and reused by the CLI, the daemon and the tests.
//!
//! It starts with public keys ([`key`]): parsing, the daemon's key ids and local signature
//! verification. The Notary metadata model and its canonical JSON come next, shaped so that a
//! TUF 1.0 serialisation can sit beside the Notary one.
#![deny(missing_docs)]

pub mod key;

pub use key::{Algorithm, KeyError, PublicKey, SignatureEncoding};
