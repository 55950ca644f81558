//! WebSockets over HTTP/2 (RFC 8441) inside HTTP servers: a hyper 1 server
//! (hyper-util's auto builder with the extended CONNECT on, over TLS with
//! ALPN `h2` and `http/1.1`) using `wsx::upgrade`, and axum routers served
//! by `axum::serve` (over TLS, and in clear text with prior knowledge)
//! using `wsx::axum::WebSocketUpgrade` on an `any` route. The client is
//! independent of both: the `h2` crate driven by hand, opening each
//! WebSocket with an extended CONNECT and running wsx's client over the
//! stream. Each server reports what it saw (HTTP version, subprotocol,
//! compression, close code), so a WebSocket that did not go over HTTP/2,
//! or did not negotiate, fails the test.

mod common;
#[path = "support/pki.rs"]
mod pki;

use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use common::*;
use http::{StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pki::Ca;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsx::handshake::{Accept, HandshakeError, Reject, UpgradeRequest};
use wsx::http2::{H2Stream, Mode};
use wsx::proto::deflate::{client_accept_response, DeflateConfig};
use wsx::proto::handshake::ClientHandshake;
use wsx::tls::tokio_rustls::server::TlsStream;
use wsx::tls::tokio_rustls::{TlsAcceptor, TlsConnector};
use wsx::upgrade::{UpgradeError, UpgradedIo};
use wsx::{CloseCode, Config, Error, Message, Role, WebSocket};

/// What a server saw.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// A WebSocket opened: the request's version, the subprotocol and
    /// whether permessage-deflate was negotiated.
    Opened { version: Version, protocol: Option<String>, compression: bool },
    /// A WebSocket ended: the client's close code, 1006 without one.
    Closed(Option<CloseCode>),
    /// An upgrade was refused with this status (and handshake error).
    Refused(StatusCode, Option<HandshakeError>),
}

type Events = mpsc::UnboundedSender<Event>;

/// Echo a server's WebSocket, reporting it opened and how it ended.
async fn serve_ws(mut ws: WebSocket<UpgradedIo>, version: Version, events: Events) {
    let opened =
        Event::Opened { version, protocol: ws.protocol().map(str::to_owned), compression: ws.compression_enabled() };
    let _ = events.send(opened);
    let code = match echo(&mut ws).await {
        Ok(other) => other.iter().find_map(|m| match m {
            Message::Close(f) => Some(f.as_ref().map_or(CloseCode::NoStatus, |f| f.code)),
            _ => None,
        }),
        Err(_) => Some(CloseCode::Abnormal),
    };
    let _ = events.send(Event::Closed(code));
}

/// The first event, within the time limit.
async fn next(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    within(events.recv()).await.expect("the server is gone")
}

/// A TLS acceptor for `localhost` whose ALPN offers `h2` then `http/1.1`.
fn h2_acceptor(ca: &Ca) -> TlsAcceptor {
    let mut tls = (**pki::acceptor(ca, &["localhost"]).config()).clone();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(tls))
}

// ------------------------------------------------------------ the client

/// An HTTP/2 client connection over `io`, once the server's SETTINGS
/// arrived (it is the server's first frame: processed before the pong).
async fn h2_client<T>(io: T) -> h2::client::SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) = within(h2::client::handshake(io)).await.unwrap();
    let mut ping = conn.ping_pong().unwrap();
    tokio::spawn(conn);
    within(ping.ping(h2::Ping::opaque())).await.unwrap();
    let send = within(send.ready()).await.unwrap();
    assert!(send.is_extended_connect_protocol_enabled(), "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3)");
    send
}

/// A TLS connection to `localhost:port` offering ALPN `h2` only, which
/// the server must choose.
async fn tls_h2(ca: &Ca, port: u16) -> h2::client::SendRequest<Bytes> {
    let mut tls = (*ca.client_config()).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = wsx::tls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = within(TlsConnector::from(Arc::new(tls)).connect(name, tcp)).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server chose HTTP/2");
    h2_client(tls).await
}

/// An extended CONNECT for a WebSocket at `url` (RFC 8441 §5), offering
/// the subprotocols `protocols` and permessage-deflate; `edit` changes it
/// first. The response and, when it is 200, the client's WebSocket on the
/// stream, with what the response negotiated.
async fn open(
    send: &h2::client::SendRequest<Bytes>,
    url: &str,
    protocols: &str,
    edit: impl FnOnce(&mut http::Request<()>),
) -> (http::Response<()>, Option<WebSocket<H2Stream>>) {
    let deflate = DeflateConfig::default();
    let mut req = http::Request::get(url).header("sec-websocket-extensions", deflate.client_offer());
    if !protocols.is_empty() {
        req = req.header("sec-websocket-protocol", protocols);
    }
    let (mut req, handshake) = ClientHandshake::extended_connect(req.body(()).unwrap()).unwrap();
    req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
    edit(&mut req);
    let (response, stream) = within(send.clone().ready()).await.unwrap().send_request(req, false).unwrap();
    let (parts, body) = within(response).await.unwrap().into_parts();
    let head = http::Response::from_parts(parts, ());
    if head.status() != StatusCode::OK {
        return (head, None);
    }
    let negotiated = handshake.check_response(&head).unwrap();
    let params = client_accept_response(&deflate, &negotiated.extensions).unwrap();
    let extensions = head.headers().get("sec-websocket-extensions").map(|v| v.to_str().unwrap().to_owned());
    let ws =
        WebSocket::from_negotiated(H2Stream::new(stream, body), Role::Client, &Config::default(), &[], params.as_ref())
            .with_negotiated(negotiated.protocol, extensions);
    (head, Some(ws))
}

/// A plain GET on the connection: the status and the body.
async fn get_page(send: &h2::client::SendRequest<Bytes>, url: &str) -> (StatusCode, String) {
    let req = http::Request::get(url).body(()).unwrap();
    let (response, _) = within(send.clone().ready()).await.unwrap().send_request(req, true).unwrap();
    let response = within(response).await.unwrap();
    let status = response.status();
    let mut body = response.into_body();
    let mut page = Vec::new();
    while let Some(chunk) = within(body.data()).await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        page.extend_from_slice(&chunk);
    }
    (status, String::from_utf8(page).unwrap())
}

/// Echo text and binary (empty, and past the stream's initial 64 KiB
/// window, compressible and not), then close with a code and read the
/// server's close frame and the end of the stream.
async fn exercise<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    let noise: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for msg in [
        Message::text("hello over h2"),
        Message::binary(vec![1u8, 2, 3]),
        Message::text(""),
        Message::binary(vec![]),
        Message::text("x".repeat(200_000)),
        Message::binary(noise),
    ] {
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
    }
    within(ws.close(4321, "bye")).await.unwrap();
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::from(4321)),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    assert!(within(ws.recv()).await.is_none());
}

/// An opened client WebSocket negotiated `protocol` and permessage-deflate.
fn assert_negotiated(resp: &http::Response<()>, ws: &WebSocket<H2Stream>, protocol: &str) {
    assert_eq!(resp.status(), 200, "RFC 8441 §5: 200, not 101");
    for name in ["sec-websocket-accept", "upgrade", "connection"] {
        assert!(resp.headers().get(name).is_none(), "no {name} on HTTP/2");
    }
    assert_eq!(ws.protocol(), Some(protocol));
    assert!(resp.headers()["sec-websocket-extensions"].to_str().unwrap().starts_with("permessage-deflate"));
    assert!(ws.compression_enabled());
}

// ----------------------------------------------------------------- hyper

/// The hyper application: WebSockets (and any CONNECT: a tunnel is
/// refused by `upgrade`) echo, selecting `chat` when offered; `/strict`
/// wants a session cookie; anything else is plain HTTP.
async fn hyper_app(
    mut req: hyper::Request<Incoming>,
    events: Events,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let version = req.version();
    if !wsx::upgrade::is_upgrade_request(&req) && req.method() != http::Method::CONNECT {
        return Ok(hyper::Response::new(Full::from(format!("plain HTTP over {version:?}\n"))));
    }
    let strict = req.uri().path() == "/strict";
    let choose = |up: &UpgradeRequest| {
        if strict && up.cookie("session").is_none() {
            return Err(Reject::new(403, "no session\n").header("connection", "close"));
        }
        let accept = Accept::new().header("x-served-by", "hyper");
        Ok(match up.protocols().iter().find(|p| *p == "chat") {
            Some(p) => accept.protocol(p.clone()),
            None => accept,
        })
    };
    match wsx::upgrade::upgrade_with(&mut req, choose, &Config::default()) {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                let ws = upgrading.await.expect("upgrade failed");
                serve_ws(ws, version, events).await;
            });
            Ok(response)
        }
        Err(rejection) => {
            let error = match rejection.error() {
                Error::Handshake(e) => Some(e.clone()),
                _ => None,
            };
            let _ = events.send(Event::Refused(rejection.status(), error));
            Ok(rejection.into_response())
        }
    }
}

/// A hyper server on 127.0.0.1 for `localhost`: TLS with ALPN `h2` and
/// `http/1.1`, hyper-util's auto builder with the extended CONNECT on.
async fn hyper_server(ca: &Ca) -> (u16, mpsc::UnboundedReceiver<Event>) {
    let acceptor = h2_acceptor(ca);
    let (listener, addr) = listen().await;
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let tls = acceptor.accept(tcp).await?;
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().enable_connect_protocol();
                let service = service_fn(move |req| hyper_app(req, tx.clone()));
                builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await.map_err(std::io::Error::other)
            });
        }
    });
    (addr.port(), events)
}

#[tokio::test]
async fn hyper_serves_a_websocket_over_http2_with_subprotocol_and_deflate() {
    let ca = Ca::new("wsx hyper h2 test CA");
    let (port, mut events) = hyper_server(&ca).await;
    let send = tls_h2(&ca, port).await;
    let (resp, ws) = open(&send, "wss://localhost/ws", "other, chat", |_| {}).await;
    let mut ws = ws.expect("the extended CONNECT was accepted");
    assert_negotiated(&resp, &ws, "chat");
    assert_eq!(resp.headers()["x-served-by"], "hyper");
    let opened = Event::Opened { version: Version::HTTP_2, protocol: Some("chat".into()), compression: true };
    assert_eq!(next(&mut events).await, opened);
    exercise(&mut ws).await;
    assert_eq!(next(&mut events).await, Event::Closed(Some(CloseCode::from(4321))));
}

/// Several WebSockets and plain requests share one HTTP/2 connection,
/// their messages interleaved.
#[tokio::test]
async fn hyper_websockets_share_one_http2_connection() {
    let ca = Ca::new("wsx hyper h2 test CA");
    let (port, mut events) = hyper_server(&ca).await;
    let send = tls_h2(&ca, port).await;
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(open(&send, "wss://localhost/ws", "", |_| {}).await.1.unwrap());
    }
    for k in 0..20 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            within(ws.send(Message::text(format!("socket {i} message {k}")))).await.unwrap();
        }
        for (i, ws) in sockets.iter_mut().enumerate() {
            assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text(format!("socket {i} message {k}")));
        }
    }
    assert_eq!(get_page(&send, "https://localhost/").await, (StatusCode::OK, "plain HTTP over HTTP/2.0\n".into()));
    for ws in &mut sockets {
        within(ws.send(Message::text("still open"))).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("still open"));
    }
    for _ in 0..5 {
        assert!(matches!(next(&mut events).await, Event::Opened { version: Version::HTTP_2, protocol: None, .. }));
    }
}

/// A CONNECT without `:protocol` (a tunnel: 405), for another protocol
/// (501), with a version other than 13 (426 with the versions, and no
/// connection-specific field), or refused by the application (403) is
/// answered on its stream; the connection serves the next WebSocket.
#[tokio::test]
async fn hyper_refuses_bad_connects_over_http2_and_keeps_serving() {
    let ca = Ca::new("wsx hyper h2 test CA");
    let (port, mut events) = hyper_server(&ca).await;
    let send = tls_h2(&ca, port).await;

    let (resp, _) = open(&send, "wss://localhost/ws", "", |r| {
        r.extensions_mut().remove::<h2::ext::Protocol>();
        *r.uri_mut() = "localhost:443".parse().unwrap();
    })
    .await;
    assert_eq!(resp.status(), 405);
    assert_eq!(
        next(&mut events).await,
        Event::Refused(StatusCode::METHOD_NOT_ALLOWED, Some(HandshakeError::ConnectWithoutProtocol))
    );

    let (resp, _) = open(&send, "wss://localhost/ws", "", |r| {
        r.extensions_mut().insert(h2::ext::Protocol::from_static("webtransport"));
    })
    .await;
    assert_eq!(resp.status(), 501);
    let refused =
        Event::Refused(StatusCode::NOT_IMPLEMENTED, Some(HandshakeError::UnsupportedProtocol("webtransport".into())));
    assert_eq!(next(&mut events).await, refused);

    let (resp, _) = open(&send, "wss://localhost/ws", "", |r| {
        r.headers_mut().insert("sec-websocket-version", http::HeaderValue::from_static("8"));
    })
    .await;
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["sec-websocket-version"], "13, 8, 7");
    assert!(resp.headers().get("upgrade").is_none() && resp.headers().get("connection").is_none());
    assert!(matches!(next(&mut events).await, Event::Refused(StatusCode::UPGRADE_REQUIRED, Some(_))));

    let (resp, _) = open(&send, "wss://localhost/strict", "", |_| {}).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(next(&mut events).await, Event::Refused(StatusCode::FORBIDDEN, None));

    let (resp, ws) = open(&send, "wss://localhost/strict", "chat", |r| {
        r.headers_mut().insert("cookie", http::HeaderValue::from_static("session=1"));
    })
    .await;
    let mut ws = ws.expect("accepted after the refusals");
    assert_negotiated(&resp, &ws, "chat");
    within(ws.send(Message::text("served"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("served"));
}

/// The same server and port serve wsx's own client on both versions:
/// HTTP/1.1 when it forbids HTTP/2 (ALPN `http/1.1` alone: a 101), and
/// HTTP/2 when it requires it (a 200 on an extended CONNECT stream).
#[tokio::test]
async fn hyper_serves_wsx_clients_over_http1_and_http2_on_one_port() {
    let ca = Ca::new("wsx hyper h2 test CA");
    let (port, mut events) = hyper_server(&ca).await;
    for (mode, version, status) in [(Mode::Off, Version::HTTP_11, 101), (Mode::Required, Version::HTTP_2, 200)] {
        let config = Config::default().with_tls_config(ca.client_config()).with_http2(mode);
        let req = http::Request::get(format!("wss://localhost:{port}/ws"))
            .header("sec-websocket-protocol", "chat")
            .body(())
            .unwrap();
        let (mut ws, resp) = within(wsx::connect_with(req, &config)).await.unwrap();
        assert_eq!((resp.status().as_u16(), resp.version()), (status, version));
        assert_eq!(resp.headers()["x-served-by"], "hyper");
        assert_eq!(ws.protocol(), Some("chat"));
        assert_eq!(
            next(&mut events).await,
            Event::Opened { version, protocol: Some("chat".into()), compression: true }
        );
        exercise(&mut ws).await;
        assert_eq!(next(&mut events).await, Event::Closed(Some(CloseCode::from(4321))));
    }
}

/// `is_upgrade_request` and `upgrade` read hyper's `:protocol` extension
/// (RFC 8441 §4), outside a connection: a valid extended CONNECT passes
/// every check and only lacks the connection to take over (500); the
/// refusals on HTTP/2 carry no connection-specific field.
#[test]
fn the_extended_connect_is_recognised_and_checked() {
    let connect = |protocol: Option<&'static str>| {
        let mut req = http::Request::connect("https://localhost/chat")
            .version(Version::HTTP_2)
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        if let Some(p) = protocol {
            req.extensions_mut().insert(hyper::ext::Protocol::from_static(p));
        }
        req
    };
    assert!(wsx::upgrade::is_upgrade_request(&connect(Some("websocket"))));
    assert!(!wsx::upgrade::is_upgrade_request(&connect(None)));
    assert!(!wsx::upgrade::is_upgrade_request(&connect(Some("webtransport"))));

    let rejection = wsx::upgrade::upgrade(&mut connect(Some("websocket")), &Config::default()).unwrap_err();
    assert_eq!(rejection.status(), 500);
    assert!(matches!(rejection.error(), Error::Upgrade(UpgradeError::NotUpgradable)), "{rejection:?}");

    let rejection = wsx::upgrade::upgrade(&mut connect(None), &Config::default()).unwrap_err();
    assert_eq!(rejection.status(), 405);
    assert!(matches!(rejection.error(), Error::Handshake(HandshakeError::ConnectWithoutProtocol)));
    assert!(rejection.into_response().headers().get("connection").is_none());

    let rejection = wsx::upgrade::upgrade(&mut connect(Some("webtransport")), &Config::default()).unwrap_err();
    assert_eq!(rejection.status(), 501);

    let mut req = connect(Some("websocket"));
    req.headers_mut().remove("sec-websocket-version");
    let response = wsx::upgrade::upgrade(&mut req, &Config::default()).unwrap_err().into_response();
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["sec-websocket-version"], "13, 8, 7");
    for name in ["connection", "upgrade"] {
        assert!(response.headers().get(name).is_none(), "{name} on HTTP/2");
    }

    // On HTTP/1.1 a CONNECT is no WebSocket: 405 with `Allow: GET`, as before.
    let mut h1 = connect(Some("websocket"));
    *h1.version_mut() = Version::HTTP_11;
    assert!(!wsx::upgrade::is_upgrade_request(&h1));
    let response = wsx::upgrade::upgrade(&mut h1, &Config::default()).unwrap_err().into_response();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
}

// ------------------------------------------------------------------ axum

/// An axum router: `/ws` (an `any` route) echoes, selecting `echo` or
/// `chat`; `/small` allows 256-byte request heads; `/get-only` routes its
/// WebSocket with `get`, which HTTP/2 clients cannot reach.
fn axum_app(events: Events) -> Router {
    let ws_events = events.clone();
    Router::new()
        .route("/", get(|req: axum::extract::Request| async move { format!("plain HTTP over {:?}\n", req.version()) }))
        .route(
            "/ws",
            any(move |ws: wsx::axum::WebSocketUpgrade| {
                let events = ws_events.clone();
                async move {
                    let version = ws.request().request().version();
                    ws.protocols(["echo", "chat"])
                        .header("x-served-by", "axum")
                        .on_upgrade(move |ws| serve_ws(ws, version, events))
                }
            }),
        )
        .route(
            "/small",
            any(|ws: wsx::axum::WebSocketUpgrade| async move {
                ws.config(Config::default().with_max_handshake_size(256)).on_upgrade(|_| async {})
            }),
        )
        .route(
            "/get-only",
            get(move |ws: wsx::axum::WebSocketUpgrade| {
                let events = events.clone();
                async move { ws.on_upgrade(move |ws| serve_ws(ws, Version::HTTP_11, events)) }
            }),
        )
}

/// TLS for `axum::serve`: each connection's handshake, done in turn
/// (enough for a test).
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((tcp, peer)) = self.tcp.accept().await {
                if let Ok(tls) = self.acceptor.accept(tcp).await {
                    return (tls, peer);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The router served by `axum::serve` over TLS with ALPN `h2` and
/// `http/1.1`, on 127.0.0.1 for `localhost`.
async fn axum_tls_server(ca: &Ca) -> (u16, mpsc::UnboundedReceiver<Event>) {
    let (tx, events) = mpsc::unbounded_channel();
    let (tcp, addr) = listen().await;
    let listener = TlsListener { tcp, acceptor: h2_acceptor(ca) };
    tokio::spawn(async move { axum::serve(listener, axum_app(tx)).await });
    (addr.port(), events)
}

#[tokio::test]
async fn axum_any_route_serves_websockets_over_http2_and_http1() {
    let ca = Ca::new("wsx axum h2 test CA");
    let (port, mut events) = axum_tls_server(&ca).await;
    let send = tls_h2(&ca, port).await;
    // The client prefers chat: the first of its offers the server speaks.
    let (resp, ws) = open(&send, "wss://localhost/ws", "chat, echo", |_| {}).await;
    let mut ws = ws.expect("the extended CONNECT was accepted");
    assert_negotiated(&resp, &ws, "chat");
    assert_eq!(resp.headers()["x-served-by"], "axum");
    let opened = Event::Opened { version: Version::HTTP_2, protocol: Some("chat".into()), compression: true };
    assert_eq!(next(&mut events).await, opened);
    exercise(&mut ws).await;
    assert_eq!(next(&mut events).await, Event::Closed(Some(CloseCode::from(4321))));

    // The same route takes HTTP/1.1's GET (wsx's client, HTTP/2 off).
    let config = Config::default().with_tls_config(ca.client_config()).with_http2(Mode::Off);
    let req = http::Request::get(format!("wss://localhost:{port}/ws"))
        .header("sec-websocket-protocol", "echo")
        .body(())
        .unwrap();
    let (mut ws, resp) = within(wsx::connect_with(req, &config)).await.unwrap();
    assert_eq!((resp.status(), resp.version()), (StatusCode::SWITCHING_PROTOCOLS, Version::HTTP_11));
    assert_eq!(
        next(&mut events).await,
        Event::Opened { version: Version::HTTP_11, protocol: Some("echo".into()), compression: true }
    );
    exercise(&mut ws).await;
}

/// `axum::serve` on a plain `TcpListener` takes HTTP/2 with prior
/// knowledge (h2c) beside HTTP/1.1, extended CONNECT included.
#[tokio::test]
async fn axum_serve_takes_websockets_over_h2c_prior_knowledge() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let (listener, addr) = listen().await;
    tokio::spawn(async move { axum::serve(listener, axum_app(tx)).await });
    let send = h2_client(TcpStream::connect(addr).await.unwrap()).await;
    let (resp, ws) = open(&send, &format!("ws://{addr}/ws"), "echo", |_| {}).await;
    let mut ws = ws.expect("the extended CONNECT was accepted");
    assert_negotiated(&resp, &ws, "echo");
    assert_eq!(
        next(&mut events).await,
        Event::Opened { version: Version::HTTP_2, protocol: Some("echo".into()), compression: true }
    );
    assert_eq!(
        get_page(&send, &format!("http://{addr}/")).await,
        (StatusCode::OK, "plain HTTP over HTTP/2.0\n".into())
    );
    exercise(&mut ws).await;
    assert_eq!(next(&mut events).await, Event::Closed(Some(CloseCode::from(4321))));
}

/// The extractor refuses on HTTP/2 as on HTTP/1.1 (another protocol: 501,
/// a version other than 13: 426, a head past the route's limit: 431),
/// with no connection-specific field; a `get` route answers the CONNECT
/// with 405 before the extractor sees it, which is why WebSockets are
/// routed with `any`.
#[tokio::test]
async fn axum_refuses_over_http2_and_get_routes_miss_the_connect() {
    let ca = Ca::new("wsx axum h2 test CA");
    let (port, _events) = axum_tls_server(&ca).await;
    let send = tls_h2(&ca, port).await;

    let (resp, _) = open(&send, "wss://localhost/ws", "", |r| {
        r.extensions_mut().insert(h2::ext::Protocol::from_static("webtransport"));
    })
    .await;
    assert_eq!(resp.status(), 501);

    let (resp, _) = open(&send, "wss://localhost/ws", "", |r| {
        r.headers_mut().insert("sec-websocket-version", http::HeaderValue::from_static("12"));
    })
    .await;
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["sec-websocket-version"], "13, 8, 7");
    assert!(resp.headers().get("upgrade").is_none() && resp.headers().get("connection").is_none());

    let (resp, _) = open(&send, "wss://localhost/small", "", |r| {
        r.headers_mut().insert("x-padding", http::HeaderValue::from_str(&"p".repeat(300)).unwrap());
    })
    .await;
    assert_eq!(resp.status(), 431);

    let (resp, ws) = open(&send, "wss://localhost/get-only", "", |_| {}).await;
    assert_eq!(resp.status(), 405);
    assert!(ws.is_none());

    // The connection still serves a WebSocket.
    let (resp, ws) = open(&send, "wss://localhost/ws", "echo", |_| {}).await;
    let mut ws = ws.unwrap();
    assert_negotiated(&resp, &ws, "echo");
    within(ws.send(Message::binary(vec![5u8; 100_000]))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::binary(vec![5u8; 100_000]));
}
