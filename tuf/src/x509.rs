//! X.509 for Notary: root keys are `ecdsa-x509` self-signed certificates (CN = GUN) and
//! delegation keys may be certificates too. This module parses them (public key, CN, validity,
//! the checks the notary client applies to root certificates) and builds the root certificate
//! with the TBSCertificate signed by an async [`Signer`], so the private key stays on its token.

use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use x509_cert::der::asn1::{
    Any, BitString, GeneralizedTime, Ia5StringRef, ObjectIdentifier, OctetString,
    PrintableStringRef, SetOfVec, UtcTime, Utf8StringRef,
};
use x509_cert::der::{
    DateTime, Decode as _, DecodePem as _, Encode as _, EncodePem as _, Tag, Tagged as _,
};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{TbsCertificate, Version};

use crate::error::{Error, Result};
use crate::key::{PublicKey, p256_raw_to_der};
use crate::schema::notary;
use crate::sign::Signer;

const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const OID_ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
const OID_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// Most certificates between a root key's certificate and a pinned CA.
const MAX_CHAIN: usize = 5;
/// Signature algorithms the notary client refuses in root certificates.
const SHA1_ALGORITHMS: [ObjectIdentifier; 3] = [
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5"), // sha1WithRSAEncryption
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.1"),    // ecdsa-with-SHA1
    ObjectIdentifier::new_unwrap("1.2.840.10040.4.3"),    // dsa-with-sha1
];

/// Lifetime `notary init` gives the root certificate (and root metadata): ten 365-day years.
pub const ROOT_CERT_LIFETIME: Duration = notary::ROOT_EXPIRY;

/// How far in the future a root certificate's notBefore may be (clock skew), as in notary.
const NOT_BEFORE_LEEWAY: Duration = Duration::from_secs(24 * 3600);

/// A parsed X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    inner: x509_cert::Certificate,
}

impl Certificate {
    /// Parses the first `CERTIFICATE` block of PEM text (Notary keys may carry a chain; the
    /// leaf comes first).
    pub fn from_pem(pem: &str) -> Result<Self> {
        const END: &str = "-----END CERTIFICATE-----";
        let first = match pem.find(END) {
            Some(i) => &pem[..i + END.len()],
            None => pem,
        };
        let inner = x509_cert::Certificate::from_pem(first.trim().as_bytes())
            .map_err(|e| Error::cert(format!("not a PEM certificate: {e}")))?;
        Ok(Self { inner })
    }

    /// Every `CERTIFICATE` block of PEM text, in order (a CA bundle, or a root key's
    /// certificate followed by its intermediates). No block is an error.
    pub fn from_pem_bundle(pem: &str) -> Result<Vec<Self>> {
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        let certs = pem
            .match_indices(BEGIN)
            .map(|(i, _)| Self::from_pem(&pem[i..]))
            .collect::<Result<Vec<_>>>()?;
        if certs.is_empty() {
            return Err(Error::cert("no CERTIFICATE block in the PEM text"));
        }
        Ok(certs)
    }

    /// Parses DER.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let inner = x509_cert::Certificate::from_der(der)
            .map_err(|e| Error::cert(format!("not a DER certificate: {e}")))?;
        Ok(Self { inner })
    }

    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>> {
        self.inner
            .to_der()
            .map_err(|e| Error::cert(format!("cannot encode: {e}")))
    }

    /// PEM text with a trailing newline, as Notary stores it in `keyval.public`.
    pub fn to_pem(&self) -> Result<String> {
        self.inner
            .to_pem(x509_cert::der::pem::LineEnding::LF)
            .map_err(|e| Error::cert(format!("cannot encode: {e}")))
    }

    /// A view of a DER TBSCertificate that is about to be signed (sign-metadata inspects
    /// what a root key's certificate will say before signing it). The view has no signature:
    /// it never verifies and must not be written out. Non-canonical DER is refused, so what
    /// was inspected is byte for byte what gets signed.
    pub fn unsigned_from_tbs_der(der: &[u8]) -> Result<Self> {
        let tbs = TbsCertificate::from_der(der)
            .map_err(|e| Error::cert(format!("not a DER TBSCertificate: {e}")))?;
        if tbs.to_der().ok().as_deref() != Some(der) {
            return Err(Error::cert("the TBSCertificate is not canonical DER"));
        }
        let signature_algorithm = tbs.signature.clone();
        Ok(Self {
            inner: x509_cert::Certificate {
                tbs_certificate: tbs,
                signature_algorithm,
                signature: BitString::from_bytes(&[])
                    .map_err(|e| Error::cert(format!("empty signature: {e}")))?,
            },
        })
    }

    /// Whether issuer and subject are the same name (a self-issued certificate).
    pub fn is_self_issued(&self) -> bool {
        self.inner.tbs_certificate.issuer == self.inner.tbs_certificate.subject
    }

    /// The subject's common name, if it has one in a string type we read.
    pub fn common_name(&self) -> Option<String> {
        self.inner
            .tbs_certificate
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == OID_CN)
            .and_then(|atv| {
                let v = &atv.value;
                match v.tag() {
                    Tag::PrintableString => PrintableStringRef::try_from(v)
                        .ok()
                        .map(|s| s.as_str().to_owned()),
                    Tag::Utf8String => Utf8StringRef::try_from(v)
                        .ok()
                        .map(|s| s.as_str().to_owned()),
                    Tag::Ia5String => Ia5StringRef::try_from(v)
                        .ok()
                        .map(|s| s.as_str().to_owned()),
                    _ => None,
                }
            })
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.inner
            .tbs_certificate
            .validity
            .not_before
            .to_system_time()
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.inner
            .tbs_certificate
            .validity
            .not_after
            .to_system_time()
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>> {
        self.inner
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| Error::cert(format!("cannot encode the public key: {e}")))
    }

    /// The certified public key.
    pub fn public_key(&self) -> Result<PublicKey> {
        PublicKey::from_spki_der(&self.spki_der()?)
            .map_err(|e| Error::cert(format!("certified key: {e}")))
    }

    /// Whether BasicConstraints says CA:TRUE.
    pub fn is_ca(&self) -> bool {
        self.extension::<BasicConstraints>(OID_BASIC_CONSTRAINTS)
            .is_some_and(|(_, bc)| bc.ca)
    }

    /// Whether the certificate is signed with SHA-1 (refused by notary for root keys).
    pub fn uses_sha1(&self) -> bool {
        SHA1_ALGORITHMS.contains(&self.inner.signature_algorithm.oid)
    }

    fn extension<'a, T: x509_cert::der::Decode<'a>>(
        &'a self,
        oid: ObjectIdentifier,
    ) -> Option<(bool, T)> {
        let ext = self
            .inner
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == oid)?;
        T::from_der(ext.extn_value.as_bytes())
            .ok()
            .map(|v| (ext.critical, v))
    }

    /// The checks the notary client applies to a root key's certificate before trusting it:
    /// CN equals the GUN (or is a `prefix*` wildcard matching it), a sane validity window, no
    /// SHA-1, RSA ≥ 2048 bits, not a CA, and, when `now` is given, valid at `now` (notBefore
    /// may be up to a day ahead for clock skew).
    pub fn check_root_leaf(&self, gun: &str, now: Option<SystemTime>) -> Result<(), String> {
        let cn = self.common_name().unwrap_or_default();
        let cn_ok = match cn.strip_suffix('*') {
            Some(prefix) => gun.starts_with(prefix.trim_end_matches('*')),
            None => cn == gun,
        };
        if !cn_ok {
            return Err(format!("certificate CN {cn:?} does not match GUN {gun:?}"));
        }
        if self.not_before() > self.not_after() {
            return Err("certificate validity window is invalid".into());
        }
        if self.uses_sha1() {
            return Err("certificate is signed with SHA-1".into());
        }
        if self.is_ca() {
            return Err("certificate is a CA, not a leaf".into());
        }
        self.public_key().map_err(|e| e.to_string())?;
        if let Some(now) = now {
            let skewed = now.checked_add(NOT_BEFORE_LEEWAY).unwrap_or(now);
            if self.not_before() > skewed || now > self.not_after() {
                return Err(format!(
                    "certificate for {cn:?} is expired or not yet valid"
                ));
            }
        }
        Ok(())
    }

    /// Verifies the certificate's signature with its own key (ECDSA-SHA256 or RSA-SHA256).
    pub fn verify_self_signed(&self) -> Result<()> {
        self.verify_signed_by(self)
            .map_err(|e| Error::cert(format!("self-signature: {e}")))
    }

    /// Whether `issuer` issued this certificate: its subject is this one's issuer and its key
    /// verifies this one's signature (ECDSA P-256 with SHA-256, P-384 with SHA-384, or RSA
    /// PKCS#1 v1.5 with SHA-256).
    pub fn verify_signed_by(&self, issuer: &Certificate) -> Result<()> {
        if issuer.inner.tbs_certificate.subject != self.inner.tbs_certificate.issuer {
            return Err(Error::cert("issuer name does not match"));
        }
        let tbs = self
            .inner
            .tbs_certificate
            .to_der()
            .map_err(|e| Error::cert(format!("cannot encode: {e}")))?;
        let sig = self
            .inner
            .signature
            .as_bytes()
            .ok_or_else(|| Error::cert("signature is not whole bytes"))?;
        let oid = self.inner.signature_algorithm.oid;
        let ok = if oid == OID_ECDSA_SHA384 {
            use p384::ecdsa::signature::Verifier as _;
            let key = issuer.p384_key()?;
            let sig = p384::ecdsa::Signature::from_der(sig)
                .map_err(|e| Error::cert(format!("malformed ECDSA signature: {e}")))?;
            key.verify(&tbs, &sig).is_ok()
        } else {
            match issuer.public_key()? {
                key @ PublicKey::EcdsaP256(_) if oid == OID_ECDSA_SHA256 => {
                    key.verify(&tbs, sig).is_ok()
                }
                PublicKey::Rsa(k) if oid == OID_RSA_SHA256 => k
                    .verify(
                        rsa::Pkcs1v15Sign::new::<Sha256>(),
                        &Sha256::digest(&tbs),
                        sig,
                    )
                    .is_ok(),
                key => {
                    return Err(Error::cert(format!(
                        "unsupported signature algorithm {oid} for a {} key",
                        key.algorithm()
                    )));
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::cert("signature does not verify"))
        }
    }

    /// The certified key as P-384, for CAs that sign with ECDSA-SHA384.
    fn p384_key(&self) -> Result<p384::ecdsa::VerifyingKey> {
        let spki = &self.inner.tbs_certificate.subject_public_key_info;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_SECP384R1) {
            return Err(Error::cert(
                "ECDSA-SHA384 signature from a key that is not P-384",
            ));
        }
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::cert("public key is not whole bytes"))?;
        p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|e| Error::cert(format!("P-384 key: {e}")))
    }

    /// Whether an ExtendedKeyUsage extension, if any, allows server authentication. The notary
    /// client checks pinned-CA chains with Go's x509 verification and no usage given, which
    /// means server authentication: a root certificate whose EKU lists only codeSigning (as
    /// `notary init` makes them) does not chain for it.
    fn allows_server_auth(&self) -> bool {
        match self.extension::<ExtendedKeyUsage>(OID_EXT_KEY_USAGE) {
            Some((_, eku)) => eku
                .0
                .iter()
                .any(|oid| *oid == OID_SERVER_AUTH || *oid == OID_ANY_EKU),
            None => true,
        }
    }

    /// Whether this certificate chains to one of `anchors` (a pinned CA bundle), through
    /// `intermediates` (the certificates after it in a root key's PEM), with every certificate
    /// on the way valid at `now`, every one but this a CA, and every one below the anchor
    /// allowing server authentication (see `allows_server_auth`). The answer says why not.
    pub fn chains_to(
        &self,
        intermediates: &[Certificate],
        anchors: &[Certificate],
        now: SystemTime,
    ) -> std::result::Result<(), String> {
        let valid_now = |c: &Certificate| c.not_before() <= now && now <= c.not_after();
        if !self.allows_server_auth() {
            return Err(format!(
                "certificate for {:?} has an extended key usage without serverAuth, which a \
                 pinned CA chain needs (as for the notary client)",
                self.common_name().unwrap_or_default()
            ));
        }
        let mut current = self;
        for _ in 0..MAX_CHAIN {
            if anchors
                .iter()
                .any(|ca| valid_now(ca) && current.verify_signed_by(ca).is_ok())
            {
                return Ok(());
            }
            match intermediates.iter().find(|i| {
                !std::ptr::eq(*i, current)
                    && i.is_ca()
                    && i.allows_server_auth()
                    && valid_now(i)
                    && current.verify_signed_by(i).is_ok()
            }) {
                Some(next) => current = next,
                None => break,
            }
        }
        Err(format!(
            "certificate for {:?} is not issued by the pinned CA (directly or through the \
             certificates that follow it), or a certificate on the way is not valid now",
            self.common_name().unwrap_or_default()
        ))
    }
}

/// Builds the root key certificate `notary init` makes: self-signed, `CN=<gun>`, valid from
/// `not_before` for `lifetime` (use [`ROOT_CERT_LIFETIME`]), KeyUsage critical
/// digitalSignature+keyEncipherment, EKU codeSigning, BasicConstraints critical CA:FALSE,
/// ecdsa-with-SHA256. The signer must hold a P-256 key; it signs the DER TBSCertificate.
pub async fn build_root_certificate(
    gun: &str,
    signer: &dyn Signer,
    not_before: SystemTime,
    lifetime: Duration,
) -> Result<Certificate> {
    let (public, spki) = p256_key_of(signer, "root certificates")?;
    let spki_der = public.to_spki_der();
    let start = whole_seconds(not_before)?;
    let end = start
        .checked_add(lifetime)
        .ok_or_else(|| Error::cert("validity end out of range"))?;
    let name = common_name(gun)?;
    let algorithm = AlgorithmIdentifierOwned {
        oid: OID_ECDSA_SHA256,
        parameters: None,
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: serial_number(&spki_der, gun, start)?,
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: asn1_time(start)?,
            not_after: asn1_time(end)?,
        },
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            extension(
                OID_KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment),
            )?,
            extension(
                OID_EXT_KEY_USAGE,
                false,
                &ExtendedKeyUsage(vec![OID_CODE_SIGNING]),
            )?,
            extension(
                OID_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )?,
        ]),
    };
    let tbs_der = tbs
        .to_der()
        .map_err(|e| Error::cert(format!("cannot encode TBSCertificate: {e}")))?;
    let der_sig = sign_der(signer, "root certificate", &tbs_der).await?;
    let signature =
        BitString::from_bytes(&der_sig).map_err(|e| Error::cert(format!("signature: {e}")))?;
    let cert = Certificate {
        inner: x509_cert::Certificate {
            tbs_certificate: tbs,
            signature_algorithm: algorithm,
            signature,
        },
    };
    cert.verify_self_signed().map_err(|e| Error::Sign {
        role: "root certificate".into(),
        key_id: signer.key_id(),
        source: Box::new(e),
    })?;
    Ok(cert)
}

fn whole_seconds(t: SystemTime) -> Result<SystemTime> {
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Error::cert("time before 1970"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs()))
}

/// UTCTime through 2049, GeneralizedTime from 2050, as RFC 5280 (and Go) require.
fn asn1_time(t: SystemTime) -> Result<Time> {
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Error::cert("time before 1970"))?;
    let dt = DateTime::from_unix_duration(since)
        .map_err(|e| Error::cert(format!("time out of range: {e}")))?;
    if dt.year() < 2050 {
        UtcTime::from_date_time(dt)
            .map(Time::UtcTime)
            .map_err(|e| Error::cert(format!("time out of range: {e}")))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

/// A PKCS#10 certificate request (PEM) for `signer`'s P-256 key with subject CN =
/// `common_name`, signed (ECDSA-SHA256) by `signer`: what a CA wants before it issues the root
/// key certificate `sigil init --rootcert` takes, while the key itself stays on its token. The
/// signature is checked before the request is returned.
pub async fn build_certificate_request(common_name: &str, signer: &dyn Signer) -> Result<String> {
    use x509_cert::request::{CertReq, CertReqInfo, Version as ReqVersion};
    let (public, spki) = p256_key_of(signer, "certificate requests")?;
    let info = CertReqInfo {
        version: ReqVersion::V1,
        subject: self::common_name(common_name)?,
        public_key: spki,
        attributes: SetOfVec::new(),
    };
    let info_der = info
        .to_der()
        .map_err(|e| Error::cert(format!("cannot encode the request: {e}")))?;
    let der_sig = sign_der(signer, "certificate request", &info_der).await?;
    public
        .verify(&info_der, &der_sig)
        .map_err(|e| Error::Sign {
            role: "certificate request".into(),
            key_id: signer.key_id(),
            source: Box::new(e),
        })?;
    let request = CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_ECDSA_SHA256,
            parameters: None,
        },
        signature: BitString::from_bytes(&der_sig)
            .map_err(|e| Error::cert(format!("signature: {e}")))?,
    };
    request
        .to_pem(x509_cert::der::pem::LineEnding::LF)
        .map_err(|e| Error::cert(format!("cannot encode the request: {e}")))
}

/// `signer`'s key, which must be P-256 (`what` needs it), and its SubjectPublicKeyInfo.
fn p256_key_of<'a>(
    signer: &'a dyn Signer,
    what: &str,
) -> Result<(&'a PublicKey, SubjectPublicKeyInfoOwned)> {
    let public = signer.public_key();
    if !matches!(public, PublicKey::EcdsaP256(_)) {
        return Err(Error::cert(format!(
            "{what} need a P-256 key, not {}",
            public.algorithm()
        )));
    }
    let spki = SubjectPublicKeyInfoOwned::from_der(&public.to_spki_der())
        .map_err(|e| Error::cert(format!("public key: {e}")))?;
    Ok((public, spki))
}

/// `signer`'s ECDSA signature over `der`, DER-encoded as X.509 wants it; `what` names the
/// document in errors.
async fn sign_der(signer: &dyn Signer, what: &str, der: &[u8]) -> Result<Vec<u8>> {
    let failed = |source| Error::Sign {
        role: what.into(),
        key_id: signer.key_id(),
        source,
    };
    let raw = signer.sign(der).await.map_err(failed)?;
    p256_raw_to_der(&raw).map_err(|e| failed(Box::new(e)))
}

/// `CN=<gun>`, as a PrintableString when the GUN allows it (as Go writes it), else UTF8String.
fn common_name(gun: &str) -> Result<Name> {
    let value = match PrintableStringRef::new(gun) {
        Ok(s) => Any::encode_from(&s),
        Err(_) => Utf8StringRef::new(gun).and_then(|s| Any::encode_from(&s)),
    }
    .map_err(|e| Error::cert(format!("common name {gun:?}: {e}")))?;
    let atv = x509_cert::attr::AttributeTypeAndValue { oid: OID_CN, value };
    let rdn = SetOfVec::try_from(vec![atv])
        .map_err(|e| Error::cert(format!("common name {gun:?}: {e}")))?;
    Ok(RdnSequence(vec![RelativeDistinguishedName(rdn)]))
}

fn extension<T: x509_cert::der::Encode>(
    oid: ObjectIdentifier,
    critical: bool,
    value: &T,
) -> Result<Extension> {
    let der = value
        .to_der()
        .map_err(|e| Error::cert(format!("extension {oid}: {e}")))?;
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(der)
            .map_err(|e| Error::cert(format!("extension {oid}: {e}")))?,
    })
}

/// A positive 128-bit serial derived from the key, the GUN and the start time: unique per
/// certificate without needing a random source in this crate.
fn serial_number(spki_der: &[u8], gun: &str, start: SystemTime) -> Result<SerialNumber> {
    let secs = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(spki_der);
    h.update(gun.as_bytes());
    h.update(secs.to_be_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(|e| Error::cert(format!("serial number: {e}")))
}
