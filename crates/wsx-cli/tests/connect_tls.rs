//! `wsx connect` and TLS: the flags `--ca`, `-k`, `--cert/--key` and the
//! variables SSL_CERT_FILE / SSL_CERT_DIR, against `wsx serve` with a
//! development certificate as `openssl req -x509` makes it (self-signed,
//! CA:TRUE); and `ws://` to a TLS server.

mod common;
#[path = "../../wsx/tests/support/pki.rs"]
mod pki;

use common::{serve, wsx, Server};
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// `wsx serve` with a self-signed CA:TRUE certificate for localhost; the
/// directory holds cert.pem and key.pem.
fn dev_server() -> (Server, pki::TempDir) {
    let cert = pki::self_signed_ca_cert(&["localhost", "127.0.0.1"]);
    let dir = pki::TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    let server = serve(&["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()]);
    (server, dir)
}

/// `wsx connect ARGS` with "hi" on stdin and these environment variables
/// (SSL_CERT_FILE and SSL_CERT_DIR unset unless given).
fn connect(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = wsx();
    cmd.arg("connect").args(args).args(["--wait", "0.2"]);
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR").envs(env.iter().copied());
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A bad argument ends wsx before it reads: the pipe may be closed.
    let _ = child.stdin.take().unwrap().write_all(b"hi\n");
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_development_certificate_fails_with_what_to_do_and_works_with_ca() {
    let (server, dir) = dev_server();
    let cert = dir.0.join("cert.pem");
    let out = connect(&[&server.url], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "wsx: cannot connect to {}: TLS handshake with \"localhost\" failed: the server's certificate is a CA \
             certificate used as its own: trust it with --ca FILE (Config::with_tls_ca), or pass -k \
             (Config::with_tls_insecure) to skip the check\n",
            server.url
        )
    );
    let out = connect(&[&server.url, "--ca", cert.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

#[test]
fn ssl_cert_file_and_ssl_cert_dir_are_trusted() {
    let (server, dir) = dev_server();
    let cert = dir.0.join("cert.pem");
    let out = connect(&[&server.url], &[("SSL_CERT_FILE", cert.to_str().unwrap())]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    // A directory holds other files too (here the key): they are skipped.
    let out = connect(&[&server.url], &[("SSL_CERT_DIR", dir.0.to_str().unwrap())]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

#[test]
fn insecure_connects_to_anything_and_says_so() {
    let (server, _dir) = dev_server();
    let out = connect(&[&server.url, "-k"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(stderr(&out), "wsx: warning: -k: the server's certificate is not checked; anyone can answer for it\n");
}

#[test]
fn tls_files_that_cannot_be_used_are_bad_arguments_named_in_one_line() {
    let (server, dir) = dev_server();
    let cert = dir.0.join("cert.pem");
    let out = connect(&[&server.url, "--ca", "/nonexistent/ca.pem"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).starts_with("wsx: cannot read /nonexistent/ca.pem: "), "{out:?}");
    assert_eq!(stderr(&out).lines().count(), 1, "{out:?}");
    // The certificate given as the key.
    let cert = cert.to_str().unwrap();
    let out = connect(&[&server.url, "--ca", cert, "--cert", cert, "--key", cert], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("cert.pem: no private key found"), "{out:?}");
    // --cert needs --key.
    let out = connect(&[&server.url, "--cert", cert], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// `ws://` to a TLS server: rustls answers the plaintext request with an
/// alert, and the client says to use wss:// at once.
#[test]
fn ws_to_a_tls_server_says_to_use_wss() {
    let (server, _dir) = dev_server();
    let url = server.url.replace("wss://", "ws://");
    let start = Instant::now();
    let out = connect(&[&url], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!("wsx: cannot connect to {url}: the server answered with TLS: use wss:// instead of ws://\n")
    );
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

/// `wss://` to plain `wsx serve`: the server answers a TLS ClientHello
/// with a plain 400 at once, which the client recognizes: the error says
/// to use ws://, without waiting for a timeout.
#[test]
fn wss_to_a_plain_server_says_to_use_ws_at_once() {
    let server = serve(&[]);
    let url = server.url.replace("ws://", "wss://");
    let start = Instant::now();
    let out = connect(&[&url], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "wsx: cannot connect to {url}: the server answered in plain HTTP, not TLS: use ws:// instead of wss://\n"
        )
    );
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}
