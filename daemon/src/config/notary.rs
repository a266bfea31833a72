//! `[notary_signer]`: the notary-signer compatible endpoint for notary-server.

use std::path::PathBuf;

use serde::Deserialize;

use super::limits;

/// `[notary_signer]`: the notary-signer compatible endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotarySignerConfig {
    /// TCP address to listen on.
    pub listen: String,
    /// Server certificate (PEM).
    pub tls_cert: PathBuf,
    /// Server private key (PEM).
    pub tls_key: PathBuf,
    /// CA that client certificates must chain to.
    pub client_ca: PathBuf,
    /// Backend on which per-GUN timestamp and snapshot keys are generated.
    pub backend: String,
    /// Client certificate identities (CN or SAN) allowed to connect.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// TCP connections open at once, handshaking or not ([`limits::NOTARY_MAX_CONNECTIONS`]).
    #[serde(default = "limits::notary_max_connections")]
    pub max_connections: usize,
    /// Seconds a TLS handshake may take ([`limits::HANDSHAKE_TIMEOUT_SECS`]).
    #[serde(default = "limits::handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    /// Keys the endpoint may hold on the tokens in all (CreateKey beyond: RESOURCE_EXHAUSTED).
    #[serde(default = "default_notary_max_keys")]
    pub max_keys: usize,
    /// Keys the endpoint may hold for one GUN.
    #[serde(default = "default_notary_max_keys_per_gun")]
    pub max_keys_per_gun: usize,
    /// Keys the endpoint may generate in any hour.
    #[serde(default = "default_notary_max_new_keys_per_hour")]
    pub max_new_keys_per_hour: usize,
}

fn default_notary_max_keys() -> usize {
    1024
}

fn default_notary_max_keys_per_gun() -> usize {
    16
}

fn default_notary_max_new_keys_per_hour() -> usize {
    60
}
