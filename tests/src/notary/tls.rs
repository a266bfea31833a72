//! HTTPS requests and raw TLS handshakes against the lab's servers.

use super::*;

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text (lossily).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(ca: &Path) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .unwrap_or_else(|e| panic!("reading {}: {e}", ca.display()))
    {
        let cert = cert.unwrap_or_else(|e| panic!("parsing {}: {e}", ca.display()));
        roots
            .add(cert)
            .unwrap_or_else(|e| panic!("adding {} as a root: {e}", ca.display()));
    }
    roots
}

/// A rustls client configuration trusting only `ca`, presenting `identity` if given, limited
/// to `versions`, offering `alpn`.
pub fn tls_client_config(
    ca: &Path,
    identity: Option<&CertKey>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(root_store(ca));
    let mut config = match identity {
        Some(id) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&id.cert)
                .unwrap_or_else(|e| panic!("reading {}: {e}", id.cert.display()))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("parsing {}: {e}", id.cert.display()));
            let key = PrivateKeyDer::from_pem_file(&id.key)
                .unwrap_or_else(|e| panic!("reading {}: {e}", id.key.display()));
            builder
                .with_client_auth_cert(chain, key)
                .expect("a valid client certificate and key")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn loopback_name() -> ServerName<'static> {
    ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into())
}

fn loopback_stream(port: u16) -> std::io::Result<TcpStream> {
    let sock = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(5),
    )?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(sock)
}

/// One HTTPS/1.1 request to `https://127.0.0.1:port{path}` verified against `ca`, with an
/// empty body. Transport errors are returned, HTTP errors are in the status.
pub fn https_request(
    port: u16,
    ca: &Path,
    method: &str,
    path: &str,
) -> std::io::Result<HttpResponse> {
    let config = tls_client_config(ca, None, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);
    let conn =
        rustls::ClientConnection::new(Arc::new(config), loopback_name()).map_err(io_error)?;
    let mut tls = rustls::StreamOwned::new(conn, loopback_stream(port)?);
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: 0\r\nUser-Agent: sigil-e2e\r\n\r\n"
    )?;
    tls.flush()?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify: the response is complete anyway.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_http(&raw)
}

pub(crate) fn parse_http(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io_error("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io_error(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| io_error("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io_error(format!("bad chunk size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(io_error("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// How a raw TLS connection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// The handshake completed and the server answered application data (HTTP/2 SETTINGS).
    Accepted,
    /// The server refused: the error the client saw (e.g. a fatal alert), or `closed`.
    Refused(String),
}

/// Connects to `127.0.0.1:port` with `versions` only, verifying the server against `ca` and
/// presenting `identity` (or no certificate), offers ALPN `h2` and sends the HTTP/2 preface.
///
/// With TLS 1.2 a refused client certificate fails the handshake itself. With TLS 1.3 the
/// client's side of the handshake completes before the server has judged the certificate, so
/// a refusal arrives as a fatal alert instead of the server's first HTTP/2 frame: both are
/// reported as [`Handshake::Refused`], and no request is ever read by the server.
pub fn tls_handshake(
    port: u16,
    ca: &Path,
    identity: Option<&CertKey>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Handshake {
    let config = tls_client_config(ca, identity, versions, &[b"h2"]);
    let mut conn = rustls::ClientConnection::new(Arc::new(config), loopback_name())
        .expect("a client connection to 127.0.0.1");
    let mut sock = match loopback_stream(port) {
        Ok(s) => s,
        Err(e) => return Handshake::Refused(format!("connect: {e}")),
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Handshake::Refused(e.to_string());
        }
    }
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    // The client preface, then an empty SETTINGS frame.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 0x04, 0, 0, 0, 0, 0]);
    if let Err(e) = tls.write_all(&preface).and_then(|()| tls.flush()) {
        return Handshake::Refused(e.to_string());
    }
    let mut buf = [0u8; 64];
    match tls.read(&mut buf) {
        Ok(0) => Handshake::Refused("closed".into()),
        Ok(_) => Handshake::Accepted,
        Err(e) => Handshake::Refused(e.to_string()),
    }
}

/// Waits (up to `timeout`) until the mutual-TLS listener on `port` accepts `identity`;
/// `alive` is asked between attempts and a `false` fails at once with `context()`.
pub fn wait_mtls(
    port: u16,
    ca: &Path,
    identity: &CertKey,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let started = Instant::now();
    let mut last;
    loop {
        assert!(
            alive(),
            "the signer on 127.0.0.1:{port} exited:\n{}",
            context()
        );
        last = tls_handshake(port, ca, Some(identity), rustls::ALL_VERSIONS);
        if last == Handshake::Accepted {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "127.0.0.1:{port} did not accept a mutual TLS handshake within {timeout:?} \
             (last: {last:?}):\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
