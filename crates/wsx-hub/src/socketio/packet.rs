//! Socket.IO v5 packets: the text encoding, binary attachments, and a
//! per-connection decoder.
//!
//! A packet is written `<type>[<attachments>-][<nsp>,][<id>][<json>]`
//! (the Socket.IO protocol v5, "Packet encoding"), and travels inside an
//! Engine.IO v4 message packet: on a websocket, the text frame
//! `4` + the packet, then one binary frame per attachment.
//!
//! | packet | text |
//! | --- | --- |
//! | CONNECT to `/` | `0` |
//! | CONNECT to `/admin` with `{"token":"1"}` | `0/admin,{"token":"1"}` |
//! | EVENT `["foo"]` with ack id 12 | `212["foo"]` |
//! | ACK 12 `[]` on `/admin` | `3/admin,12[]` |
//! | EVENT `["baz", <01 02>]` | `51-["baz",{"_placeholder":true,"num":0}]` + the bytes `01 02` |
//!
//! Binary-ness is not a packet type here: an [`PacketType::Event`] or
//! [`PacketType::Ack`] with attachments is encoded as BINARY_EVENT (5) or
//! BINARY_ACK (6), and decoding those gives an event or an ack with
//! attachments. The placeholders `{"_placeholder":true,"num":N}` stay in
//! [`Packet::data`] where the sender put them; `num` is the index in
//! [`Packet::attachments`].
//!
//! ```
//! use bytes::Bytes;
//! use serde_json::json;
//! use wsx_hub::socketio::packet::{placeholder, DecodeLimits, Decoder, Packet};
//!
//! let p = Packet::event("/", vec![json!("file"), placeholder(0)], vec![Bytes::from_static(b"\x01\x02")]);
//! assert_eq!(p.encode_text(), r#"51-["file",{"_placeholder":true,"num":0}]"#);
//!
//! let mut d = Decoder::new(DecodeLimits::default());
//! assert_eq!(d.decode_text(&p.encode_text()), Ok(None)); // waits for the attachment
//! assert_eq!(d.decode_binary(Bytes::from_static(b"\x01\x02")), Ok(Some(p)));
//! ```

use bytes::Bytes;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The kind of a Socket.IO packet.
///
/// BINARY_EVENT and BINARY_ACK are [`Event`](PacketType::Event) and
/// [`Ack`](PacketType::Ack) with attachments.
///
/// ```
/// use wsx_hub::socketio::packet::{Packet, PacketType};
/// assert_eq!(Packet::disconnect("/chat").kind, PacketType::Disconnect);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// CONNECT (0): a client joins a namespace; the server answers with
    /// `{"sid":...}`.
    Connect,
    /// DISCONNECT (1): one side leaves a namespace.
    Disconnect,
    /// EVENT (2), or BINARY_EVENT (5) with attachments: `[name, ...args]`.
    Event,
    /// ACK (3), or BINARY_ACK (6) with attachments: the answer to an event
    /// that had an id.
    Ack,
    /// CONNECT_ERROR (4): the server refuses a CONNECT.
    ConnectError,
}

/// A Socket.IO packet.
///
/// ```
/// use serde_json::json;
/// use wsx_hub::socketio::packet::Packet;
///
/// let p = Packet::event("/chat", vec![json!("a"), json!(1)], vec![]).with_id(12);
/// assert_eq!(p.encode_text(), r#"2/chat,12["a",1]"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The packet type.
    pub kind: PacketType,
    /// The namespace, `/` for the main one. It begins with `/` and holds
    /// no `,` (decoded packets always do; the encoder writes other values
    /// as they are, which the other side will not read back).
    pub nsp: String,
    /// The acknowledgement id: events that want an answer, and acks.
    pub id: Option<u64>,
    /// The JSON payload: an object or nothing (CONNECT), nothing
    /// (DISCONNECT), `[name, ...args]` (EVENT), an array (ACK), an object
    /// or a string (CONNECT_ERROR). Binary arguments are placeholders
    /// `{"_placeholder":true,"num":N}`, see [`placeholder`].
    pub data: Option<Value>,
    /// The binary attachments of an event or an ack, in placeholder order.
    /// Other packet types have none (the encoder ignores them).
    pub attachments: Vec<Bytes>,
}

fn nsp_or_root(nsp: &str) -> String {
    if nsp.is_empty() {
        "/".to_owned()
    } else {
        nsp.to_owned()
    }
}

impl Packet {
    fn new(kind: PacketType, nsp: &str, data: Option<Value>, attachments: Vec<Bytes>) -> Self {
        Packet { kind, nsp: nsp_or_root(nsp), id: None, data, attachments }
    }

    /// CONNECT to `nsp`, with the client's auth payload (an object) or,
    /// from a server, `{"sid":...}`.
    ///
    /// ```
    /// use serde_json::json;
    /// use wsx_hub::socketio::packet::Packet;
    /// assert_eq!(Packet::connect("/", None).encode_text(), "0");
    /// assert_eq!(Packet::connect("/admin", Some(json!({"sid": "x"}))).encode_text(), r#"0/admin,{"sid":"x"}"#);
    /// ```
    pub fn connect(nsp: &str, data: Option<Value>) -> Self {
        Packet::new(PacketType::Connect, nsp, data, Vec::new())
    }

    /// CONNECT_ERROR: `{"message":message}`, with `"data":data` when given.
    ///
    /// ```
    /// use wsx_hub::socketio::packet::Packet;
    /// let p = Packet::connect_error("/random", "Invalid namespace", None);
    /// assert_eq!(p.encode_text(), r#"4/random,{"message":"Invalid namespace"}"#);
    /// ```
    pub fn connect_error(nsp: &str, message: &str, data: Option<Value>) -> Self {
        let mut m = Map::new();
        m.insert("message".to_owned(), Value::String(message.to_owned()));
        if let Some(d) = data {
            m.insert("data".to_owned(), d);
        }
        Packet::new(PacketType::ConnectError, nsp, Some(Value::Object(m)), Vec::new())
    }

    /// DISCONNECT from `nsp`.
    ///
    /// ```
    /// use wsx_hub::socketio::packet::Packet;
    /// assert_eq!(Packet::disconnect("/admin").encode_text(), "1/admin,");
    /// ```
    pub fn disconnect(nsp: &str) -> Self {
        Packet::new(PacketType::Disconnect, nsp, None, Vec::new())
    }

    /// EVENT: `args` is `[name, ...args]`, binary arguments as
    /// [`placeholder`]s numbered in `attachments`.
    ///
    /// ```
    /// use serde_json::json;
    /// use wsx_hub::socketio::packet::Packet;
    /// assert_eq!(Packet::event("/", vec![json!("foo")], vec![]).encode_text(), r#"2["foo"]"#);
    /// ```
    pub fn event(nsp: &str, args: Vec<Value>, attachments: Vec<Bytes>) -> Self {
        Packet::new(PacketType::Event, nsp, Some(Value::Array(args)), attachments)
    }

    /// ACK of the event `id`, with the answer's arguments.
    ///
    /// ```
    /// use serde_json::json;
    /// use wsx_hub::socketio::packet::Packet;
    /// assert_eq!(Packet::ack("/admin", 13, vec![json!("bar")], vec![]).encode_text(), r#"3/admin,13["bar"]"#);
    /// ```
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) -> Self {
        Packet { id: Some(id), ..Packet::new(PacketType::Ack, nsp, Some(Value::Array(args)), attachments) }
    }

    /// The same packet with the acknowledgement id `id` (an event that
    /// wants an answer).
    ///
    /// ```
    /// use serde_json::json;
    /// use wsx_hub::socketio::packet::Packet;
    /// assert_eq!(Packet::event("/", vec![json!("foo")], vec![]).with_id(12).encode_text(), r#"212["foo"]"#);
    /// ```
    pub fn with_id(self, id: u64) -> Self {
        Packet { id: Some(id), ..self }
    }

    /// Whether this packet goes as BINARY_EVENT or BINARY_ACK.
    fn is_binary(&self) -> bool {
        matches!(self.kind, PacketType::Event | PacketType::Ack) && !self.attachments.is_empty()
    }

    /// The Socket.IO text of the packet (without the Engine.IO `4`): the
    /// `/` namespace omitted, JSON compact. Attachments follow it as
    /// binary messages ([`Packet::to_frames`]).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use serde_json::json;
    /// use wsx_hub::socketio::packet::{placeholder, Packet};
    /// let p = Packet::ack("/", 15, vec![json!("bar"), placeholder(0)], vec![Bytes::from_static(&[1, 2, 3, 4])]);
    /// assert_eq!(p.encode_text(), r#"61-15["bar",{"_placeholder":true,"num":0}]"#);
    /// ```
    pub fn encode_text(&self) -> String {
        let mut s = String::new();
        self.encode_into(&mut s);
        s
    }

    /// Append [`Packet::encode_text`] to `out` (which may already hold the
    /// Engine.IO `4`, or earlier packets).
    ///
    /// ```
    /// use wsx_hub::socketio::packet::Packet;
    /// let mut out = String::from("4");
    /// Packet::connect("/", None).encode_into(&mut out);
    /// assert_eq!(out, "40");
    /// ```
    pub fn encode_into(&self, out: &mut String) {
        let binary = self.is_binary();
        out.push(match (self.kind, binary) {
            (PacketType::Connect, _) => '0',
            (PacketType::Disconnect, _) => '1',
            (PacketType::Event, false) => '2',
            (PacketType::Ack, false) => '3',
            (PacketType::ConnectError, _) => '4',
            (PacketType::Event, true) => '5',
            (PacketType::Ack, true) => '6',
        });
        // Writing to a String does not fail.
        if binary {
            let _ = write!(out, "{}-", self.attachments.len());
        }
        if !self.nsp.is_empty() && self.nsp != "/" {
            out.push_str(&self.nsp);
            out.push(',');
        }
        if let Some(id) = self.id {
            let _ = write!(out, "{id}");
        }
        if let Some(data) = &self.data {
            // `Value`'s Display is compact JSON.
            let _ = write!(out, "{data}");
        }
    }

    /// The websocket messages of this packet on an Engine.IO v4
    /// connection: the text `4` + [`Packet::encode_text`], then each
    /// attachment as a binary message.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use serde_json::json;
    /// use wsx_hub::socketio::packet::{placeholder, Packet};
    /// let p = Packet::event("/", vec![json!("a"), placeholder(0)], vec![Bytes::from_static(&[1])]);
    /// let frames = p.to_frames();
    /// assert_eq!(frames[0].as_text(), Some(r#"451-["a",{"_placeholder":true,"num":0}]"#));
    /// assert_eq!(frames[1], wsx::Message::binary(vec![1]));
    /// ```
    pub fn to_frames(&self) -> Vec<wsx::Message> {
        let mut text = String::from("4");
        self.encode_into(&mut text);
        let mut frames = Vec::with_capacity(1 + self.attachments.len());
        frames.push(wsx::Message::text(text));
        if self.is_binary() {
            frames.extend(self.attachments.iter().cloned().map(wsx::Message::Binary));
        }
        frames
    }
}

/// The placeholder of attachment `num`: `{"_placeholder":true,"num":num}`.
///
/// ```
/// use wsx_hub::socketio::packet::placeholder;
/// assert_eq!(placeholder(1).to_string(), r#"{"_placeholder":true,"num":1}"#);
/// ```
pub fn placeholder(num: usize) -> Value {
    let mut m = Map::new();
    m.insert("_placeholder".to_owned(), Value::Bool(true));
    m.insert("num".to_owned(), Value::from(num));
    Value::Object(m)
}

/// Whether `v` is a placeholder: an object whose `_placeholder` is `true`
/// (what the official parser checks).
fn is_placeholder(v: &Map<String, Value>) -> bool {
    v.get("_placeholder") == Some(&Value::Bool(true))
}

/// Visit every placeholder object in `value` (depth first, without
/// recursion, so that any nesting is fine).
fn for_each_placeholder<'a>(value: &'a Value, mut f: impl FnMut(&'a Map<String, Value>)) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) if is_placeholder(m) => f(m),
            Value::Object(m) => stack.extend(m.values()),
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
}

/// How many placeholders `{"_placeholder":true,...}` `value` holds, at any
/// depth (a placeholder's own fields are not searched).
///
/// ```
/// use serde_json::json;
/// use wsx_hub::socketio::packet::{placeholder, placeholders};
/// assert_eq!(placeholders(&json!(["a", placeholder(0), {"b": [placeholder(1)]}])), 2);
/// assert_eq!(placeholders(&json!(["a", {"_placeholder": false}])), 0);
/// ```
pub fn placeholders(value: &Value) -> usize {
    let mut n = 0;
    for_each_placeholder(value, |_| n += 1);
    n
}

/// Check the placeholders of a binary packet with `count` attachments:
/// each one's `num` an integer below `count`, and each attachment
/// referenced (the official encoder writes exactly one placeholder per
/// attachment; an attachment nothing points to would be bytes held for
/// nothing).
fn check_placeholders(value: &Value, count: usize) -> Result<(), DecodeError> {
    let mut referenced = vec![false; count];
    let mut bad = None;
    for_each_placeholder(value, |m| {
        match m.get("num").and_then(Value::as_u64) {
            Some(n) if n < count as u64 => referenced[n as usize] = true,
            Some(_) => bad = bad.or(Some("num is not below the attachment count")),
            None => bad = bad.or(Some("num is not a non-negative integer")),
        };
    });
    if let Some(reason) = bad {
        return Err(DecodeError::BadPlaceholder(reason));
    }
    if referenced.iter().any(|r| !r) {
        return Err(DecodeError::BadPlaceholder("an attachment has no placeholder"));
    }
    Ok(())
}

/// Bounds of [`Decoder`] on binary packets.
///
/// ```
/// use wsx_hub::socketio::packet::DecodeLimits;
/// let l = DecodeLimits { max_attachments: 8, ..DecodeLimits::default() };
/// assert_eq!(l.max_attachment_bytes, 1_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Attachments per packet (default 64).
    pub max_attachments: usize,
    /// Bytes of all the attachments of one packet together (default
    /// 1,000,000, Engine.IO's default `maxPayload`).
    pub max_attachment_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_attachments: 64, max_attachment_bytes: 1_000_000 }
    }
}

/// Why a packet was refused. The peer broke the protocol: the official
/// server closes the connection.
///
/// ```
/// use wsx_hub::socketio::packet::{DecodeError, Decoder};
/// let mut d = Decoder::default();
/// // `42{}` on the wire: the Engine.IO message `4`, then `2{}`.
/// assert_eq!(d.decode_text("2{}"), Err(DecodeError::BadPayload("EVENT needs a non-empty array starting with a string")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An empty text message.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type 0 to 6.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A BINARY_EVENT or BINARY_ACK without a count of 1 or more digits
    /// followed by `-`, or with a count of 0.
    #[error("invalid attachment count")]
    BadAttachmentCount,
    /// More attachments announced than [`DecodeLimits::max_attachments`].
    #[error("{count} attachments, at most {max} allowed")]
    TooManyAttachments {
        /// The announced count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The attachments together exceed [`DecodeLimits::max_attachment_bytes`].
    #[error("attachments larger than {max} bytes")]
    AttachmentsTooLarge {
        /// The limit.
        max: usize,
    },
    /// A namespace with control characters.
    #[error("invalid namespace")]
    BadNamespace,
    /// An acknowledgement id that overflows 64 bits, an ACK without one, or
    /// an id on a packet other than EVENT and ACK.
    #[error("invalid acknowledgement id")]
    BadAckId,
    /// The payload is not JSON.
    #[error("invalid JSON payload: {0}")]
    BadJson(String),
    /// The payload is JSON of the wrong shape for the packet type.
    #[error("invalid payload: {0}")]
    BadPayload(&'static str),
    /// A binary message when no BINARY_EVENT or BINARY_ACK waits for one.
    #[error("binary message without a packet waiting for attachments")]
    UnexpectedBinary,
    /// A text message while a packet still waits for attachments.
    #[error("text message while attachments are still missing")]
    UnexpectedText,
    /// A placeholder that references no attachment, or an attachment no
    /// placeholder references.
    #[error("invalid placeholder: {0}")]
    BadPlaceholder(&'static str),
}

/// A binary packet whose attachments are still arriving.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
    bytes: usize,
}

/// Decodes the packets of one connection.
///
/// A BINARY_EVENT or BINARY_ACK header is held until its attachments (the
/// next binary messages) have arrived. After an error the decoder drops
/// what it held and starts afresh; the connection should be closed.
/// Memory is bounded by one header (the caller bounds text messages, as
/// Engine.IO's `maxPayload` does) and [`DecodeLimits`].
///
/// ```
/// use serde_json::json;
/// use wsx_hub::socketio::packet::{DecodeLimits, Decoder, Packet};
///
/// let mut d = Decoder::new(DecodeLimits::default());
/// let p = d.decode_text(r#"2/chat,12["a",1]"#).unwrap().unwrap();
/// assert_eq!(p, Packet::event("/chat", vec![json!("a"), json!(1)], vec![]).with_id(12));
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    limits: DecodeLimits,
    pending: Option<Pending>,
}

impl Decoder {
    /// A decoder with these limits.
    ///
    /// ```
    /// use wsx_hub::socketio::packet::{DecodeError, DecodeLimits, Decoder};
    /// let mut d = Decoder::new(DecodeLimits { max_attachments: 1, ..Default::default() });
    /// assert_eq!(d.decode_text("52-[\"a\"]"), Err(DecodeError::TooManyAttachments { count: 2, max: 1 }));
    /// ```
    pub fn new(limits: DecodeLimits) -> Self {
        Decoder { limits, pending: None }
    }

    /// Decode a text message's packet (the Engine.IO `4` removed).
    /// `Ok(None)`: a binary packet, waiting for its attachments.
    ///
    /// ```
    /// use wsx_hub::socketio::packet::{Decoder, Packet};
    /// let mut d = Decoder::default();
    /// assert_eq!(d.decode_text("0/custom,").unwrap(), Some(Packet::connect("/custom", None)));
    /// assert_eq!(d.decode_text(r#"51-["a",{"_placeholder":true,"num":0}]"#).unwrap(), None);
    /// assert!(d.is_waiting());
    /// ```
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Packet>, DecodeError> {
        if self.pending.take().is_some() {
            return Err(DecodeError::UnexpectedText);
        }
        let (packet, expected) = decode_header(text, &self.limits)?;
        if expected == 0 {
            return Ok(Some(packet));
        }
        self.pending = Some(Pending { packet, expected, bytes: 0 });
        Ok(None)
    }

    /// Decode a binary message: the next attachment of the waiting packet.
    /// `Ok(Some)` with the last one.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use wsx_hub::socketio::packet::{DecodeError, Decoder};
    /// let mut d = Decoder::default();
    /// assert_eq!(d.decode_binary(Bytes::from_static(b"x")), Err(DecodeError::UnexpectedBinary));
    /// d.decode_text(r#"51-["a",{"_placeholder":true,"num":0}]"#).unwrap();
    /// let p = d.decode_binary(Bytes::from_static(b"x")).unwrap().unwrap();
    /// assert_eq!(p.attachments, [Bytes::from_static(b"x")]);
    /// ```
    pub fn decode_binary(&mut self, bytes: Bytes) -> Result<Option<Packet>, DecodeError> {
        let Some(p) = self.pending.as_mut() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        p.bytes = p.bytes.saturating_add(bytes.len());
        if p.bytes > self.limits.max_attachment_bytes {
            self.pending = None;
            return Err(DecodeError::AttachmentsTooLarge { max: self.limits.max_attachment_bytes });
        }
        p.packet.attachments.push(bytes);
        if p.packet.attachments.len() < p.expected {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| p.packet))
    }

    /// Whether a binary packet waits for attachments.
    ///
    /// ```
    /// use wsx_hub::socketio::packet::Decoder;
    /// let mut d = Decoder::default();
    /// d.decode_text(r#"51-["a",{"_placeholder":true,"num":0}]"#).unwrap();
    /// assert!(d.is_waiting());
    /// ```
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }
}

/// Event names the official parser refuses in an EVENT (they mean
/// something to the client or the server library itself).
const RESERVED_EVENTS: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// A run of ASCII digits at the start of `s` as a number: `None` when there
/// are none, `Some(None)` on overflow; and the rest of `s`.
fn digits(s: &str) -> (Option<Option<u64>>, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return (None, s);
    }
    let value = s[..n].bytes().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')));
    (Some(value), &s[n..])
}

/// Parse a packet's text: the packet (attachments not yet there) and how
/// many attachments follow.
fn decode_header(text: &str, limits: &DecodeLimits) -> Result<(Packet, usize), DecodeError> {
    let mut chars = text.chars();
    let t = chars.next().ok_or(DecodeError::Empty)?;
    let mut rest = chars.as_str();
    let (kind, binary) = match t {
        '0' => (PacketType::Connect, false),
        '1' => (PacketType::Disconnect, false),
        '2' => (PacketType::Event, false),
        '3' => (PacketType::Ack, false),
        '4' => (PacketType::ConnectError, false),
        '5' => (PacketType::Event, true),
        '6' => (PacketType::Ack, true),
        c => return Err(DecodeError::UnknownType(c)),
    };

    let mut count = 0;
    if binary {
        let (n, after) = digits(rest);
        let n = match (n, after.strip_prefix('-')) {
            (Some(Some(n)), Some(after)) if n > 0 => {
                rest = after;
                n
            }
            _ => return Err(DecodeError::BadAttachmentCount),
        };
        count = usize::try_from(n).unwrap_or(usize::MAX);
        if count > limits.max_attachments {
            return Err(DecodeError::TooManyAttachments { count, max: limits.max_attachments });
        }
    }

    let mut nsp = "/";
    if rest.starts_with('/') {
        let (name, after) = match rest.find(',') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if name.chars().any(char::is_control) {
            return Err(DecodeError::BadNamespace);
        }
        nsp = name;
        rest = after;
    }

    let (id, after) = digits(rest);
    let id = match id {
        None => None,
        Some(None) => return Err(DecodeError::BadAckId),
        Some(Some(id)) => {
            rest = after;
            Some(id)
        }
    };
    // Ids belong to events (optional) and acks (required).
    match (kind, id) {
        (PacketType::Event, _) | (PacketType::Ack, Some(_)) => {}
        (PacketType::Connect | PacketType::Disconnect | PacketType::ConnectError, None) => {}
        _ => return Err(DecodeError::BadAckId),
    }

    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest).map_err(|e| DecodeError::BadJson(e.to_string()))?)
    };
    check_payload(kind, data.as_ref())?;
    if binary {
        if let Some(d) = &data {
            check_placeholders(d, count)?;
        }
    }
    let packet = Packet {
        kind,
        nsp: nsp.to_owned(),
        id,
        data,
        attachments: if count > 0 { Vec::with_capacity(count) } else { Vec::new() },
    };
    Ok((packet, count))
}

/// The payload shapes of the protocol.
fn check_payload(kind: PacketType, data: Option<&Value>) -> Result<(), DecodeError> {
    let ok = match kind {
        PacketType::Connect => data.is_none_or(Value::is_object),
        PacketType::Disconnect => data.is_none(),
        PacketType::Event => match data {
            Some(Value::Array(a)) => match a.first() {
                Some(Value::String(name)) if RESERVED_EVENTS.contains(&name.as_str()) => {
                    return Err(DecodeError::BadPayload("reserved event name"))
                }
                Some(Value::String(_)) => true,
                _ => false,
            },
            _ => false,
        },
        PacketType::Ack => data.is_some_and(Value::is_array),
        PacketType::ConnectError => data.is_some_and(|d| d.is_object() || d.is_string()),
    };
    if ok {
        return Ok(());
    }
    Err(DecodeError::BadPayload(match kind {
        PacketType::Connect => "CONNECT data must be an object",
        PacketType::Disconnect => "DISCONNECT has no data",
        PacketType::Event => "EVENT needs a non-empty array starting with a string",
        PacketType::Ack => "ACK needs an array",
        PacketType::ConnectError => "CONNECT_ERROR needs an object or a string",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn decode(text: &str) -> Result<Option<Packet>, DecodeError> {
        Decoder::default().decode_text(text)
    }

    fn ok(text: &str) -> Packet {
        match decode(text) {
            Ok(Some(p)) => p,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    // ------------------------------------------------------------ encoding

    #[test]
    fn encodes_the_spec_examples() {
        let cases = [
            (Packet::connect("/", None), "0"),
            (Packet::connect("/", Some(json!({"sid": "wZX3oN0bSVIhsaknAAAI"}))), r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            (Packet::connect("/admin", None), "0/admin,"),
            (
                Packet::connect("/admin", Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"}))),
                r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            ),
            (Packet::connect_error("/", "Not authorized", None), r#"4{"message":"Not authorized"}"#),
            (Packet::event("/", vec![json!("foo")], vec![]), r#"2["foo"]"#),
            (Packet::event("/admin", vec![json!("bar")], vec![]), r#"2/admin,["bar"]"#),
            (
                Packet::event("/", vec![json!("baz"), placeholder(0)], vec![b(&[1, 2, 3, 4])]),
                r#"51-["baz",{"_placeholder":true,"num":0}]"#,
            ),
            (
                Packet::event(
                    "/admin",
                    vec![json!("baz"), placeholder(0), placeholder(1)],
                    vec![b(&[1, 2]), b(&[3, 4])],
                ),
                r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            ),
            (Packet::event("/", vec![json!("foo")], vec![]).with_id(12), r#"212["foo"]"#),
            (Packet::ack("/", 12, vec![], vec![]), "312[]"),
            (Packet::event("/admin", vec![json!("foo")], vec![]).with_id(13), r#"2/admin,13["foo"]"#),
            (Packet::ack("/admin", 13, vec![json!("bar")], vec![]), r#"3/admin,13["bar"]"#),
            (
                Packet::event("/", vec![json!("foo"), placeholder(0)], vec![b(&[1, 2, 3, 4])]).with_id(14),
                r#"51-14["foo",{"_placeholder":true,"num":0}]"#,
            ),
            (
                Packet::ack("/", 15, vec![json!("bar"), placeholder(0)], vec![b(&[1, 2, 3, 4])]),
                r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
            ),
            (Packet::disconnect("/"), "1"),
            (Packet::disconnect("/admin"), "1/admin,"),
        ];
        for (p, text) in cases {
            assert_eq!(p.encode_text(), text);
            // And back.
            let mut d = Decoder::default();
            let mut got = d.decode_text(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            for a in &p.attachments {
                assert!(got.is_none());
                got = d.decode_binary(a.clone()).unwrap();
            }
            assert_eq!(got.as_ref(), Some(&p), "{text}");
        }
    }

    #[test]
    fn encodes_the_conformance_replies() {
        assert_eq!(Packet::connect("/", Some(json!({"sid": "s"}))).to_frames()[0].as_text(), Some(r#"40{"sid":"s"}"#));
        assert_eq!(Packet::event("/", vec![json!("auth"), json!({})], vec![]).encode_text(), r#"2["auth",{}]"#);
        assert_eq!(
            Packet::event("/custom", vec![json!("auth"), json!({"token": "abc"})], vec![]).encode_text(),
            r#"2/custom,["auth",{"token":"abc"}]"#
        );
        assert_eq!(
            Packet::connect_error("/random", "Invalid namespace", None).encode_text(),
            r#"4/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            Packet::ack("/", 456, vec![json!(1), json!("2"), json!({"3": [false]})], vec![]).encode_text(),
            r#"3456[1,"2",{"3":[false]}]"#
        );
        let two = vec![b(&[1, 2, 3]), b(&[4, 5, 6])];
        let p = Packet::ack("/", 789, vec![placeholder(0), placeholder(1)], two.clone());
        assert_eq!(
            p.to_frames(),
            vec![
                wsx::Message::text(r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
                wsx::Message::Binary(two[0].clone()),
                wsx::Message::Binary(two[1].clone()),
            ]
        );
    }

    #[test]
    fn connect_error_with_data() {
        let p = Packet::connect_error("/", "no", Some(json!({"code": 3})));
        assert_eq!(p.data, Some(json!({"message": "no", "data": {"code": 3}})));
        assert_eq!(ok(&p.encode_text()), p);
    }

    #[test]
    fn encode_into_appends() {
        let mut s = String::from("4");
        Packet::event("/", vec![json!("a")], vec![]).encode_into(&mut s);
        Packet::disconnect("/x").encode_into(&mut s);
        assert_eq!(s, r#"42["a"]1/x,"#);
    }

    #[test]
    fn root_namespace_is_omitted_and_empty_is_root() {
        assert_eq!(Packet::disconnect("").nsp, "/");
        assert_eq!(Packet::disconnect("").encode_text(), "1");
        let p = Packet { nsp: String::new(), ..Packet::disconnect("/") };
        assert_eq!(p.encode_text(), "1");
    }

    #[test]
    fn attachments_only_make_events_and_acks_binary() {
        // A CONNECT with attachments (not a thing): they are not written.
        let p = Packet { attachments: vec![b(b"x")], ..Packet::connect("/", None) };
        assert_eq!(p.encode_text(), "0");
        assert_eq!(p.to_frames().len(), 1);
        // Events without attachments are plain events, placeholders or not.
        assert_eq!(Packet::event("/", vec![json!("a"), placeholder(0)], vec![]).encode_text().as_bytes()[0], b'2');
    }

    #[test]
    fn json_is_compact() {
        let p = Packet::event("/", vec![json!("a"), json!({"k": [1, 2.5, null, "x y"]})], vec![]);
        assert_eq!(p.encode_text(), r#"2["a",{"k":[1,2.5,null,"x y"]}]"#);
    }

    // ------------------------------------------------------------ decoding

    #[test]
    fn conformance_packets() {
        assert_eq!(ok("0"), Packet::connect("/", None));
        assert_eq!(ok(r#"0{"token":"123"}"#), Packet::connect("/", Some(json!({"token": "123"}))));
        assert_eq!(ok("0/custom,"), Packet::connect("/custom", None));
        assert_eq!(ok("0/custom"), Packet::connect("/custom", None));
        assert_eq!(ok(r#"0/custom,{"token":"abc"}"#), Packet::connect("/custom", Some(json!({"token": "abc"}))));
        assert_eq!(ok("0/random"), Packet::connect("/random", None));
        assert_eq!(ok("1"), Packet::disconnect("/"));
        assert_eq!(ok("1/custom"), Packet::disconnect("/custom"));
        assert_eq!(
            ok(r#"2["message","message to main namespace"]"#),
            Packet::event("/", vec![json!("message"), json!("message to main namespace")], vec![])
        );
        assert_eq!(
            ok(r#"2["message",1,"2",{"3":[true]}]"#),
            Packet::event("/", vec![json!("message"), json!(1), json!("2"), json!({"3": [true]})], vec![])
        );
        assert_eq!(
            ok(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#),
            Packet::event("/", vec![json!("message-with-ack"), json!(1), json!("2"), json!({"3": [false]})], vec![])
                .with_id(456)
        );
        let mut d = Decoder::default();
        assert_eq!(
            d.decode_text(r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
            Ok(None)
        );
        assert!(d.is_waiting());
        assert_eq!(d.decode_binary(b(&[1, 2, 3])), Ok(None));
        assert!(d.is_waiting());
        let p = d.decode_binary(b(&[4, 5, 6])).unwrap().unwrap();
        assert!(!d.is_waiting());
        assert_eq!(
            p,
            Packet::event(
                "/",
                vec![json!("message"), placeholder(0), placeholder(1)],
                vec![b(&[1, 2, 3]), b(&[4, 5, 6])]
            )
        );
        assert_eq!(
            d.decode_text(r#"52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
            Ok(None)
        );
        d.decode_binary(b(&[1, 2, 3])).unwrap();
        let p = d.decode_binary(b(&[4, 5, 6])).unwrap().unwrap();
        assert_eq!((p.kind, p.id, p.attachments.len()), (PacketType::Event, Some(789), 2));
    }

    #[test]
    fn conformance_errors() {
        assert_eq!(decode("abc"), Err(DecodeError::UnknownType('a')));
        // The suite's text after the Engine.IO `4`:
        assert_eq!(decode("abc"), Err(DecodeError::UnknownType('a'))); // `4abc`
        assert_eq!(decode("2{}"), Err(DecodeError::BadPayload("EVENT needs a non-empty array starting with a string")));
        assert!(matches!(decode(r#"2abc["message-with-ack",1,"2",{"3":[false]}]"#), Err(DecodeError::BadJson(_))));
    }

    #[test]
    fn empty_is_an_error() {
        assert_eq!(decode(""), Err(DecodeError::Empty));
    }

    #[test]
    fn unknown_types() {
        for (t, c) in [("7", '7'), ("9[]", '9'), ("x", 'x'), ("é", 'é'), ("-1", '-'), (" 2[\"a\"]", ' ')] {
            assert_eq!(decode(t), Err(DecodeError::UnknownType(c)), "{t}");
        }
    }

    #[test]
    fn binary_packets_need_an_attachment_count() {
        for t in [
            "5",
            "5[\"a\"]",
            "5-[\"a\"]",
            "50-[\"a\"]",
            "51[\"a\"]",
            "5a-[\"a\"]",
            "5+1-[\"a\"]",
            "6-1[]",
            "599999999999999999999999-[\"a\"]",
        ] {
            assert_eq!(decode(t), Err(DecodeError::BadAttachmentCount), "{t}");
        }
    }

    #[test]
    fn attachment_count_is_bounded() {
        let mut d = Decoder::new(DecodeLimits { max_attachments: 2, max_attachment_bytes: 100 });
        assert_eq!(d.decode_text("53-[\"a\"]"), Err(DecodeError::TooManyAttachments { count: 3, max: 2 }));
        assert!(!d.is_waiting());
        assert_eq!(
            decode("565-[\"a\"]"),
            Err(DecodeError::TooManyAttachments { count: 65, max: DecodeLimits::default().max_attachments })
        );
        assert_eq!(
            decode("518446744073709551615-[\"a\"]"),
            Err(DecodeError::TooManyAttachments { count: usize::MAX, max: 64 })
        );
    }

    #[test]
    fn attachment_bytes_are_bounded() {
        let limits = DecodeLimits { max_attachments: 4, max_attachment_bytes: 10 };
        let text = r#"52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        let mut d = Decoder::new(limits);
        d.decode_text(text).unwrap();
        assert_eq!(d.decode_binary(Bytes::from(vec![0; 6])), Ok(None));
        assert_eq!(d.decode_binary(Bytes::from(vec![0; 5])), Err(DecodeError::AttachmentsTooLarge { max: 10 }));
        assert!(!d.is_waiting());
        // Exactly the limit is fine.
        d.decode_text(text).unwrap();
        d.decode_binary(Bytes::from(vec![0; 6])).unwrap();
        assert_eq!(d.decode_binary(Bytes::from(vec![0; 4])).unwrap().unwrap().attachments[1].len(), 4);
    }

    #[test]
    fn namespaces() {
        assert_eq!(ok("2/chat,[\"a\"]").nsp, "/chat");
        assert_eq!(ok("0/").nsp, "/");
        assert_eq!(ok("0/,").nsp, "/");
        assert_eq!(ok("2/,[\"a\"]").nsp, "/");
        assert_eq!(ok("0/a/b c,").nsp, "/a/b c");
        assert_eq!(ok("0/ünï,").nsp, "/ünï");
        // A namespace ends at the first comma: the rest is the id or data.
        assert_eq!(ok("2/a,1[\"b,c\"]").id, Some(1));
        let mut d = Decoder::default();
        d.decode_text(r#"51-/x,["a",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(d.decode_binary(b(b"")).unwrap().unwrap().nsp, "/x");
        // Without a comma the namespace runs to the end.
        assert_eq!(
            decode("2/chat[\"a\"]"),
            Err(DecodeError::BadPayload("EVENT needs a non-empty array starting with a string"))
        );
        assert_eq!(ok("0/chat{\"a\":1}").nsp, "/chat{\"a\":1}");
        // Control characters.
        assert_eq!(decode("0/a\nb,"), Err(DecodeError::BadNamespace));
        assert_eq!(decode("0/a\u{0}b"), Err(DecodeError::BadNamespace));
        // Not beginning with `/`: not a namespace, so the data is invalid.
        assert!(matches!(decode("2chat,[\"a\"]"), Err(DecodeError::BadJson(_))));
    }

    #[test]
    fn ack_ids() {
        assert_eq!(ok("20[\"a\"]").id, Some(0));
        assert_eq!(ok("2007[\"a\"]").id, Some(7));
        assert_eq!(ok("218446744073709551615[\"a\"]").id, Some(u64::MAX));
        assert_eq!(decode("218446744073709551616[\"a\"]"), Err(DecodeError::BadAckId));
        assert_eq!(decode("2/x,99999999999999999999999999[\"a\"]"), Err(DecodeError::BadAckId));
        // An ACK needs one.
        assert_eq!(decode("3[]"), Err(DecodeError::BadAckId));
        assert_eq!(decode("3/x,[]"), Err(DecodeError::BadAckId));
        // Other packets have none.
        assert_eq!(decode("01"), Err(DecodeError::BadAckId));
        assert_eq!(decode("0/x,1{}"), Err(DecodeError::BadAckId));
        assert_eq!(decode("11"), Err(DecodeError::BadAckId));
        assert_eq!(decode("41{\"message\":\"x\"}"), Err(DecodeError::BadAckId));
    }

    #[test]
    fn json_errors() {
        for t in ["2[", "2[\"a\",]", "0{a:1}", "2[\"a\"] x", "2[\"a\"]]", "2[\"\\ud800\"] garbage"] {
            assert!(matches!(decode(t), Err(DecodeError::BadJson(_))), "{t}: {:?}", decode(t));
        }
        // Deep nesting is refused by serde_json's recursion limit, not by a
        // stack overflow.
        let deep = format!("2[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(decode(&deep), Err(DecodeError::BadJson(_))));
        // JSON allows whitespace around the value.
        assert_eq!(ok("2 [\"a\"] ").data, Some(json!(["a"])));
    }

    #[test]
    fn payload_shapes() {
        let connect = DecodeError::BadPayload("CONNECT data must be an object");
        let event = DecodeError::BadPayload("EVENT needs a non-empty array starting with a string");
        let ack = DecodeError::BadPayload("ACK needs an array");
        let error = DecodeError::BadPayload("CONNECT_ERROR needs an object or a string");
        for (t, e) in [
            ("0[]", connect.clone()),
            ("0\"x\"", connect.clone()),
            ("0null", connect),
            ("1{}", DecodeError::BadPayload("DISCONNECT has no data")),
            ("1/x,[]", DecodeError::BadPayload("DISCONNECT has no data")),
            ("2", event.clone()),
            ("2/x,", event.clone()),
            ("21", event.clone()),
            ("2[]", event.clone()),
            ("2[1]", event.clone()),
            ("2[null]", event.clone()),
            ("2{}", event.clone()),
            ("2\"a\"", event),
            ("31", ack.clone()),
            ("31{}", ack.clone()),
            ("31\"a\"", ack),
            ("4", error.clone()),
            ("4[]", error.clone()),
            ("41", DecodeError::BadAckId),
            ("4/x,null", error),
        ] {
            assert_eq!(decode(t), Err(e), "{t}");
        }
        assert_eq!(ok("4\"Not authorized\"").data, Some(json!("Not authorized")));
        assert_eq!(ok("31[]").data, Some(json!([])));
    }

    #[test]
    fn reserved_event_names() {
        for name in RESERVED_EVENTS {
            assert_eq!(decode(&format!("2[\"{name}\"]")), Err(DecodeError::BadPayload("reserved event name")));
        }
        // Only as the name.
        assert_eq!(ok("2[\"a\",\"disconnect\"]").data, Some(json!(["a", "disconnect"])));
    }

    #[test]
    fn placeholders_reference_attachments() {
        let e = |r| Err(DecodeError::BadPlaceholder(r));
        let range = "num is not below the attachment count";
        let not_int = "num is not a non-negative integer";
        let unreferenced = "an attachment has no placeholder";
        assert_eq!(decode(r#"51-["a",{"_placeholder":true,"num":1}]"#), e(range));
        assert_eq!(decode(r#"51-["a",{"_placeholder":true,"num":-1}]"#), e(not_int));
        assert_eq!(decode(r#"51-["a",{"_placeholder":true,"num":0.5}]"#), e(not_int));
        assert_eq!(decode(r#"51-["a",{"_placeholder":true,"num":"0"}]"#), e(not_int));
        assert_eq!(decode(r#"51-["a",{"_placeholder":true}]"#), e(not_int));
        assert_eq!(decode(r#"51-["a"]"#), e(unreferenced));
        assert_eq!(decode(r#"52-["a",{"_placeholder":true,"num":1}]"#), e(unreferenced));
        assert_eq!(decode(r#"61-1[{"x":{"_placeholder":true,"num":7}}]"#), e(range));
        // `_placeholder` other than `true` is plain data.
        assert_eq!(decode(r#"51-["a",{"_placeholder":1,"num":0}]"#), e(unreferenced));
        // Nested, repeated and out of order are fine.
        let mut d = Decoder::default();
        assert_eq!(
            d.decode_text(r#"62-1[{"x":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0,"extra":1},{"_placeholder":true,"num":1}]"#),
            Ok(None)
        );
        d.decode_binary(b(b"0")).unwrap();
        let p = d.decode_binary(b(b"1")).unwrap().unwrap();
        assert_eq!((p.kind, p.id), (PacketType::Ack, Some(1)));
        // In a packet without attachments, placeholders are data.
        assert_eq!(ok(r#"2["a",{"_placeholder":true,"num":5}]"#).attachments.len(), 0);
    }

    #[test]
    fn placeholder_helpers() {
        assert_eq!(placeholder(3), json!({"_placeholder": true, "num": 3}));
        assert_eq!(placeholders(&json!("x")), 0);
        assert_eq!(placeholders(&json!([placeholder(0), [placeholder(1), {"a": placeholder(2)}]])), 3);
        // A placeholder's own fields are not searched.
        assert_eq!(placeholders(&json!({"_placeholder": true, "num": 0, "x": placeholder(1)})), 1);
    }

    #[test]
    fn binary_without_a_header_is_unexpected() {
        let mut d = Decoder::default();
        assert_eq!(d.decode_binary(b(b"x")), Err(DecodeError::UnexpectedBinary));
        d.decode_text("2[\"a\"]").unwrap();
        assert_eq!(d.decode_binary(b(b"x")), Err(DecodeError::UnexpectedBinary));
    }

    #[test]
    fn text_while_waiting_is_unexpected_and_resets() {
        let mut d = Decoder::default();
        d.decode_text(r#"51-["a",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(d.decode_text("2[\"b\"]"), Err(DecodeError::UnexpectedText));
        assert!(!d.is_waiting());
        // Afterwards it starts afresh.
        assert_eq!(d.decode_text("2[\"b\"]").unwrap().unwrap().data, Some(json!(["b"])));
        assert_eq!(d.decode_binary(b(b"x")), Err(DecodeError::UnexpectedBinary));
    }

    #[test]
    fn errors_leave_nothing_waiting() {
        let mut d = Decoder::default();
        assert!(d.decode_text(r#"51-["a"]"#).is_err());
        assert!(!d.is_waiting());
        assert_eq!(d.decode_binary(b(b"x")), Err(DecodeError::UnexpectedBinary));
    }

    #[test]
    fn empty_attachments_are_attachments() {
        let mut d = Decoder::default();
        d.decode_text(r#"51-["a",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(d.decode_binary(Bytes::new()).unwrap().unwrap().attachments, vec![Bytes::new()]);
    }

    #[test]
    fn errors_display() {
        assert_eq!(DecodeError::UnknownType('x').to_string(), "unknown packet type 'x'");
        assert_eq!(
            DecodeError::TooManyAttachments { count: 9, max: 2 }.to_string(),
            "9 attachments, at most 2 allowed"
        );
        let e: Box<dyn std::error::Error> = Box::new(DecodeError::Empty);
        assert_eq!(e.to_string(), "empty packet");
    }

    // ------------------------------------------------------------ properties

    fn json_value() -> BoxedStrategy<Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
    }

    fn nsp() -> impl Strategy<Value = String> {
        prop_oneof![Just("/".to_owned()), "/[^,\\p{Cc}]{0,10}"]
    }

    fn event_name() -> impl Strategy<Value = String> {
        ".{0,10}".prop_filter("reserved", |n| !RESERVED_EVENTS.contains(&n.as_str()))
    }

    fn attachments() -> impl Strategy<Value = Vec<Bytes>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20).prop_map(Bytes::from), 0..5)
    }

    /// Arguments with a placeholder per attachment, at random places among
    /// them.
    fn args_with(args: Vec<Value>, n: usize, seed: usize) -> Vec<Value> {
        let mut args = args;
        for i in 0..n {
            let at = (seed + i * 7) % (args.len() + 1);
            args.insert(at, placeholder(i));
        }
        args
    }

    fn packet() -> impl Strategy<Value = Packet> {
        let args = prop::collection::vec(json_value(), 0..5);
        prop_oneof![
            (nsp(), prop::option::of(prop::collection::btree_map("[a-z]{0,5}", json_value(), 0..4)))
                .prop_map(|(n, d)| Packet::connect(&n, d.map(|m| Value::Object(m.into_iter().collect())))),
            nsp().prop_map(|n| Packet::disconnect(&n)),
            (nsp(), ".{0,10}", prop::option::of(json_value())).prop_map(|(n, m, d)| Packet::connect_error(&n, &m, d)),
            (nsp(), ".{0,10}").prop_map(|(n, m)| Packet { data: Some(Value::String(m)), ..Packet::disconnect(&n) }
                .with_kind(PacketType::ConnectError)),
            (nsp(), event_name(), args.clone(), attachments(), any::<usize>(), prop::option::of(any::<u64>()))
                .prop_map(|(n, name, a, att, seed, id): (String, String, _, _, usize, _)| {
                    let mut all = vec![Value::String(name)];
                    all.extend(args_with(a, att.len(), seed));
                    let p = Packet::event(&n, all, att);
                    match id {
                        Some(id) => p.with_id(id),
                        None => p,
                    }
                }),
            (nsp(), any::<u64>(), args, attachments(), any::<usize>()).prop_map(|(n, id, a, att, seed)| Packet::ack(
                &n,
                id,
                args_with(a, att.len(), seed),
                att
            )),
        ]
    }

    impl Packet {
        fn with_kind(self, kind: PacketType) -> Self {
            Packet { kind, ..self }
        }
    }

    /// Keys such as `_placeholder` can come out of `json_value`: keep the
    /// packets whose only placeholders are the ones `args_with` put.
    fn well_formed(p: &Packet) -> bool {
        p.data.as_ref().map_or(0, placeholders) == if p.is_binary() { p.attachments.len() } else { 0 }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn round_trip(p in packet().prop_filter("placeholders", well_formed)) {
            let text = p.encode_text();
            let frames = p.to_frames();
            prop_assert_eq!(frames[0].as_text().map(|t| &t[1..]), Some(text.as_str()));
            let mut d = Decoder::default();
            let mut got = d.decode_text(&text);
            for f in &frames[1..] {
                prop_assert_eq!(&got, &Ok(None));
                prop_assert!(d.is_waiting());
                got = d.decode_binary(Bytes::copy_from_slice(f.as_bytes()));
            }
            prop_assert!(!d.is_waiting());
            prop_assert_eq!(got, Ok(Some(p.clone())), "{}", text);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            let mut d = Decoder::default();
            if let Ok(Some(p)) = d.decode_text(&s) {
                // What decodes encodes to something that decodes the same.
                prop_assert_eq!(Decoder::default().decode_text(&p.encode_text()), Ok(Some(p)));
            }
        }

        #[test]
        fn arbitrary_structured_text_never_panics(
            t in "[0-7]",
            count in prop_oneof![Just(String::new()), "[0-9]{1,3}-"],
            n in prop_oneof![Just(String::new()), "/[a-z,]{0,4},?"],
            id in "[0-9]{0,22}",
            data in prop_oneof![Just(String::new()), json_value().prop_map(|v| v.to_string()), ".{0,10}"],
        ) {
            let text = format!("{t}{count}{n}{id}{data}");
            let mut d = Decoder::new(DecodeLimits { max_attachments: 3, max_attachment_bytes: 10 });
            let _ = d.decode_text(&text);
        }

        #[test]
        fn arbitrary_messages_never_panic(
            msgs in prop::collection::vec(prop_oneof![
                ".{0,20}".prop_map(Ok),
                r#"5[0-3]-\["a",(\{"_placeholder":true,"num":[0-3]\},?){0,3}\]"#.prop_map(Ok),
                prop::collection::vec(any::<u8>(), 0..8).prop_map(Err),
            ], 0..12)
        ) {
            let mut d = Decoder::new(DecodeLimits { max_attachments: 3, max_attachment_bytes: 10 });
            for m in msgs {
                let r = match m {
                    Ok(t) => d.decode_text(&t),
                    Err(bytes) => d.decode_binary(Bytes::from(bytes)),
                };
                if let Ok(Some(p)) = r {
                    prop_assert!(p.attachments.len() <= 3);
                    prop_assert!(p.attachments.iter().map(Bytes::len).sum::<usize>() <= 10);
                }
            }
        }
    }
}
