//! sigild's configuration: strict TOML (unknown keys are refused by name), where it is found,
//! and the checks that refuse insecure or inconsistent settings before anything is opened.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod backend;
pub mod limits;
mod metadata;
mod metrics;
mod notary;
mod policy;
mod server;
#[cfg(test)]
mod tests;

pub use backend::*;
pub use metadata::*;
pub use metrics::*;
pub use notary::*;
pub use policy::*;
pub use server::*;

/// Where the configuration is looked for when neither `--config` nor `$SIGIL_CONFIG` is set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sigil/sigild.toml";
/// The environment variable naming the configuration file.
pub const CONFIG_ENV_VAR: &str = "SIGIL_CONFIG";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, which names the offending key and line.
        message: String,
    },
    /// The settings are well formed but not usable together.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Socket, audit and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Token backends, in the order they are opened.
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
    /// The optional notary-signer compatible endpoint.
    pub notary_signer: Option<NotarySignerConfig>,
    /// Policy rules; with none, nobody may do anything.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// What keys of some roles must be (attested, touch), whoever asks.
    #[serde(default, rename = "require")]
    pub requirements: Vec<RequirementConfig>,
    /// Bounds on what `sign-metadata` (and the notary-signer endpoint) signs.
    #[serde(default, rename = "metadata")]
    pub metadata: Vec<MetadataRule>,
    /// Prometheus metrics; off without the table.
    pub metrics: Option<MetricsConfig>,
}

impl Config {
    /// Parses and validates a configuration text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The config path: `--config`, else `$SIGIL_CONFIG`, else the default.
    pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_owned)
            .or_else(|| std::env::var_os(CONFIG_ENV_VAR).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    fn validate(&self) -> Result<(), Error> {
        self.server.socket_mode_bits()?;
        if let Some(metrics) = &self.metrics {
            metrics.endpoint()?;
        }
        if self.server.max_message_bytes == 0 {
            return Err(Error::Invalid(
                "server.max_message_bytes must be greater than 0".into(),
            ));
        }
        limits::check_count("server.max_connections", self.server.max_connections)?;
        limits::check_count(
            "server.max_connections_per_uid",
            self.server.max_connections_per_uid,
        )?;
        limits::check_count(
            "server.max_streams_per_connection",
            self.server.max_streams_per_connection as usize,
        )?;
        if self.server.audit_refusals_per_window == 0 || self.server.audit_refusal_window_secs == 0
        {
            return Err(Error::Invalid(
                "server.audit_refusals_per_window and server.audit_refusal_window_secs must be greater than 0"
                    .into(),
            ));
        }
        if self.backends.is_empty() {
            return Err(Error::Invalid(
                "no [[backend]] configured: sigild needs at least one token".into(),
            ));
        }
        let mut names = HashSet::new();
        for backend in &self.backends {
            let name = backend.name();
            if name.is_empty() {
                return Err(Error::Invalid("a backend has an empty name".into()));
            }
            if !names.insert(name) {
                return Err(Error::Invalid(format!(
                    "backend name {name:?} is used twice"
                )));
            }
            let queued = match backend {
                BackendConfig::Pkcs11(c) => c.max_queued_jobs,
                BackendConfig::Yubikey(c) => c.max_queued_jobs,
            };
            limits::check_count(&format!("backend {name:?}: max_queued_jobs"), queued)?;
            match backend {
                BackendConfig::Pkcs11(c) => {
                    c.selector()?;
                    if !(1..=MAX_SESSIONS).contains(&c.sessions) {
                        return Err(Error::Invalid(format!(
                            "backend {name:?}: sessions must be 1 to {MAX_SESSIONS}, not {}",
                            c.sessions
                        )));
                    }
                    let mut ids = HashSet::new();
                    for key in &c.existing_keys {
                        if !ids.insert(key.id_bytes()?) {
                            return Err(Error::Invalid(format!(
                                "backend {name:?}: existing_keys names id {:?} twice",
                                key.id
                            )));
                        }
                        if key.role.is_empty() || key.role.contains(':') {
                            return Err(Error::Invalid(format!(
                                "backend {name:?}: existing_keys id {:?} needs a role without ':'",
                                key.id
                            )));
                        }
                    }
                }
                BackendConfig::Yubikey(c) => {
                    if c.management_key.is_some() && c.management_key_file.is_some() {
                        return Err(Error::Invalid(format!(
                            "backend {name:?}: set management_key or management_key_file, not both"
                        )));
                    }
                }
            }
        }
        if let Some(ns) = &self.notary_signer {
            limits::check_count("notary_signer.max_connections", ns.max_connections)?;
            limits::check_handshake_timeout(ns.handshake_timeout_secs)?;
            if !names.contains(ns.backend.as_str()) {
                return Err(Error::Invalid(format!(
                    "notary_signer.backend {:?} is not a configured backend",
                    ns.backend
                )));
            }
            if ns.max_keys == 0 || ns.max_keys_per_gun == 0 || ns.max_new_keys_per_hour == 0 {
                return Err(Error::Invalid(
                    "notary_signer.max_keys, max_keys_per_gun and max_new_keys_per_hour must be greater than 0"
                        .into(),
                ));
            }
            if ns.allowed_clients.is_empty() {
                return Err(Error::Invalid(
                    "notary_signer.allowed_clients is empty: name the client certificates \
                     (CN or SAN) that may use the endpoint"
                        .into(),
                ));
            }
        }
        for req in &self.requirements {
            if req.name.is_empty() {
                return Err(Error::Invalid(
                    "a [[require]] rule has an empty name".into(),
                ));
            }
            if !req.attested && matches!(req.touch, None | Some(TouchSetting::Never)) {
                return Err(Error::Invalid(format!(
                    "[[require]] {:?} requires nothing: set attested = true and/or touch = \"always\" (or \"cached\")",
                    req.name
                )));
            }
        }
        if self.notary_signer.is_some() && self.server.state_dir.is_none() {
            return Err(Error::Invalid(
                "[notary_signer] needs [server] state_dir: sigild keeps there the highest \
                 timestamp and snapshot version it signed for each GUN"
                    .into(),
            ));
        }
        for rule in &self.policies {
            if rule.users.is_empty()
                && rule.uids.is_empty()
                && rule.groups.is_empty()
                && rule.gids.is_empty()
            {
                return Err(Error::Invalid(format!(
                    "policy {:?} names no users, uids, groups or gids",
                    rule.name
                )));
            }
            if rule.keys.is_empty() && rule.tokens.is_empty() {
                return Err(Error::Invalid(format!(
                    "policy {:?} names no keys (and no tokens)",
                    rule.name
                )));
            }
            if rule.allow.contains(&Op::Unlock) && rule.tokens.is_empty() {
                return Err(Error::Invalid(format!(
                    "policy {:?} allows \"unlock\" but names no tokens: add tokens = [\"<backend name>\"]",
                    rule.name
                )));
            }
            if rule.allow.contains(&Op::SignMetadata) && self.server.state_dir.is_none() {
                return Err(Error::Invalid(format!(
                    "policy {:?} allows \"sign-metadata\": set [server] state_dir, where sigild \
                     keeps the highest version it signed for each GUN and role",
                    rule.name
                )));
            }
            for sel in &rule.keys {
                if sel.key_id.is_some() && (sel.gun.is_some() || sel.role.is_some()) {
                    return Err(Error::Invalid(format!(
                        "policy {:?}: a key selector has either key_id or gun/role, not both",
                        rule.name
                    )));
                }
            }
        }
        Ok(())
    }
}
