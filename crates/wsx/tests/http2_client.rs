//! The client side of WebSockets over HTTP/2 (RFC 8441) against a server
//! written here with the h2 crate directly (an independent peer): echo
//! over an extended CONNECT stream (text, binary, 16 MiB through flow
//! control), sockets to one origin sharing one TCP connection and a second
//! connection when the server's SETTINGS_MAX_CONCURRENT_STREAMS is
//! reached, the fallback to HTTP/1.1 (ALPN, and HTTP/2 without
//! SETTINGS_ENABLE_CONNECT_PROTOCOL, remembered), HTTP/2 required and
//! forbidden, a reset stream failing its socket alone, GOAWAY, and
//! `wsx::web` over HTTP/2; and against `wsx::server::Server` too.

mod common;
#[path = "support/pki.rs"]
mod pki;

use bytes::Bytes;
use common::*;
use pki::Ca;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use wsx::http2::{H2Stream, Mode, Unavailable};
use wsx::tls::rustls;
use wsx::{CloseCode, Config, Error, Message, Role, WebSocket};

const H2: &[u8] = b"h2";
const HTTP11: &[u8] = b"http/1.1";

/// What the test server does.
#[derive(Clone)]
struct Options {
    /// ALPN protocols, in the server's order of preference.
    alpn: Vec<&'static [u8]>,
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3).
    connect_protocol: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    max_streams: Option<u32>,
    /// Send GOAWAY once the first stream of a connection has ended.
    goaway_after_one: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { alpn: vec![H2, HTTP11], connect_protocol: true, max_streams: None, goaway_after_one: false }
    }
}

/// What an extended CONNECT looked like to the server.
#[derive(Debug, Clone)]
struct Seen {
    method: http::Method,
    protocol: Option<String>,
    uri: http::Uri,
    version: Option<String>,
    key: bool,
    subprotocols: Option<String>,
}

/// Counts kept by the test server.
#[derive(Default)]
struct Counts {
    tcp: AtomicUsize,
    /// TLS connections that chose h2 / http/1.1 by ALPN.
    h2: AtomicUsize,
    h1: AtomicUsize,
    /// Extended CONNECT streams accepted with 200.
    streams: AtomicUsize,
    /// HTTP/2 connections that have ended.
    h2_ended: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

struct TestServer {
    port: u16,
    ca: Ca,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.port)
    }

    /// Client settings that trust the server's CA.
    fn config(&self) -> Config {
        Config::default().with_tls_config(self.ca.client_config())
    }

    fn tcp(&self) -> usize {
        self.counts.tcp.load(Ordering::SeqCst)
    }
    fn h2(&self) -> usize {
        self.counts.h2.load(Ordering::SeqCst)
    }
    fn h1(&self) -> usize {
        self.counts.h1.load(Ordering::SeqCst)
    }
    fn streams(&self) -> usize {
        self.counts.streams.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS server on 127.0.0.1 with a certificate for `localhost`: HTTP/2
/// (extended CONNECT echo streams) or HTTP/1.1 (wsx's own accept), as ALPN
/// chooses.
async fn server(options: Options) -> TestServer {
    use rustls::pki_types::pem::PemObject;
    let ca = Ca::new("wsx h2 test CA");
    let cert = ca.server_cert(&["localhost"]);
    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(wsx::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = options.alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = wsx::tls::TlsAcceptor::from(Arc::new(tls));
    let (listener, addr) = listen().await;
    let counts = Arc::new(Counts::default());
    let task = tokio::spawn({
        let counts = counts.clone();
        async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counts.tcp.fetch_add(1, Ordering::SeqCst);
                let (acceptor, counts, options) = (acceptor.clone(), counts.clone(), options.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    if tls.get_ref().1.alpn_protocol() == Some(H2) {
                        counts.h2.fetch_add(1, Ordering::SeqCst);
                        serve_h2(tls, &options, counts.clone()).await;
                        counts.h2_ended.fetch_add(1, Ordering::SeqCst);
                    } else {
                        counts.h1.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut ws) = wsx::accept(tls).await {
                            let _ = echo(&mut ws).await;
                        }
                    }
                });
            }
        }
    });
    TestServer { port: addr.port(), ca, counts, task }
}

async fn serve_h2(
    tls: wsx::tls::tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    options: &Options,
    counts: Arc<Counts>,
) {
    let mut builder = h2::server::Builder::new();
    if options.connect_protocol {
        builder.enable_connect_protocol();
    }
    if let Some(n) = options.max_streams {
        builder.max_concurrent_streams(n);
    }
    let Ok(mut conn) = builder.handshake::<_, Bytes>(tls).await else { return };
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    loop {
        tokio::select! {
            accepted = conn.accept() => {
                let Some(Ok((request, respond))) = accepted else { break };
                let (counts, ended) = (counts.clone(), ended_tx.clone());
                tokio::spawn(async move {
                    serve_stream(request, respond, &counts).await;
                    let _ = ended.send(());
                });
            }
            Some(()) = ended_rx.recv(), if options.goaway_after_one => conn.graceful_shutdown(),
        }
    }
}

/// One stream: checked as RFC 8441 §4 and §5 say a WebSocket's extended
/// CONNECT is made, answered with 200, then an echo (or, on `/reset`, a
/// RST_STREAM once data arrives).
async fn serve_stream(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    counts: &Counts,
) {
    let h = request.headers();
    let seen = Seen {
        method: request.method().clone(),
        protocol: request.extensions().get::<h2::ext::Protocol>().map(|p| p.as_str().to_owned()),
        uri: request.uri().clone(),
        version: h.get("sec-websocket-version").and_then(|v| v.to_str().ok()).map(str::to_owned),
        key: h.contains_key("sec-websocket-key"),
        subprotocols: h.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    counts.seen.lock().unwrap().push(seen.clone());
    let valid = seen.method == http::Method::CONNECT
        && seen.protocol.as_deref() == Some("websocket")
        && seen.version.as_deref() == Some("13")
        && !seen.key;
    if !valid {
        let _ = respond.send_response(http::Response::builder().status(400).body(()).unwrap(), true);
        return;
    }
    let mut response = http::Response::builder().status(200);
    // The first subprotocol offered is selected.
    if let Some(first) = seen.subprotocols.as_deref().and_then(|p| p.split(',').next()) {
        response = response.header("sec-websocket-protocol", first.trim());
    }
    let Ok(mut send) = respond.send_response(response.body(()).unwrap(), false) else { return };
    counts.streams.fetch_add(1, Ordering::SeqCst);
    let mut body = request.into_body();
    if seen.uri.path() == "/reset" {
        if let Some(Ok(_)) = body.data().await {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
        }
        return;
    }
    let stream = H2Stream::new(send, body);
    let mut ws = WebSocket::from_raw(stream, Role::Server, &Config::default(), &[]);
    let _ = echo(&mut ws).await;
}

/// Send `msg` and expect it back.
async fn round_trip(ws: &mut WebSocket<wsx::MaybeTlsStream>, msg: Message) {
    within(ws.send(msg.clone())).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
}

/// Close with 1000 and read to the end.
async fn close(mut ws: WebSocket<wsx::MaybeTlsStream>) {
    within(ws.close(CloseCode::Normal, "bye")).await.unwrap();
    while within(ws.recv()).await.is_some() {}
}

#[tokio::test]
async fn wss_goes_over_http2_as_an_extended_connect_and_echoes() {
    let server = server(Options::default()).await;
    let request =
        http::Request::get(server.url("/chat?room=1")).header("sec-websocket-protocol", "chat").body(()).unwrap();
    let (mut ws, response) = within(wsx::connect_with(request, &server.config())).await.unwrap();
    // RFC 8441 §5: 200, not 101.
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_2);
    assert_eq!(ws.protocol(), Some("chat"));
    assert!(ws.get_ref().tcp().is_none(), "a stream of a shared connection has no TCP stream of its own");

    for msg in [
        Message::text("hello over h2"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text(""),
        Message::binary(Vec::new()),
    ] {
        round_trip(&mut ws, msg).await;
    }
    // 16 MiB each way: 256 times the stream's initial window of 64 KiB on
    // the server's side, so it only arrives if the windows are handed back
    // as the bytes are read.
    let big = Message::binary((0..16 << 20).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
    let echoed = tokio::time::timeout(Duration::from_secs(60), async {
        ws.send(big.clone()).await.unwrap();
        ws.recv().await.unwrap().unwrap()
    })
    .await
    .expect("16 MiB echoed in time");
    assert!(echoed == big, "the 16 MiB message came back changed");

    within(ws.close(CloseCode::GoingAway, "done")).await.unwrap();
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::GoingAway),
        other => panic!("expected the echoed close, got {other:?}"),
    }
    assert!(within(ws.recv()).await.is_none());

    // What the server saw: RFC 8441 §4, §5 and RFC 9113 §8.3.1.
    let seen = server.counts.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, http::Method::CONNECT);
    assert_eq!(s.protocol.as_deref(), Some("websocket"));
    assert_eq!(s.uri.scheme_str(), Some("https"));
    assert_eq!(s.uri.authority().unwrap().as_str(), format!("localhost:{}", server.port));
    assert_eq!(s.uri.path_and_query().unwrap().as_str(), "/chat?room=1");
    assert_eq!(s.version.as_deref(), Some("13"));
    assert!(!s.key, "no Sec-WebSocket-Key over HTTP/2");
    assert_eq!((server.tcp(), server.h2(), server.h1()), (1, 1, 0));
}

#[tokio::test]
async fn websockets_to_one_origin_share_one_connection() {
    let server = server(Options::default()).await;
    let config = server.config();
    let (mut a, _) = within(wsx::connect_with(server.url("/a"), &config)).await.unwrap();
    let (mut b, _) = within(wsx::connect_with(server.url("/b"), &config)).await.unwrap();
    // Eight more at once: they wait for no dial of their own.
    let more = within(futures_util::future::join_all(
        (0..8).map(|i| wsx::connect_with(server.url(&format!("/{i}")), &config)),
    ))
    .await;
    round_trip(&mut a, Message::text("a")).await;
    round_trip(&mut b, Message::text("b")).await;
    for (i, r) in more.into_iter().enumerate() {
        let (mut ws, _) = r.unwrap();
        assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_2);
        round_trip(&mut ws, Message::text(format!("socket {i}"))).await;
        close(ws).await;
    }
    // `a` closing leaves `b` working on the same connection.
    close(a).await;
    round_trip(&mut b, Message::binary(vec![9u8; 100_000])).await;
    close(b).await;
    assert_eq!(server.streams(), 10);
    assert_eq!(server.tcp(), 1, "ten WebSockets to one origin, one TCP connection");
}

#[tokio::test]
async fn a_connection_at_the_servers_stream_limit_makes_another() {
    let server = server(Options { max_streams: Some(2), ..Options::default() }).await;
    let config = server.config();
    let mut sockets = Vec::new();
    for i in 0..3 {
        let (mut ws, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
        round_trip(&mut ws, Message::text(format!("socket {i}"))).await;
        sockets.push(ws);
    }
    assert_eq!(server.tcp(), 2, "SETTINGS_MAX_CONCURRENT_STREAMS 2: the third socket on a second connection");
    // A socket that ends gives its place back: the next one takes it.
    close(sockets.remove(0)).await;
    let (mut ws, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    round_trip(&mut ws, Message::text("in a freed place")).await;
    assert_eq!(server.tcp(), 2);
    for ws in sockets {
        round_trip_then_close(ws).await;
    }
    close(ws).await;
}

async fn round_trip_then_close(mut ws: WebSocket<wsx::MaybeTlsStream>) {
    round_trip(&mut ws, Message::text("still there")).await;
    close(ws).await;
}

#[tokio::test]
async fn an_idle_connection_stays_for_the_next_socket_until_closed() {
    let server = server(Options::default()).await;
    let config = server.config();
    let (ws, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    close(ws).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.counts.h2_ended.load(Ordering::SeqCst), 0, "the connection waits for the next socket");
    let (ws, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    close(ws).await;
    assert_eq!(server.tcp(), 1);

    wsx::http2::close_idle_connections();
    within(async {
        while server.counts.h2_ended.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (ws, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    close(ws).await;
    assert_eq!(server.tcp(), 2, "after close_idle_connections, a new connection");
}

#[tokio::test]
async fn a_server_that_chooses_http_1_1_by_alpn_gets_http_1_1_on_the_same_connection() {
    let server = server(Options { alpn: vec![HTTP11], ..Options::default() }).await;
    let (mut ws, response) = within(wsx::connect_with(server.url("/"), &server.config())).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_11);
    round_trip(&mut ws, Message::text("h1")).await;
    close(ws).await;
    assert_eq!((server.tcp(), server.h2(), server.h1()), (1, 0, 1));
}

#[tokio::test]
async fn http2_without_extended_connect_falls_back_to_http_1_1_and_is_remembered() {
    let server = server(Options { connect_protocol: false, ..Options::default() }).await;
    let config = server.config();
    let (mut ws, response) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_11);
    // The server prefers h2: it chose http/1.1 because the client offered
    // nothing else on the new connection.
    assert_eq!(ws.get_ref().tls_connection().unwrap().alpn_protocol(), Some(HTTP11));
    round_trip(&mut ws, Message::text("fallback")).await;
    close(ws).await;
    assert_eq!((server.h2(), server.h1()), (1, 1));
    assert_eq!(server.streams(), 0, "no extended CONNECT without SETTINGS_ENABLE_CONNECT_PROTOCOL");

    // Remembered: the next socket goes straight to HTTP/1.1.
    let (ws, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_11);
    close(ws).await;
    assert_eq!((server.tcp(), server.h2(), server.h1()), (3, 1, 2));
}

#[tokio::test]
async fn http2_required_fails_with_a_typed_error_when_the_server_cannot() {
    let h1_only = server(Options { alpn: vec![HTTP11], ..Options::default() }).await;
    let config = h1_only.config().with_http2(Mode::Required);
    let err = within(wsx::connect_with(h1_only.url("/"), &config)).await.unwrap_err();
    assert!(matches!(err, Error::Http2Unavailable(Unavailable::NotNegotiated)), "{err:?}");

    let no_setting = server(Options { connect_protocol: false, ..Options::default() }).await;
    let config = no_setting.config().with_http2(Mode::Required);
    let err = within(wsx::connect_with(no_setting.url("/"), &config)).await.unwrap_err();
    assert!(matches!(err, Error::Http2Unavailable(Unavailable::NoExtendedConnect)), "{err:?}");
    assert!(err.to_string().contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"), "{err}");
    // Required again (the fallback remembered for Auto does not apply).
    let err = within(wsx::connect_with(no_setting.url("/"), &config)).await.unwrap_err();
    assert!(matches!(err, Error::Http2Unavailable(Unavailable::NoExtendedConnect)), "{err:?}");
    assert_eq!(no_setting.h1(), 0, "HTTP/2 required never falls back");

    // ws:// is HTTP/1.1: refused before connecting.
    let (listener, addr) = listen().await;
    let err =
        within(wsx::connect_with(ws_url(addr, "/"), &Config::default().with_http2(Mode::Required))).await.unwrap_err();
    assert!(matches!(err, Error::Http2Unavailable(Unavailable::NotTls)), "{err:?}");
    let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
    assert!(accepted.is_err(), "no connection is opened for ws:// with HTTP/2 required");

    // And a server that can: the socket is HTTP/2.
    let h2 = server(Options::default()).await;
    let (ws, _) = within(wsx::connect_with(h2.url("/"), &h2.config().with_http2(Mode::Required))).await.unwrap();
    assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_2);
    close(ws).await;
}

#[tokio::test]
async fn http2_off_offers_http_1_1_alone() {
    let server = server(Options::default()).await;
    let config = server.config().with_http2(Mode::Off);
    let (mut ws, response) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(ws.get_ref().tls_connection().unwrap().alpn_protocol(), Some(HTTP11));
    round_trip(&mut ws, Message::text("h1 only")).await;
    close(ws).await;
    assert_eq!((server.tcp(), server.h2(), server.h1()), (1, 0, 1));
}

#[tokio::test]
async fn a_reset_stream_fails_its_socket_alone() {
    let server = server(Options::default()).await;
    let config = server.config();
    let (mut doomed, _) = within(wsx::connect_with(server.url("/reset"), &config)).await.unwrap();
    let (mut other, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    assert_eq!(server.tcp(), 1, "both sockets on one connection");
    within(doomed.send(Message::text("reset me"))).await.unwrap();
    match within(doomed.recv()).await {
        Some(Err(Error::Io(e))) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected the reset as an I/O error (1006), got {other:?}"),
    }
    // The other socket of the connection goes on.
    round_trip(&mut other, Message::text("unaffected")).await;
    round_trip(&mut other, Message::binary(vec![1u8; 300_000])).await;
    close(other).await;
}

#[tokio::test]
async fn goaway_moves_new_sockets_to_a_new_connection() {
    let server = server(Options { goaway_after_one: true, ..Options::default() }).await;
    let config = server.config();
    let (ws, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    close(ws).await;
    // The server sends GOAWAY as that stream ends; the next socket works,
    // on a new connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut ws, _) = within(wsx::connect_with(server.url("/"), &config)).await.unwrap();
    assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_2);
    round_trip(&mut ws, Message::text("after GOAWAY")).await;
    close(ws).await;
    assert_eq!(server.tcp(), 2);
}

#[tokio::test]
async fn the_browser_api_goes_over_http2_too() {
    use wsx::web::{Data, Event, WebOptions};
    let server = server(Options::default()).await;
    let options = WebOptions::new().with_config(server.config());
    let ws = wsx::web::WebSocket::with_options(&server.url("/"), &[], &options).unwrap();
    assert!(matches!(within(ws.next_event()).await, Some(Event::Open)));
    ws.send("hi from the web API").unwrap();
    match within(ws.next_event()).await {
        Some(Event::Message(m)) => assert!(matches!(m.data(), Data::Text(t) if t == "hi from the web API")),
        other => panic!("expected the echo, got {other:?}"),
    }
    ws.close(Some(1000), None).unwrap();
    match within(ws.next_event()).await {
        Some(Event::Close(c)) => assert_eq!(c.code(), 1000),
        other => panic!("expected close, got {other:?}"),
    }
    assert_eq!((server.streams(), server.h1()), (1, 0));
}

/// wsx's client against wsx's own server: five sockets opened at once,
/// over HTTP/2 and through one TCP connection (counted by a relay in
/// front of the server), each echoing text and 1 MiB.
#[tokio::test]
async fn wsx_client_and_wsx_server_share_one_connection_over_http2() {
    use wsx::server::{Request, Server};
    let ca = Ca::new("wsx h2 test CA");
    let server = Server::builder().tls(pki::acceptor(&ca, &["localhost"])).build();
    let (listener, addr) = listen().await;
    let s = server.clone();
    let serving = tokio::spawn(async move {
        s.serve(listener, |req: Request| async move {
            let mut ws = req.upgrade(wsx::handshake::Accept::new()).await?;
            echo(&mut ws).await.map(drop)
        })
        .await
    });
    let (relay, relay_addr) = listen().await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let relaying = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            while let Ok((mut inbound, _)) = relay.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        }
    });
    let config = Config::default().with_tls_config(ca.client_config()).with_http2(Mode::Required);
    let url = format!("wss://localhost:{}/", relay_addr.port());
    let opened = within(futures_util::future::join_all((0..5).map(|_| wsx::connect_with(url.as_str(), &config)))).await;
    for r in opened {
        let (mut ws, response) = r.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        round_trip(&mut ws, Message::text("wsx to wsx")).await;
        round_trip(&mut ws, Message::binary(vec![3u8; 1 << 20])).await;
        close(ws).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "five WebSockets, one TCP connection");
    assert_eq!(server.websockets_opened(http::Version::HTTP_2), 5);
    assert_eq!(server.websockets_opened(http::Version::HTTP_11), 0);
    relaying.abort();
    serving.abort();
}
