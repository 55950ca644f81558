//! Prepared messages through the outgoing pump: one frame for every
//! recipient, decoded by each client whatever it negotiated; a client
//! connection sends the message masked instead. (Written with the
//! connection's other pending output: `tests/io.rs`.)

mod common;

use common::*;
use wsx::proto::deflate::DeflateConfig;
use wsx::server::{Outbox, OutboxConfig, Pump, Push};
use wsx::{CloseCode, Config, Message, PreparedMessage};

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
