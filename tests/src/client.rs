//! [`Client`]: tonic clients over sigild's Unix socket, with helpers that panic with context.

use super::*;

/// The sigil.v1 clients and the gRPC health client, on one connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// `sigil.v1.Keys`.
    pub keys: KeysClient<Channel>,
    /// `sigil.v1.Signer`.
    pub signer: SignerClient<Channel>,
    /// `grpc.health.v1.Health`.
    pub health: tonic_health::pb::health_client::HealthClient<Channel>,
}

/// Deadline for any one RPC, so a hung daemon fails a test instead of stalling the suite
/// (an RSA-3072 key generation on SoftHSM takes well under this).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// An endpoint for a connection over a Unix socket: the URI is required by the API but never
/// resolved, since [`unix_channel`] dials the socket itself.
pub fn unix_endpoint() -> Endpoint {
    Endpoint::from_static("http://[::]:50051")
}

/// A gRPC channel over the Unix socket at `socket`, with `endpoint`'s settings (timeouts).
pub async fn unix_channel(
    endpoint: Endpoint,
    socket: &Path,
) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_owned();
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

/// Opens a gRPC connection over the Unix socket at `socket`.
pub async fn try_connect(socket: &Path) -> Result<Client, tonic::transport::Error> {
    let endpoint = unix_endpoint()
        .timeout(RPC_TIMEOUT)
        .connect_timeout(DAEMON_TIMEOUT);
    let channel = unix_channel(endpoint, socket).await?;
    Ok(Client {
        keys: KeysClient::new(channel.clone()),
        signer: SignerClient::new(channel.clone()),
        health: tonic_health::pb::health_client::HealthClient::new(channel),
    })
}

/// [`try_connect`], panicking with the socket path on failure.
pub async fn connect(socket: &Path) -> Client {
    try_connect(socket)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e:?}", socket.display()))
}

impl Client {
    /// GenerateKey on the only backend; panics on failure.
    pub async fn generate(
        &mut self,
        role: &str,
        gun: &str,
        algorithm: pb::Algorithm,
    ) -> pb::PublicKey {
        self.keys
            .generate_key(pb::GenerateKeyRequest {
                backend: String::new(),
                role: role.to_owned(),
                gun: gun.to_owned(),
                algorithm: algorithm.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("GenerateKey {algorithm:?} {role} {gun}: {s:?}"))
            .into_inner()
    }

    /// ListKeys without filters; panics on failure.
    pub async fn list(&mut self) -> Vec<pb::PublicKey> {
        self.keys
            .list_keys(pb::ListKeysRequest::default())
            .await
            .unwrap_or_else(|s| panic!("ListKeys: {s:?}"))
            .into_inner()
            .keys
    }

    /// GetPublicKey.
    pub async fn public(&mut self, key_id: &str) -> Result<pb::PublicKey, tonic::Status> {
        self.keys
            .get_public_key(pb::GetPublicKeyRequest {
                key_id: key_id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// DeleteKey.
    pub async fn delete(&mut self, key_id: &str) -> Result<(), tonic::Status> {
        self.keys
            .delete_key(pb::DeleteKeyRequest {
                key_id: key_id.to_owned(),
            })
            .await
            .map(|_| ())
    }

    /// Sign with an arbitrary request.
    pub async fn sign_request(
        &mut self,
        req: pb::SignRequest,
    ) -> Result<pb::SignResponse, tonic::Status> {
        self.signer.sign(req).await.map(tonic::Response::into_inner)
    }

    /// Sign a message (hashed by the daemon).
    pub async fn sign_message(
        &mut self,
        key_id: &str,
        message: &[u8],
        encoding: pb::SignatureEncoding,
    ) -> Result<pb::SignResponse, tonic::Status> {
        self.sign_request(sign_message_request(key_id, message, encoding))
            .await
    }

    /// Sign a precomputed digest (any length, so malformed ones can be sent).
    pub async fn sign_digest(
        &mut self,
        key_id: &str,
        digest: &[u8],
        encoding: pb::SignatureEncoding,
    ) -> Result<pb::SignResponse, tonic::Status> {
        self.sign_request(pb::SignRequest {
            key_id: key_id.to_owned(),
            payload: Some(pb::sign_request::Payload::Sha256Digest(digest.to_vec())),
            encoding: encoding.into(),
        })
        .await
    }
}

/// A SignRequest over a message.
pub fn sign_message_request(
    key_id: &str,
    message: &[u8],
    encoding: pb::SignatureEncoding,
) -> pb::SignRequest {
    pb::SignRequest {
        key_id: key_id.to_owned(),
        payload: Some(pb::sign_request::Payload::Message(message.to_vec())),
        encoding: encoding.into(),
    }
}

/// Parses a key's SPKI with the `tuf` crate, checking that its key id is the SHA-256 of it.
pub fn parse_public(key: &pb::PublicKey) -> sigil_tuf::key::PublicKey {
    let public = sigil_tuf::key::PublicKey::from_spki_der(&key.spki_der)
        .unwrap_or_else(|e| panic!("key {} has an unparsable spki_der: {e}", key.key_id));
    assert_eq!(
        key.key_id,
        sha256_hex(&key.spki_der),
        "key_id is not sha256(spki_der)"
    );
    assert_eq!(
        public.key_id(),
        key.key_id,
        "tuf key id differs from the daemon's"
    );
    public
}
