//! Policies: origin allowlist, auth, connection limit, subprotocol, connect
//! hook, rate limit, slow consumers, keepalive and idle timeout, graceful
//! shutdown.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::DuplexStream;
use wsx::{Message, WebSocket};
use wsx_hub::protocol::{self, Packet, RoomRequest};
use wsx_hub::{AuthError, Event, Hub, RateLimit, Reject, SlowConsumer};

#[tokio::test]
async fn origin_auth_limit_subprotocol_and_hook() {
    let b = Hub::builder()
        .allow_origins(["https://good.example/"])
        .max_connections(2)
        .auth(|req| match req.token().as_deref() {
            Some("letmein") => Ok(json!({"user": "ann"})),
            Some("banned") => Err(AuthError::Forbidden("banned".into())),
            _ => Err(AuthError::Unauthorized("a token is needed".into())),
        })
        .on_connect(|info| async move {
            match info.request.query_param("room").as_deref() {
                Some("closed") => Err(Reject::new(429, "come back later")),
                _ => Ok(()),
            }
        });
    let (hub, addr) = start(b).await;
    let auth = ("Authorization", "Bearer letmein");
    assert_eq!(refused_status(addr, &[("Origin", "https://evil.example"), auth], true).await, 403);
    assert_eq!(refused_status(addr, &[("Origin", "https://GOOD.example")], true).await, 401);
    assert_eq!(refused_status(addr, &[("Authorization", "Bearer wrong")], true).await, 401);
    assert_eq!(refused_status(addr, &[("Authorization", "Bearer banned")], true).await, 403);
    assert_eq!(refused_status(addr, &[auth], false).await, 400);
    // Token in the query string or a cookie; origin allowed.
    let (mut a, welcome) = {
        let mut ws = try_raw(addr, "/?token=letmein", &[("Origin", "https://good.example")]).await.unwrap();
        let w = next(&mut ws).await;
        (ws, w)
    };
    assert!(matches!(welcome, Packet::Welcome(w) if w.meta == json!({"user": "ann"})));
    let mut b = try_raw(addr, "/", &[("Cookie", "x=1; token=letmein")]).await.unwrap();
    let _ = next(&mut b).await;
    assert_eq!(hub.connections().len(), 2);
    // Full: 503 (before auth is even asked).
    assert_eq!(refused_status(addr, &[auth], true).await, 503);
    b.close(wsx::CloseCode::Normal, "").await.unwrap();
    while b.recv().await.is_some() {}
    eventually(|| hub.connections().len() == 1).await;
    // The connect hook.
    assert!(matches!(try_raw(addr, "/?room=closed&token=letmein", &[]).await, Err(wsx::Error::Refused(_))));
    let mut c = try_raw(addr, "/?room=open&token=letmein", &[]).await.unwrap();
    assert!(matches!(next(&mut c).await, Packet::Welcome(_)));
    let text = hub.metrics_text();
    for line in [
        "wsx_hub_rejected_total{reason=\"origin\"} 1",
        "wsx_hub_rejected_total{reason=\"auth\"} 3",
        "wsx_hub_rejected_total{reason=\"limit\"} 1",
        "wsx_hub_rejected_total{reason=\"protocol\"} 1",
        "wsx_hub_rejected_total{reason=\"hook\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    a.close(wsx::CloseCode::Normal, "").await.unwrap();
}

#[tokio::test]
async fn require_origin_and_path() {
    let (_hub, addr) = start(Hub::builder().require_origin(true).path("/hub")).await;
    assert_eq!(refused_status(addr, &[], true).await, 404); // upgrade to /: not the hub's path
    assert!(try_raw(addr, "/hub", &[]).await.is_err()); // no Origin: 403
    assert!(try_raw(addr, "/hub", &[("Origin", "https://any.example")]).await.is_ok());
}

#[tokio::test]
async fn rate_limit_closes_with_1008() {
    let (hub, addr) = start(Hub::builder().rate_limit(RateLimit::per_second(5.0).burst(5))).await;
    let (mut a, _) = raw(addr).await;
    for i in 0..20 {
        send(&mut a, &Packet::Leave(RoomRequest { room: format!("r{i}"), id: None })).await;
    }
    assert_eq!(close_of(&mut a).await, (1008, "rate limit exceeded".into()));
    assert_eq!(hub.metrics().rate_limited, 1);
}

/// A client over an in-memory pipe of 1 KiB: when it does not read, the
/// server's writes stall at once.
async fn piped(hub: &Hub) -> WebSocket<DuplexStream> {
    let (client, server) = tokio::io::duplex(1024);
    let h = hub.clone();
    tokio::spawn(async move { h.serve_stream(server).await });
    let req = http::Request::get("ws://hub/").header("sec-websocket-protocol", protocol::SUBPROTOCOL).body(()).unwrap();
    // No compression: the padding must take its size on the wire.
    wsx::client_handshake(client, req, &wsx::Config::default().with_compression(false)).await.unwrap().0
}

async fn next_piped(ws: &mut WebSocket<DuplexStream>) -> Option<Result<Packet, (u16, String)>> {
    loop {
        match tokio::time::timeout(WAIT, ws.recv()).await.expect("timed out")? {
            Ok(Message::Close(f)) => {
                let f = f.unwrap();
                return Some(Err((u16::from(f.code), f.reason.as_str().to_owned())));
            }
            Ok(m) => {
                if let Some(p) = protocol::decode_message(&m) {
                    return Some(Ok(p.unwrap()));
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
}

async fn join_piped(ws: &mut WebSocket<DuplexStream>, room: &str) {
    let p = protocol::encode(&Packet::Join(RoomRequest { room: room.into(), id: Some(1) }));
    ws.send(p.to_message()).await.unwrap();
    loop {
        if let Some(Ok(Packet::Ack(_))) = next_piped(ws).await {
            return;
        }
    }
}

#[tokio::test]
async fn slow_consumers_lose_the_oldest_broadcasts() {
    let (hub, _addr) = start(Hub::builder().outgoing_queue(4, SlowConsumer::DropOldest)).await;
    let mut ws = piped(&hub).await;
    join_piped(&mut ws, "r").await;
    // 200 broadcasts of 2 KiB while the client does not read.
    let pad = "x".repeat(2048);
    for i in 0..200 {
        hub.broadcast("r", Event::new("n", json!({"i": i, "pad": pad})));
        tokio::task::yield_now().await;
    }
    eventually(|| hub.metrics().dropped > 0).await;
    assert_eq!(hub.connections().len(), 1, "still connected");
    // Read what is left: in order, ending with the newest.
    let mut seen = Vec::new();
    while seen.last() != Some(&199) {
        match next_piped(&mut ws).await {
            Some(Ok(Packet::Event(e))) => seen.push(e.data["i"].as_u64().unwrap()),
            Some(Ok(Packet::Presence(_))) => {} // its own join
            other => panic!("{other:?}"),
        }
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.len() as u64 + hub.metrics().dropped, 200);
    assert!(hub.metrics_text().contains(&format!("wsx_hub_dropped_messages_total {}", hub.metrics().dropped)));
}

#[tokio::test]
async fn slow_consumers_can_be_disconnected() {
    for (policy, code) in [
        (SlowConsumer::Close(wsx::CloseCode::PolicyViolation), 1008),
        (SlowConsumer::Close(wsx::CloseCode::TryAgainLater), 1013),
    ] {
        let (hub, _addr) = start(Hub::builder().outgoing_queue(4, policy)).await;
        let mut ws = piped(&hub).await;
        join_piped(&mut ws, "r").await;
        let pad = "x".repeat(2048);
        for i in 0..200 {
            hub.broadcast("r", Event::new("n", json!({"i": i, "pad": pad})));
            tokio::task::yield_now().await;
        }
        loop {
            match next_piped(&mut ws).await {
                Some(Ok(_)) => {}
                Some(Err(close)) => {
                    assert_eq!(close, (code, "slow consumer".into()));
                    break;
                }
                None => panic!("no close frame"),
            }
        }
        assert_eq!(hub.metrics().slow_disconnects, 1);
    }
}

#[tokio::test]
async fn keepalive_pings_and_idle_timeout() {
    let b = Hub::builder()
        .ping_interval(Duration::from_millis(40))
        .idle_timeout(Duration::from_millis(250))
        .config(wsx::Config::default().with_close_timeout(Duration::from_secs(1)));
    let (hub, addr) = start(b).await;
    // A client that reads (and so answers pings) stays.
    let (mut a, _) = raw(addr).await;
    // One that does not read goes.
    let mut idle = piped(&hub).await;
    let _welcome = next_piped(&mut idle).await;
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_millis(500) {
        if let Ok(Some(Ok(Message::Ping(_)))) = tokio::time::timeout(Duration::from_millis(50), a.recv()).await {
            pings += 1;
        }
    }
    assert!(pings >= 5, "{pings} pings");
    assert_eq!(next_piped(&mut idle).await, Some(Err((1001, "idle timeout".into()))));
    eventually(|| hub.connections().len() == 1).await;
}

/// A ping interval too long to add to the clock (`Duration::MAX`) is held
/// at a year: connections are served, not a panic at `now + interval`.
#[tokio::test]
async fn huge_ping_interval_does_not_overflow_the_clock() {
    let (_hub, addr) = start(Hub::builder().ping_interval(Duration::MAX).idle_timeout(Duration::MAX)).await;
    let (mut ws, _) = raw(addr).await;
    send(&mut ws, &Packet::Join(RoomRequest { room: "r".into(), id: Some(1) })).await;
    assert!(matches!(next(&mut ws).await, Packet::Ack(_)), "the join is answered");
}

#[tokio::test]
async fn graceful_shutdown_closes_everyone_with_1001() {
    let (hub, addr) = start(Hub::builder().shutdown_timeout(Duration::from_secs(2))).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = raw(addr).await;
        clients.push(tokio::spawn(async move { close_of(&mut ws).await }));
    }
    let sse = tokio::spawn(async move { http_get(addr, "/events?room=r", &[]).await });
    eventually(|| hub.metrics_text().contains("wsx_hub_sse_streams 1")).await;
    let t = Instant::now();
    hub.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(1), "drained in {:?}", t.elapsed());
    for c in clients {
        assert_eq!(c.await.unwrap(), (1001, "server shutting down".into()));
    }
    assert!(sse.await.unwrap().starts_with("HTTP/1.1 200"));
    assert_eq!(hub.connections().len(), 0);
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
