//! Which sockets of a namespace a broadcast is for, on the node that
//! delivers it: its rooms, the rooms it leaves out, the sender it leaves
//! out; and the delivery itself (recorded for state recovery).

use super::state::SocketShared;
use super::{sio_room, Inner};
use crate::hub::{ConnEntry, RoomSet, Target};
use crate::protocol::{ConnId, Packet};
use std::collections::HashSet;
use std::sync::Arc;

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
    pub(crate) fn matches(&self, nsp: &str, id: &str, rooms: &RoomSet) -> bool {
        let has = |r: &String| rooms.contains(r) || sio_room(nsp, r) == Some(id);
        if self.except.as_deref() == Some(id) || self.except_rooms.iter().any(has) {
            return false;
        }
        self.rooms.is_empty() || self.rooms.iter().any(has)
    }
}

/// Whether a room name has the shape of a socket id (`<node>.<n>`): a
/// broadcast to it goes to every node, which each look for the socket.
pub(crate) fn could_be_socket_id(room: &str) -> bool {
    room.rsplit_once('.')
        .is_some_and(|(node, n)| !node.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The Socket.IO socket a hub connection is, if it is one.
pub(crate) fn socket_of(t: &Target) -> Option<Arc<SocketShared>> {
    t.other.clone()?.as_any().downcast::<SocketShared>().ok()
}

/// The local connections of namespace `nsp` that `sel` selects. `wsx-hub.v1`
/// connections count as sockets of the namespace `/`.
pub(crate) fn select_local(io: &Inner, nsp: &str, sel: &Selection) -> Vec<Target> {
    let st = io.hub.lock();
    let in_nsp = |e: &ConnEntry| match e.speaks.other() {
        Some(o) => o.key().0 == nsp,
        None => nsp == "/",
    };
    let mut out = Vec::new();
    if sel.rooms.is_empty() {
        for (id, e) in &st.conns {
            if in_nsp(e) && sel.matches(nsp, id, &e.rooms) {
                out.push(Target::of(e));
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
                out.push(Target::of(e));
            }
        }
    }
    out
}

/// Deliver a broadcast (an event) of namespace `nsp` to the sockets it
/// selects here (from this node or another), recording it for state
/// recovery.
pub(crate) fn deliver_selected(io: &Inner, nsp: &str, sel: &Selection, p: &Packet) {
    let Packet::Event(ev) = p else { return };
    let offset = io.recovery.as_ref().and_then(|rec| rec.record(io, nsp, sel, ev));
    let targets = select_local(io, nsp, sel);
    io.hub.deliver_with_offset(&targets, None, p, true, offset.as_deref());
}
