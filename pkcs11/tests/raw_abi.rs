//! The module's C ABI called directly, the way a careless or hostile PKCS#11 application
//! would: before C_Initialize, with null pointers, short buffers, invalid handles, mechanisms
//! sigild does not offer, and from a child forked after C_Initialize. Then every mechanism,
//! single- and multi-part, against a real sigild on a SoftHSM token, each signature checked
//! with an independent implementation and counted in sigild's audit log.
//!
//! One test function: the module's state is per process, and the steps depend on each other.

// Calling a C ABI needs raw pointers; every block says why it is sound.
#![allow(unsafe_code)]

use std::ptr::null_mut;

use cryptoki_sys::*;
use sigil_e2e::{DevDir, read_audit};
use sigil_proto::sigil_v1 as pb;

/// Calls a function of the list.
macro_rules! call {
    ($list:expr, $f:ident ( $($arg:expr),* $(,)? )) => {{
        let f = $list.$f.expect(concat!(stringify!($f), " is in the function list"));
        // SAFETY: every pointer argument is null (which the module must handle) or points to
        // memory owned by this test, live for the call and as large as the length passed.
        unsafe { f($($arg),*) }
    }};
}

fn ulong_bytes(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

fn attribute(kind: CK_ATTRIBUTE_TYPE, value: &mut [u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: kind,
        pValue: value.as_mut_ptr().cast(),
        ulValueLen: value.len() as CK_ULONG,
    }
}

fn mechanism(kind: CK_MECHANISM_TYPE, param: &mut [u8]) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: kind,
        pParameter: if param.is_empty() {
            null_mut()
        } else {
            param.as_mut_ptr().cast()
        },
        ulParameterLen: param.len() as CK_ULONG,
    }
}

fn pss_params(salt: CK_ULONG) -> Vec<u8> {
    [CKM_SHA256, CKG_MGF1_SHA256, salt]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

/// The private key object whose CKA_ID is `key_id`'s bytes.
fn find_private(
    f: &CK_FUNCTION_LIST,
    session: CK_SESSION_HANDLE,
    key_id: &str,
) -> CK_OBJECT_HANDLE {
    let mut class = ulong_bytes(CKO_PRIVATE_KEY);
    let mut id = hex_decode(key_id);
    let mut template = [attribute(CKA_CLASS, &mut class), attribute(CKA_ID, &mut id)];
    assert_eq!(
        call!(f, C_FindObjectsInit(session, template.as_mut_ptr(), 2)),
        CKR_OK
    );
    let mut found = [0 as CK_OBJECT_HANDLE; 4];
    let mut count: CK_ULONG = 0;
    assert_eq!(
        call!(f, C_FindObjects(session, found.as_mut_ptr(), 4, &mut count)),
        CKR_OK
    );
    assert_eq!(call!(f, C_FindObjectsFinal(session)), CKR_OK);
    assert_eq!(count, 1, "one private key with id {key_id}");
    found[0]
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Signs `data` single-part with `mech` and returns the signature.
fn sign(
    f: &CK_FUNCTION_LIST,
    session: CK_SESSION_HANDLE,
    mech: &mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    data: &mut [u8],
) -> Vec<u8> {
    assert_eq!(call!(f, C_SignInit(session, mech, key)), CKR_OK);
    let mut len: CK_ULONG = 0;
    let data_len = data.len() as CK_ULONG;
    assert_eq!(
        call!(
            f,
            C_Sign(session, data.as_mut_ptr(), data_len, null_mut(), &mut len)
        ),
        CKR_OK
    );
    let mut out = vec![0u8; len as usize];
    assert_eq!(
        call!(
            f,
            C_Sign(
                session,
                data.as_mut_ptr(),
                data_len,
                out.as_mut_ptr(),
                &mut len
            )
        ),
        CKR_OK
    );
    out.truncate(len as usize);
    out
}

/// Signs `parts` multi-part with `mech` and returns the signature.
fn sign_parts(
    f: &CK_FUNCTION_LIST,
    session: CK_SESSION_HANDLE,
    mech: &mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    parts: &mut [Vec<u8>],
) -> Vec<u8> {
    assert_eq!(call!(f, C_SignInit(session, mech, key)), CKR_OK);
    for part in parts.iter_mut() {
        let len = part.len() as CK_ULONG;
        assert_eq!(
            call!(f, C_SignUpdate(session, part.as_mut_ptr(), len)),
            CKR_OK
        );
    }
    let mut out = vec![0u8; 512];
    let mut len = out.len() as CK_ULONG;
    assert_eq!(
        call!(f, C_SignFinal(session, out.as_mut_ptr(), &mut len)),
        CKR_OK
    );
    out.truncate(len as usize);
    out
}

fn ok_signs(dir: &DevDir) -> usize {
    read_audit(&dir.audit_log())
        .iter()
        .filter(|r| r.op == "sign" && r.outcome == "ok" && r.uid == nix::unistd::getuid().as_raw())
        .count()
}

#[test]
fn the_raw_function_list_refuses_bad_input_and_signs_every_way() {
    let dir = DevDir::new();
    // SAFETY: this binary's only test, and no other thread exists yet to read the
    // environment (no runtime, no daemon started).
    unsafe { std::env::set_var("SIGIL_SOCKET", dir.socket()) };

    let mut list: CK_FUNCTION_LIST_PTR = null_mut();
    // SAFETY: a null argument is what is being tested; the module must refuse it.
    assert_eq!(
        unsafe { sigil_pkcs11::C_GetFunctionList(null_mut()) },
        CKR_ARGUMENTS_BAD
    );
    // SAFETY: `list` is a live local the module writes one pointer to.
    assert_eq!(
        unsafe { sigil_pkcs11::C_GetFunctionList(&mut list) },
        CKR_OK
    );
    // SAFETY: the module returned a pointer to its static function list.
    let f: &CK_FUNCTION_LIST = unsafe { &*list };
    assert_eq!((f.version.major, f.version.minor), (2, 40));

    // Before C_Initialize.
    let mut count: CK_ULONG = 0;
    assert_eq!(
        call!(f, C_GetSlotList(0, null_mut(), &mut count)),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    assert_eq!(
        call!(f, C_Finalize(null_mut())),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    assert_eq!(
        call!(
            f,
            C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut 0)
        ),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );

    // Nobody listening on SIGIL_SOCKET yet: C_Initialize fails and leaves nothing behind.
    assert_eq!(call!(f, C_Initialize(null_mut())), CKR_DEVICE_ERROR);
    assert_eq!(
        call!(f, C_GetSlotList(0, null_mut(), &mut count)),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );

    // The daemon and its keys, made through sigild's own API.
    let daemon = dir.start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (ec, ed, rsa) = runtime.block_on(async {
        let mut client = daemon.client().await;
        (
            client
                .generate("targets", "example.com/raw", pb::Algorithm::EcdsaP256)
                .await,
            client.generate("root", "", pb::Algorithm::Ed25519).await,
            client
                .generate("snapshot", "example.com/raw", pb::Algorithm::Rsa3072Pss)
                .await,
        )
    });

    // C_Initialize: a reserved pointer is refused, then a plain call succeeds, once.
    let mut reserved = 0u8;
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: (&raw mut reserved).cast(),
    };
    assert_eq!(
        call!(f, C_Initialize((&raw mut args).cast())),
        CKR_ARGUMENTS_BAD
    );
    args.pReserved = null_mut();
    assert_eq!(call!(f, C_Initialize((&raw mut args).cast())), CKR_OK);
    assert_eq!(
        call!(f, C_Initialize(null_mut())),
        CKR_CRYPTOKI_ALREADY_INITIALIZED
    );

    // Slots: null count, short buffer (with the size), then the one backend.
    assert_eq!(
        call!(f, C_GetSlotList(0, null_mut(), null_mut())),
        CKR_ARGUMENTS_BAD
    );
    let mut slots = [0 as CK_SLOT_ID; 4];
    let mut count: CK_ULONG = 0;
    assert_eq!(
        call!(f, C_GetSlotList(0, slots.as_mut_ptr(), &mut count)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(count, 1, "the needed size");
    count = 4;
    assert_eq!(
        call!(f, C_GetSlotList(0, slots.as_mut_ptr(), &mut count)),
        CKR_OK
    );
    let slot = slots[0];
    assert_eq!(
        call!(f, C_GetTokenInfo(slot, null_mut())),
        CKR_ARGUMENTS_BAD
    );
    // SAFETY: CK_TOKEN_INFO is plain data; all zeroes is a valid value.
    let mut token: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        call!(f, C_GetTokenInfo(99, &mut token)),
        CKR_SLOT_ID_INVALID
    );
    assert_eq!(call!(f, C_GetTokenInfo(slot, &mut token)), CKR_OK);
    assert!(
        token.label.starts_with(b"softhsm "),
        "token label = backend name"
    );
    assert_eq!(
        token.flags & CKF_LOGIN_REQUIRED,
        0,
        "no login needed: sigild holds the PIN"
    );

    // Mechanisms: the list (with the short-buffer protocol) and an unknown one.
    let mut mechs = [0 as CK_MECHANISM_TYPE; 2];
    let mut count: CK_ULONG = 2;
    assert_eq!(
        call!(f, C_GetMechanismList(slot, mechs.as_mut_ptr(), &mut count)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(count, 8);
    // SAFETY: CK_MECHANISM_INFO is plain data.
    let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        call!(f, C_GetMechanismInfo(slot, CKM_RSA_PKCS, &mut info)),
        CKR_MECHANISM_INVALID
    );
    assert_eq!(
        call!(f, C_GetMechanismInfo(slot, CKM_ECDSA, &mut info)),
        CKR_OK
    );
    assert_ne!(info.flags & CKF_SIGN, 0);

    // Sessions.
    let mut session: CK_SESSION_HANDLE = 0;
    assert_eq!(
        call!(
            f,
            C_OpenSession(slot, CKF_SERIAL_SESSION, null_mut(), None, null_mut())
        ),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        call!(f, C_OpenSession(slot, 0, null_mut(), None, &mut session)),
        CKR_SESSION_PARALLEL_NOT_SUPPORTED
    );
    assert_eq!(
        call!(
            f,
            C_OpenSession(77, CKF_SERIAL_SESSION, null_mut(), None, &mut session)
        ),
        CKR_SLOT_ID_INVALID
    );
    assert_eq!(
        call!(
            f,
            C_OpenSession(
                slot,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                null_mut(),
                None,
                &mut session
            )
        ),
        CKR_OK
    );
    // Login is accepted whatever the PIN: it is not the caller's to give.
    let mut pin = *b"not-the-pin";
    assert_eq!(
        call!(
            f,
            C_Login(session, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG)
        ),
        CKR_OK
    );

    // Finding objects: bad pointers, then the template match.
    assert_eq!(
        call!(f, C_FindObjectsInit(session, null_mut(), 1)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        call!(f, C_FindObjectsInit(session + 1000, null_mut(), 0)),
        CKR_SESSION_HANDLE_INVALID
    );
    assert_eq!(call!(f, C_FindObjectsInit(session, null_mut(), 0)), CKR_OK);
    assert_eq!(
        call!(f, C_FindObjects(session, null_mut(), 1, &mut count)),
        CKR_ARGUMENTS_BAD
    );
    let mut all = [0 as CK_OBJECT_HANDLE; 16];
    assert_eq!(
        call!(f, C_FindObjects(session, all.as_mut_ptr(), 16, null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        call!(f, C_FindObjects(session, all.as_mut_ptr(), 16, &mut count)),
        CKR_OK
    );
    assert_eq!(count, 6, "three keys, two objects each");
    assert_eq!(call!(f, C_FindObjectsFinal(session)), CKR_OK);
    assert_eq!(
        call!(f, C_FindObjectsFinal(session)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    let ec_key = find_private(f, session, &ec.key_id);
    let ed_key = find_private(f, session, &ed.key_id);
    let rsa_key = find_private(f, session, &rsa.key_id);

    // Attributes: sensitive value, short buffer, length query, invalid handle.
    let mut value = [0u8; 8];
    let mut attrs = [attribute(CKA_VALUE, &mut value)];
    assert_eq!(
        call!(
            f,
            C_GetAttributeValue(session, ec_key, attrs.as_mut_ptr(), 1)
        ),
        CKR_ATTRIBUTE_SENSITIVE
    );
    assert_eq!(attrs[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    let mut point = [0u8; 10];
    let mut attrs = [attribute(CKA_EC_POINT, &mut point)];
    assert_eq!(
        call!(
            f,
            C_GetAttributeValue(session, ec_key, attrs.as_mut_ptr(), 1)
        ),
        CKR_BUFFER_TOO_SMALL
    );
    let mut attrs = [CK_ATTRIBUTE {
        type_: CKA_EC_POINT,
        pValue: null_mut(),
        ulValueLen: 0,
    }];
    assert_eq!(
        call!(
            f,
            C_GetAttributeValue(session, ec_key, attrs.as_mut_ptr(), 1)
        ),
        CKR_OK
    );
    assert_eq!(
        attrs[0].ulValueLen, 67,
        "DER OCTET STRING around a 65-byte point"
    );
    let mut attrs = [CK_ATTRIBUTE {
        type_: CKA_LABEL,
        pValue: null_mut(),
        ulValueLen: 0,
    }];
    assert_eq!(
        call!(
            f,
            C_GetAttributeValue(session, 999_999, attrs.as_mut_ptr(), 1)
        ),
        CKR_OBJECT_HANDLE_INVALID
    );
    assert_eq!(
        call!(f, C_GetAttributeValue(session, ec_key, null_mut(), 1)),
        CKR_ARGUMENTS_BAD
    );
    let mut flag = [0u8; 1];
    let mut attrs = [attribute(CKA_EXTRACTABLE, &mut flag)];
    assert_eq!(
        call!(
            f,
            C_GetAttributeValue(session, ec_key, attrs.as_mut_ptr(), 1)
        ),
        CKR_OK
    );
    assert_eq!(flag, [CK_FALSE]);

    // SignInit refusals, none of which reaches sigild.
    let signs_before = ok_signs(&dir);
    let mut none: [u8; 0] = [];
    let mut ecdsa = mechanism(CKM_ECDSA, &mut none);
    assert_eq!(
        call!(f, C_SignInit(session, null_mut(), ec_key)),
        CKR_ARGUMENTS_BAD
    );
    let mut rsa_pkcs = mechanism(CKM_RSA_PKCS, &mut none);
    assert_eq!(
        call!(f, C_SignInit(session, &mut rsa_pkcs, rsa_key)),
        CKR_MECHANISM_INVALID
    );
    assert_eq!(
        call!(f, C_SignInit(session, &mut ecdsa, 424_242)),
        CKR_KEY_HANDLE_INVALID
    );
    assert_eq!(
        call!(f, C_SignInit(session, &mut ecdsa, ec_key + 1)),
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
    assert_eq!(
        call!(f, C_SignInit(session, &mut ecdsa, ed_key)),
        CKR_KEY_TYPE_INCONSISTENT
    );
    let mut bad_pss = pss_params(20);
    let mut pss20 = mechanism(CKM_RSA_PKCS_PSS, &mut bad_pss);
    assert_eq!(
        call!(f, C_SignInit(session, &mut pss20, rsa_key)),
        CKR_MECHANISM_PARAM_INVALID
    );
    assert_eq!(
        call!(
            f,
            C_Sign(session, none.as_mut_ptr(), 0, null_mut(), &mut count)
        ),
        CKR_OPERATION_NOT_INITIALIZED
    );

    // CKM_ECDSA takes a SHA-256 digest, exactly 32 bytes; a wrong length ends the operation.
    let message = b"sigil raw ABI test message".to_vec();
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&message).into();
    let mut short = [0u8; 31];
    assert_eq!(call!(f, C_SignInit(session, &mut ecdsa, ec_key)), CKR_OK);
    assert_eq!(
        call!(
            f,
            C_Sign(session, short.as_mut_ptr(), 31, null_mut(), &mut count)
        ),
        CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        call!(
            f,
            C_Sign(session, short.as_mut_ptr(), 31, null_mut(), &mut count)
        ),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // A short signature buffer reports the size and keeps the operation; null length refused.
    let mut data = digest;
    assert_eq!(call!(f, C_SignInit(session, &mut ecdsa, ec_key)), CKR_OK);
    let mut small = [0u8; 10];
    let mut len: CK_ULONG = small.len() as CK_ULONG;
    assert_eq!(
        call!(
            f,
            C_Sign(session, data.as_mut_ptr(), 32, small.as_mut_ptr(), &mut len)
        ),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(len, 64, "the needed size");
    let mut sig = [0u8; 64];
    assert_eq!(
        call!(
            f,
            C_Sign(session, data.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut len)
        ),
        CKR_OK
    );
    assert_eq!(
        ok_signs(&dir),
        signs_before + 1,
        "one signature, one audit record; refusals made none"
    );
    let ec_public =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec.spki_der[ec.spki_der.len() - 65..])
            .expect("P-256 point");
    let check_ecdsa = |sig: &[u8]| {
        use p256::ecdsa::signature::Verifier as _;
        let sig = p256::ecdsa::Signature::from_slice(sig).expect("raw r||s");
        ec_public
            .verify(&message, &sig)
            .expect("ECDSA signature verifies");
    };
    check_ecdsa(&sig);
    let mut ecdsa_sha256 = mechanism(CKM_ECDSA_SHA256, &mut none);
    check_ecdsa(&sign(
        f,
        session,
        &mut ecdsa_sha256,
        ec_key,
        &mut message.clone(),
    ));
    check_ecdsa(&sign_parts(
        f,
        session,
        &mut ecdsa_sha256,
        ec_key,
        &mut [message[..5].to_vec(), message[5..].to_vec()],
    ));
    check_ecdsa(&sign_parts(
        f,
        session,
        &mut ecdsa,
        ec_key,
        &mut [digest[..16].to_vec(), digest[16..].to_vec()],
    ));
    // C_Sign after C_SignUpdate is not single-part.
    assert_eq!(
        call!(f, C_SignInit(session, &mut ecdsa_sha256, ec_key)),
        CKR_OK
    );
    assert_eq!(
        call!(f, C_SignUpdate(session, data.as_mut_ptr(), 32)),
        CKR_OK
    );
    assert_eq!(
        call!(
            f,
            C_Sign(session, data.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut len)
        ),
        CKR_OPERATION_ACTIVE
    );

    // EdDSA, single- and multi-part.
    let ed_public = ed25519_dalek::VerifyingKey::try_from(&ed.spki_der[ed.spki_der.len() - 32..])
        .expect("Ed25519 key");
    let mut eddsa = mechanism(CKM_EDDSA, &mut none);
    for sig in [
        sign(f, session, &mut eddsa, ed_key, &mut message.clone()),
        sign_parts(
            f,
            session,
            &mut eddsa,
            ed_key,
            &mut [message[..3].to_vec(), message[3..].to_vec()],
        ),
    ] {
        let sig = ed25519_dalek::Signature::from_slice(&sig).expect("64 bytes");
        ed_public
            .verify_strict(&message, &sig)
            .expect("Ed25519 signature verifies");
    }

    // RSA-PSS over a digest and over the message.
    let rsa_public = {
        use rsa::pkcs8::DecodePublicKey as _;
        rsa::RsaPublicKey::from_public_key_der(&rsa.spki_der).expect("RSA key")
    };
    let mut good_pss = pss_params(32);
    let mut pss = mechanism(CKM_RSA_PKCS_PSS, &mut good_pss);
    let mut good_pss2 = pss_params(32);
    let mut sha256_pss = mechanism(CKM_SHA256_RSA_PKCS_PSS, &mut good_pss2);
    for sig in [
        sign(f, session, &mut pss, rsa_key, &mut digest.to_vec()),
        sign_parts(
            f,
            session,
            &mut sha256_pss,
            rsa_key,
            &mut [message[..7].to_vec(), message[7..].to_vec()],
        ),
    ] {
        rsa_public
            .verify(rsa::Pss::new_with_salt::<sha2::Sha256>(32), &digest, &sig)
            .expect("RSA-PSS signature verifies");
    }
    assert_eq!(
        ok_signs(&dir),
        signs_before + 8,
        "every signature audited once"
    );

    // Key generation through sigild: role and GUN from the label, nothing else honoured.
    let mut keygen = mechanism(CKM_EC_KEY_PAIR_GEN, &mut none);
    let (mut public, mut private) = (0, 0);
    let mut params = objects_p256_params();
    let mut public_template = [attribute(CKA_EC_PARAMS, &mut params)];
    assert_eq!(
        call!(
            f,
            C_GenerateKeyPair(
                session,
                &mut keygen,
                public_template.as_mut_ptr(),
                1,
                null_mut(),
                0,
                &mut public,
                &mut private
            )
        ),
        CKR_TEMPLATE_INCOMPLETE
    );
    let mut label = b"targets:example.com/generated".to_vec();
    let mut private_template = [attribute(CKA_LABEL, &mut label)];
    assert_eq!(
        call!(
            f,
            C_GenerateKeyPair(
                session,
                &mut keygen,
                public_template.as_mut_ptr(),
                1,
                private_template.as_mut_ptr(),
                1,
                null_mut(),
                &mut private
            )
        ),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        call!(
            f,
            C_GenerateKeyPair(
                session,
                &mut keygen,
                public_template.as_mut_ptr(),
                1,
                private_template.as_mut_ptr(),
                1,
                &mut public,
                &mut private
            )
        ),
        CKR_OK
    );
    let listed = runtime.block_on(async { daemon.client().await.list().await });
    let made = listed
        .iter()
        .find(|k| k.gun == "example.com/generated")
        .expect("sigild has the generated key");
    assert_eq!(made.role, "targets");
    let mut id = [0u8; 32];
    let mut attrs = [attribute(CKA_ID, &mut id)];
    assert_eq!(
        call!(
            f,
            C_GetAttributeValue(session, private, attrs.as_mut_ptr(), 1)
        ),
        CKR_OK
    );
    assert_eq!(id.to_vec(), hex_decode(&made.key_id));

    // A child forked after C_Initialize gets CKR_CRYPTOKI_NOT_INITIALIZED, not a hang.
    drop(runtime);
    // SAFETY: the child only calls the module (an atomic load and a return) and _exit.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let mut n: CK_ULONG = 0;
            let rv = call!(f, C_GetSlotList(0, null_mut(), &mut n));
            let code = if rv == CKR_CRYPTOKI_NOT_INITIALIZED {
                0
            } else {
                1
            };
            // SAFETY: ends the child at once, running nothing inherited from the parent.
            unsafe { nix::libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
            assert_eq!(
                status,
                nix::sys::wait::WaitStatus::Exited(child, 0),
                "the forked child did not get CKR_CRYPTOKI_NOT_INITIALIZED"
            );
        }
    }

    // The parent still works, and C_Finalize ends it.
    assert_eq!(call!(f, C_GetSlotList(0, null_mut(), &mut count)), CKR_OK);
    assert_eq!(
        call!(f, C_Finalize((&raw mut reserved).cast())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(call!(f, C_Finalize(null_mut())), CKR_OK);
    assert_eq!(
        call!(f, C_CloseSession(session)),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
}

/// CKA_EC_PARAMS of P-256 (the named-curve OID), as a caller would pass it.
fn objects_p256_params() -> Vec<u8> {
    sigil_pkcs11::objects::P256_PARAMS.to_vec()
}
