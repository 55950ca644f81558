//! The client through proxies started in the test on 127.0.0.1: a minimal
//! HTTP CONNECT proxy (optionally requiring basic authentication) and a
//! minimal SOCKS5 proxy (no authentication, or username/password), to a
//! wsx echo server, for ws:// and wss://; proxies picked from an
//! environment given as a function (the process environment is never
//! read or changed); and the typed errors of refusals.

mod common;
#[path = "support/pki.rs"]
mod pki;

use base64::Engine;
use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsx::proxy::{Proxy, ProxyEnv, ProxyError, ProxyMode};
use wsx::{CloseCode, Config, Error, Message};

/// What a test proxy was asked to connect to, in order.
type Log = Arc<Mutex<Vec<String>>>;

/// Credentials a test proxy insists on.
type Creds = Option<(&'static str, &'static str)>;

/// A minimal HTTP proxy: reads `CONNECT host:port`, checks
/// `Proxy-Authorization` when `creds` is set (else 407), answers 200 and
/// relays bytes; 502 when the target cannot be reached.
async fn http_proxy(creds: Creds) -> (SocketAddr, Log) {
    let (l, addr) = listen().await;
    let log = Log::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let log = log2.clone();
            tokio::spawn(async move {
                let mut raw = Raw::new(tcp);
                let head = raw.read_head().await;
                let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                assert!(head.starts_with("CONNECT "), "{head}");
                assert_eq!(header(&head, "host").as_deref(), Some(target.as_str()));
                log.lock().unwrap().push(target.clone());
                if let Some((u, p)) = creds {
                    let want =
                        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
                    if header(&head, "proxy-authorization").as_deref() != Some(want.as_str()) {
                        raw.write(
                            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                              Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 6\r\n\r\ndenied",
                        )
                        .await;
                        return;
                    }
                }
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    raw.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
                    return;
                };
                raw.write(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                let _ = tokio::io::copy_bidirectional(&mut raw.stream, &mut upstream).await;
            });
        }
    });
    (addr, log)
}

/// A minimal SOCKS5 proxy (RFC 1928 / 1929): no authentication, or
/// username/password when `creds` is set; CONNECT to IPv4, IPv6 or a
/// domain name (logged as `d:name:port`); reply 5 (refused) when the
/// target cannot be reached.
async fn socks5_proxy(creds: Creds) -> (SocketAddr, Log) {
    let (l, addr) = listen().await;
    let log = Log::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let log = log2.clone();
            tokio::spawn(async move {
                let _ = socks5_session(tcp, creds, log).await;
            });
        }
    });
    (addr, log)
}

async fn socks5_session(mut tcp: TcpStream, creds: Creds, log: Log) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await?;
    assert_eq!(head[0], 5);
    let mut methods = vec![0u8; head[1] as usize];
    tcp.read_exact(&mut methods).await?;
    let want = if creds.is_some() { 2 } else { 0 };
    if !methods.contains(&want) {
        tcp.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    tcp.write_all(&[5, want]).await?;
    if let Some((u, p)) = creds {
        let mut ver_len = [0u8; 2];
        tcp.read_exact(&mut ver_len).await?;
        assert_eq!(ver_len[0], 1);
        let mut user = vec![0u8; ver_len[1] as usize];
        tcp.read_exact(&mut user).await?;
        let mut plen = [0u8; 1];
        tcp.read_exact(&mut plen).await?;
        let mut pass = vec![0u8; plen[0] as usize];
        tcp.read_exact(&mut pass).await?;
        let ok = user == u.as_bytes() && pass == p.as_bytes();
        tcp.write_all(&[1, if ok { 0 } else { 1 }]).await?;
        if !ok {
            return Ok(());
        }
    }
    let mut req = [0u8; 4];
    tcp.read_exact(&mut req).await?;
    assert_eq!(&req[..3], &[5, 1, 0]);
    let (host, logged) = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            tcp.read_exact(&mut a).await?;
            let ip = std::net::Ipv4Addr::from(a).to_string();
            (ip.clone(), ip)
        }
        4 => {
            let mut a = [0u8; 16];
            tcp.read_exact(&mut a).await?;
            let ip = std::net::Ipv6Addr::from(a);
            (format!("[{ip}]"), format!("[{ip}]"))
        }
        3 => {
            let mut n = [0u8; 1];
            tcp.read_exact(&mut n).await?;
            let mut name = vec![0u8; n[0] as usize];
            tcp.read_exact(&mut name).await?;
            let name = String::from_utf8(name).unwrap();
            (name.clone(), format!("d:{name}"))
        }
        t => panic!("address type {t}"),
    };
    let mut port = [0u8; 2];
    tcp.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    log.lock().unwrap().push(format!("{logged}:{port}"));
    let Ok(mut upstream) = TcpStream::connect(format!("{host}:{port}")).await else {
        tcp.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    };
    tcp.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]).await?;
    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
    Ok(())
}

/// A wsx echo server on 127.0.0.1 accepting any number of connections.
async fn echo_server_many() -> SocketAddr {
    let (l, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut ws = wsx::accept(tcp).await?;
                echo(&mut ws).await
            });
        }
    });
    addr
}

async fn round_trip(url: &str, config: &Config) {
    let (mut ws, response) = within(wsx::connect_with(url, config)).await.unwrap();
    assert_eq!(response.status(), 101);
    for msg in [Message::text("through the proxy"), Message::binary(vec![5u8; 100_000])] {
        within(ws.send(msg.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), msg);
    }
    within(ws.close(CloseCode::Normal, "")).await.unwrap();
    while within(ws.recv()).await.is_some() {}
}

fn proxy_config(url: &str) -> Config {
    Config::default().with_proxy(Proxy::parse(url).unwrap())
}

fn logged(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

// ------------------------------------------------------------ HTTP CONNECT

#[tokio::test]
async fn ws_through_an_http_connect_proxy() {
    let server = echo_server_many().await;
    let (proxy, log) = http_proxy(None).await;
    round_trip(&format!("ws://{server}/"), &proxy_config(&format!("http://{proxy}"))).await;
    assert_eq!(logged(&log), [server.to_string()]);
}

#[tokio::test]
async fn http_proxy_basic_auth_from_the_url() {
    let server = echo_server_many().await;
    let (proxy, log) = http_proxy(Some(("alice", "p@ss:word"))).await;
    // Userinfo is percent-decoded.
    round_trip(&format!("ws://{server}/"), &proxy_config(&format!("http://alice:p%40ss%3Aword@{proxy}"))).await;
    assert_eq!(logged(&log).len(), 1);
}

#[tokio::test]
async fn http_proxy_wrong_or_missing_credentials_get_407() {
    let server = echo_server_many().await;
    let (proxy, _) = http_proxy(Some(("alice", "secret"))).await;
    for url in [format!("http://alice:badpass@{proxy}"), format!("http://{proxy}")] {
        let err = within(wsx::connect_with(format!("ws://{server}/"), &proxy_config(&url))).await.unwrap_err();
        assert!(
            matches!(proxy_err(&err), ProxyError::HttpStatus(s) if *s == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("407 Proxy Authentication Required"), "{msg}");
        assert!(!msg.contains("badpass"), "the password leaked: {msg}");
    }
}

#[tokio::test]
async fn http_proxy_cannot_reach_the_server() {
    let (l, closed) = listen().await;
    drop(l);
    let (proxy, _) = http_proxy(None).await;
    let err = within(wsx::connect_with(format!("ws://{closed}/"), &proxy_config(&format!("http://{proxy}"))))
        .await
        .unwrap_err();
    assert!(matches!(proxy_err(&err), ProxyError::HttpStatus(s) if s.as_u16() == 502), "{err:?}");
}

#[tokio::test]
async fn wss_through_an_http_connect_proxy() {
    let ca = pki::Ca::new("wsx proxy test CA");
    let acceptor = pki::acceptor(&ca, &["localhost"]);
    let (l, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(tcp).await?;
                let mut ws = wsx::accept(tls).await?;
                echo(&mut ws).await
            });
        }
    });
    let (proxy, log) = http_proxy(None).await;
    let config = proxy_config(&format!("http://{proxy}")).with_tls_config(ca.client_config());
    // TLS runs end to end: the proxy is asked for localhost, and the
    // certificate is checked against it.
    round_trip(&format!("wss://localhost:{}/", addr.port()), &config).await;
    assert_eq!(logged(&log), [format!("localhost:{}", addr.port())]);
}

// ------------------------------------------------------------------ SOCKS5

#[tokio::test]
async fn ws_through_a_socks5_proxy_without_auth() {
    let server = echo_server_many().await;
    let (proxy, log) = socks5_proxy(None).await;
    round_trip(&format!("ws://{server}/"), &proxy_config(&format!("socks5://{proxy}"))).await;
    assert_eq!(logged(&log), [server.to_string()]);
}

#[tokio::test]
async fn socks5_username_and_password() {
    let server = echo_server_many().await;
    let (proxy, log) = socks5_proxy(Some(("bob", "hunter2"))).await;
    round_trip(&format!("ws://{server}/"), &proxy_config(&format!("socks5://bob:hunter2@{proxy}"))).await;
    assert_eq!(logged(&log).len(), 1);

    let err =
        within(wsx::connect_with(format!("ws://{server}/"), &proxy_config(&format!("socks5://bob:nope@{proxy}"))))
            .await
            .unwrap_err();
    assert!(matches!(proxy_err(&err), ProxyError::AuthFailed), "{err:?}");
    assert!(err.to_string().contains("rejected the username or password"), "{err}");

    let err = within(wsx::connect_with(format!("ws://{server}/"), &proxy_config(&format!("socks5://{proxy}"))))
        .await
        .unwrap_err();
    assert!(matches!(proxy_err(&err), ProxyError::NoAcceptableAuth(_)), "{err:?}");
}

/// socks5 resolves the name in the client (the proxy sees an address),
/// socks5h leaves it to the proxy (it sees the name).
#[tokio::test]
async fn socks5_and_socks5h_name_resolution() {
    let server = echo_server_many().await;
    let (proxy, log) = socks5_proxy(None).await;
    let url = format!("ws://localhost:{}/", server.port());
    round_trip(&url, &proxy_config(&format!("socks5h://{proxy}"))).await;
    assert_eq!(logged(&log), [format!("d:localhost:{}", server.port())]);
    // localhost may resolve to ::1 first, where nobody listens: use the
    // IPv4 literal name for the resolved case.
    round_trip(&format!("ws://127.0.0.1:{}/", server.port()), &proxy_config(&format!("socks5://{proxy}"))).await;
    assert_eq!(logged(&log)[1], server.to_string());
}

#[tokio::test]
async fn socks5_proxy_cannot_reach_the_server() {
    let (l, closed) = listen().await;
    drop(l);
    let (proxy, _) = socks5_proxy(None).await;
    let err = within(wsx::connect_with(format!("ws://{closed}/"), &proxy_config(&format!("socks5://{proxy}"))))
        .await
        .unwrap_err();
    assert!(matches!(proxy_err(&err), ProxyError::SocksRefused(5)), "{err:?}");
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn unreachable_proxy_is_a_proxy_connect_error() {
    let (l, closed) = listen().await;
    drop(l);
    let err = within(wsx::connect_with("ws://127.0.0.1:9/", &proxy_config(&format!("socks5://u:pw@{closed}"))))
        .await
        .unwrap_err();
    assert!(matches!(proxy_err(&err), ProxyError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("cannot connect to proxy socks5://u@{closed}")), "{msg}");
}

/// A server that is not a proxy at all.
#[tokio::test]
async fn not_a_proxy() {
    let (l, addr): (TcpListener, _) = listen().await;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            let _ = tcp.write_all(b"SSH-2.0-OpenSSH\r\n").await;
        }
    });
    let err =
        within(wsx::connect_with("ws://127.0.0.1:9/", &proxy_config(&format!("socks5://{addr}")))).await.unwrap_err();
    assert!(matches!(proxy_err(&err), ProxyError::InvalidReply(_)), "{err:?}");
}

// ------------------------------------------------------------- environment

fn env(vars: Vec<(&'static str, String)>) -> Config {
    let lookup = move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    Config::default().with_proxy_mode(ProxyMode::Env(ProxyEnv::from_fn(lookup)))
}

#[tokio::test]
async fn proxy_from_the_environment_and_no_proxy() {
    let server = echo_server_many().await;
    let (proxy, log) = http_proxy(None).await;
    let url = format!("ws://{server}/");
    // http_proxy is used for ws://.
    round_trip(&url, &env(vec![("http_proxy", format!("http://{proxy}"))])).await;
    assert_eq!(logged(&log).len(), 1);
    // HTTP_PROXY is not (curl ignores it), all_proxy is the fallback.
    round_trip(&url, &env(vec![("HTTP_PROXY", format!("http://{proxy}"))])).await;
    assert_eq!(logged(&log).len(), 1);
    round_trip(&url, &env(vec![("ALL_PROXY", format!("http://{proxy}"))])).await;
    assert_eq!(logged(&log).len(), 2);
    // no_proxy bypasses it, by address or with the port.
    for no in ["127.0.0.1".to_owned(), format!("127.0.0.1:{}", server.port()), "*".to_owned()] {
        round_trip(&url, &env(vec![("http_proxy", format!("http://{proxy}")), ("no_proxy", no)])).await;
    }
    assert_eq!(logged(&log).len(), 2);
    // ... and not for another port.
    round_trip(&url, &env(vec![("http_proxy", format!("http://{proxy}")), ("NO_PROXY", "127.0.0.1:1".into())])).await;
    assert_eq!(logged(&log).len(), 3);
}

/// The default is a direct connection, whatever the environment holds.
#[tokio::test]
async fn direct_by_default() {
    assert!(matches!(Config::default().proxy_mode(), ProxyMode::Direct));
    let (mut ws, _) = within(wsx::connect(format!("ws://{}/", echo_server_many().await))).await.unwrap();
    within(ws.send(Message::text("direct"))).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), Message::text("direct"));
}

#[tokio::test]
async fn invalid_proxy_url_in_the_environment() {
    let err = within(wsx::connect_with("wss://127.0.0.1:9/", &env(vec![("https_proxy", "ftp://x:1".into())])))
        .await
        .unwrap_err();
    assert!(matches!(proxy_err(&err), ProxyError::UnsupportedScheme(_)), "{err:?}");
}

/// The proxy error inside a `wsx::Error` (boxed there).
fn proxy_err(err: &Error) -> &ProxyError {
    match err {
        Error::Proxy(p) => p,
        other => panic!("expected a proxy error, got {other:?}"),
    }
}
