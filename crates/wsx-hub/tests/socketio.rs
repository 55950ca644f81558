//! The Socket.IO layer (namespaces, events, acks both ways, binary
//! attachments, rooms and broadcasts, the hub mapping, nodes through a
//! broker, state recovery), checked packet by packet with a raw client.

mod common;
#[path = "common/sio.rs"]
mod sio;

use serde_json::{json, Value};
use sio::{Frame, Sio};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsx_hub::broker::MemoryBus;
use wsx_hub::socketio::engine::EngineConfig;
use wsx_hub::socketio::{relay, ConnectError, DisconnectReason, Namespace, Payload, SocketIo, SocketIoBuilder};
use wsx_hub::Hub;

/// The namespaces of the official suite: `auth` on connection and the
/// echoes, plus a middleware (token "bad" is refused) on `/`.
fn suite() -> Namespace {
    relay()
        .on_connect(|socket| async move {
            let auth = socket.handshake().auth.clone();
            let _ = socket.emit("auth", auth);
        })
        .on("message", |socket, msg| async move {
            socket.emit("message-back", msg.into_payload())?;
            Ok(())
        })
        .on("message-with-ack", |_socket, msg| async move {
            msg.ack(msg.payload().clone());
            Ok(())
        })
}

fn builder() -> SocketIoBuilder {
    SocketIo::builder()
        .engine(EngineConfig::default().ping_interval(Duration::from_secs(10)))
        .connect_timeout(Duration::from_millis(500))
        .namespace(
            "/",
            suite().middleware(|hs| async move {
                match hs.auth.get("token").and_then(Value::as_str) {
                    Some("bad") => Err(ConnectError::new("unauthorized").data(json!({"reason": "bad token"}))),
                    _ => Ok(()),
                }
            }),
        )
        .namespace("/custom", suite())
}

async fn serve(io: SocketIo) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(io.serve(listener));
    addr
}

async fn start() -> (SocketIo, SocketAddr) {
    let io = builder().build();
    let addr = serve(io.clone()).await;
    (io, addr)
}

/// A client connected to `/` (its `auth` event read); its id.
async fn client(addr: SocketAddr) -> (Sio, String) {
    let mut c = Sio::open(addr).await;
    let id = c.connect("/", None).await;
    assert_eq!(c.event().await, json!(["auth", {}]));
    (c, id)
}

async fn join(c: &mut Sio, room: &str, ack: u64) {
    c.send(&format!("42{ack}[\"join\",\"{room}\"]")).await;
    assert_eq!(c.text().await, format!("43{ack}[true]"));
}

#[tokio::test]
async fn connect_answers_with_the_sid_and_the_connection_hook_runs_after() {
    let (_io, addr) = start().await;
    let mut c = Sio::open(addr).await;
    assert_eq!(c.open["upgrades"], json!([]));
    // Nothing before CONNECT.
    assert_eq!(c.quiet(Duration::from_millis(100)).await, None);
    c.send("40").await;
    let t = c.text().await;
    let v: Value = serde_json::from_str(t.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1, "{t}: sid alone without recovery");
    assert!(v["sid"].is_string());
    assert_eq!(c.event().await, json!(["auth", {}]));
    c.send(r#"40/custom,{"token":"abc"}"#).await;
    assert!(c.text().await.starts_with(r#"40/custom,{"sid":"#));
    assert_eq!(c.text().await, r#"42/custom,["auth",{"token":"abc"}]"#);
    // Without the comma too.
    let mut d = Sio::open(addr).await;
    d.send("40/custom").await;
    assert!(d.text().await.starts_with(r#"40/custom,{"sid":"#));
}

#[tokio::test]
async fn an_unknown_namespace_and_a_refusing_middleware_get_connect_error() {
    let (_io, addr) = start().await;
    let mut c = Sio::open(addr).await;
    c.send("40/random").await;
    assert_eq!(c.text().await, r#"44/random,{"message":"Invalid namespace"}"#);
    c.send(r#"40{"token":"bad"}"#).await;
    assert_eq!(c.text().await, r#"44{"data":{"reason":"bad token"},"message":"unauthorized"}"#);
    // The session stays: a good CONNECT still works.
    assert!(!c.connect("/", Some(r#"{"token":"good"}"#)).await.is_empty());
}

#[tokio::test]
async fn events_and_acks_carry_every_argument() {
    let (_io, addr) = start().await;
    let (mut c, _) = client(addr).await;
    c.send(r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(c.text().await, r#"42["message-back",1,"2",{"3":[true]}]"#);
    c.send(r#"42456["message-with-ack",1,"2",{"3":[false]}]"#).await;
    assert_eq!(c.text().await, r#"43456[1,"2",{"3":[false]}]"#);
    c.send(r#"42["message"]"#).await;
    assert_eq!(c.text().await, r#"42["message-back"]"#);
}

#[tokio::test]
async fn binary_events_and_acks_keep_their_attachments() {
    let (_io, addr) = start().await;
    let (mut c, _) = client(addr).await;
    let ph = |n: u8| format!(r#"{{"_placeholder":true,"num":{n}}}"#);
    c.send(&format!(r#"452-["message",{},{}]"#, ph(0), ph(1))).await;
    c.send_binary(&[1, 2, 3]).await;
    c.send_binary(&[4, 5, 6]).await;
    assert_eq!(c.text().await, format!(r#"452-["message-back",{},{}]"#, ph(0), ph(1)));
    assert_eq!(c.next().await, Frame::Binary(vec![1, 2, 3]));
    assert_eq!(c.next().await, Frame::Binary(vec![4, 5, 6]));
    c.send(&format!(r#"452-789["message-with-ack",{},{}]"#, ph(0), ph(1))).await;
    c.send_binary(&[1, 2, 3]).await;
    c.send_binary(&[4, 5, 6]).await;
    assert_eq!(c.text().await, format!(r#"462-789[{},{}]"#, ph(0), ph(1)));
    assert_eq!(c.next().await, Frame::Binary(vec![1, 2, 3]));
    assert_eq!(c.next().await, Frame::Binary(vec![4, 5, 6]));
}

#[tokio::test]
async fn malformed_packets_close_the_connection() {
    let (_io, addr) = start().await;
    for bad in ["4abc", r#"42{}"#, r#"42abc["message-with-ack",1]"#, r#"4_"#] {
        let (mut c, _) = client(addr).await;
        c.send(bad).await;
        assert!(c.closes().await, "{bad} must close the connection");
    }
    // Before CONNECT too.
    let mut c = Sio::open(addr).await;
    c.send("4abc").await;
    assert!(c.closes().await);
}

#[tokio::test]
async fn a_client_that_never_connects_is_closed_after_the_connect_timeout() {
    let (io, addr) = start().await;
    let mut c = Sio::open(addr).await;
    let t0 = std::time::Instant::now();
    assert!(c.closes().await);
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(3), "{waited:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(io.sessions(), 0);
}

#[tokio::test]
async fn leaving_a_namespace_keeps_the_session_and_runs_the_hook() {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let r = reasons.clone();
    let io = builder()
        .namespace(
            "/watched",
            Namespace::new().on_disconnect(move |s, why| r.lock().unwrap().push((s.id().to_owned(), why))),
        )
        .build();
    let addr = serve(io.clone()).await;
    let (mut c, _) = client(addr).await;
    let id = c.connect("/watched", None).await;
    c.send("41/watched,").await;
    c.send(r#"42["message","still here"]"#).await;
    assert_eq!(c.text().await, r#"42["message-back","still here"]"#);
    assert_eq!(*reasons.lock().unwrap(), vec![(id.clone(), DisconnectReason::ClientNamespaceDisconnect)]);
    // Events for a namespace it left are ignored.
    c.send(r#"42/watched,["x"]"#).await;
    assert_eq!(c.quiet(Duration::from_millis(100)).await, None);
    // Closing the connection is a transport close.
    let id2 = c.connect("/watched", None).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reasons.lock().unwrap().last(), Some(&(id2, DisconnectReason::TransportClose)));
}

#[tokio::test]
async fn the_server_asks_and_the_client_answers() {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let a = answers.clone();
    let io = builder()
        .namespace(
            "/ask",
            Namespace::new().on_connect(move |socket| {
                let a = a.clone();
                async move {
                    let got = socket.emit_with_ack("q", json!("sure?"), Duration::from_secs(2)).await;
                    a.lock().unwrap().push(got.map(|p| p.values().to_vec()).map_err(|e| e.to_string()));
                    let late = socket.emit_with_ack("q2", json!(1), Duration::from_millis(100)).await;
                    a.lock().unwrap().push(late.map(|p| p.values().to_vec()).map_err(|e| e.to_string()));
                }
            }),
        )
        .build();
    let addr = serve(io).await;
    let mut c = Sio::open(addr).await;
    c.connect("/ask", None).await;
    let t = c.text().await;
    let rest = t.strip_prefix("42/ask,").expect("an event with an id");
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(!id.is_empty(), "{t}");
    assert_eq!(&rest[id.len()..], r#"["q","sure?"]"#);
    c.send(&format!(r#"43/ask,{id}["yes",2]"#)).await;
    assert!(c.text().await.starts_with("42/ask,"), "the second question");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = answers.lock().unwrap().clone();
    assert_eq!(got[0], Ok(vec![json!("yes"), json!(2)]));
    assert!(got[1].as_ref().is_err_and(|e| e.contains("no acknowledgement within 100ms")), "{got:?}");
}

#[tokio::test]
async fn broadcasts_reach_rooms_but_not_the_sender_nor_excepted_rooms() {
    let (io, addr) = start().await;
    let (mut a, _) = client(addr).await;
    let (mut b, b_id) = client(addr).await;
    let (mut c, _) = client(addr).await;
    join(&mut a, "r", 1).await;
    join(&mut b, "r", 1).await;
    join(&mut b, "s", 2).await;
    join(&mut c, "s", 1).await;
    // publish: the room but the sender.
    a.send(r#"429["publish","r","news",1,{"x":[2]}]"#).await;
    assert_eq!(a.text().await, "439[true]");
    assert_eq!(b.event().await, json!(["news", 1, {"x": [2]}]));
    // Two rooms: each socket once; except a room.
    io.to("r").to("s").emit("both", json!(1));
    assert_eq!(a.event().await, json!(["both", 1]));
    assert_eq!(b.event().await, json!(["both", 1]));
    assert_eq!(c.event().await, json!(["both", 1]));
    io.to("r").except("s").emit("r-not-s", Payload::none());
    assert_eq!(a.event().await, json!(["r-not-s"]));
    // A socket's id is a room of its own.
    io.to(&b_id).emit("just-b", json!(true));
    assert_eq!(b.event().await, json!(["just-b", true]));
    // The whole namespace.
    io.emit("all", json!(0));
    for x in [&mut a, &mut b, &mut c] {
        assert_eq!(x.event().await, json!(["all", 0]));
    }
    for x in [&mut a, &mut b, &mut c] {
        assert_eq!(x.quiet(Duration::from_millis(100)).await, None, "nothing else");
    }
}

/// The hub's metrics count Socket.IO traffic as they count `wsx-hub.v1`'s:
/// each message a socket sends, each one it is sent (broadcasts included),
/// and their bytes.
#[tokio::test]
async fn socketio_traffic_is_in_the_hub_metrics() {
    let (io, addr) = start().await;
    let (mut a, _) = client(addr).await;
    let (mut b, _) = client(addr).await;
    join(&mut a, "r", 1).await;
    join(&mut b, "r", 1).await;
    let before = io.hub().metrics();
    a.send(r#"429["publish","r","news",1]"#).await;
    let (ack, news) = ("439[true]", r#"42["news",1]"#);
    assert_eq!(a.text().await, ack);
    assert_eq!(b.text().await, news);
    let after = io.hub().metrics();
    assert_eq!(after.messages_in - before.messages_in, 1);
    assert!(after.bytes_in > before.bytes_in);
    assert_eq!(after.messages_out - before.messages_out, 2, "the ack and the broadcast");
    assert_eq!(after.bytes_out - before.bytes_out, (ack.len() + news.len()) as u64);
}

#[tokio::test]
async fn namespaces_have_rooms_of_their_own() {
    let (io, addr) = start().await;
    let (mut main, _) = client(addr).await;
    join(&mut main, "r", 1).await;
    let mut custom = Sio::open(addr).await;
    custom.connect("/custom", None).await;
    assert_eq!(custom.text().await, r#"42/custom,["auth",{}]"#);
    custom.send(r#"42/custom,1["join","r"]"#).await;
    assert_eq!(custom.text().await, "43/custom,1[true]");
    io.of("/custom").to("r").emit("hi", json!("custom"));
    assert_eq!(custom.text().await, r#"42/custom,["hi","custom"]"#);
    assert_eq!(main.quiet(Duration::from_millis(100)).await, None);
    io.to("r").emit("hi", json!("main"));
    assert_eq!(main.event().await, json!(["hi", "main"]));
    assert_eq!(custom.quiet(Duration::from_millis(100)).await, None);
}

#[tokio::test]
async fn hub_clients_and_socketio_clients_share_rooms() {
    let hub = Hub::builder().build();
    let io = builder().hub(hub.clone()).build();
    let addr = serve(io).await;
    let (mut sio_client, _) = client(addr).await;
    join(&mut sio_client, "lobby", 1).await;
    let (mut hub_client, hub_id) = common::raw(addr).await;
    common::send(
        &mut hub_client,
        &wsx_hub::protocol::Packet::Join(wsx_hub::protocol::RoomRequest { room: "lobby".into(), id: Some(1) }),
    )
    .await;
    let _ack = common::next(&mut hub_client).await;
    // Socket.IO → hub: one argument is the data; more are spread.
    sio_client.send(r#"42["publish","lobby","say",{"text":"hi"}]"#).await;
    sio_client.send(r#"42["publish","lobby","pair",1,2]"#).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        if let wsx_hub::protocol::Packet::Event(e) = common::next(&mut hub_client).await {
            got.push((e.event, e.data, e.spread));
        }
    }
    assert_eq!(got[0], ("say".to_owned(), json!({"text": "hi"}), false));
    assert_eq!(got[1], ("pair".to_owned(), json!([1, 2]), true));
    // Hub → Socket.IO: the data is one argument.
    hub.broadcast_except("lobby", wsx_hub::Event::new("from-hub", json!({"n": 1})), &hub_id);
    assert_eq!(sio_client.event().await, json!(["from-hub", {"n": 1}]));
    // A hub request to a Socket.IO socket is answered by its ack.
    let sid = {
        sio_client.send(r#"427["whoami"]"#).await;
        let t = sio_client.text().await;
        let v: Value = serde_json::from_str(t.strip_prefix("437").unwrap()).unwrap();
        v[0]["id"].as_str().unwrap().to_owned()
    };
    let h = hub.clone();
    let asked = tokio::spawn(async move { h.request(&sid, wsx_hub::Event::new("q", json!(5))).await });
    let t = sio_client.text().await;
    let id: String = t.strip_prefix("42").unwrap().chars().take_while(char::is_ascii_digit).collect();
    sio_client.send(&format!(r#"43{id}[{{"ok":true}}]"#)).await;
    assert_eq!(asked.await.unwrap().unwrap(), json!({"ok": true}));
}

#[tokio::test]
async fn broadcasts_cross_nodes_once() {
    let bus = MemoryBus::new();
    let a = builder().hub(Hub::builder().node_id("a").broker(bus.broker()).build()).build();
    let b = builder().hub(Hub::builder().node_id("b").broker(bus.broker()).build()).build();
    let (addr_a, addr_b) = (serve(a.clone()).await, serve(b.clone()).await);
    let (mut on_a, _) = client(addr_a).await;
    let (mut on_b, on_b_id) = client(addr_b).await;
    let (mut muted_b, _) = client(addr_b).await;
    // A socket's id, from another node.
    a.to(&on_b_id).emit("to-id", json!(0));
    assert_eq!(on_b.event().await, json!(["to-id", 0]));
    join(&mut on_a, "r", 1).await;
    join(&mut on_b, "r", 1).await;
    join(&mut muted_b, "r", 1).await;
    join(&mut muted_b, "muted", 2).await;
    on_a.send(r#"42["publish","r","x",1]"#).await;
    assert_eq!(on_b.event().await, json!(["x", 1]));
    assert_eq!(muted_b.event().await, json!(["x", 1]));
    // Except a room, across nodes.
    a.to("r").except("muted").emit("y", json!(2));
    assert_eq!(on_a.event().await, json!(["y", 2]));
    assert_eq!(on_b.event().await, json!(["y", 2]));
    // Local: this node only.
    b.to("r").local().emit("z", json!(3));
    assert_eq!(on_b.event().await, json!(["z", 3]));
    assert_eq!(muted_b.event().await, json!(["z", 3]));
    for c in [&mut on_a, &mut on_b, &mut muted_b] {
        assert_eq!(c.quiet(Duration::from_millis(150)).await, None, "once, and not to the excepted");
    }
}

#[tokio::test]
async fn operators_fetch_join_and_disconnect_sockets() {
    let (io, addr) = start().await;
    let (mut a, a_id) = client(addr).await;
    let (mut b, _) = client(addr).await;
    join(&mut a, "r", 1).await;
    let ids: Vec<String> = io.to("r").fetch_sockets().iter().map(|s| s.id().to_owned()).collect();
    assert_eq!(ids, vec![a_id.clone()]);
    io.to("r").join("s").await;
    io.to("s").emit("in-s", json!(1));
    assert_eq!(a.event().await, json!(["in-s", 1]));
    let everyone = io.of("/");
    let answers = everyone.emit_with_ack("vote", json!("?"), Duration::from_millis(500));
    let (answers, _) = tokio::join!(answers, async {
        for c in [&mut a, &mut b] {
            let t = c.text().await;
            let id: String = t.strip_prefix("42").unwrap().chars().take_while(char::is_ascii_digit).collect();
            c.send(&format!("43{id}[\"aye\"]")).await;
        }
    });
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|p| p.values() == [json!("aye")])), "{answers:?}");
    io.to(&a_id).disconnect();
    assert_eq!(a.text().await, "41");
    assert!(io.to("r").fetch_sockets().is_empty());
}

#[tokio::test]
async fn a_client_that_lost_its_connection_recovers_its_state_and_missed_events() {
    let io = builder().connection_state_recovery(Duration::from_secs(30)).build();
    let addr = serve(io.clone()).await;
    let mut a = Sio::open(addr).await;
    a.send("40").await;
    let t = a.text().await;
    let hs: Value = serde_json::from_str(t.strip_prefix("40").unwrap()).unwrap();
    let (sid, pid) = (hs["sid"].as_str().unwrap().to_owned(), hs["pid"].as_str().unwrap().to_owned());
    let auth = a.event().await;
    assert_eq!((&auth[0], &auth[1]), (&json!("auth"), &json!({})));
    assert!(auth[2].is_string(), "with recovery, an emit to one socket carries an offset too: {auth}");
    join(&mut a, "r", 1).await;
    io.to("r").emit("first", json!(1));
    let first = a.event().await;
    assert_eq!((&first[0], &first[1]), (&json!("first"), &json!(1)));
    let offset = first[2].as_str().expect("a broadcast carries its offset last").to_owned();
    drop(a); // the connection is lost, not closed by the client
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 2..5 {
        io.to("r").emit("missed", json!(n));
    }
    let mut back = Sio::open(addr).await;
    back.send(&format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#)).await;
    let t = back.text().await;
    let hs2: Value = serde_json::from_str(t.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(hs2["sid"], json!(sid), "the same id");
    for n in 2..5 {
        let e = back.event().await;
        assert_eq!((&e[0], &e[1]), (&json!("missed"), &json!(n)), "missed events, in order");
    }
    // Middlewares are skipped by default but the connection hook runs.
    assert_eq!(back.event().await[0], json!("auth"));
    back.send(r#"421["whoami"]"#).await;
    let t = back.text().await;
    let who: Value = serde_json::from_str(t.strip_prefix("431").unwrap()).unwrap();
    assert_eq!(who[0]["rooms"], json!(["r"]));
    // A second try with the same pid does not recover.
    let mut again = Sio::open(addr).await;
    again.send(&format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#)).await;
    let t = again.text().await;
    let hs3: Value = serde_json::from_str(t.strip_prefix("40").unwrap()).unwrap();
    assert_ne!(hs3["sid"], json!(sid));
}

#[tokio::test]
async fn leaving_on_purpose_is_not_recovered() {
    let io = builder().connection_state_recovery(Duration::from_secs(30)).build();
    let addr = serve(io.clone()).await;
    let mut a = Sio::open(addr).await;
    a.send("40").await;
    let hs: Value = serde_json::from_str(a.text().await.strip_prefix("40").unwrap()).unwrap();
    let _ = a.event().await;
    io.emit("x", json!(1));
    let offset = a.event().await[2].as_str().unwrap().to_owned();
    a.send("41").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut back = Sio::open(addr).await;
    back.send(&format!(r#"40{{"pid":"{}","offset":"{offset}"}}"#, hs["pid"].as_str().unwrap())).await;
    let hs2: Value = serde_json::from_str(back.text().await.strip_prefix("40").unwrap()).unwrap();
    assert_ne!(hs2["sid"], hs["sid"]);
}

#[tokio::test]
async fn attachments_are_bounded_and_must_follow_their_header() {
    let io = builder()
        .decode_limits(wsx_hub::socketio::packet::DecodeLimits { max_attachments: 4, max_attachment_bytes: 1000 })
        .build();
    let addr = serve(io.clone()).await;
    let ph = r#"{"_placeholder":true,"num":0}"#;
    // More attachments than allowed: closed at the header.
    let (mut c, _) = client(addr).await;
    c.send(&format!(r#"455-["message",{ph}]"#)).await;
    assert!(c.closes().await);
    // More bytes than allowed: closed at the attachment.
    let (mut c, _) = client(addr).await;
    c.send(&format!(r#"451-["message",{ph}]"#)).await;
    c.send_binary(&[0u8; 1001]).await;
    assert!(c.closes().await);
    // A header whose attachments never come holds only the header; a text
    // packet before they come is a protocol error.
    let (mut c, _) = client(addr).await;
    c.send(&format!(r#"452-["message",{ph},{}]"#, ph.replace('0', "1"))).await;
    c.send_binary(&[1]).await;
    assert_eq!(c.quiet(Duration::from_millis(100)).await, None);
    c.send(r#"42["message",1]"#).await;
    assert!(c.closes().await);
    // A binary frame nobody announced.
    let (mut c, _) = client(addr).await;
    c.send_binary(&[1, 2]).await;
    assert!(c.closes().await);
    // The server is still up for the others.
    let (mut ok, _) = client(addr).await;
    ok.send(r#"42["message","fine"]"#).await;
    assert_eq!(ok.event().await, json!(["message-back", "fine"]));
}

/// A node keeps receiving the rooms of a session it keeps for recovery:
/// what another node publishes to them while the client is away is
/// replayed when it comes back.
#[tokio::test]
async fn recovery_replays_what_other_nodes_sent_while_the_client_was_away() {
    let bus = MemoryBus::new();
    let node = |id: &str| {
        builder()
            .hub(Hub::builder().node_id(id).broker(bus.broker()).build())
            .connection_state_recovery(Duration::from_secs(30))
            .build()
    };
    let (a, b) = (node("a"), node("b"));
    let (addr_a, addr_b) = (serve(a.clone()).await, serve(b.clone()).await);
    let mut on_a = Sio::open(addr_a).await;
    on_a.send("40").await;
    let hs: Value = serde_json::from_str(on_a.text().await.strip_prefix("40").unwrap()).unwrap();
    let _auth = on_a.event().await;
    join(&mut on_a, "r", 1).await;
    let mut on_b = Sio::open(addr_b).await;
    on_b.connect("/", None).await;
    assert_eq!(on_b.event().await[0], json!("auth"));
    join(&mut on_b, "r", 1).await;
    on_b.send(r#"42["publish","r","before",0]"#).await;
    let before = on_a.event().await;
    let offset = before[2].as_str().unwrap().to_owned();
    drop(on_a); // a's only member of "r" is gone
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 1..4 {
        on_b.send(&format!(r#"42["publish","r","missed",{n}]"#)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut back = Sio::open(addr_a).await;
    back.send(&format!(r#"40{{"pid":"{}","offset":"{offset}"}}"#, hs["pid"].as_str().unwrap())).await;
    let hs2: Value = serde_json::from_str(back.text().await.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(hs2["sid"], hs["sid"]);
    for n in 1..4 {
        let e = back.event().await;
        assert_eq!((&e[0], &e[1]), (&json!("missed"), &json!(n)));
    }
}

/// A client that comes back to another node (no sticky sessions) gets its
/// session from the node that kept it: same id, rooms, data and missed
/// broadcasts; and what is sent to its id from anywhere reaches it there.
#[tokio::test]
async fn recovery_on_another_node_through_the_broker() {
    let bus = MemoryBus::new();
    let node = |id: &str| {
        let hub = Hub::builder().node_id(id).broker(bus.broker()).build();
        builder().hub(hub).connection_state_recovery(Duration::from_secs(30)).build()
    };
    let (a, b) = (node("a"), node("b"));
    let (addr_a, addr_b) = (serve(a.clone()).await, serve(b.clone()).await);
    let mut on_a = Sio::open(addr_a).await;
    on_a.send("40").await;
    let hs: Value = serde_json::from_str(on_a.text().await.strip_prefix("40").unwrap()).unwrap();
    let sid = hs["sid"].as_str().unwrap().to_owned();
    assert_eq!(on_a.event().await[0], json!("auth"));
    join(&mut on_a, "r", 1).await;
    a.to("r").emit("before", json!(0));
    let offset = on_a.event().await[2].as_str().unwrap().to_owned();
    drop(on_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.to("r").emit("missed", json!(1)); // from the other node
    tokio::time::sleep(Duration::from_millis(100)).await; // (no order between nodes)
    a.to("r").emit("missed", json!(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Back, on node b.
    let mut back = Sio::open(addr_b).await;
    back.send(&format!(r#"40{{"pid":"{}","offset":"{offset}"}}"#, hs["pid"].as_str().unwrap())).await;
    let hs2: Value = serde_json::from_str(back.text().await.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(hs2["sid"], json!(sid), "the same id, on another node");
    assert_eq!(hs2["pid"], hs["pid"], "the private id back: the client knows it recovered");
    for n in 1..3 {
        let e = back.event().await;
        assert_eq!((&e[0], &e[1]), (&json!("missed"), &json!(n)));
    }
    assert_eq!(back.event().await[0], json!("auth"));
    back.send(r#"421["whoami"]"#).await;
    let who: Value = serde_json::from_str(back.text().await.strip_prefix("431").unwrap()).unwrap();
    assert_eq!(who[0]["rooms"], json!(["r"]));
    // Live: the room from node a, its id from node a, a direct hub emit
    // from node a (forwarded by a, which its id names).
    a.to("r").emit("live", json!(3));
    let e = back.event().await;
    assert_eq!((&e[0], &e[1]), (&json!("live"), &json!(3)));
    a.to(&sid).emit("to-id", json!(4));
    let e = back.event().await;
    assert_eq!((&e[0], &e[1]), (&json!("to-id"), &json!(4)));
    a.hub().emit(&sid, wsx_hub::Event::new("direct", json!(5))).unwrap();
    let e = back.event().await;
    assert_eq!((&e[0], &e[1]), (&json!("direct"), &json!(5)));
}

#[tokio::test]
async fn a_request_handler_answers_the_ack_with_its_result() {
    #[derive(serde::Deserialize)]
    struct Sum {
        a: i64,
        b: i64,
    }
    let io = builder()
        .namespace(
            "/req",
            Namespace::new().on_request("sum", |_socket, msg| async move {
                let Sum { a, b } = msg.data()?;
                Ok(Payload::of(&(a + b))?)
            }),
        )
        .build();
    let addr = serve(io).await;
    let mut c = Sio::open(addr).await;
    c.connect("/req", None).await;
    c.send(r#"42/req,5["sum",{"a":2,"b":3}]"#).await;
    assert_eq!(c.text().await, "43/req,5[5]");
    c.send(r#"42/req,6["sum","nope"]"#).await;
    let t = c.text().await;
    assert!(t.starts_with(r#"43/req,6[{"error":"#), "{t}");
    // No ack asked: nothing.
    c.send(r#"42/req,["sum",{"a":1,"b":1}]"#).await;
    assert_eq!(c.quiet(Duration::from_millis(100)).await, None);
}

/// A broadcast with acks gathers the answers of the sockets of every node.
#[tokio::test]
async fn a_broadcast_with_acks_gathers_answers_from_every_node() {
    let bus = MemoryBus::new();
    let a = builder().hub(Hub::builder().node_id("a").broker(bus.broker()).build()).build();
    let b = builder().hub(Hub::builder().node_id("b").broker(bus.broker()).build()).build();
    let (addr_a, addr_b) = (serve(a.clone()).await, serve(b.clone()).await);
    let (mut on_a, _) = client(addr_a).await;
    let (mut on_b, _) = client(addr_b).await;
    let (mut silent_b, _) = client(addr_b).await;
    for c in [&mut on_a, &mut on_b, &mut silent_b] {
        join(c, "voters", 1).await;
    }
    let everyone = a.to("voters");
    let gathering = everyone.emit_with_ack("vote", json!("?"), Duration::from_millis(400));
    let (answers, _) = tokio::join!(gathering, async {
        for (c, answer) in [(&mut on_a, r#"["yes",1]"#), (&mut on_b, r#"["no"]"#)] {
            let t = c.text().await;
            let id: String = t.strip_prefix("42").unwrap().chars().take_while(char::is_ascii_digit).collect();
            c.send(&format!("43{id}{answer}")).await;
        }
        let _ = silent_b.text().await; // asked, never answers
    });
    let mut got: Vec<String> = answers
        .iter()
        .map(|a| match a {
            Ok(p) => serde_json::to_string(p.values()).unwrap(),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![r#"["no"]"#.to_owned(), r#"["yes",1]"#.to_owned(), "error: no acknowledgement within 400ms".to_owned()]
    );
}
