//! Garbage and half-open connections on the socket: the daemon serves on, and SIGTERM is not
//! held up by idle connections.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_half_open_connections_do_not_disturb_the_daemon() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let socket = daemon.socket().to_owned();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let baseline = client.list().await;

    // Random bytes: the daemon drops the connection.
    let mut raw = UnixStream::connect(&socket).expect("raw connect");
    raw.write_all(&pseudo_random_bytes("garbage", 64 * 1024))
        .ok();
    let (_, closed) = read_until_closed(&mut raw, Duration::from_secs(10));
    assert!(closed, "the daemon kept a garbage connection open");
    assert_unchanged(&mut client, &baseline, &key, "random bytes").await;

    // A valid HTTP/2 preface followed by garbage frames.
    let mut raw = UnixStream::connect(&socket).expect("raw connect");
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(pseudo_random_bytes("frames", 8 * 1024));
    raw.write_all(&bytes).ok();
    let (_, closed) = read_until_closed(&mut raw, Duration::from_secs(10));
    assert!(
        closed,
        "the daemon kept a connection with garbage frames open"
    );
    assert_unchanged(&mut client, &baseline, &key, "garbage HTTP/2 frames").await;

    // Half-open connections, held while others are served.
    let held = half_open_connections(&socket);
    let mut fresh = daemon.client().await;
    assert_unchanged(&mut fresh, &baseline, &key, "half-open connections").await;
    assert_unchanged(&mut client, &baseline, &key, "half-open connections").await;
    drop(held);
    assert_unchanged(&mut fresh, &baseline, &key, "half-open connections closed").await;
}

/// Connections that never finish the HTTP/2 handshake: silent ones, a partial preface, a full
/// preface and SETTINGS that then never answer, and one that closed its writing side.
fn half_open_connections(socket: &Path) -> Vec<UnixStream> {
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(UnixStream::connect(socket).expect("idle connection"));
    }
    let mut partial = UnixStream::connect(socket).expect("partial preface");
    partial
        .write_all(b"PRI * HTTP/2.0\r\n")
        .expect("partial preface write");
    held.push(partial);
    let mut silent_peer = UnixStream::connect(socket).expect("preface + SETTINGS");
    silent_peer
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("preface write");
    held.push(silent_peer);
    let half_closed = UnixStream::connect(socket).expect("half-closed connection");
    half_closed
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown(Write)");
    held.push(half_closed);
    held
}

/// Waits until sigild has taken every connection in `held` into its HTTP/2 layer: the server
/// sends its SETTINGS frame first thing on a connection it accepted, so each must carry one.
fn await_server_settings(held: &[UnixStream]) {
    for (i, mut conn) in held.iter().enumerate() {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut header = [0u8; 9];
        std::io::Read::read_exact(&mut conn, &mut header)
            .unwrap_or_else(|e| panic!("connection {i}: no SETTINGS frame from sigild: {e}"));
        assert_eq!(header[3], 0x4, "connection {i}: first frame is SETTINGS");
    }
}

/// SIGTERM drains in-flight requests; a connection with no request in flight (here, one that
/// never finished its handshake) must not keep the daemon from exiting. Any local user who
/// can reach the socket could otherwise stall every restart until the service manager kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_not_held_up_by_idle_connections() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let socket = daemon.socket().to_owned();
    let held = half_open_connections(&socket);
    await_server_settings(&held);
    let status = tokio::task::spawn_blocking(move || daemon.stop_within(Duration::from_secs(10)))
        .await
        .expect("stopping sigild");
    assert!(
        status.success(),
        "exit status with idle connections open: {status}"
    );
    assert!(!socket.exists(), "socket removed");
    drop(held);
}
