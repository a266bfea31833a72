//! Who may do what with which key, decided from the caller's peer credentials. Deny by
//! default: a caller matched by no rule can do nothing, and a key no rule grants it is
//! invisible to it. All rules that match a caller are combined (union).
//!
//! Globs over GUNs, roles and backend names: `*` matches within one `/`-separated part, `**`
//! across parts, and a pattern that is just `*` means any value at all (as `**`). So
//! `example.com/*` grants `example.com/app` but not `example.com/team/app`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobMatcher};
use nix::unistd::{Gid, Group, Uid, User};

use crate::backend::attestation::TouchPolicy;
use crate::config::{Config, Error, Op, PolicyConfig, RequirementConfig, TouchSetting};

/// How long a caller's supplementary groups are cached before they are read again.
const GROUPS_TTL: Duration = Duration::from_secs(30);

/// The process on the other end of the socket, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id, when the kernel reports it.
    pub pid: Option<i32>,
}

/// The attributes of a key that selectors look at.
#[derive(Debug, Clone, Copy)]
pub struct KeyView<'a> {
    /// Daemon key id (empty for a key that does not exist yet).
    pub key_id: &'a str,
    /// GUN (empty when unbound).
    pub gun: &'a str,
    /// Role.
    pub role: &'a str,
}

/// A set of operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ops(u8);

impl Ops {
    fn bit(op: Op) -> u8 {
        match op {
            Op::Sign => 1,
            Op::Public => 2,
            Op::List => 4,
            Op::Generate => 8,
            Op::Delete => 16,
            Op::Unlock => 32,
            Op::SignMetadata => 64,
        }
    }

    /// Whether `op` is in the set.
    pub fn contains(self, op: Op) -> bool {
        self.0 & Self::bit(op) != 0
    }

    /// Whether the set is empty (the key is invisible).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

enum Selector {
    KeyId(String),
    Glob { gun: GlobMatcher, role: GlobMatcher },
}

impl Selector {
    fn matches(&self, key: &KeyView<'_>) -> bool {
        match self {
            Self::KeyId(id) => !key.key_id.is_empty() && id == key.key_id,
            Self::Glob { gun, role } => gun.is_match(key.gun) && role.is_match(key.role),
        }
    }
}

struct Rule {
    name: String,
    uids: HashSet<u32>,
    gids: HashSet<u32>,
    keys: Vec<Selector>,
    /// Backend names `unlock` applies to.
    tokens: Vec<GlobMatcher>,
    allow: Ops,
}

/// A compiled `[[require]]` rule.
struct Requirement {
    name: String,
    gun: GlobMatcher,
    role: GlobMatcher,
    attested: bool,
    touch: Option<TouchPolicy>,
}

/// What the requirements matching a role and GUN ask of a key, all combined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Names of the matching rules, for messages.
    pub rules: Vec<String>,
    /// The key must be attested.
    pub attested: bool,
    /// The attested touch policy must be at least this.
    pub touch: Option<TouchPolicy>,
}

/// What is known about a key's attestation.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyFacts {
    /// Its attestation verified against the configured roots.
    pub attested: bool,
    /// Its touch policy, as reported by the device (attested when `attested`).
    pub touch: Option<TouchPolicy>,
}

impl Needs {
    /// Whether anything is required.
    pub fn any(&self) -> bool {
        self.attested || self.touch.is_some()
    }

    /// Why a key with `facts` does not meet these needs, or `None` when it does. A touch
    /// requirement is met only by an attested touch policy.
    pub fn unmet(&self, facts: &KeyFacts) -> Option<String> {
        let rules = self.rules.join(", ");
        if self.attested && !facts.attested {
            return Some(format!(
                "requirement {rules}: the key is not attested (its attestation chain does not verify against the backend's attestation_roots)"
            ));
        }
        if let Some(want) = self.touch {
            match (facts.attested, facts.touch) {
                (true, Some(have)) if have >= want => {}
                (true, Some(have)) => {
                    return Some(format!(
                        "requirement {rules}: the key's attested touch policy is {}, {} is required",
                        have.as_str(),
                        want.as_str()
                    ));
                }
                _ => {
                    return Some(format!(
                        "requirement {rules}: touch {} is required but the key's touch policy is not attested",
                        want.as_str()
                    ));
                }
            }
        }
        None
    }
}

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

/// The compiled policy.
pub struct Policy {
    rules: Vec<Rule>,
    requirements: Vec<Requirement>,
    /// Certificate names (CN or SAN) allowed on the notary-signer endpoint.
    notary_clients: Vec<String>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.rules.iter().map(|r| r.name.as_str()).collect();
        f.debug_struct("Policy").field("rules", &names).finish()
    }
}

pub(crate) fn glob(pattern: &str, rule: &str) -> Result<GlobMatcher, Error> {
    // A lone `*` is "anything"; elsewhere `*` stays within one `/`-separated part.
    let pattern = if pattern == "*" { "**" } else { pattern };
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| Error::Invalid(format!("policy {rule:?}: bad pattern {pattern:?}: {e}")))
}

impl Policy {
    /// Compiles a configuration's `[[policy]]` and `[[require]]` rules.
    pub fn load(config: &Config) -> Result<Self, Error> {
        let mut policy = Self::from_config(&config.policies)?.require(&config.requirements)?;
        if let Some(ns) = &config.notary_signer {
            policy.notary_clients.clone_from(&ns.allowed_clients);
        }
        Ok(policy)
    }

    /// The first of a client certificate's names that `[notary_signer] allowed_clients` lists.
    pub fn notary_client<'a>(&self, names: &'a [String]) -> Option<&'a String> {
        names.iter().find(|n| self.notary_clients.contains(n))
    }

    /// Whether some rule names groups (only then are callers' groups looked up).
    pub fn names_groups(&self) -> bool {
        self.rules.iter().any(|r| !r.gids.is_empty())
    }

    /// Adds `[[require]]` rules.
    pub fn require(mut self, requirements: &[RequirementConfig]) -> Result<Self, Error> {
        for req in requirements {
            self.requirements.push(Requirement {
                name: req.name.clone(),
                gun: glob(req.gun.as_deref().unwrap_or("*"), &req.name)?,
                role: glob(req.role.as_deref().unwrap_or("*"), &req.name)?,
                attested: req.attested,
                touch: match req.touch {
                    None | Some(TouchSetting::Never) => None,
                    Some(TouchSetting::Cached) => Some(TouchPolicy::Cached),
                    Some(TouchSetting::Always) => Some(TouchPolicy::Always),
                },
            });
        }
        Ok(self)
    }

    /// What the requirements ask of a key with this role and GUN.
    pub fn needs(&self, gun: &str, role: &str) -> Needs {
        let mut needs = Needs::default();
        for req in &self.requirements {
            if req.gun.is_match(gun) && req.role.is_match(role) {
                needs.rules.push(req.name.clone());
                needs.attested |= req.attested;
                needs.touch = needs.touch.max(req.touch);
            }
        }
        needs
    }

    /// Compiles the `[[policy]]` rules, resolving user and group names now.
    pub fn from_config(rules: &[PolicyConfig]) -> Result<Self, Error> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            let mut uids: HashSet<u32> = rule.uids.iter().copied().collect();
            for user in &rule.users {
                let found = User::from_name(user)
                    .map_err(|e| {
                        Error::Invalid(format!("policy {:?}: user {user:?}: {e}", rule.name))
                    })?
                    .ok_or_else(|| {
                        Error::Invalid(format!("policy {:?}: no such user {user:?}", rule.name))
                    })?;
                uids.insert(found.uid.as_raw());
            }
            let mut gids: HashSet<u32> = rule.gids.iter().copied().collect();
            for group in &rule.groups {
                let found = Group::from_name(group)
                    .map_err(|e| {
                        Error::Invalid(format!("policy {:?}: group {group:?}: {e}", rule.name))
                    })?
                    .ok_or_else(|| {
                        Error::Invalid(format!("policy {:?}: no such group {group:?}", rule.name))
                    })?;
                gids.insert(found.gid.as_raw());
            }
            let mut keys = Vec::with_capacity(rule.keys.len());
            for sel in &rule.keys {
                keys.push(match &sel.key_id {
                    Some(id) => Selector::KeyId(id.to_ascii_lowercase()),
                    None => Selector::Glob {
                        gun: glob(sel.gun.as_deref().unwrap_or("*"), &rule.name)?,
                        role: glob(sel.role.as_deref().unwrap_or("*"), &rule.name)?,
                    },
                });
            }
            let allow = Ops(rule.allow.iter().fold(0, |acc, op| acc | Ops::bit(*op)));
            let tokens = rule
                .tokens
                .iter()
                .map(|t| glob(t, &rule.name))
                .collect::<Result<_, _>>()?;
            compiled.push(Rule {
                name: rule.name.clone(),
                uids,
                gids,
                keys,
                tokens,
                allow,
            });
        }
        Ok(Self {
            rules: compiled,
            requirements: Vec::new(),
            notary_clients: Vec::new(),
        })
    }

    /// The operations `caller`, with supplementary `groups` (see [`GroupCache`]), may perform
    /// on `key`; empty means the key is invisible to it.
    pub fn ops(&self, caller: &Caller, groups: &[u32], key: &KeyView<'_>) -> Ops {
        let mut ops = 0;
        for rule in &self.rules {
            if rule.allow.0 & !ops == 0 || !rule.keys.iter().any(|s| s.matches(key)) {
                continue;
            }
            if rule.admits(caller, groups) {
                ops |= rule.allow.0;
            }
        }
        Ops(ops)
    }

    /// Whether `caller` may unlock (supply the PIN of) the backend named `token`.
    pub fn may_unlock(&self, caller: &Caller, groups: &[u32], token: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.allow.contains(Op::Unlock)
                && rule.tokens.iter().any(|t| t.is_match(token))
                && rule.admits(caller, groups)
        })
    }

    /// Names of the rules, for the start-up log.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }
}

impl Rule {
    /// Whether the rule names the caller: its uid, its gid, or one of its groups.
    fn admits(&self, caller: &Caller, groups: &[u32]) -> bool {
        self.uids.contains(&caller.uid)
            || self.gids.contains(&caller.gid)
            || (!self.gids.is_empty() && groups.iter().any(|g| self.gids.contains(g)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeySelectorConfig;

    fn rule(
        name: &str,
        uids: &[u32],
        gids: &[u32],
        sel: KeySelectorConfig,
        allow: &[Op],
    ) -> PolicyConfig {
        PolicyConfig {
            name: name.into(),
            users: vec![],
            uids: uids.to_vec(),
            groups: vec![],
            gids: gids.to_vec(),
            keys: vec![sel],
            tokens: vec![],
            allow: allow.to_vec(),
        }
    }

    fn globs(gun: &str, role: &str) -> KeySelectorConfig {
        KeySelectorConfig {
            key_id: None,
            gun: Some(gun.into()),
            role: Some(role.into()),
        }
    }

    const CI: Caller = Caller {
        uid: 1000,
        gid: 1000,
        pid: Some(1),
    };
    const OTHER: Caller = Caller {
        uid: 1001,
        gid: 1001,
        pid: Some(2),
    };

    #[test]
    fn deny_by_default_and_union_of_matching_rules() {
        let p = Policy::from_config(&[
            rule(
                "ci",
                &[1000],
                &[],
                globs("example.com/*", "targets/releases"),
                &[Op::Sign],
            ),
            rule(
                "ci-read",
                &[],
                &[1000],
                globs("*", "*"),
                &[Op::List, Op::Public],
            ),
        ])
        .expect("policy");
        let releases = KeyView {
            key_id: "aa",
            gun: "example.com/app",
            role: "targets/releases",
        };
        let root = KeyView {
            key_id: "bb",
            gun: "example.com/app",
            role: "root",
        };
        let ops = p.ops(&CI, &[], &releases);
        assert!(ops.contains(Op::Sign) && ops.contains(Op::List) && !ops.contains(Op::Delete));
        let ops = p.ops(&CI, &[], &root);
        assert!(!ops.contains(Op::Sign) && ops.contains(Op::Public));
        assert!(p.ops(&OTHER, &[], &releases).is_empty());
        assert!(
            Policy::from_config(&[])
                .expect("empty")
                .ops(&CI, &[], &root)
                .is_empty()
        );
    }

    #[test]
    fn key_id_selectors_match_only_that_key() {
        let sel = KeySelectorConfig {
            key_id: Some("AA".into()),
            gun: None,
            role: None,
        };
        let p =
            Policy::from_config(&[rule("one", &[1000], &[], sel, &[Op::Sign])]).expect("policy");
        assert!(
            p.ops(
                &CI,
                &[],
                &KeyView {
                    key_id: "aa",
                    gun: "",
                    role: "root"
                }
            )
            .contains(Op::Sign)
        );
        assert!(
            p.ops(
                &CI,
                &[],
                &KeyView {
                    key_id: "ab",
                    gun: "",
                    role: "root"
                }
            )
            .is_empty()
        );
        // A key that does not exist yet (generate) never matches a key id selector.
        assert!(
            p.ops(
                &CI,
                &[],
                &KeyView {
                    key_id: "",
                    gun: "",
                    role: "root"
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn unlock_needs_the_permission_and_the_token() {
        let mut r = rule("ceremony", &[1000], &[], globs("*", "root"), &[Op::Unlock]);
        r.tokens = vec!["offline-*".into()];
        let p = Policy::from_config(&[r]).expect("policy");
        assert!(p.may_unlock(&CI, &[], "offline-root"));
        assert!(!p.may_unlock(&CI, &[], "hsm"));
        assert!(!p.may_unlock(&OTHER, &[], "offline-root"));
        let mut r = rule("signers", &[1000], &[], globs("*", "*"), &[Op::Sign]);
        r.tokens = vec!["*".into()];
        assert!(
            !Policy::from_config(&[r])
                .expect("policy")
                .may_unlock(&CI, &[], "offline-root")
        );
    }

    #[test]
    fn requirements_combine_and_name_what_is_unmet() {
        let req = |name: &str, role: &str, attested, touch| RequirementConfig {
            name: name.into(),
            role: Some(role.into()),
            gun: None,
            attested,
            touch,
        };
        let p = Policy::from_config(&[])
            .expect("policy")
            .require(&[
                req("attested-roots", "root", true, None),
                req("touch-roots", "ro*", false, Some(TouchSetting::Always)),
                req(
                    "cached-targets",
                    "targets",
                    false,
                    Some(TouchSetting::Cached),
                ),
            ])
            .expect("requirements");
        let root = p.needs("example.com/app", "root");
        assert!(root.attested && root.touch == Some(TouchPolicy::Always));
        assert_eq!(root.rules, vec!["attested-roots", "touch-roots"]);
        assert!(!p.needs("x", "snapshot").any());
        let good = KeyFacts {
            attested: true,
            touch: Some(TouchPolicy::Always),
        };
        assert_eq!(root.unmet(&good), None);
        let unattested = KeyFacts {
            attested: false,
            ..good
        };
        assert!(
            root.unmet(&unattested)
                .expect("unmet")
                .contains("not attested")
        );
        let cached = KeyFacts {
            touch: Some(TouchPolicy::Cached),
            ..good
        };
        assert!(
            root.unmet(&cached)
                .expect("unmet")
                .contains("attested touch policy is cached, always is required")
        );
        let targets = p.needs("", "targets");
        assert_eq!(targets.unmet(&good), None);
        assert!(targets.unmet(&unattested).is_some());
    }

    #[test]
    fn unknown_users_and_bad_globs_are_config_errors() {
        let mut r = rule("x", &[], &[], globs("*", "*"), &[Op::Sign]);
        r.users = vec!["no-such-user-sigil".into()];
        assert!(
            Policy::from_config(&[r])
                .expect_err("user")
                .to_string()
                .contains("no-such-user-sigil")
        );
        let r = rule("y", &[1], &[], globs("[", "*"), &[Op::Sign]);
        assert!(Policy::from_config(&[r]).is_err());
    }

    #[test]
    fn star_stays_within_a_path_part_and_double_star_crosses() {
        let p = Policy::from_config(&[
            rule(
                "one-level",
                &[1000],
                &[],
                globs("example.com/*", "targets/*"),
                &[Op::Sign],
            ),
            rule(
                "any-depth",
                &[1001],
                &[],
                globs("example.com/**", "**"),
                &[Op::Sign],
            ),
            rule("anything", &[1002], &[], globs("*", "*"), &[Op::Sign]),
        ])
        .expect("policy");
        let key = |gun, role| KeyView {
            key_id: "aa",
            gun,
            role,
        };
        let signs = |uid: u32, k: KeyView<'_>| {
            let caller = Caller {
                uid,
                gid: uid,
                pid: None,
            };
            p.ops(&caller, &[], &k).contains(Op::Sign)
        };
        assert!(signs(1000, key("example.com/app", "targets/releases")));
        assert!(!signs(
            1000,
            key("example.com/team/app", "targets/releases")
        ));
        assert!(!signs(
            1000,
            key("example.com/app", "targets/releases/nested")
        ));
        assert!(!signs(1000, key("example.com/app", "targets")));
        assert!(signs(
            1001,
            key("example.com/team/app", "targets/releases/nested")
        ));
        assert!(!signs(1001, key("example.org/app", "root")));
        // A lone `*` is any value, `/` and empty included.
        assert!(signs(1002, key("example.com/team/app", "targets/releases")));
        assert!(signs(1002, key("", "root")));
    }

    #[tokio::test]
    async fn groups_are_cached_per_uid_and_gid_so_a_setgid_group_does_not_leak() {
        // As getgrouplist does, the lookup includes the gid it is given.
        let lookups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&lookups);
        let cache = GroupCache::with_resolver(Arc::new(move |_uid, gid| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            vec![gid, 100]
        }));
        let p = Policy::from_config(&[rule(
            "wrapper-group",
            &[],
            &[2000],
            globs("*", "*"),
            &[Op::Sign],
        )])
        .expect("policy");
        assert!(p.names_groups());
        let key = KeyView {
            key_id: "aa",
            gun: "example.com/app",
            role: "targets",
        };
        // The user's process runs a setgid-2000 wrapper: that process may sign.
        let wrapped = Caller {
            uid: 1000,
            gid: 2000,
            pid: Some(1),
        };
        let groups = cache.groups(&wrapped).await;
        assert!(p.ops(&wrapped, &groups, &key).contains(Op::Sign));
        // The same user's other processes (gid 1000) may not, within the cache's lifetime.
        let plain = Caller {
            uid: 1000,
            gid: 1000,
            pid: Some(2),
        };
        let groups = cache.groups(&plain).await;
        assert!(!groups.contains(&2000), "{groups:?}");
        assert!(p.ops(&plain, &groups, &key).is_empty());
        // Hits do not look up again.
        cache.groups(&plain).await;
        cache.groups(&wrapped).await;
        assert_eq!(lookups.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// A directory service that hangs for one caller does not hold up the others: the lookup
    /// runs on the blocking pool, and the runtime's one thread keeps serving.
    #[tokio::test(flavor = "current_thread")]
    async fn a_hanging_group_lookup_does_not_stall_other_callers() {
        let (release, hang) = std::sync::mpsc::channel::<()>();
        let hang = Arc::new(Mutex::new(hang));
        let cache = Arc::new(GroupCache::with_resolver(Arc::new(move |uid, gid| {
            if uid == 1 {
                let _ = hang.lock().map(|rx| rx.recv());
            }
            vec![gid]
        })));
        let slow = Caller {
            uid: 1,
            gid: 1,
            pid: None,
        };
        let stuck = tokio::spawn({
            let cache = Arc::clone(&cache);
            async move { cache.groups(&slow).await }
        });
        tokio::task::yield_now().await;
        let quick = Caller {
            uid: 2,
            gid: 2,
            pid: None,
        };
        let answered = tokio::time::timeout(Duration::from_secs(5), cache.groups(&quick)).await;
        assert_eq!(answered.expect("not stalled").as_ref(), &[2]);
        assert!(!stuck.is_finished());
        release.send(()).expect("release");
        assert_eq!(stuck.await.expect("join").as_ref(), &[1]);
    }
}
