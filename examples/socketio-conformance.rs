//! The server the official Engine.IO (v4) and Socket.IO (v5) protocol test
//! suites run against: a bare Engine.IO echo server at `/engine.io/`, and a
//! Socket.IO server at `/socket.io/` with the namespaces `/` and `/custom`,
//! both with a 300 ms ping interval, a 200 ms ping timeout and
//! `maxPayload` 1,000,000.
//!
//! ```text
//! cargo run -p wsx-hub --example socketio-conformance -- 3000
//! ```
//!
//! Prints `listening PORT` once it accepts connections.

use std::time::Duration;
use wsx_hub::socketio::engine::{Cors, Engine, EngineConfig, Incoming};
use wsx_hub::socketio::{Namespace, SocketIo};
use wsx_hub::Handled;

fn engine_config() -> EngineConfig {
    EngineConfig::default()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .max_payload(1_000_000)
        .cors(Cors::any())
}

/// What the Socket.IO suite expects of both namespaces: `auth` with the
/// CONNECT payload on connection, and the echoes.
fn suite_namespace() -> Namespace {
    Namespace::new()
        .on_connect(|socket| async move {
            let auth = socket.handshake().auth.clone();
            let _ = socket.emit("auth", auth);
        })
        .on("message", |socket, msg| async move {
            socket.emit("message-back", msg.into_payload())?;
            Ok(())
        })
        .on("message-with-ack", |_socket, msg| async move {
            msg.ack(msg.payload().clone());
            Ok(())
        })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().map_err(|_| std::io::Error::other(format!("not a port: {p}")))?,
        None => 3000,
    };
    // `/engine.io/`: every message back to its sender, text as text and
    // binary as binary.
    let echo = Engine::new(engine_config(), |mut session| {
        tokio::spawn(async move {
            while let Some(m) = session.recv().await {
                let back = match m {
                    Incoming::Text(t) => wsx::Message::text(format!("4{}", t.as_str())),
                    Incoming::Binary(b) => wsx::Message::Binary(b),
                };
                let _ = session.outbox().push(back);
            }
        });
    });
    let io = SocketIo::builder()
        .engine(engine_config())
        .connect_timeout(Duration::from_millis(1000))
        .namespace("/", suite_namespace())
        .namespace("/custom", suite_namespace())
        .build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?.port());
    let server = io.hub().server().clone();
    server
        .serve(listener, move |req| {
            let (io, echo) = (io.clone(), echo.clone());
            async move {
                if req.path().starts_with("/engine.io") {
                    echo.handle(req).await?;
                    return Ok(());
                }
                if let Handled::NotMine(req) = io.handle(req).await? {
                    req.respond(wsx::handshake::Reject::new(404, "not found\n").into_response()).await?;
                }
                Ok::<_, wsx_hub::HubError>(())
            }
        })
        .await
}
