//! `wsx::web`, the browser API, against wsx servers on 127.0.0.1: one test
//! per rule of the WHATWG WebSockets Standard (constructor, attributes,
//! send, close, events and their order) and per connection rule of
//! browsers (one CONNECTING per host:port, the cap on connections).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, RwLock};
use wsx::handshake::{Accept, UpgradeRequest};
use wsx::web::{BinaryType, CloseEvent, Data, DomError, Event, EventType, ReadyState, WebOptions, WebSocket};
use wsx::{CloseCode, Config, Message};

/// Upper bound for anything a test waits for.
const LIMIT: Duration = Duration::from_secs(5);

/// Tests share the process-wide connection registry; the test of the cap
/// runs alone (write), the others together (read).
static REGISTRY: RwLock<()> = RwLock::const_new(());

// ------------------------------------------------------------------ servers

#[derive(Clone, Default)]
struct ServerOptions {
    /// Wait this long after accepting TCP before answering the handshake.
    delay: Duration,
    /// Select the subprotocol "chat" when it is offered.
    select_chat: bool,
    /// permessage-deflate off.
    no_compression: bool,
}

/// A wsx server: echoes text and binary, and obeys a few commands sent as
/// text (`close:CODE:REASON`, `close-empty`, `burst:N`, `abort`,
/// `garbage`). Reports what each connection received when it ends.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    logs: mpsc::UnboundedReceiver<Vec<Message>>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// What the next connection to end received.
    async fn log(&mut self) -> Vec<Message> {
        tokio::time::timeout(LIMIT, self.logs.recv()).await.expect("server log timed out").expect("server gone")
    }
}

async fn server(opts: ServerOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, logs) = mpsc::unbounded_channel();
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (tx, opts) = (tx.clone(), opts.clone());
            tokio::spawn(async move {
                tokio::time::sleep(opts.delay).await;
                let select_chat = opts.select_chat;
                let config = Config::default().with_compression(!opts.no_compression);
                let accepted = wsx::accept_with(
                    tcp,
                    move |req: &UpgradeRequest| {
                        Ok(match req.protocols().iter().any(|p| p == "chat") && select_chat {
                            true => Accept::new().protocol("chat"),
                            false => Accept::new(),
                        })
                    },
                    &config,
                )
                .await;
                if let Ok(ws) = accepted {
                    let _ = tx.send(script(ws).await);
                }
            });
        }
    });
    Server { addr, accepted, logs }
}

async fn echo_server() -> Server {
    server(ServerOptions::default()).await
}

async fn script(mut ws: wsx::WebSocket<TcpStream>) -> Vec<Message> {
    let mut log = Vec::new();
    while let Some(Ok(msg)) = ws.recv().await {
        log.push(msg.clone());
        let text = msg.as_text().map(str::to_owned);
        match text.as_deref() {
            Some(t) if t.starts_with("close:") => {
                let mut parts = t.splitn(3, ':').skip(1);
                let code: u16 = parts.next().unwrap().parse().unwrap();
                let _ = ws.close(CloseCode::from(code), parts.next().unwrap_or("")).await;
            }
            Some("close-empty") => {
                let _ = ws.send(Message::Close(None)).await;
            }
            Some(t) if t.starts_with("burst:") => {
                for i in 0..t[6..].parse::<usize>().unwrap() {
                    let _ = ws.feed(Message::text(format!("m{i}"))).await;
                }
                let _ = ws.flush().await;
            }
            Some("abort") => return log,
            Some("garbage") => {
                // A frame with the reserved opcode 0x3 (RFC 6455 §5.2).
                let _ = ws.get_mut().write_all(&[0x83, 0x00]).await;
            }
            _ if msg.is_text() || msg.is_binary() => {
                let _ = ws.send(msg).await;
            }
            _ => {}
        }
    }
    log
}

/// A TCP server that answers any request with `response` and closes.
async fn http_server(response: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// A port on which nothing listens.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

// ------------------------------------------------------------------ helpers

async fn next(ws: &WebSocket) -> Event {
    tokio::time::timeout(LIMIT, ws.next_event()).await.expect("no event in time").expect("events ended")
}

/// Every event until the end.
async fn rest(ws: &WebSocket) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(e) = tokio::time::timeout(LIMIT, ws.next_event()).await.expect("no event in time") {
        events.push(e);
    }
    events
}

async fn open(url: &str, protocols: &[&str]) -> WebSocket {
    let ws = WebSocket::new(url, protocols).unwrap();
    assert_eq!(next(&ws).await, Event::Open);
    assert_eq!(ws.ready_state(), ReadyState::Open);
    ws
}

fn text(e: &Event) -> &str {
    match e {
        Event::Message(m) => m.data().as_text().expect("a text message"),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn close_of(e: &Event) -> &CloseEvent {
    match e {
        Event::Close(c) => c,
        other => panic!("expected close, got {other:?}"),
    }
}

/// The events of a failed connection: `error`, then `close` with 1006,
/// not clean, no reason.
fn assert_failed(events: &[Event]) {
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], Event::Error(e) if !e.message().is_empty()), "{events:?}");
    let c = close_of(&events[1]);
    assert_eq!((c.code(), c.reason(), c.was_clean()), (1006, "", false));
}

// ------------------------------------------------------------- constructor

/// Constructor step 2: a URL the WHATWG URL parser rejects (there is no
/// base URL, so relative ones too) is a SyntaxError.
#[tokio::test]
async fn constructor_rejects_unparsable_url_with_syntax_error() {
    let _g = REGISTRY.read().await;
    for url in ["", "not a url", "ws://", "ws://[::1", "/relative/path", "ws://exa mple.com/", "ws://a:99999/"] {
        assert_eq!(WebSocket::new(url, &[]).unwrap_err(), DomError::Syntax, "{url:?}");
    }
}

/// Constructor steps 4–6: http becomes ws, https becomes wss, any other
/// scheme than ws/wss is a SyntaxError.
#[tokio::test]
async fn constructor_rejects_other_schemes_with_syntax_error() {
    let _g = REGISTRY.read().await;
    for url in ["ftp://example.com/", "file:///tmp/x", "mailto:a@example.com", "javascript:alert(1)", "data:,x"] {
        assert_eq!(WebSocket::new(url, &[]).unwrap_err(), DomError::Syntax, "{url:?}");
    }
}

#[tokio::test]
async fn constructor_maps_http_to_ws_and_https_to_wss() {
    let _g = REGISTRY.read().await;
    // Port 1 is a bad port: the connections fail without touching the network.
    let ws = WebSocket::new("http://127.0.0.1:1/a?b=c", &[]).unwrap();
    assert_eq!(ws.url(), "ws://127.0.0.1:1/a?b=c");
    let wss = WebSocket::new("HTTPS://Example.COM:1/x", &[]).unwrap();
    assert_eq!(wss.url(), "wss://example.com:1/x");
    assert_failed(&rest(&ws).await);
    assert_failed(&rest(&wss).await);
    // And an http URL really connects as ws.
    let server = echo_server().await;
    let ws = open(&server.url("/").replace("ws://", "http://"), &[]).await;
    ws.send("via http").unwrap();
    assert_eq!(text(&next(&ws).await), "via http");
}

/// Constructor step 7: a URL with a fragment, even an empty one.
#[tokio::test]
async fn constructor_rejects_fragment_with_syntax_error() {
    let _g = REGISTRY.read().await;
    for url in ["ws://127.0.0.1:9/#", "ws://127.0.0.1:9/#frag", "wss://example.com/a?b#c", "http://example.com/#x"] {
        assert_eq!(WebSocket::new(url, &[]).unwrap_err(), DomError::Syntax, "{url:?}");
    }
}

/// Constructor step 9: a repeated subprotocol is a SyntaxError (compared
/// as strings: case matters).
#[tokio::test]
async fn constructor_rejects_duplicate_protocol_with_syntax_error() {
    let _g = REGISTRY.read().await;
    let err = WebSocket::new("ws://127.0.0.1:1/", &["chat", "superchat", "chat"]).unwrap_err();
    assert_eq!(err, DomError::Syntax);
    let ws = WebSocket::new("ws://127.0.0.1:1/", &["chat", "Chat"]).unwrap();
    assert_failed(&rest(&ws).await);
}

/// Constructor step 9: every subprotocol must be an RFC 7230 token.
#[tokio::test]
async fn constructor_rejects_invalid_protocol_token_with_syntax_error() {
    let _g = REGISTRY.read().await;
    for p in ["", "a b", "a,b", "chät", "a\"b", "(x)", "a/b", "a:b", "tab\t", "x{y}"] {
        assert_eq!(WebSocket::new("ws://127.0.0.1:1/", &[p]).unwrap_err(), DomError::Syntax, "{p:?}");
    }
    let ws = WebSocket::new("ws://127.0.0.1:1/", &["v2.chat", "x-y_z~!#$%&'*+^`|"]).unwrap();
    assert_failed(&rest(&ws).await);
}

/// The constructor returns at once, in CONNECTING, with empty protocol and
/// extensions; the connection opens in the background.
#[tokio::test]
async fn new_returns_at_once_in_connecting_state() {
    let _g = REGISTRY.read().await;
    let server = server(ServerOptions { delay: Duration::from_millis(300), ..Default::default() }).await;
    let start = Instant::now();
    let ws = WebSocket::new(&server.url("/"), &[]).unwrap();
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    assert_eq!((ws.protocol(), ws.extensions(), ws.buffered_amount()), ("", "", 0));
    assert_eq!(next(&ws).await, Event::Open);
    assert_eq!(ws.ready_state(), ReadyState::Open);
}

/// `url` is the URL record, serialized.
#[tokio::test]
async fn url_is_the_serialized_url_record() {
    let _g = REGISTRY.read().await;
    let ws = WebSocket::new("WS://127.0.0.1:1/a b/../c?q=ü", &[]).unwrap();
    assert_eq!(ws.url(), "ws://127.0.0.1:1/c?q=%C3%BC");
    assert_failed(&rest(&ws).await);
}

// ------------------------------------------------------------- attributes

/// `protocol` is the subprotocol the server selected, once open.
#[tokio::test]
async fn protocol_is_the_subprotocol_the_server_selected() {
    let _g = REGISTRY.read().await;
    let server = server(ServerOptions { select_chat: true, ..Default::default() }).await;
    let ws = WebSocket::new(&server.url("/"), &["superchat", "chat"]).unwrap();
    assert_eq!(ws.protocol(), "");
    assert_eq!(next(&ws).await, Event::Open);
    assert_eq!(ws.protocol(), "chat");
    let plain = open(&server.url("/"), &[]).await;
    assert_eq!(plain.protocol(), "");
}

/// Establishing: subprotocols were offered and the server selected none:
/// the connection fails, and the error event says so.
#[tokio::test]
async fn server_selecting_no_offered_protocol_fails_the_connection() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = WebSocket::new(&server.url("/"), &["chat", "superchat"]).unwrap();
    let events = rest(&ws).await;
    assert_failed(&events);
    let Event::Error(e) = &events[0] else { unreachable!() };
    assert_eq!(e.message(), "the server selected none of the subprotocols offered (chat, superchat)");
    assert_eq!(ws.protocol(), "");
}

/// `extensions` is what the server's response selected: empty without
/// permessage-deflate, the extension otherwise.
#[tokio::test]
async fn extensions_are_the_ones_the_server_selected() {
    let _g = REGISTRY.read().await;
    let plain = server(ServerOptions { no_compression: true, ..Default::default() }).await;
    let ws = open(&plain.url("/"), &[]).await;
    assert_eq!(ws.extensions(), "");
    let deflate = echo_server().await;
    let ws = open(&deflate.url("/"), &[]).await;
    assert!(ws.extensions().starts_with("permessage-deflate"), "{:?}", ws.extensions());
    ws.send("compressed both ways").unwrap();
    assert_eq!(text(&next(&ws).await), "compressed both ways");
}

/// `binaryType` defaults to blob; it decides the form of binary data when
/// the event is delivered, even for a message that arrived before it was
/// set.
#[tokio::test]
async fn binary_type_selects_blob_or_array_buffer_at_delivery() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    assert_eq!(ws.binary_type(), BinaryType::Blob);
    ws.send(vec![1u8, 2, 3]).unwrap();
    match next(&ws).await {
        Event::Message(m) => assert_eq!(m.data(), &Data::Blob(vec![1u8, 2, 3].into())),
        other => panic!("{other:?}"),
    }
    ws.send(&b"\x00\xff"[..]).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // the echo is queued by now
    ws.set_binary_type(BinaryType::ArrayBuffer);
    assert_eq!(ws.binary_type(), BinaryType::ArrayBuffer);
    match next(&ws).await {
        Event::Message(m) => assert_eq!(m.into_data(), Data::ArrayBuffer(vec![0u8, 255].into())),
        other => panic!("{other:?}"),
    }
    ws.send("text stays text").unwrap();
    assert_eq!(text(&next(&ws).await), "text stays text");
}

/// `MessageEvent.origin` is the serialization of the URL's origin.
#[tokio::test]
async fn message_event_origin_is_serialized_url_origin() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/path?q=1"), &[]).await;
    ws.send("o").unwrap();
    match next(&ws).await {
        Event::Message(m) => assert_eq!(m.origin(), format!("ws://{}", server.addr)),
        other => panic!("{other:?}"),
    }
}

/// `bufferedAmount` counts the UTF-8 bytes of text and the bytes of binary
/// data queued by send() (no framing), and drops to 0 once written.
#[tokio::test]
async fn buffered_amount_counts_application_bytes_until_sent() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.send("héllo").unwrap(); // 6 bytes of UTF-8
    ws.send(vec![0u8; 10]).unwrap();
    // The connection's task has not run since: nothing is written yet.
    assert_eq!(ws.buffered_amount(), 16);
    assert_eq!(text(&next(&ws).await), "héllo");
    assert!(matches!(next(&ws).await, Event::Message(_)));
    assert_eq!(ws.buffered_amount(), 0);
}

/// send() while CLOSING or CLOSED: no exception, the data is discarded and
/// `bufferedAmount` still grows by its size.
#[tokio::test]
async fn buffered_amount_grows_after_close() {
    let _g = REGISTRY.read().await;
    let mut server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.close(Some(1000), None).unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    ws.send("abc").unwrap();
    assert_eq!(ws.buffered_amount(), 3);
    let c = close_of(&next(&ws).await).clone();
    assert_eq!((c.code(), c.was_clean()), (1000, true));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    ws.send(vec![1u8, 2]).unwrap();
    assert_eq!(ws.buffered_amount(), 5);
    // Nothing but the close frame reached the server.
    assert_eq!(server.log().await, [Message::Close(Some(wsx::CloseFrame::new(CloseCode::Normal, "")))]);
}

// ------------------------------------------------------------------- send

/// send() while CONNECTING throws InvalidStateError and counts nothing.
#[tokio::test]
async fn send_while_connecting_is_invalid_state() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = WebSocket::new(&server.url("/"), &[]).unwrap();
    assert_eq!(ws.send("too early"), Err(DomError::InvalidState));
    assert_eq!(ws.send(vec![1u8]), Err(DomError::InvalidState));
    assert_eq!(ws.buffered_amount(), 0);
    assert_eq!(next(&ws).await, Event::Open);
    ws.send("now").unwrap();
    assert_eq!(text(&next(&ws).await), "now");
}

/// Text goes as a text message, binary as a binary one, in order.
#[tokio::test]
async fn send_transmits_text_and_binary_messages_in_order() {
    let _g = REGISTRY.read().await;
    let mut server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.send("one").unwrap();
    ws.send(String::from("two ✓")).unwrap();
    ws.send(Data::Blob(vec![7u8; 3].into())).unwrap();
    ws.send(Data::ArrayBuffer(wsx::Bytes::from_static(b"ab"))).unwrap();
    ws.send("").unwrap();
    let big = "x".repeat(1 << 20);
    ws.send(big.as_str()).unwrap();
    assert_eq!(text(&next(&ws).await), "one");
    assert_eq!(text(&next(&ws).await), "two ✓");
    for expected in [&[7u8, 7, 7][..], b"ab"] {
        match next(&ws).await {
            Event::Message(m) => assert_eq!(m.data().as_bytes(), expected),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(text(&next(&ws).await), "");
    assert_eq!(text(&next(&ws).await), big);
    ws.close(None, None).unwrap();
    rest(&ws).await;
    let log = server.log().await;
    assert_eq!(log[2], Message::binary(vec![7u8; 3]));
    assert_eq!(log[3], Message::binary(&b"ab"[..]));
}

/// A send() that would go past the bufferedAmount limit flags the
/// WebSocket as full and closes the connection: error, then close 1006.
#[tokio::test]
async fn send_past_max_buffered_amount_flags_full_and_fails() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let options = WebOptions::new().with_max_buffered_amount(10);
    let ws = WebSocket::with_options(&server.url("/"), &[], &options).unwrap();
    assert_eq!(next(&ws).await, Event::Open);
    ws.send("0123456789").unwrap();
    ws.send("!").unwrap();
    assert_eq!(ws.buffered_amount(), 11);
    assert_failed(&rest(&ws).await);
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

// ------------------------------------------------------------------ close

/// close() step 1: a code that is neither 1000 nor in 3000–4999 is an
/// InvalidAccessError, checked before anything else.
#[tokio::test]
async fn close_rejects_invalid_code_with_invalid_access() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    for code in [0, 999, 1001, 1002, 1005, 1006, 1011, 1015, 2999, 5000, u16::MAX] {
        assert_eq!(ws.close(Some(code), None), Err(DomError::InvalidAccess), "{code}");
    }
    assert_eq!(ws.close(Some(1001), Some(&"x".repeat(200))), Err(DomError::InvalidAccess));
    assert_eq!(ws.ready_state(), ReadyState::Open);
    ws.close(Some(4999), None).unwrap();
    assert_eq!(close_of(&next(&ws).await).code(), 4999);
}

/// close() step 2: a reason of more than 123 bytes of UTF-8 is a
/// SyntaxError; 123 bytes are fine.
#[tokio::test]
async fn close_rejects_reason_over_123_bytes_with_syntax_error() {
    let _g = REGISTRY.read().await;
    let mut server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    assert_eq!(ws.close(Some(1000), Some(&"a".repeat(124))), Err(DomError::Syntax));
    assert_eq!(ws.close(Some(3000), Some(&"é".repeat(62))), Err(DomError::Syntax)); // 62 chars, 124 bytes
    assert_eq!(ws.ready_state(), ReadyState::Open);
    let reason = "a".repeat(123);
    ws.close(Some(3000), Some(&reason)).unwrap();
    rest(&ws).await;
    let log = server.log().await;
    assert_eq!(log, [Message::Close(Some(wsx::CloseFrame::new(CloseCode::from(3000), reason.as_str())))]);
}

/// A reason without a code is an InvalidAccessError (see docs/web.md for
/// how this relates to the standard); an empty reason counts as none.
#[tokio::test]
async fn close_reason_without_code_is_invalid_access() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    assert_eq!(ws.close(None, Some("bye")), Err(DomError::InvalidAccess));
    assert_eq!(ws.ready_state(), ReadyState::Open);
    ws.close(None, Some("")).unwrap();
    assert_eq!(close_of(&next(&ws).await).code(), 1005);
}

/// close() with a code and reason starts the closing handshake with them;
/// the close event carries the code and reason of the peer's close frame.
#[tokio::test]
async fn close_sends_code_and_reason_and_waits_for_the_peer() {
    let _g = REGISTRY.read().await;
    let mut server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.close(Some(3001), Some("done ✓")).unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    let events = rest(&ws).await;
    assert_eq!(events.len(), 1);
    let c = close_of(&events[0]);
    // The wsx server echoes the code (RFC 6455 §5.5.1) without a reason.
    assert_eq!((c.code(), c.reason(), c.was_clean()), (3001, "", true));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(server.log().await, [Message::Close(Some(wsx::CloseFrame::new(CloseCode::from(3001), "done ✓")))]);
}

/// close() without arguments sends a close frame without a body; the
/// echoed empty frame gives code 1005.
#[tokio::test]
async fn close_without_code_sends_no_status_code() {
    let _g = REGISTRY.read().await;
    let mut server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.close(None, None).unwrap();
    let c = close_of(&next(&ws).await).clone();
    assert_eq!((c.code(), c.reason(), c.was_clean()), (1005, "", true));
    assert_eq!(server.log().await, [Message::Close(None)]);
}

/// close() while CONNECTING fails the connection: CLOSING at once, then
/// error and close 1006, and never open.
#[tokio::test]
async fn close_while_connecting_fails_the_connection() {
    let _g = REGISTRY.read().await;
    let server = server(ServerOptions { delay: Duration::from_millis(200), ..Default::default() }).await;
    let ws = WebSocket::new(&server.url("/"), &[]).unwrap();
    ws.close(Some(1000), Some("never mind")).unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    assert_failed(&rest(&ws).await);
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

/// A second close() (or one after the close) does nothing.
#[tokio::test]
async fn second_close_does_nothing() {
    let _g = REGISTRY.read().await;
    let mut server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.close(Some(3000), Some("first")).unwrap();
    ws.close(Some(4000), Some("second")).unwrap();
    ws.close(None, None).unwrap();
    let events = rest(&ws).await;
    assert_eq!(events.len(), 1);
    assert_eq!(close_of(&events[0]).code(), 3000);
    ws.close(Some(1000), None).unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(server.log().await, [Message::Close(Some(wsx::CloseFrame::new(CloseCode::from(3000), "first")))]);
}

/// Messages not yet delivered when close() is called are dropped (their
/// task would find readyState CLOSING).
#[tokio::test]
async fn messages_pending_when_close_is_called_are_dropped() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.send("burst:5").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // they arrive and wait in the queue
    ws.close(Some(1000), None).unwrap();
    let events = rest(&ws).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(close_of(&events[0]).was_clean());
}

// ----------------------------------------------------------------- events

/// The standard's order: open, messages, close; next_event() then ends.
#[tokio::test]
async fn events_fire_in_order_open_message_close() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = WebSocket::new(&server.url("/"), &[]).unwrap();
    assert_eq!(next(&ws).await, Event::Open);
    ws.send("a").unwrap();
    ws.send("b").unwrap();
    ws.send("close:1000:").unwrap();
    let events = rest(&ws).await;
    assert_eq!(
        events.iter().map(|e| e.event_type()).collect::<Vec<_>>(),
        [EventType::Message, EventType::Message, EventType::Close]
    );
    assert_eq!((text(&events[0]), text(&events[1])), ("a", "b"));
    assert_eq!(ws.next_event().await, None);
}

/// A clean close started by the server gives its code and reason and
/// wasClean true.
#[tokio::test]
async fn clean_close_gives_peer_code_and_reason() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.send("close:4001:going home").unwrap();
    let c = close_of(&next(&ws).await).clone();
    assert_eq!((c.code(), c.reason(), c.was_clean()), (4001, "going home", true));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

/// A close frame without a status code gives code 1005 (RFC 6455 §7.1.5).
#[tokio::test]
async fn close_without_status_gives_1005() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.send("close-empty").unwrap();
    let c = close_of(&next(&ws).await).clone();
    assert_eq!((c.code(), c.reason(), c.was_clean()), (1005, "", true));
}

/// Every failure — refused connection, not a WebSocket server, rejected
/// handshake, protocol error, connection dropped after open — gives
/// error, then close with 1006, wasClean false, and nothing more.
#[tokio::test]
async fn failure_gives_error_then_close_1006() {
    let _g = REGISTRY.read().await;
    let refused = format!("ws://127.0.0.1:{}/", closed_port().await);
    let not_found = format!("ws://{}/", http_server("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await);
    let garbage = format!("ws://{}/", http_server("SSH-2.0-OpenSSH_9.6\r\n\r\n").await);
    for url in [refused, not_found, garbage] {
        let ws = WebSocket::new(&url, &[]).unwrap();
        assert_failed(&rest(&ws).await);
        assert_eq!(ws.ready_state(), ReadyState::Closed, "{url}");
    }
    // After open: a protocol violation by the server, and a dropped TCP
    // connection.
    let server = echo_server().await;
    for command in ["garbage", "abort"] {
        let ws = open(&server.url("/"), &[]).await;
        ws.send(command).unwrap();
        assert_failed(&rest(&ws).await);
        assert_eq!(ws.ready_state(), ReadyState::Closed, "{command}");
    }
}

/// A bad port (Fetch's port blocking) is a network error: error, close.
#[tokio::test]
async fn bad_port_fails_the_connection() {
    let _g = REGISTRY.read().await;
    for url in ["ws://127.0.0.1:1/", "ws://127.0.0.1:22/", "wss://127.0.0.1:6667/", "ws://localhost:0/"] {
        let ws = WebSocket::new(url, &[]).unwrap();
        assert_failed(&rest(&ws).await);
    }
}

/// Callbacks (`on_open` ...) get the events, in order, on the connection's
/// task; they can use the handle.
#[tokio::test]
async fn callbacks_receive_events_in_order() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = WebSocket::new(&server.url("/"), &[]).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let (l, sender) = (log.clone(), ws.clone());
    ws.on_open(move || {
        l.lock().unwrap().push("open".to_owned());
        sender.send("hi").unwrap();
    });
    let (l, closer) = (log.clone(), ws.clone());
    ws.on_message(move |m| {
        l.lock().unwrap().push(format!("message {}", m.data().as_text().unwrap()));
        closer.close(Some(1000), Some("thanks")).unwrap();
    });
    let l = log.clone();
    ws.on_error(move |_| l.lock().unwrap().push("error".to_owned()));
    let l = log.clone();
    ws.on_close(move |c| {
        l.lock().unwrap().push(format!("close {} {}", c.code(), c.was_clean()));
        done_tx.send(()).unwrap();
    });
    tokio::time::timeout(LIMIT, done.recv()).await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["open", "message hi", "close 1000 true"]);
    // The close went to its callback: the event queue is over and empty.
    assert_eq!(ws.next_event().await, None);
}

/// A callback can be set or removed at any time; events of a type with no
/// callback go to next_event().
#[tokio::test]
async fn callbacks_can_be_set_and_cleared_at_any_time() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    ws.on_message(move |m| tx.send(m.into_data()).unwrap());
    ws.send("to the callback").unwrap();
    assert_eq!(tokio::time::timeout(LIMIT, rx.recv()).await.unwrap(), Some(Data::Text("to the callback".into())));
    ws.clear_handler(EventType::Message);
    ws.send("to the queue").unwrap();
    assert_eq!(text(&next(&ws).await), "to the queue");
}

/// A panicking callback is reported and does not break the connection.
#[tokio::test]
async fn panicking_callback_does_not_break_the_connection() {
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    ws.on_open(|| {});
    let (tx, mut rx) = mpsc::unbounded_channel();
    ws.on_message(move |m| {
        let t = m.data().as_text().unwrap().to_owned();
        if t == "boom" {
            panic!("handler panics (expected by the test)");
        }
        tx.send(t).unwrap();
    });
    ws.send("boom").unwrap();
    ws.send("still here").unwrap();
    assert_eq!(tokio::time::timeout(LIMIT, rx.recv()).await.unwrap().as_deref(), Some("still here"));
    assert_eq!(ws.ready_state(), ReadyState::Open);
}

/// The handle is Clone + Send + Sync and works from any thread; the
/// events can be read as a Stream.
#[tokio::test]
async fn handle_is_shared_across_threads_and_tasks() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<WebSocket>();
    assert_shareable::<wsx::web::blocking::WebSocket>();
    let _g = REGISTRY.read().await;
    let server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    let from_thread = ws.clone();
    std::thread::spawn(move || from_thread.send("from a thread").unwrap()).join().unwrap();
    let from_task = ws.clone();
    tokio::spawn(async move { from_task.send("from a task").unwrap() }).await.unwrap();
    use futures_util::StreamExt;
    let mut events = ws.events();
    for expected in ["from a thread", "from a task"] {
        let e = tokio::time::timeout(LIMIT, events.next()).await.unwrap().unwrap();
        assert_eq!(text(&e), expected);
    }
}

/// Dropping every handle of an open WebSocket with no callbacks closes it
/// like garbage collection does: a close frame without a status code.
#[tokio::test]
async fn dropping_every_handle_starts_the_closing_handshake() {
    let _g = REGISTRY.read().await;
    let mut server = echo_server().await;
    let ws = open(&server.url("/"), &[]).await;
    drop(ws);
    assert_eq!(server.log().await, [Message::Close(None)]);
}

// ------------------------------------------------------ connection rules

/// RFC 6455 §4.1 (client requirement 2), as browsers do it: while one
/// connection to a host:port is CONNECTING, the next one waits, and starts
/// when the first opens.
#[tokio::test]
async fn one_connecting_per_host_port() {
    let _g = REGISTRY.read().await;
    let delay = Duration::from_millis(600);
    let server = server(ServerOptions { delay, ..Default::default() }).await;
    let first = WebSocket::new(&server.url("/1"), &[]).unwrap();
    let second = WebSocket::new(&server.url("/2"), &[]).unwrap();
    tokio::time::sleep(delay / 2).await;
    // The second has not even opened its TCP connection.
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(second.ready_state(), ReadyState::Connecting);
    assert_eq!(next(&first).await, Event::Open);
    let first_open = Instant::now();
    assert_eq!(second.ready_state(), ReadyState::Connecting);
    assert_eq!(next(&second).await, Event::Open);
    // It connected after the first opened, and its handshake took the
    // server's delay again.
    assert!(first_open.elapsed() >= delay - Duration::from_millis(100), "{:?}", first_open.elapsed());
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

/// The queue is per host:port: connections to another port do not wait,
/// and a failed connection gives the turn to the next one.
#[tokio::test]
async fn other_host_ports_do_not_wait_and_failure_passes_the_turn() {
    let _g = REGISTRY.read().await;
    let delay = Duration::from_millis(600);
    let a = server(ServerOptions { delay, ..Default::default() }).await;
    let b = server(ServerOptions { delay, ..Default::default() }).await;
    let to_a = WebSocket::new(&a.url("/"), &[]).unwrap();
    let to_b = WebSocket::new(&b.url("/"), &[]).unwrap();
    tokio::time::sleep(delay / 2).await;
    assert_eq!((a.accepted.load(Ordering::SeqCst), b.accepted.load(Ordering::SeqCst)), (1, 1));
    // A waiting connection that is closed fails at once and leaves the queue.
    let waiting = WebSocket::new(&a.url("/"), &[]).unwrap();
    let behind = WebSocket::new(&a.url("/"), &[]).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    waiting.close(None, None).unwrap();
    assert_failed(&rest(&waiting).await);
    assert_eq!(to_a.ready_state(), ReadyState::Connecting);
    assert_eq!(next(&to_a).await, Event::Open);
    assert_eq!(next(&to_b).await, Event::Open);
    assert_eq!(next(&behind).await, Event::Open);
    assert_eq!(a.accepted.load(Ordering::SeqCst), 2);
}

/// Puts the default cap back even if the test fails.
struct RestoreCap;

impl Drop for RestoreCap {
    fn drop(&mut self) {
        wsx::web::set_max_connections(200);
    }
}

/// A global cap on live connections (default 200): past it a new
/// connection fails (error, then close 1006); closing one frees its place.
#[tokio::test]
async fn global_connection_cap_fails_new_connection() {
    let _g = REGISTRY.write().await;
    let _restore = RestoreCap;
    assert_eq!(wsx::web::max_connections(), 200);
    // Connections of tests that just ended may still be winding down.
    let start = Instant::now();
    while wsx::web::live_connections() > 0 {
        assert!(start.elapsed() < LIMIT, "{} connections stay live", wsx::web::live_connections());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wsx::web::set_max_connections(2);
    let server = echo_server().await;
    let one = open(&server.url("/"), &[]).await;
    let two = open(&server.url("/"), &[]).await;
    assert_eq!(wsx::web::live_connections(), 2);
    let three = WebSocket::new(&server.url("/"), &[]).unwrap();
    assert_failed(&rest(&three).await);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    one.close(None, None).unwrap();
    rest(&one).await;
    assert_eq!(wsx::web::live_connections(), 1);
    let four = open(&server.url("/"), &[]).await;
    four.send("under the cap again").unwrap();
    assert_eq!(text(&next(&four).await), "under the cap again");
    drop(two);
}

// --------------------------------------------------------------- blocking

/// Runs an echo server on a thread of its own, for the tests without a
/// runtime.
fn echo_server_thread() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut server = echo_server().await;
            tx.send(server.url("/")).unwrap();
            while server.logs.recv().await.is_some() {}
        });
    });
    rx.recv().unwrap()
}

/// `wsx::web::blocking::WebSocket` works from a plain thread with no
/// runtime: blocking next_event, send, close.
#[test]
fn blocking_websocket_works_without_a_runtime() {
    let _g = REGISTRY.blocking_read();
    assert!(tokio::runtime::Handle::try_current().is_err());
    let url = echo_server_thread();
    let ws = wsx::web::blocking::WebSocket::new(&url, &[]).unwrap();
    assert_eq!(ws.send("early"), Err(DomError::InvalidState));
    assert_eq!(ws.next_event_timeout(LIMIT), Ok(Some(Event::Open)));
    ws.send("hello").unwrap();
    ws.send(vec![1u8, 2]).unwrap();
    let e = ws.next_event_timeout(LIMIT).unwrap().unwrap();
    assert_eq!(text(&e), "hello");
    ws.set_binary_type(BinaryType::ArrayBuffer);
    match ws.next_event().unwrap() {
        Event::Message(m) => assert_eq!(m.into_data(), Data::ArrayBuffer(vec![1u8, 2].into())),
        other => panic!("{other:?}"),
    }
    assert_eq!(ws.next_event_timeout(Duration::from_millis(50)), Err(wsx::web::blocking::Timeout));
    ws.close(Some(1000), Some("bye")).unwrap();
    let c = ws.next_event_timeout(LIMIT).unwrap().unwrap();
    assert_eq!((close_of(&c).code(), close_of(&c).was_clean()), (1000, true));
    assert_eq!(ws.next_event(), None);
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

/// The async handle created outside any runtime runs on the shared
/// background runtime too.
#[test]
fn async_handle_created_outside_a_runtime_uses_the_background_runtime() {
    let _g = REGISTRY.blocking_read();
    let url = echo_server_thread();
    let ws = WebSocket::new(&url, &[]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let sender = ws.clone();
    ws.on_open(move || sender.send("hi").unwrap());
    ws.on_message(move |m| tx.send(m.into_data()).unwrap());
    assert_eq!(rx.recv_timeout(LIMIT), Ok(Data::Text("hi".into())));
    ws.close(None, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let events = rt.block_on(rest(&ws));
    assert_eq!(close_of(&events[0]).code(), 1005);
}
