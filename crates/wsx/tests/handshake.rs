//! The opening handshake over real TCP (RFC 6455 §4): subprotocol
//! negotiation, the server callback, refusals answered by the server, the
//! handshake timeout, and the client's checks of the server's response.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use wsx::handshake::{Accept, HandshakeError, UpgradeRequest};
use wsx::{Config, Error, Message, WebSocket};

type ServerTask = tokio::task::JoinHandle<wsx::Result<WebSocket<TcpStream>>>;

/// A server that accepts one connection with `config` and the default
/// callback.
async fn server(config: Config) -> (std::net::SocketAddr, ServerTask) {
    let (l, addr) = listen().await;
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await?;
        wsx::accept_with(tcp, |_: &UpgradeRequest| Ok(Accept::new()), &config).await
    });
    (addr, task)
}

/// Send a hand-made request and read the whole response (the server
/// closes after a refusal).
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut raw = Raw::connect(addr).await;
    raw.write(request).await;
    let bytes = raw.read_to_eof().await;
    String::from_utf8(bytes).unwrap()
}

fn request_with(replace: &str, with: &str) -> String {
    let r = upgrade_request("/", "");
    assert!(r.contains(replace));
    r.replacen(replace, with, 1)
}

/// RFC 6455 §4.2.2 / §1.9: the server picks one of the subprotocols the
/// client offered and both ends report it.
#[tokio::test]
async fn server_selects_subprotocol_from_client_offer() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut offered = Vec::new();
        let ws = wsx::accept_with(
            tcp,
            |req: &UpgradeRequest| {
                offered = req.protocols().to_vec();
                // The server supports v1 and v3; the first offered one it
                // supports wins.
                let pick = req.protocols().iter().find(|p| *p == "v1.chat" || *p == "v3.chat").cloned();
                Ok(match pick {
                    Some(p) => Accept::new().protocol(p),
                    None => Accept::new(),
                })
            },
            &Config::default(),
        )
        .await
        .unwrap();
        (ws, offered)
    });
    let request = http::Request::get(ws_url(addr, "/"))
        .header("Sec-WebSocket-Protocol", "v2.chat, v1.chat")
        .header("Sec-WebSocket-Protocol", "v3.chat")
        .body(())
        .unwrap();
    let (mut client, response) = within(wsx::connect(request)).await.unwrap();
    let (mut server, offered) = within(server).await.unwrap();
    assert_eq!(offered, ["v2.chat", "v1.chat", "v3.chat"]);
    assert_eq!(response.headers()["sec-websocket-protocol"], "v1.chat");
    assert_eq!(client.protocol(), Some("v1.chat"));
    assert_eq!(server.protocol(), Some("v1.chat"));

    // And the connection works.
    within(client.send(Message::text("hi"))).await.unwrap();
    assert_eq!(within(server.recv()).await.unwrap().unwrap(), Message::text("hi"));
}

/// §4.2.2: a server that supports none of the offered subprotocols sends
/// no `Sec-WebSocket-Protocol`; neither end reports one.
#[tokio::test]
async fn no_subprotocol_when_server_selects_none() {
    let (addr, server) = server(Config::default()).await;
    let request = http::Request::get(ws_url(addr, "/")).header("Sec-WebSocket-Protocol", "chat").body(()).unwrap();
    let (client, response) = within(wsx::connect(request)).await.unwrap();
    let server = within(server).await.unwrap().unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    assert_eq!(client.protocol(), None);
    assert_eq!(server.protocol(), None);
}

/// §4.2.2: the server may refuse with any HTTP status; the client fails the
/// connection with that status, the server reports the rejection, and the
/// body reaches the client.
#[tokio::test]
async fn callback_rejection_is_sent_as_response_and_reported_on_both_sides() {
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        wsx::accept_with(
            tcp,
            |req: &UpgradeRequest| {
                if req.origin() != Some("https://allowed.example") {
                    return Err(wsx::handshake::Reject::new(403, "origin not allowed"));
                }
                Ok(Accept::new())
            },
            &Config::default(),
        )
        .await
    });
    let request = http::Request::get(ws_url(addr, "/")).header("Origin", "https://evil.example").body(()).unwrap();
    let err = within(wsx::connect(request)).await.unwrap_err();
    // The client keeps the response: status, headers, the body's first line.
    match &err {
        Error::Refused(r) => {
            assert_eq!(r.status(), 403);
            assert_eq!(r.body_line(), Some("origin not allowed"), "{r:?}");
        }
        other => panic!("client got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "the server answered 403 Forbidden instead of 101 Switching Protocols: origin not allowed"
    );
    let err = within(server).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Rejected(s) if s == 403), "server got {err:?}");

    // The same refusal seen raw: status, body and length.
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        wsx::accept_with(tcp, |_: &UpgradeRequest| Err(wsx::handshake::Reject::new(403, "go away")), &Config::default())
            .await
    });
    let response = raw_exchange(addr, upgrade_request("/", "").as_bytes()).await;
    assert_eq!(status(&response), 403, "{response}");
    assert_eq!(header(&response, "content-length").as_deref(), Some("7"));
    assert!(response.ends_with("\r\n\r\ngo away"), "{response}");
    assert!(matches!(within(server).await.unwrap(), Err(Error::Rejected(s)) if s == 403));
}

/// The callback sees the whole request: path, query, origin, cookies and
/// any header; its extra response headers reach the client.
#[tokio::test]
async fn callback_sees_path_query_origin_cookies_and_headers() {
    #[derive(Debug, Default)]
    struct Seen {
        path: String,
        query: Option<String>,
        token: Option<String>,
        origin: Option<String>,
        session: Option<String>,
        theme: Option<String>,
        custom: Option<String>,
        version: u8,
    }
    let (l, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut seen = Seen::default();
        let ws = wsx::accept_with(
            tcp,
            |req: &UpgradeRequest| {
                seen = Seen {
                    path: req.path().to_owned(),
                    query: req.query().map(str::to_owned),
                    token: req.query_param("token").map(str::to_owned),
                    origin: req.origin().map(str::to_owned),
                    session: req.cookie("session").map(str::to_owned),
                    theme: req.cookie("theme").map(str::to_owned),
                    custom: req.header("x-custom").map(str::to_owned),
                    version: req.version(),
                };
                Ok(Accept::new().header("x-server", "wsx").header("set-cookie", "seen=1"))
            },
            &Config::default(),
        )
        .await
        .unwrap();
        (ws, seen)
    });
    let request = http::Request::get(ws_url(addr, "/rooms/42?token=abc&lang=en"))
        .header("Origin", "https://app.example")
        .header("Cookie", "theme=dark; session=s3cr3t")
        .header("X-Custom", "custom value")
        .body(())
        .unwrap();
    let (_client, response) = within(wsx::connect(request)).await.unwrap();
    let (_server, seen) = within(server).await.unwrap();
    assert_eq!(seen.path, "/rooms/42");
    assert_eq!(seen.query.as_deref(), Some("token=abc&lang=en"));
    assert_eq!(seen.token.as_deref(), Some("abc"));
    assert_eq!(seen.origin.as_deref(), Some("https://app.example"));
    assert_eq!(seen.session.as_deref(), Some("s3cr3t"));
    assert_eq!(seen.theme.as_deref(), Some("dark"));
    assert_eq!(seen.custom.as_deref(), Some("custom value"));
    assert_eq!(seen.version, 13);
    assert_eq!(response.headers()["x-server"], "wsx");
    assert_eq!(response.headers()["set-cookie"], "seen=1");
}

/// RFC 6455 §4.2.2 step 5: the 101 carries `Upgrade`, `Connection` and the
/// accept key derived from the client's key (§1.3 sample values).
#[tokio::test]
async fn server_answers_valid_request_with_101_and_accept_key() {
    let (addr, server) = server(Config::default()).await;
    let mut raw = Raw::connect(addr).await;
    raw.write(upgrade_request("/", "").as_bytes()).await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "sec-websocket-accept").as_deref(), Some(ACCEPT));
    assert!(header(&head, "upgrade").unwrap().eq_ignore_ascii_case("websocket"));
    assert!(header(&head, "connection").unwrap().eq_ignore_ascii_case("upgrade"));
    within(server).await.unwrap().unwrap();
}

/// §4.4 / §4.2.2: an unsupported version is answered 426 with the versions
/// the server speaks in `Sec-WebSocket-Version`.
#[tokio::test]
async fn unsupported_version_gets_426_with_supported_versions() {
    let (addr, server) = server(Config::default()).await;
    let response = raw_exchange(addr, request_with("Version: 13", "Version: 12").as_bytes()).await;
    assert_eq!(status(&response), 426, "{response}");
    assert_eq!(header(&response, "sec-websocket-version").as_deref(), Some("13, 8, 7"));
    let err = within(server).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::UnsupportedVersion(ref v)) if v == "12"), "{err:?}");
}

/// Versions 8 and 7 (hybi-08/-07, the same framing as 13) are accepted.
#[tokio::test]
async fn versions_8_and_7_are_accepted() {
    for v in ["8", "7"] {
        let (addr, server) = server(Config::default()).await;
        let mut raw = Raw::connect(addr).await;
        raw.write(request_with("Version: 13", &format!("Version: {v}")).as_bytes()).await;
        let head = raw.read_head().await;
        assert_eq!(status(&head), 101, "version {v}: {head}");
        assert_eq!(header(&head, "sec-websocket-accept").as_deref(), Some(ACCEPT));
        let mut ws = within(server).await.unwrap().unwrap();
        raw.write(&client_frame(0x1, b"hybi")).await;
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("hybi"));
    }
}

/// §4.2.1 item 5: a request without `Sec-WebSocket-Key` is a bad request.
#[tokio::test]
async fn missing_key_gets_400() {
    let (addr, server) = server(Config::default()).await;
    let request = request_with(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
    let response = raw_exchange(addr, request.as_bytes()).await;
    assert_eq!(status(&response), 400, "{response}");
    let err = within(server).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::InvalidKey)), "{err:?}");
}

/// §4.2.1 item 1: the method must be GET; anything else is 405 with
/// `Allow: GET`.
#[tokio::test]
async fn post_gets_405() {
    let (addr, server) = server(Config::default()).await;
    let response = raw_exchange(addr, request_with("GET ", "POST ").as_bytes()).await;
    assert_eq!(status(&response), 405, "{response}");
    assert_eq!(header(&response, "allow").as_deref(), Some("GET"));
    let err = within(server).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::MethodNotGet)), "{err:?}");
}

/// A request head larger than the limit (16 KiB by default) is refused
/// with 431 instead of being buffered without bound.
#[tokio::test]
async fn oversized_request_head_gets_431() {
    let (addr, server) = server(Config::default()).await;
    let filler = format!("X-Filler: {}\r\n", "a".repeat(17 << 10));
    let response = raw_exchange(addr, upgrade_request("/", &filler).as_bytes()).await;
    assert_eq!(status(&response), 431, "{response}");
    let err = within(server).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::TooLarge(_))), "{err:?}");
}

/// A client that sends half a request and stalls (slowloris) is cut off by
/// the handshake timeout.
#[tokio::test]
async fn handshake_timeout_fires_on_slowloris_client() {
    let config = Config::default().with_handshake_timeout(Duration::from_millis(200));
    let (addr, server) = server(config).await;
    let mut raw = Raw::connect(addr).await;
    let request = upgrade_request("/", "");
    raw.write(&request.as_bytes()[..request.len() / 2]).await;
    let start = Instant::now();
    let err = within(server).await.unwrap().unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, Error::HandshakeTimeout), "{err:?}");
    assert!(elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    // The server dropped the connection.
    assert!(raw.read_to_eof().await.is_empty());
}

/// RFC 6455 §4.1 (client step 6): if the server selects a subprotocol the
/// client did not offer, the client fails the connection.
#[tokio::test]
async fn client_fails_when_server_selects_unoffered_subprotocol() {
    let (l, addr) = listen().await;
    let fake = tokio::spawn(async move {
        let raw = raw_server_upgrade(&l, "Sec-WebSocket-Protocol: other\r\n").await;
        let raw2 = raw_server_upgrade(&l, "Sec-WebSocket-Protocol: other\r\n").await;
        (raw, raw2)
    });
    let request = http::Request::get(ws_url(addr, "/")).header("Sec-WebSocket-Protocol", "chat").body(()).unwrap();
    let err = within(wsx::connect(request)).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::UnrequestedProtocol(ref p)) if p == "other"), "{err:?}");
    // Offering nothing at all does not make "other" acceptable either.
    let err = within(wsx::connect(ws_url(addr, "/"))).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::UnrequestedProtocol(ref p)) if p == "other"), "{err:?}");
    within(fake).await.unwrap();
}

/// §4.1 (client step 4): a wrong `Sec-WebSocket-Accept` fails the
/// connection.
#[tokio::test]
async fn client_fails_on_wrong_accept_key() {
    let (l, addr) = listen().await;
    let fake = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::new(tcp);
        raw.read_head().await;
        raw.write(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        raw
    });
    let err = within(wsx::connect(ws_url(addr, "/"))).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::AcceptMismatch)), "{err:?}");
    within(fake).await.unwrap();
}

/// Bytes that follow the handshake in the same segment belong to the
/// WebSocket stream, in both directions.
#[tokio::test]
async fn frames_sent_with_the_handshake_are_not_lost() {
    // Client request + first frame in one write.
    let (addr, server) = server(Config::default()).await;
    let mut raw = Raw::connect(addr).await;
    let mut bytes = upgrade_request("/", "").into_bytes();
    bytes.extend_from_slice(&client_frame(0x1, b"early"));
    raw.write(&bytes).await;
    let mut ws = within(server).await.unwrap().unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("early"));

    // Server 101 + first frame in one write.
    let (l, addr) = listen().await;
    let fake = tokio::spawn(async move { raw_server_upgrade_with(&l, "", &frame(true, 0x2, &[7, 7, 7], None)).await });
    let (mut client, _) = within(wsx::connect(ws_url(addr, "/"))).await.unwrap();
    assert_eq!(within(client.recv()).await.unwrap().unwrap(), Message::binary(vec![7u8, 7, 7]));
    within(fake).await.unwrap();
}

/// `Config::with_rng_seed` makes the client's handshake nonce replayable
/// too (the masking keys are checked in wsx-proto); without a seed, it is
/// drawn afresh.
#[tokio::test]
async fn a_seeded_client_sends_the_same_nonce() {
    async fn key_sent(config: Config) -> String {
        let (l, addr) = listen().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let mut raw = Raw::new(tcp);
            header(&raw.read_head().await, "sec-websocket-key").unwrap()
        });
        let _ = tokio::time::timeout(Duration::from_millis(300), wsx::connect_with(ws_url(addr, "/"), &config)).await;
        within(server).await.unwrap()
    }
    let seeded = || Config::default().with_protocol(wsx::proto::Config::default().with_rng_seed(42));
    assert_eq!(key_sent(seeded()).await, key_sent(seeded()).await);
    assert_ne!(key_sent(Config::default()).await, key_sent(Config::default()).await);
}
