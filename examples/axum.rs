//! An axum server with a WebSocket echo route at `/ws` (subprotocol
//! `echo` when offered) next to a plain HTTP route.
//!
//! ```sh
//! cargo run -p wsx --example axum --features axum     # listens on 127.0.0.1:3000
//! ```
//!
//! Then, for instance, `wsx::connect("ws://127.0.0.1:3000/ws")`.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use wsx::axum::WebSocketUpgrade;

async fn ws_handler(ws: WebSocketUpgrade) -> Response {
    let config = wsx::Config::default().with_max_message_size(1 << 20);
    ws.protocols(["echo"]).config(config).on_upgrade(|mut ws| async move {
        while let Some(msg) = ws.recv().await {
            match msg {
                // Echo data; pings are answered and the close handshake is
                // finished by `recv` itself.
                Ok(m) if m.is_text() || m.is_binary() => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("connection failed: {e}");
                    break;
                }
            }
        }
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new().route("/", get(|| async { "WebSocket echo at /ws\n" })).route("/ws", get(ws_handler));
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
