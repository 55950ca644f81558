//! WebSockets over HTTP/2 (RFC 8441) against `wsx::server::Server`, with
//! an independent client: the `h2` crate driven by hand over rustls with
//! ALPN `h2`. The server chooses HTTP/2 by ALPN, advertises
//! SETTINGS_ENABLE_CONNECT_PROTOCOL, answers an extended CONNECT with 200,
//! serves many WebSockets, pages and event streams on one connection,
//! refuses what RFC 8441 and RFC 9113 say to refuse on that stream alone,
//! and shuts down with 1001 on every WebSocket, then GOAWAY.

mod common;
#[path = "support/pki.rs"]
mod pki;

use bytes::Bytes;
use common::*;
use pki::Ca;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use wsx::http2::H2Stream;
use wsx::server::{Request, Server};
use wsx::tls::tokio_rustls::TlsConnector;
use wsx::{CloseCode, Config, Message, Role, WebSocket};

/// A TLS server on 127.0.0.1 for `localhost`: WebSockets echo (and report
/// how each ended on `ended`), `/page` is a page, `/events` streams.
async fn server(ca: &Ca, config: Config) -> (Server, u16, mpsc::UnboundedReceiver<Option<CloseCode>>) {
    let server = Server::builder().config(config).tls(pki::acceptor(ca, &["localhost"])).build();
    let (listener, addr) = listen().await;
    let (tx, ended) = mpsc::unbounded_channel();
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(listener, move |req: Request| {
            let tx = tx.clone();
            async move {
                match req.path() {
                    _ if req.is_upgrade() => {
                        let protocol = req.protocols().first().cloned();
                        let mut accept = wsx::handshake::Accept::new();
                        if let Some(p) = protocol {
                            accept = accept.protocol(p);
                        }
                        let mut ws = req.upgrade(accept).await?;
                        let _ = tx.send(close_code(echo(&mut ws).await));
                        Ok(())
                    }
                    "/poll" => {
                        // A long-poll without news: reports when its client leaves.
                        let mut req = req;
                        req.client_gone().await;
                        let _ = tx.send(Some(CloseCode::from(4100)));
                        Ok(())
                    }
                    "/body" => {
                        let mut req = req;
                        let resp = match req.body(16).await {
                            Ok(body) => http::Response::new(body),
                            Err(e) => http::Response::builder().status(e.status()).body(Bytes::new()).unwrap(),
                        };
                        req.respond(resp).await
                    }
                    "/page" => {
                        let resp = http::Response::builder()
                            .header("content-type", "text/html")
                            .header("connection", "close")
                            .body(Bytes::from_static(b"<p>served over HTTP/2</p>"))
                            .unwrap();
                        req.respond(resp).await
                    }
                    "/events" => {
                        let head =
                            http::Response::builder().header("content-type", "text/event-stream").body(()).unwrap();
                        let mut body = req.respond_stream(head).await?;
                        body.write_all(b"data: one\n\n").await?;
                        body.write_all(b"data: two\n\n").await?;
                        // Until the client goes away.
                        let mut sink = [0u8; 16];
                        let n = tokio::io::AsyncReadExt::read(&mut body, &mut sink).await?;
                        let _ = tx.send(Some(CloseCode::from(4000 + n as u16)));
                        Ok(())
                    }
                    _ => req.respond(wsx::handshake::Reject::new(404, "no\n").into_response()).await,
                }
            }
        })
        .await
    });
    (server, addr.port(), ended)
}

/// How an echo ended: the peer's close code, or 1006 for a connection
/// that ended without a close frame.
fn close_code(echoed: wsx::Result<Vec<Message>>) -> Option<CloseCode> {
    match echoed {
        Ok(other) => other.iter().find_map(|m| match m {
            Message::Close(f) => Some(f.as_ref().map_or(CloseCode::NoStatus, |f| f.code)),
            _ => None,
        }),
        Err(_) => Some(CloseCode::Abnormal),
    }
}

/// The close frame a client reads, then the end of the WebSocket.
async fn closed_with<S>(ws: &mut WebSocket<S>) -> Option<CloseCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let code = match within(ws.recv()).await {
        Some(Ok(Message::Close(f))) => f.map(|f| f.code),
        other => panic!("expected a close frame, got {other:?}"),
    };
    assert!(within(ws.recv()).await.is_none());
    code
}

/// A client with Chromium's windows (6 MiB per stream, 15 MiB for the
/// connection): room for a stream whose socket does not read.
fn browser() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(6 << 20).initial_connection_window_size(15 << 20);
    b
}

/// An HTTP/2 client connection (ALPN `h2` only) to `localhost:port`,
/// after the server's SETTINGS arrived, with the number of times the
/// connection task ended (0 or 1) observable through its handle.
struct Client {
    send: h2::client::SendRequest<Bytes>,
    conn: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

async fn client(ca: &Ca, port: u16, builder: h2::client::Builder) -> Client {
    let mut tls = (*ca.client_config()).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = wsx::tls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server chose HTTP/2");
    let (send, mut conn) = builder.handshake::<_, Bytes>(tls).await.unwrap();
    let mut ping = conn.ping_pong().unwrap();
    let conn = tokio::spawn(conn);
    // The server's SETTINGS is its first frame: processed before the pong.
    within(ping.ping(h2::Ping::opaque())).await.unwrap();
    Client { send: within(send.ready()).await.unwrap(), conn }
}

/// An extended CONNECT for a WebSocket at `path` (RFC 8441 §5), as a
/// browser sends it; `edit` changes it first. The response and, when it
/// is 200, the client's WebSocket on the stream.
async fn open(
    c: &mut Client,
    path: &str,
    edit: impl FnOnce(&mut http::Request<()>),
) -> (http::Response<()>, Option<WebSocket<H2Stream>>) {
    let url = format!("wss://localhost{path}");
    let req = http::Request::get(url).header("origin", "https://localhost").body(()).unwrap();
    let (mut req, handshake) = wsx::proto::handshake::ClientHandshake::extended_connect(req).unwrap();
    req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
    edit(&mut req);
    let (response, send) = c.send.clone().ready().await.unwrap().send_request(req, false).unwrap();
    let response = within(response).await.unwrap();
    let (parts, body) = response.into_parts();
    let head = http::Response::from_parts(parts, ());
    if head.status() != 200 {
        return (head, None);
    }
    handshake.check_response(&head).unwrap();
    let ws = WebSocket::from_raw(H2Stream::new(send, body), Role::Client, &Config::default(), &[]);
    (head, Some(ws))
}

#[tokio::test]
async fn a_websocket_over_http2_echoes_text_binary_and_16_mib_and_closes_with_a_code() {
    let ca = Ca::new("wsx h2 test CA");
    let (server, port, mut ended) = server(&ca, Config::default()).await;
    let mut c = client(&ca, port, browser()).await;
    assert!(c.send.is_extended_connect_protocol_enabled(), "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3)");
    let (resp, ws) = open(&mut c, "/chat", |_| {}).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let mut ws = ws.unwrap();
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    for msg in [Message::text("hello over h2"), Message::binary(vec![]), Message::binary(big.clone())] {
        within(ws.send(msg.clone())).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(30), ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(back, msg);
    }
    within(ws.close(4321, "bye")).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, Some(CloseCode::from(4321)));
    assert_eq!(within(ended.recv()).await.unwrap(), Some(CloseCode::from(4321)));
    assert_eq!(server.websockets_opened(http::Version::HTTP_2), 1);
    assert_eq!(server.websockets_opened(http::Version::HTTP_11), 0);
    assert!(server.metrics_text().contains("wsx_websockets_opened_total{http=\"2\"} 1"));
}

#[tokio::test]
async fn a_hundred_websockets_share_one_connection_and_interleave() {
    let ca = Ca::new("wsx h2 test CA");
    let (server, port, _ended) = server(&ca, Config::default()).await;
    let mut c = client(&ca, port, browser()).await;
    let mut sockets = Vec::new();
    for _ in 0..100 {
        sockets.push(open(&mut c, "/", |_| {}).await.1.unwrap());
    }
    // One TCP connection and its 100 streams.
    assert_eq!(server.connections(), 101);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            tokio::spawn(async move {
                for k in 0..20 {
                    let msg = Message::text(format!("socket {i} message {k}"));
                    ws.send(msg.clone()).await.unwrap();
                    assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
                }
                ws.close(CloseCode::Normal, "").await.unwrap();
                assert_eq!(closed_with(&mut ws).await, Some(CloseCode::Normal));
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(20), t).await.unwrap().unwrap();
    }
    assert_eq!(server.websockets_opened(http::Version::HTTP_2), 100);
}

/// A socket whose client stops reading fills its own windows and stalls
/// alone: the server's echo of it waits for window, the others go on.
#[tokio::test]
async fn a_stalled_stream_does_not_stall_the_others() {
    let ca = Ca::new("wsx h2 test CA");
    let (_server, port, _ended) = server(&ca, Config::default()).await;
    let mut c = client(&ca, port, browser()).await;
    let mut stalled = open(&mut c, "/", |_| {}).await.1.unwrap();
    let mut live = open(&mut c, "/", |_| {}).await.1.unwrap();
    // Send without reading until the stream's windows and buffers are
    // full both ways: a send that no longer completes.
    let chunk = Message::binary(vec![7u8; 64 << 10]);
    let mut sent = 0usize;
    while tokio::time::timeout(Duration::from_millis(500), stalled.send(chunk.clone())).await.is_ok() {
        sent += 1;
        assert!(sent < 1000, "64 MiB went through a stream whose client does not read");
    }
    for k in 0..50 {
        let msg = Message::text(format!("still moving {k}"));
        within(live.send(msg.clone())).await.unwrap();
        assert_eq!(within(live.recv()).await.unwrap().unwrap(), msg);
    }
}

/// RST_STREAM on one stream ends that WebSocket alone (1006 on the
/// server, which never saw a close frame); the connection and its other
/// sockets go on.
#[tokio::test]
async fn a_reset_stream_ends_its_websocket_alone() {
    let ca = Ca::new("wsx h2 test CA");
    let (_server, port, mut ended) = server(&ca, Config::default()).await;
    let mut c = client(&ca, port, browser()).await;
    let doomed = open(&mut c, "/", |_| {}).await.1.unwrap();
    let mut other = open(&mut c, "/", |_| {}).await.1.unwrap();
    // Dropping both halves of an open stream resets it (CANCEL).
    drop(doomed);
    assert_eq!(within(ended.recv()).await.unwrap(), Some(CloseCode::Abnormal));
    within(other.send(Message::text("after the reset"))).await.unwrap();
    assert_eq!(within(other.recv()).await.unwrap().unwrap(), Message::text("after the reset"));
}

/// A CONNECT without `:protocol` (a tunnel: 405), with another protocol
/// (501), or with a version other than 13 (426, with the version we
/// speak) is refused on its stream; the connection serves the next one.
#[tokio::test]
async fn refused_connects_leave_the_connection_serving() {
    let ca = Ca::new("wsx h2 test CA");
    let (_server, port, _ended) = server(&ca, Config::default()).await;
    let mut c = client(&ca, port, browser()).await;
    let (resp, _) = open(&mut c, "/", |r| {
        r.extensions_mut().remove::<h2::ext::Protocol>();
        *r.uri_mut() = "localhost:443".parse().unwrap();
    })
    .await;
    assert_eq!(resp.status(), 405);
    let (resp, _) = open(&mut c, "/", |r| {
        r.extensions_mut().insert(h2::ext::Protocol::from_static("webtransport"));
    })
    .await;
    assert_eq!(resp.status(), 501);
    let (resp, _) = open(&mut c, "/", |r| {
        r.headers_mut().insert("sec-websocket-version", http::HeaderValue::from_static("8"));
    })
    .await;
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["sec-websocket-version"], "13, 8, 7");
    assert!(resp.headers().get("upgrade").is_none(), "no connection-specific field on HTTP/2");
    let (resp, ws) = open(&mut c, "/", |_| {}).await;
    assert_eq!(resp.status(), 200);
    let mut ws = ws.unwrap();
    within(ws.send(Message::text("served"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("served"));
}

/// The same policy as on HTTP/1.1, decided in the same place: an origin
/// outside the allowlist gets 403 on its stream.
#[tokio::test]
async fn the_origin_policy_applies_to_http2_streams() {
    let ca = Ca::new("wsx h2 test CA");
    let server =
        Server::builder().allow_origins(["https://good.example"]).tls(pki::acceptor(&ca, &["localhost"])).build();
    let (listener, addr) = listen().await;
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(listener, |req: Request| async move {
            let mut ws = req.upgrade(wsx::handshake::Accept::new()).await?;
            echo(&mut ws).await.map(drop)
        })
        .await
    });
    let mut c = client(&ca, addr.port(), browser()).await;
    let (resp, _) = open(&mut c, "/", |_| {}).await;
    assert_eq!(resp.status(), 403);
    let (resp, ws) = open(&mut c, "/", |r| {
        r.headers_mut().insert("origin", http::HeaderValue::from_static("https://good.example"));
    })
    .await;
    assert_eq!(resp.status(), 200);
    assert!(ws.is_some());
}

/// A page and an event stream on the same connection as the WebSockets
/// (where a browser's page comes from): whole responses end their stream,
/// a streamed one runs until the client resets it.
#[tokio::test]
async fn pages_and_event_streams_share_the_connection() {
    let ca = Ca::new("wsx h2 test CA");
    let (_server, port, mut ended) = server(&ca, Config::default()).await;
    let mut c = client(&ca, port, browser()).await;
    let mut ws = open(&mut c, "/", |_| {}).await.1.unwrap();

    let get = |path: &str| http::Request::get(format!("https://localhost{path}")).body(()).unwrap();
    let (resp, _) = c.send.clone().ready().await.unwrap().send_request(get("/page"), true).unwrap();
    let resp = within(resp).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("connection").is_none());
    let mut body = resp.into_body();
    let mut page = Vec::new();
    while let Some(chunk) = within(body.data()).await {
        page.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(page, b"<p>served over HTTP/2</p>");

    let (resp, _) = c.send.clone().ready().await.unwrap().send_request(get("/events"), true).unwrap();
    let resp = within(resp).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut events = Vec::new();
    while events.len() < b"data: one\n\ndata: two\n\n".len() {
        events.extend_from_slice(&within(body.data()).await.unwrap().unwrap());
    }
    assert_eq!(events, b"data: one\n\ndata: two\n\n");
    // Going away: the stream's reset ends the handler's read with 0 bytes.
    drop(body);
    assert_eq!(within(ended.recv()).await.unwrap(), Some(CloseCode::from(4000)));

    within(ws.send(Message::text("and the socket"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("and the socket"));
}

/// `Request::body` on a stream: its DATA, within the limit (413 past it).
#[tokio::test]
async fn request_bodies_are_read_from_the_stream() {
    let ca = Ca::new("wsx h2 test CA");
    let (_server, port, _ended) = server(&ca, Config::default()).await;
    let c = client(&ca, port, browser()).await;
    for (body, status) in [(&b"hello"[..], 200), (&b"0123456789abcdefX"[..], 413)] {
        let req = http::Request::post("https://localhost/body").body(()).unwrap();
        let (resp, mut send) = c.send.clone().ready().await.unwrap().send_request(req, false).unwrap();
        send.send_data(Bytes::copy_from_slice(&body[..3]), false).unwrap();
        send.send_data(Bytes::copy_from_slice(&body[3..]), true).unwrap();
        let resp = within(resp).await.unwrap();
        assert_eq!(resp.status(), status);
        let mut got = Vec::new();
        let mut data = resp.into_body();
        while let Some(chunk) = within(data.data()).await {
            got.extend_from_slice(&chunk.unwrap());
        }
        if status == 200 {
            assert_eq!(got, body);
        }
    }
}

/// `Request::client_gone` on a stream: the client's reset.
#[tokio::test]
async fn a_waiting_handler_learns_of_the_reset_of_its_stream() {
    let ca = Ca::new("wsx h2 test CA");
    let (_server, port, mut ended) = server(&ca, Config::default()).await;
    let c = client(&ca, port, browser()).await;
    let req = http::Request::get("https://localhost/poll").body(()).unwrap();
    let (resp, send) = c.send.clone().ready().await.unwrap().send_request(req, true).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ended.try_recv().is_err(), "the stream is still open");
    drop((resp, send));
    assert_eq!(within(ended.recv()).await.unwrap(), Some(CloseCode::from(4100)));
}

/// Shutdown: 1001 on every WebSocket of the connection, then, once they
/// have closed, GOAWAY and the end of the connection.
#[tokio::test]
async fn shutdown_closes_every_stream_with_1001_then_goes_away() {
    let ca = Ca::new("wsx h2 test CA");
    let (server, port, _ended) = server(&ca, Config::default()).await;
    let mut c = client(&ca, port, browser()).await;
    let mut a = open(&mut c, "/", |_| {}).await.1.unwrap();
    let mut b = open(&mut c, "/", |_| {}).await.1.unwrap();
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    for ws in [&mut a, &mut b] {
        assert_eq!(closed_with(ws).await, Some(CloseCode::GoingAway));
    }
    within(shutdown).await.unwrap();
    // GOAWAY then the end of the connection: its task finishes.
    let Client { send, conn } = c;
    drop(send);
    let ended = within(conn).await.unwrap();
    assert!(
        ended.as_ref().map_or_else(|e| e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR), |_| true),
        "{ended:?}"
    );
    assert_eq!(server.connections(), 0);
}

/// One port, both versions: wsx's own client picks HTTP/2 by itself and
/// HTTP/1.1 when told to, and the server counts each version apart.
#[tokio::test]
async fn one_port_serves_both_versions_to_wsx_clients() {
    let ca = Ca::new("wsx h2 test CA");
    let (server, port, _ended) = server(&ca, Config::default()).await;
    let url = format!("wss://localhost:{port}/");
    for (mode, version) in
        [(wsx::http2::Mode::Off, http::Version::HTTP_11), (wsx::http2::Mode::Auto, http::Version::HTTP_2)]
    {
        let config = Config::default().with_tls_config(ca.client_config()).with_http2(mode);
        let (mut ws, resp) = within(wsx::connect_with(url.as_str(), &config)).await.unwrap();
        assert_eq!(ws.get_ref().http_version(), version);
        assert_eq!(resp.status(), if version == http::Version::HTTP_2 { 200 } else { 101 });
        within(ws.send(Message::text("both"))).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("both"));
    }
    assert_eq!(server.websockets_opened(http::Version::HTTP_11), 1);
    assert_eq!(server.websockets_opened(http::Version::HTTP_2), 1);
}

/// After the closing handshake the server ends the stream at once, even
/// when the client never ends its side (Chromium does not): the
/// WebSocket's slot is freed well before the close timeout, as a TCP
/// connection's would be once the client closes.
#[tokio::test]
async fn a_closed_websocket_frees_its_stream_without_waiting_for_the_client() {
    let ca = Ca::new("wsx h2 test CA");
    let config = Config::default().with_close_timeout(Duration::from_secs(5));
    let (server, port, mut ended) = server(&ca, config).await;
    let mut c = client(&ca, port, browser()).await;
    let mut ws = open(&mut c, "/", |_| {}).await.1.unwrap();
    assert_eq!(server.connections(), 2);
    // The close frame goes out; the client then neither reads nor ends
    // its side of the stream.
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert_eq!(within(ended.recv()).await.unwrap(), Some(CloseCode::Normal));
    let t = std::time::Instant::now();
    while server.connections() > 1 {
        assert!(t.elapsed() < Duration::from_secs(2), "the stream is held after its closing handshake");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(ws);
}

/// A masked client frame (RFC 6455 §5.2, §5.3) with the key 1, 2, 3, 4.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// The RFC 6455 rules hold on an HTTP/2 stream as on TCP: the stream is a
/// byte stream under the same protocol core, so hand-made frames that
/// break a rule get the same close code (the server's close frame is read
/// raw from the stream).
#[tokio::test]
async fn rfc6455_rules_hold_over_an_http2_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new("wsx h2 test CA");
    let (_server, port, _ended) = server(&ca, Config::default().with_max_message_size(1024)).await;
    let c = client(&ca, port, browser()).await;
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("an unmasked client frame (§5.1)", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("invalid UTF-8 in a text message (§8.1)", masked(0x81, &[0xff, 0xfe]), 1007),
        ("RSV1 without an extension (§5.2)", masked(0xC1, b"hi"), 1002),
        ("a control frame over 125 bytes (§5.5)", masked(0x89, &[0u8; 126]), 1002),
        ("a reserved opcode (§5.2)", masked(0x83, b"x"), 1002),
        ("a message over the limit (§7.4.1, 1009)", masked(0x82, &[0u8; 2048]), 1009),
    ];
    for (rule, bytes, code) in cases {
        let url = "wss://localhost/".to_string();
        let req = http::Request::get(url).body(()).unwrap();
        let (mut req, _) = wsx::proto::handshake::ClientHandshake::extended_connect(req).unwrap();
        req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
        let (resp, send) = c.send.clone().ready().await.unwrap().send_request(req, false).unwrap();
        let resp = within(resp).await.unwrap();
        assert_eq!(resp.status(), 200, "{rule}");
        let mut stream = H2Stream::new(send, resp.into_body());
        stream.write_all(&bytes).await.unwrap();
        let mut head = [0u8; 4];
        within(stream.read_exact(&mut head)).await.unwrap();
        assert_eq!(head[0], 0x88, "{rule}: a close frame, unmasked, from the server");
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), code, "{rule}");
    }
}
