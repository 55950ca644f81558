//! One WebSocket connection of the hub: its packets in, read and dispatched
//! in its task; its packets out, pushed by anyone to its
//! [`wsx::server::Outbox`] and written by its [`wsx::server::Pump`] (with
//! the slow-consumer rule of the server layer). Keepalive and close
//! requests are the WebSocket's own ([`wsx::Config::with_keepalive`],
//! [`wsx::CloseHandle`]); the rate limit and the bad-frame limit are the
//! hub's.

use crate::hub::{refusal, unknown_event, Ctx, Event, Hub, Speaks};
use crate::metrics::Metrics;
use crate::policy::TokenBucket;
use crate::presence::PresenceMode;
use crate::protocol::{
    self, codes, AckPacket, ConnId, DecodeError, ErrorBody, EventPacket, MembersRequest, Packet, RoomRequest, Welcome,
};
use futures_util::FutureExt;
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use wsx::server::{Outbox, Pump};
use wsx::{CloseCode, CloseHandle, Message, WebSocket};

/// A registered connection: unregistered when dropped, even when the task
/// is dropped mid-way (a shutdown that timed out).
struct Registered<'a> {
    hub: &'a Hub,
    conn: ConnId,
    done: bool,
}

impl Registered<'_> {
    /// Leave the rooms (the others are told) and fail pending requests.
    async fn unregister(mut self) {
        self.done = true;
        // Boxed: once per connection, and its state would otherwise size
        // every connection's task for its whole life.
        Box::pin(self.hub.unregister(&self.conn)).await;
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if !self.done {
            let (hub, conn) = (self.hub.clone(), std::mem::take(&mut self.conn));
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { hub.unregister(&conn).await });
            }
        }
    }
}

/// Run an accepted connection until it ends.
///
/// Not an `async fn`: one would keep its arguments (the WebSocket, the
/// id, the metadata) beside what they became (the pump, the registry's
/// entry) in the connection's task for its whole life. The task holds what
/// the `async` block takes; the metadata stays in the registry, where the
/// rare handler that needs it finds it.
pub(crate) fn run<'a, S>(
    hub: &'a Hub,
    ws: WebSocket<S>,
    conn: ConnId,
    meta: Value,
    peer: Option<SocketAddr>,
) -> impl std::future::Future<Output = ()> + Send + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'a,
{
    let (outbox, rx) = Outbox::new(hub.inner.s.outbox);
    let mut pump = Pump::new(ws, rx);
    let close = pump.websocket().close_handle();
    let welcome = Welcome { version: protocol::VERSION, conn: conn.clone(), meta };
    hub.push_packet(&outbox, &Packet::Welcome(welcome.clone()));
    hub.register(&conn, outbox.clone(), Speaks::Hub(close.clone()), welcome.meta, peer);
    tracing::debug!(conn, ?peer, "connected");
    let registered = Registered { hub, conn, done: false };
    if hub.is_shutting_down() {
        close.close(CloseCode::GoingAway, "server shutting down");
    }
    async move {
        let closing = drive(hub, &mut pump, &registered.conn, &outbox, &close).await;
        // Gone for everyone else as soon as its close frame arrives...
        tracing::debug!(conn = registered.conn, "disconnected");
        registered.unregister().await;
        // ...while the closing handshake finishes (bounded by the close
        // timeout).
        if closing {
            while pump.recv().await.is_some() {}
        }
    }
}

/// Serve the connection; whether it ended with the peer's close frame (the
/// closing handshake still has to finish).
///
/// Not an `async fn` (which keeps its arguments twice), and a message and
/// its packet are gone before any wait: what is held across a wait is held
/// by every connection for its whole life.
fn drive<'a, S>(
    hub: &'a Hub,
    pump: &'a mut Pump<S>,
    conn: &'a str,
    outbox: &'a Outbox,
    close: &'a CloseHandle,
) -> impl Future<Output = bool> + Send + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut state = State { bucket: hub.inner.s.rate_limit.map(TokenBucket::new), bad_frames: 0, worker: None };
    async move {
        loop {
            let msg = match pump.recv().await {
                None => return false,
                Some(Err(e)) => {
                    tracing::debug!(conn, error = %e, "connection failed");
                    return false;
                }
                Some(Ok(Message::Close(_))) => return true,
                Some(Ok(msg)) => msg,
            };
            let wait = on_message(hub, conn, outbox, close, msg, &mut state);
            if let Some(wait) = wait {
                // Not through the wait with the last read's buffers: in a
                // burst of joins every connection waits at once.
                pump.websocket().release_buffers();
                wait.await;
            }
        }
    }
}

/// A boxed wait (a full handler queue, a room request that asks the
/// broker).
type Wait<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a connection keeps from one message to the next.
struct State {
    /// Its rate limit, if the hub has one.
    bucket: Option<TokenBucket>,
    /// Invalid frames so far.
    bad_frames: u32,
    /// The queue to its event handlers, once it sent an event.
    worker: Option<mpsc::Sender<EventPacket>>,
}

/// Act on a message from the client: what must still be waited for comes
/// back boxed.
fn on_message<'a>(
    hub: &'a Hub,
    conn: &'a str,
    outbox: &'a Outbox,
    close: &CloseHandle,
    msg: Message,
    state: &mut State,
) -> Option<Wait<'a>> {
    let (s, m) = (&hub.inner.s, &hub.inner.metrics);
    if !(msg.is_text() || msg.is_binary()) || close.is_requested() {
        return None;
    }
    hub.count_received(msg.len() as u64);
    if let Some(b) = &mut state.bucket {
        if !b.take(Instant::now()) {
            Metrics::inc(&m.rate_limited);
            close.close(CloseCode::PolicyViolation, "rate limit exceeded");
            return None;
        }
    }
    // Frames that are not packets a client may send (malformed ones,
    // unknown types, server-only types) count toward the bad-frame limit;
    // refusals of valid packets (`not_member`, `room_full`...) do not.
    let (id, code, message) = match protocol::decode_message(&msg) {
        None => return None,
        Some(Ok(p @ (Packet::Welcome(_) | Packet::Presence(_) | Packet::Error(_)))) => {
            (p.id(), codes::UNKNOWN_TYPE, "only servers send this packet type".to_owned())
        }
        Some(Ok(p)) => return on_packet(hub, conn, outbox, p, &mut state.worker),
        Some(Err(e)) => {
            let code = match e {
                DecodeError::UnknownType(_) => codes::UNKNOWN_TYPE,
                _ => codes::BAD_FRAME,
            };
            (protocol::salvage_message_id(&msg), code, e.to_string())
        }
    };
    Metrics::inc(&m.bad_frames);
    state.bad_frames += 1;
    if state.bad_frames > s.max_bad_frames {
        close.close(CloseCode::PolicyViolation, "too many invalid frames");
    } else {
        hub.push_packet(outbox, &refusal(id, ErrorBody::new(code, message)));
    }
    None
}

/// Act on a packet from the client; what must still be waited for (a full
/// handler queue, a room request that asks the broker) comes back boxed.
/// A connection's task is as large as its largest state, for its whole
/// life: the rare waits with large states must not be part of it.
fn on_packet<'a>(
    hub: &'a Hub,
    conn: &'a str,
    outbox: &'a Outbox,
    p: Packet,
    worker: &mut Option<mpsc::Sender<EventPacket>>,
) -> Option<Wait<'a>> {
    let reply = |p: Packet| hub.push_packet(outbox, &p);
    match p {
        Packet::Event(ev) => {
            if hub.inner.handlers.contains_key(&ev.event) {
                let tx = worker.get_or_insert_with(|| spawn_worker(hub.clone(), conn, outbox.clone()));
                if let Err(mpsc::error::TrySendError::Full(ev)) = tx.try_send(ev) {
                    let tx = tx.clone();
                    return Some(Box::pin(async move {
                        let _ = tx.send(ev).await;
                    }));
                }
            } else {
                reply(unknown_event(ev.id, &ev.event));
            }
        }
        Packet::Publish(pb) => {
            let member = hub.is_member(conn, &pb.room);
            if !hub.inner.s.client_publish {
                reply(refusal(pb.id, ErrorBody::new(codes::FORBIDDEN, "clients may not publish")));
            } else if !member {
                reply(refusal(pb.id, ErrorBody::new(codes::NOT_MEMBER, format!("join {:?} first", pb.room))));
            } else {
                let ev = EventPacket {
                    event: pb.event,
                    data: pb.data,
                    id: None,
                    room: None,
                    from: None,
                    attachments: pb.attachments,
                    spread: false,
                };
                hub.publish_from(&pb.room, ev, conn, pb.echo);
                if let Some(id) = pb.id {
                    reply(Packet::Ack(AckPacket { id, result: Ok(Value::Null) }));
                }
            }
        }
        Packet::Ack(a) => hub.on_ack(conn, a),
        // Each with no more state than its own: in a burst of joins every
        // connection holds one while it waits.
        Packet::Join(r) => return Some(Box::pin(on_join(hub, conn, outbox, r))),
        Packet::Leave(r) => return Some(Box::pin(on_leave(hub, conn, outbox, r))),
        Packet::Members(q) => return Some(Box::pin(on_members(hub, conn, outbox, q))),
        // Refused as invalid frames by `drive`.
        Packet::Welcome(_) | Packet::Presence(_) | Packet::Error(_) => {}
    }
    None
}

/// Not an `async fn`, which would hold its arguments twice: in a burst of
/// joins every joining connection holds this.
#[allow(clippy::manual_async_fn)]
fn on_join<'a>(
    hub: &'a Hub,
    conn: &'a str,
    outbox: &'a Outbox,
    r: RoomRequest,
) -> impl Future<Output = ()> + Send + 'a {
    async move {
        let subscribed = match hub.join_now(conn, &r.room) {
            Ok(s) => s,
            Err(e) => return hub.push_packet(outbox, &refusal(r.id, e.body())),
        };
        if let Some(subscribed) = subscribed {
            // Receive what other nodes publish before answering.
            subscribed.await;
        }
        if let Some(id) = r.id {
            let answer = to_value(&*hub.join_answer(&r.room).await);
            hub.push_packet(outbox, &Packet::Ack(AckPacket { id, result: Ok(answer) }));
        }
    }
}

async fn on_leave(hub: &Hub, conn: &str, outbox: &Outbox, r: RoomRequest) {
    match hub.leave(conn, &r.room).await {
        Ok(()) => {
            if let Some(id) = r.id {
                hub.push_packet(outbox, &Packet::Ack(AckPacket { id, result: Ok(Value::Null) }));
            }
        }
        Err(e) => hub.push_packet(outbox, &refusal(r.id, e.body())),
    }
}

async fn on_members(hub: &Hub, conn: &str, outbox: &Outbox, q: MembersRequest) {
    let member = hub.is_member(conn, &q.room);
    let result = if !member {
        Err(ErrorBody::new(codes::NOT_MEMBER, format!("join {:?} first", q.room)))
    } else if hub.inner.s.presence.mode(&q.room) != PresenceMode::Names {
        Err(ErrorBody::new(codes::FORBIDDEN, "this room's member list is not shown"))
    } else {
        let limit = q.limit.unwrap_or(protocol::DEFAULT_PAGE) as usize;
        let page = hub.members_page(&q.room, q.after.as_deref(), limit).await;
        Ok(to_value(page))
    };
    hub.push_packet(outbox, &Packet::Ack(AckPacket { id: q.id, result }));
}

fn to_value(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The task that runs a connection's handlers, one event at a time, in
/// order. Acks are routed by the connection task itself, so a handler can
/// wait for an ack from its own client.
fn spawn_worker(hub: Hub, conn: &str, outbox: Outbox) -> mpsc::Sender<EventPacket> {
    let (tx, mut rx) = mpsc::channel::<EventPacket>(64);
    let meta = hub.lock().conns.get(conn).map(|e| e.meta.clone()).unwrap_or_default();
    let ctx = Ctx { hub, conn: conn.to_owned(), meta };
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let Some(handler) = ctx.hub.inner.handlers.get(&ev.event).cloned() else { continue };
            let id = ev.id;
            let name = ev.event.clone();
            let result = match AssertUnwindSafe(handler(ctx.clone(), Event::from(ev))).catch_unwind().await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(e.into_body()),
                Err(_) => {
                    tracing::error!(event = name, "event handler panicked");
                    Err(ErrorBody::new(codes::HANDLER_ERROR, "the handler failed"))
                }
            };
            match (id, result) {
                (Some(id), result) => ctx.hub.push_packet(&outbox, &Packet::Ack(AckPacket { id, result })),
                (None, Err(e)) => ctx.hub.push_packet(&outbox, &refusal(None, e)),
                (None, Ok(_)) => {}
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    /// A connection's task is as large as its largest state, for as long
    /// as it lives: the waits with large states (room requests, a full
    /// handler queue, leaving the rooms) run boxed, no message or packet is
    /// held across a wait, and the arguments are not kept beside what they
    /// became (368 bytes; the test allows 400).
    #[tokio::test]
    async fn a_connections_task_state_stays_small() {
        let hub = crate::Hub::builder().build();
        let (io, _peer) = tokio::io::duplex(64);
        let ws = wsx::WebSocket::from_raw(io, wsx::Role::Server, &wsx::Config::default(), &[]);
        let task = super::run(&hub, ws, "n.1".into(), serde_json::Value::Null, None);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 400, "a connection's state is {size} bytes");
    }

    /// In a burst of joins every joining connection holds its join's wait
    /// at once (boxed, beside its task): the wait and a few references
    /// (296 bytes; the test allows 320).
    #[tokio::test]
    async fn a_waiting_join_stays_small() {
        let hub = crate::Hub::builder().build();
        let (outbox, _rx) = wsx::server::Outbox::new(wsx::server::OutboxConfig::default());
        let r = crate::protocol::RoomRequest { room: "r".into(), id: Some(1) };
        let join = super::on_join(&hub, "n.1", &outbox, r);
        let size = std::mem::size_of_val(&join);
        assert!(size <= 320, "a waiting join is {size} bytes");
    }
}
