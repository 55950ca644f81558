//! wss:// over rustls on 127.0.0.1 with certificates made at test time:
//! echo round trip through `acceptor_from_pem_files` and a custom client
//! configuration, SNI and ALPN, split halves over TLS, and the typed,
//! readable errors of a wrong server name, an untrusted certificate and
//! unusable PEM files.

mod common;
#[path = "support/pki.rs"]
mod pki;

use common::*;
use futures_util::{SinkExt, StreamExt};
use pki::{Ca, TempDir};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wsx::tls::{rustls, TlsAcceptor, TlsError};
use wsx::{CloseCode, Config, Error, Message};

/// What the server saw of the TLS session.
#[derive(Debug)]
struct Seen {
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    other: Vec<Message>,
}

/// A wss:// echo server for one connection on 127.0.0.1.
async fn wss_echo_server(acceptor: TlsAcceptor) -> (u16, JoinHandle<wsx::Result<Seen>>) {
    let (l, addr) = listen().await;
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await?;
        let tls = acceptor.accept(tcp).await?;
        let (_, session) = tls.get_ref();
        let sni = session.server_name().map(str::to_owned);
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let mut ws = wsx::accept(tls).await?;
        let mut other = Vec::new();
        while let Some(msg) = ws.recv().await {
            let msg = msg?;
            if msg.is_text() || msg.is_binary() {
                ws.feed(msg).await?;
            } else {
                other.push(msg);
            }
        }
        Ok(Seen { sni, alpn, other })
    });
    (addr.port(), task)
}

/// One text message echoed, then a clean close; the server saw no error.
async fn echo_then_close(
    mut ws: wsx::WebSocket<wsx::MaybeTlsStream>,
    server: JoinHandle<wsx::Result<Seen>>,
    text: &str,
) {
    within(ws.send(Message::text(text))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text(text));
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    while within(ws.recv()).await.is_some() {}
    within(server).await.unwrap().unwrap();
}

/// A server that runs the TLS handshake and reports how it ended.
async fn tls_only_server(acceptor: TlsAcceptor) -> (u16, JoinHandle<std::io::Result<()>>) {
    let (l, addr) = listen().await;
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await?;
        acceptor.accept(tcp).await.map(drop)
    });
    (addr.port(), task)
}

/// A client configuration built by hand, without ALPN: wsx adds
/// `http/1.1`.
fn bare_client_config(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(wsx::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    assert!(config.alpn_protocols.is_empty());
    Arc::new(config)
}

#[tokio::test]
async fn wss_echo_round_trip_with_a_custom_client_config() {
    let ca = Ca::new("wsx test CA");
    let (port, server) = wss_echo_server(pki::acceptor(&ca, &["localhost"])).await;
    let config = Config::default().with_tls_config(bare_client_config(&ca));
    let (mut ws, response) = within(wsx::connect_with(format!("wss://localhost:{port}/chat"), &config)).await.unwrap();
    assert_eq!(response.status(), 101);
    assert!(ws.get_ref().is_tls());
    let session = ws.get_ref().tls_connection().unwrap();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    for msg in [
        Message::text("hello over TLS"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("x".repeat(200_000)),
        Message::binary(vec![7u8; 1 << 20]),
    ] {
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
    }
    within(ws.close(CloseCode::Normal, "done")).await.unwrap();
    assert!(matches!(within(ws.recv()).await, Some(Ok(Message::Close(_)))));
    assert!(within(ws.recv()).await.is_none());
    let seen = within(server).await.unwrap().unwrap();
    // SNI carried the URL's host; ALPN settled on HTTP/1.1.
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(seen.other, vec![Message::Close(Some(wsx::CloseFrame::new(CloseCode::Normal, "done")))]);
}

/// A certificate for an IP address works with an IP URL (no SNI is sent
/// for an address).
#[tokio::test]
async fn wss_to_an_ip_address_certificate() {
    let ca = Ca::new("wsx test CA");
    let (port, server) = wss_echo_server(pki::acceptor(&ca, &["127.0.0.1"])).await;
    let config = Config::default().with_tls_config(ca.client_config());
    let (mut ws, _) = within(wsx::connect_with(format!("wss://127.0.0.1:{port}/"), &config)).await.unwrap();
    within(ws.send(Message::text("by address"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("by address"));
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    while within(ws.recv()).await.is_some() {}
    let seen = within(server).await.unwrap().unwrap();
    assert_eq!(seen.sni, None);
}

/// Split halves work over TLS (`tokio::io::split` underneath).
#[tokio::test]
async fn wss_split_halves_in_two_tasks() {
    let ca = Ca::new("wsx test CA");
    let (port, server) = wss_echo_server(pki::acceptor(&ca, &["localhost"])).await;
    let config = Config::default().with_tls_config(ca.client_config());
    let (ws, _) = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap();
    let (mut rx, mut tx) = ws.split();
    let writer = tokio::spawn(async move {
        for i in 0..50 {
            tx.send(Message::text(format!("message {i}"))).await?;
        }
        SinkExt::close(&mut tx).await?;
        Ok::<_, Error>(())
    });
    let mut got = Vec::new();
    while let Some(msg) = within(rx.next()).await {
        got.push(msg.unwrap());
    }
    within(writer).await.unwrap().unwrap();
    assert_eq!(got.len(), 51, "{got:?}");
    assert_eq!(got[49], Message::text("message 49"));
    assert!(matches!(got[50], Message::Close(_)));
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn wrong_server_name_fails_with_a_clear_tls_error() {
    let ca = Ca::new("wsx test CA");
    let (port, server) = tls_only_server(pki::acceptor(&ca, &["server.test"])).await;
    let config = Config::default().with_tls_config(ca.client_config());
    // The certificate is for server.test; the URL says localhost.
    let err = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap_err();
    match &err {
        Error::Tls(tls) if matches!(**tls, TlsError::Handshake { .. }) => {
            let TlsError::Handshake { server_name, source: rustls::Error::InvalidCertificate(cert) } = &**tls else {
                panic!("expected a certificate error, got {tls:?}");
            };
            assert_eq!(server_name, "localhost");
            assert!(
                matches!(
                    cert,
                    rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. }
                ),
                "{cert:?}"
            );
        }
        other => panic!("expected a TLS certificate error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "TLS handshake with \"localhost\" failed: the server's certificate is for another name \
         (server.test): connect by one of those names, or pass -k (Config::with_tls_insecure) \
         to skip the check"
    );
    // The server saw the client give up.
    assert!(within(server).await.unwrap().is_err());
}

#[tokio::test]
async fn untrusted_certificate_fails_with_a_clear_tls_error() {
    let ca = Ca::new("wsx test CA");
    let (port, server) = tls_only_server(pki::acceptor(&ca, &["localhost"])).await;
    // Default settings: Mozilla's roots, which do not include the test CA.
    let err = within(wsx::connect(format!("wss://localhost:{port}/"))).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Tls(tls) if matches!(**tls, TlsError::Handshake {
                source: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "TLS handshake with \"localhost\" failed: the server's certificate is not signed by a trusted \
         certificate authority: pass --ca FILE (Config::with_tls_ca) with that authority's certificate, or -k \
         (Config::with_tls_insecure) to skip the check"
    );
    assert!(within(server).await.unwrap().is_err());

    // Trusting another CA is no better.
    let other = Ca::new("another CA");
    let (port, _server) = tls_only_server(pki::acceptor(&ca, &["localhost"])).await;
    let config = Config::default().with_tls_config(other.client_config());
    let err = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap_err();
    assert!(err.to_string().contains("not signed by a trusted certificate authority"), "{err}");
}

/// `with_tls_ca` trusts a private CA from its PEM file, as curl's
/// `--cacert` does, in place of the default roots.
#[tokio::test]
async fn with_tls_ca_trusts_a_private_ca_from_its_file() {
    let ca = Ca::new("wsx test CA");
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let (port, server) = wss_echo_server(pki::acceptor(&ca, &["localhost"])).await;
    let config = Config::default().with_tls_ca(&ca_file);
    let (ws, _) = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap();
    echo_then_close(ws, server, "trusted").await;
}

/// The first certificate a developer makes (`openssl req -x509`:
/// self-signed, CA:TRUE) is refused with a sentence that says what to do,
/// and trusted as it is once given with `with_tls_ca`; its name is still
/// checked.
#[tokio::test]
async fn a_self_signed_development_certificate_is_trusted_with_with_tls_ca() {
    let cert = pki::self_signed_ca_cert(&["localhost"]);
    let dir = TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    let acceptor = || wsx::tls::acceptor_from_pem_files(&cert_path, &key_path).unwrap();

    let (port, _server) = tls_only_server(acceptor()).await;
    let err = within(wsx::connect(format!("wss://localhost:{port}/"))).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "TLS handshake with \"localhost\" failed: the server's certificate is a CA certificate used as its own: \
         trust it with --ca FILE (Config::with_tls_ca), or pass -k (Config::with_tls_insecure) to skip the check"
    );

    let config = Config::default().with_tls_ca(&cert_path);
    let (port, server) = wss_echo_server(acceptor()).await;
    let (ws, _) = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap();
    echo_then_close(ws, server, "dev").await;

    // Trusted as it is, but only for the names it has.
    let (port, _server) = tls_only_server(acceptor()).await;
    let err = within(wsx::connect_with(format!("wss://127.0.0.1:{port}/"), &config)).await.unwrap_err();
    assert!(err.to_string().contains("is for another name"), "{err}");
}

/// `with_tls_insecure` accepts a certificate nothing vouches for, for any
/// name.
#[tokio::test]
async fn with_tls_insecure_accepts_any_certificate() {
    let ca = Ca::new("nobody trusts this CA");
    let (port, server) = wss_echo_server(pki::acceptor(&ca, &["elsewhere.test"])).await;
    let config = Config::default().with_tls_insecure(true);
    let (ws, _) = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap();
    echo_then_close(ws, server, "unchecked").await;
}

/// A server that asks for a client certificate gets the one of
/// `with_tls_client_cert`; without one, the failure says which option to
/// use.
#[tokio::test]
async fn with_tls_client_cert_presents_a_client_certificate() {
    let ca = Ca::new("wsx test CA");
    let dir = TempDir::new();
    let server_cert = ca.server_cert(&["localhost"]);
    let client = ca.server_cert(&["wsx client"]);
    let client_cert = dir.write("client.pem", &client.cert_pem);
    let client_key = dir.write("client-key.pem", &client.key_pem);
    let acceptor = || {
        let provider = wsx::tls::crypto_provider();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider.clone())
                .build()
                .unwrap();
        use rustls::pki_types::pem::PemObject;
        let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(server_cert.cert_pem.as_bytes()).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(server_cert.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    };

    let (port, server) = wss_echo_server(acceptor()).await;
    let config = Config::default().with_tls_config(ca.client_config());
    let err = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap_err();
    assert!(err.to_string().contains("pass --cert FILE --key FILE (Config::with_tls_client_cert)"), "{err}");
    assert!(within(server).await.unwrap().is_err());

    let (port, server) = wss_echo_server(acceptor()).await;
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let config = Config::default().with_tls_ca(&ca_file).with_tls_client_cert(&client_cert, &client_key);
    let (ws, _) = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap();
    echo_then_close(ws, server, "it's me").await;
}

/// The TLS files are read when asked (`tls_client_config`) or when
/// connecting, and a bad one is a typed error naming it.
#[test]
fn tls_files_that_cannot_be_used_are_named() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.pem");
    let err = Config::default().with_tls_ca(&missing).tls_client_config().unwrap_err();
    assert!(matches!(err, TlsError::ReadFile { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let empty = dir.write("empty.pem", "");
    let err = Config::default().with_tls_ca(&empty).tls_client_config().unwrap_err();
    assert!(matches!(err, TlsError::NoCertificates(_)), "{err:?}");
    let ca = Ca::new("wsx test CA");
    let cert = dir.write("cert.pem", &ca.cert_pem);
    let err = Config::default().with_tls_client_cert(&cert, &cert).tls_client_config().unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey(_)), "{err:?}");
}

/// The platform's roots (feature `native-roots`) do not include the test
/// CA either: the connection fails with a TLS error whatever the machine
/// has installed.
#[tokio::test]
async fn platform_roots_do_not_trust_the_test_ca() {
    let ca = Ca::new("wsx test CA");
    let (port, _server) = tls_only_server(pki::acceptor(&ca, &["localhost"])).await;
    let config = Config::default().with_tls_roots(wsx::tls::TlsRoots::Platform);
    let err = within(wsx::connect_with(format!("wss://localhost:{port}/"), &config)).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

/// A plain TCP server that never speaks TLS: the client's handshake
/// timeout bounds the wait, and the error says that nothing came back.
#[tokio::test]
async fn silent_server_times_out_the_tls_handshake() {
    let (l, addr) = listen().await;
    let _hold = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        tokio::time::sleep(LIMIT).await;
        drop(tcp);
    });
    let config = Config::default().with_handshake_timeout(std::time::Duration::from_millis(200));
    let err = within(wsx::connect_with(format!("wss://127.0.0.1:{}/", addr.port()), &config)).await.unwrap_err();
    assert!(matches!(err, Error::TlsUnanswered), "{err:?}");
    assert!(err.to_string().ends_with("if it is a plain server, use ws:// instead of wss://"), "{err}");
}

/// A plaintext HTTP server on the wss:// port: an error that says to use
/// ws://, at once.
#[tokio::test]
async fn plaintext_server_says_to_use_ws() {
    let (l, addr): (TcpListener, _) = listen().await;
    tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        tokio::time::sleep(LIMIT).await;
    });
    let err = within(wsx::connect(format!("wss://127.0.0.1:{}/", addr.port()))).await.unwrap_err();
    assert!(matches!(err, Error::WrongScheme { use_scheme: "ws" }), "{err:?}");
}

fn pem_error(cert: &std::path::Path, key: &std::path::Path) -> TlsError {
    match wsx::tls::acceptor_from_pem_files(cert, key) {
        Ok(_) => panic!("{} and {} were accepted", cert.display(), key.display()),
        Err(e) => e,
    }
}

#[test]
fn acceptor_from_pem_files_reports_what_is_wrong() {
    let ca = Ca::new("wsx test CA");
    let cert = ca.server_cert(&["localhost"]);
    let dir = TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    assert!(wsx::tls::acceptor_from_pem_files(&cert_path, &key_path).is_ok());

    let missing = dir.0.join("missing.pem");
    let err = pem_error(&missing, &key_path);
    assert!(matches!(err, TlsError::ReadFile { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let empty = dir.write("empty.pem", "");
    let err = pem_error(&empty, &key_path);
    assert!(matches!(err, TlsError::NoCertificates(_)), "{err:?}");
    assert!(err.to_string().contains("no certificate"), "{err}");

    // Key and certificate swapped.
    let err = pem_error(&cert_path, &cert_path);
    assert!(matches!(err, TlsError::NoPrivateKey(_)), "{err:?}");
    assert!(err.to_string().contains("cert.pem: no private key"), "{err}");

    // A key that is not the certificate's.
    let other_key = dir.write("other.pem", &ca.server_cert(&["localhost"]).key_pem);
    let err = pem_error(&cert_path, &other_key);
    assert!(matches!(err, TlsError::Config(_)), "{err:?}");

    let garbage = dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    let err = pem_error(&garbage, &key_path);
    assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
}

#[test]
fn default_client_config_offers_http_1_1() {
    let c = wsx::tls::client_config(wsx::tls::TlsRoots::WebPki).unwrap();
    assert_eq!(c.alpn_protocols, [b"http/1.1".to_vec()]);
    assert!(Config::default().tls_config().is_none());
}
