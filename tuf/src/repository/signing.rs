//! Who must sign each role, adding signatures to staged roles one key at a time (ceremonies),
//! and saying which keys are still missing. A new root needs a threshold of its own root keys
//! and of the previous root's (so a client that trusts the old root follows the rotation).

use std::fmt;

use super::{Repository, read_metadata};
use crate::error::{Error, Result};
use crate::schema::dialect::{Dialect, count_signatures};
use crate::schema::tuf1::{self, Key, Tuf1};
use crate::schema::{RoleBody, RoleType, Signed};
use crate::sign::Signer;

/// One set of keys a role needs a threshold of.
#[derive(Debug, Clone)]
pub(crate) struct KeySet {
    /// Which set, for messages: `root v3`, `targets`, ...
    pub(crate) label: String,
    pub(crate) keys: Vec<(String, Key)>,
    pub(crate) threshold: u64,
}

impl KeySet {
    fn refs(&self) -> Vec<(&str, &Key)> {
        self.keys.iter().map(|(id, k)| (id.as_str(), k)).collect()
    }
}

/// A role whose signatures do not reach a threshold yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSignatures {
    /// The role.
    pub role: String,
    /// Its staged version.
    pub version: u64,
    /// Whose threshold: the role's own keys, or (for a new root) the previous root's.
    pub key_set: String,
    /// Valid signatures so far.
    pub valid: usize,
    /// Signatures required.
    pub threshold: u64,
    /// Keys of the set that have not signed, as sigild key ids (hex SHA-256 of the SPKI).
    pub missing: Vec<String>,
}

impl fmt::Display for MissingSignatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} has {} of the {} signature(s) the keys of {} must give; missing key(s): {}",
            self.role,
            self.version,
            self.valid,
            self.threshold,
            self.key_set,
            self.missing.join(", ")
        )
    }
}

impl Repository {
    /// The key sets role `name` must satisfy, from the staged or published metadata.
    pub(crate) fn key_sets(&self, name: &str) -> Result<Vec<KeySet>> {
        let from_root = |root: &tuf1::Root, role: RoleType, label: String| KeySet {
            label,
            keys: owned(root.role_keys(role)),
            threshold: root.role(role).map_or(1, |r| r.threshold),
        };
        if let Ok(role) = name.parse::<RoleType>() {
            let root = self.root()?;
            let mut sets = vec![from_root(root, role, format!("root v{}", root.version))];
            // The root just before the staged one: normally the published root, but after a
            // publish interrupted once the staged root was written, the one before that.
            let before = match &self.staged.root {
                Some(staged) if staged.signed.version > 1 => Some(staged.signed.version - 1),
                _ => None,
            };
            if role == RoleType::Root
                && let Some(before) = before
            {
                let previous = match &self.published.root {
                    Some(p) if p.version() == before => p.body().clone(),
                    _ => read_metadata::<tuf1::Root>(&self.layout, "root", before)?
                        .body()
                        .clone(),
                };
                sets.push(from_root(
                    &previous,
                    RoleType::Root,
                    format!("the previous root v{}", previous.version),
                ));
            }
            return Ok(sets);
        }
        let (parent, delegated) = self.delegator(name).ok_or_else(|| Error::NoSuchRole {
            role: name.to_owned(),
            reason: "no role delegates to it".into(),
        })?;
        let parent_role = self
            .targets_role(&parent)
            .ok_or_else(|| Error::repo(&parent, "delegating role vanished"))?;
        let keys = parent_role
            .delegations
            .as_ref()
            .map(|d| owned(d.role_keys(delegated)))
            .unwrap_or_default();
        Ok(vec![KeySet {
            label: format!("its delegation in {parent}"),
            keys,
            threshold: delegated.threshold,
        }])
    }

    /// Adds signatures to staged role `name` with every signer whose key the role (or, for
    /// root, the previous root) names and that has not signed yet. Returns the keys that
    /// signed, as sigild key ids ([`Signer::key_id`]); refuses when none of the signers is a
    /// key of the role that has not signed yet.
    pub async fn sign_staged(
        &mut self,
        name: &str,
        signers: &[&dyn Signer],
    ) -> Result<Vec<String>> {
        let sets = self.key_sets(name)?;
        let signed = if name == "root" {
            let root = self.staged.root.as_mut().ok_or_else(|| not_staged(name))?;
            add_signatures(name, root, &root.canonical_signed()?, &sets, signers).await?
        } else {
            let role = self
                .staged
                .targets
                .get_mut(name)
                .ok_or_else(|| not_staged(name))?;
            add_signatures(name, role, &role.canonical_signed()?, &sets, signers).await?
        };
        if signed.is_empty() {
            let offered: Vec<String> = signers.iter().map(|s| s.key_id()).collect();
            let all_signed = sets.iter().flat_map(|s| &s.keys).any(|(_, k)| {
                k.to_public_key()
                    .is_ok_and(|p| signers.iter().any(|s| *s.public_key() == p))
            });
            let reason = if all_signed {
                "already signed by the key(s) offered"
            } else {
                "the key(s) offered are not keys of this role"
            };
            return Err(Error::Sign {
                role: name.to_owned(),
                key_id: offered.join(", "),
                source: reason.into(),
            });
        }
        let by_tuf_id = |id: &String| {
            sets.iter()
                .flat_map(|s| &s.keys)
                .find(|(k, _)| k == id)
                .and_then(|(_, key)| key.to_public_key().ok())
                .map_or_else(|| id.clone(), |p| p.key_id())
        };
        Ok(signed.iter().map(by_tuf_id).collect())
    }

    /// What staged role `name` still lacks (empty when every threshold is met).
    pub fn missing_signatures(&self, name: &str) -> Result<Vec<MissingSignatures>> {
        let sets = self.key_sets(name)?;
        if name == "root" {
            let root = self.staged.root.as_ref().ok_or_else(|| not_staged(name))?;
            missing(name, root, &root.canonical_signed()?, &sets)
        } else {
            let role = self
                .staged
                .targets
                .get(name)
                .ok_or_else(|| not_staged(name))?;
            missing(name, role, &role.canonical_signed()?, &sets)
        }
    }
}

fn not_staged(name: &str) -> Error {
    Error::NoSuchRole {
        role: name.to_owned(),
        reason: "nothing staged for it (sign works on staged roles; see `sigil tuf status`)".into(),
    }
}

fn owned(keys: Vec<(&str, &Key)>) -> Vec<(String, Key)> {
    keys.into_iter()
        .map(|(id, k)| (id.to_owned(), k.clone()))
        .collect()
}

/// Signs `signed` with every signer that holds a key of `sets` and has not signed yet; each
/// new signature is checked before it is kept. `message` is `signed.canonical_signed()`,
/// computed once by the caller (for 10,000 targets it costs more than the signature).
pub(crate) async fn add_signatures<T: RoleBody<Dialect = Tuf1>>(
    role: &str,
    signed: &mut Signed<T>,
    message: &[u8],
    sets: &[KeySet],
    signers: &[&dyn Signer],
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for set in sets {
        for (id, key) in &set.keys {
            if signed.signatures.iter().any(|s| s.keyid == *id) || done.contains(id) {
                continue;
            }
            let Ok(public) = key.to_public_key() else {
                continue;
            };
            let Some(signer) = signers.iter().find(|s| *s.public_key() == public) else {
                continue;
            };
            let raw = signer.sign(message).await.map_err(|source| Error::Sign {
                role: role.to_owned(),
                key_id: id.clone(),
                source,
            })?;
            let signature = Tuf1::signature(id, key, raw)?;
            Tuf1::verify(key, &signature, message).map_err(|e| Error::Sign {
                role: role.to_owned(),
                key_id: id.clone(),
                source: format!("the signer's signature does not verify: {e}").into(),
            })?;
            signed.signatures.push(signature);
            done.push(id.clone());
        }
    }
    Ok(done)
}

/// The thresholds of `sets` that `signed` does not meet; `message` is
/// `signed.canonical_signed()`.
pub(crate) fn missing<T: RoleBody<Dialect = Tuf1>>(
    role: &str,
    signed: &Signed<T>,
    message: &[u8],
    sets: &[KeySet],
) -> Result<Vec<MissingSignatures>> {
    let mut out = Vec::new();
    for set in sets {
        let count = count_signatures::<Tuf1>(message, &signed.signatures, &set.refs(), 0);
        if (count.valid.len() as u64) >= set.threshold {
            continue;
        }
        let missing = set
            .keys
            .iter()
            .filter(|(id, _)| !count.valid.contains(id))
            .map(|(id, k)| {
                k.to_public_key()
                    .map_or_else(|_| id.clone(), |p| p.key_id())
            })
            .collect();
        out.push(MissingSignatures {
            role: role.to_owned(),
            version: signed.signed.version(),
            key_set: set.label.clone(),
            valid: count.valid.len(),
            threshold: set.threshold,
            missing,
        });
    }
    Ok(out)
}
