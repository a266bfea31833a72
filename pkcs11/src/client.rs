//! The module's only door to sigild: a blocking wrapper around the tonic clients, driven by a
//! current-thread runtime the module owns. Every call happens under the module's lock, so one
//! runtime and one connection serve all of a process's threads.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cryptoki_sys::{
    CK_RV, CKR_DATA_INVALID, CKR_DATA_LEN_RANGE, CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED,
    CKR_FUNCTION_FAILED, CKR_FUNCTION_REJECTED, CKR_KEY_HANDLE_INVALID, CKR_USER_NOT_LOGGED_IN,
};
use hyper_util::rt::TokioIo;
use sigil_proto::sigil_v1 as pb;
use sigil_proto::sigil_v1::keys_client::KeysClient;
use sigil_proto::sigil_v1::signer_client::SignerClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where sigild listens when `SIGIL_SOCKET` is not set (the CLI's default too).
pub const DEFAULT_SOCKET: &str = "/run/sigil/sigild.sock";

/// How long to wait for the socket and the HTTP/2 handshake. Signing has no deadline: a
/// hardware token may wait for a touch.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket named by `SIGIL_SOCKET`, else [`DEFAULT_SOCKET`].
pub fn socket_path() -> PathBuf {
    std::env::var_os("SIGIL_SOCKET")
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

/// One connection to sigild and the runtime that drives it.
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    keys: KeysClient<Channel>,
    signer: SignerClient<Channel>,
}

impl Client {
    /// Connects to sigild's socket; `CKR_DEVICE_ERROR` when nobody answers.
    pub fn connect(socket: &Path) -> Result<Self, CK_RV> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|_| CKR_FUNCTION_FAILED)?;
        let path = socket.to_owned();
        let channel = runtime.block_on(async move {
            // The URI is required by the HTTP/2 layer but never resolved: the connector
            // always dials the Unix socket.
            Endpoint::from_static("http://[::]:50051")
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(|_| CKR_DEVICE_ERROR)
        })?;
        Ok(Self {
            runtime,
            keys: KeysClient::new(channel.clone()),
            signer: SignerClient::new(channel),
        })
    }

    /// Every key the caller may list.
    pub fn list_keys(&mut self) -> Result<Vec<pb::PublicKey>, CK_RV> {
        let keys = &mut self.keys;
        self.runtime
            .block_on(keys.list_keys(pb::ListKeysRequest::default()))
            .map(|r| r.into_inner().keys)
            .map_err(|s| status_to_rv(&s))
    }

    /// Generates a key on `backend` for `role`/`gun`.
    pub fn generate_key(
        &mut self,
        backend: &str,
        role: &str,
        gun: &str,
        algorithm: pb::Algorithm,
    ) -> Result<pb::PublicKey, CK_RV> {
        let request = pb::GenerateKeyRequest {
            backend: backend.to_owned(),
            role: role.to_owned(),
            gun: gun.to_owned(),
            algorithm: algorithm.into(),
        };
        let keys = &mut self.keys;
        self.runtime
            .block_on(keys.generate_key(request))
            .map(tonic::Response::into_inner)
            .map_err(|s| status_to_rv(&s))
    }

    /// One signature; ECDSA ones come back raw r||s, as PKCS#11 specifies.
    pub fn sign(
        &mut self,
        key_id: &str,
        payload: pb::sign_request::Payload,
    ) -> Result<Vec<u8>, CK_RV> {
        let request = pb::SignRequest {
            key_id: key_id.to_owned(),
            payload: Some(payload),
            encoding: pb::SignatureEncoding::Raw.into(),
        };
        let signer = &mut self.signer;
        self.runtime
            .block_on(signer.sign(request))
            .map(|r| r.into_inner().signature)
            .map_err(|s| status_to_rv(&s))
    }
}

/// The one mapping from sigild's gRPC statuses to PKCS#11 return values.
fn status_to_rv(status: &tonic::Status) -> CK_RV {
    use tonic::Code;
    match status.code() {
        Code::PermissionDenied | Code::Unauthenticated => CKR_FUNCTION_REJECTED,
        Code::NotFound => CKR_KEY_HANDLE_INVALID,
        Code::InvalidArgument => CKR_DATA_INVALID,
        Code::OutOfRange | Code::ResourceExhausted => CKR_DATA_LEN_RANGE,
        // A token sigild holds no PIN for yet (offline roots are unlocked through sigild).
        Code::FailedPrecondition => CKR_USER_NOT_LOGGED_IN,
        Code::Unavailable => CKR_DEVICE_REMOVED,
        _ => CKR_FUNCTION_FAILED,
    }
}
