//! A raw Socket.IO client over the Engine.IO WebSocket transport, for tests
//! that check the exact packets.
#![allow(dead_code)]

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use wsx::{MaybeTlsStream, Message, WebSocket};

pub const WAIT: Duration = Duration::from_secs(5);

/// A frame from the server (Engine.IO pings answered and skipped).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

pub struct Sio {
    pub ws: WebSocket<MaybeTlsStream>,
    /// The Engine.IO handshake.
    pub open: Value,
}

impl Sio {
    /// An Engine.IO session over a WebSocket at `path` (default
    /// `/socket.io/`), past its open packet.
    pub async fn open(addr: SocketAddr) -> Sio {
        Self::open_at(addr, "/socket.io/").await
    }

    pub async fn open_at(addr: SocketAddr, path: &str) -> Sio {
        let url = format!("ws://{addr}{path}?EIO=4&transport=websocket");
        let (mut ws, _) = wsx::connect(url.as_str()).await.expect("websocket");
        let first = tokio::time::timeout(WAIT, ws.recv()).await.expect("open packet").expect("open").expect("open");
        let text = first.as_text().expect("text open packet").to_owned();
        let json = text.strip_prefix('0').unwrap_or_else(|| panic!("open packet: {text}"));
        Sio { ws, open: serde_json::from_str(json).unwrap() }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).await.unwrap();
    }

    /// The next frame, or `None` once the server closed the connection.
    pub async fn try_next(&mut self) -> Option<Frame> {
        loop {
            let m = match tokio::time::timeout(WAIT, self.ws.recv()).await.expect("timed out waiting for a frame") {
                None | Some(Err(_)) => return None,
                Some(Ok(m)) => m,
            };
            match m {
                Message::Text(t) if t.as_str() == "2" => self.send("3").await,
                Message::Text(t) => return Some(Frame::Text(t.as_str().to_owned())),
                Message::Binary(b) => return Some(Frame::Binary(b.to_vec())),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    pub async fn next(&mut self) -> Frame {
        self.try_next().await.expect("the server closed the connection")
    }

    /// The next text frame.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Frame::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next EVENT's `[name, ...args]` (the frame must be `42...` in
    /// the main namespace).
    pub async fn event(&mut self) -> Value {
        let t = self.text().await;
        let json = t.strip_prefix("42").unwrap_or_else(|| panic!("expected an event, got {t}"));
        serde_json::from_str(json).unwrap()
    }

    /// Connect to `nsp` with `auth`; the socket id.
    pub async fn connect(&mut self, nsp: &str, auth: Option<&str>) -> String {
        let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
        self.send(&format!("40{prefix}{}", auth.unwrap_or(""))).await;
        let t = self.text().await;
        let json = t.strip_prefix(&format!("40{prefix}")).unwrap_or_else(|| panic!("expected CONNECT, got {t}"));
        let v: Value = serde_json::from_str(json).unwrap();
        v["sid"].as_str().expect("sid").to_owned()
    }

    /// Nothing but pings for `d`.
    pub async fn quiet(&mut self, d: Duration) -> Option<Frame> {
        tokio::time::timeout(d, self.next()).await.ok()
    }

    /// Whether the server closes the connection within [`WAIT`].
    pub async fn closes(&mut self) -> bool {
        tokio::time::timeout(WAIT, async { while self.try_next().await.is_some() {} }).await.is_ok()
    }
}
