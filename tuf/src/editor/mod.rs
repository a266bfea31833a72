//! Editing a collection and signing the result, with a typestate: a [`CollectionEditor`]
//! holds unsigned changes and has no way to produce publishable bytes; only
//! [`CollectionEditor::sign`] turns it into a [`SignedCollection`], which does.
//!
//! Signing follows the notary client: each changed role gets version + 1 and a fresh default
//! expiry; a changed root is signed by its new root keys *and* the previous root's keys (so
//! clients can follow the rotation); snapshot is re-signed when anything it lists changed and a
//! signer for its key is at hand, and otherwise left to the server (server-managed snapshot).
//! The client never signs timestamp: notary-server does.
//!
//! A whole round trip, with in-memory keys standing in for sigild (feature `test-util`):
//!
//! ```
//! # fn main() -> sigil_tuf::Result<()> {
//! use std::collections::BTreeMap;
//! use std::time::SystemTime;
//! use sigil_tuf::editor::{sign_timestamp, CollectionKeys};
//! use sigil_tuf::sign::testing::{block_on, MemorySigner};
//! use sigil_tuf::verify::{verify_collection, CollectionFiles};
//! use sigil_tuf::x509::{build_root_certificate, ROOT_CERT_LIFETIME};
//! use sigil_tuf::{CollectionEditor, FileMeta, PriorVersions, RootTrust, Signer, TufKey};
//!
//! let gun = "example.com/app";
//! let now = SystemTime::now();
//! let (root, targets, snapshot, timestamp) =
//!     (MemorySigner::p256(), MemorySigner::p256(), MemorySigner::p256(), MemorySigner::p256());
//! let cert = block_on(build_root_certificate(gun, &root, now, ROOT_CERT_LIFETIME))?;
//! let keys = CollectionKeys {
//!     root: vec![TufKey::from_certificate_pem(&cert.to_pem()?)?],
//!     targets: vec![TufKey::from_public_key(targets.public_key())],
//!     snapshot: vec![TufKey::from_public_key(snapshot.public_key())],
//!     timestamp: vec![TufKey::from_public_key(timestamp.public_key())], // the server's
//! };
//! let mut editor = CollectionEditor::create(gun, &keys, now)?;
//! editor.add_target("targets", "app.tar", FileMeta::from_bytes(b"app"))?;
//! let signed = block_on(editor.sign(&[&root, &targets, &snapshot]))?;
//! let files = signed.updates(); // POST these to notary-server
//!
//! // notary-server adds a timestamp; a client then walks the whole collection.
//! let root_body = sigil_tuf::Metadata::<sigil_tuf::schema::Root>::from_bytes("root", files["root"].clone())?;
//! let ts = block_on(sign_timestamp(root_body.body(), &files["snapshot"], 1, now, &[&timestamp]))?;
//! let collection = verify_collection(
//!     gun,
//!     files["root"].clone(),
//!     RootTrust::FirstUse,
//!     CollectionFiles {
//!         root_chain: vec![],
//!         timestamp: ts.to_vec()?,
//!         snapshot: files["snapshot"].clone(),
//!         targets: files["targets"].clone(),
//!         delegations: BTreeMap::new(),
//!     },
//!     PriorVersions::default(),
//!     now,
//! )?;
//! collection.verify_target("app.tar", b"app", &[])?;
//! # Ok(())
//! # }
//! ```
//!
//! An editor has nothing to publish until it is signed:
//!
//! ```compile_fail
//! # use sigil_tuf::CollectionEditor;
//! fn publish(editor: CollectionEditor) {
//!     let _ = editor.updates(); // no such method: only SignedCollection has it
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::changelist::{Change, ChangeKind};
use crate::error::{Error, Result};
use crate::schema::notary;
use crate::schema::targets::PathRule;
use crate::schema::{
    Expires, FileMeta, Metadata, RoleKeys, RoleType, Root, Snapshot, Targets, TufKey,
    check_delegation_name, check_targets_role, parent_role,
};
use crate::verify::VerifiedCollection;

mod delegations;
mod signing;

pub use signing::{SignedCollection, sign_snapshot, sign_timestamp};

/// The keys of a new collection's top-level roles (threshold 1 each, as `notary init`).
#[derive(Debug, Clone)]
pub struct CollectionKeys {
    /// Root keys: certificates for the GUN (see [`crate::x509::build_root_certificate`]).
    pub root: Vec<TufKey>,
    /// Targets keys.
    pub targets: Vec<TufKey>,
    /// Snapshot keys (the server's `snapshot.key` for a server-managed snapshot).
    pub snapshot: Vec<TufKey>,
    /// Timestamp keys (always the server's `timestamp.key`).
    pub timestamp: Vec<TufKey>,
}

#[derive(Debug, Clone)]
struct TargetsState {
    body: Targets,
    dirty: bool,
}

/// Unsigned edits to a collection.
#[derive(Debug, Clone)]
pub struct CollectionEditor {
    gun: String,
    now: SystemTime,
    root: Root,
    root_dirty: bool,
    /// Root keys and threshold of the published root; they must also sign a changed root.
    previous_root: Option<(Vec<(String, TufKey)>, u64)>,
    targets: BTreeMap<String, TargetsState>,
    snapshot: Option<Snapshot>,
    snapshot_dirty: bool,
    /// Current bytes of roles that are not re-signed (for snapshot meta).
    files: BTreeMap<String, Vec<u8>>,
    removed: BTreeSet<String>,
    /// A root already signed (by `sigil init`), sent as it is with the first publish.
    signed_root: Option<Vec<u8>>,
}

fn check_root_keys(gun: &str, keys: &[TufKey], now: SystemTime) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::key("root", "a root needs at least one key"));
    }
    for key in keys {
        let cert = key.certificate()?.ok_or_else(|| {
            Error::key(
                &key.id(),
                "root keys must be certificates (ecdsa-x509 or rsa-x509)",
            )
        })?;
        cert.check_root_leaf(gun, Some(now))
            .map_err(|r| Error::key(&key.id(), r))?;
    }
    Ok(())
}

impl CollectionEditor {
    /// A new collection (`init`): root, an empty targets and snapshot, each to be signed at
    /// version 1.
    pub fn create(gun: &str, keys: &CollectionKeys, now: SystemTime) -> Result<Self> {
        crate::changelist::check_gun(gun)?;
        check_root_keys(gun, &keys.root, now)?;
        let mut root = Root::new(0, Expires::after(now, notary::ROOT_EXPIRY)?);
        for (role, role_keys) in [
            (RoleType::Root, &keys.root),
            (RoleType::Targets, &keys.targets),
            (RoleType::Snapshot, &keys.snapshot),
            (RoleType::Timestamp, &keys.timestamp),
        ] {
            if role_keys.is_empty() {
                return Err(Error::key(role.as_str(), "no key given for this role"));
            }
            root.set_role_keys(role, role_keys);
        }
        let mut targets = BTreeMap::new();
        targets.insert(
            "targets".to_owned(),
            TargetsState {
                body: Targets::new(0, Expires::after(now, notary::TARGETS_EXPIRY)?),
                dirty: true,
            },
        );
        Ok(Self {
            gun: gun.to_owned(),
            now,
            root,
            root_dirty: true,
            previous_root: None,
            targets,
            snapshot: Some(Snapshot::new(
                0,
                Expires::after(now, notary::SNAPSHOT_EXPIRY)?,
            )),
            snapshot_dirty: false,
            files: BTreeMap::new(),
            removed: BTreeSet::new(),
            signed_root: None,
        })
    }

    /// The first publish of a collection whose root `init` already signed (`root`, the cached
    /// file): root goes out as it is, targets and snapshot get their version 1 now. Signing
    /// root again would make a second, different root v1, which a signer with version floors
    /// (sigild's `sign-metadata`) refuses.
    pub fn create_over_signed_root(
        gun: &str,
        root: &Metadata<Root>,
        now: SystemTime,
    ) -> Result<Self> {
        let keys = |role| {
            root.body()
                .role_keys(role)
                .into_iter()
                .map(|(_, k)| k.clone())
                .collect::<Vec<_>>()
        };
        let keys = CollectionKeys {
            root: keys(RoleType::Root),
            targets: keys(RoleType::Targets),
            snapshot: keys(RoleType::Snapshot),
            timestamp: keys(RoleType::Timestamp),
        };
        let mut editor = Self::create(gun, &keys, now)?;
        editor.root = root.body().clone();
        editor.root_dirty = false;
        editor.signed_root = Some(root.bytes().to_vec());
        Ok(editor)
    }

    /// Edits of a verified collection (`add`, `remove`, `delegation ...`, `key rotate`).
    pub fn from_collection(collection: &VerifiedCollection, now: SystemTime) -> Self {
        let root = collection.root().body().clone();
        let previous_root = Some((
            root.role_keys(RoleType::Root)
                .into_iter()
                .map(|(id, k)| (id.to_owned(), k.clone()))
                .collect(),
            root.role(RoleType::Root).map_or(1, |r| r.threshold),
        ));
        let mut targets = BTreeMap::new();
        let mut files = BTreeMap::new();
        for (name, bytes) in collection.files() {
            if name != "timestamp" && name != "snapshot" {
                files.insert(name, bytes.to_vec());
            }
        }
        targets.insert(
            "targets".to_owned(),
            TargetsState {
                body: collection.targets().body().clone(),
                dirty: false,
            },
        );
        for (name, m) in collection.delegations() {
            targets.insert(
                name.clone(),
                TargetsState {
                    body: m.body().clone(),
                    dirty: false,
                },
            );
        }
        Self {
            gun: collection.gun().to_owned(),
            now,
            root,
            root_dirty: false,
            previous_root,
            targets,
            snapshot: Some(collection.snapshot().body().clone()),
            snapshot_dirty: false,
            files,
            removed: BTreeSet::new(),
            signed_root: None,
        }
    }

    /// The GUN.
    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// The root as edited so far.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// A targets role as edited so far.
    pub fn targets_role(&self, role: &str) -> Option<&Targets> {
        self.targets.get(role).map(|s| &s.body)
    }

    /// The effective path rule of `role` under the current delegations.
    pub fn path_rule(&self, role: &str) -> Result<PathRule> {
        if role == "targets" {
            return Ok(PathRule::everything());
        }
        check_delegation_name(role)?;
        let parent = parent_role(role);
        let parent_rule = self.path_rule(parent)?;
        let entry = self
            .targets
            .get(parent)
            .and_then(|p| p.body.delegation(role))
            .ok_or_else(|| Error::NoSuchRole {
                role: role.to_owned(),
                reason: format!("not delegated by {parent}"),
            })?;
        Ok(parent_rule.restrict(entry.0))
    }

    /// The editable state of a targets role, created empty for a delegation that exists in
    /// its parent but was never published.
    fn targets_mut(&mut self, role: &str) -> Result<&mut TargetsState> {
        check_targets_role(role)?;
        if !self.targets.contains_key(role) {
            if role == "targets" {
                return Err(Error::NoSuchRole {
                    role: role.into(),
                    reason: "the collection has no targets metadata".into(),
                });
            }
            self.path_rule(role)?;
            let body = Targets::new(0, Expires::after(self.now, notary::TARGETS_EXPIRY)?);
            self.targets
                .insert(role.to_owned(), TargetsState { body, dirty: true });
        }
        self.targets.get_mut(role).ok_or_else(|| Error::NoSuchRole {
            role: role.into(),
            reason: String::new(),
        })
    }

    /// Adds (or replaces) a target. A delegated role may only list paths delegated to it.
    /// Names with control characters are refused: canonical JSON writes them raw, and no JSON
    /// parser (Go's included) reads raw control characters back.
    pub fn add_target(&mut self, role: &str, name: &str, meta: FileMeta) -> Result<()> {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(Error::InvalidTargetName {
                name: name.to_owned(),
                reason: "empty, or contains control characters".into(),
            });
        }
        if !self.path_rule(role)?.allows(name) {
            return Err(Error::PathNotDelegated {
                role: role.to_owned(),
                target: name.to_owned(),
            });
        }
        meta.check_hashes_structure()
            .map_err(|r| Error::TargetMismatch {
                name: name.to_owned(),
                role: role.to_owned(),
                reason: r,
            })?;
        let state = self.targets_mut(role)?;
        state.body.targets.insert(name.to_owned(), meta);
        state.dirty = true;
        Ok(())
    }

    /// Removes a target; returns whether it was listed.
    pub fn remove_target(&mut self, role: &str, name: &str) -> Result<bool> {
        let state = self.targets_mut(role)?;
        let removed = state.body.targets.remove(name).is_some();
        state.dirty |= removed;
        Ok(removed)
    }

    /// Replaces the keys of a top-level role (`key rotate`). The threshold stays. Root keys
    /// must be certificates for the GUN; a rotated targets or snapshot key re-signs that role.
    pub fn rotate_keys(&mut self, role: RoleType, keys: &[TufKey]) -> Result<()> {
        if role == RoleType::Root {
            check_root_keys(&self.gun, keys, self.now)?;
        }
        for key in keys {
            key.to_public_key()?;
        }
        let threshold = self.root.role(role).map_or(1, |r| r.threshold);
        if keys.is_empty() || (keys.len() as u64) < threshold {
            return Err(Error::invalid(
                "root",
                self.root.version,
                format!("{role} needs at least {threshold} key(s)"),
            ));
        }
        self.root.set_role_keys(role, keys);
        self.root_dirty = true;
        match role {
            RoleType::Targets => self.witness("targets")?,
            RoleType::Snapshot => self.snapshot_dirty = true,
            _ => {}
        }
        Ok(())
    }

    /// Sets the threshold of a top-level role.
    pub fn set_threshold(&mut self, role: RoleType, threshold: u64) -> Result<()> {
        let entry = self
            .root
            .roles
            .entry(role.as_str().to_owned())
            .or_insert_with(|| RoleKeys::new(Vec::new(), 1));
        if threshold < 1 || threshold > entry.keyids.len() as u64 {
            return Err(Error::invalid(
                "root",
                self.root.version,
                format!(
                    "{role} threshold {threshold} with {} key(s)",
                    entry.keyids.len()
                ),
            ));
        }
        entry.threshold = threshold;
        self.root_dirty = true;
        Ok(())
    }

    /// Marks a role to be re-signed unchanged (new version and expiry).
    pub fn witness(&mut self, role: &str) -> Result<()> {
        match role {
            "root" => self.root_dirty = true,
            "snapshot" => self.snapshot_dirty = true,
            _ => self.targets_mut(role)?.dirty = true,
        }
        Ok(())
    }

    /// Applies one staged change.
    pub fn apply(&mut self, change: &ChangeKind) -> Result<()> {
        match change {
            ChangeKind::AddTarget { role, name, meta } => self.add_target(role, name, meta.clone()),
            // As the notary client: removing a target that is not there is not an error.
            ChangeKind::RemoveTarget { role, name } => self.remove_target(role, name).map(|_| ()),
            ChangeKind::CreateDelegation { role, change }
            | ChangeKind::UpdateDelegation { role, change } => self.update_delegation(role, change),
            ChangeKind::DeleteDelegation { role } => self.remove_delegation(role),
            ChangeKind::PurgeDelegationKeys { scope, remove_keys } => {
                self.purge_delegation_keys(scope, remove_keys).map(|_| ())
            }
            ChangeKind::RotateKeys { role, keys } => self.rotate_keys(*role, keys),
            ChangeKind::Witness { role } => self.witness(role),
        }
    }

    /// Applies staged changes in order; `what` names each in errors.
    pub fn apply_changes<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (String, &'a Change)>,
    ) -> Result<()> {
        for (what, change) in changes {
            self.apply(&change.decode(&what)?)?;
        }
        Ok(())
    }

    /// Whether anything would be published.
    pub fn is_dirty(&self) -> bool {
        self.root_dirty
            || self.snapshot_dirty
            || !self.removed.is_empty()
            || self.targets.values().any(|s| s.dirty)
    }
}
