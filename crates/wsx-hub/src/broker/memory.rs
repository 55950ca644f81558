//! The in-process broker.

use super::{BoxFuture, Broker, BrokerMessage, BrokerState, Inbox};
use crate::error::BrokerError;
use crate::protocol::{Member, MembersPage};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;

#[derive(Default)]
struct Bus {
    nodes: HashMap<String, Node>,
    presence: HashMap<String, BTreeMap<String, Value>>,
}

struct Node {
    tx: mpsc::UnboundedSender<BrokerMessage>,
    rooms: HashSet<String>,
}

/// An in-process message bus: every broker made with [`MemoryBus::broker`]
/// is a node of the same cluster.
///
/// ```
/// let bus = wsx_hub::broker::MemoryBus::new();
/// let node_a = wsx_hub::Hub::builder().node_id("a").broker(bus.broker()).build();
/// let node_b = wsx_hub::Hub::builder().node_id("b").broker(bus.broker()).build();
/// # drop((node_a, node_b));
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus(Arc<Mutex<Bus>>);

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBus")
    }
}

impl MemoryBus {
    /// A new bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// A broker for one more node on this bus.
    pub fn broker(&self) -> MemoryBroker {
        MemoryBroker { bus: self.clone(), node: OnceLock::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The in-process broker (the default): a single node, or a node of a
/// [`MemoryBus`].
#[derive(Debug, Default)]
pub struct MemoryBroker {
    bus: MemoryBus,
    node: OnceLock<String>,
}

impl MemoryBroker {
    /// A broker on its own bus: a single-node hub.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn start(&self, node: &str, inbox: Inbox) {
        let _ = self.node.set(node.to_owned());
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.bus.lock().nodes.insert(node.to_owned(), Node { tx, rooms: HashSet::new() });
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                inbox.deliver(m);
            }
        });
    }

    fn publish(&self, msg: BrokerMessage) {
        let bus = self.bus.lock();
        let from = msg.node();
        let send = |n: &Node| {
            let _ = n.tx.send(msg.clone());
        };
        match &msg {
            BrokerMessage::Room { room, .. } => {
                bus.nodes.iter().filter(|(id, n)| *id != from && n.rooms.contains(room)).for_each(|(_, n)| send(n))
            }
            BrokerMessage::All { .. } | BrokerMessage::Select { .. } => {
                bus.nodes.iter().filter(|(id, _)| *id != from).for_each(|(_, n)| send(n))
            }
            BrokerMessage::Direct { .. }
            | BrokerMessage::AckReply { .. }
            | BrokerMessage::RecoverAsk { .. }
            | BrokerMessage::RecoverAnswer { .. }
            | BrokerMessage::Answers { .. } => {
                if let Some(n) = msg.target().and_then(|to| bus.nodes.get(to)) {
                    send(n)
                }
            }
        }
    }

    fn subscribe(&self, room: &str) -> BoxFuture<'static, ()> {
        if let Some(node) = self.node.get() {
            if let Some(n) = self.bus.lock().nodes.get_mut(node) {
                n.rooms.insert(room.to_owned());
            }
        }
        Box::pin(async {})
    }

    fn unsubscribe(&self, room: &str) {
        if let Some(node) = self.node.get() {
            if let Some(n) = self.bus.lock().nodes.get_mut(node) {
                n.rooms.remove(room);
            }
        }
    }

    fn presence_join(&self, room: &str, member: Member) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.bus.lock().presence.entry(room.to_owned()).or_default().insert(member.conn, member.meta);
        Box::pin(async { Ok(()) })
    }

    fn presence_leave(&self, room: &str, conn: &str) -> BoxFuture<'static, Result<(), BrokerError>> {
        let mut bus = self.bus.lock();
        if let Some(m) = bus.presence.get_mut(room) {
            m.remove(conn);
            if m.is_empty() {
                bus.presence.remove(room);
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn presence_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'static, Result<MembersPage, BrokerError>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let page = self.bus.lock().presence.get(room).map_or_else(MembersPage::default, |m| {
            let from = after.map_or(Unbounded, Excluded);
            let (members, next) = super::paginate(
                m.range::<str, _>((from, Unbounded))
                    .map(|(conn, meta)| Member { conn: conn.clone(), meta: meta.clone() }),
                limit,
                |m| &m.conn,
            );
            MembersPage { count: m.len() as u64, members, next }
        });
        Box::pin(async move { Ok(page) })
    }

    fn presence_count(&self, room: &str) -> BoxFuture<'static, Result<u64, BrokerError>> {
        let n = self.bus.lock().presence.get(room).map_or(0, |m| m.len() as u64);
        Box::pin(async move { Ok(n) })
    }

    fn state(&self) -> BrokerState {
        BrokerState::Connected
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        if let Some(node) = self.node.get() {
            let mut bus = self.bus.lock();
            bus.nodes.remove(node);
            for m in bus.presence.values_mut() {
                m.retain(|conn, _| super::node_of(conn) != node);
            }
            bus.presence.retain(|_, m| !m.is_empty());
        }
        Box::pin(async {})
    }
}
