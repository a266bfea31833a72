//! Moving a Notary trusted collection to a TUF 1.0 repository (`sigil tuf import-notary`):
//! the same targets (names, lengths, every hash, custom data), the same delegations with the
//! same keys, thresholds and the targets they may sign, and the same root and targets keys.
//! Only a [`VerifiedCollection`] is read, so nothing the verified walk refused is carried over.
//!
//! Two things have no one-to-one form in TUF 1.0 and are mapped:
//! - role names: Notary's `targets/x/y` becomes `x.y` ([`tuf1_role_name`]). Notary allows only
//!   letters, digits, `-`, `_` and `/` in them, so the `.` cannot clash;
//! - paths: Notary's are prefixes, TUF 1.0's are patterns matched segment by segment
//!   (python-tuf's `*` does not cross a `/`). "Everything" (`""`) becomes the sixteen one-digit
//!   `path_hash_prefixes`, which cover every path exactly; another prefix becomes one pattern per
//!   depth ([`prefix_patterns`]), down to [`PREFIX_DEPTH`] segments or the deepest target of the
//!   collection, whichever is deeper. The rule mapped is each role's *effective* rule (Notary
//!   keeps only the child paths under a parent path), so the TUF 1.0 walk, which intersects
//!   the rules on the way down, allows what Notary allowed.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{Delegation, InitKeys, PathRule, Repository, Settings, check_threshold};
use crate::error::{Error, Result};
use crate::key::PublicKey;
use crate::schema::RoleType;
use crate::schema::targets::PathRule as NotaryRule;
use crate::schema::tuf1::{HexBytes, TargetFile};
use crate::verify::VerifiedCollection;

/// Target names are covered by prefix patterns down to this many `/`-separated segments (more
/// when a target of the collection is deeper).
pub const PREFIX_DEPTH: usize = 8;

/// The keys of one role as the Notary collection lists them.
#[derive(Debug, Clone)]
pub struct ImportedKeys {
    /// Notary key id (for x509 root keys: the certificate's id) and the public key inside.
    pub keys: Vec<(String, PublicKey)>,
    /// How many must sign.
    pub threshold: u64,
}

impl ImportedKeys {
    /// The public keys.
    pub fn publics(&self) -> Vec<PublicKey> {
        self.keys.iter().map(|(_, k)| k.clone()).collect()
    }
}

/// One delegation to recreate.
#[derive(Debug, Clone)]
pub struct ImportedRole {
    /// Its Notary name (`targets/releases`).
    pub notary_name: String,
    /// Its Notary keys and threshold.
    pub keys: ImportedKeys,
    /// The TUF 1.0 delegation (name `releases`, mapped paths).
    pub delegation: Delegation,
    /// Its targets; `None` when the verified walk skipped the role (expired, under-signed):
    /// the delegation is kept, its unverified content is not.
    pub targets: Option<BTreeMap<String, TargetFile>>,
}

/// Everything a TUF 1.0 repository needs from a verified Notary collection.
#[derive(Debug, Clone)]
pub struct NotaryImport {
    /// The collection's GUN.
    pub gun: String,
    /// Root keys (the public keys inside the root certificates) and threshold.
    pub root: ImportedKeys,
    /// Targets keys and threshold.
    pub targets_keys: ImportedKeys,
    /// Targets of the top-level targets role.
    pub targets: BTreeMap<String, TargetFile>,
    /// Delegations, each after its parent.
    pub roles: Vec<ImportedRole>,
    /// What was left out or changed on the way, for the user.
    pub notes: Vec<String>,
}

/// The TUF 1.0 name of a Notary delegation: `targets/x/y` → `x.y`. A name that would be a
/// top-level role (`targets/root`) or no plain file name is refused.
pub fn tuf1_role_name(notary: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidRoleName {
        role: notary.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = notary
        .strip_prefix("targets/")
        .ok_or_else(|| bad("not a Notary delegation (targets/...)"))?;
    let name = rest.replace('/', ".");
    if name.parse::<RoleType>().is_ok() {
        return Err(bad(&format!(
            "would become {name:?}, a top-level TUF 1.0 role; rename the delegation in Notary first"
        )));
    }
    super::layout::check_role_file_name(&name)?;
    Ok(name)
}

/// Patterns covering the target names that start with `prefix` and have at most `depth`
/// segments (`releases/` → `releases/*`, `releases/*/*`, ...; `rel` → `rel*`, `rel*/*`, ...).
/// `*`, `?` and `[` in the prefix are escaped as `[*]`, `[?]`, `[[]`.
pub fn prefix_patterns(prefix: &str, depth: usize) -> Vec<String> {
    let escaped: Vec<String> = prefix
        .split('/')
        .map(|segment| {
            segment
                .chars()
                .map(|c| match c {
                    '*' | '?' | '[' => format!("[{c}]"),
                    c => c.to_string(),
                })
                .collect()
        })
        .collect();
    let own = escaped.len();
    let mut base = escaped.join("/");
    base.push('*');
    (own..=depth.max(own))
        .map(|d| {
            let mut pattern = base.clone();
            for _ in own..d {
                pattern.push_str("/*");
            }
            pattern
        })
        .collect()
}

/// The TUF 1.0 rule for a Notary role's effective rule; `None` when it allows nothing.
fn map_rule(role: &str, rule: &NotaryRule, depth: usize) -> Result<Option<PathRule>> {
    if rule.paths.iter().any(String::is_empty) {
        let all = (0..16u8).map(|d| format!("{d:x}")).collect();
        return Ok(Some(PathRule::HashPrefixes(all)));
    }
    match (rule.paths.is_empty(), rule.hash_prefixes.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Ok(Some(PathRule::Paths(
            rule.paths
                .iter()
                .flat_map(|p| prefix_patterns(p, depth))
                .collect(),
        ))),
        (true, false) => Ok(Some(PathRule::HashPrefixes(
            rule.hash_prefixes
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
        ))),
        (false, false) => Err(Error::InvalidRoleName {
            role: role.to_owned(),
            reason: "delegates both paths and path_hash_prefixes; a TUF 1.0 delegation has \
                     one or the other"
                .into(),
        }),
    }
}

fn keys_of<'a>(
    role: &str,
    keys: impl IntoIterator<Item = (&'a str, &'a crate::TufKey)>,
    threshold: u64,
) -> Result<ImportedKeys> {
    let keys = keys
        .into_iter()
        .map(|(id, k)| Ok((id.to_owned(), k.to_public_key()?)))
        .collect::<Result<Vec<_>>>()?;
    check_threshold(role, keys.len(), threshold)?;
    Ok(ImportedKeys { keys, threshold })
}

fn convert_targets(
    role: &str,
    rule: &NotaryRule,
    targets: &BTreeMap<String, crate::FileMeta>,
    notes: &mut Vec<String>,
) -> Result<BTreeMap<String, TargetFile>> {
    let mut out = BTreeMap::new();
    let mut outside = 0usize;
    for (name, meta) in targets {
        if !rule.allows(name) {
            outside += 1;
            continue;
        }
        if !crate::schema::tuf1::is_safe_target_path(name) {
            return Err(Error::InvalidTargetName {
                name: name.clone(),
                reason: format!(
                    "listed in {role}, but not a relative path of plain segments, which TUF 1.0 \
                     repositories need (no empty, '.' or '..' segment, '\\' or control character)"
                ),
            });
        }
        out.insert(
            name.clone(),
            TargetFile {
                length: meta.length,
                hashes: meta
                    .hashes
                    .iter()
                    .map(|(alg, h)| (alg.clone(), HexBytes(h.0.clone())))
                    .collect(),
                custom: meta.custom.clone(),
                extra: meta.extra.clone(),
            },
        );
    }
    if outside > 0 {
        notes.push(format!(
            "{role}: {outside} target(s) outside its delegated paths left out (Notary clients \
             ignore them too)"
        ));
    }
    Ok(out)
}

impl NotaryImport {
    /// Reads what a TUF 1.0 repository needs from `collection`. Fails, naming the role or
    /// target, on what TUF 1.0 cannot express.
    pub fn from_collection(collection: &VerifiedCollection) -> Result<Self> {
        let root = collection.root().body();
        let role_threshold = |role: RoleType| root.role(role).map_or(0, |r| r.threshold);
        let root_keys = keys_of(
            "root",
            root.role_keys(RoleType::Root),
            role_threshold(RoleType::Root),
        )?;
        let targets_keys = keys_of(
            "targets",
            root.role_keys(RoleType::Targets),
            role_threshold(RoleType::Targets),
        )?;
        let mut notes = Vec::new();
        let all = NotaryRule::everything();
        let depth = std::iter::once(collection.targets())
            .chain(collection.delegations().values())
            .flat_map(|m| m.body().targets.keys())
            .map(|name| name.split('/').count())
            .max()
            .unwrap_or(0)
            .max(PREFIX_DEPTH);
        let targets = convert_targets(
            "targets",
            &all,
            &collection.targets().body().targets,
            &mut notes,
        )?;
        let mut roles = Vec::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        names.insert("targets".into(), "targets".into());
        for parent in collection.walk("targets") {
            let (Some(meta), Some(parent_tuf)) =
                (collection.targets_role(parent), names.get(parent).cloned())
            else {
                continue;
            };
            let parent_rule = collection.path_rule(parent).cloned().unwrap_or_default();
            let Some(delegations) = meta.body().delegations.as_ref() else {
                continue;
            };
            for entry in &delegations.roles {
                let rule = collection
                    .path_rule(&entry.name)
                    .cloned()
                    .unwrap_or_else(|| parent_rule.restrict(entry));
                let Some(tuf_rule) = map_rule(&entry.name, &rule, depth)? else {
                    notes.push(format!(
                        "{}: delegated no paths (it can sign nothing in Notary), left out",
                        entry.name
                    ));
                    continue;
                };
                let name = tuf1_role_name(&entry.name)?;
                let keys = keys_of(&entry.name, delegations.role_keys(entry), entry.threshold)?;
                let content = match collection.delegation(&entry.name) {
                    Some(m) => Some(convert_targets(
                        &entry.name,
                        &rule,
                        &m.body().targets,
                        &mut notes,
                    )?),
                    None => {
                        let why = collection
                            .skipped()
                            .iter()
                            .find(|s| s.role == entry.name)
                            .map_or("not published", |s| s.reason.as_str());
                        notes.push(format!(
                            "{}: not verified ({why}); delegated with its keys and paths, \
                             without targets",
                            entry.name
                        ));
                        None
                    }
                };
                names.insert(entry.name.clone(), name.clone());
                roles.push(ImportedRole {
                    notary_name: entry.name.clone(),
                    delegation: Delegation {
                        name,
                        parent: parent_tuf.clone(),
                        keys: keys.publics(),
                        threshold: keys.threshold,
                        rule: tuf_rule,
                        terminating: entry.terminating.unwrap_or(false),
                    },
                    keys,
                    targets: content,
                });
            }
        }
        Ok(Self {
            gun: collection.gun().to_owned(),
            root: root_keys,
            targets_keys,
            targets,
            roles,
            notes,
        })
    }

    /// Every role whose keys sign it at import (root, targets, each delegation), by Notary name.
    pub fn signing_roles(&self) -> Vec<(&str, &ImportedKeys)> {
        let mut out = vec![("root", &self.root), ("targets", &self.targets_keys)];
        out.extend(self.roles.iter().map(|r| (r.notary_name.as_str(), &r.keys)));
        out
    }

    /// How many targets are imported, in all roles.
    pub fn target_count(&self) -> usize {
        self.targets.len()
            + self
                .roles
                .iter()
                .map(|r| r.targets.as_ref().map_or(0, BTreeMap::len))
                .sum::<usize>()
    }
}

impl Repository {
    /// Creates a repository in `dir` (which must hold none) from `import`: root with the
    /// collection's root and targets keys (and thresholds) and the given snapshot and
    /// timestamp keys, signed by `root_signers`; the delegations and every target staged.
    /// Publish it next. Nothing is left in `dir` when this fails.
    pub async fn import_notary(
        dir: impl AsRef<std::path::Path>,
        import: &NotaryImport,
        snapshot: PublicKey,
        timestamp: PublicKey,
        root_signers: &[&dyn crate::Signer],
        now: SystemTime,
    ) -> Result<Self> {
        let keys = InitKeys {
            root: import.root.publics(),
            root_threshold: import.root.threshold,
            targets: import.targets_keys.publics(),
            snapshot: vec![snapshot],
            timestamp: vec![timestamp],
        };
        let mut repo = Self::init(dir, &keys, Settings::default(), &[], now).await?;
        let result = repo.stage_import(import, root_signers, now).await;
        if let Err(e) = result {
            let layout = repo.layout();
            let _ = std::fs::remove_dir_all(layout.state_dir());
            let _ = std::fs::remove_dir(layout.targets_dir());
            return Err(e);
        }
        Ok(repo)
    }

    async fn stage_import(
        &mut self,
        import: &NotaryImport,
        root_signers: &[&dyn crate::Signer],
        now: SystemTime,
    ) -> Result<()> {
        if let Some(root) = self.staged.root.as_mut()
            && let Some(targets) = root.signed.roles.get_mut(RoleType::Targets.as_str())
        {
            targets.threshold = import.targets_keys.threshold;
            root.signed.validate()?;
        }
        if !root_signers.is_empty() {
            self.sign_staged("root", root_signers).await?;
        }
        for role in &import.roles {
            self.delegate(&role.delegation, now)?;
        }
        self.stage_imported_targets("targets", &import.targets, now)?;
        for role in &import.roles {
            if let Some(targets) = &role.targets {
                self.stage_imported_targets(&role.delegation.name, targets, now)?;
            }
        }
        self.save()
    }

    /// Stages `targets` in `role`, each name checked against the TUF 1.0 delegations on the
    /// way down (so the mapped paths are proven to cover what Notary allowed).
    fn stage_imported_targets(
        &mut self,
        role: &str,
        targets: &BTreeMap<String, TargetFile>,
        now: SystemTime,
    ) -> Result<()> {
        for name in targets.keys() {
            self.check_target_name(role, name)?;
        }
        let body = self.stage_targets(role, now)?;
        body.targets
            .extend(targets.iter().map(|(n, t)| (n.clone(), t.clone())));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tuf1::path_matches;

    #[test]
    fn notary_delegation_names_become_plain_file_names() {
        assert_eq!(tuf1_role_name("targets/releases").expect("ok"), "releases");
        assert_eq!(tuf1_role_name("targets/a/b").expect("ok"), "a.b");
        assert!(tuf1_role_name("targets/root").is_err());
        assert!(tuf1_role_name("targets/snapshot").is_err());
        assert!(tuf1_role_name("releases").is_err());
    }

    #[test]
    fn prefix_patterns_cover_exactly_the_prefix_down_to_the_depth() {
        let p = prefix_patterns("releases/", 3);
        assert_eq!(p, vec!["releases/*", "releases/*/*"]);
        let covers = |t: &str| p.iter().any(|p| path_matches(p, t));
        assert!(covers("releases/v1.tar"));
        assert!(covers("releases/x/v1.tar"));
        assert!(!covers("releases"));
        assert!(!covers("releasesX/v1"));
        assert!(!covers("other/v1"));
        let p = prefix_patterns("rel", 2);
        assert_eq!(p, vec!["rel*", "rel*/*"]);
        let covers = |t: &str| p.iter().any(|p| path_matches(p, t));
        assert!(covers("rel"));
        assert!(covers("releases"));
        assert!(covers("release/v1"));
        assert!(!covers("re"));
        assert!(!covers("xrel"));
        // Glob characters in a prefix are literal, as in Notary.
        let p = prefix_patterns("a*b?[c/", 2);
        assert_eq!(p, vec!["a[*]b[?][[]c/*"]);
        assert!(path_matches(&p[0], "a*b?[c/x"));
        assert!(!path_matches(&p[0], "aXbY[c/x"));
    }

    #[test]
    fn everything_maps_to_all_hash_prefixes_and_nothing_to_none() {
        let all = map_rule("r", &NotaryRule::everything(), 8).expect("ok");
        let Some(PathRule::HashPrefixes(h)) = all else {
            panic!("{all:?}")
        };
        assert_eq!(h.len(), 16);
        let none = NotaryRule {
            paths: vec![],
            hash_prefixes: vec![],
        };
        assert!(map_rule("r", &none, 8).expect("ok").is_none());
        let both = NotaryRule {
            paths: vec!["a/".into()],
            hash_prefixes: vec!["0".into()],
        };
        assert!(map_rule("r", &both, 8).is_err());
        let hashed = NotaryRule {
            paths: vec![],
            hash_prefixes: vec!["AB".into()],
        };
        assert_eq!(
            map_rule("r", &hashed, 8).expect("ok"),
            Some(PathRule::HashPrefixes(vec!["ab".into()]))
        );
    }

    #[test]
    fn unsafe_names_are_refused_and_names_outside_the_rule_left_out_with_a_note() {
        let meta = crate::FileMeta::from_bytes(b"x");
        let rule = NotaryRule {
            paths: vec!["releases/".into()],
            hash_prefixes: vec![],
        };
        let mut notes = Vec::new();
        let mut targets = BTreeMap::new();
        targets.insert("releases/v1".to_owned(), meta.clone());
        targets.insert("nightly/v1".to_owned(), meta.clone());
        let out = convert_targets("targets/releases", &rule, &targets, &mut notes).expect("ok");
        assert_eq!(out.keys().collect::<Vec<_>>(), ["releases/v1"]);
        assert_eq!(
            hex::encode(&out["releases/v1"].hashes["sha512"].0),
            hex::encode(&meta.hashes["sha512"].0)
        );
        assert!(notes[0].contains("1 target(s) outside"), "{notes:?}");
        targets.insert("releases/../../etc/passwd".to_owned(), meta);
        let err = convert_targets("targets/releases", &rule, &targets, &mut notes)
            .expect_err("unsafe name");
        assert!(
            matches!(err, Error::InvalidTargetName { ref name, .. } if name.contains("..")),
            "{err}"
        );
    }
}
