//! Defaults and checks of the resource bounds (`[server]`, `[notary_signer]`, `[[backend]]`):
//! connections, HTTP/2 streams, TLS handshakes and queued token jobs. Each bound keeps one
//! client from taking what every other client needs; DESIGN-NOTES.md says why each default is
//! what it is.

use super::Error;

/// `[server] max_connections`: API socket connections open at once. Further clients wait in
/// the kernel's accept queue until one closes.
pub const MAX_CONNECTIONS: usize = 256;
/// `[server] max_connections_per_uid`: API socket connections one uid may hold, so that one
/// local user cannot take every connection; the next is closed at once.
pub const MAX_CONNECTIONS_PER_UID: usize = 32;
/// `[server] max_streams_per_connection`: concurrent HTTP/2 streams (requests) per connection
/// on both endpoints; a client that opens more gets them refused by HTTP/2 (REFUSED_STREAM)
/// and retries, as gRPC clients do.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// `[notary_signer] max_connections`: TCP connections open at once, handshaking or not.
pub const NOTARY_MAX_CONNECTIONS: usize = 256;
/// `[notary_signer] handshake_timeout_secs`: a TLS handshake not finished by then is dropped.
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// `[[backend]] max_queued_jobs`: token jobs (signatures, generations) waiting for the
/// backend's threads; one more is answered RESOURCE_EXHAUSTED instead of waiting.
pub const MAX_QUEUED_JOBS: usize = 256;
/// Largest value any of the counts may be set to.
const MAX_COUNT: usize = 1 << 20;
/// Longest handshake timeout.
const MAX_HANDSHAKE_TIMEOUT_SECS: u64 = 600;

/// The serde defaults of the sections without a `Default` (serde wants functions).
pub(super) fn notary_max_connections() -> usize {
    NOTARY_MAX_CONNECTIONS
}
pub(super) fn handshake_timeout_secs() -> u64 {
    HANDSHAKE_TIMEOUT_SECS
}
pub(super) fn max_queued_jobs() -> usize {
    MAX_QUEUED_JOBS
}

/// Refuses a count of 0 (nothing could ever be served) or an absurdly large one.
pub(super) fn check_count(key: &str, value: usize) -> Result<(), Error> {
    if (1..=MAX_COUNT).contains(&value) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{key} must be 1 to {MAX_COUNT}, not {value}"
        )))
    }
}

/// Refuses a handshake timeout of 0 or over ten minutes.
pub(super) fn check_handshake_timeout(value: u64) -> Result<(), Error> {
    if (1..=MAX_HANDSHAKE_TIMEOUT_SECS).contains(&value) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "notary_signer.handshake_timeout_secs must be 1 to {MAX_HANDSHAKE_TIMEOUT_SECS}, not {value}"
        )))
    }
}
