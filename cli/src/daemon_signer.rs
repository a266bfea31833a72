//! sigild as a [`sigil_tuf::Signer`]: the tuf crate signs metadata through it and never sees a
//! private key. sigild gets the whole canonical bytes, so that a caller whose policy allows
//! only `sign-metadata` can sign too (sigild reads what it signs, DESIGN §9); only for ECDSA
//! and RSA keys, bytes over sigild's default message limit — or over a lower limit sigild
//! answers with — go as their SHA-256 digest (which only a blind `sign` right accepts). Signatures come back RAW: `r || s` for ECDSA (Notary's `ecdsa` method), PSS
//! for RSA (`rsapss`), Ed25519 (`eddsa`). The tuf crate checks each one before using it.
//!
//! Also here: finding the daemon key that serves a (gun, role), or generating it on a token.

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use sigil_proto::sigil_v1 as pb;
use sigil_tuf::{Algorithm, PublicKey, SignError, Signer};

use crate::daemon_client::{DaemonClient, KeyFilter, KeyInfo, NewKey, touch_prompt};
use crate::error::Error;
use crate::key_ref::KeyId;

/// Largest message sent whole: sigild's default `max_message_bytes` (4 MiB) less room for the
/// rest of the request.
const WHOLE_MESSAGE_LIMIT: usize = 4 * 1024 * 1024 - 16 * 1024;

/// One key held by sigild, usable as a metadata signer.
#[derive(Debug, Clone)]
pub(crate) struct DaemonSigner {
    client: DaemonClient,
    key: KeyInfo,
    id: KeyId,
}

impl DaemonSigner {
    /// A signer for `key` through `client`.
    pub(crate) fn new(client: &DaemonClient, key: KeyInfo) -> Result<Self, Error> {
        let id: KeyId = key
            .key_id
            .parse()
            .map_err(|e: String| Error::BadDaemonKey {
                key_id: key.key_id.clone(),
                reason: e,
            })?;
        Ok(Self {
            client: client.clone(),
            key,
            id,
        })
    }

    /// The key as sigild describes it.
    pub(crate) fn info(&self) -> &KeyInfo {
        &self.key
    }
}

#[async_trait]
impl Signer for DaemonSigner {
    fn public_key(&self) -> &PublicKey {
        &self.key.public_key
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let digest = || pb::sign_request::Payload::Sha256Digest(Sha256::digest(message).to_vec());
        let by_digest = self.key.algorithm().signs_digest();
        let payload = if by_digest && message.len() > WHOLE_MESSAGE_LIMIT {
            digest()
        } else {
            pb::sign_request::Payload::Message(message.to_vec())
        };
        touch_prompt(&self.key, || describe_metadata(&self.key, message));
        let mut client = self.client.clone();
        let response = match client
            .sign(&self.id, payload, pb::SignatureEncoding::Raw)
            .await
        {
            // sigild's max_message_bytes is lower than the default: the digest fits.
            Err(Error::TooLarge { .. }) if by_digest && message.len() <= WHOLE_MESSAGE_LIMIT => {
                client
                    .sign(&self.id, digest(), pb::SignatureEncoding::Raw)
                    .await
            }
            other => other,
        }
        .map_err(|e| Box::new(e) as SignError)?;
        if response.key_id != self.key.key_id {
            return Err(Box::new(Error::UnexpectedResponse {
                key_id: self.key.key_id.clone(),
                reason: format!("signed with key {}", response.key_id),
            }));
        }
        Ok(response.signature)
    }
}

/// What a metadata signature covers, for the touch prompt: collection, role and version, read
/// from the canonical bytes being signed (so the prompt names what is signed, not what the
/// command meant to sign).
fn describe_metadata(key: &KeyInfo, message: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(message));
    let Ok(signed) = serde_json::from_slice::<serde_json::Value>(message) else {
        return format!("data with sha256 {digest}");
    };
    let kind = signed
        .get("_type")
        .and_then(|t| t.as_str())
        .unwrap_or("unknown")
        .to_ascii_lowercase();
    // Delegated targets roles are `_type: Targets` too; the key says which one.
    let role = if kind == "targets" && key.role.starts_with("targets/") {
        key.role.clone()
    } else {
        kind
    };
    let version = signed
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .map_or_else(|| "?".to_owned(), |v| v.to_string());
    let gun = key.gun.as_deref().unwrap_or("(no gun)");
    format!("{gun} {role} metadata version {version} (sha256 {digest})")
}

/// Signers for every key sigild lets the caller see; the tuf crate picks those whose public
/// keys the metadata names, so a root key shared by several collections is found too.
pub(crate) async fn visible_signers(client: &DaemonClient) -> Result<Vec<DaemonSigner>, Error> {
    let mut c = client.clone();
    let mut keys = c.list_keys(&KeyFilter::default()).await?;
    keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    keys.into_iter()
        .map(|k| DaemonSigner::new(client, k))
        .collect()
}

/// The key sigild holds for exactly (gun, role), if any. Several are an error: picking one by
/// any rule could sign with a key the collection does not expect (a stale or planted one).
pub(crate) async fn find_key(
    client: &DaemonClient,
    gun: &str,
    role: &str,
) -> Result<Option<KeyInfo>, Error> {
    let mut c = client.clone();
    let mut keys = c
        .list_keys(&KeyFilter {
            backend: String::new(),
            gun: gun.to_owned(),
            role: role.to_owned(),
        })
        .await?;
    keys.retain(|k| k.role == role && k.gun.as_deref() == Some(gun));
    if keys.len() > 1 {
        let mut key_ids: Vec<String> = keys.into_iter().map(|k| k.key_id).collect();
        key_ids.sort();
        return Err(Error::AmbiguousKey {
            gun: gun.to_owned(),
            role: role.to_owned(),
            key_ids,
        });
    }
    Ok(keys.pop())
}

/// Generates a P-256 key for (gun, role) on `backend` (sigild's only one when `None`).
pub(crate) async fn generate_key(
    client: &DaemonClient,
    gun: &str,
    role: &str,
    backend: Option<&str>,
) -> Result<KeyInfo, Error> {
    let mut c = client.clone();
    let key = c
        .generate_key(&NewKey {
            backend: backend.unwrap_or_default().to_owned(),
            role: role.to_owned(),
            gun: gun.to_owned(),
            algorithm: Algorithm::EcdsaP256,
        })
        .await?;
    if key.algorithm() != Algorithm::EcdsaP256 {
        return Err(Error::BadDaemonKey {
            key_id: key.key_id.clone(),
            reason: format!("asked for ecdsa-p256 but got {}", key.algorithm()),
        });
    }
    eprintln!(
        "generated {} key {} for {gun} on the token ({})",
        role, key.key_id, key.backend
    );
    Ok(key)
}

/// The key for (gun, role): reused when sigild already holds one, else generated, as
/// `notary init` generates missing keys.
pub(crate) async fn find_or_generate(
    client: &DaemonClient,
    gun: &str,
    role: &str,
    backend: Option<&str>,
) -> Result<KeyInfo, Error> {
    match find_key(client, gun, role).await? {
        Some(key) => {
            eprintln!("using {role} key {} for {gun}", key.key_id);
            Ok(key)
        }
        None => generate_key(client, gun, role, backend).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon_client::DeviceInfo;

    fn key(role: &str) -> KeyInfo {
        let mut key = crate::output::tests::sample_key(Some("example.com/app"));
        key.role = role.into();
        key.device = Some(DeviceInfo {
            serial: 12_345_678,
            touch_policy: Some("always".into()),
            pin_policy: Some("always".into()),
            attested: true,
        });
        key
    }

    #[test]
    fn the_touch_prompt_names_gun_role_and_version_from_the_signed_bytes() {
        let root = br#"{"_type":"Root","consistent_snapshot":false,"expires":"2036-01-01T00:00:00Z","keys":{},"roles":{},"version":7}"#;
        let text = describe_metadata(&key("root"), root);
        assert!(
            text.starts_with("example.com/app root metadata version 7 (sha256 "),
            "{text}"
        );
        let targets =
            br#"{"_type":"Targets","expires":"2036-01-01T00:00:00Z","targets":{},"version":3}"#;
        let text = describe_metadata(&key("targets/releases"), targets);
        assert!(
            text.starts_with("example.com/app targets/releases metadata version 3"),
            "{text}"
        );
        assert!(describe_metadata(&key("root"), b"\x00not json").starts_with("data with sha256 "));
        assert!(key("root").device.expect("device").needs_touch());
    }
}
