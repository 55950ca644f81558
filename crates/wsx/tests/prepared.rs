//! Prepared messages through the outgoing pump: one frame for every
//! recipient, written with the connection's other pending output, decoded
//! by each client whatever it negotiated; a client connection sends the
//! message masked instead.

mod common;

use common::*;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use wsx::proto::deflate::DeflateConfig;
use wsx::server::{Outbox, OutboxConfig, Pump, Push};
use wsx::{CloseCode, Config, Message, PreparedMessage, Role, WebSocket};

/// A duplex stream that counts the writes made to it (a vectored write
/// counts once, as one `writev` would).
struct Counting {
    io: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if r.is_ready() {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.poll_write(cx, &all)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn queued_prepared_messages_go_out_together_not_one_write_each() {
    let (a, b) = tokio::io::duplex(4 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let server = WebSocket::from_raw(Counting { io: a, writes: writes.clone() }, Role::Server, &Config::default(), &[]);
    let mut client = WebSocket::from_raw(b, Role::Client, &Config::default(), &[]);
    let (outbox, rx) = Outbox::new(OutboxConfig::default());
    let small = PreparedMessage::text("tick");
    let large = PreparedMessage::binary(vec![7u8; 5000]);
    // Broadcasts (small ones coalesced, large ones by reference) and the
    // connection's own message, all waiting before the pump runs.
    for _ in 0..10 {
        assert_eq!(outbox.push_droppable(small.clone()), Push::Queued);
        assert_eq!(outbox.push_droppable(large.clone()), Push::Queued);
    }
    assert_eq!(outbox.push(Message::text("own")), Push::Queued);
    let mut pump = Pump::new(server, rx);
    let t = tokio::spawn(async move { while pump.recv().await.is_some() {} });
    for _ in 0..10 {
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text("tick"));
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::binary(vec![7u8; 5000]));
    }
    assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text("own"));
    let n = writes.load(Ordering::Relaxed);
    assert!(n <= 2, "21 messages in {n} writes");
    drop(outbox);
    t.abort();
}

/// A broadcast reaches clients that negotiated different compression: each
/// decodes it; the compressed frame is made once per setting that can
/// share it, and the context-takeover connection compresses its own.
#[tokio::test]
async fn every_client_decodes_a_broadcast_whatever_it_negotiated() {
    let configs = [
        Config::default().with_compression(false),
        // No server context takeover (the server's default), full window.
        Config::default().with_deflate(DeflateConfig::server_default().with_threshold(0)),
        Config::default().with_deflate(DeflateConfig::server_default().with_threshold(0)),
        // Another window: another compressed frame.
        Config::default()
            .with_deflate(DeflateConfig::server_default().with_threshold(0).with_server_max_window_bits(10)),
        // Context takeover: the connection's own compressor.
        Config::default().with_deflate(DeflateConfig::default().with_threshold(0)),
    ];
    let mut clients = Vec::new();
    let mut outboxes = Vec::new();
    let mut pumps = Vec::new();
    for c in &configs {
        let (client, server) = pair_with(c).await;
        let (outbox, rx) = Outbox::new(OutboxConfig::default());
        let mut pump = Pump::new(server, rx);
        pumps.push(tokio::spawn(async move { while pump.recv().await.is_some() {} }));
        clients.push(client);
        outboxes.push(outbox);
    }
    let news = PreparedMessage::text("{\"event\":\"news\",\"data\":\"the same words again, \"}".repeat(30));
    for _ in 0..2 {
        for o in &outboxes {
            assert_eq!(o.push_droppable(news.clone()), Push::Queued);
        }
    }
    for (i, client) in clients.iter_mut().enumerate() {
        for _ in 0..2 {
            assert_eq!(within(client.recv()).await.unwrap().unwrap(), news.to_message(), "client {i}");
        }
        client.close(CloseCode::Normal, "").await.unwrap();
        while within(client.recv()).await.is_some() {}
    }
    assert_eq!(news.compressed_encodings(), 2, "15-bit and 10-bit windows, none for context takeover");
    for p in pumps {
        within(p).await.unwrap();
    }
}

/// A client must mask its frames (RFC 6455 §5.3): a prepared message in a
/// client connection's outbox goes out as its message, masked; a server
/// fails a connection that sends it unmasked.
#[tokio::test]
async fn a_client_pump_sends_a_prepared_message_masked() {
    let (client, mut server) = pair().await;
    let (outbox, rx) = Outbox::new(OutboxConfig::default());
    let mut pump = Pump::new(client, rx);
    let t = tokio::spawn(async move { while pump.recv().await.is_some() {} });
    assert_eq!(outbox.push(PreparedMessage::text("from a client")), Push::Queued);
    assert_eq!(within(server.recv()).await.unwrap().unwrap(), Message::text("from a client"));
    drop(outbox);
    t.abort();
}
