//! Which targets a TUF 1.0 delegation is trusted for: `paths` are shell-style patterns matched
//! one `/`-separated segment at a time (a pattern and a target with different numbers of
//! segments never match, so `*` never crosses a `/`), as python-tuf matches them with
//! `fnmatch`; `path_hash_prefixes` are prefixes of the hex SHA-256 of the target path.

use sha2::{Digest as _, Sha256};

use crate::schema::DelegatedRole;

/// Whether `role` is trusted for `target`: one of its path patterns matches, or the hex
/// SHA-256 of the path starts with one of its hash prefixes.
pub fn delegation_matches(role: &DelegatedRole, target: &str) -> bool {
    if role.paths().iter().any(|p| path_matches(p, target)) {
        return true;
    }
    if role.path_hash_prefixes().is_empty() {
        return false;
    }
    let digest = hex::encode(Sha256::digest(target.as_bytes()));
    role.path_hash_prefixes()
        .iter()
        .any(|p| digest.starts_with(p.as_str()))
}

/// Whether `target` matches the path pattern `pattern`: the same number of `/`-separated
/// segments, each matching its pattern segment with `*` (any run of characters), `?` (one
/// character), `[set]`, `[!set]` and ranges `[a-z]`; everything else is literal.
pub fn path_matches(pattern: &str, target: &str) -> bool {
    let patterns: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = target.split('/').collect();
    patterns.len() == parts.len()
        && patterns
            .iter()
            .zip(&parts)
            .all(|(p, t)| segment_matches(&tokens(p), &t.chars().collect::<Vec<_>>()))
}

enum Token {
    Star,
    One,
    Char(char),
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Self::Star | Self::One => true,
            Self::Char(x) => *x == c,
            Self::Set { negated, items } => {
                items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

fn tokens(pattern: &str) -> Vec<Token> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = p.get(i) {
        i += 1;
        match c {
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            '[' => match set(&p, i) {
                Some((token, next)) => {
                    out.push(token);
                    i = next;
                }
                None => out.push(Token::Char('[')),
            },
            c => out.push(Token::Char(c)),
        }
    }
    out
}

/// Parses a set starting after `[` at `start`; `None` when it is not closed (then `[` is
/// literal, as in fnmatch). A `]` right after `[` or `[!` is a member, not the end.
fn set(p: &[char], start: usize) -> Option<(Token, usize)> {
    let mut j = start;
    let negated = p.get(j) == Some(&'!');
    if negated {
        j += 1;
    }
    let first = j;
    if p.get(j) == Some(&']') {
        j += 1;
    }
    while p.get(j).is_some_and(|c| *c != ']') {
        j += 1;
    }
    p.get(j)?;
    let body = &p[first..j];
    let mut items = Vec::new();
    let mut k = 0;
    while let Some(&lo) = body.get(k) {
        if body.get(k + 1) == Some(&'-') && k + 2 < body.len() {
            items.push((lo, body[k + 2]));
            k += 3;
        } else {
            items.push((lo, lo));
            k += 1;
        }
    }
    Some((Token::Set { negated, items }, j + 1))
}

/// Glob matching with backtracking to the last `*`: linear in practice, never exponential.
fn segment_matches(pattern: &[Token], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(tok) if tok.matches(text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|tok| matches!(tok, Token::Star))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case checked with Python's `fnmatch.fnmatch` per segment (python-tuf 7's rule).
    #[test]
    fn patterns_match_as_python_tuf_matches_them() {
        for (pattern, target, expected) in [
            ("releases/*", "releases/v1.tar", true),
            ("releases/*", "releases/sub/v1.tar", false),
            ("*", "a/b", false),
            ("*/*", "a/b", true),
            ("*.tar", "v1.tar", true),
            ("*.tar", "v1.tar.gz", false),
            ("v?.tar", "v1.tar", true),
            ("v?.tar", "v10.tar", false),
            ("v[0-9].tar", "v7.tar", true),
            ("v[!0-9].tar", "v7.tar", false),
            ("v[!0-9].tar", "vx.tar", true),
            ("[]x]", "]", true),
            ("[abc", "[abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("", "", true),
            ("*", "", true),
            ("file.txt", "file.txt", true),
            ("file.txt", "file.txtx", false),
        ] {
            assert_eq!(
                path_matches(pattern, target),
                expected,
                "{pattern:?} {target:?}"
            );
        }
    }

    #[test]
    fn hash_prefixes_match_the_hex_sha256_of_the_path() {
        let digest = hex::encode(Sha256::digest(b"file.txt"));
        let mut role = DelegatedRole::new("bins", vec![], 1, vec![]);
        role.paths = None;
        role.path_hash_prefixes = Some(vec![digest[..2].to_owned()]);
        assert!(delegation_matches(&role, "file.txt"));
        role.path_hash_prefixes =
            Some(vec![if digest.starts_with('0') { "1" } else { "0" }.into()]);
        assert!(!delegation_matches(&role, "file.txt"));
    }
}
