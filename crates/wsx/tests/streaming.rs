//! Streaming receive over TCP: `recv_chunk` hands out a message's bytes as
//! they arrive, so an echo can forward a large message before its last
//! byte is in.

mod common;

use common::{listen, within, ws_url};
use wsx::proto::Incoming;
use wsx::Message;

/// An echo server that forwards each chunk as a fragment as soon as it arrives.
async fn streaming_echo_server() -> String {
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        while let Some(incoming) = ws.recv_chunk().await {
            match incoming {
                Ok(Incoming::Chunk(c)) => {
                    ws.feed_fragment(c.text, c.data, c.last).await.unwrap();
                    ws.flush().await.unwrap();
                }
                Ok(Incoming::Message(_)) => {}
                Err(_) => break,
            }
        }
    });
    ws_url(addr, "/")
}

#[tokio::test]
async fn streaming_echo_round_trips_large_and_small_messages() {
    let url = streaming_echo_server().await;
    let (mut ws, _) = within(wsx::connect(url)).await.unwrap();
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    for msg in
        [Message::binary(big), Message::text("héllo"), Message::binary(Vec::new()), Message::text("é".repeat(40_000))]
    {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
    }
}

#[tokio::test]
async fn first_fragment_is_echoed_before_the_message_is_complete() {
    let url = streaming_echo_server().await;
    let (mut ws, _) = within(wsx::connect(url)).await.unwrap();
    // Send only the first fragment of a message; read its echo in chunks.
    ws.feed_fragment(false, bytes::Bytes::from(vec![1u8; 50_000]), false).await.unwrap();
    ws.flush().await.unwrap();
    let mut got = 0;
    while got < 50_000 {
        match within(ws.recv_chunk()).await.unwrap().unwrap() {
            Incoming::Chunk(c) => {
                assert!(!c.last, "the message is not finished yet");
                got += c.data.len();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, 50_000);
    ws.feed_fragment(false, bytes::Bytes::from_static(b"end"), true).await.unwrap();
    ws.flush().await.unwrap();
    let mut tail = Vec::new();
    loop {
        match within(ws.recv_chunk()).await.unwrap().unwrap() {
            Incoming::Chunk(c) => {
                tail.extend_from_slice(&c.data);
                if c.last {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(tail, b"end");
}
