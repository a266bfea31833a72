//! Callers' supplementary groups, read from the system's group database and cached briefly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User};

use super::Caller;

/// How long a caller's supplementary groups are cached before they are read again.
const GROUPS_TTL: Duration = Duration::from_secs(30);

/// A caller's supplementary groups and when they were read.
type CachedGroups = (Instant, Arc<[u32]>);

/// Looks up the supplementary groups of (uid, gid); may block (NSS: files, LDAP, sssd).
pub type GroupResolver = Arc<dyn Fn(u32, u32) -> Vec<u32> + Send + Sync>;

/// Callers' supplementary groups, cached per (uid, gid) for [`GROUPS_TTL`]. The key includes
/// the gid because the lookup does: a setgid program's group must not be credited to the
/// same user's other processes. A miss is resolved on tokio's blocking pool, so a slow
/// directory service delays only the callers it has to answer for; a hit is one map lookup.
pub struct GroupCache {
    resolve: GroupResolver,
    entries: Mutex<HashMap<(u32, u32), CachedGroups>>,
}

impl std::fmt::Debug for GroupCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCache").finish_non_exhaustive()
    }
}

impl GroupCache {
    /// Entries kept before expired ones are swept out.
    const SWEEP_AT: usize = 1024;

    /// Resolves through the system's group database (`getgrouplist`).
    pub fn system() -> Self {
        Self::with_resolver(Arc::new(lookup_groups))
    }

    /// Resolves with `resolve` (tests).
    pub fn with_resolver(resolve: GroupResolver) -> Self {
        Self {
            resolve,
            entries: Mutex::default(),
        }
    }

    /// The supplementary groups of `caller`'s (uid, gid).
    pub async fn groups(&self, caller: &Caller) -> Arc<[u32]> {
        let key = (caller.uid, caller.gid);
        if let Some(groups) = self.cached(key) {
            return groups;
        }
        let resolve = Arc::clone(&self.resolve);
        let groups: Arc<[u32]> = tokio::task::spawn_blocking(move || resolve(key.0, key.1))
            .await
            .unwrap_or_default()
            .into();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::SWEEP_AT {
            entries.retain(|_, (at, _)| at.elapsed() < GROUPS_TTL);
        }
        entries.insert(key, (Instant::now(), Arc::clone(&groups)));
        groups
    }

    fn cached(&self, key: (u32, u32)) -> Option<Arc<[u32]>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&key)
            .filter(|(at, _)| at.elapsed() < GROUPS_TTL)
            .map(|(_, groups)| Arc::clone(groups))
    }
}

/// The groups the user with `uid` belongs to; none when the uid has no passwd entry.
fn lookup_groups(uid: u32, gid: u32) -> Vec<u32> {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default()
}
