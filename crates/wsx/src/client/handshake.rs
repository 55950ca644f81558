//! The client's side of the opening handshake: HTTP/1.1 over any stream
//! (RFC 6455 §4.1, §4.2.2), and what it shares with HTTP/2's extended
//! `CONNECT`: the permessage-deflate offer, the WebSocket made from an
//! accepted response, the error of a refused one.

use crate::refused::Refused;
use crate::{Config, Error, Result, WebSocket};
use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsx_proto::handshake::{ClientHandshake, HeadReader};
use wsx_proto::Role;

pub(crate) async fn client_handshake_inner<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut request: Request<()>,
    config: &Config,
) -> Result<(WebSocket<S>, Response<()>)> {
    let deflate = offer_deflate(&mut request, config);
    let (bytes, handshake) = ClientHandshake::with_seed(request, config.protocol().rng_seed())?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    let mut reader = HeadReader::new(config.max_handshake_size());
    let mut buf = BytesMut::with_capacity(1024);
    let (response, head_len) = loop {
        // A TLS record (an alert or a handshake message) where an HTTP
        // response should be: the server wants TLS.
        if matches!(buf.first(), Some(0x15 | 0x16)) && buf.get(1).is_none_or(|&b| b == 0x03) {
            return Err(Error::WrongScheme { use_scheme: "wss" });
        }
        if let Some(r) = reader.response(&buf)? {
            break r;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    };
    let negotiated = match handshake.check_response(&response) {
        Ok(n) => n,
        Err(wsx_proto::handshake::HandshakeError::UnexpectedStatus(_)) => {
            let body = read_body(&mut stream, &mut buf, head_len, &response).await;
            return Err(refused(response, body));
        }
        Err(e) => return Err(e.into()),
    };
    let ws = negotiated_websocket(stream, config, deflate, negotiated, &response, &buf[head_len..])?;
    Ok((ws, response))
}

/// RFC 7692 §5: offer permessage-deflate unless the caller wrote its own
/// extension offer. Returns the settings offered, `None` when off.
pub(crate) fn offer_deflate(request: &mut Request<()>, config: &Config) -> Option<wsx_proto::deflate::DeflateConfig> {
    let deflate = config.deflate(Role::Client);
    if let Some(cfg) = &deflate {
        let h = request.headers_mut();
        if !h.contains_key(http::header::SEC_WEBSOCKET_EXTENSIONS) {
            if let Ok(v) = http::HeaderValue::from_str(&cfg.client_offer()) {
                h.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, v);
            }
        }
    }
    deflate
}

/// The client's WebSocket on `stream` once the server accepted: the
/// extensions of `response` checked against the `deflate` offer (RFC 7692
/// §5.1), `leftover` the bytes that came after the response's head.
pub(crate) fn negotiated_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: &Config,
    deflate: Option<wsx_proto::deflate::DeflateConfig>,
    negotiated: wsx_proto::handshake::Negotiated,
    response: &Response<()>,
    leftover: &[u8],
) -> Result<WebSocket<S>> {
    let params = wsx_proto::deflate::client_accept_response(&deflate.unwrap_or_default(), &negotiated.extensions)
        .map_err(|e| wsx_proto::handshake::HandshakeError::InvalidExtensionResponse(e.to_string()))?;
    let ext_header =
        response.headers().get(http::header::SEC_WEBSOCKET_EXTENSIONS).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok(WebSocket::from_negotiated(stream, Role::Client, config, leftover, params.as_ref())
        .with_negotiated(negotiated.protocol, ext_header))
}

/// The server refused the handshake with `response` (`body`: the start of
/// its body).
pub(crate) fn refused(response: Response<()>, body: Bytes) -> Error {
    let (parts, ()) = response.into_parts();
    Error::Refused(Box::new(Refused { response: Response::from_parts(parts, body) }))
}

/// The most of a refusal's body that is kept.
pub(crate) const MAX_REFUSAL_BODY: usize = 4096;

/// Read the body of a refusal: up to its `Content-Length` (or the end of
/// its chunks, or of the connection), at most [`MAX_REFUSAL_BODY`] bytes,
/// and for at most half a second (the head is what matters).
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    head_len: usize,
    response: &Response<()>,
) -> Bytes {
    let headers = response.headers();
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok())
        .map(|n| n.min(MAX_REFUSAL_BODY));
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        let body = &buf[head_len..];
        let complete = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete || body.len() >= MAX_REFUSAL_BODY {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    let body = &buf[head_len..];
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    let keep = length.unwrap_or(MAX_REFUSAL_BODY).min(body.len());
    Bytes::copy_from_slice(&body[..keep])
}

/// The data of a chunked body, as far as it is complete.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol]).ok().and_then(|l| {
            let hex = l.split(';').next().unwrap_or_default().trim();
            usize::from_str_radix(hex, 16).ok()
        });
        let Some(size) = size.filter(|&n| n > 0) else { break };
        let data = &raw[eol + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if take < size || data.len() < size + 2 {
            break;
        }
        raw = &data[size + 2..];
    }
    out
}
