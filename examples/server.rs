//! Your own server with what `wsx serve` does around the protocol, in a few
//! lines: static files and a WebSocket on one port, an origin allowlist, a
//! connection limit counted from accept, keepalive (pings after silence,
//! a close for peers that vanished), a slow-consumer rule for what other
//! tasks send, and graceful shutdown with 1001 on Ctrl-C. Here every
//! message goes to every client (a room), and DIR holds the page.
//!
//! ```sh
//! cargo run -p wsx --example server -- 127.0.0.1:9001 DIR
//! wsx connect ws://127.0.0.1:9001/ws --origin http://127.0.0.1:9001   # in two terminals
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsx::handshake::{Accept, Reject};
use wsx::server::{Outbox, OutboxConfig, Pump, Request, Server, StaticFiles};
use wsx::Message;

/// Everyone's outbox: a full one closes its client with 1008.
type Room = Arc<Mutex<HashMap<u64, Outbox>>>;

async fn handle(req: Request, files: StaticFiles, room: Room, id: u64) -> wsx::Result<()> {
    if !req.is_upgrade() {
        let page = files.response(req.head().request()).await;
        return req.respond(page).await;
    }
    if req.path() != "/ws" {
        return req.respond(Reject::new(404, "the socket is at /ws\n").into_response()).await;
    }
    let (outbox, rx) = Outbox::new(OutboxConfig::default().with_max_messages(256));
    room.lock().unwrap().insert(id, outbox);
    let mut client = Pump::new(req.upgrade(Accept::new()).await?, rx);
    while let Some(msg) = client.recv().await {
        if let m @ (Message::Text(_) | Message::Binary(_)) = msg? {
            for outbox in room.lock().unwrap().values() {
                let _ = outbox.push(m.clone());
            }
        }
    }
    room.lock().unwrap().remove(&id);
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9001".into());
    let files = StaticFiles::new(args.next().unwrap_or_else(|| ".".into()))?;
    let server = Server::builder()
        .config(wsx::Config::default().with_keepalive(Duration::from_secs(20), Duration::from_secs(60)))
        .allow_origins([format!("http://{addr}")])
        .max_connections(10_000)
        .build();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("http://{}/ and ws://{0}/ws", listener.local_addr()?);
    let room = Room::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handler = move |req| {
        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        handle(req, files.clone(), room.clone(), id)
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server.serve_until(listener, handler, ctrl_c).await
}
