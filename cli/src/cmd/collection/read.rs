//! Reading a collection: `list`, `lookup`, and the collection form of `verify`.

use std::io;

use clap::Args;
use serde::Serialize;
use sigil_tuf::schema::notary;
use sigil_tuf::verify::TargetEntry;

use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::input::Input;
use crate::output;
use crate::repo::{Repo, parse_gun};

use super::{OfflineArg, fetch_verified_for_read, parse_targets_role};

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
