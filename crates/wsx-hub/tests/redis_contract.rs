//! PROTOCOL.md, "Between nodes (Redis)": the default prefix, the channel
//! and key names, and the message format, read and written by a plain
//! Redis client beside one node (a `redis-server` on a random loopback
//! port; skipped with a notice when it is not installed, unless `CI` is
//! set).

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wsx_hub::broker::{Broker, BrokerState, Inbox, RedisBroker, RedisOptions};
use wsx_hub::protocol::{Joined, Packet, RoomRequest};
use wsx_hub::{Event, Hub};

/// Node `id` on `redis`, with the default options (the default prefix,
/// `wsx-hub`), connected; and a plain client of the same Redis.
async fn node(redis: &RedisServer, id: &str) -> (Hub, std::net::SocketAddr, redis::aio::MultiplexedConnection) {
    let url = redis.url();
    let (hub, addr) =
        start(Hub::builder().node_id(id).broker(RedisBroker::new(&url, RedisOptions::default()).unwrap())).await;
    eventually(|| hub.broker_state() == BrokerState::Connected).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    (hub, addr, client.get_multiplexed_async_connection().await.unwrap())
}

/// Wait until `room`'s presence and names sets (default prefix) each hold
/// `n` ids; fail after [`WAIT`].
async fn room_sets_hold(c: &mut redis::aio::MultiplexedConnection, room: &str, n: usize) {
    let started = std::time::Instant::now();
    loop {
        let expiries: usize = query(c, &["ZCARD", &format!("wsx-hub:presence:{room}")]).await;
        let names: usize = query(c, &["ZCARD", &format!("wsx-hub:names:{room}")]).await;
        if (expiries, names) == (n, n) {
            return;
        }
        assert!(started.elapsed() < WAIT, "room {room}: {expiries} expiries and {names} names, not {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn query<T: redis::FromRedisValue>(c: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(c).await.unwrap()
}

#[tokio::test]
async fn redis_names_and_messages_are_as_documented() {
    let Some(redis) = RedisServer::start() else { return };
    let (hub, addr, mut c) = node(&redis, "n1").await;
    let (mut ws, conn) = raw(addr).await;
    join(&mut ws, "r", 1).await;
    let client = redis::Client::open(redis.url().as_str()).unwrap();

    // Channels: the room's, everyone's, the node's.
    let mut channels: Vec<String> = query(&mut c, &["PUBSUB", "CHANNELS", "*"]).await;
    channels.sort();
    assert_eq!(channels, ["wsx-hub:all", "wsx-hub:node:n1", "wsx-hub:room:r"]);

    // Presence: a sorted set of connection ids scored by expiry (Unix ms),
    // and each connection's metadata as JSON living twice as long.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as f64;
    let set: Vec<(String, f64)> = query(&mut c, &["ZRANGE", "wsx-hub:presence:r", "0", "-1", "WITHSCORES"]).await;
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(set[0].0, conn);
    assert!(set[0].1 > now && set[0].1 <= now + 31_000.0, "expiry {} at {now}", set[0].1);
    // The same ids, scored 0, in the order pages list them.
    let names: Vec<(String, f64)> = query(&mut c, &["ZRANGE", "wsx-hub:names:r", "0", "-1", "WITHSCORES"]).await;
    assert_eq!(names, [(conn.clone(), 0.0)]);
    let meta: String = query(&mut c, &["GET", &format!("wsx-hub:meta:{conn}")]).await;
    assert_eq!(serde_json::from_str::<Value>(&meta).unwrap(), Value::Null);
    let ttl: i64 = query(&mut c, &["PTTL", &format!("wsx-hub:meta:{conn}")]).await;
    assert!(ttl > 30_000 && ttl <= 60_000, "twice the presence TTL: {ttl}");

    // What the node publishes: a JSON header line, then the packet as
    // clients get it.
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("wsx-hub:room:r").await.unwrap();
    let mut messages = pubsub.on_message();
    hub.broadcast("r", Event::new("news", json!({"a": 1})));
    let msg = tokio::time::timeout(WAIT, messages.next()).await.unwrap().unwrap();
    let bytes = msg.get_payload_bytes();
    let nl = bytes.iter().position(|&b| b == b'\n').expect("a header line");
    let header: Value = serde_json::from_slice(&bytes[..nl]).unwrap();
    assert_eq!(
        (header["k"].as_str(), header["node"].as_str(), header["room"].as_str()),
        (Some("room"), Some("n1"), Some("r"))
    );
    let packet: Value = serde_json::from_slice(&bytes[nl + 1..]).unwrap();
    assert_eq!(packet, json!({"t": "event", "event": "news", "data": {"a": 1}, "room": "r"}));
    match next(&mut ws).await {
        Packet::Event(e) => assert_eq!(e.event, "news"),
        other => panic!("{other:?}"),
    }

    // What another node publishes on each channel reaches the client.
    let sent = [
        ("wsx-hub:room:r", r#"{"k":"room","node":"other","room":"r"}"#, "to-room"),
        ("wsx-hub:all", r#"{"k":"all","node":"other"}"#, "to-all"),
        ("wsx-hub:node:n1", &*format!(r#"{{"k":"direct","node":"other","conn":"{conn}"}}"#), "to-conn"),
    ];
    for (channel, header, event) in sent {
        let body = format!("{header}\n{}", json!({"t": "event", "event": event, "data": null}));
        let _: i64 = query(&mut c, &["PUBLISH", channel, &body]).await;
        match next(&mut ws).await {
            Packet::Event(e) => assert_eq!(e.event, event, "{channel}"),
            other => panic!("{channel}: {other:?}"),
        }
    }
    // A leave removes the id from both sets.
    drop(ws);
    room_sets_hold(&mut c, "r", 0).await;
    hub.shutdown().await;
}

/// "Between nodes", a node that dies: its members' entries expire, and one
/// surviving node with members in the room announces each one's leave,
/// once for the whole cluster, with its metadata. The dead node here is
/// entries written straight into Redis that nobody refreshes.
#[tokio::test]
async fn a_dead_nodes_members_leave_once() {
    let Some(redis) = RedisServer::start() else { return };
    let url = redis.url();
    let node = |id: &str| {
        let opts = RedisOptions { presence_ttl: Duration::from_secs(3), ..RedisOptions::default() };
        Hub::builder().node_id(id).broker(RedisBroker::new(&url, opts).unwrap())
    };
    let (a, addr_a) = start(node("a")).await;
    let (b, addr_b) = start(node("b")).await;
    eventually(|| a.broker_state() == BrokerState::Connected && b.broker_state() == BrokerState::Connected).await;
    let mut clients = Vec::new();
    for addr in [addr_a, addr_b] {
        let (mut ws, _) = raw(addr).await;
        join(&mut ws, "r", 1).await;
        clients.push(ws);
    }

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let expiry = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 + 300;
    let _: i64 = query(&mut c, &["ZADD", "wsx-hub:presence:r", &expiry.to_string(), "dead.7"]).await;
    let _: i64 = query(&mut c, &["ZADD", "wsx-hub:names:r", "0", "dead.7"]).await;
    let _: () = query(&mut c, &["SET", "wsx-hub:meta:dead.7", r#"{"user":"zed"}"#, "PX", "6000"]).await;
    assert!(a.members("r").await.iter().any(|m| m.conn == "dead.7"));

    for ws in &mut clients {
        let p = presence_of(ws, "dead.7", false).await;
        let d = p.diff.unwrap();
        assert_eq!(d.leaves, vec![wsx_hub::Member { conn: "dead.7".into(), meta: json!({"user": "zed"}) }]);
        assert_eq!(p.count, 2);
    }
    for ws in &mut clients {
        assert_eq!(quiet_presence(ws, Duration::from_millis(1500)).await, None, "announced once");
    }
    assert_eq!(a.members("r").await.len(), 2);
    let names: Vec<String> = query(&mut c, &["ZRANGE", "wsx-hub:names:r", "0", "-1"]).await;
    assert!(!names.contains(&"dead.7".to_owned()), "the leave removes its name: {names:?}");
    drop(clients);
    a.shutdown().await;
    b.shutdown().await;
}

/// A graceful stop publishes the leave of every member of every room before
/// `Hub::shutdown` returns, also of the connections the server dropped at
/// the shutdown timeout (these members never answer the close frame). Node
/// b runs on a runtime of its own, dropped as soon as its shutdown returns,
/// as at a process's exit.
#[tokio::test]
async fn a_stopped_nodes_members_all_leave() {
    const MEMBERS: usize = 10;
    const ROOMS: [&str; 3] = ["r1", "r2", "r3"];
    let Some(redis) = RedisServer::start() else { return };
    let url = redis.url();
    let node = |id: &str| {
        Hub::builder()
            .node_id(id)
            .shutdown_timeout(Duration::from_millis(300))
            .broker(RedisBroker::new(&url, RedisOptions::default()).unwrap())
    };
    let (a, addr_a) = start(node("a")).await;
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let b = node("b");
    let node_b = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (b, addr_b) = start(b).await;
            eventually(|| b.broker_state() == BrokerState::Connected).await;
            addr_tx.send(addr_b).unwrap();
            let _ = stop_rx.await;
            b.shutdown().await;
        });
        drop(rt); // the process exits
    });
    let addr_b = addr_rx.await.unwrap();
    eventually(|| a.broker_state() == BrokerState::Connected).await;
    let (mut observer, _) = raw(addr_a).await;
    for (i, room) in ROOMS.iter().enumerate() {
        send(&mut observer, &Packet::Join(RoomRequest { room: (*room).into(), id: Some(i as u64) })).await;
        assert!(matches!(next(&mut observer).await, Packet::Ack(a) if a.result.is_ok()));
    }
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        let (mut ws, _) = raw(addr_b).await;
        for (i, room) in ROOMS.iter().enumerate() {
            send(&mut ws, &Packet::Join(RoomRequest { room: (*room).into(), id: Some(i as u64) })).await;
            loop {
                if let Packet::Ack(a) = next(&mut ws).await {
                    assert!(a.result.is_ok());
                    break;
                }
            }
        }
        members.push(ws);
    }
    let mut joins = 0;
    while joins < MEMBERS * ROOMS.len() {
        let d = next_presence(&mut observer).await.diff.unwrap();
        assert!(d.leaves.is_empty());
        joins += d.joins.iter().filter(|m| m.conn.starts_with("b.")).count();
    }
    // Half the members answer the close frame, half never read again.
    let answering: Vec<_> = members
        .drain(..MEMBERS / 2)
        .map(|mut ws| tokio::spawn(async move { while let Some(Ok(_)) = ws.recv().await {} }))
        .collect();

    stop_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || node_b.join().unwrap()).await.unwrap();
    let mut leaves = std::collections::HashSet::new();
    while leaves.len() < MEMBERS * ROOMS.len() {
        let Some(p) = quiet_presence(&mut observer, Duration::from_secs(2)).await else { break };
        let d = p.diff.unwrap();
        assert!(d.joins.is_empty(), "{d:?}");
        for m in d.leaves {
            assert!(leaves.insert((p.room.clone(), m.conn)), "each leave once");
        }
    }
    assert_eq!(leaves.len(), MEMBERS * ROOMS.len(), "leave events the observer got");
    assert!(a.members("r1").await.iter().all(|m| m.conn.starts_with("a.")), "b's presence is gone");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for room in ROOMS {
        let names: Vec<String> = query(&mut c, &["ZRANGE", &format!("wsx-hub:names:{room}"), "0", "-1"]).await;
        assert!(names.iter().all(|n| n.starts_with("a.")), "b's names are gone from {room}: {names:?}");
    }
    drop(members);
    for t in answering {
        t.abort();
    }
    a.shutdown().await;
}

/// A burst of joins reaches Redis together: the changes noted since the
/// last write go in one pipeline, one `ZADD` per room, not a round trip per
/// member (which held the node's buffers for thousands of commands at
/// once, 8 KiB per member); and their answers share reads of the room, one
/// per round of joins that wait at once.
#[tokio::test]
async fn a_burst_of_joins_is_written_and_answered_together() {
    const JOINS: usize = 50;
    let Some(redis) = RedisServer::start() else { return };
    let (a, addr, mut c) = node(&redis, "a").await;
    let _: () = query(&mut c, &["CONFIG", "RESETSTAT"]).await;
    let joins = (0..JOINS).map(|_| async move {
        let (mut ws, me) = raw(addr).await;
        // Read after the join: the answer lists the joiner.
        let joined: Joined = serde_json::from_value(join(&mut ws, "r", 1).await).unwrap();
        assert!(joined.members.unwrap().iter().any(|m| m.conn == me), "the joiner is not in its answer");
        ws
    });
    let clients = futures_util::future::join_all(joins).await;
    assert_eq!(a.member_count("r").await, JOINS as u64);
    let stats: String = query(&mut c, &["INFO", "commandstats"]).await;
    let calls = |cmd: &str| -> usize {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    // Two per room and pipeline: the expiries and the names.
    let (writes, lists) = (calls("zadd") / 2, calls("zrangebylex"));
    assert!((1..JOINS / 2).contains(&writes), "{writes} ZADD pairs for {JOINS} joins");
    // Each answer lists the room: one read per round of joins, not per join.
    assert!((1..JOINS / 2).contains(&lists), "{lists} member lists read for {JOINS} joins");
    drop(clients);
    a.shutdown().await;
}

/// A page of members reads what it lists, not the room: Redis sends a page
/// of 10 from a room of 5,000 in under 5 KB, the `INFO` reply that
/// measures it included (reading the room's ids whole sent 60 KB). Pages
/// follow the ids' order from any cursor, skip members past their expiry
/// (and count them out), and together list the room once.
#[tokio::test]
async fn a_member_page_reads_the_page_not_the_room() {
    const MEMBERS: usize = 5_000;
    let Some(redis) = RedisServer::start() else { return };
    let (a, _, mut c) = node(&redis, "a").await;
    // Another node's members, as PROTOCOL.md says a node records them, and
    // one (`n.0000-gone`) whose node stopped refreshing it.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let ids: Vec<String> = (0..MEMBERS).map(|i| format!("n.{i:04}")).collect();
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("ZADD").arg("wsx-hub:presence:r").arg(now + 60_000).arg(id).ignore();
        pipe.cmd("ZADD").arg("wsx-hub:names:r").arg(0).arg(id).ignore();
        pipe.cmd("SET").arg(format!("wsx-hub:meta:{id}")).arg(format!(r#"{{"who":"{id}"}}"#)).ignore();
    }
    pipe.cmd("ZADD").arg("wsx-hub:presence:r").arg(now - 1).arg("n.0000-gone").ignore();
    pipe.cmd("ZADD").arg("wsx-hub:names:r").arg(0).arg("n.0000-gone").ignore();
    // A name whose presence entry is gone: a removal cut short.
    pipe.cmd("ZADD").arg("wsx-hub:names:r").arg(0).arg("n.0000-left").ignore();
    pipe.query_async::<()>(&mut c).await.unwrap();

    let sent = |stats: &str| -> u64 {
        let line = stats.lines().find_map(|l| l.strip_prefix("total_net_output_bytes:")).unwrap();
        line.trim().parse().unwrap()
    };
    let before = sent(&query::<String>(&mut c, &["INFO", "stats"]).await);
    let page = a.members_page("r", Some("n.0000"), 10).await;
    let after = sent(&query::<String>(&mut c, &["INFO", "stats"]).await);
    // What Redis sent: the page, and the INFO reply read before it.
    let cost = after - before;
    assert!(cost < 5_000, "Redis sent {cost} bytes for a page of 10 members");
    assert_eq!(page.count, MEMBERS as u64, "the expired member is not counted");
    let listed: Vec<&str> = page.members.iter().map(|m| m.conn.as_str()).collect();
    assert_eq!(listed, ids[1..11], "after the cursor, past the expired one and the stale name");
    assert_eq!(page.members[0].meta, json!({"who": "n.0001"}));
    assert_eq!(page.next.as_deref(), Some("n.0010"));

    let (mut all, mut cursor) = (Vec::new(), None);
    loop {
        let page = a.members_page("r", cursor.as_deref(), 700).await;
        all.extend(page.members.into_iter().map(|m| m.conn));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(all, ids, "every page together, in order, once");
    let names: Vec<String> = query(&mut c, &["ZRANGE", "wsx-hub:names:r", "0", "2"]).await;
    assert_eq!(
        names,
        ["n.0000", "n.0000-gone", "n.0001"],
        "the stale name is removed, the expired one left to reaping"
    );
    assert_eq!(a.members("r").await.len(), MEMBERS);
    a.shutdown().await;
}

/// Every third of the presence TTL a node records all its members again
/// (Redis may have lost them), with their names and metadata, none
/// skipped: rooms larger and smaller than a pipeline (about 500 members),
/// one pipeline spanning rooms.
#[tokio::test]
async fn a_refresh_records_every_member_again() {
    const ROOMS: [(&str, usize); 3] = [("big", 1_100), ("one", 1), ("mid", 499)];
    let Some(redis) = RedisServer::start() else { return };
    let url = redis.url();
    let opts = RedisOptions { presence_ttl: Duration::from_millis(1500), ..RedisOptions::default() };
    let broker = RedisBroker::new(&url, opts).unwrap();
    broker.start("n", Inbox::new(|_| {}));
    eventually(|| broker.state() == BrokerState::Connected).await;
    for (room, n) in ROOMS {
        for i in 0..n {
            let member = wsx_hub::Member { conn: format!("n.{room}{i}"), meta: json!({ "i": i }) };
            drop(broker.presence_join(room, member));
        }
    }
    broker.presence_written().await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    // Redis loses everything; the next refresh (every 0.5 s) records it
    // again.
    let _: () = query(&mut c, &["FLUSHALL"]).await;
    for (room, n) in ROOMS {
        room_sets_hold(&mut c, room, n).await;
        let page = broker.presence_page(room, None, n).await.unwrap();
        assert_eq!((page.count, page.members.len()), (n as u64, n));
        assert!(page.members.iter().all(|m| m.meta["i"].is_u64()), "metadata of {room}");
    }
    broker.shutdown().await;
}
