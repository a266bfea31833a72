//! The real notary-server, notary-signer and notary client, run by the tests.

use super::*;

/// Where notary-server gets its timestamp and snapshot keys.
#[derive(Debug, Clone)]
pub enum TrustService {
    /// Keys inside notary-server (always Ed25519 in 0.7.0): no signer needed.
    Local,
    /// A gRPC signer (sigild or notary-signer) on 127.0.0.1:`port`, reached with the
    /// [`Pki`]'s CA and client certificate.
    Remote {
        /// The signer's port.
        port: u16,
        /// `ecdsa` or `ed25519` (what CreateKey is asked for).
        key_algorithm: String,
    },
}

impl TrustService {
    /// A remote signer on `port`, ECDSA keys.
    pub fn remote(port: u16) -> Self {
        Self::Remote {
            port,
            key_algorithm: "ecdsa".into(),
        }
    }

    fn json(&self, pki: &Pki) -> serde_json::Value {
        match self {
            Self::Local => serde_json::json!({ "type": "local" }),
            Self::Remote {
                port,
                key_algorithm,
            } => serde_json::json!({
                "type": "remote",
                "hostname": "127.0.0.1",
                "port": port.to_string(),
                "key_algorithm": key_algorithm,
                "tls_ca_file": pki.ca(),
                "tls_client_cert": pki.client().cert,
                "tls_client_key": pki.client().key,
            }),
        }
    }
}

/// The real notary-server on 127.0.0.1, HTTPS with the [`Pki`]'s server certificate and
/// memory storage (a restart loses every repository).
#[derive(Debug)]
pub struct NotaryServer {
    process: Process,
    port: u16,
    ca: PathBuf,
    started: Instant,
}

impl NotaryServer {
    /// Writes `dir/server.json` and starts notary-server with a scrubbed environment; returns
    /// once `GET /v2/` answers 200. Panics with its log if it exits or never serves.
    pub fn start(dir: &Path, pki: &Pki, trust: &TrustService) -> Self {
        let binary = notary_binary("notary-server");
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let port = free_port();
        let config = serde_json::json!({
            "server": {
                "http_addr": format!("127.0.0.1:{port}"),
                "tls_cert_file": pki.server().cert,
                "tls_key_file": pki.server().key,
            },
            "trust_service": trust.json(pki),
            "logging": { "level": "info" },
            "storage": { "backend": "memory" },
        });
        let config_path = dir.join("server.json");
        write_file(&config_path, config.to_string(), 0o600);
        let mut cmd = scrubbed(&binary, dir);
        cmd.arg("-config").arg(&config_path);
        let mut server = Self {
            process: Process::spawn("notary-server", &mut cmd, &dir.join("notary-server.log")),
            port,
            ca: pki.ca(),
            started: Instant::now(),
        };
        loop {
            server.process.assert_running();
            if server
                .try_get("/v2/")
                .is_ok_and(|response| response.status == 200)
            {
                return server;
            }
            assert!(
                server.started.elapsed() < START_TIMEOUT,
                "notary-server did not serve https://127.0.0.1:{port}/v2/ within \
                 {START_TIMEOUT:?}:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its HTTPS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA its certificate chains to.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// When it was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Panics with its log if it has exited.
    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }

    /// `GET path`, transport errors returned.
    pub fn try_get(&self, path: &str) -> std::io::Result<HttpResponse> {
        https_request(self.port, &self.ca, "GET", path)
    }

    /// `GET path`; panics on a transport error.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.try_get(path)
            .unwrap_or_else(|e| panic!("GET {}{path}: {e}\n{}", self.url(), self.log()))
    }

    /// `GET /_notary_server/health`: 200 `{}` when healthy, 503 with the failing check.
    pub fn health(&self) -> HttpResponse {
        self.get("/_notary_server/health")
    }

    /// Polls the health endpoint until it is healthy (200) or not (503), as asked; panics with
    /// the last answer and the log after `timeout`.
    pub fn wait_health(&self, healthy: bool, timeout: Duration) -> HttpResponse {
        let started = Instant::now();
        loop {
            let response = self.health();
            if (response.status == 200) == healthy {
                return response;
            }
            assert!(
                started.elapsed() < timeout,
                "notary-server health did not become {} within {timeout:?}; last: HTTP {} {}\n{}",
                if healthy { "healthy" } else { "unhealthy" },
                response.status,
                response.text(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `GET /v2/<gun>/_trust/tuf/<role>.key`: the server-managed key, created through the
    /// signer's CreateKey if it does not exist yet.
    pub fn server_key(&self, gun: &str, role: &str) -> HttpResponse {
        self.get(&format!("/v2/{gun}/_trust/tuf/{role}.key"))
    }

    /// [`Self::server_key`], retried until 200 (a signer that was just restarted is reached
    /// again after gRPC's reconnect backoff); returns the key JSON.
    pub fn wait_server_key(&self, gun: &str, role: &str, timeout: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let response = self.server_key(gun, role);
            if response.status == 200 {
                return response.json();
            }
            assert!(
                started.elapsed() < timeout,
                "GET {role}.key for {gun} failed for {timeout:?}; last: HTTP {} {}\n{}",
                response.status,
                response.text(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The current `<role>.json` of `gun`, exactly as served; panics unless 200.
    pub fn metadata(&self, gun: &str, role: &str) -> Vec<u8> {
        let response = self.get(&format!("/v2/{gun}/_trust/tuf/{role}.json"));
        assert_eq!(
            response.status,
            200,
            "GET {role}.json of {gun}: {}",
            response.text()
        );
        response.body
    }

    /// A `notary` client for this server with its own trust dir under `dir`.
    pub fn client(&self, dir: &Path) -> NotaryClient {
        NotaryClient::new(&self.url(), &self.ca, dir)
    }

    /// SIGTERM and wait.
    pub fn stop(self) -> Option<ExitStatus> {
        self.process.stop()
    }
}

/// The real notary-signer on 127.0.0.1 with memory storage (keys in RAM, software crypto),
/// mutual TLS with the [`Pki`]'s signer certificate and CA.
#[derive(Debug)]
pub struct NotarySigner {
    process: Process,
    port: u16,
}

impl NotarySigner {
    /// Writes `dir/signer.json` and starts notary-signer; returns once it accepts the
    /// [`Pki::client`] certificate in a mutual TLS handshake.
    pub fn start(dir: &Path, pki: &Pki) -> Self {
        let binary = notary_binary("notary-signer");
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let port = free_port();
        let config = serde_json::json!({
            "server": {
                "grpc_addr": format!("127.0.0.1:{port}"),
                "tls_cert_file": pki.signer().cert,
                "tls_key_file": pki.signer().key,
                "client_ca_file": pki.ca(),
            },
            "logging": { "level": "error" },
            "storage": { "backend": "memory", "default_alias": "x" },
        });
        let config_path = dir.join("signer.json");
        write_file(&config_path, config.to_string(), 0o600);
        let mut cmd = scrubbed(&binary, dir);
        cmd.arg("-config")
            .arg(&config_path)
            .env("NOTARY_SIGNER_X", "e2e-signer-passphrase");
        let mut signer = Self {
            process: Process::spawn("notary-signer", &mut cmd, &dir.join("notary-signer.log")),
            port,
        };
        let log = signer.process.log_path().to_owned();
        let process = &mut signer.process;
        wait_mtls(
            port,
            &pki.ca(),
            &pki.client(),
            START_TIMEOUT,
            || process.exited().is_none(),
            || read_text(&log),
        );
        signer
    }

    /// Its gRPC port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGTERM and wait.
    pub fn stop(self) -> Option<ExitStatus> {
        self.process.stop()
    }
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The real `notary` client, talking to one server with its own trust dir and HOME, the
/// passphrases of [`CLIENT_PASSPHRASES`] and nothing else from our environment.
#[derive(Debug, Clone)]
pub struct NotaryClient {
    server: String,
    ca: PathBuf,
    dir: PathBuf,
}

impl NotaryClient {
    /// A client for `server_url` (trusting `ca`) keeping its state under `dir`.
    pub fn new(server_url: &str, ca: &Path, dir: &Path) -> Self {
        fs::create_dir_all(dir.join("trust"))
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self {
            server: server_url.to_owned(),
            ca: ca.to_owned(),
            dir: dir.to_owned(),
        }
    }

    /// The trust dir (`-d`).
    pub fn trust_dir(&self) -> PathBuf {
        self.dir.join("trust")
    }

    /// `notary -s URL --tlscacert CA -d TRUST_DIR ARGS…`, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = scrubbed(&notary_binary("notary"), &self.dir);
        cmd.arg("-s")
            .arg(&self.server)
            .arg("--tlscacert")
            .arg(&self.ca)
            .arg("-d")
            .arg(self.trust_dir())
            .args(args);
        for (name, value) in CLIENT_PASSPHRASES {
            cmd.env(name, value);
        }
        cmd
    }

    /// Runs `notary ARGS…` (killed after [`CLIENT_TIMEOUT`]).
    pub fn run(&self, args: &[&str]) -> CommandOutput {
        run_with_timeout(&mut self.command(args), &self.dir, CLIENT_TIMEOUT)
    }

    /// Runs `notary ARGS…`, panicking with its output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "notary {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr
        );
        out.stdout
    }
}

/// Runs `cmd` with output captured in files under `dir`, killing it (by its pid) after
/// `timeout`.
pub fn run_with_timeout(cmd: &mut Command, dir: &Path, timeout: Duration) -> CommandOutput {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out_path = dir.join(format!("cmd-{n}.stdout"));
    let err_path = dir.join(format!("cmd-{n}.stderr"));
    let create =
        |p: &Path| fs::File::create(p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(create(&out_path))
        .stderr(create(&err_path))
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a command") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still ran after {timeout:?}; killed:\n{}",
                read_text(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CommandOutput {
        status,
        stdout: read_text(&out_path),
        stderr: read_text(&err_path),
    }
}
