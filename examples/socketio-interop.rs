//! The interop server of `tests/socketio/CONTRACT.md`, on wsx-hub's
//! Socket.IO server: the relay of `wsx serve --socketio` (join, leave,
//! publish, whoami) plus the events the client checks use (echo, ask,
//! namespaces, a middleware, state recovery).
//!
//! ```text
//! cargo run -p wsx-hub --example socketio-interop -- 0 [--redis redis://127.0.0.1:6379]
//! ```
//!
//! Prints `listening PORT` once it accepts connections.

use serde_json::json;
use std::time::Duration;
use wsx_hub::broker::{RedisBroker, RedisOptions};
use wsx_hub::socketio::engine::{Cors, EngineConfig};
use wsx_hub::socketio::{relay, ConnectError, Namespace, Payload, SocketIo};
use wsx_hub::Hub;

/// `echo(...args, ack)` answers with the arguments; `echo-event(...args)`
/// emits them back as `echo`.
fn with_echo(ns: Namespace) -> Namespace {
    ns.on("echo", |_socket, msg| async move {
        msg.ack(msg.payload().clone());
        Ok(())
    })
    .on("echo-event", |socket, msg| async move {
        socket.emit("echo", msg.into_payload())?;
        Ok(())
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mut port = 0u16;
    let mut redis = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--redis" => redis = Some(args.next().ok_or("--redis needs a URL")?),
            p => port = p.parse().map_err(|_| format!("not a port: {p}"))?,
        }
    }
    let mut hub = Hub::builder();
    if let Some(url) = &redis {
        hub = hub.broker(RedisBroker::new(url, RedisOptions::default())?);
    }
    let main_ns = with_echo(relay())
        .middleware(|hs| async move {
            if hs.auth.get("token").and_then(|t| t.as_str()) == Some("bad") {
                return Err(ConnectError::new("unauthorized").data(json!({"reason": "bad token"})));
            }
            Ok(())
        })
        // ask(event, ...args, ack): ask the sender, answer with its answer.
        .on("ask", |socket, msg| async move {
            let event: String = msg.data()?;
            let args = msg.payload().clone().skip(1);
            // Its first argument, with the attachments its placeholders name.
            let answer = match socket.emit_with_ack(&event, args, Duration::from_secs(2)).await {
                Ok(a) => {
                    Payload::with_attachments(a.values().iter().take(1).cloned().collect(), a.attachments().to_vec())
                }
                Err(_) => Payload::from(json!({"error": "timeout"})),
            };
            msg.ack(answer);
            Ok(())
        })
        .on("whoami", |socket, msg| async move {
            let mut rooms = socket.rooms();
            rooms.sort();
            msg.ack(json!({"id": socket.id(), "rooms": rooms, "recovered": socket.recovered()}));
            Ok(())
        });
    let io = SocketIo::builder()
        .hub(hub.build())
        .engine(
            EngineConfig::default()
                .ping_interval(Duration::from_millis(1000))
                .ping_timeout(Duration::from_millis(1000))
                .max_payload(1_000_000)
                .cors(Cors::any()),
        )
        .namespace("/", main_ns)
        .namespace("/admin", with_echo(Namespace::new()))
        .dynamic_namespace(
            |name| {
                name.strip_prefix("/dyn-")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            },
            with_echo(Namespace::new()).on("nsp", |socket, msg| async move {
                msg.ack(Payload::from(json!(socket.ns())));
                Ok(())
            }),
        )
        .connection_state_recovery(Duration::from_secs(30))
        .build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?.port());
    let server = tokio::spawn(io.clone().serve(listener));
    tokio::signal::ctrl_c().await?;
    io.shutdown().await;
    server.await??;
    Ok(())
}
