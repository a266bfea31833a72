//! `sigil verify`: checks a blob signature locally with `sigil_tuf`, no token involved, or —
//! without a key — content against a target of a trusted collection (`sigil verify GUN NAME <
//! FILE`, as `notary verify`). The positionals are read as FILE SIG only when a key is given,
//! and as GUN NAME otherwise.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use clap::Args;
use serde::Serialize;
use sigil_tuf::{Algorithm, KeyError, PublicKey};

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::error::Error;
use crate::input::Input;
use crate::key_ref::KeyId;
use crate::output;

/// Standard-alphabet base64 that tolerates missing padding, for hand-edited signature files.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Verify a file's signature locally against a public key.
///
/// The public key comes from sigild (--key KEY_ID: only the public half is fetched) or from a
/// PEM file (--public-key: no daemon needed). SIG may hold base64 text, as `sigil sign` writes
/// it, or raw binary signature bytes; ECDSA signatures may be raw r||s or DER. Prints
/// "signature OK (key ID, ALGORITHM)" and exits 0, or reports that the signature does not
/// verify and exits 1. With --json, prints {valid, key_id, algorithm} in both cases.
///
/// Without --key or --public-key, verifies a target of a trusted collection: the content on
/// standard input (or -i FILE) must have the length and hashes the verified collection lists
/// for NAME. Like `notary verify`, the content is then written to stdout (-q: nothing), so
/// `curl … | sigil verify GUN NAME | sh` runs only what was signed.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sigil verify --key $KEY release.tar.gz release.tar.gz.sig
  # without sigild, e.g. on another machine:
  sigil key public $KEY --pem > key.pem
  sigil verify --public-key key.pem release.tar.gz release.tar.gz.sig
  # a target of a trusted collection:
  sigil verify example.com/app release.tar.gz -q < release.tar.gz")]
#[command(
    override_usage = "sigil verify (--key <KEY_ID> | --public-key <PEM_FILE>) <FILE> <SIG>\n       \
                            sigil verify <GUN> <NAME> [-q] [-i FILE] < FILE"
)]
pub(crate) struct VerifyArgs {
    /// Verify with this sigild key (64 hex characters); only its public half is fetched.
    #[arg(long, value_name = "KEY_ID", conflicts_with = "public_key")]
    pub(crate) key: Option<KeyId>,
    /// Verify with the public key in this PEM file (`PUBLIC KEY` block); sigild is not used.
    #[arg(long, value_name = "PEM_FILE")]
    pub(crate) public_key: Option<PathBuf>,
    /// The signed file, or `-` for standard input. (GUN in the collection form.)
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// The signature: base64 text or raw binary bytes; `-` for standard input. (NAME in the
    /// collection form.)
    #[arg(value_name = "SIG")]
    pub(crate) sig: PathBuf,
    /// Collection form: read the content from this file instead of standard input.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,
    /// Collection form: do not copy the verified content to stdout.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Collection form: verify against the trust dir's cache of the last verified read instead
    /// of the server (verified again, expiry included; no network).
    #[arg(long)]
    pub(crate) offline: bool,
}

/// Where the verifying key comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeySource<'a> {
    /// Fetched from sigild by id.
    Daemon(&'a KeyId),
    /// Read from a PEM file.
    PemFile(&'a Path),
}

/// What `verify --json` prints.
#[derive(Debug, Serialize)]
struct VerifyJson<'a> {
    valid: bool,
    key_id: &'a str,
    algorithm: &'static str,
}

impl VerifyArgs {
    /// Picks the blob form when a key is given; `None` means the collection form (GUN NAME).
    pub(crate) fn key_source(&self) -> Option<KeySource<'_>> {
        match (&self.key, &self.public_key) {
            (Some(key_id), _) => Some(KeySource::Daemon(key_id)),
            (None, Some(path)) => Some(KeySource::PemFile(path)),
            (None, None) => None,
        }
    }

    /// Loads the key and signature, verifies, reports; or verifies a collection target.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let Some(source) = self.key_source() else {
            let input = match &self.input {
                Some(path) => Input::from_arg(path),
                None => Input::Stdin,
            };
            return crate::cmd::collection::verify_target(
                global,
                &self.file.to_string_lossy(),
                &self.sig.to_string_lossy(),
                &input,
                self.quiet,
                self.offline,
            )
            .await;
        };
        if self.input.is_some() || self.quiet || self.offline {
            return Err(Error::Usage(
                "-i/--input, -q/--quiet and --offline are for `sigil verify GUN NAME`, not for \
                 blob signatures"
                    .to_owned(),
            ));
        }
        let file = Input::from_arg(&self.file);
        let sig = Input::from_arg(&self.sig);
        if file == Input::Stdin && sig == Input::Stdin {
            return Err(Error::Usage(
                "FILE and SIG cannot both be standard input".to_owned(),
            ));
        }
        let (key_id, public_key) = match source {
            KeySource::Daemon(key_id) => {
                let mut client = DaemonClient::connect(&global.socket).await?;
                let key = client.public_key(key_id).await?;
                (key.key_id, key.public_key)
            }
            KeySource::PemFile(path) => {
                let key = load_pem(path)?;
                (key.key_id(), key)
            }
        };
        let algorithm = public_key.algorithm();

        let sig_bytes = sig.read_all("signature file").await?;
        if sig_bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::EmptyInput {
                what: "signature file",
                path: sig.to_string(),
            });
        }
        let signature = decode_signature(&sig_bytes);
        let verdict = if algorithm.signs_digest() {
            let digest = file.sha256("signed file").await?;
            public_key.verify_digest(&digest, &signature)
        } else {
            let message = file.read_all("signed file").await?;
            public_key.verify(&message, &signature)
        };
        report(global.json, &key_id, algorithm, verdict)
    }
}

/// Prints the verdict; a failed verification is an error (exit 1) in both output modes.
fn report(
    json: bool,
    key_id: &str,
    algorithm: Algorithm,
    verdict: Result<(), KeyError>,
) -> Result<(), Error> {
    if json {
        output::print_json(&VerifyJson {
            valid: verdict.is_ok(),
            key_id,
            algorithm: algorithm.as_str(),
        })?;
    }
    let key_id = key_id.to_owned();
    match verdict {
        Ok(()) if json => Ok(()),
        Ok(()) => output::print_line(&format!("signature OK (key {key_id}, {algorithm})")),
        Err(KeyError::MalformedSignature { .. }) => {
            Err(Error::MalformedSignature { key_id, algorithm })
        }
        Err(_) => Err(Error::BadSignature { key_id, algorithm }),
    }
}

/// Reads a `--public-key` PEM file.
fn load_pem(path: &Path) -> Result<PublicKey, Error> {
    let pem = std::fs::read_to_string(path).map_err(|source| Error::Read {
        what: "public key",
        path: path.display().to_string(),
        source,
    })?;
    PublicKey::from_pem(&pem).map_err(|source| Error::PublicKeyFile {
        path: path.to_owned(),
        source,
    })
}

/// The signature bytes in a SIG file: base64 text (whitespace anywhere ignored, padding
/// optional) when the whole file decodes as such, otherwise the file's bytes as they are. A
/// binary signature of real length is never valid base64 by accident in practice.
pub(crate) fn decode_signature(contents: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = contents
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    match BASE64_LENIENT.decode(&text) {
        Ok(decoded) if !decoded.is_empty() => decoded,
        _ => contents.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use base64::engine::general_purpose::STANDARD;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<VerifyArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["sigil", "verify"], args].concat())?;
        match cli.command {
            Command::Verify(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_key_id_selects_the_blob_form() {
        let id = "cd".repeat(32);
        let args = parse(&["--key", &id, "file.tar", "file.sig"]).expect("parse");
        let expected: KeyId = id.parse().expect("id");
        assert_eq!(
            args.key_source().expect("blob"),
            KeySource::Daemon(&expected)
        );
        assert_eq!(args.file, PathBuf::from("file.tar"));
        assert_eq!(args.sig, PathBuf::from("file.sig"));
    }

    #[test]
    fn a_pem_file_selects_the_blob_form() {
        let args = parse(&["file.tar", "file.sig", "--public-key", "key.pem"]).expect("parse");
        assert_eq!(
            args.key_source().expect("blob"),
            KeySource::PemFile(Path::new("key.pem"))
        );
    }

    #[test]
    fn without_a_key_the_positionals_are_a_collection_target() {
        let args = parse(&["example.com/app", "v1.0", "-q"]).expect("collection form parses");
        assert!(args.key_source().is_none());
        assert!(args.quiet);
        assert_eq!(args.file, PathBuf::from("example.com/app"));
        assert_eq!(args.sig, PathBuf::from("v1.0"));
        let args = parse(&["g/x", "v1.0", "-i", "content"]).expect("input file");
        assert_eq!(args.input, Some(PathBuf::from("content")));
    }

    #[test]
    fn both_keys_or_missing_positionals_are_usage_errors() {
        let id = "cd".repeat(32);
        assert!(parse(&["--key", &id, "--public-key", "k.pem", "f", "s"]).is_err());
        assert!(parse(&["--key", &id, "f"]).is_err());
        assert!(parse(&["f", "s", "extra"]).is_err());
    }

    #[test]
    fn signature_files_may_be_base64_or_binary() {
        let raw: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x80).collect();
        let b64 = STANDARD.encode(&raw);

        assert_eq!(decode_signature(raw.as_slice()), raw, "binary as is");
        assert_eq!(decode_signature(b64.as_bytes()), raw, "one line");
        assert_eq!(
            decode_signature(format!("  {b64}\n\n").as_bytes()),
            raw,
            "trimmed"
        );
        let wrapped = format!("{}\n{}\n", &b64[..40], &b64[40..]);
        assert_eq!(
            decode_signature(wrapped.as_bytes()),
            raw,
            "wrapped like base64(1)"
        );
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(decode_signature(unpadded.as_bytes()), raw, "no padding");

        // A DER ECDSA signature starts with '0' (0x30) but is not base64.
        let der = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01];
        assert_eq!(decode_signature(&der), der);
        // Text that is not base64 is kept (and will then fail verification, not be guessed at).
        assert_eq!(decode_signature(b"not base64!"), b"not base64!");
    }

    #[test]
    fn verdicts_map_to_output_and_errors() {
        let id = "ab".repeat(32);
        let err =
            report(false, &id, Algorithm::Ed25519, Err(KeyError::BadSignature)).expect_err("bad");
        assert_eq!(
            err.to_string(),
            format!("signature does NOT verify (key {id}, ed25519)")
        );
        assert_eq!(err.exit_code(), crate::error::exit::FAILURE);
        let err = report(
            false,
            &id,
            Algorithm::EcdsaP256,
            Err(KeyError::MalformedSignature {
                algorithm: Algorithm::EcdsaP256,
            }),
        )
        .expect_err("malformed");
        assert!(
            err.to_string()
                .contains("not a well-formed ecdsa-p256 signature")
        );
    }
}
