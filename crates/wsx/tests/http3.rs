//! WebSockets over HTTP/3 (RFC 9220, feature `http3`) through the public
//! API: `wsx::http3::serve` on a quinn endpoint, `wsx::http3::connect` and
//! `Connection`, and a raw h3 client for what no WebSocket client sends.
//!
//! h3 0.0.8, the newest release, cannot carry `:protocol websocket`: the
//! first test says so (and fails once it can), the end-to-end tests wait,
//! ignored, for that h3. The same scenarios run today in the crate's unit
//! tests (src/http3/tests.rs) with a stand-in token on the wire.
//!
//! `cargo test -p wsx --features http3 --test http3 -- --include-ignored`

#[path = "support/pki.rs"]
mod pki;

use pki::{Ca, TempDir};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wsx::http3::{h3, h3_quinn, quinn, Http3Error};
use wsx::{CloseCode, Config, Error, Message};

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut).await.expect("timed out")
}

/// An HTTP/3 echo server on 127.0.0.1 with a certificate of `ca`; the PEM
/// files stay in the returned directory.
fn echo_server(ca: &Ca) -> (SocketAddr, TempDir) {
    let dir = TempDir::new();
    let cert = ca.server_cert(&["localhost", "127.0.0.1"]);
    let quic = wsx::http3::server_config_from_pem_files(
        dir.write("cert.pem", &cert.cert_pem),
        dir.write("key.pem", &cert.key_pem),
    )
    .unwrap();
    let endpoint = quinn::Endpoint::server(quic, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(wsx::http3::serve(endpoint, Config::default(), |req| async move {
        wsx::server::echo(req.upgrade(Default::default()).await?).await
    }));
    (addr, dir)
}

/// A client configuration trusting `ca` alone.
fn client_config(ca: &Ca, dir: &TempDir) -> Config {
    Config::default().with_tls_ca(dir.write("ca.pem", &ca.cert_pem))
}

#[tokio::test]
async fn h3_in_this_build_cannot_carry_websocket_yet() {
    assert!(
        !wsx::http3::websocket_protocol_supported(),
        "the h3 crate can carry :protocol websocket now: run the ignored tests of this file, switch \
         src/http3/tests.rs to the real token, and update docs/http3.md"
    );
    let ca = Ca::new("wsx test CA");
    let (addr, dir) = echo_server(&ca);
    let result = wsx::http3::connect_with(format!("wss://{addr}/"), &client_config(&ca, &dir)).await;
    match result {
        Err(Error::Http3(e)) => assert!(matches!(*e, Http3Error::WebSocketProtocolUnsupported), "{e}"),
        other => panic!("expected Http3Error::WebSocketProtocolUnsupported, got {:?}", other.map(|_| ())),
    }
}

/// A raw HTTP/3 client: the QUIC connection with ALPN h3, trusting `ca`.
async fn raw_client(ca: &Ca, addr: SocketAddr) -> h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes> {
    let mut tls = (*wsx::tls::client_config_with_roots(ca.roots()).unwrap()).clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connection =
        endpoint.connect_with(quinn::ClientConfig::new(Arc::new(quic)), addr, "localhost").unwrap().await.unwrap();
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection)).await.unwrap();
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    send
}

#[tokio::test]
async fn the_server_refuses_what_is_not_a_websocket_on_that_stream_alone() {
    let ca = Ca::new("wsx test CA");
    let (addr, _dir) = echo_server(&ca);
    let mut send = within(raw_client(&ca, addr)).await;
    let authority = format!("https://localhost:{}/", addr.port());
    let mut answer = async |request: http::Request<()>| {
        let mut stream = send.send_request(request).await.unwrap();
        let response = stream.recv_response().await.unwrap();
        (response.status().as_u16(), response.headers().clone())
    };
    let connect =
        || http::Request::connect(&authority).version(http::Version::HTTP_3).header("sec-websocket-version", "13");

    // A CONNECT without :protocol asks for a tunnel (RFC 8441 §4, RFC 9220 §3).
    let (code, headers) = within(answer(connect().body(()).unwrap())).await;
    assert_eq!(code, 405);
    // No connection-specific field on HTTP/3 (RFC 9114 §4.2).
    assert!(headers.get("connection").is_none());
    // Another protocol. (`websocket` itself h3 0.0.8 cannot send.)
    let mut other = connect().body(()).unwrap();
    other.extensions_mut().insert(h3::ext::Protocol::WEB_TRANSPORT);
    assert_eq!(within(answer(other)).await.0, 501);
    // Not a CONNECT at all.
    let get = http::Request::get(&authority).version(http::Version::HTTP_3).body(()).unwrap();
    let (code, headers) = within(answer(get)).await;
    assert_eq!(code, 405);
    assert_eq!(headers["allow"], "CONNECT");
    // The same connection is still served.
    assert_eq!(within(answer(connect().body(()).unwrap())).await.0, 405);
}

#[tokio::test]
#[ignore = "blocked on h3: 0.0.8 cannot send or receive :protocol websocket (docs/http3.md)"]
async fn text_binary_4_mib_and_a_close_code_over_http3() {
    let ca = Ca::new("wsx test CA");
    let (addr, dir) = echo_server(&ca);
    let (mut ws, response) =
        within(wsx::http3::connect_with(format!("wss://localhost:{}/echo", addr.port()), &client_config(&ca, &dir)))
            .await
            .unwrap();
    assert_eq!(response.status(), 200);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::binary(vec![1u8, 2, 3]));
    let big: Vec<u8> = (0..4usize << 20).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert!(within(ws.recv()).await.unwrap().unwrap() == Message::binary(big));
    ws.close(CloseCode::from(4001), "done").await.unwrap();
    let mut code = None;
    while let Some(msg) = within(ws.recv()).await {
        if let Ok(Message::Close(Some(f))) = msg {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(4001));
}

#[tokio::test]
#[ignore = "blocked on h3: 0.0.8 cannot send or receive :protocol websocket (docs/http3.md)"]
async fn two_websockets_on_one_quic_connection() {
    let ca = Ca::new("wsx test CA");
    let (addr, dir) = echo_server(&ca);
    let config = client_config(&ca, &dir);
    let url = format!("wss://localhost:{}/", addr.port());
    let connection = within(wsx::http3::Connection::open(url.as_str(), &config)).await.unwrap();
    let (mut a, _) = within(connection.websocket(url.as_str(), &config)).await.unwrap();
    let (mut b, _) = within(connection.websocket(url.as_str(), &config)).await.unwrap();
    assert_ne!(a.get_ref().stream_id(), b.get_ref().stream_id());
    a.send(Message::text("a")).await.unwrap();
    b.send(Message::text("b")).await.unwrap();
    assert_eq!(within(b.recv()).await.unwrap().unwrap(), Message::text("b"));
    assert_eq!(within(a.recv()).await.unwrap().unwrap(), Message::text("a"));
}
