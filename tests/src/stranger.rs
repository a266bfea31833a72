//! [`Rpc`] / [`RpcOutcome`] / [`Stranger`]: one RPC made by the `sigil-e2e-client` helper
//! binary running as uid/gid 65534, reported as JSON.

use super::*;

/// One RPC for the `sigil-e2e-client` helper, passed to it as JSON on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Rpc {
    /// ListKeys.
    List,
    /// GetPublicKey.
    Public {
        /// Key id.
        key_id: String,
    },
    /// Sign a message, RAW encoding.
    Sign {
        /// Key id.
        key_id: String,
        /// Message, hex.
        message_hex: String,
    },
    /// Sign a precomputed SHA-256 digest, RAW encoding.
    SignDigest {
        /// Key id.
        key_id: String,
        /// The digest, hex.
        digest_hex: String,
    },
    /// GenerateKey (ECDSA P-256).
    Generate {
        /// Role.
        role: String,
        /// GUN.
        gun: String,
    },
    /// GenerateKey (ECDSA P-256) on a named backend.
    GenerateOn {
        /// Backend name.
        backend: String,
        /// Role.
        role: String,
        /// GUN.
        gun: String,
    },
    /// DeleteKey.
    Delete {
        /// Key id.
        key_id: String,
    },
}

/// What the helper saw: who it ran as, and the RPC's status and result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcOutcome {
    /// The helper's real uid.
    pub uid: u32,
    /// The helper's real gid.
    pub gid: u32,
    /// The helper's supplementary groups.
    pub groups: Vec<u32>,
    /// gRPC status code (`tonic::Code as i32`); 0 for OK.
    pub code: i32,
    /// gRPC status message.
    pub message: String,
    /// Keys returned (ListKeys, GetPublicKey, GenerateKey).
    pub key_ids: Vec<String>,
    /// Signature, hex (Sign).
    pub signature_hex: String,
}

impl RpcOutcome {
    /// The status code.
    pub fn code(&self) -> tonic::Code {
        tonic::Code::from_i32(self.code)
    }
}

/// Performs `rpc` on `client`, reporting the outcome (used by the helper binary).
pub async fn perform(client: &mut Client, rpc: &Rpc) -> RpcOutcome {
    let mut outcome = RpcOutcome {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        groups: nix::unistd::getgroups()
            .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default(),
        code: 0,
        message: String::new(),
        key_ids: Vec::new(),
        signature_hex: String::new(),
    };
    let result: Result<(), tonic::Status> = match rpc {
        Rpc::List => client
            .keys
            .list_keys(pb::ListKeysRequest::default())
            .await
            .map(|r| outcome.key_ids = r.into_inner().keys.into_iter().map(|k| k.key_id).collect()),
        Rpc::Public { key_id } => client
            .public(key_id)
            .await
            .map(|k| outcome.key_ids = vec![k.key_id]),
        Rpc::Sign {
            key_id,
            message_hex,
        } => {
            let message = hex::decode(message_hex).unwrap_or_default();
            client
                .sign_message(key_id, &message, pb::SignatureEncoding::Raw)
                .await
                .map(|r| outcome.signature_hex = hex::encode(r.signature))
        }
        Rpc::SignDigest { key_id, digest_hex } => {
            let digest = hex::decode(digest_hex).unwrap_or_default();
            client
                .sign_request(pb::SignRequest {
                    key_id: key_id.clone(),
                    payload: Some(pb::sign_request::Payload::Sha256Digest(digest)),
                    encoding: pb::SignatureEncoding::Raw.into(),
                })
                .await
                .map(|r| outcome.signature_hex = hex::encode(r.signature))
        }
        Rpc::Generate { role, gun } => client
            .keys
            .generate_key(pb::GenerateKeyRequest {
                backend: String::new(),
                role: role.clone(),
                gun: gun.clone(),
                algorithm: pb::Algorithm::EcdsaP256.into(),
            })
            .await
            .map(|r| outcome.key_ids = vec![r.into_inner().key_id]),
        Rpc::GenerateOn { backend, role, gun } => client
            .keys
            .generate_key(pb::GenerateKeyRequest {
                backend: backend.clone(),
                role: role.clone(),
                gun: gun.clone(),
                algorithm: pb::Algorithm::EcdsaP256.into(),
            })
            .await
            .map(|r| outcome.key_ids = vec![r.into_inner().key_id]),
        Rpc::Delete { key_id } => client.delete(key_id).await,
    };
    if let Err(status) = result {
        outcome.code = status.code() as i32;
        outcome.message = status.message().to_owned();
    }
    outcome
}

/// Runs the `sigil-e2e-client` helper as uid/gid 65534 with no supplementary groups.
#[derive(Debug)]
pub struct Stranger {
    exe: PathBuf,
    _copy: Option<tempfile::TempDir>,
}

/// `Path` of the `sigil-e2e-client` helper binary, for [`Stranger::new`]. A macro because
/// `CARGO_BIN_EXE_*` exists only when compiling this crate's integration tests.
#[macro_export]
macro_rules! client_exe {
    () => {
        std::path::Path::new(env!("CARGO_BIN_EXE_sigil-e2e-client"))
    };
}

/// `Path` of the `token-inspect` helper binary, for [`DevDir::inspect_token`].
#[macro_export]
macro_rules! token_inspect_exe {
    () => {
        std::path::Path::new(env!("CARGO_BIN_EXE_token-inspect"))
    };
}

fn reachable_by_others(path: &Path) -> bool {
    let file_ok = fs::metadata(path).is_ok_and(|m| m.mode() & 0o005 == 0o005);
    file_ok
        && path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .all(|dir| fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0))
}

impl Stranger {
    /// Prepares to run `exe` (see [`client_exe!`]) as uid 65534. Panics unless the tests run
    /// as root, which switching uid needs. If uid 65534 cannot reach `exe` (a private target
    /// directory), a copy is made in a 0711 temporary directory with mode 0755.
    pub fn new(exe: &Path) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "running a client as uid {OTHER_UID} needs root: run the e2e suite as root (CI does)"
        );
        if reachable_by_others(exe) {
            return Self {
                exe: exe.to_owned(),
                _copy: None,
            };
        }
        let dir = tempfile::Builder::new()
            .prefix("sigil-e2e-client-")
            .tempdir()
            .expect("temporary directory for the client copy");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).expect("chmod 0711");
        let copy = dir.path().join("sigil-e2e-client");
        fs::copy(exe, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", exe.display()));
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        Self {
            exe: copy,
            _copy: Some(dir),
        }
    }

    /// Performs `rpc` against `socket` as uid/gid 65534. std drops the supplementary groups
    /// when it switches uid; the helper reports its identity so the tests can check.
    pub fn run(&self, socket: &Path, rpc: &Rpc) -> RpcOutcome {
        self.run_with_gid(socket, rpc, OTHER_GID)
    }

    /// Performs `rpc` as uid 65534 with gid `gid` (as a setgid program of that group would).
    pub fn run_with_gid(&self, socket: &Path, rpc: &Rpc, gid: u32) -> RpcOutcome {
        use std::os::unix::process::CommandExt as _;
        let output = Command::new(&self.exe)
            .arg(socket)
            .arg(serde_json::to_string(rpc).expect("Rpc serialises"))
            .uid(OTHER_UID)
            .gid(gid)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {} as uid {OTHER_UID}: {e}", self.exe.display()));
        assert!(
            output.status.success(),
            "sigil-e2e-client {rpc:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let outcome: RpcOutcome = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "sigil-e2e-client printed no outcome ({e}):\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        assert_eq!(
            (outcome.uid, outcome.gid, outcome.groups.as_slice()),
            (OTHER_UID, gid, &[][..]),
            "the helper did not run as uid {OTHER_UID}, gid {gid} without supplementary groups"
        );
        outcome
    }
}
