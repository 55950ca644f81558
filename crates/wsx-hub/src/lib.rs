//! # wsx-hub
//!
//! A WebSocket server framework on [`wsx`]: a registry of connections,
//! rooms with presence, named events with JSON payloads and binary
//! attachments, requests answered with acknowledgements, policies (origin
//! allowlist, auth, connection and rate limits, slow consumers, keepalive,
//! graceful shutdown), fan-out across nodes through a [`broker::Broker`]
//! (in memory or Redis), Server-Sent Events and Prometheus metrics on the
//! same port, and a client ([`client::Client`]; `js/wsx-hub.js` for
//! browsers). The wire protocol, `wsx-hub.v1`, is in `PROTOCOL.md`.
//!
//! ```no_run
//! use wsx_hub::{Event, Hub, HandlerError};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::builder()
//!     .allow_origins(["https://chat.example"])
//!     .on("say", |ctx, ev| async move {
//!         let room = ev.data["room"].as_str().unwrap_or("lobby").to_owned();
//!         ctx.broadcast(&room, Event::new("said", ev.data.clone()));   // all but the sender
//!         Ok::<_, HandlerError>(serde_json::json!({"delivered": true})) // the sender's ack
//!     })
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! tokio::spawn(hub.clone().serve(listener));
//!
//! // A client (Rust); browsers use js/wsx-hub.js the same way.
//! let (client, _events) = wsx_hub::client::Client::builder("ws://127.0.0.1:9001/").connect();
//! client.join("lobby").await.ok();
//! let answer = client.request(Event::new("say", serde_json::json!({"room": "lobby", "text": "hi"}))).await;
//!
//! hub.shutdown().await; // 1001 to everyone, then drain
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod broker;
pub mod client;
mod conn;
mod error;
mod hub;
mod metrics;
mod policy;
mod presence;
pub mod protocol;
mod replay;
mod rounds;
mod server;
pub mod socketio;
mod sse;

pub use error::{AckError, BrokerError, HandlerError, HubError};
pub use hub::{ConnInfo, ConnectInfo, Ctx, Event, Hub, HubBuilder, RoomInfo, SseSettings};
pub use metrics::MetricsSnapshot;
pub use policy::{AuthError, Backoff, ConnectRequest, RateLimit};
pub use presence::PresenceMode;
pub use protocol::{ConnId, Member, MembersPage, PresenceDiff};
pub use server::Handled;
pub use wsx::handshake::Reject;
pub use wsx::server::SlowConsumer;

/// The browser client, `js/wsx-hub.js` (one ES module, no dependencies),
/// for servers that serve it next to the hub so that pages load the
/// client that matches the server (`wsx serve --hub` answers it at
/// `/wsx-hub.js`).
pub const CLIENT_JS: &str = include_str!("../js/wsx-hub.js");
