//! Listeners. The sigil API is served on a Unix socket only, so every request carries the
//! caller's kernel-verified credentials; the socket's mode and group are a second fence. The
//! optional notary-signer endpoint is TCP with mutual TLS ([`notary`]). Both take connections
//! through [`limits`] and cap HTTP/2 streams and headers per connection ([`http2_bounds`]).

/// `AsyncWrite` for a connection wrapper `$wrapper<Io>` with an `io: Io` field: every call goes
/// to the wrapped connection unchanged (the wrappers here only look at what clients send).
macro_rules! forward_async_write {
    ($wrapper:ident) => {
        impl<Io: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<Io> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.io).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
            }
        }
    };
}

pub mod authority;
pub mod health;
pub mod limits;
pub mod listen;
pub mod notary;
pub mod peer;
pub mod sigil;
pub mod status;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use sigil_proto::sigil_v1::keys_server::KeysServer;
use sigil_proto::sigil_v1::signer_server::SignerServer;
use sigil_proto::sigil_v1::tokens_server::TokensServer;
use tokio::net::UnixListener;
use tokio_stream::StreamExt as _;

pub use listen::{adopt, bind, bind_socket};

use crate::config::ServerConfig;
use crate::service::SigningService;

/// Names under which health is reported, besides the server-wide "".
const HEALTH_NAMES: &[&str] = &["sigil.v1.Keys", "sigil.v1.Signer"];

/// Services gRPC reflection lists on the socket (it describes itself as well).
const REFLECTED_NAMES: &[&str] = &[
    "sigil.v1.Keys",
    "sigil.v1.Signer",
    "sigil.v1.Tokens",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

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
    /// The compiled-in descriptors did not make a reflection service (a build defect).
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Largest HTTP/2 header list a request may send (gRPC requests send a few hundred bytes;
/// hyper's default, stated here so the bound does not move with an upgrade).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// The HTTP/2 bounds both endpoints share: `streams` concurrent requests per connection
/// (tonic's default is unlimited) and [`MAX_HEADER_LIST_BYTES`] of headers.
fn http2_bounds(streams: u32) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(streams)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
}

/// Serves the sigil API and gRPC health on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    service: Arc<SigningService>,
    listener: UnixListener,
    server: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let api = sigil::SigilApi::new(Arc::clone(&service));
    // Room for the request's other fields, so that an oversized message reaches the service
    // and gets RESOURCE_EXHAUSTED with a clear message rather than a transport error.
    let decode_limit = server.max_message_bytes.saturating_add(64 * 1024);
    // Reflection (v1, and v1alpha which grpcio's reflection client and older grpcurl use)
    // describes the socket's services only, not the notary-signer ones in the same set.
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sigil_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in REFLECTED_NAMES {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let (health, poll) = health::spawn(service, HEALTH_NAMES);
    let incoming = limits::incoming(
        listener,
        "api socket",
        limits::ConnectionLimits {
            max: server.max_connections,
            per_uid: Some(server.max_connections_per_uid),
        },
    )
    .map(|conn| conn.map(authority::AuthorityFix::new));
    let result = http2_bounds(server.max_streams_per_connection)
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted,
        ))
        .add_service(KeysServer::new(api.clone()).max_decoding_message_size(SMALL_REQUEST_LIMIT))
        .add_service(TokensServer::new(api.clone()).max_decoding_message_size(SMALL_REQUEST_LIMIT))
        .add_service(SignerServer::new(api).max_decoding_message_size(decode_limit))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    poll.abort();
    result.map_err(Error::from)
}

/// Decoding limit of the Keys and Tokens services: their requests carry a key id, a role, a
/// GUN, a backend name or a PIN, all far below this, so a larger frame is refused by tonic
/// before it is read (RESOURCE_EXHAUSTED, nothing audited) instead of being buffered and
/// checked field by field. Sign has its own limit, `max_message_bytes` + 64 KiB.
pub const SMALL_REQUEST_LIMIT: usize = 64 * 1024;

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
                "request%20too%20large%20for%20this%20daemon%20(to%20sign%20large%20data%2C%20send%20sha256_digest)",
            ),
        );
    }
    response
}
