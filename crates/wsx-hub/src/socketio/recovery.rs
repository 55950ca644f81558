//! Connection state recovery: a client that lost its connection comes
//! back within the window with its private id and the offset of the last
//! broadcast it got, and gets its id, rooms and data back and the
//! broadcasts it missed, in order.
//!
//! Each node keeps the broadcasts of its namespaces that have recovery
//! (those it sent and those other nodes sent it) for the window, at most
//! [`MAX_LOGGED`] of them; offsets are unique to the node. While it keeps a
//! session, the node stays subscribed to the session's rooms (the hub's
//! room `held` count), so that the broadcasts other nodes send to them
//! while the client is away reach the log.
//!
//! A client that comes back to another node (no sticky sessions) brings an
//! offset that names the node that kept its session (`<node id>-<n>`): the
//! new node asks that one through the broker ([`BrokerMessage::RecoverAsk`]),
//! which hands over the session and the missed broadcasts and from then on
//! forwards direct messages for the socket's id to the new node.

use super::selection::Selection;
use super::state::lock;
use super::Inner;
use crate::broker::BrokerMessage;
use crate::hub::{Hub, RoomSet};
use crate::protocol::{self, ConnId, EventPacket, Packet, Wire};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The most broadcasts a node keeps for recovery; a client that missed
/// more starts anew.
pub(crate) const MAX_LOGGED: usize = 100_000;

/// The most disconnected sessions a node keeps (the oldest go first).
const MAX_SAVED: usize = 100_000;

/// What a socket had when its connection was lost.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    pub(crate) id: ConnId,
    pub(crate) nsp: Arc<str>,
    /// Hub room names.
    pub(crate) rooms: RoomSet,
    pub(crate) data: Value,
    at: Instant,
}

struct Logged {
    offset: String,
    at: Instant,
    nsp: Arc<str>,
    sel: Selection,
    ev: EventPacket,
}

#[derive(Default)]
struct State {
    saved: HashMap<String, Saved>,
    /// Private ids in the order saved, for expiry.
    order: VecDeque<(Instant, String)>,
    log: VecDeque<Logged>,
}

/// How long a node waits for another to hand over a session.
const ASK_WAIT: Duration = Duration::from_secs(2);

/// A namespace-independent store for one node.
pub(crate) struct Recovery {
    pub(crate) window: Duration,
    state: Mutex<State>,
    /// Sessions asked of other nodes: request id → who waits.
    asks: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
}

impl Recovery {
    pub(crate) fn new(window: Duration) -> Self {
        Self { window, state: Mutex::new(State::default()), asks: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Drop what is past the window (or over the bounds); the sessions
    /// dropped, whose rooms the caller releases.
    fn expire(&self, st: &mut State, now: Instant) -> Vec<Saved> {
        while st.log.front().is_some_and(|l| now.duration_since(l.at) > self.window) || st.log.len() > MAX_LOGGED {
            st.log.pop_front();
        }
        let mut gone = Vec::new();
        while let Some((at, pid)) = st.order.front() {
            if now.duration_since(*at) <= self.window && st.order.len() <= MAX_SAVED {
                break;
            }
            if st.saved.get(pid).is_some_and(|s| s.at == *at) {
                gone.extend(st.saved.remove(pid));
            }
            st.order.pop_front();
        }
        gone
    }

    /// Forget the sessions past the window, and stop holding their rooms.
    pub(crate) fn sweep(&self, hub: &Hub) {
        let gone = self.expire(&mut self.lock(), Instant::now());
        release(hub, gone);
    }

    /// Keep a socket's state under its private id (and its rooms
    /// subscribed).
    pub(crate) fn save(&self, hub: &Hub, pid: String, id: ConnId, nsp: Arc<str>, rooms: RoomSet, data: Value) {
        for r in &rooms {
            hub.hold_room(r, true);
        }
        let now = Instant::now();
        let gone = {
            let mut st = self.lock();
            st.order.push_back((now, pid.clone()));
            st.saved.insert(pid, Saved { id, nsp, rooms, data, at: now });
            self.expire(&mut st, now)
        };
        release(hub, gone);
    }

    /// Take back a socket's state, and the broadcasts after `offset` that
    /// it would have got. `None` when the session or the offset is unknown
    /// or too old. The caller rejoins the rooms, then calls
    /// [`Recovery::release`] with them.
    pub(crate) fn restore(
        &self,
        hub: &Hub,
        pid: &str,
        offset: &str,
        nsp: &str,
    ) -> Option<(Saved, Vec<(String, EventPacket)>)> {
        let now = Instant::now();
        let mut st = self.lock();
        let gone = self.expire(&mut st, now);
        if !gone.is_empty() {
            drop(st);
            release(hub, gone);
            st = self.lock();
        }
        if st.saved.get(pid).is_none_or(|s| &*s.nsp != nsp) {
            return None;
        }
        let start = st.log.iter().position(|l| l.offset == offset)? + 1;
        let saved = st.saved.remove(pid)?;
        let missed = st
            .log
            .iter()
            .skip(start)
            .filter(|l| &*l.nsp == nsp && l.sel.matches(nsp, &saved.id, &saved.rooms))
            .map(|l| (l.offset.clone(), l.ev.clone()))
            .collect();
        Some((saved, missed))
    }

    /// Record a broadcast of namespace `nsp` (when it is one of this
    /// server's); its offset.
    pub(crate) fn record(&self, io: &Inner, nsp: &str, sel: &Selection, ev: &EventPacket) -> Option<String> {
        if !io.has_namespace(nsp) {
            return None;
        }
        let hub = &io.hub;
        let offset = format!("{}-{}", hub.node_id(), hub.next_seq());
        self.log(hub, offset.clone(), nsp, sel, ev);
        Some(offset)
    }

    /// Record a hub room broadcast (`room` is a hub room name) for the
    /// namespace the room belongs to.
    pub(crate) fn record_room(&self, io: &Inner, room: &str, except: Option<&str>, ev: &EventPacket) -> Option<String> {
        let sel =
            Selection { rooms: vec![room.to_owned()], except_rooms: Vec::new(), except: except.map(str::to_owned) };
        self.record(io, super::nsp_of_room(room), &sel, ev)
    }

    fn log(&self, hub: &Hub, offset: String, nsp: &str, sel: &Selection, ev: &EventPacket) {
        let now = Instant::now();
        let gone = {
            let mut st = self.lock();
            st.log.push_back(Logged { offset, at: now, nsp: nsp.into(), sel: sel.clone(), ev: ev.clone() });
            self.expire(&mut st, now)
        };
        release(hub, gone);
    }
}

/// A restored session and the broadcasts it missed (offset, event).
pub(crate) type Restored = (Saved, Vec<(String, EventPacket)>);

/// The node that recorded a broadcast, from its offset.
fn node_of_offset(offset: &str) -> Option<&str> {
    offset.rsplit_once('-').map(|(node, _)| node)
}

/// Ask the node that kept the session (named by the offset) to hand it
/// over; `None` when it is this node, does not answer in time, or no
/// longer has it.
pub(crate) async fn restore_remote(io: &Inner, pid: &str, offset: &str, nsp: &str) -> Option<Restored> {
    let rec = io.recovery.as_ref()?;
    let hub = &io.hub;
    let node = node_of_offset(offset).filter(|n| *n != hub.node_id())?;
    let id = hub.next_seq();
    let (tx, rx) = oneshot::channel();
    lock(&rec.asks).insert(id, tx);
    hub.ensure_started();
    hub.publish_message(BrokerMessage::RecoverAsk {
        node: hub.node_id().to_owned(),
        to: node.to_owned(),
        id,
        query: json!({"pid": pid, "offset": offset, "nsp": nsp}),
    });
    let answer = tokio::time::timeout(ASK_WAIT, rx).await;
    lock(&rec.asks).remove(&id);
    session_from_json(answer.ok()?.ok()?, nsp)
}

/// Another node asks for a session this node keeps: hand it over (and
/// forward the socket's direct messages there from now on).
pub(crate) fn answer_recovery(io: &Inner, asker: String, id: u64, query: &Value) {
    let Some(rec) = io.recovery.as_ref() else { return };
    let hub = &io.hub;
    let field = |k: &str| query.get(k).and_then(Value::as_str).unwrap_or_default();
    let found = rec.restore(hub, field("pid"), field("offset"), field("nsp"));
    let session = match found {
        Some((saved, missed)) => {
            hub.note_moved(&saved.id, &asker);
            let json = session_to_json(&saved, &missed);
            release(hub, vec![saved]);
            json
        }
        None => Value::Null,
    };
    hub.publish_message(BrokerMessage::RecoverAnswer { node: hub.node_id().to_owned(), to: asker, id, session });
}

/// The answer to one of this node's asks.
pub(crate) fn recovery_answered(io: &Inner, id: u64, session: Value) {
    let Some(rec) = io.recovery.as_ref() else { return };
    let waiting = lock(&rec.asks).remove(&id);
    if let Some(tx) = waiting {
        let _ = tx.send(session);
    }
}

fn session_to_json(saved: &Saved, missed: &[(String, EventPacket)]) -> Value {
    let missed: Vec<Value> = missed
        .iter()
        .map(|(offset, ev)| match protocol::encode(&Packet::Event(ev.clone())) {
            Wire::Text(t) => json!([offset, {"t": t}]),
            Wire::Binary(b) => json!([offset, {"b": base64::engine::general_purpose::STANDARD.encode(b)}]),
        })
        .collect();
    json!({"sid": saved.id, "rooms": saved.rooms, "data": saved.data, "missed": missed})
}

fn session_from_json(v: Value, nsp: &str) -> Option<Restored> {
    let sid = v.get("sid")?.as_str()?.to_owned();
    let rooms: RoomSet = serde_json::from_value(v.get("rooms")?.clone()).ok()?;
    let mut missed = Vec::new();
    for m in v.get("missed")?.as_array()? {
        let offset = m.get(0)?.as_str()?.to_owned();
        let packet = match (m.get(1)?.get("t"), m.get(1)?.get("b")) {
            (Some(Value::String(t)), _) => protocol::decode_text(t).ok()?,
            (_, Some(Value::String(b))) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
                protocol::decode_binary(bytes.into()).ok()?
            }
            _ => return None,
        };
        let Packet::Event(ev) = packet else { return None };
        missed.push((offset, ev));
    }
    let saved = Saved {
        id: sid,
        nsp: nsp.into(),
        rooms,
        data: v.get("data").cloned().unwrap_or(Value::Null),
        at: Instant::now(),
    };
    Some((saved, missed))
}

/// Stop holding the rooms of sessions that are gone.
pub(crate) fn release(hub: &Hub, gone: Vec<Saved>) {
    for s in gone {
        for r in &s.rooms {
            hub.hold_room(r, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(rooms: &[&str]) -> Selection {
        Selection { rooms: rooms.iter().map(|r| r.to_string()).collect(), ..Default::default() }
    }

    #[tokio::test]
    async fn restores_what_the_socket_missed_in_order() {
        let hub = Hub::builder().build();
        let r = Recovery::new(Duration::from_secs(60));
        r.log(&hub, "o1".into(), "/", &sel(&["a"]), &EventPacket::new("e1", json!(1)));
        r.save(&hub, "pid".into(), "n.1".into(), "/".into(), vec!["a".to_string()].into(), json!({"k": 1}));
        r.log(&hub, "o2".into(), "/", &sel(&["a"]), &EventPacket::new("e2", json!(2)));
        r.log(&hub, "o3".into(), "/", &sel(&["b"]), &EventPacket::new("other room", json!(3)));
        r.log(&hub, "o4".into(), "/x", &sel(&[]), &EventPacket::new("other namespace", json!(4)));
        r.log(&hub, "o5".into(), "/", &sel(&[]), &EventPacket::new("e5", json!(5)));
        let mut except_me = sel(&["a"]);
        except_me.except = Some("n.1".into());
        r.log(&hub, "o6".into(), "/", &except_me, &EventPacket::new("its own", json!(6)));
        let (saved, missed) = r.restore(&hub, "pid", "o1", "/").unwrap();
        assert_eq!(saved.id, "n.1");
        assert_eq!(saved.data, json!({"k": 1}));
        let names: Vec<&str> = missed.iter().map(|(_, e)| e.event.as_str()).collect();
        assert_eq!(names, ["e2", "e5"]);
        // Once.
        assert!(r.restore(&hub, "pid", "o1", "/").is_none());
    }

    #[tokio::test]
    async fn unknown_offsets_pids_and_namespaces_do_not_restore() {
        let hub = Hub::builder().build();
        let r = Recovery::new(Duration::from_secs(60));
        r.log(&hub, "o1".into(), "/", &sel(&[]), &EventPacket::new("e", json!(1)));
        r.save(&hub, "pid".into(), "n.1".into(), "/".into(), RoomSet::default(), Value::Null);
        assert!(r.restore(&hub, "pid", "nope", "/").is_none());
        assert!(r.restore(&hub, "other", "o1", "/").is_none());
        assert!(r.restore(&hub, "pid", "o1", "/x").is_none());
        assert!(r.restore(&hub, "pid", "o1", "/").is_some());
    }

    #[tokio::test]
    async fn the_window_expires_sessions_and_broadcasts() {
        let hub = Hub::builder().build();
        let r = Recovery::new(Duration::from_millis(30));
        r.log(&hub, "o1".into(), "/", &sel(&[]), &EventPacket::new("e", json!(1)));
        r.save(&hub, "pid".into(), "n.1".into(), "/".into(), RoomSet::default(), Value::Null);
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.restore(&hub, "pid", "o1", "/").is_none());
    }

    /// While a session is kept, the node stays subscribed to its rooms (to
    /// log what other nodes send them); once it expires, no longer.
    #[tokio::test]
    async fn a_kept_session_holds_its_rooms() {
        let hub = Hub::builder().build();
        let r = Recovery::new(Duration::from_millis(30));
        r.save(&hub, "pid".into(), "n.1".into(), "/".into(), vec!["a".to_string()].into(), Value::Null);
        assert!(hub.lock().rooms.get("a").is_some_and(|room| room.held == 1 && room.subscribed));
        std::thread::sleep(Duration::from_millis(60));
        r.sweep(&hub);
        assert!(!hub.lock().rooms.contains_key("a"));
    }
}
