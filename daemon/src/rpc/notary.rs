//! notary-signer's contract (`proto.KeyManagement`, `proto.Signer`) over mutual TLS, so an
//! unchanged notary-server keeps its timestamp and snapshot keys on a token. A thin adapter:
//! identify the client by its certificate, call the signing service, encode the reply. It sees
//! only keys created through it; root, targets and delegation keys do not exist for it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sigil_proto::notary as pb;
use sigil_proto::notary::key_management_server::{KeyManagement, KeyManagementServer};
use sigil_proto::notary::signer_server::{Signer, SignerServer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};
use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::{Error, health, http2_bounds, limits};
use crate::audit::Who;
use crate::backend::{Algorithm, PublicKey};
use crate::config::{NotarySignerConfig, ServerConfig};
use crate::keyring::KeyEntry;
use crate::service::{self, GenerateRequest, SigningService};

/// The names notary-server polls (`grpc.health.v1.Health.Overall` checks both).
const HEALTH_NAMES: &[&str] = &[
    "grpc.health.v1.Health.KeyManagement",
    "grpc.health.v1.Health.Signer",
];

/// Serves both notary-signer services for the allowed clients.
#[derive(Debug, Clone)]
pub struct NotarySignerApi {
    service: Arc<SigningService>,
    backend: String,
    names: Arc<NameCache>,
}

/// Names of the client certificates seen lately, so that the certificate a connection
/// presents is not parsed again on every request (notary-server sends thousands over one
/// connection). Keyed by the whole DER: the same bytes always carry the same names.
#[derive(Debug, Default)]
struct NameCache(Mutex<Vec<SeenCertificate>>);

/// A client certificate's DER and the names in it.
type SeenCertificate = (Vec<u8>, Arc<[String]>);

impl NameCache {
    /// Distinct client certificates remembered; more are parsed each time.
    const CAPACITY: usize = 16;

    fn names(&self, der: &[u8]) -> Result<Arc<[String]>, x509_cert::der::Error> {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, names)) = seen.iter().find(|(d, _)| d.as_slice() == der) {
            return Ok(Arc::clone(names));
        }
        let names: Arc<[String]> = certificate_names(der)?.into();
        if seen.len() >= Self::CAPACITY {
            seen.remove(0);
        }
        seen.push((der.to_vec(), Arc::clone(&names)));
        Ok(names)
    }
}

impl NotarySignerApi {
    /// Wraps the signing service; keys are created on `backend`, for the clients the policy
    /// allows (`allowed_clients`, reloaded on SIGHUP).
    pub fn new(service: Arc<SigningService>, backend: String) -> Self {
        Self {
            service,
            backend,
            names: Arc::default(),
        }
    }

    /// The client's identity: its certificate's names (CN, then DNS/IP/URI/email SANs; the
    /// handshake already proved the chain to `client_ca`), of which the service and its policy
    /// pick the one `allowed_clients` lists, or refuse and audit the call `op` on `key_id`.
    fn client<T>(
        &self,
        request: &Request<T>,
        op: &'static str,
        key_id: &str,
    ) -> Result<String, Status> {
        let names = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| self.names.names(c.as_ref())));
        let names = match names {
            Some(Ok(names)) => names,
            Some(Err(_)) => return Err(Status::unauthenticated("unreadable client certificate")),
            None => return Err(Status::unauthenticated("a client certificate is required")),
        };
        Ok(self.service.notary_client(&names, op, key_id)?)
    }
}

/// Subject common names and subject-alternative names of a DER certificate.
fn certificate_names(der: &[u8]) -> Result<Vec<String>, x509_cert::der::Error> {
    let cert = x509_cert::Certificate::from_der(der)?;
    let mut names = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == const_oid::db::rfc4519::CN
                && let Ok(s) = atv
                    .value
                    .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
            {
                names.push(s.as_str().to_owned());
            } else if atv.oid == const_oid::db::rfc4519::CN
                && let Ok(s) = atv
                    .value
                    .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
            {
                names.push(s.as_str().to_owned());
            }
        }
    }
    if let Ok(Some((_, san))) = cert.tbs_certificate.get::<SubjectAltName>() {
        for name in san.0 {
            match name {
                GeneralName::DnsName(s) => names.push(s.as_str().to_owned()),
                GeneralName::Rfc822Name(s) => names.push(s.as_str().to_owned()),
                GeneralName::UniformResourceIdentifier(s) => names.push(s.as_str().to_owned()),
                GeneralName::IpAddress(ip) => {
                    let b = ip.as_bytes();
                    if let Ok(v4) = <[u8; 4]>::try_from(b) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

/// Notary's key algorithm names.
fn key_algorithm(key: &KeyEntry) -> &'static str {
    match key.public {
        PublicKey::EcdsaP256(_) => "ecdsa",
        PublicKey::Ed25519(_) => "ed25519",
        PublicKey::Rsa(_) => "rsa",
    }
}

/// Notary's signature method names.
fn signature_method(key: &KeyEntry) -> &'static str {
    match key.algorithm() {
        Algorithm::EcdsaP256 => "ecdsa",
        Algorithm::Ed25519 => "eddsa",
        Algorithm::Rsa3072Pss => "rsapss",
    }
}

fn key_info(key: &KeyEntry) -> Result<pb::KeyInfo, Status> {
    let id = key
        .notary_id
        .clone()
        .ok_or_else(|| Status::not_found("key not found"))?;
    Ok(pb::KeyInfo {
        key_id: Some(pb::KeyId { id }),
        algorithm: Some(pb::Algorithm {
            algorithm: key_algorithm(key).to_owned(),
        }),
    })
}

fn requested_id(key_id: Option<pb::KeyId>) -> Result<String, Status> {
    match key_id {
        Some(pb::KeyId { id }) if !id.is_empty() => Ok(id),
        _ => Err(Status::invalid_argument("keyID is required")),
    }
}

#[tonic::async_trait]
impl KeyManagement for NotarySignerApi {
    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::PublicKey>, Status> {
        let client = self.client(&request, "generate", "")?;
        let req = request.into_inner();
        let algorithm = match req.algorithm.as_str() {
            "ecdsa" => Algorithm::EcdsaP256,
            "ed25519" => Algorithm::Ed25519,
            other => {
                let refusal = service::Error::BadRequest(format!(
                    "CreateKey: unsupported algorithm {other:?} (sigild creates ecdsa and ed25519 keys)"
                ));
                let asked = Some((req.role.as_str(), req.gun.as_str()));
                return Err(self
                    .service
                    .refuse("generate", Who::TlsClient(&client), "", asked, refusal)
                    .into());
            }
        };
        let generate = GenerateRequest {
            backend: self.backend.clone(),
            role: req.role,
            gun: req.gun,
            algorithm,
        };
        let key = self
            .service
            .notary_create_key(&client, &self.backend, generate)
            .await?;
        Ok(Response::new(pb::PublicKey {
            key_info: Some(key_info(&key)?),
            public_key: key.notary_public_bytes(),
        }))
    }

    async fn delete_key(&self, request: Request<pb::KeyId>) -> Result<Response<pb::Void>, Status> {
        let client = self.client(&request, "delete", &request.get_ref().id)?;
        let id = requested_id(Some(request.into_inner()))?;
        self.service.notary_delete(&client, &id).await?;
        Ok(Response::new(pb::Void {}))
    }

    async fn get_key_info(
        &self,
        request: Request<pb::KeyId>,
    ) -> Result<Response<pb::GetKeyInfoResponse>, Status> {
        let client = self.client(&request, "public", &request.get_ref().id)?;
        let id = requested_id(Some(request.into_inner()))?;
        // Lookups that find nothing are audited, as refused GetPublicKey calls are on the
        // socket; successful ones (one before every signature) are not.
        let key = self.service.notary_key_info(&id).map_err(|e| {
            self.service
                .refuse("public", Who::TlsClient(&client), &id, None, e)
        })?;
        Ok(Response::new(pb::GetKeyInfoResponse {
            key_info: Some(key_info(&key)?),
            public_key: key.notary_public_bytes(),
            role: key.meta.role.clone(),
        }))
    }
}

#[tonic::async_trait]
impl Signer for NotarySignerApi {
    async fn sign(
        &self,
        request: Request<pb::SignatureRequest>,
    ) -> Result<Response<pb::Signature>, Status> {
        let asked = request
            .get_ref()
            .key_id
            .as_ref()
            .map_or("", |k| k.id.as_str());
        let client = self.client(&request, "sign", asked)?;
        let req = request.into_inner();
        let id = requested_id(req.key_id)?;
        let signed = self.service.notary_sign(&client, &id, req.content).await?;
        Ok(Response::new(pb::Signature {
            key_info: Some(key_info(&signed.key)?),
            algorithm: Some(pb::Algorithm {
                algorithm: signature_method(&signed.key).to_owned(),
            }),
            content: signed.bytes,
        }))
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Socket {
        path: path.to_owned(),
        what,
        source,
    })
}

/// How often an idle connection is pinged, so that a peer that vanished without closing
/// (a dead host, a dropped route) gives its connection slot back.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// How long a ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves the notary-signer endpoint on TCP with mutual TLS until `shutdown` resolves: at most
/// `max_connections` connections, handshaking or not, each handshake bounded in time.
pub async fn serve(
    service: Arc<SigningService>,
    config: &NotarySignerConfig,
    server: &ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let addr: SocketAddr = config.listen.parse().map_err(|_| Error::Refused {
        path: config.listen.clone().into(),
        reason: "notary_signer.listen is not an address like 127.0.0.1:7899".into(),
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Socket {
            path: config.listen.clone().into(),
            what: "listening (notary_signer.listen)",
            source,
        })?;
    let identity = Identity::from_pem(
        read(&config.tls_cert, "reading the TLS certificate")?,
        read(&config.tls_key, "reading the TLS key")?,
    );
    // A client CA makes client certificates mandatory: no certificate, no handshake.
    let tls = ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(read(
            &config.client_ca,
            "reading the client CA",
        )?))
        .timeout(Duration::from_secs(config.handshake_timeout_secs));
    let api = NotarySignerApi::new(Arc::clone(&service), config.backend.clone());
    let limit = server.max_message_bytes.saturating_add(64 * 1024);
    let (health, poll) = health::spawn(service, HEALTH_NAMES);
    let incoming = limits::incoming(
        listener,
        "notary-signer",
        limits::ConnectionLimits {
            max: config.max_connections,
            per_uid: None,
        },
    );
    let result = http2_bounds(server.max_streams_per_connection)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tls_config(tls)?
        .add_service(KeyManagementServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(SignerServer::new(api).max_decoding_message_size(limit))
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    poll.abort();
    result.map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(certificate_names(b"not a certificate").is_err());
        let cache = NameCache::default();
        assert!(cache.names(b"not a certificate").is_err());
        assert!(
            cache.0.lock().expect("lock").is_empty(),
            "errors are not cached"
        );
    }
}
