//! The harness of the chat browser tests (chat_browser.rs,
//! socketio_chat_browser.rs): `wsx serve ARGS` on a free port, and a Node
//! script driving Chromium pages against it that asks, one line of stdout
//! each, for the server to be killed (`STEP kill`) and started again on the
//! same port (`STEP restart`), and ends with `OK`. Included with
//! `#[path = "common/restart.rs"] mod restart;` next to `mod common;`.

#![allow(dead_code)]

use crate::common::wsx;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `wsx serve --host 127.0.0.1 --port PORT ARGS...`, killed on drop.
pub struct Server {
    child: Child,
}

impl Server {
    /// Start it, its stderr appended to `log`; `None` when it exits before
    /// it listens (the port is taken).
    fn start(port: u16, args: &[OsString], log: &Path) -> Option<Server> {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut child = wsx()
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start wsx serve");
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
        Some(Server { child })
    }

    /// Kill it (SIGKILL: no close frames, the pages just lose the connection).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start the server on a free port (another one if it is taken meanwhile).
fn start_anywhere(args: &[OsString], log: &Path) -> (Server, u16) {
    for _ in 0..5 {
        let port = free_port();
        if let Some(s) = Server::start(port, args, log) {
            return (s, port);
        }
    }
    panic!("wsx serve {args:?} did not start; its log: {}", read(log));
}

/// Start it again on `port` (retrying while the port is busy).
fn restart_on(port: u16, args: &[OsString], log: &Path) -> Server {
    let t = Instant::now();
    loop {
        if let Some(s) = Server::start(port, args, log) {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "could not restart on port {port}; log: {}", read(log));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// What a passed run took, and the script's stderr (its progress).
pub struct Run {
    pub progress: String,
    pub elapsed: Duration,
}

/// Serve `wsx serve ... ARGS` (its log in `dir`), run `node SCRIPT URL`
/// against it, kill and restart the server when the script says so; panics
/// with the script's progress and the server's log unless the script prints
/// OK and exits 0 within `deadline`, having asked for exactly the steps
/// `expect` ("killed", "restarted").
pub fn run(script: &Path, args: &[OsString], dir: &Path, deadline: Duration, expect: &[&str]) -> Run {
    let log = dir.join("server.log");
    let (mut server, port) = start_anywhere(args, &log);
    let url = format!("http://127.0.0.1:{port}/");
    let name = script.file_name().unwrap().to_string_lossy().into_owned();

    let mut node = Command::new("node")
        .arg(script)
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
        let left = deadline.saturating_sub(start.elapsed());
        match commands.recv_timeout(left) {
            Ok(line) => match line.as_str() {
                "STEP kill" => {
                    server.kill();
                    done.push("killed".to_owned());
                }
                "STEP restart" => {
                    server = restart_on(port, args, &log);
                    done.push("restarted".to_owned());
                }
                "OK" => break Ok(()),
                other => done.push(format!("unexpected line {other:?}")),
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(format!("{name} ended without OK")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // SIGTERM: playwright closes its Chromium on the way out.
                let _ = Command::new("kill").args(["-TERM", &node.id().to_string()]).status();
                break Err(format!("{name} still running after {deadline:?}"));
            }
        }
    };
    let status = node.wait().expect("wait for node");
    let progress = progress.join().unwrap_or_default();
    drop(server);
    let elapsed = start.elapsed();
    let report = format!(
        "after {elapsed:?}; harness did {done:?}\n--- {name} ---\n{progress}--- wsx serve {args:?} ---\n{}",
        read(&log)
    );
    if let Err(why) = outcome {
        panic!("{why}; {report}");
    }
    assert!(status.success(), "{name} exited with {status}; {report}");
    assert_eq!(done, expect, "{report}");
    Run { progress, elapsed }
}
