//! The HTTP(S) client for notary-server's TUF API (what the notary 0.7 client uses): metadata
//! by name (`<role>.json`), by content hash (`<role>.<sha256 hex>.json`) and by version
//! (`<N>.root.json`), the atomic multipart publish, the server-managed `timestamp.key` /
//! `snapshot.key` (GET creates, POST rotates) and DELETE of a whole collection.
//!
//! TLS is rustls: the system roots, or only the CA given with `--tlscacert`. Failures become
//! one clear [`Error`]: the server unreachable, TLS refused, or an HTTP error carrying the
//! server's own code from its `{"errors":[{"code","message"}]}` envelope.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use sigil_tuf::TufKey;
use tracing::debug;

use crate::error::{Error, one_line};
use crate::settings::Settings;

/// How long to wait for a TCP connection and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one exchange may take: a publish of tens of thousands of targets is megabytes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest timestamp.json accepted (notary's `MaxTimestampSize`): it is fetched before
/// anything says how long it should be, and a real one is under a kilobyte.
pub(crate) const MAX_TIMESTAMP_BYTES: u64 = 1 << 20;
/// Largest metadata file accepted when no signed role lists its length (root.json,
/// `N.root.json`; notary's `MaxDownloadSize`). A file some role lists is read no further
/// than the length listed.
pub(crate) const MAX_METADATA_BYTES: u64 = 100 << 20;
/// Largest answer that is not metadata (error envelopes, `<role>.key`, a publish's reply).
const MAX_REPLY_BYTES: u64 = 1 << 20;

/// A client of one notary-server.
#[derive(Debug, Clone)]
pub(crate) struct NotaryServer {
    http: reqwest::Client,
    base: Url,
}

/// The docker-registry v2 error envelope notary-server answers errors with.
#[derive(Debug, Deserialize)]
struct Envelope {
    errors: Vec<EnvelopeError>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: serde_json::Value,
}

/// The server's error code and message from an error body, when it has the envelope.
pub(crate) fn parse_error_body(body: &[u8]) -> Option<(String, String)> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let first = envelope.errors.into_iter().next()?;
    let mut message = first.message;
    let detail = match &first.detail {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) if o.is_empty() => String::new(),
        other => other.to_string(),
    };
    if !detail.is_empty() {
        message = format!("{message} ({detail})");
    }
    Some((first.code, one_line(&message)))
}

/// What rustls's errors say (`rustls::Error`'s messages), for when the error itself is boxed
/// away in the connector's chain and cannot be downcast.
const TLS_MESSAGES: [&str; 5] = [
    "invalid peer certificate",
    "received fatal alert",
    "peer is incompatible",
    "peer misbehaved",
    "no application protocol",
];

/// Whether a reqwest error comes from the TLS layer (rustls), and its reason.
fn tls_failure(err: &reqwest::Error) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls.to_string());
        }
        let text = e.to_string();
        if TLS_MESSAGES.iter().any(|m| text.starts_with(m)) {
            return Some(text);
        }
        current = e.source();
    }
    None
}

fn transport_error(url: &Url, err: &reqwest::Error) -> Error {
    if let Some(reason) = tls_failure(err) {
        return Error::ServerTls {
            url: origin(url),
            reason,
        };
    }
    Error::ServerUnreachable {
        url: origin(url),
        reason: crate::error::root_cause(err),
    }
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// A multipart boundary that does not occur in any part.
fn boundary(parts: &BTreeMap<String, Vec<u8>>) -> String {
    let mut seed = Sha256::new();
    seed.update(std::process::id().to_be_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    seed.update(nanos.to_be_bytes());
    let mut digest = seed.finalize();
    loop {
        let candidate = hex::encode(&digest[..30]);
        let clash = parts.values().any(|bytes| {
            bytes
                .windows(candidate.len())
                .any(|w| w == candidate.as_bytes())
        });
        if !clash {
            return candidate;
        }
        digest = Sha256::digest(digest);
    }
}

/// The body of an atomic publish: one `files` part per role, named by the role.
pub(crate) fn multipart_body(parts: &BTreeMap<String, Vec<u8>>) -> (String, Vec<u8>) {
    let boundary = boundary(parts);
    let mut body = Vec::with_capacity(parts.values().map(|p| p.len() + 200).sum());
    for (role, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; \
                 filename=\"{role}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// How many bytes of `role`'s file to read at most: the length a signed role lists for it
/// (never more than [`MAX_METADATA_BYTES`]: a server-managed snapshot key is the server's),
/// else [`MAX_TIMESTAMP_BYTES`] for the timestamp and [`MAX_METADATA_BYTES`] for the rest.
fn role_cap(role: &str, listed_length: Option<u64>) -> u64 {
    match (listed_length, role) {
        (Some(length), _) => length.min(MAX_METADATA_BYTES),
        (None, "timestamp") => MAX_TIMESTAMP_BYTES,
        (None, _) => MAX_METADATA_BYTES,
    }
}

impl NotaryServer {
    /// A client for the server in `settings`, trusting its CA when one is given.
    pub(crate) fn new(settings: &Settings) -> Result<Self, Error> {
        let mut base = Url::parse(&settings.server).map_err(|e| {
            Error::Usage(format!(
                "notary server URL {:?} is invalid: {e}",
                settings.server
            ))
        })?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(Error::Usage(format!(
                "notary server URL {:?} must start with https:// (or http://)",
                settings.server
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("sigil/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(ca) = &settings.tls_ca {
            let pem = read_file("CA certificate", ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Usage(format!("{} is not a PEM CA certificate: {e}", ca.display()))
            })?;
            if certs.is_empty() {
                return Err(Error::Usage(format!(
                    "{} holds no PEM certificate",
                    ca.display()
                )));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &settings.tls_client {
            let mut pem = read_file("client certificate", cert)?;
            pem.extend_from_slice(b"\n");
            pem.extend_from_slice(&read_file("client key", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::Usage(format!(
                    "client certificate {} / key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Internal(format!("cannot set up HTTPS: {e}")))?;
        Ok(Self { http, base })
    }

    /// The server's base URL.
    pub(crate) fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `<base>/v2/<gun>/_trust/tuf/<tail>`, each path segment encoded.
    fn tuf_url(&self, gun: &str, tail: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push("v2");
            segments.extend(gun.split('/'));
            segments.extend(["_trust", "tuf"]);
            segments.extend(tail.split('/'));
        }
        url
    }

    /// Sends a request and reads the answer as it streams in, refusing it as soon as it
    /// passes `cap` bytes (a declared Content-Length above the cap is refused before reading):
    /// a server that sends endless data costs at most `cap` bytes of memory. An error status's
    /// body is read up to [`MAX_REPLY_BYTES`] only.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<(String, Vec<u8>)>,
        cap: u64,
    ) -> Result<(StatusCode, Vec<u8>), Error> {
        debug!(%method, %url, "notary server request");
        let mut request = self.http.request(method.clone(), url.clone());
        request = match body {
            Some((content_type, bytes)) => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
            None => request.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        let status = response.status();
        let cap = if status.is_success() {
            cap
        } else {
            cap.min(MAX_REPLY_BYTES)
        };
        let too_long = |what: String| Error::ServerMisbehaved {
            url: origin(&url),
            what: format!("{method} {}", url.path()),
            reason: format!("{what}, more than the {cap} bytes sigil accepts for it"),
        };
        if let Some(len) = response.content_length()
            && len > cap
        {
            return Err(too_long(format!("it announces {len} bytes")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&url, &e))?
        {
            if (bytes.len() + chunk.len()) as u64 > cap {
                return Err(too_long("it sends more".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    }

    fn http_error(what: String, status: StatusCode, body: &[u8]) -> Error {
        let (code, message) = parse_error_body(body).unwrap_or_else(|| {
            let text = one_line(&String::from_utf8_lossy(body));
            let text: String = text.chars().take(300).collect();
            (String::new(), text)
        });
        Error::Server {
            what,
            status: status.as_u16(),
            code,
            message,
        }
    }

    async fn get_optional(
        &self,
        gun: &str,
        tail: &str,
        cap: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        let url = self.tuf_url(gun, tail);
        let (status, body) = self.send(Method::GET, url, None, cap).await?;
        match status {
            StatusCode::OK => Ok(Some(body)),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(Self::http_error(
                format!("GET {tail} of {gun}"),
                status,
                &body,
            )),
        }
    }

    /// The current `<role>.json` (`None` when the server has none), read no further than
    /// `listed_length` when a signed role lists it, else than the role's own cap.
    pub(crate) async fn role(
        &self,
        gun: &str,
        role: &str,
        listed_length: Option<u64>,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.get_optional(gun, &format!("{role}.json"), role_cap(role, listed_length))
            .await
    }

    /// `<role>.<sha256 hex>.json`: the file whose hash a listing role pins.
    pub(crate) async fn role_by_hash(
        &self,
        gun: &str,
        role: &str,
        sha256_hex: &str,
        listed_length: Option<u64>,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.get_optional(
            gun,
            &format!("{role}.{sha256_hex}.json"),
            role_cap(role, listed_length),
        )
        .await
    }

    /// `<version>.root.json`, for walking root rotations.
    pub(crate) async fn root_version(
        &self,
        gun: &str,
        version: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.get_optional(gun, &format!("{version}.root.json"), MAX_METADATA_BYTES)
            .await
    }

    async fn key(&self, method: Method, gun: &str, role: &str) -> Result<TufKey, Error> {
        let tail = format!("{role}.key");
        let url = self.tuf_url(gun, &tail);
        let (status, body) = self
            .send(method.clone(), url, None, MAX_REPLY_BYTES)
            .await?;
        if status != StatusCode::OK {
            return Err(Self::http_error(
                format!("{method} {tail} of {gun}"),
                status,
                &body,
            ));
        }
        let key: TufKey = serde_json::from_slice(&body).map_err(|e| Error::Server {
            what: format!("{method} {tail} of {gun}"),
            status: status.as_u16(),
            code: String::new(),
            message: format!("the reply is not a public key: {e}"),
        })?;
        key.to_public_key()
            .map_err(|e| Error::tuf(format!("the server's {role} key for {gun}"), e))?;
        Ok(key)
    }

    /// The server-managed key of `role` (`timestamp` or `snapshot`), created if needed.
    pub(crate) async fn server_key(&self, gun: &str, role: &str) -> Result<TufKey, Error> {
        self.key(Method::GET, gun, role).await
    }

    /// Asks the server for a new key for `role` (`timestamp` or `snapshot`).
    pub(crate) async fn rotate_server_key(&self, gun: &str, role: &str) -> Result<TufKey, Error> {
        self.key(Method::POST, gun, role).await
    }

    /// Atomically publishes `updates` (role → signed file).
    pub(crate) async fn publish(
        &self,
        gun: &str,
        updates: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), Error> {
        let url = self.tuf_url(gun, "");
        let (content_type, body) = multipart_body(updates);
        let (status, reply) = self
            .send(
                Method::POST,
                url,
                Some((content_type, body)),
                MAX_REPLY_BYTES,
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::http_error(
                format!("publishing {gun}"),
                status,
                &reply,
            ))
        }
    }

    /// Deletes every file of the collection on the server.
    pub(crate) async fn delete(&self, gun: &str) -> Result<(), Error> {
        let url = self.tuf_url(gun, "");
        let (status, reply) = self
            .send(Method::DELETE, url, None, MAX_REPLY_BYTES)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::http_error(format!("deleting {gun}"), status, &reply))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn server(url: &str) -> NotaryServer {
        NotaryServer::new(&Settings {
            server: url.into(),
            tls_ca: None,
            tls_client: None,
            trust_dir: PathBuf::from("/tmp"),
            pins: BTreeMap::new(),
            pinned_cas: BTreeMap::new(),
            disable_tofu: false,
            read_deadline: crate::settings::DEFAULT_READ_DEADLINE,
        })
        .expect("client")
    }

    #[test]
    fn error_envelopes_give_the_servers_code() {
        let body = br#"{"errors":[{"code":"METADATA_NOT_FOUND","message":"You have requested metadata that does not exist.","detail":{}}]}"#;
        assert_eq!(
            parse_error_body(body),
            Some((
                "METADATA_NOT_FOUND".into(),
                "You have requested metadata that does not exist.".into()
            ))
        );
        let body = br#"{"errors":[{"code":"INVALID_UPDATE","message":"update is invalid","detail":"targets: bad\nsig"}]}"#;
        assert_eq!(
            parse_error_body(body),
            Some((
                "INVALID_UPDATE".into(),
                "update is invalid (targets: bad sig)".into()
            ))
        );
        assert_eq!(parse_error_body(b"not json"), None);
        assert_eq!(parse_error_body(br#"{"errors":[]}"#), None);
        let err = NotaryServer::http_error(
            "publishing example.com/app".into(),
            StatusCode::BAD_REQUEST,
            br#"{"errors":[{"code":"VERSION","message":"old version"}]}"#,
        );
        assert_eq!(
            err.to_string(),
            "notary server refused publishing example.com/app: HTTP 400 VERSION: old version"
        );
        let err = NotaryServer::http_error(
            "GET x".into(),
            StatusCode::BAD_GATEWAY,
            b"<html>bad\ngateway</html>",
        );
        assert_eq!(
            err.to_string(),
            "notary server refused GET x: HTTP 502: <html>bad gateway</html>"
        );
    }

    #[test]
    fn urls_encode_the_gun_and_role() {
        let s = server("https://notary.example:4443");
        assert_eq!(
            s.tuf_url("example.com/app", "targets/releases.abcd.json")
                .as_str(),
            "https://notary.example:4443/v2/example.com/app/_trust/tuf/targets/releases.abcd.json"
        );
        assert_eq!(
            s.tuf_url("localhost:5000/é x", "").as_str(),
            "https://notary.example:4443/v2/localhost:5000/%C3%A9%20x/_trust/tuf/"
        );
        let s = server("https://notary.example/prefix");
        assert_eq!(
            s.tuf_url("a/b", "root.json").as_str(),
            "https://notary.example/prefix/v2/a/b/_trust/tuf/root.json"
        );
        assert!(
            NotaryServer::new(&Settings {
                server: "ftp://x".into(),
                ..s_settings()
            })
            .is_err()
        );
    }

    fn s_settings() -> Settings {
        Settings {
            server: String::new(),
            tls_ca: None,
            tls_client: None,
            trust_dir: PathBuf::from("/tmp"),
            pins: BTreeMap::new(),
            pinned_cas: BTreeMap::new(),
            disable_tofu: false,
            read_deadline: crate::settings::DEFAULT_READ_DEADLINE,
        }
    }

    #[test]
    fn multipart_has_one_files_part_per_role() {
        let mut parts = BTreeMap::new();
        parts.insert("targets".to_owned(), b"{\"a\":1}".to_vec());
        parts.insert("targets/releases".to_owned(), b"{\"b\":2}".to_vec());
        let (content_type, body) = multipart_body(&parts);
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("boundary");
        let text = String::from_utf8(body).expect("utf8");
        assert_eq!(
            text,
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n{{\"a\":1}}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets/releases\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n{{\"b\":2}}\r\n--{boundary}--\r\n"
            )
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let s = server(&format!("https://127.0.0.1:{port}"));
        let err = s
            .role("example.com/app", "root", None)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::ServerUnreachable { .. }),
            "{err:?}: {err}"
        );
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
        assert_eq!(err.exit_code(), crate::error::exit::UNAVAILABLE);
    }
}
