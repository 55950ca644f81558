//! The server: `accept` and `accept_with` over any stream.

use crate::{Config, Error, Result, WebSocket};
use bytes::{Bytes, BytesMut};
use http::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsx_proto::handshake::{parse_request, write_response, Accept, UpgradeRequest};
use wsx_proto::Role;

/// Accept a WebSocket connection on `stream` with default settings and no
/// subprotocol.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let (tcp, _) = listener.accept().await?;
/// let mut ws = wsx::accept(tcp).await?;
/// while let Some(msg) = ws.recv().await {
///     let msg = msg?;
///     if msg.is_text() || msg.is_binary() {
///         ws.feed(msg).await?;
///     }
/// }
/// # Ok(()) }
/// ```
// The callback's error type (a whole `http::Response`) is public API.
#[allow(clippy::result_large_err)]
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<WebSocket<S>> {
    accept_with(stream, |_: &UpgradeRequest| Ok(Accept::new()), &Config::default()).await
}

/// Accept a WebSocket connection, letting `callback` see the whole request
/// (path, query, headers, cookies, origin, offered subprotocols) and either
/// accept it (choosing a subprotocol, adding headers) or reject it with any
/// response. Malformed requests are answered by the handshake itself (400,
/// 405, 426 with the versions we speak, 431). Bounded by the handshake
/// timeout.
///
/// ```no_run
/// # async fn run(tcp: tokio::net::TcpStream) -> wsx::Result<()> {
/// use wsx::handshake::{Accept, UpgradeRequest};
/// let ws = wsx::accept_with(tcp, |req: &UpgradeRequest| {
///     if req.origin() != Some("https://example.com") {
///         return Err(http::Response::builder().status(403).body("forbidden".into()).unwrap());
///     }
///     let chat = req.protocols().iter().find(|p| *p == "chat").cloned();
///     Ok(match chat { Some(p) => Accept::new().protocol(p), None => Accept::new() })
/// }, &wsx::Config::default()).await?;
/// # Ok(()) }
/// ```
pub async fn accept_with<S, F>(stream: S, callback: F, config: &Config) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&UpgradeRequest) -> std::result::Result<Accept, Response<Bytes>>,
{
    // Boxed so that the handshake's buffers and timer are not part of the
    // caller's task for the life of the connection (idle footprint).
    Box::pin(tokio::time::timeout(config.handshake_timeout(), accept_inner(stream, callback, config)))
        .await
        .map_err(|_| Error::HandshakeTimeout)?
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, resp: &Response<Bytes>) -> Result<()> {
    let mut out = Vec::with_capacity(256);
    write_response(resp, resp.body(), &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

async fn accept_inner<S, F>(mut stream: S, callback: F, config: &Config) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&UpgradeRequest) -> std::result::Result<Accept, Response<Bytes>>,
{
    let max = config.max_handshake_size();
    let mut buf = BytesMut::with_capacity(1024);
    let parsed = loop {
        match parse_request(&buf, max) {
            Ok(Some(r)) => break Ok(r),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    };
    let checked = parsed.and_then(|(request, head_len)| Ok((UpgradeRequest::from_request(request)?, head_len)));
    let (upgrade, head_len) = match checked {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "refusing upgrade request");
            respond(&mut stream, &e.to_response()).await?;
            return Err(e.into());
        }
    };
    let accept = match callback(&upgrade) {
        Ok(a) => a,
        Err(resp) => {
            let status = resp.status();
            respond(&mut stream, &resp).await?;
            return Err(Error::Rejected(status));
        }
    };
    // RFC 7692: take the first acceptable permessage-deflate offer.
    let deflate =
        config.deflate(Role::Server).and_then(|cfg| wsx_proto::deflate::server_negotiate(&cfg, upgrade.extensions()));
    let ext_header = deflate.as_ref().map(|(_, h)| h.as_str());
    let response = match upgrade.accept(&accept, ext_header) {
        Ok(r) => r,
        Err(e) => {
            respond(&mut stream, &e.to_response()).await?;
            return Err(e.into());
        }
    };
    let mut out = Vec::with_capacity(256);
    write_response(&response, &[], &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let protocol = accept.selected_protocol().map(str::to_owned);
    let (params, header) = deflate.map_or((None, None), |(p, h)| (Some(p), Some(h)));
    Ok(WebSocket::from_negotiated(stream, Role::Server, config, &buf[head_len..], params.as_ref())
        .with_negotiated(protocol, header))
}
