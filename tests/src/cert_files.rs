//! Small certificate hierarchies made with the `openssl` command for the trust-pinning tests:
//! EC keys, a self-signed CA, and certificates it issues from requests. Everything is a file
//! in one directory, named `NAME.key`, `NAME.crt`, `NAME.csr`, `NAME.ext`.

use std::path::Path;

use crate::{openssl_in, write_file};

/// Named curves for [`ec_key`].
#[derive(Debug, Clone, Copy)]
pub enum Curve {
    /// NIST P-256 (`prime256v1`).
    P256,
    /// NIST P-384 (`secp384r1`).
    P384,
}

impl Curve {
    fn openssl_name(self) -> &'static str {
        match self {
            Self::P256 => "prime256v1",
            Self::P384 => "secp384r1",
        }
    }
}

/// Extensions of a CA certificate (as [`self_signed_ca`] gives its own).
pub const CA_EXTENSIONS: &str =
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n";
/// Extensions of a root key (leaf) certificate, without an extended key usage.
pub const LEAF_EXTENSIONS: &str =
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n";

/// `NAME.key`: a new EC private key.
pub fn ec_key(dir: &Path, name: &str, curve: Curve) {
    let out = format!("{name}.key");
    openssl_in(
        dir,
        &[
            "ecparam",
            "-name",
            curve.openssl_name(),
            "-genkey",
            "-noout",
            "-out",
            &out,
        ],
    );
}

/// `NAME.key` and `NAME.crt`: a CA valid for 30 days from now, CN = NAME, signing with
/// `digest` (e.g. `-sha256`).
pub fn self_signed_ca(dir: &Path, name: &str, curve: Curve, digest: &str) {
    ec_key(dir, name, curve);
    let (key, crt, subject) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={name}"),
    );
    openssl_in(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            digest,
            "-days",
            "30",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-out",
            &crt,
        ],
    );
}

/// `NAME.key` (P-256), `NAME.csr` and `NAME.crt`: a certificate for CN `cn` (slashes allowed,
/// as in a GUN) issued by CA `issuer` with the extensions `extensions` (openssl syntax, one per
/// line; also left in `NAME.ext`), valid for 20 days, signed with `digest`.
pub fn issue(dir: &Path, name: &str, cn: &str, issuer: &str, extensions: &str, digest: &str) {
    ec_key(dir, name, Curve::P256);
    let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
    openssl_in(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN={}", cn.replace('/', "\\/")),
            "-out",
            &csr,
        ],
    );
    write_file(&dir.join(format!("{name}.ext")), extensions, 0o644);
    sign_request(
        dir,
        &csr,
        issuer,
        &format!("{name}.ext"),
        digest,
        &format!("{name}.crt"),
    );
}

/// `out`: the certificate CA `issuer` issues from request file `csr` with the extensions in
/// file `ext_file`, valid for 20 days, signed with `digest`.
pub fn sign_request(dir: &Path, csr: &str, issuer: &str, ext_file: &str, digest: &str, out: &str) {
    openssl_in(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            &format!("{issuer}.crt"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            digest,
            "-days",
            "20",
            "-extfile",
            ext_file,
            "-out",
            out,
        ],
    );
}
