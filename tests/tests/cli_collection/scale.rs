//! 10,000 targets in one publish, one signature per role.

use super::*;

#[test]
fn ten_thousand_targets_go_out_in_one_publish_with_one_signature_per_role() {
    let env = Env::start("");
    let gun = "e2e.example/bulk";
    let sigil = env.sigil("ci");
    sigil.ok(&["init", gun, "-p"]);
    let manifest = env.dir("files").join("tags.txt");
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!(
            "tag-{i:05} {} sha256:{}\n",
            1000 + i,
            sha256_hex(format!("manifest {i}").as_bytes())
        ));
    }
    fs::write(&manifest, text).expect("manifest");
    let signs_before = read_audit_lines(&env.dev.audit_log())
        .iter()
        .filter(|l| l.op == "sign" && l.uid.is_some())
        .count();
    let started = Instant::now();
    let out = sigil.run(&[
        "addhash",
        gun,
        "--manifest",
        manifest.to_str().expect("utf8"),
        "-p",
    ]);
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("applying 10000 staged changes"),
        "{}",
        out.stderr
    );
    eprintln!("sigil addhash --manifest (10,000 targets) -p: {elapsed:?}");
    let signs: Vec<_> = read_audit_lines(&env.dev.audit_log())
        .into_iter()
        .filter(|l| l.op == "sign" && l.uid.is_some())
        .skip(signs_before)
        .collect();
    let roles: Vec<&str> = signs.iter().map(|l| l.role.as_str()).collect();
    assert_eq!(
        roles.len(),
        2,
        "one targets and one snapshot signature: {roles:?}"
    );
    assert!(
        roles.contains(&"targets") && roles.contains(&"snapshot"),
        "{roles:?}"
    );
    let rows = notary_rows(&env.notary("notary-reader").ok(&["list", gun]));
    assert_eq!(rows.len(), 10_000);
    assert_eq!(
        rows["tag-09999"],
        (sha256_hex(b"manifest 9999"), 10_999, "targets".to_owned())
    );
    assert!(
        sigil
            .json(&["status", gun])
            .as_array()
            .expect("array")
            .is_empty()
    );
}
