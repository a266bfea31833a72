//! The YubiKey face in front of piv-authenticator.
//!
//! Everything a YubiKey 5 does that piv-authenticator 0.7.0 does not (or does
//! differently) is handled here, before or after the APDU reaches it:
//! transport (command chaining, 61xx / GET RESPONSE, Le-less SELECT), the
//! 5-byte PIV AID, GET VERSION / GET SERIAL, ATTEST (F9) and the F9
//! certificate object, GET METADATA (F7), touch policy, and IMPORT of P-256 keys (which
//! piv-authenticator refuses): an imported key lives here, in software, and signs here once
//! piv-authenticator confirms the PIN was verified.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use heapless::Vec as HVec;
use p256::ecdsa::SigningKey;
use piv_authenticator::Authenticator;

use crate::control::{Control, Touch};
use crate::vpcd;
use crate::x509;

/// ATR of a YubiKey 5 (USB, CCID).
pub const YK5_ATR: [u8; 23] = [
    0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
];
pub const VERSION: [u8; 3] = [5, 4, 3];
const PIV_FULL_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

const SW_OK: [u8; 2] = [0x90, 0x00];
const SW_WRONG_LENGTH: [u8; 2] = [0x67, 0x00];
const SW_SECURITY: [u8; 2] = [0x69, 0x82];
const SW_CONDITIONS: [u8; 2] = [0x69, 0x85];
const SW_WRONG_DATA: [u8; 2] = [0x6A, 0x80];
const SW_NOT_FOUND: [u8; 2] = [0x6A, 0x82];
const SW_WRONG_P1P2: [u8; 2] = [0x6B, 0x00];
const SW_REF_NOT_FOUND: [u8; 2] = [0x6A, 0x88];
const SW_INS_NOT_SUPPORTED: [u8; 2] = [0x6D, 0x00];
const SW_FUNCTION_NOT_SUPPORTED: [u8; 2] = [0x6A, 0x81];

// PIV algorithm ids
const ALG_P256: u8 = 0x11;
const ALG_P384: u8 = 0x14;

// Yubico policy encodings (GENERATE tags AA/AB, metadata, attestation)
const PIN_NEVER: u8 = 1;
const PIN_ONCE: u8 = 2;
const PIN_ALWAYS: u8 = 3;
const TOUCH_NEVER: u8 = 1;
const TOUCH_ALWAYS: u8 = 2;
const TOUCH_CACHED: u8 = 3;

/// What we remember about a key slot (piv-authenticator keeps no policy).
#[derive(Clone, Debug)]
struct SlotInfo {
    alg: u8,
    pin_policy: u8,
    touch_policy: u8,
    /// 1 generated, 2 imported
    origin: u8,
    /// Uncompressed EC point (04 ..), when known.
    point: Option<Vec<u8>>,
}

/// The attestation hierarchy: test root CA → F9 attestation certificate.
pub struct Attestation {
    pub f9_key: SigningKey,
    pub f9_cert: Vec<u8>,
}

pub struct YkCard<T: piv_authenticator::Client> {
    piv: Authenticator<T>,
    serial: u32,
    attest: Attestation,
    control: Arc<Control>,
    touch_timeout: Duration,
    slots: HashMap<u8, SlotInfo>,
    /// P-256 keys imported with the management key (piv-authenticator imports only RSA).
    imported: HashMap<u8, SigningKey>,
    /// Data of a command chain (CLA bit 0x10) in progress.
    chain: Vec<u8>,
    /// Response bytes still to be fetched with GET RESPONSE.
    pending: Vec<u8>,
    mgm_default: bool,
}

/// A parsed command APDU (short or extended).
struct Apdu<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    extended: bool,
}

fn parse(apdu: &[u8]) -> Option<Apdu<'_>> {
    if apdu.len() < 4 {
        return None;
    }
    let (cla, ins, p1, p2) = (apdu[0], apdu[1], apdu[2], apdu[3]);
    let body = &apdu[4..];
    // Le is accepted but not used: responses are sized like a YubiKey's.
    let mk = |data, _le: Option<usize>, extended| Apdu {
        cla,
        ins,
        p1,
        p2,
        data,
        extended,
    };
    match body.len() {
        0 => Some(mk(&[][..], None, false)),
        1 => Some(mk(
            &[][..],
            Some(if body[0] == 0 { 256 } else { body[0] as usize }),
            false,
        )),
        _ if body[0] != 0 => {
            let lc = body[0] as usize;
            let rest = &body[1..];
            match rest.len().checked_sub(lc)? {
                0 => Some(mk(&rest[..lc], None, false)),
                1 => {
                    let le = rest[lc] as usize;
                    Some(mk(&rest[..lc], Some(if le == 0 { 256 } else { le }), false))
                }
                _ => None,
            }
        }
        3 => {
            let le = u16::from_be_bytes([body[1], body[2]]) as usize;
            Some(mk(&[][..], Some(if le == 0 { 65536 } else { le }), true))
        }
        _ => {
            let lc = u16::from_be_bytes([body[1], body[2]]) as usize;
            let rest = &body[3..];
            match rest.len().checked_sub(lc)? {
                0 => Some(mk(&rest[..lc], None, true)),
                2 => {
                    let le = u16::from_be_bytes([rest[lc], rest[lc + 1]]) as usize;
                    Some(mk(
                        &rest[..lc],
                        Some(if le == 0 { 65536 } else { le }),
                        true,
                    ))
                }
                _ => None,
            }
        }
    }
}

/// Encodes a command for piv-authenticator, extended-length if needed.
fn encode(ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00, ins, p1, p2];
    if data.is_empty() {
        out.push(0x00);
    } else if data.len() <= 255 {
        out.push(data.len() as u8);
        out.extend_from_slice(data);
        out.push(0x00);
    } else {
        out.push(0x00);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&[0x00, 0x00]);
    }
    out
}

/// Finds a tag inside a flat TLV list (single-byte tags).
fn find_tag(mut b: &[u8], tag: u8) -> Option<&[u8]> {
    while let Some((t, hl, len)) = x509::read_tlv(b) {
        if t == tag {
            return Some(&b[hl..hl + len]);
        }
        b = &b[hl + len..];
    }
    None
}

fn is_key_slot(slot: u8) -> bool {
    matches!(slot, 0x9a | 0x9c | 0x9d | 0x9e | 0x82..=0x95)
}

fn default_pin_policy(slot: u8) -> u8 {
    match slot {
        0x9c => PIN_ALWAYS,
        0x9e => PIN_NEVER,
        _ => PIN_ONCE,
    }
}

impl<T: piv_authenticator::Client> YkCard<T> {
    pub fn new(
        piv: Authenticator<T>,
        serial: u32,
        attest: Attestation,
        control: Arc<Control>,
        touch_timeout: Duration,
    ) -> Self {
        Self {
            piv,
            serial,
            attest,
            control,
            touch_timeout,
            slots: HashMap::new(),
            imported: HashMap::new(),
            chain: Vec::new(),
            pending: Vec::new(),
            mgm_default: true,
        }
    }

    /// Runs one command through piv-authenticator: (data, SW).
    fn piv(&mut self, ins: u8, p1: u8, p2: u8, data: &[u8]) -> (Vec<u8>, [u8; 2]) {
        let raw = encode(ins, p1, p2, data);
        let Ok(view) = iso7816::command::CommandView::try_from(raw.as_slice()) else {
            return (Vec::new(), SW_WRONG_LENGTH);
        };
        let mut reply: HVec<u8, 8192> = HVec::new();
        match self.piv.respond(view, reply.as_mut_view()) {
            Ok(()) => (reply.to_vec(), SW_OK),
            Err(status) => (Vec::new(), <[u8; 2]>::from(status)),
        }
    }

    /// A complete (de-chained) command: YubiKey behaviour, then PIV.
    fn command(&mut self, ins: u8, p1: u8, p2: u8, data: &[u8]) -> (Vec<u8>, [u8; 2]) {
        match ins {
            // SELECT: libykpiv and the yubikey crate send the 5-byte RID.
            0xA4 if p1 == 0x04 => {
                if !data.is_empty() && PIV_FULL_AID.starts_with(data) {
                    self.piv(0xA4, 0x04, 0x00, &PIV_FULL_AID)
                } else if data.len() >= 5 && data.starts_with(&PIV_FULL_AID[..9.min(data.len())]) {
                    self.piv(0xA4, 0x04, 0x00, data)
                } else {
                    (Vec::new(), SW_NOT_FOUND)
                }
            }
            // GET VERSION
            0xFD => (VERSION.to_vec(), SW_OK),
            // GET SERIAL
            0xF8 => (self.serial.to_be_bytes().to_vec(), SW_OK),
            // ATTEST
            0xF9 => self.attest(p1),
            // GET METADATA
            0xF7 => self.metadata(p2),
            // GET DATA for the F9 certificate object 5FFF01
            0xCB if data == [0x5C, 0x03, 0x5F, 0xFF, 0x01] => {
                let body = [
                    x509::tlv(0x70, &self.attest.f9_cert),
                    vec![0x71, 0x01, 0x00, 0xFE, 0x00],
                ]
                .concat();
                (x509::tlv(0x53, &body), SW_OK)
            }
            // GENERATE ASYMMETRIC KEY PAIR: remember algorithm, policies, key.
            0x47 => {
                let (out, sw) = self.piv(ins, p1, p2, data);
                if sw == SW_OK {
                    self.imported.remove(&p2);
                    self.record_generate(p2, data, &out);
                }
                (out, sw)
            }
            // IMPORT (Yubico): remember algorithm and policies.
            0xFE => {
                let (out, sw) = self.piv(ins, p1, p2, data);
                // piv-authenticator checks the management key, then refuses every algorithm
                // but RSA: a P-256 key is imported here.
                if sw == SW_FUNCTION_NOT_SUPPORTED && p1 == ALG_P256 && is_key_slot(p2) {
                    return self.import_p256(p2, data);
                }
                if sw == SW_OK && is_key_slot(p2) {
                    let pin = find_tag(data, 0xAA).and_then(|v| v.first().copied());
                    let touch = find_tag(data, 0xAB).and_then(|v| v.first().copied());
                    self.slots.insert(
                        p2,
                        SlotInfo {
                            alg: p1,
                            pin_policy: pin.filter(|&p| p != 0).unwrap_or(default_pin_policy(p2)),
                            touch_policy: touch.filter(|&t| t != 0).unwrap_or(TOUCH_NEVER),
                            origin: 2,
                            point: None,
                        },
                    );
                }
                (out, sw)
            }
            // GENERAL AUTHENTICATE with a key slot: touch policy first.
            0x87 if is_key_slot(p2) => {
                if let Some(info) = self.slots.get(&p2) {
                    let needs = matches!(info.touch_policy, TOUCH_ALWAYS | TOUCH_CACHED);
                    if needs {
                        let cached = info.touch_policy == TOUCH_CACHED;
                        if let Touch::TimedOut =
                            self.control.wait_touch(p2, cached, self.touch_timeout)
                        {
                            eprintln!("vyubikey: touch timeout on slot {p2:02x}");
                            return (Vec::new(), SW_SECURITY);
                        }
                    }
                }
                if self.imported.contains_key(&p2) {
                    return self.sign_imported(p2, data);
                }
                self.piv(ins, p1, p2, data)
            }
            // SET MANAGEMENT KEY
            0xFF => {
                let r = self.piv(ins, p1, p2, data);
                if r.1 == SW_OK {
                    self.mgm_default = false;
                }
                r
            }
            // RESET
            0xFB => {
                let r = self.piv(ins, p1, p2, data);
                if r.1 == SW_OK {
                    self.slots.clear();
                    self.imported.clear();
                    self.mgm_default = true;
                }
                r
            }
            _ => self.piv(ins, p1, p2, data),
        }
    }

    /// IMPORT of a P-256 key (tag 06: the private scalar), after piv-authenticator has
    /// checked the management key.
    fn import_p256(&mut self, slot: u8, data: &[u8]) -> (Vec<u8>, [u8; 2]) {
        let Some(key) = find_tag(data, 0x06).and_then(|d| SigningKey::from_slice(d).ok()) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let pin = find_tag(data, 0xAA).and_then(|v| v.first().copied());
        let touch = find_tag(data, 0xAB).and_then(|v| v.first().copied());
        let point = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        self.slots.insert(
            slot,
            SlotInfo {
                alg: ALG_P256,
                pin_policy: pin.filter(|&p| p != 0).unwrap_or(default_pin_policy(slot)),
                touch_policy: touch.filter(|&t| t != 0).unwrap_or(TOUCH_NEVER),
                origin: 2,
                point: Some(point),
            },
        );
        self.imported.insert(slot, key);
        (Vec::new(), SW_OK)
    }

    /// GENERAL AUTHENTICATE (sign) with an imported key: `7C { 82 00, 81 digest }` →
    /// `7C { 82 DER-signature }`, only while piv-authenticator says the PIN is verified.
    fn sign_imported(&mut self, slot: u8, data: &[u8]) -> (Vec<u8>, [u8; 2]) {
        use p256::ecdsa::signature::hazmat::PrehashSigner as _;
        let (_, sw) = self.piv(0x20, 0x00, 0x80, &[]);
        if sw != SW_OK {
            return (Vec::new(), SW_SECURITY);
        }
        let Some(digest) = find_tag(data, 0x7C).and_then(|t| find_tag(t, 0x81)) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let Some(key) = self.imported.get(&slot) else {
            return (Vec::new(), SW_REF_NOT_FOUND);
        };
        let signature: p256::ecdsa::Signature = match key.sign_prehash(digest) {
            Ok(signature) => signature,
            Err(_) => return (Vec::new(), SW_WRONG_DATA),
        };
        let der = signature.to_der();
        let inner = x509::tlv(0x82, der.as_bytes());
        (x509::tlv(0x7C, &inner), SW_OK)
    }

    fn record_generate(&mut self, slot: u8, req: &[u8], reply: &[u8]) {
        let Some(tmpl) = find_tag(req, 0xAC) else {
            return;
        };
        let Some(&alg) = find_tag(tmpl, 0x80).and_then(|v| v.first()) else {
            return;
        };
        let pin = find_tag(tmpl, 0xAA).and_then(|v| v.first().copied());
        let touch = find_tag(tmpl, 0xAB).and_then(|v| v.first().copied());
        // reply: 7F49 L { 86 L 04.. }
        let point = if reply.len() > 2 && reply[0] == 0x7F && reply[1] == 0x49 {
            x509::read_tlv(&reply[1..])
                .and_then(|(_, hl, len)| find_tag(&reply[1 + hl..1 + hl + len], 0x86))
                .map(|p| p.to_vec())
        } else {
            None
        };
        self.slots.insert(
            slot,
            SlotInfo {
                alg,
                pin_policy: pin.filter(|&p| p != 0).unwrap_or(default_pin_policy(slot)),
                touch_policy: touch.filter(|&t| t != 0).unwrap_or(TOUCH_NEVER),
                origin: 1,
                point,
            },
        );
    }

    fn attest(&mut self, slot: u8) -> (Vec<u8>, [u8; 2]) {
        if !is_key_slot(slot) {
            return (Vec::new(), SW_WRONG_P1P2);
        }
        let Some(info) = self.slots.get(&slot) else {
            return (Vec::new(), SW_REF_NOT_FOUND);
        };
        // A YubiKey attests only keys it generated.
        if info.origin != 1 {
            return (Vec::new(), SW_CONDITIONS);
        }
        let Some(point) = &info.point else {
            return (Vec::new(), SW_CONDITIONS);
        };
        let spki = match info.alg {
            ALG_P256 => x509::spki_p256(point),
            ALG_P384 => x509::spki_p384(point),
            _ => return (Vec::new(), SW_CONDITIONS),
        };
        let issuer = x509::cert_subject(&self.attest.f9_cert).unwrap_or_default();
        let subject = x509::name_cn(&format!("YubiKey PIV Attestation {slot:02x}"));
        let mut serial = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
        serial[0] &= 0x7f;
        let now = x509::now();
        let cert = x509::build_cert(
            &x509::CertSpec {
                serial: &serial,
                issuer: &issuer,
                subject: &subject,
                not_before: now - 60,
                not_after: now + 3650 * 86400,
                spki: &spki,
                ca: false,
                extra_exts: x509::yubico_exts(
                    VERSION,
                    self.serial,
                    info.pin_policy,
                    info.touch_policy,
                ),
            },
            &self.attest.f9_key,
        );
        (cert, SW_OK)
    }

    fn metadata(&mut self, slot: u8) -> (Vec<u8>, [u8; 2]) {
        match slot {
            // management key: 3DES, touch never, default or not
            0x9b => {
                let mut out = x509::tlv(0x01, &[0x03]);
                out.extend(x509::tlv(0x02, &[0x00, TOUCH_NEVER]));
                out.extend(x509::tlv(0x05, &[self.mgm_default as u8]));
                (out, SW_OK)
            }
            s if is_key_slot(s) => {
                let Some(info) = self.slots.get(&s) else {
                    return (Vec::new(), SW_REF_NOT_FOUND);
                };
                let mut out = x509::tlv(0x01, &[info.alg]);
                out.extend(x509::tlv(0x02, &[info.pin_policy, info.touch_policy]));
                out.extend(x509::tlv(0x03, &[info.origin]));
                if let Some(p) = &info.point {
                    out.extend(x509::tlv(0x04, &x509::tlv(0x86, p)));
                }
                (out, SW_OK)
            }
            _ => (Vec::new(), SW_REF_NOT_FOUND),
        }
    }

    /// Splits a response into what fits (`le`, 256 for short APDUs) plus
    /// 61xx, keeping the rest for GET RESPONSE.
    fn respond(&mut self, mut data: Vec<u8>, sw: [u8; 2], le: usize) -> Vec<u8> {
        if data.len() > le {
            self.pending = data.split_off(le);
            let left = self.pending.len().min(255) as u8;
            data.extend_from_slice(&[0x61, left]);
            return data;
        }
        data.extend_from_slice(&sw);
        data
    }
}

impl<T: piv_authenticator::Client> vpcd::Card for YkCard<T> {
    fn atr(&self) -> Vec<u8> {
        YK5_ATR.to_vec()
    }

    fn power_on(&mut self) {}

    fn power_off(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        // Forget chains and pending data; a powered-off card also forgets
        // that the PIN was verified (VERIFY with P1=FF logs out).
        self.chain.clear();
        self.pending.clear();
        let _ = self.piv(0x20, 0xFF, 0x80, &[]);
    }

    fn transmit(&mut self, raw: &[u8]) -> Vec<u8> {
        let Some(apdu) = parse(raw) else {
            return SW_WRONG_LENGTH.to_vec();
        };
        let short_max = if apdu.extended { 65536 } else { 256 };
        // GET RESPONSE
        if apdu.ins == 0xC0 {
            let mut rest = std::mem::take(&mut self.pending);
            let n = short_max.min(rest.len());
            let tail = rest.split_off(n);
            self.pending = tail;
            if self.pending.is_empty() {
                rest.extend_from_slice(&SW_OK);
            } else {
                let left = self.pending.len().min(255) as u8;
                rest.extend_from_slice(&[0x61, left]);
            }
            return rest;
        }
        self.pending.clear();
        if apdu.cla & 0x10 != 0 {
            self.chain.extend_from_slice(apdu.data);
            if self.chain.len() > 8192 {
                self.chain.clear();
                return SW_WRONG_DATA.to_vec();
            }
            return SW_OK.to_vec();
        }
        if apdu.cla & !0x10 != 0 {
            // no secure messaging / logical channels
            self.chain.clear();
            return [0x6E, 0x00].to_vec();
        }
        let data: Vec<u8> = if self.chain.is_empty() {
            apdu.data.to_vec()
        } else {
            let mut d = std::mem::take(&mut self.chain);
            d.extend_from_slice(apdu.data);
            d
        };
        let (out, sw) = self.command(apdu.ins, apdu.p1, apdu.p2, &data);
        if out.is_empty() && sw == SW_INS_NOT_SUPPORTED {
            return sw.to_vec();
        }
        // Like a YubiKey, a command without Le (or with a short one) still
        // gets its data, up to 256 bytes, with 9000 rather than 61xx/6Cxx.
        self.respond(out, sw, short_max)
    }
}
