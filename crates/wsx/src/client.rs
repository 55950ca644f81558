//! The client: `connect` over TCP, or `client_handshake` over any stream.

use crate::refused::Refused;
use crate::MaybeTlsStream;
use crate::{Config, Error, Result, WebSocket};
use bytes::{Bytes, BytesMut};
use http::{Request, Response, Uri};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx_proto::handshake::{ClientHandshake, HeadReader};
use wsx_proto::Role;

/// Anything that names a WebSocket endpoint: a URL string, a `Uri`, or a
/// full `http::Request` (to add headers such as `Sec-WebSocket-Protocol`,
/// `Origin`, `Authorization` or cookies).
pub trait IntoClientRequest {
    /// The request to send.
    fn into_client_request(self) -> Result<Request<()>>;
}

impl IntoClientRequest for Request<()> {
    fn into_client_request(self) -> Result<Request<()>> {
        Ok(self)
    }
}

impl IntoClientRequest for Uri {
    fn into_client_request(self) -> Result<Request<()>> {
        let mut r = Request::new(());
        *r.uri_mut() = self;
        Ok(r)
    }
}

impl IntoClientRequest for &str {
    /// Parse and check the URL: a `ws://` or `wss://` scheme (`http://`
    /// and `https://` are taken as their WebSocket equivalents) with two
    /// slashes, a host, and a port from 1 to 65535 when one is given.
    fn into_client_request(self) -> Result<Request<()>> {
        check_slashes(self)?;
        let uri: Uri = self.parse().map_err(|e| Error::Url(format!("{self:?}: {e}")))?;
        target(&uri)?;
        uri.into_client_request()
    }
}

impl IntoClientRequest for String {
    fn into_client_request(self) -> Result<Request<()>> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for &String {
    fn into_client_request(self) -> Result<Request<()>> {
        self.as_str().into_client_request()
    }
}

/// Open a WebSocket connection to a `ws://` or `wss://` URL with default
/// settings. Returns the connection and the server's handshake response.
/// `wss://` uses TLS (rustls) and trusts Mozilla's root certificates; see
/// [`connect_with`] for other settings.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let (mut ws, response) = wsx::connect("wss://echo.example.com/chat").await?;
/// ws.send(wsx::Message::text("hi")).await?;
/// # Ok(()) }
/// ```
pub async fn connect(request: impl IntoClientRequest) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
    connect_with(request, &Config::default()).await
}

/// Open a WebSocket connection with the given settings. The request may
/// carry extra headers; subprotocols are offered with
/// `Sec-WebSocket-Protocol`. `wss://` runs TLS with the server name of the
/// URL (SNI, certificate check), configured by [`Config::with_tls_config`]
/// / [`Config::with_tls_roots`]; a proxy is used when
/// [`Config::with_proxy`] or [`Config::with_proxy_from_env`] says so. The
/// whole of connecting (proxy, TLS) and the handshake is bounded by the
/// handshake timeout.
///
/// With the `http2` feature (on by default), `wss://` chooses its HTTP
/// version as browsers do: TLS offers ALPN `h2` and `http/1.1`, and when
/// the server picks `h2` and allows extended `CONNECT`
/// (`SETTINGS_ENABLE_CONNECT_PROTOCOL`, RFC 8441 §3), the WebSocket is a
/// stream of an HTTP/2 connection that the WebSockets to the same origin
/// share; otherwise it is HTTP/1.1. [`Config::with_http2`] requires or
/// forbids HTTP/2; [`crate::http2`] says how connections are shared.
/// `ws://` is always HTTP/1.1.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let request = http::Request::get("ws://127.0.0.1:9001/")
///     .header("Sec-WebSocket-Protocol", "chat")
///     .header("Origin", "https://example.com")
///     .body(()).unwrap();
/// let config = wsx::Config::default().with_max_message_size(1 << 20);
/// let (ws, _) = wsx::connect_with(request, &config).await?;
/// assert_eq!(ws.protocol(), Some("chat"));
/// # Ok(()) }
/// ```
pub async fn connect_with(
    request: impl IntoClientRequest,
    config: &Config,
) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
    let request = request.into_client_request()?;
    let uri = request.uri();
    let target = target(uri)?;
    if target.secure && !cfg!(feature = "tls") {
        return Err(Error::TlsDisabled);
    }
    #[cfg(feature = "http2")]
    if !target.secure && config.http2() == crate::http2::Mode::Required {
        return Err(Error::Http2Unavailable(crate::http2::Unavailable::NotTls));
    }
    let proxy = config.proxy_mode().proxy_for(uri)?;
    // Set while the TLS handshake waits for the server's first byte: a
    // plain server that waits for an HTTP request never sends one.
    let tls_unanswered = AtomicBool::new(false);
    let route = Route { target: &target, proxy: proxy.as_ref(), config, tls_unanswered: &tls_unanswered };
    let fut = async {
        if !target.secure {
            return client_handshake_inner(MaybeTlsStream::Plain(route.tcp().await?), request, config).await;
        }
        #[cfg(feature = "http2")]
        let stream = match crate::http2::open(&request, &route).await.map_err(|e| tls_failure(e, &target.host))? {
            crate::http2::Opened::WebSocket(opened) => return Ok(*opened),
            crate::http2::Opened::Http1(stream) => stream,
        };
        #[cfg(not(feature = "http2"))]
        let stream = None;
        let stream = match stream {
            Some(s) => s,
            None => route.tls(Offer::Http11).await?,
        };
        client_handshake_inner(stream, request, config).await.map_err(|e| tls_failure(e, &target.host))
    };
    let timed_out = || match tls_unanswered.load(Ordering::Relaxed) {
        true => Error::TlsUnanswered,
        false => Error::HandshakeTimeout,
    };
    Box::pin(tokio::time::timeout(config.handshake_timeout(), fut)).await.map_err(|_| timed_out())?
}

/// How to reach the server of one [`connect_with`]: the URL's target, the
/// proxy and the settings.
pub(crate) struct Route<'a> {
    pub(crate) target: &'a Target,
    pub(crate) proxy: Option<&'a crate::proxy::Proxy>,
    pub(crate) config: &'a Config,
    tls_unanswered: &'a AtomicBool,
}

impl Route<'_> {
    /// A TCP connection to the server, or a tunnel to it through the proxy.
    pub(crate) async fn tcp(&self) -> Result<TcpStream> {
        let Target { host, port, .. } = self.target;
        match self.proxy {
            None => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|source| Error::Connect { address: host_port(host, *port), source })?;
                tcp.set_nodelay(true)?;
                Ok(tcp)
            }
            Some(p) => crate::proxy::tunnel(p, host, *port, self.config).await,
        }
    }

    /// A TLS connection to the server that offers `offer` by ALPN.
    pub(crate) async fn tls(&self, offer: Offer) -> Result<MaybeTlsStream> {
        let tcp = self.tcp().await?;
        tls_connect(tcp, &self.target.host, self.config, offer, self.tls_unanswered).await
    }
}

/// What a client offers by ALPN on one TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// `http/1.1` alone.
    Http11,
    /// `h2`, then `http/1.1` (the server picks, RFC 7301 §3.2).
    #[cfg(feature = "http2")]
    H2AndHttp11,
}

/// Where a WebSocket URL leads.
pub(crate) struct Target {
    /// `wss://` (or `https://`).
    pub(crate) secure: bool,
    /// The host, without the brackets of an IPv6 address.
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// Check that `uri` names a WebSocket server: its scheme, host and port.
fn target(uri: &Uri) -> Result<Target> {
    let (secure, default_port) = match uri.scheme_str().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("ws") | Some("http") => (false, 80),
        Some("wss") | Some("https") => (true, 443),
        Some(other) => return Err(Error::Url(format!("scheme {other:?} is not ws or wss"))),
        None => return Err(Error::Url("the URL needs a ws:// or wss:// scheme".into())),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| Error::Url("the URL has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    // `Uri::port` is `None` for a port that is not a u16: the authority's
    // text is read instead, so that such a port is an error, not the
    // scheme's default port.
    let port = match uri.authority().and_then(|a| port_text(a.as_str())) {
        Some("") | None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(Error::Url(format!("port {p} is out of range (1 to 65535)"))),
        },
    };
    Ok(Target { secure, host, port })
}

/// The port of an authority (`user@host:port`, `[::1]:port`), as written.
fn port_text(authority: &str) -> Option<&str> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_host = match host_port.strip_prefix('[') {
        Some(rest) => &rest[rest.find(']')? + 1..],
        None => host_port,
    };
    after_host.rsplit_once(':').map(|(_, port)| port)
}

/// `ws:/host` (one slash) would otherwise parse as a relative reference or
/// as host "ws": say what is wrong instead.
fn check_slashes(url: &str) -> Result<()> {
    let Some((scheme, rest)) = url.split_once(':') else { return Ok(()) };
    if ["ws", "wss", "http", "https"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) && !rest.starts_with("//") {
        return Err(Error::Url(format!("{url:?} needs two slashes after the scheme ({scheme}://host/path)")));
    }
    Ok(())
}

/// host:port as dialled (an IPv6 address in brackets).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(feature = "tls")]
async fn tls_connect(
    tcp: TcpStream,
    host: &str,
    config: &Config,
    offer: Offer,
    unanswered: &AtomicBool,
) -> Result<MaybeTlsStream> {
    crate::tls::connect(tcp, host, config, offer, unanswered).await
}

/// A failure of the handshake over TLS: the TLS failure in an I/O error
/// (TLS 1.3 servers refuse a client certificate after the client's TLS
/// handshake is done) becomes a TLS error.
#[cfg(feature = "tls")]
pub(crate) fn tls_failure(e: Error, host: &str) -> Error {
    match e {
        Error::Io(io) => crate::tls::io_error(io, host),
        other => other,
    }
}

#[cfg(not(feature = "tls"))]
pub(crate) fn tls_failure(e: Error, _: &str) -> Error {
    e
}

/// Without TLS compiled in, `wss://` is refused (before connecting, by
/// [`connect_with`]'s check of the scheme).
#[cfg(not(feature = "tls"))]
async fn tls_connect(_: TcpStream, _: &str, _: &Config, _: Offer, _: &AtomicBool) -> Result<MaybeTlsStream> {
    Err(Error::TlsDisabled)
}

/// Run the client side of the opening handshake over an established
/// stream (TCP, TLS, a proxy tunnel...), bounded by the handshake timeout.
/// [`connect`] and [`connect_with`] open the stream and call it; use it for
/// a stream of your own.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// // A WebSocket over a Unix socket (any AsyncRead + AsyncWrite will do).
/// let stream = tokio::net::UnixStream::connect("/run/app.sock").await?;
/// let (mut ws, _response) = wsx::client_handshake(stream, "ws://localhost/feed", &wsx::Config::default()).await?;
/// ws.send(wsx::Message::text("hello")).await?;
/// # Ok(()) }
/// ```
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    request: impl IntoClientRequest,
    config: &Config,
) -> Result<(WebSocket<S>, Response<()>)> {
    let request = request.into_client_request()?;
    Box::pin(tokio::time::timeout(config.handshake_timeout(), client_handshake_inner(stream, request, config)))
        .await
        .map_err(|_| Error::HandshakeTimeout)?
}

async fn client_handshake_inner<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut request: Request<()>,
    config: &Config,
) -> Result<(WebSocket<S>, Response<()>)> {
    let deflate = offer_deflate(&mut request, config);
    let (bytes, handshake) = ClientHandshake::with_seed(request, config.protocol().rng_seed())?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    let mut reader = HeadReader::new(config.max_handshake_size());
    let mut buf = BytesMut::with_capacity(1024);
    let (response, head_len) = loop {
        // A TLS record (an alert or a handshake message) where an HTTP
        // response should be: the server wants TLS.
        if matches!(buf.first(), Some(0x15 | 0x16)) && buf.get(1).is_none_or(|&b| b == 0x03) {
            return Err(Error::WrongScheme { use_scheme: "wss" });
        }
        if let Some(r) = reader.response(&buf)? {
            break r;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    };
    let negotiated = match handshake.check_response(&response) {
        Ok(n) => n,
        Err(wsx_proto::handshake::HandshakeError::UnexpectedStatus(_)) => {
            let body = read_body(&mut stream, &mut buf, head_len, &response).await;
            return Err(refused(response, body));
        }
        Err(e) => return Err(e.into()),
    };
    let ws = negotiated_websocket(stream, config, deflate, negotiated, &response, &buf[head_len..])?;
    Ok((ws, response))
}

/// RFC 7692 §5: offer permessage-deflate unless the caller wrote its own
/// extension offer. Returns the settings offered, `None` when off.
pub(crate) fn offer_deflate(request: &mut Request<()>, config: &Config) -> Option<wsx_proto::deflate::DeflateConfig> {
    let deflate = config.deflate(Role::Client);
    if let Some(cfg) = &deflate {
        let h = request.headers_mut();
        if !h.contains_key(http::header::SEC_WEBSOCKET_EXTENSIONS) {
            if let Ok(v) = http::HeaderValue::from_str(&cfg.client_offer()) {
                h.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, v);
            }
        }
    }
    deflate
}

/// The client's WebSocket on `stream` once the server accepted: the
/// extensions of `response` checked against the `deflate` offer (RFC 7692
/// §5.1), `leftover` the bytes that came after the response's head.
pub(crate) fn negotiated_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: &Config,
    deflate: Option<wsx_proto::deflate::DeflateConfig>,
    negotiated: wsx_proto::handshake::Negotiated,
    response: &Response<()>,
    leftover: &[u8],
) -> Result<WebSocket<S>> {
    let params = wsx_proto::deflate::client_accept_response(&deflate.unwrap_or_default(), &negotiated.extensions)
        .map_err(|e| wsx_proto::handshake::HandshakeError::InvalidExtensionResponse(e.to_string()))?;
    let ext_header =
        response.headers().get(http::header::SEC_WEBSOCKET_EXTENSIONS).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok(WebSocket::from_negotiated(stream, Role::Client, config, leftover, params.as_ref())
        .with_negotiated(negotiated.protocol, ext_header))
}

/// The server refused the handshake with `response` (`body`: the start of
/// its body).
pub(crate) fn refused(response: Response<()>, body: Bytes) -> Error {
    let (parts, ()) = response.into_parts();
    Error::Refused(Box::new(Refused { response: Response::from_parts(parts, body) }))
}

/// The most of a refusal's body that is kept.
pub(crate) const MAX_REFUSAL_BODY: usize = 4096;

/// Read the body of a refusal: up to its `Content-Length` (or the end of
/// its chunks, or of the connection), at most [`MAX_REFUSAL_BODY`] bytes,
/// and for at most half a second (the head is what matters).
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    head_len: usize,
    response: &Response<()>,
) -> Bytes {
    let headers = response.headers();
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok())
        .map(|n| n.min(MAX_REFUSAL_BODY));
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        let body = &buf[head_len..];
        let complete = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete || body.len() >= MAX_REFUSAL_BODY {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    let body = &buf[head_len..];
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    let keep = length.unwrap_or(MAX_REFUSAL_BODY).min(body.len());
    Bytes::copy_from_slice(&body[..keep])
}

/// The data of a chunked body, as far as it is complete.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol]).ok().and_then(|l| {
            let hex = l.split(';').next().unwrap_or_default().trim();
            usize::from_str_radix(hex, 16).ok()
        });
        let Some(size) = size.filter(|&n| n > 0) else { break };
        let data = &raw[eol + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if take < size || data.len() < size + 2 {
            break;
        }
        raw = &data[size + 2..];
    }
    out
}
