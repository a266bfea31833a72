//! The accept loop both listeners share, with the bounds that keep one client (or a flood of
//! half-open connections) from starving the others: at most `max` connections open at once
//! (further clients wait in the kernel's accept queue, costing sigild no descriptor), at most
//! `per_uid` of them for one Unix peer, and a growing pause after an accept error (EMFILE,
//! ENFILE, ENOBUFS) instead of a busy loop. Each connection carries its slot until it closes.
//! The cost is per connection, not per request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::transport::server::Connected;

/// First pause after a failed accept; doubled on each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause after failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning per this period about a cap being reached or accepts failing.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How many connections a listener keeps open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max: usize,
    /// Connections one Unix peer uid may hold (TCP peers have no uid).
    pub per_uid: Option<usize>,
}

/// A listening socket whose connections the accept loop takes.
pub trait Listener: Send + 'static {
    /// The accepted connection.
    type Io: Send + 'static;
    /// Accepts one connection, with the peer's uid where the socket type tells it.
    fn accept_one(&self) -> impl Future<Output = io::Result<(Self::Io, Option<u32>)>> + Send;
}

impl Listener for UnixListener {
    type Io = UnixStream;
    async fn accept_one(&self) -> io::Result<(UnixStream, Option<u32>)> {
        let (stream, _) = self.accept().await?;
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        Ok((stream, uid))
    }
}

impl Listener for TcpListener {
    type Io = TcpStream;
    async fn accept_one(&self) -> io::Result<(TcpStream, Option<u32>)> {
        let (stream, _) = self.accept().await?;
        // As tonic's own TCP listener does: small gRPC frames go out at once.
        let _ = stream.set_nodelay(true);
        Ok((stream, None))
    }
}

/// An accepted connection holding its slots under the caps until it is dropped.
#[derive(Debug)]
pub struct Counted<Io> {
    io: Io,
    _slot: OwnedSemaphorePermit,
    _uid: Option<UidSlot>,
}

/// One of a uid's connections; gives its place back when dropped.
#[derive(Debug)]
struct UidSlot {
    uid: u32,
    open: Arc<Mutex<HashMap<u32, usize>>>,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

/// Rate-limits a repeated warning.
#[derive(Debug, Default)]
struct Throttle(Option<Instant>);

impl Throttle {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .0
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY);
        if due {
            self.0 = Some(now);
        }
        due
    }
}

/// The accept loop's state between connections.
struct Acceptor<L> {
    listener: L,
    what: &'static str,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    per_uid: Arc<Mutex<HashMap<u32, usize>>>,
    backoff: Duration,
    full: Throttle,
    failing: Throttle,
    uid_full: Throttle,
}

impl<L: Listener> Acceptor<L> {
    /// The next connection that fits under the caps. Never fails: accept errors are logged
    /// and waited out, so a listener outlives a moment without descriptors.
    async fn next(&mut self) -> Counted<L::Io> {
        loop {
            let slot = match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if self.full.due() {
                        tracing::warn!(
                            listener = self.what,
                            max_connections = self.limits.max,
                            "connection limit reached; new clients wait until one closes"
                        );
                    }
                    Arc::clone(&self.slots)
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed")
                }
            };
            let (io, uid) = match self.listener.accept_one().await {
                Ok(accepted) => {
                    self.backoff = FIRST_BACKOFF;
                    accepted
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    if self.failing.due() {
                        tracing::warn!(listener = self.what, error = %e, pause = ?self.backoff, "accept failed; pausing");
                    }
                    drop(slot);
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let uid_slot = match (uid, self.limits.per_uid) {
                (Some(uid), Some(cap)) => {
                    let mut open = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
                    let n = open.entry(uid).or_default();
                    if *n >= cap {
                        drop(open);
                        if self.uid_full.due() {
                            tracing::warn!(
                                listener = self.what,
                                uid,
                                max_connections_per_uid = cap,
                                "uid holds its connection limit; closing its new connection"
                            );
                        }
                        continue;
                    }
                    *n += 1;
                    Some(UidSlot {
                        uid,
                        open: Arc::clone(&self.per_uid),
                    })
                }
                _ => None,
            };
            return Counted {
                io,
                _slot: slot,
                _uid: uid_slot,
            };
        }
    }
}

/// Errors that concern one connection only (it was reset before it was accepted), retried at
/// once; anything else (out of descriptors or memory) gets the pause.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The connections `listener` accepts under `limits`, as the stream tonic serves. `what`
/// names the listener in logs.
pub fn incoming<L: Listener>(
    listener: L,
    what: &'static str,
    limits: ConnectionLimits,
) -> impl Stream<Item = io::Result<Counted<L::Io>>> + Send + 'static {
    let acceptor = Acceptor {
        listener,
        what,
        limits,
        slots: Arc::new(Semaphore::new(limits.max.max(1))),
        per_uid: Arc::default(),
        backoff: FIRST_BACKOFF,
        full: Throttle::default(),
        failing: Throttle::default(),
        uid_full: Throttle::default(),
    };
    futures_util::stream::unfold(acceptor, |mut acceptor| async move {
        let io = acceptor.next().await;
        Some((Ok(io), acceptor))
    })
}

impl<Io: Connected> Connected for Counted<Io> {
    type ConnectInfo = Io::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Counted<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

forward_async_write!(Counted);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt as _;

    #[tokio::test]
    async fn a_uid_over_its_cap_is_closed_and_the_cap_frees_on_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let limits = ConnectionLimits {
            max: 10,
            per_uid: Some(2),
        };
        let mut incoming = Box::pin(incoming(listener, "test", limits));
        let first = UnixStream::connect(&path).await.expect("connect 1");
        let second = UnixStream::connect(&path).await.expect("connect 2");
        let a = incoming.next().await.expect("stream").expect("accepted 1");
        let b = incoming.next().await.expect("stream").expect("accepted 2");
        // The third of the same uid is accepted and closed at once: its read sees EOF, and
        // the stream yields nothing for it.
        let mut third = UnixStream::connect(&path).await.expect("connect 3");
        let over = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(
            over.is_err(),
            "a connection over the uid's cap was handed out"
        );
        let mut byte = [0u8; 1];
        let n = tokio::io::AsyncReadExt::read(&mut third, &mut byte)
            .await
            .expect("read");
        assert_eq!(n, 0, "the connection over the uid's cap was closed");
        // Closing one gives the uid its place back.
        drop(a);
        let fourth = UnixStream::connect(&path).await.expect("connect 4");
        let c = incoming.next().await.expect("stream").expect("accepted 4");
        drop((first, second, fourth, b, c));
    }

    #[tokio::test]
    async fn the_listener_stops_accepting_at_its_cap_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ConnectionLimits {
            max: 1,
            per_uid: None,
        };
        let mut incoming = Box::pin(incoming(listener, "test", limits));
        let _c1 = TcpStream::connect(addr).await.expect("connect 1");
        let _c2 = TcpStream::connect(addr)
            .await
            .expect("connect 2 (kernel queue)");
        let first = incoming.next().await.expect("stream").expect("accepted 1");
        let waiting = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(
            waiting.is_err(),
            "a second connection was taken over the cap"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
        assert!(
            matches!(second, Ok(Some(Ok(_)))),
            "the queued client is accepted once a slot frees"
        );
    }
}
