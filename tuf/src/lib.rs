//! Pure TUF / Notary logic for sigil. No sockets and no tokens live here, so everything in this
//! crate can be tested with in-memory keys and reused by the CLI, the daemon and the tests.
//!
//! - [`key`]: public keys, the daemon's key ids, local signature checks.
//! - [`cjson`]: canonical JSON exactly as Notary (Go) and securesystemslib write it (what
//!   signatures cover), and a strict reader.
//! - [`schema`]: the metadata model (root, targets with delegations, snapshot, timestamp, keys
//!   and key ids), generic over its two serialisations: [`schema::notary`] (the default) and
//!   [`schema::tuf1`] (the TUF 1.0 specification); [`schema::dialect`] compares them.
//! - [`verify`]: a client's full update walk, producing a [`VerifiedCollection`].
//! - [`sign`] and [`editor`]: edits signed through the async [`Signer`] trait; only a
//!   [`SignedCollection`] can be published.
//! - [`inspect`]: what a signer may learn about metadata before signing it (`sign-metadata`).
//! - [`repository`]: TUF 1.0 repositories on disk (init, edit, sign, publish, verify).
//! - [`changelist`]: staged changes in the notary trust dir layout.
//! - [`x509`]: root key certificates (built with a remote signer) and certificate parsing.
#![deny(missing_docs)]

pub mod changelist;
pub mod cjson;
pub mod client;
pub mod editor;
pub mod error;
pub mod inspect;
pub mod key;
pub mod repository;
pub mod schema;
pub mod sign;
pub mod verify;
pub mod x509;

pub use editor::{CollectionEditor, CollectionKeys, SignedCollection};
pub use error::{Error, Result, SignError};
pub use key::{Algorithm, KeyError, PublicKey, SignatureEncoding};
pub use schema::{FileMeta, Metadata, RoleType, Signed, TufKey};
pub use sign::Signer;
pub use verify::{CollectionFiles, PriorVersions, RootTrust, Updater, VerifiedCollection};
