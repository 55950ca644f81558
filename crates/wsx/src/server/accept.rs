//! The opening handshake on a stream the caller accepted: [`accept`],
//! [`accept_with`], and the 101 that [`super::Request::upgrade`] and the
//! hyper upgrade share.

use crate::{Config, Error, Result, WebSocket};
use bytes::BytesMut;
use http::Response;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use wsx_proto::handshake::{write_response, Accept, Reject, UpgradeRequest};
use wsx_proto::Role;

/// Accept a WebSocket connection on `stream` with default settings and no
/// subprotocol.
///
/// The returned future is boxed (8 bytes) and freed once the handshake is
/// done. A server that spawns a task per connection should make it before
/// spawning and move it into the task, rather than move the socket in:
/// what a task captures stays in it for the connection's whole life.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let (tcp, _) = listener.accept().await?;
/// let mut ws = wsx::accept(tcp).await?;
/// while let Some(msg) = ws.recv().await {
///     let msg = msg?;
///     if msg.is_text() || msg.is_binary() {
///         ws.feed(msg).await?;
///     }
/// }
/// # Ok(()) }
/// ```
pub fn accept<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Handshake<impl Future<Output = Result<WebSocket<S>>>> {
    // A shared default: a `Config` temporary would live in this future, and
    // so in the caller's task, for the life of the connection.
    static DEFAULT: std::sync::LazyLock<Config> = std::sync::LazyLock::new(Config::default);
    Handshake::new(DEFAULT.handshake_timeout(), accept_inner(stream, |_: &UpgradeRequest| Ok(Accept::new()), &DEFAULT))
}

/// Accept a WebSocket connection, letting `callback` see the whole request
/// (path, query, headers, cookies, origin, offered subprotocols) and either
/// accept it (choosing a subprotocol, adding headers) or reject it with any
/// response. Malformed requests are answered by the handshake itself (400,
/// 405, 426 with the versions we speak, 431). Bounded by the handshake
/// timeout.
///
/// ```no_run
/// # async fn run(tcp: tokio::net::TcpStream) -> wsx::Result<()> {
/// use wsx::handshake::{Accept, Reject, UpgradeRequest};
/// let ws = wsx::accept_with(tcp, |req: &UpgradeRequest| {
///     if req.origin() != Some("https://example.com") {
///         return Err(Reject::new(403, "forbidden"));
///     }
///     let chat = req.protocols().iter().find(|p| *p == "chat").cloned();
///     Ok(match chat { Some(p) => Accept::new().protocol(p), None => Accept::new() })
/// }, &wsx::Config::default()).await?;
/// # Ok(()) }
/// ```
pub fn accept_with<'a, S, F>(
    stream: S,
    callback: F,
    config: &'a Config,
) -> Handshake<impl Future<Output = Result<WebSocket<S>>> + use<'a, S, F>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&UpgradeRequest) -> std::result::Result<Accept, Reject>,
{
    Handshake::new(config.handshake_timeout(), accept_inner(stream, callback, config))
}

async fn accept_inner<S, F>(mut stream: S, callback: F, config: &Config) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&UpgradeRequest) -> std::result::Result<Accept, Reject>,
{
    let mut buf = BytesMut::with_capacity(1024);
    let parsed = super::head::read_request_head(&mut stream, &mut buf, config.max_handshake_size())
        .await?
        .ok_or_else(|| Error::Io(std::io::ErrorKind::UnexpectedEof.into()))?;
    let checked = parsed.and_then(|(request, head_len)| Ok((UpgradeRequest::from_request(request)?, head_len)));
    let (upgrade, head_len) = match checked {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "refusing upgrade request");
            super::head::respond(&mut stream, &e.to_response(), false).await?;
            return Err(e.into());
        }
    };
    let accept = match callback(&upgrade) {
        Ok(a) => a,
        Err(reject) => {
            let status = reject.status();
            super::head::respond(&mut stream, reject.response(), false).await?;
            return Err(Error::Rejected(status));
        }
    };
    accept_upgrade(stream, &upgrade, &accept, config, &buf[head_len..]).await
}

/// Finish an upgrade whose request head was read and checked: negotiate
/// permessage-deflate, write the 101 with the application's `accept`
/// (subprotocol, headers), and return the connection. `leftover` holds
/// bytes read past the request head. If the response cannot be built (a
/// subprotocol the client did not offer), the error response is sent and
/// the error returned.
pub(crate) async fn accept_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    upgrade: &UpgradeRequest,
    accept: &Accept,
    config: &Config,
    leftover: &[u8],
) -> Result<WebSocket<S>> {
    let accepted = match Accepted::new(upgrade, accept, config) {
        Ok(a) => a,
        Err(e) => {
            super::head::respond(&mut stream, &e.to_response(), false).await?;
            return Err(e.into());
        }
    };
    let mut out = Vec::with_capacity(256);
    write_response(&accepted.response, &[], &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(accepted.into_websocket(stream, config, leftover))
}

/// An upgrade request the application accepted: the 101 response to send
/// and what the connection is then built with. Shared by [`accept_with`]
/// and the hyper upgrade, so that both negotiate the same way.
pub(crate) struct Accepted {
    /// The 101 response.
    pub(crate) response: Response<()>,
    protocol: Option<String>,
    deflate: Option<(wsx_proto::deflate::DeflateParams, String)>,
}

impl Accepted {
    /// Build the 101 response for `upgrade` with the application's
    /// `accept` (subprotocol, headers) and the extensions `config` allows.
    pub(crate) fn new(
        upgrade: &UpgradeRequest,
        accept: &Accept,
        config: &Config,
    ) -> std::result::Result<Self, wsx_proto::handshake::HandshakeError> {
        // RFC 7692: take the first acceptable permessage-deflate offer.
        let deflate = config
            .deflate(Role::Server)
            .and_then(|cfg| wsx_proto::deflate::server_negotiate(&cfg, upgrade.extensions()));
        let ext_header = deflate.as_ref().map(|(_, h)| h.as_str());
        let response = upgrade.accept(accept, ext_header)?;
        Ok(Self { response, protocol: accept.selected_protocol().map(str::to_owned), deflate })
    }

    /// The connection over `stream`, once the 101 response is sent.
    /// `leftover` holds bytes read past the request head.
    pub(crate) fn into_websocket<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: S,
        config: &Config,
        leftover: &[u8],
    ) -> WebSocket<S> {
        let (params, header) = self.deflate.map_or((None, None), |(p, h)| (Some(p), Some(h)));
        WebSocket::from_negotiated(stream, Role::Server, config, leftover, params.as_ref())
            .with_negotiated(self.protocol, header)
    }
}

/// The future of an opening handshake ([`accept`], [`accept_with`]),
/// bounded by the handshake timeout.
///
/// The handshake's state (request buffer, timer) is boxed: it is freed when
/// the handshake completes instead of staying part of the caller's task for
/// the life of the connection, which keeps an idle connection under 1 KiB.
#[must_use = "futures do nothing unless awaited"]
pub struct Handshake<F: Future> {
    inner: Pin<Box<tokio::time::Timeout<F>>>,
}

impl<F: Future> Handshake<F> {
    pub(crate) fn new(timeout: std::time::Duration, fut: F) -> Self {
        Self { inner: Box::pin(tokio::time::timeout(timeout, fut)) }
    }
}

impl<F: Future> std::fmt::Debug for Handshake<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handshake")
    }
}

impl<T, F: Future<Output = Result<T>>> Future for Handshake<F> {
    type Output = Result<T>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        Poll::Ready(match ready!(self.inner.as_mut().poll(cx)) {
            Ok(r) => r,
            Err(_) => Err(Error::HandshakeTimeout),
        })
    }
}
