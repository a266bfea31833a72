//! The policy (`sigil_daemon::policy`): a configuration's `[[policy]]` and `[[require]]` rules
//! compiled as sigild does, then asked about arbitrary callers and keys.
//!
//! Input: the configuration text, a NUL byte, then one query per line, tab-separated:
//! `uid gid key_id gun role` (missing fields are empty, a bad number is 0). Properties, per
//! query:
//! - deny by default: a caller that no rule can name (its uid in no rule, and no rule naming
//!   users, groups or gids) may do nothing and unlock nothing;
//! - a caller never gets an operation that no rule allows, and may unlock only where some
//!   rule allows `unlock` for named tokens;
//! - a key id selector never matches a key without an id (a key being generated);
//! - the answer is the same when asked twice;
//! - `[[require]]`: a key with every fact (attested, touch always) meets any needs, a key with
//!   none meets them exactly when nothing is required.

use std::path::Path;

use sigil_daemon::backend::attestation::TouchPolicy;
use sigil_daemon::config::{Config, Op, PolicyConfig};
use sigil_daemon::policy::{Caller, KeyFacts, KeyView, Policy};

const OPS: [Op; 6] = [
    Op::Sign,
    Op::Public,
    Op::List,
    Op::Generate,
    Op::Delete,
    Op::Unlock,
];

/// The harness.
pub fn policy(data: &[u8]) {
    let (text, queries) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let Ok(policy) = Policy::load(&config) else {
        return;
    };
    for line in String::from_utf8_lossy(queries).lines() {
        query(&policy, &config.policies, line);
    }
}

fn query(policy: &Policy, rules: &[PolicyConfig], line: &str) {
    let mut fields = line.split('\t');
    let mut number = || {
        fields
            .next()
            .and_then(|f| f.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let caller = Caller {
        uid: number(),
        gid: number(),
        pid: None,
    };
    let key_id = fields.next().unwrap_or("");
    let gun = fields.next().unwrap_or("");
    let role = fields.next().unwrap_or("");
    let key = KeyView { key_id, gun, role };
    // The supplementary groups sigild resolves always include the primary one.
    let groups = [caller.gid];

    let ops = policy.ops(&caller, &groups, &key);
    assert_eq!(
        ops,
        policy.ops(&caller, &groups, &key),
        "ops differ when asked twice"
    );
    let unlock = policy.may_unlock(&caller, &groups, gun);

    let unnamed = rules.iter().all(|r| {
        !r.uids.contains(&caller.uid)
            && r.users.is_empty()
            && r.groups.is_empty()
            && r.gids.is_empty()
    });
    if unnamed {
        assert!(ops.is_empty(), "a caller no rule names got {ops:?}");
        assert!(!unlock, "a caller no rule names may unlock {gun:?}");
    }
    for op in OPS {
        if ops.contains(op) {
            assert!(
                rules.iter().any(|r| r.allow.contains(&op)),
                "{} granted but no rule allows it",
                op.as_str()
            );
        }
    }
    if unlock {
        assert!(
            rules
                .iter()
                .any(|r| r.allow.contains(&Op::Unlock) && !r.tokens.is_empty()),
            "unlock granted but no rule allows it for named tokens"
        );
    }
    let generating = policy.ops(&caller, &groups, &KeyView { key_id: "", ..key });
    for op in OPS {
        if generating.contains(op) {
            assert!(
                rules
                    .iter()
                    .any(|r| r.allow.contains(&op) && r.keys.iter().any(|k| k.key_id.is_none())),
                "{} granted on a key without an id, but only key id selectors allow it",
                op.as_str()
            );
        }
    }

    let needs = policy.needs(gun, role);
    let every = KeyFacts {
        attested: true,
        touch: Some(TouchPolicy::Always),
    };
    assert_eq!(
        needs.unmet(&every),
        None,
        "a fully attested key fails {needs:?}"
    );
    assert_eq!(
        needs.unmet(&KeyFacts::default()).is_some(),
        needs.any(),
        "a key with no facts vs {needs:?}"
    );
}
