//! The handles a server's code holds: a [`Socket`] (one client in one
//! namespace), the [`Received`] event a handler gets, and the [`Operator`]
//! that selects sockets of a namespace for a broadcast or an operation.

use super::connect::Handshake;
use super::engine::{CloseReason, Transport};
use super::payload::Payload;
use super::selection::{could_be_socket_id, deliver_selected, select_local, socket_of, Selection};
use super::state::{lock, SocketShared};
use super::{hub_room, sio_room, Inner};
use crate::broker::BrokerMessage;
use crate::error::{AckError, HubError};
use crate::hub::Hub;
use crate::protocol::{self, EventPacket};
use bytes::Bytes;
use serde_json::Value;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// A client connected to a namespace. Cheap to clone.
#[derive(Clone)]
pub struct Socket {
    pub(crate) shared: Arc<SocketShared>,
    pub(crate) io: Arc<Inner>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("id", &self.shared.id).field("ns", &&*self.shared.nsp).finish()
    }
}

impl Socket {
    /// The socket's id (the `socket.id` of the client; also its
    /// connection id in the hub).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The namespace.
    pub fn ns(&self) -> &str {
        &self.shared.nsp
    }

    /// What the client sent to connect.
    pub fn handshake(&self) -> &Handshake {
        &self.shared.handshake
    }

    /// Whether it is still connected to the namespace.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// Whether the client came back within the recovery window and got
    /// its id, rooms, data and missed events back.
    pub fn recovered(&self) -> bool {
        self.shared.recovered
    }

    /// The transport the session uses now.
    pub fn transport(&self) -> Transport {
        if self.shared.session.transport.load(Ordering::Relaxed) == 1 {
            Transport::WebSocket
        } else {
            Transport::Polling
        }
    }

    /// `socket.data`: what the server keeps about this socket (restored
    /// with the rest on recovery, listed by [`Operator::fetch_sockets`]).
    pub fn data(&self) -> Value {
        lock(&self.shared.data).clone()
    }

    /// Replace `socket.data`.
    pub fn set_data(&self, data: Value) {
        *lock(&self.shared.data) = data;
    }

    /// Send `event` to this client. With connection state recovery, it
    /// is kept for the client and carries its offset like a broadcast.
    ///
    /// ```no_run
    /// # fn f(socket: wsx_hub::socketio::Socket) {
    /// use wsx_hub::socketio::Payload;
    /// socket.emit("hello", serde_json::json!({"n": 1})).ok();
    /// socket.emit("file", Payload::from(serde_json::json!("a.bin")).binary(vec![1u8, 2, 3])).ok();
    /// # }
    /// ```
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), HubError> {
        if !self.connected() {
            return Err(HubError::NoSuchConnection(self.shared.id.clone()));
        }
        if self.shared.pid.is_some() {
            // With state recovery, an emit to one socket is a broadcast to
            // the room of its id (as upstream): recorded, with its offset,
            // so that a client that lost it gets it back.
            Operator::new(self.io.clone(), self.shared.nsp.clone()).to(&self.shared.id).local().emit(event, payload);
            return Ok(());
        }
        let p = super::event_packet(&self.shared.nsp, event, payload.into(), None);
        self.shared.session.send(&p, false);
        Ok(())
    }

    /// Send `event` to this client and wait at most `timeout` for its ack
    /// (the arguments it answered with).
    ///
    /// ```no_run
    /// # async fn f(socket: wsx_hub::socketio::Socket) {
    /// use std::time::Duration;
    /// match socket.emit_with_ack("confirm", serde_json::json!("sure?"), Duration::from_secs(5)).await {
    ///     Ok(answer) => println!("answered {:?}", answer.values()),
    ///     Err(e) => println!("no answer: {e}"),
    /// }
    /// # }
    /// ```
    pub async fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Payload, AckError> {
        if !self.connected() {
            return Err(AckError::NoSuchConnection(self.shared.id.clone()));
        }
        let id = self.io.hub.next_seq();
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.session.acks).insert(id, tx);
        let p = super::event_packet(&self.shared.nsp, event, payload.into(), Some(id));
        self.shared.session.send(&p, false);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                lock(&self.shared.session.acks).remove(&id);
                Err(AckError::Timeout(timeout))
            }
        }
    }

    /// Put the socket in a room of its namespace.
    pub async fn join(&self, room: &str) -> Result<(), HubError> {
        self.io.hub.join(&self.shared.id, &hub_room(&self.shared.nsp, room)).await
    }

    /// Take the socket out of a room.
    pub async fn leave(&self, room: &str) -> Result<(), HubError> {
        self.io.hub.leave(&self.shared.id, &hub_room(&self.shared.nsp, room)).await
    }

    /// The rooms it is in (not counting the room of its own id).
    pub fn rooms(&self) -> Vec<String> {
        let st = self.io.hub.lock();
        let Some(e) = st.conns.get(&self.shared.id) else { return Vec::new() };
        e.rooms.iter().filter_map(|r| sio_room(&self.shared.nsp, r).map(str::to_owned)).collect()
    }

    /// Everyone in `room` but this socket.
    pub fn to(&self, room: &str) -> Operator {
        self.broadcast().to(room)
    }

    /// Everyone in the namespace but this socket (add rooms with
    /// [`Operator::to`]).
    pub fn broadcast(&self) -> Operator {
        Operator::new(self.io.clone(), self.shared.nsp.clone()).except_socket(&self.shared.id)
    }

    /// Disconnect the socket from its namespace (the client gets
    /// DISCONNECT; the session stays if it has other namespaces).
    pub fn disconnect(&self) {
        self.shared.disconnect_by_server();
    }

    /// Close the client's whole connection (every namespace).
    pub fn close(&self) {
        self.shared.session.closer.close(CloseReason::ServerClose);
    }
}

/// An event from a client, as a handler gets it.
pub struct Received {
    pub(crate) name: String,
    pub(crate) payload: Payload,
    pub(crate) ack: Option<(u64, Arc<SocketShared>)>,
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("name", &self.name)
            .field("args", &self.payload.args)
            .field("attachments", &self.payload.attachments.len())
            .field("wants_ack", &self.ack.is_some())
            .finish()
    }
}

impl Received {
    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its arguments and attachments.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Its arguments and attachments, taken.
    pub fn into_payload(self) -> Payload {
        self.payload
    }

    /// The first argument as a typed value.
    pub fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::HandlerError> {
        self.payload.get(0)
    }

    /// The binary attachments.
    pub fn binary(&self) -> &[Bytes] {
        &self.payload.attachments
    }

    /// Whether the client waits for an ack.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Answer the client's ack (nothing happens if it asked for none).
    pub fn ack(&self, answer: impl Into<Payload>) {
        if let Some(a) = self.acker() {
            a.send(answer.into());
        }
    }

    /// What answers the client's ack, apart from the event (for a
    /// handler that gives the event away first).
    pub(crate) fn acker(&self) -> Option<Acker> {
        self.ack.as_ref().map(|(id, s)| Acker { id: *id, socket: s.clone() })
    }
}

/// Answers one ack of a client.
pub(crate) struct Acker {
    id: u64,
    socket: Arc<SocketShared>,
}

impl Acker {
    pub(crate) fn send(self, p: Payload) {
        self.socket.ack(self.id, p);
    }
}

/// Selects sockets of a namespace for a broadcast or an operation: all
/// of them, or those in some rooms, minus those in others. Made by
/// [`super::SocketIo::of`], [`super::SocketIo::to`] and
/// [`Socket::to`] / [`Socket::broadcast`] (which leave the
/// sender out).
///
/// ```no_run
/// # async fn f(io: wsx_hub::socketio::SocketIo) {
/// use serde_json::json;
/// io.to("room1").to("room2").except("muted").emit("news", json!({"headline": "hi"}));
/// io.of("/admin").emit("alert", json!("disk full"));
/// let answers = io.to("voters").emit_with_ack("vote?", json!(null), std::time::Duration::from_secs(5)).await;
/// io.to("old").join("new").await;         // every socket of "old" also joins "new"
/// # let _ = answers;
/// # }
/// ```
#[derive(Clone)]
pub struct Operator {
    io: Arc<Inner>,
    nsp: Arc<str>,
    sel: Selection,
    volatile: bool,
    local: bool,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator").field("ns", &&*self.nsp).field("selection", &self.sel).finish_non_exhaustive()
    }
}

impl Operator {
    pub(crate) fn new(io: Arc<Inner>, nsp: Arc<str>) -> Self {
        Self { io, nsp, sel: Selection::default(), volatile: false, local: false }
    }

    fn hub(&self) -> &Hub {
        &self.io.hub
    }

    /// Also the sockets in `room` (the first call narrows from "everyone"
    /// to this room).
    pub fn to(mut self, room: &str) -> Self {
        self.sel.rooms.push(hub_room(&self.nsp, room));
        self
    }

    /// The same as [`Operator::to`] (Socket.IO's `in`).
    pub fn within(self, room: &str) -> Self {
        self.to(room)
    }

    /// But not the sockets in `room`.
    pub fn except(mut self, room: &str) -> Self {
        self.sel.except_rooms.push(hub_room(&self.nsp, room));
        self
    }

    pub(crate) fn except_socket(mut self, id: &str) -> Self {
        self.sel.except = Some(id.to_owned());
        self
    }

    /// May be dropped for a client that does not keep up (under the
    /// [`crate::SlowConsumer::DropOldest`] rule).
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Only the sockets of this node (not through the broker).
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Send `event` to the selected sockets, on every node unless
    /// [`Operator::local`].
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) {
        self.hub().ensure_started();
        let mut ev = payload.into().into_event(event);
        // The hub room, as hub clients know it.
        ev.room = self.sel.rooms.first().cloned();
        // A socket's broadcast leaves it out: hub clients see it as the sender.
        ev.from = self.sel.except.clone();
        let p = protocol::Packet::Event(ev);
        deliver_selected(&self.io, &self.nsp, &self.sel, &p);
        if self.local {
            return;
        }
        let payload = protocol::encode(&p);
        let node = self.hub().node_id().to_owned();
        let m = match (&self.sel.rooms[..], self.sel.except_rooms.is_empty()) {
            // One room: its own channel, as the hub's broadcasts; but a
            // socket's id is no channel anyone listens to (its socket may
            // even live on a node its id does not name).
            ([room], true) if !could_be_socket_id(sio_room(&self.nsp, room).unwrap_or(room)) => {
                BrokerMessage::Room { node, room: room.clone(), except: self.sel.except.clone(), payload }
            }
            _ => BrokerMessage::Select {
                node,
                nsp: self.nsp.to_string(),
                rooms: self.sel.rooms.clone(),
                except_rooms: self.sel.except_rooms.clone(),
                except: self.sel.except.clone(),
                payload,
                ack: None,
            },
        };
        self.hub().publish_message(m);
    }

    /// Send `event` to the selected sockets (on every node unless
    /// [`Operator::local`]) and gather every answer within `timeout`: one
    /// entry per socket, its answer or why there is none. Answers from
    /// other nodes come within `timeout` and a little more.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Vec<Result<Payload, AckError>> {
        let payload = payload.into();
        let remote = (!self.local).then(|| {
            let id = self.hub().next_seq();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            lock(&self.io.gathers).insert(id, tx);
            self.hub().ensure_started();
            let ev = payload.clone().into_event(event);
            self.hub().publish_message(BrokerMessage::Select {
                node: self.hub().node_id().to_owned(),
                nsp: self.nsp.to_string(),
                rooms: self.sel.rooms.clone(),
                except_rooms: self.sel.except_rooms.clone(),
                except: self.sel.except.clone(),
                payload: protocol::encode(&protocol::Packet::Event(ev)),
                ack: Some((id, timeout.as_millis() as u64)),
            });
            (id, rx)
        });
        let sockets = self.sockets();
        let asks = sockets.iter().map(|s| s.emit_with_ack(event, payload.clone(), timeout));
        let mut answers = futures_util::future::join_all(asks).await;
        if let Some((id, mut rx)) = remote {
            let until = tokio::time::Instant::now() + REMOTE_MARGIN;
            while let Ok(Some(more)) = tokio::time::timeout_at(until, rx.recv()).await {
                answers.extend(answers_from_json(&more, timeout));
            }
            lock(&self.io.gathers).remove(&id);
        }
        answers
    }

    fn sockets(&self) -> Vec<Socket> {
        select_local(&self.io, &self.nsp, &self.sel)
            .iter()
            .filter_map(socket_of)
            .map(|shared| Socket { shared, io: self.io.clone() })
            .collect()
    }

    /// The selected sockets of this node.
    pub fn fetch_sockets(&self) -> Vec<Socket> {
        self.sockets()
    }

    /// Put the selected sockets of this node in `room`.
    pub async fn join(&self, room: &str) {
        for s in self.sockets() {
            let _ = s.join(room).await;
        }
    }

    /// Take the selected sockets of this node out of `room`.
    pub async fn leave(&self, room: &str) {
        for s in self.sockets() {
            let _ = s.leave(room).await;
        }
    }

    /// Disconnect the selected sockets of this node from the namespace.
    pub fn disconnect(&self) {
        for s in self.sockets() {
            s.disconnect();
        }
    }
}

/// How long a broadcast with acks waits for other nodes' answers after its
/// own sockets' timeout (their sockets have the same timeout).
const REMOTE_MARGIN: Duration = Duration::from_millis(500);

/// The answers of a node's sockets, for the node that asked.
pub(crate) fn answers_to_json(answers: &[Result<Payload, AckError>]) -> Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    Value::Array(
        answers
            .iter()
            .map(|a| match a {
                Ok(p) => serde_json::json!({
                    "args": p.args,
                    "bin": p.attachments.iter().map(|b| b64.encode(b)).collect::<Vec<_>>(),
                }),
                Err(e) => serde_json::json!({"error": e.to_string(), "timeout": matches!(e, AckError::Timeout(_))}),
            })
            .collect(),
    )
}

fn answers_from_json(v: &Value, timeout: Duration) -> Vec<Result<Payload, AckError>> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(list) = v.as_array() else { return Vec::new() };
    list.iter()
        .map(|a| {
            if let Some(args) = a.get("args").and_then(Value::as_array) {
                let bin = a.get("bin").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let attachments =
                    bin.iter().filter_map(|b| b64.decode(b.as_str()?).ok().map(Bytes::from)).collect::<Vec<_>>();
                Ok(Payload::with_attachments(args.clone(), attachments))
            } else if a.get("timeout").and_then(Value::as_bool) == Some(true) {
                Err(AckError::Timeout(timeout))
            } else {
                Err(AckError::Disconnected)
            }
        })
        .collect()
}

/// A broadcast with acks from another node: ask this node's selected
/// sockets, and send their answers back.
pub(crate) fn answer_broadcast(
    io: &Arc<Inner>,
    asker: String,
    id: u64,
    nsp: &str,
    sel: Selection,
    ev: EventPacket,
    timeout_ms: u64,
) {
    let sockets: Vec<Socket> = select_local(io, nsp, &sel)
        .iter()
        .filter_map(socket_of)
        .map(|shared| Socket { shared, io: io.clone() })
        .collect();
    let io = io.clone();
    tokio::spawn(async move {
        let payload = Payload::from_event(&ev);
        let timeout = Duration::from_millis(timeout_ms);
        let asks = sockets.iter().map(|s| s.emit_with_ack(&ev.event, payload.clone(), timeout));
        let answers = futures_util::future::join_all(asks).await;
        io.hub.publish_message(BrokerMessage::Answers {
            node: io.hub.node_id().to_owned(),
            to: asker,
            id,
            answers: answers_to_json(&answers),
        });
    });
}
