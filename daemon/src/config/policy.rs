//! `[[policy]]` and `[[require]]`: who may do what with which keys, and what keys of some
//! roles must be.

use serde::Deserialize;

use super::TouchSetting;

/// An operation a policy rule can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Sign anything with the key (blind).
    Sign,
    /// Sign only TUF metadata that fits the key (DESIGN §9): role type, a rising version, an
    /// expiry within the `[[metadata]]` bound, target paths within its `paths`.
    #[serde(rename = "sign-metadata")]
    SignMetadata,
    /// Read the public key.
    Public,
    /// See the key in ListKeys.
    List,
    /// Generate a key matching the selector.
    Generate,
    /// Delete the key from the token.
    Delete,
    /// Supply a token's PIN at run time (`sigil token unlock`); needs `tokens`.
    Unlock,
}

impl Op {
    /// The name used in config and audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sign => "sign",
            Self::SignMetadata => "sign-metadata",
            Self::Public => "public",
            Self::List => "list",
            Self::Generate => "generate",
            Self::Delete => "delete",
            Self::Unlock => "unlock",
        }
    }
}

/// `[[policy]]`: who may do what to which keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rule name, for logs.
    pub name: String,
    /// User names the rule applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// Numeric uids the rule applies to.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// Group names the rule applies to (primary or supplementary).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Numeric gids the rule applies to.
    #[serde(default)]
    pub gids: Vec<u32>,
    /// Which keys.
    #[serde(default)]
    pub keys: Vec<KeySelectorConfig>,
    /// Which tokens (globs over backend names) `unlock` applies to.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Which operations.
    pub allow: Vec<Op>,
}

/// One key selector: a key id, or globs over gun and role (absent means `*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySelectorConfig {
    /// Exact daemon key id.
    pub key_id: Option<String>,
    /// Glob over the key's GUN.
    pub gun: Option<String>,
    /// Glob over the key's role.
    pub role: Option<String>,
}

/// `[[require]]`: a property every key of the matching roles must have, for everyone. A key
/// generated without it is refused (and removed again); a key without it cannot sign.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementConfig {
    /// Rule name, for messages and logs.
    pub name: String,
    /// Glob over the key's role (default `*`).
    pub role: Option<String>,
    /// Glob over the key's GUN (default `*`).
    pub gun: Option<String>,
    /// The key's attestation must verify against its backend's `attestation_roots`.
    #[serde(default)]
    pub attested: bool,
    /// The key's attested touch policy must be at least this (`always`, or `cached` which
    /// `always` also satisfies).
    pub touch: Option<TouchSetting>,
}
