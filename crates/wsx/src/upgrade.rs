//! WebSocket upgrades inside a hyper 1 server (feature `hyper`).
//!
//! [`upgrade`] / [`upgrade_with`] check a request with the same handshake
//! code as [`crate::accept`] (same limits, same [`Accept`], same refusals:
//! 400, 405, 426 with `Sec-WebSocket-Version: 13, 8, 7`, 431) and return the
//! response to send: the 101 and an [`Upgrading`] future that resolves to
//! the [`WebSocket`] once hyper hands the connection over, or a
//! [`Rejection`] holding the refusal.
//!
//! The hyper connection must be served with upgrades enabled
//! (`http1::Builder::serve_connection(..).with_upgrades()`, or hyper-util's
//! `serve_connection_with_upgrades`). HTTP/2 (RFC 8441) is not supported.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
//! use hyper_util::rt::TokioIo;
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
//!     tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), service_fn(handle)).with_upgrades());
//! }
//! # }
//! ```

use crate::server::Accepted;
use crate::stream::SplitIo;
use crate::{Config, Error, Result, WebSocket};
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri, Version};
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
    /// hyper HTTP/1.1 server connection (or was already upgraded).
    #[error("this request cannot be upgraded (it did not come from a hyper HTTP/1.1 connection)")]
    NotUpgradable,
    /// hyper failed to hand over the connection (e.g. the connection is
    /// not served `with_upgrades()`, or closed before the 101 was sent).
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket`), to route
/// it before checking it with [`upgrade`].
///
/// ```
/// let req = http::Request::get("/").header("upgrade", "websocket").body(()).unwrap();
/// assert!(wsx::upgrade::is_upgrade_request(&req));
/// ```
pub fn is_upgrade_request<B>(request: &Request<B>) -> bool {
    header_has_token(request.headers(), header::UPGRADE, "websocket")
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
/// `config`.
pub(crate) fn check_head(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    config: &Config,
) -> std::result::Result<UpgradeRequest, HandshakeError> {
    check_limits(method, uri, headers, config)?;
    let mut head = Request::new(());
    *head.method_mut() = method.clone();
    *head.uri_mut() = uri.clone();
    *head.version_mut() = version;
    *head.headers_mut() = headers.clone();
    UpgradeRequest::from_request(head)
}

/// A refused upgrade: the response to send (the handshake's 400 / 405 /
/// 426 / 431, the application's own refusal, or 500 when the connection
/// cannot be upgraded) and the error it stands for.
pub struct Rejection {
    // Boxed: a `Result<_, Rejection>` stays small.
    response: Box<Response<Full<Bytes>>>,
    error: Box<Error>,
}

impl Rejection {
    fn handshake(e: HandshakeError) -> Self {
        tracing::debug!(error = %e, "refusing upgrade request");
        Self { response: Box::new(e.to_response().map(Full::new)), error: Box::new(e.into()) }
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

/// The connection being handed over: resolves to the [`WebSocket`] once
/// hyper has sent the 101 response, bounded by the handshake timeout.
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
            // `Upgraded`: nothing is left over here.
            Ok(accepted.into_websocket(TokioIo::new(upgraded), &config, &[]))
        });
        Self { inner, protocol }
    }

    /// The subprotocol selected in the 101 response.
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
/// Returns the 101 response to send and the [`Upgrading`] future, or the
/// [`Rejection`] to send.
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
    let upgrade = check_head(request.method(), request.uri(), request.version(), request.headers(), config)
        .map_err(Rejection::handshake)?;
    let accept = match callback(&upgrade) {
        Ok(a) => a,
        Err(reject) => {
            let resp = reject.into_response();
            let status = resp.status();
            return Err(Rejection {
                response: Box::new(resp.map(Full::new)),
                error: Box::new(Error::Rejected(status)),
            });
        }
    };
    let accepted = Accepted::new(&upgrade, &accept, config).map_err(Rejection::handshake)?;
    if request.extensions().get::<OnUpgrade>().is_none() {
        return Err(Rejection::not_upgradable());
    }
    let on_upgrade = hyper::upgrade::on(request);
    let response = accepted.response.clone().map(|()| Full::default());
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
