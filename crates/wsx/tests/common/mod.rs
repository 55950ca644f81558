//! Helpers shared by the integration tests: a listener on an ephemeral
//! port, an echo server, and a raw peer that speaks hand-made HTTP and
//! frames over a plain `TcpStream`.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use wsx::{Config, MaybeTlsStream, Message, WebSocket};

/// The key of RFC 6455 §1.3 and its accept value.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455
/// §4.2.2), as a wsx server answers that key.
pub fn accept_key(key: &str) -> String {
    let request = http::Request::get("/")
        .header("host", "localhost")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", key)
        .body(())
        .unwrap();
    let upgrade = wsx::handshake::UpgradeRequest::from_request(request).expect("a valid key");
    let response = upgrade.accept(&wsx::handshake::Accept::new(), None).unwrap();
    response.headers()["sec-websocket-accept"].to_str().unwrap().to_owned()
}

/// Upper bound for anything a test waits for, so a broken behaviour fails
/// the test instead of hanging it.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Await `fut`, panicking if it takes longer than [`LIMIT`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut).await.expect("timed out")
}

/// A listener on an ephemeral port of 127.0.0.1.
pub async fn listen() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

pub fn ws_url(addr: SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

/// Echo every text and binary message of one connection until it ends;
/// returns everything else it received (pings, pongs, close).
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> wsx::Result<Vec<Message>> {
    let mut other = Vec::new();
    while let Some(msg) = ws.recv().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.feed(msg).await?;
        } else {
            other.push(msg);
        }
    }
    Ok(other)
}

/// A wsx server accepting one connection and echoing it.
pub async fn echo_server() -> (String, JoinHandle<wsx::Result<Vec<Message>>>) {
    let (l, addr) = listen().await;
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await?;
        let mut ws = wsx::accept(tcp).await?;
        echo(&mut ws).await
    });
    (ws_url(addr, "/"), task)
}

/// A wsx client and the wsx server end of the same connection.
pub async fn pair_with(config: &Config) -> (WebSocket<MaybeTlsStream>, WebSocket<TcpStream>) {
    let (l, addr) = listen().await;
    let cfg = config.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        wsx::accept_with(tcp, |_: &wsx::handshake::UpgradeRequest| Ok(wsx::handshake::Accept::new()), &cfg)
            .await
            .unwrap()
    });
    let (client, _) = within(wsx::connect_with(ws_url(addr, "/"), config)).await.unwrap();
    let server = within(server).await.unwrap();
    (client, server)
}

pub async fn pair() -> (WebSocket<MaybeTlsStream>, WebSocket<TcpStream>) {
    pair_with(&Config::default()).await
}

/// A well-formed upgrade request with the RFC's sample key, plus
/// `extra` header lines (each ending in `\r\n`).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// The status code of a response head.
pub fn status(head: &str) -> u16 {
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// A header's value in an HTTP head (name compared case-insensitively).
pub fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// Encode a frame; `mask` makes it a client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame, as a client sends it.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// A close frame body.
pub fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(reason.as_bytes());
    b
}

/// A frame as read by the raw peer (payload unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let key = if masked {
        if buf.len() < at + 4 {
            return None;
        }
        let k: [u8; 4] = buf[at..at + 4].try_into().unwrap();
        at += 4;
        Some(k)
    } else {
        None
    };
    if buf.len() < at + len {
        return None;
    }
    let mut payload = buf[at..at + len].to_vec();
    if let Some(k) = key {
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= k[i % 4]);
    }
    Some((Frame { fin, opcode, masked, payload }, at + len))
}

/// A peer that speaks raw bytes over TCP.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Raw {
    pub fn new(stream: TcpStream) -> Self {
        Self { stream, buf: Vec::new() }
    }

    pub async fn connect(addr: SocketAddr) -> Self {
        Self::new(TcpStream::connect(addr).await.unwrap())
    }

    /// Connect and upgrade with a hand-made request; panics unless 101.
    pub async fn upgrade(addr: SocketAddr) -> Self {
        let mut raw = Self::connect(addr).await;
        raw.write(upgrade_request("/", "").as_bytes()).await;
        let head = raw.read_head().await;
        assert_eq!(status(&head), 101, "{head}");
        assert_eq!(header(&head, "sec-websocket-accept").as_deref(), Some(ACCEPT));
        raw
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Read more bytes into the buffer; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = within(self.stream.read(&mut chunk)).await.expect("read failed");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Read an HTTP head (through the blank line); later bytes stay in
    /// the buffer.
    pub async fn read_head(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..p + 4).collect();
                return String::from_utf8(head).unwrap();
            }
            assert!(self.fill().await, "EOF before the end of the HTTP head: {:?}", self.buf);
        }
    }

    /// Read everything until the peer closes.
    pub async fn read_to_eof(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// The next frame; `None` at a clean end of stream.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = parse_frame(&self.buf) {
                self.buf.drain(..n);
                return Some(f);
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "EOF inside a frame: {:?}", self.buf);
                return None;
            }
        }
    }

    pub async fn read_frame(&mut self) -> Frame {
        self.next_frame().await.expect("EOF instead of a frame")
    }

    /// Assert that the peer closes the connection without sending more.
    pub async fn expect_eof(&mut self) {
        let rest = self.next_frame().await;
        assert_eq!(rest, None, "expected EOF");
    }

    /// Assert that the peer closes the connection, without sending more,
    /// within `d`.
    pub async fn expect_eof_within(&mut self, d: Duration) {
        let rest = tokio::time::timeout(d, self.next_frame()).await.expect("the peer did not close in time");
        assert_eq!(rest, None, "expected EOF");
    }

    /// Assert that nothing arrives (and the peer does not close) for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let mut chunk = [0u8; 64];
        if let Ok(r) = tokio::time::timeout(d, self.stream.read(&mut chunk)).await {
            panic!("expected silence, read {r:?}");
        }
    }
}

/// Accept one TCP connection and act as a raw server: read the client's
/// request and answer 101 with the right accept key and `extra` headers.
pub async fn raw_server_upgrade(l: &TcpListener, extra: &str) -> Raw {
    raw_server_upgrade_with(l, extra, &[]).await
}

/// [`raw_server_upgrade`], with `after` written in the same write as the
/// response head.
pub async fn raw_server_upgrade_with(l: &TcpListener, extra: &str, after: &[u8]) -> Raw {
    let (tcp, _) = l.accept().await.unwrap();
    let mut raw = Raw::new(tcp);
    let head = raw.read_head().await;
    let key = header(&head, "sec-websocket-key").expect("no key");
    let accept = accept_key(&key);
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    );
    let mut bytes = resp.into_bytes();
    bytes.extend_from_slice(after);
    raw.write(&bytes).await;
    raw
}
