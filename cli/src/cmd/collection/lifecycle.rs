//! A collection's life: `init` (keys on the token, root certificate), `publish` and `delete`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Args;
use sigil_tuf::x509::{Certificate, ROOT_CERT_LIFETIME, build_root_certificate};
use sigil_tuf::{CollectionKeys, TufKey};

use crate::cli::GlobalArgs;
use crate::daemon_client::{DaemonClient, KeyFilter};
use crate::daemon_signer::{DaemonSigner, find_or_generate};
use crate::error::Error;
use crate::key_ref::KeyId;
use crate::output;
use crate::repo::{Repo, parse_gun};
use crate::trust_dir::TrustDir;

use super::publish_staged;

/// Initialize a trusted collection: keys on the token, root certificate, server timestamp key.
///
/// Keys the collection needs and sigild does not hold yet are generated on the token (on
/// sigild's only backend, or the one named with --backend); keys sigild already holds for
/// (GUN, role) are reused. The root key gets a self-signed ecdsa-x509 certificate (CN = GUN,
/// 10 years) signed on the token, or the certificate given with --rootcert (e.g. one your
/// organisation's CA issued for the token's key, for clients that pin that CA with
/// `trust_pinning.ca`); the timestamp key is the server's. The new collection is
/// published by `sigil publish GUN` (or -p).
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The collection (GUN), e.g. example.com/app.
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// Use this existing root key (a sigild key id, ECDSA P-256), e.g. one shared by several
    /// collections, instead of the collection's own.
    #[arg(long, value_name = "KEY_ID")]
    pub(crate) root_key: Option<KeyId>,
    /// Backend to generate missing keys on (may be left out when sigild has one backend).
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
    /// The root key's certificate (PEM, CN = GUN; intermediates may follow it) instead of a
    /// self-signed one. It must certify the root key: --root-key, else the sigild key it names.
    #[arg(long, value_name = "CERT_FILE")]
    pub(crate) rootcert: Option<PathBuf>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub(crate) publish: bool,
}

/// A root key certificate given with `--rootcert`: the PEM to publish (each certificate
/// re-encoded, leaf first) and the key it certifies.
struct GivenRootCert {
    pem: String,
    key: sigil_tuf::key::PublicKey,
}

impl GivenRootCert {
    /// Reads and checks the file: a certificate the notary client would accept as the root key
    /// of `gun` now (CN, validity, no SHA-1, not a CA).
    fn read(path: &Path, gun: &str) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            what: "root certificate",
            path: path.display().to_string(),
            source,
        })?;
        let bad = |why: String| Error::Usage(format!("--rootcert {}: {why}", path.display()));
        let chain = Certificate::from_pem_bundle(&text).map_err(|e| bad(e.to_string()))?;
        let leaf = &chain[0];
        leaf.check_root_leaf(gun, Some(SystemTime::now()))
            .map_err(bad)?;
        let key = leaf.public_key().map_err(|e| bad(e.to_string()))?;
        let mut pem = String::new();
        for cert in &chain {
            pem.push_str(&cert.to_pem().map_err(|e| bad(e.to_string()))?);
        }
        Ok(Self { pem, key })
    }
}

impl InitArgs {
    /// Creates the keys and the unpublished collection.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = Repo::open(global, &self.gun)?;
        let gun = &self.gun;
        if repo.server.role(gun, "root", None).await?.is_some() {
            return Err(Error::Usage(format!(
                "{gun} already has trust data on {}; edit it with add/remove/publish, or remove \
                 it first with `sigil delete {gun} --remote`",
                repo.server.url()
            )));
        }
        let given = match &self.rootcert {
            Some(path) => Some(GivenRootCert::read(path, gun)?),
            None => None,
        };
        let daemon = DaemonClient::connect(&global.socket).await?;
        let backend = self.backend.as_deref();
        let root = match (&self.root_key, &given) {
            (Some(id), _) => {
                let key = daemon.clone().public_key(id).await?;
                eprintln!("using root key {}", key.key_id);
                key
            }
            (None, Some(cert)) => {
                let keys = daemon.clone().list_keys(&KeyFilter::default()).await?;
                let key = keys
                    .into_iter()
                    .find(|k| k.public_key == cert.key)
                    .ok_or_else(|| {
                        Error::Usage(
                            "no sigild key you may use is the one --rootcert certifies: \
                             generate the root key first (sigil key generate --role root \
                             --gun GUN), have the certificate issued for it, or name it with \
                             --root-key"
                                .into(),
                        )
                    })?;
                eprintln!(
                    "using root key {} (the key --rootcert certifies)",
                    key.key_id
                );
                key
            }
            (None, None) => find_or_generate(&daemon, gun, "root", backend).await?,
        };
        if let Some(cert) = &given
            && cert.key != root.public_key
        {
            return Err(Error::Usage(format!(
                "--rootcert certifies another key than root key {}",
                root.key_id
            )));
        }
        let targets = find_or_generate(&daemon, gun, "targets", backend).await?;
        let snapshot = find_or_generate(&daemon, gun, "snapshot", backend).await?;
        let timestamp = repo.server.server_key(gun, "timestamp").await?;
        let root = DaemonSigner::new(&daemon, root)?;
        let targets = DaemonSigner::new(&daemon, targets)?;
        let snapshot = DaemonSigner::new(&daemon, snapshot)?;
        let pem = match given {
            Some(cert) => cert.pem,
            None => build_root_certificate(gun, &root, SystemTime::now(), ROOT_CERT_LIFETIME)
                .await
                .map_err(|e| Error::tuf(format!("making the root certificate of {gun}"), e))?
                .to_pem()
                .map_err(|e| Error::tuf("encoding the root certificate", e))?,
        };
        let cert_key = TufKey::from_certificate_pem(&pem)
            .map_err(|e| Error::tuf("the root certificate", e))?;
        let keys = CollectionKeys {
            root: vec![cert_key.clone()],
            targets: vec![TufKey::from_public_key(&targets.info().public_key)],
            snapshot: vec![TufKey::from_public_key(&snapshot.info().public_key)],
            timestamp: vec![timestamp.clone()],
        };
        let editor = sigil_tuf::CollectionEditor::create(gun, &keys, SystemTime::now())
            .map_err(|e| Error::tuf(format!("creating {gun}"), e))?;
        // Only root is signed now; targets and snapshot v1 are signed once, by the publish
        // (a signer with version floors would refuse a second, different v1).
        let root_file = editor
            .sign_root(&[&root as &dyn sigil_tuf::Signer])
            .await
            .map_err(|e| Error::tuf(format!("signing the root of {gun}"), e))?;
        repo.trust.clear_metadata(gun)?;
        repo.trust.write(gun, "root", &root_file)?;
        eprintln!(
            "root key {} (certificate key id {}), targets key {}, snapshot key {} on the token; \
             timestamp key {} on the server",
            root.info().key_id,
            cert_key.id(),
            targets.info().key_id,
            snapshot.info().key_id,
            timestamp.id()
        );
        if self.publish {
            publish_staged(global, &repo).await
        } else {
            output::print_line(&format!(
                "Initialized {gun}; run `sigil publish {gun}` to publish it"
            ))
        }
    }
}

/// Publish every staged change of a collection.
///
/// Fetches and verifies the collection, applies the changelist, signs each changed role once
/// through sigild (snapshot too when its key is on a token you may use; otherwise the server
/// signs it) and sends everything in one atomic publish.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
}

impl PublishArgs {
    /// Publishes.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        publish_staged(global, &Repo::open(global, &self.gun)?).await
    }
}

/// Delete a collection's local trust data (metadata cache and staged changes), and with
/// --remote its trust data on the server. Keys on the token are kept.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The collection (GUN).
    #[arg(value_name = "GUN", value_parser = parse_gun)]
    pub(crate) gun: String,
    /// Also delete the collection on the notary server.
    #[arg(long)]
    pub(crate) remote: bool,
}

impl DeleteArgs {
    /// Deletes.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let repo = Repo::open(global, &self.gun)?;
        if self.remote {
            repo.server.delete(&self.gun).await?;
        }
        remove_local(&repo.trust, &self.gun)?;
        output::print_line(&format!(
            "Successfully deleted {} trust data for repository {}",
            if self.remote {
                "local and remote"
            } else {
                "local"
            },
            self.gun
        ))
    }
}

fn remove_local(trust: &TrustDir, gun: &str) -> Result<(), Error> {
    trust.clear_metadata(gun)?;
    trust.clear_staged(gun)
}
