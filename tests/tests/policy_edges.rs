//! Edges of the per-key policy (issue 12 item 3, L6, L7, L8), against the real sigild with a
//! client running as another uid:
//! - a group a setgid program gave one process is not credited to the user's other processes;
//! - `*` in a GUN glob stays within one `/` part, `**` crosses parts;
//! - GenerateKey answers a caller without the right before looking at the backend, so the
//!   backend names do not leak;
//! - GUNs with bidi or other invisible characters are refused.

use sigil_e2e::{DevDir, OTHER_GID, OTHER_UID, Rpc, Stranger, client_exe, read_audit};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;

/// A gid no one has as a primary group, standing for a setgid wrapper's group.
const WRAPPER_GID: u32 = 4242;

/// A group no caller in the test is in.
const UNRELATED_GID: u32 = 4343;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setgid_wrappers_group_does_not_leak_to_the_users_other_processes() {
    let dir = DevDir::new();
    dir.init();
    // The first rule names a group none of the callers has, so that deciding on it looks the
    // caller's groups up (and caches them) even when a later rule matches the gid directly.
    let config = dir
        .config()
        .append(&format!(
            "[[policy]]\nname = \"someone-else\"\ngids = [{UNRELATED_GID}]\n\
             keys = [{{ gun = \"*\", role = \"*\" }}]\nallow = [\"public\"]\n\n\
             [[policy]]\nname = \"wrapper\"\ngids = [{WRAPPER_GID}]\n\
             keys = [{{ gun = \"*\", role = \"*\" }}]\nallow = [\"list\", \"sign\"]\n"
        ))
        .write("groups.toml");
    let daemon = dir.sigild_config(&config).spawn();
    let key = daemon
        .client()
        .await
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let socket = daemon.socket().to_owned();
    let (wrapped, plain) = tokio::task::spawn_blocking(move || {
        let stranger = Stranger::new(client_exe!());
        // The wrapper's process (gid 4242) first, so its groups are looked up and cached...
        let wrapped = stranger.run_with_gid(&socket, &Rpc::List, WRAPPER_GID);
        // ...then the same user's ordinary process, within the cache's 30 s.
        let plain = stranger.run_with_gid(&socket, &Rpc::List, OTHER_GID);
        (wrapped, plain)
    })
    .await
    .expect("stranger");
    assert_eq!(wrapped.code(), Code::Ok, "{wrapped:?}");
    assert_eq!(
        wrapped.key_ids,
        vec![key.key_id.clone()],
        "the wrapper sees the key"
    );
    assert_eq!(plain.code(), Code::Ok, "{plain:?}");
    assert!(
        plain.key_ids.is_empty(),
        "uid {OTHER_UID} without the wrapper's group still sees {:?}",
        plain.key_ids
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_stays_within_a_gun_part_and_double_star_crosses_parts() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let app = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let nested = client
        .generate("targets", "example.com/team/app", pb::Algorithm::EcdsaP256)
        .await;
    drop(client);
    assert!(daemon.stop().success());

    let list_with = |glob: &str, name: &str| {
        let config = dir
            .config()
            .append(&format!(
                "[[policy]]\nname = \"stranger\"\nuids = [{OTHER_UID}]\n\
                 keys = [{{ gun = \"{glob}\" }}]\nallow = [\"list\"]\n"
            ))
            .write(name);
        let daemon = dir.sigild_config(&config).spawn();
        let outcome = Stranger::new(client_exe!()).run(daemon.socket(), &Rpc::List);
        assert!(daemon.stop().success());
        assert_eq!(outcome.code(), Code::Ok, "{glob}: {outcome:?}");
        let mut ids = outcome.key_ids;
        ids.sort();
        ids
    };
    let mut both = vec![app.key_id.clone(), nested.key_id.clone()];
    both.sort();
    assert_eq!(
        list_with("example.com/*", "one-part.toml"),
        vec![app.key_id.clone()],
        "`*` must not cross `/`"
    );
    assert_eq!(list_with("example.com/**", "any-depth.toml"), both);
    assert_eq!(
        list_with("*", "anything.toml"),
        both,
        "a lone `*` is any GUN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_answers_the_unauthorised_before_naming_backends() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let socket = daemon.socket().to_owned();
    let refused = tokio::task::spawn_blocking(move || {
        let stranger = Stranger::new(client_exe!());
        ["", "no-such-backend", sigil_e2e::DEV_BACKEND].map(|backend| {
            stranger.run(
                &socket,
                &Rpc::GenerateOn {
                    backend: backend.into(),
                    role: "targets".into(),
                    gun: "example.com/app".into(),
                },
            )
        })
    })
    .await
    .expect("stranger");
    for outcome in &refused {
        assert_eq!(outcome.code(), Code::PermissionDenied, "{outcome:?}");
        assert!(
            !outcome.message.contains(sigil_e2e::DEV_BACKEND),
            "the refusal names a backend: {outcome:?}"
        );
    }

    // For the owner, a bidi override or a zero-width space in a GUN is refused, and nothing
    // is generated.
    let mut client = daemon.client().await;
    for gun in [
        "example.com/\u{202e}ppa",
        "example.com/a\u{200b}pp",
        "example.com/app\u{0}",
    ] {
        let status = client
            .keys
            .generate_key(pb::GenerateKeyRequest {
                backend: String::new(),
                role: "targets".into(),
                gun: gun.into(),
                algorithm: pb::Algorithm::EcdsaP256.into(),
            })
            .await
            .expect_err("an invisible character in a GUN");
        assert_eq!(status.code(), Code::InvalidArgument, "{gun:?}: {status:?}");
    }
    assert!(client.list().await.is_empty(), "a key was generated");
    drop(client);
    assert!(daemon.stop().success());
    let audit = read_audit(&dir.audit_log());
    assert!(
        audit
            .iter()
            .filter(|l| l.op == "generate")
            .all(|l| l.outcome != "ok" && l.gun.bytes().all(|b| (0x20..0x7f).contains(&b))),
        "{audit:#?}"
    );
}
