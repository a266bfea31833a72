//! Everything `sigil` prints on stdout: human tables and summaries by default, JSON for scripts
//! with `--json`. Commands build values here instead of formatting inline, so both forms stay
//! consistent across commands. Notes for people go to stderr, never mixed into results.

use std::fs::Permissions;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde::Serialize;

use crate::daemon_client::KeyInfo;
use crate::error::Error;

/// A key as `--json` prints it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct KeyJson {
    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub(crate) key_id: String,
    /// `ecdsa-p256`, `ed25519` or `rsa-3072`.
    pub(crate) algorithm: &'static str,
    /// TUF role.
    pub(crate) role: String,
    /// Collection, or `null` when the key is not bound to one.
    pub(crate) gun: Option<String>,
    /// Backend holding the private key.
    pub(crate) backend: String,
    /// PEM `PUBLIC KEY` block.
    pub(crate) public_key_pem: String,
    /// The YubiKey holding the key; absent for PKCS#11 backends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) device: Option<DeviceJson>,
}

/// A key's device as `--json` prints it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct DeviceJson {
    /// `yubikey`.
    pub(crate) r#type: &'static str,
    /// Serial number.
    pub(crate) serial: u32,
    /// Touch policy the device reports, or `null` when unknown.
    pub(crate) touch_policy: Option<String>,
    /// PIN policy the device reports, or `null` when unknown.
    pub(crate) pin_policy: Option<String>,
    /// Whether the key's attestation verified against sigild's attestation roots.
    pub(crate) attested: bool,
}

impl From<&KeyInfo> for KeyJson {
    fn from(key: &KeyInfo) -> Self {
        Self {
            key_id: key.key_id.clone(),
            algorithm: key.algorithm().as_str(),
            role: key.role.clone(),
            gun: key.gun.clone(),
            backend: key.backend.clone(),
            public_key_pem: key.public_key.to_pem(),
            device: key.device.as_ref().map(|d| DeviceJson {
                r#type: "yubikey",
                serial: d.serial,
                touch_policy: d.touch_policy.clone(),
                pin_policy: d.pin_policy.clone(),
                attested: d.attested,
            }),
        }
    }
}

/// `text` safe to show on a terminal: control characters (C0, DEL, C1: ANSI escapes, carriage
/// returns, newlines), Unicode format characters (bidi overrides, zero-width) and the
/// backslash itself become `\u{..}` / `\\` escapes, so a name from a server cannot recolour
/// the terminal, rewrite earlier lines or pose as another name. Plain names are unchanged.
/// Only for human output: `--json` prints the exact strings (JSON escapes them itself).
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c == '\\'
            || c.is_control()
            || matches!(c, '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{feff}')
            || ('\u{200b}'..='\u{200f}').contains(&c)
            || ('\u{2028}'..='\u{202e}').contains(&c)
            || ('\u{2060}'..='\u{206f}').contains(&c)
            || ('\u{fff9}'..='\u{fffb}').contains(&c)
    }
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Writes `text` to stdout as is.
pub(crate) fn print(text: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Stdout)
}

/// Writes one line to stdout.
pub(crate) fn print_line(line: &str) -> Result<(), Error> {
    print(&format!("{line}\n"))
}

/// Writes `value` to stdout as pretty JSON followed by a newline.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Internal(format!("cannot encode JSON output: {e}")))?;
    print_line(&text)
}

/// Replaces `path` with `contents` atomically: a temporary file in the same directory, synced,
/// then renamed over it, so readers see the old file or the new one, never half of one.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let failed = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // Signatures are public: 0644 before the umask, like any file the user creates.
    let mut temp = tempfile::Builder::new()
        .prefix(".sigil-")
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(failed)?;
    temp.write_all(contents).map_err(failed)?;
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

/// The `sigil key list` table: one row per key, columns aligned, `-` for no collection.
pub(crate) fn key_table(keys: &[KeyInfo]) -> String {
    const HEADER: [&str; 5] = ["KEY ID", "ALGORITHM", "ROLE", "GUN", "BACKEND"];
    let rows: Vec<[&str; 5]> = keys
        .iter()
        .map(|k| {
            [
                k.key_id.as_str(),
                k.algorithm().as_str(),
                k.role.as_str(),
                k.gun.as_deref().unwrap_or("-"),
                k.backend.as_str(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    for row in std::iter::once(&HEADER).chain(&rows) {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// A table as the notary client prints one: a header row, a row of dashes as long as each
/// header, then the rows; every column but the last padded to its widest cell plus four spaces.
/// Cells are [`escape`]d: they hold names and paths a server chose.
pub(crate) fn notary_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| escape(cell).into_owned()).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let dashes: Vec<String> = headers.iter().map(|h| "-".repeat(h.len())).collect();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in [&header, &dashes].into_iter().chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths[i] + 4 - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `ecdsa-p256 key for role targets, gun example.com/app, on backend hsm`.
pub(crate) fn describe_key(key: &KeyInfo) -> String {
    let gun = match &key.gun {
        Some(gun) => format!(", gun {gun}"),
        None => String::new(),
    };
    format!(
        "{} key for role {}{gun}, on backend {}",
        key.algorithm(),
        key.role,
        key.backend
    )
}

/// The `sigil key public` summary: labelled fields, then the PEM block.
pub(crate) fn key_summary(key: &KeyInfo) -> String {
    let device = key.device.as_ref().map_or_else(String::new, |d| {
        format!(
            "device:    YubiKey {} (touch {}, PIN {}, {})\n",
            d.serial,
            d.touch_policy.as_deref().unwrap_or("unknown"),
            d.pin_policy.as_deref().unwrap_or("unknown"),
            if d.attested {
                "attested"
            } else {
                "not attested"
            }
        )
    });
    format!(
        "key id:    {}\nalgorithm: {}\nrole:      {}\ngun:       {}\nbackend:   {}\n{device}{}",
        key.key_id,
        key.algorithm(),
        key.role,
        key.gun.as_deref().unwrap_or("-"),
        key.backend,
        key.public_key.to_pem()
    )
}

/// A DER certificate as a PEM `CERTIFICATE` block.
pub(crate) fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sigil_tuf::PublicKey;

    /// A fixed P-256 public key for output tests.
    pub(crate) fn sample_key(gun: Option<&str>) -> KeyInfo {
        let public_key = PublicKey::from_pem(
            "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEckdkDnUY0D5EAvhMCjAVFq/gJagl
njzqZfzl7SVdD1sqaYi5gmv4qDkbnCGJshESyRaeooNGYOwsIqFUeOIjPw==
-----END PUBLIC KEY-----",
        )
        .expect("test key");
        KeyInfo {
            key_id: public_key.key_id(),
            backend: "hsm".into(),
            role: "targets".into(),
            gun: gun.map(str::to_owned),
            device: None,
            public_key,
        }
    }

    #[test]
    fn notary_tables_look_like_notarys() {
        let rows = vec![
            vec![
                "hello.sh".into(),
                "9d9a".into(),
                "46".into(),
                "targets".into(),
            ],
            vec![
                "remove-me.txt".into(),
                "ab3e".into(),
                "31".into(),
                "targets".into(),
            ],
        ];
        let table = notary_table(&["NAME", "DIGEST", "SIZE (BYTES)", "ROLE"], &rows);
        assert_eq!(
            table,
            "NAME             DIGEST    SIZE (BYTES)    ROLE\n\
             ----             ------    ------------    ----\n\
             hello.sh         9d9a      46              targets\n\
             remove-me.txt    ab3e      31              targets\n"
        );
    }

    #[test]
    fn server_chosen_text_cannot_drive_the_terminal() {
        assert_eq!(escape("releases/app-1.0.tar.gz"), "releases/app-1.0.tar.gz");
        assert_eq!(escape("é/日本"), "é/日本");
        assert_eq!(escape("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape("x\rfake\nline"), "x\\u{d}fake\\u{a}line");
        assert_eq!(escape("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        let table = notary_table(
            &["NAME", "ROLE"],
            &[vec!["\u{1b}]0;pwned\u{7}x".into(), "targets".into()]],
        );
        assert!(
            !table.contains('\u{1b}') && !table.contains('\u{7}'),
            "{table:?}"
        );
        assert!(table.contains("\\u{1b}]0;pwned\\u{7}x"), "{table:?}");
        assert_eq!(table.lines().count(), 3);
    }

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sig.b64");
        std::fs::write(&path, "old").expect("seed");
        write_atomically(&path, b"new\n").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("sig.b64")]);

        let err = write_atomically(&dir.path().join("missing/sig"), b"x").expect_err("no dir");
        assert!(err.to_string().starts_with("cannot write "), "{err}");
    }

    #[test]
    fn table_aligns_columns_and_marks_unbound_keys() {
        let a = sample_key(Some("example.com/app"));
        let mut b = sample_key(None);
        b.role = "root".into();
        let table = key_table(&[a.clone(), b.clone()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        let pad = " ".repeat(64 - "KEY ID".len());
        assert_eq!(
            lines[0],
            format!("KEY ID{pad}  ALGORITHM   ROLE     GUN              BACKEND")
        );
        assert_eq!(
            lines[1],
            format!("{}  ecdsa-p256  targets  example.com/app  hsm", a.key_id)
        );
        assert_eq!(
            lines[2],
            format!("{}  ecdsa-p256  root     -                hsm", b.key_id)
        );
    }

    #[test]
    fn json_key_has_the_documented_fields() {
        let key = sample_key(None);
        let value = serde_json::to_value(KeyJson::from(&key)).expect("json");
        let object = value.as_object().expect("object");
        let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "algorithm",
                "backend",
                "gun",
                "key_id",
                "public_key_pem",
                "role"
            ]
        );
        assert_eq!(value["gun"], serde_json::Value::Null);
        assert_eq!(value["algorithm"], "ecdsa-p256");
        assert!(
            value["public_key_pem"]
                .as_str()
                .is_some_and(|p| p.starts_with("-----BEGIN PUBLIC KEY-----"))
        );
    }

    #[test]
    fn summaries_name_role_gun_and_backend() {
        let key = sample_key(Some("example.com/app"));
        assert_eq!(
            describe_key(&key),
            "ecdsa-p256 key for role targets, gun example.com/app, on backend hsm"
        );
        assert_eq!(
            describe_key(&sample_key(None)),
            "ecdsa-p256 key for role targets, on backend hsm"
        );
        let summary = key_summary(&key);
        assert!(summary.starts_with(&format!("key id:    {}\n", key.key_id)));
        assert!(summary.contains("\ngun:       example.com/app\n"));
        assert!(summary.ends_with("-----END PUBLIC KEY-----\n"));
    }
}
