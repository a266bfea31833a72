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
