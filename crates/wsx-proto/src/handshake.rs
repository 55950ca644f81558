//! The opening handshake (RFC 6455 §4), both roles, without I/O.
//!
//! Server: a [`HeadReader`] reads the request head as it arrives (bounded,
//! 431 past the limit), [`UpgradeRequest::from_request`] checks every rule
//! of §4.2.1 and negotiates the version (13, 8 or 7; anything else is 426
//! with `Sec-WebSocket-Version: 13, 8, 7`), [`UpgradeRequest::accept`]
//! builds the 101 response with the subprotocol the application picked
//! ([`Accept`]), [`Reject`] or [`HandshakeError::to_response`] the refusal,
//! and [`write_response`] the bytes of either.
//!
//! Client: [`ClientHandshake::new`] completes a request with a fresh random
//! key (§4.1, from a CSPRNG) and the required headers, a [`HeadReader`]
//! reads the response head and [`ClientHandshake::check_response`] checks
//! the status, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, and that
//! the subprotocol and extensions are ones the client offered (§4.2.2).
//!
//! permessage-deflate is negotiated on the extensions each side sees
//! ([`UpgradeRequest::extensions`], [`Negotiated::extensions`]) with
//! [`crate::deflate`]; then the connection starts
//! ([`crate::Connection::with_deflate`]), with the bytes that followed the
//! head as its first input.
//!
//! ```
//! use wsx_proto::handshake::*;
//! let req = http::Request::get("ws://example.com/chat")
//!     .header("Sec-WebSocket-Protocol", "chat, superchat")
//!     .body(()).unwrap();
//! let (bytes, client) = ClientHandshake::new(req).unwrap();
//!
//! // The server reads the head (here whole; a `HeadReader` takes it in pieces too).
//! let (request, head_len) = HeadReader::new(DEFAULT_MAX_REQUEST_SIZE).request(&bytes).unwrap().unwrap();
//! assert_eq!(head_len, bytes.len());
//! let upgrade = UpgradeRequest::from_request(request).unwrap();
//! assert_eq!(upgrade.protocols(), ["chat", "superchat"]);
//! let response = upgrade.accept(&Accept::new().protocol("chat"), None).unwrap();
//! let mut out = Vec::new();
//! write_response(&response, &[], &mut out);
//!
//! // The client reads the response head and checks it.
//! let (response, _) = HeadReader::new(DEFAULT_MAX_REQUEST_SIZE).response(&out).unwrap().unwrap();
//! let negotiated = client.check_response(&response).unwrap();
//! assert_eq!(negotiated.protocol.as_deref(), Some("chat"));
//! ```

use crate::extensions;
pub use crate::extensions::{Extension, ExtensionParam, ExtensionParseError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 §1.3, appended to the key to derive the accept key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The versions this implementation speaks, for the 426 response (§4.4).
const SUPPORTED_VERSIONS: &str = "13, 8, 7";

/// Default limit on the size of a request or response head: 16 KiB.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 16 << 10;

/// Most header lines accepted in a handshake head (431 past it).
pub const MAX_HEADERS: usize = 128;

/// Derive `Sec-WebSocket-Accept` from `Sec-WebSocket-Key` (§4.2.2 step 5.4).
pub(crate) fn derive_accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Why a handshake failed. On the server each variant has the status to
/// answer with ([`HandshakeError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is larger than the limit (431 on the server).
    #[error("handshake head larger than {0} bytes")]
    TooLarge(usize),
    /// More header lines than [`MAX_HEADERS`] (431).
    #[error("too many header lines")]
    TooManyHeaders,
    /// The head is not valid HTTP/1.1 (400).
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    /// The request starts with a TLS record (a `wss://` client at a plain
    /// `ws://` server): answered with 400 at once, in plain HTTP, which such
    /// a client can recognize.
    #[error("a TLS handshake reached a plain (ws://) server: connect with ws://, or to the server's TLS port")]
    TlsToPlainServer,
    /// The request method is not GET (§4.1) (405).
    #[error("method must be GET")]
    MethodNotGet,
    /// HTTP older than 1.1 (§4.1) (400).
    #[error("HTTP/1.1 or later is required")]
    HttpVersion,
    /// No `Host` header (§4.1) (400).
    #[error("missing Host header")]
    MissingHost,
    /// `Upgrade` lacks the `websocket` token (400).
    #[error("Upgrade header must contain \"websocket\"")]
    NoUpgradeWebsocket,
    /// `Connection` lacks the `Upgrade` token (400).
    #[error("Connection header must contain \"Upgrade\"")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes (400).
    #[error("Sec-WebSocket-Key must be the base64 of 16 bytes")]
    InvalidKey,
    /// A version this implementation does not speak (426, §4.4).
    #[error("unsupported WebSocket version {0:?} (supported: 13, 8, 7)")]
    UnsupportedVersion(String),
    /// A malformed `Sec-WebSocket-Extensions` header (400).
    #[error(transparent)]
    InvalidExtensions(#[from] ExtensionParseError),
    /// A malformed or repeated subprotocol in `Sec-WebSocket-Protocol` (400).
    #[error("invalid Sec-WebSocket-Protocol: {0}")]
    InvalidProtocols(String),
    /// The application picked a subprotocol the client did not offer (500).
    #[error("subprotocol {0:?} was not offered by the client")]
    ProtocolNotOffered(String),
    /// HTTP/2 or HTTP/3: a `CONNECT` without `:protocol`, a tunnel request
    /// this server, which is not a proxy, does not serve (405).
    #[error("CONNECT without :protocol: this server is not a proxy")]
    ConnectWithoutProtocol,
    /// HTTP/2 or HTTP/3: an extended `CONNECT` for another protocol than
    /// `websocket` (RFC 8441 §4) (501).
    #[error("extended CONNECT for protocol {0:?}: only \"websocket\" is served")]
    UnsupportedProtocol(String),
    /// Client: the URL cannot be used for a WebSocket request.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// Client: the server answered with another status than 101 (200 on
    /// HTTP/2 and HTTP/3).
    #[error("server answered {0} instead of accepting the WebSocket")]
    UnexpectedStatus(StatusCode),
    /// Client: `Sec-WebSocket-Accept` does not match the key (§4.2.2).
    #[error("Sec-WebSocket-Accept does not match the key")]
    AcceptMismatch,
    /// Client: the server selected a subprotocol that was not offered (§4.1).
    #[error("server selected subprotocol {0:?}, which was not offered")]
    UnrequestedProtocol(String),
    /// Client: the server accepted an extension that was not offered (§4.1).
    #[error("server accepted extension {0:?}, which was not offered")]
    UnrequestedExtension(String),
    /// Client: the server's extension response is not acceptable.
    #[error("invalid extension response: {0}")]
    InvalidExtensionResponse(String),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub fn status(&self) -> StatusCode {
        use HandshakeError::*;
        match self {
            TooLarge(_) | TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            MethodNotGet | ConnectWithoutProtocol => StatusCode::METHOD_NOT_ALLOWED,
            UnsupportedProtocol(_) => StatusCode::NOT_IMPLEMENTED,
            UnsupportedVersion(_) => StatusCode::UPGRADE_REQUIRED,
            ProtocolNotOffered(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The response a server sends for this error: the status, a short
    /// plain-text reason, `Connection: close`, and for 426 the versions we
    /// speak (§4.4).
    pub fn to_response(&self) -> Response<Bytes> {
        let mut b = Response::builder()
            .status(self.status())
            .header(header::CONNECTION, "close")
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        match self {
            HandshakeError::UnsupportedVersion(_) => {
                b = b.header(header::SEC_WEBSOCKET_VERSION, SUPPORTED_VERSIONS).header(header::UPGRADE, "websocket");
            }
            HandshakeError::MethodNotGet => b = b.header(header::ALLOW, "GET"),
            _ => {}
        }
        let body = Bytes::from(format!("{self}\n"));
        b.body(body).unwrap_or_else(|_| Response::new(Bytes::new()))
    }
}

/// Find the end of an HTTP head (`\r\n\r\n`) within `max` bytes, looking
/// at `buf[from..]` only: the caller has already searched `buf[..from + 3]`.
fn head_end_from(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, HandshakeError> {
    let window = &buf[..buf.len().min(max)];
    let from = from.min(window.len());
    match window[from..].windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => Ok(Some(from + p + 4)),
        None if buf.len() >= max => Err(HandshakeError::TooLarge(max)),
        None => Ok(None),
    }
}

/// Reads an HTTP head (a request on the server, the response on the
/// client) that arrives in pieces, looking at each byte once.
///
/// Searching the whole buffer for the end of the head on every read would
/// make a peer that sends a 16 KiB head one byte per packet cost 16 KiB ×
/// 16 K comparisons. `HeadReader` remembers how far it has searched: each
/// call scans only the bytes added since the last one (and the 3 before
/// them, where a `\r\n\r\n` may begin), and parses the head once, when its
/// end is there. The bytes after the head belong to the WebSocket stream.
///
/// ```
/// use wsx_proto::handshake::{HeadReader, DEFAULT_MAX_REQUEST_SIZE};
/// let head = b"GET /chat HTTP/1.1\r\nHost: example.com\r\n\r\nrest";
/// let mut reader = HeadReader::new(DEFAULT_MAX_REQUEST_SIZE);
/// let mut buf = Vec::new();
/// for (i, b) in head.iter().enumerate() {
///     buf.push(*b);
///     if let Some((request, len)) = reader.request(&buf).unwrap() {
///         assert_eq!(request.uri(), "/chat");
///         assert_eq!((i, len), (head.len() - 5, head.len() - 4));
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct HeadReader {
    max: usize,
    searched: usize,
}

impl HeadReader {
    /// A reader that refuses heads longer than `max` bytes (431).
    pub fn new(max: usize) -> Self {
        HeadReader { max, searched: 0 }
    }

    /// The end of the head in `buf` (its length), if it is there. `buf` must
    /// be the previous call's `buf` with bytes appended.
    fn end(&mut self, buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let end = head_end_from(buf, self.searched.saturating_sub(3), self.max)?;
        self.searched = buf.len().min(self.max);
        Ok(end)
    }

    /// The request head at the start of `buf` and its length, once it is
    /// complete; `Ok(None)` while it is not. [`HandshakeError::TooLarge`]
    /// once `max` bytes hold no complete head, [`HandshakeError::TooManyHeaders`]
    /// past [`MAX_HEADERS`] lines.
    pub fn request(&mut self, buf: &[u8]) -> Result<Option<(Request<()>, usize)>, HandshakeError> {
        // A request line starts with a method, a token of visible ASCII; a
        // TLS handshake record starts with 0x16 (RFC 8446 §5.1).
        if buf.first() == Some(&0x16) {
            return Err(HandshakeError::TlsToPlainServer);
        }
        match self.end(buf)? {
            Some(end) => parse_request_head(&buf[..end]).map(|r| Some((r, end))),
            None => Ok(None),
        }
    }

    /// The response head at the start of `buf` and its length, once it is
    /// complete; see [`HeadReader::request`].
    pub fn response(&mut self, buf: &[u8]) -> Result<Option<(Response<()>, usize)>, HandshakeError> {
        match self.end(buf)? {
            Some(end) => parse_response_head(&buf[..end]).map(|r| Some((r, end))),
            None => Ok(None),
        }
    }
}

fn map_httparse(e: httparse::Error) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        other => HandshakeError::Malformed(other.to_string()),
    }
}

fn copy_headers(src: &[httparse::Header<'_>], dst: &mut HeaderMap) -> Result<(), HandshakeError> {
    for h in src {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::Malformed(format!("header name {:?}", h.name)))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| HandshakeError::Malformed(format!("value of {}", h.name)))?;
        dst.append(name, value);
    }
    Ok(())
}

/// A request head read in one go (the tests').
#[cfg(test)]
fn parse_request(buf: &[u8], max: usize) -> Result<Option<(Request<()>, usize)>, HandshakeError> {
    HeadReader::new(max).request(buf)
}

/// Parse a complete request head (ending with `\r\n\r\n`).
fn parse_request_head(head: &[u8]) -> Result<Request<()>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head).map_err(map_httparse)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HandshakeError::Malformed("incomplete head".into())),
    }
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| HandshakeError::Malformed("method".into()))?;
    let uri: Uri = req.path.unwrap_or("").parse().map_err(|_| HandshakeError::Malformed("request target".into()))?;
    let version = if req.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let mut out = Request::new(());
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.version_mut() = version;
    copy_headers(req.headers, out.headers_mut())?;
    Ok(out)
}

/// A response head read in one go (the tests').
#[cfg(test)]
fn parse_response(buf: &[u8], max: usize) -> Result<Option<(Response<()>, usize)>, HandshakeError> {
    HeadReader::new(max).response(buf)
}

/// Parse a complete response head (ending with `\r\n\r\n`).
fn parse_response_head(head: &[u8]) -> Result<Response<()>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head).map_err(map_httparse)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HandshakeError::Malformed("incomplete head".into())),
    }
    let status =
        StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| HandshakeError::Malformed("status code".into()))?;
    let mut out = Response::new(());
    *out.status_mut() = status;
    *out.version_mut() = if resp.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    copy_headers(resp.headers, out.headers_mut())?;
    Ok(out)
}

/// Whether a comma-separated header (all its lines) contains `token`,
/// compared case-insensitively.
///
/// Not part of the API: public for `wsx` (its server's `RequestHead` and
/// hyper upgrades look at requests that are not checked upgrades); use
/// [`UpgradeRequest::from_request`].
#[doc(hidden)]
pub fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A cookie's value from all `Cookie` header lines (quotes removed).
///
/// Not part of the API: public for `wsx` (its server's `RequestHead`); use
/// [`UpgradeRequest::cookie`].
#[doc(hidden)]
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v.trim_matches('"'))
    })
}

/// Parse the `Sec-WebSocket-Protocol` lines into a list of tokens; refuses
/// invalid tokens and duplicates (§4.1: unique, ordered by preference).
///
/// Not part of the API: public for `wsx` (its server's `Request::protocols`,
/// before the request is checked); use [`UpgradeRequest::protocols`].
#[doc(hidden)]
pub fn parse_protocols(headers: &HeaderMap) -> Result<Vec<String>, HandshakeError> {
    let mut out: Vec<String> = Vec::new();
    for v in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let v = v.to_str().map_err(|_| HandshakeError::InvalidProtocols("non-ASCII".into()))?;
        for p in v.split(',') {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            if !extensions::is_token(p) {
                return Err(HandshakeError::InvalidProtocols(format!("{p:?} is not a token")));
            }
            if out.iter().any(|q| q == p) {
                return Err(HandshakeError::InvalidProtocols(format!("{p:?} is repeated")));
            }
            out.push(p.to_owned());
        }
    }
    Ok(out)
}

/// Whether `s` is an HTTP token (RFC 7230 §3.2.6), as a subprotocol must
/// be (§4.1).
///
/// Not part of the API: public for `wsx::web`, whose constructor refuses
/// any other subprotocol at once (a `SyntaxError`, as browsers do); a
/// [`ClientHandshake`] refuses them with [`HandshakeError::InvalidProtocols`].
#[doc(hidden)]
pub fn is_token(s: &str) -> bool {
    extensions::is_token(s)
}

fn parse_extension_list(headers: &HeaderMap) -> Result<Vec<Extension>, HandshakeError> {
    Ok(extensions::parse_extension_headers(
        headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().map(|v| v.as_bytes()),
    )?)
}

/// A checked WebSocket upgrade request, as the server application sees it:
/// the whole HTTP request plus what the handshake extracted from it.
///
/// ```
/// use wsx_proto::handshake::{Accept, HandshakeError, UpgradeRequest};
/// let request = http::Request::get("/chat?room=7")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("origin", "https://example.com")
///     .body(()).unwrap();
/// let upgrade = UpgradeRequest::from_request(request).unwrap();
/// assert_eq!((upgrade.path(), upgrade.query_param("room")), ("/chat", Some("7")));
/// assert_eq!(upgrade.origin(), Some("https://example.com"));
/// let response = upgrade.accept(&Accept::new(), None).unwrap();
/// assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); // RFC 6455 §1.3
///
/// // Not an upgrade: the error has the status to answer with.
/// let plain = http::Request::get("/").header("host", "example.com").body(()).unwrap();
/// let refused = UpgradeRequest::from_request(plain).unwrap_err();
/// assert_eq!(refused, HandshakeError::NoUpgradeWebsocket);
/// assert_eq!(refused.to_response().status(), 400);
/// ```
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    request: Request<()>,
    /// Empty for an extended CONNECT (RFC 8441 §5: no key).
    key: String,
    version: u8,
    protocols: Vec<String>,
    extensions: Vec<Extension>,
}

impl UpgradeRequest {
    /// Check a request against RFC 6455 §4.2.1: GET, HTTP/1.1 or later,
    /// `Host`, `Upgrade: websocket`, `Connection: Upgrade` (token lists,
    /// case-insensitive), a `Sec-WebSocket-Key` that is base64 of 16 bytes,
    /// and a version of 13, 8 or 7.
    pub fn from_request(request: Request<()>) -> Result<Self, HandshakeError> {
        if request.method() != Method::GET {
            return Err(HandshakeError::MethodNotGet);
        }
        if request.version() < Version::HTTP_11 {
            return Err(HandshakeError::HttpVersion);
        }
        let h = request.headers();
        if h.get(header::HOST).is_none_or(|v| v.is_empty()) {
            return Err(HandshakeError::MissingHost);
        }
        if !header_has_token(h, header::UPGRADE, "websocket") {
            return Err(HandshakeError::NoUpgradeWebsocket);
        }
        if !header_has_token(h, header::CONNECTION, "upgrade") {
            return Err(HandshakeError::NoConnectionUpgrade);
        }
        let mut versions = h.get_all(header::SEC_WEBSOCKET_VERSION).iter();
        let version = match (versions.next(), versions.next()) {
            (Some(v), None) => {
                let s = v.to_str().unwrap_or("").trim();
                match s {
                    "13" => 13,
                    "8" => 8,
                    "7" => 7,
                    other => return Err(HandshakeError::UnsupportedVersion(other.to_owned())),
                }
            }
            (None, _) => return Err(HandshakeError::UnsupportedVersion(String::new())),
            (Some(_), Some(_)) => return Err(HandshakeError::UnsupportedVersion("several".into())),
        };
        let mut keys = h.get_all(header::SEC_WEBSOCKET_KEY).iter();
        let key = match (keys.next(), keys.next()) {
            (Some(k), None) => k.to_str().map_err(|_| HandshakeError::InvalidKey)?.trim().to_owned(),
            _ => return Err(HandshakeError::InvalidKey),
        };
        match BASE64.decode(key.as_bytes()) {
            Ok(raw) if raw.len() == 16 => {}
            _ => return Err(HandshakeError::InvalidKey),
        }
        let protocols = parse_protocols(h)?;
        let extensions = parse_extension_list(h)?;
        Ok(Self { request, key, version, protocols, extensions })
    }

    /// Check an HTTP/2 (RFC 8441 §5) or HTTP/3 (RFC 9220 §3) extended
    /// `CONNECT`, the WebSocket handshake of those versions. `protocol` is
    /// the request's `:protocol` pseudo-header (the HTTP/2 library carries
    /// it beside the request). The rules: method `CONNECT`, `:protocol`
    /// `websocket` (none is a plain tunnel request: 405, another protocol:
    /// 501), an `:authority` (the URI's, in place of `Host`), and
    /// `Sec-WebSocket-Version: 13` (426 otherwise). There is no
    /// `Sec-WebSocket-Key` (a stray one is ignored: the key and accept
    /// headers "are not used", §5), and `Connection` / `Upgrade` are
    /// connection-specific fields the HTTP/2 layer refuses before this
    /// point (RFC 9113 §8.2.2). Subprotocols and extensions are negotiated
    /// as on HTTP/1.1, and [`UpgradeRequest::accept`] answers 200.
    ///
    /// ```
    /// use wsx_proto::handshake::{Accept, HandshakeError, UpgradeRequest};
    /// let request = http::Request::connect("https://example.com/chat")
    ///     .version(http::Version::HTTP_2)
    ///     .header("sec-websocket-version", "13")
    ///     .header("sec-websocket-protocol", "chat")
    ///     .body(()).unwrap();
    /// let upgrade = UpgradeRequest::from_extended_connect(request, Some("websocket")).unwrap();
    /// let response = upgrade.accept(&Accept::new().protocol("chat"), None).unwrap();
    /// assert_eq!(response.status(), 200);
    /// assert!(response.headers().get("sec-websocket-accept").is_none());
    ///
    /// let tunnel = http::Request::connect("example.com:443").version(http::Version::HTTP_2).body(()).unwrap();
    /// let refused = UpgradeRequest::from_extended_connect(tunnel, None).unwrap_err();
    /// assert_eq!(refused.status(), 405);
    /// ```
    pub fn from_extended_connect(request: Request<()>, protocol: Option<&str>) -> Result<Self, HandshakeError> {
        if request.method() != Method::CONNECT {
            return Err(HandshakeError::MethodNotGet);
        }
        match protocol {
            None => return Err(HandshakeError::ConnectWithoutProtocol),
            Some(p) if !p.eq_ignore_ascii_case("websocket") => {
                return Err(HandshakeError::UnsupportedProtocol(p.to_owned()))
            }
            Some(_) => {}
        }
        if request.version() < Version::HTTP_2 {
            return Err(HandshakeError::HttpVersion);
        }
        if request.uri().authority().is_none_or(|a| a.as_str().is_empty()) {
            return Err(HandshakeError::MissingHost);
        }
        let h = request.headers();
        let mut versions = h.get_all(header::SEC_WEBSOCKET_VERSION).iter();
        match (versions.next(), versions.next()) {
            (Some(v), None) if v.as_bytes().trim_ascii() == b"13" => {}
            (Some(v), None) => {
                return Err(HandshakeError::UnsupportedVersion(v.to_str().unwrap_or("").trim().to_owned()))
            }
            (None, _) => return Err(HandshakeError::UnsupportedVersion(String::new())),
            (Some(_), Some(_)) => return Err(HandshakeError::UnsupportedVersion("several".into())),
        }
        let protocols = parse_protocols(h)?;
        let extensions = parse_extension_list(h)?;
        Ok(Self { request, key: String::new(), version: 13, protocols, extensions })
    }

    /// Whether this is an HTTP/2 or HTTP/3 extended `CONNECT` (answered
    /// with 200) rather than an HTTP/1.1 upgrade (answered with 101).
    pub fn is_extended_connect(&self) -> bool {
        self.request.method() == Method::CONNECT
    }

    /// The HTTP request (method, URI, headers).
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// All request headers.
    pub fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    /// One header as a string, if present and visible ASCII.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.request.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The path of the request target.
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.request.uri().query()
    }

    /// A query parameter's raw (not percent-decoded) value.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// The `Origin` header (sent by browsers, §4.1 / §10.2).
    pub fn origin(&self) -> Option<&str> {
        self.header(header::ORIGIN)
    }

    /// A cookie's value from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        cookie(self.request.headers(), name)
    }

    /// The negotiated protocol version: 13, 8 or 7.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The `Sec-WebSocket-Key` (empty for an extended `CONNECT`, which has
    /// none).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The extensions the client offered, in order.
    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// Build the 101 response (§4.2.2 step 5): `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept` (for an extended `CONNECT`, 200 without
    /// them, RFC 8441 §5), the chosen subprotocol (which must be one the
    /// client offered), the accepted extensions header and the application's
    /// extra headers.
    pub fn accept(&self, accept: &Accept, extensions: Option<&str>) -> Result<Response<()>, HandshakeError> {
        let mut resp = Response::new(());
        for (k, v) in &accept.headers {
            resp.headers_mut().append(k.clone(), v.clone());
        }
        if self.is_extended_connect() {
            // RFC 8441 §5: 200, and no upgrade headers (which HTTP/2 forbids).
            *resp.status_mut() = StatusCode::OK;
            resp.headers_mut().remove(header::CONNECTION);
            resp.headers_mut().remove(header::UPGRADE);
            resp.headers_mut().remove(header::TRANSFER_ENCODING);
        } else {
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            let accept_key = derive_accept_key(self.key.as_bytes());
            h.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept_key).map_err(|_| HandshakeError::InvalidKey)?,
            );
        }
        let h = resp.headers_mut();
        if let Some(p) = &accept.protocol {
            if !self.protocols.iter().any(|o| o == p) {
                return Err(HandshakeError::ProtocolNotOffered(p.clone()));
            }
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(p).map_err(|_| HandshakeError::ProtocolNotOffered(p.clone()))?,
            );
        }
        if let Some(e) = extensions {
            if let Ok(v) = HeaderValue::from_str(e) {
                h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
            }
        }
        Ok(resp)
    }
}

/// What the server application says to an upgrade request it accepts: the
/// subprotocol it picked (from the client's list) and extra response headers
/// (e.g. `Set-Cookie`).
///
/// ```
/// use wsx_proto::handshake::Accept;
/// let a = Accept::new().protocol("chat").header("x-server", "wsx");
/// assert_eq!(a.selected_protocol(), Some("chat"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Accept {
    protocol: Option<String>,
    headers: HeaderMap,
}

impl Accept {
    /// Accept with no subprotocol and no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Select a subprotocol (one the client offered).
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocol = Some(p.into());
        self
    }

    /// Add a response header. Invalid names or values are ignored.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            self.headers.append(n, v);
        }
        self
    }

    /// The selected subprotocol.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Extra headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// A refusal of an upgrade request: the HTTP response the server sends
/// instead of 101. Small (one pointer), so a callback returning
/// `Result<Accept, Reject>` stays cheap to move.
///
/// ```
/// use wsx_proto::handshake::Reject;
/// let r = Reject::new(403, "origin not allowed").header("x-reason", "origin");
/// assert_eq!(r.status(), 403);
/// assert_eq!(r.response().body().as_ref(), b"origin not allowed");
/// ```
#[derive(Debug)]
pub struct Reject(Box<Response<Bytes>>);

impl Reject {
    /// A refusal with `status` and a plain-text `body`. An invalid status
    /// becomes 400.
    pub fn new(status: impl TryInto<StatusCode>, body: impl Into<Bytes>) -> Self {
        let status = status.try_into().unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = Response::new(body.into());
        *resp.status_mut() = status;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        Self(Box::new(resp))
    }

    /// Add a header (e.g. `WWW-Authenticate`, `Retry-After`). Invalid names
    /// or values are ignored.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            self.0.headers_mut().append(n, v);
        }
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }

    /// The response.
    pub fn response(&self) -> &Response<Bytes> {
        &self.0
    }

    /// The response, owned.
    pub fn into_response(self) -> Response<Bytes> {
        *self.0
    }
}

impl From<Response<Bytes>> for Reject {
    fn from(r: Response<Bytes>) -> Self {
        Self(Box::new(r))
    }
}

impl From<HandshakeError> for Reject {
    fn from(e: HandshakeError) -> Self {
        Self(Box::new(e.to_response()))
    }
}

/// Serialize a response head and `body` into bytes (the response's own body
/// is not used, so a `Response<()>` head can be written with any body): the
/// 101 of [`UpgradeRequest::accept`], or a refusal ([`Reject::response`],
/// [`HandshakeError::to_response`]). A `Content-Length` is added to any
/// response but a 101 that has none.
///
/// ```
/// use wsx_proto::handshake::{write_response, Reject};
/// let refusal = Reject::new(403, "origin not allowed");
/// let mut out = Vec::new();
/// write_response(refusal.response(), refusal.response().body(), &mut out);
/// assert!(out.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
/// assert!(out.ends_with(b"content-length: 18\r\n\r\norigin not allowed"));
/// ```
pub fn write_response<B>(resp: &Response<B>, body: &[u8], dst: &mut Vec<u8>) {
    write_status_and_headers(resp, dst);
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS && !resp.headers().contains_key(header::CONTENT_LENGTH) {
        dst.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(body);
}

/// Append the HTTP/1.1 head of `resp` to `dst` as it is, with no length
/// added: for a body that follows as it is produced.
///
/// ```
/// use wsx_proto::handshake::write_head;
/// let resp = http::Response::builder().header("content-type", "text/event-stream").body(()).unwrap();
/// let mut out = Vec::new();
/// write_head(&resp, &mut out);
/// assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n");
/// ```
pub fn write_head<B>(resp: &Response<B>, dst: &mut Vec<u8>) {
    write_status_and_headers(resp, dst);
    dst.extend_from_slice(b"\r\n");
}

/// The status line and header lines of `resp`.
fn write_status_and_headers<B>(resp: &Response<B>, dst: &mut Vec<u8>) {
    let status = resp.status();
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.extend_from_slice(b"\r\n");
    for (k, v) in resp.headers() {
        dst.extend_from_slice(k.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(v.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
}

/// What the client negotiated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    /// The extensions the server accepted, in order.
    pub extensions: Vec<Extension>,
}

/// The client side of the opening handshake: the request it sent and what it
/// expects back.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    /// The `Sec-WebSocket-Accept` expected; `None` for an extended
    /// `CONNECT`, answered with 200 and no key (RFC 8441 §5).
    accept_key: Option<String>,
    protocols: Vec<String>,
    offered_extensions: Vec<String>,
    request: Request<()>,
}

impl ClientHandshake {
    /// Complete `request` (a `ws://`, `wss://`, `http://` or `https://` URI,
    /// or a path with a `Host` header) into an opening handshake (§4.1):
    /// `Host` (unless given), `Upgrade`, `Connection`, a fresh
    /// `Sec-WebSocket-Key` from a CSPRNG, `Sec-WebSocket-Version: 13`. Headers
    /// the caller set are kept, including `Sec-WebSocket-Protocol` (the
    /// subprotocols offered) and `Sec-WebSocket-Extensions`. Returns the
    /// bytes to send.
    pub fn new(request: Request<()>) -> Result<(Vec<u8>, ClientHandshake), HandshakeError> {
        // §4.1: the nonce "MUST be selected randomly for each connection".
        Self::new_with_key(request, rand::random())
    }

    /// [`ClientHandshake::new`], with the nonce drawn from a generator
    /// seeded with `seed` when one is given (a run that
    /// [`Config::with_rng_seed`](crate::Config::with_rng_seed) makes
    /// replayable), else from the thread's CSPRNG.
    ///
    /// ```
    /// use wsx_proto::handshake::ClientHandshake;
    /// let request = || http::Request::get("ws://example.com/chat").body(()).unwrap();
    /// let (a, _) = ClientHandshake::with_seed(request(), Some(7)).unwrap();
    /// let (b, _) = ClientHandshake::with_seed(request(), Some(7)).unwrap();
    /// assert_eq!(a, b);
    /// ```
    pub fn with_seed(request: Request<()>, seed: Option<u64>) -> Result<(Vec<u8>, ClientHandshake), HandshakeError> {
        match seed {
            // Its own stream: not the first masking keys of the same seed.
            Some(seed) => {
                use rand::{Rng, SeedableRng};
                let key = rand::rngs::StdRng::seed_from_u64(seed ^ 0x6e6f_6e63_6521_6b65).random();
                Self::new_with_key(request, key)
            }
            None => Self::new(request),
        }
    }

    /// Like [`ClientHandshake::new`], with the 16 bytes of the nonce
    /// (`Sec-WebSocket-Key`, base64-encoded) given by the caller instead of
    /// drawn from the CSPRNG: for replayable runs and tests, where the same
    /// key gives the same bytes. §4.1 requires a nonce chosen at random for
    /// each connection; draw it from a source the run controls, never reuse
    /// a constant in production.
    ///
    /// ```
    /// use wsx_proto::handshake::ClientHandshake;
    /// let request = || http::Request::get("ws://example.com/chat").body(()).unwrap();
    /// let (a, _) = ClientHandshake::new_with_key(request(), [7; 16]).unwrap();
    /// let (b, _) = ClientHandshake::new_with_key(request(), [7; 16]).unwrap();
    /// assert_eq!(a, b);
    /// assert!(String::from_utf8(a).unwrap().contains("sec-websocket-key: BwcHBwcHBwcHBwcHBwcHBw==\r\n"));
    /// ```
    pub fn new_with_key(
        mut request: Request<()>,
        key_raw: [u8; 16],
    ) -> Result<(Vec<u8>, ClientHandshake), HandshakeError> {
        let uri = request.uri().clone();
        if let Some(scheme) = uri.scheme_str() {
            if !matches!(scheme.to_ascii_lowercase().as_str(), "ws" | "wss" | "http" | "https") {
                return Err(HandshakeError::InvalidUrl(format!("scheme {scheme:?} is not ws or wss")));
            }
        }
        let path = uri.path_and_query().map(|p| p.as_str()).filter(|p| !p.is_empty()).unwrap_or("/");
        let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
        let headers = request.headers_mut();
        if !headers.contains_key(header::HOST) {
            let host = uri.host().ok_or_else(|| HandshakeError::InvalidUrl("no host".into()))?;
            let default_port = matches!(uri.scheme_str(), Some("wss" | "https")).then_some(443).unwrap_or(80);
            let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
            let value = match uri.port_u16() {
                Some(p) if p != default_port => format!("{host}:{p}"),
                _ => host,
            };
            headers.insert(
                header::HOST,
                HeaderValue::from_str(&value).map_err(|_| HandshakeError::InvalidUrl("host".into()))?,
            );
        }
        let key = BASE64.encode(key_raw);
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_str(&key).map_err(|_| HandshakeError::InvalidKey)?);
        let protocols = parse_protocols(headers)?;
        let offered_extensions = parse_extension_list(headers)?.into_iter().map(|e| e.name).collect();

        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(b"GET ");
        bytes.extend_from_slice(path.as_bytes());
        bytes.extend_from_slice(b" HTTP/1.1\r\n");
        for (k, v) in request.headers() {
            bytes.extend_from_slice(k.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(v.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        let accept_key = Some(derive_accept_key(key.as_bytes()));
        Ok((bytes, ClientHandshake { accept_key, protocols, offered_extensions, request }))
    }

    /// The extended `CONNECT` of HTTP/2 (RFC 8441 §5) or HTTP/3 (RFC 9220)
    /// for `request` (a `ws://` or `wss://` URI): method `CONNECT`, the
    /// URI with scheme `http` or `https` (its `:scheme`, `:authority` and
    /// `:path`), `Sec-WebSocket-Version: 13`, the caller's headers (a
    /// `Host` becomes the authority), and no key, `Upgrade` or
    /// `Connection`. The caller sends it with the `:protocol` pseudo-header
    /// `websocket` (the HTTP/2 library's request extension), and only to a
    /// server that sent `SETTINGS_ENABLE_CONNECT_PROTOCOL` = 1 (§3).
    ///
    /// ```
    /// use wsx_proto::handshake::{ClientHandshake, UpgradeRequest, Accept};
    /// let request = http::Request::get("wss://example.com/chat?room=1")
    ///     .header("sec-websocket-protocol", "chat")
    ///     .body(()).unwrap();
    /// let (connect, client) = ClientHandshake::extended_connect(request).unwrap();
    /// assert_eq!(connect.method(), "CONNECT");
    /// assert_eq!(connect.uri(), "https://example.com/chat?room=1");
    ///
    /// let upgrade = UpgradeRequest::from_extended_connect(connect, Some("websocket")).unwrap();
    /// let response = upgrade.accept(&Accept::new().protocol("chat"), None).unwrap();
    /// assert_eq!(client.check_response(&response).unwrap().protocol.as_deref(), Some("chat"));
    /// ```
    pub fn extended_connect(mut request: Request<()>) -> Result<(Request<()>, ClientHandshake), HandshakeError> {
        let uri = request.uri().clone();
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("wss" | "https") => "https",
            Some("ws" | "http") => "http",
            Some(other) => return Err(HandshakeError::InvalidUrl(format!("scheme {other:?} is not ws or wss"))),
            None => return Err(HandshakeError::InvalidUrl("no scheme".into())),
        };
        let headers = request.headers_mut();
        let authority = match headers.remove(header::HOST) {
            Some(host) => host.to_str().map_err(|_| HandshakeError::InvalidUrl("host".into()))?.to_owned(),
            None => uri.authority().ok_or_else(|| HandshakeError::InvalidUrl("no host".into()))?.as_str().to_owned(),
        };
        let path = uri.path_and_query().map(|p| p.as_str()).filter(|p| !p.is_empty()).unwrap_or("/");
        let target = format!("{scheme}://{authority}{}", if path.starts_with('/') { "" } else { "/" });
        let uri: Uri = format!("{target}{path}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| HandshakeError::InvalidUrl(e.to_string()))?;
        for name in [header::UPGRADE, header::CONNECTION, header::SEC_WEBSOCKET_KEY] {
            headers.remove(name);
        }
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        let protocols = parse_protocols(headers)?;
        let offered_extensions = parse_extension_list(headers)?.into_iter().map(|e| e.name).collect();
        *request.method_mut() = Method::CONNECT;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_2;
        let client = ClientHandshake { accept_key: None, protocols, offered_extensions, request: request.clone() };
        Ok((request, client))
    }

    /// The request as sent.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The subprotocols offered.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// Check the server's response (§4.2.2, §4.1 "the client MUST Fail the
    /// WebSocket Connection" rules).
    pub fn check_response<B>(&self, resp: &Response<B>) -> Result<Negotiated, HandshakeError> {
        let h = resp.headers();
        match &self.accept_key {
            // RFC 8441 §5: "it MUST respond with a 200 (OK) status code".
            None if resp.status() != StatusCode::OK => return Err(HandshakeError::UnexpectedStatus(resp.status())),
            None => {}
            Some(_) if resp.status() != StatusCode::SWITCHING_PROTOCOLS => {
                return Err(HandshakeError::UnexpectedStatus(resp.status()))
            }
            Some(accept_key) => {
                if !header_has_token(h, header::UPGRADE, "websocket") {
                    return Err(HandshakeError::NoUpgradeWebsocket);
                }
                if !header_has_token(h, header::CONNECTION, "upgrade") {
                    return Err(HandshakeError::NoConnectionUpgrade);
                }
                let mut accepts = h.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
                match (accepts.next(), accepts.next()) {
                    (Some(v), None) if v.as_bytes() == accept_key.as_bytes() => {}
                    _ => return Err(HandshakeError::AcceptMismatch),
                }
            }
        }
        let selected = parse_protocols(h)?;
        let protocol = match selected.as_slice() {
            [] => None,
            [p] if self.protocols.contains(p) => Some(p.clone()),
            [p] => return Err(HandshakeError::UnrequestedProtocol(p.clone())),
            _ => return Err(HandshakeError::UnrequestedProtocol(selected.join(", "))),
        };
        let extensions =
            parse_extension_list(h).map_err(|e| HandshakeError::InvalidExtensionResponse(e.to_string()))?;
        for e in &extensions {
            if !self.offered_extensions.contains(&e.name) {
                return Err(HandshakeError::UnrequestedExtension(e.name.clone()));
            }
        }
        Ok(Negotiated { protocol, extensions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\nCookie: a=1; sid=\"xyz\"\r\n\r\n";

    /// §4.2.1 heads arrive in any pieces: read byte by byte, the head is
    /// found exactly where it ends (also when `\r\n\r\n` straddles reads),
    /// and each call searches only from 3 bytes before the new ones.
    #[test]
    fn head_reader_finds_the_head_in_any_pieces_and_scans_each_byte_once() {
        let mut bytes = REQ.as_bytes().to_vec();
        bytes.extend_from_slice(b"\x81\x00");
        let whole = parse_request(&bytes, DEFAULT_MAX_REQUEST_SIZE).unwrap().unwrap();
        for step in [1, 2, 3, 5, 7, 64] {
            let mut reader = HeadReader::new(DEFAULT_MAX_REQUEST_SIZE);
            let mut found = None;
            let mut len = 0;
            while found.is_none() && len < bytes.len() {
                len = (len + step).min(bytes.len());
                found = reader.request(&bytes[..len]).unwrap();
                if found.is_none() {
                    assert_eq!(reader.searched, len, "next search starts at the new bytes");
                }
            }
            let (request, end) = found.expect("head found");
            assert_eq!(end, whole.1);
            assert!(len < end + step, "found as soon as it ended (step {step})");
            assert_eq!(request.headers(), whole.0.headers());
        }
        // Past `max` without an end: 431, also when read in pieces.
        let mut reader = HeadReader::new(64);
        assert!(reader.request(&bytes[..40]).unwrap().is_none());
        assert!(matches!(reader.request(&bytes[..64]), Err(HandshakeError::TooLarge(64))));
    }

    fn req_with(replace: &str, with: &str) -> Result<UpgradeRequest, HandshakeError> {
        let s = REQ.replacen(replace, with, 1);
        let (r, _) = parse_request(s.as_bytes(), DEFAULT_MAX_REQUEST_SIZE)?.expect("complete");
        UpgradeRequest::from_request(r)
    }

    #[test]
    fn rfc6455_1_3_accept_key() {
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_request_exposes_path_query_origin_cookies_protocols() {
        let r = req_with("", "").unwrap();
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.query_param("room"), Some("1"));
        assert_eq!(r.origin(), Some("http://example.com"));
        assert_eq!(r.cookie("sid"), Some("xyz"));
        assert_eq!(r.protocols(), ["chat", "superchat"]);
        assert_eq!(r.version(), 13);
        let resp = r.accept(&Accept::new().protocol("chat"), None).unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn upgrade_and_connection_are_case_insensitive_token_lists() {
        // RFC 6455 §4.2.1 items 3 and 4.
        assert!(req_with("Upgrade: websocket", "Upgrade: WebSocket").is_ok());
        assert!(req_with("Connection: Upgrade", "Connection: keep-alive, upgrade").is_ok());
        assert_eq!(req_with("Upgrade: websocket", "Upgrade: h2c").unwrap_err(), HandshakeError::NoUpgradeWebsocket);
        assert_eq!(
            req_with("Connection: Upgrade", "Connection: keep-alive").unwrap_err(),
            HandshakeError::NoConnectionUpgrade
        );
    }

    #[test]
    fn request_requires_get_http11_and_host() {
        assert_eq!(req_with("GET", "POST").unwrap_err().status(), 405);
        assert_eq!(req_with("HTTP/1.1", "HTTP/1.0").unwrap_err(), HandshakeError::HttpVersion);
        assert_eq!(req_with("Host: server.example.com\r\n", "").unwrap_err(), HandshakeError::MissingHost);
    }

    #[test]
    fn key_must_be_base64_of_16_bytes() {
        // RFC 6455 §4.2.1 item 5.
        assert_eq!(req_with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==").unwrap_err(), HandshakeError::InvalidKey);
        assert_eq!(req_with("dGhlIHNhbXBsZSBub25jZQ==", "not base64!").unwrap_err(), HandshakeError::InvalidKey);
        assert_eq!(
            req_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "").unwrap_err(),
            HandshakeError::InvalidKey
        );
    }

    #[test]
    fn versions_13_8_7_accepted_others_get_426() {
        // RFC 6455 §4.4; hybi-07 and hybi-08 share the framing of 13.
        for v in ["13", "8", "7"] {
            assert_eq!(req_with("Version: 13", &format!("Version: {v}")).unwrap().version().to_string(), v);
        }
        for v in ["12", "0", "abc", "14"] {
            let e = req_with("Version: 13", &format!("Version: {v}")).unwrap_err();
            assert_eq!(e.status(), StatusCode::UPGRADE_REQUIRED);
            let resp = e.to_response();
            assert_eq!(resp.headers()["sec-websocket-version"], "13, 8, 7");
        }
        assert_eq!(req_with("Sec-WebSocket-Version: 13\r\n", "").unwrap_err().status(), 426);
    }

    #[test]
    fn oversized_request_head_gets_431() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(DEFAULT_MAX_REQUEST_SIZE));
        let e = parse_request(big.as_bytes(), DEFAULT_MAX_REQUEST_SIZE).unwrap_err();
        assert_eq!(e.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
        let e =
            parse_request(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), DEFAULT_MAX_REQUEST_SIZE).unwrap_err();
        assert_eq!(e.status(), 431);
    }

    #[test]
    fn partial_request_head_asks_for_more() {
        for cut in 0..REQ.len() - 1 {
            assert!(parse_request(&REQ.as_bytes()[..cut], DEFAULT_MAX_REQUEST_SIZE).unwrap().is_none());
        }
    }

    #[test]
    fn server_may_only_select_an_offered_protocol() {
        let r = req_with("", "").unwrap();
        assert_eq!(r.accept(&Accept::new().protocol("other"), None).unwrap_err().status(), 500);
    }

    #[test]
    fn duplicate_or_invalid_protocols_are_refused() {
        assert!(req_with("chat, superchat", "chat, chat").is_err());
        assert!(req_with("chat, superchat", "chat, sup er").is_err());
    }

    fn client_pair(protocols: &str) -> (ClientHandshake, UpgradeRequest) {
        let mut b = Request::get("ws://example.com:8080/x?y=1");
        if !protocols.is_empty() {
            b = b.header("sec-websocket-protocol", protocols);
        }
        let (bytes, client) = ClientHandshake::new(b.body(()).unwrap()).unwrap();
        let (r, n) = parse_request(&bytes, DEFAULT_MAX_REQUEST_SIZE).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(r.uri().path_and_query().unwrap().as_str(), "/x?y=1");
        assert_eq!(r.headers()["host"], "example.com:8080");
        (client, UpgradeRequest::from_request(r).unwrap())
    }

    #[test]
    fn client_keys_are_random_and_16_bytes() {
        let (_, a) = client_pair("");
        let (_, b) = client_pair("");
        assert_ne!(a.key(), b.key());
        assert_eq!(BASE64.decode(a.key()).unwrap().len(), 16);
    }

    #[test]
    fn client_checks_accept_key() {
        let (client, up) = client_pair("");
        let mut resp = up.accept(&Accept::new(), None).unwrap();
        assert!(client.check_response(&resp).is_ok());
        resp.headers_mut().insert("sec-websocket-accept", HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(client.check_response(&resp).unwrap_err(), HandshakeError::AcceptMismatch);
    }

    #[test]
    fn client_fails_on_unoffered_protocol_or_extension() {
        // RFC 6455 §4.1: a subprotocol or extension not requested fails the connection.
        let (client, up) = client_pair("a, b");
        let mut resp = up.accept(&Accept::new().protocol("b"), None).unwrap();
        assert_eq!(client.check_response(&resp).unwrap().protocol.as_deref(), Some("b"));
        resp.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("c"));
        assert_eq!(client.check_response(&resp).unwrap_err(), HandshakeError::UnrequestedProtocol("c".into()));
        let resp = up.accept(&Accept::new(), Some("permessage-deflate")).unwrap();
        assert_eq!(
            client.check_response(&resp).unwrap_err(),
            HandshakeError::UnrequestedExtension("permessage-deflate".into())
        );
    }

    #[test]
    fn client_fails_on_non_101_status() {
        let (client, _) = client_pair("");
        let resp = HandshakeError::UnsupportedVersion("1".into()).to_response();
        assert_eq!(
            client.check_response(&resp).unwrap_err(),
            HandshakeError::UnexpectedStatus(StatusCode::UPGRADE_REQUIRED)
        );
    }

    #[test]
    fn response_round_trips_through_bytes() {
        let (client, up) = client_pair("");
        let resp = up.accept(&Accept::new().header("x-a", "b"), None).unwrap();
        let mut bytes = Vec::new();
        write_response(&resp, &[], &mut bytes);
        bytes.extend_from_slice(b"\x81\x00");
        let (parsed, n) = parse_response(&bytes, DEFAULT_MAX_REQUEST_SIZE).unwrap().unwrap();
        assert_eq!(&bytes[n..], b"\x81\x00");
        assert_eq!(parsed.headers()["x-a"], "b");
        client.check_response(&parsed).unwrap();
    }

    /// An RFC 8441 §5 extended CONNECT, as a browser sends it on HTTP/2.
    fn connect(version: Option<&str>) -> http::request::Builder {
        let b = Request::connect("https://server.example.com/chat")
            .version(Version::HTTP_2)
            .header("origin", "https://example.com")
            .header("sec-websocket-protocol", "chat, superchat");
        match version {
            Some(v) => b.header("sec-websocket-version", v),
            None => b,
        }
    }

    /// RFC 8441 §5: the server "MUST respond with a 200 (OK)"; no
    /// Sec-WebSocket-Accept, and none of HTTP/1.1's upgrade headers (RFC
    /// 9113 §8.2.2 makes them malformed on HTTP/2). Subprotocols and
    /// extensions negotiate as on HTTP/1.1.
    #[test]
    fn extended_connect_is_answered_with_200_and_no_upgrade_headers() {
        let req = connect(Some("13"))
            .header("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")
            .body(())
            .unwrap();
        let up = UpgradeRequest::from_extended_connect(req, Some("websocket")).unwrap();
        assert!(up.is_extended_connect());
        assert_eq!((up.version(), up.key(), up.path()), (13, "", "/chat"));
        assert_eq!(up.protocols(), ["chat", "superchat"]);
        assert_eq!(up.extensions()[0].name, "permessage-deflate");
        let resp = up
            .accept(&Accept::new().protocol("superchat").header("connection", "close"), Some("permessage-deflate"))
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        for absent in ["sec-websocket-accept", "upgrade", "connection"] {
            assert!(resp.headers().get(absent).is_none(), "{absent} on an HTTP/2 response");
        }
        assert_eq!(resp.headers()["sec-websocket-protocol"], "superchat");
        assert_eq!(resp.headers()["sec-websocket-extensions"], "permessage-deflate");
        // The protocol name is a token: its case does not matter.
        let req = connect(Some("13")).body(()).unwrap();
        assert!(UpgradeRequest::from_extended_connect(req, Some("WebSocket")).is_ok());
    }

    /// The refusals of an extended CONNECT: a plain CONNECT is a tunnel
    /// request to a server that is no proxy (405), another `:protocol` is
    /// not implemented (501), a version other than 13 is 426 with the
    /// version we speak (RFC 6455 §4.4; RFC 8441 carries the header over),
    /// and the `:authority` stands in for `Host` (400 without it).
    #[test]
    fn extended_connect_refusals_have_their_statuses() {
        let refuse = |req: Request<()>, protocol: Option<&str>| {
            UpgradeRequest::from_extended_connect(req, protocol).unwrap_err()
        };
        let e = refuse(Request::connect("server.example.com:443").version(Version::HTTP_2).body(()).unwrap(), None);
        assert_eq!((e.clone(), e.status()), (HandshakeError::ConnectWithoutProtocol, StatusCode::METHOD_NOT_ALLOWED));
        let e = refuse(connect(Some("13")).body(()).unwrap(), Some("webtransport"));
        assert_eq!(e.status(), StatusCode::NOT_IMPLEMENTED);
        for bad in [None, Some("8"), Some("14")] {
            let e = refuse(connect(bad).body(()).unwrap(), Some("websocket"));
            assert!(matches!(e, HandshakeError::UnsupportedVersion(_)), "{bad:?}: {e:?}");
            assert_eq!(e.status(), StatusCode::UPGRADE_REQUIRED);
        }
        let twice = connect(Some("13")).header("sec-websocket-version", "13").body(()).unwrap();
        assert!(matches!(refuse(twice, Some("websocket")), HandshakeError::UnsupportedVersion(_)));
        let no_authority = Request::connect("/chat").version(Version::HTTP_2).header("sec-websocket-version", "13");
        assert_eq!(refuse(no_authority.body(()).unwrap(), Some("websocket")), HandshakeError::MissingHost);
        let h1 = connect(Some("13")).version(Version::HTTP_11).body(()).unwrap();
        assert_eq!(refuse(h1, Some("websocket")), HandshakeError::HttpVersion);
        let get = Request::get("https://server.example.com/").version(Version::HTTP_2).body(()).unwrap();
        assert_eq!(refuse(get, Some("websocket")), HandshakeError::MethodNotGet);
        let bad_protocols = connect(Some("13")).header("sec-websocket-protocol", "a b").body(()).unwrap();
        assert!(matches!(refuse(bad_protocols, Some("websocket")), HandshakeError::InvalidProtocols(_)));
        // §5: the key "is not used": a stray one neither helps nor hurts.
        let keyed = connect(Some("13")).header("sec-websocket-key", "x").body(()).unwrap();
        assert!(UpgradeRequest::from_extended_connect(keyed, Some("websocket")).is_ok());
    }

    /// The client's extended CONNECT (RFC 8441 §5): `:scheme` https for
    /// wss and http for ws, the authority from the URI or `Host`, version
    /// 13, no key and no upgrade headers; it accepts 200 alone, with the
    /// same subprotocol and extension checks as §4.1.
    #[test]
    fn client_extended_connect_request_and_response() {
        let req = Request::get("ws://h.example:8080/a?b=1")
            .header("sec-websocket-protocol", "chat")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        let (connect, client) = ClientHandshake::extended_connect(req).unwrap();
        assert_eq!((connect.method(), connect.version()), (&Method::CONNECT, Version::HTTP_2));
        assert_eq!(connect.uri(), "http://h.example:8080/a?b=1");
        assert_eq!(connect.headers()["sec-websocket-version"], "13");
        for absent in ["sec-websocket-key", "upgrade", "connection", "host"] {
            assert!(connect.headers().get(absent).is_none(), "{absent} in an extended CONNECT");
        }
        let with_host = Request::get("wss://10.0.0.1/").header("host", "example.com").body(()).unwrap();
        assert_eq!(ClientHandshake::extended_connect(with_host).unwrap().0.uri(), "https://example.com/");
        let ftp = Request::get("ftp://example.com/").body(()).unwrap();
        assert!(matches!(ClientHandshake::extended_connect(ftp), Err(HandshakeError::InvalidUrl(_))));

        let ok = |status: u16, protocol: Option<&str>| {
            let mut b = Response::builder().status(status);
            if let Some(p) = protocol {
                b = b.header("sec-websocket-protocol", p);
            }
            client.check_response(&b.body(()).unwrap())
        };
        assert_eq!(ok(200, Some("chat")).unwrap().protocol.as_deref(), Some("chat"));
        assert_eq!(ok(200, None).unwrap().protocol, None);
        assert_eq!(ok(101, None), Err(HandshakeError::UnexpectedStatus(StatusCode::SWITCHING_PROTOCOLS)));
        assert_eq!(ok(204, None), Err(HandshakeError::UnexpectedStatus(StatusCode::NO_CONTENT)));
        assert_eq!(ok(200, Some("other")), Err(HandshakeError::UnrequestedProtocol("other".into())));
        let ext = Response::builder().status(200).header("sec-websocket-extensions", "permessage-deflate");
        assert!(matches!(client.check_response(&ext.body(()).unwrap()), Err(HandshakeError::UnrequestedExtension(_))));
    }
}
