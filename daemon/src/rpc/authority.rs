//! Lets every standard gRPC client use the Unix socket. grpc-core (Python grpcio, C++, Ruby)
//! sends the socket path percent-encoded as `:authority` (`%2Frun%2Fsigil%2Fsigild.sock`),
//! grpc-java sends it raw (`/run/sigil/sigild.sock`), grpc-go with a custom dialer (grpcurl
//! `-unix`) percent-encodes it too. None of these is an RFC 3986 authority, and h2's server
//! resets any stream whose `:authority` `http::uri::Authority` cannot parse (PROTOCOL_ERROR),
//! with no setting to relax it (hyperium/h2#487 is unmerged). The authority means nothing on a
//! Unix socket, so this reader, between the socket and h2, replaces one that does not parse
//! with `localhost` (what grpc-go and Kubernetes use for Unix sockets).
//!
//! It reads HTTP/2 frames from the client until the first request's HEADERS. If that request's
//! authority parses (tonic and grpc-go clients), the original bytes go on and the connection is
//! passed through untouched from then on: one header-block decode per connection. Otherwise
//! every header block on the connection is decoded and re-encoded (HPACK state is
//! per-connection, so it cannot switch back), and frames of other types are passed on as they
//! are. Bytes written to the client are never touched.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
/// Frame header length.
const FRAME_HEADER_LEN: usize = 9;
/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which hyper's server keeps: larger frames are
/// passed through for h2 to refuse.
const MAX_FRAME: usize = 16_384;
/// Largest header block (encoded, or decoded) this reader handles; h2 itself refuses header
/// lists over 16 KiB ([`super::MAX_HEADER_LIST_BYTES`]), so real requests are far below it.
const MAX_BLOCK: usize = 64 * 1024;
/// The authority put in place of one that does not parse.
const LOCALHOST: &[u8] = b"localhost";

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// What the reader does with the client's bytes.
enum Mode {
    /// Before the first request's headers: frames are parsed one by one.
    Undecided,
    /// Every header block is re-encoded.
    Rewrite,
    /// Bytes go to h2 unchanged and unparsed.
    Passthrough,
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    fragment: Vec<u8>,
    /// The frames as received, sent on unchanged if the block needs no rewriting.
    original: Vec<u8>,
}

/// A connection whose incoming request authorities are made acceptable to h2.
pub struct AuthorityFix<Io> {
    io: Io,
    mode: Mode,
    preface_done: bool,
    /// Bytes read from the client, not yet processed.
    raw: Vec<u8>,
    /// Bytes ready for h2, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

impl<Io> AuthorityFix<Io> {
    /// Wraps a freshly accepted connection.
    pub fn new(io: Io) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        // h2 advertises the default 4096-byte table; a client may not ask for more.
        decoder.set_max_allowed_table_size(4096);
        Self {
            io,
            mode: Mode::Undecided,
            preface_done: false,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            block: None,
            decoder,
            encoder: loona_hpack::Encoder::new(),
        }
    }

    /// Moves whatever can be processed from `raw` to `out`. Returns false when more input is
    /// needed.
    fn process(&mut self) -> io::Result<bool> {
        if let Mode::Passthrough = self.mode {
            if self.raw.is_empty() {
                return Ok(false);
            }
            self.out.append(&mut self.raw);
            return Ok(true);
        }
        if !self.preface_done {
            if self.raw.len() < PREFACE_LEN {
                return Ok(false);
            }
            self.out.extend(self.raw.drain(..PREFACE_LEN));
            self.preface_done = true;
            return Ok(true);
        }
        if self.raw.len() < FRAME_HEADER_LEN {
            return Ok(false);
        }
        let len = usize::from(self.raw[0]) << 16
            | usize::from(self.raw[1]) << 8
            | usize::from(self.raw[2]);
        let kind = self.raw[3];
        let flags = self.raw[4];
        let stream =
            u32::from_be_bytes([self.raw[5], self.raw[6], self.raw[7], self.raw[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            // h2 answers FRAME_SIZE_ERROR; nothing to rewrite in a connection that ends.
            return self.give_up();
        }
        if self.raw.len() < FRAME_HEADER_LEN + len {
            return Ok(false);
        }
        let frame: Vec<u8> = self.raw.drain(..FRAME_HEADER_LEN + len).collect();
        let payload = &frame[FRAME_HEADER_LEN..];
        match (kind, self.block.take()) {
            (HEADERS, None) => {
                let fragment = header_fragment(payload, flags)?;
                let block = Block {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    fragment: fragment.to_vec(),
                    original: frame.clone(),
                };
                if flags & END_HEADERS != 0 {
                    self.finish(block)?;
                } else {
                    self.block = Some(block);
                }
            }
            (CONTINUATION, Some(mut block)) if stream == block.stream => {
                block.fragment.extend_from_slice(payload);
                block.original.extend_from_slice(&frame);
                if block.fragment.len() > MAX_BLOCK {
                    return Err(invalid("header block too large"));
                }
                if flags & END_HEADERS != 0 {
                    self.finish(block)?;
                } else {
                    self.block = Some(block);
                }
            }
            (_, Some(_)) => return Err(invalid("header block interrupted")),
            (_, None) => self.out.extend_from_slice(&frame),
        }
        Ok(true)
    }

    /// Hands everything from here on to h2 unchanged.
    fn give_up(&mut self) -> io::Result<bool> {
        self.mode = Mode::Passthrough;
        self.out.append(&mut self.raw);
        Ok(true)
    }

    /// A complete header block: decides the mode on the first one, then passes it on or
    /// re-encodes it.
    fn finish(&mut self, block: Block) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(
                &block.fragment,
                |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                    size = size.saturating_add(name.len() + value.len() + 32);
                    if size <= MAX_BLOCK {
                        fields.push((name.into_owned(), value.into_owned()));
                    }
                },
            )
            .map_err(|e| invalid(&format!("header block: {e:?}")))?;
        if size > MAX_BLOCK {
            return Err(invalid("header list too large"));
        }
        let mut rewritten = false;
        for (name, value) in &mut fields {
            if name.as_slice() == b":authority"
                && http::uri::Authority::try_from(value.as_slice()).is_err()
            {
                *value = LOCALHOST.to_vec();
                rewritten = true;
            }
        }
        if let Mode::Undecided = self.mode {
            if !rewritten {
                self.out.extend_from_slice(&block.original);
                self.mode = Mode::Passthrough;
                self.out.append(&mut self.raw);
                return Ok(());
            }
            self.mode = Mode::Rewrite;
        }
        let encoded = self
            .encoder
            .encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut chunks = encoded.chunks(MAX_FRAME).peekable();
        let mut kind = HEADERS;
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if chunks.peek().is_none() {
            frame_into(&mut self.out, kind, flags | END_HEADERS, block.stream, &[]);
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let f = if last { flags | END_HEADERS } else { flags };
            frame_into(&mut self.out, kind, f, block.stream, chunk);
            kind = CONTINUATION;
            flags = 0;
        }
        Ok(())
    }
}

/// The header block fragment of a HEADERS payload, without padding and priority fields.
fn header_fragment(payload: &[u8], flags: u8) -> io::Result<&[u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = usize::from(*payload.first().ok_or_else(|| invalid("padding"))?);
        start = 1;
        end = end
            .checked_sub(pad)
            .filter(|e| *e >= start)
            .ok_or_else(|| invalid("padding"))?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or_else(|| invalid("HEADERS frame too short"))
}

fn frame_into(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from client: {what}"),
    )
}

impl<Io: AsyncRead + Unpin> AsyncRead for AuthorityFix<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Mode::Passthrough = this.mode
                && this.raw.is_empty()
            {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            if this.process()? {
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of input: what is left is an incomplete frame; h2 sees it and the end.
                if this.raw.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.mode = Mode::Passthrough;
                continue;
            }
            this.raw.extend_from_slice(read.filled());
        }
    }
}

forward_async_write!(AuthorityFix);

impl<Io: Connected> Connected for AuthorityFix<Io> {
    type ConnectInfo = Io::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn request(encoder: &mut loona_hpack::Encoder<'_>, authority: &[u8], stream: u32) -> Vec<u8> {
        let block = encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/sigil.v1.Keys/ListKeys"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ]);
        let mut out = Vec::new();
        frame_into(&mut out, HEADERS, END_HEADERS, stream, &block);
        out
    }

    /// What h2 would read after `input`, decoded back into each block's authority.
    async fn through(input: Vec<u8>) -> (Vec<u8>, Vec<Vec<u8>>) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.expect("write");
        drop(client);
        let mut fixed = AuthorityFix::new(server);
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.expect("read");
        let mut decoder = loona_hpack::Decoder::new();
        let mut authorities = Vec::new();
        let mut rest = &out[PREFACE_LEN..];
        while rest.len() >= FRAME_HEADER_LEN {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let payload = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
            if rest[3] == HEADERS {
                for (name, value) in decoder.decode(payload).expect("decodes") {
                    if name == b":authority" {
                        authorities.push(value);
                    }
                }
            }
            rest = &rest[FRAME_HEADER_LEN + len..];
        }
        (out, authorities)
    }

    #[tokio::test]
    async fn socket_paths_as_authority_become_localhost_on_every_request() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        frame_into(&mut input, 0x4, 0, 0, &[]);
        input.extend(request(&mut encoder, b"%2Frun%2Fsigil%2Fsigild.sock", 1));
        frame_into(&mut input, 0x0, END_STREAM, 1, b"\0\0\0\0\0");
        // The second request's authority comes from the client's dynamic table.
        input.extend(request(&mut encoder, b"%2Frun%2Fsigil%2Fsigild.sock", 3));
        input.extend(request(&mut encoder, b"/run/sigil/sigild.sock", 5));
        input.extend(request(&mut encoder, b"localhost", 7));
        let (out, authorities) = through(input).await;
        assert_eq!(&out[..PREFACE_LEN], PREFACE);
        assert_eq!(authorities, vec![LOCALHOST.to_vec(); 4]);
    }

    #[tokio::test]
    async fn a_valid_authority_passes_the_connection_through_byte_for_byte() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(request(&mut encoder, b"[::]:50051", 1));
        // Later requests are not looked at any more.
        input.extend(request(&mut encoder, b"/not/looked/at", 3));
        let (out, _) = through(input.clone()).await;
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn a_header_block_bomb_is_refused() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        // One 4000-byte header, then thousands of one-byte references to it.
        let big = vec![b'a'; 4000];
        let mut block = encoder.encode([(&b"x-big"[..], big.as_slice())]);
        block.extend(std::iter::repeat_n(0xbe_u8, 8000));
        frame_into(&mut input, HEADERS, END_HEADERS, 1, &block);
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.expect("write");
        drop(client);
        let mut fixed = AuthorityFix::new(server);
        let mut out = Vec::new();
        assert!(fixed.read_to_end(&mut out).await.is_err());
    }
}
