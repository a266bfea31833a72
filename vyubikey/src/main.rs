//! vyubikey: a virtual YubiKey 5 (PIV) for tests.
//!
//! piv-authenticator (unmodified) runs on trussed's RAM-backed virt platform;
//! `card.rs` adds what a YubiKey 5 does on top; `vpcd.rs` plugs the card into
//! vsmartcard's vpcd reader inside pcscd over 127.0.0.1.

mod card;
mod control;
mod dispatch;
mod vpcd;
mod x509;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use piv_authenticator::{Authenticator, Options};
use trussed::virt::{self, StoreConfig};

const USAGE: &str = "\
usage: vyubikey --port PORT [options]
       vyubikey ctl SOCKET COMMAND...   send one control command, print the reply

  --port PORT              vpcd port on 127.0.0.1 (reader.conf CHANNELID/DEVICENAME /dev/null:PORT)
  --serial N               serial number reported by GET SERIAL (default 5437251)
  --control PATH           Unix socket for test control (touch, status, remove, insert, auto-touch on|off)
  --attestation-ca-key F   PEM PKCS#8 P-256 key of the attestation root CA } loaded if both exist,
  --attestation-ca-cert F  PEM certificate of the attestation root CA      } else generated and written
  --touch-timeout SECS     how long a touch-policy sign waits for a touch (default 15)
  --auto-touch             grant every touch at once (can be toggled over --control)
  --connect-wait SECS      how long to keep retrying to reach vpcd (default 30)
  --trace                  log every APDU and response to stderr
";

struct Args {
    port: u16,
    serial: u32,
    control: Option<PathBuf>,
    ca_key: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    touch_timeout: Duration,
    auto_touch: bool,
    connect_wait: Duration,
    trace: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        port: 0,
        serial: 5437251,
        control: None,
        ca_key: None,
        ca_cert: None,
        touch_timeout: Duration::from_secs(15),
        auto_touch: false,
        connect_wait: Duration::from_secs(30),
        trace: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => a.port = val()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--serial" => a.serial = val()?.parse().map_err(|e| format!("--serial: {e}"))?,
            "--control" => a.control = Some(val()?.into()),
            "--attestation-ca-key" => a.ca_key = Some(val()?.into()),
            "--attestation-ca-cert" => a.ca_cert = Some(val()?.into()),
            "--touch-timeout" => {
                let s: f64 = val()?
                    .parse()
                    .map_err(|e| format!("--touch-timeout: {e}"))?;
                a.touch_timeout = Duration::from_secs_f64(s);
            }
            "--connect-wait" => {
                let s: f64 = val()?.parse().map_err(|e| format!("--connect-wait: {e}"))?;
                a.connect_wait = Duration::from_secs_f64(s);
            }
            "--auto-touch" => a.auto_touch = true,
            "--trace" => a.trace = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.port == 0 {
        return Err("--port is required".into());
    }
    Ok(a)
}

/// Loads the attestation root CA, or makes one (and writes it if asked),
/// then issues this card's F9 attestation certificate from it.
fn attestation(args: &Args) -> Result<card::Attestation, String> {
    let now = x509::now();
    let (root_key, root_cert) = match (&args.ca_key, &args.ca_cert) {
        (Some(k), Some(c)) if k.exists() && c.exists() => {
            let kp = std::fs::read_to_string(k).map_err(|e| format!("{}: {e}", k.display()))?;
            let key =
                SigningKey::from_pkcs8_pem(&kp).map_err(|e| format!("{}: {e}", k.display()))?;
            let cp = std::fs::read(c).map_err(|e| format!("{}: {e}", c.display()))?;
            let (_, der) = p256::pkcs8::der::pem::decode_vec(&cp)
                .map_err(|e| format!("{}: {e}", c.display()))?;
            (key, der)
        }
        _ => {
            let key = SigningKey::random(&mut rand_core::OsRng);
            let point = key.verifying_key().to_encoded_point(false);
            let name = x509::name_cn("vyubikey Test PIV Attestation Root CA");
            let cert = x509::build_cert(
                &x509::CertSpec {
                    serial: &[0x01],
                    issuer: &name,
                    subject: &name,
                    not_before: now - 3600,
                    not_after: now + 20 * 365 * 86400,
                    spki: &x509::spki_p256(point.as_bytes()),
                    ca: true,
                    extra_exts: vec![],
                },
                &key,
            );
            if let (Some(k), Some(c)) = (&args.ca_key, &args.ca_cert) {
                let kp = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| format!("encoding CA key: {e}"))?;
                std::fs::write(k, kp.as_bytes()).map_err(|e| format!("{}: {e}", k.display()))?;
                std::fs::write(c, x509::pem("CERTIFICATE", &cert))
                    .map_err(|e| format!("{}: {e}", c.display()))?;
            }
            (key, cert)
        }
    };
    let issuer =
        x509::cert_subject(&root_cert).ok_or("cannot read the CA certificate's subject")?;
    let f9_key = SigningKey::random(&mut rand_core::OsRng);
    let point = f9_key.verifying_key().to_encoded_point(false);
    let mut serial = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7f;
    let f9_cert = x509::build_cert(
        &x509::CertSpec {
            serial: &serial,
            issuer: &issuer,
            subject: &x509::name_cn("Yubico PIV Attestation"),
            not_before: now - 3600,
            not_after: now + 10 * 365 * 86400,
            spki: &x509::spki_p256(point.as_bytes()),
            ca: true,
            extra_exts: vec![],
        },
        &root_key,
    );
    Ok(card::Attestation { f9_key, f9_cert })
}

/// `vyubikey ctl SOCKET COMMAND...`: a client for the control socket, so
/// tests and scripts need no socat/nc/python.
fn ctl(mut argv: impl Iterator<Item = String>) -> ExitCode {
    use std::io::{BufRead, BufReader, Write};
    let (Some(path), cmd) = (argv.next(), argv.collect::<Vec<_>>().join(" ")) else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let run = || -> std::io::Result<String> {
        let mut s = std::os::unix::net::UnixStream::connect(&path)?;
        writeln!(s, "{cmd}")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(line.trim_end().to_string())
    };
    match run() {
        Ok(reply) => {
            println!("{reply}");
            if reply.starts_with("error") {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("vyubikey ctl: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("ctl") {
        argv.next();
        return ctl(argv);
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("vyubikey: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let attest = match attestation(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vyubikey: attestation CA: {e}");
            return ExitCode::FAILURE;
        }
    };
    let control = control::Control::new(args.auto_touch);
    if let Some(path) = &args.control {
        if let Err(e) = control.listen(path) {
            eprintln!("vyubikey: control socket {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }

    let options = Options::new()
        .label(b"vyubikey")
        .url(b"https://example.invalid/sigil/vyubikey");
    virt::with_platform(StoreConfig::ram(), |platform| {
        platform.run_client_with_backends(
            "piv",
            dispatch::Dispatcher::new(),
            dispatch::BACKENDS,
            |client| {
                let piv = Authenticator::new(client, options);
                let mut card = card::YkCard::new(
                    piv,
                    args.serial,
                    attest,
                    control.clone(),
                    args.touch_timeout,
                );
                run(&args, &mut card, &control)
            },
        )
    })
}

/// Keeps the card in the reader: (re)connects to vpcd while the card is
/// "present", closes the connection while it is "removed".
fn run<C: vpcd::Card>(args: &Args, card: &mut C, control: &control::Control) -> ExitCode {
    let mut first = true;
    loop {
        if !control.present() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let wait = if first {
            args.connect_wait
        } else {
            Duration::from_secs(5)
        };
        let mut stream = match vpcd::connect(args.port, wait) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "vyubikey: cannot reach vpcd on 127.0.0.1:{}: {e}",
                    args.port
                );
                return ExitCode::FAILURE;
            }
        };
        if first {
            eprintln!(
                "vyubikey: card inserted (vpcd 127.0.0.1:{}, serial {}, firmware 5.4.3)",
                args.port, args.serial
            );
        }
        first = false;
        match vpcd::serve(&mut stream, card, args.trace, || !control.present()) {
            Ok(()) if !control.present() => {
                card.power_off();
                eprintln!("vyubikey: card removed");
            }
            Ok(()) => {
                eprintln!("vyubikey: vpcd closed the connection; exiting");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("vyubikey: vpcd connection: {e}; exiting");
                return ExitCode::FAILURE;
            }
        }
    }
}
