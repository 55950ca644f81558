//! Hostile peers against `wsx serve`: each test starts its own server
//! process (`--port 0`, one worker thread, small limits where a test needs
//! them), attacks it over loopback with hand-made bytes, and checks three
//! things: the answer (a close code or an HTTP status), the server's memory
//! (its peak resident set, `VmHWM` in /proc/PID/status, against a bound
//! written in the test), and that the server still serves (an echo round
//! trip on a fresh connection) afterwards.
//!
//! Every loop is bounded in count and in time; nothing leaves loopback.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx::{CloseCode, Message};

/// Upper bound for anything a test waits for.
const LIMIT: Duration = Duration::from_secs(10);

/// The RFC 6455 §1.3 sample key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const MIB: u64 = 1 << 20;

// ------------------------------------------------------------------ server

/// A `wsx serve` process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    url: String,
    /// Resident set once it listens, in bytes.
    baseline: u64,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `wsx serve --port 0 --threads 1 EXTRA...` and read the address
/// from its first stdout line.
fn serve(extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsx"))
        .args(["serve", "--port", "0", "--threads", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wsx serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("ws://")).expect("address line").to_owned();
    let addr = url.trim_start_matches("ws://").trim_end_matches('/').parse().unwrap();
    let mut server = Server { child, addr, url, baseline: 0 };
    server.baseline = server.rss();
    server
}

impl Server {
    /// A field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Peak resident set so far, in bytes.
    fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// Current resident set, in bytes.
    fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// Assert that the server's peak resident set stayed less than `bound`
    /// above what it was once listening.
    fn assert_peak_under(&self, bound: u64, what: &str) {
        let (peak, base) = (self.peak_rss(), self.baseline);
        let mib = |b: u64| b as f64 / MIB as f64;
        eprintln!("{what}: server peak RSS {:.1} MiB, {:.1} MiB over its start", mib(peak), mib(peak - base));
        assert!(
            peak < base + bound,
            "{what}: server peak RSS {:.1} MiB, {:.1} MiB at start, bound +{} MiB",
            mib(peak),
            mib(base),
            bound / MIB
        );
    }

    /// An echo round trip on a fresh connection: the server still serves.
    async fn assert_serving(&self) {
        let (mut ws, _) = within(wsx::connect(&self.url)).await.expect("connect after the attack");
        ws.send(Message::text("still there?")).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("still there?"));
        ws.close(CloseCode::Normal, "").await.unwrap();
        while within(ws.recv()).await.is_some() {}
    }
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut).await.expect("timed out")
}

// ------------------------------------------------------------------ wire

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A frame header: `len` is what it declares, whatever follows.
fn header(b0: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![b0];
    match len {
        0..=125 => out.push(m | len as u8),
        126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
    out
}

/// A whole frame; `mask` makes it a client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = header((fin as u8) << 7 | opcode, payload.len() as u64, mask);
    match mask {
        Some(k) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4])),
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame, as a client sends it.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, Some(MASK))
}

/// A frame as the raw client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let [b0, b1, ..] = *buf else { return None };
    assert_eq!(b1 & 0x80, 0, "the server masked a frame");
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((Frame { fin: b0 & 0x80 != 0, rsv1: b0 & 0x40 != 0, opcode: b0 & 0x0f, payload }, at + len))
}

/// A client that speaks raw bytes.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let tcp = within(TcpStream::connect(addr)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        Raw { tcp, buf: Vec::new() }
    }

    /// Connect and upgrade with `extra` request headers; returns the 101 head.
    async fn upgrade_with(addr: SocketAddr, extra: &str) -> (Raw, String) {
        let mut raw = Raw::connect(addr).await;
        raw.write(upgrade_request(extra).as_bytes()).await;
        let head = raw.read_head().await;
        assert_eq!(status(&head), 101, "{head}");
        assert!(head.contains(ACCEPT), "{head}");
        (raw, head)
    }

    async fn upgrade(addr: SocketAddr) -> Raw {
        Raw::upgrade_with(addr, "").await.0
    }

    async fn write(&mut self, bytes: &[u8]) {
        within(self.tcp.write_all(bytes)).await.unwrap();
    }

    /// Read more; false at end of stream (a reset counts as the end too).
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 << 10];
        match within(self.tcp.read(&mut chunk)).await {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n > 0
            }
            Err(_) => false,
        }
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..p + 4).collect();
                return String::from_utf8(head).unwrap();
            }
            assert!(
                self.fill().await,
                "end of stream before a response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The next frame; `None` at the end of the stream.
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = parse_frame(&self.buf) {
                self.buf.drain(..n);
                return Some(f);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Read frames until a close frame (skipping pongs); its code.
    async fn expect_close(&mut self) -> Option<u16> {
        loop {
            let f = self.next_frame().await.expect("end of stream instead of a close frame");
            if f.opcode == 0x8 {
                return f.close_code();
            }
            assert_eq!(f.opcode, 0xA, "expected a close frame, got {f:?}");
        }
    }

    /// The server fails the connection with `code` and closes the TCP
    /// connection after its close frame.
    async fn expect_failure(&mut self, code: u16) {
        assert_eq!(self.expect_close().await, Some(code));
        // Answer the close, as a client does; the server then closes.
        self.tcp.write_all(&client_frame(true, 0x8, &code.to_be_bytes())).await.ok();
        let rest = self.next_frame().await;
        assert_eq!(rest, None, "the server sent more after failing the connection");
    }

    /// The stream ends (after whatever body) within the limit.
    async fn expect_end(&mut self) {
        let deadline = Instant::now() + LIMIT;
        while self.fill().await {
            assert!(Instant::now() < deadline, "the server did not close");
        }
    }

    /// Write `msg` as a text frame and read until its echo arrives.
    async fn echo(&mut self, msg: &[u8]) {
        self.write(&client_frame(true, 0x1, msg)).await;
        loop {
            let f = self.next_frame().await.expect("end of stream instead of the echo");
            if f.opcode == 0x1 {
                assert_eq!(f.payload, msg);
                return;
            }
            assert_eq!(f.opcode, 0xA, "expected the echo, got {f:?}");
        }
    }
}

fn status(head: &str) -> u16 {
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"))
}

// ------------------------------------------------------------------ handshake

/// A client that sends its request head one byte every 200 ms is cut off
/// at the handshake timeout (`--handshake-timeout 3`; 10 s by default),
/// while other clients are served meanwhile.
#[tokio::test]
async fn slowloris_handshakes_are_cut_off_at_the_handshake_timeout() {
    let server = serve(&["--handshake-timeout", "3"]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let request = upgrade_request("");
            let mut bytes = request.as_bytes().iter().cycle();
            let mut sink = [0u8; 256];
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                tokio::select! {
                    r = tcp.read(&mut sink) => match r {
                        Ok(0) | Err(_) => return Instant::now(),
                        Ok(n) => panic!("the server answered a slowloris: {:?}", &sink[..n]),
                    },
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        assert!(Instant::now() < deadline, "a slowloris connection outlived the handshake timeout");
                        // Never the blank line: skip newlines so the head never ends.
                        let mut b = *bytes.next().unwrap();
                        while b == b'\r' || b == b'\n' {
                            b = *bytes.next().unwrap();
                        }
                        let _ = tcp.write_all(&[b]).await;
                    }
                }
            }
        }));
    }
    // Served meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.assert_serving().await;
    for t in tasks {
        let closed_at = t.await.unwrap().duration_since(start);
        assert!(
            closed_at >= Duration::from_millis(2900) && closed_at < Duration::from_secs(8),
            "closed after {closed_at:?}, the handshake timeout is 3 s"
        );
    }
    server.assert_peak_under(16 * MIB, "slowloris");
    server.assert_serving().await;
}

/// 200 connections that each send all but the last byte of a 16 KiB
/// request head and stall: each costs what it buffered (the head, at most
/// 16 KiB plus the read buffer's slack), not more, until the handshake
/// timeout; the server serves meanwhile.
#[tokio::test]
async fn stalled_request_heads_cost_what_they_buffer() {
    let server = serve(&[]);
    server.assert_serving().await;
    let before = server.rss();
    let mut head = b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    while head.len() < (16 << 10) - 1 {
        head.extend_from_slice(b"X-Stall: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    head.truncate((16 << 10) - 1);
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(&head).await;
        stalled.push(raw);
    }
    server.assert_serving().await;
    let grown = server.rss().saturating_sub(before);
    eprintln!("200 stalled 16 KiB heads: server RSS grew by {} KiB", grown / 1024);
    assert!(grown < 200 * 64 * 1024, "200 stalled heads cost {} KiB", grown / 1024);
    drop(stalled);
    server.assert_serving().await;
}

/// A request head that does not end within 16 KiB gets 431, as does one
/// with more than 128 header lines; neither is buffered past the limit.
#[tokio::test]
async fn header_floods_get_431() {
    let server = serve(&[]);
    // 16 KiB of header lines and no blank line: exactly what the server
    // reads before it answers (so no unread bytes turn its close into a reset).
    let mut flood = b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    let mut i = 0;
    while flood.len() < 16 << 10 {
        flood.extend_from_slice(format!("X-Flood-{i}: {}\r\n", "a".repeat(40)).as_bytes());
        i += 1;
    }
    flood.truncate(16 << 10);
    let mut raw = Raw::connect(server.addr).await;
    raw.write(&flood).await;
    let head = raw.read_head().await;
    assert_eq!(status(&head), 431, "{head}");
    raw.expect_end().await;

    // One header line that fills the 16 KiB (the head has no end within it).
    let mut long = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    long.resize(16 << 10, b'b');
    let mut raw = Raw::connect(server.addr).await;
    raw.write(&long).await;
    assert_eq!(status(&raw.read_head().await), 431);

    // 129 short header lines in a small, complete head.
    let lines: String = (0..129).map(|i| format!("X-{i}: 1\r\n")).collect();
    let mut raw = Raw::connect(server.addr).await;
    raw.write(upgrade_request(&lines).as_bytes()).await;
    assert_eq!(status(&raw.read_head().await), 431);

    // 128 lines in all is still fine (the request's own 5 plus 123).
    let lines: String = (0..123).map(|i| format!("X-{i}: 1\r\n")).collect();
    let (mut ok, _) = Raw::upgrade_with(server.addr, &lines).await;
    ok.echo(b"128 lines").await;

    server.assert_peak_under(16 * MIB, "header flood");
    server.assert_serving().await;
}

// ------------------------------------------------------------------ lengths

/// A 64-bit length with its most significant bit set (§5.2): 1002 at once.
#[tokio::test]
async fn length_with_msb_set_gets_1002() {
    let server = serve(&[]);
    let mut raw = Raw::upgrade(server.addr).await;
    raw.write(&header(0x82, 1 << 63, Some(MASK))).await;
    raw.expect_failure(1002).await;
    server.assert_peak_under(16 * MIB, "2^63 length");
    server.assert_serving().await;
}

/// A frame that declares 1 GiB and then sends nothing: 1009 at once,
/// before any payload, and nothing is allocated for it.
#[tokio::test]
async fn declared_gigabyte_frame_then_stall_gets_1009_at_once() {
    // The default limits (64 MiB) and a small one.
    for flags in [&[][..], &["--max-message-size", "65536"][..]] {
        let server = serve(flags);
        let mut raw = Raw::upgrade(server.addr).await;
        let start = Instant::now();
        raw.write(&header(0x82, 1 << 30, Some(MASK))).await;
        raw.expect_failure(1009).await;
        assert!(start.elapsed() < Duration::from_secs(2), "1009 took {:?}", start.elapsed());
        server.assert_peak_under(16 * MIB, "declared 1 GiB frame");
        server.assert_serving().await;
    }
}

// ------------------------------------------------------------------ compression

/// 256 MiB of zeros in about 256 KiB of DEFLATE: the concatenation of 256
/// copies of 1 MiB of zeros, each compressed and sync-flushed (so each copy
/// is a run of complete blocks that decodes on its own).
fn zip_bomb() -> Vec<u8> {
    use wsx::proto::deflate::DeflateParams;
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        threshold: 0,
        level: 9,
        mem_level: None,
    };
    let mut c = wsx::proto::Writer::with_deflate(wsx::Role::Server, &Default::default(), Some(&params));
    c.send(Message::binary(vec![0u8; 1 << 20])).unwrap();
    let out = c.take_output();
    let (f, _) = parse_frame(&out).unwrap();
    assert!(f.rsv1);
    let mut bomb = Vec::new();
    for i in 0..256 {
        if i > 0 {
            bomb.extend_from_slice(&[0, 0, 0xff, 0xff]);
        }
        bomb.extend_from_slice(&f.payload);
    }
    bomb
}

/// Send the bomb (after a small compressed message, to see compression
/// work) and read what comes back until the close: the echo of what was
/// inflated, in fragments of the streaming path, then 1009. The bytes
/// echoed before the close.
async fn bomb(server: &Server) -> usize {
    let bomb = zip_bomb();
    assert!(bomb.len() < 1 << 20, "the bomb fits in a frame: {} bytes", bomb.len());
    let (mut raw, head) = Raw::upgrade_with(server.addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    assert!(head.to_ascii_lowercase().contains("permessage-deflate"), "{head}");
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]; // RFC 7692 §7.2.3.1
    let mut f = client_frame(true, 0x1, &hello);
    f[0] |= 0x40;
    raw.write(&f).await;
    assert_eq!(raw.next_frame().await.unwrap().payload, b"Hello");
    let mut f = client_frame(true, 0x2, &bomb);
    f[0] |= 0x40;
    raw.write(&f).await;
    let mut echoed = 0;
    loop {
        let f = raw.next_frame().await.expect("end of stream instead of a close frame");
        match f.opcode {
            0x0 | 0x2 => {
                assert!(!f.fin, "the echo of a message that never ends cannot end");
                assert!(f.payload.iter().all(|&b| b == 0), "the echo is what was inflated");
                echoed += f.payload.len();
            }
            0x8 => {
                assert_eq!(f.close_code(), Some(1009));
                break;
            }
            _ => panic!("expected the echo then a close, got opcode {}", f.opcode),
        }
    }
    raw.tcp.write_all(&client_frame(true, 0x8, &1009u16.to_be_bytes())).await.ok();
    assert_eq!(raw.next_frame().await, None, "the server sent more after failing the connection");
    echoed
}

/// A compressed message that inflates to 256 MiB against a 1 MiB limit:
/// inflated and echoed in steps, then 1009 once 1 MiB is inflated; never
/// more echoed than the limit, and the server's memory stays bounded.
#[tokio::test]
async fn decompression_bomb_gets_1009_with_bounded_memory() {
    let server = serve(&["--max-message-size", "1048576"]);
    let echoed = bomb(&server).await;
    assert!(echoed <= 1 << 20, "{echoed} bytes echoed past the 1 MiB limit");
    server.assert_peak_under(16 * MIB, "decompression bomb");
    server.assert_serving().await;
}

/// The same bomb against the default limit (64 MiB): inflation goes in
/// steps of at most 64 KiB that the echo forwards as they come, so what
/// the connection holds is bounded by its queues, not by the limit.
#[tokio::test]
async fn decompression_bomb_at_the_default_limit_holds_little() {
    let server = serve(&[]);
    let echoed = bomb(&server).await;
    assert!(echoed <= 64 << 20, "{echoed} bytes echoed past the 64 MiB limit");
    assert!(echoed >= 32 << 20, "only {echoed} bytes echoed before the 1009");
    server.assert_peak_under(16 * MIB, "decompression bomb, default limit");
    server.assert_serving().await;
}

// ------------------------------------------------------------------ floods

/// 300,000 pings (38 MiB) from a client that never reads: the server
/// answers with pongs while the sockets take them, then keeps only the
/// latest (pong coalescing), so its memory stays bounded and the pongs are
/// far fewer than the pings; the connection still works afterwards.
#[tokio::test]
async fn ping_flood_without_reading_is_coalesced() {
    let server = serve(&[]);
    let mut raw = Raw::upgrade(server.addr).await;
    let ping = client_frame(true, 0x9, &[b'p'; 125]);
    let count = 300_000;
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
    let start = Instant::now();
    for _ in 0..count / 1000 {
        raw.write(&batch).await;
    }
    eprintln!("ping flood: {count} pings ({} MiB) written in {:?}", (count * ping.len()) >> 20, start.elapsed());
    // Then a message; count the pongs that come before its echo.
    raw.write(&client_frame(true, 0x1, b"mark")).await;
    let mut pongs = 0;
    loop {
        let f = raw.next_frame().await.expect("end of stream before the echo");
        match f.opcode {
            0xA => pongs += 1,
            0x1 => break assert_eq!(f.payload, b"mark"),
            other => panic!("unexpected opcode {other}"),
        }
    }
    eprintln!("ping flood: {pongs} pongs for {count} pings");
    assert!(pongs < count / 2, "no coalescing: {pongs} pongs for {count} pings");
    server.assert_peak_under(16 * MIB, "ping flood");
    raw.echo(b"the flooded connection still works").await;
    server.assert_serving().await;
}

/// One message in 200,000 one-byte fragments: delivered whole when it fits
/// the limit, 1009 when it does not, in bounded time either way.
#[tokio::test]
async fn two_hundred_thousand_fragments() {
    let n = 200_000;
    let mut wire = client_frame(false, 0x2, b"a");
    for i in 1..n {
        wire.extend_from_slice(&client_frame(i == n - 1, 0x0, b"a"));
    }
    // Fits: 200,000 bytes under a 1 MiB limit.
    let server = serve(&["--max-message-size", "1048576"]);
    let mut raw = Raw::upgrade(server.addr).await;
    let start = Instant::now();
    raw.write(&wire).await;
    // `wsx serve` echoes a large message in fragments as it arrives
    // (streaming receive): reassemble it.
    let echo = raw.next_frame().await.expect("the echo");
    let (opcode, mut payload, mut fin) = (echo.opcode, echo.payload, echo.fin);
    while !fin {
        let f = raw.next_frame().await.expect("the rest of the echo");
        assert_eq!(f.opcode, 0x0, "a continuation frame");
        payload.extend_from_slice(&f.payload);
        fin = f.fin;
    }
    assert_eq!((opcode, payload.len()), (0x2, n));
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    eprintln!("200,000 fragments echoed in {:?}", start.elapsed());
    server.assert_peak_under(16 * MIB, "200,000 fragments");
    server.assert_serving().await;

    // Over a 100,000-byte limit: 1009 at the 100,001st byte. The client
    // writes in a task: the server drains what it sends after failing.
    let server = serve(&["--max-message-size", "100000"]);
    let raw = Raw::upgrade(server.addr).await;
    let (mut rd, mut wr) = raw.tcp.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&wire).await;
        wr
    });
    let mut buf = Vec::new();
    let close = loop {
        // The streaming echo may forward the first 64 KiB before the
        // limit is crossed: skip data frames until the close frame.
        if let Some((f, n)) = parse_frame(&buf) {
            buf.drain(..n);
            if f.opcode == 0x8 {
                break f;
            }
            continue;
        }
        let mut chunk = [0u8; 4096];
        let k = within(rd.read(&mut chunk)).await.unwrap();
        assert!(k > 0, "end of stream before the close frame");
        buf.extend_from_slice(&chunk[..k]);
    };
    assert_eq!(close.close_code(), Some(1009));
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    drop(within(writer).await.unwrap());
    server.assert_peak_under(16 * MIB, "fragments over the limit");
    server.assert_serving().await;
}

// ------------------------------------------------------------------ violations

/// An unmasked frame from a client (§5.1): 1002.
#[tokio::test]
async fn unmasked_frame_gets_1002() {
    let server = serve(&[]);
    let mut raw = Raw::upgrade(server.addr).await;
    raw.write(&frame(true, 0x1, b"not masked", None)).await;
    raw.expect_failure(1002).await;
    server.assert_peak_under(16 * MIB, "unmasked frame");
    server.assert_serving().await;
}

/// Invalid UTF-8 whose bad byte is in a later fragment than the start of
/// its code point (§8.1): 1007, as soon as the bad byte arrives.
#[tokio::test]
async fn invalid_utf8_split_across_fragments_gets_1007() {
    let server = serve(&[]);
    let cases: [&[&[u8]]; 4] = [
        // κ (ce ba) cut after ce, then a byte that cannot continue it.
        &[b"ok \xce", b"\x28 rest"],
        // A 4-byte sequence cut in three, the last byte wrong.
        &[b"\xf0", b"\x9f\x98", b"\x41"],
        // A surrogate (ed a0 80) across fragments.
        &[b"a\xed", b"\xa0\x80"],
        // The message ends inside a code point.
        &[b"abc", b"\xe2\x82"],
    ];
    for fragments in cases {
        let mut raw = Raw::upgrade(server.addr).await;
        let n = fragments.len();
        for (i, f) in fragments.iter().enumerate() {
            raw.write(&client_frame(i + 1 == n, if i == 0 { 0x1 } else { 0x0 }, f)).await;
        }
        raw.expect_failure(1007).await;
    }
    // A valid code point split the same way is fine.
    let mut raw = Raw::upgrade(server.addr).await;
    raw.write(&client_frame(false, 0x1, b"\xf0\x9f")).await;
    raw.write(&client_frame(true, 0x0, b"\x98\x80")).await;
    assert_eq!(raw.next_frame().await.unwrap().payload, "😀".as_bytes());
    server.assert_peak_under(16 * MIB, "invalid UTF-8");
    server.assert_serving().await;
}

/// Close codes that may not be sent (§7.4), a one-byte close payload: 1002;
/// a reason that is not UTF-8: 1007.
#[tokio::test]
async fn bad_close_frames_get_1002_or_1007() {
    let server = serve(&[]);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let mut raw = Raw::upgrade(server.addr).await;
        raw.write(&client_frame(true, 0x8, &code.to_be_bytes())).await;
        assert_eq!(raw.expect_close().await, Some(1002), "close code {code}");
        assert_eq!(raw.next_frame().await, None);
    }
    let mut raw = Raw::upgrade(server.addr).await;
    raw.write(&client_frame(true, 0x8, &[0x03])).await;
    assert_eq!(raw.expect_close().await, Some(1002), "one-byte close payload");
    let mut raw = Raw::upgrade(server.addr).await;
    raw.write(&client_frame(true, 0x8, b"\x03\xe8\xff\xfe")).await;
    assert_eq!(raw.expect_close().await, Some(1007), "reason not UTF-8");
    // A valid code is echoed.
    let mut raw = Raw::upgrade(server.addr).await;
    raw.write(&client_frame(true, 0x8, b"\x0f\xa0bye")).await;
    assert_eq!(raw.expect_close().await, Some(4000));
    server.assert_peak_under(16 * MIB, "bad close frames");
    server.assert_serving().await;
}

// ------------------------------------------------------------------ broken transports

/// Connections reset (RST) in the middle of a frame, of a handshake, and
/// right after one: the server drops them and keeps serving, and what it
/// held for them is freed.
#[tokio::test]
async fn resets_mid_frame_leave_the_server_serving() {
    let server = serve(&[]);
    let mut half_frame = header(0x82, 1000, Some(MASK));
    half_frame.extend_from_slice(&[7u8; 500]);
    for i in 0..300 {
        let raw = match i % 3 {
            0 => {
                let mut raw = Raw::upgrade(server.addr).await;
                raw.write(&half_frame).await;
                raw
            }
            1 => {
                let mut raw = Raw::connect(server.addr).await;
                raw.write(&upgrade_request("").as_bytes()[..40]).await;
                raw
            }
            _ => Raw::upgrade(server.addr).await,
        };
        // Linger 0: close() sends a reset instead of a FIN.
        raw.tcp.set_zero_linger().unwrap();
        drop(raw);
    }
    server.assert_serving().await;
    server.assert_peak_under(16 * MIB, "resets");
}

/// Half-open connections: a client that half-closes (FIN) after a message
/// gets its echo and then the end of the stream; 500 upgraded connections
/// that never send anything cost little, and the server serves meanwhile.
#[tokio::test]
async fn half_open_connections() {
    let server = serve(&[]);
    let mut raw = Raw::upgrade(server.addr).await;
    raw.write(&client_frame(true, 0x1, b"then FIN")).await;
    raw.tcp.shutdown().await.unwrap();
    assert_eq!(raw.next_frame().await.unwrap().payload, b"then FIN");
    assert_eq!(raw.next_frame().await, None, "the server closes after the client's FIN");

    // Silent, never-closing peers.
    server.assert_serving().await;
    let before = server.rss();
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(Raw::upgrade(server.addr).await);
    }
    server.assert_serving().await;
    let grown = server.rss().saturating_sub(before);
    eprintln!("500 idle connections: server RSS grew by {} KiB", grown / 1024);
    assert!(grown < 12 * MIB, "500 idle connections cost {} KiB", grown / 1024);
    drop(idle);
    server.assert_serving().await;
}

/// Keepalive (`--ping-interval`, `--idle-timeout`): a peer that sends
/// nothing gets pings, then a close 1001 once it has been silent for the
/// idle timeout, then the end of the stream although it never answers the
/// close (a peer that vanished without a FIN); a peer that answers the
/// pings with pongs stays open past the idle timeout and is served.
#[tokio::test]
async fn silent_peers_are_pinged_then_closed_at_the_idle_timeout() {
    let server = serve(&["--ping-interval", "0.2", "--idle-timeout", "1"]);
    let mut answering = Raw::upgrade(server.addr).await;
    let answered = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_millis(2500);
        let mut pongs = 0;
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(frame) = tokio::time::timeout(left, answering.next_frame()).await else { break };
            let f = frame.expect("the server ended a connection that answers its pings");
            assert_eq!(f.opcode, 0x9, "expected only pings, got {f:?}");
            answering.write(&client_frame(true, 0xA, &f.payload)).await;
            pongs += 1;
        }
        answering.echo(b"still here").await;
        pongs
    });
    let start = Instant::now();
    let mut silent = Raw::upgrade(server.addr).await;
    let mut pings = 0;
    let code = loop {
        let f = silent.next_frame().await.expect("end of stream before a close frame");
        match f.opcode {
            0x9 => pings += 1,
            0x8 => break f.close_code(),
            _ => panic!("expected pings then a close, got {f:?}"),
        }
    };
    let closed_at = start.elapsed();
    assert_eq!(code, Some(1001));
    assert!(pings >= 2, "{pings} pings before the idle close");
    assert!(
        closed_at >= Duration::from_millis(900) && closed_at < Duration::from_secs(4),
        "closed after {closed_at:?}, the idle timeout is 1 s"
    );
    silent.expect_end().await;
    assert!(start.elapsed() < closed_at + Duration::from_secs(3), "the TCP connection outlived the close");
    let pongs = answered.await.unwrap();
    assert!(pongs >= 3, "only {pongs} pings in 2.5 s at a 0.2 s interval");
    server.assert_serving().await;
}

/// A client that sends and never reads: the echoes fill the server's
/// write queue up to its high-water mark (1 MiB), then the server stops
/// reading that connection (backpressure) and the client's writes stall;
/// the server's memory stays bounded, other clients are served, and once
/// the client reads, every message comes back whole.
#[tokio::test]
async fn slow_consumer_is_held_back_by_backpressure() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = serve(&[]);
    let raw = Raw::upgrade(server.addr).await;
    let (mut rd, mut wr) = raw.tcp.into_split();
    let size = 256 << 10;
    let max = 256; // 64 MiB at most
    let written = Arc::new(AtomicUsize::new(0));
    let progress = written.clone();
    let writer = tokio::spawn(async move {
        let msg = client_frame(true, 0x2, &vec![0x5a; size]);
        for _ in 0..max {
            wr.write_all(&msg).await.unwrap();
            progress.fetch_add(1, Ordering::SeqCst);
        }
        wr
    });
    // Wait until the writes stall for a second (or all went through).
    let mut last = 0;
    let stalled_at = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = written.load(Ordering::SeqCst);
        if now == last || now == max {
            break now;
        }
        last = now;
    };
    assert!(stalled_at < max, "the server never pushed back: {stalled_at} messages of 256 KiB went through");
    eprintln!("slow consumer: writes stalled after {} MiB", (stalled_at * size) >> 20);
    server.assert_peak_under(32 * MIB, "slow consumer");
    server.assert_serving().await;
    // Now read: every message comes back, whole, and the writer finishes.
    let mut got = 0;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 256 << 10];
    let mut message = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while got < max {
        assert!(Instant::now() < deadline, "only {got} of {max} echoes came back in time");
        let k = within(rd.read(&mut chunk)).await.unwrap();
        assert!(k > 0, "end of stream after {got} echoes");
        buf.extend_from_slice(&chunk[..k]);
        while let Some((f, n)) = parse_frame(&buf) {
            // Large messages come back in fragments (streaming echo).
            if f.opcode != 0x0 {
                assert_eq!(f.opcode, 0x2);
                message.clear();
            }
            assert!(f.payload.iter().all(|&b| b == 0x5a));
            message.extend_from_slice(&f.payload);
            if f.fin {
                assert_eq!(message.len(), size);
                got += 1;
            }
            buf.drain(..n);
        }
    }
    within(writer).await.unwrap();
    server.assert_peak_under(32 * MIB, "slow consumer, after");
    server.assert_serving().await;
}

// ------------------------------------------------------------------ churn

/// 3,000 connect / upgrade / close cycles, 10 at a time: all complete, the
/// server's memory does not grow with the count, and it still serves.
#[tokio::test]
async fn three_thousand_connect_close_cycles() {
    let server = serve(&[]);
    // Warm up, then measure from there.
    server.assert_serving().await;
    let before = server.rss();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            for _ in 0..300 {
                let mut raw = Raw::upgrade(addr).await;
                raw.write(&client_frame(true, 0x8, &1000u16.to_be_bytes())).await;
                assert_eq!(raw.expect_close().await, Some(1000));
                assert_eq!(raw.next_frame().await, None);
            }
        }));
    }
    for t in tasks {
        within(t).await.unwrap();
    }
    eprintln!("3,000 cycles in {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(30));
    let grown = server.rss().saturating_sub(before);
    eprintln!("3,000 cycles: server RSS grew by {} KiB", grown / 1024);
    assert!(grown < 8 * MIB, "3,000 cycles grew the server by {} KiB", grown / 1024);
    server.assert_serving().await;
}

/// `--broadcast` to 20 clients that never read, while one publisher sends
/// 20,000 messages of 1 KiB: each silent client should be closed with 1008
/// once it is 1024 messages behind (as `wsx serve --help` says), and the
/// server's memory should stay bounded.
///
/// It was not (fixed): a silent client's task blocked in `ws.feed(m).await` once its
/// write queue passes the 16 MiB high-water mark, so it never gets back to
/// the broadcast receiver that would report it lagging; each silent client
/// pins up to 16 MiB of copied small messages (measured: 20 silent clients,
/// 20 MiB broadcast, server peak RSS 328 MiB). A thousand silent clients
/// would take 16 GiB. Needs a change in `crates/wsx-cli/src/serve.rs`
/// (`broadcast_loop`): close with 1008 when `ws.buffered_amount()` passes a
/// small cap instead of waiting in `feed`: it now does (1 MiB).
#[tokio::test]
async fn broadcast_to_clients_that_never_read_is_bounded() {
    let server = serve(&["--broadcast"]);
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(Raw::upgrade(server.addr).await);
    }
    let (mut publisher, _) = within(wsx::connect(&server.url)).await.unwrap();
    let msg = Message::binary(vec![1u8; 1024]);
    let mut got = 0;
    for i in 0..20_000 {
        publisher.feed(msg.clone()).await.unwrap();
        if i % 100 == 99 {
            // The publisher reads its own copies, so that it keeps up.
            publisher.flush().await.unwrap();
            while got < i - 50 {
                within(publisher.recv()).await.unwrap().unwrap();
                got += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.assert_peak_under(64 * MIB, "broadcast to silent clients");
    // Each silent client, once it reads, finds its backlog and then either
    // the 1008 close frame or, when the server could not write that frame
    // within its 1 s bound (the client was not reading), the end of the
    // connection: the server does not hold a connection open for a peer
    // that does not read.
    let readers: Vec<_> = silent
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                loop {
                    match s.next_frame().await {
                        Some(f) if f.opcode == 0x8 => return f.close_code(),
                        Some(_) => continue,
                        None => return None,
                    }
                }
            })
        })
        .collect();
    for r in readers {
        let code = within(r).await.unwrap();
        assert!(matches!(code, Some(1008) | None), "close code {code:?}");
    }
    server.assert_serving().await;
}
