//! Server-Sent Events (ids, heartbeats, Last-Event-ID resume) and the Rust
//! client (acks, rooms, server requests, reconnect with an offline queue).

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpListener;
use wsx_hub::client::{Client, ClientEvent, ClientState};
use wsx_hub::protocol::{Packet, RoomRequest};
use wsx_hub::{AckError, Backoff, Event, HandlerError, Hub, SseSettings};

#[tokio::test]
async fn sse_streams_a_room_with_ids_heartbeats_and_resume() {
    let sse = SseSettings { replay: 4, heartbeat: Duration::from_millis(100), ..SseSettings::default() };
    let (hub, addr) = start(Hub::builder().sse(Some(sse))).await;
    assert!(http_get(addr, "/events", &[]).await.starts_with("HTTP/1.1 400"));

    let mut tcp = sse_open(addr, "news", None).await;
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "retry: 2000\n\n").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("content-type: text/event-stream\r\n"));
    assert_eq!(hub.rooms()[0].sse_streams, 1);

    let (mut a, id_a) = raw(addr).await;
    join(&mut a, "news", 1).await;
    read_until(&mut tcp, &mut text, "event: presence\n").await;
    for n in 0..3 {
        hub.broadcast("news", Event::new("headline", json!({"n": n})));
    }
    read_until(&mut tcp, &mut text, "id: 4\n").await;
    read_until(&mut tcp, &mut text, "\n\n").await;
    assert!(text.contains(&format!(
        "id: 1\nevent: presence\ndata: {{\"count\":1,\"joins\":[{{\"conn\":\"{id_a}\",\"meta\":null}}],\"leaves\":[]}}\n\n"
    )), "{text}");
    assert!(text.contains("id: 2\nevent: headline\ndata: {\"n\":0}\n\n"), "{text}");
    assert!(text.contains("id: 4\nevent: headline\ndata: {\"n\":2}\n\n"), "{text}");
    read_until(&mut tcp, &mut text, ": heartbeat\n\n").await;
    drop(tcp);

    // Two more while the stream is away; resume after id 4.
    hub.broadcast("news", Event::new("headline", json!({"n": 3})));
    hub.broadcast("news", Event::new("headline", json!({"n": 4})));
    let mut tcp = sse_open(addr, "news", Some(4)).await;
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "id: 6\n").await;
    read_until(&mut tcp, &mut text, "\n\n").await;
    assert!(text.contains("id: 5\nevent: headline\ndata: {\"n\":3}\n\n"));
    assert!(!text.contains("id: 4\n"));
    // Too far back: what the buffer (4 events) still has.
    let mut tcp2 = sse_open(addr, "news", Some(0)).await;
    let mut text2 = String::new();
    read_until(&mut tcp2, &mut text2, "id: 6\n").await;
    assert!(text2.contains("id: 3\n") && !text2.contains("id: 2\n"), "{text2}");
    assert!(hub.metrics_text().contains("wsx_hub_sse_streams 2"));
}

#[tokio::test]
async fn rust_client_rooms_acks_and_server_requests() {
    let b = Hub::builder().on("add", |_ctx, ev| async move {
        let (x, y): (i64, i64) = ev.json()?;
        Ok::<_, HandlerError>(json!(x + y))
    });
    let (hub, addr) = start(b).await;
    let (client, mut events) = Client::builder(format!("ws://{addr}/")).connect();
    let conn = client.connected(WAIT).await.expect("connects");
    assert!(matches!(events.next().await, Some(ClientEvent::Connected { conn: c, .. }) if c == conn));
    assert_eq!(client.request(Event::new("add", json!([2, 3]))).await, Ok(json!(5)));
    assert!(matches!(
        client.request(Event::new("nope", json!(0))).await,
        Err(AckError::Remote(e)) if e.code == "unknown_event"
    ));
    let joined = client.join("r").await.unwrap();
    assert_eq!(joined.count, Some(1));
    assert_eq!(joined.members.unwrap()[0].conn, conn);

    // Another member sees what the client publishes, and the client sees
    // its presence.
    let (mut other, other_id) = raw(addr).await;
    send(&mut other, &Packet::Join(RoomRequest { room: "r".into(), id: Some(1) })).await;
    let _ = next(&mut other).await;
    // Presence packets (its own join first, maybe) until the other's.
    loop {
        match events.next().await {
            Some(ClientEvent::Presence(p)) if p.diff.as_ref().unwrap().joins.iter().any(|m| m.conn == other_id) => {
                assert_eq!(p.count, 2);
                break;
            }
            Some(ClientEvent::Presence(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let page = client.members("r", None, 1).await.unwrap();
    assert_eq!((page.count, page.members.len()), (2, 1));
    let rest = client.members("r", page.next.as_deref(), 1000).await.unwrap();
    assert_eq!((rest.members.len(), rest.next), (1, None));
    client.publish_ack("r", Event::new("chat", json!("hi")).attach(vec![9u8; 3]), false).await.unwrap();
    match next(&mut other).await {
        Packet::Event(e) => assert_eq!((e.event.as_str(), e.attachments[0].as_ref()), ("chat", &[9u8, 9, 9][..])),
        other => panic!("{other:?}"),
    }

    // The server asks the client; the client answers.
    let h = hub.clone();
    let c = conn.clone();
    let req = tokio::spawn(async move { h.request(&c, Event::new("confirm", json!({}))).await });
    match events.next().await {
        Some(ClientEvent::Event(mut e)) => {
            assert!(e.wants_ack());
            e.ack(json!("ok"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(req.await.unwrap(), Ok(json!("ok")));
    client.leave("r").await.unwrap();
    client.close();
    assert!(events.next().await.is_none() || client.state() == ClientState::Closed);
}

#[tokio::test]
async fn rust_client_reconnects_rejoins_and_sends_what_waited() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub1 = Hub::builder().shutdown_timeout(Duration::from_secs(1)).build();
    tokio::spawn(hub1.clone().serve(listener));
    let (client, mut events) = Client::builder(format!("ws://{addr}/"))
        .backoff(Backoff { min: Duration::from_millis(20), max: Duration::from_millis(100) })
        .connect();
    client.connected(WAIT).await.unwrap();
    client.join("r").await.unwrap();

    hub1.shutdown().await;
    loop {
        match events.next().await {
            Some(ClientEvent::Disconnected { .. }) => break,
            Some(_) => {}
            None => panic!("client ended"),
        }
    }
    // Offline: queued.
    client.emit(Event::new("note", json!("written offline"))).unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let hub2 = Hub::builder()
        .on("note", move |_ctx, ev| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(ev.data);
                Ok(serde_json::Value::Null)
            }
        })
        .build();
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(hub2.clone().serve(listener));
    assert_eq!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap(), Some(json!("written offline")));
    eventually(|| hub2.rooms().first().is_some_and(|r| r.name == "r" && r.local_members == 1)).await;
    assert!(client.conn_id().is_some());
    client.close();
}
