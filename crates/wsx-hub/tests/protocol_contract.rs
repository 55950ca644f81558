//! PROTOCOL.md is the contract: each test here checks one of its rules
//! that a client author relies on, against the reference server.

mod common;

use common::*;
use serde_json::json;
use wsx_hub::protocol::{codes, Packet, PublishPacket, RoomRequest};
use wsx_hub::Hub;

fn publish(room: &str, id: u64) -> Packet {
    Packet::Publish(PublishPacket {
        room: room.into(),
        event: "e".into(),
        data: json!(null),
        id: Some(id),
        echo: false,
        attachments: vec![],
    })
}

/// The code of the refusal of request `id`.
async fn refusal_code(ws: &mut Ws, id: u64) -> String {
    match next(ws).await {
        Packet::Ack(a) if a.id == id => a.result.expect_err("a refusal").code,
        other => panic!("expected the refusal of {id}, got {other:?}"),
    }
}

/// "Malformed input": malformed frames, unknown types and server-only types
/// count toward the limit (16 answered, the 17th closes with 1008);
/// refusals of valid packets (`not_member`, `unknown_event`, `room_full`,
/// `too_many_rooms`) do not.
#[tokio::test]
async fn only_invalid_frames_count_toward_the_bad_frame_limit() {
    let (hub, addr) = start(Hub::builder().max_room_members(1).max_rooms_per_connection(1)).await;
    let (mut other, _) = raw(addr).await;
    send(&mut other, &Packet::Join(RoomRequest { room: "full".into(), id: Some(1) })).await;
    assert!(matches!(next(&mut other).await, Packet::Ack(a) if a.result.is_ok()));

    let (mut ws, _) = raw(addr).await;
    // 40 refusals of valid packets: none counts.
    for i in 0..10 {
        send(&mut ws, &publish("elsewhere", 100 + i)).await;
        assert_eq!(refusal_code(&mut ws, 100 + i).await, codes::NOT_MEMBER);
        send_text(&mut ws, &format!(r#"{{"t":"event","event":"nobody","id":{}}}"#, 200 + i)).await;
        assert_eq!(refusal_code(&mut ws, 200 + i).await, codes::UNKNOWN_EVENT);
        send(&mut ws, &Packet::Join(RoomRequest { room: "full".into(), id: Some(300 + i) })).await;
        assert_eq!(refusal_code(&mut ws, 300 + i).await, codes::ROOM_FULL);
    }
    send(&mut ws, &Packet::Join(RoomRequest { room: "mine".into(), id: Some(1) })).await;
    assert!(matches!(next(&mut ws).await, Packet::Ack(a) if a.result.is_ok()));
    for i in 0..10 {
        send(&mut ws, &Packet::Join(RoomRequest { room: "second".into(), id: Some(400 + i) })).await;
        assert_eq!(refusal_code(&mut ws, 400 + i).await, codes::TOO_MANY_ROOMS);
    }
    // 16 invalid frames of every kind: each answered.
    let invalid = [
        r#"not json"#,
        r#"{"t":"join"}"#,
        r#"{"t":"join","room":"","id":1}"#,
        r#"{"t":"teleport","id":2}"#,
        r#"{"t":"welcome","v":1,"conn":"x.1","id":3}"#,
        r#"{"t":"presence","room":"r","count":1}"#,
        r#"{"t":"error","error":{"code":"c","message":"m"}}"#,
        r#"{"t":"event","event":"e","attachments":1}"#,
    ];
    for i in 0..16 {
        send_text(&mut ws, invalid[i % invalid.len()]).await;
        match next(&mut ws).await {
            Packet::Ack(a) => {
                let code = a.result.expect_err("a refusal").code;
                assert!(code == codes::BAD_FRAME || code == codes::UNKNOWN_TYPE, "{code}")
            }
            Packet::Error(e) => {
                assert!(e.error.code == codes::BAD_FRAME || e.error.code == codes::UNKNOWN_TYPE, "{e:?}")
            }
            other => panic!("frame {i}: expected a refusal, got {other:?}"),
        }
    }
    // The 17th closes.
    send_text(&mut ws, r#"{"t":"welcome","v":1,"conn":"x.1"}"#).await;
    assert_eq!(close_of(&mut ws).await, (1008, "too many invalid frames".into()));
    assert!(hub.metrics_text().lines().any(|l| l == "wsx_hub_bad_frames_total 17"), "{}", hub.metrics_text());
}

/// "`join`": the ack counts the room and lists its members, the joiner
/// included; every member (the joiner too) then gets a `presence` packet
/// with the join and the new count.
#[tokio::test]
async fn a_join_ack_counts_and_lists_the_joiner() {
    let (_hub, addr) = start(Hub::builder()).await;
    let (mut a, id_a) = raw(addr).await;
    let joined = join(&mut a, "r", 1).await;
    assert_eq!(joined, json!({"room": "r", "count": 1, "members": [{"conn": id_a, "meta": null}]}));

    let (mut b, id_b) = raw(addr).await;
    send(&mut b, &Packet::Join(RoomRequest { room: "r".into(), id: Some(2) })).await;
    let joined = match next(&mut b).await {
        Packet::Ack(ack) => ack.result.unwrap(),
        other => panic!("{other:?}"),
    };
    let mut want = [id_a.as_str(), id_b.as_str()];
    want.sort_unstable();
    let want: Vec<_> = want.iter().map(|c| json!({"conn": c, "meta": null})).collect();
    assert_eq!(joined, json!({"room": "r", "count": 2, "members": want}), "in the order of connection ids");
    for ws in [&mut a, &mut b] {
        assert_eq!(presence_of(ws, &id_b, true).await.count, 2);
    }
}

/// "Server-Sent Events": a missing, empty or too long room is refused with
/// 400 before the stream starts; a room of 200 bytes is streamed.
#[tokio::test]
async fn sse_refuses_a_missing_empty_or_too_long_room_with_400() {
    let (_hub, addr) = start(Hub::builder()).await;
    let long = "a".repeat(201);
    for path in ["/events".to_owned(), "/events?room=".to_owned(), format!("/events?room={long}")] {
        let resp = http_get(addr, &path, &[]).await;
        assert!(resp.starts_with("HTTP/1.1 400 "), "{path}: {resp}");
    }
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /events?room={} HTTP/1.1\r\nHost: {addr}\r\n\r\n", "a".repeat(200));
    tokio::io::AsyncWriteExt::write_all(&mut tcp, req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&buf[..n]));
}

/// "Before the upgrade": the hub's endpoint is `/` (with any query); an
/// upgrade on another path gets 404.
#[tokio::test]
async fn an_upgrade_off_the_hub_path_gets_404() {
    let (_hub, addr) = start(Hub::builder()).await;
    for path in ["/ws", "/events", "/metrics", "/hub/"] {
        match try_raw(addr, path, &[]).await {
            Err(wsx::Error::Refused(r)) => assert_eq!(r.status(), 404, "{path}"),
            other => panic!("{path}: expected 404, got {:?}", other.map(|_| ())),
        }
    }
    for path in ["/", "/?token=x"] {
        let mut ws = try_raw(addr, path, &[]).await.unwrap();
        assert!(matches!(next(&mut ws).await, Packet::Welcome(_)), "{path}");
    }
    // A server that names another path: that one only.
    let (_hub, addr) = start(Hub::builder().path("/hub")).await;
    assert!(matches!(try_raw(addr, "/", &[]).await, Err(wsx::Error::Refused(r)) if r.status() == 404));
    assert!(try_raw(addr, "/hub", &[]).await.is_ok());
}
