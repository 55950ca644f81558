//! The state of a session and of its sockets that the sockets' handles,
//! the session's task and the hub share.

use super::connect::Handshake;
use super::engine::Closer;
use super::packet::Packet;
use super::payload::Payload;
use crate::hub::{Hub, OtherWire};
use crate::protocol::EventPacket;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, Notify};
use wsx::server::{Outbox, Outgoing};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the sockets of one Engine.IO session share: its outgoing queue,
/// its closer, the acks it waits for, and the sockets the server took out
/// of their namespace (for the session's task to finish).
pub(crate) struct SessionShared {
    /// The hub, which counts what the session sends.
    pub(crate) hub: Hub,
    pub(crate) outbox: Outbox,
    pub(crate) closer: Closer,
    pub(crate) transport: AtomicU8,
    /// Ack id → who waits for the client's answer.
    pub(crate) acks: Mutex<HashMap<u64, oneshot::Sender<Payload>>>,
    /// Namespaces the server disconnected the session's socket from.
    pub(crate) kicked: Mutex<Vec<Arc<str>>>,
    pub(crate) kick: Notify,
}

impl SessionShared {
    pub(crate) fn new(hub: Hub, outbox: Outbox, closer: Closer, transport: u8) -> Self {
        Self {
            hub,
            outbox,
            closer,
            transport: AtomicU8::new(transport),
            acks: Mutex::new(HashMap::new()),
            kicked: Mutex::new(Vec::new()),
            kick: Notify::new(),
        }
    }

    /// Queue a packet's frames.
    pub(crate) fn send(&self, p: &Packet, droppable: bool) -> bool {
        let frames: Vec<Outgoing> = p.to_frames().into_iter().map(Outgoing::from).collect();
        self.send_frames(&frames, droppable)
    }

    /// Queue the frames of one packet (clones of shared bytes): a binary
    /// packet's attachments right behind its header, never dropped apart
    /// from it.
    pub(crate) fn send_frames(&self, frames: &[Outgoing], droppable: bool) -> bool {
        match frames {
            [f] => self.hub.push(&self.outbox, f.clone(), droppable),
            _ => {
                let len = frames.iter().map(|f| f.len() as u64).sum();
                self.hub.count_push(self.outbox.push_all(frames.iter().cloned()), frames.len() as u64, len)
            }
        }
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
}

impl SocketShared {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The server disconnects the socket from its namespace: the client
    /// gets DISCONNECT, the session's task takes it out. Whether it was
    /// connected.
    pub(crate) fn disconnect_by_server(&self) -> bool {
        if !self.is_connected() {
            return false;
        }
        self.session.send(&Packet::disconnect(&self.nsp), false);
        lock(&self.session.kicked).push(self.nsp.clone());
        self.session.kick.notify_one();
        true
    }

    /// Answer the client's ack `id`.
    pub(crate) fn ack(&self, id: u64, p: Payload) {
        if self.is_connected() {
            self.session.send(&Packet::ack(&self.nsp, id, p.args, p.attachments), false);
        }
    }
}

impl OtherWire for SocketShared {
    fn key(&self) -> (&str, bool) {
        (&self.nsp, self.pid.is_some())
    }

    fn encode(&self, ev: &EventPacket, offset: Option<&str>) -> Vec<Outgoing> {
        let mut payload = Payload::from_event(ev);
        if let Some(o) = offset.filter(|_| self.pid.is_some()) {
            payload.args.push(Value::String(o.to_owned()));
        }
        let frames = super::event_packet(&self.nsp, &ev.event, payload, ev.id).to_frames();
        frames.into_iter().map(Outgoing::prepared).collect()
    }

    fn send(&self, frames: &[Outgoing], droppable: bool) {
        if self.is_connected() {
            self.session.send_frames(frames, droppable);
        }
    }

    fn disconnect(&self) -> bool {
        self.disconnect_by_server()
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsx::server::{OutboxConfig, RequestHead};

    fn socket(nsp: &str) -> SocketShared {
        let (outbox, _) = Outbox::new(OutboxConfig::default());
        let request = RequestHead::new(http::Request::new(()), None);
        SocketShared {
            id: "s".into(),
            nsp: nsp.into(),
            session: Arc::new(SessionShared::new(Hub::builder().build(), outbox, Closer::detached(), 0)),
            handshake: Arc::new(Handshake { namespace: nsp.into(), auth: Value::Null, request }),
            data: Mutex::new(Value::Null),
            connected: AtomicBool::new(true),
            recovered: false,
            pid: None,
        }
    }

    /// A broadcast's frames, header and attachments, are prepared once for
    /// all its recipients: a connection that compresses shares the one
    /// compression of its setting instead of compressing its own copy.
    #[test]
    fn an_event_is_framed_once_for_every_recipient() {
        let mut ev = EventPacket::new("news", serde_json::json!("x".repeat(4096)));
        ev.attachments.push(bytes::Bytes::from(vec![7; 2048]));
        let frames = socket("/").encode(&ev, None);
        assert_eq!(frames.len(), 2);
        for f in &frames {
            assert!(matches!(f, Outgoing::Prepared(_)), "{f:?}");
        }
    }
}
