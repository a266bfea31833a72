//! The `sigil.v1` request messages as sigild decodes them (prost), passed through the checks
//! the service applies before it looks up a key or touches a token
//! (`sigil_daemon::rpc::sigil::precheck_sign`, `precheck_generate`, `service::check_key_id`).
//!
//! Input: one byte choosing the message type (modulo 7: Sign, GenerateKey, GetPublicKey,
//! DeleteKey, AttestKey, ListKeys, Unlock), then the protobuf bytes. Properties:
//! - decoding never panics, and a decoded message re-encodes to bytes that decode to it;
//! - what the checks accept is what the API promises the layers below: a key id of 64
//!   lowercase hex digits; a known signature encoding and algorithm; a digest of exactly 32
//!   bytes or a message within `max_message_bytes`; a role of 1-255 bytes of
//!   `[A-Za-z0-9/_.-]` without empty path segments; a GUN of at most 255 bytes without
//!   control characters or whitespace.

use prost::Message;
use sigil_daemon::rpc::sigil::{precheck_generate, precheck_sign};
use sigil_daemon::service::check_key_id;
use sigil_proto::sigil_v1 as pb;

/// A small limit, so that messages over it are within the fuzzer's reach.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The harness.
pub fn request(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 7 {
        0 => {
            if let Some(req) = decode::<pb::SignRequest>(body)
                && precheck_sign(&req, MAX_MESSAGE_BYTES).is_ok()
            {
                sign_accepted(&req);
            }
        }
        1 => {
            if let Some(req) = decode::<pb::GenerateKeyRequest>(body)
                && precheck_generate(&req).is_ok()
            {
                generate_accepted(&req);
            }
        }
        2 => key_id_only(decode::<pb::GetPublicKeyRequest>(body).map(|r| r.key_id)),
        3 => key_id_only(decode::<pb::DeleteKeyRequest>(body).map(|r| r.key_id)),
        4 => key_id_only(decode::<pb::AttestKeyRequest>(body).map(|r| r.key_id)),
        5 => {
            decode::<pb::ListKeysRequest>(body);
        }
        _ => {
            decode::<pb::UnlockRequest>(body);
        }
    }
}

/// Decodes as sigild does and checks the re-encoding round trip.
fn decode<M: Message + Default + PartialEq>(body: &[u8]) -> Option<M> {
    let msg = M::decode(body).ok()?;
    let again = M::decode(msg.encode_to_vec().as_slice()).expect("re-encoded message decodes");
    assert!(again == msg, "re-encoding changed the message");
    Some(msg)
}

fn key_id_only(key_id: Option<String>) {
    if let Some(id) = key_id
        && check_key_id(&id).is_ok()
    {
        assert_key_id(&id);
    }
}

fn assert_key_id(id: &str) {
    assert!(
        id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "accepted key id {id:?}"
    );
}

fn sign_accepted(req: &pb::SignRequest) {
    assert_key_id(&req.key_id);
    assert!(
        pb::SignatureEncoding::try_from(req.encoding).is_ok(),
        "accepted encoding {}",
        req.encoding
    );
    match &req.payload {
        Some(pb::sign_request::Payload::Sha256Digest(d)) => {
            assert_eq!(d.len(), 32, "accepted a digest of {} bytes", d.len());
        }
        Some(pb::sign_request::Payload::Message(m)) => {
            assert!(m.len() <= MAX_MESSAGE_BYTES, "accepted {} bytes", m.len());
        }
        None => {}
    }
}

fn generate_accepted(req: &pb::GenerateKeyRequest) {
    assert!(
        pb::Algorithm::try_from(req.algorithm).is_ok(),
        "accepted algorithm {}",
        req.algorithm
    );
    let role = &req.role;
    assert!(
        (1..=255).contains(&role.len())
            && role.split('/').all(|segment| !segment.is_empty())
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.')),
        "accepted role {role:?}"
    );
    let gun = &req.gun;
    assert!(
        gun.len() <= 255 && !gun.chars().any(|c| c.is_control() || c.is_whitespace()),
        "accepted gun {gun:?}"
    );
}
