//! The I/O layer over custom transports (`tokio::io::duplex`): write
//! coalescing, backpressure, and the footprint of an idle connection.

mod common;

use common::*;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use wsx::server::{Outbox, OutboxConfig, Pump, Push};
use wsx::{Config, Message, PreparedMessage, Role, WebSocket};

/// A duplex stream that counts the write calls made on it.
struct Counting {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl Counting {
    fn new(inner: DuplexStream) -> (Self, Arc<AtomicUsize>) {
        let writes = Arc::new(AtomicUsize::new(0));
        (Self { inner, writes: writes.clone() }, writes)
    }
}

impl AsyncRead for Counting {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Broadcasts (prepared messages, shared by every recipient) waiting in a
/// connection's outbox go out with its own pending output: 21 messages, one
/// write, not one each.
#[tokio::test]
async fn the_pump_writes_queued_prepared_messages_together() {
    let (a, b) = duplex(1 << 20);
    let (io, writes) = Counting::new(a);
    let server = WebSocket::from_raw(io, Role::Server, &Config::default(), &[]);
    let mut client = WebSocket::from_raw(b, Role::Client, &Config::default(), &[]);
    let (outbox, rx) = Outbox::new(OutboxConfig::default());
    let tick = PreparedMessage::text("tick");
    for _ in 0..20 {
        assert_eq!(outbox.push_droppable(tick.clone()), Push::Queued);
    }
    assert_eq!(outbox.push(Message::text("own")), Push::Queued);
    let mut pump = Pump::new(server, rx);
    let t = tokio::spawn(async move { while pump.recv().await.is_some() {} });
    for _ in 0..20 {
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text("tick"));
    }
    assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text("own"));
    assert_eq!(writes.load(Ordering::SeqCst), 1, "21 messages, one write");
    drop(outbox);
    t.abort();
}

/// `feed` only queues; one `flush` writes 100 small messages with a single
/// write call.
#[tokio::test]
async fn feed_then_flush_coalesces_into_one_write() {
    let (a, b) = duplex(1 << 20);
    let (io, writes) = Counting::new(a);
    let mut server = WebSocket::from_raw(io, Role::Server, &Config::default(), &[]);
    let mut client = WebSocket::from_raw(b, Role::Client, &Config::default(), &[]);
    for i in 0..100 {
        server.feed(Message::text(format!("m{i}"))).await.unwrap();
    }
    assert_eq!(writes.load(Ordering::SeqCst), 0, "feed wrote before flush");
    assert!(server.buffered_amount() > 0);
    within(server.flush()).await.unwrap();
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    assert_eq!(server.buffered_amount(), 0);
    for i in 0..100 {
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text(format!("m{i}")));
    }
}

/// An echo loop (`recv` then `feed`) answers a burst of pipelined messages
/// that arrived in one read with one write: `recv` writes the queue only
/// once it has parsed everything buffered.
#[tokio::test]
async fn echo_loop_answers_pipelined_burst_with_one_write() {
    let (a, b) = duplex(1 << 20);
    let (io, writes) = Counting::new(a);
    let mut client = WebSocket::from_raw(b, Role::Client, &Config::default(), &[]);
    // The whole burst is in the pipe before the server reads at all.
    for i in 0..100 {
        client.feed(Message::text(format!("ping {i}"))).await.unwrap();
    }
    within(client.flush()).await.unwrap();

    let mut server = WebSocket::from_raw(io, Role::Server, &Config::default(), &[]);
    let echo = tokio::spawn(async move {
        while let Some(Ok(msg)) = server.recv().await {
            if msg.is_text() {
                server.feed(msg).await.unwrap();
            }
        }
    });
    for i in 0..100 {
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text(format!("ping {i}")));
    }
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    echo.abort();
}

/// Backpressure: with a 64 KiB high-water mark and a peer that never
/// reads, `feed` eventually stays pending and the queue stays bounded;
/// once the peer reads, `feed` completes.
#[tokio::test]
async fn feed_waits_when_write_buffer_is_over_the_mark() {
    const MARK: usize = 64 << 10;
    const MSG: usize = 16 << 10;
    let (a, mut peer) = duplex(4096);
    let config = Config::default().with_max_write_buffer(MARK);
    let mut ws = WebSocket::from_raw(a, Role::Server, &config, &[]);
    let mut accepted = 0;
    let mut blocked = 0;
    for _ in 0..20 {
        let fut = ws.feed(Message::binary(vec![0x55u8; MSG]));
        match tokio::time::timeout(Duration::from_millis(20), fut).await {
            Ok(r) => {
                r.unwrap();
                accepted += 1;
            }
            Err(_) => blocked += 1,
        }
        assert!(ws.buffered_amount() <= MARK + MSG + 4, "queue grew to {}", ws.buffered_amount());
    }
    // Only about a mark's worth (plus the one that crosses it and one more
    // after the pipe took its 4 KiB) is accepted; every later feed waits.
    assert!(accepted <= MARK / MSG + 2, "accepted {accepted} messages over a {MARK}-byte mark");
    assert_eq!(accepted + blocked, 20);
    let last = tokio::time::timeout(Duration::from_millis(20), ws.feed(Message::binary(vec![1u8; MSG]))).await;
    assert!(last.is_err(), "feed completed while the peer reads nothing");
    assert!(ws.buffered_amount() >= MARK - 4096, "queue drained to {} with no reader", ws.buffered_amount());

    // The peer starts reading: the writer drains and feed proceeds.
    let reader = tokio::spawn(async move {
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0usize;
        loop {
            match peer.read(&mut sink).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    within(ws.feed(Message::binary(vec![2u8; MSG]))).await.unwrap();
    within(ws.flush()).await.unwrap();
    assert_eq!(ws.buffered_amount(), 0);
    drop(ws);
    let total = within(reader).await.unwrap();
    // accepted + 1 messages of MSG bytes with a 4-byte header each.
    assert_eq!(total, (accepted + 1) * (MSG + 4));
}

/// An idle connection (recv pending) holds no buffers, on the server and on
/// the client, even after a 1 MiB message went through.
#[tokio::test]
async fn idle_connection_releases_its_buffers() {
    let (mut client, mut server) = pair().await;
    let (ask, mut asked) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<usize>>(1);
    let server_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = server.recv() => match msg {
                    Some(Ok(m)) if m.is_text() || m.is_binary() => server.feed(m).await.unwrap(),
                    Some(Ok(_)) => {}
                    _ => return,
                },
                Some(reply) = asked.recv() => { let _ = reply.send(server.buffer_capacity()); }
            }
        }
    });
    for msg in [Message::text("small"), Message::binary(vec![9u8; 1 << 20]), Message::text("after")] {
        within(client.send(msg.clone())).await.unwrap();
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), msg);
    }
    // Server: idle in recv.
    let (tx, rx) = tokio::sync::oneshot::channel();
    ask.send(tx).await.unwrap();
    assert_eq!(within(rx).await.unwrap(), 0, "idle server holds buffers");

    // Client: poll recv once until it waits, then look.
    assert!(tokio::time::timeout(Duration::from_millis(50), client.recv()).await.is_err());
    assert_eq!(client.buffer_capacity(), 0, "idle client holds buffers");

    // Buffers come back when needed: the connection still works.
    within(client.send(Message::binary(vec![1u8; 100_000]))).await.unwrap();
    assert_eq!(within(client.recv()).await.unwrap().unwrap().len(), 100_000);
    server_task.abort();
}

/// A connection that waits for something else between two reads gives
/// its buffers back when told, without waiting in `recv`.
#[tokio::test]
async fn buffers_are_released_on_request_between_reads() {
    let (mut client, mut server) = pair().await;
    within(client.send(Message::binary(vec![7u8; 100_000]))).await.unwrap();
    assert_eq!(within(server.recv()).await.unwrap().unwrap().len(), 100_000);
    assert!(server.buffer_capacity() > 0, "the read's buffers are still held");
    server.release_buffers();
    assert_eq!(server.buffer_capacity(), 0);
    within(client.send(Message::text("next"))).await.unwrap();
    assert_eq!(within(server.recv()).await.unwrap().unwrap(), Message::text("next"));
}

/// A split connection over a duplex stream (the `SplitIo` impl) echoes too.
#[tokio::test]
async fn split_over_duplex_round_trip() {
    let (a, b) = duplex(1 << 16);
    let client = WebSocket::from_raw(a, Role::Client, &Config::default(), &[]);
    let mut server = WebSocket::from_raw(b, Role::Server, &Config::default(), &[]);
    let echo = tokio::spawn(async move {
        while let Some(Ok(m)) = server.recv().await {
            if m.is_binary() {
                server.feed(m).await.unwrap();
            }
        }
    });
    let (mut rx, mut tx) = client.split();
    for i in 0..200u32 {
        tx.feed(Message::binary(i.to_be_bytes().to_vec())).await.unwrap();
    }
    within(tx.flush()).await.unwrap();
    for i in 0..200u32 {
        assert_eq!(within(rx.recv()).await.unwrap().unwrap(), Message::binary(i.to_be_bytes().to_vec()));
    }
    within(tx.close(wsx::CloseCode::Normal, "")).await.unwrap();
    assert!(matches!(within(rx.recv()).await, Some(Ok(Message::Close(_)))));
    assert!(within(rx.recv()).await.is_none());
    within(echo).await.unwrap();
}

/// `split()`: both halves write to the transport (the read half flushes the
/// shared queue before it waits for input), but a transport keeps only the
/// last waker that polled it for writing. A write half blocked in `send`
/// on a full transport must still be woken when the peer drains it, even
/// after the read half polled (and finished the write) in between.
#[tokio::test]
async fn split_write_half_is_woken_after_read_half_polled_the_full_transport() {
    const SIZE: usize = 64 << 10;
    let (a, mut peer) = duplex(1024);
    let client = WebSocket::from_raw(a, Role::Client, &Config::default(), &[]);
    let (mut rx, mut tx) = client.split();

    // The write half blocks: the pipe holds 1 KiB and nobody reads.
    let sender = tokio::spawn(async move {
        tx.send(Message::binary(vec![7u8; SIZE])).await.unwrap();
        tx
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!sender.is_finished());

    // The read half polls: nothing to read, so it tries to write the
    // queue, finds the pipe full, and waits too.
    let receiver = tokio::spawn(async move {
        let first = rx.recv().await;
        (rx, first)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The peer drains the pipe (the whole frame: 64 KiB + 14 header bytes).
    let mut got = vec![0u8; SIZE + 14];
    within(peer.read_exact(&mut got)).await.unwrap();
    assert_eq!(got[..2], [0x82, 0x80 | 127]);
    let key = [got[10], got[11], got[12], got[13]];
    assert!(got[14..].iter().enumerate().all(|(i, b)| b ^ key[i % 4] == 7));

    // The send completes.
    let mut tx = within(sender).await.unwrap();
    assert_eq!(tx.buffered_amount(), 0);
    // And the read half still works.
    within(peer.write_all(&[0x81, 0x02, b'o', b'k'])).await.unwrap();
    let (_rx, first) = within(receiver).await.unwrap();
    assert_eq!(first.unwrap().unwrap(), Message::text("ok"));
    within(tx.flush()).await.unwrap();
}
