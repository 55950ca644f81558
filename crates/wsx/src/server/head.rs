//! HTTP/1.1 on the server's side of a connection: reading a request head
//! (bounded in size; the caller bounds it in time), the request as
//! handlers and policies see it ([`RequestHead`], of HTTP/1.1 and HTTP/2
//! alike), and writing a whole response.

use crate::Result;
use bytes::{Bytes, BytesMut};
use http::{header, Method, Request, Response};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsx_proto::handshake::{write_head, write_response, HandshakeError, HeadReader};

/// A request head and the peer it came from, as handlers, policies and
/// auth hooks see it.
///
/// ```
/// use wsx::server::RequestHead;
/// let req = http::Request::get("/ws?token=a%20b&room=x+y")
///     .header("cookie", "session=s1; theme=dark")
///     .header("authorization", "Bearer t0k")
///     .body(()).unwrap();
/// let req = RequestHead::new(req, None);
/// assert_eq!(req.query_param("token").as_deref(), Some("a b"));
/// assert_eq!(req.query_param("room").as_deref(), Some("x y"));
/// assert_eq!(req.cookie("session"), Some("s1"));
/// assert_eq!(req.bearer_token(), Some("t0k"));
/// assert_eq!(req.token().as_deref(), Some("t0k"));
/// ```
#[derive(Debug, Clone)]
pub struct RequestHead {
    request: Request<()>,
    peer: Option<SocketAddr>,
}

impl RequestHead {
    /// Wrap a request head and the peer's address.
    pub fn new(request: Request<()>, peer: Option<SocketAddr>) -> Self {
        Self { request, peer }
    }

    /// The request head (method, URI, headers).
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The request head, owned.
    pub fn into_request(self) -> Request<()> {
        self.request
    }

    /// The peer's address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.request.method()
    }

    /// The path of the request target.
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// A header's value, when present and visible ASCII.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.request.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Origin` header (sent by browsers).
    pub fn origin(&self) -> Option<&str> {
        self.header(header::ORIGIN)
    }

    /// Whether this asks for a WebSocket: `Upgrade: websocket` on HTTP/1.1
    /// (RFC 6455 §4.2.1 item 3), an extended `CONNECT` with `:protocol`
    /// `websocket` on HTTP/2 (RFC 8441 §5). Whether it is a valid one is
    /// checked on upgrade.
    pub fn is_upgrade(&self) -> bool {
        if self.request.method() == Method::CONNECT {
            return self.connect_protocol().is_some_and(|p| p.eq_ignore_ascii_case("websocket"));
        }
        wsx_proto::handshake::header_has_token(self.request.headers(), header::UPGRADE, "websocket")
    }

    /// The `:protocol` of an HTTP/2 extended `CONNECT` (RFC 8441 §4).
    pub fn connect_protocol(&self) -> Option<&str> {
        #[cfg(feature = "http2")]
        if let Some(p) = self.request.extensions().get::<h2::ext::Protocol>() {
            return Some(p.as_str());
        }
        // A request from hyper's server (`Server::service`).
        #[cfg(feature = "hyper")]
        if let Some(p) = self.request.extensions().get::<hyper::ext::Protocol>() {
            return Some(p.as_str());
        }
        None
    }

    /// The HTTP version the request came on (1.1 or 2).
    pub fn version(&self) -> http::Version {
        self.request.version()
    }

    /// A query parameter, decoded as HTML forms encode it
    /// (`application/x-www-form-urlencoded`: `%XX` escapes, `+` is a space;
    /// a malformed escape stays as it is, invalid UTF-8 is replaced).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.request.uri().query()?;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        wsx_proto::handshake::cookie(self.request.headers(), name)
    }

    /// The token of an `Authorization: Bearer TOKEN` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let v = self.header(header::AUTHORIZATION)?;
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
    }

    /// A token from the first place that has one: the `Authorization:
    /// Bearer` header, the `token` query parameter (browsers cannot set
    /// headers on a WebSocket), or the `token` cookie.
    pub fn token(&self) -> Option<String> {
        self.bearer_token()
            .map(str::to_owned)
            .or_else(|| self.query_param("token"))
            .or_else(|| self.cookie("token").map(str::to_owned))
    }
}

/// Read an HTTP request head from `stream` into `buf`.
///
/// `Ok(Some(Ok((request, len))))`: the head is `buf[..len]`; bytes after
/// it are the client's first WebSocket (or body) bytes. `Ok(Some(Err(e)))`:
/// the head is malformed or longer than `max` bytes; answer with
/// [`HandshakeError::to_response`]. `Ok(None)`: the peer closed before a
/// whole head. Each byte is searched once, however the head is split into
/// reads ([`HeadReader`]). The caller bounds the wait.
pub(crate) async fn read_request_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<std::result::Result<(Request<()>, usize), HandshakeError>>> {
    let mut reader = HeadReader::new(max);
    loop {
        match reader.request(buf) {
            Ok(Some(r)) => return Ok(Some(Ok(r))),
            Ok(None) => {}
            Err(e) => return Ok(Some(Err(e))),
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Write a whole response (its body unless `head_only`, for `HEAD`) and
/// close the sending side: every response that is not a 101 ends its
/// connection.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response<Bytes>,
    head_only: bool,
) -> Result<()> {
    // The connection closes after this response: say so (RFC 9112 §9.6),
    // or a client that pools connections may send its next request on
    // this one and lose it to the close.
    let closing;
    let resp = if resp.headers().contains_key(header::CONNECTION) {
        resp
    } else {
        let mut r = resp.clone();
        r.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        closing = r;
        &closing
    };
    let body: &[u8] = if head_only { &[] } else { resp.body() };
    let mut out = Vec::with_capacity(256 + body.len());
    write_response(resp, body, &mut out);
    if head_only && !resp.headers().contains_key(header::CONTENT_LENGTH) {
        // `write_response` counted the empty body: a HEAD response states
        // the length a GET would get (RFC 9110 §9.3.2).
        out.clear();
        let mut with_len = resp.clone();
        with_len.headers_mut().insert(header::CONTENT_LENGTH, resp.body().len().into());
        write_response(&with_len, &[], &mut out);
    }
    stream.write_all(&out).await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Write the head of a response whose body follows as it is produced: no
/// length, so the body runs until the connection closes (RFC 9112 §6.3
/// item 8), which `Connection: close` announces.
pub(crate) async fn write_stream_head<S: AsyncWrite + Unpin>(stream: &mut S, resp: &Response<()>) -> Result<()> {
    let mut head = Response::new(());
    *head.status_mut() = resp.status();
    *head.headers_mut() = resp.headers().clone();
    head.headers_mut().remove(header::CONTENT_LENGTH);
    head.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    let mut out = Vec::with_capacity(256);
    write_head(&head, &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

/// Remove the fields HTTP/2 and HTTP/3 forbid in a message (RFC 9113
/// §8.2.2, RFC 9114 §4.2: `Connection` and the connection-specific
/// fields), which the handshake's HTTP/1.1 answers carry (`Connection:
/// close`, the 426's `Upgrade`).
#[cfg(any(feature = "hyper", feature = "http2", feature = "http3"))]
pub(crate) fn remove_connection_fields(headers: &mut http::HeaderMap) {
    for name in [header::CONNECTION, header::UPGRADE, header::TRANSFER_ENCODING, header::TE] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response after which the connection closes says so; one that
    /// already has a `Connection` header keeps it.
    #[tokio::test]
    async fn a_response_announces_the_close() {
        let mut out = Vec::new();
        respond(&mut out, &Response::new(Bytes::from_static(b"ok")), false).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{text}");
        let mut out = Vec::new();
        let mut r = Response::new(Bytes::new());
        r.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        respond(&mut out, &r, false).await.unwrap();
        assert_eq!(String::from_utf8(out).unwrap().to_ascii_lowercase().matches("connection:").count(), 1);
    }
}
