//! Canonical JSON exactly as Notary writes it (`github.com/docker/go/canonical/json`), because
//! every signature in a Notary collection covers these bytes and one differing byte breaks it.
//!
//! The rules (OLPC style, checked against the real binaries):
//! - no whitespace;
//! - object keys sorted bytewise (Rust's `str` ordering on UTF-8 is exactly that);
//! - strings escape only `"` and `\`: control characters and non-ASCII are written raw;
//! - numbers are integers; a float with a fraction is an error. Notary verifies by decoding into
//!   `float64` and re-encoding, so an integral float such as `1.0` is written `1`, as Go does;
//! - `null`, `true`, `false` literally.
//!
//! The TUF 1.0 dialect uses the same rules as securesystemslib's `encode_canonical` writes them
//! ([`Mode::Olpc`]): string escaping, key order (Python sorts by code point, which is UTF-8 byte
//! order) and integers are identical; the one difference is that Python's encoder has no
//! floats, so any number that is not an integer is refused instead of being written as an
//! integer. [`parse_strict`] is the matching reader: it refuses what a canonical writer could
//! never have produced or would read ambiguously (duplicate keys, floats, `-0`).

use std::fmt;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Serialises `value` to canonical JSON.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).map_err(|e| Error::Canonical {
        reason: e.to_string(),
    })?;
    from_value(&value)
}

/// Writes a JSON value as canonical JSON.
pub fn from_value(value: &Value) -> Result<Vec<u8>> {
    from_value_in(Mode::Go, value)
}

/// Which canonical JSON writer to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Notary's Go encoder: an integral float is written as an integer.
    Go,
    /// securesystemslib's `encode_canonical` (TUF 1.0): every float is refused.
    Olpc,
    /// [`Mode::Olpc`] made valid JSON for a file: control characters in strings (the newlines
    /// of a PEM key) are escaped, since canonical JSON writes them raw and JSON forbids that.
    OlpcFile,
}

/// Writes a JSON value as canonical JSON in `mode`.
pub fn from_value_in(mode: Mode, value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value, mode)?;
    Ok(out)
}

/// Parses JSON text and writes it back canonically: what Notary does before verifying.
pub fn canonicalize(json: &[u8]) -> Result<Vec<u8>> {
    let value: Value = serde_json::from_slice(json).map_err(|e| Error::Canonical {
        reason: e.to_string(),
    })?;
    from_value(&value)
}

/// Appends the canonical form of `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<()> {
    write(out, value, Mode::Go)
}

fn write(out: &mut Vec<u8>, value: &Value, mode: Mode) -> Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n, mode)?,
        Value::String(s) if mode == Mode::OlpcFile => write_json_string(out, s),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item, mode)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map, mode)?,
    }
    Ok(())
}

/// Canonical JSON made a valid JSON text: each control character (raw in canonical form, only
/// possible inside strings since there is no whitespace) becomes a `\u00XX` escape, which
/// decodes to the same string. For files; signatures cover the raw canonical form.
pub fn escape_control_characters(canonical: Vec<u8>) -> Vec<u8> {
    if !canonical.iter().any(|b| *b < 0x20) {
        return canonical;
    }
    let mut out = Vec::with_capacity(canonical.len() + 16);
    for b in canonical {
        if b < 0x20 {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>, mode: Mode) -> Result<()> {
    // Sort explicitly: serde_json's map keeps insertion order when another crate in the build
    // turns on its `preserve_order` feature.
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if mode == Mode::OlpcFile {
            write_json_string(out, key);
        } else {
            write_string(out, key);
        }
        out.push(b':');
        write(out, value, mode)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_number(out: &mut Vec<u8>, n: &Number, mode: Mode) -> Result<()> {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
        return Ok(());
    }
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
        return Ok(());
    }
    if mode != Mode::Go {
        return Err(Error::Canonical {
            reason: format!("number {n} is not an integer (canonical JSON has no floats)"),
        });
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    // Go's canonical encoder writes an integral float64 as an int64 and refuses the rest.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) {
        #[allow(clippy::cast_possible_truncation)]
        let i = f as i64;
        out.extend_from_slice(i.to_string().as_bytes());
        Ok(())
    } else {
        Err(Error::Canonical {
            reason: format!("number {n} is not an integer"),
        })
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Parses JSON text into a value, refusing duplicate object keys (which readers resolve
/// differently: Go and Python keep the last, others the first) and numbers that are not
/// integers within 64 bits (floats, exponents, `-0`, integers beyond `u64`), which canonical
/// JSON cannot carry. The errors name the line and column.
pub fn parse_strict(json: &[u8]) -> std::result::Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(json).map(|s| s.0)
}

/// A JSON value read under [`parse_strict`]'s rules.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("canonical JSON")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        Err(E::custom(format!(
            "number {v} is not canonical: only integers of at most 64 bits are allowed \
             (no fraction, exponent or -0)"
        )))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for b in s.bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v = json!({"b": 1, "a": [true, false, null], "_type": "Root", "B": {"z": 0, "y": -3}});
        assert_eq!(
            from_value(&v).expect("canonical"),
            br#"{"B":{"y":-3,"z":0},"_type":"Root","a":[true,false,null],"b":1}"#
        );
    }

    #[test]
    fn escapes_only_quote_and_backslash() {
        let v = json!("a\"b\\c\n\t\u{1}é<>&\u{2028}");
        let out = from_value(&v).expect("canonical");
        assert_eq!(out, "\"a\\\"b\\\\c\n\t\u{1}é<>&\u{2028}\"".as_bytes());
    }

    #[test]
    fn integral_floats_become_integers_and_fractions_are_refused() {
        assert_eq!(
            canonicalize(b"[1.0, -2e3, 0.0]").expect("ints"),
            b"[1,-2000,0]"
        );
        assert!(matches!(canonicalize(b"1.5"), Err(Error::Canonical { .. })));
        assert!(canonicalize(b"1e300").is_err());
    }

    #[test]
    fn keys_sort_bytewise_not_by_utf16() {
        // U+FF61 sorts after U+10000 in UTF-16 order but before it in UTF-8 byte order.
        let v = json!({"\u{10000}": 1, "\u{ff61}": 2});
        let out = String::from_utf8(from_value(&v).expect("canonical")).expect("utf8");
        assert!(out.find('\u{ff61}') < out.find('\u{10000}'));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn idempotent(v in arb_json()) {
            let once = from_value(&v).expect("canonical");
            let twice = canonicalize(&once).expect("re-canonical");
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn round_trips_through_serde_json(v in arb_json()) {
            let bytes = from_value(&v).expect("canonical");
            let back: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            prop_assert_eq!(back, v);
        }

        #[test]
        fn no_whitespace_outside_strings_and_sorted_keys(v in arb_json()) {
            let bytes = from_value(&v).expect("canonical");
            let mut in_string = false;
            let mut escaped = false;
            for &b in &bytes {
                if in_string {
                    if escaped { escaped = false; }
                    else if b == b'\\' { escaped = true; }
                    else if b == b'"' { in_string = false; }
                } else if b == b'"' {
                    in_string = true;
                } else {
                    prop_assert!(!b.is_ascii_whitespace());
                }
            }
            let mut pos = 0;
            prop_assert!(keys_in_order(&bytes, &mut pos), "keys out of order in {}", String::from_utf8_lossy(&bytes));
            prop_assert_eq!(pos, bytes.len());
        }

        #[test]
        fn strings_escape_only_quote_and_backslash(s in any::<String>()) {
            let bytes = from_value(&Value::String(s.clone())).expect("canonical");
            let expected_len = s.len() + 2 + s.bytes().filter(|b| *b == b'"' || *b == b'\\').count();
            prop_assert_eq!(bytes.len(), expected_len);
            // Dropping each escape backslash gives the raw UTF-8 back.
            let mut raw = Vec::new();
            let mut escaped = false;
            for &b in &bytes[1..bytes.len() - 1] {
                if !escaped && b == b'\\' { escaped = true; continue; }
                escaped = false;
                raw.push(b);
            }
            prop_assert_eq!(raw, s.into_bytes());
        }
    }

    /// Reads one canonical value at `pos` and checks that every object's keys appear in strictly
    /// increasing byte order in the text itself (serde_json's parser would hide the order).
    fn keys_in_order(b: &[u8], pos: &mut usize) -> bool {
        match b.get(*pos) {
            Some(b'{') => {
                *pos += 1;
                let mut last: Option<Vec<u8>> = None;
                while b.get(*pos) != Some(&b'}') {
                    if b.get(*pos) == Some(&b',') {
                        *pos += 1;
                    }
                    let key = read_string(b, pos);
                    if last.as_ref().is_some_and(|l| *l >= key) {
                        return false;
                    }
                    last = Some(key);
                    *pos += 1; // ':'
                    if !keys_in_order(b, pos) {
                        return false;
                    }
                }
                *pos += 1;
                true
            }
            Some(b'[') => {
                *pos += 1;
                while b.get(*pos) != Some(&b']') {
                    if b.get(*pos) == Some(&b',') {
                        *pos += 1;
                    }
                    if !keys_in_order(b, pos) {
                        return false;
                    }
                }
                *pos += 1;
                true
            }
            Some(b'"') => {
                read_string(b, pos);
                true
            }
            Some(_) => {
                while b
                    .get(*pos)
                    .is_some_and(|c| !matches!(c, b',' | b']' | b'}'))
                {
                    *pos += 1;
                }
                true
            }
            None => false,
        }
    }

    fn read_string(b: &[u8], pos: &mut usize) -> Vec<u8> {
        let mut out = Vec::new();
        *pos += 1;
        while let Some(&c) = b.get(*pos) {
            *pos += 1;
            match c {
                b'\\' => {
                    out.extend(b.get(*pos));
                    *pos += 1;
                }
                b'"' => break,
                _ => out.push(c),
            }
        }
        out
    }
}
