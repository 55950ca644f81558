//! The closing handshake (RFC 6455 §5.5.1, §7) and failing the connection
//! (§7.1.7) over real TCP.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use wsx::{CloseCode, CloseFrame, CloseState, Config, Error, Message, ProtocolError};

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame::new(code, reason)))
}

/// §5.5.1 / §7.1.2: the client closes with 4000 "bye"; the server receives
/// exactly that close frame, answers it (echoing the code), and both ends
/// then end with `None`.
#[tokio::test]
async fn client_initiated_close_is_echoed_and_both_ends_finish() {
    let (mut client, mut server) = pair().await;
    within(client.close(4000, "bye")).await.unwrap();
    assert_eq!(client.close_state(), CloseState::CloseSent);
    // §5.5.1: no data after our close frame.
    assert!(matches!(within(client.send(Message::text("late"))).await, Err(Error::Send(wsx::SendError::Closed))));

    let server_task = tokio::spawn(async move {
        let first = server.recv().await;
        let second = server.recv().await;
        (first, second, server.close_state())
    });
    assert_eq!(within(client.recv()).await.unwrap().unwrap(), close_msg(4000, ""));
    assert!(within(client.recv()).await.is_none());
    assert_eq!(client.close_state(), CloseState::Closed);
    // Ended for good.
    assert!(within(client.recv()).await.is_none());

    let (first, second, server_state) = within(server_task).await.unwrap();
    assert_eq!(first.unwrap().unwrap(), close_msg(4000, "bye"));
    assert!(second.is_none(), "server: {second:?}");
    assert_eq!(server_state, CloseState::Closed);
}

/// The same started by the server with 1001 (going away).
#[tokio::test]
async fn server_initiated_close_is_echoed_and_both_ends_finish() {
    let (mut client, mut server) = pair().await;
    within(server.close(CloseCode::GoingAway, "shutting down")).await.unwrap();
    let client_task = tokio::spawn(async move {
        let first = client.recv().await;
        let second = client.recv().await;
        (first, second)
    });
    assert_eq!(within(server.recv()).await.unwrap().unwrap(), close_msg(1001, ""));
    assert!(within(server.recv()).await.is_none());
    let (first, second) = within(client_task).await.unwrap();
    assert_eq!(first.unwrap().unwrap(), close_msg(1001, "shutting down"));
    assert!(second.is_none(), "client: {second:?}");
}

/// Messages sent before the close frame are delivered before it (§7.1.2:
/// the close frame is the last frame).
#[tokio::test]
async fn messages_queued_before_close_arrive_before_it() {
    let (mut client, mut server) = pair().await;
    client.feed(Message::text("one")).await.unwrap();
    client.feed(Message::text("two")).await.unwrap();
    within(client.close(CloseCode::Normal, "")).await.unwrap();
    let client_task = tokio::spawn(async move { while client.recv().await.is_some() {} });
    assert_eq!(within(server.recv()).await.unwrap().unwrap(), Message::text("one"));
    assert_eq!(within(server.recv()).await.unwrap().unwrap(), Message::text("two"));
    assert_eq!(within(server.recv()).await.unwrap().unwrap(), close_msg(1000, ""));
    assert!(within(server.recv()).await.is_none());
    within(client_task).await.unwrap();
}

/// §7.1.1: after the closing handshake the server closes the TCP
/// connection first; a raw client that never closes its side sees the
/// server's close reply and then EOF.
#[tokio::test]
async fn server_closes_tcp_first_after_closing_handshake() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        let mut seen = Vec::new();
        while let Some(msg) = ws.recv().await {
            seen.push(msg);
        }
        seen
    });
    let mut raw = within(Raw::upgrade(addr)).await;
    raw.write(&client_frame(0x8, &close_body(1000, "done"))).await;
    let reply = raw.read_frame().await;
    assert_eq!(reply.close_code(), Some(1000));
    assert!(!reply.masked);
    // The raw client keeps its side open: the EOF must come from the server,
    // promptly (not after the 5 s close timeout).
    raw.expect_eof_within(Duration::from_secs(1)).await;
    drop(raw);
    let seen = within(server).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(*seen[0].as_ref().unwrap(), close_msg(1000, "done"));
}

/// §7.1.1: the client, after the closing handshake, waits for the server to
/// close TCP instead of closing first (which would leave it in TIME_WAIT),
/// and finishes when the server does.
#[tokio::test]
async fn client_waits_for_server_to_close_tcp_first() {
    let (l, addr) = listen().await;
    let client = tokio::spawn(async move {
        let (mut ws, _) = wsx::connect(ws_url(addr, "/")).await.unwrap();
        let mut seen = Vec::new();
        while let Some(msg) = ws.recv().await {
            seen.push(msg);
        }
        seen
    });
    let mut raw = within(raw_server_upgrade(&l, "")).await;
    raw.write(&frame(true, 0x8, &close_body(1000, ""), None)).await;
    let reply = raw.read_frame().await;
    assert!(reply.masked);
    assert_eq!(reply.close_code(), Some(1000));
    // The client does not close the TCP connection on its own.
    raw.expect_silence(Duration::from_millis(150)).await;
    assert!(!client.is_finished());
    // The server closes; the client then finishes cleanly.
    raw.stream.shutdown().await.unwrap();
    let seen = within(client).await.unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(*seen[0].as_ref().unwrap(), close_msg(1000, ""));
    // And the client closed its side in turn.
    raw.expect_eof_within(Duration::from_secs(1)).await;
}

/// A peer that never answers our close frame: `recv` gives up with
/// `CloseTimeout` after about the configured close timeout (server role).
#[tokio::test]
async fn close_timeout_when_client_never_answers_close() {
    let (l, addr) = listen().await;
    let config = Config::default().with_close_timeout(Duration::from_millis(200));
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws =
            wsx::accept_with(tcp, |_: &wsx::handshake::UpgradeRequest| Ok(wsx::handshake::Accept::new()), &config)
                .await
                .unwrap();
        ws.close(CloseCode::Normal, "").await.unwrap();
        let start = Instant::now();
        let r = ws.recv().await;
        let elapsed = start.elapsed();
        let after = ws.recv().await;
        (r, elapsed, after)
    });
    let mut raw = within(Raw::upgrade(addr)).await;
    assert_eq!(raw.read_frame().await.close_code(), Some(1000));
    let (r, elapsed, after) = within(server).await.unwrap();
    assert!(matches!(r, Some(Err(Error::CloseTimeout))), "{r:?}");
    assert!(elapsed >= Duration::from_millis(150) && elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(after.is_none(), "{after:?}");
    drop(raw);
}

/// The same in the client role.
#[tokio::test]
async fn close_timeout_when_server_never_answers_close() {
    let (l, addr) = listen().await;
    let config = Config::default().with_close_timeout(Duration::from_millis(200));
    let fake = tokio::spawn(async move {
        let mut raw = raw_server_upgrade(&l, "").await;
        let close = raw.read_frame().await;
        // Hold the connection open, never answering.
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(raw);
        close
    });
    let (mut ws, _) = within(wsx::connect_with(ws_url(addr, "/"), &config)).await.unwrap();
    within(ws.close(4001, "")).await.unwrap();
    let start = Instant::now();
    let r = within(ws.recv()).await;
    let elapsed = start.elapsed();
    assert!(matches!(r, Some(Err(Error::CloseTimeout))), "{r:?}");
    assert!(elapsed >= Duration::from_millis(150) && elapsed < Duration::from_millis(1500), "{elapsed:?}");
    fake.abort();
}

/// §7.1.7 / §5.1: a server fails the connection on an unmasked client
/// frame, with close code 1002 (§7.4.1), then closes TCP.
#[tokio::test]
async fn unmasked_client_frame_fails_connection_with_1002() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        (ws.recv().await, ws.recv().await)
    });
    let mut raw = within(Raw::upgrade(addr)).await;
    raw.write(&frame(true, 0x1, b"not masked", None)).await;
    let close = raw.read_frame().await;
    assert_eq!(close.close_code(), Some(1002));
    raw.expect_eof_within(Duration::from_secs(1)).await;
    drop(raw);
    let (first, second) = within(server).await.unwrap();
    assert!(matches!(first, Some(Err(Error::Protocol(ProtocolError::UnmaskedFrame)))), "{first:?}");
    assert!(second.is_none(), "{second:?}");
}

/// §8.1: invalid UTF-8 in a text message fails the connection with 1007.
#[tokio::test]
async fn invalid_utf8_fails_connection_with_1007() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        (ws.recv().await, ws.recv().await)
    });
    let mut raw = within(Raw::upgrade(addr)).await;
    raw.write(&client_frame(0x1, &[b'o', b'k', 0xff, 0xfe])).await;
    let close = raw.read_frame().await;
    assert_eq!(close.close_code(), Some(1007));
    raw.expect_eof_within(Duration::from_secs(1)).await;
    drop(raw);
    let (first, second) = within(server).await.unwrap();
    assert!(matches!(first, Some(Err(Error::Protocol(ProtocolError::InvalidUtf8)))), "{first:?}");
    assert!(second.is_none(), "{second:?}");
}

/// Messages that arrived before the violation are still delivered, and
/// nothing after it (§7.1.7: stop processing data).
#[tokio::test]
async fn messages_before_a_violation_are_delivered_then_the_error() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        let mut out = Vec::new();
        while let Some(m) = ws.recv().await {
            out.push(m);
        }
        out
    });
    let mut raw = within(Raw::upgrade(addr)).await;
    let mut bytes = client_frame(0x1, b"fine");
    bytes.extend(frame(true, 0x3, b"", Some([1, 2, 3, 4]))); // reserved opcode
    bytes.extend(client_frame(0x1, b"never"));
    raw.write(&bytes).await;
    assert_eq!(raw.read_frame().await.close_code(), Some(1002));
    raw.expect_eof_within(Duration::from_secs(1)).await;
    drop(raw);
    let out = within(server).await.unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(*out[0].as_ref().unwrap(), Message::text("fine"));
    assert!(matches!(out[1], Err(Error::Protocol(ProtocolError::ReservedOpcode(3)))), "{:?}", out[1]);
}

/// §7.1.5: the TCP connection closing without a close frame is an abnormal
/// closure (1006), reported as an error, then `None`.
#[tokio::test]
async fn tcp_close_without_close_frame_is_abnormal_closure() {
    // Server side.
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        (ws.recv().await, ws.recv().await)
    });
    let mut raw = within(Raw::upgrade(addr)).await;
    raw.write(&client_frame(0x2, b"last words")).await;
    drop(raw);
    let (first, second) = within(server).await.unwrap();
    // The message before EOF may arrive; then the abnormal closure.
    let err = match first {
        Some(Ok(m)) => {
            assert_eq!(m, Message::binary(b"last words".to_vec()));
            second
        }
        other => other,
    };
    assert!(matches!(err, Some(Err(Error::Protocol(ProtocolError::AbnormalClosure)))), "{err:?}");

    // Client side.
    let (l, addr) = listen().await;
    let fake = tokio::spawn(async move { drop(raw_server_upgrade(&l, "").await) });
    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/"))).await.unwrap();
    within(fake).await.unwrap();
    let r = within(ws.recv()).await;
    assert!(matches!(r, Some(Err(Error::Protocol(ProtocolError::AbnormalClosure)))), "{r:?}");
    assert!(within(ws.recv()).await.is_none());
}

/// EOF in the middle of a frame is an abnormal closure too.
#[tokio::test]
async fn eof_inside_a_frame_is_abnormal_closure() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        ws.recv().await
    });
    let mut raw = within(Raw::upgrade(addr)).await;
    let f = client_frame(0x2, &[0u8; 100]);
    raw.write(&f[..50]).await;
    drop(raw);
    let r = within(server).await.unwrap();
    assert!(matches!(r, Some(Err(Error::Protocol(ProtocolError::AbnormalClosure)))), "{r:?}");
}
