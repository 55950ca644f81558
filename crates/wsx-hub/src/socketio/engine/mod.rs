//! An Engine.IO v4 server: the transport under Socket.IO v5.
//!
//! An [`Engine`] serves the requests of one path (the caller routes them
//! to [`Engine::handle`]): HTTP long-polling (`GET` takes what the server
//! queued, `POST` brings what the client sends), the WebSocket transport,
//! and the upgrade from the first to the second. Each session is handed
//! to the `on_open` callback as an [`EngineSocket`]: what the client sends
//! comes out of [`EngineSocket::recv`], what to send goes into
//! [`EngineSocket::outbox`] (one [`wsx::Message`] per Engine.IO packet,
//! whatever the transport). The engine runs the heartbeat (ping `2` every
//! ping interval, closing the session when no pong `3` comes within the
//! ping timeout), bounds what a session holds (the payload limit, the
//! outbox's limits, a bounded queue of incoming messages that slows the
//! client down), and bounds the number of sessions.
//!
//! CORS: polling responses carry the headers of [`EngineConfig::cors`];
//! WebSocket upgrades from an origin it does not allow get 403 from the
//! engine itself (the server's own [`wsx::server::OriginPolicy`], when
//! configured, applies before as well).
//!
//! An echo server on `/engine.io/`:
//!
//! ```no_run
//! use wsx_hub::socketio::engine::{Engine, EngineConfig, Incoming};
//!
//! # async fn run() -> std::io::Result<()> {
//! let engine = Engine::new(EngineConfig::default(), |mut socket| {
//!     tokio::spawn(async move {
//!         while let Some(msg) = socket.recv().await {
//!             let reply = match msg {
//!                 Incoming::Text(t) => wsx::Message::text(format!("4{}", t.as_str())),
//!                 Incoming::Binary(b) => wsx::Message::binary(b),
//!             };
//!             let _ = socket.outbox().push(reply);
//!         }
//!     });
//! });
//! let server = wsx::server::Server::builder().build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! server
//!     .serve(listener, move |req| {
//!         let engine = engine.clone();
//!         async move {
//!             if req.path() == "/engine.io/" {
//!                 return engine.handle(req).await;
//!             }
//!             req.respond(http::Response::builder().status(404).body(bytes::Bytes::new()).unwrap()).await
//!         }
//!     })
//!     .await
//! # }
//! ```

mod cors;
mod packet;
mod polling;
mod session;
mod websocket;

pub use cors::Cors;

use bytes::Bytes;
use http::Method;
use packet::ErrorCode;
use session::Session;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Notify};
use wsx::server::{OutboxConfig, Request, RequestHead};

/// Settings of an [`Engine`]; the default is Engine.IO's.
///
/// ```
/// use std::time::Duration;
/// use wsx_hub::socketio::engine::{Cors, EngineConfig};
/// let config = EngineConfig::default()
///     .ping_interval(Duration::from_millis(300))
///     .ping_timeout(Duration::from_millis(200))
///     .cors(Cors::any());
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct EngineConfig {
    ping_interval: Duration,
    ping_timeout: Duration,
    max_payload: usize,
    upgrade_timeout: Duration,
    polling: bool,
    websocket: bool,
    cors: Option<Cors>,
    outbox: OutboxConfig,
    max_sessions: usize,
}

impl Default for EngineConfig {
    /// Ping every 25 s, pong within 20 s, payloads up to 1,000,000 bytes,
    /// upgrades within 10 s, both transports, no CORS headers, the
    /// default [`OutboxConfig`], at most 10,000 sessions.
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_secs(10),
            polling: true,
            websocket: true,
            cors: None,
            outbox: OutboxConfig::default(),
            max_sessions: 10_000,
        }
    }
}

impl EngineConfig {
    /// How often the server pings (`pingInterval`; at least 1 ms).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d.max(Duration::from_millis(1));
        self
    }

    /// How long a pong may take (`pingTimeout`).
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }

    /// The largest POST body and WebSocket message, and the most a polling
    /// response carries when more is queued (`maxPayload`; at least 16).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes.max(16);
        self
    }

    /// How long a WebSocket may take to complete an upgrade from polling
    /// (probe to upgrade packet); past it, it is dropped and polling goes on.
    pub fn upgrade_timeout(mut self, d: Duration) -> Self {
        self.upgrade_timeout = d;
        self
    }

    /// Which transports are allowed (the other gets 400 "Transport
    /// unknown"; without websocket, the handshake offers no upgrade).
    pub fn transports(mut self, polling: bool, websocket: bool) -> Self {
        self.polling = polling;
        self.websocket = websocket;
        self
    }

    /// CORS for browsers on other origins (default: no CORS headers).
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Each session's outgoing queue and what a full one does
    /// ([`wsx::server::SlowConsumer`]); an overflow closes the session
    /// ([`CloseReason::SlowConsumer`]) on either transport.
    pub fn outbox(mut self, config: OutboxConfig) -> Self {
        self.outbox = config;
        self
    }

    /// At most `n` sessions at once (at least 1); one more handshake gets
    /// 503.
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }
}

/// A transport of Engine.IO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// A WebSocket.
    WebSocket,
}

impl Transport {
    /// Its name in the query (`polling`, `websocket`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message packet from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message: the packet's payload after its type `4`.
    Text(wsx::Utf8Bytes),
    /// A binary message (a binary frame, or a `b` packet's base64 decoded).
    Binary(Bytes),
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The transport went away (the WebSocket closed, or the client left).
    TransportClose,
    /// The transport failed or was misused (two polling requests of a kind
    /// at once, an I/O error).
    TransportError,
    /// No pong within the ping timeout.
    PingTimeout,
    /// The client sent a packet that is not Engine.IO.
    ParseError,
    /// The client sent the close packet `1`.
    ClientClose,
    /// [`Closer::close`] (or the app dropped its [`EngineSocket`]).
    ServerClose,
    /// [`Engine::shutdown`].
    ServerShutdown,
    /// The session's outbox overflowed ([`EngineConfig::outbox`]).
    SlowConsumer,
    /// The client sent more than the payload limit at once.
    PayloadTooLarge,
}

impl CloseReason {
    /// Engine.IO's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose | CloseReason::ClientClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ServerClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::PayloadTooLarge => "payload too large",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Incoming messages waiting for [`EngineSocket::recv`]: past it, the
/// transport stops reading (a POST waits for room).
const INCOMING_CAPACITY: usize = 32;

/// An Engine.IO v4 server for one path; see the [module documentation](self).
/// Cheap to clone (a handle).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    config: EngineConfig,
    on_open: Box<dyn Fn(EngineSocket) + Send + Sync>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    stopping: AtomicBool,
    /// A session left the map.
    removed: Notify,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("sessions", &self.sessions()).finish_non_exhaustive()
    }
}

impl EngineInner {
    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, sid: &str) -> Option<Arc<Session>> {
        self.map().get(sid).cloned()
    }

    pub(crate) fn remove(&self, sid: &str) {
        if self.map().remove(sid).is_some() {
            self.removed.notify_waiters();
        }
    }
}

impl Engine {
    /// An engine with `config`; `on_open` gets each new session once its
    /// handshake packet is queued (spawn a task there that reads it).
    ///
    /// ```
    /// use wsx_hub::socketio::engine::{Engine, EngineConfig};
    /// let engine = Engine::new(EngineConfig::default(), |socket| {
    ///     println!("session {} over {}", socket.sid(), socket.transport());
    /// });
    /// assert_eq!(engine.sessions(), 0);
    /// ```
    pub fn new(config: EngineConfig, on_open: impl Fn(EngineSocket) + Send + Sync + 'static) -> Engine {
        Engine {
            inner: Arc::new(EngineInner {
                config,
                on_open: Box::new(on_open),
                sessions: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
                removed: Notify::new(),
            }),
        }
    }

    /// Serve one request of the engine's path: a polling `GET` or `POST`,
    /// a CORS preflight, or a WebSocket upgrade (then the WebSocket
    /// transport runs until it ends). Bad requests are answered with
    /// Engine.IO's JSON errors; the error returned is the connection's.
    ///
    /// ```no_run
    /// # async fn run(engine: wsx_hub::socketio::engine::Engine, req: wsx::server::Request) -> wsx::Result<()> {
    /// if req.path() == "/engine.io/" {
    ///     engine.handle(req).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn handle<S>(&self, req: Request<S>) -> wsx::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Box::pin(route(self.inner.clone(), req)).await
    }

    /// Close every session (each gets the close packet `1`), refuse new
    /// ones, and wait (at most a few seconds) for them to end. Call it
    /// before [`wsx::server::Server::shutdown`], which would close the
    /// WebSockets with 1001 before their `1`, and knows nothing of polling
    /// sessions. A polling session without a GET waiting keeps its `1` for
    /// the next GET, for at most a ping interval and timeout (3 s here).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let engine = wsx_hub::socketio::engine::Engine::new(Default::default(), |_| {});
    /// engine.shutdown().await;
    /// assert_eq!(engine.sessions(), 0);
    /// # });
    /// ```
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        let all: Vec<_> = inner.map().values().cloned().collect();
        for s in all {
            s.close(CloseReason::ServerShutdown);
        }
        let wait = async {
            loop {
                let removed = inner.removed.notified();
                tokio::pin!(removed);
                removed.as_mut().enable();
                if inner.map().is_empty() {
                    return;
                }
                removed.await;
            }
        };
        let bound = (inner.config.ping_interval + inner.config.ping_timeout).min(Duration::from_secs(3));
        if tokio::time::timeout(bound, wait).await.is_err() {
            let left: Vec<_> = inner.map().drain().map(|(_, s)| s).collect();
            for s in left {
                s.wake_all();
            }
            inner.removed.notify_waiters();
        }
    }

    /// Sessions open (a polling one holds no connection between requests).
    pub fn sessions(&self) -> usize {
        self.inner.map().len()
    }
}

/// One Engine.IO session, as `on_open` gets it: read it with
/// [`EngineSocket::recv`], write to it with [`EngineSocket::outbox`].
/// Dropping it closes the session ([`CloseReason::ServerClose`]) once the
/// client sends something more.
pub struct EngineSocket {
    session: Arc<Session>,
    head: RequestHead,
    incoming: mpsc::Receiver<Incoming>,
    closed: watch::Receiver<Option<CloseReason>>,
}

impl std::fmt::Debug for EngineSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSocket").field("sid", &self.sid()).finish_non_exhaustive()
    }
}

impl EngineSocket {
    /// The session id.
    pub fn sid(&self) -> &str {
        &self.session.sid
    }

    /// The handshake request (query, headers, peer, origin).
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The transport in use now.
    pub fn transport(&self) -> Transport {
        self.session.transport()
    }

    /// Where to queue packets to the client: each [`wsx::Message`] is one
    /// Engine.IO packet, `Text` the whole packet with its type (`"4hello"`,
    /// `"42[\"ev\"]"`), `Binary` a binary message. Polling responses carry
    /// text as it is and binary as `b` + base64, joined by `\x1e`.
    pub fn outbox(&self) -> &wsx::server::Outbox {
        &self.session.outbox
    }

    /// The client's next message; `None` once the session is closed (then
    /// [`EngineSocket::close_reason`] says why). Messages that arrived
    /// before the close come first.
    ///
    /// ```no_run
    /// # async fn run(mut socket: wsx_hub::socketio::engine::EngineSocket) {
    /// while let Some(msg) = socket.recv().await {
    ///     println!("{msg:?}");
    /// }
    /// println!("closed: {:?}", socket.close_reason());
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            if self.closed.borrow().is_some() {
                return self.incoming.try_recv().ok();
            }
            tokio::select! {
                biased;
                m = self.incoming.recv() => return m,
                r = self.closed.changed() => if r.is_err() {
                    return self.incoming.try_recv().ok();
                },
            }
        }
    }

    /// Why the session ended (`None` while it is open).
    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.closed.borrow()
    }

    /// A handle that closes the session from anywhere.
    pub fn closer(&self) -> Closer {
        Closer { session: Arc::downgrade(&self.session) }
    }
}

/// Closes a session from any task; see [`EngineSocket::closer`].
#[derive(Clone, Debug)]
pub struct Closer {
    session: Weak<Session>,
}

impl Closer {
    /// End the session: what is queued is sent (best effort), then the
    /// close packet `1`; [`EngineSocket::recv`] returns `None` from then
    /// on. Nothing happens to a session already closed.
    ///
    /// ```no_run
    /// # fn run(socket: &wsx_hub::socketio::engine::EngineSocket) {
    /// use wsx_hub::socketio::engine::CloseReason;
    /// socket.closer().close(CloseReason::ServerClose);
    /// # }
    /// ```
    pub fn close(&self, reason: CloseReason) {
        if let Some(s) = self.session.upgrade() {
            s.close(reason);
        }
    }

    /// A closer of no session.
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        Closer { session: Weak::new() }
    }
}

/// Route one request: preflight, polling GET/POST, or WebSocket.
async fn route<S>(engine: Arc<EngineInner>, req: Request<S>) -> wsx::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head = req.head();
    if head.method() == Method::OPTIONS && !req.is_upgrade() {
        return polling::preflight(&engine, req).await;
    }
    if head.query_param("EIO").as_deref() != Some("4") {
        return polling::error(&engine, req, ErrorCode::UnsupportedProtocolVersion).await;
    }
    let transport = match head.query_param("transport").as_deref() {
        Some("polling") if engine.config.polling => Transport::Polling,
        Some("websocket") if engine.config.websocket => Transport::WebSocket,
        _ => return polling::error(&engine, req, ErrorCode::TransportUnknown).await,
    };
    let sid = head.query_param("sid");
    if req.is_upgrade() {
        if transport != Transport::WebSocket {
            return polling::error(&engine, req, ErrorCode::BadRequest).await;
        }
        if let Some(cors) = &engine.config.cors {
            if !cors.allows(head.origin()) {
                return polling::error(&engine, req, ErrorCode::Forbidden).await;
            }
        }
        return websocket::serve(engine, req, sid).await;
    }
    if transport != Transport::Polling {
        return polling::error(&engine, req, ErrorCode::BadRequest).await;
    }
    let Some(sid) = sid else {
        if head.method() != Method::GET {
            return polling::error(&engine, req, ErrorCode::BadHandshakeMethod).await;
        }
        return polling::handshake(engine, req).await;
    };
    let Some(session) = engine.get(&sid) else {
        return polling::error(&engine, req, ErrorCode::SessionIdUnknown).await;
    };
    match *head.method() {
        Method::GET => polling::get(engine, session, req).await,
        Method::POST => polling::post(engine, session, req).await,
        _ => polling::error(&engine, req, ErrorCode::BadRequest).await,
    }
}
