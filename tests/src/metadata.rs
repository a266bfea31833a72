//! Canonical metadata bodies (the `signed` object, as a signer receives it) for tests of what
//! sigild agrees to sign: `sign-metadata` callers and the notary-signer endpoint refuse
//! anything but metadata of the key's role, with a rising version and a bounded expiry.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sigil_tuf::schema::dialect::Dialect as _;

/// `expires` `lifetime` from now, as both dialects accept it (`YYYY-MM-DDTHH:MM:SSZ`, as TUF
/// 1.0 writes it).
pub fn expires_in(lifetime: Duration) -> String {
    sigil_tuf::schema::tuf1::Tuf1::format_time(time::OffsetDateTime::from(
        SystemTime::now() + lifetime,
    ))
}

/// A Notary body of `kind` (`Root`, `Targets`, `Snapshot`, `Timestamp`) at `version`, expiring
/// `lifetime` from now; targets bodies list `targets` (each 1 byte long).
pub fn notary(kind: &str, version: u64, lifetime: Duration, targets: &[&str]) -> Vec<u8> {
    let mut body = body(kind, version, lifetime);
    match kind {
        "Targets" => {
            body["delegations"] = json!({"keys": {}, "roles": []});
            body["targets"] = target_map(targets, json!({"sha256": "AA=="}));
        }
        "Snapshot" | "Timestamp" => {
            body["meta"] = json!({"root": {"hashes": {"sha256": "AA=="}, "length": 1}});
        }
        _ => {
            body["keys"] = json!({});
            body["roles"] = json!({});
            body["consistent_snapshot"] = json!(false);
        }
    }
    sigil_tuf::cjson::from_value(&body).expect("canonical Notary JSON")
}

/// A TUF 1.0 body of `kind` (`root`, `targets`, `snapshot`, `timestamp`), like [`notary`].
pub fn tuf1(kind: &str, version: u64, lifetime: Duration, targets: &[&str]) -> Vec<u8> {
    let mut body = body(kind, version, lifetime);
    body["spec_version"] = json!("1.0.31");
    match kind {
        "targets" => body["targets"] = target_map(targets, json!({"sha256": "00"})),
        "snapshot" => body["meta"] = json!({"targets.json": {"version": 1}}),
        "timestamp" => body["meta"] = json!({"snapshot.json": {"version": 1}}),
        _ => {
            body["keys"] = json!({});
            body["roles"] = json!({});
            body["consistent_snapshot"] = json!(true);
        }
    }
    sigil_tuf::schema::tuf1::Tuf1::canonical(&body).expect("canonical TUF 1.0 JSON")
}

/// A canonical Notary timestamp of exactly `size` bytes (padded with an extra field), expiring
/// in a week, as notary-server sends for signing: the benchmarks' realistic payload. The same
/// bytes again pass sigild's version floor without a write, so a run measures the parse.
pub fn timestamp_payload(version: u64, size: usize) -> Vec<u8> {
    let head = format!(
        concat!(
            r#"{{"_type":"Timestamp","expires":"{}","#,
            r#""meta":{{"snapshot":{{"hashes":{{"#,
            r#""sha256":"tqi+/r3ikvvCjwDP5C8LAJzL3gT9I3wx2MMzRNbJzYc=","#,
            r#""sha512":"NFHxyc82rAQCHFDNJ4JqAQRPKh6Cq5s/P7YjOYn/E5GTkAVLIFXWLuAFElUdjPSZM3VGqR9rwRawSl3BOP3SIA=="#,
            r#""}},"length":683}}}},"version":{},"x-padding":""#
        ),
        expires_in(Duration::from_secs(7 * 86_400)),
        version
    );
    let tail = "\"}";
    let pad = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "p".repeat(pad)).into_bytes()
}

fn body(kind: &str, version: u64, lifetime: Duration) -> Value {
    json!({"_type": kind, "version": version, "expires": expires_in(lifetime)})
}

fn target_map(names: &[&str], hashes: Value) -> Value {
    Value::Object(
        names
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    json!({"length": 1, "hashes": hashes.clone()}),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_tuf::RoleType;
    use sigil_tuf::inspect::inspect;

    #[test]
    fn the_bodies_are_what_sigild_reads_as_metadata() {
        let day = Duration::from_secs(86_400);
        for (bytes, dialect, kind) in [
            (
                notary("Timestamp", 3, day, &[]),
                "notary",
                RoleType::Timestamp,
            ),
            (
                notary("Snapshot", 3, day, &[]),
                "notary",
                RoleType::Snapshot,
            ),
            (
                notary("Targets", 3, day, &["a"]),
                "notary",
                RoleType::Targets,
            ),
            (
                tuf1("timestamp", 3, day, &[]),
                "tuf-1.0",
                RoleType::Timestamp,
            ),
            (
                tuf1("targets", 3, day, &["a/b"]),
                "tuf-1.0",
                RoleType::Targets,
            ),
        ] {
            let facts = inspect(&bytes).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(&bytes));
            });
            assert_eq!(
                (facts.dialect, facts.kind, facts.version),
                (dialect, kind, 3)
            );
        }
    }
}
