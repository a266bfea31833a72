//! Canonical JSON (`sigil_tuf::cjson`): what every Notary signature covers, so a wrong byte
//! here is a signature that fails or, worse, two documents with one canonical form.
//!
//! Properties checked for any input:
//! - `canonicalize` succeeds exactly when the input is JSON whose numbers are all integral;
//! - the output reads back as the same value (integral floats as integers) and is a fixed
//!   point: canonicalising it again gives the same bytes;
//! - the output has no whitespace outside strings, object keys strictly increasing bytewise,
//!   and no escapes but `\"` and `\\` (raw control characters, as Notary writes them);
//! - serialising the parsed value through serde (`to_vec`) gives the same bytes.

use serde_json::{Number, Value};
use sigil_tuf::cjson;

/// 2^63: integral floats below this (in magnitude) are written as integers.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

/// The harness.
pub fn cjson(data: &[u8]) {
    let canon = cjson::canonicalize(data);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        assert!(canon.is_err(), "canonicalize accepted what is not JSON");
        return;
    };
    let Some(expected) = integral(&value) else {
        assert!(
            canon.is_err(),
            "canonicalize accepted a non-integral number"
        );
        return;
    };
    let canon = match canon {
        Ok(c) => c,
        Err(e) => panic!("canonicalize refused JSON with only integral numbers: {e}"),
    };
    let via_serde = cjson::to_vec(&value).expect("to_vec of a canonicalizable value");
    assert_eq!(via_serde, canon, "to_vec and canonicalize disagree");

    if let Err(why) = check_layout(&canon) {
        panic!("not canonical ({why}): {}", String::from_utf8_lossy(&canon));
    }
    // Canonical strings carry control characters raw, which strict JSON parsers refuse; escape
    // them (they occur only inside strings: there is no whitespace outside) to read it back.
    let readable = escape_controls(&canon);
    let back: Value = serde_json::from_slice(&readable).expect("canonical output reads back");
    assert_eq!(
        back, expected,
        "canonical output reads back as another value"
    );
    let again = cjson::canonicalize(&readable).expect("canonical output canonicalizes");
    assert_eq!(again, canon, "canonical form is not a fixed point");
}

/// `value` with every number as an integer, or `None` when one is not integral (or out of
/// the i64 range as a float): what the canonical form must preserve.
fn integral(value: &Value) -> Option<Value> {
    Some(match value {
        Value::Number(n) => Value::Number(integral_number(n)?),
        Value::Array(items) => Value::Array(items.iter().map(integral).collect::<Option<_>>()?),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Some((k.clone(), integral(v)?)))
                .collect::<Option<_>>()?,
        ),
        other => other.clone(),
    })
}

fn integral_number(n: &Number) -> Option<Number> {
    if n.is_u64() || n.is_i64() {
        return Some(n.clone());
    }
    let f = n.as_f64()?;
    let ok = f.is_finite() && f.fract() == 0.0 && (-I64_LIMIT..I64_LIMIT).contains(&f);
    #[allow(clippy::cast_possible_truncation)]
    ok.then(|| Number::from(f as i64))
}

fn escape_controls(canon: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(canon.len());
    for &b in canon {
        if b < 0x20 {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Reads one canonical value from the text itself (a parser would hide key order and
/// whitespace) and checks the layout rules.
fn check_layout(text: &[u8]) -> Result<(), String> {
    let mut pos = 0;
    value(text, &mut pos)?;
    if pos == text.len() {
        Ok(())
    } else {
        Err(format!("trailing bytes at {pos}"))
    }
}

fn value(b: &[u8], pos: &mut usize) -> Result<(), String> {
    match b.get(*pos) {
        Some(b'{') => {
            *pos += 1;
            let mut last: Option<Vec<u8>> = None;
            while b.get(*pos) != Some(&b'}') {
                if last.is_some() {
                    expect(b, pos, b',')?;
                }
                let key = string(b, pos)?;
                if last.as_ref().is_some_and(|l| *l >= key) {
                    return Err(format!("object key out of order at {pos}"));
                }
                last = Some(key);
                expect(b, pos, b':')?;
                value(b, pos)?;
            }
            *pos += 1;
            Ok(())
        }
        Some(b'[') => {
            *pos += 1;
            let mut first = true;
            while b.get(*pos) != Some(&b']') {
                if !first {
                    expect(b, pos, b',')?;
                }
                first = false;
                value(b, pos)?;
            }
            *pos += 1;
            Ok(())
        }
        Some(b'"') => string(b, pos).map(drop),
        Some(b'-' | b'0'..=b'9') => {
            // An integer: `0`, or an optional `-` and digits without a leading zero.
            let negative = b[*pos] == b'-';
            if negative {
                *pos += 1;
            }
            let start = *pos;
            while b.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            let digits = &b[start..*pos];
            if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || negative)) {
                return Err(format!("number at {start} is not canonical"));
            }
            Ok(())
        }
        _ => {
            for word in [&b"null"[..], b"true", b"false"] {
                if b[*pos..].starts_with(word) {
                    *pos += word.len();
                    return Ok(());
                }
            }
            Err(format!("unexpected byte at {pos}"))
        }
    }
}

fn expect(b: &[u8], pos: &mut usize, want: u8) -> Result<(), String> {
    if b.get(*pos) == Some(&want) {
        *pos += 1;
        Ok(())
    } else {
        Err(format!("expected {:?} at {pos}", want as char))
    }
}

/// A string's raw bytes; only `\"` and `\\` may be escaped.
fn string(b: &[u8], pos: &mut usize) -> Result<Vec<u8>, String> {
    expect(b, pos, b'"')?;
    let mut out = Vec::new();
    loop {
        match b.get(*pos) {
            None => return Err("unterminated string".into()),
            Some(b'"') => {
                *pos += 1;
                return Ok(out);
            }
            Some(b'\\') => match b.get(*pos + 1) {
                Some(&c @ (b'"' | b'\\')) => {
                    out.push(c);
                    *pos += 2;
                }
                _ => return Err(format!("escape other than \\\" or \\\\ at {pos}")),
            },
            Some(&c) => {
                out.push(c);
                *pos += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_check_refuses_what_is_not_canonical() {
        assert!(check_layout(br#"{"a":[1,-2,0,"x\"y\\"],"b":{}}"#).is_ok());
        for bad in [
            &br#"{"b":1,"a":2}"#[..],
            br#"{"a":1,"a":2}"#,
            br#"{"a": 1}"#,
            br#"["\n"]"#,
            b"[01]",
            b"[-0]",
            b"[1.5]",
            b"[1] ",
        ] {
            assert!(
                check_layout(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn integral_floats_read_back_as_integers() {
        let v: Value = serde_json::from_str("[1.0,-0.0,1e3]").expect("json");
        assert_eq!(integral(&v), Some(serde_json::json!([1, 0, 1000])));
        let v: Value = serde_json::from_str("[0.5]").expect("json");
        assert_eq!(integral(&v), None);
    }
}
