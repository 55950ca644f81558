//! `wsx bench` against `wsx serve`: a short run reports messages and no errors.

mod common;

use common::{run, serve};
use std::time::Duration;

#[test]
fn bench_against_serve_reports_messages_and_no_errors() {
    let server = serve(&[]);
    let out = run(
        &[
            "bench",
            &server.url,
            "-c",
            "4",
            "-s",
            "100",
            "--depth",
            "4",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--threads",
            "1",
            "--json",
        ],
        "",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert!(report["messages_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn open_loop_and_text_mode_check_every_echo() {
    let server = serve(&[]);
    let out = run(
        &[
            "bench",
            &server.url,
            "-c",
            "2",
            "-s",
            "20",
            "--text",
            "--rate",
            "500",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--json",
        ],
        "",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    // 500 msg/s for 0.5 s, within the timer's resolution.
    let n = report["messages"].as_u64().unwrap();
    assert!((200..=300).contains(&n), "{report}");
}

#[test]
fn bench_without_a_server_is_exit_status_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = run(&["bench", &format!("ws://127.0.0.1:{port}/"), "--duration", "1"], "", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
