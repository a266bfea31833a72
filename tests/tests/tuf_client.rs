//! `sigil tuf client` (the real binary) against a TUF 1.0 repository built by python-tuf's
//! Metadata API (tests/py/tuf1_repo.py: root rotated to v2, a delegation by paths, two by
//! path_hash_prefixes, consistent snapshots), served over HTTP by Python's http.server on a
//! free loopback port: the three targets download through the delegations and match; a
//! tampered byte in a served target is refused with exit 1 and nothing in the target dir; a
//! usage error exits 1 too (the CLIENT-CLI protocol).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sigil_e2e::notary::{Process, free_port};
use sigil_e2e::{sigil_cli, workspace_root};

fn python() -> PathBuf {
    sigil_e2e::python::tuf_venv()
}

/// Builds the repository in `dir`; returns the targets and their contents.
fn build_repo(python: &Path, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let script = workspace_root().join("tests/py/tuf1_repo.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(dir)
        .output()
        .expect("running tuf1_repo.py");
    assert!(
        out.status.success(),
        "tuf1_repo.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    report["targets"]
        .as_object()
        .expect("targets")
        .iter()
        .map(|(path, hex)| {
            let bytes = hex::decode(hex.as_str().expect("hex")).expect("hex");
            (path.clone(), bytes)
        })
        .collect()
}

/// Python's http.server on 127.0.0.1:`port` serving `dir`, up when it accepts connections.
fn serve(python: &Path, dir: &Path, port: u16, log: &Path) -> Process {
    let mut server = Process::spawn(
        "http.server",
        Command::new(python)
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir),
        log,
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        server.assert_running();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "http.server did not listen on {port}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn client(args: &[&str]) -> Output {
    Command::new(sigil_cli())
        .args(["tuf", "client"])
        .args(args)
        .output()
        .expect("running sigil tuf client")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn sigil_client_reads_a_python_tuf_repository_and_refuses_a_tampered_byte() {
    let python = python();
    let home = tempfile::tempdir().expect("tempdir");
    let repo = home.path().join("repo");
    let targets = build_repo(&python, &repo);
    let port = free_port();
    let server = serve(&python, &repo, port, &home.path().join("http.log"));
    let metadata_url = format!("http://127.0.0.1:{port}/metadata");
    let targets_url = format!("http://127.0.0.1:{port}/targets/");
    let root = repo.join("metadata/1.root.json");

    let md = home.path().join("md");
    let td = home.path().join("td");
    std::fs::create_dir(&td).expect("mkdir");
    let (md_s, td_s) = (md.to_str().expect("utf-8"), td.to_str().expect("utf-8"));
    let init = client(&[
        "--metadata-dir",
        md_s,
        "init",
        root.to_str().expect("utf-8"),
    ]);
    assert!(init.status.success(), "{}", text(&init));

    let mut args = vec!["--metadata-url", &metadata_url, "--metadata-dir", md_s];
    for (path, _) in &targets {
        args.extend(["--target-name", path.as_str()]);
    }
    args.extend([
        "--target-base-url",
        &targets_url,
        "--target-dir",
        td_s,
        "download",
    ]);
    let out = client(&args);
    assert!(out.status.success(), "{}", text(&out));
    for (path, content) in &targets {
        let stored = td.join(path.replace('/', "%2F"));
        assert_eq!(
            &std::fs::read(&stored).expect("downloaded"),
            content,
            "{path}"
        );
    }
    // Unversioned names; root is v2 (the rotation); other-bins was never needed.
    assert_eq!(
        names(&md),
        [
            "bins.json",
            "releases.json",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    let root_now: serde_json::Value =
        serde_json::from_slice(&std::fs::read(md.join("root.json")).expect("root")).expect("json");
    assert_eq!(root_now["signed"]["version"], 2);

    // One flipped byte in the served bins/tool.bin: refused, exit 1, nothing written.
    let bins = repo.join("targets/bins");
    let served = bins.join(names(&bins).pop().expect("served tool.bin"));
    let mut bytes = std::fs::read(&served).expect("read");
    bytes[0] ^= 0x01;
    std::fs::write(&served, &bytes).expect("tamper");
    let fresh_md = home.path().join("md2");
    let fresh_td = home.path().join("td2");
    std::fs::create_dir(&fresh_td).expect("mkdir");
    let (md2, td2) = (
        fresh_md.to_str().expect("utf-8"),
        fresh_td.to_str().expect("utf-8"),
    );
    let init = client(&["--metadata-dir", md2, "init", root.to_str().expect("utf-8")]);
    assert!(init.status.success(), "{}", text(&init));
    let out = client(&[
        "--metadata-dir",
        md2,
        "--metadata-url",
        &metadata_url,
        "--target-base-url",
        &targets_url,
        "--target-dir",
        td2,
        "--target-name",
        "bins/tool.bin",
        "download",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bins/tool.bin") && stderr.contains("differs"),
        "{stderr}"
    );
    assert!(names(&fresh_td).is_empty(), "{:?}", names(&fresh_td));

    // The artifact cache: the first client still has the good copy and does not refetch it
    // (a refetch would now fail on the tampered file).
    let out = client(&args);
    assert!(out.status.success(), "{}", text(&out));

    // A usage error exits 1, not sigil's usual 2.
    let out = client(&["--metadata-dir", md_s, "frobnicate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = client(&["--metadata-dir", md_s, "download"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    server.stop();
}
