//! `wsx connect` and `wsx bench` with `--http2` / `--http1`: HTTP/2 is
//! for wss:// only (a bad argument with ws://), the two flags exclude each
//! other; against `wsx serve` with TLS, `--http2` opens the socket over
//! HTTP/2 and `--http1` keeps it on HTTP/1.1, as the JSON `open` event
//! says; `wsx bench --http2` runs every socket over HTTP/2.

mod common;
#[path = "../../wsx/tests/support/pki.rs"]
mod pki;

use common::{run, serve};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn http2_needs_a_wss_url() {
    let out = run(&["connect", "ws://127.0.0.1:9/", "--http2"], "", LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "wsx: --http2 needs a wss:// URL: HTTP/2 goes over TLS only\n");
    let out = run(&["bench", "ws://127.0.0.1:9/", "--http2", "--duration", "1"], "", LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--http2 needs a wss:// URL"), "{out:?}");
}

#[test]
fn http2_and_http1_exclude_each_other() {
    let out = run(&["connect", "wss://localhost:9/", "--http2", "--http1"], "", LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{out:?}");
}

/// The JSON `open` event of `wsx connect URL --ca CA FLAG`, which echoes
/// "hi".
fn open_event(url: &str, ca: &str, flag: &str) -> serde_json::Value {
    let out = run(&["connect", url, "--ca", ca, flag, "--json", "--show-handshake"], "hi\n", LIMIT);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""data":"hi""#), "{stdout}");
    let open: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(open["event"], "open");
    open
}

#[test]
fn http2_and_http1_against_wsx_serve_with_tls() {
    let cert = pki::self_signed_ca_cert(&["localhost"]);
    let dir = pki::TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    let server = serve(&["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()]);
    let ca = cert_path.to_str().unwrap();

    let open = open_event(&server.url, ca, "--http2");
    assert_eq!((&open["http"], &open["status"]), (&"HTTP/2".into(), &200.into()));
    let open = open_event(&server.url, ca, "--http1");
    assert_eq!((&open["http"], &open["status"]), (&"HTTP/1.1".into(), &101.into()));

    let out = run(
        &["bench", &server.url, "--ca", ca, "--http2", "-c", "20", "--duration", "0.5", "--warmup", "0", "--json"],
        "",
        LIMIT,
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["over_http2"], 20);
    assert_eq!(report["errors"], 0);
}

/// `wsx serve --hub` with TLS speaks HTTP/2 too: the hub's own subprotocol,
/// policies and packets on an h2 stream (the same handler as HTTP/1.1).
#[test]
fn the_hub_over_http2() {
    let cert = pki::self_signed_ca_cert(&["localhost"]);
    let dir = pki::TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    let server = serve(&["--hub", "--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()]);
    let ca = cert_path.to_str().unwrap();
    let join = r#"{"t":"join","room":"lobby","id":1}"#;
    let out = run(
        &["connect", &server.url, "--ca", ca, "--http2", "--subprotocol", "wsx-hub.v1", "--json"],
        &format!("{join}\n"),
        LIMIT,
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let open: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!((&open["http"], &open["protocol"]), (&"HTTP/2".into(), &"wsx-hub.v1".into()));
    assert!(stdout.contains(r#"\"t\":\"welcome\""#), "{stdout}");
    assert!(stdout.contains(r#"\"t\":\"ack\""#) && stdout.contains(r#"\"room\":\"lobby\""#), "{stdout}");
}
