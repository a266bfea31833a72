//! sigil's own flows work for a caller whose policy allows only `sign-metadata` (issue 11
//! item 2, DESIGN §9): a Notary collection made, published, delegated and rotated (root
//! included) against the real notary-server, and a TUF 1.0 repository made, published and
//! timestamped — every signature through sigild's checks, each audit line saying what was
//! signed — while a blind signature with the same keys is refused.

use sigil_e2e::OTHER_UID;
use sigil_e2e::notary::read_audit_lines;
use sigil_e2e::tuf_lab::{HttpServer, Lab};

const GUN: &str = "metadata-only.example/app";
const REPO_GUN: &str = "metadata-only.example/tuf";

/// uid 65534 may make keys for the two names and sign only metadata with them.
fn policy() -> String {
    format!(
        "[[policy]]\nname = \"metadata-only\"\nuids = [{OTHER_UID}]\n\
         keys = [{{ gun = \"{GUN}\", role = \"*\" }}, {{ gun = \"{REPO_GUN}\", role = \"*\" }}]\n\
         allow = [\"sign-metadata\", \"generate\", \"list\", \"public\"]\n"
    )
}

#[test]
fn notary_and_tuf1_flows_work_for_a_caller_that_may_only_sign_metadata() {
    let env = Lab::start(&policy());
    let ci = env.stranger();

    // Notary: the root key signs its own certificate and root, then targets and snapshot.
    ci.ok(&["init", GUN, "-p"]);
    ci.ok(&["add", GUN, "app.tar", &env.file("app.tar", b"app\n"), "-p"]);
    let releases = ci.generate_key("targets/releases", GUN);
    ci.ok(&[
        "delegation",
        "add",
        GUN,
        "targets/releases",
        &releases,
        "--all-paths",
        "-p",
    ]);
    ci.ok(&[
        "add",
        GUN,
        "rel.tar",
        &env.file("rel.tar", b"release\n"),
        "-r",
        "targets/releases",
        "-p",
    ]);
    ci.ok(&["key", "rotate", GUN, "targets"]);
    ci.ok(&["key", "rotate", GUN, "root"]);
    let listed = ci.json(&["list", GUN]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    // The real notary client agrees (from a fresh trust dir of the test's own user).
    env.admin().ok(&["list", GUN]);

    // A blind signature with the same keys is not what this caller may have (`sigil sign`
    // sends a digest, which hides what is signed).
    let blob = env.file("blob", b"not metadata\n");
    let (code, err) = ci.fails(&["sign", "--key", &releases, &blob]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("sign-metadata: send the metadata's canonical bytes"),
        "{err}"
    );

    // TUF 1.0: keys on the token, a repository made, published and timestamped.
    let key = |role: &str| ci.generate_key(role, REPO_GUN);
    let (root, targets, snapshot, timestamp) = (
        key("root"),
        key("targets"),
        key("snapshot"),
        key("timestamp"),
    );
    let repo = ci.home.join("repo");
    let repo = repo.to_str().expect("utf-8");
    ci.ok(&[
        "tuf",
        "init",
        repo,
        "--root-key",
        &root,
        "--targets-key",
        &targets,
        "--snapshot-key",
        &snapshot,
        "--timestamp-key",
        &timestamp,
    ]);
    ci.ok(&[
        "tuf",
        "add",
        repo,
        "tool.bin",
        &env.file("tool.bin", b"\x00tool"),
    ]);
    ci.ok(&["tuf", "publish", repo]);
    ci.ok(&["tuf", "timestamp", repo]);
    ci.ok(&["tuf", "verify", repo]);
    let http = HttpServer::start(&env.python, std::path::Path::new(repo));
    let got = env.ngclient_download(std::path::Path::new(repo), &http, &["tool.bin"]);
    assert!(got.to_string().contains("tool.bin"), "{got}");

    // Every signature of the CI user went through the checks, and says what it signed.
    // Lines of both callers: the CI user's and notary-server's (a TLS client).
    let audit = read_audit_lines(&env.dev.audit_log());
    let signed: Vec<_> = audit
        .iter()
        .filter(|l| l.op == "sign" && l.uid == Some(OTHER_UID) && l.outcome == "ok")
        .collect();
    assert!(signed.len() >= 12, "{signed:#?}");
    let mut kinds: Vec<String> = Vec::new();
    for line in &signed {
        let facts = line
            .metadata
            .as_ref()
            .unwrap_or_else(|| panic!("a metadata-only signature without facts: {line:?}"));
        kinds.push(format!("{}:{}", facts.dialect, facts.kind));
    }
    for kind in [
        "x509:root-certificate",
        "notary:root",
        "notary:targets",
        "notary:snapshot",
        "tuf-1.0:root",
        "tuf-1.0:targets",
        "tuf-1.0:snapshot",
        "tuf-1.0:timestamp",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}
