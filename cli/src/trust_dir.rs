//! The trust dir, in the notary client's layout so both tools can share one:
//!
//! ```text
//! <trust_dir>/tuf/<gun>/metadata/{root,targets,snapshot,timestamp}.json
//! <trust_dir>/tuf/<gun>/metadata/targets/<delegation>.json
//! <trust_dir>/tuf/<gun>/changelist/<nanos>_<uuid>.change
//! ```
//!
//! Unlike notary's, it never holds a private key: there is no `private/` directory, keys live
//! on tokens behind sigild. Files are 0600 in 0700 directories and every metadata file is
//! replaced atomically (temporary file, fsync, rename). Staging many changes at once writes
//! them all and syncs the file system once, so thousands of targets stage in well under a
//! second.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};
use sigil_tuf::changelist::{self, Change, Changelist};

use crate::error::Error;

/// A trust dir.
#[derive(Debug, Clone)]
pub(crate) struct TrustDir {
    root: PathBuf,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::TrustDir {
        path: path.to_owned(),
        source,
    }
}

fn tuf_error(e: sigil_tuf::Error) -> Error {
    Error::tuf("trust dir", e)
}

/// Creates `dir` and its missing parents with mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub(crate) fn write_private_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no directory", path.display())))?;
    create_private_dir(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".sigil-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    temp.write_all(bytes).map_err(io_error(path))?;
    temp.as_file().sync_all().map_err(io_error(path))?;
    temp.persist(path).map_err(|e| Error::TrustDir {
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// Names of staged change files: `<20-digit nanos>_<uuid>.change`, strictly increasing within
/// a batch (so the batch applies in order) and unique across processes.
fn change_names(count: usize) -> Vec<String> {
    let start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (0..count)
        .map(|i| {
            let nanos = start + i as u128;
            let mut h = Sha256::new();
            h.update(nanos.to_be_bytes());
            h.update(std::process::id().to_be_bytes());
            h.update((i as u64).to_be_bytes());
            let x = hex::encode(&h.finalize()[..16]);
            format!(
                "{nanos:020}_{}-{}-{}-{}-{}.change",
                &x[0..8],
                &x[8..12],
                &x[12..16],
                &x[16..20],
                &x[20..32]
            )
        })
        .collect()
}

impl TrustDir {
    /// The trust dir at `root` (created on first write).
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// `tuf/<gun>/metadata`.
    pub(crate) fn metadata_dir(&self, gun: &str) -> Result<PathBuf, Error> {
        Ok(changelist::gun_dir(&self.root, gun)
            .map_err(tuf_error)?
            .join("metadata"))
    }

    /// `tuf/<gun>/metadata/<role>.json`.
    pub(crate) fn metadata_path(&self, gun: &str, role: &str) -> Result<PathBuf, Error> {
        changelist::metadata_path(&self.root, gun, role).map_err(tuf_error)
    }

    /// A cached metadata file, `None` when absent.
    pub(crate) fn read(&self, gun: &str, role: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.metadata_path(gun, role)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Replaces a cached metadata file.
    pub(crate) fn write(&self, gun: &str, role: &str, bytes: &[u8]) -> Result<(), Error> {
        write_private_atomically(&self.metadata_path(gun, role)?, bytes)
    }

    /// Removes a cached metadata file if present.
    pub(crate) fn remove(&self, gun: &str, role: &str) -> Result<(), Error> {
        let path = self.metadata_path(gun, role)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Every cached role: `root`, `targets`, `snapshot`, `timestamp` and `targets/...`.
    pub(crate) fn cached_roles(&self, gun: &str) -> Result<Vec<String>, Error> {
        let dir = self.metadata_dir(gun)?;
        let mut out = Vec::new();
        let mut stack = vec![(dir.clone(), String::new())];
        while let Some((d, prefix)) = stack.pop() {
            let entries = match fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&d)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_error(&d))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let kind = entry.file_type().map_err(io_error(&entry.path()))?;
                if kind.is_dir() && !name.starts_with('.') {
                    stack.push((entry.path(), format!("{prefix}{name}/")));
                } else if kind.is_file()
                    && let Some(role) = name.strip_suffix(".json")
                    && !name.starts_with('.')
                {
                    out.push(format!("{prefix}{role}"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes every cached metadata file of `gun` (the changelist stays).
    pub(crate) fn clear_metadata(&self, gun: &str) -> Result<(), Error> {
        let dir = self.metadata_dir(gun)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// The collection's changelist.
    pub(crate) fn changelist(&self, gun: &str) -> Result<Changelist, Error> {
        Changelist::for_gun(&self.root, gun).map_err(tuf_error)
    }

    /// Staged changes in order, each with its file name.
    pub(crate) fn staged(&self, gun: &str) -> Result<Vec<(String, Change)>, Error> {
        let list = self.changelist(gun)?.list().map_err(tuf_error)?;
        Ok(list
            .into_iter()
            .map(|(path, change)| {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, change)
            })
            .collect())
    }

    /// Stages `changes` in order: each its own change file (notary's format), written to a
    /// temporary name and renamed, then one sync of the changelist directory for the batch.
    pub(crate) fn stage(&self, gun: &str, changes: &[Change]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let list = self.changelist(gun)?;
        let dir = list.dir().to_owned();
        create_private_dir(&dir)?;
        for (name, change) in change_names(changes.len()).into_iter().zip(changes) {
            let json = serde_json::to_vec(change)
                .map_err(|e| Error::Internal(format!("cannot encode a change: {e}")))?;
            let path = dir.join(&name);
            let temp = dir.join(format!(".{name}.tmp"));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(io_error(&temp))?;
            file.write_all(&json).map_err(io_error(&temp))?;
            drop(file);
            fs::rename(&temp, &path).map_err(io_error(&path))?;
        }
        // One fsync of the directory makes the batch's names durable. A file-system-wide sync
        // would also flush every other process's data and make clearing 10,000 changes after
        // publish crawl (see BENCHMARKS.md); notary itself does not sync its changelist.
        fs::File::open(&dir)
            .and_then(|handle| handle.sync_all())
            .map_err(io_error(&dir))
    }

    /// Removes every staged change.
    pub(crate) fn clear_staged(&self, gun: &str) -> Result<(), Error> {
        self.changelist(gun)?.clear().map_err(tuf_error)
    }

    /// Removes the staged changes whose file names are given (those just published).
    pub(crate) fn remove_staged(&self, gun: &str, names: &[String]) -> Result<(), Error> {
        let dir = self.changelist(gun)?.dir().to_owned();
        for name in names {
            let path = dir.join(name);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error(&path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_tuf::FileMeta;
    use sigil_tuf::changelist::ChangeKind;

    fn add(name: &str) -> Change {
        Change::from_kind(&ChangeKind::AddTarget {
            role: "targets".into(),
            name: name.into(),
            meta: FileMeta::from_bytes(name.as_bytes()),
        })
        .expect("change")
    }

    #[test]
    fn layout_is_notarys_and_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let td = TrustDir::new(&tmp.path().join("trust"));
        td.write("example.com/app", "root", b"r").expect("root");
        td.write("example.com/app", "targets/releases", b"d")
            .expect("delegation");
        let meta = tmp.path().join("trust/tuf/example.com/app/metadata");
        assert_eq!(fs::read(meta.join("root.json")).expect("read"), b"r");
        assert_eq!(
            fs::read(meta.join("targets/releases.json")).expect("read"),
            b"d"
        );
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&meta.join("root.json")), 0o600);
        assert_eq!(mode(&meta), 0o700);
        assert_eq!(mode(&meta.join("targets")), 0o700);
        assert_eq!(
            td.cached_roles("example.com/app").expect("roles"),
            ["root", "targets/releases"]
        );
        assert_eq!(
            td.read("example.com/app", "root").expect("read"),
            Some(b"r".to_vec())
        );
        assert_eq!(td.read("example.com/app", "snapshot").expect("read"), None);
        td.remove("example.com/app", "targets/releases")
            .expect("remove");
        td.remove("example.com/app", "targets/releases")
            .expect("remove twice");
        assert_eq!(td.cached_roles("example.com/app").expect("roles"), ["root"]);
        assert!(td.write("../escape", "root", b"x").is_err());
        assert!(td.write("example.com/app", "targets/../x", b"x").is_err());
        assert!(!tmp.path().join("trust/private").exists());
        td.clear_metadata("example.com/app").expect("clear");
        assert!(
            td.cached_roles("example.com/app")
                .expect("roles")
                .is_empty()
        );
    }

    #[test]
    fn staged_batches_keep_their_order_and_read_back_with_tuf() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let td = TrustDir::new(tmp.path());
        let names: Vec<String> = (0..300).map(|i| format!("t{i}")).collect();
        let changes: Vec<Change> = names.iter().map(|n| add(n)).collect();
        td.stage("example.com/app", &changes[..1]).expect("first");
        td.stage("example.com/app", &changes[1..]).expect("rest");
        let staged = td.staged("example.com/app").expect("list");
        let paths: Vec<&str> = staged.iter().map(|(_, c)| c.path.as_str()).collect();
        assert_eq!(paths, names);
        let rotate = Change::from_kind(&ChangeKind::Witness {
            role: "targets".into(),
        })
        .expect("witness");
        td.stage("example.com/app", &[rotate]).expect("one more");
        let staged = td.staged("example.com/app").expect("list");
        assert_eq!(staged.len(), 301);
        td.remove_staged(
            "example.com/app",
            &staged[..300]
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
        )
        .expect("remove");
        assert_eq!(td.staged("example.com/app").expect("list").len(), 1);
        td.clear_staged("example.com/app").expect("clear");
        assert!(td.staged("example.com/app").expect("list").is_empty());
    }

    /// Staged changes apply in order with notary's semantics: a later remove undoes an add, a
    /// later add comes back, removing what is absent is no error, a delegation staged before
    /// its targets lets them be added to it; each role is signed once.
    #[test]
    fn staged_changes_apply_in_order_through_the_editor() {
        use sigil_tuf::changelist::DelegationChange;
        use sigil_tuf::sign::testing::{MemorySigner, block_on};
        use sigil_tuf::{CollectionEditor, CollectionKeys, Signer, TufKey};
        use std::time::SystemTime;

        let gun = "example.com/app";
        let now = SystemTime::now();
        let (root, targets, snapshot, timestamp, releases) = (
            MemorySigner::p256(),
            MemorySigner::p256(),
            MemorySigner::p256(),
            MemorySigner::p256(),
            MemorySigner::p256(),
        );
        let cert = block_on(sigil_tuf::x509::build_root_certificate(
            gun,
            &root,
            now,
            sigil_tuf::x509::ROOT_CERT_LIFETIME,
        ))
        .expect("cert");
        let bare = |s: &MemorySigner| TufKey::from_public_key(s.public_key());
        let keys = CollectionKeys {
            root: vec![TufKey::from_certificate_pem(&cert.to_pem().expect("pem")).expect("key")],
            targets: vec![bare(&targets)],
            snapshot: vec![bare(&snapshot)],
            timestamp: vec![bare(&timestamp)],
        };
        let tmp = tempfile::tempdir().expect("tempdir");
        let td = TrustDir::new(tmp.path());
        let kinds = [
            ChangeKind::AddTarget {
                role: "targets".into(),
                name: "a".into(),
                meta: FileMeta::from_bytes(b"a"),
            },
            ChangeKind::AddTarget {
                role: "targets".into(),
                name: "b".into(),
                meta: FileMeta::from_bytes(b"b"),
            },
            ChangeKind::RemoveTarget {
                role: "targets".into(),
                name: "a".into(),
            },
            ChangeKind::RemoveTarget {
                role: "targets".into(),
                name: "never-there".into(),
            },
            ChangeKind::RemoveTarget {
                role: "targets".into(),
                name: "b".into(),
            },
            ChangeKind::AddTarget {
                role: "targets".into(),
                name: "b".into(),
                meta: FileMeta::from_bytes(b"b2"),
            },
            ChangeKind::CreateDelegation {
                role: "targets/releases".into(),
                change: DelegationChange {
                    threshold: 1,
                    add_keys: vec![bare(&releases)],
                    add_paths: vec!["rel/".into()],
                    ..Default::default()
                },
            },
            ChangeKind::AddTarget {
                role: "targets/releases".into(),
                name: "rel/1".into(),
                meta: FileMeta::from_bytes(b"1"),
            },
        ];
        let changes: Vec<Change> = kinds
            .iter()
            .map(|k| Change::from_kind(k).expect("change"))
            .collect();
        td.stage(gun, &changes).expect("stage");
        let staged = td.staged(gun).expect("staged");
        let mut editor = CollectionEditor::create(gun, &keys, now).expect("create");
        editor
            .apply_changes(staged.iter().map(|(n, c)| (n.clone(), c)))
            .expect("apply");
        let listed: Vec<&String> = editor
            .targets_role("targets")
            .expect("targets")
            .targets
            .keys()
            .collect();
        assert_eq!(listed, ["b"]);
        assert_eq!(
            editor.targets_role("targets").expect("targets").targets["b"],
            FileMeta::from_bytes(b"b2")
        );
        assert!(
            editor
                .targets_role("targets/releases")
                .expect("delegation")
                .targets
                .contains_key("rel/1")
        );
        let signers: Vec<&dyn Signer> = vec![&root, &targets, &snapshot, &releases];
        let signed = block_on(editor.sign(&signers)).expect("sign");
        let roles: Vec<&String> = signed.updates().keys().collect();
        assert_eq!(roles, ["root", "snapshot", "targets", "targets/releases"]);

        // A path outside the delegation is refused when applied, naming the role.
        let bad = Change::from_kind(&ChangeKind::AddTarget {
            role: "targets/releases".into(),
            name: "nightly/1".into(),
            meta: FileMeta::from_bytes(b"n"),
        })
        .expect("change");
        let mut editor = CollectionEditor::create(gun, &keys, now).expect("create");
        editor
            .apply_changes(staged.iter().map(|(n, c)| (n.clone(), c)))
            .expect("apply");
        let err = editor
            .apply_changes([("bad".to_owned(), &bad)])
            .expect_err("outside the delegation");
        assert!(err.to_string().contains("targets/releases"), "{err}");
    }
}
