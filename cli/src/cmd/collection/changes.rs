//! The changelist itself: `status` lists what is staged, `reset` drops it.

use clap::Args;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::output;
use crate::repo::{Repo, parse_gun};

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

#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    use clap::Parser as _;

    #[test]
    fn reset_needs_all_or_numbers_and_status_lists() {
        assert!(Cli::try_parse_from(["sigil", "reset", "g/x"]).is_err());
        assert!(Cli::try_parse_from(["sigil", "reset", "g/x", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["sigil", "reset", "g/x", "-n", "0", "-n", "2"]).is_ok());
        assert!(Cli::try_parse_from(["sigil", "reset", "g/x", "--all", "-n", "1"]).is_err());
    }
}
