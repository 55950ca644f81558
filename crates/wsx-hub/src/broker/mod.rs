//! Fan-out across nodes. A hub publishes what other nodes must see (room
//! broadcasts, broadcasts to everyone, messages for a connection on another
//! node, answers to requests) to its [`Broker`], and keeps room presence in
//! it; the broker hands what other nodes published to the hub's [`Inbox`].
//!
//! - [`MemoryBroker`] (the default): in-process. On its own it is a
//!   single node; brokers made from one [`MemoryBus`] are nodes of one
//!   in-process cluster (useful in tests).
//! - `RedisBroker` (feature `redis`): Redis pub/sub, one channel per room,
//!   presence in sorted sets with expiry.
//!
//! Delivery contract for an implementation: a message published by node A
//! reaches every other node subscribed to its room (or every other node, or
//! the one node addressed) once, never A itself, and two messages published
//! by A arrive in the order A published them.

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use self::memory::{MemoryBroker, MemoryBus};
#[cfg(feature = "redis")]
pub use self::redis::{RedisBroker, RedisOptions};

use crate::error::BrokerError;
use crate::protocol::{ConnId, ErrorBody, Member, MembersPage, Wire};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, as broker methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a broker stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerState {
    /// Connected: messages flow between nodes.
    Connected,
    /// Connecting (first attempt, or again after a failure).
    Connecting,
    /// Not connected: the node serves its own clients only and retries
    /// with backoff.
    Disconnected {
        /// The last error.
        error: String,
    },
}

impl BrokerState {
    /// `connected`, `connecting` or `disconnected`.
    pub fn name(&self) -> &'static str {
        match self {
            BrokerState::Connected => "connected",
            BrokerState::Connecting => "connecting",
            BrokerState::Disconnected { .. } => "disconnected",
        }
    }
}

/// A message between nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerMessage {
    /// For the members of a room.
    Room {
        /// The publishing node.
        node: String,
        /// The room.
        room: String,
        /// A connection not to deliver to (the sender).
        except: Option<ConnId>,
        /// The encoded packet.
        payload: Wire,
    },
    /// For every connection.
    All {
        /// The publishing node.
        node: String,
        /// A connection not to deliver to.
        except: Option<ConnId>,
        /// The encoded packet.
        payload: Wire,
    },
    /// A Socket.IO broadcast: for the sockets of namespace `nsp` in any of
    /// `rooms` (hub room names; every socket of the namespace when empty),
    /// but those in `except_rooms` and `except`.
    Select {
        /// The publishing node.
        node: String,
        /// The namespace.
        nsp: String,
        /// The rooms.
        rooms: Vec<String>,
        /// Rooms whose members it is not for.
        except_rooms: Vec<String>,
        /// A connection not to deliver to.
        except: Option<ConnId>,
        /// The encoded event.
        payload: Wire,
        /// A broadcast with acks: the publishing node's request id and
        /// how long each socket has to answer; each node sends the answers
        /// of its sockets back ([`BrokerMessage::Answers`]).
        ack: Option<(u64, u64)>,
    },
    /// The answers of a node's sockets to a broadcast with acks.
    Answers {
        /// The answering node.
        node: String,
        /// The node that asked.
        to: String,
        /// Its request id.
        id: u64,
        /// One entry per socket: `{"args": [...], "bin": [base64...]}` or
        /// `{"error": "..."}`.
        answers: Value,
    },
    /// For one connection, on the node that holds it.
    Direct {
        /// The publishing node.
        node: String,
        /// The connection.
        conn: ConnId,
        /// The encoded event.
        payload: Wire,
        /// The publishing node's request id, when it waits for an ack.
        ack: Option<u64>,
        /// The node that holds the connection, when it is not the one its
        /// id names (a Socket.IO socket that recovered its session on
        /// another node).
        at: Option<String>,
    },
    /// Socket.IO state recovery: node `node` asks node `to` for a session
    /// that `to` keeps (the client came back to `node`).
    RecoverAsk {
        /// The asking node.
        node: String,
        /// The node that kept the session.
        to: String,
        /// The asking node's request id.
        id: u64,
        /// `{"pid": ..., "offset": ..., "nsp": ...}`.
        query: Value,
    },
    /// The answer to a [`BrokerMessage::RecoverAsk`]: the session, or
    /// `null`.
    RecoverAnswer {
        /// The answering node.
        node: String,
        /// The node that asked.
        to: String,
        /// Its request id.
        id: u64,
        /// The session and the broadcasts it missed, or `null`.
        session: Value,
    },
    /// The answer to a [`BrokerMessage::Direct`] request.
    AckReply {
        /// The answering node.
        node: String,
        /// The node that asked.
        to: String,
        /// Its request id.
        id: u64,
        /// The client's answer.
        result: Result<Value, ErrorBody>,
    },
}

impl BrokerMessage {
    /// The publishing node.
    pub fn node(&self) -> &str {
        match self {
            BrokerMessage::Room { node, .. }
            | BrokerMessage::All { node, .. }
            | BrokerMessage::Select { node, .. }
            | BrokerMessage::Answers { node, .. }
            | BrokerMessage::Direct { node, .. }
            | BrokerMessage::RecoverAsk { node, .. }
            | BrokerMessage::RecoverAnswer { node, .. }
            | BrokerMessage::AckReply { node, .. } => node,
        }
    }

    /// The node a message is for, when it is for one node.
    pub fn target(&self) -> Option<&str> {
        match self {
            BrokerMessage::Direct { conn, at, .. } => Some(at.as_deref().unwrap_or_else(|| node_of(conn))),
            BrokerMessage::AckReply { to, .. }
            | BrokerMessage::RecoverAsk { to, .. }
            | BrokerMessage::RecoverAnswer { to, .. }
            | BrokerMessage::Answers { to, .. } => Some(to),
            BrokerMessage::Room { .. } | BrokerMessage::All { .. } | BrokerMessage::Select { .. } => None,
        }
    }
}

/// The node that holds a connection: the part of its id before the last
/// `.`.
pub fn node_of(conn: &str) -> &str {
    conn.rsplit_once('.').map_or(conn, |(n, _)| n)
}

#[derive(Serialize, Deserialize)]
struct Header {
    k: String,
    node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    except: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(default)]
    bin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nsp: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rooms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    xrooms: Vec<String>,
}

/// Serialize a message for a byte-oriented broker: a JSON header line, a
/// newline, then the payload as it goes to clients.
pub fn encode_message(m: &BrokerMessage) -> Vec<u8> {
    let mut h = Header {
        k: String::new(),
        node: m.node().to_owned(),
        room: None,
        conn: None,
        except: None,
        to: None,
        id: None,
        bin: false,
        data: None,
        error: None,
        nsp: None,
        rooms: Vec::new(),
        xrooms: Vec::new(),
    };
    let payload = match m {
        BrokerMessage::Room { room, except, payload, .. } => {
            h.k = "room".into();
            h.room = Some(room.clone());
            h.except = except.clone();
            Some(payload)
        }
        BrokerMessage::All { except, payload, .. } => {
            h.k = "all".into();
            h.except = except.clone();
            Some(payload)
        }
        BrokerMessage::Select { nsp, rooms, except_rooms, except, payload, ack, .. } => {
            h.k = "select".into();
            if let Some((id, timeout_ms)) = ack {
                h.id = Some(*id);
                h.data = Some(serde_json::json!({"timeout_ms": timeout_ms}));
            }
            h.nsp = Some(nsp.clone());
            h.rooms = rooms.clone();
            h.xrooms = except_rooms.clone();
            h.except = except.clone();
            Some(payload)
        }
        BrokerMessage::Direct { conn, payload, ack, at, .. } => {
            h.k = "direct".into();
            h.conn = Some(conn.clone());
            h.id = *ack;
            h.to = at.clone();
            Some(payload)
        }
        BrokerMessage::Answers { to, id, answers, .. } => {
            h.k = "answers".into();
            h.to = Some(to.clone());
            h.id = Some(*id);
            h.data = Some(answers.clone());
            None
        }
        BrokerMessage::RecoverAsk { to, id, query, .. } => {
            h.k = "recover".into();
            h.to = Some(to.clone());
            h.id = Some(*id);
            h.data = Some(query.clone());
            None
        }
        BrokerMessage::RecoverAnswer { to, id, session, .. } => {
            h.k = "recovered".into();
            h.to = Some(to.clone());
            h.id = Some(*id);
            h.data = Some(session.clone());
            None
        }
        BrokerMessage::AckReply { to, id, result, .. } => {
            h.k = "ack".into();
            h.to = Some(to.clone());
            h.id = Some(*id);
            match result {
                Ok(v) => h.data = Some(v.clone()),
                Err(e) => h.error = Some(e.clone()),
            }
            None
        }
    };
    h.bin = matches!(payload, Some(Wire::Binary(_)));
    let mut out = serde_json::to_vec(&h).unwrap_or_default();
    out.push(b'\n');
    match payload {
        Some(Wire::Text(s)) => out.extend_from_slice(s.as_bytes()),
        Some(Wire::Binary(b)) => out.extend_from_slice(b),
        None => {}
    }
    out
}

/// Parse what [`encode_message`] wrote.
pub fn decode_message(bytes: &[u8]) -> Result<BrokerMessage, BrokerError> {
    let bad = |why: &str| BrokerError::Command(format!("malformed broker message: {why}"));
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| bad("no header line"))?;
    let h: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| bad(&e.to_string()))?;
    let body = &bytes[nl + 1..];
    let payload = || -> Result<Wire, BrokerError> {
        Ok(if h.bin {
            Wire::Binary(Bytes::copy_from_slice(body))
        } else {
            Wire::Text(String::from_utf8(body.to_vec()).map_err(|_| bad("text payload is not UTF-8"))?)
        })
    };
    Ok(match h.k.as_str() {
        "room" => BrokerMessage::Room {
            room: h.room.clone().ok_or_else(|| bad("no room"))?,
            except: h.except.clone(),
            payload: payload()?,
            node: h.node,
        },
        "all" => BrokerMessage::All { except: h.except.clone(), payload: payload()?, node: h.node },
        "select" => BrokerMessage::Select {
            nsp: h.nsp.clone().ok_or_else(|| bad("no nsp"))?,
            rooms: h.rooms.clone(),
            except_rooms: h.xrooms.clone(),
            except: h.except.clone(),
            payload: payload()?,
            ack: h.id.map(|id| (id, h.data.as_ref().and_then(|d| d["timeout_ms"].as_u64()).unwrap_or(0))),
            node: h.node,
        },
        "answers" => BrokerMessage::Answers {
            to: h.to.ok_or_else(|| bad("no to"))?,
            id: h.id.ok_or_else(|| bad("no id"))?,
            answers: h.data.unwrap_or(Value::Null),
            node: h.node,
        },
        "direct" => BrokerMessage::Direct {
            conn: h.conn.clone().ok_or_else(|| bad("no conn"))?,
            ack: h.id,
            payload: payload()?,
            at: h.to.clone(),
            node: h.node,
        },
        "recover" => BrokerMessage::RecoverAsk {
            to: h.to.ok_or_else(|| bad("no to"))?,
            id: h.id.ok_or_else(|| bad("no id"))?,
            query: h.data.unwrap_or(Value::Null),
            node: h.node,
        },
        "recovered" => BrokerMessage::RecoverAnswer {
            to: h.to.ok_or_else(|| bad("no to"))?,
            id: h.id.ok_or_else(|| bad("no id"))?,
            session: h.data.unwrap_or(Value::Null),
            node: h.node,
        },
        "ack" => BrokerMessage::AckReply {
            to: h.to.ok_or_else(|| bad("no to"))?,
            id: h.id.ok_or_else(|| bad("no id"))?,
            result: match h.error {
                Some(e) => Err(e),
                None => Ok(h.data.unwrap_or(Value::Null)),
            },
            node: h.node,
        },
        other => return Err(bad(&format!("kind {other:?}"))),
    })
}

/// Where a broker delivers messages from other nodes: the hub.
#[derive(Clone)]
pub struct Inbox(Arc<dyn Fn(BrokerMessage) + Send + Sync>);

impl Inbox {
    /// An inbox that calls `f` for each message.
    pub fn new(f: impl Fn(BrokerMessage) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Deliver a message.
    pub fn deliver(&self, m: BrokerMessage) {
        (self.0)(m)
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbox")
    }
}

/// Fan-out between the nodes of a cluster, and room presence. One broker
/// value serves one hub (one node). See the module documentation for the
/// delivery contract.
///
/// ```
/// use wsx_hub::broker::{Broker, MemoryBus};
/// let bus = MemoryBus::new();
/// let a = wsx_hub::Hub::builder().node_id("a").broker(bus.broker()).build();
/// let b = wsx_hub::Hub::builder().node_id("b").broker(bus.broker()).build();
/// # drop((a, b));
/// ```
pub trait Broker: Send + Sync + 'static {
    /// A short name for metrics and logs (`memory`, `redis`).
    fn kind(&self) -> &'static str;
    /// Start (called once by the hub, inside a tokio runtime): from now on,
    /// deliver other nodes' messages to `inbox`.
    fn start(&self, node: &str, inbox: Inbox);
    /// Publish to other nodes. Never waits; order is kept.
    fn publish(&self, msg: BrokerMessage);
    /// This node has members in `room`, or SSE streams or history: receive
    /// its messages. The future resolves once the subscription is in effect
    /// (at once when the broker is down); the hub waits for it, bounded,
    /// before answering a join or starting a stream.
    fn subscribe(&self, room: &str) -> BoxFuture<'static, ()>;
    /// This node no longer needs `room`'s messages.
    fn unsubscribe(&self, room: &str);
    /// Record `member` as present in `room`. The change is made (or queued
    /// in order) by the call itself; the future says when it is recorded
    /// where [`Broker::presence_page`] and [`Broker::presence_count`]
    /// read. The hub may drop the future without polling it and wait for
    /// [`Broker::presence_written`] instead (one wait for a burst of joins).
    fn presence_join(&self, room: &str, member: Member) -> BoxFuture<'static, Result<(), BrokerError>>;
    /// Remove a connection from `room`'s presence (made by the call, as
    /// [`Broker::presence_join`]).
    fn presence_leave(&self, room: &str, conn: &str) -> BoxFuture<'static, Result<(), BrokerError>>;
    /// Resolves once every presence change made before the call is
    /// recorded where presence is read, or with the error that kept one
    /// from it. By default at once: for a broker whose presence calls
    /// record before they return.
    fn presence_written(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }
    /// A page of `room`'s members on every node, in the order of their
    /// connection ids: at most `limit` after `after` (from the first
    /// without), with the room's member count.
    fn presence_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'static, Result<MembersPage, BrokerError>>;
    /// How many members `room` has on every node.
    fn presence_count(&self, room: &str) -> BoxFuture<'static, Result<u64, BrokerError>>;
    /// Where the broker stands.
    fn state(&self) -> BrokerState;
    /// Stop: send what was published before (bounded: the hub's last
    /// messages are its members' leaves), drop this node's presence, leave
    /// the cluster.
    fn shutdown(&self) -> BoxFuture<'static, ()>;
}

/// At most `limit` of `items` (in order, already past the cursor), and the
/// cursor of the next page when some are left.
pub(crate) fn paginate<T>(
    items: impl Iterator<Item = T>,
    limit: usize,
    conn: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<ConnId>) {
    let mut page: Vec<T> = items.take(limit.saturating_add(1)).collect();
    if page.len() > limit {
        page.truncate(limit);
        let next = page.last().map(|t| conn(t).to_owned());
        return (page, next);
    }
    (page, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            BrokerMessage::Room {
                node: "a".into(),
                room: "r".into(),
                except: Some("a.1".into()),
                payload: Wire::Text("{\"t\":\"x\"}\n".into()),
            },
            BrokerMessage::All { node: "a".into(), except: None, payload: Wire::Binary(Bytes::from_static(b"\n\0")) },
            BrokerMessage::Select {
                node: "a".into(),
                nsp: "/chat".into(),
                rooms: vec!["/chat#r".into(), "/chat#s".into()],
                except_rooms: vec!["/chat#t".into()],
                except: Some("a.3".into()),
                payload: Wire::Text("{}".into()),
                ack: Some((9, 2000)),
            },
            BrokerMessage::Answers { node: "b".into(), to: "a".into(), id: 9, answers: serde_json::json!([]) },
            BrokerMessage::Direct {
                node: "a".into(),
                conn: "b.2".into(),
                payload: Wire::Text("{}".into()),
                ack: Some(4),
                at: Some("c".into()),
            },
            BrokerMessage::RecoverAsk {
                node: "b".into(),
                to: "a".into(),
                id: 7,
                query: serde_json::json!({"pid": "p", "offset": "a-3", "nsp": "/"}),
            },
            BrokerMessage::RecoverAnswer { node: "a".into(), to: "b".into(), id: 7, session: Value::Null },
            BrokerMessage::AckReply { node: "b".into(), to: "a".into(), id: 4, result: Err(ErrorBody::new("x", "y")) },
        ];
        for m in msgs {
            assert_eq!(decode_message(&encode_message(&m)).unwrap(), m);
        }
        assert!(decode_message(b"garbage").is_err());
        assert_eq!(node_of("n.a.7"), "n.a");
    }
}
