//! The Engine.IO v4 server (`wsx_hub::socketio::engine`) against real
//! clients on 127.0.0.1: plain HTTP/1.1 for polling, wsx's client for
//! WebSockets, an echo app on the engine's interface. Every point of the
//! Engine.IO conformance contract, plus the engine's own bounds.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsx::{Message, WebSocket};
use wsx_hub::socketio::engine::{CloseReason, Closer, Cors, Engine, EngineConfig, Incoming, Transport};

const WAIT: Duration = Duration::from_secs(5);

type Ws = WebSocket<wsx::MaybeTlsStream>;

/// A running echo server: the engine, its address, the closers of the
/// sessions opened, and how each ended.
struct Echo {
    engine: Engine,
    addr: SocketAddr,
    closers: Arc<Mutex<Vec<(String, Closer)>>>,
    ended: mpsc::UnboundedReceiver<(String, Option<CloseReason>)>,
}

/// Long intervals: tests that are not about the heartbeat see no ping.
fn quiet_config() -> EngineConfig {
    EngineConfig::default().ping_interval(Duration::from_secs(10)).ping_timeout(Duration::from_secs(10))
}

/// The conformance suite's intervals.
fn fast_config() -> EngineConfig {
    EngineConfig::default().ping_interval(Duration::from_millis(300)).ping_timeout(Duration::from_millis(200))
}

async fn start(config: EngineConfig) -> Echo {
    let closers = Arc::new(Mutex::new(Vec::new()));
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let kept = closers.clone();
    let engine = Engine::new(config, move |mut socket| {
        kept.lock().unwrap().push((socket.sid().to_owned(), socket.closer()));
        let ended_tx = ended_tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = socket.recv().await {
                let reply = match msg {
                    Incoming::Text(t) => Message::text(format!("4{}", t.as_str())),
                    Incoming::Binary(b) => Message::binary(b),
                };
                let _ = socket.outbox().push(reply);
            }
            let _ = ended_tx.send((socket.sid().to_owned(), socket.close_reason()));
        });
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = wsx::server::Server::builder().build();
    let serving = engine.clone();
    tokio::spawn(async move {
        server
            .serve(listener, move |req| {
                let engine = serving.clone();
                async move {
                    if req.path() == "/engine.io/" {
                        return engine.handle(req).await;
                    }
                    req.respond(http::Response::builder().status(404).body(Bytes::new()).unwrap()).await
                }
            })
            .await
    });
    Echo { engine, addr, closers, ended }
}

/// An HTTP response, read whole.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to the engine's path with `query`.
async fn request(addr: SocketAddr, method: &str, query: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} /engine.io/?{query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(body);
    tcp.write_all(&wire).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("response timed out").ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp { status, headers, body: body.to_owned() }
}

async fn get(addr: SocketAddr, query: &str) -> Resp {
    request(addr, "GET", query, b"", &[]).await
}

async fn poll(addr: SocketAddr, sid: &str) -> Resp {
    get(addr, &format!("EIO=4&transport=polling&sid={sid}")).await
}

async fn post(addr: SocketAddr, sid: &str, body: &[u8]) -> Resp {
    request(addr, "POST", &format!("EIO=4&transport=polling&sid={sid}"), body, &[]).await
}

/// The sid in an open packet `0{"sid":"..."...}`.
fn sid_of(open: &str) -> String {
    let rest = open.strip_prefix("0{\"sid\":\"").unwrap_or_else(|| panic!("not an open packet: {open:?}"));
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A polling session's id.
async fn open_polling(addr: SocketAddr) -> String {
    let r = get(addr, "EIO=4&transport=polling").await;
    assert_eq!(r.status, 200, "{r:?}");
    sid_of(&r.body)
}

async fn ws_connect(addr: SocketAddr, query: &str) -> wsx::Result<Ws> {
    Ok(wsx::connect(format!("ws://{addr}/engine.io/?{query}")).await?.0)
}

/// The next message, text or binary (a close or the end is an error).
async fn next(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(WAIT, ws.recv()).await.expect("timed out waiting for a message") {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return m,
            Some(Ok(Message::Close(f))) => panic!("closed by the server: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("error: {e}"),
            None => panic!("connection ended"),
        }
    }
}

async fn next_text(ws: &mut Ws) -> String {
    match next(ws).await {
        Message::Text(t) => t.as_str().to_owned(),
        m => panic!("expected text, got {m:?}"),
    }
}

/// Waits until the server ends the WebSocket (its close frame, answered,
/// then the end); the text messages received before.
async fn closed(ws: &mut Ws) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.recv()).await.expect("the server did not close the websocket") {
            Some(Ok(Message::Text(t))) => seen.push(t.as_str().to_owned()),
            None | Some(Err(_)) => return seen,
            Some(Ok(_)) => {}
        }
    }
}

/// Until `engine.sessions()` is `n` (or a panic after WAIT).
async fn sessions_become(engine: &Engine, n: usize) {
    let until = Instant::now() + WAIT;
    while engine.sessions() != n {
        assert!(Instant::now() < until, "sessions stayed at {} (expected {n})", engine.sessions());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn open_json(sid: &str, upgrades: &str) -> String {
    format!(r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}}"#)
}

#[tokio::test]
async fn handshake_over_polling_sends_the_open_packet() {
    let echo = start(fast_config()).await;
    let r = get(echo.addr, "EIO=4&transport=polling").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    let sid = sid_of(&r.body);
    assert_eq!(r.body, open_json(&sid, r#"["websocket"]"#));
    assert!(sid.len() >= 16 && sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_ne!(sid, open_polling(echo.addr).await, "sids are unique");
    assert_eq!(echo.engine.sessions(), 2);
    // No CORS configured: no CORS headers.
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn handshake_over_websocket_sends_the_open_packet_and_then_nothing() {
    let echo = start(fast_config()).await;
    let mut ws = ws_connect(echo.addr, "EIO=4&transport=websocket").await.unwrap();
    let open = next_text(&mut ws).await;
    assert_eq!(open, open_json(&sid_of(&open), "[]"));
    // Then only pings.
    assert_eq!(next_text(&mut ws).await, "2");
}

#[tokio::test]
async fn bad_requests_get_engine_io_errors() {
    let echo = start(quiet_config()).await;
    let addr = echo.addr;
    let json = |code: u8, message: &str| format!(r#"{{"code":{code},"message":"{message}"}}"#);
    for query in ["transport=polling", "EIO=abc&transport=polling", "EIO=3&transport=polling"] {
        let r = get(addr, query).await;
        assert_eq!((r.status, r.body.as_str()), (400, json(5, "Unsupported protocol version").as_str()), "{query}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    for query in ["EIO=4", "EIO=4&transport=abc"] {
        let r = get(addr, query).await;
        assert_eq!((r.status, r.body.as_str()), (400, json(0, "Transport unknown").as_str()), "{query}");
    }
    for method in ["POST", "PUT"] {
        let r = request(addr, method, "EIO=4&transport=polling", b"4x", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (400, json(2, "Bad handshake method").as_str()), "{method}");
    }
    let r = poll(addr, "nosuchsession").await;
    assert_eq!((r.status, r.body.as_str()), (400, json(1, "Session ID unknown").as_str()));
    let r = post(addr, "nosuchsession", b"4x").await;
    assert_eq!(r.status, 400);
    // The same mistakes on upgrades are refused too.
    for query in ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4", "EIO=4&transport=abc"] {
        assert!(ws_connect(addr, query).await.is_err(), "{query}");
    }
    assert!(ws_connect(addr, "EIO=4&transport=websocket&sid=nosuchsession").await.is_err());
    assert_eq!(echo.engine.sessions(), 0);
}

#[tokio::test]
async fn polling_messages_are_echoed_text_and_binary() {
    let echo = start(quiet_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    let r = post(addr, &sid, b"4hello").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(poll(addr, &sid).await.body, "4hello");

    let r = post(addr, &sid, b"4test1\x1e4test2\x1e4test3").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    // The echo app may still be pushing the last ones: gather until all three.
    let mut got = poll(addr, &sid).await.body;
    while got.split('\x1e').count() < 3 {
        got = format!("{got}\x1e{}", poll(addr, &sid).await.body);
    }
    assert_eq!(got, "4test1\x1e4test2\x1e4test3");

    let r = post(addr, &sid, b"4hello\x1ebAQIDBA==").await;
    assert_eq!(r.status, 200);
    let mut got = poll(addr, &sid).await.body;
    if got == "4hello" {
        got = format!("{got}\x1e{}", poll(addr, &sid).await.body);
    }
    assert_eq!(got, "4hello\x1ebAQIDBA==");
}

#[tokio::test]
async fn an_invalid_polling_packet_closes_the_session() {
    let mut echo = start(quiet_config()).await;
    let sid = open_polling(echo.addr).await;
    let r = post(echo.addr, &sid, b"abc").await;
    assert_eq!(r.status, 400);
    assert_eq!(poll(echo.addr, &sid).await.status, 400);
    assert_eq!(echo.ended.recv().await, Some((sid, Some(CloseReason::ParseError))));
    sessions_become(&echo.engine, 0).await;
}

#[tokio::test]
async fn two_gets_at_once_close_the_session() {
    let mut echo = start(quiet_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    let first = tokio::spawn({
        let sid = sid.clone();
        async move { poll(addr, &sid).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = poll(addr, &sid).await;
    assert_eq!(second.status, 400);
    let first = first.await.unwrap();
    assert_eq!((first.status, first.body.as_str()), (200, "1"));
    assert_eq!(poll(addr, &sid).await.status, 400);
    assert_eq!(echo.ended.recv().await, Some((sid, Some(CloseReason::TransportError))));
}

#[tokio::test]
async fn websocket_messages_are_echoed_and_garbage_closes() {
    let echo = start(quiet_config()).await;
    let mut ws = ws_connect(echo.addr, "EIO=4&transport=websocket").await.unwrap();
    next_text(&mut ws).await;
    ws.send(Message::text("4hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4hello");
    ws.send(Message::binary(vec![1u8, 2, 3, 4])).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![1u8, 2, 3, 4]));
    ws.send(Message::text("abc")).await.unwrap();
    closed(&mut ws).await;
    sessions_become(&echo.engine, 0).await;
}

#[tokio::test]
async fn polling_heartbeat_runs_three_rounds() {
    let echo = start(fast_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    let started = Instant::now();
    for round in 0..3 {
        let r = poll(addr, &sid).await;
        assert_eq!((r.status, r.body.as_str()), (200, "2"), "round {round}");
        let r = post(addr, &sid, b"3").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "round {round}");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(850) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(echo.engine.sessions(), 1);
}

#[tokio::test]
async fn websocket_heartbeat_runs_three_rounds() {
    let echo = start(fast_config()).await;
    let mut ws = ws_connect(echo.addr, "EIO=4&transport=websocket").await.unwrap();
    next_text(&mut ws).await;
    for _ in 0..3 {
        assert_eq!(next_text(&mut ws).await, "2");
        ws.send(Message::text("3")).await.unwrap();
    }
    ws.send(Message::text("4still")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4still");
}

#[tokio::test]
async fn polling_ping_timeout_refuses_a_get_at_the_deadline() {
    let mut echo = start(fast_config()).await;
    let sid = open_polling(echo.addr).await;
    // Exactly pingInterval + pingTimeout after the handshake arrived.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = poll(echo.addr, &sid).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(echo.ended.recv().await, Some((sid, Some(CloseReason::PingTimeout))));
    sessions_become(&echo.engine, 0).await;
}

#[tokio::test]
async fn polling_ping_timeout_closes_without_requests() {
    let mut echo = start(fast_config()).await;
    let sid = open_polling(echo.addr).await;
    let started = Instant::now();
    let ended = tokio::time::timeout(WAIT, echo.ended.recv()).await.unwrap();
    assert_eq!(ended, Some((sid, Some(CloseReason::PingTimeout))));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(echo.engine.sessions(), 0);
}

#[tokio::test]
async fn websocket_ping_timeout_closes_the_connection() {
    let echo = start(fast_config()).await;
    let mut ws = ws_connect(echo.addr, "EIO=4&transport=websocket").await.unwrap();
    let started = Instant::now();
    next_text(&mut ws).await;
    let seen = closed(&mut ws).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(seen, ["2", "1"], "a ping, then the close packet");
    sessions_become(&echo.engine, 0).await;
}

#[tokio::test]
async fn polling_close_answers_the_pending_get_with_a_noop() {
    let mut echo = start(quiet_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    let pending = tokio::spawn({
        let sid = sid.clone();
        async move { poll(addr, &sid).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(post(addr, &sid, b"1").await.body, "ok");
    let r = pending.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "6"));
    assert_eq!(poll(addr, &sid).await.status, 400);
    assert_eq!(echo.ended.recv().await, Some((sid, Some(CloseReason::ClientClose))));
    assert_eq!(echo.engine.sessions(), 0);
}

#[tokio::test]
async fn websocket_close_packet_closes_the_connection() {
    let mut echo = start(quiet_config()).await;
    let mut ws = ws_connect(echo.addr, "EIO=4&transport=websocket").await.unwrap();
    let sid = sid_of(&next_text(&mut ws).await);
    ws.send(Message::text("1")).await.unwrap();
    assert!(closed(&mut ws).await.is_empty());
    assert_eq!(echo.ended.recv().await, Some((sid, Some(CloseReason::ClientClose))));
    assert_eq!(echo.engine.sessions(), 0);
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let echo = start(fast_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    let mut ws = ws_connect(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    // A GET during the upgrade gets a noop.
    let r = poll(addr, &sid).await;
    assert_eq!((r.status, r.body.as_str()), (200, "6"));
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("4hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4hello");
    // Polling is over for this session; a second websocket is closed.
    assert_eq!(poll(addr, &sid).await.status, 400);
    assert_eq!(post(addr, &sid, b"4x").await.status, 400);
    // (Accepted, then closed at once: clients see a clean close.)
    let mut second = ws_connect(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await.unwrap();
    assert!(closed(&mut second).await.is_empty());
    ws.send(Message::text("4again")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4again");
    assert_eq!(echo.engine.sessions(), 1);
}

#[tokio::test]
async fn a_pending_get_gets_a_noop_at_the_probe_and_a_late_one_400_after_the_upgrade() {
    let echo = start(quiet_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    let pending = tokio::spawn({
        let sid = sid.clone();
        async move { poll(addr, &sid).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = ws_connect(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await.unwrap();
    // Probe and upgrade back to back, then a GET at once (the suite's race).
    ws.send(Message::text("2probe")).await.unwrap();
    ws.send(Message::text("5")).await.unwrap();
    let r = pending.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "6"));
    assert_eq!(poll(addr, &sid).await.status, 400);
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws.send(Message::text("4hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4hello");
}

#[tokio::test]
async fn no_message_is_lost_or_reordered_across_the_upgrade() {
    let echo = start(quiet_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    // Echoes queued before the upgrade and not polled.
    assert_eq!(post(addr, &sid, b"4a\x1e4b\x1ebAQI=").await.body, "ok");
    let mut ws = ws_connect(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    // More while upgrading, over polling.
    assert_eq!(post(addr, &sid, b"4c").await.body, "ok");
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("4d")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4a");
    assert_eq!(next_text(&mut ws).await, "4b");
    assert_eq!(next(&mut ws).await, Message::binary(vec![1u8, 2]));
    assert_eq!(next_text(&mut ws).await, "4c");
    assert_eq!(next_text(&mut ws).await, "4d");
}

#[tokio::test]
async fn an_upgrade_without_the_upgrade_packet_times_out_and_polling_goes_on() {
    let echo = start(quiet_config().upgrade_timeout(Duration::from_millis(200))).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    let mut ws = ws_connect(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    let started = Instant::now();
    closed(&mut ws).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(post(addr, &sid, b"4still polling").await.body, "ok");
    assert_eq!(poll(addr, &sid).await.body, "4still polling");
    // And a new upgrade may start.
    let mut ws = ws_connect(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("4ws")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4ws");
}

#[tokio::test]
async fn an_oversized_post_gets_413_and_ends_the_session() {
    let mut echo = start(quiet_config().max_payload(100)).await;
    let sid = open_polling(echo.addr).await;
    let mut body = b"4".to_vec();
    body.extend(std::iter::repeat_n(b'x', 200));
    assert_eq!(post(echo.addr, &sid, &body).await.status, 413);
    assert_eq!(poll(echo.addr, &sid).await.status, 400);
    assert_eq!(echo.ended.recv().await, Some((sid, Some(CloseReason::PayloadTooLarge))));
    assert_eq!(echo.engine.sessions(), 0);
    // Within the limit is fine.
    let sid = open_polling(echo.addr).await;
    assert_eq!(post(echo.addr, &sid, &body[..100]).await.status, 200);
}

#[tokio::test]
async fn a_polling_response_is_bounded_by_the_payload_limit() {
    let echo = start(quiet_config().max_payload(100)).await;
    let sid = open_polling(echo.addr).await;
    let forty = format!("4{}", "y".repeat(39));
    let body = [forty.as_str(); 2].join("\x1e");
    assert_eq!(post(echo.addr, &sid, body.as_bytes()).await.body, "ok");
    assert_eq!(post(echo.addr, &sid, forty.as_bytes()).await.body, "ok");
    let mut got = Vec::new();
    while got.len() < 3 {
        let r = poll(echo.addr, &sid).await;
        assert!(r.body.len() <= 100, "{} bytes", r.body.len());
        got.extend(r.body.split('\x1e').map(str::to_owned));
    }
    assert_eq!(got, [forty.clone(), forty.clone(), forty]);
}

#[tokio::test]
async fn sessions_beyond_the_limit_get_503() {
    let echo = start(quiet_config().max_sessions(2)).await;
    open_polling(echo.addr).await;
    let mut ws = ws_connect(echo.addr, "EIO=4&transport=websocket").await.unwrap();
    next_text(&mut ws).await;
    assert_eq!(get(echo.addr, "EIO=4&transport=polling").await.status, 503);
    match ws_connect(echo.addr, "EIO=4&transport=websocket").await {
        Err(wsx::Error::Refused(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected a 503, got {:?}", other.map(|_| ())),
    }
    assert_eq!(echo.engine.sessions(), 2);
    ws.send(Message::text("1")).await.unwrap();
    closed(&mut ws).await;
    sessions_become(&echo.engine, 1).await;
    open_polling(echo.addr).await;
}

#[tokio::test]
async fn cors_any_allowlist_and_credentials() {
    let any = start(quiet_config().cors(Cors::any())).await;
    let r = request(any.addr, "GET", "EIO=4&transport=polling", b"", &[("Origin", "https://a.example")]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let r = request(any.addr, "GET", "EIO=4", b"", &[("Origin", "https://a.example")]).await;
    assert_eq!((r.status, r.header("access-control-allow-origin")), (400, Some("*")), "errors carry CORS too");

    let echo = start(quiet_config().cors(Cors::allow(["https://ok.example"]).credentials(true))).await;
    let addr = echo.addr;
    let preflight = [
        ("Origin", "https://ok.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type, x-token"),
    ];
    let r = request(addr, "OPTIONS", "EIO=4&transport=polling", b"", &preflight).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://ok.example"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let methods = r.header("access-control-allow-methods").unwrap();
    assert!(methods.contains("GET") && methods.contains("POST"), "{methods}");
    assert_eq!(r.header("access-control-allow-headers"), Some("content-type, x-token"));
    assert!(r.headers.iter().any(|(k, v)| k == "vary" && v.contains("Origin")));

    let r = request(addr, "GET", "EIO=4&transport=polling", b"", &[("Origin", "https://ok.example")]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("https://ok.example"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let sid = sid_of(&r.body);
    let r = request(
        addr,
        "POST",
        &format!("EIO=4&transport=polling&sid={sid}"),
        b"4x",
        &[("Origin", "https://ok.example")],
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("https://ok.example"));

    // Another origin: no CORS headers on polling, 403 on the upgrade.
    let r = request(addr, "GET", "EIO=4&transport=polling", b"", &[("Origin", "https://evil.example")]).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = request(addr, "OPTIONS", "EIO=4&transport=polling", b"", &[("Origin", "https://evil.example")]).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    let evil = http::Request::get(format!("ws://{addr}/engine.io/?EIO=4&transport=websocket"))
        .header("origin", "https://evil.example")
        .body(())
        .unwrap();
    match wsx::connect(evil).await {
        Err(wsx::Error::Refused(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    let ok = http::Request::get(format!("ws://{addr}/engine.io/?EIO=4&transport=websocket"))
        .header("origin", "https://ok.example")
        .body(())
        .unwrap();
    assert!(wsx::connect(ok).await.is_ok());
}

#[tokio::test]
async fn closer_and_shutdown_send_the_close_packet_and_sessions_return_to_zero() {
    let mut echo = start(quiet_config()).await;
    let addr = echo.addr;
    // A websocket session closed by the app, after a queued message.
    let mut ws = ws_connect(addr, "EIO=4&transport=websocket").await.unwrap();
    let ws_sid = sid_of(&next_text(&mut ws).await);
    // A polling session closed by the app with no GET waiting: the next
    // GET gets what was queued and the close packet.
    let polled = open_polling(addr).await;
    assert_eq!(post(addr, &polled, b"4last").await.body, "ok");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let closers = echo.closers.lock().unwrap().clone();
    for (sid, closer) in &closers {
        closer.close(CloseReason::ServerClose);
        closer.close(CloseReason::ParseError); // the first reason stays
        let _ = sid;
    }
    assert_eq!(closed(&mut ws).await, ["1"]);
    let r = poll(addr, &polled).await;
    assert_eq!((r.status, r.body.as_str()), (200, "4last\x1e1"));
    assert_eq!(poll(addr, &polled).await.status, 400);
    let mut ended = vec![echo.ended.recv().await.unwrap(), echo.ended.recv().await.unwrap()];
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![(ws_sid, Some(CloseReason::ServerClose)), (polled, Some(CloseReason::ServerClose))];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(ended, expected);
    sessions_become(&echo.engine, 0).await;

    // Shutdown: a websocket and a waiting GET get the close packet.
    let mut ws = ws_connect(addr, "EIO=4&transport=websocket").await.unwrap();
    next_text(&mut ws).await;
    let sid = open_polling(addr).await;
    let pending = tokio::spawn(async move { poll(addr, &sid).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(echo.engine.sessions(), 2);
    let started = Instant::now();
    echo.engine.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(echo.engine.sessions(), 0);
    assert_eq!(closed(&mut ws).await, ["1"]);
    assert_eq!(pending.await.unwrap().body, "1");
    for _ in 0..2 {
        assert_eq!(echo.ended.recv().await.unwrap().1, Some(CloseReason::ServerShutdown));
    }
    assert_eq!(get(addr, "EIO=4&transport=polling").await.status, 503);
}

#[tokio::test]
async fn sessions_of_every_kind_end_and_leave() {
    let echo = start(fast_config()).await;
    let addr = echo.addr;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut ws = ws_connect(addr, "EIO=4&transport=websocket").await.unwrap();
        next_text(&mut ws).await;
        sockets.push(ws);
    }
    for _ in 0..3 {
        open_polling(addr).await;
    }
    assert_eq!(echo.engine.sessions(), 6);
    // Dropped websockets end at once; silent polling ones at the ping timeout.
    sockets.clear();
    sessions_become(&echo.engine, 0).await;
}

#[tokio::test]
async fn the_transport_is_reported() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(quiet_config(), move |socket| {
        let _ = tx.send((socket.transport(), socket.head().query_param("transport")));
    });
    let addr = serve(&engine).await;
    open_polling(addr).await;
    assert_eq!(rx.recv().await, Some((Transport::Polling, Some("polling".into()))));
    let _ws = ws_connect(addr, "EIO=4&transport=websocket").await.unwrap();
    assert_eq!(rx.recv().await, Some((Transport::WebSocket, Some("websocket".into()))));
}

#[tokio::test]
async fn an_outbox_overflow_on_polling_closes_the_session() {
    let config = quiet_config().outbox(
        wsx::server::OutboxConfig::default()
            .with_max_messages(2)
            .with_slow_consumer(wsx::server::SlowConsumer::Close(wsx::CloseCode::PolicyViolation)),
    );
    let mut echo = start(config).await;
    let sid = open_polling(echo.addr).await;
    // Three echoes, never polled, into an outbox of two.
    assert_eq!(post(echo.addr, &sid, b"4a\x1e4b\x1e4c").await.status, 200);
    let ended = tokio::time::timeout(WAIT, echo.ended.recv()).await.unwrap();
    assert_eq!(ended, Some((sid.clone(), Some(CloseReason::SlowConsumer))));
    assert_eq!(poll(echo.addr, &sid).await.status, 400);
    assert_eq!(echo.engine.sessions(), 0);
}

#[tokio::test]
async fn a_post_waits_for_an_app_that_does_not_read() {
    let (engine, addr, parked) = start_parked().await;
    let sid = open_polling(addr).await;
    let body: Vec<String> = (0..200).map(|i| format!("4m{i}")).collect();
    let body = body.join("\x1e");
    let posting = tokio::spawn({
        let sid = sid.clone();
        async move { post(addr, &sid, body.as_bytes()).await }
    });
    // The app does not read: the POST waits (bounded incoming queue).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!posting.is_finished(), "the POST finished though nothing was read");
    let mut socket = parked.lock().unwrap().pop().unwrap();
    for i in 0..200 {
        match tokio::time::timeout(WAIT, socket.recv()).await.unwrap() {
            Some(Incoming::Text(t)) => assert_eq!(t.as_str(), format!("m{i}")),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(posting.await.unwrap().body, "ok");
    // Dropping the socket closes the session at the next message; the
    // next GET takes the close packet and the session leaves.
    drop(socket);
    assert_eq!(post(addr, &sid, b"4x").await.status, 200);
    assert_eq!(poll(addr, &sid).await.body, "1");
    assert_eq!(engine.sessions(), 0);
    assert_eq!(poll(addr, &sid).await.status, 400);
}

#[tokio::test]
async fn a_websocket_message_past_the_payload_limit_closes_the_session() {
    let mut echo = start(quiet_config().max_payload(100)).await;
    let mut ws = ws_connect(echo.addr, "EIO=4&transport=websocket").await.unwrap();
    let sid = sid_of(&next_text(&mut ws).await);
    ws.send(Message::text(format!("4{}", "x".repeat(99)))).await.unwrap();
    assert_eq!(next_text(&mut ws).await.len(), 100);
    ws.send(Message::text(format!("4{}", "x".repeat(100)))).await.unwrap();
    closed(&mut ws).await;
    assert_eq!(echo.ended.recv().await, Some((sid, Some(CloseReason::PayloadTooLarge))));
    sessions_become(&echo.engine, 0).await;
}

#[test]
fn the_handles_cross_tasks() {
    fn send<T: Send>() {}
    fn shared<T: Send + Sync + Clone>() {}
    send::<wsx_hub::socketio::engine::EngineSocket>();
    shared::<Closer>();
    shared::<Engine>();
}

#[tokio::test]
async fn a_closed_session_takes_no_more_output() {
    let (engine, addr, parked) = start_parked().await;
    let sid = open_polling(addr).await;
    let mut ws = ws_connect(addr, "EIO=4&transport=websocket").await.unwrap();
    next_text(&mut ws).await;
    let mut sockets = std::mem::take(&mut *parked.lock().unwrap());
    assert_eq!(sockets.len(), 2);
    assert_eq!(sockets[0].outbox().push(Message::text("4before")), wsx::server::Push::Queued);
    assert_eq!(post(addr, &sid, b"1").await.body, "ok");
    ws.send(Message::text("1")).await.unwrap();
    closed(&mut ws).await;
    for socket in &mut sockets {
        assert_eq!(tokio::time::timeout(WAIT, socket.recv()).await.unwrap(), None);
        assert_eq!(socket.close_reason(), Some(CloseReason::ClientClose));
    }
    sessions_become(&engine, 0).await;
    let until = Instant::now() + WAIT;
    while sockets.iter().any(|s| s.outbox().push(Message::text("4after")) != wsx::server::Push::Closed) {
        assert!(Instant::now() < until, "the outbox of a closed session still takes messages");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_get_that_races_the_client_close_gets_a_noop() {
    let echo = start(quiet_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    // The close arrives before the GET sent with it.
    assert_eq!(post(addr, &sid, b"1").await.body, "ok");
    let r = poll(addr, &sid).await;
    assert_eq!((r.status, r.body.as_str()), (200, "6"));
    assert_eq!(poll(addr, &sid).await.status, 400);
    assert_eq!(echo.engine.sessions(), 0);
    // Without that GET, the session leaves soon all the same.
    let sid = open_polling(addr).await;
    assert_eq!(post(addr, &sid, b"1").await.body, "ok");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(echo.engine.sessions(), 0);
    assert_eq!(poll(addr, &sid).await.status, 400);
}

#[tokio::test]
async fn a_get_that_races_the_probe_and_upgrade_packets_gets_400() {
    let echo = start(quiet_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    let mut ws = ws_connect(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await.unwrap();
    // The GET comes before the probe.
    let racing = tokio::spawn({
        let sid = sid.clone();
        async move { poll(addr, &sid).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    ws.send(Message::text("2probe")).await.unwrap();
    ws.send(Message::text("5")).await.unwrap();
    assert_eq!(racing.await.unwrap().status, 400);
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws.send(Message::text("4hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4hello");
}

#[tokio::test]
async fn only_the_configured_transports_are_served() {
    let ws_only = start(quiet_config().transports(false, true)).await;
    let r = get(ws_only.addr, "EIO=4&transport=polling").await;
    assert_eq!((r.status, r.body.as_str()), (400, r#"{"code":0,"message":"Transport unknown"}"#));
    let mut ws = ws_connect(ws_only.addr, "EIO=4&transport=websocket").await.unwrap();
    assert!(next_text(&mut ws).await.contains(r#""upgrades":[]"#));

    let polling_only = start(quiet_config().transports(true, false)).await;
    let r = get(polling_only.addr, "EIO=4&transport=polling").await;
    assert!(r.body.contains(r#""upgrades":[]"#), "{}", r.body);
    let sid = sid_of(&r.body);
    assert!(ws_connect(polling_only.addr, "EIO=4&transport=websocket").await.is_err());
    assert!(ws_connect(polling_only.addr, &format!("EIO=4&transport=websocket&sid={sid}")).await.is_err());
    assert_eq!(polling_only.engine.sessions(), 1);
}

#[tokio::test]
async fn an_abandoned_get_frees_its_place_and_loses_nothing() {
    let mut echo = start(quiet_config()).await;
    let addr = echo.addr;
    let sid = open_polling(addr).await;
    // A GET whose client goes away while it waits.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The next GET is no second GET at once, and gets what comes next.
    let next_get = tokio::spawn({
        let sid = sid.clone();
        async move { poll(addr, &sid).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(post(addr, &sid, b"4after").await.body, "ok");
    let r = next_get.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "4after"));
    assert_eq!(echo.engine.sessions(), 1);
    assert!(echo.ended.try_recv().is_err(), "the session is still open");
}

/// Serve `engine` on a new listener; its address.
async fn serve(engine: &Engine) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = engine.clone();
    tokio::spawn(async move {
        wsx::server::Server::builder()
            .build()
            .serve(listener, move |req| {
                let engine = serving.clone();
                async move { engine.handle(req).await }
            })
            .await
    });
    addr
}

/// An engine whose sessions nobody serves: they are kept (parked) for the
/// test to drive by hand.
async fn start_parked() -> (Engine, std::net::SocketAddr, Arc<Mutex<Vec<wsx_hub::socketio::engine::EngineSocket>>>) {
    let parked = Arc::new(Mutex::new(Vec::new()));
    let keep = parked.clone();
    let engine = Engine::new(quiet_config(), move |socket| keep.lock().unwrap().push(socket));
    let addr = serve(&engine).await;
    (engine, addr, parked)
}
