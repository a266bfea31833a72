//! The key ring: every key the daemon holds, by key id, with the backend that holds it. It is
//! rebuilt from the tokens at start-up, so the tokens are the only source of truth.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::backend::{Algorithm, BackendKey, DeviceKey, KeyLocator, KeyMeta, KeyOwner, PublicKey};

/// A key the daemon can sign with.
#[derive(Debug)]
pub struct KeyEntry {
    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub key_id: String,
    /// Index of the holding backend in the service's backend list.
    pub backend: usize,
    /// Name of the holding backend.
    pub backend_name: String,
    /// Role and GUN.
    pub meta: KeyMeta,
    /// The public half.
    pub public: PublicKey,
    /// The public half as DER SubjectPublicKeyInfo (what the API returns).
    pub spki_der: Vec<u8>,
    /// Where the backend finds the private half.
    pub locator: KeyLocator,
    /// Notary TUF key id, for keys owned by the notary-signer endpoint (it addresses keys so).
    pub notary_id: Option<String>,
    /// What the device says about the key (YubiKey: serial, slot, attested policies).
    pub device: Option<DeviceKey>,
}

impl KeyEntry {
    /// Builds an entry from what a backend reported.
    pub fn new(backend: usize, backend_name: &str, key: BackendKey) -> Self {
        let spki_der = key.public.to_spki_der();
        let notary_id = (key.meta.owner == KeyOwner::NotarySigner)
            .then(|| notary_key_id(&key.public, &spki_der));
        Self {
            notary_id,
            key_id: sigil_tuf::key::key_id_of_spki(&spki_der),
            backend,
            backend_name: backend_name.to_owned(),
            meta: key.meta,
            public: key.public,
            spki_der,
            locator: key.locator,
            device: None,
        }
    }

    /// Adds what the device reports about the key.
    pub fn with_device(mut self, device: Option<DeviceKey>) -> Self {
        self.device = device;
        self
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// The public key as notary puts it in `keyval.public`: DER SPKI, or raw bytes for Ed25519.
    pub fn notary_public_bytes(&self) -> Vec<u8> {
        match &self.public {
            PublicKey::Ed25519(k) => k.as_bytes().to_vec(),
            _ => self.spki_der.clone(),
        }
    }
}

/// Notary's TUF key id: hex SHA-256 of the canonical JSON
/// `{"keytype":T,"keyval":{"private":null,"public":"<base64>"}}`. Base64 needs no escaping,
/// so the canonical form is exactly this text.
fn notary_key_id(public: &PublicKey, spki_der: &[u8]) -> String {
    let (keytype, bytes) = match public {
        PublicKey::Ed25519(k) => ("ed25519", k.as_bytes().to_vec()),
        PublicKey::EcdsaP256(_) => ("ecdsa", spki_der.to_vec()),
        PublicKey::Rsa(_) => ("rsa", spki_der.to_vec()),
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let canonical =
        format!(r#"{{"keytype":"{keytype}","keyval":{{"private":null,"public":"{b64}"}}}}"#);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Two tokens reported the same key: a configuration mistake (the same token twice).
#[derive(Debug, thiserror::Error)]
#[error(
    "key {key_id} is on both backend {first:?} and backend {second:?}; is the same token configured twice?"
)]
pub struct DuplicateKey {
    /// The key id.
    pub key_id: String,
    /// Backend already holding it.
    pub first: String,
    /// Backend reporting it again.
    pub second: String,
}

/// Key id → key, readable concurrently from every request.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<Keys>,
}

/// Keys by daemon key id, plus Notary key id → daemon key id for notary-signer keys.
#[derive(Debug, Default)]
struct Keys {
    by_id: HashMap<String, Arc<KeyEntry>>,
    by_notary_id: HashMap<String, String>,
}

impl KeyRing {
    fn read(&self) -> RwLockReadGuard<'_, Keys> {
        // A panic elsewhere cannot leave the map half-updated (inserts are single calls).
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a key; refuses a key id that is already present.
    pub fn insert(&self, entry: KeyEntry) -> Result<Arc<KeyEntry>, DuplicateKey> {
        let mut keys = self.write();
        if let Some(existing) = keys.by_id.get(&entry.key_id) {
            return Err(DuplicateKey {
                key_id: entry.key_id,
                first: existing.backend_name.clone(),
                second: entry.backend_name,
            });
        }
        let entry = Arc::new(entry);
        if let Some(notary_id) = &entry.notary_id {
            keys.by_notary_id
                .insert(notary_id.clone(), entry.key_id.clone());
        }
        keys.by_id.insert(entry.key_id.clone(), Arc::clone(&entry));
        Ok(entry)
    }

    /// The key with this id.
    pub fn get(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        self.read().by_id.get(key_id).cloned()
    }

    /// The notary-signer key with this Notary key id.
    pub fn get_notary(&self, notary_id: &str) -> Option<Arc<KeyEntry>> {
        let keys = self.read();
        let key_id = keys.by_notary_id.get(notary_id)?;
        keys.by_id.get(key_id).cloned()
    }

    /// Removes and returns the key with this id.
    pub fn remove(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        let mut keys = self.write();
        let removed = keys.by_id.remove(key_id)?;
        if let Some(notary_id) = &removed.notary_id {
            keys.by_notary_id.remove(notary_id);
        }
        Some(removed)
    }

    /// All keys, ordered by GUN, role and key id so listings are stable.
    pub fn all(&self) -> Vec<Arc<KeyEntry>> {
        let mut keys: Vec<_> = self.read().by_id.values().cloned().collect();
        keys.sort_by(|a, b| {
            (&a.meta.gun, &a.meta.role, &a.key_id).cmp(&(&b.meta.gun, &b.meta.role, &b.key_id))
        });
        keys
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notary_key_id_matches_a_key_id_served_by_real_notary() {
        // A delegation key from metadata served by notary-server 0.7.0 (docker trust signer add).
        let spki = base64::engine::general_purpose::STANDARD
            .decode("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0+rpPcRVs+jQXNWr+0+kXHdnmo8efomEjv3f1WS6h7y3HphV6rjDPlyRizgH9Sn6HXrHBtY/sE8/nmCxNnn2WQ==")
            .expect("base64");
        let public = PublicKey::from_spki_der(&spki).expect("spki");
        assert_eq!(
            notary_key_id(&public, &spki),
            "7553f4779b165f6976e4e4cc812d0ca29b3d7b514c6b40d7557ebf69416931dc"
        );
    }
}
