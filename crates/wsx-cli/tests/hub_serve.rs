//! `wsx serve --hub` as a user runs it: the binary, `wsx_hub::client::Client`
//! and raw WebSocket clients, plain HTTP on the same port, a signal, and two
//! processes joined through a real `redis-server` (started on a random
//! loopback port; skipped with a notice when it is not installed, unless
//! `CI` is set).

mod common;
#[path = "../../wsx/tests/support/pki.rs"]
mod pki;
#[path = "../../wsx-hub/tests/common/redis.rs"]
mod redis_server;
#[path = "../../wsx-hub/tests/common/sio.rs"]
mod sio;

use redis_server::RedisServer;

use common::{http_get, run, serve, temp_dir, Server};
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use wsx::{CloseCode, Message};
use wsx_hub::client::{Client, ClientEvent, Events};
use wsx_hub::protocol::{self, Packet};
use wsx_hub::{ConnId, Event};

const WAIT: Duration = Duration::from_secs(5);

/// A connected client and its events.
async fn client(server: &Server) -> (Client, Events, ConnId) {
    let (c, events) = Client::builder(server.url.clone()).connect();
    let id = c.connected(WAIT).await.expect("the client connects");
    (c, events, id)
}

/// The first event `f` picks, skipping others (at most 5 s).
async fn wait_for<T>(events: &mut Events, what: &str, mut f: impl FnMut(ClientEvent) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("the client is not closed");
        if let Some(t) = f(ev) {
            return t;
        }
    }
}

/// The next room event: (room, from, name, data).
async fn room_event(events: &mut Events) -> (Option<String>, Option<ConnId>, String, serde_json::Value) {
    wait_for(events, "a room event", |ev| match ev {
        ClientEvent::Event(e) => Some((e.room, e.from, e.event.name, e.event.data)),
        _ => None,
    })
    .await
}

/// Presence packets until one says that `conn` joined (`joined`) or left
/// `room`: the room's count it gives.
async fn presence(events: &mut Events, room: &str, conn: &str, joined: bool) -> u64 {
    wait_for(events, "a presence packet", |ev| match ev {
        ClientEvent::Presence(p) if p.room == room => {
            let d = p.diff?;
            (if joined { d.joins } else { d.leaves }).iter().any(|m| m.conn == conn).then_some(p.count)
        }
        _ => None,
    })
    .await
}

fn member_ids(joined: &wsx_hub::protocol::Joined) -> Vec<&str> {
    let mut ids: Vec<&str> = joined.members.iter().flatten().map(|m| m.conn.as_str()).collect();
    ids.sort();
    ids
}

/// A raw upgrade request offering the hub's subprotocol.
fn hub_request(url: &str, origin: Option<&str>) -> http::Request<()> {
    let mut r = http::Request::get(url).header("sec-websocket-protocol", protocol::SUBPROTOCOL);
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    r.body(()).unwrap()
}

type RawWs = wsx::WebSocket<wsx::MaybeTlsStream>;

/// A raw connection past its welcome.
async fn raw(url: &str, origin: Option<&str>) -> wsx::Result<RawWs> {
    let (mut ws, _) = wsx::connect(hub_request(url, origin)).await?;
    let first = tokio::time::timeout(WAIT, ws.recv()).await.expect("a welcome in time").expect("open")?;
    assert!(matches!(protocol::decode_message(&first), Some(Ok(Packet::Welcome(_)))), "{first:?}");
    Ok(ws)
}

/// Read until the close frame: its code and reason.
async fn close_of(ws: &mut RawWs) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.recv()).await.expect("a close frame in time") {
            Some(Ok(Message::Close(Some(f)))) => return (f.code, f.reason.as_str().to_owned()),
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn hub_relays_room_messages_and_presence_between_clients() {
    let server = serve(&["--hub"]);
    let (a, mut ea, ida) = client(&server).await;
    let (b, mut eb, idb) = client(&server).await;
    assert_eq!(member_ids(&a.join("lobby").await.unwrap()), [ida.as_str()]);
    let mut both = [ida.as_str(), idb.as_str()];
    both.sort();
    assert_eq!(member_ids(&b.join("lobby").await.unwrap()), both);
    assert_eq!(presence(&mut ea, "lobby", &idb, true).await, 2);

    // Clients publish to their rooms with no server code.
    b.publish("lobby", Event::new("chat", json!({"text": "hi"}))).unwrap();
    assert_eq!(
        room_event(&mut ea).await,
        (Some("lobby".into()), Some(idb.clone()), "chat".into(), json!({"text": "hi"}))
    );
    a.publish_ack("lobby", Event::new("chat", json!({"text": "back"})), true).await.unwrap();
    assert_eq!(room_event(&mut eb).await.3, json!({"text": "back"}));
    assert_eq!(room_event(&mut ea).await.3, json!({"text": "back"}), "echo: true reaches the sender");
    // Only members publish.
    let refused = a.publish_ack("elsewhere", Event::new("chat", json!(1)), false).await.unwrap_err();
    assert!(refused.to_string().contains("not_member"), "{refused}");

    // SSE and metrics on the same port.
    let (status, head, body) = http_get(&server.addr, "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("wsx_hub_connections 2"));
    let mut sse = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let req = format!("GET /events?room=lobby HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tokio::io::AsyncWriteExt::write_all(&mut sse, req.as_bytes()).await.unwrap();
    let seen = read_until(&mut sse, "retry: 2000").await;
    assert!(seen.contains("text/event-stream"), "{seen}");
    b.publish("lobby", Event::new("chat", json!({"text": "to the stream"}))).unwrap();
    let seen = read_until(&mut sse, "to the stream").await;
    assert!(seen.contains("event: chat"), "{seen}");

    // Leaving is presence too.
    b.close();
    assert_eq!(presence(&mut ea, "lobby", &idb, false).await, 1);
}

/// Read from a stream until `needle` has arrived; everything read.
async fn read_until(s: &mut tokio::net::TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(s, &mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}; got {}", String::from_utf8_lossy(&seen)))
            .unwrap();
        assert!(n > 0, "closed before {needle:?}; got {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn hub_serves_static_files_and_its_browser_client_on_the_same_port() {
    let root = temp_dir("hub-static");
    let public = root.join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("index.html"), "<h1>chat</h1>").unwrap();
    std::fs::write(public.join("app.js"), "import '/wsx-hub.js';").unwrap();
    std::fs::write(root.join("secret.txt"), "do not serve").unwrap();
    let server = serve(&["--hub", "--static", public.to_str().unwrap()]);

    let (status, head, body) = http_get(&server.addr, "/");
    assert_eq!((status, body.as_slice()), (200, b"<h1>chat</h1>".as_slice()), "{head}");
    let (status, head, body) = http_get(&server.addr, "/app.js");
    assert_eq!((status, body.as_slice()), (200, b"import '/wsx-hub.js';".as_slice()), "{head}");
    let (status, head, body) = http_get(&server.addr, "/wsx-hub.js");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert_eq!(body, wsx_hub::CLIENT_JS.as_bytes(), "the browser client built into the binary");
    assert_eq!(http_get(&server.addr, "/missing.png").0, 404);
    assert_eq!(http_get(&server.addr, "/%2e%2e/secret.txt").0, 403);
    assert_eq!(http_get(&server.addr, "/metrics").0, 200, "the hub's paths before the files");

    // The hub on the same port.
    let (c, _events, id) = client(&server).await;
    assert_eq!(member_ids(&c.join("lobby").await.unwrap()), [id.as_str()]);

    // An upgrade on another path than the hub's endpoint (/): 404, not a
    // file.
    for path in ["/index.html", "/ws", "/events?room=r"] {
        let url = format!("{}{}", server.url.trim_end_matches('/'), path);
        match wsx::connect(hub_request(&url, None)).await {
            Err(wsx::Error::Refused(r)) => assert_eq!(r.status(), 404, "{path}"),
            other => panic!("{path}: expected 404, got {:?}", other.map(|_| ())),
        }
    }

    // Without --static: the client module, and 404 for the rest.
    let bare = serve(&["--hub"]);
    assert_eq!(http_get(&bare.addr, "/wsx-hub.js").0, 200);
    assert_eq!(http_get(&bare.addr, "/").0, 404);
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn hub_shuts_down_with_1001_on_sigterm() {
    let mut server = serve(&["--hub"]);
    let mut ws = raw(&server.url, None).await.unwrap();
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert_eq!(close_of(&mut ws).await, (CloseCode::GoingAway, "server shutting down".to_owned()));
    assert!(tokio::time::timeout(WAIT, ws.recv()).await.unwrap().is_none(), "the closing handshake completes");
    let exit = tokio::task::spawn_blocking(move || server.child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test]
async fn hub_speaks_wss_with_the_tls_flags() {
    let ca = pki::Ca::new("wsx hub test CA");
    let cert = ca.server_cert(&["localhost"]);
    let dir = pki::TempDir::new();
    let (cert_path, key_path) = (dir.write("cert.pem", &cert.cert_pem), dir.write("key.pem", &cert.key_pem));
    let server = serve(&["--hub", "--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()]);
    let url = server.url.clone();
    let config = wsx::Config::default().with_tls_config(ca.client_config());
    let (c, _events) = Client::builder(url).config(config).connect();
    let id = c.connected(WAIT).await.expect("the client connects over TLS");
    assert_eq!(member_ids(&c.join("lobby").await.unwrap()), [id.as_str()]);
}

#[tokio::test]
async fn serve_flags_apply_to_the_hub() {
    let server =
        serve(&["--hub", "--origin", "https://good.example", "--max-connections", "1", "--max-message-size", "1000"]);
    let err = raw(&server.url, Some("https://evil.example")).await.expect_err("another origin is refused");
    assert!(err.to_string().contains("403"), "{err}");
    let mut ws = raw(&server.url, Some("https://good.example")).await.unwrap();
    let err = raw(&server.url, None).await.expect_err("no second connection");
    assert!(err.to_string().contains("503"), "{err}");
    ws.send(Message::text("x".repeat(1001))).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, CloseCode::MessageTooBig);

    // Wrong hub flags are one line and status 1, before anything listens.
    for (args, says) in [
        (&["serve", "--hub", "--broker", "nats://x"][..], "--broker must be"),
        (&["serve", "--hub", "--broker", "redis://"][..], "--broker redis://"),
        (&["serve", "--hub", "--ping-interval", "30", "--idle-timeout", "10"][..], "must be longer"),
        (&["serve", "--ping-interval", "30", "--idle-timeout", "30"][..], "must be longer"),
        (&["serve", "--hub", "--rate-limit", "0"][..], "--rate-limit must be"),
        (&["serve", "--hub", "--broadcast"][..], "cannot be used with"),
        (&["serve", "--broker", "memory"][..], "--hub"),
    ] {
        let out = run(args, "", WAIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Wait until a hub process says its Redis broker is up.
async fn broker_up(server: &Server) {
    let t = std::time::Instant::now();
    while !String::from_utf8_lossy(&http_get(&server.addr, "/metrics").2)
        .contains("wsx_hub_broker_up{broker=\"redis\"} 1")
    {
        assert!(t.elapsed() < Duration::from_secs(10), "the broker of {} did not come up", server.addr);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Hub processes `a` and `b` on one fresh redis-server, both connected to
/// it; `None` (the test skipped) without redis-server outside CI.
async fn two_nodes() -> Option<(RedisServer, Server, Server)> {
    two_nodes_serving("--hub").await
}

/// [`two_nodes`] with `--hub` or `--socketio`.
async fn two_nodes_serving(mode: &str) -> Option<(RedisServer, Server, Server)> {
    let redis = RedisServer::start()?;
    let broker = redis.url();
    let node_a = serve(&[mode, "--broker", &broker, "--node-id", "a"]);
    let node_b = serve(&[mode, "--broker", &broker, "--node-id", "b"]);
    broker_up(&node_a).await;
    broker_up(&node_b).await;
    Some((redis, node_a, node_b))
}

#[tokio::test]
async fn two_hub_processes_on_one_redis_are_one_hub() {
    let Some((_redis, node_a, mut node_b)) = two_nodes().await else { return };

    let (a, mut ea, ida) = client(&node_a).await;
    let (b, mut eb, idb) = client(&node_b).await;
    assert!(ida.starts_with("a.") && idb.starts_with("b."), "{ida} {idb}");
    a.join("lobby").await.unwrap();
    let members = b.join("lobby").await.unwrap();
    assert_eq!(member_ids(&members), [ida.as_str(), idb.as_str()], "presence spans both processes");
    assert_eq!(presence(&mut ea, "lobby", &idb, true).await, 2);

    b.publish("lobby", Event::new("chat", json!({"text": "from b"}))).unwrap();
    assert_eq!(
        room_event(&mut ea).await,
        (Some("lobby".into()), Some(idb.clone()), "chat".into(), json!({"text": "from b"}))
    );
    a.publish("lobby", Event::new("chat", json!({"text": "from a"}))).unwrap();
    assert_eq!(room_event(&mut eb).await, (Some("lobby".into()), Some(ida), "chat".into(), json!({"text": "from a"})));

    // Node b stops: its client leaves the room on node a too.
    let status = Command::new("kill").args(["-TERM", &node_b.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert_eq!(presence(&mut ea, "lobby", &idb, false).await, 1);
    let exit = tokio::task::spawn_blocking(move || node_b.child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

/// A graceful stop publishes every member's leave before the process exits:
/// 30 members of node b in three rooms, an observer on node a, b stopped
/// with SIGTERM; the observer gets all 90 leaves.
#[tokio::test]
async fn a_stopped_nodes_members_all_leave() {
    const MEMBERS: usize = 30;
    const ROOMS: [&str; 3] = ["r1", "r2", "r3"];
    let Some((_redis, node_a, mut node_b)) = two_nodes().await else { return };

    let (observer, mut events, _) = client(&node_a).await;
    for room in ROOMS {
        observer.join(room).await.unwrap();
    }
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        let (c, events, _) = client(&node_b).await;
        for room in ROOMS {
            c.join(room).await.unwrap();
        }
        members.push((c, events));
    }
    let mut joins = 0;
    while joins < MEMBERS * ROOMS.len() {
        joins += wait_for(&mut events, "joins", |ev| match ev {
            ClientEvent::Presence(p) => {
                let d = p.diff.expect("names");
                assert!(d.leaves.is_empty(), "{d:?}");
                Some(d.joins.iter().filter(|m| m.conn.starts_with("b.")).count())
            }
            _ => None,
        })
        .await;
    }

    let status = Command::new("kill").args(["-TERM", &node_b.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut leaves = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while leaves.len() < MEMBERS * ROOMS.len() {
        let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.next()).await else { break };
        if let ClientEvent::Presence(p) = ev {
            let d = p.diff.expect("names");
            assert!(d.joins.is_empty(), "{d:?}");
            for m in d.leaves {
                assert!(leaves.insert((p.room.clone(), m.conn)), "each leave once");
            }
        }
    }
    assert_eq!(leaves.len(), MEMBERS * ROOMS.len(), "leave events the observer got");
    let exit = tokio::task::spawn_blocking(move || node_b.child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    drop(members);
}

/// A Socket.IO client of the relay, connected to `/`; its id.
async fn sio_client(server: &Server) -> (sio::Sio, String) {
    let mut c = sio::Sio::open(server.addr.parse().unwrap()).await;
    let id = c.connect("/", None).await;
    (c, id)
}

async fn sio_join(c: &mut sio::Sio, room: &str) {
    c.send(&format!(r#"421["join","{room}"]"#)).await;
    assert_eq!(c.text().await, "431[true]");
}

#[tokio::test]
async fn socketio_clients_use_the_relay_and_share_rooms_with_hub_clients() {
    let server = serve(&["--socketio"]);
    let (mut s1, id1) = sio_client(&server).await;
    let (mut s2, _) = sio_client(&server).await;
    sio_join(&mut s1, "lobby").await;
    sio_join(&mut s2, "lobby").await;
    let (hub_client, mut events, _) = client(&server).await;
    hub_client.join("lobby").await.unwrap();
    s1.send(r#"429["publish","lobby","say",{"text":"hi"},2]"#).await;
    assert_eq!(s1.text().await, "439[true]");
    assert_eq!(s2.event().await, json!(["say", {"text": "hi"}, 2]));
    let (room, from, name, data) = room_event(&mut events).await;
    assert_eq!((room.as_deref(), from.as_deref(), name.as_str()), (Some("lobby"), Some(id1.as_str()), "say"));
    assert_eq!(data, json!([{"text": "hi"}, 2]));
    hub_client.publish_ack("lobby", Event::new("from-hub", json!({"n": 1})), false).await.unwrap();
    assert_eq!(s1.event().await, json!(["from-hub", {"n": 1}]));
    assert_eq!(s2.event().await, json!(["from-hub", {"n": 1}]));
    s2.send(r#"427["whoami"]"#).await;
    let who: serde_json::Value = serde_json::from_str(s2.text().await.strip_prefix("437").unwrap()).unwrap();
    assert_eq!(who[0]["rooms"], json!(["lobby"]));
    // Polling works on the same port: the Engine.IO handshake.
    let (status, _, body) = http_get(&server.addr, "/socket.io/?EIO=4&transport=polling");
    assert_eq!(status, 200);
    assert!(body.starts_with(b"0{\"sid\":"), "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn two_socketio_nodes_on_one_redis_deliver_each_publish_once() {
    let Some((_redis, node_a, node_b)) = two_nodes_serving("--socketio").await else { return };
    let (mut on_a, _) = sio_client(&node_a).await;
    let (mut on_b, _) = sio_client(&node_b).await;
    sio_join(&mut on_a, "r").await;
    sio_join(&mut on_b, "r").await;
    for n in 0..3 {
        on_a.send(&format!(r#"42["publish","r","from-a",{n}]"#)).await;
        on_b.send(&format!(r#"42["publish","r","from-b",{n}]"#)).await;
    }
    for n in 0..3 {
        assert_eq!(on_b.event().await, json!(["from-a", n]));
        assert_eq!(on_a.event().await, json!(["from-b", n]));
    }
    assert_eq!(on_a.quiet(Duration::from_millis(300)).await, None, "exactly once");
    assert_eq!(on_b.quiet(Duration::from_millis(300)).await, None, "exactly once");
}

#[tokio::test]
async fn socketio_recovery_through_wsx_serve() {
    let server = serve(&["--socketio", "--socketio-recovery", "30"]);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let mut a = sio::Sio::open(addr).await;
    a.send("40").await;
    let hs: serde_json::Value = serde_json::from_str(a.text().await.strip_prefix("40").unwrap()).unwrap();
    let pid = hs["pid"].as_str().expect("a private id with recovery on").to_owned();
    sio_join(&mut a, "r").await;
    let (mut b, _) = sio_client(&server).await;
    b.send(r#"42["publish","r","news",0]"#).await;
    let first = a.event().await;
    let offset = first[2].as_str().expect("the offset").to_owned();
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 1..3 {
        b.send(&format!(r#"42["publish","r","news",{n}]"#)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut back = sio::Sio::open(addr).await;
    back.send(&format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#)).await;
    let hs2: serde_json::Value = serde_json::from_str(back.text().await.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(hs2["sid"], hs["sid"]);
    for n in 1..3 {
        let e = back.event().await;
        assert_eq!((&e[0], &e[1]), (&json!("news"), &json!(n)));
    }
}

#[test]
fn socketio_recovery_needs_a_positive_window_and_socketio() {
    // Refused before the port is taken: the same on a port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let args = ["serve", "--host", "127.0.0.1", "--port", &port, "--socketio", "--socketio-recovery", "0"];
    let out = run(&args, "", Duration::from_secs(10));
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--socketio-recovery must be a positive number"), "{said}");
    let out = run(&["serve", "--socketio-recovery", "5"], "", Duration::from_secs(10));
    assert!(!out.status.success(), "without --socketio");
}
