//! The scrape endpoint: HTTP/1.1 `GET /metrics` on TCP or a Unix socket, on its own task.
//! It is bounded like every other door into sigild: a few connections at a time, a deadline
//! for the request head and for the whole connection, one request per connection, and no
//! request body is ever read.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::Metrics;
use crate::config::{self, MetricsConfig, MetricsListen};
use crate::service::SigningService;

/// Scrape connections served at once; further ones wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a whole connection may take, whatever the client does.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head read (hyper's smallest buffer); a scrape sends a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8192;
/// The OpenMetrics text format `prometheus-client` writes.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Mode of a metrics Unix socket: sigild's user and the socket's group.
const SOCKET_MODE: u32 = 0o660;

/// Why the metrics listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `[metrics] listen` is unusable.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The TCP address could not be bound (taken, not local, not permitted).
    #[error("cannot serve metrics on {listen}: {source}")]
    Bind {
        /// The configured address.
        listen: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Unix socket could not be made safely.
    #[error("metrics {0}")]
    Socket(#[from] crate::rpc::Error),
}

/// The running scrape endpoint; dropping it stops the task and removes its Unix socket.
#[derive(Debug)]
pub struct Server {
    task: tokio::task::JoinHandle<()>,
    socket: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds `[metrics] listen` and serves it until the returned [`Server`] is dropped; `None`
/// when metrics are off. A bind failure is an error, so sigild stops rather than run
/// without the metrics it was configured to export.
pub fn start(
    service: &Arc<SigningService>,
    config: Option<&MetricsConfig>,
) -> Result<Option<Server>, Error> {
    let (Some(config), Some(metrics)) = (config, service.metrics()) else {
        return Ok(None);
    };
    let (listener, socket) = match config.endpoint()? {
        MetricsListen::Tcp(addr) => {
            let bind_error = |source| Error::Bind {
                listen: config.listen.clone(),
                source,
            };
            let std = std::net::TcpListener::bind(addr).map_err(bind_error)?;
            std.set_nonblocking(true).map_err(bind_error)?;
            (
                Listener::Tcp(TcpListener::from_std(std).map_err(bind_error)?),
                None,
            )
        }
        MetricsListen::Unix(path) => {
            let listener =
                crate::rpc::bind_socket(&path, SOCKET_MODE, config.socket_group.as_deref())?;
            (Listener::Unix(listener), Some(path))
        }
    };
    tracing::info!(listen = %config.listen, "serving metrics");
    let task = tokio::spawn(accept(listener, Arc::clone(metrics), Arc::clone(service)));
    Ok(Some(Server { task, socket }))
}

/// Takes connections while a slot is free, each served on its own task.
async fn accept(listener: Listener, metrics: Arc<Metrics>, service: Arc<SigningService>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (metrics, service) = (Arc::clone(&metrics), Arc::clone(&service));
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(stream, _)| {
                tokio::spawn(connection(stream, metrics, service, slot));
            }),
            Listener::Unix(l) => l.accept().await.map(|(stream, _)| {
                tokio::spawn(connection(stream, metrics, service, slot));
            }),
        };
        if let Err(e) = accepted {
            // Out of file descriptors, say: wait rather than spin.
            tracing::warn!(error = %e, "metrics: accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Serves one request on one connection within [`CONNECTION_TIMEOUT`].
async fn connection<S>(
    stream: S,
    metrics: Arc<Metrics>,
    service: Arc<SigningService>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answer = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = respond(&request, &metrics, &service);
        async move { Ok::<_, Infallible>(response) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), answer);
    match tokio::time::timeout(CONNECTION_TIMEOUT, served).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics: connection failed"),
        Err(_) => tracing::debug!("metrics: connection timed out"),
    }
}

/// `GET /metrics` gets the exposition; another path 404, another method 405.
fn respond(
    request: &Request<Incoming>,
    metrics: &Metrics,
    service: &SigningService,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET"));
        return response;
    }
    let text = metrics.encode(service.tokens_present());
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
    );
    response
}
