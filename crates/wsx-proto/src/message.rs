//! Messages as the user sees them, and what a [`crate::Reader`] hands out
//! ([`Incoming`]: whole messages, or data messages in [`Chunk`]s).

use crate::close::CloseFrame;
use crate::utf8::Utf8Bytes;
use bytes::Bytes;

/// A WebSocket message (RFC 6455 §5.6, §5.5).
///
/// Payloads are `Bytes`: a received message is a slice of the connection's
/// read buffer, not a copy.
///
/// ```
/// use wsx_proto::Message;
/// let m = Message::text("hello");
/// assert_eq!(m.as_text(), Some("hello"));
/// assert!(Message::binary(vec![1, 2, 3]).is_binary());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message: valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, with up to 125 bytes of application data.
    Ping(Bytes),
    /// A pong, with up to 125 bytes of application data.
    Pong(Bytes),
    /// A close frame: `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Message::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Message::Binary(b.into())
    }

    /// A ping.
    pub fn ping(b: impl Into<Bytes>) -> Self {
        Message::Ping(b.into())
    }

    /// A pong.
    pub fn pong(b: impl Into<Bytes>) -> Self {
        Message::Pong(b.into())
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// The payload bytes (for close: the reason).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(Some(f)) => f.reason.as_bytes(),
            Message::Close(None) => &[],
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    /// Whether this is a ping, pong or close.
    pub fn is_control(&self) -> bool {
        matches!(self, Message::Ping(_) | Message::Pong(_) | Message::Close(_))
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Message::Binary(v.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

impl From<Utf8Bytes> for Message {
    fn from(s: Utf8Bytes) -> Self {
        Message::Text(s)
    }
}

/// A piece of a data message as it arrives ([`crate::Mode::Streaming`]).
///
/// The chunks of a message are in order; the first has `first`, the last
/// has `last` (one chunk can be both). For a text message the chunks
/// together are valid UTF-8, checked as they arrive, but one chunk may end
/// inside a code point; an invalid byte fails the connection (1007) before
/// it is handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// A text message (else binary).
    pub text: bool,
    /// The bytes (a slice of the read buffer, or inflated data).
    pub data: Bytes,
    /// The first chunk of its message.
    pub first: bool,
    /// The last chunk of its message.
    pub last: bool,
}

impl Chunk {
    /// The chunk as a message. A text chunk is checked once more (its
    /// fields are public, so `first && last` proves nothing about where
    /// the bytes came from, and `Utf8Bytes` must only ever hold UTF-8);
    /// one that is not valid UTF-8 on its own (a piece that begins or ends
    /// inside a code point) is returned as binary: its bytes are never
    /// dropped.
    #[inline]
    pub fn into_message(self) -> Message {
        if self.text {
            match Utf8Bytes::try_from_bytes(self.data.clone()) {
                Ok(t) => Message::Text(t),
                Err(_) => Message::Binary(self.data),
            }
        } else {
            Message::Binary(self.data)
        }
    }
}

/// What [`crate::Reader::receive`] hands out: whole messages, or pieces of
/// data messages when streaming. Control messages (ping, pong, close) are
/// always whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A piece of a text or binary message ([`crate::Mode::Streaming`]).
    Chunk(Chunk),
    /// A whole message.
    Message(Message),
}

impl Incoming {
    /// As a message: a chunk becomes a message of its bytes
    /// ([`Chunk::into_message`]).
    ///
    /// ```
    /// use wsx_proto::{Incoming, Message};
    /// assert_eq!(Incoming::Message(Message::text("hi")).into_message(), Message::text("hi"));
    /// ```
    #[inline]
    pub fn into_message(self) -> Message {
        match self {
            Incoming::Message(m) => m,
            Incoming::Chunk(c) => c.into_message(),
        }
    }
}
