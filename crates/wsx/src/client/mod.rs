//! The client: `connect` over TCP, TLS or a stream of a shared HTTP/2
//! connection, or `client_handshake` over any stream. Below it, `route`
//! reaches the server and `handshake` holds the opening handshake (which
//! `crate::http2` uses too).

pub(crate) mod handshake;
pub(crate) mod route;

use crate::MaybeTlsStream;
use crate::{Config, Error, Result, WebSocket};
use handshake::client_handshake_inner;
use http::{Request, Response, Uri};
use route::{Route, Target};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};

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
    let tls_unanswered = AtomicBool::new(false);
    let route = Route { target: &target, proxy: proxy.as_ref(), config, tls_unanswered: &tls_unanswered };
    let fut = async {
        if !target.secure {
            return client_handshake_inner(MaybeTlsStream::Plain(route.tcp().await?), request, config).await;
        }
        connect_secure(request, &route).await
    };
    let timed_out = || match tls_unanswered.load(Ordering::Relaxed) {
        true => Error::TlsUnanswered,
        false => Error::HandshakeTimeout,
    };
    Box::pin(tokio::time::timeout(config.handshake_timeout(), fut)).await.map_err(|_| timed_out())?
}

/// `wss://`: over HTTP/2 when the server and [`Config::with_http2`] allow,
/// else the HTTP/1.1 handshake over TLS.
#[cfg(feature = "tls")]
async fn connect_secure(request: Request<()>, route: &Route<'_>) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
    use route::tls_failure;
    let host = &route.target.host;
    #[cfg(feature = "http2")]
    let stream = match crate::http2::open(&request, route).await.map_err(|e| tls_failure(e, host))? {
        crate::http2::Opened::WebSocket(opened) => return Ok(*opened),
        crate::http2::Opened::Http1(stream) => stream,
    };
    #[cfg(not(feature = "http2"))]
    let stream = None;
    let stream = match stream {
        Some(s) => s,
        None => route.tls(crate::tls::Offer::Http11).await?,
    };
    client_handshake_inner(stream, request, route.config).await.map_err(|e| tls_failure(e, host))
}

/// Without TLS compiled in, `wss://` is refused (before connecting, by
/// [`connect_with`]'s check of the scheme).
#[cfg(not(feature = "tls"))]
async fn connect_secure(_: Request<()>, _: &Route<'_>) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
    Err(Error::TlsDisabled)
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
