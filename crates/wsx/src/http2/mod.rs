//! WebSockets over HTTP/2 (RFC 8441): one WebSocket per stream of an HTTP/2
//! connection, opened by an extended `CONNECT` (feature `http2`, on by
//! default).
//!
//! A [`crate::server::Server`] with TLS offers `h2` by ALPN and serves the
//! WebSockets, pages and event streams of a browser's HTTP/2 connection;
//! [`crate::connect`] opens `wss://` over HTTP/2 when the server offers it.
//! Both build on [`H2Stream`], the byte stream of one HTTP/2 stream: the
//! WebSocket on it runs the same protocol core, frame for frame, as one on
//! TCP. What HTTP/2 adds is flow control per stream: reading hands window
//! back to the peer only as the WebSocket consumes the bytes, and writing
//! waits for window, so a socket whose peer does not read stalls alone and
//! holds at most HTTP/2's send buffer.

mod stream;

pub use stream::{H2Recv, H2Send, H2Stream};
