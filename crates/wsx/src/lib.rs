//! # wsx
//!
//! WebSockets (RFC 6455) for tokio, client and server, over any
//! `AsyncRead + AsyncWrite`. The protocol itself lives in the sans-I/O crate
//! [`wsx_proto`]; this crate owns the buffers, the flushing, the timers
//! (handshake, close) and backpressure.
//!
//! ```no_run
//! use wsx::Message;
//!
//! # async fn run() -> wsx::Result<()> {
//! // Server: echo every message.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! tokio::spawn(async move {
//!     while let Ok((tcp, _)) = listener.accept().await {
//!         // The handshake (a boxed future) is made before the task: what a
//!         // task captures stays in it for the connection's whole life.
//!         let handshake = wsx::accept(tcp);
//!         tokio::spawn(async move {
//!             let mut ws = handshake.await?;
//!             while let Some(msg) = ws.recv().await {
//!                 let msg = msg?;
//!                 if msg.is_text() || msg.is_binary() {
//!                     ws.feed(msg).await?;
//!                 }
//!             }
//!             Ok::<_, wsx::Error>(())
//!         });
//!     }
//! });
//!
//! // Client.
//! let (mut ws, _) = wsx::connect("ws://127.0.0.1:9001/").await?;
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
//! ws.close(wsx::CloseCode::Normal, "bye").await?;
//! # Ok(()) }
//! ```
//!
//! Servers: [`server`] accepts connections (limits, origins, keepalive,
//! graceful shutdown, static files, an outgoing pump with one slow-consumer
//! rule); [`accept`] and [`accept_with`] take one stream you accepted.
//! Clients: [`connect`], through [`proxy`] (HTTP `CONNECT` and SOCKS5,
//! explicit or from the environment as curl reads it) when asked. The
//! browser's API, with its exact semantics: [`web`].
//!
//! ## Driving a connection
//!
//! Every way of opening a connection gives a [`WebSocket`], the one driver
//! of a connection on tokio: [`WebSocket::recv`] (or
//! [`WebSocket::recv_chunk`], for messages in pieces) reads and answers
//! pings and closes; [`WebSocket::feed`], [`WebSocket::flush`] and
//! [`WebSocket::send`] write; [`WebSocket::split`] gives a
//! [`WebSocketReader`] and a [`WebSocketWriter`] for two tasks. What else
//! takes a connection is built on it: a [`server::Pump`] (messages from
//! other tasks through an outbox), [`web::WebSocket`] (the browser's API),
//! wsx-hub. Without tokio, drive the sans-I/O core ([`proto`]) yourself:
//! [`proto::Connection`], or [`proto::Reader`] and [`proto::Writer`].
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tls` | on | `wss://` in both roles with rustls ([`tls`], `ServerBuilder::tls`); without it `wss://` fails with [`Error::TlsDisabled`] |
//! | `webpki-roots` | on | Mozilla's root certificates, compiled in (the default trust for `wss://`) |
//! | `native-roots` | off | the platform's root certificates (`TlsRoots::Platform`) |
//! | `hyper` | off | `upgrade`: WebSocket upgrades inside a hyper 1 server; `Server::service`: the server's handlers (and wsx-hub's) mounted in hyper or axum |
//! | `axum` | off | `axum`: the `WebSocketUpgrade` extractor of axum 0.8 |
//! | `http3` | off | `http3`: WebSockets over HTTP/3 (RFC 9220) on quinn and h3, experimental: blocked on h3, whose releases cannot carry `:protocol websocket` yet |

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod config;
mod error;
mod group;
mod handle;
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
pub mod http2;
#[cfg(feature = "http3")]
#[cfg_attr(docsrs, doc(cfg(feature = "http3")))]
pub mod http3;
mod io;
mod keepalive;
mod maybe_tls;
mod percent;
pub mod proxy;
mod refused;
pub mod server;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "hyper")]
pub mod upgrade;
pub mod web;

pub use client::{client_handshake, connect, connect_with, IntoClientRequest};
pub use config::Config;
pub use error::{Error, Result};
pub use handle::CloseHandle;
#[cfg(not(feature = "tls"))]
pub use maybe_tls::NoTls;
pub use maybe_tls::{ClientTls, MaybeTls, MaybeTlsReadHalf, MaybeTlsStream, MaybeTlsWriteHalf, ServerTls};
pub use refused::Refused;
pub use server::{accept, accept_with, Handshake};
pub use stream::{Feed, SplitIo, WebSocket, WebSocketReader, WebSocketWriter};
pub use wsx_proto::{
    CloseCode, CloseFrame, CloseState, Message, PreparedMessage, ProtocolError, Role, SendError, Utf8Bytes,
};

/// The opening handshake as a server application takes part in it: the
/// checked request it sees ([`UpgradeRequest`](handshake::UpgradeRequest))
/// and what it answers ([`Accept`](handshake::Accept) or
/// [`Reject`](handshake::Reject)); [`HandshakeError`](handshake::HandshakeError)
/// says why a handshake failed. The handshake without I/O (reading heads,
/// the client's side, writing responses) is [`proto::handshake`].
pub mod handshake {
    pub use wsx_proto::handshake::{Accept, HandshakeError, Reject, UpgradeRequest};
}

pub use bytes::Bytes;
/// The protocol core, re-exported.
pub use wsx_proto as proto;

/// The Rust examples of the workspace's README.md, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
