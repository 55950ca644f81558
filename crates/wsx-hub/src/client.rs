//! A Rust client for hubs: connects in the background, reconnects with
//! exponential backoff and jitter, queues what is sent while offline (and
//! sends it on reconnect), rejoins its rooms after a reconnect, and turns
//! requests into futures that resolve with the server's ack.
//!
//! ```no_run
//! # async fn run() -> Result<(), wsx_hub::AckError> {
//! use wsx_hub::client::{Client, ClientEvent};
//! use wsx_hub::Event;
//!
//! let (client, mut events) = Client::builder("ws://127.0.0.1:9001/")
//!     .header("authorization", "Bearer secret")
//!     .connect();
//! let joined = client.join("lobby").await?;                    // waits for the server's ack
//! println!("{:?} members", joined.count);
//! client.publish("lobby", Event::new("chat", serde_json::json!({"text": "hi"})))?;
//! let answer = client.request(Event::new("ping", serde_json::json!(1))).await?;
//! while let Some(ev) = events.next().await {
//!     match ev {
//!         ClientEvent::Event(mut e) => {
//!             println!("{} from {:?}: {}", e.event.name, e.from, e.event.data);
//!             e.ack(serde_json::json!("thanks"));               // when the server asked for an ack
//!         }
//!         ClientEvent::Presence(p) => println!("{} in {}: {:?}", p.count, p.room, p.diff),
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::error::AckError;
use crate::hub::Event;
use crate::policy::Backoff;
use crate::protocol::{
    self, AckPacket, ConnId, ErrorBody, EventPacket, Joined, MembersPage, MembersRequest, Packet, PresencePacket,
    PublishPacket, RoomRequest, SUBPROTOCOL,
};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use wsx::{CloseCode, Message};

/// Where the client stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    /// Connecting (or waiting to retry).
    Connecting,
    /// Connected, with this connection id.
    Connected(ConnId),
    /// Closed by [`Client::close`]; nothing more is sent.
    Closed,
}

/// What the client receives.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Connected (also after each reconnect): the server's welcome.
    Connected {
        /// This connection's id.
        conn: ConnId,
        /// What the server's auth hook said about us.
        meta: Value,
    },
    /// The connection was lost (or an attempt failed); the client retries.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// An event from the server or another client.
    Event(IncomingEvent),
    /// Members joined or left a room we are in (coalesced; names only in
    /// rooms that show them).
    Presence(PresencePacket),
    /// The server refused something we sent without a request id.
    Error(ErrorBody),
}

/// An event received. When the sender asked for an acknowledgement, answer
/// with [`IncomingEvent::ack`] or [`IncomingEvent::ack_error`].
#[derive(Debug)]
pub struct IncomingEvent {
    /// The event.
    pub event: Event,
    /// The room it was sent to, if any.
    pub room: Option<String>,
    /// The connection that sent it, if any.
    pub from: Option<ConnId>,
    reply: Option<(u64, mpsc::UnboundedSender<Cmd>)>,
}

impl IncomingEvent {
    /// Whether the sender waits for an ack.
    pub fn wants_ack(&self) -> bool {
        self.reply.is_some()
    }

    /// Answer the sender's request (once; later calls do nothing).
    pub fn ack(&mut self, data: Value) {
        self.answer(Ok(data))
    }

    /// Answer the sender's request with an error.
    pub fn ack_error(&mut self, code: &str, message: &str) {
        self.answer(Err(ErrorBody::new(code, message)))
    }

    fn answer(&mut self, result: Result<Value, ErrorBody>) {
        if let Some((id, tx)) = self.reply.take() {
            let _ = tx.send(Cmd::Send(Packet::Ack(AckPacket { id, result })));
        }
    }
}

type Answer = oneshot::Sender<Result<Value, AckError>>;

#[derive(Debug)]
enum Cmd {
    /// A packet without a request id.
    Send(Packet),
    /// A packet to send with a fresh request id; the answer goes to the
    /// sender.
    Request(Packet, Answer),
    Close,
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    headers: Vec<(String, String)>,
    backoff: Backoff,
    offline_queue: usize,
    ack_timeout: Duration,
    config: wsx::Config,
}

impl ClientBuilder {
    /// Add a header to the upgrade request (e.g. `Authorization`, `Origin`,
    /// `Cookie`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Reconnect delays (default 100 ms doubling to 10 s, with jitter).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Messages kept while offline (default 1024); past it the oldest are
    /// dropped (their requests fail with [`AckError::NotSent`]).
    pub fn offline_queue(mut self, n: usize) -> Self {
        self.offline_queue = n;
        self
    }

    /// Default time to wait for acks (default 10 s).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d;
        self
    }

    /// WebSocket settings (TLS, proxy, limits).
    pub fn config(mut self, config: wsx::Config) -> Self {
        self.config = config;
        self
    }

    /// Start connecting (in a task on the current tokio runtime) and return
    /// the client and the stream of what it receives.
    pub fn connect(self) -> (Client, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ClientState::Connecting);
        let ack_timeout = self.ack_timeout;
        let task = Task { b: self, cmds: rx, events: ev_tx, state: state_tx, self_tx: tx.clone() };
        tokio::spawn(task.run());
        (Client { tx, state: state_rx, ack_timeout }, Events { rx: ev_rx })
    }
}

/// What the client receives, in order.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<ClientEvent>,
}

impl Events {
    /// The next event; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }
}

/// A hub client. Cheap to clone; every clone drives the same connection.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Cmd>,
    state: watch::Receiver<ClientState>,
    ack_timeout: Duration,
}

impl Client {
    /// Start building a client for a `ws://` or `wss://` URL.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            headers: Vec::new(),
            backoff: Backoff::default(),
            offline_queue: 1024,
            ack_timeout: Duration::from_secs(10),
            config: wsx::Config::default(),
        }
    }

    fn send_cmd(&self, c: Cmd) -> Result<(), AckError> {
        self.tx.send(c).map_err(|_| AckError::NotSent("the client is closed".into()))
    }

    /// Where the client stands.
    pub fn state(&self) -> ClientState {
        self.state.borrow().clone()
    }

    /// The current connection's id, when connected.
    pub fn conn_id(&self) -> Option<ConnId> {
        match &*self.state.borrow() {
            ClientState::Connected(c) => Some(c.clone()),
            _ => None,
        }
    }

    /// Wait until connected (at most `timeout`); returns the connection id.
    pub async fn connected(&self, timeout: Duration) -> Option<ConnId> {
        let mut rx = self.state.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|s| matches!(s, ClientState::Connected(_)))).await;
        match r {
            Ok(Ok(s)) => match &*s {
                ClientState::Connected(c) => Some(c.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Send an event to the server's handler, without waiting for an answer
    /// (queued while offline).
    pub fn emit(&self, event: Event) -> Result<(), AckError> {
        self.send_cmd(Cmd::Send(Packet::Event(event.into_packet())))
    }

    /// Send an event to the server's handler and wait for its answer (the
    /// default ack timeout).
    pub async fn request(&self, event: Event) -> Result<Value, AckError> {
        self.request_timeout(event, self.ack_timeout).await
    }

    /// Send an event to the server's handler and wait at most `timeout` for
    /// its answer.
    pub async fn request_timeout(&self, event: Event, timeout: Duration) -> Result<Value, AckError> {
        self.ask(Packet::Event(event.into_packet()), timeout).await
    }

    async fn ask(&self, p: Packet, timeout: Duration) -> Result<Value, AckError> {
        let (tx, rx) = oneshot::channel();
        self.send_cmd(Cmd::Request(p, tx))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(AckError::NotSent("the client is closed".into())),
            Err(_) => Err(AckError::Timeout(timeout)),
        }
    }

    /// Send an event to the other members of a room (we must have joined
    /// it).
    pub fn publish(&self, room: &str, event: Event) -> Result<(), AckError> {
        self.send_cmd(Cmd::Send(publish_packet(room, event, false)))
    }

    /// Send an event to a room and wait until the server accepted it.
    /// `echo` delivers it to us too.
    pub async fn publish_ack(&self, room: &str, event: Event, echo: bool) -> Result<(), AckError> {
        self.ask(publish_packet(room, event, echo), self.ack_timeout).await.map(|_| ())
    }

    /// Join a room (and rejoin it after each reconnect); returns its
    /// member count and, in a small room, its members.
    pub async fn join(&self, room: &str) -> Result<Joined, AckError> {
        let v = self.ask(Packet::Join(RoomRequest { room: room.to_owned(), id: None }), self.ack_timeout).await?;
        Ok(serde_json::from_value(v).unwrap_or_else(|_| Joined { room: room.to_owned(), ..Joined::default() }))
    }

    /// A page of the members of a room we joined: at most `limit` (1 to
    /// 1,000) after the connection `after` (the previous page's `next`).
    ///
    /// ```no_run
    /// # async fn run(client: wsx_hub::client::Client) -> Result<(), wsx_hub::AckError> {
    /// let mut page = client.members("lobby", None, 1000).await?;
    /// while let Some(next) = page.next.take() {
    ///     let more = client.members("lobby", Some(&next), 1000).await?;
    ///     page.members.extend(more.members);
    ///     page.next = more.next;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn members(&self, room: &str, after: Option<&str>, limit: u32) -> Result<MembersPage, AckError> {
        let q = MembersRequest { room: room.to_owned(), after: after.map(str::to_owned), limit: Some(limit), id: 0 };
        let v = self.ask(Packet::Members(q), self.ack_timeout).await?;
        serde_json::from_value(v)
            .map_err(|e| AckError::Remote(ErrorBody::new(protocol::codes::BAD_FRAME, e.to_string())))
    }

    /// Leave a room.
    pub async fn leave(&self, room: &str) -> Result<(), AckError> {
        self.ask(Packet::Leave(RoomRequest { room: room.to_owned(), id: None }), self.ack_timeout).await.map(|_| ())
    }

    /// Close the connection (1000) and stop reconnecting.
    pub fn close(&self) {
        let _ = self.tx.send(Cmd::Close);
    }
}

fn publish_packet(room: &str, event: Event, echo: bool) -> Packet {
    Packet::Publish(PublishPacket {
        room: room.to_owned(),
        event: event.name,
        data: event.data,
        id: None,
        echo,
        attachments: event.attachments,
    })
}

fn set_id(p: &mut Packet, id: u64) {
    match p {
        Packet::Event(e) => e.id = Some(id),
        Packet::Publish(pb) => pb.id = Some(id),
        Packet::Join(r) | Packet::Leave(r) => r.id = Some(id),
        Packet::Members(m) => m.id = id,
        _ => {}
    }
}

struct Task {
    b: ClientBuilder,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<ClientEvent>,
    state: watch::Sender<ClientState>,
    self_tx: mpsc::UnboundedSender<Cmd>,
}

/// State that lives across reconnects.
struct Session {
    offline: VecDeque<Cmd>,
    rooms: BTreeSet<String>,
    pending: HashMap<u64, Answer>,
    next_id: u64,
}

impl Session {
    /// Keep a command for the next connection; the oldest goes when full.
    fn queue(&mut self, c: Cmd, limit: usize) {
        self.offline.push_back(c);
        while self.offline.len() > limit.max(1) {
            if let Some(Cmd::Request(_, tx)) = self.offline.pop_front() {
                let _ = tx.send(Err(AckError::NotSent("dropped from the offline queue".into())));
            }
        }
    }

    /// Track rooms so that a reconnect rejoins them.
    fn track(&mut self, p: &Packet) {
        match p {
            Packet::Join(r) => {
                self.rooms.insert(r.room.clone());
            }
            Packet::Leave(r) => {
                self.rooms.remove(&r.room);
            }
            _ => {}
        }
    }

    /// The message for a command, registering requests.
    fn message(&mut self, c: Cmd) -> Option<Message> {
        let p = match c {
            Cmd::Send(p) => p,
            Cmd::Request(mut p, tx) => {
                if tx.is_closed() {
                    return None; // the caller gave up
                }
                self.pending.retain(|_, t| !t.is_closed());
                let id = self.next_id;
                self.next_id += 1;
                set_id(&mut p, id);
                self.pending.insert(id, tx);
                p
            }
            Cmd::Close => return None,
        };
        Some(protocol::encode(&p).to_message())
    }
}

impl Task {
    async fn run(mut self) {
        let mut s = Session { offline: VecDeque::new(), rooms: BTreeSet::new(), pending: HashMap::new(), next_id: 1 };
        let mut attempt = 0u32;
        loop {
            let _ = self.state.send_replace(ClientState::Connecting);
            let request = match self.request() {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.events.send(ClientEvent::Disconnected { reason: e });
                    return self.finish(&mut s);
                }
            };
            let config = self.b.config.clone();
            let mut connect = Box::pin(async move { wsx::connect_with(request, &config).await });
            let connected = loop {
                tokio::select! {
                    r = &mut connect => break r,
                    c = self.cmds.recv() => match c {
                        None | Some(Cmd::Close) => return self.finish(&mut s),
                        Some(c) => {
                            if let Cmd::Send(p) | Cmd::Request(p, _) = &c { s.track(p) }
                            s.queue(c, self.b.offline_queue);
                        }
                    },
                }
            };
            let reason = match connected {
                Ok((ws, _)) => {
                    attempt = 0;
                    match self.session(ws, &mut s).await {
                        Some(reason) => reason,
                        None => return self.finish(&mut s),
                    }
                }
                Err(e) => format!("cannot connect: {e}"),
            };
            for (_, tx) in s.pending.drain() {
                let _ = tx.send(Err(AckError::Disconnected));
            }
            tracing::debug!(url = self.b.url, reason, "hub client disconnected; retrying");
            let _ = self.state.send_replace(ClientState::Connecting);
            let _ = self.events.send(ClientEvent::Disconnected { reason });
            let sleep = tokio::time::sleep(self.b.backoff.delay(attempt));
            attempt = attempt.saturating_add(1);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    c = self.cmds.recv() => match c {
                        None | Some(Cmd::Close) => return self.finish(&mut s),
                        Some(c) => {
                            if let Cmd::Send(p) | Cmd::Request(p, _) = &c { s.track(p) }
                            s.queue(c, self.b.offline_queue);
                        }
                    },
                }
            }
        }
    }

    fn request(&self) -> Result<http::Request<()>, String> {
        let mut r = http::Request::get(self.b.url.as_str()).header("sec-websocket-protocol", SUBPROTOCOL);
        for (k, v) in &self.b.headers {
            r = r.header(k.as_str(), v.as_str());
        }
        r.body(()).map_err(|e| format!("invalid request: {e}"))
    }

    fn finish(&mut self, s: &mut Session) {
        let _ = self.state.send_replace(ClientState::Closed);
        for c in s.offline.drain(..) {
            if let Cmd::Request(_, tx) = c {
                let _ = tx.send(Err(AckError::NotSent("the client is closed".into())));
            }
        }
        for (_, tx) in s.pending.drain() {
            let _ = tx.send(Err(AckError::Disconnected));
        }
    }

    /// One connection. `Some(reason)` when it was lost, `None` when the
    /// client was closed.
    async fn session(&mut self, mut ws: wsx::WebSocket<wsx::MaybeTlsStream>, s: &mut Session) -> Option<String> {
        // Rejoin, then send what waited.
        for room in s.rooms.clone() {
            let p = Packet::Join(RoomRequest { room, id: None });
            if ws.feed(protocol::encode(&p).to_message()).await.is_err() {
                return Some("write failed".into());
            }
        }
        while let Some(c) = s.offline.pop_front() {
            if let Some(m) = s.message(c) {
                if ws.feed(m).await.is_err() {
                    return Some("write failed".into());
                }
            }
        }
        if let Err(e) = ws.flush().await {
            return Some(format!("write failed: {e}"));
        }
        loop {
            tokio::select! {
                msg = ws.recv() => match msg {
                    Some(Ok(m)) => self.incoming(m, s),
                    Some(Err(e)) => return Some(e.to_string()),
                    None => return Some("closed by the server".into()),
                },
                c = self.cmds.recv() => match c {
                    None | Some(Cmd::Close) => {
                        let _ = ws.close(CloseCode::Normal, "").await;
                        let _ = tokio::time::timeout(Duration::from_secs(2), async { while ws.recv().await.is_some() {} }).await;
                        return None;
                    }
                    Some(c) => {
                        if let Cmd::Send(p) | Cmd::Request(p, _) = &c { s.track(p) }
                        if let Some(m) = s.message(c) {
                            if let Err(e) = ws.send(m).await {
                                return Some(format!("write failed: {e}"));
                            }
                        }
                    }
                },
            }
        }
    }

    fn incoming(&mut self, m: Message, s: &mut Session) {
        let p = match protocol::decode_message(&m) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "invalid packet from the server");
                return;
            }
            None => return,
        };
        let ev = match p {
            Packet::Welcome(w) => {
                let _ = self.state.send_replace(ClientState::Connected(w.conn.clone()));
                ClientEvent::Connected { conn: w.conn, meta: w.meta }
            }
            Packet::Event(e) => {
                let EventPacket { id, room, from, .. } = &e;
                let (id, room, from) = (*id, room.clone(), from.clone());
                ClientEvent::Event(IncomingEvent {
                    event: Event::from(e),
                    room,
                    from,
                    reply: id.map(|id| (id, self.self_tx.clone())),
                })
            }
            Packet::Ack(a) => {
                if let Some(tx) = s.pending.remove(&a.id) {
                    let _ = tx.send(a.result.map_err(AckError::Remote));
                }
                return;
            }
            Packet::Presence(p) => ClientEvent::Presence(p),
            Packet::Error(e) => match e.id.and_then(|id| s.pending.remove(&id)) {
                Some(tx) => {
                    let _ = tx.send(Err(AckError::Remote(e.error)));
                    return;
                }
                None => ClientEvent::Error(e.error),
            },
            Packet::Publish(_) | Packet::Join(_) | Packet::Leave(_) | Packet::Members(_) => return,
        };
        let _ = self.events.send(ev);
    }
}
