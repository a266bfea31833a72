//! Key arguments of `sigil tuf`: a sigild key id (the key signs through sigild), or a PEM
//! public key file for a key held elsewhere (another machine's sigild, an offline token): such
//! a key is recorded in the metadata and signs later with `sigil tuf sign` where it lives.

use std::path::PathBuf;
use std::str::FromStr;

use sigil_tuf::{PublicKey, Signer};

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::daemon_signer::{DaemonSigner, visible_signers};
use crate::error::Error;
use crate::key_ref::KeyId;

/// A key on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyArg {
    /// A key sigild holds.
    Daemon(KeyId),
    /// A public key file (PEM SubjectPublicKeyInfo).
    PemFile(PathBuf),
}

impl FromStr for KeyArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<KeyId>() {
            Ok(id) => Ok(Self::Daemon(id)),
            Err(_) if s.contains('/') || s.ends_with(".pem") => Ok(Self::PemFile(s.into())),
            Err(e) => Err(format!(
                "{e}, or a PEM public key file (a path containing '/' or ending in .pem)"
            )),
        }
    }
}

/// A resolved key: its public half, and a signer when sigild holds it.
pub(crate) struct Resolved {
    pub(crate) public: PublicKey,
    pub(crate) signer: Option<DaemonSigner>,
}

/// Connects to sigild.
pub(crate) async fn connect(global: &GlobalArgs) -> Result<DaemonClient, Error> {
    DaemonClient::connect(&global.socket).await
}

/// Resolves key arguments, connecting to sigild only when one names a sigild key.
pub(crate) async fn resolve(global: &GlobalArgs, args: &[KeyArg]) -> Result<Vec<Resolved>, Error> {
    let mut client = None;
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        out.push(match arg {
            KeyArg::Daemon(id) => {
                if client.is_none() {
                    client = Some(connect(global).await?);
                }
                let Some(c) = client.as_mut() else {
                    return Err(Error::Internal("no sigild connection".into()));
                };
                let info = c.public_key(id).await?;
                let public = info.public_key.clone();
                Resolved {
                    public,
                    signer: Some(DaemonSigner::new(c, info)?),
                }
            }
            KeyArg::PemFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    what: "public key file",
                    path: path.display().to_string(),
                    source,
                })?;
                let public = PublicKey::from_pem(&text).map_err(|source| Error::PublicKeyFile {
                    path: path.clone(),
                    source,
                })?;
                Resolved {
                    public,
                    signer: None,
                }
            }
        });
    }
    Ok(out)
}

/// The public keys of resolved keys.
pub(crate) fn publics(keys: &[Resolved]) -> Vec<PublicKey> {
    keys.iter().map(|k| k.public.clone()).collect()
}

/// The signers among resolved keys, as the tuf crate takes them.
pub(crate) fn signers(keys: &[Resolved]) -> Vec<&dyn Signer> {
    keys.iter()
        .filter_map(|k| k.signer.as_ref().map(|s| s as &dyn Signer))
        .collect()
}

/// Every key sigild lets the caller use (the repository picks those its roles name).
pub(crate) async fn online_signers(global: &GlobalArgs) -> Result<Vec<DaemonSigner>, Error> {
    let client = connect(global).await?;
    visible_signers(&client).await
}

/// [`online_signers`] as the tuf crate takes them.
pub(crate) fn as_signers(signers: &[DaemonSigner]) -> Vec<&dyn Signer> {
    signers.iter().map(|s| s as &dyn Signer).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arguments_are_ids_or_pem_files() {
        let id = "ab".repeat(32);
        assert!(matches!(id.parse::<KeyArg>(), Ok(KeyArg::Daemon(_))));
        assert_eq!(
            "keys/b.pem".parse::<KeyArg>(),
            Ok(KeyArg::PemFile("keys/b.pem".into()))
        );
        assert_eq!(
            "b.pem".parse::<KeyArg>(),
            Ok(KeyArg::PemFile("b.pem".into()))
        );
        let err = "abc".parse::<KeyArg>().expect_err("neither");
        assert!(err.contains("PEM public key file"), "{err}");
    }
}
