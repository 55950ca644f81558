//! The hub: the registry of connections and rooms, the operations on them
//! (join, leave, broadcast, requests with acks), and its builder.

use crate::broker::{node_of, BoxFuture, Broker, BrokerMessage, BrokerState, Inbox, MemoryBroker};
use crate::error::{AckError, BrokerError, HandlerError, HubError};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::policy::{AuthError, ConnectRequest, RateLimit};
use crate::presence::{Pending as PendingPresence, PresenceMode, PresenceSettings};
use crate::protocol::{
    self, codes, AckPacket, ConnId, ErrorBody, EventPacket, Joined, Member, MembersPage, Packet, PresencePacket, Wire,
    MAX_NAME_LEN,
};
use crate::replay::SseRoom;
use crate::rounds::Rounds;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{oneshot, Notify};
use wsx::handshake::Reject;
use wsx::server::{OriginPolicy, Outbox, OutboxConfig, Outgoing, Push, Server, SlowConsumer};
use wsx::{CloseCode, CloseHandle, Message};

/// A named event with a JSON payload and binary attachments, as handlers
/// receive it and as the hub sends it.
///
/// ```
/// use wsx_hub::Event;
/// let e = Event::new("upload", serde_json::json!({"name": "a.png"})).attach(vec![1u8, 2, 3]);
/// assert_eq!(e.attachments.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's name.
    pub name: String,
    /// The payload.
    pub data: Value,
    /// Binary attachments.
    pub attachments: Vec<Bytes>,
}

impl Event {
    /// An event without attachments.
    pub fn new(name: impl Into<String>, data: Value) -> Self {
        Self { name: name.into(), data, attachments: Vec::new() }
    }

    /// Add an attachment.
    pub fn attach(mut self, bytes: impl Into<Bytes>) -> Self {
        self.attachments.push(bytes.into());
        self
    }

    /// The payload as a typed value.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        Ok(serde_json::from_value(self.data.clone())?)
    }

    pub(crate) fn into_packet(self) -> EventPacket {
        EventPacket {
            event: self.name,
            data: self.data,
            id: None,
            room: None,
            from: None,
            attachments: self.attachments,
            spread: false,
        }
    }
}

impl From<EventPacket> for Event {
    fn from(p: EventPacket) -> Self {
        Self { name: p.event, data: p.data, attachments: p.attachments }
    }
}

/// What an event handler gets besides the event: the connection it came
/// from and the hub.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) hub: Hub,
    pub(crate) conn: ConnId,
    pub(crate) meta: Value,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("conn", &self.conn).field("meta", &self.meta).finish()
    }
}

impl Ctx {
    /// The sending connection's id.
    pub fn conn(&self) -> &str {
        &self.conn
    }

    /// What the auth hook said about the sender.
    pub fn meta(&self) -> &Value {
        &self.meta
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Send an event to the sender.
    pub fn emit(&self, event: Event) -> Result<(), HubError> {
        self.hub.emit(&self.conn, event)
    }

    /// Send an event to the sender and wait for its ack (the hub's default
    /// ack timeout).
    pub async fn request(&self, event: Event) -> Result<Value, AckError> {
        self.hub.request(&self.conn, event).await
    }

    /// Put the sender in a room (see [`Hub::join`]).
    pub async fn join(&self, room: &str) -> Result<(), HubError> {
        self.hub.join(&self.conn, room).await
    }

    /// Take the sender out of a room.
    pub async fn leave(&self, room: &str) -> Result<(), HubError> {
        self.hub.leave(&self.conn, room).await
    }

    /// Send an event to a room, all but the sender.
    pub fn broadcast(&self, room: &str, event: Event) {
        self.hub.broadcast_except(room, event, &self.conn)
    }

    /// Send an event to every connection, all but the sender.
    pub fn broadcast_all(&self, event: Event) {
        self.hub.broadcast_all_except(event, &self.conn)
    }
}

/// The future an event handler returns, boxed.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, HandlerError>> + Send>>;
pub(crate) type HandlerFn = Arc<dyn Fn(Ctx, Event) -> HandlerFuture + Send + Sync>;
type AuthFn = Arc<dyn Fn(&ConnectRequest) -> Result<Value, AuthError> + Send + Sync>;
type ConnectFn = Arc<dyn Fn(ConnectInfo) -> Pin<Box<dyn Future<Output = Result<(), Reject>> + Send>> + Send + Sync>;
type DisconnectFn = Arc<dyn Fn(&ConnInfo) + Send + Sync>;

/// What the connect hook sees: the new connection's id, what the auth hook
/// returned, and the request.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// The id the connection will have.
    pub conn: ConnId,
    /// What the auth hook returned (`null` without one).
    pub meta: Value,
    /// The upgrade request.
    pub request: ConnectRequest,
}

/// A connection on this node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnInfo {
    /// Its id.
    pub id: ConnId,
    /// What the auth hook returned.
    pub meta: Value,
    /// Its rooms.
    pub rooms: Vec<String>,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// When it connected.
    pub since: SystemTime,
    /// Messages waiting in its outgoing queue.
    pub queued: usize,
}

/// A room on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomInfo {
    /// Its name.
    pub name: String,
    /// Members on this node.
    pub local_members: usize,
    /// Open SSE streams on this node.
    pub sse_streams: usize,
}

/// Server-Sent Events settings (see [`HubBuilder::sse`]).
#[derive(Debug, Clone)]
pub struct SseSettings {
    /// The path (default `/events`).
    pub path: String,
    /// Events kept per room for `Last-Event-ID` resume (default 256).
    pub replay: usize,
    /// Interval of heartbeat comments (default 15 s).
    pub heartbeat: Duration,
    /// How long a room's SSE history (ids and replay buffer) is kept after
    /// its last member and stream on this node left (default 5 min); until
    /// then the node keeps receiving the room's events from other nodes.
    pub retention: Duration,
}

impl Default for SseSettings {
    fn default() -> Self {
        Self {
            path: "/events".into(),
            replay: 256,
            heartbeat: Duration::from_secs(15),
            retention: Duration::from_secs(300),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Settings {
    /// The WebSockets' settings (keepalive from the two below at build).
    pub(crate) config: wsx::Config,
    /// Keepalive as the builder set it (else the config's, else 25 s and
    /// 60 s).
    ping_interval: Option<Duration>,
    idle_timeout: Option<Duration>,
    pub(crate) path: Option<String>,
    pub(crate) origins: OriginPolicy,
    /// For the hub's own server (without [`HubBuilder::server`]).
    pub(crate) max_connections: Option<usize>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) outbox: OutboxConfig,
    pub(crate) max_rooms_per_connection: usize,
    pub(crate) max_room_members: usize,
    pub(crate) max_bad_frames: u32,
    pub(crate) ack_timeout: Duration,
    pub(crate) sse: Option<SseSettings>,
    pub(crate) metrics_path: Option<String>,
    pub(crate) client_publish: bool,
    pub(crate) presence: PresenceSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config: wsx::Config::default().with_max_message_size(1 << 20),
            ping_interval: None,
            idle_timeout: None,
            path: Some("/".into()),
            origins: OriginPolicy::any(),
            max_connections: None,
            shutdown_timeout: Duration::from_secs(5),
            rate_limit: None,
            outbox: OutboxConfig::default().with_max_messages(1024).with_slow_consumer(SlowConsumer::DropOldest),
            max_rooms_per_connection: 64,
            max_room_members: 10_000,
            max_bad_frames: 16,
            ack_timeout: Duration::from_secs(10),
            sse: Some(SseSettings::default()),
            metrics_path: Some("/metrics".into()),
            client_publish: true,
            presence: PresenceSettings::default(),
        }
    }
}

/// Builds a [`Hub`].
///
/// ```
/// use std::time::Duration;
/// use wsx_hub::{Event, Hub, HandlerError, RateLimit, SlowConsumer};
///
/// let hub = Hub::builder()
///     .allow_origins(["https://example.com"])
///     .auth(|req| match req.token().as_deref() {
///         Some("secret") => Ok(serde_json::json!({"user": "ann"})),
///         _ => Err(wsx_hub::AuthError::Unauthorized("a token is needed".into())),
///     })
///     .max_connections(10_000)
///     .rate_limit(RateLimit::per_second(50.0).burst(100))
///     .outgoing_queue(256, SlowConsumer::DropOldest)
///     .ping_interval(Duration::from_secs(20))
///     .on("chat", |ctx, ev| async move {
///         let room: String = ev.data["room"].as_str().unwrap_or("lobby").to_owned();
///         ctx.broadcast(&room, Event::new("chat", ev.data.clone()));
///         Ok::<_, HandlerError>(serde_json::json!({"ok": true}))
///     })
///     .build();
/// # drop(hub);
/// ```
pub struct HubBuilder {
    node: Option<String>,
    s: Settings,
    handlers: HashMap<String, HandlerFn>,
    auth: Option<AuthFn>,
    on_connect: Option<ConnectFn>,
    on_disconnect: Option<DisconnectFn>,
    broker: Option<Box<dyn Broker>>,
    server: Option<Server>,
}

impl std::fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder").field("node", &self.node).finish_non_exhaustive()
    }
}

impl HubBuilder {
    /// This node's id (default: 8 random hex digits). Connection ids are
    /// `<node>.<n>`; give every node of a cluster a different id.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node = Some(id.into());
        self
    }

    /// The broker (default: [`MemoryBroker`], a single node).
    pub fn broker(mut self, broker: impl Broker) -> Self {
        self.broker = Some(Box::new(broker));
        self
    }

    /// Serve on this server: its connection limit, TLS, timeouts and
    /// shutdown apply (and [`HubBuilder::max_connections`] and
    /// [`HubBuilder::shutdown_timeout`] do not). Without it, the hub makes
    /// its own for [`Hub::serve`].
    pub fn server(mut self, server: Server) -> Self {
        self.server = Some(server);
        self
    }

    /// The hub's WebSocket settings (limits, compression, timeouts,
    /// keepalive). The hub's default limits messages to 1 MiB; without
    /// keepalive here or in [`HubBuilder::ping_interval`] and
    /// [`HubBuilder::idle_timeout`], the hub pings after 25 s of silence and
    /// closes after 60 s.
    pub fn config(mut self, config: wsx::Config) -> Self {
        self.s.config = config;
        self
    }

    /// Largest message a client may send; larger ones close the connection
    /// with 1009 (default 1 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.s.config = self.s.config.with_max_message_size(bytes);
        self
    }

    /// The path of the hub's WebSocket endpoint (default `/`); an upgrade
    /// on another path is not the hub's ([`crate::Handled::NotMine`],
    /// 404 from [`Hub::serve`]).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.s.path = Some(path.into());
        self
    }

    /// Accept upgrades (and SSE requests) only from these origins; others
    /// get 403. Compared without case or a trailing slash. A request
    /// without `Origin` (not from a browser) passes unless
    /// [`HubBuilder::require_origin`].
    pub fn allow_origins<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, origins: I) -> Self {
        self.s.origins = OriginPolicy::allow(origins).require_origin(self.s.origins.requires_origin());
        self
    }

    /// Refuse (403) requests without an `Origin` header.
    pub fn require_origin(mut self, on: bool) -> Self {
        self.s.origins = self.s.origins.require_origin(on);
        self
    }

    /// The auth hook: runs on every upgrade (and SSE) request; `Ok(meta)`
    /// lets it through (`meta` goes into presence and [`Ctx::meta`]),
    /// [`AuthError::Unauthorized`] answers 401, [`AuthError::Forbidden`]
    /// 403.
    pub fn auth(mut self, f: impl Fn(&ConnectRequest) -> Result<Value, AuthError> + Send + Sync + 'static) -> Self {
        self.auth = Some(Arc::new(f));
        self
    }

    /// The connect hook: runs after the auth hook, before the upgrade;
    /// `Err(reject)` answers with the rejection's response.
    pub fn on_connect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(ConnectInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Reject>> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |info| Box::pin(f(info))));
        self
    }

    /// Called when a connection ends (after it left its rooms).
    pub fn on_disconnect(mut self, f: impl Fn(&ConnInfo) + Send + Sync + 'static) -> Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }

    /// Register the handler of event `name`. It runs for each such event a
    /// client sends, one at a time per connection, in order; what it
    /// returns answers the client's request (when the event has an id).
    pub fn on<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Ctx, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
    {
        self.handlers.insert(name.into(), Arc::new(move |ctx, ev| Box::pin(f(ctx, ev))));
        self
    }

    /// At most `n` connections on the hub's own server (see
    /// [`wsx::server::ServerBuilder::max_connections`]); one more gets 503
    /// with `Retry-After`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.s.max_connections = Some(n);
        self
    }

    /// Limit the messages each connection may send; past it the connection
    /// is closed with 1008.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.s.rate_limit = Some(limit);
        self
    }

    /// Each connection's outgoing queue holds at most `capacity` messages
    /// (default 1024); `policy` says what happens when it is full (default
    /// [`SlowConsumer::DropOldest`]: broadcasts are dropped, acks and
    /// presence are not).
    pub fn outgoing_queue(mut self, capacity: usize, policy: SlowConsumer) -> Self {
        self.s.outbox = self.s.outbox.with_max_messages(capacity).with_slow_consumer(policy);
        self
    }

    /// Ping a client after this long without anything from it (default
    /// 25 s; zero: never); see [`wsx::Config::with_keepalive`].
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.s.ping_interval = Some(d);
        self
    }

    /// Close a client that sent nothing, not even a pong, for this long
    /// (default 60 s; zero: never), with 1001 `idle timeout`.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.s.idle_timeout = Some(d);
        self
    }

    /// At most `n` rooms per connection (default 64).
    pub fn max_rooms_per_connection(mut self, n: usize) -> Self {
        self.s.max_rooms_per_connection = n;
        self
    }

    /// At most `n` members per room on this node (default 10,000).
    pub fn max_room_members(mut self, n: usize) -> Self {
        self.s.max_room_members = n;
        self
    }

    /// Close a connection with 1008 after this many invalid frames
    /// (default 16); each one before gets an `error` packet.
    pub fn max_bad_frames(mut self, n: u32) -> Self {
        self.s.max_bad_frames = n;
        self
    }

    /// Default time to wait for an ack (default 10 s).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.s.ack_timeout = d;
        self
    }

    /// How long [`Hub::shutdown`] waits for connections to close on the
    /// hub's own server (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.s.shutdown_timeout = d;
        self
    }

    /// Server-Sent Events settings, `None` to turn SSE off (default: on,
    /// at `/events`).
    pub fn sse(mut self, settings: Option<SseSettings>) -> Self {
        self.s.sse = settings;
        self
    }

    /// The metrics path, `None` to turn it off (default `/metrics`).
    pub fn metrics_path(mut self, path: Option<&str>) -> Self {
        self.s.metrics_path = path.map(str::to_owned);
        self
    }

    /// Whether clients may `publish` to rooms they joined (default on).
    pub fn client_publish(mut self, on: bool) -> Self {
        self.s.client_publish = on;
        self
    }

    /// How presence works in each room (default: [`PresenceMode::Names`]
    /// in every room). Every node of a cluster must choose alike.
    ///
    /// ```
    /// use wsx_hub::{Hub, PresenceMode};
    /// let hub = Hub::builder()
    ///     .room_presence(|room| match room {
    ///         r if r.starts_with("live/") => PresenceMode::Count, // audiences: a count
    ///         r if r.starts_with("ticker/") => PresenceMode::Off, // feeds: nothing
    ///         _ => PresenceMode::Names,
    ///     })
    ///     .build();
    /// # drop(hub);
    /// ```
    pub fn room_presence(mut self, mode: impl Fn(&str) -> PresenceMode + Send + Sync + 'static) -> Self {
        self.s.presence.mode = Some(Arc::new(mode));
        self
    }

    /// Send each room's joins and leaves together, at most this often
    /// (default 100 ms; at least 1 ms).
    pub fn presence_interval(mut self, d: Duration) -> Self {
        self.s.presence.interval = d.max(Duration::from_millis(1));
        self
    }

    /// Send a room without names (see [`HubBuilder::presence_names_up_to`]
    /// and [`PresenceMode::Count`]) its member count at most this often
    /// (default 1 s).
    pub fn presence_count_interval(mut self, d: Duration) -> Self {
        self.s.presence.count_interval = d;
        self
    }

    /// A room with more members than `n` gets member counts without names,
    /// and joins are answered without the member list (default 1,000);
    /// its members read the list a page at a time (`members` requests,
    /// [`Hub::members_page`]).
    pub fn presence_names_up_to(mut self, n: u64) -> Self {
        self.s.presence.names_up_to = n;
        self
    }

    /// Build the hub. Inside a tokio runtime the broker starts now,
    /// otherwise on first use.
    pub fn build(mut self) -> Hub {
        let node = self.node.unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
        let c = &self.s.config;
        let ping = self.s.ping_interval.or(c.ping_interval()).unwrap_or(Duration::from_secs(25));
        let idle = self.s.idle_timeout.or(c.idle_timeout()).unwrap_or(Duration::from_secs(60));
        self.s.config = self.s.config.with_keepalive(ping, idle);
        let server = self.server.unwrap_or_else(|| {
            let mut b = Server::builder().config(self.s.config.clone()).shutdown_timeout(self.s.shutdown_timeout);
            if let Some(n) = self.s.max_connections {
                b = b.max_connections(n);
            }
            b.build()
        });
        let hub = Hub {
            inner: Arc::new(Inner {
                node,
                s: self.s,
                handlers: self.handlers,
                auth: self.auth,
                on_connect: self.on_connect,
                on_disconnect: self.on_disconnect,
                broker: self.broker.unwrap_or_else(|| Box::new(MemoryBroker::new())),
                state: Mutex::new(State::default()),
                pending: Mutex::new(HashMap::new()),
                metrics: Metrics::default(),
                seq: AtomicU64::new(1),
                started: Once::new(),
                server,
                broker_stopped: AtomicBool::new(false),
                leaving: AtomicUsize::new(0),
                left: Notify::new(),
                extension: std::sync::OnceLock::new(),
                moved: Mutex::new(HashMap::new()),
                presence: Mutex::new(PendingPresence::default()),
                counted: Mutex::new(HashMap::new()),
                answers: Arc::default(),
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            hub.ensure_started();
        }
        hub
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) conns: HashMap<ConnId, ConnEntry>,
    pub(crate) rooms: HashMap<String, Room>,
}

/// The rooms of a connection: a sorted vector (a connection is in a few
/// rooms; a B-tree set costs a node of eleven slots for the first one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub(crate) struct RoomSet(Vec<String>);

impl RoomSet {
    pub(crate) fn contains(&self, room: &str) -> bool {
        self.0.binary_search_by(|r| r.as_str().cmp(room)).is_ok()
    }

    /// Add `room`; whether it was not there.
    pub(crate) fn insert(&mut self, room: String) -> bool {
        match self.0.binary_search(&room) {
            Ok(_) => false,
            Err(i) => {
                // One room at a time: `insert` alone would make room for
                // four on the first.
                self.0.reserve_exact(1);
                self.0.insert(i, room);
                true
            }
        }
    }

    /// Take `room` out; whether it was there.
    pub(crate) fn remove(&mut self, room: &str) -> bool {
        match self.0.binary_search_by(|r| r.as_str().cmp(room)) {
            Ok(i) => {
                self.0.remove(i);
                if self.0.is_empty() {
                    self.0 = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a RoomSet {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Vec<String>> for RoomSet {
    fn from(mut v: Vec<String>) -> Self {
        v.sort_unstable();
        v.dedup();
        Self(v)
    }
}

impl From<RoomSet> for Vec<String> {
    fn from(s: RoomSet) -> Self {
        s.0
    }
}

pub(crate) struct ConnEntry {
    pub(crate) outbox: Outbox,
    pub(crate) speaks: Speaks,
    pub(crate) meta: Value,
    pub(crate) rooms: RoomSet,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) since: SystemTime,
}

/// What a connection speaks, and how it is closed: the hub's packets
/// are encoded for it accordingly.
#[derive(Clone)]
pub(crate) enum Speaks {
    /// `wsx-hub.v1` on its own WebSocket.
    Hub(CloseHandle),
    /// Another wire protocol (a Socket.IO socket).
    Other(Arc<dyn OtherWire>),
}

impl Speaks {
    pub(crate) fn other(&self) -> Option<&Arc<dyn OtherWire>> {
        match self {
            Speaks::Hub(_) => None,
            Speaks::Other(o) => Some(o),
        }
    }
}

/// A connection of the hub that speaks another protocol than
/// `wsx-hub.v1` (a Socket.IO socket): the hub hands it events (no
/// presence), and it encodes them.
pub(crate) trait OtherWire: Send + Sync + 'static {
    /// Connections with the same key get the same frames for an event
    /// (so a broadcast is encoded once per key): its group (a Socket.IO
    /// namespace) and whether it takes a recovery offset.
    fn key(&self) -> (&str, bool);
    /// The frames of `ev` (`offset`: where state recovery recorded it),
    /// prepared once for every recipient: each compression setting
    /// compresses a frame at most once.
    fn encode(&self, ev: &EventPacket, offset: Option<&str>) -> Vec<Outgoing>;
    /// Queue the frames of one event (shared by every recipient).
    fn send(&self, frames: &[Outgoing], droppable: bool);
    /// Close it (from [`Hub::disconnect`]); whether it was open.
    fn disconnect(&self) -> bool;
    /// Itself, for its protocol's code to get its own type back.
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

/// What another protocol on the hub (Socket.IO) does with what the hub
/// sees: room broadcasts to record, broker messages of its own.
pub(crate) trait Extension: Send + Sync + 'static {
    /// An event for `room` is delivered on this node (from here or from
    /// another node): record it if it should be (state recovery); the
    /// offset it was recorded at.
    fn room_event(&self, room: &str, except: Option<&str>, ev: &EventPacket) -> Option<String>;
    /// A broker message for it ([`BrokerMessage::Select`],
    /// [`BrokerMessage::RecoverAsk`], [`BrokerMessage::RecoverAnswer`]).
    fn broker_message(&self, m: BrokerMessage);
}

/// A connection a packet goes to.
pub(crate) struct Target {
    pub(crate) outbox: Outbox,
    pub(crate) other: Option<Arc<dyn OtherWire>>,
}

impl Target {
    pub(crate) fn of(e: &ConnEntry) -> Self {
        Self { outbox: e.outbox.clone(), other: e.speaks.other().cloned() }
    }
}

#[derive(Default)]
pub(crate) struct Room {
    pub(crate) members: BTreeSet<ConnId>,
    pub(crate) subscribed: bool,
    pub(crate) sse: Option<SseRoom>,
    /// Socket.IO sessions kept for state recovery that were in the room:
    /// the node keeps receiving its broadcasts, to replay them.
    pub(crate) held: u32,
}

impl Room {
    /// Members or open SSE streams here.
    fn occupied(&self) -> bool {
        !self.members.is_empty() || self.sse.as_ref().is_some_and(|s| s.has_streams())
    }

    /// Whether this node needs the room's messages from other nodes: it has
    /// members here, or it keeps the room's SSE history (a stream is open,
    /// or one that closed may still resume with `Last-Event-ID`).
    fn needs_broker(&self, now: Instant) -> bool {
        !self.members.is_empty() || self.held > 0 || self.sse.as_ref().is_some_and(|s| !s.expired(now))
    }

    /// Subscribe or unsubscribe as the room's needs changed. When it
    /// subscribes, the future says when the subscription is in effect.
    /// Called on every change of members or streams, and by the sweeper
    /// once the SSE history may have expired.
    pub(crate) fn sync_subscription(&mut self, name: &str, broker: &dyn Broker) -> Option<BoxFuture<'static, ()>> {
        let needs = self.needs_broker(Instant::now());
        let mut ready = None;
        if needs && !self.subscribed {
            ready = Some(broker.subscribe(name));
        } else if !needs && self.subscribed {
            broker.unsubscribe(name);
        }
        self.subscribed = needs;
        ready
    }

    /// Whether the room can be forgotten: [`Self::sync_subscription`] found
    /// nothing here that needs it.
    pub(crate) fn is_dead(&self) -> bool {
        !self.subscribed
    }
}

/// How long a join waits for the broker's subscription to the room.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// How long a shutdown waits for leaving connections to publish their
/// leaves (each waits for the broker's presence removal, itself bounded by
/// the broker's command timeout).
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// Someone waits for an ack of the request with this id.
enum Pending {
    /// A task on this node.
    Local { conn: ConnId, tx: oneshot::Sender<Result<Value, AckError>> },
    /// A task on another node: forward the answer.
    Remote { conn: ConnId, node: String, id: u64, expires: Instant },
}

pub(crate) struct Inner {
    pub(crate) node: String,
    pub(crate) s: Settings,
    pub(crate) handlers: HashMap<String, HandlerFn>,
    pub(crate) auth: Option<AuthFn>,
    pub(crate) on_connect: Option<ConnectFn>,
    on_disconnect: Option<DisconnectFn>,
    pub(crate) broker: Box<dyn Broker>,
    pub(crate) state: Mutex<State>,
    pending: Mutex<HashMap<u64, Pending>>,
    pub(crate) metrics: Metrics,
    seq: AtomicU64,
    started: Once,
    pub(crate) server: Server,
    broker_stopped: AtomicBool,
    /// Connections leaving (in [`Hub::unregister`]): their leaves are not
    /// all published yet.
    leaving: AtomicUsize,
    left: Notify,
    /// Another protocol on this hub (Socket.IO), if any.
    extension: std::sync::OnceLock<std::sync::Weak<dyn Extension>>,
    /// Connections of this node that moved to another one (Socket.IO
    /// sessions recovered there), and until when to forward to them.
    moved: Mutex<HashMap<ConnId, (String, Instant)>>,
    /// Joins and leaves of this node's members not sent yet.
    presence: Mutex<PendingPresence>,
    /// When rooms without names last got their count from this node.
    counted: Mutex<HashMap<String, Instant>>,
    /// Join answers being read, one read per room at a time.
    answers: Arc<Rounds<Arc<Joined>>>,
}

/// How long a node forwards direct messages for a socket that recovered
/// its session on another node.
const MOVED_FOR: Duration = Duration::from_secs(3600);

/// The most such sockets a node remembers.
const MAX_MOVED: usize = 100_000;

/// Counts a connection as leaving while it lives.
struct Leaving<'a>(&'a Inner);

impl<'a> Leaving<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.leaving.fetch_add(1, Ordering::SeqCst);
        Self(inner)
    }
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        if self.0.leaving.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.left.notify_waiters();
        }
    }
}

/// A WebSocket hub: connections, rooms, presence, events with acks, and
/// fan-out across nodes through a [`Broker`]. Cheap to clone (a handle).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use wsx_hub::{Event, Hub};
/// let hub = Hub::builder()
///     .on("ping", |_ctx, ev| async move { Ok(ev.data) })   // answers requests with their payload
///     .build();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let server = tokio::spawn(hub.clone().serve(listener));
/// hub.broadcast("lobby", Event::new("news", serde_json::json!({"headline": "hello"})));
/// tokio::signal::ctrl_c().await?;
/// hub.shutdown().await;                 // 1001 to everyone, then drain
/// server.await.ok();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("node", &self.inner.node).finish_non_exhaustive()
    }
}

impl Hub {
    /// Start building a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            node: None,
            s: Settings::default(),
            handlers: HashMap::new(),
            auth: None,
            on_connect: None,
            on_disconnect: None,
            broker: None,
            server: None,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Pending>> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start the broker (once), and the SSE sweeper.
    pub(crate) fn ensure_started(&self) {
        self.inner.started.call_once(|| {
            let weak = Arc::downgrade(&self.inner);
            let inbox = Inbox::new(move |m| {
                if let Some(inner) = weak.upgrade() {
                    Hub { inner }.on_broker_message(m);
                }
            });
            self.inner.broker.start(&self.inner.node, inbox);
            spawn_presence(Arc::downgrade(&self.inner), self.inner.s.presence.interval);
            if let Some(sse) = &self.inner.s.sse {
                spawn_sweeper(Arc::downgrade(&self.inner), sse.retention);
            }
        });
    }

    /// Attach the other protocol that runs on this hub (one per hub: a
    /// Socket.IO server). Whether it was attached.
    pub(crate) fn attach(&self, ext: std::sync::Weak<dyn Extension>) -> bool {
        self.inner.extension.set(ext).is_ok()
    }

    fn extension(&self) -> Option<Arc<dyn Extension>> {
        self.inner.extension.get()?.upgrade()
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// The main counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// All metrics in the Prometheus text format (what `GET /metrics`
    /// answers).
    pub fn metrics_text(&self) -> String {
        let rooms = self.lock().rooms.len();
        let refused = self.inner.server.refused_connections();
        let mut text = self.inner.metrics.render(rooms, &self.broker_state(), self.inner.broker.kind(), refused);
        text.push_str(&self.inner.server.metrics_text());
        text
    }

    /// Where the broker stands.
    pub fn broker_state(&self) -> BrokerState {
        self.inner.broker.state()
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.server.is_shutting_down()
    }

    /// The connections on this node.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let st = self.lock();
        st.conns.iter().map(|(id, e)| conn_info(id, e)).collect()
    }

    /// The rooms with members or open SSE streams on this node.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let st = self.lock();
        let mut v: Vec<RoomInfo> = st
            .rooms
            .iter()
            .filter(|(_, r)| r.occupied())
            .map(|(name, r)| RoomInfo {
                name: name.clone(),
                local_members: r.members.len(),
                sse_streams: r.sse.as_ref().map_or(0, |s| s.streams()),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn member_of(st: &State, conn: &ConnId) -> Member {
        Member { conn: conn.clone(), meta: st.conns.get(conn).map_or(Value::Null, |e| e.meta.clone()) }
    }

    /// Whether connection `conn` of this node is in `room`.
    pub(crate) fn is_member(&self, conn: &str, room: &str) -> bool {
        self.lock().conns.get(conn).is_some_and(|e| e.rooms.contains(room))
    }

    /// A page of the room's members on this node.
    fn local_page(&self, room: &str, after: Option<&str>, limit: usize) -> MembersPage {
        use std::ops::Bound::{Excluded, Unbounded};
        let st = self.lock();
        let Some(r) = st.rooms.get(room) else { return MembersPage::default() };
        let from = after.map_or(Unbounded, Excluded);
        let (members, next) = crate::broker::paginate(
            r.members.range::<str, _>((from, Unbounded)).map(|c| Self::member_of(&st, c)),
            limit,
            |m| &m.conn,
        );
        MembersPage { count: r.members.len() as u64, members, next }
    }

    /// The members of a room on every node (from the broker; this node's
    /// members only while the broker is unreachable), in the order of
    /// their connection ids. The whole list: in a large room, read it a
    /// page at a time ([`Hub::members_page`]).
    pub async fn members(&self, room: &str) -> Vec<Member> {
        self.ensure_started();
        self.presence_written().await;
        match self.inner.broker.presence_page(room, None, usize::MAX).await {
            Ok(page) => {
                let mut list = page.members;
                // This node's members are authoritative here: add any the
                // broker has not recorded (e.g. after it restarted).
                let known: std::collections::HashSet<ConnId> = list.iter().map(|x| x.conn.clone()).collect();
                let local = self.local_page(room, None, usize::MAX).members;
                list.extend(local.into_iter().filter(|m| !known.contains(&m.conn)));
                list.sort_by(|a, b| a.conn.cmp(&b.conn));
                list
            }
            Err(e) => {
                tracing::debug!(room, error = %e, "presence from the broker failed; listing local members");
                self.local_page(room, None, usize::MAX).members
            }
        }
    }

    /// A page of a room's members on every node, in the order of their
    /// connection ids: at most `limit` after the connection `after` (the
    /// previous page's `next`), with the room's member count. This node's
    /// members only while the broker is unreachable.
    ///
    /// ```no_run
    /// # async fn run(hub: wsx_hub::Hub) {
    /// let mut after = None;
    /// loop {
    ///     let page = hub.members_page("lobby", after.as_deref(), 500).await;
    ///     for m in &page.members {
    ///         println!("{} {}", m.conn, m.meta);
    ///     }
    ///     match page.next {
    ///         Some(next) => after = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn members_page(&self, room: &str, after: Option<&str>, limit: usize) -> MembersPage {
        self.ensure_started();
        self.presence_written().await;
        self.broker_page(room, after, limit).await
    }

    /// [`Hub::members_page`] without waiting for this node's changes.
    async fn broker_page(&self, room: &str, after: Option<&str>, limit: usize) -> MembersPage {
        match self.inner.broker.presence_page(room, after, limit).await {
            Ok(page) => page,
            Err(e) => {
                tracing::debug!(room, error = %e, "presence from the broker failed; listing local members");
                self.local_page(room, after, limit)
            }
        }
    }

    /// How many members a room has on every node (this node's alone while
    /// the broker is unreachable). Rooms with [`PresenceMode::Off`] are
    /// not counted (0).
    pub async fn member_count(&self, room: &str) -> u64 {
        self.ensure_started();
        self.presence_written().await;
        self.broker_count(room).await
    }

    /// [`Hub::member_count`] without waiting for this node's changes.
    async fn broker_count(&self, room: &str) -> u64 {
        match self.inner.broker.presence_count(room).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(room, error = %e, "presence from the broker failed; counting local members");
                self.lock().rooms.get(room).map_or(0, |r| r.members.len() as u64)
            }
        }
    }

    /// Every presence change of this node made so far, recorded in the
    /// broker: what a read of presence waits for, so that it sees them.
    async fn presence_written(&self) {
        if let Err(e) = self.inner.broker.presence_written().await {
            tracing::debug!(error = %e, "presence not all recorded in the broker; reading it anyway");
        }
    }

    /// The answer to a client's join of `room`: its name, and by the room's
    /// presence mode its member count and, in a small room, its members.
    /// Joins of a room that wait at once share one read (see
    /// [`Rounds`]): a room that fills reads the broker a few times, not
    /// once per joiner, and a waiting joiner holds a few words. The
    /// joiners of a round share its answer.
    pub(crate) fn join_answer<'a>(&'a self, room: &'a str) -> impl Future<Output = Arc<Joined>> + Send + 'a {
        use futures_util::future::{ready, Either};
        use futures_util::FutureExt;
        if self.inner.s.presence.mode(room) == PresenceMode::Off {
            return Either::Left(ready(Arc::new(Joined { room: room.to_owned(), count: None, members: None })));
        }
        // Combinators, not an `async fn`, which would hold its arguments
        // twice: a waiting joiner holds the wait and two references.
        let waiting = self.inner.answers.get(room, move || {
            let (hub, key) = (self.clone(), room.to_owned());
            async move { Arc::new(hub.read_join_answer(&key).await) }
        });
        Either::Right(waiting.then(move |answer| match answer {
            Some(answer) => Either::Left(ready(answer)),
            None => Either::Right(Box::pin(self.read_join_answer(room).map(Arc::new))),
        }))
    }

    async fn read_join_answer(&self, room: &str) -> Joined {
        let ps = &self.inner.s.presence;
        let mut answer = Joined { room: room.to_owned(), count: None, members: None };
        self.ensure_started();
        // One wait for the count and the page: both then see the join.
        self.presence_written().await;
        let count = self.broker_count(room).await;
        answer.count = Some(count);
        if ps.names(room, count) {
            let page = self.broker_page(room, None, ps.names_up_to as usize).await;
            answer.count = Some(page.count.max(count));
            answer.members = Some(page.members);
        }
        answer
    }

    /// Put a connection of this node in a room. Its join reaches the
    /// room's members in the next `presence` packet (see
    /// [`HubBuilder::room_presence`]).
    pub async fn join(&self, conn: &str, room: &str) -> Result<(), HubError> {
        let (subscribed, joined) = self.admit_join(conn, room)?;
        if let Some(subscribed) = subscribed {
            subscribed.await;
        }
        if let Some(member) = joined {
            self.presence_changed(room, member, true).await;
        }
        Ok(())
    }

    /// A join for a connection of this node that does not wait for the
    /// broker to record it (reads of presence wait for that instead, once
    /// for a burst of joins): what is left to wait for is the room's
    /// subscription, for a room's first join.
    pub(crate) fn join_now(&self, conn: &str, room: &str) -> Result<Option<BoxFuture<'static, ()>>, HubError> {
        let (subscribed, joined) = self.admit_join(conn, room)?;
        if let Some(member) = joined {
            // Made by the call; its future only says when it is written.
            drop(self.note_presence(room, member, true));
        }
        Ok(subscribed)
    }

    /// The part of a join done at once: the checks, the registry, the
    /// member to record, and the subscription to wait for (bounded:
    /// receive what other nodes publish before answering) when the room is
    /// new here.
    #[allow(clippy::type_complexity)]
    fn admit_join(&self, conn: &str, room: &str) -> Result<(Option<BoxFuture<'static, ()>>, Option<Member>), HubError> {
        check_name(room)?;
        self.ensure_started();
        let mut subscribed = None;
        let joined = {
            let mut st = self.lock();
            let st = &mut *st;
            let e = st.conns.get_mut(conn).ok_or_else(|| HubError::NoSuchConnection(conn.to_owned()))?;
            if e.rooms.contains(room) {
                None
            } else {
                if e.rooms.len() >= self.inner.s.max_rooms_per_connection {
                    return Err(HubError::TooManyRooms(self.inner.s.max_rooms_per_connection));
                }
                if st.rooms.get(room).is_some_and(|r| r.members.len() >= self.inner.s.max_room_members) {
                    return Err(HubError::RoomFull(room.to_owned()));
                }
                e.rooms.insert(room.to_owned());
                let r = st.rooms.entry(room.to_owned()).or_default();
                r.members.insert(conn.to_owned());
                subscribed = r.sync_subscription(room, &*self.inner.broker);
                Some(Member { conn: conn.to_owned(), meta: e.meta.clone() })
            }
        };
        let subscribed = subscribed.map(|ready| -> BoxFuture<'static, ()> {
            Box::pin(async move {
                let _ = tokio::time::timeout(SUBSCRIBE_WAIT, ready).await;
            })
        });
        Ok((subscribed, joined))
    }

    /// Take a connection of this node out of a room: the remaining members
    /// hear of it in the next `presence` packet.
    pub async fn leave(&self, conn: &str, room: &str) -> Result<(), HubError> {
        let member = {
            let mut st = self.lock();
            let st = &mut *st;
            let e = st.conns.get_mut(conn).ok_or_else(|| HubError::NoSuchConnection(conn.to_owned()))?;
            if !e.rooms.remove(room) {
                return Ok(());
            }
            let member = Member { conn: conn.to_owned(), meta: e.meta.clone() };
            self.remove_member(st, room, conn);
            member
        };
        self.presence_changed(room, member, false).await;
        Ok(())
    }

    /// A member of this node joined or left `room`: the broker records it
    /// (the call makes the change; reads of presence wait until it is
    /// written, so the next packet's count has it), and it goes with the
    /// room's other changes at the next presence tick. The broker's future
    /// says when it is written; `None` in a room without presence.
    fn note_presence(
        &self,
        room: &str,
        member: Member,
        joined: bool,
    ) -> Option<BoxFuture<'static, Result<(), BrokerError>>> {
        if self.inner.s.presence.mode(room) == PresenceMode::Off {
            return None;
        }
        let recording = if joined {
            self.inner.broker.presence_join(room, member.clone())
        } else {
            self.inner.broker.presence_leave(room, &member.conn)
        };
        self.inner.presence.lock().unwrap_or_else(|p| p.into_inner()).note(room, member, joined);
        Some(recording)
    }

    /// [`Hub::note_presence`], returning once the broker has it.
    fn presence_changed<'a>(
        &'a self,
        room: &'a str,
        member: Member,
        joined: bool,
    ) -> impl Future<Output = ()> + Send + 'a {
        // Not an `async fn`: it would hold the member as well as the
        // record's future.
        let recording = self.note_presence(room, member, joined);
        async move {
            let Some(recording) = recording else { return };
            if let Err(e) = recording.await {
                tracing::warn!(room, error = %e, joined, "could not record presence in the broker");
            }
        }
    }

    /// Send every room's pending joins and leaves: one `presence` packet
    /// per room, with its member count, to the members here (as the room's
    /// presence mode says) and to the other nodes (which do the same for
    /// theirs). A room without names gets its count at most every count
    /// interval; its changes wait until then. `now`: send everything (at
    /// shutdown).
    pub(crate) async fn flush_presence(&self, now: bool) {
        let changes = {
            let mut pending = self.inner.presence.lock().unwrap_or_else(|p| p.into_inner());
            if pending.is_empty() {
                return;
            }
            pending.take()
        };
        let ps = &self.inner.s.presence;
        // One wait for every room's count.
        self.presence_written().await;
        let counts = futures_util::future::join_all(changes.iter().map(|(room, _)| self.broker_count(room))).await;
        let at = Instant::now();
        for ((room, diff), count) in changes.into_iter().zip(counts) {
            // Who joined since the last packet is in the room: a count that
            // lags behind them (the wait for their records failed or timed
            // out, or a broker counts late) is at least that, and a burst
            // past the names limit goes without names, here and on every
            // node.
            let count = count.max(diff.joins.len() as u64);
            let names = ps.names(&room, count);
            if !names {
                let mut counted = self.inner.counted.lock().unwrap_or_else(|p| p.into_inner());
                if !now && counted.get(&room).is_some_and(|t| at.duration_since(*t) < ps.count_interval) {
                    drop(counted);
                    self.inner.presence.lock().unwrap_or_else(|p| p.into_inner()).restore(room, diff);
                    continue;
                }
                counted.retain(|_, t| at.duration_since(*t) < ps.count_interval);
                counted.insert(room.clone(), at);
            }
            // Other nodes shape it for their members by the same rules:
            // a room without names costs them no names.
            let p = Packet::Presence(PresencePacket { room: room.clone(), count, diff: names.then_some(diff) });
            let wire = protocol::encode(&p);
            let msg = wire.to_message();
            self.publish(BrokerMessage::Room {
                node: self.inner.node.clone(),
                room: room.clone(),
                except: None,
                payload: wire,
            });
            self.deliver_presence(&room, p, msg);
        }
    }

    /// Deliver a presence packet (from here or another node; `msg` its
    /// encoding) to the room's members here, shaped by the room's presence
    /// mode: encoded again only when shaping took its names away.
    fn deliver_presence(&self, room: &str, p: Packet, msg: Message) {
        let Packet::Presence(pp) = p else { return };
        let named = pp.diff.is_some();
        let Some(pp) = self.inner.s.presence.shape(pp) else { return };
        let p = Packet::Presence(pp);
        let msg = match &p {
            Packet::Presence(pp) if named && pp.diff.is_none() => protocol::encode(&p).to_message(),
            _ => msg,
        };
        self.deliver_room_local(room, &msg, None, false, Some(&p));
    }

    /// Keep receiving `room`'s broadcasts for a session that may recover
    /// (`hold`), or stop (`!hold`).
    pub(crate) fn hold_room(&self, room: &str, hold: bool) {
        let mut st = self.lock();
        let r = st.rooms.entry(room.to_owned()).or_default();
        if hold {
            r.held += 1;
        } else {
            r.held = r.held.saturating_sub(1);
        }
        let _ = r.sync_subscription(room, &*self.inner.broker);
        if r.is_dead() {
            st.rooms.remove(room);
        }
    }

    fn remove_member(&self, st: &mut State, room: &str, conn: &str) {
        if let Some(r) = st.rooms.get_mut(room) {
            r.members.remove(conn);
            if let Some(s) = r.sse.as_mut().filter(|_| r.members.is_empty()) {
                s.touch();
            }
            let _ = r.sync_subscription(room, &*self.inner.broker);
            if r.is_dead() {
                st.rooms.remove(room);
            }
        }
    }

    /// Send an event to one connection, on this node or another.
    pub fn emit(&self, conn: &str, event: Event) -> Result<(), HubError> {
        let p = Packet::Event(event.into_packet());
        // Here first: a Socket.IO socket that recovered its session here
        // keeps the id another node gave it.
        if let Some(t) = self.target_of(conn) {
            self.deliver(std::slice::from_ref(&t), None, &p, false);
            return Ok(());
        }
        let at = self.moved_to(conn);
        if node_of(conn) == self.inner.node && at.is_none() {
            return Err(HubError::NoSuchConnection(conn.to_owned()));
        }
        self.ensure_started();
        self.publish(BrokerMessage::Direct {
            node: self.inner.node.clone(),
            conn: conn.to_owned(),
            payload: protocol::encode(&p),
            ack: None,
            at,
        });
        Ok(())
    }

    /// Send an event to one connection and wait for its ack, at most the
    /// hub's ack timeout.
    pub async fn request(&self, conn: &str, event: Event) -> Result<Value, AckError> {
        self.request_timeout(conn, event, self.inner.s.ack_timeout).await
    }

    /// Send an event to one connection (on any node) and wait at most
    /// `timeout` for its ack.
    ///
    /// ```no_run
    /// # async fn run(hub: wsx_hub::Hub, conn: &str) {
    /// use std::time::Duration;
    /// use wsx_hub::{AckError, Event};
    /// match hub.request_timeout(conn, Event::new("confirm", serde_json::json!({})), Duration::from_secs(2)).await {
    ///     Ok(answer) => println!("client said {answer}"),
    ///     Err(AckError::Timeout(_)) => println!("no answer"),
    ///     Err(e) => println!("{e}"),
    /// }
    /// # }
    /// ```
    pub async fn request_timeout(&self, conn: &str, event: Event, timeout: Duration) -> Result<Value, AckError> {
        let id = self.next_seq();
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, Pending::Local { conn: conn.to_owned(), tx });
        let at = self.moved_to(conn);
        if let Some(t) = self.target_of(conn) {
            self.deliver(&[t], None, &Packet::Event(event.into_packet().with_id(id)), false);
        } else if node_of(conn) == self.inner.node && at.is_none() {
            self.pending().remove(&id);
            return Err(AckError::NoSuchConnection(conn.to_owned()));
        } else {
            self.ensure_started();
            let wire = protocol::encode(&Packet::Event(event.into_packet()));
            self.publish(BrokerMessage::Direct {
                node: self.inner.node.clone(),
                conn: conn.to_owned(),
                payload: wire,
                ack: Some(id),
                at,
            });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.pending().remove(&id);
                Metrics::inc(&self.inner.metrics.acks_timed_out);
                Err(AckError::Timeout(timeout))
            }
        }
    }

    /// Send an event to every member of a room, on every node.
    pub fn broadcast(&self, room: &str, event: Event) {
        self.broadcast_packet(room, event, None)
    }

    /// Send an event to every member of a room but one (the sender).
    pub fn broadcast_except(&self, room: &str, event: Event, except: &str) {
        self.broadcast_packet(room, event, Some(except))
    }

    fn broadcast_packet(&self, room: &str, event: Event, except: Option<&str>) {
        let mut p = event.into_packet();
        p.room = Some(room.to_owned());
        p.from = except.map(str::to_owned);
        self.fan_out_room(room, &Packet::Event(p), except, true);
    }

    pub(crate) fn publish_from(&self, room: &str, mut p: EventPacket, from: &str, echo: bool) {
        p.room = Some(room.to_owned());
        p.from = Some(from.to_owned());
        self.fan_out_room(room, &Packet::Event(p), (!echo).then_some(from), true);
    }

    /// Send an event to every connection, on every node.
    pub fn broadcast_all(&self, event: Event) {
        self.broadcast_all_packet(event, None)
    }

    /// Send an event to every connection but one (the sender).
    pub fn broadcast_all_except(&self, event: Event, except: &str) {
        self.broadcast_all_packet(event, Some(except))
    }

    fn broadcast_all_packet(&self, event: Event, except: Option<&str>) {
        self.ensure_started();
        let mut p = event.into_packet();
        p.from = except.map(str::to_owned);
        let wire = protocol::encode(&Packet::Event(p));
        self.deliver_all_local(&wire.to_message(), except);
        self.publish(BrokerMessage::All {
            node: self.inner.node.clone(),
            except: except.map(str::to_owned),
            payload: wire,
        });
    }

    /// Close a connection of this node with `code` and `reason`. Returns
    /// whether it was open.
    pub fn disconnect(&self, conn: &str, code: CloseCode, reason: &str) -> bool {
        let speaks = self.lock().conns.get(conn).map(|e| e.speaks.clone());
        match speaks {
            Some(Speaks::Hub(c)) => c.close(code, reason),
            Some(Speaks::Other(o)) => o.disconnect(),
            None => false,
        }
    }

    pub(crate) fn publish_message(&self, m: BrokerMessage) {
        self.publish(m)
    }

    fn publish(&self, m: BrokerMessage) {
        Metrics::inc(&self.inner.metrics.broker_published);
        self.inner.broker.publish(m);
    }

    pub(crate) fn target_of(&self, conn: &str) -> Option<Target> {
        self.lock().conns.get(conn).map(Target::of)
    }

    /// Send a packet to connections: `msg` (its `wsx-hub.v1` encoding,
    /// made here when not given) to those that speak it, the Socket.IO
    /// encoding of an event (made once per namespace) to Socket.IO
    /// sockets, which get no presence.
    pub(crate) fn deliver(&self, targets: &[Target], msg: Option<&Message>, p: &Packet, droppable: bool) {
        self.deliver_with_offset(targets, msg, p, droppable, None)
    }

    /// [`Hub::deliver`] of a broadcast that state recovery recorded at
    /// `offset` (Socket.IO sockets that may recover get it as the last
    /// argument).
    pub(crate) fn deliver_with_offset(
        &self,
        targets: &[Target],
        msg: Option<&Message>,
        p: &Packet,
        droppable: bool,
        offset: Option<&str>,
    ) {
        // The wsx-hub.v1 frame, encoded once for every target.
        let mut encoded: Option<Outgoing> = None;
        // Other protocols' frames, once per key.
        let mut others: Vec<((String, bool), Vec<Outgoing>)> = Vec::new();
        for t in targets {
            match (&t.other, p) {
                (None, _) => {
                    let out = encoded.get_or_insert_with(|| {
                        Outgoing::prepared(msg.cloned().unwrap_or_else(|| protocol::encode(p).to_message()))
                    });
                    self.push(&t.outbox, out.clone(), droppable);
                }
                (Some(o), Packet::Event(ev)) => {
                    let (group, takes_offset) = o.key();
                    let i = match others.iter().position(|(k, _)| k.0 == group && k.1 == takes_offset) {
                        Some(i) => i,
                        None => {
                            let f = o.encode(ev, offset.filter(|_| takes_offset));
                            others.push(((group.to_owned(), takes_offset), f));
                            others.len() - 1
                        }
                    };
                    o.send(&others[i].1, droppable);
                }
                // Presence is for wsx-hub.v1 clients.
                (Some(_), _) => {}
            }
        }
    }

    /// Push to a connection's outbox, counting what goes out and what is
    /// dropped. Whether it was queued.
    pub(crate) fn push(&self, q: &Outbox, msg: impl Into<Outgoing>, droppable: bool) -> bool {
        let msg = msg.into();
        let len = msg.len() as u64;
        let pushed = if droppable { q.push_droppable(msg) } else { q.push(msg) };
        self.count_push(pushed, 1, len)
    }

    /// Count what a push of `n` messages (`len` bytes in all) did: sent,
    /// dropped for a slow consumer, or closed it. Whether they were queued.
    pub(crate) fn count_push(&self, pushed: Push, n: u64, len: u64) -> bool {
        let m = &self.inner.metrics;
        match pushed {
            Push::Queued => {}
            Push::Dropped(d) => Metrics::add(&m.dropped, d),
            Push::Discarded => {
                Metrics::add(&m.dropped, n);
                return false;
            }
            Push::Overflow => {
                Metrics::inc(&m.slow_disconnects);
                return false;
            }
            Push::Full | Push::Closed => return false,
        }
        Metrics::add(&m.messages_out, n);
        Metrics::add(&m.bytes_out, len);
        true
    }

    /// Count a data message received (`len` bytes).
    pub(crate) fn count_received(&self, len: u64) {
        let m = &self.inner.metrics;
        Metrics::inc(&m.messages_in);
        Metrics::add(&m.bytes_in, len);
    }

    pub(crate) fn push_packet(&self, q: &Outbox, p: &Packet) {
        self.push(q, protocol::encode(p).to_message(), false);
    }

    /// Deliver a packet to the room's members on this node and publish it to
    /// the other nodes. Events are droppable for slow consumers, presence
    /// is not.
    fn fan_out_room(&self, room: &str, p: &Packet, except: Option<&str>, droppable: bool) {
        self.ensure_started();
        let wire = protocol::encode(p);
        self.deliver_room_local(room, &wire.to_message(), except, droppable, Some(p));
        self.publish(BrokerMessage::Room {
            node: self.inner.node.clone(),
            room: room.to_owned(),
            except: except.map(str::to_owned),
            payload: wire,
        });
    }

    fn deliver_room_local(&self, room: &str, msg: &Message, except: Option<&str>, droppable: bool, p: Option<&Packet>) {
        let mut decoded = None;
        let targets: Vec<Target> = {
            let mut st = self.lock();
            let st = &mut *st;
            let Some(r) = st.rooms.get_mut(room) else { return };
            let targets: Vec<Target> = r
                .members
                .iter()
                .filter(|c| Some(c.as_str()) != except)
                .filter_map(|c| st.conns.get(c).map(Target::of))
                .collect();
            let sio = targets.iter().any(|t| t.other.is_some()) || self.inner.extension.get().is_some();
            if (r.sse.is_some() || sio) && p.is_none() {
                decoded = protocol::decode_message(msg).and_then(Result::ok);
            }
            if let (Some(sse), Some(p)) = (&mut r.sse, p.or(decoded.as_ref())) {
                sse.record(p);
            }
            targets
        };
        if let Some(p) = p.or(decoded.as_ref()) {
            // Socket.IO's state recovery keeps the room's broadcasts.
            let offset = match p {
                Packet::Event(ev) => self.extension().and_then(|x| x.room_event(room, except, ev)),
                _ => None,
            };
            self.deliver_with_offset(&targets, Some(msg), p, droppable, offset.as_deref());
        } else {
            let out = Outgoing::prepared(msg.clone());
            for t in targets.iter().filter(|t| t.other.is_none()) {
                self.push(&t.outbox, out.clone(), droppable);
            }
        }
    }

    fn deliver_all_local(&self, msg: &Message, except: Option<&str>) {
        let targets: Vec<Target> = {
            let st = self.lock();
            st.conns.iter().filter(|(c, _)| Some(c.as_str()) != except).map(|(_, e)| Target::of(e)).collect()
        };
        match targets.iter().any(|t| t.other.is_some()).then(|| protocol::decode_message(msg)).flatten() {
            Some(Ok(p)) => self.deliver(&targets, Some(msg), &p, true),
            _ => {
                let out = Outgoing::prepared(msg.clone());
                for t in targets.iter().filter(|t| t.other.is_none()) {
                    self.push(&t.outbox, out.clone(), true);
                }
            }
        }
    }

    /// A message from another node.
    fn on_broker_message(&self, m: BrokerMessage) {
        if m.node() == self.inner.node {
            return; // our own, already delivered here
        }
        Metrics::inc(&self.inner.metrics.broker_received);
        match m {
            BrokerMessage::Room { room, payload, .. } if is_presence(&payload) => {
                let msg = payload.to_message();
                if let Some(Ok(p)) = protocol::decode_message(&msg) {
                    self.deliver_presence(&room, p, msg);
                }
            }
            BrokerMessage::Room { room, except, payload, .. } => {
                self.deliver_room_local(&room, &payload.to_message(), except.as_deref(), true, None);
            }
            BrokerMessage::All { except, payload, .. } => {
                self.deliver_all_local(&payload.to_message(), except.as_deref());
            }
            m @ (BrokerMessage::Select { .. }
            | BrokerMessage::Answers { .. }
            | BrokerMessage::RecoverAsk { .. }
            | BrokerMessage::RecoverAnswer { .. }) => {
                if let Some(x) = self.extension() {
                    x.broker_message(m);
                }
            }
            BrokerMessage::Direct { node, conn, payload, ack, at } => {
                let q = self.target_of(&conn);
                // A socket that recovered its session on another node: on.
                if let (None, None, Some(there)) = (&q, &at, self.moved_to(&conn)) {
                    self.publish(BrokerMessage::Direct { node, conn, payload, ack, at: Some(there) });
                    return;
                }
                match (ack, q) {
                    (None, Some(t)) => {
                        let msg = payload.to_message();
                        if let Some(Ok(p)) = protocol::decode_message(&msg) {
                            self.deliver(&[t], Some(&msg), &p, false);
                        }
                    }
                    (None, None) => {}
                    (Some(their_id), None) => self.publish(BrokerMessage::AckReply {
                        node: self.inner.node.clone(),
                        to: node,
                        id: their_id,
                        result: Err(ErrorBody::new("no_such_connection", conn)),
                    }),
                    (Some(their_id), Some(q)) => {
                        let Some(Ok(Packet::Event(ev))) = protocol::decode_message(&payload.to_message()) else {
                            return;
                        };
                        let id = self.next_seq();
                        let expires = Instant::now() + Duration::from_secs(3600);
                        self.pending().insert(id, Pending::Remote { conn, node, id: their_id, expires });
                        self.deliver(&[q], None, &Packet::Event(ev.with_id(id)), false);
                    }
                }
            }
            BrokerMessage::AckReply { id, result, .. } => {
                if let Some(Pending::Local { tx, .. }) = self.pending().remove(&id) {
                    let _ = tx.send(result.map_err(remote_ack_error));
                }
            }
        }
    }

    /// Where a connection of this node went (a Socket.IO socket that
    /// recovered its session on another node), while it is remembered.
    fn moved_to(&self, conn: &str) -> Option<String> {
        let mut moved = self.inner.moved.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        moved.retain(|_, (_, until)| *until > now);
        moved.get(conn).map(|(node, _)| node.clone())
    }

    /// Remember that `conn` now lives on `node`: direct messages for it
    /// that reach this node go on there (for [`MOVED_FOR`]).
    pub(crate) fn note_moved(&self, conn: &str, node: &str) {
        let mut moved = self.inner.moved.lock().unwrap_or_else(|p| p.into_inner());
        if moved.len() >= MAX_MOVED {
            let now = Instant::now();
            moved.retain(|_, (_, until)| *until > now);
            if moved.len() >= MAX_MOVED {
                return;
            }
        }
        moved.insert(conn.to_owned(), (node.to_owned(), Instant::now() + MOVED_FOR));
    }

    /// A client answered request `id`.
    pub(crate) fn on_ack(&self, conn: &str, ack: AckPacket) {
        let mut pending = self.pending();
        let ours = matches!(pending.get(&ack.id), Some(Pending::Local { conn: c, .. } | Pending::Remote { conn: c, .. }) if c == conn);
        if !ours {
            return;
        }
        match pending.remove(&ack.id) {
            Some(Pending::Local { tx, .. }) => {
                let _ = tx.send(ack.result.map_err(AckError::Remote));
            }
            Some(Pending::Remote { node, id, .. }) => {
                drop(pending);
                self.publish(BrokerMessage::AckReply {
                    node: self.inner.node.clone(),
                    to: node,
                    id,
                    result: ack.result,
                });
            }
            None => {}
        }
    }

    /// Register a new connection (its welcome is already queued).
    pub(crate) fn register(
        &self,
        conn: &ConnId,
        outbox: Outbox,
        speaks: Speaks,
        meta: Value,
        peer: Option<SocketAddr>,
    ) {
        let entry = ConnEntry { outbox, speaks, meta, rooms: RoomSet::default(), peer, since: SystemTime::now() };
        self.lock().conns.insert(conn.clone(), entry);
        Metrics::inc(&self.inner.metrics.connections);
        Metrics::inc(&self.inner.metrics.connections_total);
    }

    /// A connection ended: leave its rooms, fail its pending requests.
    pub(crate) async fn unregister(&self, conn: &str) {
        // Counted before the connection is removed, so that a shutdown that
        // no longer finds it waits for its leaves.
        let _leaving = Leaving::new(&self.inner);
        let removed = {
            let mut st = self.lock();
            let st = &mut *st;
            let Some(e) = st.conns.remove(conn) else { return };
            for room in &e.rooms {
                self.remove_member(st, room, conn);
            }
            e
        };
        self.inner.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        let info = conn_info(conn, &removed);
        for room in &removed.rooms {
            self.presence_changed(room, Member { conn: conn.to_owned(), meta: removed.meta.clone() }, false).await;
        }
        let now = Instant::now();
        let failed: Vec<Pending> = {
            let mut pending = self.pending();
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| match p {
                    Pending::Local { conn: c, .. } | Pending::Remote { conn: c, .. } => c == conn,
                })
                .map(|(id, _)| *id)
                .collect();
            // Also forget forwarded requests nobody waits for any more.
            pending.retain(|_, p| !matches!(p, Pending::Remote { expires, .. } if *expires < now));
            ids.into_iter().filter_map(|id| pending.remove(&id)).collect()
        };
        for p in failed {
            match p {
                Pending::Local { tx, .. } => {
                    let _ = tx.send(Err(AckError::Disconnected));
                }
                Pending::Remote { node, id, .. } => self.publish(BrokerMessage::AckReply {
                    node: self.inner.node.clone(),
                    to: node,
                    id,
                    result: Err(ErrorBody::new("disconnected", "the connection closed")),
                }),
            }
        }
        if let Some(f) = &self.inner.on_disconnect {
            f(&info);
        }
    }

    /// Shut down gracefully: stop accepting ([`Hub::serve`] returns), close
    /// every connection with 1001 `server shutting down`, end SSE streams,
    /// wait for the closing handshakes (at most the shutdown timeout, then
    /// drop what is left), publish the leave of every member of every room
    /// (also of the connections dropped), and leave the cluster once the
    /// broker sent them (at most its own bound, 2 s for Redis by default).
    pub async fn shutdown(&self) {
        self.inner.server.shutdown().await;
        // The connections the server dropped at the timeout leave here
        // (each at most once: whoever removes it from the registry
        // announces it).
        let left: Vec<ConnId> = self.lock().conns.keys().cloned().collect();
        futures_util::future::join_all(left.iter().map(|c| self.unregister(c))).await;
        // Connections that were leaving meanwhile finish publishing.
        let all_left = async {
            loop {
                let notified = self.inner.left.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.inner.leaving.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(LEAVE_WAIT, all_left).await.is_err() {
            tracing::warn!("shutdown: connections still leaving; stopping the broker anyway");
        }
        // Their leaves go out now, not at the next tick.
        self.flush_presence(true).await;
        if !self.inner.broker_stopped.swap(true, Ordering::SeqCst) {
            self.inner.broker.shutdown().await;
        }
    }
}

fn conn_info(id: &str, e: &ConnEntry) -> ConnInfo {
    ConnInfo {
        id: id.to_owned(),
        meta: e.meta.clone(),
        rooms: e.rooms.iter().cloned().collect(),
        peer: e.peer,
        since: e.since,
        queued: e.outbox.len(),
    }
}

fn remote_ack_error(e: ErrorBody) -> AckError {
    match e.code.as_str() {
        "disconnected" => AckError::Disconnected,
        "no_such_connection" => AckError::NoSuchConnection(e.message),
        _ => AckError::Remote(e),
    }
}

/// Whether an encoded packet is a presence packet (the encoder writes `t`
/// first).
fn is_presence(w: &Wire) -> bool {
    matches!(w, Wire::Text(s) if s.starts_with(r#"{"t":"presence""#))
}

pub(crate) fn check_name(name: &str) -> Result<(), HubError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(HubError::InvalidName(name.chars().take(40).collect()));
    }
    Ok(())
}

/// The error packet or ack for a failed request.
pub(crate) fn refusal(id: Option<u64>, error: ErrorBody) -> Packet {
    match id {
        Some(id) => Packet::Ack(AckPacket { id, result: Err(error) }),
        None => Packet::Error(protocol::ErrorPacket { id: None, error }),
    }
}

pub(crate) fn unknown_event(id: Option<u64>, name: &str) -> Packet {
    refusal(id, ErrorBody::new(codes::UNKNOWN_EVENT, format!("no handler for {name:?}")))
}

/// Every presence interval: send the rooms' pending joins and leaves (in
/// order: one flush at a time).
fn spawn_presence(hub: std::sync::Weak<Inner>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = hub.upgrade() else { return };
            if inner.broker_stopped.load(Ordering::SeqCst) {
                return;
            }
            Hub { inner }.flush_presence(false).await;
        }
    });
}

/// Every half `retention` or so: leave the channels of rooms whose SSE
/// history expired, and forget the rooms nothing here needs.
fn spawn_sweeper(hub: std::sync::Weak<Inner>, retention: Duration) {
    let every = (retention / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(inner) = hub.upgrade() else { return };
            let hub = Hub { inner };
            if hub.is_shutting_down() {
                return;
            }
            let broker = &*hub.inner.broker;
            hub.lock().rooms.retain(|name, r| {
                let _ = r.sync_subscription(name, broker);
                !r.is_dead()
            });
        }
    });
}

/// Wait until a stop flag is set (or its sender is gone).
#[cfg(feature = "redis")]
pub(crate) async fn flag_set(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::RoomSet;

    #[test]
    fn a_room_set_stays_sorted_and_unique() {
        let mut s = RoomSet::default();
        assert!(s.insert("b".into()) && s.insert("a".into()) && s.insert("c".into()));
        assert!(!s.insert("a".into()), "already there");
        assert_eq!(s.iter().map(String::as_str).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(s.contains("b") && !s.contains("d"));
        assert!(s.remove("b") && !s.remove("b"));
        assert_eq!(s.len(), 2);
        let back: RoomSet = serde_json::from_value(serde_json::json!(["z", "a", "z"])).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::json!(["a", "z"]));
    }

    /// Most connections are in one room: their set holds one slot, not
    /// the four a growing vector makes room for.
    #[test]
    fn a_room_set_holds_what_it_has() {
        let mut s = RoomSet::default();
        s.insert("a".into());
        assert_eq!(s.0.capacity(), 1);
        s.insert("b".into());
        assert_eq!(s.0.capacity(), 2);
    }
}
