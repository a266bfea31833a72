//! Scraping sigild's Prometheus endpoint (`[metrics]`) as a scraper does: one HTTP/1.1
//! request per connection over TCP or a Unix socket, the OpenMetrics text parsed into samples
//! (and re-read by the Prometheus project's own Python parser), and which TCP ports a process
//! listens on.

use std::collections::BTreeMap;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// The Content-Type sigild serves the exposition with.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape answered.
#[derive(Debug)]
pub struct Scrape {
    /// HTTP status.
    pub status: u16,
    /// The Content-Type header.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// One request over a fresh connection (TCP or Unix), as a scraper makes it.
pub async fn request<S>(stream: S, method: &str, path: &str) -> Scrape
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake");
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("HTTP request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii content-type").to_owned())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    Scrape {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 exposition"),
    }
}

/// [`request`] over a new TCP connection to 127.0.0.1:`port`.
pub async fn over_tcp(port: u16, method: &str, path: &str) -> Scrape {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics port");
    request(stream, method, path).await
}

/// `GET /metrics` over TCP, checked for status, content type and the OpenMetrics end marker.
pub async fn scrape(port: u16) -> Samples {
    let got = over_tcp(port, "GET", "/metrics").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.content_type, OPENMETRICS);
    Samples::parse(&got.body)
}

/// The samples of an exposition: (name, labels) → value.
#[derive(Debug)]
pub struct Samples {
    /// The exposition as served.
    pub text: String,
    values: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Samples {
    /// Parses the OpenMetrics text strictly enough for these tests: every line is a comment or
    /// `name{k="v",...} value`, and the text ends with `# EOF`.
    pub fn parse(text: &str) -> Self {
        assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
        let mut values = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("bad labels: {line}"));
                    let labels = inner
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair
                                .split_once('=')
                                .unwrap_or_else(|| panic!("bad label: {line}"));
                            let v = v
                                .strip_prefix('"')
                                .and_then(|v| v.strip_suffix('"'))
                                .unwrap_or_else(|| panic!("unquoted label: {line}"));
                            (k.to_owned(), v.to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            let old = values.insert((name.to_owned(), labels), value);
            assert!(old.is_none(), "sample twice: {line}");
        }
        Self {
            text: text.to_owned(),
            values,
        }
    }

    /// The value of `name{labels}`, exactly those labels; 0 when the series does not exist
    /// (a counter that never moved).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.values
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether `name{labels}` is exposed at all.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.values.contains_key(&(name.to_owned(), labels))
    }

    /// Every label name used.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .values
            .keys()
            .flat_map(|(_, labels)| labels.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Parses the exposition with the Prometheus project's own OpenMetrics parser (PyPI
/// `prometheus-client`), which refuses anything off the format, and checks it reads the same
/// samples as [`Samples::parse`].
pub fn check_with_python_parser(samples: &Samples) {
    use std::io::Write as _;
    let python = crate::python::venv(
        "prometheus-venv",
        &["prometheus-client==0.21.1"],
        "import prometheus_client.openmetrics.parser",
    );
    let script = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
        print(json.dumps(out))\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(samples.text.as_bytes())
        .expect("write the exposition");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        samples.text
    );
    let parsed: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).expect("parser output");
    assert_eq!(parsed.len(), samples.values.len(), "{}", samples.text);
    for (name, labels, value) in parsed {
        let ours = samples.values.get(&(name.clone(), labels.clone()));
        // The Python side's values come back as JSON, and serde_json (without its
        // `float_roundtrip` feature) may read a long decimal such as a histogram's `_sum` to
        // the neighbouring float: equal within an ulp or two, not bit for bit.
        assert!(
            ours.is_some_and(|ours| (ours - value).abs() <= 1e-12 * ours.abs().max(1.0)),
            "{name} {labels:?}: ours {ours:?}, the Python parser's {value}"
        );
    }
}

/// The inodes of the TCP sockets listening in `pid`'s network namespace that `pid` holds.
pub fn listening_tcp_sockets(pid: u32) -> Vec<String> {
    let held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("listing the daemon's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut listening = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; field 9 is the inode.
            if fields.get(3) == Some(&"0A")
                && let Some(inode) = fields.get(9)
                && held.iter().any(|h| h == inode)
            {
                listening.push((*inode).to_owned());
            }
        }
    }
    listening
}
