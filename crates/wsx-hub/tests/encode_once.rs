//! A broadcast is encoded once and shared by every recipient: members that
//! negotiated different compression (none, the server's default, another
//! window size) all read every broadcast intact, from a client's publish,
//! `Hub::broadcast` and `Hub::broadcast_all`.

mod common;

use common::*;
use serde_json::{json, Value};
use wsx::proto::deflate::DeflateConfig;
use wsx_hub::protocol::{Packet, PublishPacket, SUBPROTOCOL};
use wsx_hub::{Event, Hub};

/// A client with this compression offer, past its welcome, and its id.
async fn connect(addr: std::net::SocketAddr, config: wsx::Config) -> (Ws, String) {
    let r = http::Request::get(format!("ws://{addr}/")).header("sec-websocket-protocol", SUBPROTOCOL);
    let (mut ws, _) = wsx::connect_with(r.body(()).unwrap(), &config).await.unwrap();
    match next(&mut ws).await {
        Packet::Welcome(w) => (ws, w.conn),
        other => panic!("expected a welcome, got {other:?}"),
    }
}

/// Members of room `r`, one per client configuration, with their ids.
async fn members(addr: std::net::SocketAddr, configs: Vec<wsx::Config>) -> (Vec<Ws>, Vec<String>) {
    let (mut members, mut ids) = (Vec::new(), Vec::new());
    for c in configs {
        let (mut ws, id) = connect(addr, c).await;
        join(&mut ws, "r", 1).await;
        members.push(ws);
        ids.push(id);
    }
    (members, ids)
}

/// The next event (presence and other packets skipped).
async fn next_event(ws: &mut Ws) -> (String, Value) {
    loop {
        if let Packet::Event(e) = next(ws).await {
            return (e.event, e.data);
        }
    }
}

/// Every member reads this event next.
async fn expect_all(members: &mut [Ws], event: &str, data: Value) {
    for (i, ws) in members.iter_mut().enumerate() {
        assert_eq!(next_event(ws).await, (event.to_owned(), data.clone()), "member {i}");
    }
}

#[tokio::test]
async fn members_with_different_compression_read_every_broadcast() {
    let (hub, addr) = start(Hub::builder()).await;
    let (mut members, _) = members(
        addr,
        vec![
            wsx::Config::default().with_compression(false),
            wsx::Config::default().with_compression(true),
            wsx::Config::default().with_compression(true),
            wsx::Config::default().with_deflate(DeflateConfig::default().with_server_max_window_bits(10)),
        ],
    )
    .await;
    // Past the hub's 1 KiB compression threshold.
    let big = "the same news for everyone, ".repeat(100);
    let publish = Packet::Publish(PublishPacket {
        room: "r".into(),
        event: "published".into(),
        data: json!(big),
        id: None,
        echo: true,
        attachments: vec![],
    });
    send(&mut members[0], &publish).await;
    expect_all(&mut members, "published", json!(big)).await;
    hub.broadcast("r", Event::new("broadcast", json!({ "text": big })));
    expect_all(&mut members, "broadcast", json!({ "text": big })).await;
    hub.broadcast_all(Event::new("everyone", json!([big, 1])));
    expect_all(&mut members, "everyone", json!([big, 1])).await;
    hub.broadcast("r", Event::new("small", json!(1)));
    expect_all(&mut members, "small", json!(1)).await;
}

/// A hub that allows server context takeover: members that keep it get
/// broadcasts compressed by their own compressor, in sequence with what
/// else is sent to them (a shared frame there would leave the client's
/// window holding bytes the server's does not, RFC 7692 §7.1.1.1, and
/// corrupt the next message that refers back).
#[tokio::test]
async fn members_with_context_takeover_stay_in_step() {
    let config = wsx::Config::default().with_deflate(DeflateConfig::default());
    let (hub, addr) = start(Hub::builder().config(config)).await;
    let (mut members, ids) = members(
        addr,
        vec![
            wsx::Config::default().with_deflate(DeflateConfig::default()),
            wsx::Config::default().with_deflate(DeflateConfig::default().with_server_no_context_takeover(true)),
            wsx::Config::default().with_compression(false),
        ],
    )
    .await;
    let big = |n: u32| json!(format!("{n}: the same news for everyone, ").repeat(60));
    for round in 0..3 {
        hub.broadcast("r", Event::new("broadcast", big(round)));
        expect_all(&mut members, "broadcast", big(round)).await;
        for id in &ids {
            hub.emit(id, Event::new("direct", big(round + 10))).unwrap();
        }
        expect_all(&mut members, "direct", big(round + 10)).await;
    }
}
