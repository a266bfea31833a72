//! Just enough DER and X.509 to mint YubiKey-style attestation certificates
//! with P-256 keys: a test attestation root CA, the card's F9 attestation
//! certificate (issued by the root), and per-slot attestation certificates
//! (issued by F9), carrying Yubico's extensions under 1.3.6.1.4.1.41482.3.

use p256::ecdsa::{signature::Signer, DerSignature, SigningKey};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(body);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut groups = vec![(a & 0x7f) as u8];
        let mut v = a >> 7;
        while v > 0 {
            groups.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        groups.reverse();
        body.extend_from_slice(&groups);
    }
    tlv(0x06, &body)
}

/// DER INTEGER from unsigned big-endian bytes.
pub fn uint(be: &[u8]) -> Vec<u8> {
    let mut b: Vec<u8> = be.iter().copied().skip_while(|&x| x == 0).collect();
    if b.is_empty() || b[0] & 0x80 != 0 {
        b.insert(0, 0);
    }
    tlv(0x02, &b)
}

/// Name with a single CN (UTF8String).
pub fn name_cn(cn: &str) -> Vec<u8> {
    let atv = seq(&[&oid(&[2, 5, 4, 3]), &tlv(0x0c, cn.as_bytes())]);
    seq(&[&tlv(0x31, &atv)])
}

fn gen_time(unix: u64) -> Vec<u8> {
    // GeneralizedTime YYYYMMDDHHMMSSZ (civil-from-days, proleptic Gregorian).
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let s = format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    tlv(0x18, s.as_bytes())
}

fn ecdsa_with_sha256() -> Vec<u8> {
    seq(&[&oid(&[1, 2, 840, 10045, 4, 3, 2])])
}

/// SubjectPublicKeyInfo for an uncompressed P-256 point (65 bytes, 04..).
pub fn spki_p256(point: &[u8]) -> Vec<u8> {
    let alg = seq(&[
        &oid(&[1, 2, 840, 10045, 2, 1]),
        &oid(&[1, 2, 840, 10045, 3, 1, 7]),
    ]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    seq(&[&alg, &tlv(0x03, &bits)])
}

/// SubjectPublicKeyInfo for a P-384 point (97 bytes, 04..).
pub fn spki_p384(point: &[u8]) -> Vec<u8> {
    let alg = seq(&[&oid(&[1, 2, 840, 10045, 2, 1]), &oid(&[1, 3, 132, 0, 34])]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    seq(&[&alg, &tlv(0x03, &bits)])
}

fn ext(arcs: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    if critical {
        seq(&[&oid(arcs), &[0x01, 0x01, 0xff], &tlv(0x04, value)])
    } else {
        seq(&[&oid(arcs), &tlv(0x04, value)])
    }
}

pub struct CertSpec<'a> {
    pub serial: &'a [u8],
    pub issuer: &'a [u8],
    pub subject: &'a [u8],
    pub not_before: u64,
    pub not_after: u64,
    pub spki: &'a [u8],
    /// CA certificate (basicConstraints cA=TRUE, keyUsage keyCertSign)?
    pub ca: bool,
    /// Extra extensions, already DER-encoded `Extension`s.
    pub extra_exts: Vec<Vec<u8>>,
}

/// Builds and signs a certificate with `issuer_key` (ecdsa-with-SHA256).
pub fn build_cert(spec: &CertSpec<'_>, issuer_key: &SigningKey) -> Vec<u8> {
    let mut exts: Vec<Vec<u8>> = Vec::new();
    if spec.ca {
        exts.push(ext(&[2, 5, 29, 19], true, &seq(&[&[0x01, 0x01, 0xff]])));
        // keyUsage: keyCertSign | cRLSign  (bits 5 and 6)
        exts.push(ext(&[2, 5, 29, 15], true, &[0x03, 0x02, 0x01, 0x06]));
    }
    exts.extend(spec.extra_exts.iter().cloned());
    let exts_der = tlv(
        0xa3,
        &seq(&exts.iter().map(|e| e.as_slice()).collect::<Vec<_>>()),
    );
    let tbs = seq(&[
        &tlv(0xa0, &[0x02, 0x01, 0x02]), // v3
        &uint(spec.serial),
        &ecdsa_with_sha256(),
        spec.issuer,
        &seq(&[&gen_time(spec.not_before), &gen_time(spec.not_after)]),
        spec.subject,
        spec.spki,
        &exts_der,
    ]);
    let sig: DerSignature = issuer_key.sign(&tbs);
    let mut bits = vec![0u8];
    bits.extend_from_slice(sig.as_bytes());
    seq(&[&tbs, &ecdsa_with_sha256(), &tlv(0x03, &bits)])
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Yubico's attestation extensions (1.3.6.1.4.1.41482.3.x).
pub fn yubico_exts(
    version: [u8; 3],
    serial: u32,
    pin_policy: u8,
    touch_policy: u8,
) -> Vec<Vec<u8>> {
    const Y: [u64; 8] = [1, 3, 6, 1, 4, 1, 41482, 3];
    let arc = |n: u64| {
        let mut v = Y.to_vec();
        v.push(n);
        v
    };
    vec![
        ext(&arc(3), false, &version),
        ext(&arc(7), false, &uint(&serial.to_be_bytes())),
        ext(&arc(8), false, &[pin_policy, touch_policy]),
        // form factor: 0x01 = USB-A keychain
        ext(&arc(9), false, &[0x01]),
    ]
}

/// Reads one TLV at the start of `b`: (tag, header length, body length).
pub fn read_tlv(b: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *b.first()?;
    let l0 = *b.get(1)? as usize;
    let (hl, len) = match l0 {
        0..=0x7f => (2, l0),
        0x81 => (3, *b.get(2)? as usize),
        0x82 => (4, ((*b.get(2)? as usize) << 8) | *b.get(3)? as usize),
        _ => return None,
    };
    if b.len() < hl + len {
        return None;
    }
    Some((tag, hl, len))
}

/// The raw subject Name of a DER certificate.
pub fn cert_subject(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, hl, _) = read_tlv(cert)?; // Certificate
    let tbs = &cert[hl..];
    let (_, hl, _) = read_tlv(tbs)?; // TBSCertificate
    let mut rest = &tbs[hl..];
    // version [0], serial, signature, issuer, validity, subject
    let mut idx = 0;
    loop {
        let (tag, hl, len) = read_tlv(rest)?;
        if idx == 0 && tag != 0xa0 {
            idx = 1; // v1 certificate without explicit version
        }
        if idx == 5 {
            return Some(rest[..hl + len].to_vec());
        }
        rest = &rest[hl + len..];
        idx += 1;
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use p256::pkcs8::der::pem::{encode_string, LineEnding};
    encode_string(label, LineEnding::LF, der).unwrap_or_default()
}
