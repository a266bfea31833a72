//! `sigil key csr`: a certificate request signed on the token, for a CA to certify a key that
//! never leaves it (then `sigil init --rootcert`).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::daemon_signer::DaemonSigner;
use crate::error::Error;
use crate::key_ref::KeyId;
use crate::output;

/// Print a PKCS#10 certificate request for a key, signed on its token.
///
/// The subject is CN = the key's collection (GUN), or --cn. Give the request to your CA; the
/// certificate it issues for a root key goes to `sigil init GUN --rootcert CERT_FILE`, and
/// clients that pin the CA (`trust_pinning.ca`) then trust the collection on first sight. The
/// request is signed through sigild, so the policy must allow `sign` on the key; it is
/// audited like any signature. ECDSA P-256 keys only.
#[derive(Debug, Args)]
pub(crate) struct CsrArgs {
    /// The key's id (64 hex characters, as `sigil key list` shows it).
    #[arg(value_name = "KEY_ID")]
    pub(crate) key_id: KeyId,
    /// The subject's common name, when it is not the key's GUN.
    #[arg(long, value_name = "NAME")]
    pub(crate) cn: Option<String>,
}

impl CsrArgs {
    /// Builds, signs and prints the request (PEM).
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let client = DaemonClient::connect(&global.socket).await?;
        let key = client.clone().public_key(&self.key_id).await?;
        let cn = match (&self.cn, &key.gun) {
            (Some(cn), _) => cn.clone(),
            (None, Some(gun)) if !gun.is_empty() => gun.clone(),
            _ => {
                return Err(Error::Usage(format!(
                    "key {} has no collection (GUN) to name the subject after: pass --cn",
                    key.key_id
                )));
            }
        };
        if cn.is_empty() || cn.chars().any(char::is_control) {
            return Err(Error::Usage(
                "--cn must be a non-empty name without control characters".into(),
            ));
        }
        let signer = DaemonSigner::new(&client, key)?;
        let pem = sigil_tuf::x509::build_certificate_request(&cn, &signer)
            .await
            .map_err(|e| Error::tuf(format!("making a certificate request for {cn}"), e))?;
        output::print(&pem)
    }
}
