//! `sigil tuf add`, `addhash` and `remove`: stage target changes (nothing is signed or
//! published until `sigil tuf publish`; no sigild needed).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Args;
use sigil_tuf::repository::{NewTarget, TargetSource, parse_manifest, parse_sha256};

use super::{open, save};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::input::Input;
use crate::output::print_line;

/// The largest manifest or custom-data file read (64 MiB).
const MAX_INPUT: usize = 64 << 20;

/// Stage targets from files: each is hashed and copied to targets/<dir>/<sha256>.<name>.
///
/// Give NAME FILE pairs, as many as you like. In a delegated role (-r ROLE), every name must
/// match the paths or hash prefixes delegated to it. A name is a relative path of plain
/// segments ("..", empty segments, backslashes and control characters are refused).
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
    /// Target name and file, repeated.
    #[arg(value_name = "NAME FILE", required = true)]
    pub(crate) targets: Vec<String>,
    /// The targets role to add to (default: targets).
    #[arg(
        short = 'r',
        long = "role",
        value_name = "ROLE",
        default_value = "targets"
    )]
    pub(crate) role: String,
    /// A JSON file whose content becomes every added target's `custom` data.
    #[arg(long, value_name = "JSON_FILE")]
    pub(crate) custom: Option<PathBuf>,
}

impl AddArgs {
    /// Hashes, stores and stages.
    pub(crate) async fn run(&self, _global: &GlobalArgs) -> Result<(), Error> {
        if !self.targets.len().is_multiple_of(2) {
            return Err(Error::Usage(
                "targets come in NAME FILE pairs (an odd number of arguments was given)".into(),
            ));
        }
        let custom = match &self.custom {
            Some(path) => Some(read_custom(path).await?),
            None => None,
        };
        let targets: Vec<NewTarget> = self
            .targets
            .chunks(2)
            .map(|pair| NewTarget {
                name: pair[0].clone(),
                source: TargetSource::File(PathBuf::from(&pair[1])),
                custom: custom.clone(),
            })
            .collect();
        if targets.len() > 100 {
            eprintln!("hashing and storing {} files...", targets.len());
        }
        stage(&self.repo, &self.role, &targets)
    }
}

/// Stage targets by length and SHA-256 only (their content is served from elsewhere).
///
/// One target: NAME SIZE --sha256 HEX. Many: --manifest LIST (or - for standard input) with
/// one `SHA256 SIZE NAME` per line (the name is the rest of the line); blank lines and lines
/// starting with # are skipped. Any bad line refuses the whole manifest, naming the line.
#[derive(Debug, Args)]
#[command(
    override_usage = "sigil tuf addhash <REPO> <NAME> <SIZE> --sha256 <HEX> [-r ROLE]\n       \
                      sigil tuf addhash <REPO> --manifest <LIST|-> [-r ROLE]"
)]
pub(crate) struct AddhashArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
    /// Target name.
    #[arg(value_name = "NAME", requires = "size", conflicts_with = "manifest")]
    pub(crate) name: Option<String>,
    /// Length in bytes.
    #[arg(value_name = "SIZE", requires = "sha256")]
    pub(crate) size: Option<u64>,
    /// SHA-256 of the content, 64 hex digits.
    #[arg(long, value_name = "HEX", requires = "name")]
    pub(crate) sha256: Option<String>,
    /// A file (or -) listing `SHA256 SIZE NAME` per line.
    #[arg(long, value_name = "LIST|-", required_unless_present = "name")]
    pub(crate) manifest: Option<PathBuf>,
    /// The targets role to add to (default: targets).
    #[arg(
        short = 'r',
        long = "role",
        value_name = "ROLE",
        default_value = "targets"
    )]
    pub(crate) role: String,
}

impl AddhashArgs {
    /// Parses and stages.
    pub(crate) async fn run(&self, _global: &GlobalArgs) -> Result<(), Error> {
        let targets: Vec<NewTarget> = match (&self.manifest, &self.name, self.size, &self.sha256) {
            (Some(list), None, None, None) => {
                let input = Input::from_arg(list);
                let bytes = input.read_all("manifest").await?;
                if bytes.len() > MAX_INPUT {
                    return Err(Error::Usage(format!(
                        "the manifest is over {MAX_INPUT} bytes"
                    )));
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| Error::Usage("the manifest is not UTF-8 text".into()))?;
                parse_manifest(&text)
                    .map_err(|e| Error::tuf("reading the manifest", e))?
                    .into_iter()
                    .map(|e| NewTarget {
                        name: e.name,
                        source: TargetSource::Hash {
                            length: e.length,
                            sha256: e.sha256,
                        },
                        custom: None,
                    })
                    .collect()
            }
            (None, Some(name), Some(length), Some(hex)) => vec![NewTarget {
                name: name.clone(),
                source: TargetSource::Hash {
                    length,
                    sha256: parse_sha256(hex)
                        .map_err(|e| Error::Usage(format!("--sha256: {e}")))?,
                },
                custom: None,
            }],
            _ => {
                return Err(Error::Usage(
                    "give NAME SIZE --sha256 HEX, or --manifest LIST alone".into(),
                ));
            }
        };
        stage(&self.repo, &self.role, &targets)
    }
}

/// Stage the removal of targets.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The repository directory.
    #[arg(value_name = "REPO")]
    pub(crate) repo: PathBuf,
    /// Target names.
    #[arg(value_name = "NAME", required = true)]
    pub(crate) names: Vec<String>,
    /// The targets role to remove from (default: targets).
    #[arg(
        short = 'r',
        long = "role",
        value_name = "ROLE",
        default_value = "targets"
    )]
    pub(crate) role: String,
}

impl RemoveArgs {
    /// Stages the removal.
    pub(crate) async fn run(&self, _global: &GlobalArgs) -> Result<(), Error> {
        let mut repo = open(&self.repo)?;
        repo.remove_targets(&self.role, &self.names, SystemTime::now())
            .map_err(|e| Error::tuf(format!("removing from {}", self.role), e))?;
        save(&repo)?;
        print_line(&format!(
            "staged removal of {} target(s) from {}; run `sigil tuf publish`",
            self.names.len(),
            self.role
        ))
    }
}

fn stage(dir: &Path, role: &str, targets: &[NewTarget]) -> Result<(), Error> {
    let mut repo = open(dir)?;
    repo.add_targets(role, targets, SystemTime::now())
        .map_err(|e| Error::tuf(format!("adding to {role}"), e))?;
    save(&repo)?;
    print_line(&format!(
        "staged {} target(s) in {role}; run `sigil tuf publish`",
        targets.len()
    ))
}

async fn read_custom(path: &Path) -> Result<serde_json::Value, Error> {
    let bytes = Input::from_arg(path).read_all("custom data").await?;
    if bytes.len() > MAX_INPUT {
        return Err(Error::Usage(format!(
            "{} is over {MAX_INPUT} bytes",
            path.display()
        )));
    }
    sigil_tuf::cjson::parse_strict(&bytes).map_err(|e| {
        Error::Usage(format!(
            "--custom {}: not JSON that canonical JSON can sign (integers only, no duplicate keys): {e}",
            path.display()
        ))
    })
}
