//! Our HTTP/3 client against our HTTP/3 server, over QUIC on 127.0.0.1.
//!
//! h3 0.0.8 cannot carry `:protocol websocket` (see the module's
//! documentation), so these tests open WebSockets with `connect-udp` on the
//! wire in its place, read by the server as `websocket`: everything else is
//! the code a `websocket` request runs (the request and response, the
//! negotiation, the refusals, `H3Stream` under the protocol core, several
//! sockets on one connection). tests/http3.rs covers the public API as it
//! stands.

use super::{client, server, Connection, H3Stream, WireToken};
use crate::handshake::{Accept, Reject};
use crate::{CloseCode, Config, Error, Message, Result, WebSocket};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// The `:protocol` sent in place of `websocket`.
fn token() -> WireToken {
    WireToken::stand_in(h3::ext::Protocol::CONNECT_UDP)
}

/// Fail a test that hangs instead of hanging it.
async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut).await.expect("timed out")
}

/// A server on 127.0.0.1 with a self-signed certificate for it, running
/// `handler`; its directory of PEM files is removed on drop.
struct TestServer {
    addr: SocketAddr,
    dir: PathBuf,
    endpoint: quinn::Endpoint,
}

impl TestServer {
    fn start<H, F>(config: Config, handler: H) -> Self
    where
        H: Fn(server::Request) -> F + Send + Sync + 'static,
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsx-http3-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), key.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.signing_key.serialize_pem()).unwrap();
        let quic = super::server_config_from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
        let endpoint = quinn::Endpoint::server(quic, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        tokio::spawn(server::serve_with_token(endpoint.clone(), config, handler, token()));
        Self { addr, dir, endpoint }
    }

    fn url(&self, path: &str) -> String {
        format!("wss://{}{path}", self.addr)
    }

    /// A client configuration that trusts the server's certificate.
    fn client_config(&self) -> Config {
        Config::default().with_tls_ca(self.dir.join("cert.pem"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Echo every message until the connection ends.
async fn echo(req: server::Request) -> Result<()> {
    crate::server::echo(req.upgrade(Accept::new()).await?).await
}

/// Read until the end, returning the close frame's code and reason.
async fn closed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
) -> Option<(u16, String)> {
    let mut close = None;
    while let Some(msg) = ws.recv().await {
        if let Ok(Message::Close(Some(f))) = msg {
            close = Some((u16::from(f.code), f.reason.as_str().to_owned()));
        }
    }
    close
}

#[tokio::test]
async fn text_binary_and_a_4_mib_message_go_there_and_back() {
    let server = TestServer::start(Config::default(), echo);
    let (mut ws, response) =
        within(client::connect_with_token(server.url("/echo"), &server.client_config(), token())).await.unwrap();
    // RFC 9220 §3 (RFC 8441 §5): 200, no Sec-WebSocket-Accept.
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("sec-websocket-accept").is_none());
    assert_eq!(response.version(), http::Version::HTTP_3);

    ws.send(Message::text("hello over HTTP/3")).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("hello over HTTP/3"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    let big: Vec<u8> = (0..4usize << 20).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match within(ws.recv()).await.unwrap().unwrap() {
        Message::Binary(b) => assert!(b == big, "the 4 MiB echo differs"),
        other => panic!("expected the 4 MiB message back, got {other:?}"),
    }
    ws.close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(within(closed(&mut ws)).await, Some((1000, String::new())));
}

#[tokio::test]
async fn a_close_code_reaches_the_server_and_the_server_s_reaches_the_client() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = TestServer::start(Config::default(), move |req: server::Request| {
        let tx = tx.clone();
        async move {
            let mut ws = req.upgrade(Accept::new()).await?;
            let close = match ws.recv().await.transpose()? {
                Some(Message::Close(Some(f))) => {
                    closed(&mut ws).await;
                    Some((u16::from(f.code), f.reason.as_str().to_owned()))
                }
                Some(m) if m == Message::text("close, please") => {
                    ws.close(CloseCode::from(4002), "as asked").await?;
                    closed(&mut ws).await
                }
                _ => closed(&mut ws).await,
            };
            let _ = tx.send(close);
            Ok(())
        }
    });
    let config = server.client_config();

    let (mut ws, _) = within(client::connect_with_token(server.url("/"), &config, token())).await.unwrap();
    ws.close(CloseCode::from(4001), "client done").await.unwrap();
    // The server's reply echoes the code (RFC 6455 §5.5.1).
    assert_eq!(within(closed(&mut ws)).await.map(|(code, _)| code), Some(4001));
    assert_eq!(within(rx.recv()).await.unwrap(), Some((4001, "client done".to_owned())));

    let (mut ws, _) = within(client::connect_with_token(server.url("/"), &config, token())).await.unwrap();
    ws.send(Message::text("close, please")).await.unwrap();
    assert_eq!(within(closed(&mut ws)).await, Some((4002, "as asked".to_owned())));
    // The client's reply, as it reached the server.
    assert_eq!(within(rx.recv()).await.unwrap().map(|(code, _)| code), Some(4002));
}

#[tokio::test]
async fn two_websockets_share_one_quic_connection_and_one_outlives_the_other() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = TestServer::start(Config::default(), move |req: server::Request| {
        let tx = tx.clone();
        async move {
            let peer = req.peer_addr();
            let ws = req.upgrade(Accept::new()).await?;
            let _ = tx.send((peer, ws.get_ref().stream_id()));
            crate::server::echo(ws).await
        }
    });
    let config = server.client_config();
    let connection = within(Connection::open(server.url("/"), &config)).await.unwrap();
    let (mut a, _) = within(connection.websocket_with_token(server.url("/a"), &config, token())).await.unwrap();
    let (mut b, _) = within(connection.websocket_with_token(server.url("/b"), &config, token())).await.unwrap();
    let (peer_a, id_a) = within(rx.recv()).await.unwrap();
    let (peer_b, id_b) = within(rx.recv()).await.unwrap();
    assert_eq!(peer_a, peer_b, "one QUIC connection");
    assert_ne!(id_a, id_b, "two request streams");
    assert_ne!(a.get_ref().stream_id(), b.get_ref().stream_id());

    // Interleaved.
    a.send(Message::text("a1")).await.unwrap();
    b.send(Message::text("b1")).await.unwrap();
    assert_eq!(within(b.recv()).await.unwrap().unwrap(), Message::text("b1"));
    assert_eq!(within(a.recv()).await.unwrap().unwrap(), Message::text("a1"));

    // Closing one (and dropping the connection's handle) leaves the other.
    a.close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(within(closed(&mut a)).await, Some((1000, String::new())));
    drop((a, connection));
    b.send(Message::text("b2")).await.unwrap();
    assert_eq!(within(b.recv()).await.unwrap().unwrap(), Message::text("b2"));
    b.close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(within(closed(&mut b)).await, Some((1000, String::new())));
}

#[tokio::test]
async fn a_reader_that_stops_stalls_its_own_stream_alone() {
    let server = TestServer::start(Config::default(), |req: server::Request| async move {
        if req.request().path() == "/stall" {
            // Never reads.
            let _ws = req.upgrade(Accept::new()).await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            return Ok(());
        }
        echo(req).await
    });
    let config = server.client_config().with_compression(false);
    let connection = within(Connection::open(server.url("/"), &config)).await.unwrap();
    let (mut stalled, _) =
        within(connection.websocket_with_token(server.url("/stall"), &config, token())).await.unwrap();
    let (mut other, _) = within(connection.websocket_with_token(server.url("/echo"), &config, token())).await.unwrap();
    // 16 MiB against a reader that never reads: QUIC's stream window
    // holds it back.
    let sending = tokio::spawn(async move { stalled.send(Message::binary(vec![7u8; 16 << 20])).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sending.is_finished(), "16 MiB went into a stream whose reader never reads");
    for i in 0..20 {
        let text = format!("still here {i}");
        other.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(within(other.recv()).await.unwrap().unwrap(), Message::text(text));
    }
    assert!(!sending.is_finished());
    sending.abort();
}

#[tokio::test]
async fn subprotocol_and_permessage_deflate_are_negotiated_as_on_http_1_1() {
    let server = TestServer::start(Config::default(), |req: server::Request| async move {
        let chat = req.request().protocols().iter().any(|p| p == "chat");
        let accept = if chat { Accept::new().protocol("chat") } else { Accept::new() };
        let ws = req.upgrade(accept).await?;
        assert!(ws.compression_enabled());
        crate::server::echo(ws).await
    });
    let request =
        http::Request::get(server.url("/chat")).header("sec-websocket-protocol", "chat, other").body(()).unwrap();
    let (mut ws, response) =
        within(client::connect_with_token(request, &server.client_config(), token())).await.unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    assert!(ws.compression_enabled());
    assert!(response.headers()["sec-websocket-extensions"].to_str().unwrap().starts_with("permessage-deflate"));
    let text = "compressible ".repeat(1000);
    ws.send(Message::text(text.clone())).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text(text));
    ws.close(CloseCode::Normal, "").await.unwrap();
    within(closed(&mut ws)).await;
}

#[tokio::test]
async fn a_handler_s_refusal_reaches_the_client_with_its_body() {
    let server = TestServer::start(Config::default(), |req: server::Request| async move {
        req.reject(Reject::new(403, "not from this origin\n")).await
    });
    let refused = within(client::connect_with_token(server.url("/"), &server.client_config(), token())).await;
    match refused {
        Err(Error::Refused(r)) => {
            assert_eq!(r.status(), 403);
            assert_eq!(r.body_line(), Some("not from this origin"));
            // HTTP/3 forbids connection-specific fields (RFC 9114 §4.2).
            assert!(r.response().headers().get("connection").is_none());
        }
        other => panic!("expected a 403 refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn connect_without_protocol_or_with_another_is_refused_on_its_stream_alone() {
    let server = TestServer::start(Config::default(), echo);
    let config = server.client_config();
    let connection = within(Connection::open(server.url("/"), &config)).await.unwrap();
    let authority = format!("https://{}/", server.addr);
    let status = |request: http::Request<()>| {
        let mut send = connection.keep_send();
        async move {
            let mut stream = send.send_request(request).await.unwrap();
            let response = stream.recv_response().await.unwrap();
            (response.status().as_u16(), response.headers().clone())
        }
    };
    let connect =
        || http::Request::connect(&authority).version(http::Version::HTTP_3).header("sec-websocket-version", "13");

    // RFC 8441 §4 (RFC 9220 §3): a plain CONNECT is a tunnel request.
    let (code, headers) = within(status(connect().body(()).unwrap())).await;
    assert_eq!(code, 405);
    assert!(headers.get("connection").is_none());
    // Another :protocol is not served.
    let mut other = connect().body(()).unwrap();
    other.extensions_mut().insert(h3::ext::Protocol::WEB_TRANSPORT);
    assert_eq!(within(status(other)).await.0, 501);
    // A GET: WebSockets over HTTP/3 are opened by CONNECT alone.
    let get = http::Request::get(&authority).version(http::Version::HTTP_3).body(()).unwrap();
    let (code, headers) = within(status(get)).await;
    assert_eq!((code, headers.get("allow").map(|v| v.to_str().unwrap())), (405, Some("CONNECT")));
    // The WebSocket token with a version other than 13.
    let mut old = http::Request::connect(&authority)
        .version(http::Version::HTTP_3)
        .header("sec-websocket-version", "8")
        .body(())
        .unwrap();
    old.extensions_mut().insert(h3::ext::Protocol::CONNECT_UDP);
    assert_eq!(within(status(old)).await.0, 426);

    // The connection goes on.
    let (mut ws, _) = within(connection.websocket_with_token(server.url("/"), &config, token())).await.unwrap();
    ws.send(Message::text("after the refusals")).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("after the refusals"));
}

#[tokio::test]
async fn ws_urls_are_refused_for_http3() {
    match super::Connection::open("ws://127.0.0.1:9/", &Config::default()).await {
        Err(Error::Url(why)) => assert!(why.contains("wss://"), "{why}"),
        other => panic!("expected an URL error, got {other:?}"),
    }
}

/// A WebSocket over HTTP/3 can move between tasks (the server's handlers
/// and `wsx::server::echo` need it).
#[test]
fn an_http3_websocket_is_send() {
    fn send<T: Send>() {}
    send::<WebSocket<H3Stream>>();
    send::<Connection>();
}
