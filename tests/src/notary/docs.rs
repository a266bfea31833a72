//! Signed metadata as notary-server serves it, audit lines of either caller, and a token
//! parked out of SoftHSM's store.

use super::*;

/// One signature in a Notary envelope.
#[derive(Debug, Clone)]
pub struct DocSignature {
    /// `keyid`.
    pub key_id: String,
    /// `method`.
    pub method: String,
    /// `sig`, decoded.
    pub sig: Vec<u8>,
}

/// A signed Notary document: the exact bytes under `signed` (canonical JSON, what the
/// signatures cover), parsed, and its signatures.
#[derive(Debug, Clone)]
pub struct SignedDoc {
    /// The exact bytes of the `signed` value as served.
    pub signed_bytes: Vec<u8>,
    /// `signed`, parsed.
    pub signed: serde_json::Value,
    /// `signatures`.
    pub signatures: Vec<DocSignature>,
}

/// A key a root names, with its Notary key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKey {
    /// Key id as listed in root.
    pub id: String,
    /// `keytype`.
    pub keytype: String,
    /// `keyval.public`, decoded.
    pub public: Vec<u8>,
}

impl SignedDoc {
    /// Parses an envelope; panics if it is not one.
    pub fn parse(bytes: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            signed: &'a serde_json::value::RawValue,
            signatures: Vec<RawSignature>,
        }
        #[derive(Deserialize)]
        struct RawSignature {
            keyid: String,
            method: String,
            sig: String,
        }
        let envelope: Envelope<'_> = serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!(
                "not a signed Notary document ({e}): {}",
                String::from_utf8_lossy(bytes)
            )
        });
        let signed_bytes = envelope.signed.get().as_bytes().to_vec();
        Self {
            signed: serde_json::from_slice(&signed_bytes).expect("signed is JSON"),
            signed_bytes,
            signatures: envelope
                .signatures
                .into_iter()
                .map(|s| DocSignature {
                    key_id: s.keyid,
                    method: s.method.to_ascii_lowercase(),
                    sig: base64::engine::general_purpose::STANDARD
                        .decode(&s.sig)
                        .unwrap_or_else(|e| panic!("signature {} is not base64: {e}", s.sig)),
                })
                .collect(),
        }
    }

    /// `signed.version`.
    pub fn version(&self) -> u64 {
        self.signed["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {}", self.signed))
    }

    /// For a root: the keys of `role` (panics if `role` or one of its keys is missing).
    pub fn role_keys(&self, role: &str) -> Vec<RoleKey> {
        let ids = self.signed["roles"][role]["keyids"]
            .as_array()
            .unwrap_or_else(|| panic!("root names no keys for {role}: {}", self.signed));
        ids.iter()
            .map(|id| {
                let id = id.as_str().expect("key ids are strings");
                let key = &self.signed["keys"][id];
                RoleKey {
                    id: id.to_owned(),
                    keytype: key["keytype"]
                        .as_str()
                        .unwrap_or_else(|| panic!("key {id} has no keytype"))
                        .to_owned(),
                    public: base64::engine::general_purpose::STANDARD
                        .decode(
                            key["keyval"]["public"]
                                .as_str()
                                .unwrap_or_else(|| panic!("key {id} has no public part")),
                        )
                        .unwrap_or_else(|e| panic!("key {id}: public is not base64: {e}")),
                }
            })
            .collect()
    }

    /// Checks that the canonical bytes under `signed` carry a valid signature by one of
    /// `keys` (whose ids must be their Notary key ids); returns that key. Panics otherwise.
    pub fn verified_by(&self, keys: &[RoleKey]) -> RoleKey {
        let mut problems = Vec::new();
        for sig in &self.signatures {
            let Some(key) = keys.iter().find(|k| k.id == sig.key_id) else {
                problems.push(format!("{}: not a key of this role", sig.key_id));
                continue;
            };
            assert_eq!(
                notary_key_id(&key.keytype, &key.public),
                key.id,
                "root lists key {} under an id that is not its Notary key id",
                key.id
            );
            match verify_notary_signature(
                &key.keytype,
                &key.public,
                &sig.method,
                &self.signed_bytes,
                &sig.sig,
            ) {
                Ok(()) => return key.clone(),
                Err(e) => problems.push(format!("{}: {e}", sig.key_id)),
            }
        }
        panic!(
            "no valid signature by {:?} on {}: {problems:?}",
            keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
            String::from_utf8_lossy(&self.signed_bytes)
        );
    }
}

/// One audit line, from either kind of caller: a Unix peer (`uid`, `gid`, `pid`) or a
/// notary-signer TLS client (`client`). Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLine {
    /// RFC 3339 time.
    pub time: String,
    /// Hex SHA-256 of the previous line (the hash chain); absent only in the log of a sigild
    /// from before the chain, which benchmarks run for comparison.
    #[serde(default)]
    pub prev: Option<String>,
    /// `sign`, `generate`, `delete` or `public`.
    pub op: String,
    /// The TLS client's certificate identity (notary-signer endpoint).
    pub client: Option<String>,
    /// Unix caller uid.
    pub uid: Option<u32>,
    /// Unix caller gid.
    pub gid: Option<u32>,
    /// Unix caller pid.
    pub pid: Option<i32>,
    /// Daemon key id (as requested when not found).
    pub key_id: String,
    /// Key role.
    pub role: String,
    /// Key GUN.
    pub gun: String,
    /// Backend name.
    pub backend: String,
    /// Algorithm name.
    pub algorithm: Option<String>,
    /// Hex SHA-256 of what was signed.
    pub sha256: Option<String>,
    /// `ok`, `denied`, `not_found`, `invalid` or `error`.
    pub outcome: String,
    /// Why it was refused.
    pub reason: Option<String>,
    /// Time spent, µs.
    pub latency_us: u64,
    /// On `suppressed` lines: how many refusals were counted instead of written.
    #[serde(default)]
    pub suppressed: Option<u64>,
    /// What the signed (or refused) metadata said.
    #[serde(default)]
    pub metadata: Option<crate::AuditMetadata>,
}

/// Every line of an audit log as [`AuditLine`]s (panics on a malformed line).
pub fn read_audit_lines(path: &Path) -> Vec<AuditLine> {
    crate::read_json_lines(path, "an audit line")
}

/// A SoftHSM token directory moved out of the token store, so the token is gone for every
/// process using it; [`Self::restore`] (or drop) moves it back.
#[derive(Debug)]
pub struct ParkedToken {
    from: PathBuf,
    to: PathBuf,
    restored: bool,
}

impl ParkedToken {
    /// Moves the only token directory under `<dev dir>/tokens` to `<root>/parked-token`.
    pub fn park(dev: &DevDir) -> Self {
        let store = dev.path().join("tokens");
        let mut tokens: Vec<PathBuf> = fs::read_dir(&store)
            .unwrap_or_else(|e| panic!("listing {}: {e}", store.display()))
            .map(|e| e.expect("reading a token store entry").path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(
            tokens.len(),
            1,
            "expected one token under {}: {tokens:?}",
            store.display()
        );
        let from = tokens.remove(0);
        let to = dev.root().join("parked-token");
        fs::rename(&from, &to)
            .unwrap_or_else(|e| panic!("moving {} to {}: {e}", from.display(), to.display()));
        Self {
            from,
            to,
            restored: false,
        }
    }

    /// Moves the token back where it was.
    pub fn restore(mut self) {
        self.put_back();
    }

    fn put_back(&mut self) {
        if !self.restored {
            self.restored = true;
            fs::rename(&self.to, &self.from).unwrap_or_else(|e| {
                panic!(
                    "moving {} back to {}: {e}",
                    self.to.display(),
                    self.from.display()
                )
            });
        }
    }
}

impl Drop for ParkedToken {
    fn drop(&mut self) {
        if !self.restored {
            self.restored = true;
            let _ = fs::rename(&self.to, &self.from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let response = parse_http(raw).expect("a valid response");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"abcde");
    }

    /// A timestamp served by the real notary-server 0.7.0 (shared/notary fixtures), and the
    /// timestamp key its root named: the verifier and the key id formula agree with Notary.
    #[test]
    fn a_timestamp_signed_by_real_notary_verifies() {
        const KEY_ID: &str = "62bdf50e83b0d28f9455124018a453ac1f7f8ea68937467d2f846bb895187074";
        const PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnipYUPb3xQPTHevgBDwipdVBx5rGxITA9/Aqzvt95IuDWSznn2SIVmx+myQsSJauYXRjAV5jiNctjbCKENY5nA==";
        const TIMESTAMP: &str = r#"{"signed":{"_type":"Timestamp","expires":"2026-12-05T22:43:36.904327308Z","meta":{"snapshot":{"hashes":{"sha256":"tqi+/r3ikvvCjwDP5C8LAJzL3gT9I3wx2MMzRNbJzYc=","sha512":"NFHxyc82rAQCHFDNJ4JqAQRPKh6Cq5s/P7YjOYn/E5GTkAVLIFXWLuAFElUdjPSZM3VGqR9rwRawSl3BOP3SIA=="},"length":683}},"version":1},"signatures":[{"keyid":"62bdf50e83b0d28f9455124018a453ac1f7f8ea68937467d2f846bb895187074","method":"ecdsa","sig":"UnqA1ngzbMnRnvZ+vTrWaNP5DSaI3VIgi6JvOkLFUkqEjt7GuYTDrS7ygtwAW6StLbM/KRX6cjC3ILREec1yaQ=="}]}"#;
        let public = base64::engine::general_purpose::STANDARD
            .decode(PUBLIC)
            .expect("base64");
        assert_eq!(notary_key_id("ecdsa", &public), KEY_ID);
        let key = RoleKey {
            id: KEY_ID.into(),
            keytype: "ecdsa".into(),
            public,
        };
        let doc = SignedDoc::parse(TIMESTAMP.as_bytes());
        assert_eq!(doc.version(), 1);
        assert_eq!(doc.verified_by(std::slice::from_ref(&key)), key);
        let mut tampered = doc.clone();
        tampered.signed_bytes[20] ^= 1;
        assert!(
            std::panic::catch_unwind(|| tampered.verified_by(std::slice::from_ref(&key))).is_err()
        );
    }
}
