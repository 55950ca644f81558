//! # Socket.IO
//!
//! A Socket.IO v5 server on Engine.IO v4, for the official clients
//! (`socket.io-client` in browsers and Node, python-socketio, and the
//! others): namespaces (static, and dynamic by a predicate), middlewares
//! on CONNECT, events with acknowledgements both ways, binary attachments,
//! rooms, broadcasts (to rooms, except rooms, volatile, local, with acks),
//! `socket.data`, and connection state recovery.
//!
//! It runs on the hub: a socket is a connection of the [`Hub`], its rooms
//! are the hub's rooms and its broadcasts go through the hub's broker to
//! the other nodes, so `wsx-hub.v1` clients and Socket.IO clients in one
//! room see each other's events (`PROTOCOL.md`, "Socket.IO", says how the
//! two map).
//!
//! ```no_run
//! use serde_json::json;
//! use wsx_hub::socketio::{Namespace, Payload, SocketIo};
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = SocketIo::builder()
//!     .namespace("/", Namespace::new()
//!         .on("join", |socket, msg| async move {
//!             let room: String = msg.data()?;
//!             socket.join(&room).await?;
//!             msg.ack(json!(true));
//!             Ok(())
//!         })
//!         .on("chat", |socket, msg| async move {
//!             let room: String = msg.data()?;
//!             socket.to(&room).emit("chat", msg.into_payload());
//!             Ok(())
//!         }))
//!     .connection_state_recovery(std::time::Duration::from_secs(120))
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! tokio::spawn(io.clone().serve(listener));  // http://127.0.0.1:3000/socket.io/
//! io.to("lobby").emit("news", Payload::from(json!({"headline": "hello"})));
//! # Ok(()) }
//! ```

mod connect;
pub mod engine;
mod namespace;
pub mod packet;
mod payload;
mod recovery;
mod relay;
mod selection;
mod session;
mod socket;
mod state;

pub use connect::{ConnectError, DisconnectReason, Handshake};
pub use namespace::Namespace;
pub use payload::Payload;
pub use relay::relay;
pub use socket::{Operator, Received, Socket};

use crate::broker::BrokerMessage;
use crate::error::HubError;
use crate::hub::{Extension, Hub};
use crate::protocol::{self, EventPacket, Packet as HubPacket};
use crate::server::Handled;
use engine::{Engine, EngineConfig};
use packet::{DecodeLimits, Packet};
use recovery::Recovery;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use wsx::server::Request;

type Matcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The Socket.IO server's state, shared by its handles, its sessions and
/// (weakly) the hub.
pub(crate) struct Inner {
    pub(crate) hub: Hub,
    engine: Engine,
    namespaces: HashMap<String, Arc<Namespace>>,
    dynamic: Vec<(Matcher, Arc<Namespace>)>,
    pub(crate) connect_timeout: Duration,
    pub(crate) recovery: Option<Recovery>,
    pub(crate) skip_middlewares: bool,
    pub(crate) limits: DecodeLimits,
    path: String,
    /// Broadcasts with acks of this node waiting for other nodes' answers.
    pub(crate) gathers: std::sync::Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<serde_json::Value>>>,
    /// Itself (for handles made from a broker message).
    this: Weak<Inner>,
}

impl Extension for Inner {
    fn room_event(&self, room: &str, except: Option<&str>, ev: &EventPacket) -> Option<String> {
        self.recovery.as_ref()?.record_room(self, room, except, ev)
    }

    fn broker_message(&self, m: BrokerMessage) {
        match m {
            BrokerMessage::Select { node, nsp, rooms, except_rooms, except, payload, ack } => {
                let Some(Ok(p @ HubPacket::Event(_))) = protocol::decode_message(&payload.to_message()) else { return };
                let sel = selection::Selection { rooms, except_rooms, except };
                match (ack, self.this.upgrade()) {
                    (Some((id, timeout_ms)), Some(io)) => {
                        if let HubPacket::Event(ev) = p {
                            socket::answer_broadcast(&io, node, id, &nsp, sel, ev, timeout_ms)
                        }
                    }
                    (Some(_), None) => {}
                    (None, _) => selection::deliver_selected(self, &nsp, &sel, &p),
                }
            }
            BrokerMessage::Answers { id, answers, .. } => {
                let waiting = state::lock(&self.gathers).get(&id).cloned();
                if let Some(tx) = waiting {
                    let _ = tx.send(answers);
                }
            }
            BrokerMessage::RecoverAsk { node, id, query, .. } => recovery::answer_recovery(self, node, id, &query),
            BrokerMessage::RecoverAnswer { id, session, .. } => recovery::recovery_answered(self, id, session),
            _ => {}
        }
    }
}

impl Inner {
    /// The namespace called `name`: a static one, or the first dynamic one
    /// whose predicate takes the name.
    pub(crate) fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        if let Some(ns) = self.namespaces.get(name) {
            return Some(ns.clone());
        }
        self.dynamic.iter().find(|(m, _)| m(name)).map(|(_, ns)| ns.clone())
    }

    pub(crate) fn has_namespace(&self, name: &str) -> bool {
        self.namespaces.contains_key(name) || self.dynamic.iter().any(|(m, _)| m(name))
    }
}

/// Builds a [`SocketIo`]; see [`SocketIo::builder`].
pub struct SocketIoBuilder {
    hub: Option<Hub>,
    engine: EngineConfig,
    namespaces: HashMap<String, Namespace>,
    dynamic: Vec<(Matcher, Namespace)>,
    connect_timeout: Duration,
    recovery: Option<Duration>,
    skip_middlewares: bool,
    limits: DecodeLimits,
    path: String,
}

impl std::fmt::Debug for SocketIoBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoBuilder").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SocketIoBuilder {
    /// Run on this hub (its rooms, broker, server and policies): Socket.IO
    /// clients and the hub's `wsx-hub.v1` clients then share rooms. By
    /// default the server makes a hub of its own.
    pub fn hub(mut self, hub: Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// The Engine.IO settings: ping interval and timeout, `maxPayload`,
    /// transports, CORS, the outgoing queue of each client.
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// Where clients connect (default `/socket.io/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let mut p: String = path.into();
        if !p.ends_with('/') {
            p.push('/');
        }
        self.path = p;
        self
    }

    /// Serve the namespace `name` (beginning with `/`) with these handlers.
    /// The main namespace `/` exists even when not given (without
    /// handlers).
    pub fn namespace(mut self, name: impl Into<String>, ns: Namespace) -> Self {
        self.namespaces.insert(name.into(), ns);
        self
    }

    /// Serve every namespace whose name `matches` takes with these
    /// handlers (each name is a namespace of its own, with its own rooms).
    ///
    /// ```
    /// use wsx_hub::socketio::{Namespace, SocketIo};
    /// let io = SocketIo::builder()
    ///     .dynamic_namespace(|name| name.starts_with("/tenant-"), Namespace::new())
    ///     .build();
    /// # drop(io);
    /// ```
    pub fn dynamic_namespace(mut self, matches: impl Fn(&str) -> bool + Send + Sync + 'static, ns: Namespace) -> Self {
        self.dynamic.push((Arc::new(matches), ns));
        self
    }

    /// How long a client may take to connect to a namespace after its
    /// Engine.IO handshake before it is closed (default 45 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Let clients that lost their connection come back within `window`
    /// with their id, rooms and `socket.data`, and receive the broadcasts
    /// they missed.
    pub fn connection_state_recovery(mut self, window: Duration) -> Self {
        self.recovery = Some(window);
        self
    }

    /// Whether a recovered client skips the middlewares (default `true`,
    /// as upstream).
    pub fn recovery_skips_middlewares(mut self, skip: bool) -> Self {
        self.skip_middlewares = skip;
        self
    }

    /// Bounds on the binary attachments of one packet.
    pub fn decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Build the server.
    pub fn build(mut self) -> SocketIo {
        let hub = self.hub.take().unwrap_or_else(|| Hub::builder().build());
        self.namespaces.entry("/".to_owned()).or_default();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let this = weak.clone();
            let weak = weak.clone();
            let engine = Engine::new(self.engine, move |es| {
                if let Some(io) = weak.upgrade() {
                    tokio::spawn(session::run(io, es));
                }
            });
            Inner {
                hub: hub.clone(),
                engine,
                namespaces: self.namespaces.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
                dynamic: self.dynamic.into_iter().map(|(m, ns)| (m, Arc::new(ns))).collect(),
                connect_timeout: self.connect_timeout,
                recovery: self.recovery.map(Recovery::new),
                skip_middlewares: self.skip_middlewares,
                limits: self.limits,
                path: self.path,
                gathers: std::sync::Mutex::new(HashMap::new()),
                this,
            }
        });
        let ext: Weak<dyn Extension> = Arc::downgrade(&inner) as Weak<dyn Extension>;
        if !hub.attach(ext) {
            tracing::warn!(
                "a hub serves one Socket.IO server: the second one's broadcasts are not recorded for recovery"
            );
        }
        if let Some(window) = self.recovery {
            spawn_recovery_sweeper(Arc::downgrade(&inner), window);
        }
        SocketIo { inner }
    }
}

/// A Socket.IO server. Cheap to clone (a handle).
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIo").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl SocketIo {
    /// Start building a server.
    pub fn builder() -> SocketIoBuilder {
        SocketIoBuilder {
            hub: None,
            engine: EngineConfig::default(),
            namespaces: HashMap::new(),
            dynamic: Vec::new(),
            connect_timeout: Duration::from_secs(45),
            recovery: None,
            skip_middlewares: true,
            limits: DecodeLimits::default(),
            path: "/socket.io/".to_owned(),
        }
    }

    /// The hub it runs on.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Every socket of the namespace `nsp` (narrow with
    /// [`Operator::to`]).
    pub fn of(&self, nsp: &str) -> Operator {
        Operator::new(self.inner.clone(), nsp.into())
    }

    /// The sockets in `room` of the main namespace.
    pub fn to(&self, room: &str) -> Operator {
        self.of("/").to(room)
    }

    /// Send `event` to every socket of the main namespace.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) {
        self.of("/").emit(event, payload)
    }

    /// Engine.IO sessions open on this node.
    pub fn sessions(&self) -> usize {
        self.inner.engine.sessions()
    }

    /// Route a request of a [`wsx::server::Server`]: one on the Socket.IO
    /// path (polling, or the WebSocket upgrade, served to its end) is
    /// answered here; anything else comes back as [`Handled::NotMine`]
    /// (for the hub's own endpoints, static files...).
    ///
    /// ```no_run
    /// # async fn run(io: wsx_hub::socketio::SocketIo, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// use wsx_hub::Handled;
    /// let server = io.hub().server().clone();
    /// server.serve(listener, move |req| {
    ///     let io = io.clone();
    ///     async move {
    ///         if let Handled::NotMine(req) = io.handle(req).await? {
    ///             req.respond(http::Response::new(bytes::Bytes::from_static(b"hello\n"))).await?;
    ///         }
    ///         Ok::<_, wsx_hub::HubError>(())
    ///     }
    /// }).await
    /// # }
    /// ```
    pub async fn handle<S>(&self, req: Request<S>) -> Result<Handled<S>, HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let path = req.path();
        let p = &self.inner.path;
        if path == p || path == p.trim_end_matches('/') {
            self.inner.hub.ensure_started();
            self.inner.engine.handle(req).await?;
            return Ok(Handled::Done);
        }
        Ok(Handled::NotMine(req))
    }

    /// Accept connections on `listener` with the hub's server until
    /// [`SocketIo::shutdown`]: Socket.IO on its path, the hub's endpoints
    /// (`wsx-hub.v1`, SSE, metrics) beside it, 404 for anything else.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let server = self.inner.hub.server().clone();
        server.serve(listener, move |req| self.clone().route(req)).await
    }

    /// Socket.IO as a tower (and hyper) service, to mount in a hyper or
    /// axum server: what [`SocketIo::serve`] answers (Socket.IO on its
    /// path, polling and WebSocket; the hub's endpoints beside it; 404 for
    /// anything else). The requests count against the hub's server (its
    /// connection limit, keepalive and [`SocketIo::shutdown`]); see
    /// [`Server::service`](wsx::server::Server::service).
    ///
    /// Mount it at the Socket.IO path (`/socket.io/` unless the builder
    /// says otherwise), with any method (polling `POST`s, and HTTP/2 opens
    /// WebSockets with `CONNECT`), as `route_service` does:
    ///
    /// ```no_run
    /// use axum::{routing::get, Router};
    /// use wsx_hub::socketio::{Namespace, SocketIo};
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let io = SocketIo::builder()
    ///     .namespace("/", Namespace::new().on("ping", |socket, _msg| async move {
    ///         socket.emit("pong", ())?;
    ///         Ok(())
    ///     }))
    ///     .build();
    /// let app = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .route_service("/socket.io/", io.service());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app).with_graceful_shutdown(async move {
    ///     tokio::signal::ctrl_c().await.ok();
    ///     io.shutdown().await;
    /// }).await
    /// # }
    /// ```
    #[cfg(feature = "hyper")]
    pub fn service(&self) -> wsx::server::ServerService {
        self.inner.hub.ensure_started();
        let io = self.clone();
        self.inner.hub.server().service(move |req| io.clone().route(req))
    }

    /// A request of [`SocketIo::serve`] or [`SocketIo::service`]:
    /// Socket.IO, the hub's endpoints, or 404.
    async fn route<S>(self, req: Request<S>) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let req = match self.handle(req).await? {
            Handled::Done => return Ok(()),
            Handled::NotMine(req) => req,
        };
        match self.inner.hub.handle(req).await? {
            Handled::Done => Ok(()),
            Handled::NotMine(req) => {
                let reject = wsx::handshake::Reject::new(404, "not found\n");
                req.respond(reject.into_response()).await.map_err(HubError::from)
            }
        }
    }

    /// Close every session (the clients are told the server is going
    /// away), then shut the hub down ([`Hub::shutdown`]).
    pub async fn shutdown(&self) {
        self.inner.engine.shutdown().await;
        self.inner.hub.shutdown().await;
    }
}

/// Forget expired recovery sessions (and release their rooms) a few times
/// per window, while the server lives.
fn spawn_recovery_sweeper(io: Weak<Inner>, window: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    let every = (window / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    rt.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(io) = io.upgrade() else { return };
            if let Some(rec) = &io.recovery {
                rec.sweep(&io.hub);
            }
        }
    });
}

/// The hub room that holds the room `room` of namespace `nsp`: the same
/// name in `/`, `nsp#room` in the others.
pub(crate) fn hub_room(nsp: &str, room: &str) -> String {
    if nsp == "/" {
        room.to_owned()
    } else {
        format!("{nsp}#{room}")
    }
}

/// The room of namespace `nsp` that a hub room is, if it is one of its.
pub(crate) fn sio_room<'a>(nsp: &str, hub_room: &'a str) -> Option<&'a str> {
    if nsp == "/" {
        return (!hub_room.starts_with('/') || !hub_room.contains('#')).then_some(hub_room);
    }
    hub_room.strip_prefix(nsp)?.strip_prefix('#')
}

/// The namespace a hub room belongs to.
pub(crate) fn nsp_of_room(room: &str) -> &str {
    match room.split_once('#') {
        Some((nsp, _)) if nsp.starts_with('/') => nsp,
        _ => "/",
    }
}

/// An EVENT packet of namespace `nsp`.
pub(crate) fn event_packet(nsp: &str, event: &str, payload: Payload, id: Option<u64>) -> Packet {
    let mut args = Vec::with_capacity(payload.args.len() + 1);
    args.push(serde_json::Value::String(event.to_owned()));
    args.extend(payload.args);
    let p = Packet::event(nsp, args, payload.attachments);
    match id {
        Some(id) => p.with_id(id),
        None => p,
    }
}

/// A random id (recovery's private ids): 120 bits, URL-safe.
pub(crate) fn random_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_of_namespaces_map_to_hub_rooms_and_back() {
        assert_eq!(hub_room("/", "lobby"), "lobby");
        assert_eq!(hub_room("/chat", "lobby"), "/chat#lobby");
        assert_eq!(sio_room("/chat", "/chat#lobby"), Some("lobby"));
        assert_eq!(sio_room("/chat", "lobby"), None);
        assert_eq!(sio_room("/chat", "/chatter#lobby"), None);
        assert_eq!(sio_room("/", "lobby"), Some("lobby"));
        assert_eq!(sio_room("/", "/chat#lobby"), None);
        assert_eq!(nsp_of_room("/chat#lobby"), "/chat");
        assert_eq!(nsp_of_room("lobby"), "/");
        assert_eq!(nsp_of_room("a#b"), "/");
    }
}
