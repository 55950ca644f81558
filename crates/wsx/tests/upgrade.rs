//! WebSocket upgrades inside HTTP servers: a hyper 1 server using
//! `wsx::upgrade` and an axum router using `wsx::axum::WebSocketUpgrade`,
//! each with a wsx client: echo, subprotocols, split halves, settings,
//! and the refusals (400, 405, 426 with the versions, 431, the
//! application's own) that `wsx::accept` gives too.

// The upgrade callbacks refuse with a whole `http::Response` (public API).

mod common;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use wsx::handshake::{Accept, UpgradeRequest};
use wsx::upgrade::{UpgradeError, UpgradedIo};
use wsx::{CloseCode, Config, Error, Message, WebSocket};

async fn echo_upgraded(mut ws: WebSocket<UpgradedIo>) {
    while let Some(Ok(msg)) = ws.recv().await {
        if (msg.is_text() || msg.is_binary()) && ws.feed(msg).await.is_err() {
            break;
        }
    }
}

/// The hyper application: `/ws` echoes (selecting `chat` when offered),
/// `/split` echoes through split halves, `/strict` wants a session
/// cookie, `/small` allows 256-byte request heads and 1 KiB messages;
/// anything else is plain HTTP.
async fn hyper_app(mut req: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let small = Config::default().with_max_handshake_size(256).with_max_message_size(1024);
    let config = if path == "/small" { small } else { Config::default() };
    let result = match path.as_str() {
        "/ws" | "/small" | "/split" => wsx::upgrade::upgrade_with(
            &mut req,
            |up: &UpgradeRequest| {
                Ok(match up.protocols().iter().find(|p| *p == "chat") {
                    Some(p) => Accept::new().protocol(p.clone()).header("x-served-by", "hyper"),
                    None => Accept::new().header("x-served-by", "hyper"),
                })
            },
            &config,
        ),
        "/strict" => wsx::upgrade::upgrade_with(
            &mut req,
            |up: &UpgradeRequest| match up.cookie("session") {
                Some(_) => Ok(Accept::new()),
                None => Err(wsx::handshake::Reject::new(403, "no session\n")),
            },
            &config,
        ),
        _ => return Ok(hyper::Response::new(Full::from("plain HTTP\n"))),
    };
    match result {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                let ws = upgrading.await.expect("upgrade failed");
                if path == "/split" {
                    let (mut rx, mut tx) = ws.split();
                    while let Some(Ok(msg)) = rx.recv().await {
                        if (msg.is_text() || msg.is_binary()) && tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                } else {
                    echo_upgraded(ws).await;
                }
            });
            Ok(response)
        }
        Err(rejection) => Ok(rejection.into_response()),
    }
}

/// A hyper HTTP/1.1 server with upgrades on 127.0.0.1.
async fn hyper_server() -> SocketAddr {
    let (l, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(
                http1::Builder::new().serve_connection(TokioIo::new(tcp), service_fn(hyper_app)).with_upgrades(),
            );
        }
    });
    addr
}

async fn axum_ws(ws: wsx::axum::WebSocketUpgrade) -> axum::response::Response {
    assert_eq!(ws.request().path(), "/ws");
    ws.protocols(["echo", "chat"]).header("x-served-by", "axum").on_upgrade(echo_upgraded)
}

async fn axum_small(ws: wsx::axum::WebSocketUpgrade) -> axum::response::Response {
    ws.config(Config::default().with_max_message_size(1024).with_max_handshake_size(256)).on_upgrade(echo_upgraded)
}

/// An axum router on 127.0.0.1: `/ws` echoes, `/small` allows 256-byte
/// request heads and 1 KiB messages, `/` is plain HTTP.
async fn axum_server() -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { "plain HTTP\n" }))
        .route("/ws", get(axum_ws))
        .route("/small", get(axum_small));
    let (l, addr) = listen().await;
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn request(addr: SocketAddr, path: &str, protocols: &str) -> http::Request<()> {
    let mut b = http::Request::get(format!("ws://{addr}{path}"));
    if !protocols.is_empty() {
        b = b.header("sec-websocket-protocol", protocols);
    }
    b.body(()).unwrap()
}

/// Echo a few messages and close cleanly.
async fn exercise<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    for msg in [
        Message::text("hello"),
        Message::binary(vec![1u8, 2, 3]),
        Message::text(""),
        Message::binary(vec![9u8; 300_000]),
    ] {
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
    }
    within(ws.close(CloseCode::Normal, "bye")).await.unwrap();
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    assert!(within(ws.recv()).await.is_none());
}

/// Send a raw request head and return the response head.
async fn raw_request(addr: SocketAddr, head: &str) -> String {
    let mut raw = Raw::connect(addr).await;
    raw.write(head.as_bytes()).await;
    raw.read_head().await
}

/// The refusals `wsx::accept` gives, checked on `path` of a server.
async fn check_refusals(addr: SocketAddr, path: &str) {
    // A plain GET: not an upgrade.
    let head = raw_request(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status(&head), 400, "{head}");
    // Missing key.
    let req = upgrade_request(path, "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
    assert_eq!(status(&raw_request(addr, &req).await), 400);
    // A version we do not speak: 426 with the ones we do.
    let req = upgrade_request(path, "").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 12");
    let head = raw_request(addr, &req).await;
    assert_eq!(status(&head), 426, "{head}");
    assert_eq!(header(&head, "sec-websocket-version").as_deref(), Some("13, 8, 7"));
    // A valid request still works on the same route.
    let head = raw_request(addr, &upgrade_request(path, "")).await;
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "sec-websocket-accept").as_deref(), Some(ACCEPT));
}

// ------------------------------------------------------------------- hyper

#[tokio::test]
async fn hyper_upgrade_echo_with_a_wsx_client() {
    let addr = hyper_server().await;
    let (mut ws, response) = within(wsx::connect(request(addr, "/ws", "other, chat"))).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-served-by"], "hyper");
    assert_eq!(ws.protocol(), Some("chat"));
    exercise(&mut ws).await;
    // The same server still answers plain HTTP.
    let head = raw_request(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&head), 200);
}

#[tokio::test]
async fn hyper_upgraded_connection_splits() {
    let addr = hyper_server().await;
    let (mut ws, _) = within(wsx::connect(request(addr, "/split", ""))).await.unwrap();
    assert_eq!(ws.protocol(), None);
    exercise(&mut ws).await;
}

#[tokio::test]
async fn hyper_refuses_like_accept() {
    let addr = hyper_server().await;
    check_refusals(addr, "/ws").await;
    // Not GET: 405 with Allow.
    let req = upgrade_request("/ws", "").replacen("GET", "POST", 1);
    let head = raw_request(addr, &req.replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n")).await;
    assert_eq!(status(&head), 405, "{head}");
    assert_eq!(header(&head, "allow").as_deref(), Some("GET"));
}

#[tokio::test]
async fn hyper_applies_the_config_limits() {
    let addr = hyper_server().await;
    // Request head over 256 bytes: 431, as accept.
    let big = format!("X-Padding: {}\r\n", "p".repeat(300));
    let head = raw_request(addr, &upgrade_request("/small", &big)).await;
    assert_eq!(status(&head), 431, "{head}");
    // Messages over 1 KiB: the server closes with 1009.
    let (mut ws, _) = within(wsx::connect(request(addr, "/small", ""))).await.unwrap();
    within(ws.send(Message::binary(vec![0u8; 2048]))).await.unwrap();
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::MessageTooBig),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}

#[tokio::test]
async fn hyper_application_refusal() {
    let addr = hyper_server().await;
    let err = within(wsx::connect(request(addr, "/strict", ""))).await.unwrap_err();
    assert!(matches!(&err, Error::Refused(r) if r.status() == 403), "{err:?}");
    let mut req = request(addr, "/strict", "");
    req.headers_mut().insert("cookie", "session=1".parse().unwrap());
    let (mut ws, _) = within(wsx::connect(req)).await.unwrap();
    exercise(&mut ws).await;
}

/// The rejection carries the response and a typed error.
#[test]
fn upgrade_outside_a_hyper_connection() {
    let valid = || {
        http::Request::get("/ws")
            .header("host", "x")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", KEY)
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap()
    };
    // Valid, but no hyper connection to take over: 500.
    let rejection = wsx::upgrade::upgrade(&mut valid(), &Config::default()).unwrap_err();
    assert_eq!(rejection.status(), 500);
    assert!(matches!(rejection.error(), Error::Upgrade(UpgradeError::NotUpgradable)), "{rejection:?}");
    // Invalid: the handshake's answer.
    let mut req = valid();
    req.headers_mut().insert("sec-websocket-version", "99".parse().unwrap());
    let rejection = wsx::upgrade::upgrade(&mut req, &Config::default()).unwrap_err();
    assert_eq!(rejection.status(), 426);
    assert!(matches!(rejection.error(), Error::Handshake(_)));
    let response = rejection.into_response();
    assert_eq!(response.headers()["sec-websocket-version"], "13, 8, 7");
    assert!(!wsx::upgrade::is_upgrade_request(&http::Request::get("/").body(()).unwrap()));
    assert!(wsx::upgrade::is_upgrade_request(&valid()));
}

// -------------------------------------------------------------------- axum

#[tokio::test]
async fn axum_router_echo_with_a_wsx_client() {
    let addr = axum_server().await;
    // The client prefers chat: the first of its offers the server speaks.
    let (mut ws, response) = within(wsx::connect(request(addr, "/ws", "chat, echo"))).await.unwrap();
    assert_eq!(response.headers()["x-served-by"], "axum");
    assert_eq!(ws.protocol(), Some("chat"));
    exercise(&mut ws).await;
    let (mut ws, _) = within(wsx::connect(request(addr, "/ws", "unknown"))).await.unwrap();
    assert_eq!(ws.protocol(), None);
    exercise(&mut ws).await;
}

#[tokio::test]
async fn axum_refuses_like_accept() {
    let addr = axum_server().await;
    check_refusals(addr, "/ws").await;
    // The router answers other methods itself.
    let req = upgrade_request("/ws", "").replacen("GET", "POST", 1);
    let head = raw_request(addr, &req.replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n")).await;
    assert_eq!(status(&head), 405, "{head}");
}

#[tokio::test]
async fn axum_config_is_applied() {
    let addr = axum_server().await;
    let big = format!("X-Padding: {}\r\n", "p".repeat(300));
    let head = raw_request(addr, &upgrade_request("/small", &big)).await;
    assert_eq!(status(&head), 431, "{head}");
    let (mut ws, _) = within(wsx::connect(request(addr, "/small", ""))).await.unwrap();
    within(ws.send(Message::text("small is fine"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("small is fine"));
    within(ws.send(Message::binary(vec![0u8; 2048]))).await.unwrap();
    match within(ws.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::MessageTooBig),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}
