//! The known HTTP/2 attacks against `wsx::server::Server` over TLS (ALPN
//! `h2`): rapid reset (CVE-2023-44487), SETTINGS and PING floods,
//! CONTINUATION floods (CVE-2024-27316 and its family), more concurrent
//! streams than advertised, and a flow-control window that is never
//! opened. The floods are written as raw frames (RFC 9113 §4.1) over
//! rustls, since a well-behaved HTTP/2 library refuses to send them.
//!
//! For each: the server stays alive (a fresh connection gets a working
//! WebSocket afterwards), the hostile connection is closed (GOAWAY or EOF)
//! or throttled (its writes stall) within a bound, and what the server
//! holds stays bounded: its slots (`Server::connections`: one per
//! connection and one per stream being served) and the process's resident
//! memory. The tests run one at a time (they measure the process's
//! memory, and the machine is small).

mod common;
#[path = "support/pki.rs"]
mod pki;

use bytes::Bytes;
use common::*;
use pki::Ca;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wsx::http2::H2Stream;
use wsx::server::{Request, Server};
use wsx::tls::tokio_rustls::client::TlsStream;
use wsx::tls::tokio_rustls::TlsConnector;
use wsx::{Config, Message, Role, WebSocket};

/// One test at a time: each measures the process's memory.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`.
const MAX_STREAMS: usize = 128;

/// How much the process's resident memory may grow during an attack.
const RSS_BOUND: u64 = 64 << 20;

/// How long a hostile connection may take to be closed.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ server

/// A TLS server on 127.0.0.1 for `localhost`: WebSockets echo (at
/// `/busy`, they work for [`BUSY`] without reading), anything else is a
/// short page. `handled` counts the requests that reached the handler.
struct Target {
    server: Server,
    port: u16,
    handled: Arc<AtomicUsize>,
}

/// How long a WebSocket at `/busy` works.
const BUSY: Duration = Duration::from_secs(3);

async fn target(ca: &Ca, config: Config) -> Target {
    let server = Server::builder().config(config).tls(pki::acceptor(ca, &["localhost"])).build();
    let (listener, addr) = listen().await;
    let handled = Arc::new(AtomicUsize::new(0));
    let (s, count) = (server.clone(), handled.clone());
    tokio::spawn(async move {
        s.serve(listener, move |req: Request| {
            count.fetch_add(1, Ordering::Relaxed);
            async move {
                if req.is_upgrade() && req.path() == "/busy" {
                    // Work that does not look at the socket: it outlives a
                    // reset of its stream.
                    let _ws = req.upgrade(wsx::handshake::Accept::new()).await?;
                    tokio::time::sleep(BUSY).await;
                    Ok(())
                } else if req.is_upgrade() {
                    let mut ws = req.upgrade(wsx::handshake::Accept::new()).await?;
                    echo(&mut ws).await.map(drop)
                } else {
                    req.respond(http::Response::new(Bytes::from_static(b"page\n"))).await
                }
            }
        })
        .await
    });
    Target { server, port: addr.port(), handled }
}

impl Target {
    /// The server still serves: a fresh HTTP/2 connection gets a
    /// WebSocket that echoes (the connection closed afterwards).
    async fn still_serves(&self, ca: &Ca) {
        let (send, conn) = h2_client(ca, self.port, h2::client::Builder::new()).await;
        let mut ws = open_websocket(&send, "/").await;
        within(ws.send(Message::text("still here"))).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("still here"));
        drop((ws, send));
        conn.abort();
    }

    /// Everything the hostile connections held is given back: no slot is
    /// left once they are gone.
    async fn released(&self) {
        let deadline = Instant::now() + CLOSE_BOUND;
        while self.server.connections() > 0 {
            assert!(Instant::now() < deadline, "{} slots still held", self.server.connections());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The process's resident memory, in bytes (`VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The most the server held while an attack ran: slots and the process's
/// resident memory, sampled every few milliseconds.
struct Watch {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, u64)>,
    rss_before: u64,
}

impl Watch {
    fn start(server: &Server) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let server = server.clone();
        let rss_before = rss();
        let task = tokio::spawn(async move {
            let (mut slots, mut mem) = (0, 0);
            loop {
                slots = slots.max(server.connections());
                mem = mem.max(rss());
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    _ = stopped.changed() => return (slots, mem),
                }
            }
        });
        Self { stop, task, rss_before }
    }

    /// The most slots held, and how far the resident memory grew.
    async fn stop(self) -> (usize, u64) {
        let _ = self.stop.send(true);
        let (slots, mem) = self.task.await.unwrap();
        (slots, mem.max(rss()).saturating_sub(self.rss_before))
    }
}

// ------------------------------------------------------------- raw frames

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// A frame (RFC 9113 §4.1): 24-bit length, type, flags, 31-bit stream id,
/// payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24);
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> =
        values.iter().flat_map(|(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()].concat()).collect();
    frame(SETTINGS, 0, 0, &payload)
}

fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// An HPACK string literal (RFC 7541 §5.2), not Huffman-coded.
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer (RFC 7541 §5.1) with `prefix` bits in a first byte
/// that starts with `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header field without indexing (RFC 7541 §6.2.2): a name from the
/// static table (`index`), or a literal name (`index` 0).
fn hpack_field(out: &mut Vec<u8>, index: usize, name: &str, value: &str) {
    hpack_int(out, 0x00, 4, index);
    if index == 0 {
        hpack_str(out, name.as_bytes());
    }
    hpack_str(out, value.as_bytes());
}

/// The header block of an extended CONNECT for a WebSocket at `path` (RFC
/// 8441 §4), as a browser sends it; nothing goes into the decoder's
/// dynamic table.
fn websocket_request(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    hpack_field(&mut b, 2, ":method", "CONNECT");
    b.push(0x87); // :scheme https
    hpack_field(&mut b, 0, ":protocol", "websocket");
    hpack_field(&mut b, 4, ":path", path);
    hpack_field(&mut b, 1, ":authority", "localhost");
    hpack_field(&mut b, 0, "sec-websocket-version", "13");
    b
}

/// A raw HTTP/2 connection over TLS with ALPN `h2`, after the connection
/// preface and the exchange of SETTINGS (the client's `client_settings`,
/// the server's, acknowledged).
struct Raw {
    read: ReadHalf<TlsStream<TcpStream>>,
    write: WriteHalf<TlsStream<TcpStream>>,
}

/// Socket buffers of a hostile client: small, so that how far a flood gets
/// before the server stops reading is the server's doing, not the
/// kernel's.
const SOCKET_BUFFER: u32 = 64 << 10;

async fn raw(ca: &Ca, port: u16, client_settings: &[(u16, u32)]) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
    socket.set_send_buffer_size(SOCKET_BUFFER).unwrap();
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut tls = (*ca.client_config()).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let name = wsx::tls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = within(TlsConnector::from(Arc::new(tls)).connect(name, tcp)).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut read, mut write) = tokio::io::split(tls);
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(settings(client_settings));
    within(write.write_all(&hello)).await.unwrap();
    loop {
        let f = within(read_frame(&mut read)).await.expect("the server's SETTINGS");
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            break;
        }
    }
    within(write.write_all(&frame(SETTINGS, ACK, 0, &[]))).await.unwrap();
    Raw { read, write }
}

/// A frame received.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// The next frame; `None` at the end of the connection.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<Frame> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
    Some(Frame { kind: head[3], flags: head[4], stream, payload })
}

/// How a connection ended, from the client's side.
#[derive(Debug, PartialEq)]
enum Ended {
    GoAway(u32),
    Eof,
}

/// What the server sent until the connection ended: RST_STREAMs by error
/// code, response HEADERS, and the end.
#[derive(Debug, Default)]
struct Seen {
    resets: std::collections::BTreeMap<u32, usize>,
    responses: usize,
    ended: Option<Ended>,
}

/// Read frames until GOAWAY or the end of the connection, within `bound`
/// (panics past it).
async fn read_until_closed<R: AsyncRead + Unpin>(r: &mut R, bound: Duration) -> Seen {
    let mut seen = Seen::default();
    let reading = async {
        loop {
            match read_frame(r).await {
                None => return Ended::Eof,
                Some(f) if f.kind == GOAWAY => return Ended::GoAway(f.code()),
                Some(f) if f.kind == RST_STREAM => *seen.resets.entry(f.code()).or_default() += 1,
                Some(f) if f.kind == HEADERS => seen.responses += 1,
                Some(_) => {}
            }
        }
    };
    let ended = tokio::time::timeout(bound, reading).await.expect("the hostile connection was not closed in time");
    seen.ended = Some(ended);
    seen
}

/// How a flood ended.
#[derive(Debug, PartialEq)]
enum Flood {
    /// A write did not complete for [`STALL`]: the server stopped reading.
    Throttled,
    /// The connection failed: the server closed it.
    Closed,
}

/// A write that does not complete for this long means the server stopped
/// reading.
const STALL: Duration = Duration::from_secs(1);

/// Write `chunk` over and over until the server stops reading or closes
/// the connection, but at most `max` bytes (past them, panic: the flood
/// was neither throttled nor closed). The bytes written, and how it ended.
async fn flood<W: AsyncWrite + Unpin>(w: &mut W, chunk: &[u8], max: usize) -> (usize, Flood) {
    let mut written = 0;
    loop {
        match tokio::time::timeout(STALL, w.write_all(chunk)).await {
            Err(_) => return (written, Flood::Throttled),
            Ok(Err(_)) => return (written, Flood::Closed),
            Ok(Ok(())) => written += chunk.len(),
        }
        assert!(written <= max, "{written} bytes of flood went in: neither throttled nor closed");
    }
}

/// `frame` repeated to about 64 KiB.
fn repeated(frame: &[u8]) -> Vec<u8> {
    frame.repeat((64 << 10) / frame.len())
}

// ------------------------------------------------------------------ tests

/// CVE-2023-44487: streams opened and reset at once, thousands in a burst,
/// so that the server starts work for each and the client pays nothing.
/// The `h2` crate counts the streams reset before the server accepted them
/// and answers GOAWAY ENHANCE_YOUR_CALM past its limit; the streams that
/// were served end with their reset, each giving its slot back.
#[tokio::test]
async fn rapid_reset_is_closed_with_enhance_your_calm() {
    let _one = SERIAL.lock().await;
    let ca = Ca::new("wsx h2 hostile CA");
    let t = target(&ca, Config::default()).await;
    let watch = Watch::start(&t.server);
    let Raw { mut read, mut write } = raw(&ca, t.port, &[]).await;
    const STREAMS: u32 = 10_000;
    let request = websocket_request("/");
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        for batch in 0..STREAMS / 100 {
            let mut burst = Vec::new();
            for i in 0..100 {
                let id = 2 * (batch * 100 + i) + 1;
                burst.extend(frame(HEADERS, END_HEADERS, id, &request));
                burst.extend(rst_stream(id, CANCEL));
            }
            if write.write_all(&burst).await.is_err() {
                break;
            }
            sent += 100;
        }
        sent
    });
    let seen = read_until_closed(&mut read, CLOSE_BOUND).await;
    let sent = within(writer).await.unwrap();
    drop(read);
    t.released().await;
    let (slots, grown) = watch.stop().await;
    let handled = t.handled.load(Ordering::Relaxed);
    eprintln!(
        "rapid reset: {sent} streams written, {handled} handled, {slots} slots at most, RSS +{grown} B, {seen:?}"
    );
    assert_eq!(seen.ended, Some(Ended::GoAway(ENHANCE_YOUR_CALM)), "{seen:?}");
    assert!(sent < STREAMS, "the server read all {STREAMS} streams before closing");
    assert!(slots <= 1 + 2 * MAX_STREAMS, "{slots} slots held at once");
    assert!(grown < RSS_BOUND, "RSS grew by {grown} B");
    t.still_serves(&ca).await;
}

/// Rapid reset paced to get past the `h2` crate's count: streams at
/// `path`, 128 at a time (the advertised limit), each reset once the
/// server answered it, `rounds` times. How many were answered (200) and
/// how many refused (REFUSED_STREAM).
async fn paced_resets(raw: &mut Raw, path: &str, rounds: usize) -> (usize, usize) {
    let request = websocket_request(path);
    let (mut next, mut answered, mut refused) = (1u32, 0, 0);
    for _ in 0..rounds {
        let ids: Vec<u32> = (0..MAX_STREAMS as u32).map(|i| next + 2 * i).collect();
        next += 2 * MAX_STREAMS as u32;
        let opens: Vec<u8> = ids.iter().flat_map(|&id| frame(HEADERS, END_HEADERS, id, &request)).collect();
        within(raw.write.write_all(&opens)).await.unwrap();
        let mut pending = ids.len();
        while pending > 0 {
            let f = within(read_frame(&mut raw.read)).await.expect("the connection stays open");
            match f.kind {
                GOAWAY => panic!("GOAWAY: {f:?}"),
                HEADERS if ids.contains(&f.stream) => answered += 1,
                RST_STREAM if f.code() == REFUSED_STREAM && ids.contains(&f.stream) => refused += 1,
                RST_STREAM => panic!("{f:?}"),
                _ => continue,
            }
            pending -= 1;
        }
        let resets: Vec<u8> = ids.iter().flat_map(|&id| rst_stream(id, CANCEL)).collect();
        within(raw.write.write_all(&resets)).await.unwrap();
    }
    (answered, refused)
}

/// Every stream reset only once the server answered it (accepted,
/// handled, upgraded), 128 at a time, 5,120 in all: each is a WebSocket
/// served in full that its reset ends, so the server never holds much
/// more than the streams open at once, and gives everything back.
#[tokio::test]
async fn streams_reset_after_their_answer_are_each_given_back() {
    let _one = SERIAL.lock().await;
    let ca = Ca::new("wsx h2 hostile CA");
    let t = target(&ca, Config::default()).await;
    let watch = Watch::start(&t.server);
    let mut raw = raw(&ca, t.port, &[]).await;
    let started = Instant::now();
    let (answered, refused) = paced_resets(&mut raw, "/", 40).await;
    let elapsed = started.elapsed();
    // The connection itself stays: only its streams are given back.
    let deadline = Instant::now() + CLOSE_BOUND;
    while t.server.connections() > 1 {
        assert!(Instant::now() < deadline, "{} slots still held", t.server.connections());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (slots, grown) = watch.stop().await;
    let handled = t.handled.load(Ordering::Relaxed);
    eprintln!(
        "paced resets: {answered} answered, {refused} refused in {elapsed:?}, {slots} slots at most, RSS +{grown} B"
    );
    // A handler that ends with its stream's reset leaves room at once: few
    // streams (if any) find the connection's handlers all busy.
    assert_eq!(answered + refused, 40 * MAX_STREAMS);
    assert!(answered >= 10 * MAX_STREAMS, "{refused} streams refused");
    assert_eq!(handled, answered);
    assert!(slots <= 1 + 2 * MAX_STREAMS, "{slots} slots held at once");
    assert!(grown < RSS_BOUND, "RSS grew by {grown} B");
    drop(raw);
    t.released().await;
    t.still_serves(&ca).await;
}

/// The same against handlers that go on working after their stream is
/// reset (they do not look at the socket): each round would leave 128 more
/// tasks behind. The server takes at most twice the stream limit in tasks
/// per connection and refuses the streams past it (REFUSED_STREAM, before
/// any handler runs), so what one connection holds stays bounded.
#[tokio::test]
async fn handlers_that_outlive_their_reset_streams_are_bounded_per_connection() {
    let _one = SERIAL.lock().await;
    let ca = Ca::new("wsx h2 hostile CA");
    let t = target(&ca, Config::default()).await;
    let watch = Watch::start(&t.server);
    let mut raw = raw(&ca, t.port, &[]).await;
    let (answered, refused) = paced_resets(&mut raw, "/busy", 40).await;
    let (slots, grown) = watch.stop().await;
    let handled = t.handled.load(Ordering::Relaxed);
    eprintln!(
        "busy handlers, paced resets: {answered} answered, {refused} refused, {slots} slots at most, RSS +{grown} B"
    );
    assert!(refused > 0, "every stream was taken");
    assert!(slots <= 1 + 2 * MAX_STREAMS, "{slots} slots held at once");
    assert_eq!(handled, answered);
    assert!(grown < RSS_BOUND, "RSS grew by {grown} B");
    drop(raw);
    tokio::time::sleep(BUSY).await;
    t.released().await;
    t.still_serves(&ca).await;
}

/// A SETTINGS flood from a client that never reads: the `h2` crate answers
/// each with an ACK before it reads the next frame, so once the ACKs back
/// up, the server stops reading and the flood stalls.
#[tokio::test]
async fn settings_flood_is_throttled() {
    unread_flood_is_throttled("SETTINGS", repeated(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 16)]))).await;
}

/// A PING flood from a client that never reads the ACKs: as with SETTINGS,
/// one pong waits at most, and the server stops reading meanwhile.
#[tokio::test]
async fn ping_flood_without_reading_is_throttled() {
    unread_flood_is_throttled("PING", repeated(&frame(PING, 0, 0, b"flooding"))).await;
}

/// `chunk` written over and over by a client that never reads: the server
/// stops reading once its answers back up, well before 32 MiB went in, its
/// memory stays bounded, and it goes on serving others.
async fn unread_flood_is_throttled(what: &str, chunk: Vec<u8>) {
    let _one = SERIAL.lock().await;
    let ca = Ca::new("wsx h2 hostile CA");
    let t = target(&ca, Config::default()).await;
    let watch = Watch::start(&t.server);
    let Raw { read, mut write } = raw(&ca, t.port, &[]).await;
    let (written, how) = flood(&mut write, &chunk, 256 << 20).await;
    let (slots, grown) = watch.stop().await;
    eprintln!("{what} flood: {written} B written, {how:?}, {slots} slots at most, RSS +{grown} B");
    assert!(written < 32 << 20, "{written} bytes of {what} went in");
    assert!(grown < RSS_BOUND, "RSS grew by {grown} B");
    t.still_serves(&ca).await;
    drop((read, write));
    t.released().await;
}

/// A PING flood from a client that reads the ACKs slowly (64 KiB a
/// second): the server answers no faster than they are read.
#[tokio::test]
async fn ping_flood_read_slowly_goes_at_the_readers_pace() {
    let _one = SERIAL.lock().await;
    let ca = Ca::new("wsx h2 hostile CA");
    let t = target(&ca, Config::default()).await;
    let watch = Watch::start(&t.server);
    let Raw { mut read, mut write } = raw(&ca, t.port, &[]).await;
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got += n,
            }
            tokio::time::sleep(Duration::from_millis(16)).await;
        }
    });
    let chunk = repeated(&frame(PING, 0, 0, b"flooding"));
    let (written, how) = flood(&mut write, &chunk, 256 << 20).await;
    let (slots, grown) = watch.stop().await;
    reader.abort();
    eprintln!("PING flood read slowly: {written} B written, {how:?}, {slots} slots at most, RSS +{grown} B");
    assert!(written < 32 << 20, "{written} bytes of PING went in");
    assert!(grown < RSS_BOUND, "RSS grew by {grown} B");
    t.still_serves(&ca).await;
    drop(write);
    t.released().await;
}

/// CVE-2024-27316 and its family: HEADERS without END_HEADERS, then
/// CONTINUATION frames that never end the block: empty ones (nothing to
/// decode, only their count grows), and full ones carrying one endless
/// header value. The head never reaches the handler; GOAWAY comes after a
/// few frames (the `h2` crate bounds their count by the header list limit,
/// the handshake size limit here).
#[tokio::test]
async fn continuation_floods_are_closed() {
    let _one = SERIAL.lock().await;
    let ca = Ca::new("wsx h2 hostile CA");
    let t = target(&ca, Config::default()).await;
    let watch = Watch::start(&t.server);
    // One header whose value says it is 16 MiB long.
    let mut endless = websocket_request("/");
    hpack_int(&mut endless, 0x00, 4, 0);
    hpack_str(&mut endless, b"x-flood");
    hpack_int(&mut endless, 0x00, 7, 1 << 24);
    let floods = [
        ("empty CONTINUATION", websocket_request("/"), frame(CONTINUATION, 0, 1, &[])),
        ("16 KiB CONTINUATION", endless, frame(CONTINUATION, 0, 1, &[b'a'; 16 << 10])),
    ];
    for (what, block, continuation) in floods {
        let Raw { mut read, mut write } = raw(&ca, t.port, &[]).await;
        within(write.write_all(&frame(HEADERS, 0, 1, &block))).await.unwrap();
        let chunk = repeated(&continuation);
        let flooding = tokio::spawn(async move { flood(&mut write, &chunk, 256 << 20).await });
        let seen = read_until_closed(&mut read, CLOSE_BOUND).await;
        drop(read);
        let (written, how) = within(flooding).await.unwrap();
        eprintln!("{what} flood: {written} B written, {how:?}, {seen:?}");
        assert!(
            matches!(seen.ended, Some(Ended::GoAway(code)) if code == ENHANCE_YOUR_CALM || code == 0x9),
            "{what}: {seen:?}"
        );
    }
    t.released().await;
    let (slots, grown) = watch.stop().await;
    eprintln!("CONTINUATION floods: {slots} slots at most, RSS +{grown} B");
    assert_eq!(t.handled.load(Ordering::Relaxed), 0, "a head without its end reached the handler");
    assert!(grown < RSS_BOUND, "RSS grew by {grown} B");
    t.still_serves(&ca).await;
}

/// A client that opens streams past `SETTINGS_MAX_CONCURRENT_STREAMS` and
/// keeps them open: 128 are served; the others are refused with
/// REFUSED_STREAM and never reach the handler, and a client that goes on
/// regardless gets GOAWAY ENHANCE_YOUR_CALM (the `h2` crate's count of
/// the streams it had to reset).
#[tokio::test]
async fn streams_past_the_advertised_limit_are_refused_then_closed() {
    let _one = SERIAL.lock().await;
    let ca = Ca::new("wsx h2 hostile CA");
    let t = target(&ca, Config::default()).await;
    let watch = Watch::start(&t.server);
    let Raw { mut read, mut write } = raw(&ca, t.port, &[]).await;
    let request = websocket_request("/");
    // The advertised limit, each answered.
    let opens: Vec<u8> =
        (0..MAX_STREAMS as u32).flat_map(|i| frame(HEADERS, END_HEADERS, 2 * i + 1, &request)).collect();
    within(write.write_all(&opens)).await.unwrap();
    let mut answered = 0;
    while answered < MAX_STREAMS {
        let f = within(read_frame(&mut read)).await.unwrap();
        assert!(f.kind != RST_STREAM && f.kind != GOAWAY, "{f:?}");
        answered += usize::from(f.kind == HEADERS);
    }
    // Then thousands more, never closing any.
    const MORE: u32 = 5_000;
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        for batch in 0..MORE / 100 {
            let first = MAX_STREAMS as u32 + batch * 100;
            let burst: Vec<u8> =
                (first..first + 100).flat_map(|i| frame(HEADERS, END_HEADERS, 2 * i + 1, &request)).collect();
            if write.write_all(&burst).await.is_err() {
                break;
            }
            sent += 100;
        }
        sent
    });
    let seen = read_until_closed(&mut read, CLOSE_BOUND).await;
    let sent = within(writer).await.unwrap();
    let handled = t.handled.load(Ordering::Relaxed);
    drop(read);
    t.released().await;
    let (slots, grown) = watch.stop().await;
    eprintln!(
        "past the stream limit: {sent} more streams written, {handled} handled, {slots} slots at most, \
         RSS +{grown} B, {seen:?}"
    );
    assert_eq!(seen.ended, Some(Ended::GoAway(ENHANCE_YOUR_CALM)), "{seen:?}");
    assert!(seen.resets.get(&REFUSED_STREAM).copied().unwrap_or(0) > 0, "{seen:?}");
    assert_eq!(handled, MAX_STREAMS);
    assert!(slots <= 1 + MAX_STREAMS, "{slots} slots held at once");
    assert!(grown < RSS_BOUND, "RSS grew by {grown} B");
    t.still_serves(&ca).await;
}

/// A client whose windows are closed (SETTINGS_INITIAL_WINDOW_SIZE 0, no
/// WINDOW_UPDATE ever) on 200 WebSockets over two connections, each
/// sending 16 KiB messages that the server echoes: every echo waits for
/// window, the server stops reading each stream once its own window is
/// spent, and the client's sends stall. What the server holds per socket
/// is bounded by its stream window and a message; the connections stay
/// open (throttled), and give everything back when they go.
#[tokio::test]
async fn a_window_never_opened_stalls_each_stream_within_its_bounds() {
    let _one = SERIAL.lock().await;
    let ca = Ca::new("wsx h2 hostile CA");
    // What a WebSocket queues before its sender waits is its own bound
    // (16 MiB by default, on either HTTP version): small here, so that
    // what is measured is what HTTP/2 adds.
    const WRITE_BUFFER: usize = 64 << 10;
    let t = target(&ca, Config::default().with_max_write_buffer(WRITE_BUFFER)).await;
    const CONNECTIONS: usize = 2;
    const PER_CONNECTION: usize = 100;
    const MESSAGE: usize = 16 << 10;
    let watch = Watch::start(&t.server);
    let mut conns = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut b = h2::client::Builder::new();
        b.initial_window_size(0);
        let (send, conn) = h2_client(&ca, t.port, b).await;
        conns.push(conn);
        for _ in 0..PER_CONNECTION {
            sockets.push(open_websocket(&send, "/").await);
        }
    }
    let sent: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let msg = Message::binary(vec![7u8; MESSAGE]);
                let mut sent = 0usize;
                while tokio::time::timeout(STALL, ws.send(msg.clone())).await.is_ok_and(|r| r.is_ok()) {
                    sent += 1;
                    assert!(sent * MESSAGE < 16 << 20, "16 MiB went into a stream that is never read");
                }
                (sent, ws)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut most = 0;
    for task in sent {
        let (n, ws) = tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
        most = most.max(n);
        held.push(ws);
    }
    let slots_now = t.server.connections();
    let (slots, grown) = watch.stop().await;
    let sockets = CONNECTIONS * PER_CONNECTION;
    eprintln!(
        "window never opened: at most {most} messages of {MESSAGE} B went into a socket, {slots} slots at most, \
         RSS +{grown} B ({} KiB per socket)",
        grown / sockets as u64 / 1024
    );
    assert_eq!(slots_now, CONNECTIONS + sockets, "every hostile socket is still open (throttled)");
    // A socket's sender stalls once the server's stream window (256 KiB)
    // and the echo's write buffer are full.
    assert!(most * MESSAGE <= (256 << 10) + WRITE_BUFFER + 4 * MESSAGE, "{most} messages went into one socket");
    // Both ends are in this process: per socket, the server's window and
    // write buffer, the client's stalled message, the WebSockets' buffers.
    let per_socket = grown / sockets as u64;
    assert!(per_socket < 512 << 10, "RSS grew by {per_socket} B per socket");
    t.still_serves(&ca).await;
    drop(held);
    for c in conns {
        c.abort();
    }
    t.released().await;
}

/// An `h2`-crate client connection (ALPN `h2` alone) with `builder`'s
/// settings, its connection driven by a task of its own.
async fn h2_client(
    ca: &Ca,
    port: u16,
    builder: h2::client::Builder,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let mut tls = (*ca.client_config()).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = wsx::tls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = within(TlsConnector::from(Arc::new(tls)).connect(name, tcp)).await.unwrap();
    let (send, mut conn) = within(builder.handshake::<_, Bytes>(tls)).await.unwrap();
    let mut ping = conn.ping_pong().unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    // The server's SETTINGS come first: processed before the pong.
    within(ping.ping(h2::Ping::opaque())).await.unwrap();
    (within(send.ready()).await.unwrap(), task)
}

/// A WebSocket on a new stream of `send`'s connection (RFC 8441 §5).
async fn open_websocket(send: &h2::client::SendRequest<Bytes>, path: &str) -> WebSocket<H2Stream> {
    let req = http::Request::get(format!("wss://localhost{path}")).body(()).unwrap();
    let (mut req, handshake) = wsx::proto::handshake::ClientHandshake::extended_connect(req).unwrap();
    req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
    let (response, stream) = within(send.clone().ready()).await.unwrap().send_request(req, false).unwrap();
    let (parts, body) = within(response).await.unwrap().into_parts();
    let head = http::Response::from_parts(parts, ());
    handshake.check_response(&head).unwrap();
    WebSocket::from_raw(H2Stream::new(stream, body), Role::Client, &Config::default(), &[])
}

#[test]
fn frames_are_laid_out_as_rfc_9113_says() {
    assert_eq!(frame(PING, ACK, 0, b"12345678")[..9], [0, 0, 8, 6, 1, 0, 0, 0, 0]);
    assert_eq!(rst_stream(0x8000_0003, CANCEL), [0, 0, 4, 3, 0, 0, 0, 0, 3, 0, 0, 0, 8]);
    let mut n = Vec::new();
    hpack_int(&mut n, 0x00, 5, 1337); // RFC 7541 C.1.2
    assert_eq!(n, [31, 154, 10]);
}
