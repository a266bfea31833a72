use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let p = Policy::from_config(&[rule("one", &[1000], &[], sel, &[Op::Sign])]).expect("policy");
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
