//! What sigild reads before it signs for a metadata-only caller or for notary-server
//! (`sigil_tuf::inspect::inspect_signable`, DESIGN §9): bytes from a local caller or a
//! possibly hostile notary-server, parsed on every such signature.
//!
//! Properties checked for any input:
//! - no panic;
//! - what is accepted as metadata has a version in 1..=2^63-1 and is strict JSON (with the
//!   raw control characters canonical JSON keeps, escaped);
//! - canonical means canonical: the accepted bytes with a space appended are refused;
//! - the verdict is the same when asked twice.

use sigil_tuf::cjson;
use sigil_tuf::inspect::{MAX_VERSION, Signable, inspect_signable};

/// The harness.
pub fn signable(data: &[u8]) {
    let first = inspect_signable(data);
    let again = inspect_signable(data);
    assert_eq!(first.is_ok(), again.is_ok(), "the verdict changed");
    match first {
        Ok(Signable::Metadata(facts)) => {
            assert!((1..=MAX_VERSION).contains(&facts.version), "{facts:?}");
            // Canonical JSON keeps control characters raw, which strict JSON does not allow:
            // strictness is checked on the form with them escaped, as inspect reads it.
            let escaped = cjson::escape_control_characters(data.to_vec());
            assert!(
                cjson::parse_strict(&escaped).is_ok(),
                "accepted non-strict JSON"
            );
            let mut spaced = data.to_vec();
            spaced.push(b' ');
            assert!(
                inspect_signable(&spaced).is_err(),
                "accepted a non-canonical form"
            );
        }
        Ok(Signable::RootCertificate(cert)) => {
            let _ = (cert.is_self_issued(), cert.common_name(), cert.not_after());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
