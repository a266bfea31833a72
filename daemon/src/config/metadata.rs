//! `[[metadata]]`: bounds on what `sign-metadata` signs (DESIGN §9): how far in the future
//! metadata of matching roles may expire, and which target paths a targets role may list.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// One rule; the first rule whose `role` and `gun` globs match a key applies to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataRule {
    /// Glob over the key's role (`*` by default).
    #[serde(default = "any")]
    pub role: String,
    /// Glob over the key's GUN (`*` by default).
    #[serde(default = "any")]
    pub gun: String,
    /// Metadata signed with matching keys may expire at most this far ahead.
    pub max_expires: Lifetime,
    /// For targets roles: globs every listed target path must match.
    pub paths: Option<Vec<String>>,
}

fn any() -> String {
    "*".to_owned()
}

/// A lifetime written as a whole number and a unit: `s`, `m`, `h`, `d` or `w` (`"1d"`,
/// `"90d"`, `"12h"`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub Duration);

/// Longest lifetime accepted (a typo such as `"36500d"` is more likely than a real need).
const MAX_LIFETIME: Duration = Duration::from_secs(20 * 366 * 86_400);

impl Lifetime {
    /// Parses `"90d"` and the like.
    pub fn parse(text: &str) -> Result<Self, String> {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => {
                return Err(format!(
                    "{text:?} is not a lifetime such as \"1d\", \"90d\" or \"12h\""
                ));
            }
        };
        let n: u64 = number.parse().map_err(|_| {
            format!("{text:?} is not a lifetime such as \"1d\", \"90d\" or \"12h\"")
        })?;
        let lifetime = Duration::from_secs(n.saturating_mul(seconds));
        if n == 0 || lifetime > MAX_LIFETIME {
            return Err(format!(
                "{text:?}: a lifetime is above 0 and at most 20 years"
            ));
        }
        Ok(Self(lifetime))
    }
}

impl fmt::Debug for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs())
    }
}

impl<'de> Deserialize<'de> for Lifetime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_with_their_unit_and_nothing_else() {
        assert_eq!(Lifetime::parse("1d").expect("1d").0.as_secs(), 86_400);
        assert_eq!(Lifetime::parse("12h").expect("12h").0.as_secs(), 43_200);
        assert_eq!(Lifetime::parse("2w").expect("2w").0.as_secs(), 14 * 86_400);
        for bad in [
            "",
            "d",
            "1",
            "1.5d",
            "-1d",
            "0d",
            "1y",
            "1 d",
            "99999999999999999999d",
            "36500d",
        ] {
            assert!(Lifetime::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
