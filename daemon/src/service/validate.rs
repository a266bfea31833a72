//! Checks on the strings a request carries, and the one way such a string may appear in a
//! message or an audit line: itself when it is short and visible, otherwise only its
//! length and SHA-256. A caller can therefore never make sigild write more, or other bytes,
//! than it validated (a 4 MiB key id of control bytes is one short descriptor).

use std::borrow::Cow;

use sha2::{Digest as _, Sha256};
use unicode_general_category::{GeneralCategory, get_general_category};

use super::{Error, Payload};

/// Longest request string shown as itself; role and GUN limits are below it.
pub const MAX_SHOWN: usize = 256;

/// Longest role or GUN.
const MAX_NAME: usize = 255;

/// Whether `c` shows as itself: not a control, format (bidi overrides, zero-width
/// characters), separator, private-use or unassigned character, nor one of the Hangul fillers
/// (letters that render as nothing).
fn visible(c: char) -> bool {
    use GeneralCategory as G;
    !matches!(
        get_general_category(c),
        G::Control
            | G::Format
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
    ) && !matches!(c, '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}')
}

/// `s` as messages and audit lines may carry it: itself when it is at most [`MAX_SHOWN`]
/// bytes of [`visible`] characters and ASCII spaces, not starting with `<`; otherwise
/// `<N bytes, sha256 HEX>`, which no shown value can look like.
pub fn shown(s: &str) -> Cow<'_, str> {
    let plain =
        s.len() <= MAX_SHOWN && !s.starts_with('<') && s.chars().all(|c| c == ' ' || visible(c));
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!(
            "<{} bytes, sha256 {}>",
            s.len(),
            hex::encode(Sha256::digest(s.as_bytes()))
        ))
    }
}

/// A daemon key id: 64 lowercase hex characters (SHA-256 of the public key).
pub fn check_key_id(key_id: &str) -> Result<(), Error> {
    if key_id.is_empty() {
        return Err(Error::BadRequest("key_id is required".into()));
    }
    if key_id.len() != 64
        || !key_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Error::BadRequest(format!(
            "key_id {} is not 64 lowercase hex characters (SHA-256 of the public key)",
            shown(key_id)
        )));
    }
    Ok(())
}

/// Roles are TUF role names: `root`, `targets`, `targets/releases`, …
pub fn check_role(role: &str) -> Result<(), Error> {
    let ok = !role.is_empty()
        && role.len() <= MAX_NAME
        && !role.starts_with('/')
        && !role.ends_with('/')
        && !role.contains("//")
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "role {} is not a valid role name (letters, digits, '/', '_', '-', '.'; e.g. targets/releases)",
            shown(role)
        )))
    }
}

/// GUNs are collection names such as `example.com/app`, `localhost:5000/app` or
/// `例え.jp/アプリ`: [`visible`] characters only. Controls, spaces, bidi overrides such as
/// U+202E and other invisible characters could make a GUN read as another one in a listing or
/// a log, so they are refused.
pub fn check_gun(gun: &str) -> Result<(), Error> {
    if gun.len() > MAX_NAME || !gun.chars().all(visible) {
        return Err(Error::BadRequest(format!(
            "gun {} is not a valid collection name (no spaces, control, format or invisible characters; at most {MAX_NAME} bytes)",
            shown(gun)
        )));
    }
    Ok(())
}

/// Size and shape of a Sign payload against `max_message_bytes`: checks that need no key and
/// run before any lookup.
pub fn check_payload(payload: &Payload, max_message_bytes: usize) -> Result<(), Error> {
    match payload {
        Payload::Message(m) if m.len() > max_message_bytes => Err(Error::TooLarge {
            size: m.len(),
            max: max_message_bytes,
        }),
        Payload::Digest(d) if d.len() != 32 => Err(Error::BadRequest(format!(
            "sha256_digest must be exactly 32 bytes, got {}",
            d.len()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_key_ids_roles_and_guns() {
        assert!(check_key_id("").is_err());
        assert!(check_key_id(&"A".repeat(64)).is_err());
        assert!(check_key_id(&"a".repeat(63)).is_err());
        assert!(check_key_id(&"a".repeat(64)).is_ok());
        for good in ["root", "targets", "targets/releases", "snapshot"] {
            assert!(check_role(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/root",
            "targets/",
            "a b",
            "a:b",
            "targets//x",
            "r\u{202e}",
        ] {
            assert!(check_role(bad).is_err(), "{bad}");
        }
        assert!(check_gun("localhost:5000/app").is_ok());
        assert!(check_gun("例え.jp/アプリ").is_ok());
        assert!(check_gun("").is_ok());
        for bad in [
            "a\nb",
            "a b",
            "example.com/\u{202e}ppa",
            "example.com/a\u{200b}pp",
            "example.com/app\u{feff}",
            "example.com/\u{3164}app",
            "example.com/\u{e000}app",
            "example.com\u{2028}/app",
        ] {
            assert!(check_gun(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unprintable_or_long_strings_are_shown_as_length_and_hash() {
        assert_eq!(shown("example.com/app"), "example.com/app");
        assert_eq!(shown("例え.jp/アプリ"), "例え.jp/アプリ");
        assert!(shown("example.com/\u{202e}ppa").starts_with('<'));
        let hostile = "\u{1}".repeat(1 << 20);
        let seen = shown(&hostile);
        assert!(seen.len() < 100, "{seen}");
        assert!(seen.starts_with("<1048576 bytes, sha256 "), "{seen}");
        assert!(shown(&"a".repeat(MAX_SHOWN + 1)).starts_with('<'));
        assert!(shown("<5 bytes, sha256 00>").starts_with("<20 bytes"));
        let e = check_key_id(&hostile).expect_err("hostile key id");
        assert!(e.to_string().len() < 200, "{e}");
    }
}
