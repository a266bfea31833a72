//! notary-signer CreateKey cannot be used to fill the token (issue 12 item 5): notary-server
//! calls it on every GET of a missing GUN's `timestamp.key`, so sigild hands out again a key it
//! made for (GUN, role) that has not signed yet, and caps what it creates
//! (`[notary_signer] max_keys_per_gun`, `max_new_keys_per_hour`) with RESOURCE_EXHAUSTED.
//! Also (L9): SIGHUP applies a changed `allowed_clients` and names the settings that need a
//! restart. All over mutual TLS against the real sigild, as notary-server calls it.

use std::path::PathBuf;
use std::time::Duration;

use sigil_e2e::notary::{
    Pki, Usage, connect_signer, free_port, read_audit_lines, sigild_notary_toml, wait_mtls,
};
use sigil_e2e::{DEV_BACKEND, Daemon, DevDir, read_text, token_inspect_exe, write_file};
use tonic::Code;

const TIMEOUT: Duration = Duration::from_secs(60);
/// What notary-server sends for signing: a canonical timestamp (sigild refuses anything else).
fn content() -> Vec<u8> {
    sigil_e2e::metadata::notary("Timestamp", 1, std::time::Duration::from_secs(86_400), &[])
}

/// sigild with `[notary_signer]` (plus `extra` settings in that section) on a fresh token.
struct Endpoint {
    dev: DevDir,
    pki: Pki,
    port: u16,
    config: PathBuf,
    daemon: Daemon,
}

fn config_text(dev: &DevDir, port: u16, pki: &Pki, allowed: &[&str], extra: &str) -> String {
    let mut text = read_text(&dev.dev_config());
    text.push_str(&sigild_notary_toml(port, pki, DEV_BACKEND, allowed));
    text.push_str(extra);
    text
}

impl Endpoint {
    fn start(allowed: &[&str], extra: &str) -> Self {
        let dev = DevDir::new();
        dev.init();
        let pki = Pki::new(&dev.root().join("pki"), "sigil-e2e");
        let port = free_port();
        let config = dev.path().join("notary.toml");
        write_file(
            &config,
            config_text(&dev, port, &pki, allowed, extra),
            0o600,
        );
        let mut daemon = dev.sigild_config(&config).spawn();
        let stderr = daemon.stderr_path().to_owned();
        wait_mtls(
            port,
            &pki.ca(),
            &pki.client(),
            TIMEOUT,
            || daemon.is_running(),
            || read_text(&stderr),
        );
        Self {
            dev,
            pki,
            port,
            config,
            daemon,
        }
    }

    async fn api(&self) -> sigil_e2e::notary::SignerApi {
        connect_signer(self.port, &self.pki.ca(), Some(&self.pki.client()))
            .await
            .expect("connecting to the notary-signer endpoint")
    }

    fn notary_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .dev
            .inspect_token(token_inspect_exe!())
            .private_keys
            .into_iter()
            .map(|k| k.label)
            .filter(|l| l.starts_with("sigil-notary:"))
            .collect();
        labels.sort();
        labels
    }
}

fn key_id(created: &sigil_proto::notary::PublicKey) -> String {
    created
        .key_info
        .as_ref()
        .and_then(|i| i.key_id.as_ref())
        .map(|k| k.id.clone())
        .expect("keyInfo.keyID")
}

/// With the default caps: notary-server asking again and again for a GUN nobody has
/// published gets one key; once that key has signed, the next CreateKey makes a new one.
#[test]
fn create_key_hands_out_a_key_that_has_not_signed_again() {
    let endpoint = Endpoint::start(&[sigil_e2e::notary::SERVER_CLIENT_CN], "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut api = endpoint.api().await;
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(key_id(
                &api.create_key("ecdsa", "timestamp", "e2e.example/missing")
                    .await
                    .expect("CreateKey"),
            ));
        }
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "repeated CreateKey made several keys: {ids:?}"
        );
        api.sign(&ids[0], &content()).await.expect("Sign");
        let next = key_id(
            &api.create_key("ecdsa", "timestamp", "e2e.example/missing")
                .await
                .expect("CreateKey after a signature"),
        );
        assert_ne!(
            next, ids[0],
            "a key that has signed is not handed out as new"
        );
    });
    assert_eq!(
        endpoint.notary_labels().len(),
        2,
        "11 CreateKey calls and one signature make two keys"
    );
}

#[test]
fn create_key_reuses_an_unused_key_and_the_caps_hold() {
    let endpoint = Endpoint::start(
        &[sigil_e2e::notary::SERVER_CLIENT_CN],
        "max_keys_per_gun = 2\nmax_new_keys_per_hour = 4\n",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (first, second, reused) = rt.block_on(async {
        let mut api = endpoint.api().await;
        // notary-server asking again and again for a GUN nobody has published: one key.
        let mut ids = Vec::new();
        for _ in 0..5 {
            let created = api
                .create_key("ecdsa", "timestamp", "e2e.example/one")
                .await
                .expect("CreateKey");
            ids.push(key_id(&created));
        }
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "repeated CreateKey made several keys: {ids:?}"
        );
        let first = ids.remove(0);
        // The snapshot role of the same GUN is another key.
        let snapshot = key_id(
            &api.create_key("ecdsa", "snapshot", "e2e.example/one")
                .await
                .expect("CreateKey snapshot"),
        );
        assert_ne!(snapshot, first);
        // Once the key has signed (it may be published), CreateKey makes a new one...
        api.sign(&first, &content()).await.expect("Sign");
        // ...but not beyond max_keys_per_gun (two keys held for the GUN now).
        let status = api
            .create_key("ecdsa", "timestamp", "e2e.example/one")
            .await
            .expect_err("a third key for the GUN");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("max_keys_per_gun"), "{status:?}");
        // Two more GUNs reach max_new_keys_per_hour (4 created in all)...
        let second = key_id(
            &api.create_key("ecdsa", "timestamp", "e2e.example/two")
                .await
                .expect("CreateKey two"),
        );
        api.create_key("ecdsa", "timestamp", "e2e.example/three")
            .await
            .expect("CreateKey three");
        let status = api
            .create_key("ecdsa", "timestamp", "e2e.example/four")
            .await
            .expect_err("a fifth key within the hour");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("max_new_keys_per_hour"),
            "{status:?}"
        );
        // ...while an unused key is still handed out again.
        let reused = key_id(
            &api.create_key("ecdsa", "timestamp", "e2e.example/two")
                .await
                .expect("CreateKey two again"),
        );
        (first, second, reused)
    });
    assert_eq!(second, reused);
    assert_ne!(first, second);
    assert_eq!(
        endpoint.notary_labels(),
        vec![
            "sigil-notary:snapshot:e2e.example/one",
            "sigil-notary:timestamp:e2e.example/one",
            "sigil-notary:timestamp:e2e.example/three",
            "sigil-notary:timestamp:e2e.example/two",
        ],
        "only the capped number of keys is on the token"
    );
    let audit = read_audit_lines(&endpoint.dev.audit_log());
    let exhausted = audit
        .iter()
        .filter(|l| l.op == "generate" && l.outcome == "exhausted")
        .count();
    assert_eq!(exhausted, 2, "{audit:#?}");
    let reuses = audit
        .iter()
        .filter(|l| {
            l.op == "generate"
                && l.outcome == "ok"
                && l.reason.as_deref().is_some_and(|r| r.contains("again"))
        })
        .count();
    assert_eq!(
        reuses,
        4 + 1,
        "every handed-out-again key is audited as such"
    );
}

#[test]
fn sighup_applies_allowed_clients_and_names_what_needs_a_restart() {
    let endpoint = Endpoint::start(&[sigil_e2e::notary::SERVER_CLIENT_CN], "");
    let late = endpoint
        .pki
        .issue("late", "late-client", Usage::Client, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let late_call = || {
        rt.block_on(async {
            let mut api = connect_signer(endpoint.port, &endpoint.pki.ca(), Some(&late))
                .await
                .expect("connect");
            api.key_info(&"0".repeat(64))
                .await
                .expect_err("no such key")
        })
    };
    assert_eq!(late_call().code(), Code::PermissionDenied);

    // Allow the late client and change a [server] setting that only a restart applies.
    let text = config_text(
        &endpoint.dev,
        endpoint.port,
        &endpoint.pki,
        &[sigil_e2e::notary::SERVER_CLIENT_CN, "late-client"],
        "",
    )
    .replacen("[server]\n", "[server]\nmax_message_bytes = 1048576\n", 1);
    write_file(&endpoint.config, text, 0o600);
    endpoint.daemon.signal(nix::sys::signal::Signal::SIGHUP);
    endpoint.daemon.wait_for_log("policy reloaded", 1);
    endpoint.daemon.wait_for_log("server.max_message_bytes", 1);
    assert!(
        endpoint
            .daemon
            .stderr()
            .contains("restart sigild to apply it"),
        "{}",
        endpoint.daemon.stderr()
    );
    assert_eq!(
        late_call().code(),
        Code::NotFound,
        "the newly allowed client gets in after SIGHUP"
    );
}
