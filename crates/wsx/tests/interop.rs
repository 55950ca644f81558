//! Interop with real peers: Node's `ws` and Python's `websockets`, in both
//! directions, with permessage-deflate on (with and without context
//! takeover) and off.
//!
//! Each test runs one peer script from `tests/interop/` as a child process
//! (an echo server on 127.0.0.1:0 that prints its port, or a client that
//! checks its own echoes) and exchanges the same ten messages: text and
//! binary of 0 B, 1 B, 64 KiB and 16 MiB (compressible text, pseudo-random
//! binary), plus pseudo-random multi-byte text and compressible binary of
//! 64 KiB. Every echo is compared byte for byte, and both ends must agree
//! on what was negotiated (`Sec-WebSocket-Extensions`): wsx through
//! `extensions()` / `compression_enabled()`, the peer through the
//! `negotiated-extensions:` line it prints.
//!
//! The peers are installed by `scripts/install-interop` (Node's `ws` into
//! `tests/interop/node/node_modules`, `websockets` into a virtualenv at
//! `${WSX_INTEROP_VENV:-$HOME/.cache/wsx-interop-venv}`). Without them the
//! tests are skipped with a notice, or fail when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use wsx::handshake::{Accept, UpgradeRequest};
use wsx::proto::deflate::{CompressionPreset, DeflateConfig};
use wsx::{CloseCode, Config, Message};

/// Largest message either end accepts: 16 MiB messages plus a margin.
const MAX_MESSAGE: usize = 32 << 20;
/// Upper bound for one peer process or one exchange, so that a broken
/// behaviour fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- peers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    NodeWs,
    PythonWebsockets,
}

/// How to run a peer's scripts.
#[derive(Debug, Clone)]
struct PeerCmd {
    program: PathBuf,
    dir: PathBuf,
    server_script: &'static str,
    client_script: &'static str,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn which(program: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("which").arg(program).output().ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

fn venv_dir() -> PathBuf {
    match std::env::var_os("WSX_INTEROP_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/wsx-interop-venv"),
    }
}

fn locate_node() -> Result<PeerCmd, String> {
    let node = which("node").ok_or("`node` is not on PATH")?;
    let dir = repo_root().join("tests/interop/node");
    if !dir.join("node_modules/ws/package.json").is_file() {
        return Err(format!("Node's ws is not installed in {}", dir.join("node_modules").display()));
    }
    Ok(PeerCmd { program: node, dir, server_script: "echo-server.js", client_script: "client.js" })
}

fn locate_python() -> Result<PeerCmd, String> {
    let python = venv_dir().join("bin/python");
    if !python.is_file() {
        return Err(format!("no virtualenv python at {}", python.display()));
    }
    let ok = std::process::Command::new(&python)
        .args(["-c", "import websockets.asyncio.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(format!("{} cannot import websockets", python.display()));
    }
    let dir = repo_root().join("tests/interop/python");
    Ok(PeerCmd { program: python, dir, server_script: "echo_server.py", client_script: "client.py" })
}

/// Whether we run under CI, where a missing peer is a failure.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The peer's command, or `None` (after a notice) to skip the test. Under
/// CI a missing peer fails the test.
fn peer(peer: Peer) -> Option<PeerCmd> {
    static NODE: OnceLock<Result<PeerCmd, String>> = OnceLock::new();
    static PYTHON: OnceLock<Result<PeerCmd, String>> = OnceLock::new();
    let found = match peer {
        Peer::NodeWs => NODE.get_or_init(locate_node),
        Peer::PythonWebsockets => PYTHON.get_or_init(locate_python),
    };
    match found {
        Ok(cmd) => Some(cmd.clone()),
        Err(why) if in_ci() => panic!("interop peer {peer:?} missing: {why}; run scripts/install-interop"),
        Err(why) => {
            eprintln!("skipping interop test: {why}; run scripts/install-interop to install the peers");
            None
        }
    }
}

impl PeerCmd {
    fn command(&self, script: &str) -> Command {
        let mut c = Command::new(&self.program);
        c.arg(self.dir.join(script))
            .current_dir(&self.dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }
}

// ---------------------------------------------------------------- messages

const SENTENCE: &str =
    "wsx interop: the quick brown fox jumps over the lazy dog, h\u{e9}las \u{2713} \u{20ac} 0123456789\n";
const ALPHABET: [char; 12] =
    ['a', 'b', 'Z', ' ', '7', '\u{e9}', '\u{df}', '\u{2713}', '\u{20ac}', '\u{4e2d}', '\u{1F600}', '\u{10348}'];

/// xorshift64*: fast, deterministic pseudo-random bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Text of exactly `size` UTF-8 bytes: compressible (a repeated sentence)
/// or pseudo-random characters of 1 to 4 bytes.
fn text(size: usize, rng: Option<&mut Rng>) -> String {
    let mut s = String::with_capacity(size);
    match rng {
        Some(rng) => loop {
            let c = ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize];
            if s.len() + c.len_utf8() > size {
                break;
            }
            s.push(c);
        },
        None => {
            s.push_str(&SENTENCE.repeat(size / SENTENCE.len()));
            for c in SENTENCE.chars() {
                if s.len() + c.len_utf8() > size {
                    break;
                }
                s.push(c);
            }
        }
    }
    while s.len() < size {
        s.push('x');
    }
    s
}

/// Binary of `size` bytes: compressible (a counter pattern) or pseudo-random.
fn binary(size: usize, rng: Option<&mut Rng>) -> Vec<u8> {
    match rng {
        Some(rng) => rng.bytes(size),
        None => (0..size).map(|i| (i >> 4) as u8).collect(),
    }
}

const SIZES: [usize; 4] = [0, 1, 64 << 10, 16 << 20];

/// The test messages, in the order the peer clients send them too: for
/// each size a compressible text and a pseudo-random binary message, then
/// pseudo-random text and compressible binary of 64 KiB.
fn messages(seed: u64) -> Vec<Message> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for size in SIZES {
        out.push(Message::text(text(size, None)));
        out.push(Message::binary(binary(size, Some(&mut rng))));
    }
    out.push(Message::text(text(64 << 10, Some(&mut rng))));
    out.push(Message::binary(binary(64 << 10, None)));
    out
}

/// What wsx does with the 16 MiB pseudo-random binary message when
/// permessage-deflate is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BigRandom {
    /// Compress it like every other message.
    Compressed,
    /// Send it with `feed_uncompressed`, as an application does with data
    /// that does not compress. The peer's compressed echo is still
    /// inflated by wsx, and the peer gets an uncompressed message in the
    /// middle of a compressed stream. Most tests do this: compressing
    /// 16 MiB of random bytes takes ~4 s in a debug build (zlib-rs
    /// unoptimized), so only one test per direction pays for it.
    Uncompressed,
}

/// Whether wsx sends `m` with `feed_uncompressed`.
fn sent_uncompressed(m: &Message, big: BigRandom) -> bool {
    big == BigRandom::Uncompressed && m.is_binary() && m.len() >= 1 << 20
}

/// (is text, length) of each test message.
fn shapes() -> Vec<(bool, usize)> {
    let mut v: Vec<(bool, usize)> = SIZES.iter().flat_map(|&n| [(true, n), (false, n)]).collect();
    v.extend([(true, 64 << 10), (false, 64 << 10)]);
    v
}

fn describe(m: &Message) -> String {
    let kind = match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
    };
    format!("{kind} of {} bytes", m.len())
}

/// Compare an echo with what was sent, without printing 16 MiB on failure.
fn check_echo(who: &str, i: usize, sent: &Message, got: &Message) {
    let same_kind =
        matches!((sent, got), (Message::Text(_), Message::Text(_)) | (Message::Binary(_), Message::Binary(_)));
    assert!(same_kind, "{who}: message {i}: sent {}, echo is {}", describe(sent), describe(got));
    let (a, b) = (sent.as_bytes(), got.as_bytes());
    if a != b {
        let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        panic!("{who}: message {i}: sent {}, echo is {} and differs from byte {at}", describe(sent), describe(got));
    }
}

// ---------------------------------------------------------------- negotiation

/// What both ends must report after the handshake.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// No extension negotiated.
    Off,
    /// permessage-deflate, with exactly this `Sec-WebSocket-Extensions`
    /// response (the peers' versions are pinned).
    Deflate(&'static str),
}

/// Context takeover both ways, 15-bit windows.
const TAKEOVER: Expect = Expect::Deflate("permessage-deflate");
/// No context takeover either way.
const NO_TAKEOVER: Expect =
    Expect::Deflate("permessage-deflate; server_no_context_takeover; client_no_context_takeover");

/// Check wsx's view of the negotiation, and that the peer printed the same
/// `Sec-WebSocket-Extensions` value.
fn check_negotiated(expect: Expect, wsx_ext: Option<&str>, wsx_compression: bool, peer_ext: &str, who: &str) {
    let ext = wsx_ext.unwrap_or("");
    eprintln!("{who}: negotiated {ext:?}");
    assert_eq!(ext, peer_ext, "{who}: wsx and the peer disagree on Sec-WebSocket-Extensions");
    match expect {
        Expect::Off => {
            assert_eq!(wsx_ext, None, "{who}: no extension expected");
            assert!(!wsx_compression, "{who}: wsx compression_enabled() with nothing negotiated");
        }
        Expect::Deflate(header) => {
            assert_eq!(ext, header, "{who}: negotiated extensions");
            assert!(wsx_compression, "{who}: wsx compression_enabled() is false, negotiated {ext:?}");
        }
    }
}

/// The value of the `negotiated-extensions:` line a peer printed.
fn negotiated_line(log: &str, who: &str) -> String {
    log.lines()
        .find_map(|l| l.strip_prefix("negotiated-extensions:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("{who}: the peer printed no negotiated-extensions line:\n{log}"))
}

// ---------------------------------------------------------------- wsx client, peer server

async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    String::from_utf8_lossy(&v).into_owned()
}

/// Start the peer's echo server and return it with its port.
async fn start_server(cmd: &PeerCmd, compression: &str) -> (Child, u16) {
    let mut child = cmd
        .command(cmd.server_script)
        .args(["--compression", compression, "--max-size", &MAX_MESSAGE.to_string(), "--once"])
        .spawn()
        .expect("spawn the peer's echo server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let read = tokio::time::timeout(LIMIT, stdout.read_line(&mut line)).await;
    let port = match read {
        Ok(Ok(n)) if n > 0 => line.trim().parse::<u16>().ok(),
        _ => None,
    };
    let Some(port) = port else {
        let _ = child.start_kill();
        let err = read_all(child.stderr.take().unwrap()).await;
        panic!("the peer's echo server printed no port (first line {line:?}); stderr:\n{err}");
    };
    (child, port)
}

async fn wsx_client_to_peer_server(peer_kind: Peer, compression: &str, config: Config, expect: Expect, big: BigRandom) {
    let Some(cmd) = peer(peer_kind) else { return };
    let who = format!("wsx client -> {peer_kind:?} server ({compression})");
    let (mut child, port) = start_server(&cmd, compression).await;
    let stderr = tokio::spawn(read_all(child.stderr.take().unwrap()));
    let config = config.with_max_message_size(MAX_MESSAGE);

    let who2 = who.clone();
    let exchange = tokio::spawn(async move {
        let who = who2;
        let (mut ws, _) = wsx::connect_with(format!("ws://127.0.0.1:{port}/"), &config).await.expect("connect");
        let (ext, compression) = (ws.extensions().map(str::to_owned), ws.compression_enabled());
        for (i, msg) in messages(port.into()).into_iter().enumerate() {
            let sent = if sent_uncompressed(&msg, big) {
                ws.feed_uncompressed(msg.clone()).await.and(ws.flush().await)
            } else {
                ws.send(msg.clone()).await
            };
            sent.unwrap_or_else(|e| panic!("{who}: send message {i}: {e}"));
            let echo = loop {
                match ws.recv().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => break m,
                    Some(Err(e)) => panic!("{who}: waiting for echo {i}: {e}"),
                    None => panic!("{who}: connection closed while waiting for echo {i}"),
                }
            };
            check_echo(&who, i, &msg, &echo);
        }
        ws.close(CloseCode::Normal, "done").await.expect("close");
        let mut close = None;
        while let Some(m) = ws.recv().await {
            if let Message::Close(f) = m.expect("closing handshake") {
                close = f;
            }
        }
        assert_eq!(close.map(|f| f.code), Some(CloseCode::Normal), "{who}: the peer's close frame");
        (ext, compression)
    });
    let (ext, compression_on) = match tokio::time::timeout(LIMIT, exchange).await {
        Ok(Ok(done)) => done,
        failed => {
            // The panic itself is printed above; add what the peer logged.
            let why = if failed.is_err() { "timed out" } else { "failed" };
            let _ = child.start_kill();
            let log = stderr.await.unwrap_or_default();
            panic!("{who}: the exchange {why}; the peer's echo server logged:\n{log}");
        }
    };

    let status = tokio::time::timeout(LIMIT, child.wait()).await.expect("peer server did not exit").unwrap();
    let log = stderr.await.unwrap();
    assert!(status.success(), "{who}: the peer's echo server failed ({status}); stderr:\n{log}");
    assert!(!log.contains("error:"), "{who}: the peer's echo server reported an error:\n{log}");
    assert!(log.contains("closed: code=1000"), "{who}: the peer did not see a clean close:\n{log}");
    check_negotiated(expect, ext.as_deref(), compression_on, &negotiated_line(&log, &who), &who);
}

// ---------------------------------------------------------------- peer client, wsx server

/// What the wsx server saw of one connection.
struct ServerSide {
    extensions: Option<String>,
    compression: bool,
    /// (is text, length) of each data message received.
    received: Vec<(bool, usize)>,
    close: Option<CloseCode>,
}

async fn peer_client_to_wsx_server(peer_kind: Peer, compression: &str, config: Config, expect: Expect, big: BigRandom) {
    let Some(cmd) = peer(peer_kind) else { return };
    let who = format!("{peer_kind:?} client ({compression}) -> wsx server");
    let config = config.with_max_message_size(MAX_MESSAGE);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut ws = wsx::accept_with(tcp, |_: &UpgradeRequest| Ok(Accept::new()), &config).await?;
        let mut side = ServerSide {
            extensions: ws.extensions().map(str::to_owned),
            compression: ws.compression_enabled(),
            received: Vec::new(),
            close: None,
        };
        while let Some(msg) = ws.recv().await {
            match msg? {
                m @ (Message::Text(_) | Message::Binary(_)) => {
                    side.received.push((m.is_text(), m.len()));
                    if sent_uncompressed(&m, big) {
                        ws.feed_uncompressed(m).await?;
                    } else {
                        ws.feed(m).await?;
                    }
                }
                Message::Close(f) => side.close = f.map(|f| f.code),
                _ => {}
            }
        }
        Ok::<_, wsx::Error>(side)
    });

    let child = cmd
        .command(cmd.client_script)
        .args(["--url", &format!("ws://{addr}/"), "--compression", compression])
        .args(["--max-size", &MAX_MESSAGE.to_string()])
        .spawn()
        .expect("spawn the peer's client");
    let Output { status, stdout, stderr } =
        tokio::time::timeout(LIMIT, child.wait_with_output()).await.expect("peer client timed out").unwrap();
    let (out, err) = (String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    // The client has exited, so the connection is over: the server's side
    // of the story first, then the client's verdict.
    let side = match tokio::time::timeout(LIMIT, server).await {
        Ok(Ok(Ok(side))) => Ok(side),
        Ok(Ok(Err(e))) => Err(format!("wsx server error: {e}")),
        Ok(Err(e)) => Err(format!("wsx server task: {e}")),
        Err(_) => Err("the wsx server did not finish".to_owned()),
    };
    let server_said = side.as_ref().err().map_or("", String::as_str);
    assert!(status.success(), "{who}: the peer client failed ({status}) {server_said}\nstdout:\n{out}\nstderr:\n{err}");
    let n = shapes().len();
    assert!(out.contains(&format!("ok {n} messages")), "{who}: unexpected client output:\n{out}\n{err}");
    let side = side.unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(side.received, shapes(), "{who}: messages received by the wsx server");
    assert_eq!(side.close, Some(CloseCode::Normal), "{who}: the peer's close frame");
    check_negotiated(expect, side.extensions.as_deref(), side.compression, &negotiated_line(&out, &who), &who);
}

// ---------------------------------------------------------------- configurations

/// wsx with permessage-deflate, context takeover both ways, and every
/// message compressed (threshold 0, so 0 and 1 byte messages are too).
fn deflate_context_takeover() -> Config {
    Config::default().with_deflate(DeflateConfig::default().with_threshold(0))
}

/// wsx with permessage-deflate without context takeover (the server's
/// default), every message compressed.
fn deflate_no_context_takeover() -> Config {
    Config::default().with_deflate(DeflateConfig::server_default().with_threshold(0))
}

// ---------------------------------------------------------------- Node ws

use BigRandom::{Compressed, Uncompressed};
use Peer::{NodeWs, PythonWebsockets};

/// wsx compresses all ten messages, the 16 MiB random one too.
#[tokio::test]
async fn wsx_client_to_node_ws_server_deflate_context_takeover() {
    wsx_client_to_peer_server(NodeWs, "context-takeover", deflate_context_takeover(), TAKEOVER, Compressed).await;
}

/// The client offers context takeover; the server imposes none both ways.
#[tokio::test]
async fn wsx_client_to_node_ws_server_deflate_no_context_takeover() {
    let config = deflate_context_takeover();
    wsx_client_to_peer_server(NodeWs, "no-context-takeover", config, NO_TAKEOVER, Uncompressed).await;
}

/// wsx offers permessage-deflate; the server declines.
#[tokio::test]
async fn wsx_client_to_node_ws_server_no_compression() {
    wsx_client_to_peer_server(NodeWs, "off", deflate_context_takeover(), Expect::Off, Uncompressed).await;
}

#[tokio::test]
async fn node_ws_client_to_wsx_server_deflate_context_takeover() {
    peer_client_to_wsx_server(NodeWs, "context-takeover", deflate_context_takeover(), TAKEOVER, Uncompressed).await;
}

/// The client offers context takeover; the wsx server imposes none.
#[tokio::test]
async fn node_ws_client_to_wsx_server_deflate_no_context_takeover() {
    let config = deflate_no_context_takeover();
    peer_client_to_wsx_server(NodeWs, "context-takeover", config, NO_TAKEOVER, Uncompressed).await;
}

/// The client offers nothing; the wsx server would accept.
#[tokio::test]
async fn node_ws_client_to_wsx_server_no_compression() {
    peer_client_to_wsx_server(NodeWs, "off", deflate_no_context_takeover(), Expect::Off, Uncompressed).await;
}

/// A server memory preset (dedicated compressor, window bits 9, memLevel
/// 1): ws's client is told both windows, and Node's zlib inflates what
/// stock zlib made with them (and the reverse), context kept throughout.
#[tokio::test]
async fn node_ws_client_to_wsx_server_dedicated_3k_preset() {
    let config =
        Config::default().with_deflate(DeflateConfig::preset(CompressionPreset::Dedicated3K).with_threshold(0));
    let expect = Expect::Deflate("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9");
    peer_client_to_wsx_server(NodeWs, "context-takeover", config, expect, Compressed).await;
}

// ---------------------------------------------------------------- Python websockets

/// websockets' default answer: context takeover, server_max_window_bits=12
/// and client_max_window_bits=12 (so wsx compresses with a 4 KiB window).
#[tokio::test]
async fn wsx_client_to_python_websockets_server_default_compression() {
    let config = deflate_context_takeover();
    let expect = Expect::Deflate("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12");
    wsx_client_to_peer_server(PythonWebsockets, "default", config, expect, Uncompressed).await;
}

#[tokio::test]
async fn wsx_client_to_python_websockets_server_no_context_takeover() {
    let config = deflate_context_takeover();
    let expect = Expect::Deflate(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=12; client_max_window_bits=12",
    );
    wsx_client_to_peer_server(PythonWebsockets, "no-context-takeover", config, expect, Uncompressed).await;
}

#[tokio::test]
async fn wsx_client_to_python_websockets_server_no_compression() {
    wsx_client_to_peer_server(PythonWebsockets, "off", deflate_context_takeover(), Expect::Off, Uncompressed).await;
}

/// Both at their defaults: the client offers context takeover, the wsx
/// server answers with none. The wsx server compresses all ten echoes,
/// the 16 MiB random one too.
#[tokio::test]
async fn python_websockets_client_to_wsx_server_default_compression() {
    let config = deflate_no_context_takeover();
    peer_client_to_wsx_server(PythonWebsockets, "default", config, NO_TAKEOVER, Compressed).await;
}

/// A server memory preset (window bits 10, memLevel 3) with websockets'
/// default client offer.
#[tokio::test]
async fn python_websockets_client_to_wsx_server_dedicated_8k_preset() {
    let config =
        Config::default().with_deflate(DeflateConfig::preset(CompressionPreset::Dedicated8K).with_threshold(0));
    let expect = Expect::Deflate("permessage-deflate; server_max_window_bits=10; client_max_window_bits=10");
    peer_client_to_wsx_server(PythonWebsockets, "default", config, expect, Compressed).await;
}

#[tokio::test]
async fn python_websockets_client_to_wsx_server_deflate_context_takeover() {
    let config = deflate_context_takeover();
    peer_client_to_wsx_server(PythonWebsockets, "default", config, TAKEOVER, Uncompressed).await;
}

#[tokio::test]
async fn python_websockets_client_to_wsx_server_no_compression() {
    peer_client_to_wsx_server(PythonWebsockets, "off", deflate_no_context_takeover(), Expect::Off, Uncompressed).await;
}

// ---------------------------------------------------------------- the harness itself

#[test]
fn messages_have_the_shapes_the_peers_send() {
    let got: Vec<(bool, usize)> = messages(7).iter().map(|m| (m.is_text(), m.len())).collect();
    assert_eq!(got, shapes());
    // The pseudo-random payloads are not compressible, the others are.
    let ratio = |b: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap().len() as f64 / b.len() as f64
    };
    let m = messages(7);
    assert!(ratio(m[4].as_bytes()) < 0.1, "compressible text");
    assert!(ratio(m[5].as_bytes()) > 0.99, "random binary");
    assert!(ratio(m[9].as_bytes()) < 0.1, "compressible binary");
}
