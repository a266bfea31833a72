//! The module's state between C_Initialize and C_Finalize: one sigild connection, the slots
//! (one per backend the caller can see), the objects (two per key) and the sessions with
//! their find and sign operations. Plain Rust: the C side lives in `ffi`.

use std::collections::HashMap;

use cryptoki_sys::{
    CK_ATTRIBUTE_TYPE, CK_FLAGS, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE,
    CK_SLOT_ID, CK_ULONG, CKA_EC_PARAMS, CKA_EXTRACTABLE, CKA_LABEL, CKA_MODULUS_BITS,
    CKA_PUBLIC_EXPONENT, CKA_SENSITIVE, CKA_TOKEN, CKF_RW_SESSION, CKF_SERIAL_SESSION,
    CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN, CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKR_ATTRIBUTE_VALUE_INVALID, CKR_FUNCTION_FAILED, CKR_KEY_FUNCTION_NOT_PERMITTED,
    CKR_KEY_HANDLE_INVALID, CKR_MECHANISM_INVALID, CKR_OBJECT_HANDLE_INVALID, CKR_OPERATION_ACTIVE,
    CKR_OPERATION_NOT_INITIALIZED, CKR_SESSION_HANDLE_INVALID, CKR_SESSION_PARALLEL_NOT_SUPPORTED,
    CKR_SLOT_ID_INVALID, CKR_TEMPLATE_INCOMPLETE, CKR_TEMPLATE_INCONSISTENT,
};
use sigil_proto::sigil_v1 as pb;

use crate::client::Client;
use crate::mechanism::Scheme;
use crate::objects::{ED25519_PARAMS, ED25519_PARAMS_NAME, Key, P256_PARAMS};

/// An attribute template as the caller passed it: types and raw values.
pub type Template = Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>;

/// A sign operation between C_SignInit and the call that ends it.
#[derive(Debug)]
struct SignOp {
    key: usize,
    scheme: Scheme,
    data: Vec<u8>,
    multipart: bool,
}

#[derive(Debug)]
struct Session {
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    find: Option<std::vec::IntoIter<CK_OBJECT_HANDLE>>,
    sign: Option<SignOp>,
}

/// Everything one C_Initialize set up.
#[derive(Debug)]
pub struct Module {
    client: Client,
    /// Backend names; a slot id is an index here. Append-only, so ids stay stable.
    slots: Vec<String>,
    /// sigild's keys; object handle `2i+1` is key i's private key, `2i+2` its public key.
    /// A key that disappears (deleted, policy reloaded) leaves `None`, so handles stay stable.
    keys: Vec<Option<Key>>,
    sessions: HashMap<CK_SESSION_HANDLE, Session>,
    next_session: CK_SESSION_HANDLE,
    /// Slots the application called C_Login on (login is accepted and ignored).
    logged_in: Vec<CK_SLOT_ID>,
}

fn private_handle(index: usize) -> CK_OBJECT_HANDLE {
    (index as CK_OBJECT_HANDLE) * 2 + 1
}

impl Module {
    /// A module over a fresh connection, with the caller's keys listed once.
    pub fn new(client: Client) -> Result<Self, CK_RV> {
        let mut module = Self {
            client,
            slots: Vec::new(),
            keys: Vec::new(),
            sessions: HashMap::new(),
            next_session: 1,
            logged_in: Vec::new(),
        };
        module.refresh()?;
        Ok(module)
    }

    /// Lists the caller's keys again: new keys and backends get new handles and slots, keys
    /// no longer listed lose theirs.
    pub fn refresh(&mut self) -> Result<(), CK_RV> {
        let listed: Vec<Key> = self
            .client
            .list_keys()?
            .iter()
            .filter_map(Key::from_wire)
            .collect();
        for slot in &mut self.keys {
            if slot
                .as_ref()
                .is_some_and(|k| !listed.iter().any(|l| l.key_id == k.key_id))
            {
                *slot = None;
            }
        }
        for key in listed {
            if !self.slots.contains(&key.backend) {
                self.slots.push(key.backend.clone());
            }
            if !self.keys.iter().flatten().any(|k| k.key_id == key.key_id) {
                self.keys.push(Some(key));
            }
        }
        Ok(())
    }

    /// Slot ids, one per backend.
    pub fn slot_ids(&self) -> Vec<CK_SLOT_ID> {
        (0..self.slots.len() as CK_SLOT_ID).collect()
    }

    /// The backend a slot stands for.
    pub fn backend(&self, slot: CK_SLOT_ID) -> Result<&str, CK_RV> {
        usize::try_from(slot)
            .ok()
            .and_then(|i| self.slots.get(i))
            .map(String::as_str)
            .ok_or(CKR_SLOT_ID_INVALID)
    }

    /// Sessions open on `slot`: (all, read-write).
    pub fn session_counts(&self, slot: CK_SLOT_ID) -> (usize, usize) {
        let on_slot = self.sessions.values().filter(|s| s.slot == slot);
        let rw = on_slot
            .clone()
            .filter(|s| s.flags & CKF_RW_SESSION != 0)
            .count();
        (on_slot.count(), rw)
    }

    /// C_OpenSession.
    pub fn open_session(
        &mut self,
        slot: CK_SLOT_ID,
        flags: CK_FLAGS,
    ) -> Result<CK_SESSION_HANDLE, CK_RV> {
        self.backend(slot)?;
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
        }
        let handle = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            handle,
            Session {
                slot,
                flags,
                find: None,
                sign: None,
            },
        );
        Ok(handle)
    }

    fn session(&mut self, handle: CK_SESSION_HANDLE) -> Result<&mut Session, CK_RV> {
        self.sessions
            .get_mut(&handle)
            .ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    /// C_CloseSession.
    pub fn close_session(&mut self, handle: CK_SESSION_HANDLE) -> Result<(), CK_RV> {
        let slot = self.session(handle)?.slot;
        self.sessions.remove(&handle);
        if self.session_counts(slot).0 == 0 {
            self.logged_in.retain(|s| *s != slot);
        }
        Ok(())
    }

    /// C_CloseAllSessions.
    pub fn close_all(&mut self, slot: CK_SLOT_ID) -> Result<(), CK_RV> {
        self.backend(slot)?;
        self.sessions.retain(|_, s| s.slot != slot);
        self.logged_in.retain(|s| *s != slot);
        Ok(())
    }

    /// The slot, flags and login state of a session.
    pub fn session_info(
        &mut self,
        handle: CK_SESSION_HANDLE,
    ) -> Result<(CK_SLOT_ID, CK_FLAGS, bool), CK_RV> {
        let session = self.session(handle)?;
        let (slot, flags) = (session.slot, session.flags);
        Ok((slot, flags, self.logged_in.contains(&slot)))
    }

    /// C_Login / C_Logout: recorded for C_GetSessionInfo, otherwise ignored (sigild holds
    /// the PIN and decides by the caller's uid).
    pub fn set_logged_in(&mut self, handle: CK_SESSION_HANDLE, on: bool) -> Result<(), CK_RV> {
        let slot = self.session(handle)?.slot;
        self.logged_in.retain(|s| *s != slot);
        if on {
            self.logged_in.push(slot);
        }
        Ok(())
    }

    /// The key behind an object handle visible in `session`, and whether it is the private one.
    fn object(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<(usize, &Key, bool), CK_RV> {
        let slot = self
            .sessions
            .get(&session)
            .ok_or(CKR_SESSION_HANDLE_INVALID)?
            .slot;
        let backend = self.backend(slot)?;
        let index = usize::try_from(object.checked_sub(1).ok_or(CKR_OBJECT_HANDLE_INVALID)? / 2)
            .map_err(|_| CKR_OBJECT_HANDLE_INVALID)?;
        match self.keys.get(index) {
            Some(Some(key)) if key.backend == backend => Ok((index, key, object % 2 == 1)),
            _ => Err(CKR_OBJECT_HANDLE_INVALID),
        }
    }

    /// The key and kind of object for C_GetAttributeValue.
    pub fn key_object(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<(&Key, bool), CK_RV> {
        self.object(session, object).map(|(_, k, p)| (k, p))
    }

    /// C_FindObjectsInit.
    pub fn find_init(
        &mut self,
        handle: CK_SESSION_HANDLE,
        template: &Template,
    ) -> Result<(), CK_RV> {
        if self.session(handle)?.find.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        self.refresh()?;
        let slot = self.session(handle)?.slot;
        let backend = self.backend(slot)?.to_owned();
        let mut found = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            let Some(key) = key.as_ref().filter(|k| k.backend == backend) else {
                continue;
            };
            for (private, h) in [(true, private_handle(i)), (false, private_handle(i) + 1)] {
                if key.matches(private, template) {
                    found.push(h);
                }
            }
        }
        self.session(handle)?.find = Some(found.into_iter());
        Ok(())
    }

    /// C_FindObjects: up to `max` more handles.
    pub fn find(
        &mut self,
        handle: CK_SESSION_HANDLE,
        max: usize,
    ) -> Result<Vec<CK_OBJECT_HANDLE>, CK_RV> {
        let find = self
            .session(handle)?
            .find
            .as_mut()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        Ok(find.take(max).collect())
    }

    /// C_FindObjectsFinal.
    pub fn find_final(&mut self, handle: CK_SESSION_HANDLE) -> Result<(), CK_RV> {
        self.session(handle)?
            .find
            .take()
            .map(|_| ())
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)
    }

    /// C_SignInit.
    pub fn sign_init(
        &mut self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        param: &[u8],
        object: CK_OBJECT_HANDLE,
    ) -> Result<(), CK_RV> {
        if self.session(handle)?.sign.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        let (index, key, private) = self.object(handle, object).map_err(|e| {
            if e == CKR_OBJECT_HANDLE_INVALID {
                CKR_KEY_HANDLE_INVALID
            } else {
                e
            }
        })?;
        if !private {
            return Err(CKR_KEY_FUNCTION_NOT_PERMITTED);
        }
        let scheme = Scheme::for_key(mechanism, param, key.kind)?;
        self.session(handle)?.sign = Some(SignOp {
            key: index,
            scheme,
            data: Vec::new(),
            multipart: false,
        });
        Ok(())
    }

    /// The length of the signature the active operation will make.
    pub fn signature_len(&mut self, handle: CK_SESSION_HANDLE) -> Result<usize, CK_RV> {
        let key = self
            .session(handle)?
            .sign
            .as_ref()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?
            .key;
        match self.keys.get(key) {
            Some(Some(k)) => Ok(k.kind.signature_len()),
            _ => Err(CKR_KEY_HANDLE_INVALID),
        }
    }

    /// Ends the sign operation (after an error, as PKCS#11 asks).
    pub fn end_sign(&mut self, handle: CK_SESSION_HANDLE) {
        if let Ok(s) = self.session(handle) {
            s.sign = None;
        }
    }

    /// C_SignUpdate: appends to the message.
    pub fn sign_update(&mut self, handle: CK_SESSION_HANDLE, part: &[u8]) -> Result<(), CK_RV> {
        let op = self
            .session(handle)?
            .sign
            .as_mut()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        op.multipart = true;
        op.data.extend_from_slice(part);
        Ok(())
    }

    /// Checks what would be signed: single-part data passed to C_Sign (`data` Some), or the
    /// parts collected so far (C_SignFinal, `data` None).
    pub fn check_sign(
        &mut self,
        handle: CK_SESSION_HANDLE,
        data: Option<&[u8]>,
    ) -> Result<(), CK_RV> {
        let op = self
            .session(handle)?
            .sign
            .as_ref()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        match data {
            Some(_) if op.multipart => Err(CKR_OPERATION_ACTIVE),
            Some(d) => op.scheme.check(d),
            None => op.scheme.check(&op.data),
        }
    }

    /// Makes the signature through sigild and ends the operation.
    pub fn sign(
        &mut self,
        handle: CK_SESSION_HANDLE,
        data: Option<&[u8]>,
    ) -> Result<Vec<u8>, CK_RV> {
        let op = self
            .session(handle)?
            .sign
            .take()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        let message = data.map_or(op.data, <[u8]>::to_vec);
        let key_id = match self.keys.get(op.key) {
            Some(Some(k)) => k.key_id.clone(),
            _ => return Err(CKR_KEY_HANDLE_INVALID),
        };
        let signature = self.client.sign(&key_id, op.scheme.payload(message))?;
        Ok(signature)
    }

    /// C_GenerateKeyPair: asks sigild for a key on this slot's backend; role and GUN come
    /// from CKA_LABEL (`role:gun`), the algorithm from the mechanism. Returns (public, private).
    pub fn generate(
        &mut self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        public: &Template,
        private: &Template,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
        let slot = self.session(handle)?.slot;
        let backend = self.backend(slot)?.to_owned();
        let algorithm = algorithm_for(mechanism, public)?;
        refuse_extractable(public)?;
        refuse_extractable(private)?;
        let label = private
            .iter()
            .chain(public)
            .find(|(t, _)| *t == CKA_LABEL)
            .map(|(_, v)| v)
            .ok_or(CKR_TEMPLATE_INCOMPLETE)?;
        let label = std::str::from_utf8(label).map_err(|_| CKR_ATTRIBUTE_VALUE_INVALID)?;
        let (role, gun) = label.split_once(':').unwrap_or((label, ""));
        if role.is_empty() {
            return Err(CKR_ATTRIBUTE_VALUE_INVALID);
        }
        let made = self.client.generate_key(&backend, role, gun, algorithm)?;
        self.refresh()?;
        let index = self
            .keys
            .iter()
            .position(|k| k.as_ref().is_some_and(|k| k.key_id == made.key_id))
            .ok_or(CKR_FUNCTION_FAILED)?;
        Ok((private_handle(index) + 1, private_handle(index)))
    }
}

fn attr(template: &Template, kind: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
    template
        .iter()
        .find(|(t, _)| *t == kind)
        .map(|(_, v)| v.as_slice())
}

/// sigild's keys are token objects, sensitive and never extractable; a template asking
/// otherwise cannot be honoured.
fn refuse_extractable(template: &Template) -> Result<(), CK_RV> {
    let is = |kind, value: u8| attr(template, kind).is_some_and(|v| v.first() == Some(&value));
    if is(CKA_TOKEN, 0) || is(CKA_SENSITIVE, 0) || is(CKA_EXTRACTABLE, 1) {
        return Err(CKR_TEMPLATE_INCONSISTENT);
    }
    Ok(())
}

/// The algorithm a key-pair mechanism and public template ask for; sigild offers one curve
/// or size per type, so anything else is refused.
fn algorithm_for(mechanism: CK_MECHANISM_TYPE, public: &Template) -> Result<pb::Algorithm, CK_RV> {
    match mechanism {
        CKM_EC_KEY_PAIR_GEN => match attr(public, CKA_EC_PARAMS) {
            None => Ok(pb::Algorithm::EcdsaP256),
            Some(p) if p == P256_PARAMS => Ok(pb::Algorithm::EcdsaP256),
            Some(_) => Err(CKR_ATTRIBUTE_VALUE_INVALID),
        },
        CKM_EC_EDWARDS_KEY_PAIR_GEN => match attr(public, CKA_EC_PARAMS) {
            None => Ok(pb::Algorithm::Ed25519),
            Some(p) if p == ED25519_PARAMS || p == ED25519_PARAMS_NAME => {
                Ok(pb::Algorithm::Ed25519)
            }
            Some(_) => Err(CKR_ATTRIBUTE_VALUE_INVALID),
        },
        CKM_RSA_PKCS_KEY_PAIR_GEN => {
            let bits_ok = attr(public, CKA_MODULUS_BITS)
                .is_none_or(|b| b == (3072 as CK_ULONG).to_ne_bytes().as_slice());
            let exponent_ok = attr(public, CKA_PUBLIC_EXPONENT).is_none_or(|e| {
                let trimmed: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
                trimmed == [1, 0, 1]
            });
            if bits_ok && exponent_ok {
                Ok(pb::Algorithm::Rsa3072Pss)
            } else {
                Err(CKR_ATTRIBUTE_VALUE_INVALID)
            }
        }
        _ => Err(CKR_MECHANISM_INVALID),
    }
}
