//! The wire protocol `wsx-hub.v1` (see `PROTOCOL.md`): typed packets, and a
//! pure decoder and encoder between them and WebSocket messages.
//!
//! A packet without attachments is one JSON text message; a packet with
//! attachments is one binary message, the *envelope*: a 4-byte big-endian
//! header length, the JSON header, then each attachment as a 4-byte
//! big-endian length and its bytes.
//!
//! [`decode_text`] and [`decode_binary`] are pure functions from bytes to a
//! [`Packet`] or a [`DecodeError`]: they never panic, whatever the input, and
//! can be fuzzed directly.
//!
//! ```
//! use wsx_hub::protocol::{decode_text, encode, Packet, EventPacket, Wire};
//! let p = Packet::Event(EventPacket::new("chat", serde_json::json!({"text": "hi"})).with_id(7));
//! let Wire::Text(s) = encode(&p) else { unreachable!() };
//! assert_eq!(decode_text(&s).unwrap(), p);
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The subprotocol name negotiated in the opening handshake.
pub const SUBPROTOCOL: &str = "wsx-hub.v1";
/// The protocol version carried in the `welcome` packet.
pub const VERSION: u32 = 1;
/// Most attachments one packet may carry.
pub const MAX_ATTACHMENTS: usize = 64;
/// Longest room or event name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Largest request id: ids must be exact in JavaScript numbers (2^53 - 1).
pub const MAX_ID: u64 = (1 << 53) - 1;

/// A connection id, unique across the nodes of a cluster:
/// `<node id>.<sequence>`.
pub type ConnId = String;

/// One packet of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Server → client, first packet: the protocol version and the
    /// connection's id.
    Welcome(Welcome),
    /// Both ways: a named event with a JSON payload and attachments; with an
    /// `id`, the receiver answers with an [`Packet::Ack`].
    Event(EventPacket),
    /// Client → server: send an event to the members of a room.
    Publish(PublishPacket),
    /// Both ways: the answer to a request (`id`).
    Ack(AckPacket),
    /// Client → server: join a room (the ack carries the member count, and
    /// the members in a small room).
    Join(RoomRequest),
    /// Client → server: leave a room.
    Leave(RoomRequest),
    /// Client → server: a page of a room's member list.
    Members(MembersRequest),
    /// Server → client: how a room the client is in changed (coalesced).
    Presence(PresencePacket),
    /// Server → client: a frame was refused.
    Error(ErrorPacket),
}

impl Packet {
    /// The request id, if the packet carries one.
    pub fn id(&self) -> Option<u64> {
        match self {
            Packet::Event(e) => e.id,
            Packet::Publish(p) => p.id,
            Packet::Ack(a) => Some(a.id),
            Packet::Join(r) | Packet::Leave(r) => r.id,
            Packet::Members(m) => Some(m.id),
            Packet::Error(e) => e.id,
            Packet::Welcome(_) | Packet::Presence(_) => None,
        }
    }
}

/// The first packet the server sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Welcome {
    /// Protocol version ([`VERSION`]).
    pub version: u32,
    /// The connection's id.
    pub conn: ConnId,
    /// What the server's auth hook said about the client (e.g. its user).
    pub meta: Value,
}

/// A named event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPacket {
    /// The event's name (1 to [`MAX_NAME_LEN`] bytes).
    pub event: String,
    /// The JSON payload (`null` when absent).
    pub data: Value,
    /// A request id: the receiver answers with an ack.
    pub id: Option<u64>,
    /// Server → client: the room it was sent to.
    pub room: Option<String>,
    /// Server → client: the connection that sent it, if any.
    pub from: Option<ConnId>,
    /// Binary attachments.
    pub attachments: Vec<Bytes>,
    /// `data` is the array of a Socket.IO event's arguments (it had none,
    /// or more than one); without it, `data` is the one argument.
    pub spread: bool,
}

impl EventPacket {
    /// An event without id, room, sender or attachments.
    pub fn new(event: impl Into<String>, data: Value) -> Self {
        Self { event: event.into(), data, id: None, room: None, from: None, attachments: Vec::new(), spread: false }
    }

    /// With a request id.
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }
}

/// Client → server: an event for the members of a room.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishPacket {
    /// The room (the sender must be a member).
    pub room: String,
    /// The event's name.
    pub event: String,
    /// The payload.
    pub data: Value,
    /// A request id: the server acks once the event is accepted.
    pub id: Option<u64>,
    /// Deliver to the sender too (default: everyone but the sender).
    pub echo: bool,
    /// Binary attachments.
    pub attachments: Vec<Bytes>,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct AckPacket {
    /// The id of the request answered.
    pub id: u64,
    /// The result: a payload or an error.
    pub result: Result<Value, ErrorBody>,
}

/// An error in an ack or an error packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code (`not_member`, `room_full`, `bad_frame`, ...).
    pub code: String,
    /// A message for people.
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

/// Join or leave a room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomRequest {
    /// The room.
    pub room: String,
    /// A request id: the server acks.
    pub id: Option<u64>,
}

/// Client → server: a page of a room's members on every node, in the order
/// of their connection ids. The ack's data is a [`MembersPage`].
#[derive(Debug, Clone, PartialEq)]
pub struct MembersRequest {
    /// The room (the sender must be a member).
    pub room: String,
    /// The page starts after this connection id (the previous page's
    /// `next`); from the first member without it.
    pub after: Option<ConnId>,
    /// At most this many members (1 to [`MAX_PAGE`]; default
    /// [`DEFAULT_PAGE`]).
    pub limit: Option<u32>,
    /// The request id (required: the answer is the ack).
    pub id: u64,
}

/// The answer to a `join`: the room, and by its presence mode its member
/// count and, in a small room, its members (on every node, the joiner
/// included).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Joined {
    /// The room.
    pub room: String,
    /// Members in the room on every node (absent where presence is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The members, in the order of their connection ids, when the room
    /// shows names and is small enough (else read them with `members`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
}

/// Most members in one page of a member list.
pub const MAX_PAGE: u32 = 1000;
/// Members in a page when the request does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// One page of a room's member list: the answer to a [`MembersRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MembersPage {
    /// Members in the room on every node.
    pub count: u64,
    /// The page, in the order of connection ids.
    pub members: Vec<Member>,
    /// Where the next page starts (its request's `after`); absent on the
    /// last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ConnId>,
}

/// How a room's membership changed: the changes a node saw since its
/// previous presence packet for the room, sent at most every presence
/// interval (100 ms by default).
#[derive(Debug, Clone, PartialEq)]
pub struct PresencePacket {
    /// The room.
    pub room: String,
    /// Members in the room on every node, as the sending node knew it.
    pub count: u64,
    /// Who joined and who left; `None` where the room sends counts only
    /// (a room with presence names off, or larger than the server's limit
    /// for names).
    pub diff: Option<PresenceDiff>,
}

/// Who joined and who left a room since the previous presence packet.
/// A connection is in at most one of the two lists: where it is after the
/// changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// Members that joined.
    pub joins: Vec<Member>,
    /// Members that left (or disconnected).
    pub leaves: Vec<Member>,
}

impl PresenceDiff {
    /// Whether it holds no change.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }
}

/// A member of a room: a connection and what the auth hook said about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The connection id.
    pub conn: ConnId,
    /// The auth hook's metadata (`null` without one).
    #[serde(default)]
    pub meta: Value,
}

/// A refused frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorPacket {
    /// The id of the refused request, when it could be read.
    pub id: Option<u64>,
    /// Code and message.
    pub error: ErrorBody,
}

/// Error codes sent in acks and error packets.
pub mod codes {
    /// The frame is not a valid packet.
    pub const BAD_FRAME: &str = "bad_frame";
    /// The packet type is not one this side accepts.
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    /// No handler for the event.
    pub const UNKNOWN_EVENT: &str = "unknown_event";
    /// Publishing to a room the sender has not joined.
    pub const NOT_MEMBER: &str = "not_member";
    /// The room has as many members as allowed.
    pub const ROOM_FULL: &str = "room_full";
    /// The connection is in as many rooms as allowed.
    pub const TOO_MANY_ROOMS: &str = "too_many_rooms";
    /// Not allowed by the server.
    pub const FORBIDDEN: &str = "forbidden";
    /// The handler failed.
    pub const HANDLER_ERROR: &str = "handler_error";
    /// The request timed out.
    pub const TIMEOUT: &str = "timeout";
}

/// What a packet encodes to: a text or a binary WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// A JSON text message.
    Text(String),
    /// A binary envelope.
    Binary(Bytes),
}

impl Wire {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Wire::Text(s) => s.len(),
            Wire::Binary(b) => b.len(),
        }
    }

    /// Whether it is empty (never, for an encoded packet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As a WebSocket message.
    pub fn to_message(&self) -> wsx::Message {
        match self {
            Wire::Text(s) => wsx::Message::text(s.clone()),
            Wire::Binary(b) => wsx::Message::Binary(b.clone()),
        }
    }
}

/// Why bytes are not a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON, or not an object.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The `t` field names no packet type.
    #[error("unknown packet type {0:?}")]
    UnknownType(String),
    /// A required field is missing.
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    /// A field has a value the protocol does not allow.
    #[error("invalid field {field:?}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A text frame announced attachments (they need the binary envelope).
    #[error("a text frame cannot carry attachments")]
    AttachmentsInText,
    /// The binary envelope is cut short or its lengths do not add up.
    #[error("malformed binary envelope: {0}")]
    Envelope(&'static str),
}

/// The JSON object on the wire: every field of every packet type.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WireObject {
    t: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    /// `Some(Value::Null)` is written as `"data":null`; absent and `null`
    /// both read as `None` (and mean `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    meta: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    echo: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    joins: Option<Vec<Member>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    leaves: Option<Vec<Member>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachments: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spread: Option<bool>,
}

fn name(field: &'static str, v: Option<String>) -> Result<String, DecodeError> {
    let v = v.ok_or(DecodeError::MissingField(field))?;
    if v.is_empty() || v.len() > MAX_NAME_LEN {
        return Err(DecodeError::InvalidField { field, reason: "must be 1 to 200 bytes" });
    }
    Ok(v)
}

fn id(v: Option<u64>) -> Result<Option<u64>, DecodeError> {
    match v {
        Some(i) if i > MAX_ID => Err(DecodeError::InvalidField { field: "id", reason: "must be at most 2^53 - 1" }),
        other => Ok(other),
    }
}

fn required_id(v: Option<u64>) -> Result<u64, DecodeError> {
    id(v)?.ok_or(DecodeError::MissingField("id"))
}

impl WireObject {
    fn into_packet(self, attachments: Vec<Bytes>) -> Result<Packet, DecodeError> {
        let data = self.data.unwrap_or(Value::Null);
        let spread = self.spread == Some(true) && data.is_array();
        // The types that carry none (a type this side does not know is
        // `UnknownType` below, with attachments or without).
        let bare = matches!(self.t.as_str(), "welcome" | "ack" | "join" | "leave" | "members" | "presence" | "error");
        if bare && !attachments.is_empty() {
            return Err(DecodeError::InvalidField { field: "attachments", reason: "only events carry attachments" });
        }
        Ok(match self.t.as_str() {
            "welcome" => Packet::Welcome(Welcome {
                version: self.v.ok_or(DecodeError::MissingField("v"))?,
                conn: self.conn.ok_or(DecodeError::MissingField("conn"))?,
                meta: self.meta.unwrap_or(Value::Null),
            }),
            "event" => Packet::Event(EventPacket {
                event: name("event", self.event)?,
                data,
                id: id(self.id)?,
                room: self.room.map(|r| name("room", Some(r))).transpose()?,
                from: self.from,
                attachments,
                spread,
            }),
            "publish" => Packet::Publish(PublishPacket {
                room: name("room", self.room)?,
                event: name("event", self.event)?,
                data,
                id: id(self.id)?,
                echo: self.echo.unwrap_or(false),
                attachments,
            }),
            "ack" => Packet::Ack(AckPacket {
                id: required_id(self.id)?,
                result: match self.error {
                    Some(e) => Err(e),
                    None => Ok(data),
                },
            }),
            "join" => Packet::Join(RoomRequest { room: name("room", self.room)?, id: id(self.id)? }),
            "leave" => Packet::Leave(RoomRequest { room: name("room", self.room)?, id: id(self.id)? }),
            "members" => Packet::Members(MembersRequest {
                room: name("room", self.room)?,
                after: self.after,
                limit: match self.limit {
                    Some(n) if n == 0 || n > MAX_PAGE => {
                        return Err(DecodeError::InvalidField { field: "limit", reason: "must be 1 to 1000" })
                    }
                    n => n,
                },
                id: required_id(self.id)?,
            }),
            "presence" => Packet::Presence(PresencePacket {
                room: name("room", self.room)?,
                count: self.count.ok_or(DecodeError::MissingField("count"))?,
                diff: match (self.joins, self.leaves) {
                    (Some(joins), Some(leaves)) => Some(PresenceDiff { joins, leaves }),
                    (None, None) => None,
                    (None, _) => return Err(DecodeError::MissingField("joins")),
                    (_, None) => return Err(DecodeError::MissingField("leaves")),
                },
            }),
            "error" => Packet::Error(ErrorPacket {
                id: id(self.id)?,
                error: self.error.ok_or(DecodeError::MissingField("error"))?,
            }),
            _ => return Err(DecodeError::UnknownType(self.t.chars().take(MAX_NAME_LEN).collect())),
        })
    }

    fn from_packet(p: &Packet) -> (Self, &[Bytes]) {
        let mut o = WireObject::default();
        let mut att: &[Bytes] = &[];
        match p {
            Packet::Welcome(w) => {
                o.t = "welcome".into();
                o.v = Some(w.version);
                o.conn = Some(w.conn.clone());
                o.meta = (!w.meta.is_null()).then(|| w.meta.clone());
            }
            Packet::Event(e) => {
                o.t = "event".into();
                o.event = Some(e.event.clone());
                o.data = Some(e.data.clone());
                o.id = e.id;
                o.room = e.room.clone();
                o.from = e.from.clone();
                o.spread = e.spread.then_some(true);
                att = &e.attachments;
            }
            Packet::Publish(pb) => {
                o.t = "publish".into();
                o.room = Some(pb.room.clone());
                o.event = Some(pb.event.clone());
                o.data = Some(pb.data.clone());
                o.id = pb.id;
                o.echo = pb.echo.then_some(true);
                att = &pb.attachments;
            }
            Packet::Ack(a) => {
                o.t = "ack".into();
                o.id = Some(a.id);
                match &a.result {
                    Ok(v) => o.data = Some(v.clone()),
                    Err(e) => o.error = Some(e.clone()),
                }
            }
            Packet::Join(r) | Packet::Leave(r) => {
                o.t = if matches!(p, Packet::Join(_)) { "join" } else { "leave" }.into();
                o.room = Some(r.room.clone());
                o.id = r.id;
            }
            Packet::Members(m) => {
                o.t = "members".into();
                o.room = Some(m.room.clone());
                o.after = m.after.clone();
                o.limit = m.limit;
                o.id = Some(m.id);
            }
            Packet::Presence(pr) => {
                o.t = "presence".into();
                o.room = Some(pr.room.clone());
                o.count = Some(pr.count);
                if let Some(d) = &pr.diff {
                    o.joins = Some(d.joins.clone());
                    o.leaves = Some(d.leaves.clone());
                }
            }
            Packet::Error(e) => {
                o.t = "error".into();
                o.id = e.id;
                o.error = Some(e.error.clone());
            }
        }
        if !att.is_empty() {
            o.attachments = Some(att.len() as u64);
        }
        (o, att)
    }
}

fn parse_object(bytes: &[u8]) -> Result<WireObject, DecodeError> {
    serde_json::from_slice::<WireObject>(bytes).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Decode a text message.
///
/// ```
/// use wsx_hub::protocol::{decode_text, DecodeError, Packet};
/// let p = decode_text(r#"{"t":"join","room":"lobby","id":1}"#).unwrap();
/// assert!(matches!(p, Packet::Join(r) if r.room == "lobby" && r.id == Some(1)));
/// assert_eq!(decode_text(r#"{"t":"nope"}"#), Err(DecodeError::UnknownType("nope".into())));
/// assert!(decode_text("[1,2").is_err());
/// ```
pub fn decode_text(text: &str) -> Result<Packet, DecodeError> {
    let o = parse_object(text.as_bytes())?;
    if o.attachments.unwrap_or(0) != 0 {
        return Err(DecodeError::AttachmentsInText);
    }
    o.into_packet(Vec::new())
}

/// The request id of a frame that did not decode, when one can be read
/// (so that the refusal can answer the request).
///
/// ```
/// assert_eq!(wsx_hub::protocol::salvage_id(r#"{"t":"join","room":"","id":4}"#), Some(4));
/// assert_eq!(wsx_hub::protocol::salvage_id("nonsense"), None);
/// ```
pub fn salvage_id(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<u64>,
    }
    serde_json::from_str::<IdOnly>(text).ok()?.id.filter(|i| *i <= MAX_ID)
}

/// The request id of a message that did not decode, when one can be read:
/// from a text message's object, or from a binary envelope's JSON header
/// when its length and bytes are whole (whatever follows it), so that the
/// refusal answers the request in both cases.
///
/// ```
/// use wsx_hub::protocol::salvage_message_id;
/// let header = br#"{"t":"join","room":"r","id":5,"attachments":1}"#;
/// let mut envelope = (header.len() as u32).to_be_bytes().to_vec();
/// envelope.extend_from_slice(header); // and no attachment
/// assert_eq!(salvage_message_id(&wsx::Message::binary(envelope)), Some(5));
/// assert_eq!(salvage_message_id(&wsx::Message::binary(vec![0, 0, 0, 9, b'{'])), None);
/// assert_eq!(salvage_message_id(&wsx::Message::text(r#"{"t":"join","id":4}"#)), Some(4));
/// ```
pub fn salvage_message_id(msg: &wsx::Message) -> Option<u64> {
    match msg {
        wsx::Message::Text(t) => salvage_id(t.as_str()),
        wsx::Message::Binary(b) => envelope_header(b).ok().and_then(|(header, _)| salvage_id(header)),
        _ => None,
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// A binary envelope's JSON header, and where it ends.
fn envelope_header(bytes: &[u8]) -> Result<(&str, usize), DecodeError> {
    let header_len = read_u32(bytes, 0).ok_or(DecodeError::Envelope("shorter than its header length"))?;
    let header_end = 4usize.checked_add(header_len).ok_or(DecodeError::Envelope("header length overflows"))?;
    let header = bytes.get(4..header_end).ok_or(DecodeError::Envelope("header cut short"))?;
    // JSON between systems is UTF-8 (RFC 8259 §8.1). serde_json checks the
    // strings it keeps but skips over those it ignores, so without this an
    // unknown field could carry bytes a text message cannot.
    let header = std::str::from_utf8(header).map_err(|_| DecodeError::Envelope("header is not UTF-8"))?;
    Ok((header, header_end))
}

/// Decode a binary message (the envelope). Attachments are slices of
/// `bytes`, not copies.
///
/// ```
/// use wsx_hub::protocol::{decode_binary, encode, EventPacket, Packet, Wire};
/// let mut e = EventPacket::new("file", serde_json::json!({"name": "a.bin"}));
/// e.attachments.push(bytes::Bytes::from_static(b"\x00\x01\x02"));
/// let Wire::Binary(b) = encode(&Packet::Event(e.clone())) else { unreachable!() };
/// assert_eq!(decode_binary(b).unwrap(), Packet::Event(e));
/// ```
pub fn decode_binary(bytes: Bytes) -> Result<Packet, DecodeError> {
    let (header, header_end) = envelope_header(&bytes)?;
    let o = parse_object(header.as_bytes())?;
    let count = o.attachments.unwrap_or(0);
    if count == 0 {
        return Err(DecodeError::Envelope("a binary envelope needs at least one attachment"));
    }
    if count > MAX_ATTACHMENTS as u64 {
        return Err(DecodeError::Envelope("more than 64 attachments"));
    }
    let mut at = header_end;
    let mut attachments = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = read_u32(&bytes, at).ok_or(DecodeError::Envelope("attachment length cut short"))?;
        let start = at + 4;
        let end = start.checked_add(len).ok_or(DecodeError::Envelope("attachment length overflows"))?;
        if end > bytes.len() {
            return Err(DecodeError::Envelope("attachment cut short"));
        }
        attachments.push(bytes.slice(start..end));
        at = end;
    }
    if at != bytes.len() {
        return Err(DecodeError::Envelope("bytes after the last attachment"));
    }
    o.into_packet(attachments)
}

/// Decode a WebSocket data message; `None` for control messages.
pub fn decode_message(msg: &wsx::Message) -> Option<Result<Packet, DecodeError>> {
    match msg {
        wsx::Message::Text(t) => Some(decode_text(t.as_str())),
        wsx::Message::Binary(b) => Some(decode_binary(b.clone())),
        _ => None,
    }
}

/// Encode a packet: text without attachments, the binary envelope with
/// them.
pub fn encode(p: &Packet) -> Wire {
    let (o, att) = WireObject::from_packet(p);
    // Serializing a struct of strings, numbers and `Value`s cannot fail.
    let json = serde_json::to_vec(&o).unwrap_or_default();
    if att.is_empty() {
        return Wire::Text(String::from_utf8(json).unwrap_or_default());
    }
    let total = 4 + json.len() + att.iter().map(|a| 4 + a.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(json.len() as u32);
    out.put_slice(&json);
    for a in att {
        out.put_u32(a.len() as u32);
        out.put_slice(a);
    }
    Wire::Binary(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_type_round_trips() {
        let member = Member { conn: "n1.1".into(), meta: json!({"user": "ann"}) };
        let packets = vec![
            Packet::Welcome(Welcome { version: 1, conn: "n1.1".into(), meta: Value::Null }),
            Packet::Event(EventPacket::new("chat", json!({"a": [1, 2]}))),
            Packet::Publish(PublishPacket {
                room: "r".into(),
                event: "e".into(),
                data: Value::Null,
                id: Some(3),
                echo: true,
                attachments: vec![Bytes::new(), Bytes::from_static(b"xyz")],
            }),
            Packet::Ack(AckPacket { id: 9, result: Ok(json!(1)) }),
            Packet::Ack(AckPacket { id: 9, result: Err(ErrorBody::new("room_full", "full")) }),
            Packet::Join(RoomRequest { room: "r".into(), id: None }),
            Packet::Leave(RoomRequest { room: "r".into(), id: Some(1) }),
            Packet::Members(MembersRequest { room: "r".into(), after: Some("n1.1".into()), limit: Some(5), id: 4 }),
            Packet::Members(MembersRequest { room: "r".into(), after: None, limit: None, id: 0 }),
            Packet::Presence(PresencePacket {
                room: "r".into(),
                count: 3,
                diff: Some(PresenceDiff { joins: vec![member.clone()], leaves: vec![] }),
            }),
            Packet::Presence(PresencePacket { room: "r".into(), count: 100_000, diff: None }),
            Packet::Error(ErrorPacket { id: None, error: ErrorBody::new("bad_frame", "x") }),
        ];
        for p in packets {
            let back = match encode(&p) {
                Wire::Text(s) => decode_text(&s),
                Wire::Binary(b) => decode_binary(b),
            };
            assert_eq!(back.as_ref(), Ok(&p), "{p:?}");
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(decode_text(""), Err(DecodeError::Json(_))));
        assert!(matches!(decode_text("42"), Err(DecodeError::Json(_))));
        assert!(matches!(decode_text(r#"{"room":"x"}"#), Err(DecodeError::Json(_))));
        assert_eq!(decode_text(r#"{"t":"event"}"#), Err(DecodeError::MissingField("event")));
        assert_eq!(decode_text(r#"{"t":"ack"}"#), Err(DecodeError::MissingField("id")));
        assert_eq!(decode_text(r#"{"t":"members","room":"r"}"#), Err(DecodeError::MissingField("id")));
        for limit in [0, 1001] {
            let text = format!(r#"{{"t":"members","room":"r","id":1,"limit":{limit}}}"#);
            assert!(matches!(decode_text(&text), Err(DecodeError::InvalidField { field: "limit", .. })), "{limit}");
        }
        assert_eq!(decode_text(r#"{"t":"presence","room":"r"}"#), Err(DecodeError::MissingField("count")));
        assert_eq!(
            decode_text(r#"{"t":"presence","room":"r","count":1,"joins":[]}"#),
            Err(DecodeError::MissingField("leaves"))
        );
        assert!(matches!(decode_text(r#"{"t":"join","room":""}"#), Err(DecodeError::InvalidField { .. })));
        assert!(matches!(decode_text(r#"{"t":"ack","id":9007199254740992}"#), Err(DecodeError::InvalidField { .. })));
        assert!(matches!(decode_text(r#"{"t":"ack","id":-1}"#), Err(DecodeError::Json(_))));
        assert_eq!(decode_text(r#"{"t":"event","event":"e","attachments":1}"#), Err(DecodeError::AttachmentsInText));
        let long = "x".repeat(201);
        assert!(decode_text(&format!(r#"{{"t":"join","room":"{long}"}}"#)).is_err());
        // Binary envelopes.
        for b in [&b""[..], b"\x00\x00", b"\x00\x00\x00\x05{}", b"\xff\xff\xff\xff{}"] {
            assert!(matches!(decode_binary(Bytes::copy_from_slice(b)), Err(DecodeError::Envelope(_))), "{b:?}");
        }
        let header = br#"{"t":"event","event":"e","attachments":2}"#;
        let mut b = (header.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(header);
        b.extend_from_slice(&[0, 0, 0, 1, 7]);
        assert_eq!(decode_binary(Bytes::from(b.clone())), Err(DecodeError::Envelope("attachment length cut short")));
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert!(decode_binary(Bytes::from(b.clone())).is_ok());
        b.push(0);
        assert_eq!(decode_binary(Bytes::from(b)), Err(DecodeError::Envelope("bytes after the last attachment")));
        let join = br#"{"t":"join","room":"r","attachments":1}"#;
        let mut b = (join.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(join);
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(decode_binary(Bytes::from(b)), Err(DecodeError::InvalidField { .. })));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let p = decode_text(r#"{"t":"join","room":"r","future":{"x":1}}"#).unwrap();
        assert_eq!(p, Packet::Join(RoomRequest { room: "r".into(), id: None }));
    }
}
