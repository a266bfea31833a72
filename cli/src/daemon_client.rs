//! The CLI's only door to sigild: a tonic client over the daemon's Unix socket. It turns wire
//! types into checked domain types ([`KeyInfo`]) and gRPC statuses into [`Error`]s, so command
//! modules never see protobuf or transport details.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use sigil_proto::sigil_v1 as pb;
use sigil_proto::sigil_v1::keys_client::KeysClient;
use sigil_proto::sigil_v1::signer_client::SignerClient;
use sigil_proto::sigil_v1::tokens_client::TokensClient;
use sigil_tuf::{Algorithm, PublicKey};
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::debug;

use crate::error::{Error, root_cause};
use crate::key_ref::KeyId;

/// How long to wait for the socket and the HTTP/2 handshake. Requests themselves have no
/// deadline: a hardware token may take seconds (or a touch) to sign.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A key as sigild describes it, with its public half parsed and checked against its id.
#[derive(Debug, Clone)]
pub(crate) struct KeyInfo {
    /// Lowercase hex SHA-256 of the SubjectPublicKeyInfo.
    pub(crate) key_id: String,
    /// Configured backend holding the private key.
    pub(crate) backend: String,
    /// TUF role the key serves.
    pub(crate) role: String,
    /// Collection the key is bound to, if any.
    pub(crate) gun: Option<String>,
    /// The public key, ready for local verification.
    pub(crate) public_key: PublicKey,
    /// The device holding the key, for YubiKey backends.
    pub(crate) device: Option<DeviceInfo>,
}

/// What sigild reports about the device holding a key (YubiKey backends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceInfo {
    /// YubiKey serial number.
    pub(crate) serial: u32,
    /// Touch policy the device reports (`never`, `cached`, `always`), if known.
    pub(crate) touch_policy: Option<String>,
    /// PIN policy the device reports, if known.
    pub(crate) pin_policy: Option<String>,
    /// Whether the key's attestation verified against sigild's configured roots.
    pub(crate) attested: bool,
}

impl DeviceInfo {
    /// Whether a signature with the key may wait for a touch on the device.
    pub(crate) fn needs_touch(&self) -> bool {
        matches!(self.touch_policy.as_deref(), Some("always" | "cached"))
    }
}

/// Before a sign that may wait for a touch: tells the person at the device which device is
/// about to blink and what a touch will sign (what you see is what you sign). Nothing for
/// keys that need no touch (`what` is only computed when the prompt is printed).
pub(crate) fn touch_prompt(key: &KeyInfo, what: impl FnOnce() -> String) {
    if let Some(device) = key.device.as_ref().filter(|d| d.needs_touch()) {
        let when = if device.touch_policy.as_deref() == Some("cached") {
            "if it blinks"
        } else {
            "when it blinks"
        };
        eprintln!(
            "Touch YubiKey {} {when} to sign {} (key {}, role {}{})",
            device.serial,
            what(),
            key.key_id,
            key.role,
            key.gun
                .as_deref()
                .map_or_else(String::new, |g| format!(", gun {g}"))
        );
    }
}

/// A key's attestation as sigild fetched and checked it.
#[derive(Debug, Clone)]
pub(crate) struct Attestation {
    /// DER certificates, leaf first.
    pub(crate) chain_der: Vec<Vec<u8>>,
    /// Attested PIN policy.
    pub(crate) pin_policy: String,
    /// Attested touch policy.
    pub(crate) touch_policy: String,
    /// Whether the chain verified against sigild's attestation roots.
    pub(crate) verified: bool,
    /// Why it did not verify.
    pub(crate) verify_error: Option<String>,
    /// Device serial number.
    pub(crate) device_serial: u32,
}

impl KeyInfo {
    /// The key's algorithm.
    pub(crate) fn algorithm(&self) -> Algorithm {
        self.public_key.algorithm()
    }
}

impl TryFrom<pb::PublicKey> for KeyInfo {
    type Error = Error;

    /// Refuses a key whose id is not the hash of its SPKI or whose declared algorithm differs
    /// from the parsed one: the CLI verifies signatures with this key and must not be fooled.
    fn try_from(key: pb::PublicKey) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadDaemonKey {
            key_id: key.key_id.clone(),
            reason,
        };
        let public_key = PublicKey::from_spki_der(&key.spki_der).map_err(|e| bad(e.to_string()))?;
        let computed = sigil_tuf::key::key_id_of_spki(&key.spki_der);
        if computed != key.key_id {
            return Err(bad(format!(
                "its SubjectPublicKeyInfo hashes to {computed}"
            )));
        }
        if let Some(declared) = algorithm_from_wire(key.algorithm)
            && declared != public_key.algorithm()
        {
            return Err(bad(format!(
                "declared {declared} but the public key is {}",
                public_key.algorithm()
            )));
        }
        let device = (key.backend_type == "yubikey").then(|| DeviceInfo {
            serial: key.device_serial,
            touch_policy: Some(key.touch_policy).filter(|p| !p.is_empty()),
            pin_policy: Some(key.pin_policy).filter(|p| !p.is_empty()),
            attested: key.attested,
        });
        Ok(Self {
            key_id: key.key_id,
            backend: key.backend,
            role: key.role,
            gun: Some(key.gun).filter(|g| !g.is_empty()),
            public_key,
            device,
        })
    }
}

/// The wire algorithm as a domain one; `None` for UNSPECIFIED or a value this CLI predates.
pub(crate) fn algorithm_from_wire(value: i32) -> Option<Algorithm> {
    match pb::Algorithm::try_from(value).ok()? {
        pb::Algorithm::Unspecified => None,
        pb::Algorithm::EcdsaP256 => Some(Algorithm::EcdsaP256),
        pb::Algorithm::Ed25519 => Some(Algorithm::Ed25519),
        pb::Algorithm::Rsa3072Pss => Some(Algorithm::Rsa3072Pss),
    }
}

/// A domain algorithm as the wire enum.
pub(crate) fn algorithm_to_wire(algorithm: Algorithm) -> pb::Algorithm {
    match algorithm {
        Algorithm::EcdsaP256 => pb::Algorithm::EcdsaP256,
        Algorithm::Ed25519 => pb::Algorithm::Ed25519,
        Algorithm::Rsa3072Pss => pb::Algorithm::Rsa3072Pss,
    }
}

/// What to ask sigild to generate.
#[derive(Debug, Clone)]
pub(crate) struct NewKey {
    /// Backend name; empty lets sigild pick its only backend.
    pub(crate) backend: String,
    /// TUF role.
    pub(crate) role: String,
    /// Collection, empty for none.
    pub(crate) gun: String,
    /// Algorithm to generate.
    pub(crate) algorithm: Algorithm,
}

/// Optional filters for listing keys; empty strings match anything.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyFilter {
    /// Only keys on this backend.
    pub(crate) backend: String,
    /// Only keys for this collection.
    pub(crate) gun: String,
    /// Only keys for this role.
    pub(crate) role: String,
}

/// Connected clients for sigild's `Keys` and `Signer` services, sharing one connection.
#[derive(Debug, Clone)]
pub(crate) struct DaemonClient {
    keys: KeysClient<Channel>,
    signer: SignerClient<Channel>,
    tokens: TokensClient<Channel>,
}

impl DaemonClient {
    /// Connects to sigild's socket, failing early (exit code 5) when nobody answers.
    pub(crate) async fn connect(socket: &Path) -> Result<Self, Error> {
        let connect_error = |reason: String| Error::Connect {
            socket: socket.to_owned(),
            reason,
        };
        // The URI is required by the HTTP/2 layer but never resolved: the connector below
        // always dials the Unix socket.
        let endpoint = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| connect_error(root_cause(&e)))?
            .connect_timeout(CONNECT_TIMEOUT);
        let path: PathBuf = socket.to_owned();
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }))
            .await
            .map_err(|e| connect_error(root_cause(&e)))?;
        debug!(socket = %socket.display(), "connected to sigild");
        Ok(Self {
            keys: KeysClient::new(channel.clone()),
            tokens: TokensClient::new(channel.clone()),
            signer: SignerClient::new(channel),
        })
    }

    /// Keys the caller may see, optionally filtered.
    pub(crate) async fn list_keys(&mut self, filter: &KeyFilter) -> Result<Vec<KeyInfo>, Error> {
        let request = pb::ListKeysRequest {
            backend: filter.backend.clone(),
            gun: filter.gun.clone(),
            role: filter.role.clone(),
        };
        let response = self
            .keys
            .list_keys(request)
            .await
            .map_err(|s| Error::from_status(&s, None))?;
        response
            .into_inner()
            .keys
            .into_iter()
            .map(KeyInfo::try_from)
            .collect()
    }

    /// One key's public half; also checks the returned id is the one asked for.
    pub(crate) async fn public_key(&mut self, key_id: &KeyId) -> Result<KeyInfo, Error> {
        let request = pb::GetPublicKeyRequest {
            key_id: key_id.as_str().to_owned(),
        };
        let response = self
            .keys
            .get_public_key(request)
            .await
            .map_err(|s| Error::from_status(&s, Some(key_id.as_str())))?;
        let key = KeyInfo::try_from(response.into_inner())?;
        if key.key_id != key_id.as_str() {
            return Err(Error::BadDaemonKey {
                key_id: key_id.to_string(),
                reason: format!("asked for it but got key {}", key.key_id),
            });
        }
        Ok(key)
    }

    /// Generates a key on a token and returns its description.
    pub(crate) async fn generate_key(&mut self, new: &NewKey) -> Result<KeyInfo, Error> {
        let request = pb::GenerateKeyRequest {
            backend: new.backend.clone(),
            role: new.role.clone(),
            gun: new.gun.clone(),
            algorithm: algorithm_to_wire(new.algorithm).into(),
        };
        let response = self
            .keys
            .generate_key(request)
            .await
            .map_err(|s| Error::from_status(&s, None))?;
        KeyInfo::try_from(response.into_inner())
    }

    /// Deletes a key from its token. Irreversible.
    pub(crate) async fn delete_key(&mut self, key_id: &KeyId) -> Result<(), Error> {
        let request = pb::DeleteKeyRequest {
            key_id: key_id.as_str().to_owned(),
        };
        self.keys
            .delete_key(request)
            .await
            .map_err(|s| Error::from_status(&s, Some(key_id.as_str())))?;
        Ok(())
    }

    /// A key's attestation chain, fetched from its device by sigild and checked there.
    pub(crate) async fn attest_key(&mut self, key_id: &KeyId) -> Result<Attestation, Error> {
        let request = pb::AttestKeyRequest {
            key_id: key_id.as_str().to_owned(),
        };
        let response = self
            .keys
            .attest_key(request)
            .await
            .map_err(|s| Error::from_status(&s, Some(key_id.as_str())))?
            .into_inner();
        Ok(Attestation {
            chain_der: response.chain_der,
            pin_policy: response.pin_policy,
            touch_policy: response.touch_policy,
            verified: response.verified,
            verify_error: Some(response.verify_error).filter(|e| !e.is_empty()),
            device_serial: response.device_serial,
        })
    }

    /// Hands a token's PIN to sigild, which verifies it once; answers the PIN tries the device
    /// reported before (a correct PIN resets the counter).
    pub(crate) async fn unlock(
        &mut self,
        backend: &str,
        pin: zeroize::Zeroizing<String>,
    ) -> Result<u32, Error> {
        // The request owns its copy only until it is encoded; prost gives no way to wipe it.
        let request = pb::UnlockRequest {
            backend: backend.to_owned(),
            pin: pin.as_bytes().to_vec(),
        };
        let response = self
            .tokens
            .unlock(request)
            .await
            .map_err(|s| Error::from_status(&s, None))?;
        Ok(response.into_inner().pin_tries_before)
    }

    /// Asks sigild for one signature. The caller checks the result against the public key.
    pub(crate) async fn sign(
        &mut self,
        key_id: &KeyId,
        payload: pb::sign_request::Payload,
        encoding: pb::SignatureEncoding,
    ) -> Result<pb::SignResponse, Error> {
        let request = pb::SignRequest {
            key_id: key_id.as_str().to_owned(),
            payload: Some(payload),
            encoding: encoding.into(),
        };
        let response = self
            .signer
            .sign(request)
            .await
            .map_err(|s| Error::from_status(&s, Some(key_id.as_str())))?;
        Ok(response.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed P-256 public key (made with `openssl ecparam -genkey`), enough to test conversions.
    const P256_SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEckdkDnUY0D5EAvhMCjAVFq/gJagl
njzqZfzl7SVdD1sqaYi5gmv4qDkbnCGJshESyRaeooNGYOwsIqFUeOIjPw==
-----END PUBLIC KEY-----";

    fn wire_key() -> pb::PublicKey {
        let key = PublicKey::from_pem(P256_SPKI_PEM).expect("test key");
        let spki_der = key.to_spki_der();
        pb::PublicKey {
            key_id: key.key_id(),
            backend: "hsm".into(),
            role: "targets".into(),
            gun: String::new(),
            algorithm: pb::Algorithm::EcdsaP256.into(),
            spki_der,
            ..Default::default()
        }
    }

    #[test]
    fn a_consistent_key_converts() {
        let key = KeyInfo::try_from(wire_key()).expect("valid");
        assert_eq!(key.algorithm(), Algorithm::EcdsaP256);
        assert_eq!(key.gun, None);
        assert_eq!(key.key_id, key.public_key.key_id());
    }

    #[test]
    fn a_key_whose_id_or_algorithm_lies_is_refused() {
        let mut wrong_id = wire_key();
        wrong_id.key_id = "00".repeat(32);
        let err = KeyInfo::try_from(wrong_id).expect_err("wrong id");
        assert!(err.to_string().contains("hashes to"), "{err}");

        let mut wrong_alg = wire_key();
        wrong_alg.algorithm = pb::Algorithm::Ed25519.into();
        let err = KeyInfo::try_from(wrong_alg).expect_err("wrong algorithm");
        assert!(err.to_string().contains("declared ed25519"), "{err}");

        let mut junk = wire_key();
        junk.spki_der = b"junk".to_vec();
        assert!(KeyInfo::try_from(junk).is_err());
    }

    #[test]
    fn algorithms_round_trip_through_the_wire_enum() {
        for a in Algorithm::ALL {
            assert_eq!(algorithm_from_wire(algorithm_to_wire(a).into()), Some(a));
        }
        assert_eq!(algorithm_from_wire(0), None);
        assert_eq!(algorithm_from_wire(99), None);
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("absent.sock");
        let err = DaemonClient::connect(&socket).await.expect_err("no daemon");
        let text = err.to_string();
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(text.contains("is sigild running?"), "{text}");
        assert_eq!(err.exit_code(), crate::error::exit::UNAVAILABLE);
    }
}
