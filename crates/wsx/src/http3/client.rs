//! The client of WebSockets over HTTP/3: [`connect`] and [`connect_with`]
//! for one WebSocket, a [`Connection`] for several on one QUIC connection.

use super::stream::H3Stream;
use super::{Http3Error, WireToken};
use crate::{Config, Error, IntoClientRequest, Result, WebSocket};
use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response, Uri};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wsx_proto::handshake::{ClientHandshake, HandshakeError};

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
type Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// What keeps a client's QUIC connection open: h3 closes it (H3_NO_ERROR)
/// once every `SendRequest` is gone, so each WebSocket on it and each
/// [`Connection`] handle holds this.
struct Keep {
    send: SendRequest,
    _endpoint: quinn::Endpoint,
}

/// A QUIC connection to one server, speaking HTTP/3, on which WebSockets
/// are opened ([`Connection::websocket`]); each is a request stream of its
/// own, with its own flow control. The connection closes when the last
/// handle and the last of its WebSockets are gone. Clones share it.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let config = wsx::Config::default();
/// let connection = wsx::http3::Connection::open("wss://example.com/", &config).await?;
/// let (mut chat, _) = connection.websocket("wss://example.com/chat", &config).await?;
/// let (mut feed, _) = connection.websocket("wss://example.com/feed", &config).await?;
/// chat.send(wsx::Message::text("hi")).await?;
/// let _ = feed.recv().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    keep: Arc<Keep>,
    quic: quinn::Connection,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("remote", &self.quic.remote_address()).finish()
    }
}

/// Open a WebSocket over HTTP/3 to a `wss://` URL with default settings:
/// a QUIC connection of its own (ALPN `h3`), an extended `CONNECT` with
/// `:protocol websocket` (RFC 9220 §3). Returns the connection and the
/// server's response (200). See [`connect_with`].
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let (mut ws, _response) = wsx::http3::connect("wss://example.com/chat").await?;
/// ws.send(wsx::Message::text("hello over HTTP/3")).await?;
/// # Ok(()) }
/// ```
pub async fn connect(request: impl IntoClientRequest) -> Result<(WebSocket<H3Stream>, Response<()>)> {
    connect_with(request, &Config::default()).await
}

/// Open a WebSocket over HTTP/3 with the given settings: the client TLS
/// settings of `config` (roots, CA files, client certificate, insecure),
/// its permessage-deflate offer, limits and timeouts; the request's
/// headers (`Sec-WebSocket-Protocol`, `Origin`, ...) go with the
/// `CONNECT`. The QUIC handshake and the opening handshake are bounded by
/// the handshake timeout; the connection closes when the WebSocket is
/// gone. Fails with [`Http3Error::WebSocketProtocolUnsupported`], before
/// any packet is sent, when this build's h3 cannot carry the request.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let request = http::Request::get("wss://example.com/chat").header("sec-websocket-protocol", "chat").body(()).unwrap();
/// let config = wsx::Config::default().with_tls_ca("ca.pem");
/// let (ws, _) = wsx::http3::connect_with(request, &config).await?;
/// assert_eq!(ws.protocol(), Some("chat"));
/// # Ok(()) }
/// ```
pub async fn connect_with(
    request: impl IntoClientRequest,
    config: &Config,
) -> Result<(WebSocket<H3Stream>, Response<()>)> {
    connect_with_token(request, config, WireToken::websocket()).await
}

/// [`connect_with`], with `token` as the `:protocol` value.
pub(crate) async fn connect_with_token(
    request: impl IntoClientRequest,
    config: &Config,
    token: WireToken,
) -> Result<(WebSocket<H3Stream>, Response<()>)> {
    let request = request.into_client_request()?;
    token.to_send()?;
    let target = target(request.uri())?;
    bounded(config, async {
        let connection = Connection::dial(&target, config).await?;
        connection.open_websocket(request, config, token).await
    })
    .await
}

impl Connection {
    /// Open a QUIC connection with ALPN `h3` to the server of a `wss://`
    /// URL (its path is not used), with `config`'s TLS settings, within its
    /// handshake timeout.
    ///
    /// ```no_run
    /// # async fn run() -> wsx::Result<()> {
    /// let connection = wsx::http3::Connection::open("wss://example.com:4433", &wsx::Config::default()).await?;
    /// println!("connected to {}", connection.remote_address());
    /// # Ok(()) }
    /// ```
    pub async fn open(url: impl IntoClientRequest, config: &Config) -> Result<Self> {
        let request = url.into_client_request()?;
        let target = target(request.uri())?;
        bounded(config, Self::dial(&target, config)).await
    }

    /// Open a WebSocket on this connection: an extended `CONNECT` on a new
    /// request stream (RFC 9220 §3), for a `wss://` URL of this server.
    /// Bounded by `config`'s handshake timeout; `config` also gives the
    /// WebSocket's limits and permessage-deflate offer.
    ///
    /// ```no_run
    /// # async fn run(connection: wsx::http3::Connection) -> wsx::Result<()> {
    /// let (mut ws, response) = connection.websocket("wss://example.com/chat", &wsx::Config::default()).await?;
    /// assert_eq!(response.status(), 200);
    /// ws.send(wsx::Message::text("hi")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn websocket(
        &self,
        request: impl IntoClientRequest,
        config: &Config,
    ) -> Result<(WebSocket<H3Stream>, Response<()>)> {
        self.websocket_with_token(request, config, WireToken::websocket()).await
    }

    /// [`Connection::websocket`], with `token` as the `:protocol` value.
    pub(crate) async fn websocket_with_token(
        &self,
        request: impl IntoClientRequest,
        config: &Config,
        token: WireToken,
    ) -> Result<(WebSocket<H3Stream>, Response<()>)> {
        let request = request.into_client_request()?;
        token.to_send()?;
        bounded(config, self.open_websocket(request, config, token)).await
    }

    /// The server's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.quic.remote_address()
    }

    /// A handle to send requests of any kind on this connection.
    #[cfg(test)]
    pub(crate) fn keep_send(&self) -> SendRequest {
        self.keep.send.clone()
    }

    /// A QUIC connection to `target`, with HTTP/3 on it and its driver in a
    /// task.
    async fn dial(target: &Target, config: &Config) -> Result<Self> {
        let address = host_port(&target.host, target.port);
        let connect_error = |source| Error::Connect { address: address.clone(), source };
        let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| connect_error(std::io::Error::new(std::io::ErrorKind::NotFound, "no address found")))?;
        let local: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(local).map_err(connect_error)?;
        let client_config = super::client_quic_config(config)?;
        let connecting = endpoint.connect_with(client_config, addr, &target.host).map_err(Http3Error::from)?;
        let quic = connecting.await.map_err(Http3Error::from)?;
        let (mut driver, send) = h3::client::builder()
            .build::<_, _, Bytes>(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(Http3Error::from)?;
        // The connection's control streams (SETTINGS, GOAWAY) are read by
        // its driver, until the connection closes.
        tokio::spawn(async move {
            let closed = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            if !closed.is_h3_no_error() {
                tracing::debug!(error = %closed, "HTTP/3 connection closed");
            }
        });
        Ok(Self { keep: Arc::new(Keep { send, _endpoint: endpoint }), quic })
    }

    /// The opening handshake on a new request stream.
    async fn open_websocket(
        &self,
        mut request: Request<()>,
        config: &Config,
        token: WireToken,
    ) -> Result<(WebSocket<H3Stream>, Response<()>)> {
        let token = token.to_send()?;
        let deflate = crate::client::handshake::offer_deflate(&mut request, config);
        // RFC 9220 §3: the extended CONNECT of RFC 8441 §4, with HTTP/3's
        // :protocol pseudo-header (h3 sends it from the request's
        // extension).
        let (mut connect, handshake) = ClientHandshake::extended_connect(request)?;
        *connect.version_mut() = http::Version::HTTP_3;
        connect.extensions_mut().insert(token);
        // RFC 9220 §3 has a client wait for the server's
        // SETTINGS_ENABLE_CONNECT_PROTOCOL; h3 0.0.8 shows the peer's
        // SETTINGS only behind its third-party-backend feature, so the
        // request goes at once and a server without extended CONNECT
        // refuses it.
        let mut send = self.keep.send.clone();
        let mut stream = send.send_request(connect).await.map_err(Http3Error::from)?;
        let response = stream.recv_response().await.map_err(Http3Error::from)?;
        let negotiated = match handshake.check_response(&response) {
            Ok(n) => n,
            Err(HandshakeError::UnexpectedStatus(_)) => {
                let body = read_body(&mut stream).await;
                return Err(crate::client::handshake::refused(response, body));
            }
            Err(e) => return Err(e.into()),
        };
        let stream = H3Stream::client(stream, self.keep.clone() as super::stream::Keep);
        let ws = crate::client::handshake::negotiated_websocket(stream, config, deflate, negotiated, &response, &[])?;
        Ok((ws, response))
    }
}

/// `fut` within the handshake timeout.
async fn bounded<T>(config: &Config, fut: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(config.handshake_timeout(), fut).await.map_err(|_| Error::HandshakeTimeout)?
}

/// The most of a refusal's body that is kept (as over HTTP/1.1).
const MAX_REFUSAL_BODY: usize = 4096;

/// The start of a refusal's body: at most [`MAX_REFUSAL_BODY`] bytes, for
/// at most half a second.
async fn read_body(stream: &mut Stream) -> Bytes {
    let mut body = BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while body.len() < MAX_REFUSAL_BODY {
        match tokio::time::timeout_at(deadline, stream.recv_data()).await {
            Ok(Ok(Some(mut chunk))) => {
                let take = chunk.remaining().min(MAX_REFUSAL_BODY - body.len());
                body.extend_from_slice(&chunk.copy_to_bytes(take));
            }
            _ => break,
        }
    }
    body.freeze()
}

/// The server a `wss://` URL names.
struct Target {
    /// Without the brackets of an IPv6 address.
    host: String,
    port: u16,
}

/// The host and port of a `wss://` (or `https://`) URL: HTTP/3 runs on
/// QUIC, which is always encrypted, so `ws://` has no HTTP/3.
fn target(uri: &Uri) -> Result<Target> {
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("wss" | "https") => {}
        Some("ws" | "http") => {
            return Err(Error::Url("HTTP/3 runs over QUIC, which is always encrypted: use wss://".into()))
        }
        Some(other) => return Err(Error::Url(format!("scheme {other:?} is not wss"))),
        None => return Err(Error::Url("the URL needs a wss:// scheme".into())),
    }
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| Error::Url("the URL has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok(Target { host, port: uri.port_u16().unwrap_or(443) })
}

/// host:port as dialled (an IPv6 address in brackets).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
