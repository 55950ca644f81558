//! The server layer (`wsx::server`): routing, replies, policies, slots,
//! keepalive, close handles, the outgoing pump and graceful shutdown, each
//! against a peer that sees what goes over the wire.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use wsx::handshake::Accept;
use wsx::server::{Outbox, OutboxConfig, Pump, Push, Request, Server, SlowConsumer};
use wsx::{CloseCode, Config, Message};

/// Serve `server` on an ephemeral port with an echo handler: upgrades are
/// echoed, other requests get 404.
async fn start_echo(server: &Server) -> SocketAddr {
    let (l, addr) = listen().await;
    let s = server.clone();
    tokio::spawn(async move { s.serve(l, echo_handler).await });
    addr
}

async fn echo_handler(req: Request) -> wsx::Result<()> {
    if !req.is_upgrade() {
        return req.respond(wsx::handshake::Reject::new(404, "not found\n").into_response()).await;
    }
    let mut ws = req.upgrade(Accept::new()).await?;
    echo(&mut ws).await.map(|_| ())
}

#[tokio::test]
async fn upgrades_are_served_and_other_requests_come_back_to_the_handler() {
    let server = Server::builder().build();
    let addr = start_echo(&server).await;
    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/chat"))).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("hi"));

    let mut raw = Raw::connect(addr).await;
    raw.write(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = raw.read_head().await;
    assert_eq!(status(&head), 404);
    assert_eq!(raw.read_to_eof().await, b"not found\n");

    // HEAD: the head alone, with the length a GET would get.
    let mut raw = Raw::connect(addr).await;
    raw.write(b"HEAD /page HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = raw.read_head().await;
    assert_eq!(header(&head, "content-length").as_deref(), Some("10"));
    assert!(raw.read_to_eof().await.is_empty());
}

#[tokio::test]
async fn bad_heads_are_answered_by_the_server() {
    let server = Server::builder().config(Config::default().with_max_handshake_size(1024)).build();
    let addr = start_echo(&server).await;
    let mut raw = Raw::connect(addr).await;
    raw.write(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000)).as_bytes()).await;
    assert_eq!(status(&raw.read_head().await), 431);
    let mut raw = Raw::connect(addr).await;
    raw.write(b"GET / HTTP/1.1\r\nbad header line\r\n\r\n").await;
    assert_eq!(status(&raw.read_head().await), 400);
    // An upgrade with an unsupported version: 426 with the versions we speak.
    let mut raw = Raw::connect(addr).await;
    raw.write(upgrade_request("/", "").replace("Version: 13", "Version: 12").as_bytes()).await;
    let head = raw.read_head().await;
    assert_eq!(status(&head), 426);
    assert_eq!(header(&head, "sec-websocket-version").as_deref(), Some("13, 8, 7"));
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off_at_the_handshake_timeout() {
    let config = Config::default().with_handshake_timeout(Duration::from_millis(200));
    let server = Server::builder().config(config).build();
    let addr = start_echo(&server).await;
    let mut raw = Raw::connect(addr).await;
    raw.write(b"GET / HTTP/1.1\r\n").await;
    raw.expect_eof_within(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn origins_outside_the_allowlist_get_403() {
    let server = Server::builder().allow_origins(["https://good.example"]).require_origin(true).build();
    let addr = start_echo(&server).await;
    for (origin, want) in
        [("Origin: https://GOOD.example/\r\n", 101), ("Origin: https://evil.example\r\n", 403), ("", 403)]
    {
        let mut raw = Raw::connect(addr).await;
        raw.write(upgrade_request("/", origin).as_bytes()).await;
        assert_eq!(status(&raw.read_head().await), want, "{origin:?}");
    }
}

#[tokio::test]
async fn connections_count_from_accept_and_the_next_gets_503_at_once() {
    let server = Server::builder().max_connections(1).build();
    let addr = start_echo(&server).await;
    // The first sends nothing: it holds its place while its head is awaited.
    let _first = Raw::connect(addr).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 1);
    let mut second = Raw::connect(addr).await;
    let head = second.read_head().await;
    assert_eq!(status(&head), 503);
    assert_eq!(header(&head, "retry-after").as_deref(), Some("1"));
    drop(_first);
    within(async {
        while server.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (_ws, _) = within(wsx::connect(ws_url(addr, "/"))).await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001_and_waits_for_them() {
    let server = Server::builder().build();
    let addr = start_echo(&server).await;
    let mut raw = Raw::upgrade(addr).await;
    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/"))).await.unwrap();
    let stopping = tokio::spawn({
        let s = server.clone();
        async move { s.shutdown().await }
    });
    // The raw peer sees 1001 and answers; the wsx client does so itself.
    let close = raw.read_frame().await;
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(&close.payload[2..], b"server shutting down");
    raw.write(&client_frame(0x8, &close_body(1001, ""))).await;
    raw.expect_eof().await;
    drop(raw);
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GoingAway),
        other => panic!("expected a close, got {other:?}"),
    }
    assert!(within(ws.recv()).await.is_none());
    within(stopping).await.unwrap();
    assert_eq!(server.connections(), 0);
    // No more connections are accepted.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err() || {
            let mut raw = Raw::connect(addr).await;
            raw.write(upgrade_request("/", "").as_bytes()).await;
            raw.read_to_eof().await.is_empty()
        }
    );
}

#[tokio::test]
async fn shutdown_drops_connections_that_do_not_close_in_time() {
    let server = Server::builder().shutdown_timeout(Duration::from_millis(200)).build();
    let addr = start_echo(&server).await;
    let mut raw = Raw::upgrade(addr).await;
    let started = tokio::time::Instant::now();
    within(server.shutdown()).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(raw.read_frame().await.close_code(), Some(1001));
    raw.expect_eof().await;
}

#[tokio::test]
async fn keepalive_pings_after_silence_and_closes_an_idle_peer() {
    let config = Config::default().with_keepalive(Duration::from_millis(100), Duration::from_millis(350));
    let server = Server::builder().config(config).build();
    let (l, addr) = listen().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(l, move |req: Request| {
            let tx = tx.lock().unwrap().take();
            async move {
                let mut ws = req.upgrade(Accept::new()).await?;
                let mut end = None;
                while let Some(m) = ws.recv().await {
                    if let Err(e) = m {
                        end = Some(e);
                    }
                }
                if let Some(tx) = tx {
                    let _ = tx.send(end);
                }
                Ok::<_, wsx::Error>(())
            }
        })
        .await
    });
    let mut raw = Raw::upgrade(addr).await;
    // Silence: a ping within two intervals.
    let ping = raw.read_frame().await;
    assert_eq!(ping.opcode, 0x9);
    // Never answered: closed with 1001 "idle timeout".
    let close = within(async {
        loop {
            let f = raw.read_frame().await;
            if f.opcode == 0x8 {
                return f;
            }
            assert_eq!(f.opcode, 0x9);
        }
    })
    .await;
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(&close.payload[2..], b"idle timeout");
    raw.write(&client_frame(0x8, &close_body(1001, ""))).await;
    let end = within(rx).await.unwrap();
    assert!(matches!(end, Some(wsx::Error::IdleTimeout)), "{end:?}");
}

#[tokio::test]
async fn pongs_keep_a_connection_alive() {
    let config = Config::default().with_keepalive(Duration::from_millis(50), Duration::from_millis(200));
    let server = Server::builder().config(config.clone()).build();
    let addr = start_echo(&server).await;
    // A wsx client answers pings: it stays connected well past the idle
    // timeout without sending anything itself.
    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/"))).await.unwrap();
    let mut pings = 0;
    let quiet = tokio::time::timeout(Duration::from_millis(700), async {
        while let Some(m) = ws.recv().await {
            if matches!(m.unwrap(), Message::Ping(_)) {
                pings += 1;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the connection ended");
    assert!(pings >= 3, "{pings} pings");
}

#[tokio::test]
async fn a_client_pings_a_silent_server_too() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::new(tcp);
        let head = raw.read_head().await;
        let key = header(&head, "sec-websocket-key").unwrap();
        let accept = accept_key(&key);
        raw.write(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let f = raw.read_frame().await;
        (f.opcode, f.masked)
    });
    let config = Config::default().with_ping_interval(Duration::from_millis(50));
    let (mut ws, _) = within(wsx::connect_with(ws_url(addr, "/"), &config)).await.unwrap();
    let reading = tokio::spawn(async move { while ws.recv().await.is_some() {} });
    assert_eq!(within(server).await.unwrap(), (0x9, true));
    reading.abort();
}

#[tokio::test]
async fn a_close_handle_closes_from_another_task() {
    let (client, mut server) = pair().await;
    let handle = server.close_handle();
    let mut client = client;
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(handle.close(CloseCode::PolicyViolation, "kicked"));
    });
    let c = tokio::spawn(async move { while client.recv().await.is_some() {} });
    let mut got = None;
    while let Some(m) = within(server.recv()).await {
        got = Some(m.unwrap());
    }
    match got {
        Some(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::PolicyViolation),
        other => panic!("{other:?}"),
    }
    closer.await.unwrap();
    c.await.unwrap();
}

#[tokio::test]
async fn the_pump_writes_outbox_messages_in_order_with_replies() {
    let (mut client, server) = pair().await;
    let (outbox, rx) = Outbox::new(OutboxConfig::default());
    let mut pump = Pump::new(server, rx);
    for i in 0..100 {
        assert_eq!(outbox.push(Message::text(format!("{i}"))), Push::Queued);
    }
    let t = tokio::spawn(async move {
        while let Some(m) = pump.recv().await {
            if let Ok(m @ Message::Text(_)) = m {
                let _ = outbox.push(m);
            }
        }
    });
    for i in 0..100 {
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text(format!("{i}")));
    }
    client.send(Message::text("back")).await.unwrap();
    assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text("back"));
    client.close(CloseCode::Normal, "").await.unwrap();
    while within(client.recv()).await.is_some() {}
    within(t).await.unwrap();
}

/// A reader that stops reading, then reads again, gets everything queued
/// for it meanwhile, without sending anything to wake the server: the
/// pump writes as soon as the socket takes bytes.
#[tokio::test]
async fn a_slow_reader_gets_everything_once_it_reads_again() {
    let (mut client, server) = pair().await;
    let (outbox, rx) = Outbox::new(OutboxConfig::default().with_max_messages(10_000).with_max_bytes(64 << 20));
    let mut pump = Pump::new(server, rx);
    let t = tokio::spawn(async move { while pump.recv().await.is_some() {} });
    let payload = "x".repeat(8 << 10);
    // Far more than the socket buffers and the high-water mark hold.
    for _ in 0..1500 {
        assert_eq!(outbox.push(Message::text(payload.clone())), Push::Queued);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..1500 {
        match within(client.recv()).await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.len(), 8 << 10),
            other => panic!("message {i}: {other:?}"),
        }
    }
    drop(outbox);
    t.abort();
}

/// The pump fills the write queue to the high-water mark with the last
/// message of the outbox, and the socket takes it all: the next message
/// pushed still goes out at once (the pump waits for the outbox, not for
/// the socket or some input).
#[tokio::test]
async fn the_pump_waits_for_the_outbox_after_emptying_it_at_the_mark() {
    let (mut client, server) = pair_with(&Config::default().with_compression(false)).await;
    let (outbox, rx) = Outbox::new(OutboxConfig::default());
    // Frames of 4 + 1020 bytes: four of them reach the mark exactly.
    let mut pump = Pump::new(server, rx).with_high_water_mark(4096);
    let payload = "x".repeat(1020);
    for _ in 0..4 {
        assert_eq!(outbox.push(Message::text(payload.clone())), Push::Queued);
    }
    let t = tokio::spawn(async move { while pump.recv().await.is_some() {} });
    for _ in 0..4 {
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text(payload.clone()));
    }
    assert_eq!(outbox.push(Message::text("next")), Push::Queued);
    let next = tokio::time::timeout(Duration::from_secs(2), client.recv()).await;
    assert_eq!(next.expect("the pump was not woken").unwrap().unwrap(), Message::text("next"));
    drop(outbox);
    t.abort();
}

#[tokio::test]
async fn a_full_outbox_closes_with_its_code() {
    for code in [CloseCode::PolicyViolation, CloseCode::TryAgainLater] {
        let (mut client, server) = pair().await;
        let config = OutboxConfig::default().with_max_messages(4).with_slow_consumer(SlowConsumer::Close(code));
        let (outbox, rx) = Outbox::new(config);
        // Not pumped yet: the outbox fills.
        for _ in 0..4 {
            assert_eq!(outbox.push(Message::text("m")), Push::Queued);
        }
        assert_eq!(outbox.push(Message::text("m")), Push::Overflow);
        assert_eq!(outbox.push(Message::text("m")), Push::Closed);
        let mut pump = Pump::new(server, rx);
        let t = tokio::spawn(async move { while pump.recv().await.is_some() {} });
        match within(client.recv()).await {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(f.code, code);
                assert_eq!(f.reason.as_str(), "slow consumer");
            }
            other => panic!("{other:?}"),
        }
        // Reading on sends the reply to the close.
        while within(client.recv()).await.is_some() {}
        within(t).await.unwrap();
    }
}

#[tokio::test]
async fn drop_oldest_drops_broadcasts_never_direct_messages() {
    let config = OutboxConfig::default().with_max_messages(2).with_slow_consumer(SlowConsumer::DropOldest);
    let (outbox, _rx) = Outbox::new(config);
    assert_eq!(outbox.push(Message::text("ack")), Push::Queued);
    assert_eq!(outbox.push_droppable(Message::text("b1")), Push::Queued);
    assert_eq!(outbox.push_droppable(Message::text("b2")), Push::Dropped(1));
    assert_eq!(outbox.push(Message::text("ack2")), Push::Dropped(1));
    assert_eq!(outbox.push_droppable(Message::text("b3")), Push::Discarded, "nothing droppable left: b3 goes");
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox.push(Message::text("ack3")), Push::Queued);
    assert_eq!(outbox.push(Message::text("ack4")), Push::Queued);
    assert_eq!(outbox.push(Message::text("ack5")), Push::Overflow, "twice the limit of undroppable messages");
}

#[tokio::test]
async fn wait_makes_the_producer_wait_for_room() {
    let (mut client, server) = pair().await;
    let config = OutboxConfig::default().with_max_messages(1).with_slow_consumer(SlowConsumer::Wait);
    let (outbox, rx) = Outbox::new(config);
    assert_eq!(outbox.push(Message::text("1")), Push::Queued);
    assert_eq!(outbox.push(Message::text("2")), Push::Full);
    let producer = tokio::spawn(async move {
        for i in 2..=50 {
            outbox.send(Message::text(format!("{i}"))).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!producer.is_finished(), "nothing takes from the outbox yet");
    let mut pump = Pump::new(server, rx);
    let t = tokio::spawn(async move { while pump.recv().await.is_some() {} });
    for i in 1..=50 {
        assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::text(format!("{i}")));
    }
    within(producer).await.unwrap();
    t.abort();
}

#[tokio::test]
async fn serve_stream_serves_any_stream() {
    let server = Server::builder().build();
    let (a, b) = tokio::io::duplex(4096);
    let s = server.clone();
    let task = tokio::spawn(async move {
        s.serve_stream(a, None, &|req: Request<tokio::io::DuplexStream>| async move {
            let mut ws = req.upgrade(Accept::new()).await?;
            echo(&mut ws).await.map(|_| ())
        })
        .await
    });
    let (mut ws, _) = within(wsx::client_handshake(b, "ws://localhost/", &Config::default())).await.unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::binary(vec![1, 2, 3]));
    ws.close(CloseCode::Normal, "").await.unwrap();
    while within(ws.recv()).await.is_some() {}
    within(task).await.unwrap();
    assert_eq!(server.connections(), 0);
}

/// The timer and the close handle wake the task that polls the connection
/// now, not the one that polled it first.
#[tokio::test]
async fn keepalive_follows_the_connection_to_another_task() {
    let config = Config::default().with_ping_interval(Duration::from_millis(50));
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        wsx::accept_with(tcp, |_: &wsx::handshake::UpgradeRequest| Ok(Accept::new()), &config).await.unwrap()
    });
    let mut raw = Raw::upgrade(addr).await;
    let mut ws = within(server).await.unwrap();
    // Polled (and its timer registered) in this task...
    assert!(tokio::time::timeout(Duration::from_millis(20), ws.recv()).await.is_err());
    // ...then read in another one: its pings still go out.
    let reader = tokio::spawn(async move { while ws.recv().await.is_some() {} });
    assert_eq!(raw.read_frame().await.opcode, 0x9);
    assert_eq!(raw.read_frame().await.opcode, 0x9);
    reader.abort();
}

#[tokio::test]
async fn a_close_handle_made_while_keepalive_runs_wakes_the_reader() {
    let config = Config::default().with_keepalive(Duration::from_secs(30), Duration::from_secs(60));
    let (mut client, mut server) = pair_with(&config).await;
    assert!(tokio::time::timeout(Duration::from_millis(20), server.recv()).await.is_err());
    let handle = server.close_handle();
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle.close(CloseCode::GoingAway, "bye");
    });
    let c = tokio::spawn(async move { while client.recv().await.is_some() {} });
    let mut last = None;
    while let Some(m) = within(server.recv()).await {
        last = Some(m.unwrap());
    }
    assert!(matches!(last, Some(Message::Close(Some(f))) if f.code == CloseCode::GoingAway));
    closer.await.unwrap();
    c.await.unwrap();
}

/// A server's WebSockets tick with its one clock; one upgraded with
/// settings of its own keeps its own period.
#[tokio::test]
async fn an_endpoint_with_its_own_keepalive_keeps_its_own_period() {
    let server = Server::builder().config(Config::default().with_ping_interval(Duration::from_secs(30))).build();
    let (l, addr) = listen().await;
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(l, |req: Request| async move {
            let fast = Config::default().with_ping_interval(Duration::from_millis(50));
            let config = if req.path() == "/fast" { fast } else { req.server().config().clone() };
            let mut ws = req.upgrade_with(Accept::new(), &config).await?;
            echo(&mut ws).await.map(|_| ())
        })
        .await
    });
    let mut slow = Raw::connect(addr).await;
    slow.write(upgrade_request("/", "").as_bytes()).await;
    assert_eq!(status(&slow.read_head().await), 101);
    let mut fast = Raw::connect(addr).await;
    fast.write(upgrade_request("/fast", "").as_bytes()).await;
    assert_eq!(status(&fast.read_head().await), 101);
    assert_eq!(fast.read_frame().await.opcode, 0x9);
    assert_eq!(fast.read_frame().await.opcode, 0x9);
    slow.expect_silence(Duration::from_millis(200)).await;
}

/// A `wss://` client at a plain server gets a plain 400 at once (which a
/// client can recognize as the wrong scheme), not the handshake timeout.
#[tokio::test]
async fn a_tls_client_hello_at_a_plain_server_gets_400_at_once() {
    let server = Server::builder().build();
    let addr = start_echo(&server).await;
    let mut raw = Raw::connect(addr).await;
    // The start of a TLS 1.2/1.3 ClientHello record.
    raw.write(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]).await;
    let head = within(raw.read_head()).await;
    assert_eq!(status(&head), 400);
    assert!(String::from_utf8_lossy(&raw.read_to_eof().await).contains("ws://"));
}

/// `Request::body`: echo the body of a request, or answer its error's
/// status (413 past 16 bytes).
async fn body_echo(mut req: Request) -> wsx::Result<()> {
    let resp = match req.body(16).await {
        Ok(body) => http::Response::new(body),
        Err(e) => http::Response::builder().status(e.status()).body(bytes::Bytes::from(e.to_string())).unwrap(),
    };
    req.respond(resp).await
}

/// Send `request` raw; the whole response.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    within(tcp.read_to_end(&mut out)).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn request_bodies_are_read_by_length_or_chunks_within_a_limit() {
    let server = Server::builder().config(Config::default().with_handshake_timeout(Duration::from_millis(300))).build();
    let (l, addr) = listen().await;
    let s = server.clone();
    tokio::spawn(async move { s.serve(l, body_echo).await });

    let r = raw_exchange(addr, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").await;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\nhello"), "{r}");
    let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
    let r = raw_exchange(addr, chunked).await;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\nhello"), "{r}");
    let r = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\n"), "no body: {r}");

    // Past the limit: 413, by the announced length (before any byte of
    // the body) and by the chunks.
    let r = raw_exchange(addr, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let big = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n";
    assert!(raw_exchange(addr, big).await.starts_with("HTTP/1.1 413"));
    // Malformed: 400. Slow: 408 at the timeout.
    let r = raw_exchange(addr, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw_exchange(addr, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nhell").await;
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    // A client that expects 100 Continue gets it before it sends.
    let mut raw = Raw::connect(addr).await;
    raw.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n").await;
    assert!(raw.read_head().await.starts_with("HTTP/1.1 100"));
    raw.write(b"ok").await;
    assert!(raw.read_head().await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_outbox_is_read_without_a_websocket_and_reports_its_overflow() {
    let config =
        OutboxConfig::default().with_max_messages(2).with_slow_consumer(SlowConsumer::Close(CloseCode::TryAgainLater));
    let (outbox, mut rx) = Outbox::new(config);
    assert_eq!(outbox.push(Message::text("a")), Push::Queued);
    assert_eq!(rx.recv().await, Some(Message::text("a")));
    assert_eq!(rx.try_recv(), None);
    let waiter = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.overflowed().await }
    });
    let _ = outbox.push(Message::text("b"));
    let _ = outbox.push(Message::text("c"));
    assert!(!outbox.is_overflowed());
    assert_eq!(outbox.push(Message::text("d")), Push::Overflow);
    within(waiter).await.unwrap();
    assert!(outbox.is_overflowed() && rx.is_overflowed());
    // The queue was dropped: the receiver ends.
    assert_eq!(rx.recv().await, None);
    assert_eq!(outbox.push(Message::text("e")), Push::Closed);
}

#[tokio::test]
async fn a_waiting_handler_learns_that_its_client_went_away() {
    let (gone_tx, mut gone) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::builder().build();
    let (l, addr) = listen().await;
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(l, move |mut req: Request| {
            let gone_tx = gone_tx.clone();
            async move {
                // A long-poll that never gets news; bytes sent meanwhile
                // are kept for the body.
                req.client_gone().await;
                let _ = gone_tx.send(());
                Ok::<_, wsx::Error>(())
            }
        })
        .await
    });
    let mut raw = Raw::connect(addr).await;
    raw.write(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(gone.try_recv().is_err(), "the client is still there");
    drop(raw);
    within(gone.recv()).await.unwrap();
}

/// A connection whose task runs late (a saturated node, a handler busy
/// between two reads for many keepalive intervals) does not close a peer
/// that answers every ping: the pings it could not send were not
/// unanswered.
#[tokio::test]
async fn a_busy_server_keeps_a_peer_that_answers_its_pings() {
    let config = Config::default().with_keepalive(Duration::from_millis(100), Duration::from_millis(300));
    let server = Server::builder().config(config).build();
    let (l, addr) = listen().await;
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(l, |req: Request| async move {
            let mut ws = req.upgrade(Accept::new()).await?;
            while let Some(m) = ws.recv().await {
                if let Message::Text(t) = m? {
                    // Busy for 15 intervals, five times the idle timeout,
                    // while the server's clock goes on.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    ws.send(Message::Text(t)).await?;
                }
            }
            Ok::<_, wsx::Error>(())
        })
        .await
    });
    let (mut ws, _) = within(wsx::connect(ws_url(addr, "/"))).await.unwrap();
    for round in 0..2 {
        ws.send(Message::text(format!("work {round}"))).await.unwrap();
        // The client answers pings as it reads; it says nothing else.
        let echoed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.recv().await {
                    Some(Ok(Message::Text(t))) => return Ok(t),
                    Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("ended".to_owned()),
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .expect("the echo in time");
        assert_eq!(echoed.as_ref().map(|t| t.as_str()), Ok(format!("work {round}").as_str()));
        // Then quiet for a while: pings, answered, keep it open.
        let quiet = tokio::time::timeout(Duration::from_millis(600), async {
            loop {
                match ws.recv().await {
                    Some(Ok(Message::Ping(_))) => {}
                    other => return other,
                }
            }
        })
        .await;
        assert!(quiet.is_err(), "the server closed a peer that answers its pings: {quiet:?}");
    }
}

/// `push_all` queues its messages back to back, however many senders push
/// at once, and stops at the first the outbox refuses.
#[test]
fn push_all_keeps_its_messages_together_and_stops_at_a_refusal() {
    let (outbox, mut rx) = Outbox::new(OutboxConfig::default().with_max_messages(100_000));
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let outbox = outbox.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    let parts = (0..3).map(|p| Message::text(format!("{s}.{i}.{p}")));
                    assert_eq!(outbox.push_all(parts), Push::Queued);
                }
            })
        })
        .collect();
    for t in senders {
        t.join().unwrap();
    }
    let mut got = Vec::new();
    while let Some(m) = rx.try_recv() {
        got.push(m.as_text().unwrap().to_owned());
    }
    assert_eq!(got.len(), 4 * 500 * 3);
    for group in got.chunks(3) {
        let head = group[0].rsplit_once('.').unwrap().0;
        assert!(group.iter().enumerate().all(|(p, m)| *m == format!("{head}.{p}")), "{group:?}");
    }
    // A full outbox that closes: the refusal, and nothing after it.
    let (outbox, _rx) = Outbox::new(
        OutboxConfig::default()
            .with_max_messages(2)
            .with_slow_consumer(SlowConsumer::Close(CloseCode::PolicyViolation)),
    );
    let parts = (0..5).map(|i| Message::text(format!("{i}")));
    assert_eq!(outbox.push_all(parts), Push::Overflow);
    assert!(outbox.is_closed());
}
