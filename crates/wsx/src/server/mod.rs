//! The server: the one place that accepts connections.
//!
//! A [`Server`] owns what every WebSocket server does around the protocol:
//! it accepts TCP connections (with TLS when configured), counts each one
//! against the connection limit from the moment it is accepted (503 at
//! once past it), reads the request head within the size limit and the
//! handshake timeout (400 or 431 for a bad one), and hands the request to
//! your handler as a [`Request`]: [`Request::upgrade`] answers a WebSocket
//! upgrade (after the origin policy, with permessage-deflate and your
//! subprotocol), [`Request::respond`] answers anything else. Upgraded
//! connections get the keepalive of [`crate::Config`] (pings after silence,
//! a close after the idle timeout), and [`Server::shutdown`] closes every
//! one of them with 1001, waits for their closing handshakes within the
//! shutdown timeout, and drops what is left. Messages that other tasks send
//! to a connection go through its [`Outbox`] and [`Pump`], with one
//! slow-consumer rule.
//!
//! ## Inside hyper or axum
//!
//! A server that already runs hyper or axum mounts the same handlers with
//! [`Server::service`] (feature `hyper`): a tower and hyper `Service`
//! ([`ServerService`]) for a route, a fallback or a whole connection. Its
//! requests are `Request<`[`UpgradedIo`](crate::upgrade::UpgradedIo)`>`,
//! answered through hyper (a WebSocket takes the connection, or the HTTP/2
//! stream, that hyper hands over), and they get this server's policies,
//! connection limit, keepalive, counters and graceful shutdown, so that a
//! handler written for [`Request`] (wsx-hub's `Hub::handle`, Socket.IO,
//! SSE, [`StaticFiles`]) works unchanged there:
//!
//! ```no_run
//! # #[cfg(feature = "hyper")]
//! # async fn run(server: wsx::server::Server) -> std::io::Result<()> {
//! let echo = server.service(|req| async move {
//!     let mut ws = req.upgrade(wsx::handshake::Accept::new()).await?;
//!     while let Some(msg) = ws.recv().await {
//!         let msg = msg?;
//!         if msg.is_text() || msg.is_binary() {
//!             ws.feed(msg).await?;
//!         }
//!     }
//!     Ok::<_, wsx::Error>(())
//! });
//! let app = axum::Router::new().route_service("/ws", echo);
//! axum::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await
//! # }
//! ```
//!
//! An echo server with static files, keepalive, an origin allowlist, a
//! connection limit and graceful shutdown on Ctrl-C, as `wsx serve` runs it:
//!
//! ```no_run
//! use std::time::Duration;
//! use wsx::server::{Server, StaticFiles};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::builder()
//!     .config(wsx::Config::default().with_keepalive(Duration::from_secs(20), Duration::from_secs(60)))
//!     .allow_origins(["https://example.com"])
//!     .max_connections(10_000)
//!     .build();
//! let files = StaticFiles::new("./public")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! server
//!     .serve_until(listener, move |req| {
//!         let files = files.clone();
//!         async move {
//!             if !req.is_upgrade() {
//!                 let page = files.response(req.head().request()).await;
//!                 return req.respond(page).await;
//!             }
//!             let mut ws = req.upgrade(wsx::handshake::Accept::new()).await?;
//!             while let Some(msg) = ws.recv().await {
//!                 let msg = msg?;
//!                 if msg.is_text() || msg.is_binary() {
//!                     ws.feed(msg).await?;
//!                 }
//!             }
//!             Ok::<_, wsx::Error>(())
//!         }
//!     }, async { tokio::signal::ctrl_c().await.ok(); })
//!     .await
//! # }
//! ```

mod accept;
mod body;
mod echo;
mod files;
#[cfg(feature = "http2")]
mod h2;
mod head;
mod policy;
mod pump;
#[cfg(feature = "hyper")]
mod service;

#[cfg(any(feature = "hyper", feature = "http3"))]
pub(crate) use accept::Accepted;
pub use accept::{accept, accept_with, Handshake};
pub use body::BodyError;
pub use echo::echo;
pub use files::StaticFiles;
#[cfg(any(feature = "hyper", feature = "http3"))]
pub(crate) use head::remove_connection_fields;
pub use head::RequestHead;
pub use policy::OriginPolicy;
pub use pump::{Outbox, OutboxConfig, OutboxReceiver, Outgoing, Pump, Push, SlowConsumer};
#[cfg(feature = "hyper")]
pub use service::{ResponseBody, ServerService, ServiceFuture};

use crate::group::Group;
use crate::maybe_tls::{MaybeTls, ServerTls};
#[cfg(feature = "tls")]
use crate::tls::TlsAcceptor;
use crate::{CloseCode, Config, Error, Result, WebSocket};
use bytes::{Bytes, BytesMut};
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use wsx_proto::deflate::CompressionPreset;
use wsx_proto::handshake::{Accept, Reject, UpgradeRequest};

/// What a [`Server`] serves: a TCP connection, with TLS when the server has
/// a certificate.
pub type ServerStream = MaybeTls<ServerTls>;

/// A WebSocket server's accept loop, policies and shutdown; see the
/// [module documentation](self). Cheap to clone (a handle).
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.connections())
            .field("shutting_down", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Server`].
#[derive(Clone)]
pub struct ServerBuilder {
    config: Config,
    #[cfg(feature = "tls")]
    tls: Option<TlsAcceptor>,
    origins: OriginPolicy,
    max_connections: Option<usize>,
    shutdown_timeout: Duration,
    http2: bool,
}

struct Inner {
    config: Config,
    #[cfg(feature = "tls")]
    tls: Option<TlsAcceptor>,
    origins: OriginPolicy,
    max_connections: usize,
    shutdown_timeout: Duration,
    /// The connections being served, from accept to their end: their
    /// count, their tasks, and the close and keepalive clock they share.
    group: Arc<Group>,
    /// Set when shutdown starts.
    stopping: watch::Sender<bool>,
    /// Connections refused for the connection limit.
    refused: AtomicU64,
    /// WebSockets opened over HTTP/1.1 and over HTTP/2.
    websockets: [AtomicU64; 2],
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            config: Config::default(),
            #[cfg(feature = "tls")]
            tls: None,
            origins: OriginPolicy::any(),
            max_connections: None,
            shutdown_timeout: Duration::from_secs(5),
            http2: true,
        }
    }
}

impl ServerBuilder {
    /// The connections' settings: limits, compression, timeouts (the
    /// handshake timeout bounds TLS and the request head together),
    /// keepalive.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// How much permessage-deflate state each connection may keep: a
    /// memory preset, set on the builder's [`Config`]
    /// ([`Config::with_compression_preset`]; call it after
    /// [`ServerBuilder::config`], which replaces the whole config). The
    /// default, [`CompressionPreset::Shared`], keeps none.
    ///
    /// ```
    /// use wsx::proto::deflate::CompressionPreset;
    /// use wsx::server::Server;
    /// let server = Server::builder().compression_preset(CompressionPreset::Dedicated8K).build();
    /// let deflate = server.config().deflate(wsx::Role::Server).unwrap();
    /// assert_eq!(deflate.server_max_window_bits(), 10);
    /// ```
    pub fn compression_preset(mut self, preset: CompressionPreset) -> Self {
        self.config = self.config.with_compression_preset(preset);
        self
    }

    /// Serve `wss://` with this TLS configuration (see
    /// [`crate::tls::acceptor_from_pem_files`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Which origins may upgrade (default: any).
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origins = policy;
        self
    }

    /// Only these origins may upgrade; see [`OriginPolicy::allow`].
    pub fn allow_origins<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, origins: I) -> Self {
        self.origins = OriginPolicy::allow(origins).require_origin(self.origins.requires_origin());
        self
    }

    /// Refuse upgrades without an `Origin` header; see
    /// [`OriginPolicy::require_origin`].
    pub fn require_origin(mut self, on: bool) -> Self {
        self.origins = self.origins.require_origin(on);
        self
    }

    /// At most `n` connections at once (at least 1), counted from the
    /// moment they are accepted: handshakes in progress and plain HTTP
    /// requests count, and so does each stream of an HTTP/2 connection
    /// (a WebSocket or request there costs what a connection of its own
    /// costs on HTTP/1.1) besides the connection itself. One more gets 503
    /// with `Retry-After: 1` at once, without its request being read.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// How long [`Server::shutdown`] waits for closing handshakes before
    /// it drops the connections left (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Whether a TLS server offers HTTP/2 (`h2`) by ALPN beside HTTP/1.1,
    /// with WebSockets over its streams (RFC 8441), as browsers use
    /// whenever a server offers it (default: on, with the `http2`
    /// feature). Off, or without the feature, the server offers HTTP/1.1
    /// alone. Plain (`ws://`) connections are always HTTP/1.1.
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// The server.
    pub fn build(self) -> Server {
        let group = Group::new(crate::keepalive::Settings::new(&self.config));
        #[cfg(feature = "tls")]
        let http2 = self.http2 && cfg!(feature = "http2");
        Server {
            inner: Arc::new(Inner {
                config: self.config,
                #[cfg(feature = "tls")]
                tls: self.tls.map(|acceptor| offer_alpn(acceptor, http2)),
                origins: self.origins,
                max_connections: self.max_connections.unwrap_or(usize::MAX),
                shutdown_timeout: self.shutdown_timeout,
                group,
                stopping: watch::channel(false).0,
                refused: AtomicU64::new(0),
                websockets: Default::default(),
            }),
        }
    }
}

/// The application protocols a TLS server offers (RFC 7301): `h2` first
/// when it serves HTTP/2, then `http/1.1`. A configuration that names
/// other protocols is the application's own and keeps them; `h2` goes
/// when HTTP/2 is off, since the server would not speak it.
#[cfg(feature = "tls")]
fn offer_alpn(acceptor: TlsAcceptor, http2: bool) -> TlsAcceptor {
    const H2: &[u8] = b"h2";
    const H1: &[u8] = b"http/1.1";
    let offered = &acceptor.config().alpn_protocols;
    let ours = offered.iter().all(|p| p == H1 || p == H2);
    let wanted: Vec<Vec<u8>> = match (ours, http2) {
        (true, true) => vec![H2.to_vec(), H1.to_vec()],
        (true, false) => vec![H1.to_vec()],
        (false, _) => offered.iter().filter(|p| http2 || p.as_slice() != H2).cloned().collect(),
    };
    if *offered == wanted {
        return acceptor;
    }
    let mut config = (**acceptor.config()).clone();
    config.alpn_protocols = wanted;
    TlsAcceptor::from(Arc::new(config))
}

/// A connection's place among the live ones; freed when dropped.
struct Slot {
    server: Server,
    id: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.inner.group.leave(self.id);
    }
}

impl Inner {
    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }
}

/// A request handler: `Fn(Request) -> impl Future<Output = Result<(), E>>`.
/// Its errors are logged (at debug level) as the connection's end.
pub(crate) trait Handler<S>: Send + Sync + 'static {
    /// What a failed request ends with.
    type Error: Display;
    /// Serving one request.
    type Future: Future<Output = std::result::Result<(), Self::Error>> + Send + 'static;
    /// Serve one request.
    fn handle(&self, request: Request<S>) -> Self::Future;
}

impl<S, F, Fut, E> Handler<S> for F
where
    F: Fn(Request<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Display,
{
    type Error = E;
    type Future = Fut;
    fn handle(&self, request: Request<S>) -> Fut {
        self(request)
    }
}

/// Serve a request to its end, logging how it failed.
async fn serve_request<S, H: Handler<S>>(serving: H::Future) {
    if let Err(e) = serving.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

impl Server {
    /// Start building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The connections' settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The origin policy.
    pub fn origin_policy(&self) -> &OriginPolicy {
        &self.inner.origins
    }

    /// Connections being served (from accept to their end).
    pub fn connections(&self) -> usize {
        self.inner.group.len()
    }

    /// Connections refused (503) for the connection limit so far.
    pub fn refused_connections(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// WebSockets opened since the server started over `version`
    /// (`HTTP_11` or `HTTP_2`; 0 for any other).
    ///
    /// ```
    /// let server = wsx::server::Server::builder().build();
    /// assert_eq!(server.websockets_opened(http::Version::HTTP_2), 0);
    /// ```
    pub fn websockets_opened(&self, version: http::Version) -> u64 {
        match version_index(version) {
            Some(i) => self.inner.websockets[i].load(Ordering::Relaxed),
            None => 0,
        }
    }

    /// The server's counters in the Prometheus text format: connections
    /// open, refused for the limit, and WebSockets opened by HTTP version.
    ///
    /// ```
    /// let server = wsx::server::Server::builder().build();
    /// assert!(server.metrics_text().contains("wsx_websockets_opened_total{http=\"2\"} 0"));
    /// ```
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "# HELP wsx_connections Connections being served (an HTTP/2 connection and each of its streams count).\n\
             # TYPE wsx_connections gauge\nwsx_connections {}\n\
             # HELP wsx_connections_refused_total Connections refused for the connection limit.\n\
             # TYPE wsx_connections_refused_total counter\nwsx_connections_refused_total {}\n\
             # HELP wsx_websockets_opened_total WebSockets opened, by HTTP version.\n\
             # TYPE wsx_websockets_opened_total counter\n\
             wsx_websockets_opened_total{{http=\"1.1\"}} {}\nwsx_websockets_opened_total{{http=\"2\"}} {}\n",
            self.connections(),
            self.refused_connections(),
            self.websockets_opened(http::Version::HTTP_11),
            self.websockets_opened(http::Version::HTTP_2),
        );
        out
    }

    /// Whether [`Server::shutdown`] has started.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.is_stopping()
    }

    /// Resolves when shutdown starts: a handler that streams a long
    /// response (Server-Sent Events) ends it then.
    pub async fn stopping(&self) {
        stopped(&mut self.inner.stopping.subscribe()).await
    }

    /// Accept connections on `listener` and serve each in its own task with
    /// `handler`, until [`Server::shutdown`] starts.
    pub async fn serve<F, Fut, E>(&self, listener: TcpListener, handler: F) -> std::io::Result<()>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display,
    {
        let handler = Arc::new(handler);
        let mut stopping = self.inner.stopping.subscribe();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => self.spawn(tcp, peer, handler.clone()),
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                () = stopped(&mut stopping) => return Ok(()),
            }
        }
    }

    /// [`Server::serve`] until `signal` completes (Ctrl-C, SIGTERM...),
    /// then [`Server::shutdown`].
    pub async fn serve_until<F, Fut, E>(
        &self,
        listener: TcpListener,
        handler: F,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display,
    {
        tokio::select! {
            r = self.serve(listener, handler) => r?,
            () = signal => {}
        }
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }

    /// Serve one connection on any stream (a Unix socket, an in-memory
    /// duplex, a stream accepted elsewhere): counted, limited and shut down
    /// like the connections [`Server::serve`] accepts, but without TLS.
    /// Returns when the connection ends.
    pub async fn serve_stream<S, F, Fut, E>(&self, stream: S, peer: Option<SocketAddr>, handler: &F)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn(Request<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display,
    {
        let Some(slot) = self.take_slot() else {
            refuse_busy(stream).await;
            return;
        };
        let deadline = tokio::time::Instant::now() + self.inner.config.handshake_timeout();
        let opening = Box::pin(read_request(self.clone(), stream, peer, slot.id, deadline));
        if let Some(req) = opening.await {
            serve_request::<S, F>(handler.handle(req)).await;
        }
        drop(slot);
    }

    /// Shut down gracefully: stop accepting, close every WebSocket with
    /// 1001 `server shutting down` (upgrades still in progress get 503),
    /// wait for the connections to end within the shutdown timeout, then
    /// drop those left. A second call waits like the first.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stopping.send_replace(true);
        inner.group.close_all(CloseCode::GoingAway, "server shutting down");
        if tokio::time::timeout(inner.shutdown_timeout, inner.group.emptied()).await.is_err() {
            let left = inner.group.abort_all();
            tracing::warn!(left, "shutdown timeout: dropping connections still open");
            let _ = tokio::time::timeout(Duration::from_secs(1), inner.group.emptied()).await;
        }
    }

    /// A place for a new connection, unless the server is full.
    fn take_slot(&self) -> Option<Slot> {
        let Some(id) = self.inner.group.join(self.inner.max_connections) else {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        Some(Slot { server: self.clone(), id })
    }

    /// One accepted connection: its own task, or 503 past the limit.
    fn spawn<H: Handler<ServerStream>>(&self, tcp: TcpStream, peer: SocketAddr, handler: Arc<H>) {
        let Some(slot) = self.take_slot() else {
            tokio::spawn(refuse_busy(tcp));
            return;
        };
        let id = slot.id;
        let task = tokio::spawn(connection(slot, tcp, peer, handler));
        self.inner.group.set_abort(id, task.abort_handle());
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here, before any
    // await of the caller.
    let _ = rx.wait_for(|s| *s).await.is_ok();
}

/// A connection's task. It lives as long as its connection, and its size
/// is paid by every idle connection: everything up to the request (TLS,
/// the head, making the handler's future) runs in a boxed future freed
/// before the handler runs, and the task keeps only its slot beside the
/// handler's future.
fn connection<H: Handler<ServerStream>>(
    slot: Slot,
    tcp: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
) -> impl Future<Output = ()> + Send {
    let (server, id) = (slot.server.clone(), slot.id);
    let opening = Box::pin(async move {
        match open(server.clone(), tcp, peer, id).await? {
            Opened::Request(request) => Some(handler.handle(request)),
            // Many requests on one connection: the opening serves them
            // all, each stream in a task of its own.
            #[cfg(feature = "http2")]
            Opened::Http2(tls, deadline) => {
                h2::serve(server, *tls, peer, handler, deadline).await;
                None
            }
        }
    });
    ConnectionTask::Opening { opening, slot: Some(slot) }
}

pin_project_lite::pin_project! {
    /// The state of a connection's task (written out, not an `async`
    /// block: a block would keep the opening's pointer beside the handler's
    /// future for the connection's whole life).
    #[project = TaskState]
    enum ConnectionTask<O, F> {
        Opening { opening: Pin<Box<O>>, slot: Option<Slot> },
        Serving { #[pin] serving: F, slot: Slot },
        Done,
    }
}

impl<O, F, E> Future for ConnectionTask<O, F>
where
    O: Future<Output = Option<F>>,
    F: Future<Output = std::result::Result<(), E>>,
    E: Display,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.as_mut().project() {
                TaskState::Opening { opening, slot } => {
                    let serving = ready!(opening.as_mut().poll(cx));
                    match (serving, slot.take()) {
                        (Some(serving), Some(slot)) => self.set(ConnectionTask::Serving { serving, slot }),
                        _ => self.set(ConnectionTask::Done),
                    }
                }
                TaskState::Serving { serving, .. } => {
                    if let Err(e) = ready!(serving.poll(cx)) {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    // Frees the slot.
                    self.set(ConnectionTask::Done);
                }
                TaskState::Done => return Poll::Ready(()),
            }
        }
    }
}

#[cfg(any(feature = "http2", feature = "hyper"))]
pin_project_lite::pin_project! {
    /// A handler's task beside what it holds until it ends or is aborted
    /// (its slot; on HTTP/2 also its place among the connection's live
    /// streams): tokio drops a task's future as it completes. Written out,
    /// not an `async` block, which would hold the handler's future twice
    /// (captured, and moved into its `.await`): every idle WebSocket pays
    /// for the task's size.
    struct HandlerTask<F, H> {
        #[pin]
        serving: F,
        _held: H,
    }
}

#[cfg(any(feature = "http2", feature = "hyper"))]
impl<F, E, H> Future for HandlerTask<F, H>
where
    F: Future<Output = std::result::Result<(), E>>,
    E: Display,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Err(e) = ready!(self.project().serving.poll(cx)) {
            tracing::debug!(error = %e, "request ended with an error");
        }
        Poll::Ready(())
    }
}

/// What an accepted connection turned out to carry.
enum Opened {
    /// One HTTP/1.1 request (an upgrade, or a request answered once).
    Request(Request<ServerStream>),
    /// HTTP/2, chosen by ALPN, to serve by the handshake deadline.
    #[cfg(feature = "http2")]
    Http2(Box<ServerTls>, tokio::time::Instant),
}

/// TLS (when configured) and the request head, within the handshake
/// timeout together.
async fn open(server: Server, tcp: TcpStream, peer: SocketAddr, id: u32) -> Option<Opened> {
    let _ = tcp.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + server.inner.config.handshake_timeout();
    #[cfg(feature = "tls")]
    let stream = match &server.inner.tls {
        // Boxed: the TLS handshake's state would make every plain
        // connection's opening as large (10,000 handshakes at once are
        // 10,000 openings).
        Some(acceptor) => match Box::pin(tokio::time::timeout_at(deadline, acceptor.accept(tcp))).await {
            #[cfg(feature = "http2")]
            Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                return Some(Opened::Http2(Box::new(tls), deadline));
            }
            Ok(Ok(tls)) => MaybeTls::Tls(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return None;
            }
        },
        None => MaybeTls::Plain(tcp),
    };
    #[cfg(not(feature = "tls"))]
    let stream = MaybeTls::Plain(tcp);
    read_request(server, stream, Some(peer), id, deadline).await.map(Opened::Request)
}

/// Read the request head by `deadline`; a malformed one is answered (400,
/// 431) here. Not an `async fn`, which would keep its arguments twice: many
/// handshakes at once are this future each.
#[allow(clippy::manual_async_fn)]
fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    server: Server,
    mut stream: S,
    peer: Option<SocketAddr>,
    slot: u32,
    deadline: tokio::time::Instant,
) -> impl Future<Output = Option<Request<S>>> {
    async move {
        let max = server.inner.config.max_handshake_size();
        let mut buf = BytesMut::with_capacity(1024);
        let head = tokio::time::timeout_at(deadline, head::read_request_head(&mut stream, &mut buf, max)).await;
        let bad = match head {
            Ok(Ok(Some(Ok((request, len))))) => {
                let leftover = buf.split_off(len).freeze();
                let head = RequestHead::new(request, peer);
                let io = Io::H1 { stream, leftover };
                return Some(Request(Box::new(RequestInner { head, io, server, slot, body_read: false })));
            }
            Ok(Ok(Some(Err(e)))) => e,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "reading the request head failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(?peer, "request head timed out");
                return None;
            }
        };
        tracing::debug!(?peer, error = %bad, "bad request head");
        let _ = Box::pin(head::respond(&mut stream, &bad.to_response(), false)).await;
        None
    }
}

/// Past the connection limit: 503 at once. The request is not read; what
/// the client sends is drained for up to a second (at most 64 KiB) after
/// the response, so that it reads the 503 rather than a reset.
async fn refuse_busy<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let resp = Reject::new(503, "too many connections\n").header("retry-after", "1").into_response();
    if head::respond(&mut stream, &resp, false).await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = 64usize << 10;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// A request that a [`Server`] read, over HTTP/1.1 or on a stream of an
/// HTTP/2 connection, or that hyper (or axum) handed to the server's
/// service (`Server::service`, feature `hyper`: a
/// `Request<UpgradedIo>`): its head, and where to answer it. Upgrade it
/// to a WebSocket ([`Request::upgrade`]), answer it
/// ([`Request::respond`]), or stream a response
/// ([`Request::respond_stream`]: Server-Sent Events, say). The handler
/// sees no difference between the versions, nor between the server's own
/// connections and hyper's.
///
/// Small (one pointer): a handler's future keeps it for the connection's
/// whole life.
pub struct Request<S = ServerStream>(Box<RequestInner<S>>);

struct RequestInner<S> {
    head: RequestHead,
    io: Io<S>,
    server: Server,
    slot: u32,
    /// [`Request::body`] ran: the body is consumed.
    body_read: bool,
}

/// Where a request came from and its answer goes.
enum Io<S> {
    /// An HTTP/1.1 connection, and the bytes read past the head.
    H1 { stream: S, leftover: Bytes },
    /// A stream of an HTTP/2 connection.
    #[cfg(feature = "http2")]
    H2(h2::H2Io<S>),
    /// A request from hyper (or another tower stack), through a
    /// [`ServerService`].
    #[cfg(feature = "hyper")]
    Hyper(service::HyperIo<S>),
}

impl<S: AsyncWrite + Unpin> Io<S> {
    /// Answer with a whole response and end the exchange.
    async fn respond(self, response: &http::Response<Bytes>, head_only: bool) -> Result<()> {
        match self {
            Io::H1 { mut stream, .. } => head::respond(&mut stream, response, head_only).await,
            #[cfg(feature = "http2")]
            Io::H2(h2) => h2.respond(response, head_only).await,
            #[cfg(feature = "hyper")]
            Io::Hyper(hyper) => hyper.respond(response, head_only),
        }
    }
}

/// The index of `version` in [`Inner::websockets`].
fn version_index(version: http::Version) -> Option<usize> {
    match version {
        http::Version::HTTP_11 => Some(0),
        http::Version::HTTP_2 => Some(1),
        _ => None,
    }
}

impl<S> std::fmt::Debug for Request<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("head", &self.0.head).finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Request<S> {
    /// The request head and the peer.
    pub fn head(&self) -> &RequestHead {
        &self.0.head
    }

    /// The path.
    pub fn path(&self) -> &str {
        self.0.head.path()
    }

    /// Whether this asks for a WebSocket.
    pub fn is_upgrade(&self) -> bool {
        self.0.head.is_upgrade()
    }

    /// The subprotocols the client offers, in its order of preference
    /// (none if the header is malformed: the upgrade then fails with 400).
    pub fn protocols(&self) -> Vec<String> {
        wsx_proto::handshake::parse_protocols(self.0.head.request().headers()).unwrap_or_default()
    }

    /// The server that read it.
    pub fn server(&self) -> &Server {
        &self.0.server
    }

    /// Resolves when the client goes away: on HTTP/1.1 when its
    /// connection ends or fails (bytes it sends meanwhile, up to 64 KiB,
    /// are kept for [`Request::body`]; past that this waits for ever), on
    /// HTTP/2 when it resets the stream. A handler that waits before it
    /// answers (a long-poll) races its wait with this one, and can drop
    /// its work when no one is left to read the answer. Cancel-safe.
    ///
    /// ```no_run
    /// # async fn run(mut req: wsx::server::Request, news: tokio::sync::Notify) -> wsx::Result<()> {
    /// tokio::select! {
    ///     () = news.notified() => req.respond(http::Response::new("news".into())).await,
    ///     () = req.client_gone() => Ok(()),
    /// }
    /// # }
    /// ```
    pub async fn client_gone(&mut self) {
        match &mut self.0.io {
            Io::H1 { stream, leftover } => loop {
                if leftover.len() >= 64 << 10 {
                    return std::future::pending().await;
                }
                let mut chunk = BytesMut::with_capacity(4096);
                match stream.read_buf(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let mut joined = BytesMut::with_capacity(leftover.len() + chunk.len());
                        joined.extend_from_slice(leftover);
                        joined.extend_from_slice(&chunk);
                        *leftover = joined.freeze();
                    }
                }
            },
            #[cfg(feature = "http2")]
            Io::H2(h2) => h2.reset().await,
            #[cfg(feature = "hyper")]
            Io::Hyper(hyper) => hyper.client_gone().await,
        }
    }

    /// Read the request's body, at most `max` bytes: a `Content-Length` or
    /// `Transfer-Encoding: chunked` body on HTTP/1.1 (after a `100
    /// Continue` when the client expects one), the stream's DATA on
    /// HTTP/2. Bounded in time by the config's handshake timeout, counted
    /// from this call. A body larger than `max` is
    /// [`BodyError::TooLarge`] (answer 413: [`BodyError::status`]); the
    /// request can still be answered after any error. A request without a
    /// body, or a second call, gives an empty body.
    ///
    /// ```no_run
    /// # async fn run(mut req: wsx::server::Request) -> wsx::Result<()> {
    /// let response = match req.body(64 << 10).await {
    ///     Ok(body) => http::Response::new(body), // echo it
    ///     Err(e) => http::Response::builder().status(e.status()).body(bytes::Bytes::new()).unwrap(),
    /// };
    /// req.respond(response).await
    /// # }
    /// ```
    pub async fn body(&mut self, max: usize) -> std::result::Result<Bytes, BodyError> {
        let inner = &mut *self.0;
        if std::mem::replace(&mut inner.body_read, true) {
            return Ok(Bytes::new());
        }
        let timeout = inner.server.inner.config.handshake_timeout();
        let reading = async {
            match &mut inner.io {
                Io::H1 { stream, leftover } => {
                    let framing = body::framing(inner.head.request().headers())?;
                    if framing == body::Framing::Length(0) {
                        return Ok(Bytes::new());
                    }
                    if let body::Framing::Length(n) = framing {
                        if n > max as u64 {
                            return Err(BodyError::TooLarge(max));
                        }
                    }
                    let expects =
                        inner.head.header(http::header::EXPECT).is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
                    if expects && leftover.is_empty() {
                        use tokio::io::AsyncWriteExt;
                        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                        stream.flush().await?;
                    }
                    let source = body::Source { leftover, stream, buf: BytesMut::new() };
                    let (data, rest) = source.read(framing, max).await?;
                    *leftover = rest;
                    Ok(data)
                }
                #[cfg(feature = "http2")]
                Io::H2(h2) => h2.read_body(max).await,
                #[cfg(feature = "hyper")]
                Io::Hyper(hyper) => hyper.read_body(max).await,
            }
        };
        match tokio::time::timeout(timeout, reading).await {
            Ok(r) => r,
            Err(_) => Err(BodyError::Timeout),
        }
    }

    /// Accept the WebSocket upgrade: the server's origin policy (403), the
    /// request's validity (400, 405, 426 with the versions we speak, §4.4),
    /// then the 101 with `accept`'s subprotocol and headers and the
    /// permessage-deflate the config allows. During shutdown, 503. A
    /// refusal is answered here and returned as an error.
    pub async fn upgrade(self, accept: Accept) -> Result<WebSocket<S>> {
        // Boxed: the handshake's state is freed when it is done instead of
        // staying in the handler's future for the connection's life.
        Box::pin(self.upgrade_inner(accept, None)).await
    }

    /// [`Request::upgrade`] with settings of its own for this WebSocket (an
    /// endpoint with other limits or keepalive than the server's).
    pub async fn upgrade_with(self, accept: Accept, config: &Config) -> Result<WebSocket<S>> {
        Box::pin(self.upgrade_inner(accept, Some(config))).await
    }

    async fn upgrade_inner(self, accept: Accept, config: Option<&Config>) -> Result<WebSocket<S>> {
        let RequestInner { head, io, server, slot, .. } = *self.0;
        let inner = &server.inner;
        let config = config.unwrap_or(&inner.config);
        let refused = if inner.is_stopping() {
            Err(Reject::new(503, "the server is shutting down\n").header("retry-after", "1"))
        } else {
            inner.origins.check(head.origin())
        };
        if let Err(reject) = refused {
            tracing::debug!(origin = ?head.origin(), status = %reject.status(), "upgrade refused");
            io.respond(reject.response(), false).await?;
            return Err(Error::Rejected(reject.status()));
        }
        let version = head.version();
        // The handshake of HTTP/1.1 (RFC 6455 §4.2.1) or of HTTP/2 (RFC
        // 8441 §5); what follows (policy, negotiation) is the same.
        let upgrade = match &io {
            Io::H1 { .. } => UpgradeRequest::from_request(head.into_request()),
            #[cfg(feature = "http2")]
            Io::H2(_) => {
                let protocol = head.connect_protocol().map(str::to_owned);
                UpgradeRequest::from_extended_connect(head.into_request(), protocol.as_deref())
            }
            #[cfg(feature = "hyper")]
            Io::Hyper(_) => service::check_upgrade(head, config),
        };
        let upgrade = match upgrade {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "refusing upgrade request");
                io.respond(&e.to_response(), false).await?;
                return Err(e.into());
            }
        };
        let mut ws = match io {
            Io::H1 { stream, leftover } => accept::accept_upgrade(stream, &upgrade, &accept, config, &leftover).await?,
            #[cfg(feature = "http2")]
            Io::H2(h2) => match accept::Accepted::new(&upgrade, &accept, config) {
                Ok(accepted) => {
                    let stream = h2.accept(&accepted.response)?;
                    accepted.into_websocket(stream, config, &[])
                }
                Err(e) => {
                    Io::H2(h2).respond(&e.to_response(), false).await?;
                    return Err(e.into());
                }
            },
            #[cfg(feature = "hyper")]
            Io::Hyper(hyper) => hyper.accept(&upgrade, &accept, config).await?,
        };
        if let Some(i) = version_index(version) {
            inner.websockets[i].fetch_add(1, Ordering::Relaxed);
        }
        // Closed by the server's shutdown (even one that started meanwhile),
        // and ticking with its keepalive clock.
        ws.join_group(inner.group.clone(), slot);
        Ok(ws)
    }

    /// Answer with `response` and end the exchange (on HTTP/1.1, close the
    /// connection; on HTTP/2, end the stream). A `HEAD` request gets the
    /// head alone.
    pub async fn respond(self, response: http::Response<Bytes>) -> Result<()> {
        let RequestInner { head, io, .. } = *self.0;
        io.respond(&response, head.method() == http::Method::HEAD).await
    }

    /// Send `response`'s head and stream its body: what is written to the
    /// returned [`ResponseStream`] is the body (Server-Sent Events, a long
    /// download), until it is shut down or dropped. Reading it gives the
    /// request's body, then waits, and ends (0 bytes) when the client goes
    /// away. On HTTP/1.1 the body runs until the connection closes
    /// (`Connection: close`, no length); on HTTP/2 it is the stream's DATA,
    /// paced by the client's window. A request from hyper
    /// (`Server::service`) gets a body that hyper sends as it likes
    /// (chunked on HTTP/1.1), at most 64 KiB ahead of it; reading gives
    /// the request's body, then ends when hyper drops the response (the
    /// client went away), as on HTTP/2. The connection (or stream, or
    /// request) counts against the limit until the handler returns.
    ///
    /// ```no_run
    /// use tokio::io::AsyncWriteExt;
    /// # async fn run(req: wsx::server::Request) -> wsx::Result<()> {
    /// let head = http::Response::builder().header("content-type", "text/event-stream").body(()).unwrap();
    /// let mut body = req.respond_stream(head).await?;
    /// body.write_all(b"data: hello\n\n").await?;
    /// # Ok(()) }
    /// ```
    pub async fn respond_stream(self, response: http::Response<()>) -> Result<ResponseStream<S>> {
        let RequestInner { io, .. } = *self.0;
        match io {
            Io::H1 { mut stream, .. } => {
                head::write_stream_head(&mut stream, &response).await?;
                Ok(ResponseStream(StreamIo::H1(stream)))
            }
            #[cfg(feature = "http2")]
            Io::H2(h2) => Ok(ResponseStream(StreamIo::H2 { stream: h2.respond_stream(&response)?, body_done: false })),
            #[cfg(feature = "hyper")]
            Io::Hyper(hyper) => Ok(ResponseStream(StreamIo::Hyper(hyper.respond_stream(&response)?))),
        }
    }
}

/// A response body being streamed; see [`Request::respond_stream`].
#[derive(Debug)]
pub struct ResponseStream<S>(StreamIo<S>);

#[derive(Debug)]
enum StreamIo<S> {
    H1(S),
    #[cfg(feature = "http2")]
    H2 {
        stream: crate::http2::H2Stream,
        body_done: bool,
    },
    #[cfg(feature = "hyper")]
    Hyper(service::HyperStream),
}

impl<S: AsyncRead + Unpin> AsyncRead for ResponseStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            StreamIo::H1(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "http2")]
            StreamIo::H2 { stream, body_done } => {
                let (recv, send) = stream.halves();
                if !*body_done {
                    let before = buf.filled().len();
                    ready!(Pin::new(recv).poll_read(cx, buf))?;
                    if buf.filled().len() > before {
                        return Poll::Ready(Ok(()));
                    }
                    *body_done = true;
                }
                // A GET's stream is half-closed by the client from the
                // start: it goes away by resetting the stream.
                send.poll_reset(cx).map(Ok)
            }
            #[cfg(feature = "hyper")]
            StreamIo::Hyper(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ResponseStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().0 {
            StreamIo::H1(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "http2")]
            StreamIo::H2 { stream, .. } => Pin::new(stream).poll_write(cx, buf),
            #[cfg(feature = "hyper")]
            StreamIo::Hyper(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            StreamIo::H1(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "http2")]
            StreamIo::H2 { stream, .. } => Pin::new(stream).poll_flush(cx),
            #[cfg(feature = "hyper")]
            StreamIo::Hyper(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            StreamIo::H1(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "http2")]
            StreamIo::H2 { stream, .. } => Pin::new(stream).poll_shutdown(cx),
            #[cfg(feature = "hyper")]
            StreamIo::Hyper(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task is the handler's future plus what the server
    /// keeps beside it for the connection's life (its slot and the state's
    /// tag): every idle connection pays it. A tokio task of a future up to
    /// about 280 bytes takes a 384-byte cell, the next size 512.
    #[tokio::test]
    async fn the_server_adds_little_to_a_connection_task() {
        let server = Server::builder().build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let handler = Arc::new(|_req: Request| async { Ok::<_, Error>(()) });
        let handler_size = std::mem::size_of_val(&Handler::handle(
            &*handler,
            Request(Box::new(RequestInner {
                head: RequestHead::new(http::Request::new(()), None),
                io: Io::H1 {
                    stream: MaybeTls::Plain(TcpStream::connect(listener.local_addr().unwrap()).await.unwrap()),
                    leftover: Bytes::new(),
                },
                server: server.clone(),
                slot: 0,
                body_read: false,
            })),
        ));
        let slot = server.take_slot().unwrap();
        let task = connection(slot, tcp, peer, handler);
        let overhead = std::mem::size_of_val(&task) - handler_size;
        assert!(overhead <= 32, "the server keeps {overhead} bytes per connection task");
    }
}
