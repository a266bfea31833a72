//! Staged changes (`sigil add`, `remove`, `delegation add` ... before `publish`), in the notary
//! client's own format and place, `<trust_dir>/tuf/<gun>/changelist/`, so a trust dir can be
//! shared with the notary client.
//!
//! Each change is one JSON file named `<20-digit unix nanos>_<uuid>.change` holding
//! `{"action","role","type","path","data"}`, where `data` is base64 of a nested JSON document
//! (or `null`): a target's file meta, a delegation edit, or new keys for a top-level role.
//! Changes apply in file name order. Only plain `std::fs` is used; the CLI decides when.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::schema::{FileMeta, RoleType, TufKey, check_targets_role, notary};

/// `action` values.
pub mod action {
    /// Add a target, create or extend a delegation, replace a role's keys.
    pub const CREATE: &str = "create";
    /// Edit a delegation (remove keys or paths).
    pub const UPDATE: &str = "update";
    /// Remove a target or a delegation.
    pub const DELETE: &str = "delete";
}

/// `type` values.
pub mod kind {
    /// A target in a targets role.
    pub const TARGET: &str = "target";
    /// A delegation in a targets role.
    pub const DELEGATION: &str = "delegation";
    /// Keys of a top-level role (scope `root`).
    pub const BASE_ROLE: &str = "role";
    /// Re-sign a role unchanged (refreshes its expiry).
    pub const WITNESS: &str = "witness";
}

/// One staged change, as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// [`action`] value.
    pub action: String,
    /// Role the change applies to (`targets`, `targets/x`, or `root` for key changes).
    pub role: String,
    /// [`kind`] value.
    #[serde(rename = "type")]
    pub kind: String,
    /// Target path (empty for delegation and key changes).
    pub path: String,
    /// Nested JSON document, base64 in the file; `null` when there is none.
    #[serde(with = "optional_base64")]
    pub data: Option<Vec<u8>>,
}

/// A delegation edit (notary's `TUFDelegation`); empty fields mean "no change".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DelegationChange {
    /// Rename (unused by the notary CLI; kept for compatibility).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub new_name: String,
    /// New threshold (0: keep).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub threshold: u64,
    /// Keys to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_keys: Vec<TufKey>,
    /// Key ids (TUF or canonical) to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_keys: Vec<String>,
    /// Path prefixes to add (`""` is every path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_paths: Vec<String>,
    /// Path prefixes to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_paths: Vec<String>,
    /// Remove every path first.
    #[serde(default, rename = "clear_paths", skip_serializing_if = "is_false")]
    pub clear_paths: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// New keys for a top-level role (notary's `TUFRootData`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RootRoleData {
    keys: Vec<TufKey>,
    role: String,
}

/// What a [`Change`] means.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    /// Add (or replace) a target in a targets role.
    AddTarget {
        /// `targets` or a delegation.
        role: String,
        /// Target path.
        name: String,
        /// Length and hashes.
        meta: FileMeta,
    },
    /// Remove a target.
    RemoveTarget {
        /// `targets` or a delegation.
        role: String,
        /// Target path.
        name: String,
    },
    /// Create a delegation, or add keys and paths to it.
    CreateDelegation {
        /// Delegated role.
        role: String,
        /// Keys, threshold, paths.
        change: DelegationChange,
    },
    /// Remove keys or paths from a delegation.
    UpdateDelegation {
        /// Delegated role.
        role: String,
        /// What to change.
        change: DelegationChange,
    },
    /// Remove a delegation.
    DeleteDelegation {
        /// Delegated role.
        role: String,
    },
    /// Remove keys from every delegation under a role (notary's `delegation purge`, staged with
    /// the wildcard scope `targets/*`): a compromised key loses all its delegations at once.
    PurgeDelegationKeys {
        /// The wildcard scope, `<role>/*` (notary uses `targets/*`).
        scope: String,
        /// TUF or canonical ids of the keys to remove.
        remove_keys: Vec<String>,
    },
    /// Replace the keys of a top-level role (key rotation).
    RotateKeys {
        /// The role.
        role: RoleType,
        /// Its new keys.
        keys: Vec<TufKey>,
    },
    /// Re-sign a role without changing it.
    Witness {
        /// The role.
        role: String,
    },
}

/// The role under which a purge scope (`<role>/*`) reaches: `targets` or a delegation.
pub fn purge_base(scope: &str) -> Result<&str> {
    let base = scope
        .strip_suffix("/*")
        .ok_or_else(|| Error::InvalidRoleName {
            role: scope.to_owned(),
            reason: "a purge scope is a targets role followed by /*, e.g. targets/*".into(),
        })?;
    check_targets_role(base)?;
    Ok(base)
}

impl Change {
    fn new(action: &str, role: &str, kind: &str, path: &str, data: Option<Vec<u8>>) -> Self {
        Self {
            action: action.to_owned(),
            role: role.to_owned(),
            kind: kind.to_owned(),
            path: path.to_owned(),
            data,
        }
    }

    /// Encodes a typed change.
    pub fn from_kind(change: &ChangeKind) -> Result<Self> {
        Ok(match change {
            ChangeKind::AddTarget { role, name, meta } => {
                check_targets_role(role)?;
                Self::new(action::CREATE, role, kind::TARGET, name, Some(json(meta)?))
            }
            ChangeKind::RemoveTarget { role, name } => {
                check_targets_role(role)?;
                Self::new(action::DELETE, role, kind::TARGET, name, None)
            }
            ChangeKind::CreateDelegation { role, change } => {
                crate::schema::check_delegation_name(role)?;
                Self::new(
                    action::CREATE,
                    role,
                    kind::DELEGATION,
                    "",
                    Some(json(change)?),
                )
            }
            ChangeKind::UpdateDelegation { role, change } => {
                crate::schema::check_delegation_name(role)?;
                Self::new(
                    action::UPDATE,
                    role,
                    kind::DELEGATION,
                    "",
                    Some(json(change)?),
                )
            }
            ChangeKind::DeleteDelegation { role } => {
                crate::schema::check_delegation_name(role)?;
                Self::new(action::DELETE, role, kind::DELEGATION, "", None)
            }
            ChangeKind::PurgeDelegationKeys { scope, remove_keys } => {
                purge_base(scope)?;
                let change = DelegationChange {
                    remove_keys: remove_keys.clone(),
                    ..DelegationChange::default()
                };
                Self::new(
                    action::UPDATE,
                    scope,
                    kind::DELEGATION,
                    "",
                    Some(json(&change)?),
                )
            }
            ChangeKind::RotateKeys { role, keys } => {
                let data = RootRoleData {
                    keys: keys.clone(),
                    role: role.as_str().to_owned(),
                };
                Self::new(
                    action::CREATE,
                    "root",
                    kind::BASE_ROLE,
                    "",
                    Some(json(&data)?),
                )
            }
            ChangeKind::Witness { role } => {
                check_targets_role(role)?;
                Self::new(action::UPDATE, role, kind::WITNESS, "", None)
            }
        })
    }

    /// Decodes what the change means. `what` names the change in errors (its file, say).
    pub fn decode(&self, what: &str) -> Result<ChangeKind> {
        let bad = |reason: String| Error::Changelist {
            path: what.to_owned(),
            reason,
        };
        let data = || self.data.as_deref().unwrap_or_default();
        let parse_err = |e: serde_json::Error| bad(format!("data: {e}"));
        match (self.role.as_str(), self.kind.as_str(), self.action.as_str()) {
            ("root", kind::BASE_ROLE, action::CREATE) => {
                let d: RootRoleData = serde_json::from_slice(data()).map_err(parse_err)?;
                Ok(ChangeKind::RotateKeys {
                    role: d.role.parse()?,
                    keys: d.keys,
                })
            }
            (role, kind::TARGET, action::CREATE) => Ok(ChangeKind::AddTarget {
                role: role.to_owned(),
                name: self.path.clone(),
                meta: serde_json::from_slice(data()).map_err(parse_err)?,
            }),
            (role, kind::TARGET, action::DELETE) => Ok(ChangeKind::RemoveTarget {
                role: role.to_owned(),
                name: self.path.clone(),
            }),
            (role, kind::DELEGATION, action::CREATE) => Ok(ChangeKind::CreateDelegation {
                role: role.to_owned(),
                change: serde_json::from_slice(data()).map_err(parse_err)?,
            }),
            (scope, kind::DELEGATION, action::UPDATE) if scope.ends_with("/*") => {
                let change: DelegationChange = serde_json::from_slice(data()).map_err(parse_err)?;
                purge_base(scope)?;
                Ok(ChangeKind::PurgeDelegationKeys {
                    scope: scope.to_owned(),
                    remove_keys: change.remove_keys,
                })
            }
            (role, kind::DELEGATION, action::UPDATE) => Ok(ChangeKind::UpdateDelegation {
                role: role.to_owned(),
                change: serde_json::from_slice(data()).map_err(parse_err)?,
            }),
            (role, kind::DELEGATION, action::DELETE) => Ok(ChangeKind::DeleteDelegation {
                role: role.to_owned(),
            }),
            (role, kind::WITNESS, _) => Ok(ChangeKind::Witness {
                role: role.to_owned(),
            }),
            (role, kind, action) => Err(bad(format!(
                "unsupported change: {action} {kind} on {role}"
            ))),
        }
    }
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Changelist {
        path: "new change".into(),
        reason: e.to_string(),
    })
}

mod optional_base64 {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&notary::encode_bytes(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => notary::decode_bytes(&text)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}"))),
            None => Ok(None),
        }
    }
}

/// Checks that a GUN can name a directory: relative, no empty, `.` or `..` segments.
pub fn check_gun(gun: &str) -> Result<()> {
    let ok = !gun.is_empty()
        && gun
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && !gun.contains('\\')
        && !gun.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRoleName {
            role: gun.to_owned(),
            reason: "a GUN is host/path segments, without empty, '.' or '..' parts".into(),
        })
    }
}

/// `<trust_dir>/tuf/<gun>`: where the collection's metadata and changelist live.
pub fn gun_dir(trust_dir: &Path, gun: &str) -> Result<PathBuf> {
    check_gun(gun)?;
    Ok(trust_dir.join("tuf").join(gun))
}

/// `<trust_dir>/tuf/<gun>/metadata/<role>.json` (delegations nest: `metadata/targets/x.json`).
pub fn metadata_path(trust_dir: &Path, gun: &str, role: &str) -> Result<PathBuf> {
    if role != "root" && role != "timestamp" && role != "snapshot" {
        check_targets_role(role)?;
    }
    Ok(gun_dir(trust_dir, gun)?
        .join("metadata")
        .join(format!("{role}.json")))
}

/// A collection's changelist directory.
#[derive(Debug, Clone)]
pub struct Changelist {
    dir: PathBuf,
}

impl Changelist {
    /// The changelist in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `<trust_dir>/tuf/<gun>/changelist`.
    pub fn for_gun(trust_dir: &Path, gun: &str) -> Result<Self> {
        Ok(Self::new(gun_dir(trust_dir, gun)?.join("changelist")))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
        let path = path.to_path_buf();
        move |source| Error::Io {
            path: path.clone(),
            source,
        }
    }

    /// Change files in application (name) order. A missing directory is an empty list.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(&self.dir)(e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.io(&self.dir))?;
            let is_file = entry.file_type().map_err(self.io(&entry.path()))?.is_file();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if is_file && !hidden {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    /// Every staged change, in order, with its file. An unreadable change is an error rather
    /// than silently dropped (the notary client only logs it).
    pub fn list(&self) -> Result<Vec<(PathBuf, Change)>> {
        let mut out = Vec::new();
        for path in self.files()? {
            let bytes = std::fs::read(&path).map_err(self.io(&path))?;
            let change = serde_json::from_slice(&bytes).map_err(|e| Error::Changelist {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            out.push((path, change));
        }
        Ok(out)
    }

    /// Stages a change: a new file (mode 0600, directory 0700), written atomically.
    pub fn add(&self, change: &Change) -> Result<PathBuf> {
        create_private_dir(&self.dir).map_err(self.io(&self.dir))?;
        let json = serde_json::to_vec(change).map_err(|e| Error::Changelist {
            path: self.dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let name = change_file_name(&self.dir);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        write_private(&tmp, &json).map_err(self.io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(self.io(&path))?;
        Ok(path)
    }

    /// Removes every staged change (after a successful publish, or `reset`).
    pub fn clear(&self) -> Result<()> {
        for path in self.files()? {
            std::fs::remove_file(&path).map_err(self.io(&path))?;
        }
        Ok(())
    }

    /// Removes the changes at the given positions of [`Changelist::files`].
    pub fn remove(&self, indices: &[usize]) -> Result<()> {
        for (i, path) in self.files()?.into_iter().enumerate() {
            if indices.contains(&i) {
                std::fs::remove_file(&path).map_err(self.io(&path))?;
            }
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `<20-digit nanos>_<uuid>.change`, unique within the process and across processes: the
/// uuid-shaped part hashes the time, pid, a counter and the directory.
fn change_file_name(dir: &Path) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(nanos.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    h.update(dir.as_os_str().as_encoded_bytes());
    let x = hex::encode(&h.finalize()[..16]);
    format!(
        "{nanos:020}_{}-{}-{}-{}-{}.change",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notary_change_files_decode() {
        // What `notary add example.com/scripts hello.sh hello.sh` writes (data is the FileMeta).
        let meta =
            br#"{"length":46,"hashes":{"sha256":"nZo+UcMakJM7ibgwT560I0eL9smcg0JB1stBSZ4/Mzk="}}"#;
        let file = format!(
            r#"{{"action":"create","role":"targets","type":"target","path":"hello.sh","data":"{}"}}"#,
            notary::encode_bytes(meta)
        );
        let change: Change = serde_json::from_str(&file).expect("parse");
        match change.decode("x").expect("decode") {
            ChangeKind::AddTarget { role, name, meta } => {
                assert_eq!(
                    (role.as_str(), name.as_str(), meta.length),
                    ("targets", "hello.sh", 46)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let delete: Change = serde_json::from_str(
            r#"{"action":"delete","role":"targets/releases","type":"delegation","path":"","data":null}"#,
        )
        .expect("parse");
        assert_eq!(
            delete.decode("x").expect("decode"),
            ChangeKind::DeleteDelegation {
                role: "targets/releases".into()
            }
        );
    }

    #[test]
    fn typed_changes_round_trip() {
        let key = TufKey::new(crate::schema::KeyType::Ed25519, &[7; 32]);
        let kinds = vec![
            ChangeKind::AddTarget {
                role: "targets/releases".into(),
                name: "a.tar".into(),
                meta: FileMeta::from_bytes(b"a"),
            },
            ChangeKind::RemoveTarget {
                role: "targets".into(),
                name: "a.tar".into(),
            },
            ChangeKind::CreateDelegation {
                role: "targets/releases".into(),
                change: DelegationChange {
                    threshold: 1,
                    add_keys: vec![key.clone()],
                    add_paths: vec![String::new()],
                    ..Default::default()
                },
            },
            ChangeKind::UpdateDelegation {
                role: "targets/releases".into(),
                change: DelegationChange {
                    remove_keys: vec![key.id()],
                    clear_paths: true,
                    ..Default::default()
                },
            },
            ChangeKind::DeleteDelegation {
                role: "targets/releases".into(),
            },
            ChangeKind::RotateKeys {
                role: RoleType::Snapshot,
                keys: vec![key],
            },
            ChangeKind::Witness {
                role: "targets".into(),
            },
        ];
        for kind in kinds {
            let change = Change::from_kind(&kind).expect("encode");
            let json = serde_json::to_string(&change).expect("ser");
            let back: Change = serde_json::from_str(&json).expect("de");
            assert_eq!(back.decode("x").expect("decode"), kind);
        }
        assert!(
            Change::from_kind(&ChangeKind::RemoveTarget {
                role: "snapshot".into(),
                name: "x".into()
            })
            .is_err()
        );
    }

    #[test]
    fn delegation_change_omits_empty_fields_like_go() {
        let c = DelegationChange {
            threshold: 1,
            add_paths: vec![String::new()],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&c).expect("ser"),
            r#"{"threshold":1,"add_paths":[""]}"#
        );
    }

    #[test]
    fn directory_round_trip_in_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cl = Changelist::for_gun(tmp.path(), "example.com/app").expect("gun");
        assert!(cl.list().expect("empty").is_empty());
        let names = ["a", "b", "c"];
        for n in names {
            cl.add(
                &Change::from_kind(&ChangeKind::RemoveTarget {
                    role: "targets".into(),
                    name: n.into(),
                })
                .expect("encode"),
            )
            .expect("add");
        }
        let listed: Vec<String> = cl
            .list()
            .expect("list")
            .into_iter()
            .map(|(_, c)| c.path)
            .collect();
        assert_eq!(listed, names);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let files = cl.files().expect("files");
            let mode = std::fs::metadata(&files[0])
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            assert!(
                files[0]
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.len() == 20 + 1 + 36 + 7 && n.ends_with(".change"))
            );
        }
        cl.remove(&[1]).expect("remove");
        assert_eq!(cl.list().expect("list").len(), 2);
        cl.clear().expect("clear");
        assert!(cl.list().expect("list").is_empty());
        assert!(cl.dir().ends_with("tuf/example.com/app/changelist"));
        assert!(Changelist::for_gun(tmp.path(), "../etc").is_err());
        assert!(
            metadata_path(tmp.path(), "example.com/app", "targets/releases")
                .expect("path")
                .ends_with("tuf/example.com/app/metadata/targets/releases.json")
        );
    }
}
