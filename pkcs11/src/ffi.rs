//! The C ABI: `C_GetFunctionList` and the functions its list points to. Each function checks
//! its pointers, turns C data into Rust values, runs under the module lock, and writes results
//! back. No panic crosses this boundary (it becomes CKR_GENERAL_ERROR), and a child process
//! forked after C_Initialize gets CKR_CRYPTOKI_NOT_INITIALIZED instead of sharing (and
//! hanging on) its parent's connection.

#![allow(non_snake_case)] // PKCS#11 names.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use cryptoki_sys::*;

use crate::client::{Client, socket_path};
use crate::mechanism::{self, MECHANISMS};
use crate::module::{Module, Template};
use crate::objects::Lookup;

/// The state of the current C_Initialize; `None` before it and after C_Finalize.
static STATE: Mutex<Option<Module>> = Mutex::new(None);
/// The pid that called C_Initialize (0: none). Checked before taking the lock, so a forked
/// child never waits on a lock another thread of its parent held at fork time.
static INIT_PID: AtomicU32 = AtomicU32::new(0);

/// Runs `f`, turning a panic into CKR_GENERAL_ERROR.
fn guarded(f: impl FnOnce() -> CK_RV) -> CK_RV {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(CKR_GENERAL_ERROR)
}

/// Runs `f` on the initialised module of this process.
fn with_module(f: impl FnOnce(&mut Module) -> Result<(), CK_RV>) -> CK_RV {
    guarded(|| {
        if INIT_PID.load(Ordering::SeqCst) != std::process::id() {
            return CKR_CRYPTOKI_NOT_INITIALIZED;
        }
        let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
        match state.as_mut() {
            None => CKR_CRYPTOKI_NOT_INITIALIZED,
            Some(module) => f(module).err().unwrap_or(CKR_OK),
        }
    })
}

/// Fills a blank-padded fixed-size PKCS#11 string field.
fn pad(field: &mut [u8], text: &str) {
    field.fill(b' ');
    let bytes = text.as_bytes();
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
}

fn ulong(n: usize) -> CK_ULONG {
    CK_ULONG::try_from(n).unwrap_or(CK_ULONG::MAX)
}

/// Reads `len` bytes at `ptr`; empty when `len` is 0.
///
/// # Safety
/// `ptr` must point to `len` readable bytes when `len` > 0 (the caller's PKCS#11 contract).
unsafe fn bytes<'a>(ptr: *const u8, len: CK_ULONG) -> Result<&'a [u8], CK_RV> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let len = usize::try_from(len).map_err(|_| CKR_ARGUMENTS_BAD)?;
    // SAFETY: non-null, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Copies a C attribute template into Rust.
///
/// # Safety
/// `ptr` must point to `count` CK_ATTRIBUTEs whose values are readable for their lengths.
unsafe fn template(ptr: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Template, CK_RV> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let count = usize::try_from(count).map_err(|_| CKR_ARGUMENTS_BAD)?;
    // SAFETY: non-null, and the caller promises `count` attributes.
    let attrs = unsafe { std::slice::from_raw_parts(ptr, count) };
    attrs
        .iter()
        .map(|a| {
            // SAFETY: the caller promises each pValue holds ulValueLen bytes.
            let value = unsafe { bytes(a.pValue.cast::<u8>(), a.ulValueLen) }?;
            Ok((a.type_, value.to_vec()))
        })
        .collect()
}

/// Writes `value` to an output buffer with PKCS#11's length protocol: a null buffer asks for
/// the length; a short one gets CKR_BUFFER_TOO_SMALL with the length needed.
///
/// # Safety
/// `len` must be valid for writes; `out`, when non-null, for `*len` bytes.
unsafe fn write_out(value: &[u8], out: *mut u8, len: *mut CK_ULONG) -> Result<(), CK_RV> {
    if len.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: checked non-null; valid for reads and writes per the contract.
    let cap = unsafe { *len };
    // SAFETY: as above.
    unsafe { *len = ulong(value.len()) };
    if out.is_null() {
        return Ok(());
    }
    if usize::try_from(cap).map_or(true, |c| c < value.len()) {
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    // SAFETY: `out` holds at least `cap` >= value.len() writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), out, value.len()) };
    Ok(())
}

/// Reads a mechanism: its type and raw parameter bytes.
///
/// # Safety
/// `mechanism` must be null or point to a CK_MECHANISM whose parameter is readable.
unsafe fn read_mechanism(
    mechanism: *const CK_MECHANISM,
) -> Result<(CK_MECHANISM_TYPE, Vec<u8>), CK_RV> {
    if mechanism.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: checked non-null; the caller promises a valid CK_MECHANISM.
    let m = unsafe { &*mechanism };
    // SAFETY: the caller promises pParameter holds ulParameterLen bytes.
    let param = unsafe { bytes(m.pParameter.cast::<u8>(), m.ulParameterLen) }?;
    Ok((m.mechanism, param.to_vec()))
}

/// Stores `value` through an output pointer.
///
/// # Safety
/// `out` must be null or valid for writes.
unsafe fn put<T>(out: *mut T, value: T) -> Result<(), CK_RV> {
    if out.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: checked non-null; the caller promises it is writable.
    unsafe { out.write(value) };
    Ok(())
}

unsafe extern "C" fn C_Initialize(init_args: CK_VOID_PTR) -> CK_RV {
    guarded(|| {
        if !init_args.is_null() {
            // SAFETY: a non-null argument is a CK_C_INITIALIZE_ARGS (PKCS#11 5.4).
            let args = unsafe { &*init_args.cast::<CK_C_INITIALIZE_ARGS>() };
            if !args.pReserved.is_null() {
                return CKR_ARGUMENTS_BAD;
            }
            let given = [
                args.CreateMutex.is_some(),
                args.DestroyMutex.is_some(),
                args.LockMutex.is_some(),
                args.UnlockMutex.is_some(),
            ];
            if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
                return CKR_ARGUMENTS_BAD;
            }
            // Only the application's own primitives allowed: this module locks with the OS's.
            if given[0] && args.flags & CKF_OS_LOCKING_OK == 0 {
                return CKR_CANT_LOCK;
            }
        }
        let pid = std::process::id();
        if INIT_PID.load(Ordering::SeqCst) == pid {
            return CKR_CRYPTOKI_ALREADY_INITIALIZED;
        }
        let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(inherited) = state.take() {
            // Forked from an initialised parent: the runtime and connection are the parent's.
            // Dropping them here could wait on threads that do not exist in this process.
            std::mem::forget(inherited);
        }
        let module = match Client::connect(&socket_path()).and_then(Module::new) {
            Ok(m) => m,
            Err(rv) => return rv,
        };
        *state = Some(module);
        INIT_PID.store(pid, Ordering::SeqCst);
        CKR_OK
    })
}

unsafe extern "C" fn C_Finalize(reserved: CK_VOID_PTR) -> CK_RV {
    if !reserved.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    guarded(|| {
        if INIT_PID.load(Ordering::SeqCst) != std::process::id() {
            return CKR_CRYPTOKI_NOT_INITIALIZED;
        }
        let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
        INIT_PID.store(0, Ordering::SeqCst);
        match state.take() {
            Some(_) => CKR_OK,
            None => CKR_CRYPTOKI_NOT_INITIALIZED,
        }
    })
}

unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    with_module(|_| {
        let mut out = CK_INFO {
            cryptokiVersion: CK_VERSION {
                major: 2,
                minor: 40,
            },
            manufacturerID: [0; 32],
            flags: 0,
            libraryDescription: [0; 32],
            libraryVersion: CK_VERSION { major: 0, minor: 1 },
        };
        pad(&mut out.manufacturerID, "sigil");
        pad(&mut out.libraryDescription, "sigild PKCS#11 module");
        // SAFETY: `put` checks for null; the caller passes a CK_INFO to fill.
        unsafe { put(info, out) }
    })
}

static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
};

/// The module's entry point: hands out the function list (PKCS#11 2.40).
///
/// # Safety
/// `list` must be null or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    guarded(|| {
        let ptr = (&raw const FUNCTION_LIST).cast_mut();
        // SAFETY: `put` checks for null; callers only read through the list (PKCS#11 5.2).
        match unsafe { put(list, ptr) } {
            Ok(()) => CKR_OK,
            Err(rv) => rv,
        }
    })
}

unsafe extern "C" fn C_GetSlotList(
    _token_present: CK_BBOOL,
    slots: CK_SLOT_ID_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    with_module(|module| {
        if count.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        if slots.is_null() {
            // Only a length query lists the keys again; the call that fills the list then
            // reports the same slots.
            module.refresh()?;
        }
        let ids = module.slot_ids();
        // SAFETY: checked non-null above.
        let cap = unsafe { *count };
        // SAFETY: as above.
        unsafe { *count = ulong(ids.len()) };
        if slots.is_null() {
            return Ok(());
        }
        if usize::try_from(cap).map_or(true, |c| c < ids.len()) {
            return Err(CKR_BUFFER_TOO_SMALL);
        }
        // SAFETY: the caller's array holds `cap` >= ids.len() slot ids.
        unsafe { std::ptr::copy_nonoverlapping(ids.as_ptr(), slots, ids.len()) };
        Ok(())
    })
}

unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    with_module(|module| {
        let backend = module.backend(slot)?;
        let mut out = CK_SLOT_INFO {
            slotDescription: [0; 64],
            manufacturerID: [0; 32],
            flags: CKF_TOKEN_PRESENT,
            hardwareVersion: CK_VERSION { major: 0, minor: 0 },
            firmwareVersion: CK_VERSION { major: 0, minor: 0 },
        };
        pad(
            &mut out.slotDescription,
            &format!("sigild backend {backend}"),
        );
        pad(&mut out.manufacturerID, "sigil");
        // SAFETY: `put` checks for null; the caller passes a CK_SLOT_INFO to fill.
        unsafe { put(info, out) }
    })
}

unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    with_module(|module| {
        let backend = module.backend(slot)?.to_owned();
        let (sessions, rw) = module.session_counts(slot);
        let mut out = CK_TOKEN_INFO {
            label: [0; 32],
            manufacturerID: [0; 32],
            model: [0; 16],
            serialNumber: [0; 16],
            // No CKF_LOGIN_REQUIRED: sigild holds the PIN and authorises by uid, so tools
            // neither prompt for nor send one (C_Login is accepted and ignored anyway).
            flags: CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: ulong(sessions),
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: ulong(rw),
            ulMaxPinLen: 0,
            ulMinPinLen: 0,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: CK_VERSION { major: 0, minor: 0 },
            firmwareVersion: CK_VERSION { major: 0, minor: 0 },
            utcTime: [b' '; 16],
        };
        pad(&mut out.label, &backend);
        pad(&mut out.manufacturerID, "sigil");
        pad(&mut out.model, "sigild");
        pad(&mut out.serialNumber, &slot.to_string());
        // SAFETY: `put` checks for null; the caller passes a CK_TOKEN_INFO to fill.
        unsafe { put(info, out) }
    })
}

unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: CK_MECHANISM_TYPE_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    with_module(|module| {
        module.backend(slot)?;
        if count.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        // SAFETY: checked non-null.
        let cap = unsafe { *count };
        // SAFETY: as above.
        unsafe { *count = ulong(MECHANISMS.len()) };
        if list.is_null() {
            return Ok(());
        }
        if usize::try_from(cap).map_or(true, |c| c < MECHANISMS.len()) {
            return Err(CKR_BUFFER_TOO_SMALL);
        }
        // SAFETY: the caller's array holds `cap` >= MECHANISMS.len() entries.
        unsafe { std::ptr::copy_nonoverlapping(MECHANISMS.as_ptr(), list, MECHANISMS.len()) };
        Ok(())
    })
}

unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mechanism: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    with_module(|module| {
        module.backend(slot)?;
        let out = mechanism::info(mechanism)?;
        // SAFETY: `put` checks for null; the caller passes a CK_MECHANISM_INFO to fill.
        unsafe { put(info, out) }
    })
}

unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _application: CK_VOID_PTR,
    _notify: CK_NOTIFY,
    session: CK_SESSION_HANDLE_PTR,
) -> CK_RV {
    with_module(|module| {
        if session.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let handle = module.open_session(slot, flags)?;
        // SAFETY: checked non-null; the caller passes a handle to fill.
        unsafe { put(session, handle) }
    })
}

extern "C" fn C_CloseSession(session: CK_SESSION_HANDLE) -> CK_RV {
    with_module(|module| module.close_session(session))
}

extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    with_module(|module| module.close_all(slot))
}

unsafe extern "C" fn C_GetSessionInfo(
    session: CK_SESSION_HANDLE,
    info: *mut CK_SESSION_INFO,
) -> CK_RV {
    with_module(|module| {
        let (slot, flags, logged_in) = module.session_info(session)?;
        let rw = flags & CKF_RW_SESSION != 0;
        let state = match (rw, logged_in) {
            (false, false) => CKS_RO_PUBLIC_SESSION,
            (false, true) => CKS_RO_USER_FUNCTIONS,
            (true, false) => CKS_RW_PUBLIC_SESSION,
            (true, true) => CKS_RW_USER_FUNCTIONS,
        };
        let out = CK_SESSION_INFO {
            slotID: slot,
            state,
            flags,
            ulDeviceError: 0,
        };
        // SAFETY: `put` checks for null; the caller passes a CK_SESSION_INFO to fill.
        unsafe { put(info, out) }
    })
}

/// Accepted and ignored: the PIN stays with sigild, which authorises by the caller's uid.
extern "C" fn C_Login(
    session: CK_SESSION_HANDLE,
    _user_type: CK_USER_TYPE,
    _pin: CK_UTF8CHAR_PTR,
    _pin_len: CK_ULONG,
) -> CK_RV {
    with_module(|module| module.set_logged_in(session, true))
}

extern "C" fn C_Logout(session: CK_SESSION_HANDLE) -> CK_RV {
    with_module(|module| module.set_logged_in(session, false))
}

unsafe extern "C" fn C_GetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    attrs: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CK_RV {
    with_module(|module| {
        let (key, private) = module.key_object(session, object)?;
        if attrs.is_null() && count > 0 {
            return Err(CKR_ARGUMENTS_BAD);
        }
        if count == 0 {
            return Ok(());
        }
        let count = usize::try_from(count).map_err(|_| CKR_ARGUMENTS_BAD)?;
        // SAFETY: non-null, and the caller passes `count` attributes to fill.
        let attrs = unsafe { std::slice::from_raw_parts_mut(attrs, count) };
        // PKCS#11 processes every attribute and reports the last problem found.
        let mut result = Ok(());
        for attr in attrs {
            match key.attribute(private, attr.type_) {
                Lookup::Value(value) => {
                    // SAFETY: the caller promises pValue, when non-null, holds ulValueLen bytes.
                    let written =
                        unsafe { write_out(value, attr.pValue.cast::<u8>(), &mut attr.ulValueLen) };
                    if let Err(rv) = written {
                        attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        result = Err(rv);
                    }
                }
                Lookup::Sensitive => {
                    attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    result = Err(CKR_ATTRIBUTE_SENSITIVE);
                }
                Lookup::Invalid => {
                    attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    result = Err(CKR_ATTRIBUTE_TYPE_INVALID);
                }
            }
        }
        result
    })
}

unsafe extern "C" fn C_FindObjectsInit(
    session: CK_SESSION_HANDLE,
    attrs: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CK_RV {
    with_module(|module| {
        // SAFETY: the caller passes `count` attributes with readable values.
        let template = unsafe { template(attrs, count) }?;
        module.find_init(session, &template)
    })
}

unsafe extern "C" fn C_FindObjects(
    session: CK_SESSION_HANDLE,
    objects: CK_OBJECT_HANDLE_PTR,
    max: CK_ULONG,
    found: CK_ULONG_PTR,
) -> CK_RV {
    with_module(|module| {
        if found.is_null() || (objects.is_null() && max > 0) {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let max = usize::try_from(max).map_err(|_| CKR_ARGUMENTS_BAD)?;
        let handles = module.find(session, max)?;
        if !handles.is_empty() {
            // SAFETY: the caller's array holds `max` >= handles.len() handles.
            unsafe { std::ptr::copy_nonoverlapping(handles.as_ptr(), objects, handles.len()) };
        }
        // SAFETY: checked non-null.
        unsafe { put(found, ulong(handles.len())) }
    })
}

extern "C" fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    with_module(|module| module.find_final(session))
}

unsafe extern "C" fn C_SignInit(
    session: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_PTR,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    with_module(|module| {
        // SAFETY: the caller passes null or a valid CK_MECHANISM.
        let (kind, param) = unsafe { read_mechanism(mechanism) }?;
        module.sign_init(session, kind, &param, key)
    })
}

/// The end of a sign operation, single-part (`data` Some) or multi-part: checks the data,
/// answers length queries without signing, and otherwise signs through sigild. Errors other
/// than a length problem end the operation, as PKCS#11 asks.
///
/// # Safety
/// `signature` must be null or hold `*signature_len` writable bytes; `signature_len` must be
/// null or valid for reads and writes.
unsafe fn finish_sign(
    module: &mut Module,
    session: CK_SESSION_HANDLE,
    data: Option<&[u8]>,
    signature: CK_BYTE_PTR,
    signature_len: CK_ULONG_PTR,
) -> Result<(), CK_RV> {
    let checked = (|| {
        if signature_len.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        module.check_sign(session, data)?;
        module.signature_len(session)
    })();
    let needed = match checked {
        Ok(n) => n,
        Err(rv) => {
            if rv != CKR_SESSION_HANDLE_INVALID && rv != CKR_OPERATION_NOT_INITIALIZED {
                module.end_sign(session);
            }
            return Err(rv);
        }
    };
    // SAFETY: checked non-null above; valid per the contract.
    let cap = unsafe { *signature_len };
    // SAFETY: as above.
    unsafe { *signature_len = ulong(needed) };
    if signature.is_null() {
        return Ok(());
    }
    if usize::try_from(cap).map_or(true, |c| c < needed) {
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    let made = module.sign(session, data)?;
    // SAFETY: as above; the buffer holds `cap` >= needed bytes and, on success, `made` is
    // exactly `needed` long (checked).
    unsafe { write_out(&made, signature, signature_len) }
}

unsafe extern "C" fn C_Sign(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    data_len: CK_ULONG,
    signature: CK_BYTE_PTR,
    signature_len: CK_ULONG_PTR,
) -> CK_RV {
    with_module(|module| {
        // SAFETY: the caller passes `data_len` readable bytes.
        let data = match unsafe { bytes(data, data_len) } {
            Ok(d) => d,
            Err(rv) => {
                module.end_sign(session);
                return Err(rv);
            }
        };
        // SAFETY: the caller's output buffers, per this function's contract.
        unsafe { finish_sign(module, session, Some(data), signature, signature_len) }
    })
}

unsafe extern "C" fn C_SignUpdate(
    session: CK_SESSION_HANDLE,
    part: CK_BYTE_PTR,
    part_len: CK_ULONG,
) -> CK_RV {
    with_module(|module| {
        // SAFETY: the caller passes `part_len` readable bytes.
        let part = unsafe { bytes(part, part_len) }.inspect_err(|_| module.end_sign(session))?;
        module.sign_update(session, part)
    })
}

unsafe extern "C" fn C_SignFinal(
    session: CK_SESSION_HANDLE,
    signature: CK_BYTE_PTR,
    signature_len: CK_ULONG_PTR,
) -> CK_RV {
    with_module(|module| {
        // SAFETY: the caller's output buffers, per this function's contract.
        unsafe { finish_sign(module, session, None, signature, signature_len) }
    })
}

unsafe extern "C" fn C_GenerateKeyPair(
    session: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_PTR,
    public_attrs: CK_ATTRIBUTE_PTR,
    public_count: CK_ULONG,
    private_attrs: CK_ATTRIBUTE_PTR,
    private_count: CK_ULONG,
    public_key: CK_OBJECT_HANDLE_PTR,
    private_key: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    with_module(|module| {
        if public_key.is_null() || private_key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        // SAFETY: the caller passes null or a valid CK_MECHANISM.
        let (kind, _param) = unsafe { read_mechanism(mechanism) }?;
        // SAFETY: the caller passes the templates with their counts.
        let public = unsafe { template(public_attrs, public_count) }?;
        // SAFETY: as above.
        let private = unsafe { template(private_attrs, private_count) }?;
        let (pub_handle, priv_handle) = module.generate(session, kind, &public, &private)?;
        // SAFETY: both checked non-null above.
        unsafe { put(public_key, pub_handle) }?;
        // SAFETY: as above.
        unsafe { put(private_key, priv_handle) }
    })
}

/// Functions this module does not offer: CKR_FUNCTION_NOT_SUPPORTED (after the usual
/// not-initialised check), whatever the arguments.
macro_rules! not_supported {
    ($($name:ident($($arg:ty),*);)*) => {$(
        extern "C" fn $name($(_: $arg),*) -> CK_RV {
            with_module(|_| Err(CKR_FUNCTION_NOT_SUPPORTED))
        }
    )*};
}

not_supported! {
    C_InitToken(CK_SLOT_ID, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR);
    C_InitPIN(CK_SESSION_HANDLE, CK_UTF8CHAR_PTR, CK_ULONG);
    C_SetPIN(CK_SESSION_HANDLE, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR, CK_ULONG);
    C_GetOperationState(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
    C_SetOperationState(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE);
    C_CreateObject(CK_SESSION_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR);
    C_CopyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR);
    C_DestroyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
    C_GetObjectSize(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ULONG_PTR);
    C_SetAttributeValue(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG);
    C_EncryptInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    C_Encrypt(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_EncryptUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_EncryptFinal(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
    C_DecryptInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    C_Decrypt(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_DecryptUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_DecryptFinal(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
    C_DigestInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR);
    C_Digest(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_DigestUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
    C_DigestKey(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
    C_DigestFinal(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
    C_SignRecoverInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    C_SignRecover(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_VerifyInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    C_Verify(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG);
    C_VerifyUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
    C_VerifyFinal(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
    C_VerifyRecoverInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    C_VerifyRecover(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_DigestEncryptUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_DecryptDigestUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_SignEncryptUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_DecryptVerifyUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    C_GenerateKey(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR);
    C_WrapKey(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
    C_UnwrapKey(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR);
    C_DeriveKey(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR);
    C_SeedRandom(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
    C_GenerateRandom(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
    C_GetFunctionStatus(CK_SESSION_HANDLE);
    C_CancelFunction(CK_SESSION_HANDLE);
    C_WaitForSlotEvent(CK_FLAGS, CK_SLOT_ID_PTR, CK_VOID_PTR);
}
