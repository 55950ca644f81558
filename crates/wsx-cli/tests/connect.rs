//! `wsx connect` as a user runs it: in a pipe, with -x, with --json, and
//! what its exit status says.

mod common;

use common::{run, serve};
use std::time::{Duration, Instant};
use wsx::{CloseCode, Message};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn pipe_sends_lines_prints_replies_and_exits_0_at_end_of_input() {
    let server = serve(&[]);
    let out = run(&["connect", &server.url], "hi\n", LIMIT);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn execute_sends_messages_and_closes_after_wait() {
    let server = serve(&[]);
    let start = Instant::now();
    let out = run(&["connect", &server.url, "-x", "one", "-x", "two", "--wait", "0.5"], "", LIMIT);
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    assert!(out.status.success(), "{out:?}");

    let out = run(&["connect", &server.url, "-x", "AB", "--binary", "--wait", "0.2"], "", LIMIT);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4142\n");
    let out =
        run(&["connect", &server.url, "-x", "AB", "--binary", "--binary-format", "base64", "--wait", "0.2"], "", LIMIT);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "QUI=\n");
}

#[test]
fn connection_refused_is_one_line_and_exit_status_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let out = run(&["connect", &url], "", LIMIT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, format!("wsx: cannot connect to {url}: connection refused\n"));
    // Bad arguments are status 1.
    assert_eq!(run(&["connect", &url, "-H", "no colon"], "", LIMIT).status.code(), Some(1));
}

#[test]
fn json_prints_one_parsable_object_per_event() {
    let server = serve(&[]);
    let out = run(&["connect", &server.url, "--json", "--show-handshake"], "a\nb\n", LIMIT);
    assert!(out.status.success(), "{out:?}");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["open", "message", "message", "close"]);
    assert_eq!(events[0]["status"], 101);
    assert_eq!(events[1]["data"], "a");
    assert_eq!(events[2]["type"], "text");
    assert_eq!(events[3]["code"], 1000);
    assert_eq!(events[3]["clean"], true);
    assert!(events.iter().all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
}

#[tokio::test]
async fn a_close_with_an_error_code_is_exit_status_3() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        let _ = ws.recv().await; // "x"
        ws.close(CloseCode::Other(4000), "go away").await.unwrap();
        while ws.recv().await.is_some() {}
    });
    let out = tokio::task::spawn_blocking(move || run(&["connect", &url, "-x", "x", "--wait", "5"], "", LIMIT))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let _ = Message::text("");
}
