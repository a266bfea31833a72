//! `sigil init` never picks one of several keys sigild holds for a (GUN, role) by itself
//! (issue 12 L5): it refuses, naming the candidates, and generates nothing more for that role.
//! Against the real sigild and notary-server (sigil asks the server first whether the
//! collection exists).

use std::process::Command;

use sigil_e2e::DevDir;
use sigil_e2e::notary::{Pki, require_notary, sigild_behind_notary_server};
use sigil_proto::sigil_v1 as pb;

const GUN: &str = "e2e.example/ambiguous";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_to_pick_one_of_several_keys_for_a_role() {
    require_notary();
    let dev = DevDir::new();
    dev.init();
    let pki = Pki::new(&dev.root().join("pki"), "sigil-e2e");
    let (daemon, _, server) = sigild_behind_notary_server(&dev, &pki, "", "sigild-cli.toml");
    let mut client = daemon.client().await;
    let mut planted = Vec::new();
    for _ in 0..2 {
        planted.push(
            client
                .generate("targets", GUN, pb::Algorithm::EcdsaP256)
                .await
                .key_id,
        );
    }
    planted.sort();

    let home = dev.root().join("cli-home");
    std::fs::create_dir_all(&home).expect("cli home");
    let output = Command::new(sigil_e2e::sigil_cli())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("SIGIL_SOCKET", daemon.socket())
        .arg("-s")
        .arg(server.url())
        .arg("-d")
        .arg(home.join("trust"))
        .arg("--tlscacert")
        .arg(server.ca())
        .args(["init", GUN])
        .output()
        .expect("running sigil init");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "sigil init succeeded:\n{err}");
    assert!(
        err.contains("refusing to pick one") && planted.iter().all(|id| err.contains(id.as_str())),
        "the error does not name the ambiguity and both keys:\n{err}"
    );
    let targets: Vec<String> = client
        .list()
        .await
        .into_iter()
        .filter(|k| k.role == "targets" && k.gun == GUN)
        .map(|k| k.key_id)
        .collect();
    assert_eq!(
        targets.len(),
        2,
        "no other targets key was generated: {targets:?}"
    );
}
