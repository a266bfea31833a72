//! Rebuilding the key ring from the token: sigil's labelled keys and adopted ones.

use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::Session;

use super::super::{BackendKey, Error, KeyLocator, KeyMeta, KeyOwner};
use super::decode::read_public;
use super::{Handles, LABEL_PREFIX, NOTARY_LABEL_PREFIX, Token, classify};
use crate::service::validate::{check_gun, check_role};

/// Every sigil key on the token; also records their handles for this incarnation.
/// Finds sigil's keys on the token (by label) and the adopted ones (by `CKA_ID`), and records
/// their handles for this incarnation of the token.
pub(super) fn scan(
    session: &Session,
    token: &Token,
    name: &str,
    existing: &[(Vec<u8>, KeyMeta)],
) -> Result<Vec<BackendKey>, Error> {
    let privates = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Token(true),
        ])
        .map_err(|e| classify(name, e))?;
    let mut keys = Vec::new();
    let mut found = Handles::new();
    for private in privates {
        let attrs = session
            .get_attributes(
                private,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysAuthenticate,
                    AttributeType::Local,
                ],
            )
            .map_err(|e| classify(name, e))?;
        let mut label = None;
        let mut id = None;
        // Absent attributes count against the key (deny by default).
        let (mut sensitive, mut extractable, mut always_auth, mut local) =
            (false, true, false, false);
        for a in attrs {
            match a {
                Attribute::Label(l) => label = Some(l),
                Attribute::Id(i) => id = Some(i),
                Attribute::Sensitive(b) => sensitive = b,
                Attribute::Extractable(b) => extractable = b,
                Attribute::AlwaysAuthenticate(b) => always_auth = b,
                Attribute::Local(b) => local = b,
                _ => {}
            }
        }
        let Some(id) = id else { continue };
        let meta = match label.as_deref().and_then(parse_label) {
            // A sigil label is only a name anyone with the user PIN can write: the key must
            // also be one sigil's template made, on this token.
            Some(_) if !sensitive || extractable || !local => {
                tracing::warn!(
                    backend = name,
                    id = %hex::encode(&id),
                    sensitive,
                    extractable,
                    local,
                    "key with a sigil label was not generated on the token as sensitive and never extractable; left out of the key ring"
                );
                continue;
            }
            Some(meta) => meta,
            None => {
                let Some((_, meta)) = existing.iter().find(|(e, _)| *e == id) else {
                    continue; // neither ours nor adopted
                };
                let hex_id = hex::encode(&id);
                if !sensitive || extractable {
                    tracing::warn!(backend = name, id = %hex_id, "existing key can leave the token (not sensitive, or extractable); not used");
                    continue;
                }
                if always_auth {
                    tracing::warn!(backend = name, id = %hex_id, "existing key wants the PIN for every signature (CKA_ALWAYS_AUTHENTICATE), which this backend does not give; not used (on a YubiKey: another slot than 9c, or type = \"yubikey\")");
                    continue;
                }
                meta.clone()
            }
        };
        let publics = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(id.clone()),
            ])
            .map_err(|e| classify(name, e))?;
        let Some(&public) = publics.first() else {
            tracing::warn!(backend = name, role = %meta.role, "sigil private key without its public half; skipped");
            continue;
        };
        let id: Arc<[u8]> = id.into();
        keys.push(BackendKey {
            public: read_public(session, public, name)?,
            meta,
            locator: KeyLocator::Pkcs11 {
                id: Arc::clone(&id),
            },
        });
        found.insert(id, (private, public));
    }
    for (id, meta) in existing {
        if !found.contains_key(id.as_slice()) {
            tracing::warn!(backend = name, id = %hex::encode(id), role = %meta.role, "existing key not on the token (or not usable)");
        }
    }
    *token.handles.write().unwrap_or_else(|p| p.into_inner()) = found;
    Ok(keys)
}

/// `sigil:<role>:<gun>` or `sigil-notary:<role>:<gun>`; roles never contain `:`, GUNs may
/// (registry ports). A label is written on a token others may reach, so its role and GUN pass
/// the checks a request's pass; one that does not is logged and names no key.
pub(crate) fn parse_label(label: &[u8]) -> Option<KeyMeta> {
    let label = std::str::from_utf8(label).ok()?;
    let (owner, rest) = if let Some(rest) = label.strip_prefix(LABEL_PREFIX) {
        (KeyOwner::Sigil, rest)
    } else {
        (
            KeyOwner::NotarySigner,
            label.strip_prefix(NOTARY_LABEL_PREFIX)?,
        )
    };
    let (role, gun) = rest.split_once(':')?;
    if let Err(e) = check_role(role).and_then(|()| check_gun(gun)) {
        tracing::warn!(label = ?label, error = %e, "key label names an invalid role or GUN; key left out");
        return None;
    }
    Some(KeyMeta {
        role: role.to_owned(),
        gun: gun.to_owned(),
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_role_gun_and_owner() {
        let meta = parse_label(b"sigil:targets/releases:localhost:5000/app").expect("sigil");
        assert_eq!(meta.role, "targets/releases");
        assert_eq!(meta.gun, "localhost:5000/app");
        assert_eq!(meta.owner, KeyOwner::Sigil);
        let meta = parse_label(b"sigil-notary:timestamp:example.com/app").expect("notary");
        assert_eq!(meta.owner, KeyOwner::NotarySigner);
        assert_eq!(meta.role, "timestamp");
        assert!(parse_label(b"p256-sign").is_none());
        assert!(parse_label(b"sigil:rootonly").is_none());
        // Names a request could not use are no label either.
        assert!(parse_label(b"sigil:targets//x:example.com/app").is_none());
        assert!(parse_label(b"sigil:targets:example.com/a\nb").is_none());
    }
}
