//! Adding and removing targets. Every name is checked (a safe relative path, inside the
//! paths delegated to the role) before anything is written; a file's content is copied under
//! `targets/<dir>/<sha256>.<name>` while it is hashed, so a file of any size is read once.

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::Repository;
use super::layout::{io_error, sync_dir};
use crate::error::{Error, Result};
use crate::schema::tuf1::{self, TargetFile, Tuf1, is_safe_target_path};

/// One target to add.
#[derive(Debug, Clone)]
pub struct NewTarget {
    /// Target path (`dir/name`).
    pub name: String,
    /// Where its content comes from.
    pub source: TargetSource,
    /// `custom` metadata, if any.
    pub custom: Option<Value>,
}

/// The content of a target being added.
#[derive(Debug, Clone)]
pub enum TargetSource {
    /// A local file: hashed and copied into `targets/`.
    File(PathBuf),
    /// Only its length and SHA-256 (the content is served from elsewhere).
    Hash {
        /// Length in bytes.
        length: u64,
        /// SHA-256 of the content.
        sha256: [u8; 32],
    },
}

/// One line of an `addhash --manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Target path.
    pub name: String,
    /// Length in bytes.
    pub length: u64,
    /// SHA-256.
    pub sha256: [u8; 32],
}

/// Parses a manifest: one target a line, `SHA256 LENGTH NAME` (the name is the rest of the
/// line, so it may hold spaces); blank lines and lines starting with `#` are skipped. The first
/// bad line fails the whole manifest, naming its line number.
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let bad = |reason: String| Error::InvalidTargetName {
            name: format!("manifest line {}", i + 1),
            reason,
        };
        let mut parts = line.trim_start().splitn(3, ' ');
        let (Some(hash), Some(length), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `SHA256 LENGTH NAME`".into()));
        };
        let sha256 = parse_sha256(hash).map_err(bad)?;
        let length = length
            .parse::<u64>()
            .map_err(|e| bad(format!("length {length:?}: {e}")))?;
        out.push(ManifestEntry {
            name: name.to_owned(),
            length,
            sha256,
        });
    }
    Ok(out)
}

/// Parses 64 hex digits (either case) as a SHA-256.
pub fn parse_sha256(text: &str) -> std::result::Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|e| format!("sha256 {text:?} is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("sha256 {text:?} is not 32 bytes (64 hex digits)"))
}

impl Repository {
    /// Adds (or replaces) `targets` in role `role` (staged). Every name is checked first,
    /// then file contents are copied into `targets/`; nothing is staged if any step fails.
    pub fn add_targets(
        &mut self,
        role: &str,
        targets: &[NewTarget],
        now: SystemTime,
    ) -> Result<()> {
        self.check_targets_role(role)?;
        for t in targets {
            self.check_target_name(role, &t.name)?;
            if let TargetSource::File(path) = &t.source {
                let meta = fs::metadata(path).map_err(io_error(path))?;
                if !meta.is_file() {
                    return Err(Error::repo(path, "is not a regular file"));
                }
            }
        }
        let mut files = Vec::with_capacity(targets.len());
        let mut dirs = std::collections::BTreeSet::new();
        for t in targets {
            let mut file = match &t.source {
                TargetSource::File(path) => self.store_file(&t.name, path, &mut dirs)?,
                TargetSource::Hash { length, sha256 } => {
                    TargetFile::from_sha256_in(Tuf1, *length, *sha256)
                }
            };
            file.custom = t.custom.clone();
            files.push((t.name.clone(), file));
        }
        // One fsync per directory for the whole batch (each file was synced itself), so the
        // renames are durable before anything can reference the files.
        for dir in &dirs {
            sync_dir(dir)?;
        }
        let body = self.stage_targets(role, now)?;
        body.targets.extend(files);
        Ok(())
    }

    /// Removes targets from role `role` (staged). Every name must be listed there.
    pub fn remove_targets(&mut self, role: &str, names: &[String], now: SystemTime) -> Result<()> {
        self.check_targets_role(role)?;
        let current = self.targets_role(role).ok_or_else(|| no_role(role))?;
        if let Some(missing) = names.iter().find(|n| !current.targets.contains_key(*n)) {
            return Err(Error::TargetNotFound {
                name: missing.clone(),
                reason: format!("not listed in {role}"),
            });
        }
        let body = self.stage_targets(role, now)?;
        for name in names {
            body.targets.remove(name);
        }
        Ok(())
    }

    pub(crate) fn check_targets_role(&self, role: &str) -> Result<()> {
        if self.targets_role(role).is_none() {
            return Err(no_role(role));
        }
        Ok(())
    }

    /// A target name must be a safe path and, in a delegated role, inside its delegation.
    pub(crate) fn check_target_name(&self, role: &str, name: &str) -> Result<()> {
        if !is_safe_target_path(name) {
            return Err(Error::InvalidTargetName {
                name: name.to_owned(),
                reason: "not a relative path of plain segments (no empty, '.', '..', '\\' or \
                         control characters; at most 4096 bytes)"
                    .into(),
            });
        }
        if role == "targets" {
            return Ok(());
        }
        let mut child = role.to_owned();
        while let Some((parent, delegated)) = self.delegator(&child) {
            if !tuf1::delegation_matches(delegated, name) {
                return Err(Error::PathNotDelegated {
                    role: child,
                    target: name.to_owned(),
                });
            }
            if parent == "targets" {
                return Ok(());
            }
            child = parent;
        }
        Err(no_role(role))
    }

    /// Copies `source` to `targets/<dir>/<sha256>.<name>`, hashing it on the way; the file is
    /// synced, its directory added to `dirs` for the caller to sync once.
    fn store_file(
        &self,
        name: &str,
        source: &Path,
        dirs: &mut std::collections::BTreeSet<PathBuf>,
    ) -> Result<TargetFile> {
        let tmp_dir = self.layout.targets_dir();
        fs::create_dir_all(&tmp_dir).map_err(io_error(&tmp_dir))?;
        let tmp = tmp_dir.join(format!(".incoming-{}", std::process::id()));
        let result = (|| {
            let mut input = File::open(source).map_err(io_error(source))?;
            let mut output = File::create(&tmp).map_err(io_error(&tmp))?;
            let mut hasher = Sha256::new();
            let mut length = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = input.read(&mut buf).map_err(io_error(source))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                output.write_all(&buf[..n]).map_err(io_error(&tmp))?;
                length += n as u64;
            }
            output.sync_all().map_err(io_error(&tmp))?;
            let sha256: [u8; 32] = hasher.finalize().into();
            let path = self.layout.target_file(name, &sha256)?;
            let dir = path.parent().unwrap_or(&tmp_dir).to_owned();
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            fs::rename(&tmp, &path).map_err(io_error(&path))?;
            dirs.insert(dir);
            Ok(TargetFile::from_sha256_in(Tuf1, length, sha256))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn no_role(role: &str) -> Error {
    Error::NoSuchRole {
        role: role.to_owned(),
        reason: "not a targets role of this repository (see `sigil tuf status`)".into(),
    }
}
