//! permessage-deflate (RFC 7692): negotiation of its four parameters in
//! both roles, and the compressor and decompressor a connection uses.
//!
//! A compressed message is the raw DEFLATE stream of its payload, flushed
//! with a sync flush and with the final `00 00 ff ff` removed (§7.2.1); the
//! first frame carries RSV1. The receiver appends `00 00 ff ff` and inflates
//! (§7.2.2). With "no context takeover" a side resets its compressor after
//! every message; otherwise the LZ77 window carries over between messages.
//!
//! Inflation is streamed into a buffer that never grows past the message
//! size limit: a decompression bomb fails with 1009 after at most that many
//! bytes, not after the inflated size. It can also go in bounded steps (at
//! most so many bytes of output per call, the rest of the input kept by
//! the caller), which is how a streaming reader holds at most one step of
//! inflated data whatever the message size.
//!
//! zlib (and zlib-rs) cannot compress with an 8-bit window (a request for 8
//! gives 9, which a peer limited to 8 may fail to inflate). When the
//! negotiated window for our direction is 8 we therefore send every message
//! uncompressed, which RFC 7692 always allows; decompression with an 8-bit
//! window uses 9, which inflates any stream made with 8.

use crate::error::ProtocolError;
use crate::extensions::{Extension, ExtensionParam};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// Most idle compressors or decompressors kept per thread.
const POOL_SIZE: usize = 4;

thread_local! {
    /// Compressors without context takeover are reset after every message,
    /// so a connection does not need its own between messages: they are
    /// shared per thread, keyed by (window bits, level). A server with
    /// 10,000 connections then holds a handful of compressors, not 10,000.
    static COMPRESSORS: RefCell<Vec<(u8, u32, Compress)>> = const { RefCell::new(Vec::new()) };
    /// The same for decompressors, keyed by window bits; a connection holds
    /// one only while a compressed message is arriving.
    static DECOMPRESSORS: RefCell<Vec<(u8, Decompress)>> = const { RefCell::new(Vec::new()) };
}

fn take_compressor(bits: u8, level: u32) -> Compress {
    COMPRESSORS
        .with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|(b, l, _)| *b == bits && *l == level)?;
            Some(p.swap_remove(i).2)
        })
        .unwrap_or_else(|| Compress::new_with_window_bits(Compression::new(level), false, bits))
}

fn put_compressor(bits: u8, level: u32, c: Compress) {
    COMPRESSORS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_SIZE {
            p.push((bits, level, c));
        }
    })
}

fn take_decompressor(bits: u8) -> Decompress {
    DECOMPRESSORS
        .with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|(b, _)| *b == bits)?;
            Some(p.swap_remove(i).1)
        })
        .unwrap_or_else(|| Decompress::new_with_window_bits(false, bits))
}

fn put_decompressor(bits: u8, d: Decompress) {
    DECOMPRESSORS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_SIZE {
            p.push((bits, d));
        }
    })
}

/// The extension token.
pub(crate) const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The four bytes a sync flush ends with, removed by senders (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Settings for permessage-deflate: what a client offers and what a server
/// accepts.
///
/// Defaults (and why):
/// - Offered by clients and accepted by servers, as browsers and the common
///   servers do.
/// - Messages under 1 KiB go uncompressed: small messages gain little and
///   cost a compressor call.
/// - Compression level 6 (zlib's default).
/// - A client ([`DeflateConfig::default`]) keeps context takeover in both
///   directions with full 2^15 windows: the best ratio, and a client has few
///   connections.
/// - A server ([`DeflateConfig::server_default`]) answers with
///   `server_no_context_takeover; client_no_context_takeover`. With context
///   takeover a connection must keep its compressor (~300 KiB with zlib-rs)
///   and decompressor (~48 KiB) between messages; without it they are
///   shared per thread, so an idle connection with compression negotiated
///   holds no zlib state at all (measured: 1.8 KiB per idle connection
///   instead of 307 KiB, `cargo bench -p wsx --bench idle -- --deflate`).
///   The cost is ratio on streams of small similar messages; a server that
///   wants it back and can afford the memory uses `DeflateConfig::default()`.
///
/// Compressors and decompressors are created on first use, so a connection
/// that never sends or receives a compressed message pays nothing.
///
/// ```
/// use wsx_proto::deflate::DeflateConfig;
/// let c = DeflateConfig::default().with_server_max_window_bits(10).with_threshold(0);
/// assert_eq!(c.server_max_window_bits(), 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    threshold: usize,
    level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            threshold: 1024,
            level: 6,
        }
    }
}

impl DeflateConfig {
    /// The settings a server uses by default: no context takeover in either
    /// direction, so compressor and decompressor state is shared per thread
    /// instead of held per connection.
    pub fn server_default() -> Self {
        Self { server_no_context_takeover: true, client_no_context_takeover: true, ..Self::default() }
    }

    /// Ask (client) or require (server) that the server resets its
    /// compressor after each message.
    pub fn with_server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Ask (server) or promise (client) that the client resets its
    /// compressor after each message.
    pub fn with_client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Largest LZ77 window of the server's compressor, 8–15.
    pub fn with_server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// Largest LZ77 window of the client's compressor, 8–15.
    pub fn with_client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// Messages shorter than this go uncompressed (default 1024 bytes).
    pub fn with_threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Compression level 0–9 (default 6).
    pub fn with_level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// See [`DeflateConfig::with_server_no_context_takeover`].
    pub fn server_no_context_takeover(&self) -> bool {
        self.server_no_context_takeover
    }
    /// See [`DeflateConfig::with_client_no_context_takeover`].
    pub fn client_no_context_takeover(&self) -> bool {
        self.client_no_context_takeover
    }
    /// See [`DeflateConfig::with_server_max_window_bits`].
    pub fn server_max_window_bits(&self) -> u8 {
        self.server_max_window_bits
    }
    /// See [`DeflateConfig::with_client_max_window_bits`].
    pub fn client_max_window_bits(&self) -> u8 {
        self.client_max_window_bits
    }
    /// See [`DeflateConfig::with_threshold`].
    pub fn threshold(&self) -> usize {
        self.threshold
    }
    /// See [`DeflateConfig::with_level`].
    pub fn level(&self) -> u32 {
        self.level
    }

    /// The client's offer (§5): `permessage-deflate` with
    /// `client_max_window_bits` (announcing support, with a value when
    /// limited), and the other parameters when they differ from the default.
    ///
    /// ```
    /// use wsx_proto::deflate::DeflateConfig;
    /// assert_eq!(DeflateConfig::default().client_offer(), "permessage-deflate; client_max_window_bits");
    /// ```
    pub fn client_offer(&self) -> String {
        let mut s = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            s.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        if self.client_max_window_bits < 15 {
            s.push_str(&format!("; client_max_window_bits={}", self.client_max_window_bits));
        } else {
            s.push_str("; client_max_window_bits");
        }
        s
    }
}

/// What was negotiated: the effective parameters of both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's compressor window, 8–15.
    pub server_max_window_bits: u8,
    /// The client's compressor window, 8–15.
    pub client_max_window_bits: u8,
    /// Messages shorter than this are sent uncompressed (local setting).
    pub threshold: usize,
    /// Compression level (local setting).
    pub level: u32,
}

/// A parameter block that is not a valid permessage-deflate offer or
/// response (unknown, repeated or out-of-range parameter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid permessage-deflate parameters: {0}")]
pub struct InvalidDeflateParams(pub String);

/// Parsed parameters of one offer or response.
#[derive(Debug, Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(p: &ExtensionParam) -> Result<u8, InvalidDeflateParams> {
    // §7.1.2: a decimal integer 8-15 with no leading zeros.
    let v = p.value.as_deref().unwrap_or("");
    match v.parse::<u8>() {
        Ok(b @ 8..=15) if !v.starts_with('0') => Ok(b),
        _ => Err(InvalidDeflateParams(format!("{}={v:?}", p.name))),
    }
}

fn parse_params(ext: &Extension) -> Result<Params, InvalidDeflateParams> {
    let mut out = Params::default();
    let mut seen: Vec<&str> = Vec::new();
    for p in &ext.params {
        if seen.contains(&p.name.as_str()) {
            return Err(InvalidDeflateParams(format!("{} repeated", p.name)));
        }
        seen.push(&p.name);
        match p.name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" if p.value.is_some() => {
                return Err(InvalidDeflateParams(format!("{} takes no value", p.name)))
            }
            "server_no_context_takeover" => out.server_no_context_takeover = true,
            "client_no_context_takeover" => out.client_no_context_takeover = true,
            "server_max_window_bits" => out.server_max_window_bits = Some(window_bits(p)?),
            "client_max_window_bits" => {
                out.client_max_window_bits = Some(match p.value {
                    None => None,
                    Some(_) => Some(window_bits(p)?),
                })
            }
            other => return Err(InvalidDeflateParams(format!("unknown parameter {other}"))),
        }
    }
    Ok(out)
}

/// Server side (§7.1): take the first acceptable permessage-deflate offer
/// among the extensions a request offers ([`UpgradeRequest::extensions`]).
/// Offers with unknown, repeated or invalid parameters are declined, as are
/// other extensions (`x-webkit-deflate-frame`, `deflate-stream` are never
/// negotiated). Returns the negotiated parameters, for the connection, and
/// the `Sec-WebSocket-Extensions` value, for the 101 response.
///
/// ```
/// use wsx_proto::deflate::{server_negotiate, DeflateConfig};
/// use wsx_proto::handshake::{Accept, UpgradeRequest};
/// use wsx_proto::{Config, Connection, Role};
/// let request = http::Request::get("/chat")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")
///     .body(()).unwrap();
/// let upgrade = UpgradeRequest::from_request(request).unwrap();
/// let (params, header) = server_negotiate(&DeflateConfig::server_default(), upgrade.extensions()).unwrap();
/// assert_eq!(header, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
/// let response = upgrade.accept(&Accept::new(), Some(&header)).unwrap();
/// assert_eq!(response.headers()["sec-websocket-extensions"], header.as_str());
/// let server = Connection::with_deflate(Role::Server, &Config::default(), Some(&params));
/// assert!(server.writer.compression_enabled());
/// ```
///
/// [`UpgradeRequest::extensions`]: crate::handshake::UpgradeRequest::extensions
pub fn server_negotiate(config: &DeflateConfig, offers: &[Extension]) -> Option<(DeflateParams, String)> {
    for offer in offers.iter().filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE)) {
        let Ok(p) = parse_params(offer) else { continue };
        let server_nct = p.server_no_context_takeover || config.server_no_context_takeover;
        let client_nct = p.client_no_context_takeover || config.client_no_context_takeover;
        let server_bits = p.server_max_window_bits.unwrap_or(15).min(config.server_max_window_bits);
        let (client_bits, send_client_bits) = match p.client_max_window_bits {
            // The client did not announce support: it uses up to 15 and the
            // response must not carry the parameter (§7.1.2.2).
            None => (15, false),
            Some(v) => {
                let b = v.unwrap_or(15).min(config.client_max_window_bits);
                (b, b < 15 || v.is_some())
            }
        };
        let mut header = String::from(PERMESSAGE_DEFLATE);
        if server_nct {
            header.push_str("; server_no_context_takeover");
        }
        if client_nct {
            header.push_str("; client_no_context_takeover");
        }
        if server_bits < 15 || p.server_max_window_bits.is_some() {
            header.push_str(&format!("; server_max_window_bits={server_bits}"));
        }
        if send_client_bits {
            header.push_str(&format!("; client_max_window_bits={client_bits}"));
        }
        let params = DeflateParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            threshold: config.threshold,
            level: config.level,
        };
        return Some((params, header));
    }
    None
}

/// Client side (§7.1): check the server's response to our offer
/// ([`DeflateConfig::client_offer`], sent as `Sec-WebSocket-Extensions`),
/// given the extensions the response accepted ([`Negotiated::extensions`]).
/// `Ok(None)` when the server did not accept permessage-deflate; an error
/// (the client must fail the connection) when the response has an unknown,
/// repeated or invalid parameter, a parameter the offer did not allow,
/// lacks one the server had to include, or names the extension more than
/// once.
///
/// ```
/// use wsx_proto::deflate::{client_accept_response, DeflateConfig};
/// use wsx_proto::handshake::ClientHandshake;
/// let config = DeflateConfig::default();
/// let request = http::Request::get("ws://example.com/chat")
///     .header("sec-websocket-extensions", config.client_offer())
///     .body(()).unwrap();
/// let (_bytes, client) = ClientHandshake::new_with_key(request, [7; 16]).unwrap();
/// let response = http::Response::builder()
///     .status(101)
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-accept", "CdXSYUsvsaMthlEXWDNURGWA/1o=")
///     .header("sec-websocket-extensions", "permessage-deflate; server_max_window_bits=10")
///     .body(()).unwrap();
/// let negotiated = client.check_response(&response).unwrap();
/// let params = client_accept_response(&config, &negotiated.extensions).unwrap().unwrap();
/// assert_eq!(params.server_max_window_bits, 10);
/// ```
///
/// [`Negotiated::extensions`]: crate::handshake::Negotiated::extensions
pub fn client_accept_response(
    config: &DeflateConfig,
    response: &[Extension],
) -> Result<Option<DeflateParams>, InvalidDeflateParams> {
    let mut found = response.iter().filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE));
    let Some(resp) = found.next() else { return Ok(None) };
    if found.next().is_some() {
        return Err(InvalidDeflateParams("permessage-deflate accepted twice".into()));
    }
    let p = parse_params(resp)?;
    if config.server_no_context_takeover && !p.server_no_context_takeover {
        return Err(InvalidDeflateParams("server_no_context_takeover was requested".into()));
    }
    let server_bits = match p.server_max_window_bits {
        Some(b) if b > config.server_max_window_bits => {
            return Err(InvalidDeflateParams(format!("server_max_window_bits={b} is over the offered limit")))
        }
        Some(b) => b,
        None if config.server_max_window_bits < 15 => {
            return Err(InvalidDeflateParams("server_max_window_bits was requested".into()))
        }
        None => 15,
    };
    let client_bits = match p.client_max_window_bits {
        Some(None) => return Err(InvalidDeflateParams("client_max_window_bits needs a value in a response".into())),
        Some(Some(b)) => b.min(config.client_max_window_bits),
        None => config.client_max_window_bits,
    };
    Ok(Some(DeflateParams {
        server_no_context_takeover: p.server_no_context_takeover,
        client_no_context_takeover: p.client_no_context_takeover || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        threshold: config.threshold,
        level: config.level,
    }))
}

/// The sending side's compressor. Created on first use.
pub(crate) struct Deflater {
    inner: Option<Compress>,
    bits: u8,
    reset_each: bool,
    level: u32,
    threshold: usize,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").field("bits", &self.bits).field("active", &self.inner.is_some()).finish()
    }
}

impl Deflater {
    pub(crate) fn new(bits: u8, reset_each: bool, level: u32, threshold: usize) -> Self {
        Self { inner: None, bits, reset_each, level, threshold }
    }

    /// Whether a message of `len` bytes should be compressed.
    pub(crate) fn wants(&self, len: usize) -> bool {
        self.bits >= 9 && len >= self.threshold
    }

    /// What the compressed bytes of a message depend on besides the
    /// message, when nothing else (no context takeover, §7.1.1.1): equal
    /// keys compress a payload to equal bytes, so one compressed frame can
    /// be sent on every connection with that key. `None` with context
    /// takeover: the bytes depend on the messages sent before. Every
    /// setting that changes the compressor's output belongs in the key.
    pub(crate) fn shared_key(&self) -> Option<crate::prepared::CompressKey> {
        self.reset_each.then_some((self.bits, self.level))
    }

    /// Compress one whole message (§7.2.1), appending to `out`.
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let (bits, level) = (self.bits, self.level);
        if self.reset_each {
            // No context takeover: borrow the thread's compressor.
            let mut c = take_compressor(bits, level);
            run_compress(&mut c, input, out);
            c.reset();
            put_compressor(bits, level, c);
            return;
        }
        let c = self.inner.get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(level), false, bits));
        run_compress(c, input, out);
    }
}

fn run_compress(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    if input.is_empty() {
        // An empty message is one empty stored block: `00` once the tail is
        // removed (§7.2.3.6). Not asked of zlib: a sync flush with no input
        // since the previous one (an empty message with context takeover)
        // produces no bytes at all, and an empty payload with RSV1 does not
        // inflate (the receiver's appended `00 00 ff ff` becomes a stored
        // block with invalid lengths, breaking every later message). The
        // stream is byte-aligned after every message, so `00` always fits.
        out.push(0x00);
        return;
    }
    let start_in = c.total_in();
    out.reserve(input.len() / 2 + 64);
    loop {
        let consumed = (c.total_in() - start_in) as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        // Compressing from memory into memory cannot fail.
        let _ = c.compress_vec(&input[consumed..], out, FlushCompress::Sync);
        let consumed = (c.total_in() - start_in) as usize;
        // Done when all input is in and the flush had room to finish.
        if consumed == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - 4);
    }
}

/// The receiving side's decompressor. Created on first use.
pub(crate) struct Inflater {
    inner: Option<Decompress>,
    bits: u8,
    reset_each: bool,
    /// The message's DEFLATE stream ended with a final block (BFINAL set,
    /// RFC 7692 §7.2.3.4): the rest of the message is not inflated, and the
    /// next message starts a new stream.
    ended: bool,
    /// Bytes of the appended `00 00 ff ff` (§7.2.2) already inflated, when
    /// the last frame's inflation is done in several steps.
    tail: u8,
}

/// What one call of [`Inflater::inflate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inflated {
    /// Input bytes consumed; the caller passes the rest again.
    pub(crate) consumed: usize,
    /// All the input is inflated and no output is pending (with `last`:
    /// the message is complete). `false`: the output reached `max_out` new
    /// bytes first, and more follows from the next call.
    pub(crate) done: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("bits", &self.bits).field("active", &self.inner.is_some()).finish()
    }
}

impl Inflater {
    pub(crate) fn new(bits: u8, reset_each: bool) -> Self {
        Self { inner: None, bits: bits.max(9), reset_each, ended: false, tail: 0 }
    }

    /// Inflate `input`, payload bytes of a compressed message, appending to
    /// `out`: until all of it is inflated, or until `out` has grown by
    /// `max_out` bytes (a bounded step: the caller hands those out and calls
    /// again with the input not consumed). `out` never grows past `limit`
    /// bytes in all (a decompression bomb fails with 1009 after at most that
    /// much); its spare capacity on entry must not exceed `max_out`. `last`:
    /// `input` ends the message's last frame, and the removed `00 00 ff ff`
    /// tail is inflated after it (§7.2.2).
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
        max_out: usize,
    ) -> Result<Inflated, ProtocolError> {
        let r = self.feed(input, last, out, limit, max_out);
        match r {
            Err(_) => {
                // The stream state is unusable; never return it to the pool.
                self.inner = None;
                self.ended = false;
                self.tail = 0;
            }
            Ok(Inflated { done: true, .. }) if last => {
                if self.reset_each || self.ended {
                    // No context takeover: the decompressor goes back to the
                    // thread. A stream that ended (BFINAL) cannot go on
                    // either: the next message is a new stream.
                    if let Some(mut d) = self.inner.take() {
                        d.reset(false);
                        if self.reset_each {
                            put_decompressor(self.bits, d);
                        } else {
                            self.inner = Some(d);
                        }
                    }
                }
                self.ended = false;
                self.tail = 0;
            }
            Ok(_) => {}
        }
        r
    }

    fn feed(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
        max_out: usize,
    ) -> Result<Inflated, ProtocolError> {
        let (bits, pooled) = (self.bits, self.reset_each);
        let start = out.len();
        let mut consumed = 0;
        loop {
            if self.ended {
                // After a final block: its padding octet (RFC 7692 §7.2.3.4
                // sends one, 0x00) and the appended tail are not DEFLATE
                // data. zlib-based peers ignore what follows the end of the
                // stream; so does this.
                return Ok(Inflated { consumed: input.len(), done: true });
            }
            let d = self.inner.get_or_insert_with(|| {
                if pooled {
                    take_decompressor(bits)
                } else {
                    Decompress::new_with_window_bits(false, bits)
                }
            });
            if out.len() == out.capacity() {
                let grown = out.len() - start;
                if grown >= max_out {
                    return Ok(Inflated { consumed, done: false });
                }
                // Room for more output, but never more than one byte past
                // the limit, nor past this step's bound.
                let grow =
                    out.len().clamp(16 << 10, 1 << 20).min(limit.saturating_add(1) - out.len()).min(max_out - grown);
                out.reserve_exact(grow);
            }
            let in_input = consumed < input.len();
            let src = if in_input {
                &input[consumed..]
            } else if last {
                &TAIL[self.tail as usize..]
            } else {
                &[]
            };
            let (before_in, before_out) = (d.total_in(), out.len());
            let status =
                d.decompress_vec(src, out, FlushDecompress::Sync).map_err(|_| ProtocolError::InvalidCompressedData)?;
            if out.len() > limit {
                return Err(ProtocolError::MessageTooBig { size: out.len() as u64, max: limit });
            }
            // At most `src.len()`: at most 4 bytes when inflating the tail.
            let used = (d.total_in() - before_in) as usize;
            if in_input {
                consumed += used;
            } else {
                self.tail += used as u8;
            }
            if status == Status::StreamEnd {
                // A final block ends the message's stream (RFC 7692
                // §7.2.3.4 allows senders to flush this way).
                self.ended = true;
                continue;
            }
            let input_left = consumed < input.len() || (last && self.tail < TAIL.len() as u8);
            let room = out.len() < out.capacity();
            if !input_left && room {
                return Ok(Inflated { consumed, done: true });
            }
            if used == 0 && out.len() == before_out && room {
                // No progress with room to write: the input is stuck.
                return Err(ProtocolError::InvalidCompressedData);
            }
        }
    }
}

impl DeflateParams {
    /// The compressor and decompressor of `role`'s end.
    pub(crate) fn for_role(&self, role: crate::Role) -> (Deflater, Inflater) {
        let server = role == crate::Role::Server;
        let (out_bits, out_reset, in_bits, in_reset) = if server {
            (
                self.server_max_window_bits,
                self.server_no_context_takeover,
                self.client_max_window_bits,
                self.client_no_context_takeover,
            )
        } else {
            (
                self.client_max_window_bits,
                self.client_no_context_takeover,
                self.server_max_window_bits,
                self.server_no_context_takeover,
            )
        };
        (Deflater::new(out_bits, out_reset, self.level, self.threshold), Inflater::new(in_bits, in_reset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extensions::parse_extensions;

    /// Inflate all of `input` in one call (no step bound), up to 1 MiB.
    fn whole(rx: &mut Inflater, input: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let r = rx.inflate(input, last, out, 1 << 20, usize::MAX)?;
        assert_eq!(r, Inflated { consumed: input.len(), done: true });
        Ok(())
    }

    /// Inflate `input` in steps of at most `step` bytes of output, passing
    /// back what a step did not consume, as a streaming reader does.
    fn in_steps(
        rx: &mut Inflater,
        mut input: &[u8],
        last: bool,
        step: usize,
        limit: usize,
    ) -> Result<Vec<u8>, ProtocolError> {
        let mut all = Vec::new();
        loop {
            let mut out = Vec::new();
            let r = rx.inflate(input, last, &mut out, limit - all.len(), step)?;
            assert!(out.len() <= step, "a step of {} bytes", out.len());
            all.extend_from_slice(&out);
            input = &input[r.consumed..];
            if r.done {
                assert!(input.is_empty());
                return Ok(all);
            }
        }
    }

    fn neg(offer: &str) -> Option<(DeflateParams, String)> {
        server_negotiate(&DeflateConfig::default(), &parse_extensions(offer).unwrap())
    }

    #[test]
    fn server_takes_first_acceptable_offer() {
        // RFC 7692 §5.1: several offers, in order of preference.
        let (_, h) = neg("permessage-deflate; foo, permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(h, "permessage-deflate; server_max_window_bits=10");
    }

    #[test]
    fn server_declines_invalid_offers() {
        // RFC 7692 §7.1: unknown, duplicate or out-of-range parameters.
        for bad in [
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert!(neg(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn old_deflate_extensions_are_never_negotiated() {
        assert!(neg("x-webkit-deflate-frame").is_none());
        assert!(neg("deflate-stream").is_none());
        let (_, h) = neg("x-webkit-deflate-frame, permessage-deflate").unwrap();
        assert_eq!(h, "permessage-deflate");
    }

    #[test]
    fn server_honours_no_context_takeover_and_window_requests() {
        let (p, h) = neg("permessage-deflate; server_no_context_takeover; client_no_context_takeover").unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(h, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        let (p, h) = neg("permessage-deflate; client_max_window_bits=9").unwrap();
        assert_eq!(p.client_max_window_bits, 9);
        assert_eq!(h, "permessage-deflate; client_max_window_bits=9");
        // Without client_max_window_bits in the offer it must not be in the response.
        let cfg = DeflateConfig::server_default();
        let (p, h) = server_negotiate(&cfg, &parse_extensions("permessage-deflate").unwrap()).unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert_eq!(h, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        let (_, h) =
            server_negotiate(&cfg, &parse_extensions("permessage-deflate; client_max_window_bits").unwrap()).unwrap();
        assert_eq!(h, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    }

    fn resp(cfg: &DeflateConfig, r: &str) -> Result<Option<DeflateParams>, InvalidDeflateParams> {
        client_accept_response(cfg, &parse_extensions(r).unwrap())
    }

    #[test]
    fn client_fails_on_invalid_or_unasked_response() {
        // RFC 7692 §7.1: the client fails the connection on these.
        let d = DeflateConfig::default();
        assert!(resp(&d, "permessage-deflate; foo").is_err());
        assert!(resp(&d, "permessage-deflate; server_max_window_bits=7").is_err());
        assert!(resp(&d, "permessage-deflate; client_max_window_bits").is_err());
        assert!(resp(&d, "permessage-deflate, permessage-deflate").is_err());
        assert!(resp(&d, "permessage-deflate; client_no_context_takeover; client_no_context_takeover").is_err());
        let asked = DeflateConfig::default().with_server_max_window_bits(10).with_server_no_context_takeover(true);
        assert!(resp(&asked, "permessage-deflate; server_no_context_takeover; server_max_window_bits=11").is_err());
        assert!(resp(&asked, "permessage-deflate; server_max_window_bits=10").is_err());
        let ok =
            resp(&asked, "permessage-deflate; server_no_context_takeover; server_max_window_bits=9").unwrap().unwrap();
        assert_eq!(ok.server_max_window_bits, 9);
        assert_eq!(resp(&d, "").unwrap(), None);
    }

    fn round_trip(params: DeflateParams, msgs: &[&[u8]]) {
        let (mut tx, _) = params.for_role(crate::Role::Client);
        let (_, mut rx) = params.for_role(crate::Role::Server);
        for m in msgs {
            let mut wire = Vec::new();
            tx.compress(m, &mut wire);
            let mut out = Vec::new();
            // Split the compressed stream in two "frames".
            let cut = wire.len() / 2;
            whole(&mut rx, &wire[..cut], false, &mut out).unwrap();
            whole(&mut rx, &wire[cut..], true, &mut out).unwrap();
            assert_eq!(&out[..], *m);
        }
    }

    fn params(nct: bool, bits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: nct,
            client_no_context_takeover: nct,
            server_max_window_bits: bits,
            client_max_window_bits: bits,
            threshold: 0,
            level: 6,
        }
    }

    #[test]
    fn compress_inflate_round_trip_with_and_without_context_takeover() {
        let big = b"hello hello hello world ".repeat(2000);
        let msgs: [&[u8]; 4] = [b"", b"a", &big, b"hello hello hello"];
        for nct in [false, true] {
            for bits in [9, 12, 15] {
                round_trip(params(nct, bits), &msgs);
            }
        }
    }

    #[test]
    fn empty_messages_compress_to_an_empty_stored_block() {
        // With context takeover zlib's sync flush of no new input writes
        // nothing; every empty message must still be `00` (§7.2.3.6), or
        // the peer's inflater (Node's ws, Python's websockets) fails on the
        // next message. Checked with a plain zlib inflater as the peer.
        for nct in [false, true] {
            let (mut tx, _) = params(nct, 15).for_role(crate::Role::Client);
            let mut peer = Decompress::new(false);
            let msgs: [&[u8]; 6] = [b"", b"", b"a", b"", b"hello hello", b""];
            for m in msgs {
                let mut wire = Vec::new();
                tx.compress(m, &mut wire);
                if m.is_empty() {
                    assert_eq!(wire, [0x00], "nct={nct}");
                }
                wire.extend_from_slice(&TAIL);
                let mut out = Vec::with_capacity(64);
                peer.decompress_vec(&wire, &mut out, FlushDecompress::Sync).unwrap();
                assert_eq!(out, m, "nct={nct}");
            }
            round_trip(params(nct, 15), &msgs);
        }
    }

    #[test]
    fn window_bits_8_is_never_used_to_compress() {
        let (tx, rx) = params(false, 8).for_role(crate::Role::Server);
        assert!(!tx.wants(10_000));
        assert_eq!(rx.bits, 9);
    }

    #[test]
    fn decompression_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let (mut tx, mut rx) = params(false, 15).for_role(crate::Role::Client);
        let mut wire = Vec::new();
        tx.compress(&zeros, &mut wire);
        assert!(wire.len() < 64 << 10);
        let mut out = Vec::new();
        let e = whole(&mut rx, &wire, true, &mut out).unwrap_err();
        assert!(matches!(e, ProtocolError::MessageTooBig { .. }));
        assert!(out.capacity() <= (1 << 20) + 1, "capacity {}", out.capacity());
    }

    #[test]
    fn a_final_block_ends_the_message_and_the_next_one_starts_a_new_stream() {
        // RFC 7692 §7.2.3.4: "Hello" in a block with BFINAL set, followed by
        // the octet 0x00; then the same message again, then a normal one.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        for nct in [false, true] {
            let (mut fresh, _) = params(nct, 15).for_role(crate::Role::Client);
            let (_, mut rx) = params(nct, 15).for_role(crate::Role::Server);
            for _ in 0..2 {
                let mut out = Vec::new();
                whole(&mut rx, &bfinal, true, &mut out).unwrap();
                assert_eq!(out, b"Hello", "nct={nct}");
            }
            // Fragmented: the final block in the first frame, the rest ignored.
            let mut out = Vec::new();
            whole(&mut rx, &bfinal[..7], false, &mut out).unwrap();
            whole(&mut rx, &[0x00, 0x12, 0x34], true, &mut out).unwrap();
            assert_eq!(out, b"Hello", "nct={nct}");
            // Then a new stream, made as usual (sync flush, no final block).
            let mut wire = Vec::new();
            fresh.compress(b"hello again", &mut wire);
            let mut out = Vec::new();
            whole(&mut rx, &wire, true, &mut out).unwrap();
            assert_eq!(out, b"hello again", "nct={nct}");
        }
    }

    #[test]
    fn inflating_in_bounded_steps_gives_the_same_bytes() {
        // 1 MiB of mixed data, in one frame and cut into two frames, inflated
        // in steps of at most 1000 bytes (and of 1 byte for a short
        // message): the bytes are those of one unbounded call, and the
        // stream goes on after (context takeover).
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 7 + i / 4096 % 13) as u8).collect();
        for nct in [false, true] {
            let (mut tx, _) = params(nct, 15).for_role(crate::Role::Client);
            let (_, mut rx) = params(nct, 15).for_role(crate::Role::Server);
            for _ in 0..2 {
                let mut wire = Vec::new();
                tx.compress(&data, &mut wire);
                assert_eq!(in_steps(&mut rx, &wire, true, 1000, 2 << 20).unwrap(), data, "nct={nct}");
                let mut wire = Vec::new();
                tx.compress(&data, &mut wire);
                let cut = wire.len() / 3;
                let mut got = in_steps(&mut rx, &wire[..cut], false, 1000, 2 << 20).unwrap();
                got.extend(in_steps(&mut rx, &wire[cut..], true, 1000, 2 << 20).unwrap());
                assert_eq!(got, data, "nct={nct}");
                let mut wire = Vec::new();
                tx.compress(b"hello", &mut wire);
                assert_eq!(in_steps(&mut rx, &wire, true, 1, 100).unwrap(), b"hello");
            }
        }
    }

    #[test]
    fn a_bomb_inflated_in_steps_still_stops_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let (mut tx, mut rx) = params(false, 15).for_role(crate::Role::Client);
        let mut wire = Vec::new();
        tx.compress(&zeros, &mut wire);
        let e = in_steps(&mut rx, &wire, true, 64 << 10, 1 << 20).unwrap_err();
        assert!(matches!(e, ProtocolError::MessageTooBig { .. }), "{e:?}");
    }

    #[test]
    fn garbage_is_invalid_compressed_data() {
        let (_, mut rx) = params(false, 15).for_role(crate::Role::Client);
        let mut out = Vec::new();
        let r = whole(&mut rx, &[0xff, 0xff, 0xff, 0xff, 0x00], true, &mut out);
        assert_eq!(r, Err(ProtocolError::InvalidCompressedData));
    }
}
