//! Threshold checks over a role's signatures, bounded against hostile files: a file may carry
//! any number of signatures, so each key id is looked at once, each distinct key verified at
//! most once, the count stops at the threshold, and a file with more than
//! [`MAX_SIGNATURES`] signatures is refused before any is verified.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::key::PublicKey;
use crate::schema::{Role, Signature, Signed, TufKey};

/// Most signatures a role file may carry. Notary roles have a handful of keys; this leaves
/// room for any real collection while keeping a hostile file's cost (parsing aside) to one
/// pass over a short list.
pub const MAX_SIGNATURES: usize = 1024;

/// Most refusal reasons kept for an error message: one hostile file must not produce a
/// megabyte of error text.
const MAX_REASONS: usize = 8;

/// Why a signature did not count, collected for the error message (at most [`MAX_REASONS`],
/// then a count of the rest).
#[derive(Default)]
struct Reasons {
    kept: Vec<String>,
    more: usize,
}

impl Reasons {
    fn push(&mut self, reason: String) {
        if self.kept.len() < MAX_REASONS {
            self.kept.push(reason);
        } else {
            self.more += 1;
        }
    }

    fn join(self) -> String {
        let mut text = self.kept.join("; ");
        if self.more > 0 {
            text.push_str(&format!("; and {} more", self.more));
        }
        text
    }
}

/// Counts distinct keys with a valid signature, up to `threshold`. `key_ok` may refuse a key
/// (a root certificate that is not valid for the GUN, say). Only the first signature of each
/// key id is looked at, and a key listed under two ids (bare and as a certificate) counts
/// once and is verified once. Returns the count and why the others did not count.
pub(super) fn count_valid(
    message: &[u8],
    signatures: &[Signature],
    keys: &[(&str, &TufKey)],
    threshold: u64,
    key_ok: &dyn Fn(&TufKey) -> std::result::Result<(), String>,
) -> (usize, String) {
    let mut reasons = Reasons::default();
    if signatures.is_empty() {
        reasons.push("no signatures".to_owned());
    }
    if signatures.len() > MAX_SIGNATURES {
        reasons.push(format!(
            "{} signatures, more than the {MAX_SIGNATURES} sigil accepts on one file",
            signatures.len()
        ));
        return (0, reasons.join());
    }
    let by_id: BTreeMap<&str, &TufKey> = keys.iter().copied().collect();
    let mut seen_ids = BTreeSet::new();
    let mut valid: Vec<PublicKey> = Vec::new();
    for sig in signatures {
        if valid.len() as u64 >= threshold.max(1) {
            break;
        }
        let short = sig.keyid.get(..8).unwrap_or(&sig.keyid);
        if !seen_ids.insert(sig.keyid.as_str()) {
            reasons.push(format!("key {short}… signed more than once (counted once)"));
            continue;
        }
        let Some(key) = by_id.get(sig.keyid.as_str()) else {
            reasons.push(format!(
                "signature by {short}… is not from a key of this role"
            ));
            continue;
        };
        let public = match key.to_public_key() {
            Ok(public) => public,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        if valid.contains(&public) {
            reasons.push(format!(
                "key {short}… is a key already counted under another id"
            ));
            continue;
        }
        if let Err(r) = key_ok(key) {
            reasons.push(format!("key {short}…: {r}"));
            continue;
        }
        if let Err(e) = key.verify(&sig.method, message, &sig.sig) {
            reasons.push(e.to_string());
            continue;
        }
        valid.push(public);
    }
    (valid.len(), reasons.join())
}

/// Checks that `signed` carries `threshold` valid signatures from `keys`.
pub(super) fn check_threshold<T: Role>(
    role: &str,
    signed: &Signed<T>,
    keys: &[(&str, &TufKey)],
    threshold: u64,
    key_ok: &dyn Fn(&TufKey) -> std::result::Result<(), String>,
) -> Result<()> {
    let message = signed.canonical_signed()?;
    let (valid, reason) = count_valid(&message, &signed.signatures, keys, threshold, key_ok);
    if threshold >= 1 && valid as u64 >= threshold {
        return Ok(());
    }
    Err(Error::ThresholdNotMet {
        role: role.to_owned(),
        version: signed.signed.version(),
        valid,
        threshold,
        reason,
    })
}

/// Checks that `signed` carries valid signatures from at least `threshold` distinct keys among
/// `keys` (TUF id, key). `role` names it in the error.
pub fn verify_signatures<T: Role>(
    role: &str,
    signed: &Signed<T>,
    keys: &[(&str, &TufKey)],
    threshold: u64,
) -> Result<()> {
    check_threshold(role, signed, keys, threshold, &any_key)
}

/// The rule for keys other than root's: any key of the role.
pub(super) fn any_key(_: &TufKey) -> std::result::Result<(), String> {
    Ok(())
}

/// The rule for root keys: certificates valid as root leaves for `gun` (at `now` if given).
pub(super) fn root_key_ok(
    gun: &str,
    now: Option<SystemTime>,
) -> impl Fn(&TufKey) -> std::result::Result<(), String> + '_ {
    move |key: &TufKey| match key.certificate() {
        Ok(Some(cert)) => cert.check_root_leaf(gun, now),
        Ok(None) => Err(format!(
            "root keys must be certificates (ecdsa-x509 or rsa-x509), not {}",
            key.keytype
        )),
        Err(e) => Err(e.to_string()),
    }
}
