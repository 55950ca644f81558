//! The client: `connect` over TCP, or `client_handshake` over any stream.

use crate::MaybeTlsStream;
use crate::{Config, Error, Result, WebSocket};
use bytes::BytesMut;
use http::{Request, Response, Uri};
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
    fn into_client_request(self) -> Result<Request<()>> {
        let uri: Uri = self.parse().map_err(|e| Error::Url(format!("{self:?}: {e}")))?;
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
/// URL (SNI, certificate check) and ALPN `http/1.1`, configured by
/// [`Config::with_tls_config`] / [`Config::with_tls_roots`]; a proxy is
/// used when [`Config::with_proxy`] or [`Config::with_proxy_from_env`] says
/// so. The whole of connecting (proxy, TLS) and the handshake is bounded by
/// the handshake timeout.
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
    let (secure, default_port) = match uri.scheme_str().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("ws") | Some("http") => (false, 80),
        Some("wss") | Some("https") if cfg!(feature = "tls") => (true, 443),
        Some("wss") | Some("https") => return Err(Error::TlsDisabled),
        Some(other) => return Err(Error::Url(format!("scheme {other:?} is not ws or wss"))),
        None => return Err(Error::Url("the URL needs a ws:// or wss:// scheme".into())),
    };
    let host = uri.host().ok_or_else(|| Error::Url("the URL has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(default_port);
    let proxy = config.proxy_mode().proxy_for(uri)?;
    let fut = async move {
        let tcp = match &proxy {
            None => {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                tcp
            }
            Some(p) => crate::proxy::tunnel(p, &host, port, config).await?,
        };
        let stream = if secure { tls_connect(tcp, &host, config).await? } else { MaybeTlsStream::Plain(tcp) };
        client_handshake_inner(stream, request, config).await
    };
    Box::pin(tokio::time::timeout(config.handshake_timeout(), fut)).await.map_err(|_| Error::HandshakeTimeout)?
}

#[cfg(feature = "tls")]
async fn tls_connect(tcp: TcpStream, host: &str, config: &Config) -> Result<MaybeTlsStream> {
    crate::tls::connect(tcp, host, config).await
}

/// Without TLS compiled in, `wss://` is refused (before connecting, by
/// [`connect_with`]'s check of the scheme).
#[cfg(not(feature = "tls"))]
async fn tls_connect(_: TcpStream, _: &str, _: &Config) -> Result<MaybeTlsStream> {
    Err(Error::TlsDisabled)
}

/// Run the client side of the opening handshake over an established
/// stream (TCP, TLS, a proxy tunnel...), bounded by the handshake timeout.
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
    // RFC 7692 §5: offer permessage-deflate unless the caller wrote its own
    // extension offer.
    let deflate = config.deflate(Role::Client);
    if let Some(cfg) = &deflate {
        let h = request.headers_mut();
        if !h.contains_key(http::header::SEC_WEBSOCKET_EXTENSIONS) {
            if let Ok(v) = http::HeaderValue::from_str(&cfg.client_offer()) {
                h.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, v);
            }
        }
    }
    let (bytes, handshake) = ClientHandshake::new(request)?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    let mut reader = HeadReader::new(config.max_handshake_size());
    let mut buf = BytesMut::with_capacity(1024);
    let (response, head_len) = loop {
        if let Some(r) = reader.response(&buf)? {
            break r;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    };
    let negotiated = handshake.check_response(&response)?;
    let params = wsx_proto::deflate::client_accept_response(&deflate.unwrap_or_default(), &negotiated.extensions)
        .map_err(|e| wsx_proto::handshake::HandshakeError::InvalidExtensionResponse(e.to_string()))?;
    let ext_header =
        response.headers().get(http::header::SEC_WEBSOCKET_EXTENSIONS).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let ws = WebSocket::from_negotiated(stream, Role::Client, config, &buf[head_len..], params.as_ref())
        .with_negotiated(negotiated.protocol, ext_header);
    Ok((ws, response))
}
