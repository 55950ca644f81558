//! Socket.IO interop with the real clients: the official `socket.io-client`
//! 4.8 in Node and (its `dist/socket.io.min.js` bundle) in headless Chromium,
//! and `python-socketio` 5, each running the checks of
//! `tests/socketio/CONTRACT.md` against a server that serves that contract.
//!
//! The server is started from a command line (`server_command()`): by
//! default wsx-hub's (`examples/socketio-interop.rs`, built with the tests);
//! `WSX_SIO_SERVER=reference` runs the official Node `socket.io` 4.8 server
//! (`tests/socketio/node/reference-server.mjs`), which validates the checks
//! themselves, and `WSX_SIO_SERVER="… {port} …"` any other. The
//! command runs from the repository's root through `sh -c`, `{port}` is
//! replaced by a free loopback port, and the server must print
//! `listening PORT` on stdout once it accepts connections on
//! 127.0.0.1:PORT. It is stopped (SIGTERM to its process group, then
//! SIGKILL) at the end of each test.
//!
//! Each client prints one JSON line per check (`{"client", "mode", "check",
//! "ok", "ms", "detail"}`) and a summary; a test fails on a non-zero exit,
//! on any `"ok": false`, or when a check is missing from the output, and
//! shows the failed checks with the server's log.
//!
//! The peers are installed by `scripts/install-socketio` (Node packages in
//! `tests/socketio/node/node_modules`, python-socketio in the interop
//! virtualenv `${WSX_INTEROP_VENV:-$HOME/.cache/wsx-interop-venv}`) and
//! `scripts/install-browser` (Chromium, playwright-core). Without them the
//! tests are skipped with a notice, or fail when `CI` is set.
//!
//!   scripts/install-socketio && scripts/install-browser
//!   cargo test -p wsx-hub --test socketio_interop
//!   WSX_SIO_SERVER=reference WSX_SIO_CLUSTER_SERVER=reference cargo test -p wsx-hub --test socketio_interop

#[path = "common/redis.rs"]
mod redis_server;

use redis_server::RedisServer;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server has to print `listening PORT` (a `cargo run` may build first).
const SERVER_START: Duration = Duration::from_secs(120);
/// Upper bound for one client run (the clients' own watchdog is 60 s).
const CLIENT_LIMIT: Duration = Duration::from_secs(90);

/// The checks of one mode, as the clients name them (without "two nodes").
const CHECKS: [&str; 11] = [
    "connect and transport",
    "whoami",
    "join, publish, leave",
    "acks",
    "ack timeout",
    "binary",
    "namespaces",
    "middleware refusal",
    "heartbeat",
    "payload limit",
    "state recovery",
];

// ---------------------------------------------------------------- the server

/// The server under test: a command line with a `{port}` placeholder, run
/// by `sh -c` from the repository's root: wsx's Socket.IO server by
/// default, the official one with `WSX_SIO_SERVER=reference`, any other
/// with `WSX_SIO_SERVER="… {port} …"`.
fn server_command() -> Result<String, String> {
    match std::env::var("WSX_SIO_SERVER").ok().filter(|c| !c.trim().is_empty()) {
        Some(r) if r == "reference" => reference_server_command(),
        Some(cmd) => Ok(cmd),
        None => wsx_server_command(),
    }
}

/// `examples/socketio-interop.rs`, which `cargo test` builds beside this
/// test: `target/<profile>/examples/socketio-interop`.
fn wsx_server_command() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe.parent().and_then(Path::parent).ok_or("no target directory")?;
    let example = profile_dir.join("examples/socketio-interop");
    if !example.is_file() {
        return Err(format!("{} is not built (cargo test builds it)", example.display()));
    }
    Ok(format!("exec {} {{port}}", example.display()))
}

/// One node of a cluster, for the two-node check: a command line with
/// `{port}` and `{redis}` (a `redis://127.0.0.1:PORT` URL of the
/// redis-server that the test starts; two nodes share it): wsx's by
/// default, the official server with its Redis Streams adapter with
/// `WSX_SIO_CLUSTER_SERVER=reference`.
fn two_node_command() -> Result<String, String> {
    match std::env::var("WSX_SIO_CLUSTER_SERVER").ok().filter(|c| !c.trim().is_empty()) {
        Some(r) if r == "reference" => Ok(format!("{} --redis {{redis}}", reference_server_command()?)),
        Some(cmd) => Ok(cmd),
        None => Ok(format!("{} --redis {{redis}}", wsx_server_command()?)),
    }
}

/// The official server: `node tests/socketio/node/reference-server.mjs {port}`.
fn reference_server_command() -> Result<String, String> {
    let node = which("node").ok_or("`node` is not on PATH")?;
    let dir = repo_root().join("tests/socketio/node");
    for pkg in ["socket.io", "@socket.io/redis-streams-adapter", "redis"] {
        if !dir.join("node_modules").join(pkg).join("package.json").is_file() {
            return Err(format!("the {pkg} package is not installed in {}", dir.join("node_modules").display()));
        }
    }
    Ok(format!("exec {} tests/socketio/node/reference-server.mjs {{port}}", node.display()))
}

/// A running server: its port, its output so far; stopped on drop.
struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    command: String,
}

impl Server {
    fn start(command: &str, vars: &[(&str, String)]) -> Server {
        let port = free_port();
        let mut line = command.replace("{port}", &port.to_string());
        for (k, v) in vars {
            line = line.replace(&format!("{{{k}}}"), v);
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &line])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group, so that stopping it stops what it started
        // (cargo run's child, say).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start the server `{line}`: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out_log = log.clone();
        thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(p) = l.strip_prefix("listening ").and_then(|p| p.trim().parse::<u16>().ok()) {
                    let _ = tx.send(p);
                }
                push_log(&out_log, &l);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let err_log = log.clone();
        thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                push_log(&err_log, &l);
            }
        });
        let mut server = Server { child, port, log, command: line };
        let t0 = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(p) => {
                    server.port = p;
                    return server;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if t0.elapsed() < SERVER_START => {
                    if let Ok(Some(status)) = server.child.try_wait() {
                        server.exited(status);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Its stdout closed: it has exited, or is about to.
                    for _ in 0..100 {
                        if let Ok(Some(status)) = server.child.try_wait() {
                            server.exited(status);
                        }
                        thread::sleep(Duration::from_millis(50));
                    }
                    panic!(
                        "the server `{}` closed its stdout before `listening PORT`:\n{}",
                        server.command,
                        server.log()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the server `{}` did not print `listening PORT` within {SERVER_START:?}:\n{}",
                    server.command,
                    server.log()
                ),
            }
        }
    }

    fn exited(&self, status: ExitStatus) -> ! {
        thread::sleep(Duration::from_millis(100)); // the rest of its stderr
        panic!("the server `{}` exited ({status}) before `listening PORT`:\n{}", self.command, self.log());
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

fn push_log(log: &Mutex<String>, line: &str) {
    let mut log = log.lock().unwrap();
    // Keep the last 64 KiB.
    if log.len() > 64 << 10 {
        let cut = log.len() - (48 << 10);
        let cut = (cut..log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(0);
        log.drain(..cut);
    }
    log.push_str(line);
    log.push('\n');
}

// ---------------------------------------------------------------- the clients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// tests/socketio/node/client.mjs: socket.io-client in Node.
    Node,
    /// tests/socketio/node/browser.mjs: the browser bundle in Chromium.
    Chromium,
    /// tests/socketio/python/client.py: python-socketio.
    Python,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether we run under CI, where a missing peer is a failure.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn which(program: &str) -> Option<PathBuf> {
    let out = Command::new("which").arg(program).output().ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

fn venv_dir() -> PathBuf {
    match std::env::var_os("WSX_INTEROP_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/wsx-interop-venv"),
    }
}

/// The program and script that run a client, or why they cannot.
fn locate(client: Client) -> Result<(PathBuf, PathBuf), String> {
    let root = repo_root();
    let node_dir = root.join("tests/socketio/node");
    match client {
        Client::Node | Client::Chromium => {
            let node = which("node").ok_or("`node` is not on PATH")?;
            if !node_dir.join("node_modules/socket.io-client/dist/socket.io.min.js").is_file() {
                return Err(format!(
                    "socket.io-client is not installed in {}",
                    node_dir.join("node_modules").display()
                ));
            }
            if client == Client::Node {
                return Ok((node, node_dir.join("client.mjs")));
            }
            let chromium =
                std::env::var_os("WSX_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
            if !chromium.is_file() {
                return Err(format!("no Chromium at {} (scripts/install-browser)", chromium.display()));
            }
            if !root.join("tests/browser/node_modules/playwright-core/package.json").is_file() {
                return Err("playwright-core is not installed in tests/browser (scripts/install-browser)".into());
            }
            Ok((node, node_dir.join("browser.mjs")))
        }
        Client::Python => {
            let python = venv_dir().join("bin/python");
            if !python.is_file() {
                return Err(format!("no virtualenv python at {}", python.display()));
            }
            let ok = Command::new(&python)
                .args(["-c", "import socketio, requests, websocket"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("{} cannot import python-socketio with its transports", python.display()));
            }
            Ok((python, root.join("tests/socketio/python/client.py")))
        }
    }
}

/// What a test needs: the client and the server command, or `None` (after
/// a notice) to skip it. Under CI anything missing fails the test.
fn prerequisites(client: Client) -> Option<((PathBuf, PathBuf), String)> {
    match locate(client).and_then(|c| Ok((c, server_command()?))) {
        Ok(found) => Some(found),
        Err(why) if in_ci() => {
            panic!("Socket.IO interop ({client:?}): {why}; run scripts/install-socketio and scripts/install-browser")
        }
        Err(why) => {
            eprintln!("skipping Socket.IO interop test ({client:?}): {why}; run scripts/install-socketio (and scripts/install-browser)");
            None
        }
    }
}

/// One client run: its exit status and output.
struct Run {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn run_client((program, script): &(PathBuf, PathBuf), args: &[String]) -> Run {
    let t0 = Instant::now();
    let mut child = Command::new(program)
        .arg(script)
        .args(args)
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", program.display(), script.display()));
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if t0.elapsed() > CLIENT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: t0.elapsed(),
    }
}

/// Checks a run: exit 0, every expected (mode, check) reported once with
/// `ok`, none failed. Panics with the failed checks and the server's log.
fn assert_run(client: Client, run: &Run, expected: &[(String, String)], servers: &[&Server]) {
    let mut failed = Vec::new();
    let mut seen = Vec::new();
    let mut skipped = Vec::new();
    for line in run.stdout.lines().filter(|l| l.starts_with('{')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            failed.push(format!("unreadable line: {line}"));
            continue;
        };
        let mode = v["mode"].as_str().unwrap_or("-").to_owned();
        let check = v["check"].as_str().unwrap_or("-").to_owned();
        if v["ok"] != serde_json::Value::Bool(true) {
            failed.push(format!("[{mode}] {check}: {}", v["detail"].as_str().unwrap_or("")));
        } else if v["skipped"] == serde_json::Value::Bool(true) {
            skipped.push(format!("[{mode}] {check}: {}", v["detail"].as_str().unwrap_or("")));
        }
        seen.push((mode, check));
    }
    for want in expected {
        match seen.iter().filter(|s| *s == want).count() {
            1 => {}
            n => failed.push(format!("[{}] {}: reported {n} times, expected once", want.0, want.1)),
        }
    }
    let summary = run.stdout.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or("(no summary line)");
    for s in &skipped {
        eprintln!("{client:?}: skipped {s}");
    }
    eprintln!("{client:?}: {summary} in {:.1} s", run.elapsed.as_secs_f64());
    let exit_ok = run.status.is_some_and(|s| s.success());
    if exit_ok && failed.is_empty() {
        return;
    }
    let status = run.status.map_or_else(|| format!("killed after {CLIENT_LIMIT:?}"), |s| s.to_string());
    let mut msg = format!("Socket.IO interop with {client:?} failed ({status}), {} failed check(s):\n", failed.len());
    for f in &failed {
        msg.push_str(&format!("  FAIL {f}\n"));
    }
    msg.push_str(&format!("summary: {summary}\n--- client stdout ---\n{}", run.stdout));
    msg.push_str(&format!("--- client stderr ---\n{}", tail(&run.stderr, 8000)));
    for s in servers {
        msg.push_str(&format!("--- server `{}` ---\n{}", s.command, tail(&s.log(), 8000)));
    }
    panic!("{msg}");
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn expected(modes: &[&str], checks: &[&str]) -> Vec<(String, String)> {
    modes.iter().flat_map(|m| checks.iter().map(move |c| (m.to_string(), c.to_string()))).collect()
}

/// Runs `client` in `modes` against a fresh server; asserts every check passed.
fn interop(client: Client, modes: &[&str]) {
    let Some((program, command)) = prerequisites(client) else { return };
    let server = Server::start(&command, &[]);
    let mut args = vec![server.url()];
    for m in modes {
        args.extend(["--mode".to_owned(), m.to_string()]);
    }
    let run = run_client(&program, &args);
    assert_run(client, &run, &expected(modes, &CHECKS), &[&server]);
}

// ---------------------------------------------------------------- tests

#[test]
fn node_client_polling_then_upgrade() {
    interop(Client::Node, &["upgrade"]);
}

#[test]
fn node_client_websocket_only() {
    interop(Client::Node, &["websocket"]);
}

#[test]
fn node_client_polling_only() {
    interop(Client::Node, &["polling"]);
}

#[test]
fn chromium_polling_then_upgrade() {
    interop(Client::Chromium, &["upgrade"]);
}

#[test]
fn chromium_websocket_only() {
    interop(Client::Chromium, &["websocket"]);
}

#[test]
fn chromium_polling_only() {
    interop(Client::Chromium, &["polling"]);
}

#[test]
fn python_client_polling_then_upgrade() {
    interop(Client::Python, &["upgrade"]);
}

#[test]
fn python_client_websocket_only() {
    interop(Client::Python, &["websocket"]);
}

#[test]
fn python_client_polling_only() {
    interop(Client::Python, &["polling"]);
}

/// Two nodes (`two_node_command()`) on one redis-server: a socket on each,
/// and a publish from either reaches the other exactly once (`--second`),
/// with the Node and Python clients over WebSocket and over polling.
#[test]
fn two_nodes() {
    let Some(node) = prerequisites(Client::Node) else { return };
    let Some(python) = prerequisites(Client::Python) else { return };
    let found = two_node_command().and_then(|cmd| {
        let redis = Command::new("redis-server").arg("--version").stdout(Stdio::null()).status();
        match redis {
            Ok(s) if s.success() => Ok(cmd),
            _ => Err("redis-server is not installed (scripts/install-redis)".to_owned()),
        }
    });
    let command = match found {
        Ok(cmd) => cmd,
        Err(why) if in_ci() => panic!("Socket.IO interop, two nodes: {why}"),
        Err(why) => {
            eprintln!("skipping the two-node Socket.IO interop test: {why}");
            return;
        }
    };
    let Some(redis) = RedisServer::start() else { return };
    let vars = [("redis", redis.url().trim_end_matches('/').to_owned())];
    let servers = [Server::start(&command, &vars), Server::start(&command, &vars)];
    eprintln!("two_nodes: {} and {}", servers[0].command, servers[1].command);
    let (first, second) = (servers[0].url(), servers[1].url());
    let refs: Vec<&Server> = servers.iter().collect();
    for (client, program) in [(Client::Node, &node.0), (Client::Python, &python.0)] {
        for mode in ["websocket", "polling"] {
            let args: Vec<String> = [&first, "--second", &second, "--mode", mode, "--check", "two nodes"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let run = run_client(program, &args);
            assert_run(client, &run, &expected(&[mode], &["two nodes"]), &refs);
        }
    }
}
