//! The server of WebSockets over HTTP/3: [`serve`] and the [`Request`] a
//! handler gets.

use super::stream::H3Stream;
use super::WireToken;
use crate::handshake::{Accept, Reject, UpgradeRequest};
use crate::server::{remove_connection_fields, Accepted};
use crate::{Config, Error, Result, WebSocket};
use bytes::Bytes;
use http::{header, HeaderValue, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use wsx_proto::handshake::HandshakeError;

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// A WebSocket request (an extended `CONNECT` with `:protocol websocket`,
/// RFC 9220 §3) that [`serve`] read and checked: the request as on every
/// HTTP version ([`Request::request`]: path, headers, origin, offered
/// subprotocols and extensions), and where to answer it. Accept it with
/// [`Request::upgrade`], refuse it with [`Request::reject`].
pub struct Request {
    upgrade: UpgradeRequest,
    stream: Stream,
    config: Arc<Config>,
    peer: SocketAddr,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("request", self.upgrade.request()).field("peer", &self.peer).finish()
    }
}

impl Request {
    /// The checked request.
    pub fn request(&self) -> &UpgradeRequest {
        &self.upgrade
    }

    /// The client's address (of its QUIC connection).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Accept: answer 200 with the subprotocol `accept` selects and the
    /// permessage-deflate parameters the server's [`Config`] allows
    /// (decided as on HTTP/1.1 and HTTP/2), and return the WebSocket on
    /// the request stream. A subprotocol the client did not offer is
    /// answered with 500 and an error.
    ///
    /// ```no_run
    /// # async fn run(endpoint: wsx::http3::quinn::Endpoint) {
    /// wsx::http3::serve(endpoint, wsx::Config::default(), |req| async move {
    ///     let chat = req.request().protocols().iter().any(|p| p == "chat");
    ///     let accept = if chat { wsx::handshake::Accept::new().protocol("chat") } else { Default::default() };
    ///     let mut ws = req.upgrade(accept).await?;
    ///     ws.send(wsx::Message::text("hello over HTTP/3")).await
    /// })
    /// .await;
    /// # }
    /// ```
    pub async fn upgrade(mut self, accept: Accept) -> Result<WebSocket<H3Stream>> {
        let config = self.config.clone();
        let accepted = match Accepted::new(&self.upgrade, &accept, &config) {
            Ok(a) => a,
            Err(e) => {
                let _ = bounded(&config, respond(&mut self.stream, &refusal(&e))).await;
                return Err(e.into());
            }
        };
        let mut head = Response::new(());
        *head.status_mut() = accepted.response.status();
        *head.headers_mut() = accepted.response.headers().clone();
        bounded(&config, self.stream.send_response(head)).await?.map_err(super::Http3Error::from)?;
        Ok(accepted.into_websocket(H3Stream::server(self.stream), &config, &[]))
    }

    /// Refuse with any response (its connection-specific fields, which
    /// HTTP/3 forbids, are left out); the stream ends with it, the
    /// connection goes on.
    ///
    /// ```no_run
    /// # async fn run(endpoint: wsx::http3::quinn::Endpoint) {
    /// wsx::http3::serve(endpoint, wsx::Config::default(), |req| async move {
    ///     if req.request().origin() != Some("https://example.com") {
    ///         return req.reject(wsx::handshake::Reject::new(403, "forbidden\n")).await;
    ///     }
    ///     wsx::server::echo(req.upgrade(Default::default()).await?).await
    /// })
    /// .await;
    /// # }
    /// ```
    pub async fn reject(mut self, reject: Reject) -> Result<()> {
        bounded(&self.config, respond(&mut self.stream, reject.response())).await?.map_err(super::Http3Error::from)?;
        Ok(())
    }
}

/// `fut` within the handshake timeout.
async fn bounded<T>(config: &Config, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(config.handshake_timeout(), fut).await.map_err(|_| Error::HandshakeTimeout)
}

/// Serve WebSockets over HTTP/3 on `endpoint` (a [`quinn::Endpoint`] made
/// with [`super::server_config_from_pem_files`]) until the endpoint is
/// closed: each QUIC connection is an HTTP/3 connection that advertises
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1` (RFC 9220 §3), and each
/// WebSocket request on it goes to `handler` in a task of its own.
///
/// Requests are checked first, on their stream alone (the connection goes
/// on): a `CONNECT` without `:protocol` (a tunnel) is refused with 405,
/// one with another `:protocol` with 501 (RFC 8441 §4, which RFC 9220
/// applies), any other method with 405, a `sec-websocket-version` other
/// than 13 with 426; a request head larger than the configuration's
/// handshake size is answered 431 by h3, one not complete within the
/// handshake timeout is dropped. A connection carries at most 100 streams at once (quinn's
/// default); each stream has QUIC's own flow control.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = wsx::http3::server_config_from_pem_files("cert.pem", "key.pem")?;
/// let endpoint = wsx::http3::quinn::Endpoint::server(config, "[::]:9443".parse()?)?;
/// wsx::http3::serve(endpoint, wsx::Config::default(), |req| async move {
///     wsx::server::echo(req.upgrade(Default::default()).await?).await
/// })
/// .await;
/// # Ok(()) }
/// ```
pub async fn serve<H, F>(endpoint: quinn::Endpoint, config: Config, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Result<()>> + Send + 'static,
{
    serve_with_token(endpoint, config, handler, WireToken::websocket()).await
}

/// What the tasks of one [`serve`] share.
struct Shared<H> {
    config: Arc<Config>,
    handler: H,
    token: WireToken,
}

/// [`serve`], with `token` read as `websocket`.
pub(crate) async fn serve_with_token<H, F>(endpoint: quinn::Endpoint, config: Config, handler: H, token: WireToken)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Result<()>> + Send + 'static,
{
    let shared = Arc::new(Shared { config: Arc::new(config), handler, token });
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(connection(incoming, shared.clone()));
    }
}

/// One QUIC connection: its requests, each in a task.
async fn connection<H, F>(incoming: quinn::Incoming, shared: Arc<Shared<H>>)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Result<()>> + Send + 'static,
{
    let peer = incoming.remote_address();
    let quic = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "QUIC handshake failed");
            return;
        }
    };
    let mut builder = h3::server::builder();
    builder
        // RFC 9220 §3: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
        .enable_extended_connect(true)
        // A request head is bounded as on HTTP/1.1 (RFC 9114 §4.2.2).
        .max_field_section_size(shared.config.max_handshake_size() as u64);
    let built = builder.build::<_, Bytes>(h3_quinn::Connection::new(quic));
    let mut h3 = match bounded(&shared.config, built).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 connection failed");
            return;
        }
        Err(_) => return,
    };
    loop {
        match h3.accept().await {
            Ok(Some(resolver)) => {
                tokio::spawn(request(resolver, peer, shared.clone()));
            }
            Ok(None) => break,
            Err(e) => {
                if !e.is_h3_no_error() {
                    tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                }
                break;
            }
        }
    }
}

/// One request: refused here unless it asks for a WebSocket, else handed
/// to the handler.
async fn request<H, F>(
    resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
    peer: SocketAddr,
    shared: Arc<Shared<H>>,
) where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Result<()>> + Send + 'static,
{
    let (head, mut stream) = match bounded(&shared.config, resolver.resolve_request()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 request not read");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/3 request head timed out");
            return;
        }
    };
    let protocol = head.extensions().get::<h3::ext::Protocol>().map(|p| shared.token.name_of(p).to_owned());
    let upgrade = match UpgradeRequest::from_extended_connect(head, protocol.as_deref()) {
        Ok(u) => u,
        Err(e) => {
            // The stream alone is refused; the connection goes on.
            tracing::debug!(%peer, error = %e, "HTTP/3 request refused");
            let _ = bounded(&shared.config, respond(&mut stream, &refusal(&e))).await;
            return;
        }
    };
    let request = Request { upgrade, stream, config: shared.config.clone(), peer };
    if let Err(e) = (shared.handler)(request).await {
        tracing::debug!(%peer, error = %e, "HTTP/3 WebSocket ended with an error");
    }
}

/// The answer to a request the handshake refused: its HTTP/1.1 answer, and
/// `Allow: CONNECT` for a method other than CONNECT (HTTP/3 WebSockets are
/// opened by CONNECT alone).
fn refusal(e: &HandshakeError) -> Response<Bytes> {
    let mut resp = e.to_response();
    if matches!(e, HandshakeError::MethodNotGet) {
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("CONNECT"));
    }
    resp
}

/// Send `resp` whole and end the stream, without the fields HTTP/3
/// forbids (RFC 9114 §4.2).
async fn respond(stream: &mut Stream, resp: &Response<Bytes>) -> std::result::Result<(), h3::error::StreamError> {
    let mut head = Response::new(());
    *head.status_mut() = resp.status();
    *head.headers_mut() = resp.headers().clone();
    remove_connection_fields(head.headers_mut());
    stream.send_response(head).await?;
    if !resp.body().is_empty() {
        stream.send_data(resp.body().clone()).await?;
    }
    stream.finish().await
}
