//! Interop with a real browser: headless Chromium (Debian's package, driven
//! by playwright-core) against `wsx serve`, with the browser's own
//! `WebSocket` in a page that `wsx serve --static tests/browser/interop`
//! serves on the same port.
//!
//! This test starts the servers, runs `tests/browser/interop.js` (the page
//! and its cases are in `tests/browser/interop/`) and checks that every case
//! passed; it names the ones that failed. Per configuration, compression
//! negotiated (`deflate`, the default) and refused (`plain`,
//! `--no-compression`):
//!
//! - echo: text (1- to 4-byte UTF-8), binary as ArrayBuffer and as Blob, of
//!   0, 1, 125, 126, 65535, 65536 B, 1 MiB and 16 MiB, byte for byte, one at
//!   a time and the small ones pipelined; `ws.extensions` as configured;
//! - close by the page: 1000, 4000 with a reason, no code (1005);
//! - subprotocols: selected (`--subprotocol`), and not selected (error,
//!   close 1006);
//! - `--max-message-size 1024`: 1024 B echoed, 1025 B closed with 1009;
//! - SIGTERM: close 1001, clean, and the server exits 0; SIGKILL: close
//!   1006, not clean.
//!
//! Once: `--origin https://other.example` refuses the page's origin (error,
//! close 1006), and, when `wsx serve` has `--ping-interval`, a page that
//! stays silent for longer than `--idle-timeout` keeps its connection
//! (Chromium answers the server's pings) and can still echo, while without
//! pings (`--ping-interval 0`) the same silence is closed with 1001.
//!
//! `scripts/install-browser` installs Chromium and playwright-core. Without
//! them the test prints a notice and passes, except under CI (`CI` set),
//! where it fails.

#![cfg(unix)]

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{in_ci, prerequisites, repo_root};
use common::{serve, wsx, Server};
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The whole browser run; the driver's own watchdog fires a bit earlier.
const LIMIT: Duration = Duration::from_secs(170);
/// What `--max-message-size` the limit servers get.
const LIMIT_BYTES: usize = 1024;
/// Keepalive: ping after 1 s of silence, close after 4 s without even a
/// pong, and a page silent for 6 s. The control: no pings, the same idle
/// timeout, and the silent page is closed with 1001.
const PING_INTERVAL: &str = "1";
const IDLE_TIMEOUT: &str = "4";
const SILENT_SECS: u32 = 6;

/// Whether `wsx serve --help` lists `flag`.
fn serve_has_flag(flag: &str) -> bool {
    let out = wsx().args(["serve", "--help"]).output().expect("wsx serve --help");
    String::from_utf8_lossy(&out.stdout).contains(flag)
}

/// Wait for a child that was signalled; `None` if it is still running after `limit`.
fn wait_exit(server: &mut Server, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `wsx serve` for the driver, and its `--server` argument.
struct Role {
    server: Server,
    role: &'static str,
    spec: String,
}

fn start(role: &'static str, config: &str, flags: &[String], extra_spec: &str) -> Role {
    let page = repo_root().join("tests/browser/interop");
    let mut args = vec!["--static", page.to_str().unwrap()];
    args.extend(flags.iter().map(String::as_str));
    let server = serve(&args);
    let mut spec = format!("role={role},config={config},addr={},pid={}", server.addr, server.child.id());
    if !extra_spec.is_empty() {
        spec = format!("{spec},{extra_spec}");
    }
    Role { server, role, spec }
}

#[test]
fn chromium_against_wsx_serve() {
    let node = match prerequisites() {
        Ok(node) => node,
        Err(why) if in_ci() => panic!("browser interop: {why}; run scripts/install-browser"),
        Err(why) => {
            eprintln!("skipping the Chromium interop test: {why}; run scripts/install-browser to install it");
            return;
        }
    };

    let limit = format!("limit={LIMIT_BYTES}");
    let limit_flag = LIMIT_BYTES.to_string();
    let mut roles = Vec::new();
    for (config, flags) in [("deflate", &[][..]), ("plain", &["--no-compression"][..])] {
        let with = |more: &[&str]| -> Vec<String> { flags.iter().chain(more).map(|s| s.to_string()).collect() };
        roles.push(start("echo", config, &with(&["--subprotocol", "wsx.interop"]), ""));
        roles.push(start("limit", config, &with(&["--max-message-size", &limit_flag]), &limit));
        roles.push(start("term", config, &with(&[]), ""));
        roles.push(start("kill", config, &with(&[]), ""));
    }
    roles.push(start("origin", "deflate", &["--origin".into(), "https://other.example".into()], ""));
    let keepalive = serve_has_flag("--ping-interval") && serve_has_flag("--idle-timeout");
    if keepalive {
        let flags = ["--ping-interval", PING_INTERVAL, "--idle-timeout", IDLE_TIMEOUT].map(String::from);
        roles.push(start("keepalive", "deflate", &flags, &format!("seconds={SILENT_SECS}")));
        let flags = ["--ping-interval", "0", "--idle-timeout", IDLE_TIMEOUT].map(String::from);
        roles.push(start("idle", "deflate", &flags, &format!("seconds={IDLE_TIMEOUT}")));
    } else {
        eprintln!("note: wsx serve has no --ping-interval / --idle-timeout: the keepalive case is not run");
    }

    let script = repo_root().join("tests/browser/interop.js");
    let mut cmd = Command::new(&node);
    cmd.arg(&script).env("WSX_BROWSER_TIMEOUT_MS", (LIMIT.as_millis() - 10_000).to_string());
    for r in &roles {
        cmd.args(["--server", &r.spec]);
    }
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run node");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    eprintln!("{out}");
    if !err.trim().is_empty() {
        eprintln!("interop.js stderr:\n{err}");
    }
    eprintln!("browser interop: {:.1} s", started.elapsed().as_secs_f64());
    let status = status.unwrap_or_else(|| panic!("interop.js still running after {LIMIT:?}"));

    let failed: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("FAIL ")).collect();
    assert!(failed.is_empty(), "{} browser interop case(s) failed:\n  {}", failed.len(), failed.join("\n  "));
    assert!(status.success(), "interop.js exited with {status}");
    assert!(out.lines().any(|l| l.starts_with("browser interop: ") && l.contains(" 0 failed")), "no summary line");
    // Every role ran: a crash in the driver cannot pass for success.
    let passed: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("ok   ")).collect();
    let mut expected = Vec::new();
    for config in ["deflate", "plain"] {
        for kind in ["text", "arraybuffer", "blob"] {
            for size in [0, 125, 126, 65536, 16 << 20] {
                expected.push(format!("[{config}] echo {kind} {size} B "));
            }
        }
        expected.push(format!("[{config}] close(4000, "));
        expected.push(format!("[{config}] max-message-size {LIMIT_BYTES}: {} B -> close 1009", LIMIT_BYTES + 1));
        expected.push(format!("[{config}] server stopped (SIGTERM) -> close 1001"));
        expected.push(format!("[{config}] server killed (SIGKILL) -> close 1006"));
    }
    expected.push("[deflate] origin refused".to_owned());
    if keepalive {
        expected.push("[deflate] server pings: ".to_owned());
        expected.push("[deflate] no pings: closed (1001)".to_owned());
    }
    for e in &expected {
        assert!(passed.iter().any(|l| l.starts_with(e.as_str())), "no passed case starting with {e:?}");
    }

    // The servers the driver signalled: SIGTERM is a graceful exit, SIGKILL is not.
    for r in &mut roles {
        match r.role {
            "term" => {
                let exit =
                    wait_exit(&mut r.server, Duration::from_secs(10)).expect("wsx serve still running after SIGTERM");
                assert!(exit.success(), "wsx serve after SIGTERM: {exit}");
                let mut rest = String::new();
                let _ = r.server.child.stdout.as_mut().unwrap().read_to_string(&mut rest);
                assert!(rest.contains("wsx serve: stopped"), "wsx serve after SIGTERM printed {rest:?}");
            }
            "kill" => {
                use std::os::unix::process::ExitStatusExt;
                let exit =
                    wait_exit(&mut r.server, Duration::from_secs(10)).expect("wsx serve still running after SIGKILL");
                assert_eq!(exit.signal(), Some(9), "wsx serve after SIGKILL: {exit}");
            }
            _ => assert!(r.server.child.try_wait().unwrap().is_none(), "wsx serve ({}) exited during the run", r.spec),
        }
    }
}
