//! The hub over real sockets: rooms, presence, broadcasts, handlers, acks,
//! malformed frames.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use wsx_hub::protocol::{codes, AckPacket, EventPacket, Packet, PublishPacket, RoomRequest};
use wsx_hub::{AckError, Event, HandlerError, Hub};

fn join(room: &str, id: u64) -> Packet {
    Packet::Join(RoomRequest { room: room.into(), id: Some(id) })
}

fn publish(room: &str, event: &str, data: Value) -> Packet {
    Packet::Publish(PublishPacket {
        room: room.into(),
        event: event.into(),
        data,
        id: None,
        echo: false,
        attachments: vec![],
    })
}

fn ack_of(p: Packet) -> AckPacket {
    match p {
        Packet::Ack(a) => a,
        other => panic!("expected an ack, got {other:?}"),
    }
}

#[tokio::test]
async fn rooms_presence_and_publish() {
    let (hub, addr) = start(Hub::builder()).await;
    let (mut a, id_a) = raw(addr).await;
    let (mut b, id_b) = raw(addr).await;
    assert!(id_a.starts_with(hub.node_id()));

    send(&mut a, &join("lobby", 1)).await;
    let ack = ack_of(next(&mut a).await);
    assert_eq!(ack.id, 1);
    assert_eq!(ack.result.as_ref().unwrap()["members"][0]["conn"], json!(id_a));
    assert_eq!(ack.result.as_ref().unwrap()["count"], json!(1));

    send(&mut b, &join("lobby", 7)).await;
    let joined = ack_of(next(&mut b).await).result.unwrap();
    assert_eq!(joined["members"].as_array().unwrap().len(), 2, "{joined}");
    assert_eq!(joined["count"], json!(2));
    let p = presence_of(&mut a, &id_b, true).await;
    assert_eq!((p.room.as_str(), p.count), ("lobby", 2));
    assert_eq!(hub.members("lobby").await.len(), 2);
    assert_eq!(hub.rooms()[0].local_members, 2);

    // Publish: everyone but the sender.
    send(&mut a, &publish("lobby", "chat", json!({"text": "hi"}))).await;
    match next(&mut b).await {
        Packet::Event(e) => {
            assert_eq!(e.event, "chat");
            assert_eq!(e.data, json!({"text": "hi"}));
            assert_eq!(e.room.as_deref(), Some("lobby"));
            assert_eq!(e.from.as_deref(), Some(id_a.as_str()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(quiet(&mut a, Duration::from_millis(50)).await, None);

    // Publish with echo and an ack; binary attachments.
    let mut p = PublishPacket {
        room: "lobby".into(),
        event: "file".into(),
        data: json!({"name": "x.bin"}),
        id: Some(2),
        echo: true,
        attachments: vec![vec![0u8, 1, 2, 255].into(), vec![].into()],
    };
    send(&mut a, &Packet::Publish(p.clone())).await;
    let mut got_ack = false;
    let mut got_echo = false;
    for _ in 0..2 {
        match next(&mut a).await {
            Packet::Ack(ack) => got_ack = ack.id == 2 && ack.result == Ok(Value::Null),
            Packet::Event(e) => got_echo = e.attachments == p.attachments,
            other => panic!("{other:?}"),
        }
    }
    assert!(got_ack && got_echo);
    match next(&mut b).await {
        Packet::Event(e) => assert_eq!(e.attachments.len(), 2),
        other => panic!("{other:?}"),
    }

    // Publishing to a room one has not joined.
    p.room = "elsewhere".into();
    p.id = Some(3);
    send(&mut a, &Packet::Publish(p)).await;
    let err = ack_of(next(&mut a).await).result.unwrap_err();
    assert_eq!(err.code, codes::NOT_MEMBER);

    // Leave and disconnect: presence leave events.
    send(&mut b, &Packet::Leave(RoomRequest { room: "lobby".into(), id: Some(8) })).await;
    assert_eq!(ack_of(next(&mut b).await).id, 8);
    assert_eq!(presence_of(&mut a, &id_b, false).await.count, 1);
    send(&mut b, &join("lobby", 9)).await;
    let _ = next(&mut b).await;
    presence_of(&mut a, &id_b, true).await;
    b.close(wsx::CloseCode::Normal, "").await.unwrap();
    assert_eq!(presence_of(&mut a, &id_b, false).await.count, 1);
    eventually(|| hub.connections().len() == 1).await;
}

#[tokio::test]
async fn handlers_acks_and_server_requests() {
    let b = Hub::builder()
        .on("echo", |_ctx, ev| async move { Ok(json!({"data": ev.data, "attachments": ev.attachments.len()})) })
        .on("fail", |_ctx, _ev| async move { Err(HandlerError::new("nope", "it failed")) })
        .on("boom", |_ctx, _ev| async move {
            if true {
                panic!("handler panic (expected by the test)");
            }
            Ok(Value::Null)
        })
        .on("shout", |ctx, ev| async move {
            ctx.broadcast_all(Event::new("shouted", ev.data));
            Ok(Value::Null)
        })
        // A handler that asks its own client and waits for the answer.
        .on("confirm", |ctx, _ev| async move {
            let answer = ctx.request(Event::new("sure?", json!({}))).await?;
            Ok(json!({"client said": answer}))
        })
        .ack_timeout(Duration::from_secs(2));
    let (hub, addr) = start(b).await;
    let (mut a, _) = raw(addr).await;
    let (mut c, _) = raw(addr).await;

    let mut ev = EventPacket::new("echo", json!([1, 2])).with_id(1);
    ev.attachments.push(b"abc".to_vec().into());
    send(&mut a, &Packet::Event(ev)).await;
    assert_eq!(ack_of(next(&mut a).await).result, Ok(json!({"data": [1, 2], "attachments": 1})));

    send(&mut a, &Packet::Event(EventPacket::new("fail", Value::Null).with_id(2))).await;
    assert_eq!(ack_of(next(&mut a).await).result.unwrap_err().code, "nope");
    send(&mut a, &Packet::Event(EventPacket::new("boom", Value::Null).with_id(3))).await;
    assert_eq!(ack_of(next(&mut a).await).result.unwrap_err().code, codes::HANDLER_ERROR);
    send(&mut a, &Packet::Event(EventPacket::new("missing", Value::Null).with_id(4))).await;
    assert_eq!(ack_of(next(&mut a).await).result.unwrap_err().code, codes::UNKNOWN_EVENT);
    send(&mut a, &Packet::Event(EventPacket::new("missing", Value::Null))).await;
    assert!(matches!(next(&mut a).await, Packet::Error(e) if e.error.code == codes::UNKNOWN_EVENT));

    // Broadcast to all but the sender.
    send(&mut a, &Packet::Event(EventPacket::new("shout", json!("hey")))).await;
    assert!(matches!(next(&mut c).await, Packet::Event(e) if e.event == "shouted" && e.data == json!("hey")));
    assert_eq!(quiet(&mut a, Duration::from_millis(50)).await, None);
    hub.broadcast_all(Event::new("all", json!(1)));
    assert!(matches!(next(&mut a).await, Packet::Event(e) if e.event == "all"));
    assert!(matches!(next(&mut c).await, Packet::Event(e) if e.event == "all"));

    // The handler waits for the client's ack while the connection keeps reading.
    send(&mut a, &Packet::Event(EventPacket::new("confirm", Value::Null).with_id(5))).await;
    let req = match next(&mut a).await {
        Packet::Event(e) if e.event == "sure?" => e,
        other => panic!("{other:?}"),
    };
    send(&mut a, &Packet::Ack(AckPacket { id: req.id.unwrap(), result: Ok(json!("yes")) })).await;
    assert_eq!(ack_of(next(&mut a).await).result, Ok(json!({"client said": "yes"})));
}

#[tokio::test]
async fn requests_time_out_or_fail_on_disconnect() {
    let (hub, addr) = start(Hub::builder()).await;
    let (mut a, id_a) = raw(addr).await;
    let h = hub.clone();
    let id = id_a.clone();
    let req =
        tokio::spawn(
            async move { h.request_timeout(&id, Event::new("q", json!(1)), Duration::from_millis(100)).await },
        );
    assert!(matches!(next(&mut a).await, Packet::Event(e) if e.id.is_some()));
    assert_eq!(req.await.unwrap(), Err(AckError::Timeout(Duration::from_millis(100))));
    assert_eq!(hub.metrics().acks_timed_out, 1);

    // An ack from another connection does not answer it.
    let (mut b, _) = raw(addr).await;
    let h = hub.clone();
    let id = id_a.clone();
    let req = tokio::spawn(async move { h.request(&id, Event::new("q", json!(2))).await });
    let rid = match next(&mut a).await {
        Packet::Event(e) => e.id.unwrap(),
        other => panic!("{other:?}"),
    };
    send(&mut b, &Packet::Ack(AckPacket { id: rid, result: Ok(json!("forged")) })).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!req.is_finished());
    a.close(wsx::CloseCode::Normal, "").await.unwrap();
    assert_eq!(req.await.unwrap(), Err(AckError::Disconnected));
    assert!(matches!(
        hub.request_timeout("nobody.1", Event::new("q", json!(0)), Duration::from_millis(50)).await,
        Err(AckError::NoSuchConnection(_)) | Err(AckError::Timeout(_))
    ));
}

#[tokio::test]
async fn malformed_frames_get_errors_then_a_close() {
    let (hub, addr) = start(Hub::builder().max_bad_frames(3)).await;
    let (mut a, _) = raw(addr).await;
    send_text(&mut a, "not json").await;
    assert!(matches!(next(&mut a).await, Packet::Error(e) if e.error.code == codes::BAD_FRAME));
    send_text(&mut a, r#"{"t":"teleport"}"#).await;
    assert!(matches!(next(&mut a).await, Packet::Error(e) if e.error.code == codes::UNKNOWN_TYPE));
    a.send(wsx::Message::binary(vec![0u8, 0, 0, 200, 1])).await.unwrap();
    assert!(matches!(next(&mut a).await, Packet::Error(e) if e.error.code == codes::BAD_FRAME));
    // A server-only packet type from a client counts too: the 4th closes.
    send_text(&mut a, r#"{"t":"welcome","v":1,"conn":"x"}"#).await;
    assert_eq!(close_of(&mut a).await, (1008, "too many invalid frames".into()));
    assert!(hub.metrics_text().contains("wsx_hub_bad_frames_total 4"));
}

#[tokio::test]
async fn room_and_message_limits() {
    let b = Hub::builder().max_room_members(1).max_rooms_per_connection(1).max_message_size(1024);
    let (_hub, addr) = start(b).await;
    let (mut a, _) = raw(addr).await;
    let (mut b, _) = raw(addr).await;
    send(&mut a, &join("r1", 1)).await;
    assert!(ack_of(next(&mut a).await).result.is_ok());
    send(&mut a, &join("r2", 2)).await;
    assert_eq!(ack_of(next(&mut a).await).result.unwrap_err().code, codes::TOO_MANY_ROOMS);
    send(&mut b, &join("r1", 3)).await;
    assert_eq!(ack_of(next(&mut b).await).result.unwrap_err().code, codes::ROOM_FULL);
    send(&mut b, &join("", 4)).await;
    assert_eq!(ack_of(next(&mut b).await).result.unwrap_err().code, codes::BAD_FRAME);
    // Too big: 1009.
    b.send(wsx::Message::text("x".repeat(2000))).await.unwrap();
    assert_eq!(close_of(&mut b).await.0, 1009);
}

#[tokio::test]
async fn metrics_and_not_found() {
    let (hub, addr) = start(Hub::builder()).await;
    let (mut a, _) = raw(addr).await;
    send(&mut a, &join("r", 1)).await;
    let _ = next(&mut a).await;
    let text = http_get(addr, "/metrics", &[]).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/plain; version=0.0.4"));
    for line in [
        "wsx_hub_connections 1",
        "wsx_hub_rooms 1",
        "wsx_hub_messages_in_total 1",
        "wsx_hub_messages_out_total 2",
        "wsx_hub_broker_up{broker=\"memory\"} 1",
        "wsx_hub_broker_state{state=\"connected\"} 1",
        "wsx_hub_dropped_messages_total 0",
        "wsx_hub_acks_timed_out_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(hub.metrics().bytes_in > 0);
    assert!(http_get(addr, "/nothing", &[]).await.starts_with("HTTP/1.1 404"));
}
