//! `sigil tuf import-notary` (issue 10, item 5) against the real notary-server 0.7.0 (with
//! sigild as its signer) and python-tuf's ngclient (PyPI `tuf` 7.0.0, in the venv
//! `tuf_repo.rs` uses): a collection sigil publishes, with a `targets/releases` delegation
//! limited to paths, moves to a TUF 1.0 repository signed by the same token keys; ngclient,
//! served the repository over loopback HTTP, downloads its targets and resolves the tag
//! `latest` to the digest `sigil lookup` gives from Notary. Verdicts come from ngclient and
//! the files, not from sigil's output.

use std::fs;

use sigil_e2e::sha256_hex;
use sigil_e2e::tuf_lab::{
    HttpServer, Lab, latest, notary_publics, read_tuf1, serve_target, tuf1_publics,
};
use sigil_tuf::schema::tuf1;
use sigil_tuf::schema::{Root, Targets};
use sigil_tuf::{Metadata, RoleType};

const GUN: &str = "import.example/app";

#[test]
fn a_notary_collection_moves_to_tuf1_with_the_same_targets_keys_and_tag_digests() {
    let env = Lab::start("");
    let admin = env.admin();
    let hello = b"hello from notary\n".to_vec();
    let release = b"release v1 built by CI\n".to_vec();
    let deep = b"a release several directories down\n".to_vec();
    let manifest = b"{\"schemaVersion\":2,\"config\":{}}".to_vec();
    let custom = env.file("custom.json", br#"{"built_by":"ci","n":3}"#);
    admin.ok(&["init", GUN]);
    admin.ok(&[
        "add",
        GUN,
        "hello.txt",
        &env.file("hello.txt", &hello),
        "--custom",
        &custom,
    ]);
    // A docker-style tag: only the image manifest's length and digest.
    admin.ok(&[
        "addhash",
        GUN,
        "latest",
        &manifest.len().to_string(),
        "--sha256",
        &sha256_hex(&manifest),
        "-p",
    ]);
    let releases_key = admin.generate_key("targets/releases", GUN);
    admin.ok(&[
        "delegation",
        "add",
        GUN,
        "targets/releases",
        &releases_key,
        "--paths",
        "releases/",
        "-p",
    ]);
    admin.ok(&[
        "add",
        GUN,
        "releases/v1.tar",
        &env.file("v1.tar", &release),
        "-r",
        "targets/releases",
    ]);
    admin.ok(&[
        "add",
        GUN,
        "releases/a/b/c/deep.tar",
        &env.file("deep.tar", &deep),
        "-r",
        "targets/releases",
        "-p",
    ]);
    let notary_latest = admin.json(&["lookup", GUN, "latest"]);

    let repo = env.dev.root().join("tuf-repo");
    let summary = admin.json(&["tuf", "import-notary", GUN, repo.to_str().expect("utf8")]);
    assert_eq!(summary["targets"], 4, "{summary}");
    let releases = summary["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["notary_role"] == "targets/releases")
        .unwrap_or_else(|| panic!("no releases role in {summary}"));
    assert_eq!(releases["role"], "releases");
    assert_eq!(releases["keys"][0]["sigild_key_id"], releases_key.as_str());
    // Snapshot and timestamp keys were generated on the token for the GUN.
    let keys = admin.json(&["key", "list"]);
    for role in ["snapshot", "timestamp"] {
        let id = &summary[format!("{role}_key")]["sigild_key_id"];
        assert!(
            keys.as_array()
                .expect("keys")
                .iter()
                .any(|k| &k["key_id"] == id && k["role"] == role && k["gun"] == GUN),
            "{role} key {id} not on the token: {keys}"
        );
    }
    // Importing again into the same directory is refused, and changes nothing.
    let before = fs::read(repo.join("metadata/timestamp.json")).expect("timestamp");
    let (code, err) = admin.fails(&["tuf", "import-notary", GUN, repo.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already holds a repository"), "{err}");
    assert_eq!(
        fs::read(repo.join("metadata/timestamp.json")).expect("ts"),
        before
    );

    // Same keys: the TUF 1.0 root, targets and releases keys are the Notary collection's.
    let notary_root: Metadata<Root> =
        Metadata::from_bytes("root", env.server.metadata(GUN, "root")).expect("notary root");
    let notary_targets: Metadata<Targets> =
        Metadata::from_bytes("targets", env.server.metadata(GUN, "targets")).expect("targets");
    let tuf_root: Metadata<tuf1::Root> = read_tuf1(&repo, "1.root.json");
    for role in [RoleType::Root, RoleType::Targets] {
        assert_eq!(
            tuf1_publics(tuf_root.body().role_keys(role)),
            notary_publics(notary_root.body().role_keys(role)),
            "{role:?} keys differ"
        );
    }
    let tuf_targets: Metadata<tuf1::Targets> = read_tuf1(&repo, &latest(&repo, "targets"));
    let tuf_delegations = tuf_targets
        .body()
        .delegations
        .as_ref()
        .expect("delegations");
    let notary_delegations = notary_targets
        .body()
        .delegations
        .as_ref()
        .expect("delegations");
    let tuf_releases = tuf_delegations
        .role("releases")
        .expect("releases delegated");
    let notary_releases = notary_delegations
        .role("targets/releases")
        .expect("targets/releases");
    assert_eq!(
        tuf1_publics(tuf_delegations.role_keys(tuf_releases)),
        notary_publics(notary_delegations.role_keys(notary_releases)),
    );
    // The prefix became patterns that a TUF 1.0 client matches segment by segment.
    let paths = tuf_releases.paths();
    assert!(paths.contains(&"releases/*".to_owned()), "{paths:?}");
    assert!(paths.contains(&"releases/*/*/*/*".to_owned()), "{paths:?}");
    // Every hash Notary listed (sha256 and sha512), in hex.
    let hello_meta = &tuf_targets.body().targets["hello.txt"];
    assert_eq!(
        hex::encode(hello_meta.sha256().expect("sha256")),
        sha256_hex(&hello)
    );
    assert!(
        hello_meta.hashes.contains_key("sha512"),
        "{:?}",
        hello_meta.hashes
    );
    admin.ok(&["tuf", "verify", repo.to_str().expect("utf8")]);

    // ngclient reads it: targets downloaded (content served where consistent snapshots say)
    // with the lengths, hashes and custom data Notary listed.
    serve_target(&repo, "hello.txt", &hello);
    serve_target(&repo, "releases/v1.tar", &release);
    serve_target(&repo, "releases/a/b/c/deep.tar", &deep);
    let http = HttpServer::start(&env.python, &repo);
    let got = env.ngclient_download(
        &repo,
        &http,
        &["hello.txt", "releases/v1.tar", "releases/a/b/c/deep.tar"],
    );
    assert_eq!(got["hello.txt"]["sha256"], sha256_hex(&hello));
    assert_eq!(got["hello.txt"]["custom"]["built_by"], "ci", "{got}");
    assert_eq!(got["releases/v1.tar"]["sha256"], sha256_hex(&release));
    assert_eq!(got["releases/a/b/c/deep.tar"]["sha256"], sha256_hex(&deep));
    // `docker pull`-style: the tag resolves to the same digest in both dialects.
    let info = env.ngclient_targetinfo(&repo, &http, &["latest", "nightly"]);
    assert_eq!(
        info["latest"]["hashes"]["sha256"], notary_latest["sha256"],
        "{info}"
    );
    assert_eq!(notary_latest["sha256"], sha256_hex(&manifest));
    assert_eq!(info["latest"]["length"], manifest.len());
    assert!(info["nightly"].is_null(), "{info}");
}
