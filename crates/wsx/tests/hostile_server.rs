//! Hostile servers against the wsx client: each test runs a raw server on
//! loopback that answers the opening handshake (or does not) with
//! hand-made bytes, and checks that the client fails the right way, with
//! the right close code, quickly, without buffering what the server
//! declares. Also the server-side handshake timer against a client that
//! keeps trickling bytes (`wsx serve` has no flag to shorten it, so the
//! CLI's hostile suite can only check its 10 s default).

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsx::handshake::HandshakeError;
use wsx::{Config, Error, Message, ProtocolError};

/// A client with default settings against `serve`, which gets the raw
/// server side after the 101 (with `extra` response headers).
async fn client_against<F, Fut>(extra: &'static str, config: Config, serve: F) -> wsx::WebSocket<wsx::MaybeTlsStream>
where
    F: FnOnce(Raw) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (l, addr) = listen().await;
    tokio::spawn(async move {
        let raw = raw_server_upgrade(&l, extra).await;
        serve(raw).await;
    });
    let (ws, _) = within(wsx::connect_with(ws_url(addr, "/"), &config)).await.unwrap();
    ws
}

/// The client's close frame as the raw server reads it.
async fn close_code_from_client(raw: &mut Raw) -> Option<u16> {
    let f = raw.read_frame().await;
    assert!(f.masked, "a client frame must be masked");
    f.close_code()
}

/// The client's next item: an error whose close code is `code`.
async fn expect_protocol_error(ws: &mut wsx::WebSocket<wsx::MaybeTlsStream>, code: u16) -> ProtocolError {
    match within(ws.recv()).await {
        Some(Err(Error::Protocol(e))) => {
            assert_eq!(u16::from(e.close_code()), code, "{e:?}");
            e
        }
        other => panic!("expected a protocol error with {code}, got {other:?}"),
    }
}

/// A frame that declares 1 GiB and sends nothing more: the client fails
/// with 1009 at once, without waiting for (or reserving) the payload.
#[tokio::test]
async fn server_declaring_a_gigabyte_frame_gets_1009_at_once() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut ws = client_against("", Config::default(), |mut raw| async move {
        let mut h = vec![0x82, 127];
        h.extend_from_slice(&(1u64 << 30).to_be_bytes());
        raw.write(&h).await;
        let _ = tx.send(close_code_from_client(&mut raw).await);
    })
    .await;
    let start = Instant::now();
    let e = expect_protocol_error(&mut ws, 1009).await;
    assert!(matches!(e, ProtocolError::FrameTooBig { size, .. } if size == 1 << 30), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert!(ws.buffer_capacity() < 1 << 20, "the client holds {} bytes", ws.buffer_capacity());
    assert_eq!(within(rx).await.unwrap(), Some(1009));
}

/// A masked frame from the server (§5.1): the client fails with 1002.
#[tokio::test]
async fn server_sending_a_masked_frame_gets_1002() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut ws = client_against("", Config::default(), |mut raw| async move {
        raw.write(&frame(true, 0x1, b"masked", Some([1, 2, 3, 4]))).await;
        let _ = tx.send(close_code_from_client(&mut raw).await);
    })
    .await;
    let e = expect_protocol_error(&mut ws, 1002).await;
    assert_eq!(e, ProtocolError::MaskedFrame);
    assert_eq!(within(rx).await.unwrap(), Some(1002));
}

/// Invalid UTF-8 from the server, whole and split across fragments: 1007,
/// after the valid message before it.
#[tokio::test]
async fn server_sending_invalid_utf8_gets_1007() {
    for fragments in [&[&b"ok \xff"[..]][..], &[b"\xe2\x82", b"\x28"], &[b"a", b"\xed\xa0\x80"]] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let fragments: Vec<Vec<u8>> = fragments.iter().map(|f| f.to_vec()).collect();
        let mut ws = client_against("", Config::default(), move |mut raw| async move {
            raw.write(&frame(true, 0x1, "valid ✓".as_bytes(), None)).await;
            let n = fragments.len();
            for (i, f) in fragments.iter().enumerate() {
                raw.write(&frame(i + 1 == n, if i == 0 { 0x1 } else { 0x0 }, f, None)).await;
            }
            let _ = tx.send(close_code_from_client(&mut raw).await);
        })
        .await;
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("valid ✓"));
        assert_eq!(expect_protocol_error(&mut ws, 1007).await, ProtocolError::InvalidUtf8);
        assert_eq!(within(rx).await.unwrap(), Some(1007));
    }
}

/// A server that answers a compressed message that inflates to 64 MiB, to
/// a client with a 1 MiB limit: 1009 after at most 1 MiB is inflated.
#[tokio::test]
async fn server_sending_a_decompression_bomb_gets_1009() {
    use wsx::proto::deflate::DeflateParams;
    // 64 MiB of zeros, compressed as a server compresses (no masking).
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        threshold: 0,
        level: 9,
        mem_level: None,
    };
    let mut c = wsx::proto::Writer::with_deflate(wsx::Role::Server, &Default::default(), Some(&params));
    c.send(Message::binary(vec![0u8; 64 << 20])).unwrap();
    let bomb = c.take_output();
    assert!(bomb.len() < 256 << 10, "{} bytes", bomb.len());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let config = Config::default().with_max_message_size(1 << 20);
    let extra =
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n";
    let mut ws = client_against(extra, config, |mut raw| async move {
        raw.write(&bomb).await;
        let _ = tx.send(close_code_from_client(&mut raw).await);
    })
    .await;
    assert!(ws.compression_enabled());
    let e = expect_protocol_error(&mut ws, 1009).await;
    assert!(matches!(e, ProtocolError::MessageTooBig { size, .. } if size <= (1 << 20) + 1), "{e:?}");
    assert_eq!(within(rx).await.unwrap(), Some(1009));
}

/// Accept one connection, read the request head and answer with `head`.
async fn answering(head: Vec<u8>) -> std::net::SocketAddr {
    let (l, addr) = listen().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::new(tcp);
        raw.read_head().await;
        let _ = raw.stream.write_all(&head).await;
        // Hold the connection open: the client must give up by itself.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    addr
}

/// A 101 response head of 64 KiB, or with 200 header lines: the client
/// refuses it once 16 KiB (or 128 lines) are in, without waiting for more.
#[tokio::test]
async fn huge_response_heads_are_refused() {
    let mut big = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n".to_vec();
    while big.len() < 64 << 10 {
        big.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    big.extend_from_slice(b"\r\n");
    let addr = answering(big).await;
    let start = Instant::now();
    let err = within(wsx::connect(ws_url(addr, "/"))).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::TooLarge(16384))), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));

    let mut many = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let addr = answering(many).await;
    let err = within(wsx::connect(ws_url(addr, "/"))).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::TooManyHeaders)), "{err:?}");
}

/// A response head that never ends: sent fast, the client stops at 16 KiB;
/// trickled (a header line every 50 ms, forever), the handshake timeout
/// ends it.
#[tokio::test]
async fn never_ending_response_heads_are_cut_off() {
    // Fast: 1 MiB of header lines without the blank line.
    let mut endless = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
    while endless.len() < 1 << 20 {
        endless.extend_from_slice(b"X-More: yes\r\n");
    }
    let addr = answering(endless).await;
    let err = within(wsx::connect(ws_url(addr, "/"))).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::TooLarge(_))), "{err:?}");

    // Slow: one line every 50 ms, bounded to 10 s by the test itself.
    let (l, addr) = listen().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::new(tcp);
        raw.read_head().await;
        let _ = raw.stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\n").await;
        for i in 0..200 {
            if raw.stream.write_all(format!("X-{i}: trickle\r\n").as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let config = Config::default().with_handshake_timeout(Duration::from_millis(800));
    let start = Instant::now();
    let err = within(wsx::connect_with(ws_url(addr, "/"), &config)).await.unwrap_err();
    assert!(matches!(err, Error::HandshakeTimeout), "{err:?}");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(3), "took {took:?}");
}

/// The server side: a client that keeps trickling bytes of a request head
/// that never ends is cut off at the handshake timeout (a timer for the
/// whole handshake, not an idle timer that each byte would reset).
#[tokio::test]
async fn slowloris_client_is_cut_off_by_the_handshake_timeout() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let config = Config::default().with_handshake_timeout(Duration::from_millis(700));
        let start = Instant::now();
        let r = wsx::accept_with(tcp, |_: &wsx::handshake::UpgradeRequest| Ok(wsx::handshake::Accept::new()), &config)
            .await;
        (r.map(|_| ()), start.elapsed())
    });
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let mut ended = false;
    let mut sink = [0u8; 64];
    for i in 0..100 {
        // One byte every 50 ms; stop when the server hangs up.
        let line = if i % 10 == 9 { b'\n' } else { b'x' };
        if tcp.write_all(&[line]).await.is_err() {
            ended = true;
            break;
        }
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut sink)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "the server answered: {r:?}");
            ended = true;
            break;
        }
    }
    assert!(ended, "the server kept a trickling client for 5 s");
    let (r, took) = within(server).await.unwrap();
    assert!(matches!(r, Err(Error::HandshakeTimeout)), "{r:?}");
    assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(3), "took {took:?}");
}
