//! Target search through delegations: pre-order depth-first order, path patterns, hash
//! prefixes, terminating roles, cycles, the bound on roles visited, a role reached through two
//! delegators, hostile role names, and roles missing from snapshot.

use sigil_tuf::Error;
use sigil_tuf::schema::DelegatedRole;

use crate::repo::{self, Client, Repo};
use crate::strs;

/// The conformance suite's tree: targets → A (*.doc, *.md, foo-?.tgz), B (releases/*/*);
/// B → C (releases/x/*), D (releases/y/*.zip).
fn tree() -> Repo {
    let mut repo = Repo::new();
    repo.delegate("targets", "A", &["*.doc", "*.md", "foo-?.tgz"], false);
    repo.delegate("targets", "B", &["releases/*/*"], false);
    repo.delegate("B", "C", &["releases/x/*"], false);
    repo.delegate("B", "D", &["releases/y/*.zip"], false);
    repo.add_target("A", "README.md", b"readme");
    repo.add_target("C", "releases/x/x_v1", b"x");
    repo.add_target("D", "releases/y/y_v1.zip", b"y");
    repo.add_target("D", "releases/z/z_v1.zip", b"z");
    repo.publish(&["A", "C", "D", "B", "targets", "snapshot", "timestamp"]);
    repo
}

fn visited(client: &Client) -> Vec<String> {
    client
        .requests()
        .iter()
        .filter(|r| r.starts_with("metadata/1."))
        .filter(|r| !r.ends_with(".snapshot.json"))
        .map(|r| {
            r.trim_start_matches("metadata/1.")
                .trim_end_matches(".json")
                .to_owned()
        })
        .filter(|r| r != "targets")
        .collect()
}

#[test]
fn delegations_are_searched_in_preorder_with_path_patterns() {
    let repo = tree();
    for (path, found, order) in [
        ("README.md", true, vec!["A"]),
        ("releases/x/x_v1", true, vec!["B", "C"]),
        ("releases/y/y_v1.zip", true, vec!["B", "D"]),
        ("releases/z/z_v1.zip", false, vec!["B"]),
        ("releases/README.md", false, vec![]),
        ("README.MD", false, vec![]),
    ] {
        let client = Client::new(&repo);
        assert_eq!(client.download(&repo, &[path]).is_ok(), found, "{path}");
        assert_eq!(visited(&client), strs(&order), "{path}");
    }
}

#[test]
fn terminating_delegations_hash_prefixes_and_cycles() {
    let mut repo = Repo::new();
    repo.delegate("targets", "first", &["*"], true);
    repo.delegate("targets", "second", &["*"], false);
    repo.add_target("second", "f.txt", b"f");
    // Hash-prefix delegation: sha256("g.txt") starts with the prefix listed.
    let prefix = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"g.txt"))[..2].to_owned();
    let bins = repo.delegate("first", "bins", &[], false);
    bins.paths = None;
    bins.path_hash_prefixes = Some(vec![prefix]);
    repo.add_target("bins", "g.txt", b"g");
    // A cycle: bins delegates back to first (with first's own key).
    let first = repo::key(&repo.signers["first"][0]);
    let mut back = DelegatedRole::new("first", vec![first.id()], 1, vec!["*".into()]);
    back.terminating = Some(false);
    let d = repo.targets.get_mut("bins").expect("bins");
    let d = d.delegations.get_or_insert_with(Default::default);
    d.keys.insert(first.id(), first);
    d.roles.push(back);
    repo.publish(&[
        "bins",
        "first",
        "second",
        "targets",
        "snapshot",
        "timestamp",
    ]);

    let client = Client::new(&repo);
    client.download(&repo, &["g.txt"]).expect("by hash prefix");
    assert_eq!(visited(&client), strs(&["first", "bins"]));
    // "first" is terminating: "second", which lists f.txt, is never consulted; the cycle
    // back to "first" is not followed.
    let err = client.download(&repo, &["f.txt"]).expect_err("terminated");
    assert!(matches!(err, Error::TargetNotFound { .. }), "{err}");
    assert!(!client.requests().iter().any(|r| r.contains("second")));
}

#[test]
fn the_number_of_delegated_roles_visited_is_bounded() {
    let mut repo = Repo::new();
    let mut parent = "targets".to_owned();
    for i in 0..6 {
        let name = format!("r{i}");
        repo.delegate(&parent, &name, &["*"], false);
        parent = name;
    }
    repo.add_target("r5", "deep.txt", b"deep");
    let roles: Vec<String> = (0..6).rev().map(|i| format!("r{i}")).collect();
    let mut all: Vec<&str> = roles.iter().map(String::as_str).collect();
    all.extend(["targets", "snapshot", "timestamp"]);
    repo.publish(&all);
    let mut client = Client::new(&repo);
    client
        .download(&repo, &["deep.txt"])
        .expect("within the limit");
    client.limits.max_delegations = 3;
    std::fs::remove_dir_all(client.target_dir()).expect("rm");
    std::fs::create_dir(client.target_dir()).expect("mkdir");
    let err = client
        .download(&repo, &["deep.txt"])
        .expect_err("beyond the limit");
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
}

#[test]
fn a_role_reached_through_another_delegator_is_verified_again() {
    let mut repo = Repo::new();
    repo.delegate("targets", "parent-a", &["team-a/*"], false);
    repo.delegate("targets", "parent-b", &["team-b/*"], false);
    repo.delegate("parent-a", "release", &["team-a/*"], false);
    let signer_a = repo.signers["release"].clone();
    repo.delegate("parent-b", "release", &["team-b/*"], false);
    // release is signed with parent-a's key only.
    repo.signers.insert("release".into(), signer_a);
    repo.add_target("release", "team-a/f", b"trusted A");
    repo.add_target("release", "team-b/f", b"malicious B");
    repo.publish(&[
        "release",
        "parent-a",
        "parent-b",
        "targets",
        "snapshot",
        "timestamp",
    ]);
    let client = Client::new(&repo);
    let err = client
        .download(&repo, &["team-a/f", "team-b/f"])
        .expect_err("B does not vouch for release");
    assert!(matches!(err, Error::ThresholdNotMet { .. }), "{err}");
    assert_eq!(client.downloaded(), strs(&["team-a%2Ff"]));
}

#[test]
fn hostile_role_names_stay_inside_the_metadata_dir() {
    let mut repo = Repo::new();
    for name in ["../escape", "/abs", "?", "#"] {
        repo.delegate("targets", name, &["*"], false);
    }
    repo.publish(&[
        "../escape",
        "/abs",
        "?",
        "#",
        "targets",
        "snapshot",
        "timestamp",
    ]);
    let client = Client::new(&repo);
    let err = client.download(&repo, &["missing"]).expect_err("not found");
    assert!(matches!(err, Error::TargetNotFound { .. }), "{err}");
    assert!(
        client
            .requests()
            .contains(&"metadata/1...%2Fescape.json".to_owned())
    );
    assert_eq!(
        client.stored(),
        strs(&[
            "%23.json",
            "%2Fabs.json",
            "%3F.json",
            "..%2Fescape.json",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ])
    );
    assert!(!client.home.path().join("escape.json").exists());
    // A target path that would leave the target directory is refused before any fetch.
    let mut repo = Repo::new();
    repo.add_target("targets", "../x", b"x");
    repo.publish(&["targets", "snapshot", "timestamp"]);
    let client = Client::new(&repo);
    let err = client.download(&repo, &["../x"]).expect_err("unsafe path");
    assert!(matches!(err, Error::InvalidTargetName { .. }), "{err}");
    assert!(client.downloaded().is_empty());
}

#[test]
fn a_delegated_role_missing_from_snapshot_is_not_used() {
    let mut repo = Repo::new();
    repo.delegate("targets", "d", &["*"], false);
    repo.add_target("d", "f", b"f");
    repo.publish(&["d", "targets"]);
    repo.snapshot.meta.remove("d.json");
    repo.publish(&["snapshot", "timestamp"]);
    let client = Client::new(&repo);
    client.refresh(&repo).expect("top-level refresh");
    let err = client.download(&repo, &["f"]).expect_err("not in snapshot");
    assert!(matches!(err, Error::NotListed { .. }), "{err}");
}
