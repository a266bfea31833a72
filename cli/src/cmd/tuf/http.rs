//! The HTTP side of `sigil tuf client`: a [`Fetcher`] over reqwest that streams each response
//! and stops once it passes the cap for that file (an endless-data attack ends there), with a
//! connect and a read deadline (a slow-retrieval attack ends there).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use sigil_tuf::client::Fetcher;

use crate::error::Error;

/// How long a TCP/TLS connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may stay silent while sending a response.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches metadata and targets below two base URLs.
pub(crate) struct HttpFetcher {
    http: reqwest::Client,
    metadata: Option<Url>,
    targets: Option<Url>,
}

/// A base URL, checked to be http(s) and ending in `/` so that names are joined below it.
pub(crate) fn base_url(flag: &str, text: &str) -> Result<Url, Error> {
    let mut url =
        Url::parse(text).map_err(|e| Error::Usage(format!("{flag} {text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(Error::Usage(format!(
            "{flag} {text:?} must be an http:// or https:// URL without a query"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

impl HttpFetcher {
    pub(crate) fn new(metadata: Option<Url>, targets: Option<Url>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("sigil/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            metadata,
            targets,
        })
    }
}

fn failed(what: &str, reason: impl Into<String>) -> sigil_tuf::Error {
    sigil_tuf::Error::Fetch {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

#[async_trait]
impl Fetcher for HttpFetcher {
    async fn fetch(
        &mut self,
        name: &str,
        target: bool,
        max_len: u64,
    ) -> sigil_tuf::Result<Option<Vec<u8>>> {
        let (base, flag) = if target {
            (&self.targets, "--target-base-url")
        } else {
            (&self.metadata, "--metadata-url")
        };
        let base = base
            .as_ref()
            .ok_or_else(|| failed(name, format!("{flag} is needed")))?;
        // `name` is already percent-encoded by the client; joined as text so that it stays
        // below the base path.
        let url = format!("{base}{name}");
        tracing::debug!(%url, max_len, "fetching");
        let mut response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| failed(&url, e.without_url().to_string()))?;
        match response.status() {
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => return Ok(None),
            status if !status.is_success() => {
                return Err(failed(&url, format!("server answered {status}")));
            }
            _ => {}
        }
        let too_long = || failed(&url, format!("longer than the {max_len} bytes allowed"));
        if response.content_length().is_some_and(|len| len > max_len) {
            return Err(too_long());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(&url, e.without_url().to_string()))?
        {
            if (body.len() + chunk.len()) as u64 > max_len {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use super::*;

    /// A one-connection loopback server: answers with `head`, then writes `body_chunks`
    /// chunks of 8 KiB (or until the client hangs up).
    fn serve_once(head: &'static str, body_chunks: usize) -> (Url, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url =
            Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            // Ends the thread even if the client kept the connection open without reading.
            conn.set_write_timeout(Some(Duration::from_secs(10)))
                .expect("write timeout");
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).expect("read");
                assert!(n > 0, "client closed before sending a request");
                request.extend_from_slice(&buf[..n]);
            }
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            for _ in 0..body_chunks {
                if conn.write_all(&[b'x'; 8192]).is_err() {
                    return;
                }
            }
        });
        (url, server)
    }

    /// Joins the server thread without blocking the runtime, whose connection task must run
    /// to close the socket the server writes to.
    async fn join(server: std::thread::JoinHandle<()>) {
        tokio::task::spawn_blocking(move || server.join().expect("server thread"))
            .await
            .expect("join");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endless_bodies_stop_at_the_cap() {
        // No Content-Length: only the streaming count can stop it (about 80 MiB offered).
        let (url, server) = serve_once("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 10_000);
        let mut fetcher = HttpFetcher::new(Some(url), None).expect("fetcher");
        let err = match fetcher.fetch("timestamp.json", false, 16_384).await {
            Ok(body) => panic!("accepted {} bytes", body.map_or(0, |b| b.len())),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains("longer than the 16384 bytes"),
            "{err}"
        );
        drop(fetcher);
        join(server).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_declared_length_above_the_cap_is_refused_and_404_is_absent() {
        let (url, server) = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n",
            0,
        );
        let mut fetcher = HttpFetcher::new(Some(url), None).expect("fetcher");
        let err = match fetcher.fetch("1.snapshot.json", false, 100).await {
            Ok(body) => panic!("accepted {} bytes", body.map_or(0, |b| b.len())),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains("longer than the 100 bytes"),
            "{err}"
        );
        join(server).await;

        let (url, server) = serve_once(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            0,
        );
        let mut fetcher = HttpFetcher::new(Some(url), None).expect("fetcher");
        let got = fetcher.fetch("2.root.json", false, 100).await.expect("404");
        assert_eq!(got, None);
        join(server).await;
    }
}
