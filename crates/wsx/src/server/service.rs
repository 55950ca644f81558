//! The server's handlers inside hyper or axum (feature `hyper`):
//! [`Server::service`] makes a tower (and hyper) `Service` of a handler
//! written for [`Request`], so that what serves requests of a [`Server`]
//! (WebSockets, whole responses, streamed responses, request bodies)
//! serves the requests of an existing hyper or axum server unchanged.
//!
//! A request that came from hyper is a `Request<UpgradedIo>`: its head,
//! its body (any `http_body::Body` of [`Bytes`]), hyper's upgrade handle
//! (taken from its extensions), and a channel its one response goes
//! through, to the service's future that hyper (or axum) awaits. The
//! service counts it against the server's connection limit (503 past it)
//! and runs the handler in a task of its own that holds its slot to the
//! end, as for the server's own connections: an upgraded WebSocket gets
//! the server's keepalive, closes with 1001 on [`Server::shutdown`] and
//! counts in [`Server::websockets_opened`].

use super::{Accepted, BodyError, Io, Request, RequestHead, RequestInner, Server, Slot};
use crate::upgrade::{check_limits, fit_to_version, UpgradeError, UpgradedIo};
use crate::{Config, Error, Result, WebSocket};
use bytes::{Buf, Bytes, BytesMut};
use http::{header, Method, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::fmt::{self, Display};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use wsx_proto::handshake::{Accept, HandshakeError, Reject, UpgradeRequest};

/// The error of a request body, whatever the body type.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed response body holds at most this many bytes that hyper has
/// not taken yet; a writer waits for room past it.
const PIPE_CAPACITY: usize = 64 << 10;

/// A request that came from hyper: where its body, its upgrade and its
/// response are.
pub(super) struct HyperIo<S> {
    body: RequestBody,
    /// hyper's upgrade handle, when the request came from a hyper server
    /// connection that can be upgraded.
    on_upgrade: Option<OnUpgrade>,
    respond: oneshot::Sender<http::Response<ResponseBody>>,
    /// The request's version: the responses are shaped for it.
    version: Version,
    wrap: fn(UpgradedIo) -> S,
}

impl<S> HyperIo<S> {
    /// Resolves when hyper dropped the response's future: the client went
    /// away (or the connection is being shut down).
    pub(super) async fn client_gone(&mut self) {
        self.respond.closed().await
    }
}

/// A request's body (`Send`, not `Sync`, as axum's).
type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// The client went away before the response could be sent (hyper dropped
/// the service's future).
fn gone() -> Error {
    Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the client went away"))
}

/// A body error as [`BodyError`]: a body cut short is `Incomplete`.
fn body_error(e: BoxError) -> BodyError {
    if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message) {
        return BodyError::Incomplete;
    }
    BodyError::Io(std::io::Error::other(e))
}

impl<S> HyperIo<S> {
    /// Send the response (hyper writes it once the service's future takes
    /// it).
    fn send(self, response: http::Response<ResponseBody>) -> Result<()> {
        self.respond.send(response).map_err(|_| gone())
    }

    /// Answer with a whole response (its head alone if `head_only`, with
    /// the length a `GET` would get).
    pub(super) fn respond(self, response: &http::Response<Bytes>, head_only: bool) -> Result<()> {
        let mut response = fit_to_version(response.clone(), self.version);
        let body = if head_only {
            let len = response.body().len();
            response.headers_mut().entry(header::CONTENT_LENGTH).or_insert_with(|| len.into());
            ResponseBody::empty()
        } else {
            ResponseBody::full(response.body().clone())
        };
        self.send(response.map(|_| body))
    }

    /// Read the body, at most `max` bytes (the caller bounds the time).
    pub(super) async fn read_body(&mut self, max: usize) -> std::result::Result<Bytes, BodyError> {
        let body = &mut self.body;
        if body.size_hint().lower() > max as u64 {
            return Err(BodyError::TooLarge(max));
        }
        let mut out = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(body_error)?.into_data() else { continue };
            if out.len().saturating_add(data.len()) > max {
                return Err(BodyError::TooLarge(max));
            }
            out.extend_from_slice(&data);
        }
        Ok(out.freeze())
    }

    /// Send `response`'s head; its body is what is written to the stream.
    pub(super) fn respond_stream(self, response: &http::Response<()>) -> Result<HyperStream> {
        let mut head = fit_to_version(response.clone(), self.version);
        head.headers_mut().remove(header::CONTENT_LENGTH);
        let shared = Arc::new(Mutex::new(Pipe::default()));
        let stream = HyperStream { pipe: shared.clone(), body: Some(self.body), pending: Bytes::new() };
        self.respond.send(head.map(|()| ResponseBody(Kind::Stream(PipeReader(shared))))).map_err(|_| gone())?;
        Ok(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> HyperIo<S> {
    /// Accept a checked upgrade: the 101 (on HTTP/2, the 200) through
    /// hyper, then the connection (stream) hyper hands over, within the
    /// handshake timeout.
    pub(super) async fn accept(
        self,
        upgrade: &UpgradeRequest,
        accept: &Accept,
        config: &Config,
    ) -> Result<WebSocket<S>> {
        let accepted = match Accepted::new(upgrade, accept, config) {
            Ok(a) => a,
            Err(e) => {
                self.respond(&e.to_response(), false)?;
                return Err(e.into());
            }
        };
        let HyperIo { on_upgrade, respond, version, wrap, .. } = self;
        let Some(on_upgrade) = on_upgrade else {
            // A stack that cannot hand the connection over (no hyper server
            // connection under it).
            let refusal = Reject::new(500, "this connection cannot be upgraded to a WebSocket\n").into_response();
            let _ = respond.send(fit_to_version(refusal, version).map(ResponseBody::full));
            return Err(UpgradeError::NotUpgradable.into());
        };
        // No body: on HTTP/2 hyper resets a stream whose 200 to a CONNECT
        // announces one; the stream's DATA are the WebSocket's bytes.
        let response = fit_to_version(accepted.response.clone(), version).map(|()| ResponseBody::empty());
        respond.send(response).map_err(|_| gone())?;
        let upgraded = tokio::time::timeout(config.handshake_timeout(), on_upgrade)
            .await
            .map_err(|_| Error::HandshakeTimeout)?
            .map_err(UpgradeError::Hyper)?;
        // hyper keeps what it read past the head inside `Upgraded`.
        Ok(accepted.into_websocket(wrap(TokioIo::new(upgraded)), config, &[]))
    }
}

/// Check an upgrade request that came from hyper: the head's limits (431),
/// then RFC 6455 §4.2.1 for a `GET`, RFC 8441 §5 for an HTTP/2 `CONNECT`.
pub(super) fn check_upgrade(head: RequestHead, config: &Config) -> std::result::Result<UpgradeRequest, HandshakeError> {
    let request = head.request();
    check_limits(request.method(), request.uri(), request.headers(), config)?;
    if request.method() == Method::CONNECT && request.version() >= Version::HTTP_2 {
        let protocol = head.connect_protocol().map(str::to_owned);
        UpgradeRequest::from_extended_connect(head.into_request(), protocol.as_deref())
    } else {
        UpgradeRequest::from_request(head.into_request())
    }
}

// ------------------------------------------------------ streamed bodies

/// What a streamed response's writer ([`HyperStream`]) and its body
/// ([`PipeReader`], which hyper polls) share.
#[derive(Default)]
struct Pipe {
    /// Written, not yet taken by hyper (at most [`PIPE_CAPACITY`]).
    buf: BytesMut,
    /// The writer shut down or went away: the body ends after `buf`.
    ended: bool,
    /// hyper dropped the body: the client went away (or the exchange
    /// ended).
    gone: bool,
    /// hyper waits for data.
    data: Option<Waker>,
    /// The writer waits for room.
    room: Option<Waker>,
    /// The writer's reading side waits for the client to go away.
    closed: Option<Waker>,
}

fn lock(pipe: &Mutex<Pipe>) -> MutexGuard<'_, Pipe> {
    pipe.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keep `cx`'s waker in `slot`, to be woken.
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

/// The body side of a streamed response.
struct PipeReader(Arc<Mutex<Pipe>>);

impl PipeReader {
    fn poll_data(&self, cx: &Context<'_>) -> Poll<Option<Bytes>> {
        let mut pipe = lock(&self.0);
        if !pipe.buf.is_empty() {
            let data = pipe.buf.split().freeze();
            let room = pipe.room.take();
            drop(pipe);
            wake(room);
            return Poll::Ready(Some(data));
        }
        if pipe.ended {
            return Poll::Ready(None);
        }
        park(&mut pipe.data, cx);
        Poll::Pending
    }

    fn is_end(&self) -> bool {
        let pipe = lock(&self.0);
        pipe.ended && pipe.buf.is_empty()
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut pipe = lock(&self.0);
        pipe.gone = true;
        pipe.buf = BytesMut::new();
        let (room, closed) = (pipe.room.take(), pipe.closed.take());
        drop(pipe);
        wake(room);
        wake(closed);
    }
}

/// The response side of [`super::Request::respond_stream`] for a request
/// that came from hyper: what is written goes to the response's body
/// (at most [`PIPE_CAPACITY`] bytes ahead of hyper), until shut down or
/// dropped; reading gives the request's body, then waits until the client
/// goes away (hyper drops the response body) and ends.
pub(super) struct HyperStream {
    pipe: Arc<Mutex<Pipe>>,
    /// The request's body, until it ends.
    body: Option<RequestBody>,
    /// A request body chunk being read.
    pending: Bytes,
}

impl fmt::Debug for HyperStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperStream").finish_non_exhaustive()
    }
}

fn broken() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
}

impl AsyncRead for HyperStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            let Some(body) = &mut this.body else { break };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.pending = data;
                    }
                }
                // The body's end (or its failure): what follows is the
                // wait for the client to go away.
                Some(Err(_)) | None => this.body = None,
            }
        }
        let mut pipe = lock(&this.pipe);
        if pipe.gone {
            return Poll::Ready(Ok(()));
        }
        park(&mut pipe.closed, cx);
        Poll::Pending
    }
}

impl AsyncWrite for HyperStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut pipe = lock(&self.pipe);
        if pipe.gone || pipe.ended {
            return Poll::Ready(Err(broken()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = PIPE_CAPACITY.saturating_sub(pipe.buf.len());
        if room == 0 {
            park(&mut pipe.room, cx);
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        pipe.buf.extend_from_slice(&buf[..n]);
        let data = pipe.data.take();
        drop(pipe);
        wake(data);
        Poll::Ready(Ok(n))
    }

    /// What was written is hyper's to send: nothing to wait for.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if lock(&self.pipe).gone {
            return Poll::Ready(Err(broken()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.end();
        Poll::Ready(Ok(()))
    }
}

impl HyperStream {
    /// The body ends after what was written.
    fn end(&self) {
        let mut pipe = lock(&self.pipe);
        pipe.ended = true;
        let data = pipe.data.take();
        drop(pipe);
        wake(data);
    }
}

impl Drop for HyperStream {
    fn drop(&mut self) {
        self.end();
    }
}

// ------------------------------------------------------------ responses

/// The body of the responses of a [`ServerService`]: a whole body, or one
/// streamed by [`Request::respond_stream`](super::Request::respond_stream).
/// An [`http_body::Body`](hyper::body::Body) of [`Bytes`] that never
/// fails, as hyper and axum take it.
///
/// ```
/// use hyper::body::Body;
/// let body = wsx::server::ResponseBody::full("hello");
/// assert_eq!(body.size_hint().exact(), Some(5));
/// assert!(wsx::server::ResponseBody::empty().is_end_stream());
/// ```
pub struct ResponseBody(Kind);

enum Kind {
    Full(Bytes),
    Stream(PipeReader),
}

impl ResponseBody {
    /// A whole body.
    pub fn full(data: impl Into<Bytes>) -> Self {
        Self(Kind::Full(data.into()))
    }

    /// No body.
    pub fn empty() -> Self {
        Self(Kind::Full(Bytes::new()))
    }
}

impl Default for ResponseBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Full(b) => f.debug_tuple("ResponseBody::Full").field(&b.len()).finish(),
            Kind::Stream(_) => f.write_str("ResponseBody::Stream"),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            Kind::Full(data) if data.is_empty() => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(data))))),
            Kind::Stream(pipe) => pipe.poll_data(cx).map(|d| d.map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(data) => data.is_empty(),
            Kind::Stream(pipe) => pipe.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(data) => SizeHint::with_exact(data.len() as u64),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

// ------------------------------------------------------------ the service

/// Starts a handler's task for a request, holding its slot: the handler's
/// type, erased.
type Spawn = dyn Fn(Request<UpgradedIo>, Slot) -> AbortHandle + Send + Sync;

/// A [`Server`]'s handler as a tower [`Service`](tower_service::Service)
/// (what axum's `Router::route_service` and `fallback_service` take) and
/// a hyper [`Service`](hyper::service::Service) (what hyper's
/// `serve_connection` takes); made by [`Server::service`]. Cheap to clone.
#[derive(Clone)]
pub struct ServerService {
    server: Server,
    spawn: Arc<Spawn>,
    /// The peer of the connection this copy serves, if told.
    peer: Option<SocketAddr>,
}

impl fmt::Debug for ServerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerService").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Server {
    /// Serve `handler` inside hyper or axum: a [`ServerService`] for each
    /// route or connection, whose requests are `Request<UpgradedIo>` for
    /// the same handlers [`Server::serve`] runs (the hub's
    /// `Hub::handle`, Socket.IO, SSE, [`StaticFiles`](super::StaticFiles)).
    ///
    /// Each request takes a place of the server's connection limit (503
    /// with `Retry-After: 1` past it, without running the handler) and
    /// runs `handler` in a task of its own that holds the place until the
    /// handler's future ends. The service's response is the one the
    /// handler gives:
    ///
    /// - [`Request::respond`] sends a whole response (the head alone to a
    ///   `HEAD`); the connection stays open for the next request (hyper's
    ///   keep-alive).
    /// - [`Request::respond_stream`] sends the head; what is written to
    ///   the [`ResponseStream`](super::ResponseStream) is the body (at most
    ///   64 KiB ahead of hyper), until it is shut down or dropped. Reading
    ///   it gives the request's body, then waits until the client goes
    ///   away (hyper drops the body) and ends, as on HTTP/2.
    /// - [`Request::body`] reads the request's body within the limit and
    ///   the handshake timeout (hyper sends `100 Continue` when asked).
    /// - [`Request::upgrade`] checks the request as the server does
    ///   (origin policy 403, 503 during shutdown, the head's limits 431,
    ///   RFC 6455 for a `GET` on HTTP/1.1, RFC 8441 for an extended
    ///   `CONNECT` on HTTP/2), sends the 101 (200 on HTTP/2) and takes the
    ///   connection (stream) hyper hands over, within the handshake
    ///   timeout. The WebSocket gets the server's keepalive, closes with
    ///   1001 on [`Server::shutdown`], and counts in
    ///   [`Server::websockets_opened`].
    ///
    /// A handler that ends without answering gets its request 500. hyper
    /// upgrades only connections served with upgrades
    /// (`serve_connection_with_upgrades`, as `axum::serve` does) and, on
    /// HTTP/2, with the extended CONNECT enabled; a request from another
    /// stack is refused 500 on upgrade. The peer's address
    /// ([`RequestHead::peer`]) is a [`SocketAddr`] in the request's
    /// extensions when a layer put one there, else the one given to
    /// [`ServerService::with_peer`]. Route WebSockets with any method (axum's `route_service`
    /// does): HTTP/2 opens them with `CONNECT`.
    ///
    /// In axum, next to other routes:
    ///
    /// ```no_run
    /// use axum::{routing::get, Router};
    /// use wsx::server::Server;
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let server = Server::builder().max_connections(10_000).build();
    /// let ws = server.service(|req| async move {
    ///     let mut ws = req.upgrade(wsx::handshake::Accept::new()).await?;
    ///     while let Some(msg) = ws.recv().await {
    ///         let msg = msg?;
    ///         if msg.is_text() || msg.is_binary() {
    ///             ws.feed(msg).await?;
    ///         }
    ///     }
    ///     Ok::<_, wsx::Error>(())
    /// });
    /// let app = Router::new().route("/", get(|| async { "hello" })).route_service("/ws", ws);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app).with_graceful_shutdown(async move {
    ///     tokio::signal::ctrl_c().await.ok();
    ///     server.shutdown().await; // the WebSockets close with 1001
    /// }).await
    /// # }
    /// ```
    ///
    /// In hyper (hyper-util's auto builder: HTTP/1.1, and HTTP/2 with the
    /// extended CONNECT):
    ///
    /// ```no_run
    /// use hyper_util::rt::{TokioExecutor, TokioIo};
    /// use hyper_util::server::conn::auto;
    ///
    /// # async fn run(server: wsx::server::Server) -> std::io::Result<()> {
    /// let service = server.service(|req| async move {
    ///     let page = http::Response::new(wsx::Bytes::from_static(b"hello\n"));
    ///     req.respond(page).await
    /// });
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// loop {
    ///     let (tcp, peer) = listener.accept().await?;
    ///     let service = service.clone().with_peer(peer);
    ///     tokio::spawn(async move {
    ///         let mut builder = auto::Builder::new(TokioExecutor::new());
    ///         builder.http2().enable_connect_protocol();
    ///         builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await
    ///     });
    /// }
    /// # }
    /// ```
    pub fn service<F, Fut, E>(&self, handler: F) -> ServerService
    where
        F: Fn(Request<UpgradedIo>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display,
    {
        let spawn = move |request: Request<UpgradedIo>, slot: Slot| {
            tokio::spawn(super::HandlerTask { serving: handler(request), _held: slot }).abort_handle()
        };
        ServerService { server: self.clone(), spawn: Arc::new(spawn), peer: None }
    }
}

impl ServerService {
    /// The server whose limits, policies and shutdown the requests get.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// This copy's requests come from `peer` (a hyper server that makes
    /// a copy for each connection it accepts knows it): what
    /// [`RequestHead::peer`] says, unless the request carries a
    /// [`SocketAddr`] extension.
    ///
    /// ```
    /// # let server = wsx::server::Server::builder().build();
    /// let service = server.service(|req| async move {
    ///     let peer = req.head().peer().map(|p| p.to_string()).unwrap_or_default();
    ///     req.respond(http::Response::new(peer.into())).await
    /// });
    /// let for_one_connection = service.clone().with_peer("127.0.0.1:50000".parse().unwrap());
    /// # drop(for_one_connection);
    /// ```
    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    fn serve<B>(&self, request: http::Request<B>) -> ServiceFuture
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = request.into_parts();
        let version = parts.version;
        let Some(slot) = self.server.take_slot() else {
            tracing::debug!("request refused: too many connections");
            let busy = Reject::new(503, "too many connections\n").header("retry-after", "1").into_response();
            return ServiceFuture(Waiting::Ready(Some(fit_to_version(busy, version).map(ResponseBody::full))));
        };
        let on_upgrade = parts.extensions.remove::<OnUpgrade>();
        let peer = parts.extensions.get::<SocketAddr>().copied().or(self.peer);
        let (respond, response) = oneshot::channel();
        let body = body.map_err(Into::into).boxed_unsync();
        let io = Io::Hyper(HyperIo { body, on_upgrade, respond, version, wrap: |io| io });
        let head = RequestHead::new(http::Request::from_parts(parts, ()), peer);
        let id = slot.id;
        let request =
            Request(Box::new(RequestInner { head, io, server: self.server.clone(), slot: id, body_read: false }));
        let task = (self.spawn)(request, slot);
        self.server.inner.group.set_abort(id, task);
        ServiceFuture(Waiting::Handler(response))
    }
}

impl<B> tower_service::Service<http::Request<B>> for ServerService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> ServiceFuture {
        self.serve(request)
    }
}

impl<B> hyper::service::Service<http::Request<B>> for ServerService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: http::Request<B>) -> ServiceFuture {
        self.serve(request)
    }
}

/// The response of a [`ServerService`]: resolves when the handler
/// answers (a 500 if it ends without answering).
#[must_use = "futures do nothing unless awaited"]
pub struct ServiceFuture(Waiting);

enum Waiting {
    /// Answered at once (the connection limit), or taken.
    Ready(Option<http::Response<ResponseBody>>),
    /// The handler's answer.
    Handler(oneshot::Receiver<http::Response<ResponseBody>>),
}

impl fmt::Debug for ServiceFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceFuture")
    }
}

impl Future for ServiceFuture {
    type Output = std::result::Result<http::Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match &mut self.0 {
            Waiting::Ready(response) => response.take(),
            Waiting::Handler(rx) => ready!(Pin::new(rx).poll(cx)).ok(),
        };
        self.0 = Waiting::Ready(None);
        Poll::Ready(Ok(response.unwrap_or_else(|| {
            tracing::warn!("the handler ended without answering the request: 500");
            let mut r = http::Response::new(ResponseBody::full("the request was not answered\n"));
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}

    /// Handlers run in spawned tasks; axum wants its services `Sync`.
    #[test]
    fn requests_are_send_and_the_service_send_and_sync() {
        send::<Request<UpgradedIo>>();
        send_sync::<ServerService>();
        send_sync::<ResponseBody>();
    }

    /// A request from a stack that is not a hyper server connection (no
    /// upgrade handle) is answered, and its upgrade refused with 500.
    #[tokio::test]
    async fn requests_without_hyper_connections_are_answered_and_not_upgraded() {
        let server = Server::builder().build();
        let service = server.service(|req: Request<UpgradedIo>| async move {
            if req.path() == "/ws" {
                return req.upgrade(Accept::new()).await.map(drop);
            }
            req.respond(http::Response::new(Bytes::from_static(b"page"))).await
        });
        let page =
            hyper::service::Service::call(&service, http::Request::get("/").body(Full::<Bytes>::default()).unwrap());
        let page = page.await.unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.into_body().collect().await.unwrap().to_bytes(), "page");
        let upgrade = http::Request::get("/ws")
            .header("host", "x")
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(Full::<Bytes>::default())
            .unwrap();
        let refused = hyper::service::Service::call(&service, upgrade).await.unwrap();
        assert_eq!(refused.status(), 500);
    }

    /// A streamed body holds at most its capacity ahead of hyper; once
    /// hyper drops the body, writes fail and reading ends.
    #[tokio::test]
    async fn a_streamed_body_is_bounded_and_ends_when_the_client_goes() {
        let server = Server::builder().build();
        let (done_tx, done_rx) = oneshot::channel();
        let done_tx = std::sync::Mutex::new(Some(done_tx));
        let service = server.service(move |req: Request<UpgradedIo>| {
            let done = done_tx.lock().unwrap().take();
            async move {
                let mut stream = req.respond_stream(http::Response::new(())).await?;
                let chunk = vec![b'x'; 1 << 20];
                // Nothing takes the body: the writer waits once the pipe is full.
                let wrote = tokio::time::timeout(std::time::Duration::from_millis(100), stream.write_all(&chunk)).await;
                assert!(wrote.is_err(), "the pipe is bounded");
                // The client goes away: reading ends, writing fails.
                let mut buf = [0u8; 16];
                assert_eq!(stream.read(&mut buf).await?, 0);
                assert!(stream.write_all(b"more").await.is_err());
                let _ = done.map(|d| d.send(()));
                Ok::<_, Error>(())
            }
        });
        let response =
            hyper::service::Service::call(&service, http::Request::get("/").body(Full::<Bytes>::default()).unwrap());
        let response = response.await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), PIPE_CAPACITY);
        drop(body);
        tokio::time::timeout(std::time::Duration::from_secs(5), done_rx).await.unwrap().unwrap();
    }
}
