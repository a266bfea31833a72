//! Which key sigild generated in which slot, kept in sigild's own state directory.
//!
//! The device is shared: any local user reaches it through pcscd, and whoever knows the
//! management key can rewrite a slot's certificate, generate a key or import one. The label
//! certificate on the device is therefore only a hint (for people and other tools). The
//! authority is this file, `<state_dir>/yubikey-<serial>.json`, which only sigild's user can
//! write: slot → (role, GUN, owner, SHA-256 of the key's SubjectPublicKeyInfo). A slot whose
//! label or key does not match its entry, or that has no entry, stays out of the key ring.
//!
//! Kept rather than MACed on the device: deleting a key only removes its entry here, and a
//! MACed label could be written back later to revive a deleted key (PIV cannot erase a private
//! key before firmware 5.7). The file holds no secret, only integrity.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::super::{KeyMeta, KeyOwner};

/// The file's format tag.
const FORMAT: &str = "sigil-yubikey-bindings/1";
/// Refuse to read a binding file larger than this (21 slots fit in a few KiB).
const MAX_FILE: u64 = 1 << 20;

/// What sigild bound to one slot when it generated the key there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Binding {
    role: String,
    gun: String,
    owner: Owner,
    /// Hex SHA-256 of the DER SubjectPublicKeyInfo of the generated key.
    spki_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Owner {
    Sigil,
    NotarySigner,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    format: String,
    serial: u32,
    /// Slot as two hex digits (`9c`, `82`) → binding.
    slots: BTreeMap<String, Binding>,
}

impl Binding {
    /// The binding for a key with `meta` whose SubjectPublicKeyInfo is `spki_der`.
    pub(super) fn new(meta: &KeyMeta, spki_der: &[u8]) -> Self {
        Self {
            role: meta.role.clone(),
            gun: meta.gun.clone(),
            owner: match meta.owner {
                KeyOwner::Sigil => Owner::Sigil,
                KeyOwner::NotarySigner => Owner::NotarySigner,
            },
            spki_sha256: hex::encode(Sha256::digest(spki_der)),
        }
    }

    /// Whether the slot's label and key are still the ones bound.
    pub(super) fn matches(&self, meta: &KeyMeta, spki_der: &[u8]) -> bool {
        *self == Self::new(meta, spki_der)
    }
}

/// The bindings of one device, mirrored in memory and written through on every change.
pub(super) struct Bindings {
    path: PathBuf,
    serial: u32,
    slots: BTreeMap<u8, Binding>,
    /// The file did not exist when sigild started: the device's first start with bindings,
    /// when `adopt_slots` may take over keys an earlier sigild made.
    first: bool,
}

impl Bindings {
    /// Reads the device's bindings from `state_dir` (none yet: an empty set). The file must be
    /// a regular file (not a symlink) owned by sigild's user and writable by nobody else.
    pub(super) fn load(state_dir: &Path, serial: u32) -> Result<Self, String> {
        let path = state_dir.join(format!("yubikey-{serial}.json"));
        let mut bindings = Self {
            path,
            serial,
            slots: BTreeMap::new(),
            first: false,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&bindings.path);
        let file = match file {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bindings.first = true;
                return Ok(bindings);
            }
            Err(e) => return Err(format!("{}: {e}", bindings.path.display())),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("{}: {e}", bindings.path.display()))?;
        if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(format!(
                "{} is not a regular file owned by sigild's user",
                bindings.path.display()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} is writable by group or others (chmod 600 it)",
                bindings.path.display()
            ));
        }
        let mut text = String::new();
        file.take(MAX_FILE)
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", bindings.path.display()))?;
        let parsed: FileFormat =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", bindings.path.display()))?;
        if parsed.format != FORMAT || parsed.serial != serial {
            return Err(format!(
                "{}: not the bindings of YubiKey {serial} ({FORMAT})",
                bindings.path.display()
            ));
        }
        for (slot, binding) in parsed.slots {
            let slot = u8::from_str_radix(&slot, 16)
                .map_err(|_| format!("{}: bad slot {slot:?}", bindings.path.display()))?;
            bindings.slots.insert(slot, binding);
        }
        Ok(bindings)
    }

    /// Whether the file did not exist when sigild started.
    pub(super) fn first(&self) -> bool {
        self.first
    }

    /// Where the bindings are kept, for messages.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// What is bound to `slot`.
    pub(super) fn get(&self, slot: u8) -> Option<&Binding> {
        self.slots.get(&slot)
    }

    /// Binds `slot` and writes the file; on failure nothing changes.
    pub(super) fn bind(&mut self, slot: u8, binding: Binding) -> Result<(), String> {
        let old = self.slots.insert(slot, binding);
        self.save().inspect_err(|_| {
            match old {
                Some(old) => self.slots.insert(slot, old),
                None => self.slots.remove(&slot),
            };
        })
    }

    /// Unbinds `slot` and writes the file; on failure nothing changes.
    pub(super) fn unbind(&mut self, slot: u8) -> Result<(), String> {
        let Some(old) = self.slots.remove(&slot) else {
            return Ok(());
        };
        self.save().inspect_err(|_| {
            self.slots.insert(slot, old);
        })
    }

    /// Writes the file crash-safely: a fresh 0600 temporary file, synced, renamed over the
    /// old one, and the directory synced.
    fn save(&self) -> Result<(), String> {
        let file = FileFormat {
            format: FORMAT.to_owned(),
            serial: self.serial,
            slots: self
                .slots
                .iter()
                .map(|(slot, b)| (format!("{slot:02x}"), b.clone()))
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        text.push(b'\n');
        crate::state_dir::write_private(&self.path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(role: &str, gun: &str) -> KeyMeta {
        KeyMeta {
            role: role.into(),
            gun: gun.into(),
            owner: KeyOwner::Sigil,
        }
    }

    #[test]
    fn bindings_survive_a_reload_and_match_only_their_label_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = Bindings::load(dir.path(), 7).expect("empty");
        assert!(b.get(0x82).is_none());
        b.bind(0x82, Binding::new(&meta("targets", "prod"), b"key-a"))
            .expect("bind");
        let again = Bindings::load(dir.path(), 7).expect("reload");
        let bound = again.get(0x82).expect("bound");
        assert!(bound.matches(&meta("targets", "prod"), b"key-a"));
        assert!(!bound.matches(&meta("targets", "sandbox/x"), b"key-a"));
        assert!(!bound.matches(&meta("targets", "prod"), b"key-b"));
        let mode = std::fs::metadata(again.path()).expect("file").mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another device's file is not taken for this one.
        assert!(
            Bindings::load(dir.path(), 8)
                .expect("other")
                .get(0x82)
                .is_none()
        );
        b.unbind(0x82).expect("unbind");
        assert!(
            Bindings::load(dir.path(), 7)
                .expect("reload")
                .get(0x82)
                .is_none()
        );
    }

    #[test]
    fn a_file_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = Bindings::load(dir.path(), 7).expect("empty");
        b.bind(0x9c, Binding::new(&meta("root", "prod"), b"key"))
            .expect("bind");
        std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let err = Bindings::load(dir.path(), 7).err().expect("refused");
        assert!(err.contains("writable by group or others"), "{err}");
    }
}
