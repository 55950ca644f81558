//! A data message encoded once for many connections (a broadcast): the
//! unmasked frame a server sends, made when the message is prepared, and
//! its compressed frame, made at most once per compression setting by the
//! first connection that needs it. Every connection then queues the same
//! bytes by reference ([`crate::Writer::send_prepared`]).
//!
//! Only a server can share frames: a client masks every frame with a fresh
//! key (RFC 6455 §5.3), so no two clients send the same bytes. And a
//! compressed frame can be shared only between connections whose
//! compressor starts every message from nothing, that is without server
//! context takeover (RFC 7692 §7.1.1.1); with context takeover the bytes
//! depend on what the connection sent before, and each such connection
//! compresses the message itself.

use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::message::Message;
use crate::utf8::Utf8Bytes;
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex, OnceLock};

/// What a compressed message's bytes depend on when its compressor starts
/// from nothing (no context takeover): connections with the same key
/// compress a payload to the same bytes.
pub(crate) type CompressKey = (u8, u32);

/// A text or binary message prepared for sending to many connections of a
/// server: framed once (RFC 6455 §5.2, unmasked as a server sends), and
/// compressed at most once per compression setting (RFC 7692 §7.2.1) when
/// connections that negotiated permessage-deflate without server context
/// takeover send it. Cheap to clone (one reference count): every recipient
/// holds the same bytes.
///
/// The wire bytes are those [`Writer::send`](crate::Writer::send) writes
/// for the same message on the same connection: a connection whose
/// compression threshold the message does not reach sends the plain frame;
/// one with server context takeover compresses it with its own compressor.
///
/// ```
/// use wsx_proto::{Config, Message, PreparedMessage, Role, Writer};
/// let prepared = PreparedMessage::text("Hello");
/// let mut a = Writer::new(Role::Server, &Config::default());
/// let mut b = Writer::new(Role::Server, &Config::default());
/// a.send_prepared(&prepared).unwrap();
/// b.send_prepared(&prepared).unwrap();
/// assert_eq!(a.take_output(), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
/// assert_eq!(b.take_output(), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
/// assert_eq!(prepared.to_message(), Message::text("Hello"));
/// ```
#[derive(Clone)]
pub struct PreparedMessage(Arc<Inner>);

struct Inner {
    /// The whole frame: header (FIN, opcode, no mask) and payload.
    frame: Bytes,
    /// The header's length in `frame`.
    header_len: u8,
    text: bool,
    /// The compressed frame of the first compression setting that asked,
    /// and of any other (rare: a server usually has one setting).
    compressed: OnceLock<(CompressKey, Bytes)>,
    others: Mutex<Vec<(CompressKey, Bytes)>>,
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("text", &self.0.text)
            .field("len", &self.len())
            .field("compressed_encodings", &self.compressed_encodings())
            .finish()
    }
}

/// A frame's bytes: header (FIN set, RSV1 as given, no mask) and payload.
fn encode_frame(text: bool, rsv1: bool, payload: &[u8]) -> (Bytes, u8) {
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    let header = FrameHeader {
        fin: true,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode: opcode.as_u8(),
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut hb);
    let mut frame = BytesMut::with_capacity(n + payload.len());
    frame.extend_from_slice(&hb[..n]);
    frame.extend_from_slice(payload);
    (frame.freeze(), n as u8)
}

impl PreparedMessage {
    fn new(text: bool, payload: &[u8]) -> Self {
        let (frame, header_len) = encode_frame(text, false, payload);
        Self(Arc::new(Inner { frame, header_len, text, compressed: OnceLock::new(), others: Mutex::new(Vec::new()) }))
    }

    /// A text message, prepared.
    ///
    /// ```
    /// let m = wsx_proto::PreparedMessage::text("hi");
    /// assert!(m.is_text());
    /// assert_eq!(m.payload(), &b"hi"[..]);
    /// ```
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Self::new(true, s.into().as_bytes())
    }

    /// A binary message, prepared.
    ///
    /// ```
    /// let m = wsx_proto::PreparedMessage::binary(vec![1u8, 2, 3]);
    /// assert_eq!(m.len(), 3);
    /// assert_eq!(m.to_message(), wsx_proto::Message::binary(vec![1u8, 2, 3]));
    /// ```
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Self::new(false, &b.into())
    }

    /// Whether it is a text message.
    pub fn is_text(&self) -> bool {
        self.0.text
    }

    /// The payload (a slice of the frame, not a copy).
    pub fn payload(&self) -> Bytes {
        self.0.frame.slice(usize::from(self.0.header_len)..)
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.0.frame.len() - usize::from(self.0.header_len)
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message (its payload shared, not copied): for a transport
    /// without frames of its own (HTTP long-polling) or a client, which
    /// must mask what it sends and so cannot use the prepared frame.
    ///
    /// ```
    /// let m = wsx_proto::PreparedMessage::text("hi");
    /// assert_eq!(m.to_message().as_text(), Some("hi"));
    /// ```
    pub fn to_message(&self) -> Message {
        let payload = self.payload();
        if self.0.text {
            // Valid UTF-8: it was a `Utf8Bytes`.
            Message::Text(Utf8Bytes::from_bytes_unchecked(payload))
        } else {
            Message::Binary(payload)
        }
    }

    /// How many compressed frames were made for it so far: at most one per
    /// compression setting of the connections it was sent to (none when
    /// none compressed it, or all kept context takeover and compressed it
    /// themselves).
    ///
    /// ```
    /// use wsx_proto::deflate::{server_negotiate, DeflateConfig};
    /// use wsx_proto::{Config, PreparedMessage, Role, Writer};
    /// use wsx_proto::handshake::Extension;
    /// let offer = [Extension { name: "permessage-deflate".into(), params: vec![] }];
    /// let (params, _) = server_negotiate(&DeflateConfig::server_default().with_threshold(0), &offer).unwrap();
    /// let prepared = PreparedMessage::text("hello hello hello");
    /// for _ in 0..3 {
    ///     let mut w = Writer::with_deflate(Role::Server, &Config::default(), Some(&params));
    ///     w.send_prepared(&prepared).unwrap();
    /// }
    /// assert_eq!(prepared.compressed_encodings(), 1);
    /// ```
    pub fn compressed_encodings(&self) -> usize {
        let others = self.0.others.lock().unwrap_or_else(|p| p.into_inner()).len();
        usize::from(self.0.compressed.get().is_some()) + others
    }

    /// The plain frame.
    pub(crate) fn frame(&self) -> &Bytes {
        &self.0.frame
    }

    /// The compressed frame for the setting `key` (RSV1 set, §7.2.1),
    /// made with `compress` by the first caller with that key; later
    /// callers share it.
    pub(crate) fn compressed_frame(&self, key: CompressKey, compress: impl FnOnce(&[u8]) -> Bytes) -> Bytes {
        let mut compress = Some(compress);
        let mut make = |payload: &[u8]| {
            let c = compress.take().map_or_else(Bytes::new, |f| f(payload));
            encode_frame(self.0.text, true, &c).0
        };
        let payload = &self.0.frame[usize::from(self.0.header_len)..];
        // Concurrent first callers wait for the one that compresses.
        let (k, f) = self.0.compressed.get_or_init(|| (key, make(payload)));
        if *k == key {
            return f.clone();
        }
        let mut others = self.0.others.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, f)) = others.iter().find(|(k, _)| *k == key) {
            return f.clone();
        }
        let f = make(payload);
        others.push((key, f.clone()));
        f
    }
}

impl TryFrom<Message> for PreparedMessage {
    type Error = Message;

    /// A text or binary message, prepared; any other is given back.
    ///
    /// ```
    /// use wsx_proto::{Message, PreparedMessage};
    /// assert!(PreparedMessage::try_from(Message::text("hi")).is_ok());
    /// assert_eq!(PreparedMessage::try_from(Message::ping("p")).unwrap_err(), Message::ping("p"));
    /// ```
    fn try_from(msg: Message) -> Result<Self, Message> {
        match msg {
            Message::Text(t) => Ok(Self::new(true, t.as_bytes())),
            Message::Binary(b) => Ok(Self::new(false, &b)),
            other => Err(other),
        }
    }
}
