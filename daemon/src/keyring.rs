//! The key ring: every key the daemon holds, by key id, with the backend that holds it. It is
//! rebuilt from the tokens at start-up, so the tokens are the only source of truth.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::backend::{Algorithm, BackendKey, KeyLocator, KeyMeta, PublicKey};

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
}

impl KeyEntry {
    /// Builds an entry from what a backend reported.
    pub fn new(backend: usize, backend_name: &str, key: BackendKey) -> Self {
        let spki_der = key.public.to_spki_der();
        Self {
            key_id: sigil_tuf::key::key_id_of_spki(&spki_der),
            backend,
            backend_name: backend_name.to_owned(),
            meta: key.meta,
            public: key.public,
            spki_der,
            locator: key.locator,
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }
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
    keys: RwLock<HashMap<String, Arc<KeyEntry>>>,
}

impl KeyRing {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<KeyEntry>>> {
        // A panic elsewhere cannot leave the map half-updated (inserts are single calls).
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<KeyEntry>>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a key; refuses a key id that is already present.
    pub fn insert(&self, entry: KeyEntry) -> Result<Arc<KeyEntry>, DuplicateKey> {
        let mut keys = self.write();
        if let Some(existing) = keys.get(&entry.key_id) {
            return Err(DuplicateKey {
                key_id: entry.key_id,
                first: existing.backend_name.clone(),
                second: entry.backend_name,
            });
        }
        let entry = Arc::new(entry);
        keys.insert(entry.key_id.clone(), Arc::clone(&entry));
        Ok(entry)
    }

    /// The key with this id.
    pub fn get(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        self.read().get(key_id).cloned()
    }

    /// Removes and returns the key with this id.
    pub fn remove(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        self.write().remove(key_id)
    }

    /// All keys, ordered by GUN, role and key id so listings are stable.
    pub fn all(&self) -> Vec<Arc<KeyEntry>> {
        let mut keys: Vec<_> = self.read().values().cloned().collect();
        keys.sort_by(|a, b| {
            (&a.meta.gun, &a.meta.role, &a.key_id).cmp(&(&b.meta.gun, &b.meta.role, &b.key_id))
        });
        keys
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
