//! examples/chat in headless Chromium: `wsx serve --hub --static
//! examples/chat` and `tests/browser/chat.js` driving two pages, with the
//! server killed and restarted on the same port in the middle.
//!
//! Needs Chromium and `tests/browser/node_modules` (`scripts/install-browser`):
//! without them the test prints a notice and passes, except under CI (`CI`
//! set), where it fails.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The whole scenario, browser start included.
const DEADLINE: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether Chromium, Node and playwright-core are there; a notice (or,
/// under CI, a failure) when not.
fn browser_ready() -> bool {
    let chromium = std::env::var_os("WSX_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let modules = repo().join("tests/browser/node_modules/playwright-core").is_dir();
    let missing: Vec<&str> = [(chromium.exists(), "chromium"), (node, "node"), (modules, "tests/browser/node_modules")]
        .into_iter()
        .filter_map(|(ok, what)| (!ok).then_some(what))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "missing for the browser test: {} (scripts/install-browser installs them; required under CI)",
        missing.join(", ")
    );
    eprintln!("NOTICE: skipping the browser chat test, missing: {} (scripts/install-browser)", missing.join(", "));
    false
}

/// `wsx serve --hub --static examples/chat` on a given port, killed on drop.
struct HubServer {
    child: Child,
}

impl HubServer {
    /// Start it; `None` when it exits before it listens (the port is taken).
    fn start(port: u16, log: &Path) -> Option<HubServer> {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut child = common::wsx()
            .args(["serve", "--hub", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--static")
            .arg(repo().join("examples/chat"))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start wsx serve --hub");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let _ = stdout.read_line(&mut line);
        if !line.contains("listening on ws://") {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        // Keep reading, so that its last lines never meet a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Some(HubServer { child })
    }

    /// Kill it (SIGKILL: no close frames, the pages just lose the connection).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start the server on a free port (another one if it is taken meanwhile).
fn start_anywhere(log: &Path) -> (HubServer, u16) {
    for _ in 0..5 {
        let port = free_port();
        if let Some(s) = HubServer::start(port, log) {
            return (s, port);
        }
    }
    panic!("wsx serve --hub did not start; its log: {}", read(log));
}

/// Start it again on `port` (retrying while the port is busy).
fn restart_on(port: u16, log: &Path) -> HubServer {
    let t = Instant::now();
    loop {
        if let Some(s) = HubServer::start(port, log) {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "could not restart on port {port}; log: {}", read(log));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn chat_in_two_browser_pages_survives_a_server_restart() {
    if !browser_ready() {
        return;
    }
    let dir = common::temp_dir("chat-browser");
    let log = dir.join("server.log");
    let (mut server, port) = start_anywhere(&log);
    let url = format!("http://127.0.0.1:{port}/");

    let mut node = Command::new("node")
        .arg(repo().join("tests/browser/chat.js"))
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let (tx, commands) = mpsc::channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = node.stderr.take().unwrap();
    let progress = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let start = Instant::now();
    let mut done: Vec<String> = Vec::new();
    let outcome = loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match commands.recv_timeout(left) {
            Ok(line) => match line.as_str() {
                "STEP kill" => {
                    server.kill();
                    done.push("killed".to_owned());
                }
                "STEP restart" => {
                    server = restart_on(port, &log);
                    done.push("restarted".to_owned());
                }
                "OK" => break Ok(()),
                other => done.push(format!("unexpected line {other:?}")),
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err("chat.js ended without OK".to_owned()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // SIGTERM: playwright closes its Chromium on the way out.
                let _ = Command::new("kill").args(["-TERM", &node.id().to_string()]).status();
                break Err(format!("chat.js still running after {DEADLINE:?}"));
            }
        }
    };
    let status = node.wait().expect("wait for node");
    let progress = progress.join().unwrap_or_default();
    drop(server);
    let report = format!(
        "after {:?}; harness did {done:?}\n--- chat.js ---\n{progress}--- wsx serve --hub ---\n{}",
        start.elapsed(),
        read(&log)
    );
    if let Err(why) = outcome {
        panic!("{why}; {report}");
    }
    assert!(status.success(), "chat.js exited with {status}; {report}");
    assert_eq!(done, ["killed", "restarted"], "{report}");
    eprintln!("{progress}");
    let _ = std::fs::remove_dir_all(&dir);
}
