//! One metadata model, two serialisations. The role documents ([`Root`](super::Root),
//! [`Targets`](super::Targets), [`Snapshot`](super::Snapshot), [`Timestamp`](super::Timestamp),
//! [`FileMeta`](super::FileMeta), [`Signed`]) are generic over a [`Dialect`] that
//! decides every byte a peer can see, while their fields, accessors, hash checks and the
//! threshold count below are written once. The default type parameter is [`Notary`], so
//! `Root` still means Notary's root and code written for Notary is unchanged; the TUF 1.0
//! instances are named in [`super::tuf1`] (`tuf1::Root = Root<Tuf1>`).
//!
//! | What                     | [`Notary`] (notary 0.7, docker)          | [`Tuf1`] (specification 1.0.x)                          |
//! |--------------------------|------------------------------------------|---------------------------------------------------------|
//! | `_type`                  | `Root`, `Targets`, `Snapshot`, `Timestamp` | `root`, `targets`, `snapshot`, `timestamp`            |
//! | `spec_version`           | none (kept as an unknown field if present) | required; writes `1.0.31`, reads `1.x` / `1.x.y`     |
//! | `expires`                | RFC 3339, fraction trimmed (Go)          | exactly `YYYY-MM-DDTHH:MM:SSZ` (python-tuf's `strptime`) |
//! | hashes                   | base64                                   | lowercase hex                                           |
//! | key object               | `{keytype, keyval{public (base64), private: null}}` | `{keytype, scheme, keyval{public}}`: PEM SPKI (ecdsa, rsa), hex (ed25519) |
//! | key id                   | SHA-256 of Go canonical JSON of the key  | SHA-256 of OLPC canonical JSON of `{keytype, scheme, keyval}` |
//! | signature                | `{keyid, method, sig (base64)}`, ECDSA raw `r‖s` | `{keyid, sig (hex)}`, ECDSA DER, RSA-PSS salt = digest length (any max-length salt accepted) |
//! | snapshot/timestamp `meta`| by role name, `{length, hashes}`         | by file name (`targets.json`), `{version[, length, hashes]}` |
//! | canonical JSON           | Go: an integral float is written as an integer | OLPC (securesystemslib): any float is refused      |
//! | parsing                  | serde_json (last duplicate key wins, as in Go) | strict: duplicate keys, floats and `-0` refused      |
//! | file layout              | compact canonical, `signed` first        | canonical JSON of the whole envelope, control characters escaped |
//! | role names               | `targets/NAME` in `[-a-z0-9_/]`          | free-form strings ([`super::tuf1::is_safe_file_name`] for file names) |
//! | delegation `terminating` | not used (kept when present)             | required                                                |

use std::collections::BTreeSet;
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

use super::{Expires, RoleBody, RoleType, Signed};
use crate::error::{Error, Result};
use crate::key::PublicKey;

pub use super::notary::Notary;
pub use super::tuf1::Tuf1;

/// A serialisation of the metadata model. Implemented by zero-sized markers ([`Notary`],
/// [`Tuf1`]); a value of the marker selects the dialect in the `_in` constructors
/// (`Root::new_in(Tuf1, ..)`), as an allocator does in `Vec::new_in`.
pub trait Dialect:
    Debug + Clone + Copy + Default + PartialEq + Eq + Hash + Send + Sync + 'static
{
    /// Name in error messages and docs.
    const NAME: &'static str;
    /// `_type` of root.
    const ROOT_TYPE: &'static str;
    /// `_type` of targets and delegated targets roles.
    const TARGETS_TYPE: &'static str;
    /// `_type` of snapshot.
    const SNAPSHOT_TYPE: &'static str;
    /// `_type` of timestamp.
    const TIMESTAMP_TYPE: &'static str;
    /// Whether a root written by sigil announces consistent snapshots.
    const CONSISTENT_SNAPSHOT: bool;
    /// Hash algorithms sigil lists for a target or a role file it hashes.
    const HASHES: &'static [&'static str];

    /// Fields every role body carries besides `_type`, `version` and `expires`
    /// (`spec_version` in TUF 1.0, nothing in Notary); flattened into the body.
    type Header: Header;
    /// A digest value in a `hashes` map.
    type Hash: HashValue;
    /// A public key object in root `keys` and `delegations.keys`.
    type Key: MetadataKey;
    /// One entry of an envelope's `signatures`.
    type Signature: MetadataSignature;
    /// How snapshot and timestamp list a role file.
    type MetaFile: RoleListing;

    /// The canonical JSON of a value: the bytes signatures cover.
    fn canonical(value: &Value) -> Result<Vec<u8>>;

    /// Parses a served document. `role` names it in errors.
    fn parse<T: DeserializeOwned>(role: &str, bytes: &[u8]) -> Result<T>;

    /// Checks what the dialect requires of every body after parsing (time format, version
    /// range) and of the envelope's signatures.
    fn check_parsed(
        role: &str,
        version: u64,
        expires: &Expires,
        signatures: &[Self::Signature],
    ) -> Result<()>;

    /// Writes an instant as this dialect writes `expires`.
    fn format_time(t: OffsetDateTime) -> String;

    /// The file as sigil writes it, from the `signed` body and the `signatures` array.
    fn file(signed: &Value, signatures: &Value) -> Result<Vec<u8>>;

    /// Checks one signature by `key` over `message` (the canonical body).
    fn verify(key: &Self::Key, signature: &Self::Signature, message: &[u8]) -> Result<()>;

    /// A signature entry for `keyid` from the bytes a [`crate::Signer`] for `key` returned
    /// (Notary: raw ECDSA; TUF 1.0 converts ECDSA to DER).
    fn signature(keyid: &str, key: &Self::Key, sig: Vec<u8>) -> Result<Self::Signature>;
}

/// The per-dialect fields of a role body besides `_type`, `version`, `expires`.
pub trait Header:
    Clone + Debug + PartialEq + Default + Serialize + DeserializeOwned + Send + Sync
{
}

/// A digest as a dialect writes it (base64 or hex); the bytes are the same.
pub trait HashValue:
    Clone + Debug + PartialEq + Eq + Hash + Serialize + DeserializeOwned + Send + Sync
{
    /// Wraps raw digest bytes.
    fn from_bytes(bytes: Vec<u8>) -> Self;
    /// The raw digest.
    fn bytes(&self) -> &[u8];
}

/// A public key object of a dialect.
pub trait MetadataKey:
    Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync
{
    /// The key id this dialect computes for the object.
    fn key_id(&self) -> String;
    /// The public key, checked against the declared type (and scheme).
    fn public_key(&self) -> Result<PublicKey>;
}

/// A signature entry of a dialect.
pub trait MetadataSignature:
    Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync
{
    /// The key id it claims.
    fn keyid(&self) -> &str;
    /// The signature bytes.
    fn sig(&self) -> &[u8];
}

/// How snapshot and timestamp list a role file, as the update walk checks it.
pub trait RoleListing:
    Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync
{
    /// The version listed (TUF 1.0); `None` where the dialect lists none (Notary).
    fn listed_version(&self) -> Option<u64>;
    /// Checks the file's exact bytes against the length and hashes listed. `role` is the file,
    /// `listed_in`/`version` the listing role, for errors.
    fn check_bytes(&self, role: &str, listed_in: &str, version: u64, content: &[u8]) -> Result<()>;
}

/// The role a `_type` tag stands for; see [`TypeTag`].
pub trait RoleKind: Debug + Clone + Copy + Default + PartialEq + Eq + Hash + Send + Sync {
    /// The role.
    const ROLE: RoleType;
}

/// Marker kinds for [`TypeTag`].
pub mod kind {
    use super::{RoleKind, RoleType};

    macro_rules! kinds {
        ($($(#[$doc:meta])* $name:ident => $role:ident),* $(,)?) => {$(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            pub struct $name;
            impl RoleKind for $name {
                const ROLE: RoleType = RoleType::$role;
            }
        )*};
    }

    kinds!(
        /// root.
        Root => Root,
        /// targets and delegated targets roles.
        Targets => Targets,
        /// snapshot.
        Snapshot => Snapshot,
        /// timestamp.
        Timestamp => Timestamp,
    );
}

/// The `_type` value of a role body in dialect `D`: checked when read, written as `D` spells it.
pub struct TypeTag<D, K>(PhantomData<fn() -> (D, K)>);

impl<D: Dialect, K: RoleKind> TypeTag<D, K> {
    /// The tag.
    pub const fn new() -> Self {
        Self(PhantomData)
    }

    /// The `_type` text.
    pub fn text() -> &'static str {
        match K::ROLE {
            RoleType::Root => D::ROOT_TYPE,
            RoleType::Targets => D::TARGETS_TYPE,
            RoleType::Snapshot => D::SNAPSHOT_TYPE,
            RoleType::Timestamp => D::TIMESTAMP_TYPE,
        }
    }
}

// Manual impls: derives would require `D` and `K` to implement the traits themselves.
impl<D, K> Clone for TypeTag<D, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D, K> Copy for TypeTag<D, K> {}
impl<D, K> Default for TypeTag<D, K> {
    fn default() -> Self {
        Self(PhantomData)
    }
}
impl<D, K> PartialEq for TypeTag<D, K> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<D, K> Eq for TypeTag<D, K> {}
impl<D, K> std::hash::Hash for TypeTag<D, K> {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}
impl<D: Dialect, K: RoleKind> Debug for TypeTag<D, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypeTag({:?})", Self::text())
    }
}

impl<D: Dialect, K: RoleKind> Serialize for TypeTag<D, K> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(Self::text())
    }
}

impl<'de, D: Dialect, K: RoleKind> Deserialize<'de> for TypeTag<D, K> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> std::result::Result<Self, De::Error> {
        let text = String::deserialize(d)?;
        if text == Self::text() {
            Ok(Self::new())
        } else {
            Err(serde::de::Error::custom(format!(
                "_type is {text:?}, expected {:?} ({})",
                Self::text(),
                D::NAME
            )))
        }
    }
}

/// Outcome of counting signatures: the key ids that counted, and why others did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureCount {
    /// Key ids whose signature verified, each key counted once, in envelope order.
    pub valid: Vec<String>,
    /// Why signatures did not count (unknown key, bad signature, repeated key).
    pub reasons: Vec<String>,
}

/// Counts distinct keys among `keys` (TUF id, key) with a valid signature over `message`,
/// stopping once `threshold` is reached. A key counts once however many ids or signatures
/// name it: two ids for the same public key are one key.
pub fn count_signatures<D: Dialect>(
    message: &[u8],
    signatures: &[D::Signature],
    keys: &[(&str, &D::Key)],
    threshold: u64,
) -> SignatureCount {
    let mut out = SignatureCount::default();
    let mut seen_ids = BTreeSet::new();
    let mut seen_keys: Vec<PublicKey> = Vec::new();
    if signatures.is_empty() {
        out.reasons.push("no signatures".to_owned());
    }
    for sig in signatures {
        if threshold > 0 && out.valid.len() as u64 >= threshold {
            break;
        }
        let id = sig.keyid();
        let short = id.get(..8).unwrap_or(id);
        let Some((_, key)) = keys.iter().find(|(k, _)| *k == id) else {
            out.reasons.push(format!(
                "signature by {short}… is not from a key of this role"
            ));
            continue;
        };
        if seen_ids.contains(id) {
            out.reasons
                .push(format!("key {short}… signed more than once"));
            continue;
        }
        if let Err(e) = D::verify(key, sig, message) {
            out.reasons.push(e.to_string());
            continue;
        }
        match key.public_key() {
            Ok(public) if !seen_keys.contains(&public) => {
                seen_ids.insert(id);
                seen_keys.push(public);
                out.valid.push(id.to_owned());
            }
            Ok(_) => out.reasons.push(format!(
                "key {short}… is a key already counted under another id"
            )),
            Err(e) => out.reasons.push(e.to_string()),
        }
    }
    out
}

/// Checks that `signed` carries valid signatures from at least `threshold` distinct keys
/// among `keys`, in its own dialect. `role` names it in the error.
pub fn verify_threshold<T: RoleBody>(
    role: &str,
    signed: &Signed<T>,
    keys: &[(&str, &<T::Dialect as Dialect>::Key)],
    threshold: u64,
) -> Result<SignatureCount> {
    let message = signed.canonical_signed()?;
    let count = count_signatures::<T::Dialect>(&message, &signed.signatures, keys, threshold);
    if threshold >= 1 && count.valid.len() as u64 >= threshold {
        return Ok(count);
    }
    Err(Error::ThresholdNotMet {
        role: role.to_owned(),
        version: signed.signed.version(),
        valid: count.valid.len(),
        threshold,
        reason: count.reasons.join("; "),
    })
}
