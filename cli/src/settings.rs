//! Where trusted-collection commands find the notary server, its CA and the trust dir: flags
//! first (`-s`, `--tlscacert`, `-d`), then the config file (`-c FILE`, else
//! `~/.sigil/config.json` when it exists), then the defaults (`https://notary-server:4443`, as
//! the notary client, and `~/.sigil/trust`).
//!
//! The config file uses the notary client's `config.json` keys, so an existing one works:
//!
//! ```json
//! { "trust_dir": "~/.sigil/trust",
//!   "remote_server": { "url": "https://notary.example.com", "root_ca": "ca.crt",
//!                      "tls_client_cert": "client.crt", "tls_client_key": "client.key" },
//!   "trust_pinning": { "certs": { "example.com/app": ["<root key id>"] },
//!                      "ca": { "example.com/": "root-ca.crt" },
//!                      "disable_tofu": false } }
//! ```
//!
//! Relative paths in the file are relative to the file's directory, and `~/` is the home
//! directory. `remote_server.skipTLSVerify` is refused rather than honoured.
//!
//! One key is sigil's own (the notary client ignores it): `remote_server.read_deadline_seconds`,
//! how long one read of a collection from the server may take in all (default
//! [`DEFAULT_READ_DEADLINE`]), so a server that trickles data cannot hold a command for hours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::GlobalArgs;
use crate::error::Error;

/// The notary client's default server URL (its docker-compose service name).
pub(crate) const DEFAULT_SERVER: &str = "https://notary-server:4443";

/// How long one verified read of a collection from the server may take, every request
/// included: minutes of headroom for a large collection on a slow link, not hours.
pub(crate) const DEFAULT_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// The resolved settings of a collection command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// notary-server's base URL.
    pub(crate) server: String,
    /// CA file to trust instead of the system roots.
    pub(crate) tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that require one.
    pub(crate) tls_client: Option<(PathBuf, PathBuf)>,
    /// The trust dir.
    pub(crate) trust_dir: PathBuf,
    /// Root key ids pinned per GUN (`trust_pinning.certs`).
    pub(crate) pins: BTreeMap<String, Vec<String>>,
    /// CA bundles pinned per GUN prefix (`trust_pinning.ca`), paths resolved.
    pub(crate) pinned_cas: BTreeMap<String, PathBuf>,
    /// Refuse trust on first use for collections without a pin.
    pub(crate) disable_tofu: bool,
    /// How long one verified read from the server may take in all.
    pub(crate) read_deadline: std::time::Duration,
}

#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    #[serde(default)]
    trust_dir: Option<String>,
    #[serde(default)]
    remote_server: RemoteServer,
    #[serde(default)]
    trust_pinning: TrustPinning,
}

#[derive(Debug, Default, Deserialize)]
struct RemoteServer {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    root_ca: Option<String>,
    #[serde(default)]
    tls_client_cert: Option<String>,
    #[serde(default)]
    tls_client_key: Option<String>,
    #[serde(default, rename = "skipTLSVerify")]
    skip_tls_verify: bool,
    #[serde(default)]
    read_deadline_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct TrustPinning {
    #[serde(default)]
    certs: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    ca: BTreeMap<String, String>,
    #[serde(default)]
    disable_tofu: bool,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `~/x` → `$HOME/x`; relative paths are joined to `base`.
fn resolve_path(text: &str, base: &Path) -> PathBuf {
    if let Some(rest) = text.strip_prefix("~/")
        && let Some(home) = home()
    {
        return home.join(rest);
    }
    if text == "~"
        && let Some(home) = home()
    {
        return home;
    }
    base.join(text)
}

impl Settings {
    /// The CA bundle pinned for `gun`: the longest `trust_pinning.ca` prefix it starts with.
    pub(crate) fn pinned_ca(&self, gun: &str) -> Option<&Path> {
        self.pinned_cas
            .iter()
            .filter(|(prefix, _)| gun.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, path)| path.as_path())
    }

    /// Resolves the settings from the global flags and the config file.
    pub(crate) fn resolve(global: &GlobalArgs) -> Result<Self, Error> {
        let config_path = match &global.config {
            Some(path) => Some(path.clone()),
            None => home()
                .map(|h| h.join(".sigil").join("config.json"))
                .filter(|p| p.is_file()),
        };
        let (file, base) = match &config_path {
            Some(path) => {
                let text = std::fs::read(path).map_err(|e| Error::Config {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let file: FileConfig =
                    serde_json::from_slice(&text).map_err(|e| Error::Config {
                        path: path.clone(),
                        reason: format!("not a valid config file: {e}"),
                    })?;
                let base = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
                (file, base)
            }
            None => (FileConfig::default(), PathBuf::from(".")),
        };
        Self::from_parts(global, file, &base, config_path.as_deref())
    }

    fn from_parts(
        global: &GlobalArgs,
        file: FileConfig,
        base: &Path,
        config_path: Option<&Path>,
    ) -> Result<Self, Error> {
        if file.remote_server.skip_tls_verify {
            return Err(Error::Config {
                path: config_path.map(Path::to_path_buf).unwrap_or_default(),
                reason: "remote_server.skipTLSVerify is not supported: trust the server's CA \
                         with root_ca or --tlscacert instead"
                    .into(),
            });
        }
        let server = global
            .server
            .clone()
            .or(file.remote_server.url)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let tls_ca = match &global.tlscacert {
            Some(path) => Some(path.clone()),
            None => file.remote_server.root_ca.map(|p| resolve_path(&p, base)),
        };
        let tls_client = match (
            file.remote_server.tls_client_cert,
            file.remote_server.tls_client_key,
        ) {
            (Some(cert), Some(key)) => Some((resolve_path(&cert, base), resolve_path(&key, base))),
            (None, None) => None,
            _ => {
                return Err(Error::Config {
                    path: config_path.map(Path::to_path_buf).unwrap_or_default(),
                    reason: "remote_server needs both tls_client_cert and tls_client_key".into(),
                });
            }
        };
        let read_deadline = match file.remote_server.read_deadline_seconds {
            None => DEFAULT_READ_DEADLINE,
            Some(0) => {
                return Err(Error::Config {
                    path: config_path.map(Path::to_path_buf).unwrap_or_default(),
                    reason: "remote_server.read_deadline_seconds must be at least 1".into(),
                });
            }
            Some(secs) => std::time::Duration::from_secs(secs),
        };
        let trust_dir = match (&global.trust_dir, file.trust_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => resolve_path(&dir, base),
            (None, None) => match home() {
                Some(home) => home.join(".sigil").join("trust"),
                None => {
                    return Err(Error::Usage(
                        "HOME is not set: pass the trust dir with -d/--trust-dir".into(),
                    ));
                }
            },
        };
        Ok(Self {
            server,
            tls_ca,
            tls_client,
            trust_dir,
            pins: file.trust_pinning.certs,
            pinned_cas: file
                .trust_pinning
                .ca
                .into_iter()
                .map(|(prefix, path)| (prefix, resolve_path(&path, base)))
                .collect(),
            disable_tofu: file.trust_pinning.disable_tofu,
            read_deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser as _;

    fn global(args: &[&str]) -> GlobalArgs {
        Cli::try_parse_from([&["sigil"], args, &["list", "example.com/app"]].concat())
            .expect("parse")
            .global
    }

    #[test]
    fn flags_win_over_the_file_and_paths_resolve_against_it() {
        let file: FileConfig = serde_json::from_str(
            r#"{"trust_dir":"trust","remote_server":{"url":"https://from-file:4443",
                "root_ca":"ca.crt"},"trust_pinning":{"certs":{"example.com/app":["ab"]}},
                "unknown":1}"#,
        )
        .expect("config");
        let s = Settings::from_parts(&global(&[]), file, Path::new("/etc/sigil"), None)
            .expect("settings");
        assert_eq!(s.server, "https://from-file:4443");
        assert_eq!(s.tls_ca, Some(PathBuf::from("/etc/sigil/ca.crt")));
        assert_eq!(s.trust_dir, PathBuf::from("/etc/sigil/trust"));
        assert_eq!(s.pins["example.com/app"], ["ab"]);

        let file: FileConfig =
            serde_json::from_str(r#"{"remote_server":{"url":"https://x"}}"#).expect("config");
        let s = Settings::from_parts(
            &global(&["-s", "https://flag:1", "--tlscacert", "my.crt", "-d", "/td"]),
            file,
            Path::new("/etc"),
            None,
        )
        .expect("settings");
        assert_eq!(s.server, "https://flag:1");
        assert_eq!(s.tls_ca, Some(PathBuf::from("my.crt")));
        assert_eq!(s.trust_dir, PathBuf::from("/td"));
    }

    #[test]
    fn the_longest_pinned_ca_prefix_wins_and_its_path_resolves_against_the_file() {
        let file: FileConfig = serde_json::from_str(
            r#"{"trust_pinning":{"ca":{"example.com/":"all.crt",
                "example.com/team/":"/abs/team.crt","":"any.crt"}}}"#,
        )
        .expect("config");
        let s = Settings::from_parts(&global(&["-d", "/td"]), file, Path::new("/etc/s"), None)
            .expect("settings");
        let ca = |gun| s.pinned_ca(gun).map(Path::to_path_buf);
        assert_eq!(ca("example.com/team/app"), Some("/abs/team.crt".into()));
        assert_eq!(ca("example.com/app"), Some("/etc/s/all.crt".into()));
        assert_eq!(ca("other.org/app"), Some("/etc/s/any.crt".into()));
        let none = Settings::from_parts(
            &global(&["-d", "/td"]),
            FileConfig::default(),
            Path::new("."),
            None,
        )
        .expect("settings");
        assert_eq!(none.pinned_ca("example.com/app"), None);
    }

    #[test]
    fn defaults_follow_notary_and_skip_verify_is_refused() {
        let s = Settings::from_parts(
            &global(&["-d", "/td"]),
            FileConfig::default(),
            Path::new("."),
            None,
        )
        .expect("settings");
        assert_eq!(s.server, DEFAULT_SERVER);
        assert_eq!(s.tls_ca, None);
        assert_eq!(s.read_deadline, DEFAULT_READ_DEADLINE);
        let file: FileConfig =
            serde_json::from_str(r#"{"remote_server":{"read_deadline_seconds":7}}"#)
                .expect("config");
        let s = Settings::from_parts(&global(&["-d", "/td"]), file, Path::new("."), None)
            .expect("settings");
        assert_eq!(s.read_deadline, std::time::Duration::from_secs(7));
        let file: FileConfig =
            serde_json::from_str(r#"{"remote_server":{"read_deadline_seconds":0}}"#)
                .expect("config");
        assert!(Settings::from_parts(&global(&["-d", "/td"]), file, Path::new("."), None).is_err());
        let file: FileConfig =
            serde_json::from_str(r#"{"remote_server":{"skipTLSVerify":true}}"#).expect("config");
        let err =
            Settings::from_parts(&global(&[]), file, Path::new("."), None).expect_err("refused");
        assert!(err.to_string().contains("skipTLSVerify"), "{err}");
    }
}
