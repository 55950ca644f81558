//! `wsx serve` as a user runs it: the binary, a real socket, a signal.

mod common;

use common::{http_get, serve, temp_dir};
use std::process::Command;
use std::time::Duration;
use wsx::{CloseCode, Message};

#[tokio::test]
async fn serve_echoes_text_as_text_and_binary_as_binary() {
    let server = serve(&[]);
    let (mut ws, _) = wsx::connect(&server.url).await.unwrap();
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("héllo"));
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));
    ws.close(CloseCode::Normal, "").await.unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(Message::Close(_)))));
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn serve_shuts_down_gracefully_with_1001_on_sigterm() {
    let mut server = serve(&[]);
    let (mut ws, _) = wsx::connect(&server.url).await.unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("ping"));
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    // RFC 6455 §7.4.1: 1001 "going away", e.g. a server going down.
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
    match msg {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::GoingAway),
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().is_none());
    let exit = tokio::task::spawn_blocking(move || server.child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test]
async fn broadcast_sends_every_message_to_every_client() {
    let server = serve(&["--broadcast"]);
    let (mut a, _) = wsx::connect(&server.url).await.unwrap();
    let (mut b, _) = wsx::connect(&server.url).await.unwrap();
    a.send(Message::text("from a")).await.unwrap();
    for ws in [&mut a, &mut b] {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::text("from a"));
    }
    b.send(Message::binary(vec![1, 2])).await.unwrap();
    for ws in [&mut a, &mut b] {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::binary(vec![1, 2]));
    }
}

#[tokio::test]
async fn static_files_next_to_the_websocket_endpoint() {
    let root = temp_dir("static");
    let public = root.join("public");
    std::fs::create_dir_all(public.join("js")).unwrap();
    std::fs::write(public.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(public.join("js/app.js"), "let x = 1;").unwrap();
    std::fs::write(root.join("secret.txt"), "do not serve").unwrap();
    let server = serve(&["--static", public.to_str().unwrap()]);

    let (status, head, body) = http_get(&server.addr, "/");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
    assert_eq!(body, b"<h1>hi</h1>");
    let (status, head, body) = http_get(&server.addr, "/js/app.js");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert_eq!(body, b"let x = 1;");
    assert_eq!(http_get(&server.addr, "/missing.png").0, 404);
    for traversal in ["/../secret.txt", "/js/../../secret.txt", "/%2e%2e/secret.txt", "/js%2f..%2f..%2fsecret.txt"] {
        let (status, _, body) = http_get(&server.addr, traversal);
        assert_eq!(status, 403, "{traversal}");
        assert!(!String::from_utf8_lossy(&body).contains("do not serve"));
    }
    // The WebSocket endpoint is on the same port.
    let (mut ws, _) = wsx::connect(&server.url).await.unwrap();
    ws.send(Message::text("still echoing")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("still echoing"));
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn max_connections_answers_503_past_the_limit() {
    let server = serve(&["--max-connections", "1"]);
    let (mut first, _) = wsx::connect(&server.url).await.unwrap();
    let err = wsx::connect(&server.url).await.expect_err("the second connection is refused");
    assert!(err.to_string().contains("503"), "{err}");
    // Once the first one is gone, there is room again.
    first.close(CloseCode::Normal, "").await.unwrap();
    while first.recv().await.is_some() {}
    assert!(connects_within_a_second(&server.url).await, "a slot is free again after the first client left");
}

/// A connection counts from the moment it is accepted: one that has not
/// sent its request yet holds the only slot, so the next upgrade gets 503
/// (a flood of silent connections cannot outnumber --max-connections).
#[tokio::test]
async fn max_connections_counts_handshakes_in_progress() {
    let server = serve(&["--max-connections", "1"]);
    let silent = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let err = wsx::connect(&server.url).await.expect_err("no slot while the silent connection holds it");
    assert!(err.to_string().contains("503"), "{err}");
    drop(silent);
    assert!(connects_within_a_second(&server.url).await, "the slot is free again once the silent connection left");
}

/// Whether an upgrade succeeds within about a second (the server frees a
/// slot when it notices that a connection ended).
async fn connects_within_a_second(url: &str) -> bool {
    for _ in 0..50 {
        if wsx::connect(url).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn with_origin(url: &str, origin: Option<&str>) -> http::Request<()> {
    let mut r = http::Request::get(url);
    if let Some(o) = origin {
        r = r.header("Origin", o);
    }
    r.body(()).unwrap()
}

#[tokio::test]
async fn origin_allowlist_answers_403_to_other_origins() {
    let server = serve(&["--origin", "https://good.example"]);
    let config = wsx::Config::default();
    assert!(wsx::connect_with(with_origin(&server.url, Some("https://good.example")), &config).await.is_ok());
    assert!(wsx::connect_with(with_origin(&server.url, Some("HTTPS://GOOD.example/")), &config).await.is_ok());
    let err = wsx::connect_with(with_origin(&server.url, Some("https://evil.example")), &config).await.err().unwrap();
    assert!(err.to_string().contains("403"), "{err}");
    // Non-browser clients send no Origin: allowed unless --require-origin.
    assert!(wsx::connect_with(with_origin(&server.url, None), &config).await.is_ok());

    let strict = serve(&["--origin", "https://good.example", "--require-origin"]);
    let err = wsx::connect_with(with_origin(&strict.url, None), &config).await.err().unwrap();
    assert!(err.to_string().contains("403"), "{err}");
    assert!(wsx::connect_with(with_origin(&strict.url, Some("https://good.example")), &config).await.is_ok());
}
