//! [`TokenReport`]: what the `token-inspect` helper reads directly from the token; OpenSSL
//! and socket helpers the token and TLS tests share.

use super::*;

/// What `token-inspect` found on the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenReport {
    /// `CKF_USER_PIN_COUNT_LOW` (SoftHSM sets it after a wrong PIN).
    pub user_pin_count_low: bool,
    /// `CKF_USER_PIN_FINAL_TRY`.
    pub user_pin_final_try: bool,
    /// `CKF_USER_PIN_LOCKED`.
    pub user_pin_locked: bool,
    /// Why C_Login failed; `None` when the PIN was accepted.
    pub login_error: Option<String>,
    /// Every private key object on the token.
    pub private_keys: Vec<PrivateKeyReport>,
    /// How many public key objects are on the token.
    pub public_key_count: usize,
}

/// One private key object, as the token describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrivateKeyReport {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id_hex: String,
    /// Daemon key id computed from the public key object with the same `CKA_ID`.
    pub key_id: Option<String>,
    /// `CKA_KEY_TYPE`.
    pub key_type: String,
    /// Boolean attributes by name (`Sensitive`, `Extractable`, ...); absent when unreadable.
    pub flags: BTreeMap<String, bool>,
    /// Secret-bearing attributes (`Value`, or RSA's private exponent and primes) as
    /// `C_GetAttributeValue` answers for each alone: `sensitive`, `available(N)`,
    /// `unavailable` or `type_invalid`.
    pub secret_attributes: BTreeMap<String, String>,
    /// Secret-bearing attributes that a bulk `get_attributes` call returned a value for.
    pub secret_values_returned: Vec<String>,
}

impl PrivateKeyReport {
    /// A boolean attribute; panics if the token did not report it.
    pub fn flag(&self, name: &str) -> bool {
        *self
            .flags
            .get(name)
            .unwrap_or_else(|| panic!("{}: attribute {name} not reported", self.label))
    }
}

impl TokenReport {
    /// The private key whose public half has this daemon key id.
    pub fn key(&self, key_id: &str) -> Option<&PrivateKeyReport> {
        self.private_keys
            .iter()
            .find(|k| k.key_id.as_deref() == Some(key_id))
    }
}

/// Writes a key's PEM (from the `tuf` crate) to `path`.
pub fn write_pem(path: &Path, key: &sigil_tuf::key::PublicKey) {
    write_file(path, key.to_pem(), 0o644);
}

/// Runs `openssl ARGS…` in `dir`, panicking with its stderr unless it succeeds.
pub fn openssl_in(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl (apt-get install -y openssl): {e}"));
    assert!(
        output.status.success(),
        "openssl {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `openssl` with `args`; returns whether it succeeded, and its combined output.
pub fn openssl(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Reads whatever a raw connection sends until EOF or `timeout`; returns the bytes and whether
/// the peer closed the connection.
pub fn read_until_closed(
    stream: &mut std::os::unix::net::UnixStream,
    timeout: Duration,
) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set_read_timeout");
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < timeout {
        match stream.read(&mut buf) {
            Ok(0) => return (received, true),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (received, true),
            Err(e) => panic!("reading from the raw connection: {e}"),
        }
    }
    (received, false)
}
