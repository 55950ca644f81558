//! `wsx connect` and `wsx bench` with `--http2` / `--http1`: HTTP/2 is
//! for wss:// only (a bad argument with ws://), the two flags exclude each
//! other, and `--http1` keeps a wss:// socket on HTTP/1.1, as the status
//! line and the JSON `open` event say.

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

#[test]
fn http1_keeps_wss_on_http_1_1_and_says_so() {
    let cert = pki::self_signed_ca_cert(&["localhost"]);
    let dir = pki::TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    let server = serve(&["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()]);
    let ca = cert_path.to_str().unwrap();
    let out = run(&["connect", &server.url, "--ca", ca, "--http1", "--json", "--show-handshake"], "hi\n", LIMIT);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let open: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(open["event"], "open");
    assert_eq!(open["http"], "HTTP/1.1");
    assert_eq!(open["status"], 101);
}
