//! A socket: one client in one namespace, on an Engine.IO session that it
//! shares with the client's other namespaces.

use super::broadcast::Operator;
use super::engine::{CloseReason, Closer, Transport};
use super::namespace::{DisconnectReason, Handshake};
use super::packet::Packet;
use super::payload::Payload;
use super::Inner;
use crate::error::{AckError, HubError};
use crate::hub::Hub;
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::oneshot;
use wsx::server::Outbox;
use wsx::Message;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the sockets of one Engine.IO session share: its outgoing queue,
/// its closer, and the acks it waits for.
pub(crate) struct SessionShared {
    pub(crate) outbox: Outbox,
    pub(crate) closer: Closer,
    pub(crate) transport: AtomicU8,
    /// Ack id → who waits for the client's answer.
    pub(crate) acks: Mutex<HashMap<u64, oneshot::Sender<Payload>>>,
    /// Held while the frames of one packet are queued, so that the
    /// attachments of two binary packets never interleave.
    pub(crate) sending: Mutex<()>,
}

impl SessionShared {
    /// Queue a packet's frames.
    pub(crate) fn send(&self, p: &Packet, droppable: bool) -> bool {
        self.send_frames(p.to_frames(), droppable)
    }

    /// Queue the frames of one packet: a binary packet's attachments
    /// follow its header (only Engine.IO's own pings may come between,
    /// which the client's Socket.IO layer never sees), and are never
    /// dropped apart from it.
    pub(crate) fn send_frames(&self, frames: Vec<Message>, droppable: bool) -> bool {
        use wsx::server::Push;
        let ok = |p: Push| matches!(p, Push::Queued | Push::Dropped(_));
        if frames.len() == 1 {
            let f = frames.into_iter().next().unwrap_or_else(|| Message::text(""));
            return ok(if droppable { self.outbox.push_droppable(f) } else { self.outbox.push(f) });
        }
        let _one_at_a_time = lock(&self.sending);
        frames.into_iter().all(|f| ok(self.outbox.push(f)))
    }
}

/// A socket's state, shared by its handles and the hub's registry.
pub(crate) struct SocketShared {
    pub(crate) id: String,
    pub(crate) nsp: Arc<str>,
    pub(crate) session: Arc<SessionShared>,
    pub(crate) handshake: Arc<Handshake>,
    pub(crate) data: Mutex<Value>,
    pub(crate) connected: AtomicBool,
    pub(crate) recovered: bool,
    /// The private id of connection state recovery (never shown to
    /// others).
    pub(crate) pid: Option<String>,
    pub(crate) io: Weak<Inner>,
}

impl SocketShared {
    /// The server disconnects the socket from its namespace: the client
    /// gets DISCONNECT. Whether it was connected.
    pub(crate) fn disconnect_by_server(self: &Arc<Self>) -> bool {
        if !self.connected.load(Ordering::Acquire) {
            return false;
        }
        self.session.send(&Packet::disconnect(&self.nsp), false);
        if let Some(io) = self.io.upgrade() {
            let this = self.clone();
            tokio::spawn(async move {
                super::session::leave(&io, &this, DisconnectReason::ServerNamespaceDisconnect).await
            });
        }
        true
    }
}

/// A client connected to a namespace. Cheap to clone.
#[derive(Clone)]
pub struct Socket {
    pub(crate) shared: Arc<SocketShared>,
    pub(crate) hub: Hub,
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
            Operator::new(self.hub.clone(), self.shared.nsp.clone()).to(&self.shared.id).local().emit(event, payload);
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
        let id = self.hub.next_seq();
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
        self.hub.join_quiet(&self.shared.id, &super::hub_room(&self.shared.nsp, room)).await
    }

    /// Take the socket out of a room.
    pub async fn leave(&self, room: &str) -> Result<(), HubError> {
        self.hub.leave(&self.shared.id, &super::hub_room(&self.shared.nsp, room)).await
    }

    /// The rooms it is in (not counting the room of its own id).
    pub fn rooms(&self) -> Vec<String> {
        let st = self.hub.lock();
        let Some(e) = st.conns.get(&self.shared.id) else { return Vec::new() };
        e.rooms.iter().filter_map(|r| super::sio_room(&self.shared.nsp, r).map(str::to_owned)).collect()
    }

    /// Everyone in `room` but this socket.
    pub fn to(&self, room: &str) -> Operator {
        self.broadcast().to(room)
    }

    /// Everyone in the namespace but this socket (add rooms with
    /// [`Operator::to`]).
    pub fn broadcast(&self) -> Operator {
        Operator::new(self.hub.clone(), self.shared.nsp.clone()).except_socket(&self.shared.id)
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
        let s = &self.socket;
        if s.connected.load(Ordering::Acquire) {
            s.session.send(&Packet::ack(&s.nsp, self.id, p.args, p.attachments), false);
        }
    }
}
