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

/// Stderr as text.
fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_port_out_of_range_is_a_bad_argument_that_names_the_port() {
    let out = run(&["connect", "ws://127.0.0.1:99999/"], "", LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stderr(&out), "wsx: invalid URL \"ws://127.0.0.1:99999/\": port 99999 is out of range (1 to 65535)\n");
    // One slash after the scheme is not taken as host "ws".
    let out = run(&["connect", "ws:/127.0.0.1:9001/"], "", LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("needs two slashes after the scheme (ws://host/path)"), "{out:?}");
    // bench checks URLs the same way.
    let out = run(&["bench", "ws://127.0.0.1:70000/"], "", LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("port 70000 is out of range"), "{out:?}");
}

/// A refused connection names the address dialled when the URL does not
/// show it (the scheme's default port).
#[test]
fn a_refused_connection_names_the_address_the_url_does_not_show() {
    if std::net::TcpStream::connect("127.0.0.1:80").is_ok() {
        eprintln!("NOTICE: something listens on 127.0.0.1:80: skipping");
        return;
    }
    let out = run(&["connect", "ws://127.0.0.1/"], "", LIMIT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(stderr(&out), "wsx: cannot connect to ws://127.0.0.1/: 127.0.0.1:80: connection refused\n");
}

/// In a pipe (stderr not a terminal), a close with an error code is still
/// reported on stderr, with its code and reason.
#[test]
fn a_close_by_the_server_is_reported_on_stderr_in_a_pipe() {
    let server = serve(&["--max-message-size", "10"]);
    let out = run(&["connect", &server.url], &format!("{}\n", "x".repeat(100)), LIMIT);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = stderr(&out);
    assert!(err.starts_with("wsx: closed (1009"), "{err:?}");
    assert!(err.ends_with(") by the server\n"), "{err:?}");
}

/// A refused handshake shows the first line of the response's body, and
/// --show-handshake prints the whole response.
#[test]
fn a_refused_handshake_says_what_the_server_said() {
    let server = serve(&["--hub"]);
    let out = run(&["connect", &server.url], "", LIMIT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "wsx: cannot connect to {}: the server answered 400 Bad Request instead of 101 Switching Protocols: \
             this endpoint speaks the wsx-hub.v1 subprotocol: offer it in Sec-WebSocket-Protocol\n",
            server.url
        )
    );
    let out = run(&["connect", &server.url, "--show-handshake"], "", LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("HTTP/1.1 400 Bad Request\n"), "{stdout}");
    assert!(stdout.contains("sec-websocket-protocol: wsx-hub.v1\n"), "{stdout}");
    assert!(stdout.contains("\n\nthis endpoint speaks the wsx-hub.v1 subprotocol"), "{stdout}");
    let out = run(&["connect", &server.url, "--show-handshake", "--json"], "", LIMIT);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!((first["event"].as_str(), first["status"].as_u64()), (Some("refused"), Some(400)), "{first}");
}

/// `wss://` to a plain HTTP server, and `ws://` to a TLS server: at once,
/// the scheme to use.
#[tokio::test]
async fn the_wrong_scheme_is_found_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                tokio::time::sleep(LIMIT).await;
            });
        }
    });
    let url = format!("wss://{addr}/");
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(move || run(&["connect", &url], "", LIMIT)).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).ends_with(": the server answered in plain HTTP, not TLS: use ws:// instead of wss://\n"),
        "{out:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

/// A server that answers after a while and closes as soon as the client's
/// close arrives, dropping replies not yet sent (as Python's websockets
/// does): each message is echoed 200 ms after it arrived.
async fn slow_echo_that_drops_replies_on_close() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = wsx::accept(tcp).await else { return };
                let mut due: std::collections::VecDeque<(tokio::time::Instant, Message)> = Default::default();
                loop {
                    let next = due.front().map(|(at, _)| *at);
                    tokio::select! {
                        msg = ws.recv() => match msg {
                            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                                due.push_back((tokio::time::Instant::now() + Duration::from_millis(200), m));
                            }
                            // A close (answered at once), an error or the end.
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                            Some(Ok(_)) => {}
                        },
                        _ = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)), if next.is_some() => {
                            let (_, m) = due.pop_front().unwrap();
                            let _ = ws.send(m).await;
                        }
                    }
                }
                while ws.recv().await.is_some() {}
            });
        }
    });
    url
}

/// At the end of stdin, replies are still printed until the connection
/// has been quiet for --wait (1 s by default), then it closes.
#[tokio::test]
async fn replies_after_the_end_of_stdin_are_printed() {
    let url = slow_echo_that_drops_replies_on_close().await;
    let out = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = run(&["connect", &url], "hello\nworld\n", LIMIT);
        (out, start.elapsed())
    })
    .await
    .unwrap();
    let (out, took) = out;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nworld\n", "{out:?}");
    assert!(out.status.success(), "{out:?}");
    // The last reply came after 200 ms, then 1 s of quiet.
    assert!(took >= Duration::from_millis(1100), "{took:?}");
}

/// --wait 0 closes at once after the end of stdin: the slow replies are
/// lost.
#[tokio::test]
async fn wait_0_closes_at_once() {
    let url = slow_echo_that_drops_replies_on_close().await;
    let out =
        tokio::task::spawn_blocking(move || run(&["connect", &url, "--wait", "0"], "hello\n", LIMIT)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{out:?}");
    assert!(out.status.success(), "{out:?}");
}

/// --raw sends stdin's bytes unchanged: newlines and bytes that are not
/// UTF-8 included, whole or split.
#[test]
fn raw_sends_stdin_unchanged_whole_or_split() {
    let server = serve(&[]);
    let out = run(&["connect", &server.url, "--raw", "--wait", "0.3"], "a\nb\r\n\u{ff}", LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "610a620d0ac3bf\n");
    let out = run(&["connect", &server.url, "--raw", "--split", "3", "--wait", "0.3"], "abcdefgh", LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "616263\n646566\n6768\n");
}

/// --slash: /ping, //text, /close CODE REASON.
#[test]
fn slash_commands_ping_and_close_with_a_code_and_reason() {
    let server = serve(&[]);
    let out =
        run(&["connect", &server.url, "--slash", "--json"], "/ping hi\n//text\n/nope\n/close 4001 bye now\n", LIMIT);
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |kind: &str| events.iter().find(|e| e["event"] == kind).unwrap_or_else(|| panic!("{kind}: {events:?}"));
    assert_eq!(find("pong")["data"], "6869");
    assert_eq!(find("message")["data"], "/text");
    assert!(find("error")["message"].as_str().unwrap().starts_with("unknown command /nope"), "{events:?}");
    let close = find("close");
    // The server's answer to the client's close: its code.
    assert_eq!(close["code"].as_u64(), Some(4001), "{close}");
    assert_eq!(close["initiator"], "client");
    // 4001 is not a normal closure.
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
