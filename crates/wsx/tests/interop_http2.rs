//! Interop over HTTP/2 (RFC 8441) with Node's built-in `http2` module as
//! the peer, in both roles. Node brings the HTTP/2 (ALPN, SETTINGS,
//! extended CONNECT, flow control); the WebSocket framing on its side is
//! the small one of `tests/interop/node/h2-ws.mjs`, so no WebSocket
//! library is involved on the other end.
//!
//! - Node as the client (`h2-client.mjs`) against `wsx::server::Server`
//!   with TLS: it waits for SETTINGS_ENABLE_CONNECT_PROTOCOL, opens every
//!   WebSocket as an extended CONNECT stream of one connection, and checks
//!   echoes (text and binary, 0 B to 1 MiB, fragments, 4 sockets at once),
//!   a close with 4001 and the refusals (501, 405, 426); the server counts
//!   every WebSocket as HTTP/2.
//! - Node as the server (`h2-server.mjs`) against `wsx::connect` with
//!   HTTP/2 required: echoes of 0 B to 16 MiB, sockets sharing Node's one
//!   session, a close with 4001, and the request Node saw (`:protocol
//!   websocket`, `:scheme https`, no `Sec-WebSocket-Key`).
//! - Node's server without `enableConnectProtocol`: HTTP/2 required fails
//!   with `Unavailable::NoExtendedConnect`, and the default (auto) falls
//!   back to HTTP/1.1 on a new connection.
//!
//! Node (18 or newer) on PATH is all they need (`scripts/install-interop`
//! checks it). Without it the tests print a notice and pass, except under
//! CI (`CI` set), where they fail.

#[path = "support/pki.rs"]
mod pki;

use pki::{Ca, TempDir};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use wsx::http2::{Mode, Unavailable};
use wsx::server::{Request, Server};
use wsx::{CloseCode, Config, Error, Message, WebSocket};

/// Upper bound for one peer process or one exchange.
const LIMIT: Duration = Duration::from_secs(60);
/// Largest message either end accepts.
const MAX_MESSAGE: usize = 32 << 20;

// ---------------------------------------------------------------- the peer

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn which(program: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("which").arg(program).output().ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// Node, or `None` (after a notice) to skip; under CI a missing Node fails.
fn node() -> Option<PathBuf> {
    let found = which("node").ok_or_else(|| "`node` is not on PATH".to_owned()).and_then(|node| {
        let out = std::process::Command::new(&node).arg("--version").output().map_err(|e| e.to_string())?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let major: u32 = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        if major < 18 {
            return Err(format!("Node {version} is too old (18 or newer)"));
        }
        Ok(node)
    });
    match found {
        Ok(node) => Some(node),
        Err(why) if in_ci() => panic!("HTTP/2 interop peer missing: {why}; run scripts/install-interop"),
        Err(why) => {
            eprintln!("skipping the Node http2 interop test: {why}; run scripts/install-interop");
            None
        }
    }
}

fn script(node: &Path, name: &str) -> Command {
    let dir = repo_root().join("tests/interop/node");
    let mut c = Command::new(node);
    c.arg(dir.join(name))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn read_all(mut r: impl AsyncRead + Unpin) -> String {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    String::from_utf8_lossy(&v).into_owned()
}

/// A certificate for `localhost` signed by a fresh CA, on disk.
struct Pki {
    ca: Ca,
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        Self { ca: Ca::new("wsx http2 interop CA"), dir: TempDir::new() }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.write("ca.pem", &self.ca.cert_pem)
    }

    /// (certificate, key) files for `localhost`.
    fn server_files(&self) -> (PathBuf, PathBuf) {
        let cert = self.ca.server_cert(&["localhost"]);
        (self.dir.write("cert.pem", &cert.cert_pem), self.dir.write("key.pem", &cert.key_pem))
    }
}

// ---------------------------------------------------------------- Node client, wsx server

/// What the wsx server saw of one WebSocket.
#[derive(Debug)]
struct Seen {
    path: String,
    http: http::Version,
    messages: usize,
    close: Option<CloseCode>,
}

#[tokio::test]
async fn node_http2_client_against_wsx_server() {
    let Some(node) = node() else { return };
    let pki = Pki::new();
    let server = Server::builder()
        .config(Config::default().with_max_message_size(MAX_MESSAGE))
        .tls(pki::acceptor(&pki.ca, &["localhost"]))
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(listener, move |req: Request| {
            let tx = tx.clone();
            async move {
                if !req.is_upgrade() {
                    return req.respond(wsx::handshake::Reject::new(404, "no\n").into_response()).await;
                }
                let (path, http) = (req.path().to_owned(), req.head().request().version());
                let mut ws = req.upgrade(wsx::handshake::Accept::new()).await?;
                let (mut messages, mut close) = (0, None);
                while let Some(msg) = ws.recv().await {
                    match msg? {
                        m @ (Message::Text(_) | Message::Binary(_)) => {
                            messages += 1;
                            ws.feed(m).await?;
                        }
                        Message::Close(f) => close = Some(f.map_or(CloseCode::NoStatus, |f| f.code)),
                        _ => {}
                    }
                }
                let _ = tx.send(Seen { path, http, messages, close });
                Ok::<_, wsx::Error>(())
            }
        })
        .await
    });

    let ca = pki.ca_file();
    let child = script(&node, "h2-client.mjs")
        .args(["--port", &port.to_string(), "--ca", ca.to_str().unwrap()])
        .spawn()
        .expect("run node h2-client.mjs");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.expect("h2-client.mjs timed out").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "Node's http2 client: {}\nstderr:\n{stderr}", failed.join("\n"));
    assert!(out.status.success(), "h2-client.mjs exited with {}\n{stdout}\nstderr:\n{stderr}", out.status);
    for case in ["echo", "fragments", "together", "close", "refused"] {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("ok   {case}: "))), "no passed case {case}:\n{stdout}");
    }
    let opened: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("opened "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `opened N` line:\n{stdout}"));
    assert_eq!(opened, 8, "the WebSockets the client opened");

    // Every WebSocket went over HTTP/2, and ended with the close it was sent.
    let mut all = Vec::new();
    while all.len() < opened as usize {
        let s = tokio::time::timeout(LIMIT, seen.recv()).await.expect("a WebSocket's end").unwrap();
        all.push(s);
    }
    assert_eq!(server.websockets_opened(http::Version::HTTP_2), opened);
    assert_eq!(server.websockets_opened(http::Version::HTTP_11), 0);
    assert!(all.iter().all(|s| s.http == http::Version::HTTP_2), "{all:?}");
    let by_path = |p: &str| all.iter().find(|s| s.path == p).unwrap_or_else(|| panic!("no WebSocket at {p}: {all:?}"));
    assert_eq!(by_path("/echo").messages, 14);
    assert_eq!(by_path("/fragments").messages, 1);
    assert_eq!(by_path("/close").close, Some(CloseCode::from(4001)));
    assert_eq!(all.iter().filter(|s| s.path.starts_with("/together/")).map(|s| s.messages).sum::<usize>(), 64);
    assert!(
        all.iter().filter(|s| s.path != "/close").all(|s| s.close == Some(CloseCode::Normal)),
        "every other socket closed with 1000: {all:?}"
    );
}

// ---------------------------------------------------------------- wsx client, Node server

/// `h2-server.mjs` and the lines it logs.
struct NodeServer {
    _child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl NodeServer {
    async fn start(node: &Path, pki: &Pki, extra: &[&str]) -> Self {
        let (cert, key) = pki.server_files();
        let mut child = script(node, "h2-server.mjs")
            .args(["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()])
            .args(extra)
            .spawn()
            .expect("run node h2-server.mjs");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let read = tokio::time::timeout(LIMIT, stdout.read_line(&mut line)).await;
        let Some(port) = read.ok().and_then(|r| r.ok()).and_then(|_| line.trim().parse().ok()) else {
            let _ = child.start_kill();
            panic!("h2-server.mjs printed no port ({line:?}): {}", read_all(child.stderr.take().unwrap()).await);
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(l)) = stderr.next_line().await {
                lines.lock().unwrap().push(l);
            }
        });
        Self { _child: child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.port)
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.lines().iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// Wait until `n` lines start with `prefix` (Node logs a close after answering it).
    async fn wait_for(&self, prefix: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.count(prefix) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "h2-server.mjs logged {} line(s) {prefix:?}, expected {n}:\n{}",
                self.count(prefix),
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Pseudo-random bytes (xorshift64*).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Text of exactly `n` UTF-8 bytes, with 1- to 4-byte characters.
fn text(n: usize, seed: u64) -> String {
    const ALPHABET: [char; 8] = ['a', 'Z', ' ', '\u{e9}', '\u{2713}', '\u{4e2d}', '\u{1F600}', '\u{10348}'];
    let mut s = String::with_capacity(n);
    for b in bytes(n, seed) {
        let c = ALPHABET[b as usize % ALPHABET.len()];
        if s.len() + c.len_utf8() > n {
            break;
        }
        s.push(c);
    }
    while s.len() < n {
        s.push('x');
    }
    s
}

/// Send `m` and check that its echo comes back, same type, same bytes.
async fn round_trip<S>(ws: &mut WebSocket<S>, m: Message, what: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(m.clone()).await.unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let echo = loop {
        match tokio::time::timeout(LIMIT, ws.recv()).await.unwrap_or_else(|_| panic!("{what}: no echo")) {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(echo)) => break echo,
            other => panic!("{what}: waiting for the echo: {other:?}"),
        }
    };
    assert_eq!(echo.is_text(), m.is_text(), "{what}: the echo's type");
    assert!(echo.as_bytes() == m.as_bytes(), "{what}: the echo ({} bytes) differs", echo.len());
}

/// Close with `code`; the peer's close frame must carry it back.
async fn close_with<S>(mut ws: WebSocket<S>, code: u16)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.close(CloseCode::from(code), "bye").await.unwrap();
    let mut answer = None;
    while let Some(m) = tokio::time::timeout(LIMIT, ws.recv()).await.expect("the closing handshake") {
        if let Message::Close(f) = m.expect("the closing handshake") {
            answer = f.map(|f| f.code);
        }
    }
    assert_eq!(answer, Some(CloseCode::from(code)), "the peer's close frame");
}

const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

#[tokio::test]
async fn wsx_client_over_http2_against_node_http2_server() {
    let Some(node) = node() else { return };
    let pki = Pki::new();
    let peer = NodeServer::start(&node, &pki, &[]).await;
    let config = Config::default()
        .with_tls_config(pki.ca.client_config())
        .with_http2(Mode::Required)
        .with_max_message_size(MAX_MESSAGE);

    let (mut ws, response) = wsx::connect_with(peer.url("/echo"), &config).await.expect("HTTP/2 to Node");
    assert_eq!(response.status(), 200);
    assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_2);
    for (i, size) in SIZES.into_iter().enumerate() {
        round_trip(&mut ws, Message::text(text(size, i as u64)), &format!("text of {size} B")).await;
        round_trip(&mut ws, Message::binary(bytes(size, 100 + i as u64)), &format!("binary of {size} B")).await;
    }
    close_with(ws, 1000).await;

    // Three at once, on the same HTTP/2 connection as the first.
    let opened =
        futures_util::future::join_all((0..3).map(|i| wsx::connect_with(peer.url(&format!("/together/{i}")), &config)))
            .await;
    let mut sockets = Vec::new();
    for r in opened {
        let (ws, _) = r.expect("HTTP/2 to Node");
        assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_2);
        sockets.push(ws);
    }
    for round in 0..8u64 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            let m = Message::binary(bytes(1000 * (i + 1) + round as usize, round));
            ws.send(m).await.unwrap();
        }
        for (i, ws) in sockets.iter_mut().enumerate() {
            let want = bytes(1000 * (i + 1) + round as usize, round);
            let got = tokio::time::timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
            assert_eq!(got.as_bytes(), &want[..], "socket {i}, round {round}");
        }
    }
    for ws in sockets {
        close_with(ws, 1000).await;
    }

    let (mut ws, _) = wsx::connect_with(peer.url("/close"), &config).await.expect("HTTP/2 to Node");
    round_trip(&mut ws, Message::text("before close"), "before close").await;
    close_with(ws, 4001).await;

    peer.wait_for("closed ", 5).await;
    let lines = peer.lines();
    let log = lines.join("\n");
    assert_eq!(peer.count("session alpn=h2"), 1, "one HTTP/2 connection for every socket:\n{log}");
    assert_eq!(peer.count("connect "), 5, "{log}");
    let mut paths = Vec::new();
    for l in lines.iter().filter_map(|l| l.strip_prefix("connect ")) {
        let field = |name: &str| l.split(' ').find_map(|w| w.strip_prefix(name)?.strip_prefix('=')).unwrap_or("");
        let authority = format!("localhost:{}", peer.port);
        assert_eq!(
            [field("method"), field("protocol"), field("scheme"), field("authority"), field("version"), field("key")],
            ["CONNECT", "websocket", "https", authority.as_str(), "13", "absent"],
            "the extended CONNECT Node saw: {l}"
        );
        paths.push(field("path").to_owned());
    }
    paths.sort();
    assert_eq!(paths, ["/close", "/echo", "/together/0", "/together/1", "/together/2"]);
    assert!(lines.iter().any(|l| l == "closed code=4001 reason=bye"), "{log}");
    assert_eq!(peer.count("closed code=1000"), 4, "{log}");
    assert_eq!(peer.count("h1-upgrade"), 0, "{log}");
    assert_eq!(peer.count("error"), 0, "{log}");
}

#[tokio::test]
async fn wsx_client_falls_back_to_http_1_1_when_node_has_no_extended_connect() {
    let Some(node) = node() else { return };
    let pki = Pki::new();
    let peer = NodeServer::start(&node, &pki, &["--no-connect-protocol"]).await;
    let config = Config::default().with_tls_config(pki.ca.client_config()).with_max_message_size(MAX_MESSAGE);

    // HTTP/2 required: the typed error, and no HTTP/1.1 connection.
    let err = wsx::connect_with(peer.url("/required"), &config.clone().with_http2(Mode::Required)).await.unwrap_err();
    assert!(matches!(err, Error::Http2Unavailable(Unavailable::NoExtendedConnect)), "{err:?}");
    assert_eq!(peer.count("h1-upgrade"), 0, "{}", peer.lines().join("\n"));

    // Auto (the default): HTTP/1.1 on a new connection.
    let (mut ws, response) = wsx::connect_with(peer.url("/auto"), &config).await.expect("HTTP/1.1 to Node");
    assert_eq!(response.status(), 101);
    assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_11);
    assert_eq!(ws.get_ref().tls_connection().unwrap().alpn_protocol(), Some(&b"http/1.1"[..]));
    round_trip(&mut ws, Message::text(text(1000, 1)), "text over HTTP/1.1").await;
    round_trip(&mut ws, Message::binary(bytes(1 << 20, 2)), "1 MiB over HTTP/1.1").await;
    close_with(ws, 4001).await;

    peer.wait_for("closed ", 1).await;
    let log = peer.lines().join("\n");
    assert!(peer.count("session alpn=h2") >= 1, "wsx offered h2 first:\n{log}");
    assert_eq!(peer.count("connect "), 0, "no CONNECT without SETTINGS_ENABLE_CONNECT_PROTOCOL:\n{log}");
    assert_eq!(peer.count("h1-upgrade path=/auto version=13"), 1, "{log}");
    assert!(log.contains("closed code=4001 reason=bye"), "{log}");
    assert_eq!(peer.count("error"), 0, "{log}");
}
