//! SSE resume across nodes: a node keeps receiving a room's events from the
//! other nodes while it keeps the room's SSE history (no member and no open
//! stream needed), and leaves the room's channel once that history expired.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use wsx_hub::broker::MemoryBus;
use wsx_hub::{Event, Hub, SseSettings};

/// A metric's value in the hub's exposition text.
fn metric(hub: &Hub, name: &str) -> u64 {
    let text = hub.metrics_text();
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}: {text}"));
    line[name.len() + 1..].trim().parse().unwrap()
}

/// Wait until `hub` has no open SSE stream, and past its bookkeeping of
/// the one that closed.
async fn streams_closed(hub: &Hub) {
    let t = Instant::now();
    while metric(hub, "wsx_hub_sse_streams") != 0 {
        assert!(t.elapsed() < WAIT, "the stream is still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn node(bus: &MemoryBus, id: &str, retention: Duration) -> wsx_hub::HubBuilder {
    let sse = SseSettings { retention, ..SseSettings::default() };
    Hub::builder().node_id(id).broker(bus.broker()).sse(Some(sse))
}

#[tokio::test]
async fn sse_resumes_on_a_node_without_members_with_what_other_nodes_published() {
    let bus = MemoryBus::new();
    let (a, _) = start(node(&bus, "a", Duration::from_secs(300))).await;
    let (b, addr_b) = start(node(&bus, "b", Duration::from_secs(300))).await;

    // The room's only stream on B reads ids 1-4 (published on A and on B).
    let mut tcp = sse_open(addr_b, "r", None).await;
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "retry: 2000\n\n").await;
    for n in 1..=4 {
        let hub = if n % 2 == 0 { &b } else { &a };
        hub.broadcast("r", Event::new("tick", json!({"n": n})));
        read_until(&mut tcp, &mut text, &format!("data: {{\"n\":{n}}}\n\n")).await;
    }
    for n in 1..=4 {
        assert!(text.contains(&format!("id: {n}\nevent: tick\ndata: {{\"n\":{n}}}\n\n")), "{text}");
    }
    drop(tcp);
    streams_closed(&b).await;

    // B has neither members nor streams in the room now; A publishes 5-7.
    for n in 5..=7 {
        a.broadcast("r", Event::new("tick", json!({"n": n})));
    }
    let mut tcp = sse_open(addr_b, "r", Some(4)).await;
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "id: 7\n").await;
    read_until(&mut tcp, &mut text, "data: {\"n\":7}\n\n").await;
    for n in 5..=7 {
        assert!(text.contains(&format!("id: {n}\nevent: tick\ndata: {{\"n\":{n}}}\n\n")), "{text}");
    }
    assert!(!text.contains("id: 4\n"), "{text}");
}

#[tokio::test]
async fn a_node_leaves_the_room_channel_once_its_sse_history_expired() {
    let retention = Duration::from_millis(400);
    let bus = MemoryBus::new();
    let (a, _) = start(node(&bus, "a", retention)).await;
    let (b, addr_b) = start(node(&bus, "b", retention)).await;

    let mut tcp = sse_open(addr_b, "r", None).await;
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "retry: 2000\n\n").await;
    a.broadcast("r", Event::new("tick", json!({"n": 1})));
    read_until(&mut tcp, &mut text, "id: 1\n").await;
    drop(tcp);
    streams_closed(&b).await;

    // A keeps publishing: the events B still records do not extend its
    // retention, which counts from the stream's close.
    let publisher = {
        let a = a.clone();
        tokio::spawn(async move {
            for n in 2.. {
                a.broadcast("r", Event::new("tick", json!({"n": n})));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let mut last = metric(&b, "wsx_hub_broker_received_total");
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = metric(&b, "wsx_hub_broker_received_total");
        if now == last {
            break;
        }
        last = now;
        assert!(t.elapsed() < WAIT, "B still receives the room's events {:?} after its history expired", t.elapsed());
    }
    publisher.abort();
    assert!(b.rooms().is_empty(), "{:?}", b.rooms());

    // A new stream on B starts over: subscribed again, live events arrive.
    let mut tcp = sse_open(addr_b, "r", Some(1)).await;
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "retry: 2000\n\n").await;
    a.broadcast("r", Event::new("tick", json!({"n": "again"})));
    read_until(&mut tcp, &mut text, "data: {\"n\":\"again\"}\n\n").await;
    assert!(text.contains("id: 1\n"), "ids count from 1 again: {text}");
}
