//! WebSockets over HTTP/2 (RFC 8441) with a real browser: headless
//! Chromium (Debian's package, driven by playwright-core) loads a page over
//! https from `wsx serve --tls-cert --tls-key --static tests/browser/http2`
//! and opens its `wss://` WebSockets to the same origin, which Chromium
//! does as extended CONNECT streams of the HTTP/2 connection that brought
//! the page, because the server's SETTINGS allow it.
//!
//! The certificate is made here (a throw-away CA signs one for localhost
//! and 127.0.0.1); Chromium trusts it by its public key
//! (`--ignore-certificate-errors-spki-list`), so the page is a secure
//! context on a real TLS connection. `tests/browser/http2.js` runs the
//! page's cases (`tests/browser/http2/`): the page and its script came over
//! h2; six sockets opened at once with interleaved echoes (1 MiB on one);
//! text and ArrayBuffer echoes of 0 B to 16 MiB compared byte for byte; a
//! close with 4001 seen by the page's close event, and each held socket
//! closed with its own code.
//!
//! The proof that the sockets went over HTTP/2, on one connection, is the
//! server's `/metrics`: `wsx_websockets_opened_total{http="2"}` equals the
//! sockets the page opened and `{http="1.1"}` is 0; and while the six
//! sockets are open, `wsx_connections` (each HTTP/2 connection and each of
//! its streams count) is 6 + 2 both as this test reads it on a connection
//! of its own (Chromium's one connection, its six streams, this request's
//! connection) and as the page fetches it over h2 (Chromium's connection,
//! six streams, the fetch's stream): with a second connection from
//! Chromium, or a socket over HTTP/1.1, neither could hold.
//!
//! `scripts/install-browser` installs Chromium and playwright-core.
//! Without them the test prints a notice and passes, except under CI (`CI`
//! set), where it fails.

#![cfg(unix)]

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "../../wsx/tests/support/pki.rs"]
mod pki;

use browser::{in_ci, prerequisites, repo_root};
use common::serve;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The whole browser run; the driver's own watchdog fires a bit earlier.
const LIMIT: Duration = Duration::from_secs(170);
/// Sockets the page holds open at once.
const SOCKETS: u64 = 6;
const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

/// `GET /metrics` on a TLS connection of its own that offers HTTP/1.1
/// alone (so that it is one connection and no HTTP/2 stream).
fn metrics(port: u16, ca: &pki::Ca) -> String {
    use wsx::tls::rustls;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(ca.client_config(), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(tls, "GET /metrics HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n").unwrap();
    tls.flush().unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // The body's end is the Content-Length (a missing close_notify is
        // no concern here).
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a content-length");
            if raw.len() >= end + 4 + len {
                assert!(head.starts_with("http/1.1 200"), "GET /metrics: {head}");
                assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
                return String::from_utf8(raw[end + 4..end + 4 + len].to_vec()).unwrap();
            }
        }
        match tls.read(&mut buf) {
            Ok(0) => panic!("GET /metrics: the connection ended early: {:?}", String::from_utf8_lossy(&raw)),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("GET /metrics: {e}"),
        }
    }
}

/// The value of the sample `name` (with its labels) in a metrics text.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

const CONNECTIONS: &str = "wsx_connections";
const OPENED_H2: &str = "wsx_websockets_opened_total{http=\"2\"}";
const OPENED_H1: &str = "wsx_websockets_opened_total{http=\"1.1\"}";

/// The driver, killed if the test ends before it.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn chromium_opens_websockets_over_http2_on_the_pages_connection() {
    let node = match prerequisites() {
        Ok(node) => node,
        Err(why) if in_ci() => panic!("browser HTTP/2 test: {why}; run scripts/install-browser"),
        Err(why) => {
            eprintln!("skipping the Chromium HTTP/2 test: {why}; run scripts/install-browser to install it");
            return;
        }
    };
    let ca = pki::Ca::new("wsx browser http2 CA");
    let cert = ca.server_cert(&["localhost", "127.0.0.1"]);
    let dir = pki::TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    let page = repo_root().join("tests/browser/http2");
    let server = serve(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
        "--static",
        page.to_str().unwrap(),
    ]);
    let port: u16 = server.addr.rsplit(':').next().unwrap().parse().unwrap();

    let started = Instant::now();
    let mut child = Command::new(&node)
        .arg(repo_root().join("tests/browser/http2.js"))
        .args(["--url", &format!("https://127.0.0.1:{port}/"), "--cert", cert_path.to_str().unwrap()])
        .args(["--sockets", &SOCKETS.to_string(), "--hold"])
        .env("WSX_BROWSER_TIMEOUT_MS", (LIMIT.as_millis() - 10_000).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let (stdout, mut stderr, mut stdin) =
        (child.stdout.take().unwrap(), child.stderr.take().unwrap(), child.stdin.take());
    let mut driver = Driver(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    // The driver's lines; at `hold N`, the server's metrics as this test
    // reads them while the page holds its sockets open.
    let mut out = Vec::new();
    let mut held = None;
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    loop {
        // Its lines are all written when the driver exits; Chromium's
        // helpers may hold the pipe open longer, so its end is not waited for.
        if exited.is_none() {
            exited = driver.0.try_wait().unwrap().map(|status| (status, Instant::now()));
        }
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if line.starts_with("hold ") {
                    held = Some(metrics(port, &ca));
                    let mut go = stdin.take().expect("one hold");
                    writeln!(go, "go").unwrap();
                }
                out.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) if exited.is_some() => break,
            Err(_) if exited.is_some_and(|(_, at)| at.elapsed() > Duration::from_millis(500)) => break,
            Err(_) => {}
        }
        assert!(started.elapsed() < LIMIT, "http2.js still running after {LIMIT:?}:\n{}", out.join("\n"));
    }
    let status = exited.unwrap().0;
    let out = out.join("\n");
    eprintln!("{out}");
    let err = err.join().unwrap();
    if !err.trim().is_empty() {
        eprintln!("http2.js stderr:\n{err}");
    }
    eprintln!("browser http2: {:.1} s", started.elapsed().as_secs_f64());

    let failed: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("FAIL ")).collect();
    assert!(failed.is_empty(), "{} browser HTTP/2 case(s) failed:\n  {}", failed.len(), failed.join("\n  "));
    assert!(status.success(), "http2.js exited with {status}");
    assert!(out.lines().any(|l| l.starts_with("browser http2: ") && l.contains(" 0 failed")), "no summary line");
    let passed: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("ok   ")).collect();
    let mut expected = vec![
        "the page over HTTP/2 ".to_owned(),
        format!("{SOCKETS} sockets at once, "),
        format!("close the {SOCKETS} held sockets with their own codes "),
        "close(4001, \"bye\") by the page ".to_owned(),
    ];
    for kind in ["text", "arraybuffer"] {
        expected.extend(SIZES.iter().map(|size| format!("echo {kind} {size} B ")));
    }
    for e in &expected {
        assert!(passed.iter().any(|l| l.starts_with(e.as_str())), "no passed case starting with {e:?}");
    }

    // While the sockets were open: one connection from Chromium with a
    // stream for each socket, as this test saw it ...
    let held = held.expect("the driver never held its sockets open");
    eprintln!("metrics while {SOCKETS} sockets were open, read on a connection of the test's own:\n{held}");
    assert_eq!(sample(&held, OPENED_H2), SOCKETS, "WebSockets over HTTP/2 so far");
    assert_eq!(sample(&held, OPENED_H1), 0, "WebSockets over HTTP/1.1 so far");
    assert_eq!(
        sample(&held, CONNECTIONS),
        SOCKETS + 2,
        "Chromium's one connection + {SOCKETS} streams + the test's own connection"
    );
    // ... and as the page fetched it, on that connection.
    let page_view = out.lines().find_map(|l| l.strip_prefix("metrics-page ")).expect("a metrics-page line");
    let page_view: serde_json::Value = serde_json::from_str(page_view).unwrap();
    assert_eq!(page_view["protocol"], "h2", "the page's fetch of /metrics");
    assert_eq!(page_view["held"], SOCKETS);
    let text = page_view["text"].as_str().unwrap();
    assert_eq!(sample(text, OPENED_H2), SOCKETS);
    assert_eq!(
        sample(text, CONNECTIONS),
        SOCKETS + 2,
        "Chromium's one connection + {SOCKETS} streams + the fetch's stream"
    );

    // Every WebSocket the page opened went over HTTP/2.
    let opened: u64 =
        out.lines().find_map(|l| l.strip_prefix("opened ")).and_then(|n| n.parse().ok()).expect("an `opened N` line");
    assert_eq!(opened, SOCKETS + 3, "the sockets of the page's cases");
    let end = metrics(port, &ca);
    assert_eq!(sample(&end, OPENED_H2), opened, "{end}");
    assert_eq!(sample(&end, OPENED_H1), 0, "{end}");
    // The browser is gone: nothing left but this request's connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = end;
    while sample(&now, CONNECTIONS) != 1 {
        assert!(Instant::now() < deadline, "connections still served after the browser closed:\n{now}");
        std::thread::sleep(Duration::from_millis(100));
        now = metrics(port, &ca);
    }
}
