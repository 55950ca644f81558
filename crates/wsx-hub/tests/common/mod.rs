//! Helpers shared by the tests: a hub on a loopback port, raw protocol
//! clients, plain HTTP requests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsx::{MaybeTlsStream, Message, WebSocket};
use wsx_hub::protocol::{self, Packet, PresencePacket, Wire};
use wsx_hub::{Hub, HubBuilder};

pub const WAIT: Duration = Duration::from_secs(5);

pub type Ws = WebSocket<MaybeTlsStream>;

/// Build the hub and serve it on 127.0.0.1, port 0.
pub async fn start(b: HubBuilder) -> (Hub, SocketAddr) {
    let hub = b.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hub.clone().serve(listener));
    (hub, addr)
}

/// A raw client offering the subprotocol, with extra headers.
pub async fn try_raw(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> wsx::Result<Ws> {
    let mut r =
        http::Request::get(format!("ws://{addr}{path}")).header("sec-websocket-protocol", protocol::SUBPROTOCOL);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    Ok(wsx::connect(r.body(()).unwrap()).await?.0)
}

/// A raw client, past its welcome; returns the connection id.
pub async fn raw(addr: SocketAddr) -> (Ws, String) {
    let mut ws = try_raw(addr, "/", &[]).await.unwrap();
    match next(&mut ws).await {
        Packet::Welcome(w) => (ws, w.conn),
        other => panic!("expected a welcome, got {other:?}"),
    }
}

/// The next packet but presence (presence packets come at their own pace:
/// read them with [`next_presence`] and [`presence_of`]).
pub async fn next(ws: &mut Ws) -> Packet {
    loop {
        match next_any(ws).await {
            Packet::Presence(_) => {}
            p => return p,
        }
    }
}

/// The next packet (pings skipped).
pub async fn next_any(ws: &mut Ws) -> Packet {
    loop {
        let m = tokio::time::timeout(WAIT, ws.recv()).await.expect("timed out").expect("closed").expect("error");
        if let Some(p) = protocol::decode_message(&m) {
            return p.expect("valid packet");
        }
    }
}

/// The next presence packet (other packets are skipped).
pub async fn next_presence(ws: &mut Ws) -> PresencePacket {
    loop {
        if let Packet::Presence(p) = next_any(ws).await {
            return p;
        }
    }
}

/// The next presence packet within `d`, if one comes.
pub async fn quiet_presence(ws: &mut Ws, d: Duration) -> Option<PresencePacket> {
    tokio::time::timeout(d, next_presence(ws)).await.ok()
}

/// Presence packets until one says that `conn` joined (`joined`) or left:
/// that one.
pub async fn presence_of(ws: &mut Ws, conn: &str, joined: bool) -> PresencePacket {
    loop {
        let p = next_presence(ws).await;
        let d = p.diff.as_ref().expect("names");
        if (if joined { &d.joins } else { &d.leaves }).iter().any(|m| m.conn == conn) {
            return p;
        }
    }
}

/// Join `room` with request id `id`: the ack's data (panics on a refusal).
pub async fn join(ws: &mut Ws, room: &str, id: u64) -> serde_json::Value {
    send(ws, &Packet::Join(protocol::RoomRequest { room: room.into(), id: Some(id) })).await;
    ack(ws, id).await.expect("joined")
}

/// The answer to request `id` (events before it are skipped; any other
/// packet fails the test).
pub async fn ack(ws: &mut Ws, id: u64) -> Result<serde_json::Value, protocol::ErrorBody> {
    loop {
        match next(ws).await {
            Packet::Ack(protocol::AckPacket { id: i, result }) if i == id => return result,
            Packet::Event(_) => {}
            other => panic!("expected the ack of {id}, got {other:?}"),
        }
    }
}

/// Whether a packet arrives within `d`.
pub async fn quiet(ws: &mut Ws, d: Duration) -> Option<Packet> {
    tokio::time::timeout(d, next(ws)).await.ok()
}

pub async fn send(ws: &mut Ws, p: &Packet) {
    let m = match protocol::encode(p) {
        Wire::Text(s) => Message::text(s),
        Wire::Binary(b) => Message::Binary(b),
    };
    ws.send(m).await.unwrap();
}

pub async fn send_text(ws: &mut Ws, s: &str) {
    ws.send(Message::text(s)).await.unwrap();
}

/// Read until the close frame; its code and reason.
pub async fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.recv()).await.expect("timed out waiting for close") {
            Some(Ok(Message::Close(f))) => {
                return f.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_owned()))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("error before close: {e}"),
            None => panic!("ended without a close frame"),
        }
    }
}

/// A plain HTTP/1.1 request; the whole response (the server closes).
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("timed out").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The status of an upgrade request that the hub refuses.
pub async fn refused_status(addr: SocketAddr, headers: &[(&str, &str)], protocol: bool) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if protocol {
        req.push_str("Sec-WebSocket-Protocol: wsx-hub.v1\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.expect("timed out").unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Poll `f` until it holds (at most 5 s).
pub async fn eventually(mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < WAIT, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET /events?room=ROOM` on a new connection (with `Last-Event-ID`
/// when `last` is given).
pub async fn sse_open(addr: SocketAddr, room: &str, last: Option<u64>) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET /events?room={room} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n");
    if let Some(id) = last {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp
}

/// Read until `text` contains `needle`.
pub async fn read_until(tcp: &mut TcpStream, text: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    while !text.contains(needle) {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}: {text}"))
            .unwrap();
        assert!(n > 0, "stream ended before {needle:?}: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[path = "redis.rs"]
mod redis_server;
#[allow(unused_imports)]
pub use redis_server::{redis_installed, RedisServer};
