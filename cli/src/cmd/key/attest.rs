//! `sigil key attest`: a YubiKey key's attestation chain, as sigild fetched it from the device
//! and checked it against its configured attestation roots.

use clap::Args;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::error::Error;
use crate::key_ref::KeyId;
use crate::output;

/// Print a YubiKey key's attestation certificate chain (PEM).
///
/// sigild asks the device to attest the key's slot and returns the chain leaf first: the
/// slot's attestation certificate, then the device's attestation (F9) certificate. The root is
/// not included: check the chain against the vendor root you trust, e.g.
/// `openssl verify -CAfile yubico-root.pem -untrusted f9.pem leaf.pem`. sigild has already
/// checked it against its `attestation_roots`; the verdict and the attested PIN and touch
/// policies go to stderr. With --json, prints the chain (PEM), the policies, whether it
/// verified and why not. Only YubiKey keys can be attested.
#[derive(Debug, Args)]
pub(crate) struct AttestArgs {
    /// The key's id (64 hex characters, as `sigil key list` shows it).
    #[arg(value_name = "KEY_ID")]
    pub(crate) key_id: KeyId,
}

/// `--json` output.
#[derive(Debug, Serialize)]
struct AttestJson {
    key_id: String,
    device_serial: u32,
    /// PEM certificates, leaf first.
    chain: Vec<String>,
    pin_policy: String,
    touch_policy: String,
    verified: bool,
    verify_error: Option<String>,
}

impl AttestArgs {
    /// Fetches and prints the chain.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        let mut client = DaemonClient::connect(&global.socket).await?;
        let att = client.attest_key(&self.key_id).await?;
        let chain: Vec<String> = att
            .chain_der
            .iter()
            .map(|der| output::certificate_pem(der))
            .collect();
        if global.json {
            return output::print_json(&AttestJson {
                key_id: self.key_id.as_str().to_owned(),
                device_serial: att.device_serial,
                chain,
                pin_policy: att.pin_policy,
                touch_policy: att.touch_policy,
                verified: att.verified,
                verify_error: att.verify_error,
            });
        }
        let verdict = match (&att.verified, &att.verify_error) {
            (true, _) => "verified against sigild's attestation roots".to_owned(),
            (false, Some(why)) => format!("NOT verified: {why}"),
            (false, None) => "NOT verified".to_owned(),
        };
        eprintln!(
            "YubiKey {}: PIN policy {}, touch policy {}; {verdict}",
            att.device_serial, att.pin_policy, att.touch_policy
        );
        output::print(&chain.concat())
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use crate::cmd::key;
    use clap::Parser as _;

    #[test]
    fn parses_a_key_id() {
        let id = "0f".repeat(32);
        let cli = Cli::try_parse_from(["sigil", "key", "attest", &id]).expect("parse");
        match cli.command {
            Command::Key(key::Command::Attest(args)) => assert_eq!(args.key_id.as_str(), id),
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["sigil", "key", "attest"]).is_err());
    }
}
