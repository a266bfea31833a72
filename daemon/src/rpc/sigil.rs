//! The `sigil.v1` API: decode the request, call the signing service, encode the reply.
//! Nothing else happens here.

use std::sync::Arc;

use sigil_proto::sigil_v1 as pb;
use sigil_tuf::key::SignatureEncoding;
use tonic::{Request, Response, Status};

use super::peer::caller;
use crate::audit::Who;
use crate::backend::Algorithm;
use crate::backend::attestation::Policies;
use crate::keyring::KeyEntry;
use crate::secret::Pin;
use crate::service::{self, GenerateRequest, KeyFilter, Payload, SigningService};

/// Serves both `sigil.v1.Keys` and `sigil.v1.Signer`.
#[derive(Debug, Clone)]
pub struct SigilApi {
    service: Arc<SigningService>,
}

impl SigilApi {
    /// Wraps the signing service.
    pub fn new(service: Arc<SigningService>) -> Self {
        Self { service }
    }
}

fn algorithm_to_pb(a: Algorithm) -> pb::Algorithm {
    match a {
        Algorithm::EcdsaP256 => pb::Algorithm::EcdsaP256,
        Algorithm::Ed25519 => pb::Algorithm::Ed25519,
        Algorithm::Rsa3072Pss => pb::Algorithm::Rsa3072Pss,
    }
}

fn algorithm_from_pb(value: i32) -> Result<Algorithm, service::Error> {
    match pb::Algorithm::try_from(value) {
        Ok(pb::Algorithm::Unspecified | pb::Algorithm::EcdsaP256) => Ok(Algorithm::EcdsaP256),
        Ok(pb::Algorithm::Ed25519) => Ok(Algorithm::Ed25519),
        Ok(pb::Algorithm::Rsa3072Pss) => Ok(Algorithm::Rsa3072Pss),
        Err(_) => Err(service::Error::BadRequest(format!(
            "unknown algorithm {value}"
        ))),
    }
}

fn encoding_from_pb(value: i32) -> Result<SignatureEncoding, service::Error> {
    match pb::SignatureEncoding::try_from(value) {
        Ok(pb::SignatureEncoding::Unspecified | pb::SignatureEncoding::Raw) => {
            Ok(SignatureEncoding::Raw)
        }
        Ok(pb::SignatureEncoding::Der) => Ok(SignatureEncoding::Der),
        Err(_) => Err(service::Error::BadRequest(format!(
            "unknown signature encoding {value}"
        ))),
    }
}

fn payload_from_pb(payload: pb::sign_request::Payload) -> Payload {
    match payload {
        pb::sign_request::Payload::Message(m) => Payload::Message(m),
        pb::sign_request::Payload::Sha256Digest(d) => Payload::Digest(d),
    }
}

/// The checks a Sign request passes before any key is looked up (encoding, payload size and
/// shape, key id), made of the functions the handler and the service call, for the fuzz
/// harness (fuzz/). A missing payload is refused by the service itself.
pub fn precheck_sign(
    req: &pb::SignRequest,
    max_message_bytes: usize,
) -> Result<(), service::Error> {
    encoding_from_pb(req.encoding)?;
    if let Some(payload) = req.payload.clone().map(payload_from_pb) {
        service::check_payload(&payload, max_message_bytes)?;
    }
    service::check_key_id(&req.key_id)
}

/// The checks a GenerateKey request passes before policy and backends (algorithm, role,
/// GUN), as [`precheck_sign`] for Sign.
pub fn precheck_generate(req: &pb::GenerateKeyRequest) -> Result<(), service::Error> {
    algorithm_from_pb(req.algorithm)?;
    service::check_role(&req.role)?;
    service::check_gun(&req.gun)
}

fn public_key(key: &KeyEntry) -> pb::PublicKey {
    pb::PublicKey {
        key_id: key.key_id.clone(),
        backend: key.backend_name.clone(),
        role: key.meta.role.clone(),
        gun: key.meta.gun.clone(),
        algorithm: algorithm_to_pb(key.algorithm()).into(),
        spki_der: key.spki_der.clone(),
        backend_type: key.locator.backend_type().to_owned(),
        device_serial: key.device.as_ref().map_or(0, |d| d.serial),
        touch_policy: policies(key).map_or_else(String::new, |p| p.touch.as_str().to_owned()),
        pin_policy: policies(key).map_or_else(String::new, |p| p.pin.as_str().to_owned()),
        attested: key.device.as_ref().is_some_and(|d| d.attested),
    }
}

fn policies(key: &KeyEntry) -> Option<Policies> {
    key.device.as_ref().and_then(|d| d.policies)
}

#[tonic::async_trait]
impl pb::keys_server::Keys for SigilApi {
    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let filter = KeyFilter {
            backend: req.backend,
            gun: req.gun,
            role: req.role,
        };
        let keys = self.service.list_keys(&caller, &filter).await;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.iter().map(|k| public_key(k)).collect(),
        }))
    }

    async fn get_public_key(
        &self,
        request: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::PublicKey>, Status> {
        let caller = caller(&request)?;
        let key = self
            .service
            .public_key(&caller, &request.get_ref().key_id)
            .await?;
        Ok(Response::new(public_key(&key)))
    }

    async fn generate_key(
        &self,
        request: Request<pb::GenerateKeyRequest>,
    ) -> Result<Response<pb::PublicKey>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let algorithm = algorithm_from_pb(req.algorithm);
        let generate = GenerateRequest {
            // Audited below as asked for, even when the algorithm is unknown.
            algorithm: *algorithm.as_ref().unwrap_or(&Algorithm::EcdsaP256),
            backend: req.backend,
            role: req.role,
            gun: req.gun,
        };
        if let Err(e) = algorithm {
            let asked = Some((generate.role.as_str(), generate.gun.as_str()));
            return Err(self
                .service
                .refuse("generate", Who::Unix(&caller), "", asked, e)
                .into());
        }
        let key = self.service.generate(&caller, generate).await?;
        Ok(Response::new(public_key(&key)))
    }

    async fn delete_key(
        &self,
        request: Request<pb::DeleteKeyRequest>,
    ) -> Result<Response<pb::DeleteKeyResponse>, Status> {
        let caller = caller(&request)?;
        self.service
            .delete(&caller, &request.get_ref().key_id)
            .await?;
        Ok(Response::new(pb::DeleteKeyResponse {}))
    }

    async fn attest_key(
        &self,
        request: Request<pb::AttestKeyRequest>,
    ) -> Result<Response<pb::AttestKeyResponse>, Status> {
        let caller = caller(&request)?;
        let (key, report) = self
            .service
            .attest(&caller, &request.get_ref().key_id)
            .await?;
        Ok(Response::new(pb::AttestKeyResponse {
            key_id: key.key_id.clone(),
            chain_der: report.chain,
            pin_policy: report.policies.pin.as_str().to_owned(),
            touch_policy: report.policies.touch.as_str().to_owned(),
            verified: report.verified.is_ok(),
            verify_error: report.verified.err().unwrap_or_default(),
            device_serial: report.serial,
        }))
    }
}

#[tonic::async_trait]
impl pb::tokens_server::Tokens for SigilApi {
    async fn unlock(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let caller = caller(&request)?;
        let mut req = request.into_inner();
        // The PIN's bytes move into zeroizing memory at once; nothing else keeps them.
        let bytes = zeroize::Zeroizing::new(std::mem::take(&mut req.pin));
        let pin = match std::str::from_utf8(&bytes) {
            Ok(text) => Pin::new(zeroize::Zeroizing::new(text.to_owned())),
            Err(_) => {
                let e = service::Error::BadRequest("the PIN is not UTF-8".into());
                return Err(self
                    .service
                    .refuse("unlock", Who::Unix(&caller), "", None, e)
                    .into());
            }
        };
        let left = self.service.unlock(&caller, &req.backend, pin).await?;
        Ok(Response::new(pb::UnlockResponse {
            pin_tries_before: left.into(),
        }))
    }
}

#[tonic::async_trait]
impl pb::signer_server::Signer for SigilApi {
    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let encoding = encoding_from_pb(req.encoding).map_err(|e| {
            self.service
                .refuse("sign", Who::Unix(&caller), &req.key_id, None, e)
        })?;
        let payload = req.payload.map(payload_from_pb);
        let signed = self
            .service
            .sign(&caller, &req.key_id, payload, encoding)
            .await?;
        let encoding = match signed.encoding {
            SignatureEncoding::Raw => pb::SignatureEncoding::Raw,
            SignatureEncoding::Der => pb::SignatureEncoding::Der,
        };
        Ok(Response::new(pb::SignResponse {
            signature: signed.bytes,
            key_id: req.key_id,
            algorithm: algorithm_to_pb(signed.key.algorithm()).into(),
            encoding: encoding.into(),
        }))
    }
}
