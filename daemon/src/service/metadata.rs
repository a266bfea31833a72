//! `sign-metadata` (DESIGN §9): before a key signs for a caller who may only sign metadata —
//! and before the notary-signer endpoint signs for notary-server — sigild reads what it is
//! asked to sign ([`sigil_tuf::inspect`], the model the client and editor use) and refuses,
//! with the reason, metadata that
//! - is not the canonical `signed` object of Notary or TUF 1.0 metadata;
//! - is of another type than the key's role (a root key signs root; `targets` and delegation
//!   keys such as `targets/releases` sign targets);
//! - is not above the highest version signed with the key (one GUN, one role), unless it is
//!   the same bytes again ([`crate::floors`]);
//! - expires beyond the bound of the first `[[metadata]]` rule that matches the key (else the
//!   Notary defaults: root 10 years, targets and snapshot 3, timestamp 14 days), or has
//!   already expired;
//! - lists a target outside the rule's `paths`.
//!
//! Metadata does not name its repository, so the GUN is the key's: a key without a GUN cannot
//! sign metadata this way (its floors would be shared by every repository it serves).
//!
//! A root key may also sign its own Notary root certificate (what `sigil init` and a root
//! rotation make): a self-issued TBSCertificate for exactly this key, `CN` = the key's GUN,
//! not a CA, valid no longer than the root bound.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use globset::GlobMatcher;
use sha2::{Digest as _, Sha256};
use sigil_tuf::RoleType;
use sigil_tuf::inspect::{Inspected, Signable, inspect_signable};
use sigil_tuf::x509::Certificate;

use super::Error;
use crate::audit::MetadataFacts;
use crate::config::Config;
use crate::floors::{Floors, Refusal};
use crate::keyring::KeyEntry;
use crate::state_dir::StateDir;

const DAY: u64 = 86_400;

/// The compiled `[[metadata]]` rules and the version floors.
#[derive(Debug, Default)]
pub struct MetadataGuard {
    rules: RwLock<Arc<Vec<Rule>>>,
    floors: Option<Arc<Floors>>,
    /// Held for the life of the service: the state dir's lock.
    _state_dir: Option<StateDir>,
}

#[derive(Debug)]
struct Rule {
    role: GlobMatcher,
    gun: GlobMatcher,
    max_expires: Duration,
    paths: Option<Vec<GlobMatcher>>,
}

impl MetadataGuard {
    /// Compiles the configuration's rules; `state_dir` (locked) holds the floors.
    pub fn new(config: &Config, state_dir: Option<StateDir>) -> Result<Self, String> {
        let rules = RwLock::new(Arc::new(compile(config)?));
        let floors = match &state_dir {
            Some(dir) => Some(Arc::new(Floors::open(dir.path())?)),
            None => None,
        };
        Ok(Self {
            rules,
            floors,
            _state_dir: state_dir,
        })
    }

    /// SIGHUP: the `[[metadata]]` rules of a reloaded configuration (an invalid one keeps the
    /// rules in force).
    pub fn replace_rules(&self, config: &Config) -> Result<(), String> {
        let rules = Arc::new(compile(config)?);
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        Ok(())
    }

    fn rules(&self) -> Arc<Vec<Rule>> {
        Arc::clone(&self.rules.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Checks `message` for `key` as described above and raises the version floor; `seen`
    /// receives what the metadata says, for the audit line, as soon as it is known. Returns
    /// the message's SHA-256 when the floor needed it, so the sign path does not hash the
    /// same bytes again.
    pub(super) async fn admit(
        &self,
        key: &KeyEntry,
        message: &[u8],
        seen: &mut Option<MetadataFacts>,
    ) -> Result<Option<[u8; 32]>, Error> {
        let facts = match inspect_signable(message).map_err(|e| denied(e.to_string()))? {
            Signable::Metadata(facts) => facts,
            Signable::RootCertificate(cert) => {
                *seen = Some(certificate_facts(&cert));
                return self.admit_root_certificate(key, &cert).map(|()| None);
            }
        };
        *seen = Some(audit_facts(&facts));
        let (gun, role) = (&key.meta.gun, &key.meta.role);
        let fits = match role.as_str() {
            "root" => RoleType::Root,
            "snapshot" => RoleType::Snapshot,
            "timestamp" => RoleType::Timestamp,
            _ => RoleType::Targets,
        };
        if facts.kind != fits {
            return Err(denied(format!(
                "key {} is a {role} key; it signs {fits} metadata, not {}",
                key.key_id, facts.kind
            )));
        }
        need_gun(key)?;
        let rules = self.rules();
        let rule = first_rule(&rules, key);
        let what = format!("{} v{}", facts.kind, facts.version);
        check_expiry(
            rule,
            key,
            facts.kind,
            &what,
            facts.expires.to_system_time(),
            facts.expires.as_str(),
        )?;
        if let Some(paths) = rule.and_then(|r| r.paths.as_ref())
            && let Some(outside) = facts
                .target_paths
                .iter()
                .find(|t| !paths.iter().any(|p| p.is_match(t.as_str())))
        {
            return Err(denied(format!(
                "target {:?} is outside the paths allowed for {gun} {role}",
                super::validate::shown(outside)
            )));
        }
        let floors = self.floors.clone().ok_or_else(|| {
            denied("sigild has no [server] state_dir to keep version floors in".into())
        })?;
        let sha256: [u8; 32] = Sha256::digest(message).into();
        // The same bytes again, or a refusal, need no disk: only raising the floor (written
        // and synced before the token signs) leaves the I/O thread.
        let admitted = match floors.check(&key.key_id, gun, role, facts.version, &sha256) {
            Some(verdict) => verdict,
            None => {
                let (key_id, gun, role, version) =
                    (key.key_id.clone(), gun.clone(), role.clone(), facts.version);
                tokio::task::spawn_blocking(move || {
                    floors.admit(&key_id, &gun, &role, version, sha256)
                })
                .await
                .map_err(|e| Error::Internal(format!("version floor task: {e}")))?
            }
        };
        admitted
            .map(|()| Some(sha256))
            .map_err(|refusal| match refusal {
                Refusal::Unwritable(e) => Error::Unavailable(format!(
                    "cannot record the version floor, nothing signed: {e}"
                )),
                other => denied(other.to_string()),
            })
    }
}

/// The first `[[metadata]]` rule for the key's role and GUN.
fn first_rule<'r>(rules: &'r [Rule], key: &KeyEntry) -> Option<&'r Rule> {
    rules
        .iter()
        .find(|r| r.role.is_match(&key.meta.role) && r.gun.is_match(&key.meta.gun))
}

/// Refuses an expiry in the past or beyond the bound `rule` (or the default) sets for the key.
fn check_expiry(
    rule: Option<&Rule>,
    key: &KeyEntry,
    kind: RoleType,
    what: &str,
    expires: SystemTime,
    shown_expires: &str,
) -> Result<(), Error> {
    let bound = rule.map_or_else(|| default_bound(kind), |r| r.max_expires);
    let now = SystemTime::now();
    if expires <= now {
        return Err(denied(format!(
            "{what} has already expired ({shown_expires})"
        )));
    }
    if expires.duration_since(now).unwrap_or_default() > bound {
        return Err(denied(format!(
            "{what} expires {shown_expires}, more than {} ahead (the bound for {} {}{})",
            human(bound),
            key.meta.gun,
            key.meta.role,
            if rule.is_some() {
                " in [[metadata]]"
            } else {
                ", by default"
            }
        )));
    }
    Ok(())
}

impl MetadataGuard {
    /// A root key signing its own Notary root certificate (see the module docs).
    fn admit_root_certificate(&self, key: &KeyEntry, cert: &Certificate) -> Result<(), Error> {
        if key.meta.role != "root" {
            return Err(denied(format!(
                "key {} is a {} key; only a root key signs a certificate (its own)",
                key.key_id, key.meta.role
            )));
        }
        need_gun(key)?;
        if !cert.is_self_issued() || cert.public_key().ok().as_ref() != Some(&key.public) {
            return Err(denied(
                "the certificate is not a self-issued certificate of this key".into(),
            ));
        }
        cert.check_root_leaf(&key.meta.gun, None)
            .map_err(|why| denied(format!("not a root certificate for this GUN: {why}")))?;
        check_expiry(
            first_rule(&self.rules(), key),
            key,
            RoleType::Root,
            "the root certificate",
            cert.not_after(),
            &rfc3339(cert.not_after()),
        )
    }
}

fn denied(why: String) -> Error {
    Error::PermissionDenied(format!("sign-metadata: {why}"))
}

fn need_gun(key: &KeyEntry) -> Result<(), Error> {
    if key.meta.gun.is_empty() {
        return Err(denied(format!(
            "key {} has no GUN, and version floors are kept per GUN: use a key generated with --gun",
            key.key_id
        )));
    }
    Ok(())
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn certificate_facts(cert: &Certificate) -> MetadataFacts {
    MetadataFacts {
        dialect: "x509",
        kind: "root-certificate",
        version: 0,
        expires: rfc3339(cert.not_after()),
        targets: 0,
    }
}

/// Compiles `[[metadata]]` rules; a bad glob names the rule.
fn compile(config: &Config) -> Result<Vec<Rule>, String> {
    config
        .metadata
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let glob = |p: &str| crate::policy::glob(p, &format!("[[metadata]] #{}", i + 1));
            Ok(Rule {
                role: glob(&r.role).map_err(|e| e.to_string())?,
                gun: glob(&r.gun).map_err(|e| e.to_string())?,
                max_expires: r.max_expires.0,
                paths: r
                    .paths
                    .as_ref()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| glob(p).map_err(|e| e.to_string()))
                            .collect()
                    })
                    .transpose()?,
            })
        })
        .collect()
}

fn audit_facts(facts: &Inspected) -> MetadataFacts {
    MetadataFacts {
        dialect: facts.dialect,
        kind: facts.kind.as_str(),
        version: facts.version,
        expires: super::validate::shown(facts.expires.as_str()).into_owned(),
        targets: facts.target_paths.len(),
    }
}

/// The bound without a `[[metadata]]` rule: what the Notary client and notary-server write.
fn default_bound(kind: RoleType) -> Duration {
    Duration::from_secs(match kind {
        RoleType::Root => 3_650 * DAY,
        RoleType::Targets | RoleType::Snapshot => 1_095 * DAY,
        RoleType::Timestamp => 14 * DAY,
    })
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(DAY) {
        format!("{} days", s / DAY)
    } else {
        format!("{s} s")
    }
}
