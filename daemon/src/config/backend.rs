//! `[[backend]]`: the tokens (PKCS#11 modules, YubiKeys) and how keys on them are found.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Error, limits};

/// `[[backend]]`: one token, selected by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    /// Any PKCS#11 module, loaded at run time.
    Pkcs11(Pkcs11Config),
    /// A YubiKey's PIV applet.
    Yubikey(YubikeyConfig),
}

impl BackendConfig {
    /// The backend's configured name.
    pub fn name(&self) -> &str {
        match self {
            Self::Pkcs11(c) => &c.name,
            Self::Yubikey(c) => &c.name,
        }
    }
}

/// A PKCS#11 backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Name clients use to pick this backend.
    pub name: String,
    /// Path of the PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// Token label to open.
    pub token_label: Option<String>,
    /// Slot id to open.
    pub slot: Option<u64>,
    /// Token serial number to open.
    pub token_serial: Option<String>,
    /// File holding the user PIN (mode 0600 or stricter).
    pub pin_file: PathBuf,
    /// Keys made on the token by other tools (e.g. `yubico-piv-tool` on a YubiKey seen through
    /// ykcs11, whose labels sigild cannot set), named by `CKA_ID` with the role and GUN they
    /// sign for. sigild signs with them but never deletes them.
    #[serde(default)]
    pub existing_keys: Vec<ExistingKey>,
    /// PKCS#11 sessions signing in parallel, one worker thread each. One suits a token that
    /// signs one operation at a time anyway (SoftHSM: two sessions sign no faster than one
    /// and contend for its locks); raise it for an HSM that works on several at once, or so
    /// that a long key generation does not hold up signatures.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Token jobs waiting for the sessions ([`limits::MAX_QUEUED_JOBS`]).
    #[serde(default = "limits::max_queued_jobs")]
    pub max_queued_jobs: usize,
}

/// Most PKCS#11 sessions a backend may ask for.
pub const MAX_SESSIONS: usize = 64;

fn default_sessions() -> usize {
    1
}

/// A key sigild did not make, adopted by its `CKA_ID`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExistingKey {
    /// The private key's `CKA_ID`, hex (ykcs11: `01` = PIV slot 9a, `02` = 9c, `03` = 9d,
    /// `04` = 9e, `05`… = retired slots 82…).
    pub id: String,
    /// The role it signs for (`root`, `targets`, `targets/releases`, …).
    pub role: String,
    /// The GUN, or none.
    #[serde(default)]
    pub gun: String,
}

impl ExistingKey {
    /// The `CKA_ID` bytes.
    pub fn id_bytes(&self) -> Result<Vec<u8>, Error> {
        hex::decode(&self.id)
            .ok()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "existing_keys id {:?} is not hex bytes (e.g. \"02\")",
                    self.id
                ))
            })
    }
}

/// How a PKCS#11 token is picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// By token label.
    Label(String),
    /// By slot id.
    Slot(u64),
    /// By token serial number.
    Serial(String),
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Label(l) => write!(f, "token label {l:?}"),
            Self::Slot(s) => write!(f, "slot {s}"),
            Self::Serial(s) => write!(f, "token serial {s:?}"),
        }
    }
}

impl Pkcs11Config {
    /// The one token selector configured, or an error naming the backend.
    pub fn selector(&self) -> Result<TokenSelector, Error> {
        match (&self.token_label, self.slot, &self.token_serial) {
            (Some(l), None, None) => Ok(TokenSelector::Label(l.clone())),
            (None, Some(s), None) => Ok(TokenSelector::Slot(s)),
            (None, None, Some(s)) => Ok(TokenSelector::Serial(s.clone())),
            _ => Err(Error::Invalid(format!(
                "backend {:?}: set exactly one of token_label, slot or token_serial",
                self.name
            ))),
        }
    }
}

/// A YubiKey PIV backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YubikeyConfig {
    /// Name clients use to pick this backend.
    pub name: String,
    /// Device serial number.
    pub serial: u32,
    /// File holding the PIV PIN.
    pub pin_file: Option<PathBuf>,
    /// Touch policy of keys generated for role `root` (default `always`).
    #[serde(default = "TouchSetting::root_default")]
    pub touch_root: TouchSetting,
    /// Touch policy of keys generated for every other role (default `never`).
    #[serde(default)]
    pub touch_other: TouchSetting,
    /// `"default"` (the factory management key) or `"pin-protected"` (the key the device
    /// keeps in its PIN-protected data object; needs the PIN). Exclusive with
    /// `management_key_file`.
    pub management_key: Option<ManagementKeySetting>,
    /// File (mode 0600) holding the management key as 48 hex digits (3DES).
    pub management_key_file: Option<PathBuf>,
    /// PEM files with the attestation root certificates that generated keys are checked
    /// against (e.g. Yubico's PIV attestation root). Without any, no key counts as attested.
    #[serde(default)]
    pub attestation_roots: Vec<PathBuf>,
    /// Token jobs waiting for the device ([`limits::MAX_QUEUED_JOBS`]).
    #[serde(default = "limits::max_queued_jobs")]
    pub max_queued_jobs: usize,
    /// Use a device that still has the factory-default management key (test devices only:
    /// with it, any local user can relabel keys or import their own).
    #[serde(default)]
    pub allow_default_management_key: bool,
    /// Slots (two hex digits) holding keys an earlier sigild made before it kept bindings in
    /// `state_dir`: on the device's first start with bindings, their labelled, device-generated
    /// keys are bound as they are. Ignored once the bindings file exists.
    #[serde(default, deserialize_with = "hex_slots")]
    pub adopt_slots: Vec<u8>,
}

fn hex_slots<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let names: Vec<String> = Deserialize::deserialize(d)?;
    names
        .iter()
        .map(|n| match u8::from_str_radix(n, 16) {
            Ok(slot @ (0x9c | 0x82..=0x95)) if n.len() == 2 => Ok(slot),
            _ => Err(serde::de::Error::custom(format!(
                "adopt_slots: {n:?} is not a sigil slot (9c, 82 to 95)"
            ))),
        })
        .collect()
}

/// Where a YubiKey's management key comes from, besides a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagementKeySetting {
    /// The factory default 3DES key.
    Default,
    /// Stored on the device in the PIN-protected data object (`ykman piv access
    /// change-management-key --protect`).
    PinProtected,
}

/// A PIV touch policy, set on the device when a key is generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TouchSetting {
    /// Every signature needs a touch.
    Always,
    /// A touch counts for 15 seconds.
    Cached,
    /// No touch needed.
    #[default]
    Never,
}

impl TouchSetting {
    fn root_default() -> Self {
        Self::Always
    }
}
