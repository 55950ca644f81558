//! Socket.IO and the hub mounted in an axum `Router` (`SocketIo::service`,
//! `Hub::service`) on 127.0.0.1: the Engine.IO polling handshake and a
//! polling round trip, a Socket.IO client over the WebSocket transport
//! with an event and its answer, the hub's metrics through the router's
//! fallback, axum's own route beside them, and the hub's shutdown.

mod common;
#[path = "common/sio.rs"]
mod sio;

use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use sio::Sio;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx_hub::socketio::{Namespace, SocketIo};

const WAIT: Duration = Duration::from_secs(5);

/// Socket.IO with a `ping` event answered `pong`, in an axum router.
async fn start() -> (SocketIo, SocketAddr) {
    let io = SocketIo::builder()
        .namespace(
            "/",
            Namespace::new().on("ping", |socket, msg| async move {
                socket.emit("pong", msg.into_payload())?;
                Ok(())
            }),
        )
        .build();
    let app = Router::new()
        .route("/", get(|| async { "axum's own page" }))
        .route_service("/socket.io/", io.service())
        .fallback_service(io.hub().service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (io, addr)
}

/// One HTTP/1.1 request on a connection of its own (`Connection:
/// close`): the status and the body (the responses here have a length).
async fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("response timed out").unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, body.to_owned())
}

#[tokio::test]
async fn the_engine_io_polling_handshake_and_a_round_trip_go_through_axum() {
    let (io, addr) = start().await;
    let (status, body) = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200, "{body}");
    let open = body.strip_prefix("0{\"sid\":").map(|_| &body[1..]).unwrap_or_else(|| panic!("open packet: {body}"));
    let open: Value = serde_json::from_str(open).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    assert_eq!(io.sessions(), 1);

    // The Socket.IO CONNECT by POST (a request body), its answer by GET.
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(addr, "POST", &target, "40").await, (200, "ok".to_owned()));
    let (status, body) = http(addr, "GET", &target, "").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("40{\"sid\":"), "{body}");
    assert_eq!(http(addr, "POST", &target, "42[\"ping\",1]").await, (200, "ok".to_owned()));
    assert_eq!(http(addr, "GET", &target, "").await, (200, "42[\"pong\",1]".to_owned()));

    // axum's own route, and the hub's endpoints through the fallback.
    assert_eq!(http(addr, "GET", "/", "").await, (200, "axum's own page".to_owned()));
    let (status, metrics) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("wsx_hub_"), "{metrics}");
    assert_eq!(http(addr, "GET", "/nothing-here", "").await.0, 404);
}

#[tokio::test]
async fn a_socket_io_client_talks_through_axum_and_the_shutdown_closes_it() {
    let (io, addr) = start().await;
    let mut client = Sio::open(addr).await;
    assert!(client.open["sid"].is_string());
    let id = client.connect("/", None).await;
    assert!(!id.is_empty());
    client.send("42[\"ping\",{\"n\":1}]").await;
    assert_eq!(client.event().await, json!(["pong", {"n": 1}]));
    assert_eq!(io.hub().server().websockets_opened(http::Version::HTTP_11), 1);

    let stopping = tokio::spawn({
        let io = io.clone();
        async move { io.shutdown().await }
    });
    assert!(client.closes().await, "the server closes the session");
    drop(client);
    tokio::time::timeout(WAIT, stopping).await.expect("shutdown timed out").unwrap();
    assert_eq!(io.hub().server().connections(), 0);
}

/// Read from `tcp` until `text` holds `end`.
async fn read_until(tcp: &mut TcpStream, text: &mut String, end: &str) {
    let mut buf = [0u8; 4096];
    while !text.contains(end) {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.expect("read timed out").unwrap();
        assert!(n > 0, "EOF before {end:?}: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// The hub's SSE through the router's fallback: the stream, an event,
/// and the end of the stream when the client goes away (hyper drops the
/// response) or the hub shuts down.
#[tokio::test]
async fn the_hubs_server_sent_events_stream_through_axum() {
    let (io, addr) = start().await;
    let hub = io.hub().clone();
    let open = |room: &'static str| async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /events?room={room} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        read_until(&mut tcp, &mut text, "retry: 2000\n").await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-type: text/event-stream\r\n"), "{text}");
        (tcp, text)
    };
    let (mut tcp, mut text) = open("news").await;
    hub.broadcast("news", wsx_hub::Event::new("headline", json!({"n": 1})));
    read_until(&mut tcp, &mut text, "data: {\"n\":1}\n\n").await;
    assert!(text.contains("event: headline\n"), "{text}");
    assert!(hub.metrics_text().contains("wsx_hub_sse_streams 1"));

    // The client goes away: the stream ends, its slot is given back.
    drop(tcp);
    tokio::time::timeout(WAIT, async {
        while !hub.metrics_text().contains("wsx_hub_sse_streams 0") || hub.server().connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the stream did not end when its client went away");

    // Shutdown ends a stream (the last chunk).
    let (mut tcp, mut text) = open("news").await;
    let stopping = tokio::spawn({
        let io = io.clone();
        async move { io.shutdown().await }
    });
    read_until(&mut tcp, &mut text, "\r\n0\r\n\r\n").await;
    tokio::time::timeout(WAIT, stopping).await.expect("shutdown timed out").unwrap();
}
