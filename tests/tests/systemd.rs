//! sigild under systemd's protocols, driven the way systemd drives it: readiness and stopping
//! reported on `$NOTIFY_SOCKET` (Type=notify), and the API socket taken from socket
//! activation (`systemd-socket-activate`, the same LISTEN_FDS/LISTEN_PID protocol as
//! sigild.socket) instead of being bound by sigild, and left in place when sigild stops.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use sigil_e2e::DevDir;
use sigil_proto::sigil_v1 as pb;

/// Receives the next notification, or panics after `DAEMON`-scale patience.
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification from sigild before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigild_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = DevDir::new();
    dir.init();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("binding the notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let config = dir.config().write("notify.toml");
    let daemon = dir
        .sigild_config(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .spawn();

    let ready = next_notification(&notify);
    assert!(
        ready.lines().any(|l| l == "READY=1"),
        "first notification: {ready:?}"
    );
    // Ready means serving: the socket answers.
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/notify", pb::Algorithm::EcdsaP256)
        .await;
    assert_eq!(key.key_id.len(), 64);
    drop(client);

    let pid = daemon.pid();
    let status = daemon.stop();
    assert!(status.success(), "sigild {pid} exit: {status}");
    let stopping = next_notification(&notify);
    assert!(
        stopping.lines().any(|l| l == "STOPPING=1"),
        "after SIGTERM: {stopping:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigild_serves_the_socket_systemd_passes_and_leaves_it_when_it_stops() {
    assert!(
        Path::new("/usr/bin/systemd-socket-activate").exists(),
        "systemd-socket-activate missing: apt-get install -y systemd"
    );
    let dir = DevDir::new();
    dir.init();
    let config = dir.config().write("activated.toml");
    let socket = dir.socket();
    // systemd-socket-activate binds the socket, waits for a connection, then execs sigild
    // (same pid) with LISTEN_FDS=1 and LISTEN_PID set, as systemd does for sigild.socket.
    let wrapper = [
        "systemd-socket-activate".into(),
        "--listen".into(),
        socket.clone().into_os_string(),
        format!("--setenv=SOFTHSM2_CONF={}", dir.softhsm_conf().display()).into(),
    ];
    let daemon = dir.sigild_wrapped(&wrapper, &config).spawn();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/activated", pb::Algorithm::EcdsaP256)
        .await;
    let listed = client.list().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key_id, key.key_id);
    daemon.wait_for_log("socket activation", 1);
    drop(client);

    let status = daemon.stop();
    assert!(status.success(), "exit: {status}");
    assert!(
        socket.exists(),
        "the socket belongs to the socket unit and must outlive sigild"
    );
}

/// The unit bounds descriptors above what sigild's own connection caps can take (so the caps,
/// not EMFILE, decide), bounds memory, and forbids core dumps (PINs are in memory).
#[test]
fn the_unit_bounds_descriptors_memory_and_core_dumps() {
    use sigil_daemon::config::limits;
    let unit_path = sigil_e2e::workspace_root().join("daemon/dist/sigild.service");
    let unit = std::fs::read_to_string(&unit_path)
        .unwrap_or_else(|e| panic!("{}: {e}", unit_path.display()));
    let setting = |key: &str| {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .next_back()
            .unwrap_or_else(|| panic!("{key}= is not set in {}", unit_path.display()))
            .trim()
            .to_owned()
    };
    let nofile: usize = setting("LimitNOFILE")
        .parse()
        .expect("LimitNOFILE is a number");
    let caps = limits::MAX_CONNECTIONS + limits::NOTARY_MAX_CONNECTIONS;
    assert!(
        nofile >= 4 * caps,
        "LimitNOFILE={nofile} leaves too little room over the connection caps ({caps})"
    );
    assert_eq!(setting("LimitCORE"), "0");
    let memory = setting("MemoryMax");
    assert!(
        memory.ends_with('G') || memory.ends_with('M'),
        "MemoryMax={memory} is not a size"
    );
}
