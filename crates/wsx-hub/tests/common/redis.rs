//! A `redis-server` child on a loopback port, for the tests that join
//! hub nodes through Redis (wsx-hub's, and the CLI's through `#[path]`).
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether redis-server is installed: in CI it must be; elsewhere the
/// Redis tests are skipped with a notice.
pub fn redis_installed() -> bool {
    let ok = Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("redis-server is not installed (scripts/install-redis installs it)");
        }
        eprintln!("NOTICE: redis-server is not installed: skipping the Redis tests (scripts/install-redis)");
    }
    ok
}

/// A running redis-server, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Start one on a free loopback port; `None` (with the notice of
    /// [`redis_installed`]) when redis-server is not installed.
    pub fn start() -> Option<Self> {
        if !redis_installed() {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Some(Self::start_on(port))
    }

    /// Start one on `port` (again, after [`RedisServer::stop`]) and wait
    /// until it takes connections.
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (scripts/install-redis): {e}"));
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kill it (a Redis outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
