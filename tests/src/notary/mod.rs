//! Harness for running the real Notary 0.7.0 (`notary-server`, `notary-signer`, the `notary`
//! client from the Debian package `notary`) on loopback against sigild, so tests and benchmarks
//! prove interoperability with the real binaries rather than with our reading of them.
//!
//! The pieces:
//!
//! - [`require_notary`]: fails (never skips) with the install command when a binary is missing.
//! - [`free_port`]: a free TCP port on 127.0.0.1, never handed out twice in one process.
//! - [`Pki`] / [`CertKey`]: a throwaway ECDSA P-256 CA made with `openssl`, with certificates
//!   for notary-server (HTTPS), the signer (sigild or notary-signer) and notary-server's mTLS
//!   client identity, and [`Pki::issue`] for more.
//! - [`Process`]: a child we spawned, logging to a file, stopped by its own pid on drop.
//! - [`NotaryServer`] with [`TrustService`] `Remote` (sigild or a real notary-signer) or `Local`
//!   (no signer at all), and [`HttpResponse`] from its HTTPS API.
//! - [`NotarySigner`]: the real notary-signer with memory storage (for comparisons).
//! - [`NotaryClient`]: the real `notary` client with its own trust dir and passphrases.
//! - [`sigild_notary_toml`] / [`write_sigild_config`]: sigild's `[notary_signer]` section.
//! - [`SignerApi`] / [`connect_signer`]: notary-signer's gRPC API (`proto.KeyManagement`,
//!   `proto.Signer`, health) over mutual TLS, and [`tls_handshake`] for raw handshakes.
//! - [`SignedDoc`], [`RoleKey`], [`notary_key_id`]: enough of Notary's metadata to check
//!   signatures served by notary-server with `p256` / `ed25519-dalek`, independently of sigild.
//! - [`AuditLine`]: audit lines of either caller kind (Unix peer or TLS client).
//! - [`ParkedToken`]: a SoftHSM token directory moved away (the token "unplugged") and back.
//!
//! Every process runs on 127.0.0.1 only and is stopped by the pid it was spawned with.

use std::collections::HashSet;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use sigil_proto::notary as pb;
use sigil_proto::notary::key_management_client::KeyManagementClient;
use sigil_proto::notary::signer_client::SignerClient as NotarySignerClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::{DevDir, RPC_TIMEOUT, read_text, toml_path, write_file};

mod docs;
mod pki;
mod process;
mod servers;
mod sigild;
mod tls;

pub use docs::*;
pub use pki::*;
pub use process::*;
pub use servers::*;
pub use sigild::*;
pub use tls::*;

/// How to install what this harness runs.
pub const NOTARY_INSTALL: &str = "run `make deps` or `apt-get install -y notary`";
/// The Notary binaries this harness runs.
pub const NOTARY_BINARIES: [&str; 3] = ["notary", "notary-server", "notary-signer"];
/// CN of the client certificate notary-server presents to its signer.
pub const SERVER_CLIENT_CN: &str = "notary-server-client";
/// Health service names notary-server polls on its signer.
pub const SIGNER_HEALTH_NAMES: [&str; 2] = [
    "grpc.health.v1.Health.KeyManagement",
    "grpc.health.v1.Health.Signer",
];
/// Throwaway passphrases for the notary client's local keys (it has no tty in tests).
pub const CLIENT_PASSPHRASES: [(&str, &str); 4] = [
    ("NOTARY_ROOT_PASSPHRASE", "e2e-root-passphrase"),
    ("NOTARY_TARGETS_PASSPHRASE", "e2e-targets-passphrase"),
    ("NOTARY_SNAPSHOT_PASSPHRASE", "e2e-snapshot-passphrase"),
    ("NOTARY_DELEGATION_PASSPHRASE", "e2e-delegation-passphrase"),
];
/// How long a Notary daemon may take to start serving, or to stop after SIGTERM.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `notary` client command may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// notary-server runs its "Trust operational" check this often (first run after one period).
pub const SERVER_HEALTH_PERIOD: Duration = Duration::from_secs(10);
/// Read/write timeout of one HTTPS exchange or raw handshake.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// The environment's PATH for children started with a scrubbed environment.
const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Validity of the throwaway certificates.
const CERT_DAYS: &str = "30";

fn find_on_path(command: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_else(|| CHILD_PATH.into());
    std::env::split_paths(&paths)
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// Panics with the install command if `notary`, `notary-server`, `notary-signer` or `openssl`
/// is missing. Never skips.
pub fn require_notary() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let missing: Vec<&str> = NOTARY_BINARIES
            .iter()
            .copied()
            .filter(|b| find_on_path(b).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "Notary 0.7.0 missing ({}): {NOTARY_INSTALL}",
            missing.join(", ")
        );
        assert!(
            find_on_path("openssl").is_some(),
            "OpenSSL missing: run `make deps` or `apt-get install -y openssl`"
        );
    });
}

/// The absolute path of a Notary binary (after [`require_notary`]).
pub fn notary_binary(name: &str) -> PathBuf {
    require_notary();
    find_on_path(name).unwrap_or_else(|| panic!("{name} missing: {NOTARY_INSTALL}"))
}

/// A TCP port that was free on 127.0.0.1 a moment ago and that this process has not handed
/// out before (parallel tests in one process never get the same port).
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0 to find a free port")
            .port();
        let mut given = given.lock().unwrap_or_else(|p| p.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}
