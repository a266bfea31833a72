//! Malformed requests, garbage on the socket and bad configurations: each gets its documented
//! status code or a clear start-up error naming the problem, and changes nothing (same keys,
//! still signing, token still usable).

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sigil_e2e::{
    Client, Daemon, DevDir, OTHER_UID, SOFTHSM_MODULE, parse_public, pkcs11_spy_path,
    pseudo_random_bytes, read_audit, read_text, read_until_closed, sign_message_request,
    token_inspect_exe, toml_path, write_file,
};
use sigil_proto::sigil_v1 as pb;
use tonic::Code;

mod connections;
mod requests;
mod startup;

const MAX_MESSAGE_BYTES: usize = 1024;

/// A request of any of the four kinds, so cases can be listed in one table.
#[derive(Debug, Clone)]
enum Req {
    Sign(pb::SignRequest),
    Public(String),
    Delete(String),
    Generate(pb::GenerateKeyRequest),
}

impl Req {
    async fn send(self, client: &mut Client) -> Result<(), tonic::Status> {
        match self {
            Req::Sign(r) => client.sign_request(r).await.map(|_| ()),
            Req::Public(id) => client.public(&id).await.map(|_| ()),
            Req::Delete(id) => client.delete(&id).await,
            Req::Generate(r) => client.keys.generate_key(r).await.map(|_| ()),
        }
    }

    /// The audit `op` this request is recorded under when refused.
    fn op(&self) -> &'static str {
        match self {
            Req::Sign(_) => "sign",
            Req::Public(_) => "public",
            Req::Delete(_) => "delete",
            Req::Generate(_) => "generate",
        }
    }
}

fn digest_req(key_id: &str, digest: Vec<u8>) -> Req {
    Req::Sign(pb::SignRequest {
        key_id: key_id.to_owned(),
        payload: Some(pb::sign_request::Payload::Sha256Digest(digest)),
        encoding: pb::SignatureEncoding::Raw.into(),
    })
}

fn message_req(key_id: &str, message: Vec<u8>) -> Req {
    Req::Sign(sign_message_request(
        key_id,
        &message,
        pb::SignatureEncoding::Raw,
    ))
}

fn generate_req(role: &str, gun: &str, backend: &str) -> Req {
    Req::Generate(pb::GenerateKeyRequest {
        backend: backend.to_owned(),
        role: role.to_owned(),
        gun: gun.to_owned(),
        algorithm: pb::Algorithm::EcdsaP256.into(),
    })
}

/// A daemon with `max_message_bytes = 1024`, an ECDSA and an Ed25519 key.
async fn small_limit_daemon(dir: &DevDir) -> (Daemon, pb::PublicKey, pb::PublicKey) {
    dir.init();
    let config = dir
        .config()
        .max_message_bytes(MAX_MESSAGE_BYTES)
        .write("small-limit.toml");
    let daemon = dir.sigild_config(&config).spawn();
    let mut client = daemon.client().await;
    let ecdsa = client
        .generate("targets", "example.com/app", pb::Algorithm::EcdsaP256)
        .await;
    let ed25519 = client
        .generate("snapshot", "example.com/app", pb::Algorithm::Ed25519)
        .await;
    (daemon, ecdsa, ed25519)
}

/// Nothing changed: the same keys are listed and the ECDSA key still signs verifiably.
async fn assert_unchanged(
    client: &mut Client,
    baseline: &[pb::PublicKey],
    ecdsa: &pb::PublicKey,
    after: &str,
) {
    assert_eq!(
        client.list().await,
        baseline,
        "key list changed after {after}"
    );
    let message = format!("still signing after {after}");
    let resp = client
        .sign_message(
            &ecdsa.key_id,
            message.as_bytes(),
            pb::SignatureEncoding::Raw,
        )
        .await
        .unwrap_or_else(|s| panic!("signing failed after {after}: {s:?}"));
    parse_public(ecdsa)
        .verify(message.as_bytes(), &resp.signature)
        .unwrap_or_else(|e| panic!("signature after {after} does not verify: {e}"));
}
