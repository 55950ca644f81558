//! `wsx serve` as a user runs it: the binary, a real socket, a signal.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use wsx::{CloseCode, Message};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsx"))
        .args(["serve", "--port", "0", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wsx serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("ws://")).expect("address line").to_owned();
    Server { child, url }
}

#[tokio::test]
async fn serve_echoes_text_as_text_and_binary_as_binary() {
    let server = start();
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
    let mut server = start();
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
