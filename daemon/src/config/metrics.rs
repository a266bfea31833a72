//! `[metrics]`: where sigild serves its Prometheus metrics. Without the table nothing listens.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Error;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` (TCP; keep it on loopback) or an absolute Unix socket path.
    pub listen: String,
    /// Group that owns a Unix socket (mode 0660), so a scraper in it may connect.
    pub socket_group: Option<String>,
}

/// Where the metrics listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path (absolute).
    Unix(PathBuf),
}

impl MetricsConfig {
    /// The parsed `listen`: an absolute path is a Unix socket, anything else must be an
    /// `ip:port` address (no host names: what is bound must be what the file says).
    pub fn endpoint(&self) -> Result<MetricsListen, Error> {
        let listen = self.listen.as_str();
        if listen.starts_with('/') {
            let path = PathBuf::from(listen);
            if path.file_name().is_none() || listen.ends_with('/') {
                return Err(Error::Invalid(format!(
                    "metrics.listen {listen:?} names a directory, not a socket file"
                )));
            }
            return Ok(MetricsListen::Unix(path));
        }
        if self.socket_group.is_some() {
            return Err(Error::Invalid(
                "metrics.socket_group applies to a Unix socket only; metrics.listen is a TCP address"
                    .into(),
            ));
        }
        listen.parse().map(MetricsListen::Tcp).map_err(|_| {
            let hint = if listen.contains('/') {
                "a Unix socket path must be absolute"
            } else {
                "expected an address like \"127.0.0.1:9464\" or an absolute Unix socket path"
            };
            Error::Invalid(format!(
                "metrics.listen {listen:?} is neither an ip:port address nor an absolute Unix socket path ({hint})"
            ))
        })
    }
}
