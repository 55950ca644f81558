//! `wsx serve --tls-cert --tls-key` serves wss://, with certificates made at
//! test time.

mod common;
#[path = "../../wsx/tests/support/pki.rs"]
mod pki;

use std::process::Command;
use wsx::Message;

#[tokio::test]
async fn serve_with_tls_flags_speaks_wss() {
    let ca = pki::Ca::new("wsx test CA");
    let cert = ca.server_cert(&["localhost"]);
    let dir = pki::TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    let server = common::serve(&["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()]);
    let config = wsx::Config::default().with_tls_config(ca.client_config());
    let (mut ws, _) = wsx::connect_with(server.url.as_str(), &config).await.unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("over tls"));
    // A large message goes through the streaming echo in fragments.
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));
    // A client that does not trust the certificate fails with a TLS error.
    let err = wsx::connect(server.url.as_str()).await.unwrap_err();
    assert!(matches!(err, wsx::Error::Tls(_)), "{err}");
}

#[test]
fn serve_refuses_unreadable_tls_files() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsx"))
        .args(["serve", "--port", "0", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
}
