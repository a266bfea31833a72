//! `sigil audit verify`: checks the hash chain of sigild's audit log (DESIGN §10). Each line
//! carries `prev`, the hex SHA-256 of the line before it (its bytes without the newline), and
//! the first line of a rotated file chains to the last line of the file before it. The check
//! needs only the files: no sigild, no key.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::output;

/// Longest line accepted (sigild's lines are a few hundred bytes).
const MAX_LINE: u64 = 1 << 20;

/// Check sigild's audit log.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Verify(VerifyArgs),
}

impl Command {
    /// Runs the subcommand.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        match self {
            Self::Verify(args) => args.run(global),
        }
    }
}

/// Check the hash chain of audit log files and name the first line that breaks it.
///
/// Every line sigild writes carries "prev", the SHA-256 of the line before it, so a line that
/// was edited, removed, inserted or moved breaks the chain at the line after it. Give rotated
/// files oldest first (audit.jsonl.2 audit.jsonl.1 audit.jsonl): the first line of each file
/// must follow the last line of the one before. The first line given is taken as it is: if
/// its "prev" is not zeros, it continues a file not given. Lines from a sigild older than the
/// chain (no "prev") are accepted only at the very start, and reported.
///
/// What a chain cannot show: lines cut off the end of the newest file, or a whole file left
/// out at the start. Compare the line count with a copy kept elsewhere (e.g. a log shipper).
///
/// Exit 0 when the chain holds, 1 at the first break (also with --json, which prints the
/// verdict either way).
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sigil audit verify /var/lib/sigil/audit.jsonl
  sigil audit verify --json /var/lib/sigil/audit.jsonl.1 /var/lib/sigil/audit.jsonl")]
pub(crate) struct VerifyArgs {
    /// Audit log files, oldest first.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

impl VerifyArgs {
    fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let verdict = check_files(&self.files)?;
        if global.json {
            output::print_json(&verdict)?;
        } else if verdict.broken.is_none() {
            output::print_line(&verdict.summary())?;
        }
        match verdict.broken {
            None => Ok(()),
            Some(b) => Err(Error::AuditChainBroken {
                file: b.file,
                line: b.line,
                reason: b.reason,
            }),
        }
    }
}

/// What the check found.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Verdict {
    /// True when every line given is chained to the one before.
    pub(crate) ok: bool,
    /// Lines read (up to the break).
    pub(crate) lines: u64,
    /// Lines at the start without `prev` (from a sigild before the chain).
    pub(crate) unchained: u64,
    /// `prev` of the first chained line, when it continues a file not given (not zeros).
    pub(crate) continues: Option<String>,
    /// The first line that breaks the chain.
    pub(crate) broken: Option<Break>,
}

/// Where and why the chain breaks.
#[derive(Debug, Serialize)]
pub(crate) struct Break {
    /// The file.
    pub(crate) file: String,
    /// Its line number, from 1.
    pub(crate) line: u64,
    /// Why.
    pub(crate) reason: String,
}

impl Verdict {
    fn summary(&self) -> String {
        let mut text = format!("audit chain OK: {} lines", self.lines);
        if self.unchained > 0 {
            text.push_str(&format!(
                "; the first {} predate the chain and are not covered",
                self.unchained
            ));
        }
        if let Some(prev) = &self.continues {
            text.push_str(&format!(
                "; the first chained line continues a line not given (prev {prev})"
            ));
        }
        text
    }
}

/// The chain state carried from line to line and file to file.
#[derive(Default)]
struct Chain {
    last: Option<[u8; 32]>,
    chained: bool,
}

/// Checks `files` in order; I/O errors are errors, chain breaks are in the verdict.
pub(crate) fn check_files(files: &[PathBuf]) -> Result<Verdict, Error> {
    let mut verdict = Verdict::default();
    let mut chain = Chain::default();
    for path in files {
        let file = File::open(path).map_err(|source| read_error(path, source))?;
        check_file(path, BufReader::new(file), &mut chain, &mut verdict)?;
        if verdict.broken.is_some() {
            return Ok(verdict);
        }
    }
    verdict.ok = true;
    Ok(verdict)
}

fn check_file(
    path: &Path,
    mut reader: impl std::io::BufRead,
    chain: &mut Chain,
    verdict: &mut Verdict,
) -> Result<(), Error> {
    let name = path.display().to_string();
    let mut number = 0;
    loop {
        let mut line = Vec::new();
        let read = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| read_error(path, source))?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let broken = |reason: String| Break {
            file: name.clone(),
            line: number,
            reason,
        };
        let Some(body) = line.strip_suffix(b"\n") else {
            let reason = if line.len() as u64 > MAX_LINE {
                format!("longer than {MAX_LINE} bytes")
            } else {
                "the last line is cut short (no newline)".to_owned()
            };
            verdict.broken = Some(broken(reason));
            return Ok(());
        };
        if let Err(reason) = check_line(body, chain, verdict) {
            verdict.broken = Some(broken(reason));
            return Ok(());
        }
        verdict.lines += 1;
    }
}

/// Checks one line (without its newline) against the chain and moves the chain on.
fn check_line(body: &[u8], chain: &mut Chain, verdict: &mut Verdict) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON line ({e})"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    match object.get("prev") {
        None if !chain.chained => verdict.unchained += 1,
        None => return Err("no \"prev\": a line without the chain inside it".to_owned()),
        Some(prev) => {
            let prev = prev
                .as_str()
                .filter(|p| {
                    p.len() == 64 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                })
                .ok_or("\"prev\" is not a hex SHA-256")?;
            match chain.last {
                Some(last) if prev != hex::encode(last) => {
                    return Err(
                        "\"prev\" does not match the line before it: that line was changed, or \
                         lines were removed, inserted or moved here"
                            .to_owned(),
                    );
                }
                Some(_) => {}
                None if prev.bytes().all(|b| b == b'0') => {}
                None => verdict.continues = Some(prev.to_owned()),
            }
            chain.chained = true;
        }
    }
    chain.last = Some(Sha256::digest(body).into());
    Ok(())
}

fn read_error(path: &Path, source: std::io::Error) -> Error {
    Error::Read {
        what: "audit log",
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines chained as sigild writes them, starting from `prev`.
    fn chained(from: [u8; 32], n: usize) -> Vec<String> {
        let mut prev = from;
        (0..n)
            .map(|i| {
                let line = format!(r#"{{"prev":"{}","op":"sign","n":{i}}}"#, hex::encode(prev));
                prev = Sha256::digest(line.as_bytes()).into();
                line
            })
            .collect()
    }

    fn check(lines: &[String]) -> Verdict {
        let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let mut verdict = Verdict::default();
        let mut chain = Chain::default();
        check_file(Path::new("log"), text.as_bytes(), &mut chain, &mut verdict).expect("read");
        verdict
    }

    fn broken_at(lines: &[String]) -> u64 {
        check(lines).broken.map(|b| b.line).unwrap_or(0)
    }

    #[test]
    fn an_intact_chain_holds() {
        let v = check(&chained([0; 32], 5));
        assert!(v.broken.is_none(), "{v:?}");
        assert_eq!((v.lines, v.unchained, v.continues), (5, 0, None));
    }

    #[test]
    fn edits_deletions_insertions_and_moves_are_found_at_the_next_line() {
        let lines = chained([0; 32], 6);
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"sign\"", "\"delete\"");
        assert_eq!(broken_at(&edited), 4);
        let mut removed = lines.clone();
        removed.remove(3);
        assert_eq!(broken_at(&removed), 4);
        let mut moved = lines.clone();
        moved.swap(1, 4);
        assert_eq!(broken_at(&moved), 2);
        let mut inserted = lines.clone();
        inserted.insert(5, lines[0].clone());
        assert_eq!(broken_at(&inserted), 6);
        let mut unchained = lines;
        unchained.insert(3, r#"{"op":"sign"}"#.to_owned());
        assert_eq!(broken_at(&unchained), 4);
    }

    #[test]
    fn legacy_lines_at_the_start_and_a_continued_chain_are_reported() {
        let legacy = r#"{"op":"sign","outcome":"ok"}"#.to_owned();
        let mut lines = vec![legacy.clone()];
        lines.extend(chained(Sha256::digest(legacy.as_bytes()).into(), 2));
        let v = check(&lines);
        assert!(v.broken.is_none(), "{v:?}");
        assert_eq!(v.unchained, 1);
        let v = check(&chained([7; 32], 2));
        assert_eq!(v.continues.as_deref(), Some(hex::encode([7; 32]).as_str()));
    }

    #[test]
    fn garbage_and_a_torn_last_line_break_the_chain() {
        let mut lines = chained([0; 32], 3);
        lines[1] = "not json".to_owned();
        assert_eq!(broken_at(&lines), 2);
        let text = format!("{}\n{{\"prev\":", chained([0; 32], 1)[0]);
        let mut verdict = Verdict::default();
        check_file(
            Path::new("log"),
            text.as_bytes(),
            &mut Chain::default(),
            &mut verdict,
        )
        .expect("read");
        let b = verdict.broken.expect("torn");
        assert_eq!(b.line, 2);
        assert!(b.reason.contains("cut short"), "{}", b.reason);
    }
}
