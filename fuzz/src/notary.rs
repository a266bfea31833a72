//! Notary metadata (the `schema::notary` dialect): every role type's parse and the
//! signature/threshold checks, against a fixed trusted collection (the real notary 0.7.0
//! fixtures in `tuf/tests/data/notary/server`, GUN `example.com/scripts`).
//!
//! The input is one metadata file; it is tried as every role type, so one corpus serves all.
//! Properties:
//! - nothing panics, whatever the bytes;
//! - a file that parses re-serialises (`Signed::to_vec`) to bytes that parse to the same
//!   document;
//! - whatever verifies (a role's threshold against the trusted root or its delegating role, a
//!   root on its own or rotated from version 1, a timestamp through the update walk) has a
//!   signed part whose canonical form is one that was genuinely signed: one of the fixtures'.
//!   Mutations may change the envelope (signature order, duplicates, JSON spelling), never
//!   what is signed.
//!
//! The TUF 1.0 dialect gets its own target beside this one (its own module, fixtures and
//! corpus directory) when it exists; the helpers here take the role parser as a type
//! parameter so they carry over.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sigil_tuf::schema::{Role, RoleType, Root, Snapshot, Targets, Timestamp, TufKey};
use sigil_tuf::verify::verify_signatures;
use sigil_tuf::{Metadata, RootTrust, Signed, Updater, cjson};

/// The fixtures' collection.
const GUN: &str = "example.com/scripts";

/// 2026-11-22T00:00:00Z: the day after the fixtures were recorded (all of them are valid).
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_305_600)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuf/tests/data/notary")
}

/// What the harness trusts, read once from the fixtures.
struct Trusted {
    /// The latest root (version 3): its keys check the top-level roles.
    root: Metadata<Root>,
    /// The first root (version 1), which rotations start from.
    first_root: Vec<u8>,
    /// targets.json: its delegations check `targets/*` roles.
    targets: Metadata<Targets>,
    /// Canonical `signed` parts of every fixture file: all that was ever genuinely signed.
    genuine: HashSet<Vec<u8>>,
}

fn trusted() -> &'static Trusted {
    static TRUSTED: OnceLock<Trusted> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        let dir = fixtures();
        let read = |rel: &str| {
            std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
        };
        let mut genuine = HashSet::new();
        collect_genuine(&dir, &mut genuine);
        Trusted {
            root: Metadata::from_bytes("root", read("server/root.json")).expect("root fixture"),
            first_root: read("server/1.root.json"),
            targets: Metadata::from_bytes("targets", read("server/targets.json"))
                .expect("targets fixture"),
            genuine,
        }
    })
}

fn collect_genuine(dir: &Path, out: &mut HashSet<Vec<u8>>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("fixture dir entry").path();
        if path.is_dir() {
            collect_genuine(&path, out);
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if let Some(signed) = value.get("signed")
            && let Ok(canonical) = cjson::from_value(signed)
        {
            out.insert(canonical);
        }
    }
}

/// The harness.
pub fn notary(data: &[u8]) {
    let trusted = trusted();
    let _ = sigil_tuf::schema::peek_version(data);

    if let Some(root) = parse::<Root>("root", data) {
        let _ = root.body().validate();
        let (keys, threshold) = top_level(&trusted.root, RoleType::Root);
        accepted_only_if_genuine(
            "root signed by the trusted root keys",
            &root,
            verify_signatures("root", root.signed(), &keys, threshold),
        );
    }
    // A root on its own (a cached root) and as a rotation from version 1.
    let cached = Updater::new(GUN, data.to_vec(), RootTrust::Cached, now());
    if let Ok(up) = &cached {
        assert_genuine("root trusted from cache", up.root().signed());
    }
    let mut rotating = Updater::new(GUN, trusted.first_root.clone(), RootTrust::Cached, now())
        .expect("the first root fixture verifies");
    if let Ok(changed) = rotating.update_root(data.to_vec()) {
        if changed {
            assert_genuine("rotated root", rotating.root().signed());
        } else {
            assert_eq!(data, trusted.first_root, "unchanged root with other bytes");
        }
    }

    if let Some(ts) = parse::<Timestamp>("timestamp", data) {
        let _ = ts.body().validate();
        let (keys, threshold) = top_level(&trusted.root, RoleType::Timestamp);
        accepted_only_if_genuine(
            "timestamp",
            &ts,
            verify_signatures("timestamp", ts.signed(), &keys, threshold),
        );
    }
    let mut walk = Updater::new(GUN, trusted.root.bytes().to_vec(), RootTrust::Cached, now())
        .expect("the root fixture verifies");
    if walk.update_timestamp(data.to_vec()).is_ok() {
        let ts = Signed::<Timestamp>::from_slice("timestamp", data).expect("accepted, so parses");
        assert_genuine("timestamp through the walk", &ts);
    }

    if let Some(snap) = parse::<Snapshot>("snapshot", data) {
        let _ = snap.body().validate();
        let (keys, threshold) = top_level(&trusted.root, RoleType::Snapshot);
        accepted_only_if_genuine(
            "snapshot",
            &snap,
            verify_signatures("snapshot", snap.signed(), &keys, threshold),
        );
    }

    if let Some(targets) = parse::<Targets>("targets", data) {
        let body = targets.body();
        let _ = body.validate("targets");
        let _ = body.validate("targets/releases");
        for role in body.delegated_roles() {
            let _ = body.delegation(&role.name);
        }
        let (keys, threshold) = top_level(&trusted.root, RoleType::Targets);
        accepted_only_if_genuine(
            "targets",
            &targets,
            verify_signatures("targets", targets.signed(), &keys, threshold),
        );
        // As each delegated role of the trusted targets.json.
        let parent = trusted.targets.body();
        for role in parent.delegated_roles() {
            if let Some((entry, keys)) = parent.delegation(&role.name) {
                accepted_only_if_genuine(
                    &role.name,
                    &targets,
                    verify_signatures(&role.name, targets.signed(), &keys, entry.threshold),
                );
            }
        }
    }
}

/// Parses `data` as role type `T`; when it parses, checks that its re-serialisation parses
/// back to the same document.
fn parse<T: Role + PartialEq + std::fmt::Debug>(role: &str, data: &[u8]) -> Option<Metadata<T>> {
    let meta = Metadata::<T>::from_bytes(role, data.to_vec()).ok()?;
    // A document with a non-integral number in an unknown field has no canonical form.
    if let Ok(bytes) = meta.signed().to_vec() {
        let again = Signed::<T>::from_slice(role, &bytes)
            .unwrap_or_else(|e| panic!("{role}: re-serialised document does not parse: {e}"));
        assert_eq!(
            &again,
            meta.signed(),
            "{role}: round trip changed the document"
        );
    }
    Some(meta)
}

fn top_level(root: &Metadata<Root>, role: RoleType) -> (Vec<(&str, &TufKey)>, u64) {
    let body = root.body();
    (
        body.role_keys(role),
        body.role(role).map_or(0, |r| r.threshold),
    )
}

fn accepted_only_if_genuine<T: Role, E>(what: &str, meta: &Metadata<T>, verdict: Result<(), E>) {
    if verdict.is_ok() {
        assert_genuine(what, meta.signed());
    }
}

fn assert_genuine<T: Role>(what: &str, signed: &Signed<T>) {
    let canonical = signed
        .canonical_signed()
        .unwrap_or_else(|e| panic!("{what}: verified but has no canonical form: {e}"));
    assert!(
        trusted().genuine.contains(&canonical),
        "{what}: verified, but its signed part was never signed: {}",
        String::from_utf8_lossy(&canonical)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> Vec<u8> {
        std::fs::read(fixtures().join(rel)).expect("fixture")
    }

    /// The seeds reach the "verified" branch, so the genuineness property is exercised.
    #[test]
    fn the_fixtures_verify_against_the_trusted_root() {
        let ts = Metadata::<Timestamp>::from_bytes("timestamp", fixture("server/timestamp.json"))
            .expect("parse");
        let (keys, threshold) = top_level(&trusted().root, RoleType::Timestamp);
        assert!(verify_signatures("timestamp", ts.signed(), &keys, threshold).is_ok());
        assert_genuine("timestamp", ts.signed());
    }

    #[test]
    fn a_body_that_was_never_signed_is_caught() {
        let mut ts =
            Signed::<Timestamp>::from_slice("timestamp", &fixture("server/timestamp.json"))
                .expect("parse");
        ts.signed.version += 1;
        let caught = std::panic::catch_unwind(|| assert_genuine("timestamp", &ts));
        assert!(caught.is_err(), "an unsigned body passed as genuine");
    }
}
