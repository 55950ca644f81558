//! `wsx serve`'s log lines carry no colour codes when stderr is not a
//! terminal (a log file, a pipe), whatever NO_COLOR says.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn serve_logs_without_colour_codes_into_a_pipe() {
    let mut child = common::wsx()
        .args(["serve", "--port", "0", "--threads", "1"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("ws://"), "{line:?}");
    // The first log line is the server's "listening".
    let mut log = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut log).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("listening"), "{log:?}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}
