//! Replays the committed fuzz inputs as ordinary tests: every file under
//! `fuzz/corpus/<target>/` (seeds and what the fuzzer kept) and `fuzz/crashes/<target>/`
//! (inputs that once broke a property, kept as regressions) must pass its harness.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    out.sort();
    out
}

fn replay(name: &str) {
    let target = sigil_fuzz::target(name).expect("registered target");
    let corpus = files(&root().join("corpus").join(name));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{name}/ is empty: seed it with real inputs"
    );
    let crashes = files(&root().join("crashes").join(name));
    for file in corpus.iter().chain(&crashes) {
        let data = std::fs::read(file).expect("read input");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (target.run)(&data))) {
            eprintln!("{name}: {} breaks the harness", file.display());
            resume_unwind(panic);
        }
    }
}

#[test]
fn cjson_corpus() {
    replay("cjson");
}

#[test]
fn notary_corpus() {
    replay("notary");
}

#[test]
fn tuf1_corpus() {
    replay("tuf1");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn policy_corpus() {
    replay("policy");
}

#[test]
fn request_corpus() {
    replay("request");
}

#[test]
fn signable_corpus() {
    replay("signable");
}

/// Each registered target has a corpus (and a test above), and no directory is orphaned.
#[test]
fn corpus_directories_match_the_targets() {
    let names: Vec<&str> = sigil_fuzz::TARGETS.iter().map(|t| t.name).collect();
    for dir in ["corpus", "crashes"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.expect("dir entry");
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                names.contains(&name.as_str()),
                "fuzz/{dir}/{name} belongs to no target"
            );
        }
    }
    let this = std::fs::read_to_string(root().join("tests/corpus.rs")).expect("read self");
    for name in names {
        assert!(
            this.contains(&format!("replay(\"{name}\")")),
            "target {name} has no replay test"
        );
    }
}
