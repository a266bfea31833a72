//! Turning a configuration into a running service: read PINs, open tokens, compile the policy,
//! open the audit log, rebuild the key ring. Any failure here stops sigild before it serves.

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::backend::attestation::Roots;
use crate::backend::yubikey::ManagementKey;
use crate::backend::{self, Backend, pkcs11::Pkcs11Backend, yubikey::YubikeyBackend};
use crate::config::ManagementKeySetting;
use crate::config::{self, BackendConfig, Config};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::secret::{self, read_pin_file};
use crate::service::{self, MetadataGuard, SigningService};
use crate::state_dir::StateDir;

/// Why sigild cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// A PIN file is unusable.
    #[error(transparent)]
    Pin(#[from] secret::PinFileError),
    /// A token could not be opened.
    #[error(transparent)]
    Backend(#[from] backend::Error),
    /// The audit log could not be opened.
    #[error("cannot open audit log {path}: {source}")]
    Audit {
        /// The audit log path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration asks for something this build does not do yet.
    #[error("{0}")]
    NotSupported(String),
    /// The state directory is missing, unsafe or cannot be made.
    #[error("[server] state_dir {path}: {what}")]
    StateDir {
        /// The configured directory.
        path: std::path::PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A `[[metadata]]` rule or the version floors file is unusable.
    #[error("{0}")]
    Metadata(String),
    /// Rebuilding the key ring failed.
    #[error("building the key ring: {0}")]
    Service(#[from] service::Error),
}

/// Opens every configured backend. PIN files are read and checked first.
pub fn open_backends(config: &Config) -> Result<Vec<Arc<dyn Backend>>, Error> {
    let mut backends: Vec<Arc<dyn Backend>> = Vec::with_capacity(config.backends.len());
    for backend in &config.backends {
        match backend {
            BackendConfig::Pkcs11(c) => {
                let pin = read_pin_file(&c.pin_file)?;
                backends.push(Arc::new(Pkcs11Backend::open(c, pin)?));
            }
            BackendConfig::Yubikey(c) => {
                let state_dir = config.server.state_dir.as_deref().ok_or_else(|| {
                    config::Error::Invalid(format!(
                        "backend {:?}: a yubikey backend needs [server] state_dir, where sigild \
                         records which key it generated in which slot",
                        c.name
                    ))
                })?;
                prepare_state_dir(state_dir)?;
                // Without pin_file the backend starts locked until `sigil token unlock`.
                let pin = c.pin_file.as_deref().map(read_pin_file).transpose()?;
                let roots = Roots::load(&c.attestation_roots)
                    .map_err(|e| config::Error::Invalid(format!("backend {:?}: {e}", c.name)))?;
                let mgm = match (&c.management_key_file, c.management_key) {
                    (Some(path), _) => {
                        // Same rules as a PIN file: 0600, no symlink, wiped after use.
                        let text = read_pin_file(path)?;
                        ManagementKey::from_hex(secrecy::ExposeSecret::expose_secret(
                            text.as_auth_pin(),
                        ))
                        .map_err(|e| {
                            config::Error::Invalid(format!(
                                "backend {:?}: management_key_file {}: {e}",
                                c.name,
                                path.display()
                            ))
                        })?
                    }
                    (None, Some(ManagementKeySetting::PinProtected)) => ManagementKey::PinProtected,
                    (None, _) if c.allow_default_management_key => ManagementKey::Default,
                    (None, _) => {
                        return Err(config::Error::Invalid(format!(
                            "backend {:?}: no management key configured, and the factory default \
                             lets any local user relabel keys or import their own: set \
                             management_key_file or management_key = \"pin-protected\" (or \
                             allow_default_management_key = true for a test device)",
                            c.name
                        ))
                        .into());
                    }
                };
                backends.push(Arc::new(YubikeyBackend::open(
                    c, pin, roots, mgm, state_dir,
                )?));
            }
        }
    }
    Ok(backends)
}

/// Prepares the state dir ([`crate::state_dir::prepare`]), naming it in the error.
pub fn prepare_state_dir(dir: &std::path::Path) -> Result<(), Error> {
    crate::state_dir::prepare(dir).map_err(|what| Error::StateDir {
        path: dir.to_owned(),
        what,
    })
}

/// Builds the signing service from a configuration.
pub async fn build(config: &Config) -> Result<SigningService, Error> {
    if let Some(ns) = &config.notary_signer {
        // The TLS key guards the endpoint like a PIN guards the token.
        secret::check_private_file(&ns.tls_key)?;
    }
    let policy = Policy::load(config)?;
    let audit = AuditLog::open(&config.server.audit_log).map_err(|source| Error::Audit {
        path: config.server.audit_log.clone(),
        source,
    })?;
    // Locked before any token is opened: a second sigild on this state dir stops here.
    let state_dir = match &config.server.state_dir {
        Some(dir) => Some(StateDir::open(dir).map_err(|what| Error::StateDir {
            path: dir.clone(),
            what,
        })?),
        None => None,
    };
    let guard = MetadataGuard::new(config, state_dir).map_err(Error::Metadata)?;
    let backends = open_backends(config)?;
    let service = SigningService::new(
        backends,
        policy,
        audit,
        service::Limits::from_config(config),
    )
    .await?
    .with_metadata_guard(guard);
    Ok(match &config.metrics {
        Some(_) => service.with_metrics(Arc::new(Metrics::new(
            config.backends.iter().map(BackendConfig::name),
        ))),
        None => service,
    })
}

/// SIGHUP: each backend's PIN read again from its file, so that a corrected PIN file takes
/// effect without a restart. A PIN file that is now unreadable or unsafe is reported, and that
/// backend keeps the PIN it has.
pub fn reread_pins(config: &Config) -> Vec<(String, crate::secret::Pin)> {
    let mut pins = Vec::new();
    for backend in &config.backends {
        let (name, file) = match backend {
            BackendConfig::Pkcs11(c) => (&c.name, Some(&c.pin_file)),
            BackendConfig::Yubikey(c) => (&c.name, c.pin_file.as_ref()),
        };
        let Some(file) = file else { continue };
        match read_pin_file(file) {
            Ok(pin) => pins.push((name.clone(), pin)),
            Err(e) => {
                tracing::error!(backend = %name, error = %e, "PIN file not re-read; keeping the PIN in use");
            }
        }
    }
    pins
}
