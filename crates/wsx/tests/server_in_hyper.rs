//! The server's handlers inside hyper and axum (`Server::service`): one
//! handler written for `wsx::server::Request` serves WebSockets (over
//! HTTP/1.1, and over HTTP/2 with an extended CONNECT), whole and
//! streamed responses and request bodies, behind hyper-util's auto
//! builder and an axum `Router`, with the server's origin policy,
//! connection limit, counters and graceful shutdown.

mod common;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::*;
use http::{StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use wsx::handshake::Accept;
use wsx::http2::H2Stream;
use wsx::proto::handshake::ClientHandshake;
use wsx::server::{Request, Server, ServerService};
use wsx::upgrade::UpgradedIo;
use wsx::{CloseCode, Config, Message, Role, WebSocket};

/// Serve `service` with hyper-util's auto builder (HTTP/1.1, and HTTP/2
/// with prior knowledge and the extended CONNECT) on an ephemeral port.
async fn serve_hyper(service: ServerService) -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let service = service.clone().with_peer(peer);
            tokio::spawn(async move {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().enable_connect_protocol();
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await;
            });
        }
    });
    addr
}

/// The application: `/ws` echoes a WebSocket, `/page` is a page,
/// `/post` echoes a body of at most 16 bytes, `/stream` streams two
/// chunks (the second once `go` is notified), `/silent` never answers.
async fn app(mut req: Request<UpgradedIo>, go: Arc<Notify>) -> wsx::Result<()> {
    match req.path() {
        "/ws" => {
            let mut ws = req.upgrade(Accept::new()).await?;
            echo(&mut ws).await.map(|_| ())
        }
        "/page" => req.respond(http::Response::new(Bytes::from_static(b"hello"))).await,
        "/post" => {
            let response = match req.body(16).await {
                Ok(body) => http::Response::new(body),
                Err(e) => http::Response::builder().status(e.status()).body(Bytes::new()).unwrap(),
            };
            req.respond(response).await
        }
        "/stream" => {
            let head = http::Response::builder().header("content-type", "text/event-stream").body(()).unwrap();
            let mut body = req.respond_stream(head).await?;
            body.write_all(b"data: first\n\n").await?;
            go.notified().await;
            body.write_all(b"data: second\n\n").await?;
            body.shutdown().await?;
            Ok(())
        }
        "/silent" => Ok(()),
        "/peer" => {
            let peer = req.head().peer().map(|p| p.to_string()).unwrap_or_default();
            req.respond(http::Response::new(peer.into())).await
        }
        _ => req.respond(wsx::handshake::Reject::new(404, "not found\n").into_response()).await,
    }
}

/// `server`'s service running [`app`], and the notify that releases the
/// second chunk of `/stream`.
fn app_service(server: &Server) -> (ServerService, Arc<Notify>) {
    let go = Arc::new(Notify::new());
    let g = go.clone();
    (server.service(move |req| app(req, g.clone())), go)
}

/// Wait until the server holds no connection slot.
async fn all_released(server: &Server) {
    within(async {
        while server.connections() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// One HTTP/1.1 request on a connection of its own: the head and the whole
/// body (decoded when chunked), the server closing after it.
async fn http1(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut raw = Raw::connect(addr).await;
    raw.write(request.as_bytes()).await;
    let head = raw.read_head().await;
    let body = raw.read_to_eof().await;
    let body = if header(&head, "transfer-encoding").as_deref() == Some("chunked") { dechunk(&body) } else { body };
    (head, body)
}

/// A chunked body's data.
fn dechunk(mut wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = wire.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&wire[..line_end]).unwrap().trim(), 16).unwrap();
        wire = &wire[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&wire[..size]);
        wire = &wire[size + 2..];
    }
}

#[tokio::test]
async fn a_websocket_is_served_through_hyper_over_http1() {
    let server = Server::builder().build();
    let (service, _) = app_service(&server);
    let addr = serve_hyper(service).await;
    let (mut ws, response) = within(wsx::connect(ws_url(addr, "/ws"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for msg in [Message::text("hello through hyper"), Message::binary(vec![0u8; 100_000])] {
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
    }
    assert_eq!(server.websockets_opened(Version::HTTP_11), 1);
    assert_eq!(server.connections(), 1, "the WebSocket holds a slot");
    within(ws.close(1000, "bye")).await.unwrap();
    while let Some(Ok(_)) = within(ws.recv()).await {}
    all_released(&server).await;
}

#[tokio::test]
async fn whole_responses_heads_bodies_and_silence() {
    let server = Server::builder().build();
    let (service, _) = app_service(&server);
    let addr = serve_hyper(service).await;

    let (head, body) = http1(addr, "GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(body, b"hello");

    // Keep-alive: two requests on one connection.
    let mut raw = Raw::connect(addr).await;
    raw.write(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\nGET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&raw.read_head().await), 200);
    let rest = String::from_utf8(raw.read_to_eof().await).unwrap();
    assert!(rest.starts_with("helloHTTP/1.1 200 OK\r\n") && rest.ends_with("hello"), "{rest}");

    // HEAD: the head alone, with the length a GET would get.
    let (head, body) = http1(addr, "HEAD /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(header(&head, "content-length").as_deref(), Some("5"), "{head}");
    assert!(body.is_empty());

    // The peer, as the accept loop told the service.
    let mut raw = Raw::connect(addr).await;
    let me = raw.stream.local_addr().unwrap().to_string();
    raw.write(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&raw.read_head().await), 200);
    assert_eq!(String::from_utf8(raw.read_to_eof().await).unwrap(), me);

    // A handler that ends without answering: 500.
    let (head, _) = http1(addr, "GET /silent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&head), 500);
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_request_body_is_read_within_the_limit() {
    let server = Server::builder().build();
    let (service, _) = app_service(&server);
    let addr = serve_hyper(service).await;

    let (head, body) =
        http1(addr, "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world")
            .await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(body, b"hello world");

    let chunked = "POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                   6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
    let (head, body) = http1(addr, chunked).await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(body, b"hello world");

    // A client that waits for `100 Continue` before its body gets it.
    let mut raw = Raw::connect(addr).await;
    raw.write(
        b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&raw.read_head().await), 100);
    raw.write(b"hello").await;
    assert_eq!(status(&raw.read_head().await), 200);
    assert_eq!(raw.read_to_eof().await, b"hello");

    // Past the limit: 413, by its length, and by what arrives.
    let big =
        format!("POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{}", "x".repeat(17));
    assert_eq!(status(&http1(addr, &big).await.0), 413);
    let chunked = "POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                   a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n";
    assert_eq!(status(&http1(addr, chunked).await.0), 413);
}

#[tokio::test]
async fn a_streamed_response_arrives_chunk_by_chunk() {
    let server = Server::builder().build();
    let (service, go) = app_service(&server);
    let addr = serve_hyper(service).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    // The first chunk arrives while the handler waits to write the second.
    while !String::from_utf8_lossy(&seen).contains("data: first\n\n") {
        let n = within(tcp.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "EOF before the first chunk: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&seen).into_owned();
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(header(&head, "content-type").as_deref(), Some("text/event-stream"));
    assert!(!head.contains("second"));
    go.notify_one();
    // Then the second, and the end of the body (the last chunk).
    while !String::from_utf8_lossy(&seen).ends_with("0\r\n\r\n") {
        let n = within(tcp.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "EOF before the end of the body");
        seen.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(seen).unwrap();
    let body = dechunk(text.split_once("\r\n\r\n").unwrap().1.as_bytes());
    assert_eq!(body, b"data: first\n\ndata: second\n\n");
    all_released(&server).await;
}

#[tokio::test]
async fn the_origin_policy_refuses_with_403() {
    let server = Server::builder().allow_origins(["https://good.example"]).build();
    let (service, _) = app_service(&server);
    let addr = serve_hyper(service).await;
    let (head, _) = http1(addr, &upgrade_request("/ws", "Origin: https://evil.example\r\nConnection: close\r\n")).await;
    assert_eq!(status(&head), 403, "{head}");
    let mut raw = Raw::connect(addr).await;
    raw.write(upgrade_request("/ws", "Origin: https://good.example\r\n").as_bytes()).await;
    let head = raw.read_head().await;
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "sec-websocket-accept").as_deref(), Some(ACCEPT));
}

#[tokio::test]
async fn past_the_connection_limit_requests_get_503() {
    let server = Server::builder().max_connections(1).build();
    let (service, _) = app_service(&server);
    let addr = serve_hyper(service).await;
    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/ws"))).await.unwrap();
    let (head, _) = http1(addr, "GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&head), 503, "{head}");
    assert_eq!(header(&head, "retry-after").as_deref(), Some("1"));
    assert_eq!(server.refused_connections(), 1);
    within(ws.send(Message::text("still served"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("still served"));
}

#[tokio::test]
async fn shutdown_closes_a_hyper_websocket_with_1001() {
    let server = Server::builder().shutdown_timeout(std::time::Duration::from_secs(2)).build();
    let (service, _) = app_service(&server);
    let addr = serve_hyper(service).await;
    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/ws"))).await.unwrap();
    within(ws.send(Message::text("before"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("before"));
    let stopping = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GoingAway),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    assert!(within(ws.recv()).await.is_none());
    // Within the WebSocket's closing handshake, not the shutdown timeout.
    tokio::time::timeout(std::time::Duration::from_secs(1), stopping).await.expect("shutdown waited").unwrap();
    assert_eq!(server.connections(), 0);
    // During shutdown, upgrades get 503.
    let (head, _) = http1(addr, &upgrade_request("/ws", "Connection: close\r\n")).await;
    assert_eq!(status(&head), 503, "{head}");
}

/// An HTTP/2 connection with prior knowledge (h2c), once the server's
/// SETTINGS (with SETTINGS_ENABLE_CONNECT_PROTOCOL) arrived.
async fn h2c(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = within(h2::client::handshake(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut send = within(send.ready()).await.unwrap();
    within(async {
        while !send.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            send = send.clone().ready().await.unwrap();
        }
    })
    .await;
    send
}

/// A request over HTTP/2 with `body` (none: the request ends with its
/// head): the status, and the response's body to read as it comes.
async fn h2_request(
    send: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: &[u8],
) -> (StatusCode, h2::RecvStream) {
    let mut send = within(send.clone().ready()).await.unwrap();
    let (response, mut stream) = send.send_request(req, body.is_empty()).unwrap();
    if !body.is_empty() {
        stream.send_data(Bytes::copy_from_slice(body), true).unwrap();
    }
    let response = within(response).await.unwrap();
    (response.status(), response.into_body())
}

/// What a response body brings until it ends.
async fn h2_body(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = within(body.data()).await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

#[tokio::test]
async fn requests_over_http2_through_hyper() {
    let server = Server::builder().allow_origins(["https://good.example"]).build();
    let (service, go) = app_service(&server);
    let addr = serve_hyper(service).await;
    let send = h2c(addr).await;

    let post = |path: &str| http::Request::post(format!("http://localhost{path}")).body(()).unwrap();
    let (status, mut body) = h2_request(&send, post("/post"), b"hello world").await;
    assert_eq!((status, h2_body(&mut body).await), (StatusCode::OK, b"hello world".to_vec()));
    let (status, _) = h2_request(&send, post("/post"), &[b'x'; 17]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // HEAD: the head alone, with the length a GET would get.
    let head = http::Request::head("http://localhost/page").body(()).unwrap();
    let mut send_head = within(send.clone().ready()).await.unwrap();
    let (response, _) = send_head.send_request(head, true).unwrap();
    let response = within(response).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "5");
    assert!(h2_body(&mut response.into_body()).await.is_empty());

    // A streamed response: the first chunk before the second is written.
    let (status, mut body) =
        h2_request(&send, http::Request::get("http://localhost/stream").body(()).unwrap(), b"").await;
    assert_eq!(status, StatusCode::OK);
    let first = within(body.data()).await.unwrap().unwrap();
    assert_eq!(first, "data: first\n\n");
    go.notify_one();
    assert_eq!(h2_body(&mut body).await, b"data: second\n\n");

    // The origin policy on an extended CONNECT.
    let req = http::Request::get("http://localhost/ws").header("origin", "https://evil.example").body(()).unwrap();
    let (mut req, _) = ClientHandshake::extended_connect(req).unwrap();
    req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
    let (status, _) = h2_request(&send, req, b"").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    all_released(&server).await;
}

#[tokio::test]
async fn a_websocket_is_served_through_hyper_over_http2() {
    let server = Server::builder().build();
    let (service, _) = app_service(&server);
    let addr = serve_hyper(service).await;
    let mut send = h2c(addr).await;
    let req = http::Request::get("http://localhost/ws").body(()).unwrap();
    let (mut req, handshake) = ClientHandshake::extended_connect(req).unwrap();
    req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
    let (response, stream) = send.send_request(req, false).unwrap();
    let (parts, body) = within(response).await.unwrap().into_parts();
    let head = http::Response::from_parts(parts, ());
    assert_eq!(head.status(), StatusCode::OK, "RFC 8441 §5: 200");
    assert!(head.headers().get("sec-websocket-accept").is_none());
    handshake.check_response(&head).unwrap();
    let mut ws: WebSocket<H2Stream> =
        WebSocket::from_negotiated(H2Stream::new(stream, body), Role::Client, &Config::default(), &[], None);
    for msg in [Message::text("hello over h2"), Message::binary(vec![7u8; 100_000])] {
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
    }
    assert_eq!(server.websockets_opened(Version::HTTP_2), 1);

    // A page on the same connection.
    let (response, _) = send.send_request(http::Request::get("http://localhost/page").body(()).unwrap(), true).unwrap();
    let response = within(response).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h2_body(&mut response.into_body()).await, b"hello");

    let stopping = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GoingAway),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    assert!(within(ws.recv()).await.is_none());
    // Within the WebSocket's closing handshake, not the shutdown timeout.
    tokio::time::timeout(std::time::Duration::from_secs(1), stopping).await.expect("shutdown waited").unwrap();
}

#[tokio::test]
async fn an_axum_router_mounts_the_service() {
    let server = Server::builder().build();
    let (service, _) = app_service(&server);
    let app = Router::new().route("/", get(|| async { "axum's own route" })).route_service("/ws", service);
    let (listener, addr) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/ws"))).await.unwrap();
    within(ws.send(Message::text("hello through axum"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("hello through axum"));
    assert_eq!(server.websockets_opened(Version::HTTP_11), 1);

    let (head, body) = http1(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&head), 200);
    assert_eq!(body, b"axum's own route");

    let stopping = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GoingAway),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    assert!(within(ws.recv()).await.is_none());
    // Within the WebSocket's closing handshake, not the shutdown timeout.
    tokio::time::timeout(std::time::Duration::from_secs(1), stopping).await.expect("shutdown waited").unwrap();
}
