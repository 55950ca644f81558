//! Presence in O(N): joins and leaves coalesced per room and interval,
//! counts without names in large rooms and in rooms that want counts,
//! no presence at all where it is off, member lists a page at a time, and
//! a burst of joins that never makes a reader a slow consumer.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use wsx_hub::broker::{BoxFuture, Broker, BrokerMessage, BrokerState, Inbox, MemoryBroker};
use wsx_hub::protocol::{codes, Member, MembersPage, MembersRequest, Packet};
use wsx_hub::{BrokerError, Event, Hub, PresenceMode, SlowConsumer};

async fn members(ws: &mut Ws, room: &str, after: Option<&str>, limit: Option<u32>, id: u64) -> Result<Value, String> {
    let q = MembersRequest { room: room.into(), after: after.map(str::to_owned), limit, id };
    send(ws, &Packet::Members(q)).await;
    ack(ws, id).await.map_err(|e| e.code)
}

/// Connect `n` clients and join each to `room`.
async fn crowd(addr: std::net::SocketAddr, room: &str, n: usize) -> Vec<(Ws, String)> {
    let mut v = Vec::new();
    for _ in 0..n {
        let (mut ws, id) = raw(addr).await;
        join(&mut ws, room, 1).await;
        v.push((ws, id));
    }
    v
}

#[tokio::test]
async fn joins_within_an_interval_reach_members_in_one_packet() {
    let (_hub, addr) = start(Hub::builder().presence_interval(Duration::from_millis(400))).await;
    let (mut observer, _) = raw(addr).await;
    join(&mut observer, "r", 1).await;
    let _ = next_presence(&mut observer).await; // its own join
    let others = crowd(addr, "r", 20).await;
    let mut seen = std::collections::HashSet::new();
    let mut packets = 0;
    while seen.len() < others.len() {
        let p = next_presence(&mut observer).await;
        packets += 1;
        seen.extend(p.diff.unwrap().joins.into_iter().map(|m| m.conn));
        assert!(p.count as usize <= others.len() + 1);
    }
    // One per interval (the joins straddle at most a few of them), not
    // one per join.
    assert!(packets <= 3, "{packets} packets for 20 joins");
    assert_eq!(quiet_presence(&mut observer, Duration::from_millis(600)).await, None, "each join once");
}

#[tokio::test]
async fn a_room_over_the_names_limit_gets_counts_and_pages_its_list() {
    let b = Hub::builder()
        .presence_names_up_to(2)
        .presence_interval(Duration::from_millis(20))
        .presence_count_interval(Duration::from_millis(20));
    let (hub, addr) = start(b).await;
    let (mut a, id_a) = raw(addr).await;
    assert_eq!(join(&mut a, "r", 1).await["members"].as_array().unwrap().len(), 1);
    let (mut b, id_b) = raw(addr).await;
    assert_eq!(join(&mut b, "r", 1).await["count"], json!(2));
    presence_of(&mut a, &id_b, true).await;
    let (mut c, id_c) = raw(addr).await;
    // Three members: over the limit, the ack counts without names.
    assert_eq!(join(&mut c, "r", 1).await, json!({"room": "r", "count": 3}));
    loop {
        let p = next_presence(&mut a).await;
        if p.count == 3 {
            assert_eq!(p.diff, None, "no names over the limit");
            break;
        }
    }
    // The list, a page at a time, in the order of connection ids.
    let mut all = [id_a.clone(), id_b.clone(), id_c.clone()];
    all.sort();
    let page = members(&mut a, "r", None, Some(2), 5).await.unwrap();
    let conns = |v: &Value| -> Vec<String> {
        v["members"].as_array().unwrap().iter().map(|m| m["conn"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!((page["count"].clone(), conns(&page)), (json!(3), all[..2].to_vec()));
    assert_eq!(page["next"], json!(all[1]));
    let last = members(&mut a, "r", Some(&all[1]), None, 6).await.unwrap();
    assert_eq!(conns(&last), all[2..].to_vec());
    assert_eq!(last.get("next"), None, "the last page");
    assert_eq!(hub.members_page("r", None, 10).await.members.len(), 3);
    // A member list is for members; a limit out of range is a bad frame.
    assert_eq!(members(&mut a, "elsewhere", None, None, 7).await, Err(codes::NOT_MEMBER.to_owned()));
    send_text(&mut a, r#"{"t":"members","room":"r","limit":1001,"id":8}"#).await;
    assert_eq!(ack(&mut a, 8).await.unwrap_err().code, codes::BAD_FRAME);
    // Back at the limit, the leave comes with its name.
    drop(c);
    assert_eq!(presence_of(&mut a, &id_c, false).await.count, 2);
}

#[tokio::test]
async fn count_rooms_send_counts_and_off_rooms_nothing() {
    let b = Hub::builder().presence_count_interval(Duration::ZERO).room_presence(|room| match room {
        "stage" => PresenceMode::Count,
        "feed" => PresenceMode::Off,
        _ => PresenceMode::Names,
    });
    let (hub, addr) = start(b).await;
    let (mut a, _) = raw(addr).await;
    let (mut b, _) = raw(addr).await;
    assert_eq!(join(&mut a, "stage", 1).await, json!({"room": "stage", "count": 1}));
    assert_eq!(join(&mut b, "stage", 1).await, json!({"room": "stage", "count": 2}));
    loop {
        let p = next_presence(&mut a).await;
        assert_eq!(p.diff, None, "counts only");
        if p.count == 2 {
            break;
        }
    }
    assert_eq!(members(&mut a, "stage", None, None, 2).await, Err(codes::FORBIDDEN.to_owned()));

    assert_eq!(join(&mut a, "feed", 3).await, json!({"room": "feed"}));
    assert_eq!(join(&mut b, "feed", 3).await, json!({"room": "feed"}));
    assert_eq!(hub.member_count("feed").await, 0, "not recorded");
    assert_eq!(members(&mut a, "feed", None, None, 4).await, Err(codes::FORBIDDEN.to_owned()));
    drop(b);
    // The stage hears b leave; the feed says nothing.
    loop {
        let p = next_presence(&mut a).await;
        assert_eq!(p.room, "stage", "no presence in a room where it is off");
        if p.count == 1 {
            break;
        }
    }
    assert_eq!(quiet_presence(&mut a, Duration::from_millis(200)).await, None);
    // Events still flow in the feed.
    hub.broadcast("feed", Event::new("tick", json!(1)));
    assert!(matches!(next(&mut a).await, Packet::Event(e) if e.event == "tick"));
}

/// Counts without names go out at most once per count interval, however
/// often the room changes, and the last one is right.
#[tokio::test]
async fn counts_come_at_most_once_per_count_interval() {
    let b = Hub::builder()
        .presence_interval(Duration::from_millis(10))
        .presence_count_interval(Duration::from_millis(400))
        .room_presence(|_| PresenceMode::Count);
    let (_hub, addr) = start(b).await;
    let (mut observer, _) = raw(addr).await;
    join(&mut observer, "r", 1).await;
    assert_eq!(next_presence(&mut observer).await.count, 1);
    let t = std::time::Instant::now();
    let mut crowd = Vec::new();
    for _ in 0..10 {
        let (mut ws, _) = raw(addr).await;
        join(&mut ws, "r", 1).await;
        crowd.push(ws);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut packets = 0;
    loop {
        let p = next_presence(&mut observer).await;
        packets += 1;
        if p.count == 11 {
            break;
        }
    }
    let spent = t.elapsed().as_millis() as usize;
    assert!(packets <= spent / 400 + 1, "{packets} count packets in {spent} ms");
}

/// With per-join presence, a burst of joins filled a member's queue with
/// presence (which is never dropped) faster than any client reads, and the
/// server closed members that read everything as slow consumers.
#[tokio::test]
async fn a_burst_of_joins_never_makes_a_reader_a_slow_consumer() {
    let b = Hub::builder().outgoing_queue(4, SlowConsumer::DropOldest);
    let (hub, addr) = start(b).await;
    let (mut observer, _) = raw(addr).await;
    join(&mut observer, "r", 1).await;
    let reader = tokio::spawn(async move {
        let mut joined = 0;
        while joined < 61 {
            joined += next_presence(&mut observer).await.diff.unwrap().joins.len();
        }
        observer
    });
    // 60 joins at once.
    let joins = (0..60).map(|_| async move {
        let (mut ws, _) = raw(addr).await;
        join(&mut ws, "r", 1).await;
        ws
    });
    let crowd = futures_util::future::join_all(joins).await;
    let mut observer = tokio::time::timeout(Duration::from_secs(10), reader).await.expect("all joins heard").unwrap();
    hub.broadcast("r", Event::new("after", json!(null)));
    assert!(matches!(next(&mut observer).await, Packet::Event(e) if e.event == "after"), "still connected");
    assert_eq!(hub.metrics().slow_disconnects, 0);
    drop(crowd);
}

/// The memory broker, slowed down: its member counts may lag (always 0,
/// as a count read before a burst of joins reached the broker), and its
/// joins may be recorded a while after the call, as a remote broker's are.
struct Slow {
    inner: Arc<MemoryBroker>,
    counts_lag: bool,
    records_after: Option<Duration>,
    /// Joins not recorded yet.
    unrecorded: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Slow {
    fn new(counts_lag: bool, records_after: Option<Duration>) -> Self {
        let unrecorded = Arc::new(tokio::sync::watch::channel(0).0);
        Self { inner: Arc::new(MemoryBroker::new()), counts_lag, records_after, unrecorded }
    }
}

impl Broker for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }
    fn start(&self, node: &str, inbox: Inbox) {
        self.inner.start(node, inbox)
    }
    fn publish(&self, msg: BrokerMessage) {
        self.inner.publish(msg)
    }
    fn subscribe(&self, room: &str) -> BoxFuture<'static, ()> {
        self.inner.subscribe(room)
    }
    fn unsubscribe(&self, room: &str) {
        self.inner.unsubscribe(room)
    }
    fn presence_join(&self, room: &str, member: Member) -> BoxFuture<'static, Result<(), BrokerError>> {
        let Some(after) = self.records_after else { return self.inner.presence_join(room, member) };
        let (inner, unrecorded, room) = (self.inner.clone(), self.unrecorded.clone(), room.to_owned());
        unrecorded.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = inner.presence_join(&room, member).await;
            unrecorded.send_modify(|n| *n -= 1);
        });
        Box::pin(async { Ok(()) })
    }
    fn presence_leave(&self, room: &str, conn: &str) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.inner.presence_leave(room, conn)
    }
    fn presence_written(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        let mut unrecorded = self.unrecorded.subscribe();
        Box::pin(async move {
            let _ = unrecorded.wait_for(|n| *n == 0).await;
            Ok(())
        })
    }
    fn presence_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'static, Result<MembersPage, BrokerError>> {
        self.inner.presence_page(room, after, limit)
    }
    fn presence_count(&self, room: &str) -> BoxFuture<'static, Result<u64, BrokerError>> {
        if self.counts_lag {
            return Box::pin(async { Ok(0) });
        }
        self.inner.presence_count(room)
    }
    fn state(&self) -> BrokerState {
        self.inner.state()
    }
    fn shutdown(&self) -> BoxFuture<'static, ()> {
        self.inner.shutdown()
    }
}

/// A join's answer is read after the join is recorded, even where the
/// broker records it a while after the call: it lists the joiner.
#[tokio::test]
async fn a_join_answer_waits_for_the_join_to_be_recorded() {
    let b = Hub::builder().broker(Slow::new(false, Some(Duration::from_millis(100))));
    let (_hub, addr) = start(b).await;
    let (mut ws, me) = raw(addr).await;
    let answer = join(&mut ws, "r", 1).await;
    assert_eq!(answer["count"], 1, "{answer}");
    assert_eq!(answer["members"][0]["conn"], me.as_str(), "{answer}");
}

/// A burst of joins past the names limit within one interval goes out as a
/// count, without names, even when the broker's count lags behind it.
#[tokio::test]
async fn a_burst_past_the_names_limit_goes_without_names() {
    use futures_util::FutureExt;
    let b = Hub::builder().broker(Slow::new(true, None)).presence_names_up_to(3);
    let (hub, addr) = start(b).await;
    let mut crowd = Vec::new();
    for _ in 0..5 {
        crowd.push(raw(addr).await);
    }
    // All five within one presence interval: no tick runs between them.
    for (_, conn) in &crowd {
        hub.join(conn, "r").now_or_never().expect("joined at once").unwrap();
    }
    let p = next_presence(&mut crowd[0].0).await;
    assert!(p.diff.is_none(), "names of a burst past the limit: {p:?}");
    assert_eq!(p.count, 5);
}
