//! Key references on the command line, parsed in this one place so every command accepts the
//! same forms and rejects typos before anything reaches sigild.
//!
//! Grammar (case-insensitive, surrounding whitespace ignored):
//!
//! ```text
//! key-ref = key-id
//! key-id  = 64 HEXDIG    ; lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo,
//!                        ; as `sigil key list` shows it
//! ```
//!
//! RFC 7512 `pkcs11:` URIs, resolved by the daemon, are recognised and refused with a clear
//! message until sigild can resolve them.

use std::fmt;
use std::str::FromStr;

/// A daemon key id, normalised to lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyId(String);

impl KeyId {
    /// The id as sigild spells it.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KeyId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("pkcs11:"))
        {
            return Err(
                "pkcs11: URIs are not supported yet; use the key id shown by `sigil key list`"
                    .into(),
            );
        }
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                "not a key id: expected 64 hexadecimal characters, as shown by `sigil key list`"
                    .into(),
            );
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_full_ids_in_any_case_and_normalises_them() {
        let id = "AB".repeat(32);
        let parsed: KeyId = format!(" {id}\n").parse().expect("valid id");
        assert_eq!(parsed.as_str(), "ab".repeat(32));
    }

    #[test]
    fn rejects_short_long_non_hex_and_uris() {
        for bad in [
            "",
            "abc",
            &"a".repeat(63),
            &"a".repeat(65),
            &"g".repeat(64),
            "é",
            "abcdeé",
            "pkcs11:object=foo",
        ] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad:?}");
        }
        let err = "PKCS11:token=x".parse::<KeyId>().expect_err("uri");
        assert!(err.contains("not supported yet"), "{err}");
    }
}
