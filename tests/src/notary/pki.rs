//! A throwaway PKI for the Notary lab: CA, notary-server, notary-signer and client certificates.

use super::*;

/// A certificate and its PKCS#8 private key (mode 0600), both PEM files.
#[derive(Debug, Clone)]
pub struct CertKey {
    /// The certificate.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (`serverAuth`).
    Server,
    /// TLS client (`clientAuth`).
    Client,
}

/// A throwaway ECDSA P-256 CA in a directory, with the certificates a Notary deployment needs:
/// `server` (notary-server's HTTPS), `signer` (the gRPC signer, sigild or notary-signer) and
/// `client` (CN [`SERVER_CLIENT_CN`], notary-server's identity towards its signer). Server
/// certificates carry SANs `IP:127.0.0.1` and `DNS:localhost`.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

fn openssl_ok(args: &[&str]) {
    crate::openssl_in(Path::new("."), args);
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

impl Pki {
    /// Makes a CA named `name` and the three standard leaf certificates under `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        require_notary();
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let pki = Self {
            dir: dir.to_owned(),
        };
        let key = pki.dir.join("ca.key");
        openssl_ok(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            path_str(&key),
        ]);
        write_file(&key, fs::read(&key).expect("reading ca.key"), 0o600);
        openssl_ok(&[
            "req",
            "-x509",
            "-new",
            "-key",
            path_str(&key),
            "-sha256",
            "-days",
            CERT_DAYS,
            "-subj",
            &format!("/O=sigil-e2e/CN={name} throwaway CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            path_str(&pki.ca()),
        ]);
        let sans = ["IP:127.0.0.1", "DNS:localhost"];
        pki.issue("server", "notary-server", Usage::Server, &sans);
        pki.issue("signer", "notary-signer", Usage::Server, &sans);
        pki.issue("client", SERVER_CLIENT_CN, Usage::Client, &[]);
        pki
    }

    /// The directory holding everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A certificate issued earlier under `name`.
    pub fn named(&self, name: &str) -> CertKey {
        CertKey {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    /// notary-server's HTTPS certificate.
    pub fn server(&self) -> CertKey {
        self.named("server")
    }

    /// The gRPC signer's certificate (sigild's `[notary_signer]` or notary-signer).
    pub fn signer(&self) -> CertKey {
        self.named("signer")
    }

    /// notary-server's client certificate towards its signer (CN [`SERVER_CLIENT_CN`]).
    pub fn client(&self) -> CertKey {
        self.named("client")
    }

    /// Issues `name.crt` / `name.key` (CN `cn`, subject alternative names `sans` in openssl
    /// syntax such as `DNS:x` or `IP:127.0.0.1`), signed by this CA.
    pub fn issue(&self, name: &str, cn: &str, usage: Usage, sans: &[&str]) -> CertKey {
        let out = self.named(name);
        let raw = self.dir.join(format!("{name}.raw.key"));
        openssl_ok(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            path_str(&raw),
        ]);
        // PKCS#8 for everyone: Go's tls.LoadX509KeyPair and rustls both read it.
        openssl_ok(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            path_str(&raw),
            "-out",
            path_str(&out.key),
        ]);
        fs::remove_file(&raw).expect("removing the raw key");
        write_file(
            &out.key,
            fs::read(&out.key).expect("reading the key"),
            0o600,
        );
        let csr = self.dir.join(format!("{name}.csr"));
        openssl_ok(&[
            "req",
            "-new",
            "-key",
            path_str(&out.key),
            "-subj",
            &format!("/O=sigil-e2e/CN={cn}"),
            "-out",
            path_str(&csr),
        ]);
        let mut ext = format!(
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = {}\nsubjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid, issuer\n",
            match usage {
                Usage::Server => "serverAuth",
                Usage::Client => "clientAuth",
            }
        );
        if !sans.is_empty() {
            ext.push_str(&format!("subjectAltName = {}\n", sans.join(", ")));
        }
        let ext_file = self.dir.join(format!("{name}.ext"));
        write_file(&ext_file, ext, 0o644);
        openssl_ok(&[
            "x509",
            "-req",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&self.ca()),
            "-CAkey",
            path_str(&self.dir.join("ca.key")),
            "-CAcreateserial",
            "-days",
            CERT_DAYS,
            "-sha256",
            "-extfile",
            path_str(&ext_file),
            "-out",
            path_str(&out.cert),
        ]);
        let _ = fs::remove_file(&csr);
        let _ = fs::remove_file(&ext_file);
        out
    }
}
