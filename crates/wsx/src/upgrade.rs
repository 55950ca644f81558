//! WebSocket upgrades inside a hyper 1 server (feature `hyper`), over
//! HTTP/1.1 and HTTP/2.
//!
//! [`upgrade`] / [`upgrade_with`] check a request with the same handshake
//! code as [`crate::accept`] (same limits, same [`Accept`], same refusals:
//! 400, 405, 426 with `Sec-WebSocket-Version: 13, 8, 7`, 431) and return the
//! response to send: the acceptance and an [`Upgrading`] future that
//! resolves to the [`WebSocket`] once hyper hands the stream over, or a
//! [`Rejection`] holding the refusal.
//!
//! - HTTP/1.1 (RFC 6455 §4): a `GET` with `Upgrade: websocket`, answered
//!   101; the WebSocket takes over the connection. Serve it with upgrades
//!   (`http1::Builder::serve_connection(..).with_upgrades()`, or
//!   hyper-util's `serve_connection_with_upgrades`).
//! - HTTP/2 (RFC 8441): an extended `CONNECT` with `:protocol websocket`,
//!   answered 200 without `Upgrade`, `Connection` or
//!   `Sec-WebSocket-Accept` (§5); the WebSocket runs on that stream while
//!   the connection serves others. Serve it with the extended CONNECT on
//!   (`http2::Builder::enable_connect_protocol()`, or
//!   `builder.http2().enable_connect_protocol()` on hyper-util's auto
//!   builder), which sends SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (§3):
//!   clients only open WebSockets over HTTP/2 to servers that send it.
//!
//! Subprotocol, permessage-deflate and limits are decided the same way on
//! both. Refusals on HTTP/2 carry no connection-specific field (RFC 9113
//! §8.2.2); a `CONNECT` without `:protocol` (a tunnel) gets 405, one for
//! another protocol 501.
//!
//! hyper-util's auto builder serves both versions on one port: over TLS,
//! offer ALPN `h2` and `http/1.1`; in clear text it also takes HTTP/2 with
//! prior knowledge (h2c).
//!
//! These functions upgrade one request and leave the rest to you. To run
//! in hyper (or axum) a handler written for [`crate::server::Request`],
//! with a [`crate::server::Server`]'s origin policy, connection limit,
//! keepalive and graceful shutdown (1001) around it, mount
//! [`Server::service`](crate::server::Server::service) instead: a tower
//! and hyper `Service` whose requests are `Request<UpgradedIo>`, as
//! wsx-hub's `Hub::service` and `SocketIo::service` are.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::{body::Incoming, service::service_fn, Request, Response};
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto;
//! use wsx::Bytes;
//!
//! async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
//!     if !wsx::upgrade::is_upgrade_request(&req) {
//!         return Ok(Response::new(Full::from("not a WebSocket request")));
//!     }
//!     match wsx::upgrade::upgrade(&mut req, &wsx::Config::default()) {
//!         Ok((response, upgrading)) => {
//!             tokio::spawn(async move {
//!                 let mut ws = upgrading.await?;
//!                 while let Some(msg) = ws.recv().await {
//!                     let msg = msg?;
//!                     if msg.is_text() || msg.is_binary() {
//!                         ws.feed(msg).await?;
//!                     }
//!                 }
//!                 Ok::<_, wsx::Error>(())
//!             });
//!             Ok(response)
//!         }
//!         Err(rejection) => Ok(rejection.into_response()),
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut builder = auto::Builder::new(TokioExecutor::new());
//!         builder.http2().enable_connect_protocol();
//!         builder.serve_connection_with_upgrades(TokioIo::new(tcp), service_fn(handle)).await
//!     });
//! }
//! # }
//! ```

use crate::server::Accepted;
use crate::stream::SplitIo;
use crate::{Config, Error, Result, WebSocket};
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Extensions, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Full;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wsx_proto::handshake::{header_has_token, Accept, HandshakeError, Reject, UpgradeRequest, MAX_HEADERS};

/// The stream of an upgraded hyper connection.
pub type UpgradedIo = TokioIo<Upgraded>;

/// Why a hyper connection could not be handed over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The request carries no hyper upgrade handle: it did not come from a
    /// hyper server connection (an HTTP/1.1 request, or an HTTP/2
    /// `CONNECT`), or was already upgraded.
    #[error("this request cannot be upgraded (it did not come from a hyper server connection)")]
    NotUpgradable,
    /// hyper failed to hand over the connection (e.g. an HTTP/1.1
    /// connection not served `with_upgrades()`, or a connection or stream
    /// that closed before the response was sent).
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// Whether a request asks for a WebSocket, to route it before checking it
/// with [`upgrade`]: `Upgrade: websocket` on HTTP/1.1 (RFC 6455 §4.2.1
/// item 3), an extended `CONNECT` with `:protocol` `websocket` on HTTP/2
/// (RFC 8441 §4, §5; hyper hands the pseudo-header over as a
/// [`hyper::ext::Protocol`] extension). Whether it is a valid one is
/// checked by [`upgrade`].
///
/// ```
/// let req = http::Request::get("/").header("upgrade", "websocket").body(()).unwrap();
/// assert!(wsx::upgrade::is_upgrade_request(&req));
///
/// let mut req = http::Request::connect("https://example.com/chat")
///     .version(http::Version::HTTP_2)
///     .body(())
///     .unwrap();
/// assert!(!wsx::upgrade::is_upgrade_request(&req), "a tunnel, not a WebSocket");
/// req.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
/// assert!(wsx::upgrade::is_upgrade_request(&req));
/// ```
pub fn is_upgrade_request<B>(request: &Request<B>) -> bool {
    if is_extended_connect(request.method(), request.version()) {
        return connect_protocol(request.extensions()).is_some_and(|p| p.eq_ignore_ascii_case("websocket"));
    }
    header_has_token(request.headers(), header::UPGRADE, "websocket")
}

/// Whether a request is checked as an extended `CONNECT` (RFC 8441 §4):
/// a `CONNECT` on HTTP/2 or later. A `CONNECT` on HTTP/1.1 stays an
/// HTTP/1.1 request, refused by the RFC 6455 rules (405).
fn is_extended_connect(method: &Method, version: Version) -> bool {
    method == Method::CONNECT && version >= Version::HTTP_2
}

/// The `:protocol` pseudo-header of an HTTP/2 extended `CONNECT` (RFC 8441
/// §4), which hyper's server keeps in the request's extensions.
fn connect_protocol(extensions: &Extensions) -> Option<&str> {
    extensions.get::<hyper::ext::Protocol>().map(hyper::ext::Protocol::as_str)
}

/// Remove from a response's headers the fields HTTP/2 forbids (RFC 9113
/// §8.2.2: `Connection` and the connection-specific fields) when it
/// answers an HTTP/2 request: the handshake's HTTP/1.1 refusals carry
/// `Connection: close` (and the 426 an `Upgrade`), which hyper would drop
/// with a warning.
pub(crate) fn fit_to_version<B>(mut response: Response<B>, version: Version) -> Response<B> {
    if version >= Version::HTTP_2 {
        crate::server::remove_connection_fields(response.headers_mut());
    }
    response
}

/// An approximation of the size of the request head on the wire.
fn head_size(method: &Method, uri: &Uri, headers: &HeaderMap) -> usize {
    let line = method.as_str().len() + uri.to_string().len() + " HTTP/1.1\r\n".len() + 1;
    line + headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() + 2
}

/// The limits of `config` on a request head, as [`crate::accept`] applies
/// them (431 past the head size or the header count).
pub(crate) fn check_limits(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    config: &Config,
) -> std::result::Result<(), HandshakeError> {
    let max = config.max_handshake_size();
    if headers.len() > MAX_HEADERS {
        return Err(HandshakeError::TooManyHeaders);
    }
    if head_size(method, uri, headers) > max {
        return Err(HandshakeError::TooLarge(max));
    }
    Ok(())
}

/// Check a request head as [`crate::accept`] does, with the limits of
/// `config`: by the rules of RFC 6455 §4.2.1 on HTTP/1.1, of RFC 8441 §5
/// for an HTTP/2 `CONNECT` (whose `:protocol` is in `extensions`).
pub(crate) fn check_head(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    extensions: &Extensions,
    config: &Config,
) -> std::result::Result<UpgradeRequest, HandshakeError> {
    check_limits(method, uri, headers, config)?;
    let mut head = Request::new(());
    *head.method_mut() = method.clone();
    *head.uri_mut() = uri.clone();
    *head.version_mut() = version;
    *head.headers_mut() = headers.clone();
    if is_extended_connect(method, version) {
        UpgradeRequest::from_extended_connect(head, connect_protocol(extensions))
    } else {
        UpgradeRequest::from_request(head)
    }
}

/// A refused upgrade: the response to send (the handshake's 400 / 405 /
/// 426 / 431, on HTTP/2 also 501 for another `:protocol`, the
/// application's own refusal, or 500 when the connection cannot be
/// upgraded) and the error it stands for.
pub struct Rejection {
    // Boxed: a `Result<_, Rejection>` stays small.
    response: Box<Response<Full<Bytes>>>,
    error: Box<Error>,
}

impl Rejection {
    fn handshake(e: HandshakeError, version: Version) -> Self {
        tracing::debug!(error = %e, "refusing upgrade request");
        let response = fit_to_version(e.to_response().map(Full::new), version);
        Self { response: Box::new(response), error: Box::new(e.into()) }
    }

    fn not_upgradable() -> Self {
        let response = Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::from("this connection cannot be upgraded to a WebSocket\n"))
            .unwrap_or_default();
        Self { response: Box::new(response), error: Box::new(UpgradeError::NotUpgradable.into()) }
    }

    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// What was wrong: [`Error::Handshake`] (the request is not a valid
    /// upgrade), [`Error::Rejected`] (the application refused it) or
    /// [`Error::Upgrade`] (the connection cannot be upgraded).
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The response to send.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        *self.response
    }

    /// The error.
    pub fn into_error(self) -> Error {
        *self.error
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection").field("status", &self.status()).field("error", &self.error).finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebSocket upgrade refused with {}: {}", self.status(), self.error)
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}

/// The connection (on HTTP/2, the stream) being handed over: resolves to
/// the [`WebSocket`] once hyper has sent the 101 (on HTTP/2, the 200),
/// bounded by the handshake timeout.
/// Spawn it (or await it in a spawned task) after returning the response.
pub struct Upgrading {
    inner: Pin<Box<dyn Future<Output = Result<WebSocket<UpgradedIo>>> + Send>>,
    protocol: Option<String>,
}

impl Upgrading {
    pub(crate) fn new(on_upgrade: OnUpgrade, accepted: Accepted, protocol: Option<String>, config: &Config) -> Self {
        let config = config.clone();
        let inner = Box::pin(async move {
            let upgraded = tokio::time::timeout(config.handshake_timeout(), on_upgrade)
                .await
                .map_err(|_| Error::HandshakeTimeout)?
                .map_err(UpgradeError::Hyper)?;
            // hyper keeps bytes it read past the request head inside
            // `Upgraded` (on HTTP/2 the stream's DATA follow the 200):
            // nothing is left over here.
            Ok(accepted.into_websocket(TokioIo::new(upgraded), &config, &[]))
        });
        Self { inner, protocol }
    }

    /// The subprotocol selected in the response.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

impl fmt::Debug for Upgrading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrading").field("protocol", &self.protocol).finish_non_exhaustive()
    }
}

impl Future for Upgrading {
    type Output = Result<WebSocket<UpgradedIo>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Accept a WebSocket upgrade in a hyper server with no subprotocol; see
/// [`upgrade_with`].
///
/// ```no_run
/// # async fn handle(mut req: hyper::Request<hyper::body::Incoming>)
/// #     -> http::Response<http_body_util::Full<wsx::Bytes>> {
/// match wsx::upgrade::upgrade(&mut req, &wsx::Config::default()) {
///     Ok((response, upgrading)) => {
///         tokio::spawn(async move {
///             let mut ws = upgrading.await?;
///             ws.send(wsx::Message::text("hello")).await
///         });
///         response
///     }
///     Err(rejection) => rejection.into_response(),
/// }
/// # }
/// ```
pub fn upgrade<B>(
    request: &mut Request<B>,
    config: &Config,
) -> std::result::Result<(Response<Full<Bytes>>, Upgrading), Rejection> {
    upgrade_with(request, |_: &UpgradeRequest| Ok(Accept::new()), config)
}

/// Accept a WebSocket upgrade in a hyper server, letting `callback` see
/// the checked request and accept it (choosing a subprotocol, adding
/// headers) or refuse it with any response, as in [`crate::accept_with`].
/// Returns the response to send (101 on HTTP/1.1; 200 with no body on
/// HTTP/2, RFC 8441 §5) and the [`Upgrading`] future, or the
/// [`Rejection`] to send. [`UpgradeRequest::is_extended_connect`] tells
/// the callback which of the two it sees.
///
/// ```no_run
/// # async fn handle(mut req: hyper::Request<hyper::body::Incoming>)
/// #     -> http::Response<http_body_util::Full<wsx::Bytes>> {
/// use wsx::handshake::{Accept, Reject, UpgradeRequest};
/// let config = wsx::Config::default().with_max_message_size(1 << 20);
/// let result = wsx::upgrade::upgrade_with(&mut req, |up: &UpgradeRequest| {
///     if up.origin() != Some("https://example.com") {
///         return Err(Reject::new(403, "forbidden"));
///     }
///     let chat = up.protocols().iter().find(|p| *p == "chat").cloned();
///     Ok(match chat { Some(p) => Accept::new().protocol(p), None => Accept::new() })
/// }, &config);
/// match result {
///     Ok((response, upgrading)) => {
///         tokio::spawn(async move {
///             let ws = upgrading.await?;
///             // ...
///             Ok::<_, wsx::Error>(())
///         });
///         response
///     }
///     Err(rejection) => rejection.into_response(),
/// }
/// # }
/// ```
pub fn upgrade_with<B, F>(
    request: &mut Request<B>,
    callback: F,
    config: &Config,
) -> std::result::Result<(Response<Full<Bytes>>, Upgrading), Rejection>
where
    F: FnOnce(&UpgradeRequest) -> std::result::Result<Accept, Reject>,
{
    let version = request.version();
    let upgrade = check_head(request.method(), request.uri(), version, request.headers(), request.extensions(), config)
        .map_err(|e| Rejection::handshake(e, version))?;
    let accept = match callback(&upgrade) {
        Ok(a) => a,
        Err(reject) => {
            let resp = fit_to_version(reject.into_response(), version);
            let status = resp.status();
            return Err(Rejection {
                response: Box::new(resp.map(Full::new)),
                error: Box::new(Error::Rejected(status)),
            });
        }
    };
    let accepted = Accepted::new(&upgrade, &accept, config).map_err(|e| Rejection::handshake(e, version))?;
    if request.extensions().get::<OnUpgrade>().is_none() {
        return Err(Rejection::not_upgradable());
    }
    let on_upgrade = hyper::upgrade::on(request);
    // On HTTP/2 the 200 has no body (hyper resets a stream whose 200 to a
    // CONNECT announces one): the stream's DATA are the WebSocket's bytes,
    // handed over once the HEADERS are sent.
    let response = fit_to_version(accepted.response.clone(), version).map(|()| Full::default());
    let protocol = accept.selected_protocol().map(str::to_owned);
    Ok((response, Upgrading::new(on_upgrade, accepted, protocol, config)))
}

/// An upgraded hyper connection splits with `tokio::io::split`.
impl SplitIo for UpgradedIo {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn split_io(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}
