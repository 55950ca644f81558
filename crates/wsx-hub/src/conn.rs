//! One WebSocket connection of the hub: a single task that moves the
//! outgoing queue into the socket as fast as it drains, reads and
//! dispatches packets, sends keepalive pings, enforces the rate limit and
//! the idle timeout, and closes when asked.

use crate::hub::{refusal, unknown_event, Ctx, Event, Hub};
use crate::metrics::Metrics;
use crate::policy::TokenBucket;
use crate::protocol::{
    self, codes, AckPacket, ConnId, DecodeError, ErrorBody, EventPacket, Packet, Welcome, SUBPROTOCOL,
};
use crate::queue::{Next, OutQueue};
use futures_util::{FutureExt, Sink};
use serde_json::{json, Value};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use wsx::{CloseCode, Message, WebSocket};

/// Messages move from the queue to the socket's write buffer only while it
/// holds less than this; beyond, they wait in the queue, where the
/// slow-consumer policy applies.
const WRITE_HWM: usize = 64 << 10;

enum Step {
    In(Option<wsx::Result<Message>>),
    Close(CloseCode, String),
    Tick,
}

/// Run an accepted connection until it ends.
pub(crate) async fn run<S>(
    hub: &Hub,
    ws: WebSocket<S>,
    conn: ConnId,
    meta: Value,
    peer: Option<SocketAddr>,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    debug_assert_eq!(ws.protocol(), Some(SUBPROTOCOL));
    let _live = hub.live_guard();
    let s = &hub.inner.s;
    let queue = Arc::new(OutQueue::new(s.queue_capacity, s.slow_consumer));
    let welcome = Welcome { version: protocol::VERSION, conn: conn.clone(), meta: meta.clone() };
    hub.push_packet(&queue, &Packet::Welcome(welcome));
    hub.register(&conn, queue.clone(), meta.clone(), peer);
    tracing::debug!(conn, ?peer, "connected");
    if hub.is_shutting_down() {
        queue.close(CloseCode::GoingAway, "server shutting down");
    }
    let mut hard_stop = hub.inner.hard_stop.subscribe();
    let closing = tokio::select! {
        ws = drive(hub, ws, &conn, &meta, &queue) => ws,
        _ = crate::hub::flag_set(&mut hard_stop) => None,
    };
    // Gone for everyone else as soon as its close frame arrives...
    hub.unregister(&conn).await;
    tracing::debug!(conn, "disconnected");
    drop(permit);
    // ...while the closing handshake finishes (bounded by the close timeout).
    if let Some(mut ws) = closing {
        tokio::select! {
            _ = async { while ws.recv().await.is_some() {} } => {}
            _ = crate::hub::flag_set(&mut hard_stop) => {}
        }
    }
}

/// Serve the connection; returns it when the peer's close frame arrived
/// (the closing handshake still has to finish).
async fn drive<S>(
    hub: &Hub,
    mut ws: WebSocket<S>,
    conn: &str,
    meta: &Value,
    queue: &Arc<OutQueue>,
) -> Option<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let s = &hub.inner.s;
    let m = &hub.inner.metrics;
    let mut bucket = s.rate_limit.map(TokenBucket::new);
    let start = tokio::time::Instant::now() + s.ping_interval;
    let mut ping = tokio::time::interval_at(start, s.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rx = Instant::now();
    let mut bad_frames = 0u32;
    let mut worker: Option<mpsc::Sender<EventPacket>> = None;
    let mut closing = false;
    loop {
        let step = poll_fn(|cx| {
            if !closing {
                loop {
                    match queue.poll_next(cx, ws.buffered_amount() < WRITE_HWM) {
                        Poll::Ready(Next::Close(code, reason)) => return Poll::Ready(Step::Close(code, reason)),
                        Poll::Ready(Next::Msg(msg)) => {
                            Metrics::inc(&m.messages_out);
                            Metrics::add(&m.bytes_out, msg.len() as u64);
                            if Pin::new(&mut ws).start_send(msg).is_err() {
                                break;
                            }
                        }
                        Poll::Pending => break,
                    }
                }
            }
            if ws.buffered_amount() > 0 {
                let _ = Pin::new(&mut ws).poll_flush(cx);
            }
            if let Poll::Ready(r) = ws.poll_recv(cx) {
                return Poll::Ready(Step::In(r));
            }
            if ping.poll_tick(cx).is_ready() {
                return Poll::Ready(Step::Tick);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::In(None) => return None,
            Step::In(Some(Err(e))) => {
                tracing::debug!(conn, error = %e, "connection failed");
                return None;
            }
            Step::In(Some(Ok(Message::Close(_)))) => return Some(ws),
            Step::In(Some(Ok(msg))) => {
                let now = Instant::now();
                last_rx = now;
                if !(msg.is_text() || msg.is_binary()) || closing {
                    continue;
                }
                Metrics::inc(&m.messages_in);
                Metrics::add(&m.bytes_in, msg.len() as u64);
                if let Some(b) = &mut bucket {
                    if !b.take(now) {
                        Metrics::inc(&m.rate_limited);
                        queue.close(CloseCode::PolicyViolation, "rate limit exceeded");
                        continue;
                    }
                }
                match protocol::decode_message(&msg) {
                    Some(Ok(p)) => on_packet(hub, conn, meta, queue, p, &mut worker).await,
                    Some(Err(e)) => {
                        Metrics::inc(&m.bad_frames);
                        bad_frames += 1;
                        if bad_frames > s.max_bad_frames {
                            queue.close(CloseCode::PolicyViolation, "too many invalid frames");
                        } else {
                            let code = match e {
                                DecodeError::UnknownType(_) => codes::UNKNOWN_TYPE,
                                _ => codes::BAD_FRAME,
                            };
                            let id = msg.as_text().and_then(protocol::salvage_id);
                            hub.push_packet(queue, &refusal(id, ErrorBody::new(code, e.to_string())));
                        }
                    }
                    None => {}
                }
            }
            Step::Close(code, reason) => {
                closing = true;
                tracing::debug!(conn, %code, reason, "closing");
                match tokio::time::timeout(s.config.close_timeout(), ws.close(code, &reason)).await {
                    Ok(Ok(())) => {} // read until the peer's close (bounded by the close timeout)
                    _ => return None,
                }
            }
            Step::Tick => {
                if last_rx.elapsed() >= s.idle_timeout {
                    queue.close(CloseCode::GoingAway, "idle timeout");
                } else if !closing {
                    let _ = Pin::new(&mut ws).start_send(Message::Ping(wsx::Bytes::new()));
                }
            }
        }
    }
}

async fn on_packet(
    hub: &Hub,
    conn: &str,
    meta: &Value,
    queue: &Arc<OutQueue>,
    p: Packet,
    worker: &mut Option<mpsc::Sender<EventPacket>>,
) {
    let reply = |p: Packet| hub.push_packet(queue, &p);
    match p {
        Packet::Event(ev) => {
            if hub.inner.handlers.contains_key(&ev.event) {
                let tx = worker.get_or_insert_with(|| spawn_worker(hub.clone(), conn, meta, queue.clone()));
                let _ = tx.send(ev).await;
            } else {
                reply(unknown_event(ev.id, &ev.event));
            }
        }
        Packet::Publish(pb) => {
            let member = hub.lock().conns.get(conn).is_some_and(|e| e.rooms.contains(&pb.room));
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
                };
                hub.publish_from(&pb.room, ev, conn, pb.echo);
                if let Some(id) = pb.id {
                    reply(Packet::Ack(AckPacket { id, result: Ok(Value::Null) }));
                }
            }
        }
        Packet::Ack(a) => hub.on_ack(conn, a),
        Packet::Join(r) => match hub.join(conn, &r.room).await {
            Ok(members) => {
                if let Some(id) = r.id {
                    reply(Packet::Ack(AckPacket { id, result: Ok(json!({"room": r.room, "members": members})) }));
                }
            }
            Err(e) => reply(refusal(r.id, e.body())),
        },
        Packet::Leave(r) => match hub.leave(conn, &r.room).await {
            Ok(()) => {
                if let Some(id) = r.id {
                    reply(Packet::Ack(AckPacket { id, result: Ok(Value::Null) }));
                }
            }
            Err(e) => reply(refusal(r.id, e.body())),
        },
        other @ (Packet::Welcome(_) | Packet::Presence(_) | Packet::Error(_)) => {
            reply(refusal(other.id(), ErrorBody::new(codes::UNKNOWN_TYPE, "only servers send this packet type")));
        }
    }
}

/// The task that runs a connection's handlers, one event at a time, in
/// order. Acks are routed by the connection task itself, so a handler can
/// wait for an ack from its own client.
fn spawn_worker(hub: Hub, conn: &str, meta: &Value, queue: Arc<OutQueue>) -> mpsc::Sender<EventPacket> {
    let (tx, mut rx) = mpsc::channel::<EventPacket>(64);
    let ctx = Ctx { hub, conn: conn.to_owned(), meta: meta.clone() };
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
                (Some(id), result) => ctx.hub.push_packet(&queue, &Packet::Ack(AckPacket { id, result })),
                (None, Err(e)) => ctx.hub.push_packet(&queue, &refusal(None, e)),
                (None, Ok(_)) => {}
            }
        }
    });
    tx
}
