//! The crate's one error type. Every failure names the role (and its version when one is known)
//! and says why, so a refused update can be diagnosed from the message alone.

use std::path::PathBuf;

/// What a [`crate::Signer`] returns when it cannot sign (token absent, daemon refused, ...).
pub type SignError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while parsing, verifying, editing or signing TUF metadata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not JSON, or not the shape this role must have.
    #[error("{role}: malformed metadata: {source}")]
    Json {
        /// Role (or file) being parsed.
        role: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },

    /// Bytes offered for signing are not the canonical `signed` object of one metadata file
    /// ([`crate::inspect`]).
    #[error("not TUF metadata: {reason}")]
    NotMetadata {
        /// What is wrong with them.
        reason: String,
    },

    /// A value cannot be written as canonical JSON (a number with a fraction, for instance).
    #[error("not canonical JSON: {reason}")]
    Canonical {
        /// What was refused.
        reason: String,
    },

    /// The metadata parsed but breaks a structural rule (missing role, threshold 0, ...).
    #[error("{role} v{version}: invalid metadata: {reason}")]
    Invalid {
        /// Role whose metadata is invalid.
        role: String,
        /// Its version.
        version: u64,
        /// The rule that is broken.
        reason: String,
    },

    /// A role's metadata has expired: a freeze attack, or a collection nobody re-signed.
    #[error("{role} v{version}: expired at {expires}")]
    Expired {
        /// Role that expired.
        role: String,
        /// Its version.
        version: u64,
        /// The `expires` value it carries.
        expires: String,
    },

    /// A role's version is lower than the one already trusted: a rollback attack.
    #[error("{role} v{version}: older than the trusted v{trusted} (rollback)")]
    Rollback {
        /// Role being rolled back.
        role: String,
        /// The version offered.
        version: u64,
        /// The version already trusted.
        trusted: u64,
    },

    /// Not enough valid signatures from the role's keys.
    #[error("{role} v{version}: {valid} valid signature(s), threshold is {threshold}{}", detail(.reason))]
    ThresholdNotMet {
        /// Role whose signatures were checked.
        role: String,
        /// Its version.
        version: u64,
        /// Distinct keys with a valid signature.
        valid: usize,
        /// Signatures required.
        threshold: u64,
        /// Why signatures or keys did not count, when known.
        reason: String,
    },

    /// A new root is not signed by the threshold of the root trusted before it.
    #[error(
        "root v{version}: not signed by the trusted root v{trusted_version}'s keys \
         ({valid} valid, threshold {threshold}){}", detail(.reason)
    )]
    RootRotationUntrusted {
        /// Version of the new root.
        version: u64,
        /// Version of the root trusted so far.
        trusted_version: u64,
        /// Distinct trusted root keys with a valid signature.
        valid: usize,
        /// The trusted root's threshold.
        threshold: u64,
        /// Why signatures or keys did not count, when known.
        reason: String,
    },

    /// Root versions must follow one another, one at a time.
    #[error("root v{version}: expected v{expected} next in the root chain")]
    RootVersion {
        /// Version offered.
        version: u64,
        /// Version expected.
        expected: u64,
    },

    /// No root role key matches the pinned key ids.
    #[error("root v{version}: none of its root keys is pinned ({reason})")]
    NotPinned {
        /// Version of the root offered.
        version: u64,
        /// What was pinned and what was found.
        reason: String,
    },

    /// The length of a file differs from what the listing role says.
    #[error("{role}: {actual} bytes, but {listed_in} v{version} lists {expected}")]
    LengthMismatch {
        /// Role (file) whose length is wrong.
        role: String,
        /// Role that lists it (timestamp, snapshot, or a targets role).
        listed_in: String,
        /// Version of the listing role.
        version: u64,
        /// Length listed.
        expected: u64,
        /// Length received.
        actual: u64,
    },

    /// A hash of a file differs from what the listing role says: mix-and-match or tampering.
    #[error("{role}: {algorithm} differs from the hash in {listed_in} v{version}")]
    HashMismatch {
        /// Role (file) whose hash is wrong.
        role: String,
        /// Role that lists it.
        listed_in: String,
        /// Version of the listing role.
        version: u64,
        /// Hash algorithm that differs.
        algorithm: String,
    },

    /// A role (or target) that must be listed is not.
    #[error("{role}: not listed in {listed_in} v{version}")]
    NotListed {
        /// Role or target missing.
        role: String,
        /// Where it should be listed.
        listed_in: String,
        /// Version of the listing role.
        version: u64,
    },

    /// A delegated role trusted before that the new snapshot no longer lists while its parent
    /// still delegates it: hiding a role drops its rollback baseline, so it is refused.
    #[error(
        "{role}: trusted at v{trusted}, but snapshot v{version} no longer lists it while \
         {parent} still delegates it (hiding a role is a rollback)"
    )]
    Hidden {
        /// Delegated role.
        role: String,
        /// Version of the snapshot that leaves it out.
        version: u64,
        /// The version trusted before.
        trusted: u64,
        /// The role that delegates it.
        parent: String,
    },

    /// More of something than sigil walks (root rotations, delegated roles, delegation
    /// depth): a bound against hostile repositories.
    #[error("{role}: {what}, more than sigil's limit of {limit}")]
    LimitExceeded {
        /// Role (or walk step) concerned.
        role: String,
        /// What was counted, with the count.
        what: String,
        /// The limit.
        limit: u64,
    },

    /// A delegated role is not allowed to sign for this target path.
    #[error("{role}: target {target:?} is outside the paths delegated to it")]
    PathNotDelegated {
        /// Delegated role.
        role: String,
        /// Target path.
        target: String,
    },

    /// A role name is not valid here (bad delegation name, base role where a delegation is needed).
    #[error("invalid role name {role:?}: {reason}")]
    InvalidRoleName {
        /// Name given.
        role: String,
        /// Why it is refused.
        reason: String,
    },

    /// A role that the operation needs is unknown.
    #[error("{role}: no such role{}", detail(.reason))]
    NoSuchRole {
        /// Name given.
        role: String,
        /// Context.
        reason: String,
    },

    /// A TUF key cannot be decoded or used.
    #[error("key {key_id}: {reason}")]
    InvalidKey {
        /// Key id (as listed in metadata, or computed).
        key_id: String,
        /// What is wrong.
        reason: String,
    },

    /// An X.509 certificate cannot be parsed, built or accepted.
    #[error("certificate: {reason}")]
    Certificate {
        /// What is wrong.
        reason: String,
    },

    /// A signer failed.
    #[error("{role}: signing with key {key_id} failed: {source}")]
    Sign {
        /// Role being signed.
        role: String,
        /// Key asked to sign.
        key_id: String,
        /// The signer's error.
        #[source]
        source: SignError,
    },

    /// Fewer signers are available than the role's threshold.
    #[error("{role}: {available} signing key(s) available, threshold is {threshold}")]
    MissingSigners {
        /// Role to sign.
        role: String,
        /// Signers matching the role's keys.
        available: usize,
        /// Signatures required.
        threshold: u64,
    },

    /// A timestamp is not RFC 3339 or is out of range.
    #[error("invalid time {value:?}: {reason}")]
    Time {
        /// The offending text or value.
        value: String,
        /// Why.
        reason: String,
    },

    /// A target named in an operation does not exist.
    #[error("target {name:?} not found{}", detail(.reason))]
    TargetNotFound {
        /// Target path.
        name: String,
        /// Where it was looked for.
        reason: String,
    },

    /// A target name cannot be published.
    #[error("target name {name:?}: {reason}")]
    InvalidTargetName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// A target's content does not match its metadata.
    #[error("target {name:?} in {role}: {reason}")]
    TargetMismatch {
        /// Target path.
        name: String,
        /// Role that lists it.
        role: String,
        /// Length or hash that differs.
        reason: String,
    },

    /// An update step was attempted before the step it depends on.
    #[error("{role}: cannot be loaded before {needs}")]
    UpdateOrder {
        /// Role being loaded.
        role: String,
        /// What must be loaded first.
        needs: String,
    },

    /// A staged change cannot be read, written or applied.
    #[error("change {path}: {reason}")]
    Changelist {
        /// File (or description) of the change.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// Staged roles lack signatures: `publish` refuses and names the keys that can still sign.
    #[error("not enough signatures: {}", list(.0))]
    Unsigned(Vec<crate::repository::MissingSignatures>),

    /// A role would get a threshold its keys cannot meet (0, or above its key count).
    #[error("{role}: a threshold of {threshold} cannot be met by {keys} distinct key(s)")]
    BadThreshold {
        /// The role.
        role: String,
        /// Its distinct keys.
        keys: usize,
        /// The threshold asked for.
        threshold: u64,
    },

    /// A TUF 1.0 repository directory is not in the state the operation needs.
    #[error("repository {}: {reason}", .path.display())]
    Repository {
        /// The repository (or the file in it).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A file could not be fetched from the repository (network failure, HTTP error, a
    /// response longer than the cap for that file).
    #[error("fetching {what}: {reason}")]
    Fetch {
        /// The file (role or target) being fetched.
        what: String,
        /// What went wrong.
        reason: String,
    },

    /// File IO on the trust directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// Path being read or written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn detail(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl Error {
    pub(crate) fn invalid(role: &str, version: u64, reason: impl Into<String>) -> Self {
        Self::Invalid {
            role: role.to_owned(),
            version,
            reason: reason.into(),
        }
    }

    pub(crate) fn repo(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Repository {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn key(key_id: &str, reason: impl Into<String>) -> Self {
        Self::InvalidKey {
            key_id: key_id.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn cert(reason: impl Into<String>) -> Self {
        Self::Certificate {
            reason: reason.into(),
        }
    }
}
