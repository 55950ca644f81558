//! Broadcasts of a namespace: to rooms, except rooms and sockets, on this
//! node and through the broker on the others; and the operations on the
//! sockets they select (fetch, join, leave, disconnect).

use super::payload::Payload;
use super::socket::SocketShared;
use super::{hub_room, sio_room};
use crate::broker::BrokerMessage;
use crate::error::AckError;
use crate::hub::{Hub, Target};
use crate::protocol::{self, ConnId, EventPacket, Packet};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Which sockets of a namespace a broadcast is for (room names as the hub
/// knows them).
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    /// Members of any of these rooms (every socket of the namespace when
    /// empty). A socket's own id is a room with it alone.
    pub(crate) rooms: Vec<String>,
    /// But not the members of these.
    pub(crate) except_rooms: Vec<String>,
    /// Nor this one.
    pub(crate) except: Option<ConnId>,
}

impl Selection {
    /// Whether a socket with these (hub) rooms is selected.
    pub(crate) fn matches(&self, nsp: &str, id: &str, rooms: &std::collections::BTreeSet<String>) -> bool {
        let has = |r: &String| rooms.contains(r) || sio_room(nsp, r) == Some(id);
        if self.except.as_deref() == Some(id) || self.except_rooms.iter().any(has) {
            return false;
        }
        self.rooms.is_empty() || self.rooms.iter().any(has)
    }
}

/// The local connections of namespace `nsp` that `sel` selects. `wsx-hub.v1`
/// connections count as sockets of the namespace `/`.
pub(crate) fn select_local(hub: &Hub, nsp: &str, sel: &Selection) -> Vec<(ConnId, Target)> {
    let st = hub.lock();
    let in_nsp = |e: &crate::hub::ConnEntry| match Target::of(e).sio {
        Some(s) => &*s.nsp == nsp,
        None => nsp == "/",
    };
    let mut out = Vec::new();
    if sel.rooms.is_empty() {
        for (id, e) in &st.conns {
            if in_nsp(e) && sel.matches(nsp, id, &e.rooms) {
                out.push((id.clone(), Target::of(e)));
            }
        }
        return out;
    }
    let mut seen = HashSet::new();
    for r in &sel.rooms {
        let members = st.rooms.get(r).map(|room| room.members.iter().collect::<Vec<_>>()).unwrap_or_default();
        // A socket's own id is a room with it alone.
        let own = sio_room(nsp, r).and_then(|id| st.conns.get_key_value(id)).map(|(k, _)| k);
        for id in members.into_iter().chain(own) {
            let Some(e) = st.conns.get(id) else { continue };
            if in_nsp(e) && sel.matches(nsp, id, &e.rooms) && seen.insert(id.clone()) {
                out.push((id.clone(), Target::of(e)));
            }
        }
    }
    out
}

/// Deliver a broadcast of namespace `nsp` to the sockets it selects here
/// (from this node or another), recording it for state recovery.
pub(crate) fn deliver_selected(hub: &Hub, nsp: &str, sel: &Selection, ev: &EventPacket) {
    let offset = super::recovery::record(hub, nsp, sel, ev);
    let targets: Vec<Target> = select_local(hub, nsp, sel).into_iter().map(|(_, t)| t).collect();
    hub.deliver_with_offset(&targets, None, &Packet::Event(ev.clone()), true, offset.as_deref());
}

/// Send a hub event to Socket.IO sockets, encoded once per namespace.
pub(crate) fn deliver(
    hub: &Hub,
    sockets: &[&Arc<SocketShared>],
    ev: &EventPacket,
    droppable: bool,
    offset: Option<&str>,
) {
    let _ = hub;
    let mut cache: Vec<(Arc<str>, Vec<wsx::Message>)> = Vec::new();
    for s in sockets {
        if !s.connected.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let frames = match cache.iter().find(|(n, _)| *n == s.nsp) {
            Some((_, f)) => f.clone(),
            None => {
                let mut payload = Payload::from_event(ev);
                if let Some(o) = offset.filter(|_| s.pid.is_some()) {
                    payload.args.push(serde_json::Value::String(o.to_owned()));
                }
                let p = super::event_packet(&s.nsp, &ev.event, payload, ev.id);
                let f = p.to_frames();
                cache.push((s.nsp.clone(), f.clone()));
                f
            }
        };
        s.session.send_frames(frames, droppable);
    }
}

/// Whether a room name has the shape of a socket id (`<node>.<n>`): a
/// broadcast to it goes to every node, which each look for the socket.
fn could_be_socket_id(room: &str) -> bool {
    room.rsplit_once('.')
        .is_some_and(|(node, n)| !node.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Selects sockets of a namespace for a broadcast or an operation: all
/// of them, or those in some rooms, minus those in others. Made by
/// [`super::SocketIo::of`], [`super::SocketIo::to`] and
/// [`super::Socket::to`] / [`super::Socket::broadcast`] (which leave the
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
#[derive(Debug, Clone)]
pub struct Operator {
    hub: Hub,
    nsp: Arc<str>,
    sel: Selection,
    volatile: bool,
    local: bool,
}

impl Operator {
    pub(crate) fn new(hub: Hub, nsp: Arc<str>) -> Self {
        Self { hub, nsp, sel: Selection::default(), volatile: false, local: false }
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
        self.hub.ensure_started();
        let mut ev = payload.into().into_event(event);
        // The hub room, as hub clients know it.
        ev.room = self.sel.rooms.first().cloned();
        // A socket's broadcast leaves it out: hub clients see it as the sender.
        ev.from = self.sel.except.clone();
        deliver_selected(&self.hub, &self.nsp, &self.sel, &ev);
        if self.local {
            return;
        }
        let payload = protocol::encode(&Packet::Event(ev));
        let node = self.hub.node_id().to_owned();
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
            },
        };
        self.hub.publish_message(m);
    }

    /// Send `event` to the selected sockets of this node and gather every
    /// answer within `timeout` (one entry per socket: its answer, or why
    /// there is none).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Vec<Result<Payload, AckError>> {
        let payload = payload.into();
        let sockets = self.sockets();
        let asks = sockets.iter().map(|s| s.emit_with_ack(event, payload.clone(), timeout));
        futures_util::future::join_all(asks).await
    }

    fn sockets(&self) -> Vec<super::Socket> {
        select_local(&self.hub, &self.nsp, &self.sel)
            .into_iter()
            .filter_map(|(_, t)| t.sio.map(|shared| super::Socket { shared, hub: self.hub.clone() }))
            .collect()
    }

    /// The selected sockets of this node.
    pub fn fetch_sockets(&self) -> Vec<super::Socket> {
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
