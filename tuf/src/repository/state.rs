//! What a repository keeps besides what it serves, under `REPO/.sigil/`: settings (how long
//! each role's metadata is valid) and staged roles (edited, possibly partly signed, not yet
//! published). Staged roles are whole TUF 1.0 envelopes, so a root ceremony can collect
//! signatures from keys on different machines one `sigil tuf sign` at a time. Nothing here is
//! secret: no private key ever reaches this crate.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::layout::{self, Layout, io_error, read_limited, write_atomic};
use crate::error::{Error, Result};
use crate::schema::{RoleType, Signed, tuf1};

/// Default lifetimes in days: root 365, targets and delegated roles 90, snapshot 7,
/// timestamp 1 (what python-tuf's examples and tuf-on-ci use, roughly).
const DEFAULT_DAYS: [(&str, u64); 4] = [
    ("root", 365),
    ("targets", 90),
    ("snapshot", 7),
    ("timestamp", 1),
];

/// The longest lifetime accepted (about 100 years): beyond it `expires` may not be writable.
pub const MAX_EXPIRY_DAYS: u64 = 36_500;

/// `REPO/.sigil/settings.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Lifetime in days by role name; a delegated role without its own entry uses `targets`'.
    #[serde(default)]
    pub expires_days: BTreeMap<String, u64>,
}

impl Settings {
    /// Sets `role`'s lifetime, refusing 0 and absurd values.
    pub fn set_expiry(&mut self, role: &str, days: u64) -> Result<()> {
        layout::check_role_file_name(role)?;
        if days == 0 || days > MAX_EXPIRY_DAYS {
            return Err(Error::Time {
                value: format!("{role}={days}"),
                reason: format!("a lifetime is 1 to {MAX_EXPIRY_DAYS} days"),
            });
        }
        self.expires_days.insert(role.to_owned(), days);
        Ok(())
    }

    /// How long new metadata of `role` is valid.
    pub fn lifetime(&self, role: &str) -> Duration {
        let top = RoleType::ALL.iter().any(|r| r.as_str() == role);
        let days = self
            .expires_days
            .get(role)
            .or_else(|| (!top).then(|| self.expires_days.get("targets")).flatten())
            .copied()
            .unwrap_or_else(|| {
                let key = if top { role } else { "targets" };
                DEFAULT_DAYS
                    .iter()
                    .find(|(r, _)| *r == key)
                    .map_or(90, |(_, d)| *d)
            });
        Duration::from_secs(days * 86_400)
    }

    pub(crate) fn load(layout: &Layout) -> Result<Self> {
        let path = layout.state_dir().join("settings.json");
        match read_limited(&path)? {
            None => Ok(Self::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::repo(
                    &path,
                    format!("unreadable settings (edit or remove it): {e}"),
                )
            }),
        }
    }

    pub(crate) fn save(&self, layout: &Layout) -> Result<()> {
        let path = layout.state_dir().join("settings.json");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Canonical {
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }
}

/// Roles edited since the last publish, each a full envelope (body and the signatures
/// collected so far).
#[derive(Debug, Clone, Default)]
pub struct Staged {
    /// A new root, when one is staged.
    pub root: Option<Signed<tuf1::Root>>,
    /// Targets and delegated roles by name.
    pub targets: BTreeMap<String, Signed<tuf1::Targets>>,
}

impl Staged {
    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.root.is_none() && self.targets.is_empty()
    }

    /// Names of the staged roles, root first.
    pub fn names(&self) -> Vec<String> {
        self.root
            .iter()
            .map(|_| "root".to_owned())
            .chain(self.targets.keys().cloned())
            .collect()
    }

    pub(crate) fn load(layout: &Layout) -> Result<Self> {
        let dir = layout.staged_dir();
        let mut staged = Self::default();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(staged),
            Err(e) => return Err(io_error(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&dir))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(role) = file.strip_suffix(".json") else {
                continue; // temp files of an interrupted write
            };
            if role.starts_with('.') {
                continue;
            }
            let path = layout.staged_file(role)?;
            let Some(bytes) = read_limited(&path)? else {
                continue;
            };
            if role == "root" {
                staged.root = Some(Signed::from_slice("staged root", &bytes)?);
            } else {
                let signed = Signed::from_slice(&format!("staged {role}"), &bytes)?;
                staged.targets.insert(role.to_owned(), signed);
            }
        }
        Ok(staged)
    }

    /// Writes every staged role and removes the files of roles no longer staged.
    pub(crate) fn save(&self, layout: &Layout) -> Result<()> {
        if let Some(root) = &self.root {
            write_atomic(&layout.staged_file("root")?, &root.to_vec()?)?;
        }
        for (name, signed) in &self.targets {
            write_atomic(&layout.staged_file(name)?, &signed.to_vec()?)?;
        }
        let dir = layout.staged_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let keep = self.names();
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(role) = file.strip_suffix(".json")
                && !keep.iter().any(|k| k == role)
            {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        layout::sync_dir(&dir)
    }
}
