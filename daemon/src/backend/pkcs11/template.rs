//! Generating keys with sigil's template: sensitive, never extractable, sign-only.

use std::sync::Arc;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

use super::super::{Algorithm, BackendKey, Error, KeyLocator, KeyMeta, KeyOwner};
use super::decode::read_public;
use super::{
    ED25519_NAME, ED25519_OID, LABEL_PREFIX, NOTARY_LABEL_PREFIX, P256_PARAMS, RSA_BITS, Token,
    classify,
};

pub(super) fn generate(
    session: &Session,
    token: &Token,
    algorithm: Algorithm,
    meta: &KeyMeta,
    name: &str,
) -> Result<BackendKey, Error> {
    let mut id = [0u8; 16];
    session
        .generate_random_slice(&mut id)
        .map_err(|e| classify(name, e))?;
    let prefix = match meta.owner {
        KeyOwner::Sigil => LABEL_PREFIX,
        KeyOwner::NotarySigner => NOTARY_LABEL_PREFIX,
    };
    let label = format!("{prefix}{}:{}", meta.role, meta.gun).into_bytes();
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Label(label.clone()),
        Attribute::Id(id.to_vec()),
    ];
    // Never extractable, never readable, usable for signing only.
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label),
        Attribute::Id(id.to_vec()),
    ];
    let mechanism = match algorithm {
        Algorithm::EcdsaP256 => {
            public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
            Mechanism::EccKeyPairGen
        }
        Algorithm::Ed25519 => {
            public.push(Attribute::EcParams(ED25519_OID.to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
        Algorithm::Rsa3072Pss => {
            public.push(Attribute::ModulusBits(RSA_BITS.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let mut generated = session.generate_key_pair(&mechanism, &public, &private);
    if algorithm == Algorithm::Ed25519
        && matches!(
            generated,
            Err(CkError::Pkcs11(
                RvError::DomainParamsInvalid
                    | RvError::CurveNotSupported
                    | RvError::AttributeValueInvalid,
                _
            ))
        )
    {
        // Some modules only know Ed25519 by its curve name.
        if let Some(last) = public.last_mut() {
            *last = Attribute::EcParams(ED25519_NAME.to_vec());
        }
        generated = session.generate_key_pair(&mechanism, &public, &private);
    }
    let (pub_handle, priv_handle) = match generated {
        Ok(pair) => pair,
        Err(CkError::Pkcs11(
            RvError::MechanismInvalid | RvError::CurveNotSupported | RvError::DomainParamsInvalid,
            _,
        )) => {
            return Err(Error::Unsupported {
                backend: name.to_owned(),
                what: format!("generating {algorithm} keys"),
            });
        }
        // ykcs11, for one: it wants CKA_ID to name a PIV slot and keys made after an SO login.
        Err(CkError::Pkcs11(
            RvError::AttributeValueInvalid
            | RvError::AttributeTypeInvalid
            | RvError::TemplateInconsistent
            | RvError::TemplateIncomplete,
            _,
        )) => {
            return Err(Error::Unsupported {
                backend: name.to_owned(),
                what: "generating keys with sigil's template (random CKA_ID, sigil label, \
                       sensitive, never extractable), which this token refuses: make the key \
                       with the token's own tool and name it in existing_keys"
                    .into(),
            });
        }
        Err(e) => return Err(classify(name, e)),
    };
    let checked = check_non_extractable(session, priv_handle, name)
        .and_then(|()| read_public(session, pub_handle, name));
    match checked {
        Ok(key) => {
            let id: Arc<[u8]> = id.into();
            token
                .handles
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(Arc::clone(&id), (priv_handle, pub_handle));
            Ok(BackendKey {
                public: key,
                meta: meta.clone(),
                locator: KeyLocator::Pkcs11 { id },
            })
        }
        Err(e) => {
            // Leave nothing half-made on the token.
            let _ = session.destroy_object(priv_handle);
            let _ = session.destroy_object(pub_handle);
            Err(e)
        }
    }
}

/// Refuses a token that did not honour the non-extractable template.
pub(super) fn check_non_extractable(
    session: &Session,
    key: ObjectHandle,
    name: &str,
) -> Result<(), Error> {
    let attrs = session
        .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable])
        .map_err(|e| classify(name, e))?;
    let sensitive = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Sensitive(true)));
    let extractable = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Extractable(true)));
    if sensitive && !extractable {
        Ok(())
    } else {
        Err(Error::BadToken {
            backend: name.to_owned(),
            what: "token did not keep the new key sensitive and non-extractable".to_owned(),
        })
    }
}
