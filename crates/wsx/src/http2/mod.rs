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
//!
//! A client ([`crate::connect`], [`crate::web`]) opens `wss://` as
//! browsers do: TLS offers ALPN `h2` and `http/1.1`; when the server picks
//! `h2`, the client waits for its first SETTINGS and, if they allow
//! extended `CONNECT` (`SETTINGS_ENABLE_CONNECT_PROTOCOL` = 1), opens the
//! WebSocket as a `CONNECT` stream with `:protocol websocket` (RFC 8441
//! §4, §5: answered with 200, no `Sec-WebSocket-Key`). The WebSockets to
//! one origin (host, port, proxy, TLS configuration) share its HTTP/2
//! connection while the server's `SETTINGS_MAX_CONCURRENT_STREAMS` leaves
//! room, then another is opened; a connection without WebSockets closes
//! after 30 s, or at once with [`close_idle_connections`]. A server that
//! speaks HTTP/2 without extended `CONNECT` gets the WebSocket over
//! HTTP/1.1, on a new connection that offers `http/1.1` alone, and is
//! remembered for five minutes so that the next WebSockets go straight
//! there. [`Mode`] (set with [`crate::Config::with_http2`]) requires
//! HTTP/2 instead, failing with [`crate::Error::Http2Unavailable`], or
//! turns it off. `ws://` stays HTTP/1.1: wsx speaks HTTP/2 over TLS only
//! (no cleartext h2c). The pool is the process's; a connection is driven
//! by a task on the runtime that opened it and closes when that runtime
//! shuts down.

mod client;
mod stream;

pub use client::{close_idle_connections, Mode, Unavailable};
pub(crate) use client::{open, Opened};
pub use stream::{H2Recv, H2Send, H2Stream};
