//! Staging target changes: `add`, `addhash` and `remove`, many targets per call (the command
//! line or a manifest file), each change in notary's changelist format.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};

use clap::Args;
use sha2::{Digest as _, Sha256, Sha512};
use sigil_tuf::FileMeta;
use sigil_tuf::changelist::{Change, ChangeKind};
use sigil_tuf::schema::{HashBytes, notary};

use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::input::Input;
use crate::repo::{PROGRESS_THRESHOLD, parse_gun};

use super::{encode, parse_targets_role, roles_or_targets, stage_and_maybe_publish};

/// Length, SHA-256 and SHA-512 of a file, read in chunks.
fn hash_file(path: &Path) -> Result<FileMeta, Error> {
    let mut file = File::open(path).map_err(|source| Error::Read {
        what: "target file",
        path: path.display().to_string(),
        source,
    })?;
    let mut sha256 = Sha256::new();
    let mut sha512 = Sha512::new();
    let mut length = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|source| Error::Read {
            what: "target file",
            path: path.display().to_string(),
            source,
        })?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        sha512.update(&buf[..n]);
        length += n as u64;
    }
    let mut meta = FileMeta::from_sha256(length, sha256.finalize().into());
    meta.hashes.insert(
        notary::SHA512.to_owned(),
        HashBytes(sha512.finalize().to_vec()),
    );
    Ok(meta)
}

/// Reads a manifest (`-` for standard input): one entry per line, blank lines and `#` comments
/// ignored; returns (line number, fields).
fn read_manifest(path: &Path) -> Result<Vec<(usize, String)>, Error> {
    let input = Input::from_arg(path);
    let reader: Box<dyn io::Read> = match &input {
        Input::Stdin => Box::new(io::stdin()),
        Input::Path(p) => Box::new(File::open(p).map_err(|e| input.read_error("manifest", e))?),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| input.read_error("manifest", e))?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            out.push((i + 1, line.to_owned()));
        }
    }
    Ok(out)
}

fn staged_message(count: usize, first: &str, gun: &str) -> String {
    if count == 1 {
        format!("Addition of target {first:?} to repository {gun:?} staged for next publish.")
    } else {
        format!("Addition of {count} targets to repository {gun:?} staged for next publish.")
    }
}

/// Reads `--custom FILE`: any JSON value, attached to every target of the call as its
/// `custom` data (notary's `add --custom`).
fn read_custom(path: Option<&Path>) -> Result<Option<serde_json::Value>, Error> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read(path).map_err(|source| Error::Read {
        what: "custom data",
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| Error::Usage(format!("{}: custom data must be JSON: {e}", path.display())))
}

/// Attaches `custom` (when given) to every target.
fn with_custom(
    mut targets: Vec<(String, FileMeta)>,
    custom: Option<serde_json::Value>,
) -> Vec<(String, FileMeta)> {
    if let Some(custom) = custom {
        for (_, meta) in &mut targets {
            meta.custom = Some(custom.clone());
        }
    }
    targets
}

fn add_changes(roles: &[String], targets: Vec<(String, FileMeta)>) -> Result<Vec<Change>, Error> {
    let mut changes = Vec::with_capacity(targets.len() * roles.len());
    for (name, meta) in targets {
        if name.is_empty() {
            return Err(Error::Usage("a target name must not be empty".into()));
        }
        for role in roles {
            changes.push(encode(&ChangeKind::AddTarget {
                role: role.clone(),
                name: name.clone(),
                meta: meta.clone(),
            })?);
        }
    }
    Ok(changes)
}

/// Stage targets (files, hashed here) for the next publish.
///
/// Give NAME FILE pairs, as many as you like, and/or --manifest LIST with one `NAME PATH` per
/// line (NAME without spaces; PATH is the rest of the line). Each file's length, SHA-256 and
/// SHA-512 are recorded, as `notary add` does.
#[derive(Debug, Args)]
#[command(
    override_usage = "sigil add <GUN> <NAME> <FILE> [<NAME> <FILE>...] [--custom JSON_FILE] [-r ROLE] [-p]\n       \
                            sigil add <GUN> --manifest <LIST> [--custom JSON_FILE] [-r ROLE] [-p]"
)]
pub(crate) struct AddArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// Target name and file, repeated.
    #[arg(value_name = "NAME FILE")]
    pub(crate) targets: Vec<String>,
    /// A file (or `-`) listing `NAME PATH` per line.
    #[arg(long, value_name = "LIST")]
    pub(crate) manifest: Option<PathBuf>,
    /// A JSON file whose content becomes every added target's custom data.
    #[arg(long, value_name = "JSON_FILE")]
    pub(crate) custom: Option<PathBuf>,
    /// Role to add to: targets (default) or a delegation such as targets/releases; repeatable.
    #[arg(short = 'r', long = "roles", value_name = "ROLE", value_parser = parse_targets_role)]
    pub(crate) roles: Vec<String>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub(crate) publish: bool,
}

impl AddArgs {
    /// Hashes and stages.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        if !self.targets.len().is_multiple_of(2) {
            return Err(Error::Usage(
                "targets come in NAME FILE pairs (an odd number of arguments was given)".into(),
            ));
        }
        let mut files: Vec<(String, PathBuf)> = self
            .targets
            .chunks(2)
            .map(|pair| (pair[0].clone(), PathBuf::from(&pair[1])))
            .collect();
        if let Some(manifest) = &self.manifest {
            for (line, text) in read_manifest(manifest)? {
                let Some((name, path)) = text.split_once(char::is_whitespace) else {
                    return Err(Error::Usage(format!(
                        "{} line {line}: expected `NAME PATH`",
                        manifest.display()
                    )));
                };
                files.push((name.to_owned(), PathBuf::from(path.trim())));
            }
        }
        if files.is_empty() {
            return Err(Error::Usage(
                "nothing to add: give NAME FILE pairs or --manifest LIST".into(),
            ));
        }
        let custom = read_custom(self.custom.as_deref())?;
        let total = files.len();
        let targets = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(files.len());
            for (i, (name, path)) in files.into_iter().enumerate() {
                out.push((name, hash_file(&path)?));
                if total >= PROGRESS_THRESHOLD && (i + 1) % PROGRESS_THRESHOLD == 0 {
                    eprintln!("hashed {}/{total} files", i + 1);
                }
            }
            Ok::<_, Error>(out)
        })
        .await
        .map_err(|e| Error::Internal(format!("hashing failed: {e}")))??;
        let first = targets[0].0.clone();
        let targets = with_custom(targets, custom);
        let changes = add_changes(&roles_or_targets(&self.roles), targets)?;
        let message = staged_message(total, &first, &self.gun);
        stage_and_maybe_publish(global, &self.gun, &changes, &message, self.publish).await
    }
}

fn parse_hex_digest(text: &str, algorithm: &str, len: usize) -> Result<Vec<u8>, String> {
    let text = text.strip_prefix(&format!("{algorithm}:")).unwrap_or(text);
    let bytes = hex::decode(text).map_err(|_| format!("{algorithm} {text:?} is not hex"))?;
    if bytes.len() != len {
        return Err(format!(
            "{algorithm} must be {} hex characters, got {}",
            len * 2,
            text.len()
        ));
    }
    Ok(bytes)
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("size {text:?} is not a number of bytes"))
}

fn meta_from_hashes(size: u64, sha256: Option<Vec<u8>>, sha512: Option<Vec<u8>>) -> FileMeta {
    let mut meta = FileMeta::from_sha256(size, [0; 32]);
    meta.hashes.clear();
    if let Some(h) = sha256 {
        meta.hashes.insert(notary::SHA256.to_owned(), HashBytes(h));
    }
    if let Some(h) = sha512 {
        meta.hashes.insert(notary::SHA512.to_owned(), HashBytes(h));
    }
    meta
}

/// Stage targets known by size and hash (a docker tag → its manifest digest and size).
///
/// One target: NAME SIZE with --sha256 HEX (and/or --sha512 HEX). Several: NAME SIZE SHA256
/// triples, or --manifest LIST with one `NAME SIZE SHA256` per line (`sha256:` prefixes
/// allowed, `-` reads standard input). Thousands per call are fine.
#[derive(Debug, Args)]
#[command(
    override_usage = "sigil addhash <GUN> <NAME> <SIZE> --sha256 <HEX> [--sha512 <HEX>] [--custom JSON_FILE] [-r ROLE] [-p]\n       \
                      sigil addhash <GUN> <NAME> <SIZE> <SHA256> [<NAME> <SIZE> <SHA256>...] [--custom JSON_FILE] [-r ROLE] [-p]\n       \
                      sigil addhash <GUN> --manifest <LIST> [--custom JSON_FILE] [-r ROLE] [-p]"
)]
pub(crate) struct AddhashArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// NAME SIZE (with --sha256/--sha512), or NAME SIZE SHA256 triples.
    #[arg(value_name = "NAME SIZE")]
    pub(crate) targets: Vec<String>,
    /// SHA-256 of the single target, hex.
    #[arg(long, value_name = "HEX")]
    pub(crate) sha256: Option<String>,
    /// SHA-512 of the single target, hex.
    #[arg(long, value_name = "HEX")]
    pub(crate) sha512: Option<String>,
    /// A file (or `-`) listing `NAME SIZE SHA256` per line.
    #[arg(long, value_name = "LIST")]
    pub(crate) manifest: Option<PathBuf>,
    /// A JSON file whose content becomes every added target's custom data.
    #[arg(long, value_name = "JSON_FILE")]
    pub(crate) custom: Option<PathBuf>,
    /// Role to add to: targets (default) or a delegation; repeatable.
    #[arg(short = 'r', long = "roles", value_name = "ROLE", value_parser = parse_targets_role)]
    pub(crate) roles: Vec<String>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub(crate) publish: bool,
}

impl AddhashArgs {
    /// Parses the targets given on the command line and in the manifest.
    pub(crate) fn collect(&self) -> Result<Vec<(String, FileMeta)>, Error> {
        let usage = |m: String| Error::Usage(m);
        let mut out = Vec::new();
        if self.sha256.is_some() || self.sha512.is_some() {
            let [name, size] = self.targets.as_slice() else {
                return Err(usage(
                    "with --sha256/--sha512 give exactly one NAME SIZE".into(),
                ));
            };
            let sha256 = self
                .sha256
                .as_deref()
                .map(|h| parse_hex_digest(h, "sha256", 32))
                .transpose()
                .map_err(usage)?;
            let sha512 = self
                .sha512
                .as_deref()
                .map(|h| parse_hex_digest(h, "sha512", 64))
                .transpose()
                .map_err(usage)?;
            out.push((
                name.clone(),
                meta_from_hashes(parse_size(size).map_err(usage)?, sha256, sha512),
            ));
        } else {
            if !self.targets.len().is_multiple_of(3) {
                return Err(usage(
                    "give NAME SIZE --sha256 HEX, or NAME SIZE SHA256 triples".into(),
                ));
            }
            for t in self.targets.chunks(3) {
                out.push((t[0].clone(), triple(&t[1], &t[2]).map_err(usage)?));
            }
        }
        if let Some(manifest) = &self.manifest {
            for (line, text) in read_manifest(manifest)? {
                let fields: Vec<&str> = text.split_whitespace().collect();
                let [name, size, sha256] = fields.as_slice() else {
                    return Err(usage(format!(
                        "{} line {line}: expected `NAME SIZE SHA256`",
                        manifest.display()
                    )));
                };
                let meta = triple(size, sha256)
                    .map_err(|e| usage(format!("{} line {line}: {e}", manifest.display())))?;
                out.push(((*name).to_owned(), meta));
            }
        }
        if out.is_empty() {
            return Err(usage(
                "nothing to add: give NAME SIZE --sha256 HEX, triples, or --manifest LIST".into(),
            ));
        }
        Ok(out)
    }

    /// Stages.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let targets = with_custom(self.collect()?, read_custom(self.custom.as_deref())?);
        let total = targets.len();
        let first = targets[0].0.clone();
        let changes = add_changes(&roles_or_targets(&self.roles), targets)?;
        let message = staged_message(total, &first, &self.gun);
        stage_and_maybe_publish(global, &self.gun, &changes, &message, self.publish).await
    }
}

fn triple(size: &str, sha256: &str) -> Result<FileMeta, String> {
    Ok(meta_from_hashes(
        parse_size(size)?,
        Some(parse_hex_digest(sha256, "sha256", 32)?),
        None,
    ))
}

/// Stage the removal of targets.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// Target names.
    #[arg(value_name = "NAME", required = true)]
    pub(crate) names: Vec<String>,
    /// Role to remove from: targets (default) or a delegation; repeatable.
    #[arg(short = 'r', long = "roles", value_name = "ROLE", value_parser = parse_targets_role)]
    pub(crate) roles: Vec<String>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub(crate) publish: bool,
}

impl RemoveArgs {
    /// Stages.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut changes = Vec::new();
        for name in &self.names {
            for role in roles_or_targets(&self.roles) {
                changes.push(encode(&ChangeKind::RemoveTarget {
                    role,
                    name: name.clone(),
                })?);
            }
        }
        let message = if self.names.len() == 1 {
            format!(
                "Removal of {} from {} staged for next publish.",
                self.names[0], self.gun
            )
        } else {
            format!(
                "Removal of {} targets from {} staged for next publish.",
                self.names.len(),
                self.gun
            )
        };
        stage_and_maybe_publish(global, &self.gun, &changes, &message, self.publish).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from([&["sigil"], args].concat())
            .expect("parse")
            .command
    }

    #[test]
    fn add_takes_pairs_roles_and_publish() {
        match parse(&[
            "add",
            "example.com/app",
            "a",
            "a.txt",
            "b",
            "b.txt",
            "-r",
            "targets/releases",
            "-p",
        ]) {
            Command::Add(a) => {
                assert_eq!(a.targets, ["a", "a.txt", "b", "b.txt"]);
                assert_eq!(a.roles, ["targets/releases"]);
                assert!(a.publish);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["sigil", "add", "example.com/app", "a", "-r", "snapshot"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["sigil", "add", "../x", "a", "b"]).is_err());
    }

    #[test]
    fn addhash_forms_parse_to_file_meta() {
        let hex = "ab".repeat(32);
        let one = match parse(&["addhash", "g/x", "v1", "528", "--sha256", &hex]) {
            Command::Addhash(a) => a.collect().expect("one"),
            other => panic!("{other:?}"),
        };
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, "v1");
        assert_eq!(one[0].1.length, 528);
        assert_eq!(one[0].1.sha256_hex(), Some(hex.clone()));
        assert!(!one[0].1.hashes.contains_key("sha512"));

        let digest = format!("sha256:{hex}");
        let many = match parse(&["addhash", "g/x", "a", "1", &digest, "b", "2", &hex]) {
            Command::Addhash(a) => a.collect().expect("triples"),
            other => panic!("{other:?}"),
        };
        assert_eq!(many.len(), 2);
        assert_eq!(many[1].1.length, 2);

        let dir = tempfile::tempdir().expect("tmp");
        let manifest = dir.path().join("tags.txt");
        std::fs::write(
            &manifest,
            format!("# tag size digest\n\nlatest 528 {digest}\n  v2\t7 {hex}\n"),
        )
        .expect("write");
        let from_file = match parse(&[
            "addhash",
            "g/x",
            "--manifest",
            manifest.to_str().expect("utf8"),
        ]) {
            Command::Addhash(a) => a.collect().expect("manifest"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            from_file
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["latest", "v2"]
        );
        std::fs::write(&manifest, "latest 528\n").expect("write");
        match parse(&[
            "addhash",
            "g/x",
            "--manifest",
            manifest.to_str().expect("utf8"),
        ]) {
            Command::Addhash(a) => {
                let err = a.collect().expect_err("bad line");
                assert!(err.to_string().contains("line 1"), "{err}");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            vec!["addhash", "g/x", "v1", "528", "--sha256", "abc"],
            vec!["addhash", "g/x", "v1", "x", "--sha256", &hex],
            vec!["addhash", "g/x", "v1", "528"],
            vec!["addhash", "g/x"],
        ] {
            match parse(&bad) {
                Command::Addhash(a) => assert!(a.collect().is_err(), "{bad:?}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn files_are_hashed_like_notary_add() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        let content = vec![7u8; 600_000];
        std::fs::write(&path, &content).expect("write");
        assert_eq!(
            hash_file(&path).expect("hash"),
            FileMeta::from_bytes(&content)
        );
        assert!(hash_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn custom_data_is_json_and_goes_on_every_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"tag":"v1"}"#).expect("write");
        let custom = read_custom(Some(&good)).expect("JSON").expect("some");
        let targets = with_custom(
            vec![
                ("a".into(), FileMeta::from_bytes(b"a")),
                ("b".into(), FileMeta::from_bytes(b"b")),
            ],
            Some(custom.clone()),
        );
        assert!(
            targets
                .iter()
                .all(|(_, m)| m.custom.as_ref() == Some(&custom))
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "tag: v1").expect("write");
        let err = read_custom(Some(&bad)).expect_err("not JSON").to_string();
        assert!(err.contains("custom data must be JSON"), "{err}");
        assert!(read_custom(None).expect("none").is_none());
    }

    #[test]
    fn changes_are_staged_per_role() {
        let changes = add_changes(
            &["targets".into(), "targets/releases".into()],
            vec![("a".into(), FileMeta::from_bytes(b"a"))],
        )
        .expect("changes");
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[1].role, "targets/releases");
        assert_eq!(changes[1].path, "a");
        assert!(
            add_changes(
                &["targets".into()],
                vec![(String::new(), FileMeta::from_bytes(b""))]
            )
            .is_err()
        );
    }
}
