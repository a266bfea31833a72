//! `cli::Error`: every way a `sigil` command can fail, the one-line message the user sees and
//! the exit code scripts rely on. gRPC statuses from sigild are translated here and nowhere else.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use sigil_tuf::{Algorithm, KeyError};
use tonic::Code;

/// Exit codes, part of the CLI's contract with scripts.
pub(crate) mod exit {
    /// Any failure without a more specific code, including a signature that does not verify.
    pub(crate) const FAILURE: u8 = 1;
    /// Bad flags or arguments (clap uses the same code for its own parse errors).
    pub(crate) const USAGE: u8 = 2;
    /// The key, collection or target does not exist, or the caller may not see it.
    pub(crate) const NOT_FOUND: u8 = 3;
    /// sigild's policy refused the request.
    pub(crate) const PERMISSION_DENIED: u8 = 4;
    /// sigild cannot be reached, or its token is absent.
    pub(crate) const UNAVAILABLE: u8 = 5;
}

/// The exit-code table shown at the end of `sigil --help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  failure, including a signature that does not verify
  2  usage error (bad flags or arguments)
  3  not found: key (or not visible to you), collection or target
  4  permission denied by sigild's policy
  5  unavailable: cannot connect to sigild or the notary server, or the token is absent";

/// Why a command failed. Each message names the object involved and fits on one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The socket could not be opened or sigild did not answer the HTTP/2 handshake.
    #[error(
        "cannot connect to sigild at {}: {reason} (is sigild running? use --socket or SIGIL_SOCKET)",
        socket.display()
    )]
    Connect {
        /// Socket path that was tried.
        socket: PathBuf,
        /// The most specific cause, e.g. "No such file or directory (os error 2)".
        reason: String,
    },
    /// NOT_FOUND for a request about one key.
    #[error("key {key_id} not found (or not visible to you)")]
    KeyNotFound {
        /// The key the request named.
        key_id: String,
    },
    /// NOT_FOUND for a request that names no key.
    #[error("not found: {message}")]
    NotFound {
        /// The server's message.
        message: String,
    },
    /// PERMISSION_DENIED (or UNAUTHENTICATED): sigild's policy says no.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// The server's message.
        message: String,
    },
    /// INVALID_ARGUMENT: sigild found the request malformed.
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// The server's message.
        message: String,
    },
    /// RESOURCE_EXHAUSTED: usually a message above sigild's size limit.
    #[error("request too large: {message}")]
    TooLarge {
        /// The server's message.
        message: String,
    },
    /// FAILED_PRECONDITION: the token is locked or its PIN is wrong.
    #[error("token not ready: {message}")]
    FailedPrecondition {
        /// The server's message.
        message: String,
    },
    /// UNAVAILABLE: the token is absent, or the connection to sigild broke.
    #[error("sigild unavailable: {message}")]
    Unavailable {
        /// The server's (or transport's) message.
        message: String,
    },
    /// Any other status, INTERNAL included.
    #[error("sigild failed ({code:?}): {message}")]
    Daemon {
        /// The gRPC status code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// A mistake in the command line that clap cannot see on its own.
    #[error("{0}")]
    Usage(String),
    /// A local input could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// What the input is for, e.g. "file to sign".
        what: &'static str,
        /// The path, or "standard input".
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An input file exists but holds nothing usable.
    #[error("{what} {path} is empty")]
    EmptyInput {
        /// What the input is for.
        what: &'static str,
        /// The path, or "standard input".
        path: String,
    },
    /// An output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The destination.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Standard output could not be written (e.g. a closed pipe).
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] io::Error),
    /// A `--public-key` file is not a PEM public key sigil supports.
    #[error("{} is not a usable PEM public key: {source}", path.display())]
    PublicKeyFile {
        /// The file given.
        path: PathBuf,
        /// Why it was refused.
        source: KeyError,
    },
    /// sigild answered with a key that is malformed or does not match what was asked.
    #[error("sigild returned an unusable public key for {key_id}: {reason}")]
    BadDaemonKey {
        /// The key id sigild reported or was asked for.
        key_id: String,
        /// What was wrong with it.
        reason: String,
    },
    /// sigild answered a sign request with something other than what was asked.
    #[error("sigild returned an unexpected signature for key {key_id}: {reason}")]
    UnexpectedResponse {
        /// The key asked for.
        key_id: String,
        /// What did not match.
        reason: String,
    },
    /// sigild's signature failed the local check made before printing it.
    #[error(
        "sigild returned a signature that does not verify with key {key_id} ({source}); refusing to output it"
    )]
    SignatureCheck {
        /// The signing key.
        key_id: String,
        /// Why the check failed.
        source: KeyError,
    },
    /// An audit log's hash chain breaks (`sigil audit verify`).
    #[error("audit chain broken at {file}:{line}: {reason}")]
    AuditChainBroken {
        /// The file.
        file: String,
        /// The first line that does not follow the one before, from 1.
        line: u64,
        /// Why.
        reason: String,
    },
    /// The signature is well formed but wrong for this file and key.
    #[error("signature does NOT verify (key {key_id}, {algorithm})")]
    BadSignature {
        /// The key checked against.
        key_id: String,
        /// Its algorithm.
        algorithm: Algorithm,
    },
    /// The signature bytes cannot be a signature of this key's algorithm.
    #[error(
        "signature does NOT verify (key {key_id}, {algorithm}): not a well-formed {algorithm} signature"
    )]
    MalformedSignature {
        /// The key checked against.
        key_id: String,
        /// Its algorithm.
        algorithm: Algorithm,
    },
    /// The user did not confirm an irreversible action.
    #[error("key {key_id} was not removed: not confirmed")]
    NotConfirmed {
        /// The key that would have been removed.
        key_id: String,
    },
    /// The confirmation prompt could not be shown or answered.
    #[error("cannot ask for confirmation: {0}")]
    Prompt(#[source] io::Error),
    /// The async runtime or a worker thread failed (should never happen).
    #[error("internal error: {0}")]
    Internal(String),
    /// The notary server could not be reached at all (DNS, refused connection, timeout).
    #[error("cannot reach the notary server at {url}: {reason} (check -s/--server)")]
    ServerUnreachable {
        /// The URL that was tried.
        url: String,
        /// The most specific cause.
        reason: String,
    },
    /// The TLS handshake with the notary server failed (unknown CA, wrong name, ...).
    #[error(
        "TLS with the notary server at {url} failed: {reason} (if it uses a private CA, pass \
         --tlscacert CA_FILE)"
    )]
    ServerTls {
        /// The URL that was tried.
        url: String,
        /// What rustls reported.
        reason: String,
    },
    /// The notary server's answer broke a bound sigil sets (more bytes than the role may have,
    /// or slower than the read deadline): a hostile or broken server.
    #[error("notary server at {url}: {what}: {reason}")]
    ServerMisbehaved {
        /// The server's origin.
        url: String,
        /// What was asked (e.g. "GET timestamp.json of example.com/app").
        what: String,
        /// Which bound it broke.
        reason: String,
    },
    /// The notary server answered with an HTTP error.
    #[error("notary server refused {what}: HTTP {status}{}", server_detail(.code, .message))]
    Server {
        /// What was asked (e.g. "publishing example.com/app").
        what: String,
        /// HTTP status.
        status: u16,
        /// The server's error code (`INVALID_UPDATE`, ...), empty when the body had none.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server has no trust data for the collection.
    #[error("no trust data for {gun} on {server} (has it been published? `sigil init {gun} -p`)")]
    NoCollection {
        /// The collection.
        gun: String,
        /// The server URL.
        server: String,
    },
    /// Metadata was refused by the verification walk, or an edit is invalid.
    #[error("{context}: {source}")]
    Tuf {
        /// What was being done ("verifying example.com/app from the server", ...).
        context: String,
        /// What the tuf crate found, naming the role.
        #[source]
        source: sigil_tuf::Error,
    },
    /// sigild refused or failed to sign a role.
    #[error("signing {role} with key {key_id} failed: {source}")]
    Signing {
        /// Role being signed.
        role: String,
        /// TUF key id asked to sign.
        key_id: String,
        /// sigild's answer.
        source: Box<Error>,
    },
    /// No key sigild lets us use can sign a role the change needs.
    #[error("{0}")]
    MissingKey(String),
    /// sigild holds several keys for one (GUN, role) and nothing says which to use.
    #[error(
        "sigild holds {} {role} keys for {gun} ({}); refusing to pick one: remove the extra ones with `sigil key remove KEY_ID`{}",
        key_ids.len(),
        key_ids.join(", "),
        if role == "root" { " or name one with --root-key" } else { "" }
    )]
    AmbiguousKey {
        /// The GUN.
        gun: String,
        /// The role.
        role: String,
        /// The candidates, by key id.
        key_ids: Vec<String>,
    },
    /// The trust directory could not be read or written.
    #[error("trust dir {}: {source}", path.display())]
    TrustDir {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The configuration file is unreadable or invalid.
    #[error("config {}: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `--offline` with no cached trust data for the GUN.
    #[error(
        "no trust data for {gun} is cached in the trust dir: --offline reads what an earlier \
         list, lookup or verify verified (run one with the server reachable first)"
    )]
    NothingCached {
        /// The GUN.
        gun: String,
    },
    /// `sigil tuf client` failed: exit 1 whatever the cause, as the TUF conformance suite's
    /// CLIENT-CLI protocol requires.
    #[error("{0}")]
    TufClient(Box<Error>),
    /// Target content does not match the collection (`sigil verify GUN NAME`).
    #[error("{0}")]
    TargetMismatch(String),
}

fn server_detail(code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" {code}"),
        (true, false) => format!(": {message}"),
        (false, false) => format!(" {code}: {message}"),
    }
}

impl Error {
    /// A tuf failure while doing `context`. A signer failure coming from sigild keeps sigild's
    /// error (and so its exit code) instead of being flattened into text.
    pub(crate) fn tuf(context: impl Into<String>, source: sigil_tuf::Error) -> Self {
        match source {
            sigil_tuf::Error::Sign {
                role,
                key_id,
                source,
            } => match source.downcast::<Error>() {
                Ok(inner) => Self::Signing {
                    role,
                    key_id,
                    source: inner,
                },
                Err(source) => Self::Tuf {
                    context: context.into(),
                    source: sigil_tuf::Error::Sign {
                        role,
                        key_id,
                        source,
                    },
                },
            },
            source => Self::Tuf {
                context: context.into(),
                source,
            },
        }
    }

    /// Translates a gRPC status from sigild. `key_id` is the key the request was about, if any,
    /// so that NOT_FOUND can name it.
    pub(crate) fn from_status(status: &tonic::Status, key_id: Option<&str>) -> Self {
        let message = server_message(status);
        match status.code() {
            Code::NotFound => match key_id {
                Some(key_id) => Self::KeyNotFound {
                    key_id: key_id.to_owned(),
                },
                None => Self::NotFound { message },
            },
            Code::PermissionDenied | Code::Unauthenticated => Self::PermissionDenied {
                message: without_prefix(message, "permission denied"),
            },
            Code::InvalidArgument => Self::InvalidRequest { message },
            // tonic itself answers OUT_OF_RANGE when a message exceeds its decoding limit.
            Code::ResourceExhausted | Code::OutOfRange => Self::TooLarge { message },
            Code::FailedPrecondition => Self::FailedPrecondition { message },
            Code::Unavailable => Self::Unavailable { message },
            code => Self::Daemon { code, message },
        }
    }

    /// The process exit code for this error (see [`exit`]).
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::TufClient(_) => exit::FAILURE,
            Self::Usage(_) => exit::USAGE,
            Self::KeyNotFound { .. } | Self::NotFound { .. } => exit::NOT_FOUND,
            Self::PermissionDenied { .. } => exit::PERMISSION_DENIED,
            Self::Connect { .. } | Self::Unavailable { .. } => exit::UNAVAILABLE,
            Self::ServerUnreachable { .. } | Self::ServerTls { .. } => exit::UNAVAILABLE,
            Self::NoCollection { .. } | Self::NothingCached { .. } => exit::NOT_FOUND,
            Self::Tuf {
                source: sigil_tuf::Error::TargetNotFound { .. },
                ..
            } => exit::NOT_FOUND,
            Self::Signing { source, .. } => source.exit_code(),
            _ => exit::FAILURE,
        }
    }

    /// Prints `sigil: error: <message>` on one line of stderr and returns the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        eprintln!("sigil: error: {}", one_line(&self.to_string()));
        ExitCode::from(self.exit_code())
    }
}

/// A clap parse error as one line, like every other failure: the error, possible values and
/// tips joined, without the usage block (`--help` has it).
pub(crate) fn usage_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let text = parts.join("; ");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    format!("{} (see --help)", one_line(text))
}

/// The status message made safe to print on one line; the code's name when it is empty.
fn server_message(status: &tonic::Status) -> String {
    let message = one_line(status.message());
    if message.is_empty() {
        status.code().description().to_owned()
    } else {
        message
    }
}

/// Drops `prefix` (and a following `:`) from the start of a server message, so that our own
/// prefix is not printed twice ("permission denied: permission denied: …").
fn without_prefix(message: String, prefix: &str) -> String {
    match message.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => {
            let rest = message[prefix.len()..].trim_start_matches(':').trim_start();
            if rest.is_empty() {
                message
            } else {
                rest.to_owned()
            }
        }
        _ => message,
    }
}

/// Collapses whitespace and drops control characters, so that a message from the daemon (or
/// from a nested error) can neither span lines nor move the terminal's cursor.
pub(crate) fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The most specific cause in an error chain: for a failed connect that is the OS error
/// ("No such file or directory"), not tonic's generic "transport error".
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn statuses_map_to_messages_and_exit_codes() {
        let id = "ab".repeat(32);
        let cases = [
            (
                Status::not_found("no such key"),
                Some(id.as_str()),
                format!("key {id} not found (or not visible to you)"),
                exit::NOT_FOUND,
            ),
            (
                Status::not_found("nothing"),
                None,
                "not found: nothing".to_owned(),
                exit::NOT_FOUND,
            ),
            (
                Status::permission_denied("policy denies sign on key x for uid 1000"),
                Some(id.as_str()),
                "permission denied: policy denies sign on key x for uid 1000".to_owned(),
                exit::PERMISSION_DENIED,
            ),
            (
                Status::permission_denied("Permission denied: policy says no"),
                None,
                "permission denied: policy says no".to_owned(),
                exit::PERMISSION_DENIED,
            ),
            (
                Status::permission_denied("permission denied"),
                None,
                "permission denied: permission denied".to_owned(),
                exit::PERMISSION_DENIED,
            ),
            (
                Status::out_of_range("decoded message length too large"),
                None,
                "request too large: decoded message length too large".to_owned(),
                exit::FAILURE,
            ),
            (
                Status::invalid_argument("digest must be 32 bytes"),
                None,
                "invalid request: digest must be 32 bytes".to_owned(),
                exit::FAILURE,
            ),
            (
                Status::resource_exhausted("message exceeds 4194304 bytes"),
                None,
                "request too large: message exceeds 4194304 bytes".to_owned(),
                exit::FAILURE,
            ),
            (
                Status::failed_precondition("token locked"),
                None,
                "token not ready: token locked".to_owned(),
                exit::FAILURE,
            ),
            (
                Status::unavailable("token absent"),
                None,
                "sigild unavailable: token absent".to_owned(),
                exit::UNAVAILABLE,
            ),
            (
                Status::internal("internal error"),
                None,
                "sigild failed (Internal): internal error".to_owned(),
                exit::FAILURE,
            ),
        ];
        for (status, key_id, message, code) in cases {
            let err = Error::from_status(&status, key_id);
            assert_eq!(err.to_string(), message, "{status:?}");
            assert_eq!(err.exit_code(), code, "{status:?}");
        }
    }

    #[test]
    fn empty_and_multi_line_server_messages_stay_on_one_line() {
        let err = Error::from_status(&Status::permission_denied(""), None);
        assert_eq!(
            err.to_string(),
            "permission denied: The caller does not have permission to execute the specified operation"
        );
        let err = Error::from_status(&Status::internal("line one\nline\u{1b}[2Jtwo\r\n"), None);
        assert_eq!(
            err.to_string(),
            "sigild failed (Internal): line one line [2Jtwo"
        );
    }

    #[test]
    fn connect_failure_names_the_socket_and_the_fix() {
        let err = Error::Connect {
            socket: PathBuf::from("/run/sigil/sigild.sock"),
            reason: "No such file or directory (os error 2)".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "cannot connect to sigild at /run/sigil/sigild.sock: No such file or directory \
             (os error 2) (is sigild running? use --socket or SIGIL_SOCKET)"
        );
        assert_eq!(err.exit_code(), exit::UNAVAILABLE);
    }

    #[test]
    fn local_failures_use_their_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), exit::USAGE);
        let bad = Error::BadSignature {
            key_id: "k".into(),
            algorithm: Algorithm::Ed25519,
        };
        assert_eq!(bad.exit_code(), exit::FAILURE);
        assert_eq!(
            bad.to_string(),
            "signature does NOT verify (key k, ed25519)"
        );
    }

    #[test]
    fn clap_errors_become_one_line_with_their_tips() {
        use crate::cli::Cli;
        use clap::Parser as _;
        let err =
            Cli::try_parse_from(["sigil", "key", "generate", "--rol", "x"]).expect_err("typo");
        assert_eq!(
            usage_line(&err),
            "unexpected argument '--rol' found; tip: a similar argument exists: '--role' (see --help)"
        );
        let err = Cli::try_parse_from([
            "sigil",
            "key",
            "generate",
            "--role",
            "t",
            "--algorithm",
            "dsa",
        ])
        .expect_err("bad value");
        let line = usage_line(&err);
        assert!(
            line.starts_with("invalid value 'dsa' for '--algorithm <ALGORITHM>'; [possible values: ecdsa-p256, ed25519, rsa-3072]"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn root_cause_finds_the_innermost_error() {
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Outer(#[source] io::Error);
        let err = Outer(io::Error::new(io::ErrorKind::NotFound, "no such socket"));
        assert_eq!(root_cause(&err), "no such socket");
    }
}
