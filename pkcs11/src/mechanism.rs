//! The mechanisms the module offers and how each maps onto one sigild Sign call. sigild has a
//! single scheme per key type (see proto/sigil/v1/keys.proto), so a mechanism either names
//! exactly that scheme or is refused.

use cryptoki_sys::{
    CK_FLAGS, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_RV, CK_ULONG, CKF_EC_F_P, CKF_EC_NAMEDCURVE,
    CKF_EC_UNCOMPRESS, CKF_GENERATE_KEY_PAIR, CKF_SIGN, CKG_MGF1_SHA256,
    CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKM_ECDSA_SHA256, CKM_EDDSA,
    CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS_PSS, CKM_SHA256, CKM_SHA256_RSA_PKCS_PSS,
    CKR_DATA_LEN_RANGE, CKR_KEY_TYPE_INCONSISTENT, CKR_MECHANISM_INVALID,
    CKR_MECHANISM_PARAM_INVALID,
};
use sigil_proto::sigil_v1::sign_request::Payload;

use crate::objects::KeyKind;

/// Every mechanism offered, in the order C_GetMechanismList reports them.
pub const MECHANISMS: [CK_MECHANISM_TYPE; 8] = [
    CKM_ECDSA,
    CKM_ECDSA_SHA256,
    CKM_EDDSA,
    CKM_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_EC_KEY_PAIR_GEN,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
];

/// What C_GetMechanismInfo reports for `mechanism`.
pub fn info(mechanism: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO, CK_RV> {
    let ec: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
    let (min, max, flags): (CK_ULONG, CK_ULONG, CK_FLAGS) = match mechanism {
        CKM_ECDSA | CKM_ECDSA_SHA256 => (256, 256, CKF_SIGN | ec),
        CKM_EC_KEY_PAIR_GEN => (256, 256, CKF_GENERATE_KEY_PAIR | ec),
        CKM_EDDSA => (255, 255, CKF_SIGN),
        CKM_EC_EDWARDS_KEY_PAIR_GEN => (255, 255, CKF_GENERATE_KEY_PAIR),
        CKM_RSA_PKCS_PSS | CKM_SHA256_RSA_PKCS_PSS => (3072, 3072, CKF_SIGN),
        CKM_RSA_PKCS_KEY_PAIR_GEN => (3072, 3072, CKF_GENERATE_KEY_PAIR),
        _ => return Err(CKR_MECHANISM_INVALID),
    };
    Ok(CK_MECHANISM_INFO {
        ulMinKeySize: min,
        ulMaxKeySize: max,
        flags,
    })
}

/// A signing mechanism accepted for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// CKM_ECDSA: the caller hashed; the data is a 32-byte SHA-256 digest.
    EcdsaDigest,
    /// CKM_ECDSA_SHA256: sigild hashes the message.
    EcdsaMessage,
    /// CKM_EDDSA: pure Ed25519 over the message.
    EdDsa,
    /// CKM_RSA_PKCS_PSS: the caller hashed; the data is a 32-byte SHA-256 digest.
    PssDigest,
    /// CKM_SHA256_RSA_PKCS_PSS: sigild hashes the message.
    PssMessage,
}

/// The one PSS parameter set sigild signs with: SHA-256, MGF1-SHA-256, 32-byte salt, as the
/// C struct CK_RSA_PKCS_PSS_PARAMS lays it out (three CK_ULONGs).
fn pss_params_ok(param: &[u8]) -> bool {
    let expected: Vec<u8> = [CKM_SHA256, CKG_MGF1_SHA256, 32]
        .iter()
        .flat_map(|v: &CK_ULONG| v.to_ne_bytes())
        .collect();
    param == expected.as_slice()
}

/// CK_EDDSA_PARAMS (phFlag, then the context length at the next CK_ULONG): only pure
/// Ed25519 without a context is what sigild does.
fn eddsa_params_ok(param: &[u8]) -> bool {
    let word = std::mem::size_of::<CK_ULONG>();
    if param.is_empty() {
        return true;
    }
    param.len() >= 2 * word && param[0] == 0 && param[word..2 * word].iter().all(|b| *b == 0)
}

impl Scheme {
    /// The scheme for `mechanism` with its raw parameter bytes on a key of `kind`.
    pub fn for_key(
        mechanism: CK_MECHANISM_TYPE,
        param: &[u8],
        kind: KeyKind,
    ) -> Result<Self, CK_RV> {
        let (scheme, key_kind) = match mechanism {
            CKM_ECDSA => (Self::EcdsaDigest, KeyKind::P256),
            CKM_ECDSA_SHA256 => (Self::EcdsaMessage, KeyKind::P256),
            CKM_EDDSA => (Self::EdDsa, KeyKind::Ed25519),
            CKM_RSA_PKCS_PSS => (Self::PssDigest, KeyKind::Rsa3072),
            CKM_SHA256_RSA_PKCS_PSS => (Self::PssMessage, KeyKind::Rsa3072),
            _ => return Err(CKR_MECHANISM_INVALID),
        };
        let param_ok = match scheme {
            Self::EcdsaDigest | Self::EcdsaMessage => param.is_empty(),
            Self::EdDsa => eddsa_params_ok(param),
            Self::PssDigest | Self::PssMessage => pss_params_ok(param),
        };
        if !param_ok {
            return Err(CKR_MECHANISM_PARAM_INVALID);
        }
        if kind != key_kind {
            return Err(CKR_KEY_TYPE_INCONSISTENT);
        }
        Ok(scheme)
    }

    /// Checks the data before anything is signed or a length is reported.
    pub fn check(self, data: &[u8]) -> Result<(), CK_RV> {
        match self {
            Self::EcdsaDigest | Self::PssDigest if data.len() != 32 => Err(CKR_DATA_LEN_RANGE),
            _ => Ok(()),
        }
    }

    /// What sigild is asked to sign.
    pub fn payload(self, data: Vec<u8>) -> Payload {
        match self {
            Self::EcdsaDigest | Self::PssDigest => Payload::Sha256Digest(data),
            Self::EcdsaMessage | Self::EdDsa | Self::PssMessage => Payload::Message(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pss(hash: CK_ULONG, mgf: CK_ULONG, salt: CK_ULONG) -> Vec<u8> {
        [hash, mgf, salt]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    #[test]
    fn pss_needs_sigilds_exact_parameters() {
        let good = pss(CKM_SHA256, CKG_MGF1_SHA256, 32);
        assert_eq!(
            Scheme::for_key(CKM_RSA_PKCS_PSS, &good, KeyKind::Rsa3072),
            Ok(Scheme::PssDigest)
        );
        for bad in [
            pss(CKM_SHA256, CKG_MGF1_SHA256, 20),
            pss(0x220, 1, 20),
            vec![],
        ] {
            assert_eq!(
                Scheme::for_key(CKM_SHA256_RSA_PKCS_PSS, &bad, KeyKind::Rsa3072),
                Err(CKR_MECHANISM_PARAM_INVALID)
            );
        }
    }

    #[test]
    fn a_mechanism_for_another_key_type_is_refused() {
        assert_eq!(
            Scheme::for_key(CKM_ECDSA, &[], KeyKind::Ed25519),
            Err(CKR_KEY_TYPE_INCONSISTENT)
        );
        assert_eq!(
            Scheme::for_key(0x1 /* CKM_RSA_PKCS */, &[], KeyKind::Rsa3072),
            Err(CKR_MECHANISM_INVALID)
        );
        assert_eq!(Scheme::EcdsaDigest.check(&[0; 31]), Err(CKR_DATA_LEN_RANGE));
        assert_eq!(Scheme::EcdsaMessage.check(&[0; 31]), Ok(()));
    }
}
