//! Who may do what with which key, decided from the caller's peer credentials. Deny by
//! default: a caller matched by no rule can do nothing, and a key no rule grants it is
//! invisible to it. All rules that match a caller are combined (union).
//!
//! Globs over GUNs, roles and backend names: `*` matches within one `/`-separated part, `**`
//! across parts, and a pattern that is just `*` means any value at all (as `**`). So
//! `example.com/*` grants `example.com/app` but not `example.com/team/app`.

use std::collections::HashSet;

use globset::{GlobBuilder, GlobMatcher};
use nix::unistd::{Group, User};

use crate::backend::attestation::TouchPolicy;
use crate::config::{Config, Error, Op, PolicyConfig, RequirementConfig, TouchSetting};

mod groups;
#[cfg(test)]
mod tests;

pub use groups::{GroupCache, GroupResolver};

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
