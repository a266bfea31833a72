//! `sigil sign`: one signature over a file, made by sigild with a key on a token. For ECDSA and
//! RSA only the SHA-256 digest crosses the socket; Ed25519 needs the whole message. Every
//! signature is verified locally against the key's public half before it is printed.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, ValueEnum};
use serde::Serialize;
use sigil_proto::sigil_v1::{self as pb, sign_request::Payload};
use sigil_tuf::key::p256_raw_to_der;
use sigil_tuf::{Algorithm, KeyError, PublicKey};
use tracing::{debug, warn};

use crate::cli::GlobalArgs;
use crate::daemon_client::{self, DaemonClient, algorithm_from_wire};
use crate::error::Error;
use crate::input::Input;
use crate::key_ref::KeyId;
use crate::output;

/// Sign a file with a key held by sigild; prints the signature in base64.
///
/// sigil first fetches the key's public half. For ECDSA and RSA keys it hashes FILE locally
/// (SHA-256, streaming) and sends only the digest, so files of any size can be signed; Ed25519
/// signs whole messages, so the file itself is sent and sigild's message size limit applies.
/// The signature is checked against the public key before it is printed, as one line of
/// standard base64 on stdout (or in the --out file). With --json, stdout gets
/// {key_id, algorithm, encoding, signature}. For a YubiKey key whose touch policy is always
/// (or cached), stderr first says which device to touch and what it signs: FILE and its
/// SHA-256.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sigil sign --key $KEY release.tar.gz > release.tar.gz.sig
  sigil sign --key $KEY --out release.tar.gz.sig release.tar.gz
  # a DER signature OpenSSL can check:
  sigil sign --key $KEY --encoding der release.tar.gz | base64 -d > release.der.sig
  sigil key public $KEY --pem > key.pem
  openssl dgst -sha256 -verify key.pem -signature release.der.sig release.tar.gz")]
pub(crate) struct SignArgs {
    /// Key to sign with: its key id (64 hex characters, as `sigil key list` shows it).
    #[arg(long, value_name = "KEY_ID")]
    pub(crate) key: KeyId,
    /// File to sign, or `-` for standard input.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Write the base64 signature to this file instead of stdout; the file is replaced
    /// atomically.
    #[arg(long, short = 'o', value_name = "SIG")]
    pub(crate) out: Option<PathBuf>,
    /// Signature encoding for ECDSA keys; other algorithms have a single encoding.
    #[arg(long, value_enum, default_value_t = Encoding::Raw)]
    pub(crate) encoding: Encoding,
}

/// How an ECDSA signature is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Encoding {
    /// Fixed-size r||s, as Notary and PKCS#11 use it.
    Raw,
    /// ASN.1 DER, as TUF 1.0 and OpenSSL (`openssl dgst -verify`) expect it.
    Der,
}

impl Encoding {
    fn to_wire(self) -> pb::SignatureEncoding {
        match self {
            Self::Raw => pb::SignatureEncoding::Raw,
            Self::Der => pb::SignatureEncoding::Der,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Der => "der",
        }
    }
}

/// What `sign --json` prints.
#[derive(Debug, Serialize)]
struct SignJson<'a> {
    key_id: &'a str,
    algorithm: &'static str,
    encoding: &'static str,
    signature: String,
}

/// What was actually signed: a digest, or a whole message for Ed25519.
enum Signed {
    Digest([u8; 32]),
    Message(Vec<u8>),
}

impl Signed {
    fn payload(&self) -> Payload {
        match self {
            Self::Digest(digest) => Payload::Sha256Digest(digest.to_vec()),
            Self::Message(message) => Payload::Message(message.clone()),
        }
    }

    fn verify(&self, key: &PublicKey, signature: &[u8]) -> Result<(), KeyError> {
        match self {
            Self::Digest(digest) => key.verify_digest(digest, signature),
            Self::Message(message) => key.verify(message, signature),
        }
    }
}

impl SignArgs {
    /// Fetches the key, signs through sigild, checks the signature, prints or writes it.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let input = Input::from_arg(&self.file);
        let mut client = DaemonClient::connect(&global.socket).await?;
        let key = client.public_key(&self.key).await?;
        let algorithm = key.algorithm();
        let encoding = if algorithm == Algorithm::EcdsaP256 {
            self.encoding
        } else {
            if self.encoding != Encoding::Raw {
                warn!("--encoding only applies to ECDSA keys; {algorithm} has a single encoding");
            }
            Encoding::Raw
        };

        let signed = if algorithm.signs_digest() {
            Signed::Digest(input.sha256("file to sign").await?)
        } else {
            Signed::Message(input.read_all("file to sign").await?)
        };
        debug!(key_id = %self.key, %algorithm, "asking sigild to sign");
        daemon_client::touch_prompt(&key, || {
            let digest_hex = match &signed {
                Signed::Digest(d) => hex::encode(d),
                Signed::Message(m) => hex::encode(<sha2::Sha256 as sha2::Digest>::digest(m)),
            };
            format!("{input} (sha256 {digest_hex})")
        });
        // The requested encoding is passed through as given; sigild ignores it for non-ECDSA.
        let response = client
            .sign(&self.key, signed.payload(), self.encoding.to_wire())
            .await
            .map_err(|err| match err {
                Error::TooLarge { message } if !algorithm.signs_digest() => Error::TooLarge {
                    message: format!(
                        "{message}; {algorithm} keys sign the whole file, so use an ECDSA or \
                         RSA key for files this large"
                    ),
                },
                other => other,
            })?;
        let signature = check_response(&self.key, algorithm, encoding, response)?;
        signed
            .verify(&key.public_key, &signature)
            .map_err(|source| Error::SignatureCheck {
                key_id: self.key.to_string(),
                source,
            })?;

        let encoded = BASE64.encode(&signature);
        if let Some(out) = &self.out {
            output::write_atomically(out, format!("{encoded}\n").as_bytes())?;
        }
        if global.json {
            output::print_json(&SignJson {
                key_id: self.key.as_str(),
                algorithm: algorithm.as_str(),
                encoding: encoding.as_str(),
                signature: encoded,
            })
        } else if let Some(out) = &self.out {
            eprintln!(
                "signed {input} with key {} ({algorithm}); signature written to {}",
                self.key,
                out.display()
            );
            Ok(())
        } else {
            output::print_line(&encoded)
        }
    }
}

/// Checks sigild's answer is for the key and algorithm asked, and returns the signature in the
/// encoding asked: a raw ECDSA signature is converted to DER when DER was wanted.
fn check_response(
    key_id: &KeyId,
    algorithm: Algorithm,
    encoding: Encoding,
    response: pb::SignResponse,
) -> Result<Vec<u8>, Error> {
    let unexpected = |reason: String| Error::UnexpectedResponse {
        key_id: key_id.to_string(),
        reason,
    };
    if !response.key_id.is_empty() && response.key_id != key_id.as_str() {
        return Err(unexpected(format!(
            "the signature is by key {}",
            response.key_id
        )));
    }
    if let Some(signed_with) = algorithm_from_wire(response.algorithm)
        && signed_with != algorithm
    {
        return Err(unexpected(format!(
            "the signature is {signed_with}, the key {algorithm}"
        )));
    }
    if algorithm != Algorithm::EcdsaP256 {
        return Ok(response.signature);
    }
    let returned_der = response.encoding == i32::from(pb::SignatureEncoding::Der);
    match (encoding, returned_der) {
        (Encoding::Der, false) => {
            p256_raw_to_der(&response.signature).map_err(|source| Error::SignatureCheck {
                key_id: key_id.to_string(),
                source,
            })
        }
        (Encoding::Raw, true) => Err(unexpected(
            "asked for a raw r||s signature but got DER".to_owned(),
        )),
        _ => Ok(response.signature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<SignArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["sigil", "sign"], args].concat())?;
        match cli.command {
            Command::Sign(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_key_file_out_and_encoding() {
        let id = "12".repeat(32);
        let args = parse(&["--key", &id, "release.tar.gz"]).expect("minimal");
        assert_eq!(args.key.as_str(), id);
        assert_eq!(args.file, PathBuf::from("release.tar.gz"));
        assert_eq!(args.out, None);
        assert_eq!(args.encoding, Encoding::Raw);

        let args = parse(&["--key", &id, "-", "--out", "sig", "--encoding", "der"]).expect("full");
        assert_eq!(Input::from_arg(&args.file), Input::Stdin);
        assert_eq!(args.out, Some(PathBuf::from("sig")));
        assert_eq!(args.encoding, Encoding::Der);
    }

    #[test]
    fn refuses_missing_key_missing_file_and_bad_encoding() {
        let id = "12".repeat(32);
        assert!(parse(&["file"]).is_err());
        assert!(parse(&["--key", &id]).is_err());
        assert!(parse(&["--key", &id, "file", "--encoding", "pem"]).is_err());
        assert!(parse(&["--key", "short", "file"]).is_err());
    }

    fn response(signature: Vec<u8>, encoding: pb::SignatureEncoding) -> pb::SignResponse {
        pb::SignResponse {
            signature,
            key_id: "12".repeat(32),
            algorithm: pb::Algorithm::EcdsaP256.into(),
            encoding: encoding.into(),
        }
    }

    #[test]
    fn responses_are_checked_and_raw_ecdsa_becomes_der_on_request() {
        let id: KeyId = "12".repeat(32).parse().expect("id");
        // r = s = 1: a well-formed raw signature.
        let mut raw = vec![0u8; 64];
        raw[31] = 1;
        raw[63] = 1;
        let der = check_response(
            &id,
            Algorithm::EcdsaP256,
            Encoding::Der,
            response(raw.clone(), pb::SignatureEncoding::Raw),
        )
        .expect("converted");
        assert_eq!(der, [0x30, 6, 2, 1, 1, 2, 1, 1]);
        let same = check_response(
            &id,
            Algorithm::EcdsaP256,
            Encoding::Raw,
            response(raw.clone(), pb::SignatureEncoding::Raw),
        )
        .expect("raw");
        assert_eq!(same, raw);
        assert!(
            check_response(
                &id,
                Algorithm::EcdsaP256,
                Encoding::Raw,
                response(der, pb::SignatureEncoding::Der),
            )
            .is_err()
        );

        let mut other_key = response(raw.clone(), pb::SignatureEncoding::Raw);
        other_key.key_id = "34".repeat(32);
        assert!(check_response(&id, Algorithm::EcdsaP256, Encoding::Raw, other_key).is_err());
        let wrong_alg = response(raw, pb::SignatureEncoding::Raw);
        assert!(check_response(&id, Algorithm::Ed25519, Encoding::Raw, wrong_alg).is_err());
    }
}
