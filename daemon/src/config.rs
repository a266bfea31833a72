//! sigild's configuration: strict TOML (unknown keys are refused by name), where it is found,
//! and the checks that refuse insecure or inconsistent settings before anything is opened.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod limits;

/// Where the configuration is looked for when neither `--config` nor `$SIGIL_CONFIG` is set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sigil/sigild.toml";
/// The environment variable naming the configuration file.
pub const CONFIG_ENV_VAR: &str = "SIGIL_CONFIG";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, which names the offending key and line.
        message: String,
    },
    /// The settings are well formed but not usable together.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Socket, audit and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Token backends, in the order they are opened.
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
    /// The optional notary-signer compatible endpoint.
    pub notary_signer: Option<NotarySignerConfig>,
    /// Policy rules; with none, nobody may do anything.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// What keys of some roles must be (attested, touch), whoever asks.
    #[serde(default, rename = "require")]
    pub requirements: Vec<RequirementConfig>,
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

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Unix socket path the API is served on.
    pub socket: PathBuf,
    /// Group that owns the socket (clients must be in it to connect).
    pub socket_group: Option<String>,
    /// Socket permission bits as an octal string; the policy decides per key anyway.
    pub socket_mode: String,
    /// Append-only JSON-lines audit log.
    pub audit_log: PathBuf,
    /// Largest `message` a Sign request may carry.
    pub max_message_bytes: usize,
    /// API socket connections open at once ([`limits::MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// API socket connections one uid may hold ([`limits::MAX_CONNECTIONS_PER_UID`]).
    pub max_connections_per_uid: usize,
    /// Concurrent HTTP/2 streams per connection, on both endpoints
    /// ([`limits::MAX_STREAMS_PER_CONNECTION`]).
    pub max_streams_per_connection: u32,
    /// Directory for sigild's own state (0700, owned by sigild's user; created if missing):
    /// which key a YubiKey backend generated in which slot. Required with a YubiKey backend.
    pub state_dir: Option<PathBuf>,
    /// Refusals (denied, not found, invalid) audited line by line per caller and window;
    /// beyond, one `suppressed` line per window counts them.
    pub audit_refusals_per_window: u32,
    /// The window of `audit_refusals_per_window`, in seconds.
    pub audit_refusal_window_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/sigil/sigild.sock"),
            socket_group: None,
            socket_mode: "0660".to_owned(),
            audit_log: PathBuf::from("/var/lib/sigil/audit.jsonl"),
            max_message_bytes: 4 * 1024 * 1024,
            max_connections: limits::MAX_CONNECTIONS,
            max_connections_per_uid: limits::MAX_CONNECTIONS_PER_UID,
            max_streams_per_connection: limits::MAX_STREAMS_PER_CONNECTION,
            state_dir: None,
            audit_refusals_per_window: 100,
            audit_refusal_window_secs: 60,
        }
    }
}

impl ServerConfig {
    /// The socket mode parsed from its octal string.
    pub fn socket_mode_bits(&self) -> Result<u32, Error> {
        let digits = self.socket_mode.trim_start_matches("0o");
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o777 => Ok(mode),
            _ => Err(Error::Invalid(format!(
                "server.socket_mode {:?} is not an octal mode like \"0660\"",
                self.socket_mode
            ))),
        }
    }
}

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

/// `[notary_signer]`: the notary-signer compatible endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotarySignerConfig {
    /// TCP address to listen on.
    pub listen: String,
    /// Server certificate (PEM).
    pub tls_cert: PathBuf,
    /// Server private key (PEM).
    pub tls_key: PathBuf,
    /// CA that client certificates must chain to.
    pub client_ca: PathBuf,
    /// Backend on which per-GUN timestamp and snapshot keys are generated.
    pub backend: String,
    /// Client certificate identities (CN or SAN) allowed to connect.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// TCP connections open at once, handshaking or not ([`limits::NOTARY_MAX_CONNECTIONS`]).
    #[serde(default = "limits::notary_max_connections")]
    pub max_connections: usize,
    /// Seconds a TLS handshake may take ([`limits::HANDSHAKE_TIMEOUT_SECS`]).
    #[serde(default = "limits::handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    /// Keys the endpoint may hold on the tokens in all (CreateKey beyond: RESOURCE_EXHAUSTED).
    #[serde(default = "default_notary_max_keys")]
    pub max_keys: usize,
    /// Keys the endpoint may hold for one GUN.
    #[serde(default = "default_notary_max_keys_per_gun")]
    pub max_keys_per_gun: usize,
    /// Keys the endpoint may generate in any hour.
    #[serde(default = "default_notary_max_new_keys_per_hour")]
    pub max_new_keys_per_hour: usize,
}

fn default_notary_max_keys() -> usize {
    1024
}

fn default_notary_max_keys_per_gun() -> usize {
    16
}

fn default_notary_max_new_keys_per_hour() -> usize {
    60
}

/// An operation a policy rule can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Sign with the key.
    Sign,
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

impl Config {
    /// Parses and validates a configuration text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The config path: `--config`, else `$SIGIL_CONFIG`, else the default.
    pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_owned)
            .or_else(|| std::env::var_os(CONFIG_ENV_VAR).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    fn validate(&self) -> Result<(), Error> {
        self.server.socket_mode_bits()?;
        if self.server.max_message_bytes == 0 {
            return Err(Error::Invalid(
                "server.max_message_bytes must be greater than 0".into(),
            ));
        }
        limits::check_count("server.max_connections", self.server.max_connections)?;
        limits::check_count(
            "server.max_connections_per_uid",
            self.server.max_connections_per_uid,
        )?;
        limits::check_count(
            "server.max_streams_per_connection",
            self.server.max_streams_per_connection as usize,
        )?;
        if self.server.audit_refusals_per_window == 0 || self.server.audit_refusal_window_secs == 0
        {
            return Err(Error::Invalid(
                "server.audit_refusals_per_window and server.audit_refusal_window_secs must be greater than 0"
                    .into(),
            ));
        }
        if self.backends.is_empty() {
            return Err(Error::Invalid(
                "no [[backend]] configured: sigild needs at least one token".into(),
            ));
        }
        let mut names = HashSet::new();
        for backend in &self.backends {
            let name = backend.name();
            if name.is_empty() {
                return Err(Error::Invalid("a backend has an empty name".into()));
            }
            if !names.insert(name) {
                return Err(Error::Invalid(format!(
                    "backend name {name:?} is used twice"
                )));
            }
            let queued = match backend {
                BackendConfig::Pkcs11(c) => c.max_queued_jobs,
                BackendConfig::Yubikey(c) => c.max_queued_jobs,
            };
            limits::check_count(&format!("backend {name:?}: max_queued_jobs"), queued)?;
            match backend {
                BackendConfig::Pkcs11(c) => {
                    c.selector()?;
                    if !(1..=MAX_SESSIONS).contains(&c.sessions) {
                        return Err(Error::Invalid(format!(
                            "backend {name:?}: sessions must be 1 to {MAX_SESSIONS}, not {}",
                            c.sessions
                        )));
                    }
                    let mut ids = HashSet::new();
                    for key in &c.existing_keys {
                        if !ids.insert(key.id_bytes()?) {
                            return Err(Error::Invalid(format!(
                                "backend {name:?}: existing_keys names id {:?} twice",
                                key.id
                            )));
                        }
                        if key.role.is_empty() || key.role.contains(':') {
                            return Err(Error::Invalid(format!(
                                "backend {name:?}: existing_keys id {:?} needs a role without ':'",
                                key.id
                            )));
                        }
                    }
                }
                BackendConfig::Yubikey(c) => {
                    if c.management_key.is_some() && c.management_key_file.is_some() {
                        return Err(Error::Invalid(format!(
                            "backend {name:?}: set management_key or management_key_file, not both"
                        )));
                    }
                }
            }
        }
        if let Some(ns) = &self.notary_signer {
            limits::check_count("notary_signer.max_connections", ns.max_connections)?;
            limits::check_handshake_timeout(ns.handshake_timeout_secs)?;
            if !names.contains(ns.backend.as_str()) {
                return Err(Error::Invalid(format!(
                    "notary_signer.backend {:?} is not a configured backend",
                    ns.backend
                )));
            }
            if ns.max_keys == 0 || ns.max_keys_per_gun == 0 || ns.max_new_keys_per_hour == 0 {
                return Err(Error::Invalid(
                    "notary_signer.max_keys, max_keys_per_gun and max_new_keys_per_hour must be greater than 0"
                        .into(),
                ));
            }
            if ns.allowed_clients.is_empty() {
                return Err(Error::Invalid(
                    "notary_signer.allowed_clients is empty: name the client certificates \
                     (CN or SAN) that may use the endpoint"
                        .into(),
                ));
            }
        }
        for req in &self.requirements {
            if req.name.is_empty() {
                return Err(Error::Invalid(
                    "a [[require]] rule has an empty name".into(),
                ));
            }
            if !req.attested && matches!(req.touch, None | Some(TouchSetting::Never)) {
                return Err(Error::Invalid(format!(
                    "[[require]] {:?} requires nothing: set attested = true and/or touch = \"always\" (or \"cached\")",
                    req.name
                )));
            }
        }
        for rule in &self.policies {
            if rule.users.is_empty()
                && rule.uids.is_empty()
                && rule.groups.is_empty()
                && rule.gids.is_empty()
            {
                return Err(Error::Invalid(format!(
                    "policy {:?} names no users, uids, groups or gids",
                    rule.name
                )));
            }
            if rule.keys.is_empty() && rule.tokens.is_empty() {
                return Err(Error::Invalid(format!(
                    "policy {:?} names no keys (and no tokens)",
                    rule.name
                )));
            }
            if rule.allow.contains(&Op::Unlock) && rule.tokens.is_empty() {
                return Err(Error::Invalid(format!(
                    "policy {:?} allows \"unlock\" but names no tokens: add tokens = [\"<backend name>\"]",
                    rule.name
                )));
            }
            for sel in &rule.keys {
                if sel.key_id.is_some() && (sel.gun.is_some() || sel.role.is_some()) {
                    return Err(Error::Invalid(format!(
                        "policy {:?}: a key selector has either key_id or gun/role, not both",
                        rule.name
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
socket = "/tmp/s.sock"
audit_log = "/tmp/audit.jsonl"

[[backend]]
name = "hsm"
type = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "sigil"
pin_file = "/etc/sigil/pins/hsm"

[[policy]]
name = "ci"
users = ["root"]
keys = [{ gun = "example.com/*", role = "targets/releases" }, { key_id = "ab" }]
allow = ["sign", "public", "list"]
"#;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn parses_the_documented_shape() {
        let c = parse(MINIMAL).expect("parse");
        assert_eq!(c.server.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(c.server.socket_mode_bits().expect("mode"), 0o660);
        let BackendConfig::Pkcs11(b) = &c.backends[0] else {
            panic!("expected pkcs11")
        };
        assert_eq!(
            b.selector().expect("sel"),
            TokenSelector::Label("sigil".into())
        );
        assert_eq!(c.policies[0].allow, vec![Op::Sign, Op::Public, Op::List]);
    }

    #[test]
    fn unknown_keys_are_refused_by_name_at_every_level() {
        for (needle, text) in [
            (
                "colour",
                MINIMAL.replace("[server]", "[server]\ncolour = 1"),
            ),
            (
                "flavour",
                MINIMAL.replace("type = \"pkcs11\"", "type = \"pkcs11\"\nflavour = 2"),
            ),
            ("pinn", MINIMAL.replace("allow =", "pinn = 1\nallow =")),
            ("extra", format!("extra = true\n{MINIMAL}")),
        ] {
            let err = parse(&text).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let two_selectors =
            MINIMAL.replace("token_label = \"sigil\"", "token_label = \"a\"\nslot = 1");
        assert!(
            parse(&two_selectors)
                .expect_err("sel")
                .to_string()
                .contains("exactly one")
        );
        let bad_op = MINIMAL.replace("\"list\"]", "\"lsit\"]");
        assert!(parse(&bad_op).expect_err("op").to_string().contains("lsit"));
        let bad_mode = MINIMAL.replace("[server]", "[server]\nsocket_mode = \"rw\"");
        assert!(parse(&bad_mode).is_err());
        let nobody = MINIMAL.replace("users = [\"root\"]", "");
        assert!(
            parse(&nobody)
                .expect_err("nobody")
                .to_string()
                .contains("names no users")
        );
        let dup =
            format!("{MINIMAL}\n[[backend]]\nname = \"hsm\"\ntype = \"yubikey\"\nserial = 1\n");
        assert!(parse(&dup).expect_err("dup").to_string().contains("twice"));
        let unknown_type = MINIMAL.replace("type = \"pkcs11\"", "type = \"tpm\"");
        assert!(
            parse(&unknown_type)
                .expect_err("type")
                .to_string()
                .contains("tpm")
        );
    }

    #[test]
    fn adopt_slots_name_sigil_slots_only() {
        let yk = "\n[[backend]]\nname = \"yk\"\ntype = \"yubikey\"\nserial = 1\n";
        let c = parse(&format!(
            "{MINIMAL}{yk}adopt_slots = [\"9c\", \"82\", \"95\"]\n"
        ))
        .expect("ok");
        let BackendConfig::Yubikey(b) = &c.backends[1] else {
            panic!("expected yubikey")
        };
        assert_eq!(b.adopt_slots, vec![0x9c, 0x82, 0x95]);
        assert!(!b.allow_default_management_key);
        for bad in ["9a", "96", "f9", "082", "x"] {
            let err = parse(&format!("{MINIMAL}{yk}adopt_slots = [\"{bad}\"]\n"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("not a sigil slot"), "{err}");
        }
    }

    #[test]
    fn audit_limits_and_notary_caps_have_defaults_and_must_be_positive() {
        let c = parse(MINIMAL).expect("parse");
        assert_eq!(
            (
                c.server.audit_refusals_per_window,
                c.server.audit_refusal_window_secs
            ),
            (100, 60)
        );
        let zero = MINIMAL.replace("[server]", "[server]\naudit_refusals_per_window = 0");
        assert!(
            parse(&zero)
                .expect_err("zero")
                .to_string()
                .contains("audit_refusals_per_window")
        );
        let ns = "\n[notary_signer]\nlisten = \"127.0.0.1:1\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\n\
                  client_ca = \"/ca\"\nbackend = \"hsm\"\nallowed_clients = [\"n\"]\n";
        let c = parse(&format!("{MINIMAL}{ns}")).expect("notary");
        let caps = c.notary_signer.expect("section");
        assert_eq!(
            (
                caps.max_keys,
                caps.max_keys_per_gun,
                caps.max_new_keys_per_hour
            ),
            (1024, 16, 60)
        );
        let zero = format!("{MINIMAL}{ns}max_keys_per_gun = 0\n");
        assert!(
            parse(&zero)
                .expect_err("zero cap")
                .to_string()
                .contains("max_keys_per_gun")
        );
    }

    #[test]
    fn a_management_key_is_named_once() {
        let yk = "\n[[backend]]\nname = \"yk\"\ntype = \"yubikey\"\nserial = 1\n";
        let c = parse(&format!(
            "{MINIMAL}{yk}management_key = \"pin-protected\"\n"
        ))
        .expect("ok");
        let BackendConfig::Yubikey(b) = &c.backends[1] else {
            panic!("expected yubikey")
        };
        assert_eq!(b.management_key, Some(ManagementKeySetting::PinProtected));
        let both =
            format!("{MINIMAL}{yk}management_key = \"default\"\nmanagement_key_file = \"/k\"\n");
        assert!(
            parse(&both)
                .expect_err("both")
                .to_string()
                .contains("not both")
        );
        let bad = format!("{MINIMAL}{yk}management_key = \"0102\"\n");
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn existing_keys_name_hex_ids_once_with_a_role() {
        let p11 = "\n[[backend]]\nname = \"yk\"\ntype = \"pkcs11\"\nmodule = \"/m.so\"\n\
                   token_label = \"t\"\npin_file = \"/p\"\n";
        let c = parse(&format!(
            "{MINIMAL}{p11}existing_keys = [{{ id = \"01\", role = \"root\" }}]\n"
        ))
        .expect("ok");
        let BackendConfig::Pkcs11(b) = &c.backends[1] else {
            panic!("expected pkcs11")
        };
        assert_eq!(b.existing_keys[0].id_bytes().ok(), Some(vec![1]));
        assert_eq!(b.existing_keys[0].gun, "");
        for (bad, says) in [
            (r#"[{ id = "zz", role = "root" }]"#, "not hex"),
            (r#"[{ id = "", role = "root" }]"#, "not hex"),
            (
                r#"[{ id = "01", role = "root" }, { id = "01", role = "targets" }]"#,
                "twice",
            ),
            (r#"[{ id = "01", role = "" }]"#, "needs a role"),
            (
                r#"[{ id = "01", role = "root", slot = 1 }]"#,
                "unknown field",
            ),
        ] {
            let err = parse(&format!("{MINIMAL}{p11}existing_keys = {bad}\n"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn sessions_default_to_one_and_are_bounded() {
        let p11 = "\n[[backend]]\nname = \"hsm2\"\ntype = \"pkcs11\"\nmodule = \"/m.so\"\n\
                   token_label = \"t\"\npin_file = \"/p\"\n";
        let sessions = |c: &Config| match &c.backends[1] {
            BackendConfig::Pkcs11(b) => b.sessions,
            BackendConfig::Yubikey(_) => panic!("expected pkcs11"),
        };
        assert_eq!(sessions(&parse(&format!("{MINIMAL}{p11}")).expect("ok")), 1);
        let eight = parse(&format!("{MINIMAL}{p11}sessions = 8\n")).expect("ok");
        assert_eq!(sessions(&eight), 8);
        for bad in ["0", "65", "-1", "\"2\""] {
            assert!(
                parse(&format!("{MINIMAL}{p11}sessions = {bad}\n")).is_err(),
                "sessions = {bad} was accepted"
            );
        }
        let err = parse(&format!("{MINIMAL}{p11}sessions = 0\n"))
            .expect_err("0")
            .to_string();
        assert!(err.contains("sessions must be 1 to 64"), "{err}");
    }

    #[test]
    fn resource_limits_have_defaults_and_refuse_zero() {
        let c = parse(MINIMAL).expect("minimal");
        assert_eq!(c.server.max_connections, limits::MAX_CONNECTIONS);
        assert_eq!(
            c.server.max_connections_per_uid,
            limits::MAX_CONNECTIONS_PER_UID
        );
        assert_eq!(
            c.server.max_streams_per_connection,
            limits::MAX_STREAMS_PER_CONNECTION
        );
        match &c.backends[0] {
            BackendConfig::Pkcs11(b) => assert_eq!(b.max_queued_jobs, limits::MAX_QUEUED_JOBS),
            BackendConfig::Yubikey(_) => panic!("expected pkcs11"),
        }
        let set = MINIMAL.replace(
            "[server]",
            "[server]\nmax_connections = 8\nmax_connections_per_uid = 2\nmax_streams_per_connection = 4",
        );
        let c = parse(&set).expect("set");
        assert_eq!(
            (
                c.server.max_connections,
                c.server.max_connections_per_uid,
                c.server.max_streams_per_connection
            ),
            (8, 2, 4)
        );
        for key in [
            "max_connections",
            "max_connections_per_uid",
            "max_streams_per_connection",
        ] {
            let zero = MINIMAL.replace("[server]", &format!("[server]\n{key} = 0"));
            let err = parse(&zero).expect_err(key).to_string();
            assert!(err.contains(key), "{err}");
        }
        let zero_queue = MINIMAL.replace(
            "pin_file = \"/etc/sigil/pins/hsm\"",
            "pin_file = \"/etc/sigil/pins/hsm\"\nmax_queued_jobs = 0",
        );
        let err = parse(&zero_queue).expect_err("queue 0").to_string();
        assert!(err.contains("max_queued_jobs"), "{err}");

        let ns = "\n[notary_signer]\nlisten = \"127.0.0.1:7899\"\ntls_cert = \"/c\"\n\
                  tls_key = \"/k\"\nclient_ca = \"/ca\"\nbackend = \"hsm\"\nallowed_clients = [\"n\"]\n";
        let c = parse(&format!("{MINIMAL}{ns}")).expect("notary_signer");
        let n = c.notary_signer.expect("section");
        assert_eq!(n.max_connections, limits::NOTARY_MAX_CONNECTIONS);
        assert_eq!(n.handshake_timeout_secs, limits::HANDSHAKE_TIMEOUT_SECS);
        for bad in ["max_connections = 0", "handshake_timeout_secs = 0"] {
            let err = parse(&format!("{MINIMAL}{ns}{bad}\n"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(&bad[..bad.len() - 4]), "{err}");
        }
    }

    #[test]
    fn requirements_parse_strictly() {
        let text = format!(
            "{MINIMAL}\n[[require]]\nname = \"root\"\nrole = \"root\"\nattested = true\ntouch = \"always\"\n"
        );
        let c = parse(&text).expect("parse");
        assert_eq!(c.requirements[0].touch, Some(TouchSetting::Always));
        assert!(c.requirements[0].attested);
        let unknown = text.replace("attested = true", "attested = true\npin = \"always\"");
        assert!(
            parse(&unknown)
                .expect_err("unknown")
                .to_string()
                .contains("pin")
        );
        let empty = format!("{MINIMAL}\n[[require]]\nname = \"x\"\ntouch = \"never\"\n");
        assert!(
            parse(&empty)
                .expect_err("nothing")
                .to_string()
                .contains("requires nothing")
        );
        let bad = text.replace("touch = \"always\"", "touch = \"sometimes\"");
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/sigild.toml.example");
        let config = Config::load(&path).expect("daemon/dist/sigild.toml.example must parse");
        assert!(!config.backends.is_empty());
        assert!(!config.policies.is_empty());
    }
}
