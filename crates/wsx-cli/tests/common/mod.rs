//! Running the `wsx` binary from tests: a server on a free port, clients,
//! plain HTTP requests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The `wsx` binary under test.
pub fn wsx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsx"))
}

/// A `wsx serve` child, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// host:port
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `wsx serve --port 0 --threads 1 EXTRA...` and read its address
/// from the first stdout line: `ws://ADDR`, or with the TLS flags
/// `wss://localhost:PORT/` (the tests' certificates name localhost).
pub fn serve(extra: &[&str]) -> Server {
    let mut child = wsx()
        .args(["serve", "--port", "0", "--threads", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wsx serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let printed = line.split_whitespace().find(|w| w.starts_with("ws://") || w.starts_with("wss://"));
    let printed = printed.unwrap_or_else(|| panic!("no address in {line:?}"));
    let (scheme, rest) = printed.split_once("://").expect("a URL");
    let addr = rest.trim_end_matches('/').to_owned();
    let url = match scheme {
        "wss" => format!("wss://localhost:{}/", addr.rsplit(':').next().expect("a port")),
        _ => printed.to_owned(),
    };
    Server { child, url, addr }
}

/// Run `wsx ARGS` with `stdin` as input; bounded by `limit`.
pub fn run(args: &[&str], stdin: &str, limit: Duration) -> Output {
    let mut child = wsx()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wsx");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("wsx {args:?} still running after {limit:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A plain HTTP/1.1 request; returns (status, head, body).
pub fn http_get(addr: &str, target: &str) -> (u16, String, Vec<u8>) {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(tcp, "GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), raw[end..].to_vec())
}

/// A fresh empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsx-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
