//! Listeners. The sigil API is served on a Unix socket only, so every request carries the
//! caller's kernel-verified credentials; the socket's mode and group are a second fence. The
//! optional notary-signer endpoint is TCP with mutual TLS ([`notary`]).

pub mod health;
pub mod notary;
pub mod peer;
pub mod sigil;
pub mod status;

use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sigil_proto::sigil_v1::keys_server::KeysServer;
use sigil_proto::sigil_v1::signer_server::SignerServer;
use sigil_proto::sigil_v1::tokens_server::TokensServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::ServerConfig;
use crate::service::SigningService;

/// Names under which health is reported, besides the server-wide "".
const HEALTH_NAMES: &[&str] = &["sigil.v1.Keys", "sigil.v1.Signer"];

/// Why the listener could not be set up or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on the socket path failed.
    #[error("socket {path}: {what}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The socket's surroundings are unsafe or already taken.
    #[error("socket {path}: {reason}")]
    Refused {
        /// The socket path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The gRPC server failed.
    #[error("server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Binds the API socket: refuses a directory others can write to, replaces only a stale
/// socket (never another file, never a live daemon), then sets mode and group.
pub fn bind(server: &ServerConfig) -> Result<UnixListener, Error> {
    let path = &server.socket;
    let io = |what| {
        let path = path.clone();
        move |source| Error::Socket { path, what, source }
    };
    let refuse = |reason: String| Error::Refused {
        path: path.clone(),
        reason,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io("creating its directory"))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
            .map_err(io("setting its directory's mode"))?;
    }
    let dir_mode = std::fs::metadata(dir)
        .map_err(io("reading its directory"))?
        .mode();
    if dir_mode & 0o002 != 0 {
        return Err(refuse(format!(
            "directory {} is writable by others (mode {:04o}); use a private directory",
            dir.display(),
            dir_mode & 0o7777
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(refuse("another process is serving on it".into()));
            }
            std::fs::remove_file(path).map_err(io("removing the stale socket"))?;
        }
        Ok(_) => {
            return Err(refuse(
                "exists and is not a socket; refusing to remove it".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("checking it")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io("binding"))?;
    let mode = server
        .socket_mode_bits()
        .map_err(|e| refuse(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting its mode"))?;
    if let Some(group) = &server.socket_group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| refuse(format!("socket_group {group:?} does not exist")))?
            .gid;
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| io("setting its group")(std::io::Error::from(e)))?;
    }
    Ok(listener)
}

/// Takes over an API socket someone else bound (systemd socket activation: the socket unit
/// sets its path, mode and group).
pub fn adopt(listener: std::os::unix::net::UnixListener) -> Result<UnixListener, Error> {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_owned))
        .unwrap_or_default();
    let io = |what| {
        let path = path.clone();
        move |source| Error::Socket { path, what, source }
    };
    listener
        .set_nonblocking(true)
        .map_err(io("making the passed socket non-blocking"))?;
    UnixListener::from_std(listener).map_err(io("adopting the passed socket"))
}

/// Serves the sigil API and gRPC health on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    service: Arc<SigningService>,
    listener: UnixListener,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let api = sigil::SigilApi::new(Arc::clone(&service));
    // Room for the request's other fields, so that an oversized message reaches the service
    // and gets RESOURCE_EXHAUSTED with a clear message rather than a transport error.
    let decode_limit = max_message_bytes.saturating_add(64 * 1024);
    let (health, poll) = health::spawn(service, HEALTH_NAMES);
    let result = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted,
        ))
        .add_service(KeysServer::new(api.clone()).max_decoding_message_size(decode_limit))
        .add_service(TokensServer::new(api.clone()))
        .add_service(SignerServer::new(api).max_decoding_message_size(decode_limit))
        .add_service(health)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    poll.abort();
    result.map_err(Error::from)
}

/// tonic refuses a request frame over the decoding limit with OUT_OF_RANGE before reading it;
/// the contract says an oversized Sign payload is RESOURCE_EXHAUSTED, whatever its size. sigild
/// itself never answers OUT_OF_RANGE, so the code alone identifies tonic's refusal (its message
/// is percent-encoded on the wire, so matching on text would be fragile).
fn oversize_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").is_some_and(|v| v == "11") {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "message%20too%20large%20for%20this%20daemon%20(send%20sha256_digest%20instead)",
            ),
        );
    }
    response
}
