//! One Engine.IO session of the Socket.IO server, in its own task: it
//! reads the client's packets, connects it to namespaces (middlewares,
//! state recovery), dispatches events and acks, and when the session
//! ends takes every socket out of its namespace.

use super::connect::{DisconnectReason, Handshake};
use super::engine::{CloseReason, EngineSocket, Incoming, Transport};
use super::packet::{Decoder, Packet, PacketType};
use super::payload::Payload;
use super::socket::{Received, Socket};
use super::state::{lock, SessionShared, SocketShared};
use super::Inner;
use crate::hub::{OtherWire, Speaks};
use crate::protocol::AckPacket;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Run `fut` at once, on this task, as far as it goes without waiting;
/// spawn the rest. Handlers of one socket so start in the order of their
/// events, and one that awaits (a request to the client, a join that waits
/// for the broker) does not hold up the session's next packets.
pub(crate) fn run_now<F: Future<Output = ()> + Send + 'static>(fut: F) {
    let mut fut = Box::pin(fut);
    let mut cx = Context::from_waker(Waker::noop());
    if fut.as_mut().poll(&mut cx) == Poll::Pending {
        // The task polls it again at once and registers its own waker.
        tokio::spawn(fut);
    }
}

fn transport_code(t: Transport) -> u8 {
    match t {
        Transport::WebSocket => 1,
        _ => 0,
    }
}

fn reason_of(r: Option<CloseReason>) -> DisconnectReason {
    match r {
        // The client's close packet: "transport close" upstream.
        Some(CloseReason::ClientClose) | Some(CloseReason::TransportClose) | None => DisconnectReason::TransportClose,
        Some(CloseReason::PingTimeout) => DisconnectReason::PingTimeout,
        Some(CloseReason::ParseError) | Some(CloseReason::PayloadTooLarge) => DisconnectReason::ParseError,
        Some(CloseReason::TransportError) => DisconnectReason::TransportError,
        Some(CloseReason::ServerShutdown) => DisconnectReason::ServerShuttingDown,
        Some(CloseReason::SlowConsumer) => DisconnectReason::SlowConsumer,
        Some(CloseReason::ServerClose) => DisconnectReason::ForcedClose,
    }
}

/// Serve one session until it closes.
pub(crate) async fn run(io: Arc<Inner>, mut es: EngineSocket) {
    let transport = transport_code(es.transport());
    let session = Arc::new(SessionShared::new(io.hub.clone(), es.outbox().clone(), es.closer(), transport));
    let mut sockets: HashMap<String, Arc<SocketShared>> = HashMap::new();
    let mut decoder = Decoder::new(io.limits);
    // A client that connects to no namespace in time is closed.
    let connect_by = tokio::time::sleep(io.connect_timeout);
    tokio::pin!(connect_by);
    let mut waiting_for_connect = true;
    loop {
        let incoming = tokio::select! {
            m = es.recv() => m,
            () = session.kick.notified() => {
                // Sockets the server disconnected from their namespace.
                let kicked = std::mem::take(&mut *lock(&session.kicked));
                for nsp in kicked {
                    if let Some(s) = sockets.remove(&*nsp) {
                        leave(&io, &s, DisconnectReason::ServerNamespaceDisconnect).await;
                    }
                }
                continue;
            }
            () = &mut connect_by, if waiting_for_connect => {
                waiting_for_connect = false;
                tracing::debug!(sid = es.sid(), "no CONNECT in time: closing");
                session.closer.close(CloseReason::ServerClose);
                continue;
            }
        };
        let Some(incoming) = incoming else { break };
        session.transport.store(transport_code(es.transport()), Ordering::Relaxed);
        let decoded = match incoming {
            Incoming::Text(t) => {
                io.hub.count_received(t.len() as u64);
                decoder.decode_text(t.as_str())
            }
            Incoming::Binary(b) => {
                io.hub.count_received(b.len() as u64);
                decoder.decode_binary(b)
            }
        };
        let p = match decoded {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(sid = es.sid(), error = %e, "not a Socket.IO packet: closing");
                session.closer.close(CloseReason::ParseError);
                continue;
            }
        };
        match p.kind {
            PacketType::Connect => {
                connect(&io, &session, &mut sockets, &es, p).await;
                waiting_for_connect &= sockets.is_empty();
            }
            PacketType::Disconnect => {
                if let Some(s) = sockets.remove(&p.nsp) {
                    leave(&io, &s, DisconnectReason::ClientNamespaceDisconnect).await;
                }
            }
            PacketType::Event => {
                if let Some(s) = live(&mut sockets, &p.nsp) {
                    dispatch(&io, s, p);
                }
            }
            PacketType::Ack => {
                let payload = Payload::with_attachments(args_of(p.data), p.attachments);
                let waiting = p.id.and_then(|id| lock(&session.acks).remove(&id));
                match (waiting, p.id, live(&mut sockets, &p.nsp)) {
                    (Some(tx), _, _) => {
                        let _ = tx.send(payload);
                    }
                    // An answer to a request of the hub API (`Hub::request`).
                    (None, Some(id), Some(s)) => {
                        let value = match payload.args.len() {
                            1 => payload.args.into_iter().next().unwrap_or(Value::Null),
                            _ => Value::Array(payload.args),
                        };
                        io.hub.on_ack(&s.id, AckPacket { id, result: Ok(value) });
                    }
                    _ => {}
                }
            }
            PacketType::ConnectError => {
                tracing::debug!(sid = es.sid(), "a client sent CONNECT_ERROR: closing");
                session.closer.close(CloseReason::ParseError);
            }
        }
    }
    let reason = reason_of(es.close_reason());
    for (_, s) in sockets {
        leave(&io, &s, reason).await;
    }
    // Whoever waits for an ack of this session hears it is gone.
    lock(&session.acks).clear();
}

/// The socket of `nsp`, if it is still connected (the server may have
/// disconnected it from elsewhere).
fn live<'a>(sockets: &'a mut HashMap<String, Arc<SocketShared>>, nsp: &str) -> Option<&'a Arc<SocketShared>> {
    if sockets.get(nsp).is_some_and(|s| !s.connected.load(Ordering::Acquire)) {
        sockets.remove(nsp);
    }
    sockets.get(nsp)
}

fn args_of(data: Option<Value>) -> Vec<Value> {
    match data {
        Some(Value::Array(a)) => a,
        Some(v) => vec![v],
        None => Vec::new(),
    }
}

/// A CONNECT: the namespace, state recovery, the middlewares, then the
/// answer and the connection hook.
async fn connect(
    io: &Arc<Inner>,
    session: &Arc<SessionShared>,
    sockets: &mut HashMap<String, Arc<SocketShared>>,
    es: &EngineSocket,
    p: Packet,
) {
    let nsp_name = p.nsp;
    if live(sockets, &nsp_name).is_some() {
        tracing::debug!(nsp = nsp_name, "CONNECT to a namespace the client is in: ignored");
        return;
    }
    let Some(ns) = io.namespace(&nsp_name) else {
        session.send(&Packet::connect_error(&nsp_name, "Invalid namespace", None), false);
        return;
    };
    let auth = match p.data {
        Some(v @ Value::Object(_)) => v,
        _ => json!({}),
    };
    // Kept here (its rooms held here), or handed over by the node that
    // kept it.
    let mut restored = None;
    let mut held_here = false;
    let asked = (auth.get("pid").and_then(Value::as_str), auth.get("offset").and_then(Value::as_str));
    if let (Some(rec), (Some(pid), Some(offset))) = (&io.recovery, asked) {
        restored = rec.restore(&io.hub, pid, offset, &nsp_name).map(|r| (pid.to_owned(), r));
        held_here = restored.is_some();
        if restored.is_none() {
            restored = super::recovery::restore_remote(io, pid, offset, &nsp_name).await.map(|r| (pid.to_owned(), r));
        }
        tracing::debug!(pid, offset, nsp = nsp_name, recovered = restored.is_some(), held_here, "state recovery asked");
    }
    let hs = Arc::new(Handshake { namespace: nsp_name.clone(), auth, request: es.head().clone() });
    if restored.is_none() || !io.skip_middlewares {
        if let Err(e) = ns.admit(&hs).await {
            session.send(&Packet::connect_error(&nsp_name, &e.message, e.data.clone()), false);
            return;
        }
    }
    let hub = &io.hub;
    let (id, data, rooms, missed, pid) = match restored {
        // The client knows it recovered by getting its private id back.
        Some((pid, (saved, missed))) => (saved.id, saved.data, saved.rooms, missed, Some(pid)),
        None => (format!("{}.{}", hub.node_id(), hub.next_seq()), Value::Null, Default::default(), Vec::new(), None),
    };
    let recovered = pid.is_some();
    let shared = Arc::new(SocketShared {
        id: id.clone(),
        nsp: nsp_name.as_str().into(),
        session: session.clone(),
        handshake: hs,
        data: Mutex::new(data),
        connected: AtomicBool::new(true),
        recovered,
        pid: io.recovery.as_ref().map(|_| pid.unwrap_or_else(super::random_id)),
    });
    hub.register(&id, session.outbox.clone(), Speaks::Other(shared.clone()), Value::Null, es.head().peer());
    let mut answer = json!({"sid": id});
    if let Some(pid) = &shared.pid {
        answer["pid"] = Value::String(pid.clone());
    }
    session.send(&Packet::connect(&nsp_name, Some(answer)), false);
    for room in &rooms {
        let _ = hub.join(&id, room).await;
    }
    if held_here {
        // Joined again: the session no longer holds its rooms.
        for room in &rooms {
            hub.hold_room(room, false);
        }
    }
    for (offset, ev) in &missed {
        shared.send(&shared.encode(ev, Some(offset)), false);
    }
    sockets.insert(nsp_name, shared.clone());
    if let Some(f) = &ns.on_connect {
        run_now(f(Socket { shared, io: io.clone() }));
    }
}

/// An EVENT for a connected socket: its handler, started now.
fn dispatch(io: &Arc<Inner>, s: &Arc<SocketShared>, p: Packet) {
    let mut args = args_of(p.data).into_iter();
    let Some(Value::String(name)) = args.next() else { return };
    let Some(ns) = io.namespace(&s.nsp) else { return };
    let Some(handler) = ns.handler(&name).cloned() else {
        tracing::debug!(event = name, nsp = &*s.nsp, "no handler for the event");
        return;
    };
    let received = Received {
        name,
        payload: Payload::with_attachments(args.collect(), p.attachments),
        ack: p.id.map(|id| (id, s.clone())),
    };
    let socket = Socket { shared: s.clone(), io: io.clone() };
    run_now(async move {
        if let Err(e) = handler(socket, received).await {
            tracing::warn!(error = %e, "Socket.IO event handler failed");
        }
    });
}

/// Take a socket out of its namespace (once): keep its state for
/// recovery when it lost its connection, leave its rooms, and run the
/// namespace's disconnection hook.
pub(crate) async fn leave(io: &Arc<Inner>, s: &Arc<SocketShared>, reason: DisconnectReason) {
    if !s.connected.swap(false, Ordering::AcqRel) {
        return;
    }
    tracing::debug!(id = s.id, nsp = &*s.nsp, %reason, "socket left its namespace");
    if let (true, Some(rec), Some(pid)) = (reason.recoverable(), &io.recovery, &s.pid) {
        let rooms = io.hub.lock().conns.get(&s.id).map(|e| e.rooms.clone()).unwrap_or_default();
        let data = lock(&s.data).clone();
        rec.save(&io.hub, pid.clone(), s.id.clone(), s.nsp.clone(), rooms, data);
    }
    io.hub.unregister(&s.id).await;
    if let Some(f) = io.namespace(&s.nsp).and_then(|ns| ns.on_disconnect.clone()) {
        f(&Socket { shared: s.clone(), io: io.clone() }, reason);
    }
}
