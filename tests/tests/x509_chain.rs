//! `trust_pinning.ca`'s chain check (`sigil_tuf::x509::Certificate::chains_to`) on certificate
//! hierarchies made by OpenSSL: a root key certificate issued by the pinned CA directly or
//! through intermediates carried after it, and each way the chain must fail — another CA, a
//! missing intermediate, an intermediate that is not a CA, an extended key usage without
//! serverAuth, a CA that is not valid yet.

use std::path::Path;
use std::time::{Duration, SystemTime};

use sigil_e2e::cert_files::{self, CA_EXTENSIONS, Curve, LEAF_EXTENSIONS};
use sigil_tuf::x509::Certificate;

/// `NAME.key`, `NAME.crt`: a P-256 CA, CN = NAME.
fn self_signed_ca(dir: &Path, name: &str) {
    cert_files::self_signed_ca(dir, name, Curve::P256, "-sha256");
}

/// `NAME.crt`, CN `cn`, issued by `issuer` with the extensions in `ext`.
fn issue(dir: &Path, name: &str, cn: &str, issuer: &str, ext: &str) {
    cert_files::issue(dir, name, cn, issuer, ext, "-sha256");
}

fn cert(dir: &Path, name: &str) -> Certificate {
    let pem = std::fs::read_to_string(dir.join(format!("{name}.crt"))).expect("certificate");
    Certificate::from_pem(&pem).expect("parses")
}

const GUN: &str = "example.com/app";
const LEAF: &str = LEAF_EXTENSIONS;
const CA: &str = CA_EXTENSIONS;

#[test]
fn root_key_certificates_chain_to_the_pinned_ca_directly_or_through_intermediates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    self_signed_ca(dir, "ca");
    self_signed_ca(dir, "other-ca");
    issue(dir, "direct", GUN, "ca", LEAF);
    issue(dir, "intermediate", "intermediate", "ca", CA);
    issue(dir, "via", GUN, "intermediate", LEAF);
    issue(dir, "not-a-ca", "not a CA", "ca", LEAF);
    issue(dir, "under-leaf", GUN, "not-a-ca", LEAF);
    issue(
        dir,
        "code-signing",
        GUN,
        "ca",
        &format!("{LEAF}extendedKeyUsage=codeSigning\n"),
    );
    issue(
        dir,
        "server-auth",
        GUN,
        "ca",
        &format!("{LEAF}extendedKeyUsage=serverAuth,codeSigning\n"),
    );

    let now = SystemTime::now();
    let ca = [cert(dir, "ca")];
    let other = [cert(dir, "other-ca")];
    let intermediate = cert(dir, "intermediate");

    assert_eq!(cert(dir, "direct").chains_to(&[], &ca, now), Ok(()));
    assert!(cert(dir, "direct").chains_to(&[], &other, now).is_err());
    // A bundle with several CAs: any one will do.
    let both = [other[0].clone(), ca[0].clone()];
    assert_eq!(cert(dir, "direct").chains_to(&[], &both, now), Ok(()));

    let via = cert(dir, "via");
    assert_eq!(
        via.chains_to(std::slice::from_ref(&intermediate), &ca, now),
        Ok(())
    );
    let err = via
        .chains_to(&[], &ca, now)
        .expect_err("intermediate missing");
    assert!(err.contains("not issued by the pinned CA"), "{err}");
    // The intermediate itself is not a trust anchor for another hierarchy.
    assert!(via.chains_to(&[intermediate], &other, now).is_err());

    let under_leaf = cert(dir, "under-leaf");
    assert!(
        under_leaf
            .chains_to(&[cert(dir, "not-a-ca")], &ca, now)
            .is_err(),
        "a certificate that is not a CA cannot be an intermediate"
    );

    let err = cert(dir, "code-signing")
        .chains_to(&[], &ca, now)
        .expect_err("codeSigning only");
    assert!(err.contains("without serverAuth"), "{err}");
    assert_eq!(cert(dir, "server-auth").chains_to(&[], &ca, now), Ok(()));

    // Checked at a time the CA is not valid yet: no chain.
    let before = now - Duration::from_secs(2 * 86_400);
    assert!(cert(dir, "direct").chains_to(&[], &ca, before).is_err());

    // A bundle file holds several certificates; PEM without one is an error.
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("other-ca.crt")).expect("pem"),
        std::fs::read_to_string(dir.join("ca.crt")).expect("pem")
    );
    assert_eq!(
        Certificate::from_pem_bundle(&bundle).expect("bundle").len(),
        2
    );
    assert!(Certificate::from_pem_bundle("no certificates here").is_err());
}
