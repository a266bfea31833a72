//! Standard gRPC clients other than tonic and grpc-go, with their default settings, on the
//! Unix socket. grpc-core (Python grpcio, C++, Ruby) sends the socket path percent-encoded as
//! `:authority`, grpc-java sends it raw, grpcurl `-unix` (grpc-go with its own dialer)
//! percent-encoded; h2 alone resets such streams with PROTOCOL_ERROR. Here: the real grpcio
//! from PyPI in a venv signs through sigild, and raw HTTP/2 requests carry each authority form.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use prost::Message as _;
use sigil_e2e::{DevDir, parse_public};
use sigil_proto::sigil_v1 as pb;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// ListKeys as one raw HTTP/2 request with `authority`; the decoded response, or how the
/// server refused the stream.
fn raw_list_keys(socket: &Path, authority: &str) -> Result<pb::ListKeysResponse, String> {
    let mut conn = UnixStream::connect(socket).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut encoder = loona_hpack::Encoder::new();
    let block = encoder.encode([
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", b"/sigil.v1.Keys/ListKeys"),
        (b":authority", authority.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]);
    let body = pb::ListKeysRequest::default().encode_to_vec();
    let mut message = vec![0u8];
    message.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    message.extend_from_slice(&body);
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(frame(0x1, 0x4, 1, &block));
    out.extend(frame(0x0, 0x1, 1, &message));
    conn.write_all(&out).expect("request");

    let mut decoder = loona_hpack::Decoder::new();
    let mut data = Vec::new();
    loop {
        let mut header = [0u8; 9];
        conn.read_exact(&mut header)
            .map_err(|e| format!("connection ended: {e}"))?;
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).expect("frame payload");
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        match kind {
            0x3 if stream == 1 => {
                return Err(format!("RST_STREAM, error code {:?}", &payload[..4]));
            }
            0x7 => return Err(format!("GOAWAY {payload:?}")),
            0x4 if flags & 0x1 == 0 => conn.write_all(&frame(0x4, 0x1, 0, &[])).expect("ack"),
            0x0 if stream == 1 => data.extend_from_slice(&payload),
            0x1 if stream == 1 => {
                let fields = decoder.decode(&payload).expect("response headers decode");
                if flags & 0x1 != 0 {
                    let status = fields
                        .iter()
                        .find(|(n, _)| n == b"grpc-status")
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                    if status.as_deref() != Some("0") {
                        return Err(format!("grpc-status {status:?}"));
                    }
                    let reply = data.get(5..).ok_or("no response message")?;
                    return pb::ListKeysResponse::decode(reply).map_err(|e| e.to_string());
                }
            }
            _ => {}
        }
    }
}

/// The `:authority` values other clients send over a Unix socket each get an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authority_form_gets_an_answer() {
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/authority", pb::Algorithm::EcdsaP256)
        .await;
    let path = daemon.socket().to_str().expect("UTF-8 path").to_owned();
    let encoded = path.replace('/', "%2F");
    let forms = [
        ("grpc-java (the path)", path.clone()),
        (
            "grpc-core and grpcurl (the path, percent-encoded)",
            encoded.clone(),
        ),
        ("a unix: target", format!("unix:{path}")),
        ("a unix: target, percent-encoded", format!("unix:{encoded}")),
        ("grpc-go's unix: resolver", "localhost".to_owned()),
    ];
    let socket = daemon.socket().to_owned();
    let answers = tokio::task::spawn_blocking(move || {
        forms.map(|(who, authority)| (who, raw_list_keys(&socket, &authority)))
    })
    .await
    .expect("raw requests");
    for (who, answer) in answers {
        let listed = answer.unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(
            listed.keys.iter().map(|k| &k.key_id).collect::<Vec<_>>(),
            [&key.key_id],
            "{who}"
        );
    }
}

/// A venv with grpcio, grpcio-tools and grpcio-reflection from PyPI, kept under the target
/// directory.
fn python_venv() -> PathBuf {
    sigil_e2e::python::venv(
        "py-grpc-venv",
        &["grpcio", "grpcio-tools", "grpcio-reflection"],
        "import grpc, grpc_tools, grpc_reflection",
    )
}

const PYTHON_CLIENT: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc
from sigil.v1 import keys_pb2, keys_pb2_grpc, signer_pb2, signer_pb2_grpc

socket, key_id, message = sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4])
with grpc.insecure_channel("unix:" + socket) as channel:
    listed = keys_pb2_grpc.KeysStub(channel).ListKeys(keys_pb2.ListKeysRequest(), timeout=30)
    signed = signer_pb2_grpc.SignerStub(channel).Sign(
        signer_pb2.SignRequest(
            key_id=key_id,
            message=message,
            encoding=signer_pb2.SIGNATURE_ENCODING_RAW,
        ),
        timeout=30,
    )
print(json.dumps({
    "grpc": grpc.__version__,
    "keys": [k.key_id for k in listed.keys],
    "signature": signed.signature.hex(),
}))
"#;

/// Python's grpcio with default settings lists and signs over `unix:`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_lists_and_signs_over_the_socket() {
    let python = python_venv();
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let key = client
        .generate("targets", "example.com/python", pb::Algorithm::EcdsaP256)
        .await;

    let stubs = dir.root().join("py-stubs");
    std::fs::create_dir_all(&stubs).expect("stub dir");
    let proto_dir = sigil_e2e::workspace_root().join("proto");
    let protoc = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto_dir)
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .args(["sigil/v1/keys.proto", "sigil/v1/signer.proto"])
        .output()
        .expect("grpc_tools.protoc");
    assert!(
        protoc.status.success(),
        "generating Python stubs:\n{}",
        String::from_utf8_lossy(&protoc.stderr)
    );

    let message = b"signed by Python's grpcio".to_vec();
    let out = Command::new(&python)
        .args(["-c", PYTHON_CLIENT])
        .arg(&stubs)
        .arg(daemon.socket())
        .arg(&key.key_id)
        .arg(hex::encode(&message))
        .output()
        .expect("running the Python client");
    assert!(
        out.status.success(),
        "the Python client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from Python");
    eprintln!("grpcio {}", reply["grpc"]);
    assert_eq!(reply["keys"], serde_json::json!([key.key_id]));
    let signature = hex::decode(reply["signature"].as_str().expect("hex")).expect("hex");
    parse_public(&key)
        .verify(&message, &signature)
        .expect("grpcio's signature verifies");
}

const PYTHON_REFLECTION_CLIENT: &str = r#"
import json, sys
import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

socket, key_id, message = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])

def call(channel, pool, service, method, **fields):
    desc = pool.FindServiceByName(service).FindMethodByName(method)
    request = message_factory.GetMessageClass(desc.input_type)
    response = message_factory.GetMessageClass(desc.output_type)
    rpc = channel.unary_unary(
        "/%s/%s" % (service, method),
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )
    return rpc(request(**fields), timeout=30)

with grpc.insecure_channel("unix:" + socket) as channel:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    pool = DescriptorPool(database)
    listed = call(channel, pool, "sigil.v1.Keys", "ListKeys")
    raw = pool.FindEnumTypeByName("sigil.v1.SignatureEncoding").values_by_name[
        "SIGNATURE_ENCODING_RAW"
    ].number
    signed = call(
        channel, pool, "sigil.v1.Signer", "Sign", key_id=key_id, message=message, encoding=raw
    )
print(json.dumps({
    "services": services,
    "keys": [k.key_id for k in listed.keys],
    "signature": signed.signature.hex(),
}))
"#;

/// gRPC reflection on the socket: a client without any .proto file (grpcio's reflection
/// client, as grpcurl would) lists the services and calls ListKeys and Sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lets_a_client_without_protos_list_and_sign() {
    let python = python_venv();
    let dir = DevDir::new();
    let daemon = dir.start();
    let mut client = daemon.client().await;
    let key = client
        .generate(
            "targets",
            "example.com/reflection",
            pb::Algorithm::EcdsaP256,
        )
        .await;
    let message = b"signed through reflection".to_vec();
    let out = Command::new(&python)
        .args(["-c", PYTHON_REFLECTION_CLIENT])
        .arg(daemon.socket())
        .arg(&key.key_id)
        .arg(hex::encode(&message))
        .output()
        .expect("running the Python reflection client");
    assert!(
        out.status.success(),
        "the Python reflection client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from Python");
    let services: Vec<&str> = reply["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for expected in [
        "sigil.v1.Keys",
        "sigil.v1.Signer",
        "sigil.v1.Tokens",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(&expected),
            "{expected} not listed: {services:?}"
        );
    }
    assert!(
        !services.iter().any(|s| s.starts_with("proto.")),
        "the notary-signer services are not on the socket: {services:?}"
    );
    assert_eq!(reply["keys"], serde_json::json!([key.key_id]));
    let signature = hex::decode(reply["signature"].as_str().expect("hex")).expect("hex");
    parse_public(&key)
        .verify(&message, &signature)
        .expect("the signature made through reflection verifies");
}
