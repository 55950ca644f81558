//! What a client asks when it connects to a namespace, how a middleware
//! refuses it, and why a socket leaves.

use serde_json::Value;
use std::fmt;

/// What a client sent to connect to a namespace: the Engine.IO handshake
/// request and the CONNECT packet's auth payload.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The namespace asked for.
    pub namespace: String,
    /// The CONNECT payload (`{}` when there was none).
    pub auth: Value,
    /// The HTTP request that opened the session (query, headers, peer).
    pub request: wsx::server::RequestHead,
}

/// A middleware's refusal: the client gets CONNECT_ERROR with this message
/// and data (`connect_error` in the official client, `err.message` and
/// `err.data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The message.
    pub message: String,
    /// Extra data for the client.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), data: None }
    }

    /// With data for the client.
    pub fn data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// Why a socket left its namespace (the reason strings of Socket.IO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client disconnected from the namespace (`socket.disconnect()`).
    ClientNamespaceDisconnect,
    /// The server disconnected it ([`Socket::disconnect`](super::Socket::disconnect)).
    ServerNamespaceDisconnect,
    /// The connection was closed (by the client, or lost).
    TransportClose,
    /// The server closed the connection ([`Socket::close`](super::Socket::close), or no CONNECT
    /// in time).
    ForcedClose,
    /// The connection failed.
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client sent something that is not a packet.
    ParseError,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The client did not read what it was sent.
    SlowConsumer,
}

impl DisconnectReason {
    /// The reason string, as the official server gives it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::SlowConsumer => "slow consumer",
        }
    }

    /// Whether the client may come back and recover its state: it lost
    /// its connection rather than leaving its namespace (the reasons
    /// upstream recovers from, and a slow consumer's).
    pub(crate) fn recoverable(&self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ForcedClose
                | DisconnectReason::ServerShuttingDown
                | DisconnectReason::SlowConsumer
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
