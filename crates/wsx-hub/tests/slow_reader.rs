//! A member that stops reading while its room is busy, then reads again:
//! it gets what the slow-consumer policy lets through (everything, all but
//! the oldest broadcasts, or what was written and then a close with 1008)
//! as fast as it reads, without waiting for a ping or sending anything.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use wsx::{MaybeTls, Message};
use wsx_hub::protocol::{self, Packet};
use wsx_hub::{Event, Hub, HubBuilder, SlowConsumer};

/// 8 KB per event.
const PAD: usize = 8 << 10;

/// Fewer events than the default queue of 1024 holds.
const FITS: u64 = 900;

/// More events than the queue and the sockets hold together: with the
/// kernel's default buffer limits (4 MiB to send, a receive buffer set
/// to [`RCVBUF`]) that is about 1,550 of 8 KB.
const OVERFLOWS: u64 = 2500;

/// The member's socket receive buffer: set before connecting, it turns off
/// the kernel's autotuning (up to 32 MiB on some machines), so that what
/// the sockets hold for a member that does not read is about the same
/// everywhere.
const RCVBUF: u32 = 64 << 10;

/// Longest wait for a packet once the member reads again; the hubs here
/// ping after a minute, so a writer that waits for a ping (or for the
/// member to send something) fails.
const RESUME: Duration = Duration::from_secs(2);

/// A hub, and a member of room `r` (past its join ack) that does not
/// offer compression: 8 KB of an event are 8 KB on the wire.
async fn member(b: HubBuilder) -> (Hub, Ws) {
    let b = b.ping_interval(Duration::from_secs(60)).idle_timeout(Duration::from_secs(120));
    let (hub, addr) = start(b).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(RCVBUF).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let request = http::Request::get(format!("ws://{addr}/"))
        .header("sec-websocket-protocol", protocol::SUBPROTOCOL)
        .body(())
        .unwrap();
    let config = wsx::Config::default().with_compression(false);
    let (mut ws, _) = wsx::client_handshake(MaybeTls::Plain(tcp), request, &config).await.unwrap();
    assert!(matches!(next(&mut ws).await, Packet::Welcome(_)));
    join(&mut ws, "r", 1).await;
    (hub, ws)
}

/// Broadcast `n` events of 8 KB to room `r` while the member does not
/// read, then wait until the server has written what the sockets take
/// (its queue stops changing).
async fn publish_unread(hub: &Hub, n: u64) {
    let pad = "x".repeat(PAD);
    for i in 0..n {
        hub.broadcast("r", Event::new("n", json!({"i": i, "pad": pad})));
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let queued = hub.connections().first().map_or(0, |c| c.queued);
        if queued == last {
            return;
        }
        last = queued;
    }
}

/// Read again: the events' indices in order of arrival, up to `last`, or
/// up to the close frame (then its code and reason). Fails when nothing
/// comes for [`RESUME`].
async fn read_again(ws: &mut Ws, last: u64) -> (Vec<u64>, Option<(u16, String)>) {
    let mut seen = Vec::new();
    let start = Instant::now();
    loop {
        let m = match tokio::time::timeout(RESUME, ws.recv()).await {
            Ok(Some(Ok(m))) => m,
            Ok(other) => panic!("after {} events: {other:?}", seen.len()),
            Err(_) => panic!(
                "stalled: {} events in {:?} (the last {:?}), then nothing for {RESUME:?}",
                seen.len(),
                start.elapsed(),
                seen.last()
            ),
        };
        if let Message::Close(f) = &m {
            let f = f.as_ref().map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
            return (seen, Some(f.unwrap_or((1005, String::new()))));
        }
        if let Some(Ok(Packet::Event(e))) = protocol::decode_message(&m) {
            let i = e.data["i"].as_u64().unwrap();
            seen.push(i);
            if i == last {
                return (seen, None);
            }
        }
    }
}

fn assert_increasing(seen: &[u64]) {
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of order or duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_event_that_fits_its_queue() {
    let (hub, mut ws) = member(Hub::builder()).await;
    publish_unread(&hub, FITS).await;
    assert_eq!(hub.metrics().dropped, 0);
    let (seen, close) = read_again(&mut ws, FITS - 1).await;
    assert_eq!(close, None);
    assert_eq!(seen, (0..FITS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_loses_the_oldest_events_and_gets_the_rest() {
    let (hub, mut ws) = member(Hub::builder()).await;
    publish_unread(&hub, OVERFLOWS).await;
    let dropped = hub.metrics().dropped;
    assert!(dropped > 0, "the queue overflowed");
    let (seen, close) = read_again(&mut ws, OVERFLOWS - 1).await;
    assert_eq!(close, None);
    assert_increasing(&seen);
    assert_eq!(seen.len() as u64 + dropped, OVERFLOWS);
    assert_eq!(hub.connections().len(), 1, "still connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_what_was_written_then_the_close() {
    let b = Hub::builder().outgoing_queue(1024, SlowConsumer::Close(wsx::CloseCode::PolicyViolation));
    let (hub, mut ws) = member(b).await;
    publish_unread(&hub, OVERFLOWS).await;
    let (seen, close) = read_again(&mut ws, u64::MAX).await;
    assert_eq!(close, Some((1008, "slow consumer".to_owned())));
    // What reached the socket before the overflow, from the first on.
    assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
    assert_eq!(hub.metrics().slow_disconnects, 1);
}
