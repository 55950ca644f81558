//! The error types of the hub: [`HubError`] for operations on the hub,
//! [`AckError`] for requests that wait for an acknowledgement,
//! [`HandlerError`] for what an event handler returns, and
//! [`BrokerError`] for the broker.

use crate::protocol::{codes, ErrorBody};

/// An operation on the hub failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No connection with this id (it closed, or never existed).
    #[error("no connection {0:?}")]
    NoSuchConnection(String),
    /// The connection is in as many rooms as allowed.
    #[error("too many rooms for this connection (at most {0})")]
    TooManyRooms(usize),
    /// The room has as many members as allowed on this node.
    #[error("room {0:?} is full")]
    RoomFull(String),
    /// A room or event name is empty or longer than 200 bytes.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// The connection's transport or WebSocket protocol failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] wsx::Error),
    /// I/O on a connection failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The request was refused before the upgrade, with this HTTP status.
    #[error("request refused with status {0}")]
    Refused(http::StatusCode),
    /// The request head did not arrive in time.
    #[error("request head timed out")]
    HeadTimeout,
    /// The broker failed.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
}

impl HubError {
    /// The protocol error code for the peer.
    pub(crate) fn body(&self) -> ErrorBody {
        let code = match self {
            HubError::TooManyRooms(_) => codes::TOO_MANY_ROOMS,
            HubError::RoomFull(_) => codes::ROOM_FULL,
            HubError::InvalidName(_) => codes::BAD_FRAME,
            _ => codes::FORBIDDEN,
        };
        ErrorBody::new(code, self.to_string())
    }
}

/// A request sent with an acknowledgement did not get one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// No answer in time.
    #[error("no acknowledgement within {0:?}")]
    Timeout(std::time::Duration),
    /// The connection closed before the answer came.
    #[error("the connection closed before acknowledging")]
    Disconnected,
    /// The peer answered with an error.
    #[error("the peer answered with an error: {} ({})", .0.code, .0.message)]
    Remote(ErrorBody),
    /// No connection with this id.
    #[error("no connection {0:?}")]
    NoSuchConnection(String),
    /// The request could not be sent (the hub or client is closed).
    #[error("the request could not be sent: {0}")]
    NotSent(String),
}

/// What an event handler returns on failure; the client gets it as the
/// error of its ack (`code`, `message`).
///
/// ```
/// use wsx_hub::HandlerError;
/// let e = HandlerError::new("not_found", "no such user");
/// assert_eq!(e.code(), "not_found");
/// let e: HandlerError = serde_json::from_str::<u8>("x").unwrap_err().into();
/// assert_eq!(e.code(), "bad_request");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HandlerError {
    code: String,
    message: String,
}

impl HandlerError {
    /// An error with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }

    /// The code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_body(self) -> ErrorBody {
        ErrorBody { code: self.code, message: self.message }
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(e: serde_json::Error) -> Self {
        Self::new("bad_request", e.to_string())
    }
}

impl From<HubError> for HandlerError {
    fn from(e: HubError) -> Self {
        let b = e.body();
        Self::new(b.code, b.message)
    }
}

impl From<AckError> for HandlerError {
    fn from(e: AckError) -> Self {
        Self::new(codes::HANDLER_ERROR, e.to_string())
    }
}

/// The broker failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker is not connected (Redis is down or not reached yet).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker's settings are wrong (e.g. an invalid Redis URL).
    #[error("invalid broker configuration: {0}")]
    Config(String),
    /// A command failed.
    #[error("broker command failed: {0}")]
    Command(String),
}
