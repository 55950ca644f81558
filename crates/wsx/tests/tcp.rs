//! wsx client <-> wsx server over real TCP on 127.0.0.1: echo in both
//! directions, fragmentation, the Stream/Sink API, split halves, automatic
//! pongs and connect errors.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use wsx::{CloseCode, Error, Message};

const MIB: usize = 1 << 20;

/// The messages every echo test sends: text, binary, both empty, and
/// 1 MiB of each.
fn corpus() -> Vec<Message> {
    vec![
        Message::text("hello, wsx"),
        Message::text("ünïcødé ✓ 🦀"),
        Message::binary(vec![0u8, 1, 2, 3, 255]),
        Message::text(""),
        Message::binary(Vec::new()),
        Message::binary((0..MIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
        Message::text("x".repeat(MIB)),
    ]
}

/// RFC 6455 §5.6: text and binary data frames of any size (7-bit, 16-bit
/// and 64-bit lengths, §5.2) arrive unchanged; client frames masked (§5.3).
#[tokio::test]
async fn client_to_server_echo_round_trip_preserves_type_and_payload() {
    let (url, server) = echo_server().await;
    let (mut ws, response) = within(wsx::connect(url.as_str())).await.unwrap();
    assert_eq!(response.status(), 101);
    for msg in corpus() {
        within(ws.send(msg.clone())).await.unwrap();
        let echoed = within(ws.recv()).await.expect("connection ended").unwrap();
        assert_eq!(echoed, msg);
    }
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(matches!(within(ws.recv()).await, Some(Ok(Message::Close(_)))));
    assert!(within(ws.recv()).await.is_none());
    let other = within(server).await.unwrap().unwrap();
    assert_eq!(other, vec![Message::Close(Some(wsx::CloseFrame::new(CloseCode::Normal, "")))]);
}

/// The same in the other direction: the server sends (unmasked, §5.1) and
/// the wsx client echoes.
#[tokio::test]
async fn server_to_client_echo_round_trip_preserves_type_and_payload() {
    let (l, addr) = listen().await;
    let client = tokio::spawn(async move {
        let (mut ws, _) = wsx::connect(ws_url(addr, "/")).await?;
        while let Some(msg) = ws.recv().await {
            let msg = msg?;
            if msg.is_text() || msg.is_binary() {
                ws.feed(msg).await?;
            }
        }
        Ok::<_, Error>(())
    });
    let (tcp, _) = l.accept().await.unwrap();
    let mut ws = within(wsx::accept(tcp)).await.unwrap();
    for msg in corpus() {
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
    }
    within(ws.close(CloseCode::GoingAway, "")).await.unwrap();
    assert!(matches!(within(ws.recv()).await, Some(Ok(Message::Close(_)))));
    assert!(within(ws.recv()).await.is_none());
    within(client).await.unwrap().unwrap();
}

/// RFC 6455 §5.4: a message sent in fragments, with a control frame
/// between them, is delivered as one message.
#[tokio::test]
async fn fragmented_send_is_reassembled_into_one_message() {
    let (url, server) = echo_server().await;
    let (mut ws, _) = within(wsx::connect(url.as_str())).await.unwrap();

    ws.feed_fragment(true, Bytes::from_static("frag".as_bytes()), false).await.unwrap();
    ws.feed(Message::ping("between")).await.unwrap();
    ws.feed_fragment(true, Bytes::from_static("men".as_bytes()), false).await.unwrap();
    // A multi-byte character split across fragments (§8.1: validated as
    // a whole message).
    let snow = "☃".as_bytes();
    ws.feed_fragment(true, Bytes::copy_from_slice(&snow[..1]), false).await.unwrap();
    ws.feed_fragment(true, Bytes::copy_from_slice(&snow[1..]), true).await.unwrap();
    ws.feed_fragment(false, Bytes::from_static(&[1, 2]), false).await.unwrap();
    ws.feed_fragment(false, Bytes::new(), false).await.unwrap();
    ws.feed_fragment(false, Bytes::from_static(&[3]), true).await.unwrap();
    within(ws.flush()).await.unwrap();

    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::pong("between"));
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("fragmen☃"));
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::binary(vec![1, 2, 3]));

    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    while within(ws.recv()).await.is_some() {}
    let other = within(server).await.unwrap().unwrap();
    assert_eq!(other[0], Message::ping("between"));
}

/// A data message may not start inside a fragmented one (§5.4): the
/// sender refuses it instead of corrupting the stream.
#[tokio::test]
async fn whole_message_inside_fragmented_send_is_refused() {
    let (mut client, _server) = pair().await;
    client.feed_fragment(true, Bytes::from_static(b"a"), false).await.unwrap();
    let err = client.feed(Message::text("b")).await.unwrap_err();
    assert!(matches!(err, Error::Send(wsx::SendError::FragmentOrder)), "{err:?}");
}

/// The `Stream` and `Sink` implementations through futures-util, both
/// ends; `SinkExt::close` starts the closing handshake with 1000 (§7.4.1).
#[tokio::test]
async fn stream_and_sink_api_round_trip() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let ws = wsx::accept(tcp).await.unwrap();
        let (mut sink, mut stream) = StreamExt::split(ws);
        let mut others = Vec::new();
        while let Some(msg) = stream.next().await {
            let msg = msg.unwrap();
            if msg.is_text() || msg.is_binary() {
                sink.send(msg).await.unwrap();
            } else {
                others.push(msg);
            }
        }
        others
    });
    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/"))).await.unwrap();
    SinkExt::send(&mut ws, Message::text("one")).await.unwrap();
    assert_eq!(within(StreamExt::next(&mut ws)).await.unwrap().unwrap(), Message::text("one"));

    SinkExt::feed(&mut ws, Message::binary(vec![2u8])).await.unwrap();
    SinkExt::feed(&mut ws, Message::text("three")).await.unwrap();
    SinkExt::flush(&mut ws).await.unwrap();
    let mut batch = futures_util::stream::iter((0..10).map(|i| Ok(Message::text(format!("n{i}")))));
    within(SinkExt::send_all(&mut ws, &mut batch)).await.unwrap();

    let mut got = Vec::new();
    while got.len() < 12 {
        got.push(within(StreamExt::next(&mut ws)).await.unwrap().unwrap());
    }
    let mut want = vec![Message::binary(vec![2u8]), Message::text("three")];
    want.extend((0..10).map(|i| Message::text(format!("n{i}"))));
    assert_eq!(got, want);

    within(SinkExt::close(&mut ws)).await.unwrap();
    let close = within(StreamExt::next(&mut ws)).await.unwrap().unwrap();
    assert_eq!(close, Message::Close(Some(wsx::CloseFrame::new(CloseCode::Normal, ""))));
    assert!(within(StreamExt::next(&mut ws)).await.is_none());
    let others = within(server).await.unwrap();
    assert_eq!(others, vec![Message::Close(Some(wsx::CloseFrame::new(CloseCode::Normal, "")))]);
}

/// RFC 6455 §5.5.2/§5.5.3: a ping is answered with a pong carrying the
/// same application data, unmasked from the server; the application still
/// sees the ping.
#[tokio::test]
async fn server_answers_ping_with_pong_of_same_payload() {
    let (l, addr) = listen().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        while let Some(msg) = ws.recv().await {
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    let mut raw = within(Raw::upgrade(addr)).await;
    raw.write(&client_frame(0x9, b"are you there?")).await;
    let pong = raw.read_frame().await;
    assert_eq!(pong, Frame { fin: true, opcode: 0xA, masked: false, payload: b"are you there?".to_vec() });
    assert_eq!(within(rx.recv()).await.unwrap().unwrap(), Message::ping("are you there?"));

    // An empty ping gets an empty pong.
    raw.write(&client_frame(0x9, b"")).await;
    assert_eq!(raw.read_frame().await, Frame { fin: true, opcode: 0xA, masked: false, payload: vec![] });
    drop(raw);
    within(server).await.unwrap();
}

/// The client answers the server's pings too (§5.5.2), masked (§5.3).
#[tokio::test]
async fn client_answers_ping_with_masked_pong() {
    let (l, addr) = listen().await;
    let client = tokio::spawn(async move {
        let (mut ws, _) = wsx::connect(ws_url(addr, "/")).await.unwrap();
        let mut seen = Vec::new();
        while let Some(Ok(msg)) = ws.recv().await {
            seen.push(msg);
        }
        seen
    });
    let mut raw = within(raw_server_upgrade(&l, "")).await;
    raw.write(&frame(true, 0x9, b"ping!", None)).await;
    let pong = raw.read_frame().await;
    assert_eq!((pong.opcode, pong.masked, pong.payload.as_slice()), (0xA, true, &b"ping!"[..]));
    drop(raw);
    let seen = within(client).await.unwrap();
    assert_eq!(seen, vec![Message::ping("ping!")]);
}

/// `split()`: the write half sends from one task while the read half
/// receives in another; every echo arrives, in order.
#[tokio::test]
async fn split_halves_work_concurrently_from_two_tasks() {
    const N: usize = 1000;
    let (url, server) = echo_server().await;
    let (ws, _) = within(wsx::connect(url.as_str())).await.unwrap();
    let (mut rx, mut tx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            tx.feed(Message::text(format!("message {i}"))).await.unwrap();
            if i % 50 == 49 {
                tx.flush().await.unwrap();
            }
        }
        tx.flush().await.unwrap();
        tx
    });
    let receiver = tokio::spawn(async move {
        for i in 0..N {
            let msg = rx.recv().await.expect("ended early").unwrap();
            assert_eq!(msg, Message::text(format!("message {i}")));
        }
        rx
    });
    let mut tx = within(sender).await.unwrap();
    let mut rx = within(receiver).await.unwrap();

    tx.close(CloseCode::Normal, "done").await.unwrap();
    assert_eq!(
        within(rx.recv()).await.unwrap().unwrap(),
        Message::Close(Some(wsx::CloseFrame::new(CloseCode::Normal, "")))
    );
    assert!(within(rx.recv()).await.is_none());
    let others = within(server).await.unwrap().unwrap();
    assert_eq!(others, vec![Message::Close(Some(wsx::CloseFrame::new(CloseCode::Normal, "done")))]);
}

/// §5.5.2 with a split connection: while only the read half is polled
/// (the write half idle), a ping is still answered.
#[tokio::test]
async fn split_read_half_alone_answers_ping() {
    let (l, addr) = listen().await;
    let client = tokio::spawn(async move {
        let (ws, _) = wsx::connect(ws_url(addr, "/")).await.unwrap();
        let (mut rx, tx) = ws.split();
        let mut seen = Vec::new();
        while let Some(Ok(msg)) = rx.recv().await {
            seen.push(msg);
        }
        drop(tx);
        seen
    });
    let (tcp, _) = l.accept().await.unwrap();
    let mut ws = within(wsx::accept(tcp)).await.unwrap();
    within(ws.ping(Bytes::from_static(b"split ping"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::pong("split ping"));
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    assert!(matches!(within(ws.recv()).await, Some(Ok(Message::Close(_)))));
    assert!(within(ws.recv()).await.is_none());
    let seen = within(client).await.unwrap();
    assert_eq!(seen[0], Message::ping("split ping"));
    assert!(matches!(seen[1], Message::Close(_)));
}

/// A URL that cannot name a WebSocket endpoint is a URL error, before any
/// connection is attempted (RFC 6455 §3: ws and wss URIs only).
#[tokio::test]
async fn connect_to_unusable_url_is_a_url_error() {
    for url in ["http2://127.0.0.1:1/", "ftp://127.0.0.1:1/", "/just/a/path", "not a url"] {
        let err = within(wsx::connect(url)).await.unwrap_err();
        assert!(matches!(err, Error::Url(_)), "{url}: {err:?}");
    }
}

/// `wss://` to a server that speaks plain TCP fails in the TLS layer; it
/// never falls back to a plaintext handshake.
#[tokio::test]
async fn wss_to_plaintext_server_fails_without_plaintext_fallback() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::new(tcp);
        let mut first = [0u8; 5];
        raw.stream.read_exact(&mut first).await.unwrap();
        // A TLS handshake record (ClientHello), not "GET /...".
        assert_eq!(first[0], 0x16, "not a TLS record: {first:?}");
        raw.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    });
    let err = within(wsx::connect(format!("wss://{addr}/"))).await.unwrap_err();
    // The plain HTTP answer is recognised: use ws://.
    assert!(matches!(err, Error::WrongScheme { use_scheme: "ws" }), "{err:?}");
    assert_eq!(err.to_string(), "the server answered in plain HTTP, not TLS: use ws:// instead of wss://");
    within(server).await.unwrap();
}

/// `ws://` to a TLS server: its first bytes are a TLS record (here an
/// alert, as rustls sends for a plaintext request), and the client says at
/// once to use wss://, without waiting for the connection to end.
#[tokio::test]
async fn ws_to_a_tls_server_says_to_use_wss() {
    let (l, addr) = listen().await;
    let _server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::new(tcp);
        let mut first = [0u8; 3];
        raw.stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"GET");
        // A fatal TLS alert (protocol version), then silence.
        raw.write(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]).await;
        tokio::time::sleep(LIMIT).await;
    });
    let start = std::time::Instant::now();
    let err = within(wsx::connect(ws_url(addr, "/"))).await.unwrap_err();
    assert!(matches!(err, Error::WrongScheme { use_scheme: "wss" }), "{err:?}");
    assert_eq!(err.to_string(), "the server answered with TLS: use wss:// instead of ws://");
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

/// Connecting to a port nobody listens on is a connect error that names
/// the address dialled.
#[tokio::test]
async fn connect_to_closed_port_names_the_address() {
    let (l, addr) = listen().await;
    drop(l);
    let err = within(wsx::connect(ws_url(addr, "/"))).await.unwrap_err();
    match &err {
        Error::Connect { address, source } => {
            assert_eq!(address, &addr.to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(err.to_string().starts_with(&format!("cannot connect to {addr}: ")), "{err}");
}

/// A port out of range is an invalid URL, never the scheme's default port;
/// so are `ws:/host` (one slash) and port 0. The error names the problem.
#[tokio::test]
async fn a_port_out_of_range_or_one_slash_is_an_invalid_url() {
    for (url, says) in [
        ("ws://127.0.0.1:99999/", "port 99999 is out of range"),
        ("wss://localhost:65536/", "port 65536 is out of range"),
        ("ws://127.0.0.1:0/", "port 0 is out of range"),
        ("ws:/127.0.0.1:9001/", "needs two slashes"),
        ("WS:127.0.0.1/", "needs two slashes"),
    ] {
        let err = within(wsx::connect(url)).await.unwrap_err();
        assert!(matches!(&err, Error::Url(m) if m.contains(says)), "{url}: {err:?}");
        // The same check for a Uri or a request built elsewhere.
        if let Ok(uri) = url.parse::<http::Uri>() {
            let err = within(wsx::connect(uri)).await.unwrap_err();
            assert!(matches!(&err, Error::Url(_)), "{url} as a Uri: {err:?}");
        }
    }
    // An empty port is the scheme's default (the URL standard's rule).
    assert!(wsx::IntoClientRequest::into_client_request("ws://example.com:/").is_ok());
}

/// The client's handshake timeout bounds a server that accepts TCP but
/// never answers the upgrade.
#[tokio::test]
async fn connect_times_out_when_server_never_answers() {
    let (l, addr) = listen().await;
    let config = wsx::Config::default().with_handshake_timeout(Duration::from_millis(200));
    let start = std::time::Instant::now();
    let err = within(wsx::connect_with(ws_url(addr, "/"), &config)).await.unwrap_err();
    assert!(matches!(err, Error::HandshakeTimeout), "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(150));
    drop(l);
}
