//! sigild's notary-signer endpoint in the lab: its config, a gRPC client of it, key ids and
//! signature checks as notary computes them.

use super::*;

/// sigild on `dev`'s token serving its notary-signer endpoint on a free loopback port (for
/// notary-server's client certificate, keys on the dev backend) with `extra_toml` appended to
/// its config (written as `config_name`), waited for until mutual TLS answers, and the real
/// notary-server using it as its signer. Returns the daemon, the endpoint's port and the server.
pub fn sigild_behind_notary_server(
    dev: &DevDir,
    pki: &Pki,
    extra_toml: &str,
    config_name: &str,
) -> (crate::Daemon, u16, NotaryServer) {
    let port = free_port();
    let config = dev
        .config()
        .append(&sigild_notary_toml(
            port,
            pki,
            crate::DEV_BACKEND,
            &[SERVER_CLIENT_CN],
        ))
        .append(extra_toml)
        .write(config_name);
    let mut daemon = dev.sigild_config(&config).spawn();
    let stderr = daemon.stderr_path().to_owned();
    wait_mtls(
        port,
        &pki.ca(),
        &pki.client(),
        crate::DAEMON_TIMEOUT,
        || daemon.is_running(),
        || read_text(&stderr),
    );
    let server = NotaryServer::start(
        &dev.root().join("notary-server"),
        pki,
        &TrustService::remote(port),
    );
    (daemon, port, server)
}

/// sigild's `[notary_signer]` section: listen on 127.0.0.1:`port` with the [`Pki`]'s signer
/// certificate, client certificates verified against its CA, keys on `backend`, `allowed`
/// client identities.
pub fn sigild_notary_toml(port: u16, pki: &Pki, backend: &str, allowed: &[&str]) -> String {
    let allowed: Vec<String> = allowed
        .iter()
        .map(|a| serde_json::to_string(a).expect("a string serialises"))
        .collect();
    format!(
        "\n[notary_signer]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = {cert}\ntls_key = {key}\n\
         client_ca = {ca}\nbackend = {backend}\nallowed_clients = [{allowed}]\n",
        cert = toml_path(&pki.signer().cert),
        key = toml_path(&pki.signer().key),
        ca = toml_path(&pki.ca()),
        backend = serde_json::to_string(backend).expect("a string serialises"),
        allowed = allowed.join(", "),
    )
}

/// Writes `<dev dir>/sigild-notary.toml` (mode 0600): the config `sigild --dev` wrote (run
/// [`DevDir::init`] first) plus [`sigild_notary_toml`]. Start it with
/// [`DevDir::sigild_config`].
pub fn write_sigild_config(dev: &DevDir, port: u16, pki: &Pki, allowed: &[&str]) -> PathBuf {
    let mut text = read_text(&dev.dev_config());
    text.push_str(&sigild_notary_toml(port, pki, crate::DEV_BACKEND, allowed));
    let path = dev.path().join("sigild-notary.toml");
    write_file(&path, text, 0o600);
    path
}

/// notary-signer's gRPC API on one mutual-TLS connection.
#[derive(Debug, Clone)]
pub struct SignerApi {
    /// `proto.KeyManagement`.
    pub keys: KeyManagementClient<Channel>,
    /// `proto.Signer`.
    pub signer: NotarySignerClient<Channel>,
    /// `grpc.health.v1.Health`.
    pub health: HealthClient<Channel>,
}

/// Connects to the signer on 127.0.0.1:`port` over TLS verified against `ca`, presenting
/// `identity` (or no certificate).
pub async fn connect_signer(
    port: u16,
    ca: &Path,
    identity: Option<&CertKey>,
) -> Result<SignerApi, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            fs::read(ca).unwrap_or_else(|e| panic!("reading {}: {e}", ca.display())),
        ))
        .domain_name("127.0.0.1");
    if let Some(id) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            fs::read(&id.cert).unwrap_or_else(|e| panic!("reading {}: {e}", id.cert.display())),
            fs::read(&id.key).unwrap_or_else(|e| panic!("reading {}: {e}", id.key.display())),
        ));
    }
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .timeout(RPC_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(SignerApi {
        keys: KeyManagementClient::new(channel.clone()),
        signer: NotarySignerClient::new(channel.clone()),
        health: HealthClient::new(channel),
    })
}

impl SignerApi {
    /// CreateKey.
    pub async fn create_key(
        &mut self,
        algorithm: &str,
        role: &str,
        gun: &str,
    ) -> Result<pb::PublicKey, tonic::Status> {
        self.keys
            .create_key(pb::CreateKeyRequest {
                algorithm: algorithm.to_owned(),
                gun: gun.to_owned(),
                role: role.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// GetKeyInfo.
    pub async fn key_info(&mut self, id: &str) -> Result<pb::GetKeyInfoResponse, tonic::Status> {
        self.keys
            .get_key_info(pb::KeyId { id: id.to_owned() })
            .await
            .map(tonic::Response::into_inner)
    }

    /// DeleteKey.
    pub async fn delete_key(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.keys
            .delete_key(pb::KeyId { id: id.to_owned() })
            .await
            .map(|_| ())
    }

    /// Sign.
    pub async fn sign(&mut self, id: &str, content: &[u8]) -> Result<pb::Signature, tonic::Status> {
        self.signer
            .sign(pb::SignatureRequest {
                key_id: Some(pb::KeyId { id: id.to_owned() }),
                content: content.to_vec(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The health status of `service`.
    pub async fn health_of(&mut self, service: &str) -> Result<ServingStatus, tonic::Status> {
        self.health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|r| r.into_inner().status())
    }

    /// Polls both [`SIGNER_HEALTH_NAMES`] until they report `want`; panics after `timeout`.
    pub async fn wait_health(&mut self, want: ServingStatus, timeout: Duration) {
        let started = Instant::now();
        loop {
            let mut all = true;
            let mut seen = Vec::new();
            for name in SIGNER_HEALTH_NAMES {
                let status = self.health_of(name).await;
                all &= status.as_ref().is_ok_and(|s| *s == want);
                seen.push((name, status));
            }
            if all {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "signer health did not become {want:?} within {timeout:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Notary's TUF key id: hex SHA-256 of `{"keytype":T,"keyval":{"private":null,"public":B64}}`
/// (canonical JSON), with `public` the DER SPKI (`ecdsa`) or the raw 32 bytes (`ed25519`).
pub fn notary_key_id(keytype: &str, public: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(public);
    crate::sha256_hex(
        format!(r#"{{"keytype":"{keytype}","keyval":{{"private":null,"public":"{b64}"}}}}"#)
            .as_bytes(),
    )
}

/// sigild's key id for a key Notary describes as `keytype` + `public`: the hex SHA-256 of its
/// DER SubjectPublicKeyInfo (Notary's `ed25519` public part is the raw key, so it is wrapped).
pub fn daemon_key_id(keytype: &str, public: &[u8]) -> String {
    /// DER SPKI header of an Ed25519 key (RFC 8410), followed by the 32 raw bytes.
    const ED25519_SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    match keytype {
        "ed25519" => crate::sha256_hex(&[&ED25519_SPKI_PREFIX[..], public].concat()),
        _ => crate::sha256_hex(public),
    }
}

/// Verifies a Notary signature: `ecdsa` (raw r‖s over SHA-256, P-256 DER SPKI key) or `eddsa`
/// (Ed25519, raw 32-byte key) over `message`.
pub fn verify_notary_signature(
    keytype: &str,
    public: &[u8],
    method: &str,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier as _;
    use p256::pkcs8::DecodePublicKey as _;
    match (keytype, method) {
        ("ecdsa", "ecdsa") => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(public)
                .map_err(|e| format!("not a P-256 SPKI: {e}"))?;
            let sig = p256::ecdsa::Signature::from_slice(signature)
                .map_err(|e| format!("not a raw r||s P-256 signature: {e}"))?;
            key.verify(message, &sig).map_err(|e| e.to_string())
        }
        ("ed25519", "eddsa") => {
            let bytes: [u8; 32] = public
                .try_into()
                .map_err(|_| format!("Ed25519 key of {} bytes", public.len()))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())?;
            let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|e| e.to_string())?;
            key.verify_strict(message, &sig).map_err(|e| e.to_string())
        }
        _ => Err(format!("key type {keytype} with method {method}")),
    }
}
