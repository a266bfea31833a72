//! `[server]`: the API socket, the audit log, state and request limits.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Error, limits};

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Unix socket path the API is served on.
    pub socket: PathBuf,
    /// Group that owns the socket (clients must be in it to connect).
    pub socket_group: Option<String>,
    /// Socket permission bits as an octal string; the policy decides per key anyway.
    pub socket_mode: String,
    /// Append-only JSON-lines audit log.
    pub audit_log: PathBuf,
    /// Largest `message` a Sign request may carry.
    pub max_message_bytes: usize,
    /// API socket connections open at once ([`limits::MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// API socket connections one uid may hold ([`limits::MAX_CONNECTIONS_PER_UID`]).
    pub max_connections_per_uid: usize,
    /// Concurrent HTTP/2 streams per connection, on both endpoints
    /// ([`limits::MAX_STREAMS_PER_CONNECTION`]).
    pub max_streams_per_connection: u32,
    /// Directory for sigild's own state (0700, owned by sigild's user; created if missing):
    /// which key a YubiKey backend generated in which slot. Required with a YubiKey backend.
    pub state_dir: Option<PathBuf>,
    /// Refusals (denied, not found, invalid) audited line by line per caller and window;
    /// beyond, one `suppressed` line per window counts them.
    pub audit_refusals_per_window: u32,
    /// The window of `audit_refusals_per_window`, in seconds.
    pub audit_refusal_window_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/sigil/sigild.sock"),
            socket_group: None,
            socket_mode: "0660".to_owned(),
            audit_log: PathBuf::from("/var/lib/sigil/audit.jsonl"),
            max_message_bytes: 4 * 1024 * 1024,
            max_connections: limits::MAX_CONNECTIONS,
            max_connections_per_uid: limits::MAX_CONNECTIONS_PER_UID,
            max_streams_per_connection: limits::MAX_STREAMS_PER_CONNECTION,
            state_dir: None,
            audit_refusals_per_window: 100,
            audit_refusal_window_secs: 60,
        }
    }
}

impl ServerConfig {
    /// The socket mode parsed from its octal string.
    pub fn socket_mode_bits(&self) -> Result<u32, Error> {
        let digits = self.socket_mode.trim_start_matches("0o");
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o777 => Ok(mode),
            _ => Err(Error::Invalid(format!(
                "server.socket_mode {:?} is not an octal mode like \"0660\"",
                self.socket_mode
            ))),
        }
    }
}
