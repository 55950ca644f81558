//! An axum server with a WebSocket echo route at `/ws` (subprotocol
//! `echo` when offered) next to a plain HTTP route, over HTTP/1.1 and
//! HTTP/2; and the same echo at `/server` written for a
//! `wsx::server::Server` (`Request::upgrade`) and mounted with
//! `Server::service`, which brings the server's connection limit,
//! keepalive and graceful shutdown (Ctrl-C closes its WebSockets with 1001).
//!
//! ```sh
//! cargo run -p wsx --example axum --features axum                  # http://127.0.0.1:3000
//! cargo run -p wsx --example axum --features axum -- 127.0.0.1:3443 \
//!     --tls cert.pem key.pem                                         # https://127.0.0.1:3443
//! ```
//!
//! How each version is served:
//!
//! - In clear text, `axum::serve` on a `TcpListener` (axum's `http1` and
//!   `http2` features) reads the first bytes of each connection: an
//!   HTTP/1.1 request, or the HTTP/2 preface of a client with prior
//!   knowledge (h2c, e.g. `curl --http2-prior-knowledge`).
//! - With `--tls CERT KEY`, the same `axum::serve` runs on a TLS listener
//!   whose ALPN offers `h2` and `http/1.1`: the client picks, and browsers
//!   pick `h2` (they speak HTTP/2 over TLS only).
//!
//! On HTTP/2 `axum::serve` sends SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441
//! §3), and a WebSocket opens with an extended `CONNECT`, not a `GET`: the
//! route uses `any`, so that both reach `wsx::axum::WebSocketUpgrade`.
//!
//! Then, for instance, `wsx::connect("ws://127.0.0.1:3000/ws")`, or
//! `new WebSocket("wss://localhost:3443/ws")` in a browser that trusts the
//! certificate (over HTTP/2 when the page came from the same origin).

use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsx::axum::WebSocketUpgrade;
use wsx::tls::tokio_rustls::server::TlsStream;
use wsx::tls::TlsAcceptor;

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

/// A TLS listener for `axum::serve`: each TLS handshake runs in a task of
/// its own (bounded by a timeout), so a slow client does not hold up the
/// others, and finished connections are handed to axum.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            while !tx.is_closed() {
                let (stream, peer) = match tcp.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors, for instance: wait a bit.
                        eprintln!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => eprintln!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => eprintln!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended: no connection will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The echo as a handler of a `wsx::server::Server`: any handler written
/// for `Request` (wsx-hub's `Hub::handle`, Socket.IO...) mounts the same way.
fn server_echo(server: &wsx::server::Server) -> wsx::server::ServerService {
    server.service(|req| async move {
        let mut ws = req.upgrade(wsx::handshake::Accept::new()).await?;
        while let Some(msg) = ws.recv().await {
            let msg = msg?;
            if msg.is_text() || msg.is_binary() {
                ws.feed(msg).await?;
            }
        }
        Ok::<_, wsx::Error>(())
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = wsx::server::Server::builder()
        .config(wsx::Config::default().with_keepalive(Duration::from_secs(20), Duration::from_secs(60)))
        .max_connections(10_000)
        .build();
    // `any`: a WebSocket is a GET on HTTP/1.1, a CONNECT on HTTP/2 (and
    // `route_service` takes every method).
    let app = Router::new()
        .route("/", get(|| async { "WebSocket echo at /ws and /server\n" }))
        .route("/ws", any(ws_handler))
        .route_service("/server", server_echo(&server));
    let shutdown = async move {
        tokio::signal::ctrl_c().await.ok();
        server.shutdown().await;
    };
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&addr).await?;
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => {
            println!("listening on http://{} (HTTP/1.1, and HTTP/2 with prior knowledge)", listener.local_addr()?);
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        }
        (Some("--tls"), Some(cert), Some(key)) => {
            let mut tls = (*wsx::tls::server_config_from_pem_files(cert, key)?).clone();
            // ALPN (RFC 7301): HTTP/2 first, as browsers prefer it.
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let listener = TlsListener::new(listener, TlsAcceptor::from(std::sync::Arc::new(tls)))?;
            println!("listening on https://{} (HTTP/2 and HTTP/1.1 by ALPN)", listener.local);
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        }
        _ => return Err("usage: axum [ADDR] [--tls CERT KEY]".into()),
    }
    Ok(())
}
