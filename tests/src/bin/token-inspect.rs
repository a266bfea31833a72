//! Test helper: opens a SoftHSM (or any PKCS#11) token directly, without sigild, and prints
//! what the token says about every private key on it as JSON: the protection flags, whether
//! any secret-bearing attribute can be read, and the daemon key id of its public half. The
//! end-to-end tests use it to check that generated keys really are sensitive and never
//! extractable, and that a wrong PIN did not lock the token. It is a separate process because
//! SoftHSM reads `SOFTHSM2_CONF` from the environment, which tests must not change in-process.
//!
//! Usage: `SOFTHSM2_CONF=... token-inspect MODULE TOKEN_LABEL PIN_FILE`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use sigil_e2e::{PrivateKeyReport, TokenReport};

/// Boolean attributes reported for every private key.
const FLAGS: [(AttributeType, &str); 11] = [
    (AttributeType::Sensitive, "Sensitive"),
    (AttributeType::Extractable, "Extractable"),
    (AttributeType::AlwaysSensitive, "AlwaysSensitive"),
    (AttributeType::NeverExtractable, "NeverExtractable"),
    (AttributeType::Token, "Token"),
    (AttributeType::Private, "Private"),
    (AttributeType::Sign, "Sign"),
    (AttributeType::Decrypt, "Decrypt"),
    (AttributeType::Unwrap, "Unwrap"),
    (AttributeType::Derive, "Derive"),
    (AttributeType::Local, "Local"),
];

/// Attributes that would reveal the private key if read.
const SECRETS: [(AttributeType, &str); 7] = [
    (AttributeType::Value, "Value"),
    (AttributeType::PrivateExponent, "PrivateExponent"),
    (AttributeType::Prime1, "Prime1"),
    (AttributeType::Prime2, "Prime2"),
    (AttributeType::Exponent1, "Exponent1"),
    (AttributeType::Exponent2, "Exponent2"),
    (AttributeType::Coefficient, "Coefficient"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, module, label, pin_file] = args.as_slice() else {
        eprintln!("usage: SOFTHSM2_CONF=... token-inspect MODULE TOKEN_LABEL PIN_FILE");
        return ExitCode::from(2);
    };
    match inspect(module, label, pin_file) {
        Ok(report) => match serde_json::to_string_pretty(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("token-inspect: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("token-inspect: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(module: &str, label: &str, pin_file: &str) -> Result<TokenReport, String> {
    let ctx = Pkcs11::new(module).map_err(|e| format!("loading {module}: {e}"))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| format!("C_Initialize: {e}"))?;
    let slot = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| format!("listing slots: {e}"))?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == label)
        })
        .ok_or_else(|| format!("no token labelled {label:?}"))?;
    let pin = std::fs::read_to_string(pin_file).map_err(|e| format!("reading {pin_file}: {e}"))?;
    let pin = AuthPin::from(pin.trim_end_matches(['\n', '\r']).to_owned());
    let session = ctx
        .open_ro_session(slot)
        .map_err(|e| format!("C_OpenSession: {e}"))?;
    let login_error = session
        .login(UserType::User, Some(&pin))
        .err()
        .map(|e| e.to_string());
    // Read the flags after the login attempt, so a refused PIN shows in them.
    let info = ctx
        .get_token_info(slot)
        .map_err(|e| format!("C_GetTokenInfo: {e}"))?;
    let mut report = TokenReport {
        user_pin_count_low: info.user_pin_count_low(),
        user_pin_final_try: info.user_pin_final_try(),
        user_pin_locked: info.user_pin_locked(),
        login_error,
        private_keys: Vec::new(),
        public_key_count: 0,
    };
    if report.login_error.is_some() {
        return Ok(report);
    }
    let privates = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .map_err(|e| format!("finding private keys: {e}"))?;
    for private in privates {
        report.private_keys.push(describe(&session, private)?);
    }
    report.public_key_count = session
        .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
        .map_err(|e| format!("finding public keys: {e}"))?
        .len();
    session.logout().map_err(|e| format!("C_Logout: {e}"))?;
    Ok(report)
}

fn describe(session: &Session, key: ObjectHandle) -> Result<PrivateKeyReport, String> {
    let mut label = String::new();
    let mut id = Vec::new();
    let mut key_type = String::from("unknown");
    for attr in session
        .get_attributes(
            key,
            &[
                AttributeType::Label,
                AttributeType::Id,
                AttributeType::KeyType,
            ],
        )
        .map_err(|e| format!("reading label/id: {e}"))?
    {
        match attr {
            Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::Id(i) => id = i,
            Attribute::KeyType(t) => key_type = t.to_string(),
            _ => {}
        }
    }
    let types: Vec<AttributeType> = FLAGS.iter().map(|(t, _)| *t).collect();
    let mut flags = BTreeMap::new();
    for attr in session
        .get_attributes(key, &types)
        .map_err(|e| format!("{label}: reading flags: {e}"))?
    {
        let value = match attr {
            Attribute::Sensitive(b)
            | Attribute::Extractable(b)
            | Attribute::AlwaysSensitive(b)
            | Attribute::NeverExtractable(b)
            | Attribute::Token(b)
            | Attribute::Private(b)
            | Attribute::Sign(b)
            | Attribute::Decrypt(b)
            | Attribute::Unwrap(b)
            | Attribute::Derive(b)
            | Attribute::Local(b) => b,
            _ => continue,
        };
        let ty = attr.attribute_type();
        if let Some((_, name)) = FLAGS.iter().find(|(t, _)| *t == ty) {
            flags.insert((*name).to_owned(), value);
        }
    }
    // Each secret attribute alone: the token's own answer (CKR_ATTRIBUTE_SENSITIVE, ...).
    let mut secret_attributes = BTreeMap::new();
    for (ty, name) in SECRETS {
        let answer = match session.get_attribute_info(key, &[ty]) {
            Ok(infos) => match infos.first() {
                Some(AttributeInfo::Sensitive) => "sensitive".to_owned(),
                Some(AttributeInfo::Available(n)) => format!("available({n})"),
                Some(AttributeInfo::Unavailable) => "unavailable".to_owned(),
                Some(AttributeInfo::TypeInvalid) => "type_invalid".to_owned(),
                None => "no answer".to_owned(),
            },
            Err(e) => format!("error: {e}"),
        };
        secret_attributes.insert(name.to_owned(), answer);
    }
    // A bulk read silently drops what it cannot read: anything it does return is a leak.
    let secret_types: Vec<AttributeType> = SECRETS.iter().map(|(t, _)| *t).collect();
    let secret_values_returned = match session.get_attributes(key, &secret_types) {
        Ok(attrs) => attrs
            .iter()
            .filter_map(|a| {
                let ty = a.attribute_type();
                SECRETS
                    .iter()
                    .find(|(t, _)| *t == ty)
                    .map(|(_, n)| (*n).to_owned())
            })
            .collect(),
        Err(e) => vec![format!("bulk read failed: {e}")],
    };
    let key_id = public_key_id(session, &id)?;
    Ok(PrivateKeyReport {
        label,
        id_hex: hex::encode(&id),
        key_id,
        key_type,
        flags,
        secret_attributes,
        secret_values_returned,
    })
}

/// The daemon key id (SHA-256 of the SPKI) of the public key object with this `CKA_ID`.
fn public_key_id(session: &Session, id: &[u8]) -> Result<Option<String>, String> {
    let publics = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.to_vec()),
        ])
        .map_err(|e| format!("finding the public half: {e}"))?;
    let Some(&public) = publics.first() else {
        return Ok(None);
    };
    let (mut key_type, mut point, mut modulus, mut exponent) = (None, None, None, None);
    for attr in session
        .get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ],
        )
        .map_err(|e| format!("reading the public half: {e}"))?
    {
        match attr {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    // CKA_EC_POINT is a DER OCTET STRING around the point (short form for these sizes).
    let unwrap = |p: &[u8]| -> Vec<u8> {
        match p {
            [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest.to_vec(),
            _ => p.to_vec(),
        }
    };
    use sigil_tuf::key::PublicKey;
    let parsed = match (key_type, point, modulus, exponent) {
        (Some(KeyType::EC), Some(p), _, _) => PublicKey::from_p256_sec1(&unwrap(&p)),
        (Some(KeyType::EC_EDWARDS), Some(p), _, _) => PublicKey::from_ed25519_bytes(&unwrap(&p)),
        (Some(KeyType::RSA), _, Some(n), Some(e)) => PublicKey::from_rsa_components(&n, &e),
        _ => return Ok(None),
    };
    parsed
        .map(|k| Some(k.key_id()))
        .map_err(|e| format!("public half does not parse: {e}"))
}
