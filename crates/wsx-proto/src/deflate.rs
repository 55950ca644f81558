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
//!
//! Memory. Without context takeover a side's state is reset after every
//! message, so it is borrowed from a per-thread pool (zlib-rs, the fastest)
//! and an idle connection holds none. With context takeover a connection
//! keeps its own compressor and decompressor between messages: zlib-rs by
//! default (fast, but not bounded by the windows: ~292 KiB a connection
//! with 9-bit windows, ~418 KiB with 15-bit ones, measured in
//! docs/compression.md), or, once a memLevel is set
//! ([`DeflateConfig::with_mem_level`], which every [`CompressionPreset`]
//! does), stock zlib through `libz-sys`, sized by the negotiated window
//! bits and that memLevel.

use crate::error::ProtocolError;
use crate::extensions::{Extension, ExtensionParam};
use crate::zlib;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

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
    /// Boxed as connections hold them, so that moving one in or out of the
    /// pool does not allocate.
    static DECOMPRESSORS: RefCell<Vec<(u8, Box<Decompressor>)>> = const { RefCell::new(Vec::new()) };
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

fn take_decompressor(bits: u8) -> Box<Decompressor> {
    DECOMPRESSORS
        .with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|(b, _)| *b == bits)?;
            Some(p.swap_remove(i).1)
        })
        .unwrap_or_else(|| Box::new(Decompressor::Rs(Decompress::new_with_window_bits(false, bits))))
}

fn put_decompressor(bits: u8, d: Box<Decompressor>) {
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
/// - Messages under 1 KiB go uncompressed: without context takeover small
///   messages gain little and cost a compressor call.
/// - Compression level 6 (zlib's default), and no memLevel: state kept
///   between messages is zlib-rs, the fastest (see
///   [`DeflateConfig::with_mem_level`]).
/// - A client ([`DeflateConfig::default`]) keeps context takeover in both
///   directions with full 2^15 windows: the best ratio, and a client has few
///   connections.
/// - A server ([`DeflateConfig::server_default`]) answers with
///   `server_no_context_takeover; client_no_context_takeover`: compressor
///   and decompressor state is then shared per thread, so an idle connection
///   with compression negotiated holds no zlib state at all. The cost is
///   ratio on streams of small similar messages. A server that wants it back
///   chooses how much memory each connection may keep with a
///   [`CompressionPreset`] ([`DeflateConfig::preset`]); the figures of each
///   are in docs/compression.md.
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
    mem_level: Option<u8>,
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
            mem_level: None,
        }
    }
}

impl DeflateConfig {
    /// The settings a server uses by default: no context takeover in either
    /// direction, so compressor and decompressor state is shared per thread
    /// instead of held per connection. The same as
    /// `DeflateConfig::preset(CompressionPreset::Shared)`.
    ///
    /// ```
    /// use wsx_proto::deflate::DeflateConfig;
    /// let c = DeflateConfig::server_default();
    /// assert!(c.server_no_context_takeover() && c.client_no_context_takeover());
    /// ```
    pub fn server_default() -> Self {
        Self { server_no_context_takeover: true, client_no_context_takeover: true, ..Self::default() }
    }

    /// The settings of a memory preset: how much compression state each
    /// connection may keep (see [`CompressionPreset`]). Made for servers;
    /// a client that uses one offers the same windows (it asks the server
    /// for `server_max_window_bits`, which bounds its own decompressor).
    /// Each setting can still be changed after, e.g. with
    /// [`DeflateConfig::with_client_no_context_takeover`] to keep the
    /// dedicated compressor but share the decompressor.
    ///
    /// ```
    /// use wsx_proto::deflate::{CompressionPreset, DeflateConfig};
    /// let c = DeflateConfig::preset(CompressionPreset::Dedicated8K);
    /// assert!(!c.server_no_context_takeover());
    /// assert_eq!((c.server_max_window_bits(), c.mem_level()), (10, Some(3)));
    /// assert_eq!(c.client_max_window_bits(), 10);
    /// ```
    pub fn preset(preset: CompressionPreset) -> Self {
        let Some((bits, mem_level)) = preset.window_and_mem_level() else { return Self::server_default() };
        Self {
            server_max_window_bits: bits,
            client_max_window_bits: bits,
            threshold: DEDICATED_THRESHOLD,
            mem_level: Some(mem_level),
            ..Self::default()
        }
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

    /// Bound the memory of the compressor and decompressor this side keeps
    /// between messages (context takeover) with zlib's memLevel, 1–9: they
    /// are then stock zlib, whose compressor has a hash table of
    /// 2^(memLevel+7) entries and buffers 2^(memLevel+6) symbols (together
    /// 2^(memLevel+9) bytes, beside twice its 2^w window) and whose
    /// decompressor allocates a window of the negotiated size. Less memory,
    /// a little less ratio. Unset (the default), they are zlib-rs: faster
    /// on large messages, but not bounded by the windows (what that costs:
    /// the [module documentation](self)). Shared state (no context
    /// takeover) lives one per thread and is always zlib-rs.
    ///
    /// ```
    /// use wsx_proto::deflate::DeflateConfig;
    /// assert_eq!(DeflateConfig::default().mem_level(), None);
    /// assert_eq!(DeflateConfig::default().with_mem_level(12).mem_level(), Some(9));
    /// ```
    pub fn with_mem_level(mut self, mem_level: u8) -> Self {
        self.mem_level = Some(mem_level.clamp(1, 9));
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
    /// See [`DeflateConfig::with_mem_level`].
    pub fn mem_level(&self) -> Option<u8> {
        self.mem_level
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

/// Messages shorter than this go uncompressed under a dedicated preset:
/// with context takeover even a short chat line compresses well against the
/// previous ones, but a few bytes cannot.
const DEDICATED_THRESHOLD: usize = 32;

/// How much compression state each connection of a server may keep: the
/// memory presets of uWebSockets (its `SHARED_COMPRESSOR` and
/// `DEDICATED_COMPRESSOR_3KB` ... `_256KB`), as a choice of window bits and
/// zlib memLevel per server.
///
/// `Shared` (the server default) declines context takeover both ways:
/// nothing is kept per connection, and each message is compressed alone,
/// which gains little on small messages. A `DedicatedN` preset keeps one
/// compressor and one decompressor per connection, with context takeover,
/// so a stream of similar small messages (chat, game state, JSON events)
/// compresses against the ones before it. Its name is zlib's own estimate
/// of the compressor's buffers, `2^(w+2) + 2^(m+9)` bytes for window bits
/// `w` and memLevel `m`; a connection pays more than that: zlib's
/// compressor state, a decompressor with its `2^w` window, and the
/// allocator's rounding: from 17 KiB (`Dedicated3K`) to 301.5 KiB
/// (`Dedicated256K`) per connection, measured with the compression ratio
/// of each in docs/compression.md (`cargo bench -p wsx-proto --bench
/// compression`). Context takeover without a memLevel keeps zlib-rs
/// state (its cost: the [module documentation](self)). Messages under 32 bytes go
/// uncompressed under a dedicated preset.
///
/// The server asks for the same window from the client
/// (`client_max_window_bits`, RFC 7692 §7.1.2.2), which bounds the
/// decompressor. A client that did not offer that parameter cannot be
/// given one; the server then answers with `client_no_context_takeover`
/// (§7.1.1.2) so that the decompressor is shared and the bound holds for
/// every client.
///
/// ```
/// use wsx_proto::deflate::{CompressionPreset, DeflateConfig};
/// let preset: CompressionPreset = "dedicated-4k".parse().unwrap();
/// assert_eq!(preset, CompressionPreset::Dedicated4K);
/// assert_eq!(preset.to_string(), "dedicated-4k");
/// assert_eq!(preset.window_and_mem_level(), Some((9, 2)));
/// let config = DeflateConfig::preset(preset);
/// assert_eq!(config.mem_level(), Some(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompressionPreset {
    /// No context takeover either way: state shared per thread, none per
    /// connection ([`DeflateConfig::server_default`]).
    #[default]
    Shared,
    /// Window bits 9, memLevel 1.
    Dedicated3K,
    /// Window bits 9, memLevel 2.
    Dedicated4K,
    /// Window bits 10, memLevel 3.
    Dedicated8K,
    /// Window bits 11, memLevel 4.
    Dedicated16K,
    /// Window bits 12, memLevel 5.
    Dedicated32K,
    /// Window bits 13, memLevel 6.
    Dedicated64K,
    /// Window bits 14, memLevel 7.
    Dedicated128K,
    /// Window bits 15, memLevel 8: zlib's defaults, the best ratio.
    Dedicated256K,
}

impl CompressionPreset {
    /// Every preset, smallest first.
    pub const ALL: [CompressionPreset; 9] = [
        Self::Shared,
        Self::Dedicated3K,
        Self::Dedicated4K,
        Self::Dedicated8K,
        Self::Dedicated16K,
        Self::Dedicated32K,
        Self::Dedicated64K,
        Self::Dedicated128K,
        Self::Dedicated256K,
    ];

    /// Window bits and memLevel of a dedicated preset; `None` for `Shared`.
    ///
    /// ```
    /// use wsx_proto::deflate::CompressionPreset;
    /// assert_eq!(CompressionPreset::Dedicated256K.window_and_mem_level(), Some((15, 8)));
    /// assert_eq!(CompressionPreset::Shared.window_and_mem_level(), None);
    /// ```
    pub fn window_and_mem_level(self) -> Option<(u8, u8)> {
        match self {
            Self::Shared => None,
            Self::Dedicated3K => Some((9, 1)),
            Self::Dedicated4K => Some((9, 2)),
            Self::Dedicated8K => Some((10, 3)),
            Self::Dedicated16K => Some((11, 4)),
            Self::Dedicated32K => Some((12, 5)),
            Self::Dedicated64K => Some((13, 6)),
            Self::Dedicated128K => Some((14, 7)),
            Self::Dedicated256K => Some((15, 8)),
        }
    }

    /// The name `FromStr` reads and `Display` writes: `shared`,
    /// `dedicated-3k` ... `dedicated-256k`.
    ///
    /// ```
    /// use wsx_proto::deflate::CompressionPreset;
    /// assert_eq!(CompressionPreset::Dedicated16K.name(), "dedicated-16k");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Dedicated3K => "dedicated-3k",
            Self::Dedicated4K => "dedicated-4k",
            Self::Dedicated8K => "dedicated-8k",
            Self::Dedicated16K => "dedicated-16k",
            Self::Dedicated32K => "dedicated-32k",
            Self::Dedicated64K => "dedicated-64k",
            Self::Dedicated128K => "dedicated-128k",
            Self::Dedicated256K => "dedicated-256k",
        }
    }
}

impl fmt::Display for CompressionPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`CompressionPreset`]'s.
///
/// ```
/// use wsx_proto::deflate::CompressionPreset;
/// let e = "dedicated-5k".parse::<CompressionPreset>().unwrap_err();
/// assert!(e.to_string().contains("dedicated-5k"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression preset {0:?} (one of: {names})", names = CompressionPreset::ALL.map(CompressionPreset::name).join(", "))]
pub struct UnknownPreset(pub String);

impl FromStr for CompressionPreset {
    type Err = UnknownPreset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownPreset(s.to_owned()))
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
    /// zlib memLevel 1–9 bounding the state kept between messages; `None`:
    /// zlib-rs state, which no memLevel bounds (local setting,
    /// [`DeflateConfig::with_mem_level`]).
    pub mem_level: Option<u8>,
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
        // A server that bounds its decompressor's window cannot tell a
        // client that did not offer client_max_window_bits to use less than
        // 2^15 (§7.1.2.2). It asks that client for no context takeover
        // instead, which a server may always do (§7.1.1.2): the
        // decompressor is then shared per thread and the bound holds.
        let client_nct = client_nct || (p.client_max_window_bits.is_none() && config.client_max_window_bits < 15);
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
            mem_level: config.mem_level,
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
        mem_level: config.mem_level,
    }))
}

/// The sending side's compressor. Created on first use; without context
/// takeover one of the thread's shared ones (zlib-rs), with it this
/// connection's own.
pub(crate) struct Deflater {
    /// A compressor of its own (context takeover), boxed: every connection
    /// that negotiated permessage-deflate holds this struct, and most never
    /// need one.
    inner: Option<Box<Compressor>>,
    bits: u8,
    reset_each: bool,
    level: u32,
    mem_level: Option<u8>,
    threshold: usize,
}

/// A compressor a connection keeps: zlib-rs (fast, not bounded by the
/// windows), or stock
/// zlib sized by window bits and memLevel.
enum Compressor {
    Rs(Compress),
    Zlib(zlib::Deflate),
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").field("bits", &self.bits).field("active", &self.inner.is_some()).finish()
    }
}

impl Deflater {
    pub(crate) fn new(bits: u8, reset_each: bool, level: u32, mem_level: Option<u8>, threshold: usize) -> Self {
        Self { inner: None, bits, reset_each, level, mem_level, threshold }
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
        let mem_level = self.mem_level;
        let c = self.inner.get_or_insert_with(|| {
            Box::new(match mem_level {
                None => Compressor::Rs(Compress::new_with_window_bits(Compression::new(level), false, bits)),
                Some(m) => Compressor::Zlib(zlib::Deflate::new(level, bits, m)),
            })
        });
        run_compress(&mut **c, input, out);
    }
}

/// One step of a compressor: compress what fits of `input` into the spare
/// capacity of `out` with a sync flush, returning the input bytes consumed.
trait SyncFlush {
    fn sync_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize;
}

impl SyncFlush for Compress {
    fn sync_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let before = self.total_in();
        // Compressing from memory into memory cannot fail.
        let _ = self.compress_vec(input, out, FlushCompress::Sync);
        (self.total_in() - before) as usize
    }
}

impl SyncFlush for Compressor {
    fn sync_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        match self {
            Self::Rs(c) => c.sync_flush(input, out),
            Self::Zlib(c) => c.sync_flush(input, out),
        }
    }
}

fn run_compress(c: &mut impl SyncFlush, input: &[u8], out: &mut Vec<u8>) {
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
    out.reserve(input.len() / 2 + 64);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        consumed += c.sync_flush(&input[consumed..], out);
        // Done when all input is in and the flush had room to finish.
        if consumed == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - 4);
    }
}

/// A decompressor: zlib-rs (a thread's shared one without context
/// takeover; a connection's own, not bounded by the window, with it), or
/// stock zlib
/// with a window of the negotiated size (a connection's own, when a
/// memLevel bounds its memory).
enum Decompressor {
    Rs(Decompress),
    Zlib(zlib::Inflate),
}

impl Decompressor {
    /// Inflate what fits of `input` into the spare capacity of `out` with a
    /// sync flush: the input bytes consumed, and whether the stream ended
    /// (a final block).
    fn sync_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), ProtocolError> {
        match self {
            Self::Rs(d) => {
                let before = d.total_in();
                let status = d
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|_| ProtocolError::InvalidCompressedData)?;
                Ok(((d.total_in() - before) as usize, status == Status::StreamEnd))
            }
            Self::Zlib(d) => d.sync_flush(input, out).map_err(|()| ProtocolError::InvalidCompressedData),
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Rs(d) => d.reset(false),
            Self::Zlib(d) => d.reset(),
        }
    }
}

/// The receiving side's decompressor. Created on first use.
pub(crate) struct Inflater {
    /// Held while a compressed message arrives, or for good with context
    /// takeover; boxed for the same reason as [`Deflater`]'s.
    inner: Option<Box<Decompressor>>,
    bits: u8,
    reset_each: bool,
    /// A memLevel was set: a decompressor kept between messages is stock
    /// zlib, whose window is `2^bits` (zlib-rs always allocates 2^15).
    bounded: bool,
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
    pub(crate) fn new(bits: u8, reset_each: bool, bounded: bool) -> Self {
        Self { inner: None, bits: bits.max(9), reset_each, bounded, ended: false, tail: 0 }
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
                        d.reset();
                        if self.reset_each {
                            // From the pool (`feed`): back to it.
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
        let (bits, pooled, bounded) = (self.bits, self.reset_each, self.bounded);
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
                } else if bounded {
                    Box::new(Decompressor::Zlib(zlib::Inflate::new(bits)))
                } else {
                    Box::new(Decompressor::Rs(Decompress::new_with_window_bits(false, bits)))
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
            let before_out = out.len();
            // `used` is at most `src.len()`: at most 4 bytes when inflating
            // the tail.
            let (used, stream_end) = d.sync_flush(src, out)?;
            if out.len() > limit {
                return Err(ProtocolError::MessageTooBig { size: out.len() as u64, max: limit });
            }
            if in_input {
                consumed += used;
            } else {
                self.tail += used as u8;
            }
            if stream_end {
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
        (
            Deflater::new(out_bits, out_reset, self.level, self.mem_level, self.threshold),
            Inflater::new(in_bits, in_reset, self.mem_level.is_some()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extensions::parse_extensions;

    /// Every connection that negotiated permessage-deflate holds both
    /// halves' state for its whole life, most without a (de)compressor of
    /// its own: those are boxed, so the halves stay a few words.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_per_connection_state_stays_small() {
        let (d, i) = (std::mem::size_of::<Deflater>(), std::mem::size_of::<Inflater>());
        assert!(d <= 32, "Deflater is {d} bytes");
        assert!(i <= 16, "Inflater is {i} bytes");
    }

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

    /// What a server with `preset` answers to `offer`.
    fn neg_preset(preset: CompressionPreset, offer: &str) -> (DeflateParams, String) {
        server_negotiate(&DeflateConfig::preset(preset), &parse_extensions(offer).unwrap()).unwrap()
    }

    #[test]
    fn presets_choose_windows_and_mem_level() {
        assert_eq!(DeflateConfig::preset(CompressionPreset::Shared), DeflateConfig::server_default());
        let expected = [(9, 1), (9, 2), (10, 3), (11, 4), (12, 5), (13, 6), (14, 7), (15, 8)];
        for (p, (bits, mem)) in CompressionPreset::ALL[1..].iter().zip(expected) {
            let c = DeflateConfig::preset(*p);
            assert_eq!(p.window_and_mem_level(), Some((bits, mem)), "{p}");
            assert!(!c.server_no_context_takeover() && !c.client_no_context_takeover(), "{p}");
            assert_eq!(
                (c.server_max_window_bits(), c.client_max_window_bits(), c.mem_level()),
                (bits, bits, Some(mem))
            );
            // zlib's own figure for the compressor's buffers is the name.
            let kib = ((1usize << (bits + 2)) + (1 << (mem + 9))) >> 10;
            assert_eq!(p.name(), format!("dedicated-{kib}k"));
            assert_eq!(p.name().parse::<CompressionPreset>(), Ok(*p));
        }
        assert_eq!("SHARED".parse(), Ok(CompressionPreset::Shared));
        assert!("dedicated".parse::<CompressionPreset>().is_err());
    }

    #[test]
    fn every_preset_negotiates_per_rfc_7692() {
        for preset in CompressionPreset::ALL {
            let Some((w, mem)) = preset.window_and_mem_level() else {
                // Shared: no context takeover either way, whatever is offered.
                for offer in ["permessage-deflate", "permessage-deflate; client_max_window_bits"] {
                    let (p, h) = neg_preset(preset, offer);
                    assert_eq!(h, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
                    assert!(p.server_no_context_takeover && p.client_no_context_takeover);
                }
                continue;
            };
            let bits = |b: u8| if b < 15 { format!("; server_max_window_bits={b}") } else { String::new() };
            // What browsers offer: the server limits its own window (§7.1.2.1:
            // it may, unasked) and the client's (§7.1.2.2: it was offered).
            let (p, h) = neg_preset(preset, "permessage-deflate; client_max_window_bits");
            let client = if w < 15 { format!("; client_max_window_bits={w}") } else { String::new() };
            assert_eq!(h, format!("permessage-deflate{}{client}", bits(w)), "{preset}");
            assert_eq!(
                (p.server_max_window_bits, p.client_max_window_bits, p.mem_level),
                (w, w, Some(mem)),
                "{preset}"
            );
            assert!(!p.server_no_context_takeover && !p.client_no_context_takeover, "{preset}");
            // A smaller window offered by the client is kept (§7.1.2.2).
            let (p, h) = neg_preset(preset, "permessage-deflate; client_max_window_bits=9");
            assert_eq!(h, format!("permessage-deflate{}; client_max_window_bits=9", bits(w)), "{preset}");
            assert_eq!(p.client_max_window_bits, 9);
            // A server window asked for is answered with at most that
            // (§7.1.2.1), never more than the preset's.
            let (p, h) = neg_preset(preset, "permessage-deflate; server_max_window_bits=10; client_max_window_bits");
            let sb = w.min(10);
            assert!(h.contains(&format!("; server_max_window_bits={sb}")), "{preset}: {h}");
            assert_eq!(p.server_max_window_bits, sb);
            // No client_max_window_bits in the offer: the response must not
            // carry it (§7.1.2.2), so a bounded decompressor asks for no
            // client context takeover (§7.1.1.2) and is shared.
            let (p, h) = neg_preset(preset, "permessage-deflate");
            assert!(!h.contains("client_max_window_bits"), "{preset}: {h}");
            assert_eq!(p.client_max_window_bits, 15);
            assert_eq!(p.client_no_context_takeover, w < 15, "{preset}: {h}");
            assert_eq!(h.contains("client_no_context_takeover"), w < 15, "{preset}: {h}");
            // server_no_context_takeover asked for is granted (§7.1.1.1).
            let (p, h) = neg_preset(preset, "permessage-deflate; server_no_context_takeover; client_max_window_bits");
            assert!(p.server_no_context_takeover && h.contains("server_no_context_takeover"), "{preset}");
            // A client configured by default accepts every answer, and both
            // ends then agree on every parameter.
            for offer in [DeflateConfig::default().client_offer(), DeflateConfig::preset(preset).client_offer()] {
                let client_cfg = if offer.contains("server_max_window_bits") {
                    DeflateConfig::preset(preset)
                } else {
                    DeflateConfig::default()
                };
                let (server, h) = neg_preset(preset, &offer);
                let client = client_accept_response(&client_cfg, &parse_extensions(&h).unwrap()).unwrap().unwrap();
                assert_eq!(
                    (client.server_max_window_bits, client.client_max_window_bits),
                    (server.server_max_window_bits, server.client_max_window_bits),
                    "{preset}: {offer} -> {h}"
                );
                assert_eq!(
                    (client.server_no_context_takeover, client.client_no_context_takeover),
                    (server.server_no_context_takeover, server.client_no_context_takeover),
                    "{preset}: {offer} -> {h}"
                );
            }
        }
    }

    #[test]
    fn a_bounded_decompressor_without_a_preset_follows_the_same_rule() {
        let cfg = DeflateConfig::default().with_client_max_window_bits(10);
        let (p, h) = server_negotiate(&cfg, &parse_extensions("permessage-deflate").unwrap()).unwrap();
        assert_eq!(h, "permessage-deflate; client_no_context_takeover");
        assert!(p.client_no_context_takeover);
        let (p, h) = neg("permessage-deflate").unwrap();
        assert_eq!(h, "permessage-deflate");
        assert!(!p.client_no_context_takeover);
    }

    /// The parameters both ends hold after a browser-like offer to a server
    /// with `preset`.
    fn preset_params(preset: CompressionPreset) -> DeflateParams {
        neg_preset(preset, "permessage-deflate; client_max_window_bits").0
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_preset_round_trips_both_ways(
            preset in proptest::sample::select(CompressionPreset::ALL.to_vec()),
            msgs in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..300),
                    "[a-z \\\"{}:,0-9]{0,400}".prop_map(String::into_bytes),
                    (0usize..40_000).prop_map(|n| br#"{"user":"ana","text":"hello"}"#.repeat(n / 30 + 1)),
                ],
                1..12,
            ),
        ) {
            let params = preset_params(preset);
            for (from, to) in [(crate::Role::Server, crate::Role::Client), (crate::Role::Client, crate::Role::Server)] {
                let (mut tx, _) = params.for_role(from);
                let (_, mut rx) = params.for_role(to);
                for m in &msgs {
                    prop_assert_eq!(&through(&mut tx, &mut rx, m), m, "{} {:?}", preset, from);
                }
            }
        }
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

    /// Compress `m` with `tx` and inflate it with `rx`, the compressed
    /// stream split in two "frames".
    fn through(tx: &mut Deflater, rx: &mut Inflater, m: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        tx.compress(m, &mut wire);
        let mut out = Vec::new();
        let cut = wire.len() / 2;
        whole(rx, &wire[..cut], false, &mut out).unwrap();
        whole(rx, &wire[cut..], true, &mut out).unwrap();
        out
    }

    fn round_trip(params: DeflateParams, msgs: &[&[u8]]) {
        let (mut tx, _) = params.for_role(crate::Role::Client);
        let (_, mut rx) = params.for_role(crate::Role::Server);
        for m in msgs {
            assert_eq!(through(&mut tx, &mut rx, m), *m);
        }
    }

    /// Both kinds of state a connection may keep (zlib-rs; stock zlib with
    /// the smallest and largest memLevel), with and without context takeover.
    const SETTINGS: [(bool, Option<u8>); 5] =
        [(false, None), (true, None), (false, Some(1)), (false, Some(9)), (true, Some(1))];

    fn params(nct: bool, bits: u8, mem: Option<u8>) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: nct,
            client_no_context_takeover: nct,
            server_max_window_bits: bits,
            client_max_window_bits: bits,
            threshold: 0,
            level: 6,
            mem_level: mem,
        }
    }

    #[test]
    fn compress_inflate_round_trip_with_and_without_context_takeover() {
        let big = b"hello hello hello world ".repeat(2000);
        let msgs: [&[u8]; 4] = [b"", b"a", &big, b"hello hello hello"];
        for (nct, mem) in SETTINGS {
            for bits in [9, 12, 15] {
                round_trip(params(nct, bits, mem), &msgs);
            }
        }
    }

    #[test]
    fn empty_messages_compress_to_an_empty_stored_block() {
        // With context takeover zlib's sync flush of no new input writes
        // nothing; every empty message must still be `00` (§7.2.3.6), or
        // the peer's inflater (Node's ws, Python's websockets) fails on the
        // next message. Checked with a plain zlib inflater as the peer.
        for (nct, mem) in SETTINGS {
            let (mut tx, _) = params(nct, 15, mem).for_role(crate::Role::Client);
            let mut peer = Decompress::new(false);
            let msgs: [&[u8]; 6] = [b"", b"", b"a", b"", b"hello hello", b""];
            for m in msgs {
                let mut wire = Vec::new();
                tx.compress(m, &mut wire);
                if m.is_empty() {
                    assert_eq!(wire, [0x00], "nct={nct} mem={mem:?}");
                }
                wire.extend_from_slice(&TAIL);
                let mut out = Vec::with_capacity(64);
                peer.decompress_vec(&wire, &mut out, FlushDecompress::Sync).unwrap();
                assert_eq!(out, m, "nct={nct} mem={mem:?}");
            }
            round_trip(params(nct, 15, mem), &msgs);
        }
    }

    #[test]
    fn window_bits_8_is_never_used_to_compress() {
        let (tx, rx) = params(false, 8, None).for_role(crate::Role::Server);
        assert!(!tx.wants(10_000));
        assert_eq!(rx.bits, 9);
    }

    #[test]
    fn decompression_bomb_stops_at_the_limit() {
        for mem in [None, Some(1)] {
            let zeros = vec![0u8; 8 << 20];
            let (mut tx, mut rx) = params(false, 15, mem).for_role(crate::Role::Client);
            let mut wire = Vec::new();
            tx.compress(&zeros, &mut wire);
            assert!(wire.len() < 64 << 10);
            let mut out = Vec::new();
            let e = whole(&mut rx, &wire, true, &mut out).unwrap_err();
            assert!(matches!(e, ProtocolError::MessageTooBig { .. }));
            assert!(out.capacity() <= (1 << 20) + 1, "capacity {}", out.capacity());
        }
    }

    #[test]
    fn a_final_block_ends_the_message_and_the_next_one_starts_a_new_stream() {
        // RFC 7692 §7.2.3.4: "Hello" in a block with BFINAL set, followed by
        // the octet 0x00; then the same message again, then a normal one.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        for (nct, mem) in SETTINGS {
            let (mut fresh, _) = params(nct, 15, mem).for_role(crate::Role::Client);
            let (_, mut rx) = params(nct, 15, mem).for_role(crate::Role::Server);
            for _ in 0..2 {
                let mut out = Vec::new();
                whole(&mut rx, &bfinal, true, &mut out).unwrap();
                assert_eq!(out, b"Hello", "nct={nct} mem={mem:?}");
            }
            // Fragmented: the final block in the first frame, the rest ignored.
            let mut out = Vec::new();
            whole(&mut rx, &bfinal[..7], false, &mut out).unwrap();
            whole(&mut rx, &[0x00, 0x12, 0x34], true, &mut out).unwrap();
            assert_eq!(out, b"Hello", "nct={nct} mem={mem:?}");
            // Then a new stream, made as usual (sync flush, no final block).
            let mut wire = Vec::new();
            fresh.compress(b"hello again", &mut wire);
            let mut out = Vec::new();
            whole(&mut rx, &wire, true, &mut out).unwrap();
            assert_eq!(out, b"hello again", "nct={nct} mem={mem:?}");
        }
    }

    #[test]
    fn inflating_in_bounded_steps_gives_the_same_bytes() {
        // 1 MiB of mixed data, in one frame and cut into two frames, inflated
        // in steps of at most 1000 bytes (and of 1 byte for a short
        // message): the bytes are those of one unbounded call, and the
        // stream goes on after (context takeover).
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 7 + i / 4096 % 13) as u8).collect();
        for (nct, mem) in SETTINGS {
            let (mut tx, _) = params(nct, 15, mem).for_role(crate::Role::Client);
            let (_, mut rx) = params(nct, 15, mem).for_role(crate::Role::Server);
            for _ in 0..2 {
                let mut wire = Vec::new();
                tx.compress(&data, &mut wire);
                assert_eq!(in_steps(&mut rx, &wire, true, 1000, 2 << 20).unwrap(), data, "nct={nct} mem={mem:?}");
                let mut wire = Vec::new();
                tx.compress(&data, &mut wire);
                let cut = wire.len() / 3;
                let mut got = in_steps(&mut rx, &wire[..cut], false, 1000, 2 << 20).unwrap();
                got.extend(in_steps(&mut rx, &wire[cut..], true, 1000, 2 << 20).unwrap());
                assert_eq!(got, data, "nct={nct} mem={mem:?}");
                let mut wire = Vec::new();
                tx.compress(b"hello", &mut wire);
                assert_eq!(in_steps(&mut rx, &wire, true, 1, 100).unwrap(), b"hello");
            }
        }
    }

    #[test]
    fn a_bomb_inflated_in_steps_still_stops_at_the_limit() {
        for mem in [None, Some(1)] {
            let zeros = vec![0u8; 8 << 20];
            let (mut tx, mut rx) = params(false, 15, mem).for_role(crate::Role::Client);
            let mut wire = Vec::new();
            tx.compress(&zeros, &mut wire);
            let e = in_steps(&mut rx, &wire, true, 64 << 10, 1 << 20).unwrap_err();
            assert!(matches!(e, ProtocolError::MessageTooBig { .. }), "{e:?}");
        }
    }

    #[test]
    fn garbage_is_invalid_compressed_data() {
        for mem in [None, Some(1)] {
            let (_, mut rx) = params(false, 15, mem).for_role(crate::Role::Client);
            let mut out = Vec::new();
            let r = whole(&mut rx, &[0xff, 0xff, 0xff, 0xff, 0x00], true, &mut out);
            assert_eq!(r, Err(ProtocolError::InvalidCompressedData));
        }
    }
}
