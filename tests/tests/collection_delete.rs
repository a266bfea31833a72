//! `sigil delete GUN [--remote]` against the real notary-server 0.7.0 (keys on sigild through
//! its notary-signer endpoint), checked with the real `notary` client: without `--remote` only
//! the local trust data goes; with it, the collection is gone from the server for every client,
//! as after `notary delete GUN --remote`, which sigil in turn sees as no collection.

use std::path::{Path, PathBuf};
use std::process::Command;

use sigil_e2e::notary::{NotaryServer, Pki, require_notary, sigild_behind_notary_server};
use sigil_e2e::{Daemon, DevDir};

/// sigild with its notary-signer endpoint, and notary-server using it.
struct Env {
    dev: DevDir,
    daemon: Daemon,
    server: NotaryServer,
}

impl Env {
    fn start() -> Self {
        require_notary();
        let dev = DevDir::new();
        dev.init();
        let pki = Pki::new(&dev.root().join("pki"), "sigil-delete-e2e");
        let (daemon, _, server) = sigild_behind_notary_server(&dev, &pki, "", "sigild-delete.toml");
        Self {
            dev,
            daemon,
            server,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.dev.root().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    fn trust(&self) -> PathBuf {
        self.dir("sigil").join("trust")
    }

    /// Runs `sigil ARGS…` with this server, its CA and the test's trust dir.
    fn sigil(&self, args: &[&str]) -> (bool, String, String) {
        let home = self.dir("sigil");
        let out = Command::new(sigil_e2e::sigil_cli())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("SIGIL_SOCKET", self.daemon.socket())
            .current_dir(&home)
            .args(["-s", &self.server.url(), "--tlscacert"])
            .arg(self.server.ca())
            .arg("-d")
            .arg(self.trust())
            .args(args)
            .output()
            .expect("run sigil");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn sigil_ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.sigil(args);
        assert!(ok, "sigil {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    fn root_status(&self, gun: &str) -> u16 {
        self.server
            .get(&format!("/v2/{gun}/_trust/tuf/root.json"))
            .status
    }
}

fn cached_metadata(trust: &Path, gun: &str) -> PathBuf {
    trust.join("tuf").join(gun).join("metadata")
}

#[test]
fn delete_remote_removes_the_collection_for_sigil_and_the_real_notary_client() {
    let env = Env::start();
    let gun = "e2e.example/deleted";
    let file = env.dir("files").join("app.sh");
    std::fs::write(&file, b"#!/bin/sh\necho app\n").expect("target");
    env.sigil_ok(&["init", gun]);
    env.sigil_ok(&["add", gun, "app.sh", file.to_str().expect("utf8"), "-p"]);
    let notary = env.server.client(&env.dir("notary-1"));
    assert!(notary.ok(&["list", gun]).contains("app.sh"));

    // Without --remote: only the local trust data goes; the server still has the collection.
    let out = env.sigil_ok(&["delete", gun]);
    assert!(out.contains("local trust data"), "{out}");
    assert!(
        !cached_metadata(&env.trust(), gun)
            .join("root.json")
            .exists()
    );
    assert_eq!(env.root_status(gun), 200);
    assert!(env.sigil_ok(&["list", gun]).contains("app.sh"));

    // With --remote: gone from the server for everyone.
    let out = env.sigil_ok(&["delete", gun, "--remote"]);
    assert!(out.contains("local and remote"), "{out}");
    assert!(
        !cached_metadata(&env.trust(), gun)
            .join("root.json")
            .exists()
    );
    assert_eq!(env.root_status(gun), 404);
    let fresh = env.server.client(&env.dir("notary-2"));
    let listed = fresh.run(&["list", gun]);
    assert!(!listed.status.success(), "{}", listed.stdout);
    let said = format!("{}{}", listed.stdout, listed.stderr);
    assert!(said.contains("does not have trust data"), "{said}");
    let (ok, _, stderr) = env.sigil(&["list", gun]);
    assert!(!ok);
    assert!(stderr.contains("no trust data for"), "{stderr}");

    // Published again, then deleted by the real notary client: sigil sees no collection.
    env.sigil_ok(&["init", gun, "-p"]);
    assert_eq!(env.root_status(gun), 200);
    let notary = env.server.client(&env.dir("notary-3"));
    notary.ok(&["list", gun]);
    notary.ok(&["delete", gun, "--remote"]);
    assert_eq!(env.root_status(gun), 404);
    let (ok, _, stderr) = env.sigil(&["list", gun]);
    assert!(!ok);
    assert!(stderr.contains("no trust data for"), "{stderr}");
}
