//! Names the client derives from untrusted role names and target paths: URL paths and local
//! file names. Role names in TUF 1.0 are free-form (`../x`, `/x`, `?`), so every byte outside
//! `A-Za-z0-9_.-~` is percent-encoded, as python-tuf does with `quote(name, "")`: the result
//! has no `/`, so it can neither leave the metadata directory nor change the URL's meaning.

use crate::error::{Error, Result};

/// Longest encoded name used as a file name component (file systems allow 255 bytes).
const MAX_ENCODED: usize = 200;

/// Percent-encodes every byte of `text` except ASCII letters, digits and `_.-~`.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The encoded role name, refused when it would be an unusable file name component.
fn encoded_role(role: &str) -> Result<String> {
    let encoded = quote(role);
    if role.is_empty() || encoded.len() > MAX_ENCODED {
        return Err(Error::InvalidRoleName {
            role: role.chars().take(64).collect(),
            reason: format!("empty, or longer than {MAX_ENCODED} bytes once encoded"),
        });
    }
    Ok(encoded)
}

/// The local file of a trusted role: `root.json`, `targets.json`, `<encoded role>.json`.
pub(crate) fn role_file(role: &str) -> Result<String> {
    Ok(format!("{}.json", encoded_role(role)?))
}

/// The remote file of a role: `N.<encoded role>.json`, or unversioned when `version` is None.
pub(crate) fn role_url(role: &str, version: Option<u64>) -> Result<String> {
    let name = encoded_role(role)?;
    Ok(match version {
        Some(v) => format!("{v}.{name}.json"),
        None => format!("{name}.json"),
    })
}

/// The URL path of a target below the targets base: each `/`-separated segment encoded, and
/// with consistent snapshots the last one prefixed by the hex digest (`dir/<hash>.name`).
pub(crate) fn target_url(path: &str, hash_prefix: Option<&str>) -> String {
    let mut segments: Vec<String> = path.split('/').map(quote).collect();
    if let (Some(prefix), Some(last)) = (hash_prefix, segments.last_mut()) {
        *last = format!("{prefix}.{last}");
    }
    segments.join("/")
}

/// The file name of a downloaded target in the target directory: the whole path encoded into
/// one component (`a/b.txt` → `a%2Fb.txt`), so two paths never share a file and none leaves
/// the directory. Paths that are not [`crate::schema::tuf1::is_safe_target_path`] or too long
/// are refused.
pub fn target_file_name(path: &str) -> Result<String> {
    let encoded = quote(path);
    if !crate::schema::tuf1::is_safe_target_path(path) || encoded.len() > MAX_ENCODED {
        return Err(Error::InvalidTargetName {
            name: path.chars().take(64).collect(),
            reason: "not a relative path of safe segments, or too long to store".into(),
        });
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_role_names_become_single_safe_components() {
        for (role, file) in [
            ("targets", "targets.json"),
            ("../delegatedrole", "..%2Fdelegatedrole.json"),
            ("/delegatedrole", "%2Fdelegatedrole.json"),
            ("?", "%3F.json"),
            ("#", "%23.json"),
            ("..", "...json"),
            ("a b\\c\u{0}é", "a%20b%5Cc%00%C3%A9.json"),
        ] {
            assert_eq!(role_file(role).expect(role), file);
        }
        assert!(role_file("").is_err());
        assert!(role_file(&"x".repeat(201)).is_err());
        assert_eq!(role_url("a/b", Some(3)).expect("url"), "3.a%2Fb.json");
        assert_eq!(role_url("timestamp", None).expect("url"), "timestamp.json");
    }

    #[test]
    fn target_names_keep_directories_in_urls_but_not_in_files() {
        assert_eq!(target_url("a/b c.txt", Some("ab12")), "a/ab12.b%20c.txt");
        assert_eq!(target_url("f", None), "f");
        assert_eq!(target_file_name("a/b.txt").expect("ok"), "a%2Fb.txt");
        for bad in ["..", "a/../b", "/abs", "", "a//b", "x\u{1}"] {
            assert!(target_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
