//! Node's `ws` and Python's `websockets` as clients of the `wsx serve`
//! binary (the library-level matrix, both directions, is
//! crates/wsx/tests/interop.rs): the echo of every test message (0 B to
//! 16 MiB, text and binary) with the client's compression on, without
//! context takeover, and off, against `wsx serve` and `wsx serve
//! --no-compression`; then, with Node's `ws`, a ping answered by a pong and
//! the server's close paths: 1001 on SIGTERM and 1009 for a message over
//! `--max-message-size`.
//!
//! The peers come from `scripts/install-interop`; without them the tests
//! print a notice and return, except under CI, where they fail.

mod common;

use common::serve;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The Node directory and the virtualenv's python, if both are installed.
fn peers() -> Option<(PathBuf, PathBuf)> {
    let node_dir = root().join("tests/interop/node");
    let venv = match std::env::var_os("WSX_INTEROP_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/wsx-interop-venv"),
    };
    let python = venv.join("bin/python");
    let node_ok = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if node_ok && node_dir.join("node_modules/ws/package.json").is_file() && python.is_file() {
        return Some((node_dir, python));
    }
    assert!(!under_ci(), "Node's ws or Python's websockets is missing: run scripts/install-interop");
    eprintln!("NOTICE: Node's ws or Python's websockets is missing: skipping (scripts/install-interop)");
    None
}

/// Run a peer client script against `url`; its stdout.
fn run_client(mut cmd: Command, who: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{who}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{who}: exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l.starts_with("ok ")), "{who}: {stdout}");
    stdout
}

fn negotiated(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("negotiated-extensions:")).unwrap_or("").trim().to_owned()
}

#[test]
fn node_and_python_clients_echo_through_wsx_serve() {
    let Some((node_dir, python)) = peers() else { return };
    for server_flags in [&[][..], &["--no-compression"][..]] {
        let server = serve(server_flags);
        let server_compresses = server_flags.is_empty();
        for mode in ["context-takeover", "no-context-takeover", "off"] {
            let who = format!("node ws ({mode}) -> wsx serve {server_flags:?}");
            let mut cmd = Command::new("node");
            cmd.current_dir(&node_dir).args(["client.js", "--url", &server.url, "--compression", mode]);
            let ext = negotiated(&run_client(cmd, &who));
            assert_eq!(ext.contains("permessage-deflate"), server_compresses && mode != "off", "{who}: {ext:?}");
        }
        for mode in ["default", "no-context-takeover", "off"] {
            let who = format!("python websockets ({mode}) -> wsx serve {server_flags:?}");
            let mut cmd = Command::new(&python);
            cmd.current_dir(root().join("tests/interop/python")).args([
                "client.py",
                "--url",
                &server.url,
                "--compression",
                mode,
            ]);
            let ext = negotiated(&run_client(cmd, &who));
            assert_eq!(ext.contains("permessage-deflate"), server_compresses && mode != "off", "{who}: {ext:?}");
        }
    }
}

/// Node's `ws`: ping → pong; SIGTERM → 1001; too big → 1009.
const NODE_CLOSE_PATHS: &str = r#"
const WebSocket = require('ws');
const [url, what] = process.argv.slice(1);
const ws = new WebSocket(url);
const out = (s) => { process.stdout.write(s + '\n'); };
ws.on('open', () => {
  out('open');
  if (what === 'ping') ws.ping(Buffer.from('hi'));
  if (what === 'big') ws.send(Buffer.alloc(2048, 7));
});
ws.on('pong', (data) => { out('pong ' + data.toString()); ws.close(1000); });
ws.on('close', (code, reason) => { out('close ' + code + ' ' + reason.toString()); process.exit(0); });
ws.on('error', (e) => { out('error ' + e.message); });
setTimeout(() => { out('timeout'); process.exit(1); }, 10000);
"#;

fn node_script(node_dir: &Path, url: &str, what: &str) -> std::process::Child {
    Command::new("node")
        .current_dir(node_dir)
        .args(["-e", NODE_CLOSE_PATHS, url, what])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start node")
}

fn output_of(child: std::process::Child) -> String {
    let out = child.wait_with_output().expect("node output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn node_ws_ping_and_close_paths_against_wsx_serve() {
    let Some((node_dir, _)) = peers() else { return };
    // Ping answered with the same payload, then a normal close.
    let server = serve(&[]);
    let out = output_of(node_script(&node_dir, &server.url, "ping"));
    assert!(out.contains("pong hi") && out.contains("close 1000"), "{out}");

    // A message over --max-message-size: 1009.
    let server = serve(&["--max-message-size", "1024"]);
    let out = output_of(node_script(&node_dir, &server.url, "big"));
    assert!(out.contains("close 1009"), "{out}");

    // SIGTERM: 1001 "server shutting down" to the connected client.
    use std::io::{BufRead, BufReader, Read};
    let server = serve(&[]);
    let mut child = node_script(&node_dir, &server.url, "wait");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("node's first line");
    assert_eq!(first.trim(), "open", "the client did not connect");
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("node's output");
    let _ = child.wait();
    assert!(rest.contains("close 1001 server shutting down"), "{rest}");
}
