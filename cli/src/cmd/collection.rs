//! Trusted collections with the notary client's verbs: `init`, `add`, `addhash`, `remove`,
//! `list`, `lookup`, `status`, `reset`, `publish`, `delete`, and the collection form of
//! `verify`. Changes are staged in the trust dir's changelist (notary's format) until
//! `publish` (or `-p`) applies them all, signs each changed role once through sigild and sends
//! them to the server in one atomic publish.
//!
//! `add` and `addhash` take many targets per call — several on the command line or a manifest
//! file — so a CI job can stage thousands and publish them with one signature per role.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Args;
use serde::Serialize;
use sha2::{Digest as _, Sha256, Sha512};
use sigil_tuf::changelist::{Change, ChangeKind};
use sigil_tuf::schema::{HashBytes, check_targets_role, notary};
use sigil_tuf::verify::TargetEntry;
use sigil_tuf::x509::{Certificate, ROOT_CERT_LIFETIME, build_root_certificate};
use sigil_tuf::{CollectionKeys, FileMeta, TufKey, VerifiedCollection};

use crate::cli::GlobalArgs;
use crate::daemon_client::{DaemonClient, KeyFilter};
use crate::daemon_signer::{DaemonSigner, find_or_generate};
use crate::error::Error;
use crate::input::Input;
use crate::key_ref::KeyId;
use crate::output;
use crate::repo::{PROGRESS_THRESHOLD, Repo, parse_gun};
use crate::trust_dir::TrustDir;

/// Parses a `-r` role: `targets` or a delegation such as `targets/releases`.
pub(crate) fn parse_targets_role(role: &str) -> Result<String, String> {
    check_targets_role(role).map_err(|e| e.to_string())?;
    Ok(role.to_owned())
}

/// The roles given with `-r`, or `targets`.
fn roles_or_targets(roles: &[String]) -> Vec<String> {
    if roles.is_empty() {
        vec!["targets".to_owned()]
    } else {
        roles.to_vec()
    }
}

fn encode(kind: &ChangeKind) -> Result<Change, Error> {
    Change::from_kind(kind).map_err(|e| Error::tuf("staging a change", e))
}

/// Publishes every staged change of `repo` and removes them from the changelist once the
/// server accepted them.
pub(crate) async fn publish_staged(global: &GlobalArgs, repo: &Repo) -> Result<(), Error> {
    let staged = repo.trust.staged(&repo.gun)?;
    eprintln!("Pushing changes to {}", repo.gun);
    let daemon = DaemonClient::connect(&global.socket).await?;
    let roles = repo.publish(&daemon, &staged).await?;
    let names: Vec<String> = staged.into_iter().map(|(name, _)| name).collect();
    repo.trust.remove_staged(&repo.gun, &names)?;
    if roles.is_empty() {
        output::print_line(&format!("No changes to publish for {}", repo.gun))
    } else {
        output::print_line(&format!(
            "Successfully published changes for repository {}",
            repo.gun
        ))
    }
}

/// Stages `changes` for `gun`, then publishes when `-p` was given.
async fn stage_and_maybe_publish(
    global: &GlobalArgs,
    gun: &str,
    changes: &[Change],
    message: &str,
    publish: bool,
) -> Result<(), Error> {
    let trust = Repo::trust_dir(global)?;
    trust.stage(gun, changes)?;
    output::print_line(message)?;
    if publish {
        publish_staged(global, &Repo::open(global, gun)?).await?;
    }
    Ok(())
}

/// Initialize a trusted collection: keys on the token, root certificate, server timestamp key.
///
/// Keys the collection needs and sigild does not hold yet are generated on the token (on
/// sigild's only backend, or the one named with --backend); keys sigild already holds for
/// (GUN, role) are reused. The root key gets a self-signed ecdsa-x509 certificate (CN = GUN,
/// 10 years) signed on the token, or the certificate given with --rootcert (e.g. one your
/// organisation's CA issued for the token's key, for clients that pin that CA with
/// `trust_pinning.ca`); the timestamp key is the server's. The new collection is
/// published by `sigil publish GUN` (or -p).
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The collection (GUN), e.g. example.com/app.
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// Use this existing root key (a sigild key id, ECDSA P-256), e.g. one shared by several
    /// collections, instead of the collection's own.
    #[arg(long, value_name = "KEY_ID")]
    pub(crate) root_key: Option<KeyId>,
    /// Backend to generate missing keys on (may be left out when sigild has one backend).
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
    /// The root key's certificate (PEM, CN = GUN; intermediates may follow it) instead of a
    /// self-signed one. It must certify the root key: --root-key, else the sigild key it names.
    #[arg(long, value_name = "CERT_FILE")]
    pub(crate) rootcert: Option<PathBuf>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub(crate) publish: bool,
}

/// A root key certificate given with `--rootcert`: the PEM to publish (each certificate
/// re-encoded, leaf first) and the key it certifies.
struct GivenRootCert {
    pem: String,
    key: sigil_tuf::key::PublicKey,
}

impl GivenRootCert {
    /// Reads and checks the file: a certificate the notary client would accept as the root key
    /// of `gun` now (CN, validity, no SHA-1, not a CA).
    fn read(path: &Path, gun: &str) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            what: "root certificate",
            path: path.display().to_string(),
            source,
        })?;
        let bad = |why: String| Error::Usage(format!("--rootcert {}: {why}", path.display()));
        let chain = Certificate::from_pem_bundle(&text).map_err(|e| bad(e.to_string()))?;
        let leaf = &chain[0];
        leaf.check_root_leaf(gun, Some(SystemTime::now()))
            .map_err(bad)?;
        let key = leaf.public_key().map_err(|e| bad(e.to_string()))?;
        let mut pem = String::new();
        for cert in &chain {
            pem.push_str(&cert.to_pem().map_err(|e| bad(e.to_string()))?);
        }
        Ok(Self { pem, key })
    }
}

impl InitArgs {
    /// Creates the keys and the unpublished collection.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = Repo::open(global, &self.gun)?;
        let gun = &self.gun;
        if repo.server.role(gun, "root", None).await?.is_some() {
            return Err(Error::Usage(format!(
                "{gun} already has trust data on {}; edit it with add/remove/publish, or remove \
                 it first with `sigil delete {gun} --remote`",
                repo.server.url()
            )));
        }
        let given = match &self.rootcert {
            Some(path) => Some(GivenRootCert::read(path, gun)?),
            None => None,
        };
        let daemon = DaemonClient::connect(&global.socket).await?;
        let backend = self.backend.as_deref();
        let root = match (&self.root_key, &given) {
            (Some(id), _) => {
                let key = daemon.clone().public_key(id).await?;
                eprintln!("using root key {}", key.key_id);
                key
            }
            (None, Some(cert)) => {
                let keys = daemon.clone().list_keys(&KeyFilter::default()).await?;
                let key = keys
                    .into_iter()
                    .find(|k| k.public_key == cert.key)
                    .ok_or_else(|| {
                        Error::Usage(
                            "no sigild key you may use is the one --rootcert certifies: \
                             generate the root key first (sigil key generate --role root \
                             --gun GUN), have the certificate issued for it, or name it with \
                             --root-key"
                                .into(),
                        )
                    })?;
                eprintln!(
                    "using root key {} (the key --rootcert certifies)",
                    key.key_id
                );
                key
            }
            (None, None) => find_or_generate(&daemon, gun, "root", backend).await?,
        };
        if let Some(cert) = &given
            && cert.key != root.public_key
        {
            return Err(Error::Usage(format!(
                "--rootcert certifies another key than root key {}",
                root.key_id
            )));
        }
        let targets = find_or_generate(&daemon, gun, "targets", backend).await?;
        let snapshot = find_or_generate(&daemon, gun, "snapshot", backend).await?;
        let timestamp = repo.server.server_key(gun, "timestamp").await?;
        let root = DaemonSigner::new(&daemon, root)?;
        let targets = DaemonSigner::new(&daemon, targets)?;
        let snapshot = DaemonSigner::new(&daemon, snapshot)?;
        let pem = match given {
            Some(cert) => cert.pem,
            None => build_root_certificate(gun, &root, SystemTime::now(), ROOT_CERT_LIFETIME)
                .await
                .map_err(|e| Error::tuf(format!("making the root certificate of {gun}"), e))?
                .to_pem()
                .map_err(|e| Error::tuf("encoding the root certificate", e))?,
        };
        let cert_key = TufKey::from_certificate_pem(&pem)
            .map_err(|e| Error::tuf("the root certificate", e))?;
        let keys = CollectionKeys {
            root: vec![cert_key.clone()],
            targets: vec![TufKey::from_public_key(&targets.info().public_key)],
            snapshot: vec![TufKey::from_public_key(&snapshot.info().public_key)],
            timestamp: vec![timestamp.clone()],
        };
        let editor = sigil_tuf::CollectionEditor::create(gun, &keys, SystemTime::now())
            .map_err(|e| Error::tuf(format!("creating {gun}"), e))?;
        // Only root is signed now; targets and snapshot v1 are signed once, by the publish
        // (a signer with version floors would refuse a second, different v1).
        let root_file = editor
            .sign_root(&[&root as &dyn sigil_tuf::Signer])
            .await
            .map_err(|e| Error::tuf(format!("signing the root of {gun}"), e))?;
        repo.trust.clear_metadata(gun)?;
        repo.trust.write(gun, "root", &root_file)?;
        eprintln!(
            "root key {} (certificate key id {}), targets key {}, snapshot key {} on the token; \
             timestamp key {} on the server",
            root.info().key_id,
            cert_key.id(),
            targets.info().key_id,
            snapshot.info().key_id,
            timestamp.id()
        );
        if self.publish {
            publish_staged(global, &repo).await
        } else {
            output::print_line(&format!(
                "Initialized {gun}; run `sigil publish {gun}` to publish it"
            ))
        }
    }
}

/// Publish every staged change of a collection.
///
/// Fetches and verifies the collection, applies the changelist, signs each changed role once
/// through sigild (snapshot too when its key is on a token you may use; otherwise the server
/// signs it) and sends everything in one atomic publish.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
}

impl PublishArgs {
    /// Publishes.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        publish_staged(global, &Repo::open(global, &self.gun)?).await
    }
}

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

/// `--offline` for the commands that only read a collection.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct OfflineArg {
    /// Read the trust dir's cache of the last verified read instead of the server: verified
    /// again (signatures, hashes, expiry), no network. Without it an unreachable server is an
    /// error, never a silent fall-back to possibly stale data.
    #[arg(long)]
    pub(crate) offline: bool,
}

/// Fetches and verifies; no trust data is an error.
pub(crate) async fn fetch_verified(repo: &Repo) -> Result<VerifiedCollection, Error> {
    let verified = repo.fetch().await?;
    verified.ok_or_else(|| no_collection(repo))
}

/// [`fetch_verified`] for commands that only read; with `offline`, the trust dir's cache of
/// the last verified read instead, verified again and without contacting the server.
pub(crate) async fn fetch_verified_for_read(
    repo: &Repo,
    offline: bool,
) -> Result<VerifiedCollection, Error> {
    if !offline {
        return fetch_verified(repo).await;
    }
    repo.cached().await?.ok_or_else(|| Error::NothingCached {
        gun: repo.gun.clone(),
    })
}

fn no_collection(repo: &Repo) -> Error {
    Error::NoCollection {
        gun: repo.gun.clone(),
        server: repo.server.url().to_owned(),
    }
}

/// A target as `--json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct TargetJson {
    name: String,
    /// Hex SHA-256, when listed.
    sha256: Option<String>,
    /// Hex SHA-512, when listed.
    sha512: Option<String>,
    length: u64,
    role: String,
    /// The target's custom data, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<serde_json::Value>,
}

impl From<&TargetEntry> for TargetJson {
    fn from(t: &TargetEntry) -> Self {
        Self {
            name: t.name.clone(),
            sha256: t.meta.sha256_hex(),
            sha512: t.meta.hashes.get(notary::SHA512).map(|h| hex::encode(&h.0)),
            length: t.meta.length,
            role: t.role.clone(),
            custom: t.meta.custom.clone(),
        }
    }
}

/// The digest column: hex SHA-256, or `sha512:<hex>` for a target listed without one.
fn digest(t: &TargetEntry) -> String {
    match t.meta.sha256_hex() {
        Some(h) => h,
        None => t.meta.hashes.get(notary::SHA512).map_or_else(
            || "-".to_owned(),
            |h| format!("sha512:{}", hex::encode(&h.0)),
        ),
    }
}

/// List the targets of a collection, verified.
///
/// Columns NAME DIGEST SIZE (BYTES) ROLE, as `notary list`; delegated roles are walked too.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// Only targets under these roles (and their delegations).
    #[arg(short = 'r', long = "roles", value_name = "ROLE", value_parser = parse_targets_role)]
    pub(crate) roles: Vec<String>,
    #[command(flatten)]
    pub(crate) offline: OfflineArg,
}

impl ListArgs {
    /// Lists.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = Repo::open(global, &self.gun)?;
        let verified = fetch_verified_for_read(&repo, self.offline.offline).await?;
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        let targets = verified.list_targets(&roles);
        if global.json {
            let out: Vec<TargetJson> = targets.iter().map(TargetJson::from).collect();
            return output::print_json(&out);
        }
        if targets.is_empty() {
            eprintln!("No targets present in this repository.");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = targets
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    digest(t),
                    t.meta.length.to_string(),
                    t.role.clone(),
                ]
            })
            .collect();
        output::print(&output::notary_table(
            &["NAME", "DIGEST", "SIZE (BYTES)", "ROLE"],
            &rows,
        ))
    }
}

/// Look one target up, verified: prints `NAME sha256:HEX SIZE`.
#[derive(Debug, Args)]
pub(crate) struct LookupArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// The target name.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Look only under these roles (and their delegations).
    #[arg(short = 'r', long = "roles", value_name = "ROLE", value_parser = parse_targets_role)]
    pub(crate) roles: Vec<String>,
    #[command(flatten)]
    pub(crate) offline: OfflineArg,
}

impl LookupArgs {
    /// Looks up.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = Repo::open(global, &self.gun)?;
        let verified = fetch_verified_for_read(&repo, self.offline.offline).await?;
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        let entry = verified
            .lookup(&self.name, &roles)
            .map_err(|e| Error::tuf(format!("looking up {} in {}", self.name, self.gun), e))?;
        if global.json {
            return output::print_json(&TargetJson::from(&entry));
        }
        let digest = match entry.meta.sha256_hex() {
            Some(h) => format!("sha256:{h}"),
            None => digest(&entry),
        };
        output::print_line(&format!(
            "{} {digest} {}",
            output::escape(&entry.name),
            entry.meta.length
        ))
    }
}

/// Checks content read from `input` against target `name` of `gun` (`sigil verify GUN NAME`),
/// and writes it to stdout unless `quiet`, like `notary verify`.
pub(crate) async fn verify_target(
    global: &GlobalArgs,
    gun: &str,
    name: &str,
    input: &Input,
    quiet: bool,
    offline: bool,
) -> Result<(), Error> {
    let gun = parse_gun(gun).map_err(Error::Usage)?;
    let repo = Repo::open(global, &gun)?;
    let verified = fetch_verified_for_read(&repo, offline).await?;
    let content = input.read_all("content to verify").await?;
    let entry = verified
        .verify_target(name, &content, &[])
        .map_err(|e| match e {
            e @ (sigil_tuf::Error::LengthMismatch { .. }
            | sigil_tuf::Error::HashMismatch { .. }) => Error::TargetMismatch(format!(
                "{input} does NOT match target {name:?} of {gun}: {e}"
            )),
            e => Error::tuf(format!("verifying {name} in {gun}"), e),
        })?;
    if global.json {
        #[derive(Serialize)]
        struct Verified<'a> {
            valid: bool,
            gun: &'a str,
            #[serde(flatten)]
            target: TargetJson,
        }
        return output::print_json(&Verified {
            valid: true,
            gun: &gun,
            target: TargetJson::from(&entry),
        });
    }
    if quiet {
        eprintln!(
            "{name} verified against {gun} ({}, {} bytes)",
            entry.role, entry.meta.length
        );
        return Ok(());
    }
    use std::io::Write as _;
    let mut out = io::stdout().lock();
    out.write_all(&content)
        .and_then(|()| out.flush())
        .map_err(Error::Stdout)
}

/// A staged change as `status --json` prints it.
#[derive(Debug, Serialize)]
struct ChangeJson<'a> {
    index: usize,
    action: &'a str,
    scope: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    path: &'a str,
    file: &'a str,
}

/// Show the staged (unpublished) changes of a collection.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
}

impl StatusArgs {
    /// Prints the changelist.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let trust = Repo::trust_dir(global)?;
        let staged = trust.staged(&self.gun)?;
        if global.json {
            let out: Vec<ChangeJson<'_>> = staged
                .iter()
                .enumerate()
                .map(|(index, (file, c))| ChangeJson {
                    index,
                    action: &c.action,
                    scope: &c.role,
                    kind: &c.kind,
                    path: &c.path,
                    file,
                })
                .collect();
            return output::print_json(&out);
        }
        if staged.is_empty() {
            return output::print_line(&format!("No unpublished changes for {}", self.gun));
        }
        let rows: Vec<Vec<String>> = staged
            .iter()
            .enumerate()
            .map(|(i, (_, c))| {
                vec![
                    i.to_string(),
                    c.action.clone(),
                    c.role.clone(),
                    c.kind.clone(),
                    c.path.clone(),
                ]
            })
            .collect();
        output::print(&format!(
            "Unpublished changes for {}:\n\n{}",
            self.gun,
            output::notary_table(&["#", "ACTION", "SCOPE", "TYPE", "PATH"], &rows)
        ))
    }
}

/// Drop staged changes: all of them, or those numbered as `status` shows.
#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// Drop every staged change.
    #[arg(long, conflicts_with = "number")]
    pub(crate) all: bool,
    /// Drop the change with this number (repeatable).
    #[arg(
        short = 'n',
        long = "number",
        value_name = "N",
        required_unless_present = "all"
    )]
    pub(crate) number: Vec<usize>,
}

impl ResetArgs {
    /// Drops.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let trust = Repo::trust_dir(global)?;
        if self.all {
            trust.clear_staged(&self.gun)?;
        } else {
            let staged = trust.staged(&self.gun)?;
            let mut names = Vec::new();
            for n in &self.number {
                let (name, _) = staged.get(*n).ok_or_else(|| {
                    Error::Usage(format!(
                        "there is no staged change {n} (see `sigil status {}`)",
                        self.gun
                    ))
                })?;
                names.push(name.clone());
            }
            trust.remove_staged(&self.gun, &names)?;
        }
        output::print_line(&format!(
            "Successfully reset specified changes for repository {}",
            self.gun
        ))
    }
}

/// Delete a collection's local trust data (metadata cache and staged changes), and with
/// --remote its trust data on the server. Keys on the token are kept.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// Also delete the collection on the notary server.
    #[arg(long)]
    pub(crate) remote: bool,
}

impl DeleteArgs {
    /// Deletes.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = Repo::open(global, &self.gun)?;
        if self.remote {
            repo.server.delete(&self.gun).await?;
        }
        remove_local(&repo.trust, &self.gun)?;
        output::print_line(&format!(
            "Successfully deleted {} trust data for repository {}",
            if self.remote {
                "local and remote"
            } else {
                "local"
            },
            self.gun
        ))
    }
}

fn remove_local(trust: &TrustDir, gun: &str) -> Result<(), Error> {
    trust.clear_metadata(gun)?;
    trust.clear_staged(gun)
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
    fn reset_needs_all_or_numbers_and_status_lists() {
        assert!(Cli::try_parse_from(["sigil", "reset", "g/x"]).is_err());
        assert!(Cli::try_parse_from(["sigil", "reset", "g/x", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["sigil", "reset", "g/x", "-n", "0", "-n", "2"]).is_ok());
        assert!(Cli::try_parse_from(["sigil", "reset", "g/x", "--all", "-n", "1"]).is_err());
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
