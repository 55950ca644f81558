//! The error type of the tokio layer.

use wsx_proto::handshake::HandshakeError;
use wsx_proto::{ProtocolError, SendError};

/// Everything that can go wrong on a WebSocket connection.
///
/// Protocol violations keep their [`ProtocolError`] (and so their close
/// code); handshake failures keep their [`HandshakeError`] (and so their
/// HTTP status).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol; the connection was failed with
    /// `e.close_code()`.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A message could not be sent.
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The application's callback refused the upgrade request with this
    /// status (the response was sent).
    #[error("upgrade request rejected with status {0}")]
    Rejected(http::StatusCode),
    /// The opening handshake did not finish in time.
    #[error("opening handshake timed out")]
    HandshakeTimeout,
    /// The peer did not finish the closing handshake in time.
    #[error("closing handshake timed out")]
    CloseTimeout,
    /// Nothing arrived from the peer for the idle timeout
    /// ([`crate::Config::with_keepalive`]): the connection was closed with
    /// 1001.
    #[error("nothing received for the idle timeout")]
    IdleTimeout,
    /// The connection is closed: nothing more can be sent or received.
    #[error("connection closed")]
    ConnectionClosed,
    /// The URL cannot be used (no or another scheme, no host, a port out
    /// of range...); the text says what is wrong with it.
    #[error("invalid URL: {0}")]
    Url(String),
    /// The TCP connection to `address` (the server's host:port, or the
    /// proxy's) could not be opened.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// host:port, as dialled.
        address: String,
        /// Why (refused, unreachable, DNS...).
        #[source]
        source: std::io::Error,
    },
    /// The server speaks the other scheme: it answered a `ws://` request
    /// with TLS, or a `wss://` TLS handshake with plain HTTP. `use_scheme`
    /// is the one to use: `"wss"` or `"ws"`.
    #[error("{}", wrong_scheme(use_scheme))]
    WrongScheme {
        /// The scheme the server speaks.
        use_scheme: &'static str,
    },
    /// The handshake timeout expired while the TLS handshake waited for
    /// the server's first byte: a plain server that waits for an HTTP
    /// request (a `ws://` server) does that.
    #[error("the server sent nothing back to the TLS handshake in time: if it is a plain server, use ws:// instead of wss://")]
    TlsUnanswered,
    /// The server answered the opening handshake with another status than
    /// 101: the response (status, headers and the start of its body).
    #[error(transparent)]
    Refused(Box<crate::refused::Refused>),
    /// TLS failed: the handshake (untrusted certificate, wrong name...) or
    /// the TLS configuration. Boxed, as `Proxy`: both are rare and large,
    /// and every `Result` of this crate (and so every future awaiting one,
    /// such as a connection's task) is as large as the largest variant.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(Box<crate::tls::TlsError>),
    /// `wss://` was asked for, and this build of wsx has no TLS (its `tls`
    /// feature is off).
    #[error("wss:// needs TLS, and this build of wsx has none (the `tls` feature is off)")]
    TlsDisabled,
    /// HTTP/2 was required (`Config::with_http2(Mode::Required)`) and the
    /// server cannot carry a WebSocket over it; the value says what it
    /// lacks.
    #[cfg(feature = "http2")]
    #[error("HTTP/2 was required: {0}")]
    Http2Unavailable(crate::http2::Unavailable),
    /// The proxy could not open a tunnel to the server.
    #[error("proxy: {0}")]
    Proxy(Box<crate::proxy::ProxyError>),
    /// The HTTP server could not hand the connection over after the 101
    /// response (hyper upgrades).
    #[cfg(feature = "hyper")]
    #[error("HTTP upgrade failed: {0}")]
    Upgrade(#[from] crate::upgrade::UpgradeError),
    /// WebSockets over HTTP/3 failed: QUIC, HTTP/3, or the h3 crate that
    /// cannot carry them yet (feature `http3`). Boxed, as `Tls`.
    #[cfg(feature = "http3")]
    #[error("HTTP/3: {0}")]
    Http3(Box<crate::http3::Http3Error>),
}

#[cfg(feature = "tls")]
impl From<crate::tls::TlsError> for Error {
    fn from(e: crate::tls::TlsError) -> Self {
        Error::Tls(Box::new(e))
    }
}

impl From<crate::proxy::ProxyError> for Error {
    fn from(e: crate::proxy::ProxyError) -> Self {
        Error::Proxy(Box::new(e))
    }
}

fn wrong_scheme(use_scheme: &str) -> &'static str {
    if use_scheme == "wss" {
        "the server answered with TLS: use wss:// instead of ws://"
    } else {
        "the server answered in plain HTTP, not TLS: use ws:// instead of wss://"
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    /// Every `Result<T>` of the crate is at least this large, and so is
    /// every future that holds one across an await (a connection's task
    /// holds `recv`'s result): large variants are boxed.
    #[test]
    fn the_error_stays_small() {
        assert!(std::mem::size_of::<super::Error>() <= 40, "{}", std::mem::size_of::<super::Error>());
    }
}
