//! The values of the browser API: ready states, binary types, message data,
//! the events and the `DOMException` names that its methods throw.

use bytes::Bytes;
use std::sync::Arc;

/// `WebSocket.readyState`: where the connection stands.
///
/// ```
/// use wsx::web::ReadyState;
/// assert_eq!(ReadyState::Open as u16, 1);
/// assert_eq!(ReadyState::Closed.as_u16(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ReadyState {
    /// `CONNECTING` (0): the connection has not yet been established.
    Connecting = 0,
    /// `OPEN` (1): the connection is established and communication is
    /// possible.
    Open = 1,
    /// `CLOSING` (2): the closing handshake is under way, or `close()` was
    /// called.
    Closing = 2,
    /// `CLOSED` (3): the connection has been closed or could not be opened.
    Closed = 3,
}

impl ReadyState {
    /// The numeric value of the IDL constant.
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

/// `WebSocket.binaryType`: how binary messages are exposed. The default is
/// [`BinaryType::Blob`].
///
/// ```
/// assert_eq!(wsx::web::BinaryType::default(), wsx::web::BinaryType::Blob);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BinaryType {
    /// `"blob"`: binary data arrives as [`Data::Blob`].
    #[default]
    Blob,
    /// `"arraybuffer"`: binary data arrives as [`Data::ArrayBuffer`].
    ArrayBuffer,
}

impl BinaryType {
    /// The IDL enum value: `"blob"` or `"arraybuffer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryType::Blob => "blob",
            BinaryType::ArrayBuffer => "arraybuffer",
        }
    }
}

/// The data of a message: what `send()` takes and what
/// `MessageEvent.data` holds.
///
/// Text is a text message; `Blob` and `ArrayBuffer` are both binary
/// messages (which of the two a received message is depends on
/// [`BinaryType`] when its event is delivered). The payloads are
/// [`Bytes`], so a received binary message is not copied.
///
/// ```
/// use wsx::web::Data;
/// assert_eq!(Data::from("héllo").len(), 6); // UTF-8 bytes, as bufferedAmount counts
/// assert_eq!(Data::from(vec![1u8, 2, 3]).as_bytes(), &[1, 2, 3]);
/// assert_eq!(Data::from("hi").as_text(), Some("hi"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A text message (a `DOMString`).
    Text(String),
    /// A binary message exposed as a `Blob`.
    Blob(Bytes),
    /// A binary message exposed as an `ArrayBuffer`.
    ArrayBuffer(Bytes),
}

impl Data {
    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The payload's bytes (UTF-8 for text).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Text(s) => s.as_bytes(),
            Data::Blob(b) | Data::ArrayBuffer(b) => b,
        }
    }

    /// The payload's size in bytes (UTF-8 for text): what `send()` adds to
    /// `bufferedAmount`.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Data::Text(_))
    }

    /// Whether this is a binary message (`Blob` or `ArrayBuffer`).
    pub fn is_binary(&self) -> bool {
        !self.is_text()
    }
}

impl From<&str> for Data {
    fn from(s: &str) -> Self {
        Data::Text(s.to_owned())
    }
}

impl From<String> for Data {
    fn from(s: String) -> Self {
        Data::Text(s)
    }
}

impl From<&String> for Data {
    fn from(s: &String) -> Self {
        Data::Text(s.clone())
    }
}

impl From<Bytes> for Data {
    fn from(b: Bytes) -> Self {
        Data::ArrayBuffer(b)
    }
}

impl From<Vec<u8>> for Data {
    fn from(b: Vec<u8>) -> Self {
        Data::ArrayBuffer(b.into())
    }
}

impl From<&[u8]> for Data {
    fn from(b: &[u8]) -> Self {
        Data::ArrayBuffer(Bytes::copy_from_slice(b))
    }
}

/// A `message` event: the data and the origin of the WebSocket's URL.
///
/// ```no_run
/// # async fn run() -> Result<(), wsx::web::DomError> {
/// let ws = wsx::web::WebSocket::new("ws://127.0.0.1:9001/", &[])?;
/// ws.on_message(|m| println!("{:?} from {}", m.data(), m.origin()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    data: Data,
    origin: Arc<str>,
}

impl MessageEvent {
    pub(crate) fn new(data: Data, origin: Arc<str>) -> Self {
        Self { data, origin }
    }

    /// `MessageEvent.data`.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The data, by value.
    pub fn into_data(self) -> Data {
        self.data
    }

    /// `MessageEvent.origin`: the serialization of the origin of the
    /// WebSocket's URL, e.g. `ws://example.com:8080`.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// A `close` event.
///
/// ```no_run
/// # async fn run() -> Result<(), wsx::web::DomError> {
/// let ws = wsx::web::WebSocket::new("ws://127.0.0.1:9001/", &[])?;
/// ws.on_close(|c| println!("closed: {} {:?} clean={}", c.code(), c.reason(), c.was_clean()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseEvent {
    code: u16,
    reason: String,
    was_clean: bool,
}

impl CloseEvent {
    pub(crate) fn new(code: u16, reason: String, was_clean: bool) -> Self {
        Self { code, reason, was_clean }
    }

    /// `CloseEvent.code`: the WebSocket connection close code (RFC 6455
    /// §7.1.5): the code of the close frame received, 1005 when that frame
    /// had none, 1006 when no close frame was received.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// `CloseEvent.reason`: the reason of the close frame received.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// `CloseEvent.wasClean`: whether the closing handshake completed.
    pub fn was_clean(&self) -> bool {
        self.was_clean
    }
}

/// The `error` event: the connection was failed, and why ("connection
/// refused", "the server selected none of the subprotocols offered
/// (chat)"...). Browsers give no reason, so that scripts cannot tell
/// failures apart; a Rust program is not such a script, and gets one.
///
/// ```no_run
/// # async fn run() -> Result<(), wsx::web::DomError> {
/// let ws = wsx::web::WebSocket::new("ws://127.0.0.1:9001/", &["chat"])?;
/// ws.on_error(|e| eprintln!("failed: {}", e.message()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEvent {
    message: String,
}

impl ErrorEvent {
    pub(crate) fn new(message: String) -> Self {
        Self { message }
    }

    /// Why the connection was failed, as one sentence.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The type of an event: `"open"`, `"message"`, `"error"` or `"close"`.
///
/// ```
/// assert_eq!(wsx::web::EventType::Message.as_str(), "message");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `open`.
    Open,
    /// `message`.
    Message,
    /// `error`.
    Error,
    /// `close`.
    Close,
}

impl EventType {
    /// The event type's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Open => "open",
            EventType::Message => "message",
            EventType::Error => "error",
            EventType::Close => "close",
        }
    }
}

/// An event fired at a [`WebSocket`](super::WebSocket), in the standard's
/// order: `open`, then any `message`s, then (only when the connection was
/// failed) `error`, then `close`, which is always the last one.
///
/// ```no_run
/// use wsx::web::{Event, WebSocket};
/// # async fn run() -> Result<(), wsx::web::DomError> {
/// let ws = WebSocket::new("ws://127.0.0.1:9001/", &[])?;
/// while let Some(event) = ws.next_event().await {
///     match event {
///         Event::Open => ws.send("hello")?,
///         Event::Message(m) => println!("{:?}", m.data()),
///         Event::Error(e) => println!("failed: {}", e.message()),
///         Event::Close(c) => println!("closed with {}", c.code()),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `open`: the connection is established.
    Open,
    /// `message`: a message arrived.
    Message(MessageEvent),
    /// `error`: the connection was failed; the event says why.
    Error(ErrorEvent),
    /// `close`: the connection is closed.
    Close(CloseEvent),
}

impl Event {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Event::Open => EventType::Open,
            Event::Message(_) => EventType::Message,
            Event::Error(_) => EventType::Error,
            Event::Close(_) => EventType::Close,
        }
    }
}

/// The `DOMException`s that the API's methods throw, by name.
///
/// ```
/// let e = wsx::web::WebSocket::new("ftp://example.com/", &[]).unwrap_err();
/// assert_eq!(e, wsx::web::DomError::Syntax);
/// assert_eq!(e.name(), "SyntaxError");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DomError {
    /// `SyntaxError`: an invalid URL or subprotocol, or a close reason over
    /// 123 bytes.
    #[error("SyntaxError: invalid URL, subprotocol or close reason")]
    Syntax,
    /// `InvalidStateError`: `send()` while the connection is connecting.
    #[error("InvalidStateError: the WebSocket is still connecting")]
    InvalidState,
    /// `InvalidAccessError`: a close code other than 1000 or 3000–4999, or
    /// a close reason without a code.
    #[error("InvalidAccessError: the close code must be 1000 or in 3000-4999")]
    InvalidAccess,
}

impl DomError {
    /// The `DOMException` name: `"SyntaxError"`, `"InvalidStateError"` or
    /// `"InvalidAccessError"`.
    pub fn name(self) -> &'static str {
        match self {
            DomError::Syntax => "SyntaxError",
            DomError::InvalidState => "InvalidStateError",
            DomError::InvalidAccess => "InvalidAccessError",
        }
    }
}
