//! TUF 1.0 metadata (the `schema::tuf1` dialect): every role type's parse, its structural
//! rules and the signature/threshold checks, against a fixed trusted repository (the one
//! python-tuf's Metadata API built, `tuf/tests/data/tuf1/`).
//!
//! The input is one metadata file, tried as every role type. Properties:
//! - nothing panics, whatever the bytes (duplicate keys, floats, huge versions, odd
//!   `spec_version`s and wrong types are errors, never panics);
//! - a file that parses re-serialises (`Signed::to_vec`) to bytes that parse to the same
//!   document, and that file is a fixed point;
//! - whatever meets a threshold (root against the trusted root's keys, the top-level roles
//!   against theirs, a delegated role against its delegation) has a signed part whose canonical
//!   form is one python-tuf genuinely signed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use sigil_tuf::schema::dialect::verify_threshold;
use sigil_tuf::schema::tuf1::{self, Tuf1};
use sigil_tuf::schema::{Metadata, RoleBody, RoleType, Signed};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuf/tests/data/tuf1")
}

/// What the harness trusts, read once from the fixtures.
struct Trusted {
    root: Metadata<tuf1::Root>,
    targets: Metadata<tuf1::Targets>,
    /// Canonical `signed` parts of every fixture file.
    genuine: HashSet<Vec<u8>>,
}

fn trusted() -> &'static Trusted {
    static TRUSTED: OnceLock<Trusted> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        let read = |name: &str| {
            std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
        };
        let mut genuine = HashSet::new();
        for name in [
            "1.root.json",
            "1.targets.json",
            "1.releases.json",
            "3.bins.json",
            "1.snapshot.json",
            "timestamp.json",
        ] {
            let value: Value = serde_json::from_slice(&read(name)).expect("fixture JSON");
            let signed = value.get("signed").expect("fixture envelope");
            genuine.insert(canonical(signed));
        }
        Trusted {
            root: Metadata::from_bytes("root", read("1.root.json")).expect("root fixture"),
            targets: Metadata::from_bytes("targets", read("1.targets.json"))
                .expect("targets fixture"),
            genuine,
        }
    })
}

/// The canonical form the dialect signs: the same function the dialect uses.
fn canonical(signed: &Value) -> Vec<u8> {
    <Tuf1 as sigil_tuf::schema::dialect::Dialect>::canonical(signed).expect("canonical form")
}

/// The harness.
pub fn tuf1(data: &[u8]) {
    let trusted = trusted();
    let r = trusted.root.body();
    let top = |t: RoleType| (r.role_keys(t), r.role(t).map_or(0, |k| k.threshold));

    if let Some(root) = parse::<tuf1::Root>("root", data) {
        let _ = root.body().validate();
        let (keys, threshold) = top(RoleType::Root);
        genuine_if_accepted(
            "root",
            root.signed(),
            verify_threshold("root", root.signed(), &keys, threshold).is_ok(),
        );
    }
    if let Some(targets) = parse::<tuf1::Targets>("targets", data) {
        let _ = targets.body().validate("targets");
        let (keys, threshold) = top(RoleType::Targets);
        genuine_if_accepted(
            "targets",
            targets.signed(),
            verify_threshold("targets", targets.signed(), &keys, threshold).is_ok(),
        );
        let t = trusted.targets.body();
        for name in ["releases", "bins"] {
            if let Some((delegated, keys)) = t.delegation(name) {
                let ok =
                    verify_threshold(name, targets.signed(), &keys, delegated.threshold).is_ok();
                genuine_if_accepted(name, targets.signed(), ok);
                for target in targets.body().targets.keys() {
                    let _ = tuf1::delegation_matches(delegated, target);
                }
            }
        }
    }
    if let Some(snapshot) = parse::<tuf1::Snapshot>("snapshot", data) {
        let _ = snapshot.body().validate();
        let (keys, threshold) = top(RoleType::Snapshot);
        genuine_if_accepted(
            "snapshot",
            snapshot.signed(),
            verify_threshold("snapshot", snapshot.signed(), &keys, threshold).is_ok(),
        );
    }
    if let Some(timestamp) = parse::<tuf1::Timestamp>("timestamp", data) {
        let _ = timestamp.body().validate();
        let (keys, threshold) = top(RoleType::Timestamp);
        genuine_if_accepted(
            "timestamp",
            timestamp.signed(),
            verify_threshold("timestamp", timestamp.signed(), &keys, threshold).is_ok(),
        );
    }
}

/// Parses `data` as `role`; whatever parses must re-serialise to a file that parses to the same
/// document and is a fixed point.
fn parse<T: RoleBody<Dialect = Tuf1> + PartialEq + std::fmt::Debug>(
    role: &str,
    data: &[u8],
) -> Option<Metadata<T>> {
    let meta = Metadata::<T>::from_bytes(role, data.to_vec()).ok()?;
    let ours = meta
        .signed()
        .to_vec()
        .expect("a parsed document serialises");
    let back = Signed::<T>::from_slice(role, &ours)
        .unwrap_or_else(|e| panic!("{role}: the file sigil writes does not parse: {e}"));
    assert_eq!(&back, meta.signed(), "{role}: re-parsed document differs");
    assert_eq!(
        back.to_vec().expect("serialise again"),
        ours,
        "{role}: the file is not a fixed point"
    );
    Some(meta)
}

fn genuine_if_accepted<T: RoleBody<Dialect = Tuf1>>(what: &str, signed: &Signed<T>, ok: bool) {
    if !ok {
        return;
    }
    let canonical = signed.canonical_signed().expect("canonical");
    assert!(
        trusted().genuine.contains(&canonical),
        "{what}: met its threshold with a signed part python-tuf never signed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The property is not vacuous: the fixtures do meet their thresholds through the same
    /// checks the harness makes, so a mutated file that still met one would be examined.
    #[test]
    fn the_fixtures_meet_their_thresholds() {
        let t = trusted();
        let r = t.root.body();
        let (keys, threshold) = (
            r.role_keys(RoleType::Root),
            r.role(RoleType::Root).map_or(0, |k| k.threshold),
        );
        verify_threshold("root", t.root.signed(), &keys, threshold).expect("root");
        let (keys, threshold) = (
            r.role_keys(RoleType::Targets),
            r.role(RoleType::Targets).map_or(0, |k| k.threshold),
        );
        verify_threshold("targets", t.targets.signed(), &keys, threshold).expect("targets");
        for file in ["1.root.json", "1.targets.json", "timestamp.json"] {
            tuf1(&std::fs::read(fixtures().join(file)).expect("fixture"));
        }
    }

    #[test]
    #[should_panic(expected = "never signed")]
    fn a_body_that_was_never_signed_is_caught() {
        let mut root = trusted().root.signed().clone();
        root.signed.version += 1;
        genuine_if_accepted("root", &root, true);
    }
}
