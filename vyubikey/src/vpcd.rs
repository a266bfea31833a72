//! The vpcd wire protocol, card side.
//!
//! vsmartcard's `vpcd` reader driver (inside pcscd) listens on a TCP port;
//! the card connects to it. Every message either way is a 2-byte big-endian
//! length followed by that many bytes. A 1-byte message from the reader is a
//! control code (0 power off, 1 power on, 2 reset, 4 "send me your ATR",
//! which is answered with the ATR); anything longer is a command APDU,
//! answered with the response APDU.
//!
//! vpcd writes length and body in two `send()` calls; with Nagle on its side
//! and delayed ACKs on ours that costs ~40 ms per APDU. We re-arm
//! `TCP_QUICKACK` before every read and answer with a single write.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// What the reader can ask of a card.
pub trait Card {
    fn atr(&self) -> Vec<u8>;
    fn power_on(&mut self);
    fn power_off(&mut self);
    fn reset(&mut self);
    fn transmit(&mut self, apdu: &[u8]) -> Vec<u8>;
}

const CTRL_OFF: u8 = 0;
const CTRL_ON: u8 = 1;
const CTRL_RESET: u8 = 2;
const CTRL_ATR: u8 = 4;

fn quickack(stream: &TcpStream) {
    let one: libc::c_int = 1;
    // SAFETY: plain setsockopt on a socket we own, with a correctly sized int.
    #[allow(unsafe_code)]
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Connects to vpcd on 127.0.0.1:`port`, retrying until `wait` has passed.
pub fn connect(port: u16, wait: Duration) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = std::time::Instant::now() + wait;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Serves one vpcd connection until the reader goes away (Ok) or an I/O
/// error happens. `stop` is polled between messages (the socket has a read
/// timeout for that purpose); when it returns true the connection is closed,
/// which pcscd sees as the card being removed.
pub fn serve<C: Card>(
    stream: &mut TcpStream,
    card: &mut C,
    trace: bool,
    mut stop: impl FnMut() -> bool,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    loop {
        quickack(stream);
        let mut len = [0u8; 2];
        match read_exact_or_idle(stream, &mut len, &mut stop)? {
            ReadOutcome::Done => {}
            ReadOutcome::Eof => return Ok(()),
            ReadOutcome::Stopped => return Ok(()),
        }
        let n = u16::from_be_bytes(len) as usize;
        let mut msg = vec![0u8; n];
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.read_exact(&mut msg)?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        let reply = if n == 1 {
            match msg[0] {
                CTRL_OFF => {
                    card.power_off();
                    None
                }
                CTRL_ON => {
                    card.power_on();
                    None
                }
                CTRL_RESET => {
                    card.reset();
                    None
                }
                CTRL_ATR => Some(card.atr()),
                other => {
                    eprintln!("vyubikey: unknown vpcd control byte {other:#04x}");
                    None
                }
            }
        } else {
            let r = card.transmit(&msg);
            if trace {
                eprintln!("vyubikey: > {}", hex(&msg));
                eprintln!("vyubikey: < {}", hex(&r));
            }
            Some(r)
        };
        if let Some(r) = reply {
            let mut out = Vec::with_capacity(r.len() + 2);
            out.extend_from_slice(&(r.len() as u16).to_be_bytes());
            out.extend_from_slice(&r);
            stream.write_all(&out)?;
        }
    }
}

enum ReadOutcome {
    Done,
    Eof,
    Stopped,
}

/// Reads exactly `buf.len()` bytes, but while nothing has arrived yet
/// returns `Stopped` as soon as `stop()` says so.
fn read_exact_or_idle(
    stream: &mut TcpStream,
    buf: &mut [u8],
    stop: &mut impl FnMut() -> bool,
) -> io::Result<ReadOutcome> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(k) => got += k,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if got == 0 && stop() {
                    return Ok(ReadOutcome::Stopped);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ReadOutcome::Done)
}

pub fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}
