//! The hub's HTTP side: accepting TCP connections, reading request heads,
//! and routing them: WebSocket upgrades (after the origin, connection
//! limit, auth and connect-hook policies), `GET /events` (SSE), `GET
//! /metrics`, and anything else back to the caller ([`Handled::NotMine`])
//! or 404.

use crate::error::HubError;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::policy::{normalize_origin, AuthError, ConnectRequest};
use crate::protocol::SUBPROTOCOL;
use bytes::{Bytes, BytesMut};
use http::{header, Method, Request, Response, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use wsx::handshake::{header_has_token, write_response, Accept, Reject, UpgradeRequest};

/// What [`Hub::handle_request`] did with a request.
// Returned once per request and matched at once: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Handled<S> {
    /// The hub answered it (and served the connection to its end).
    Done,
    /// Not a request for the hub (not an upgrade on its path, not SSE, not
    /// metrics): the stream, request and bytes read past its head, for the
    /// caller to answer (static files, a health check...).
    NotMine {
        /// The connection.
        stream: S,
        /// The request head.
        request: Request<()>,
        /// Bytes read past the head.
        leftover: Bytes,
    },
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, resp: &Response<Bytes>) -> Result<(), HubError> {
    let mut out = Vec::with_capacity(256);
    write_response(resp, resp.body(), &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Answer a refused upgrade; the error to return (the refusal, or the I/O
/// error that kept it from being written).
async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, reject: Reject) -> HubError {
    let status = reject.status();
    match respond(&mut stream, reject.response()).await {
        Ok(()) => HubError::Refused(status),
        Err(e) => e,
    }
}

impl Hub {
    /// Accept connections on `listener` and serve each in its own task,
    /// until [`Hub::shutdown`] is called.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let hub = wsx_hub::Hub::builder().build();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// println!("ws://{}/", listener.local_addr()?);
    /// tokio::spawn(hub.clone().serve(listener));
    /// // ...
    /// hub.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        self.ensure_started();
        let mut stopping = self.inner.stopping.subscribe();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let hub = self.clone();
                        tokio::spawn(async move {
                            if let Err(e) = hub.handle_connection(tcp).await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                },
                _ = crate::hub::flag_set(&mut stopping) => break,
            }
        }
        Ok(())
    }

    /// Serve one TCP connection (read its request head, route it, serve it
    /// to its end). Requests that are not for the hub get 404.
    ///
    /// ```no_run
    /// # async fn run(hub: wsx_hub::Hub) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// loop {
    ///     let (tcp, _) = listener.accept().await?;
    ///     let hub = hub.clone();
    ///     tokio::spawn(async move { hub.handle_connection(tcp).await });
    /// }
    /// # }
    /// ```
    pub async fn handle_connection(&self, tcp: TcpStream) -> Result<(), HubError> {
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().ok();
        self.handle_stream(tcp, peer).await
    }

    /// Like [`Hub::handle_connection`], over any stream (e.g. TLS).
    pub async fn handle_stream<S>(&self, mut stream: S, peer: Option<SocketAddr>) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Boxed here and below: a connection's task keeps the size of its
        // largest state for its whole life, so what only the start needs
        // (the head, the handshake, SSE's state) is not inline in it.
        let (request, leftover) = Box::pin(self.read_request(&mut stream)).await?;
        match self.handle_request(stream, request, leftover, peer).await? {
            Handled::Done => Ok(()),
            Handled::NotMine { mut stream, .. } => {
                respond(&mut stream, Reject::new(404, "not found").response()).await?;
                Err(HubError::Refused(StatusCode::NOT_FOUND))
            }
        }
    }

    /// Read a request head from `stream` with the hub's limits (the
    /// handshake timeout and the largest head of its [`wsx::Config`]),
    /// for servers that route requests before [`Hub::handle_request`].
    /// Returns the head and the bytes read past it. A malformed or
    /// oversized head is answered here (400, 431) and comes back as
    /// [`HubError::Refused`]; a peer that closes or stalls before a whole
    /// head is [`HubError::Io`] or [`HubError::HeadTimeout`].
    ///
    /// ```no_run
    /// # async fn run(hub: wsx_hub::Hub, mut tcp: tokio::net::TcpStream) -> Result<(), wsx_hub::HubError> {
    /// use wsx_hub::Handled;
    /// let (request, leftover) = hub.read_request(&mut tcp).await?;
    /// if let Handled::NotMine { stream, request, .. } = hub.handle_request(tcp, request, leftover, None).await? {
    ///     // answer `request` on `stream`: a static file, a health check...
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_request<S>(&self, stream: &mut S) -> Result<(Request<()>, Bytes), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let max = self.inner.s.config.max_handshake_size();
        let mut buf = BytesMut::with_capacity(1024);
        let head = wsx::read_request_head(stream, &mut buf, max);
        let parsed = match tokio::time::timeout(self.inner.s.config.handshake_timeout(), head).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return Err(HubError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(Err(e)) => return Err(HubError::WebSocket(e)),
            Err(_) => return Err(HubError::HeadTimeout),
        };
        match parsed {
            Ok((req, len)) => Ok((req, buf.split_off(len).freeze())),
            Err(e) => {
                respond(stream, &e.to_response()).await?;
                Err(HubError::Refused(e.status()))
            }
        }
    }

    /// Route a request whose head the caller read (for servers that serve
    /// other things on the same port): a WebSocket upgrade on the hub's
    /// path, `GET` on the SSE or metrics path. Anything else comes back as
    /// [`Handled::NotMine`].
    ///
    /// ```no_run
    /// # async fn run(hub: wsx_hub::Hub, tcp: tokio::net::TcpStream, request: http::Request<()>, leftover: bytes::Bytes) -> Result<(), wsx_hub::HubError> {
    /// use wsx_hub::Handled;
    /// match hub.handle_request(tcp, request, leftover, None).await? {
    ///     Handled::Done => {}
    ///     Handled::NotMine { stream, request, .. } => { /* serve a static file */ }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn handle_request<S>(
        &self,
        mut stream: S,
        request: Request<()>,
        leftover: Bytes,
        peer: Option<SocketAddr>,
    ) -> Result<Handled<S>, HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.ensure_started();
        let s = &self.inner.s;
        let path = request.uri().path();
        let upgrade = header_has_token(request.headers(), header::UPGRADE, "websocket");
        if upgrade && s.path.as_deref().is_none_or(|p| p == path) {
            self.upgrade(stream, request, leftover, peer).await?;
            return Ok(Handled::Done);
        }
        let get = request.method() == Method::GET;
        if get && !upgrade && s.sse.as_ref().is_some_and(|sse| sse.path == path) {
            let creq = ConnectRequest::new(request, peer);
            let Some(room) = creq.query_param("room").filter(|r| crate::hub::check_name(r).is_ok()) else {
                respond(&mut stream, Reject::new(400, "a room is needed: /events?room=NAME").response()).await?;
                return Err(HubError::Refused(StatusCode::BAD_REQUEST));
            };
            let (_meta, _permit) = match self.admit(&creq) {
                Ok(x) => x,
                Err(reject) => {
                    respond(&mut stream, reject.response()).await?;
                    return Err(HubError::Refused(reject.status()));
                }
            };
            let last = creq.header("last-event-id").and_then(|v| v.trim().parse::<u64>().ok());
            Box::pin(crate::sse::serve(self, stream, room, last)).await?;
            return Ok(Handled::Done);
        }
        if get && !upgrade && s.metrics_path.as_deref() == Some(path) {
            let mut resp = Response::new(Bytes::from(self.metrics_text()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            respond(&mut stream, &resp).await?;
            return Ok(Handled::Done);
        }
        Ok(Handled::NotMine { stream, request, leftover })
    }

    /// The policies every request passes: shutdown, origin, connection
    /// limit, auth. Returns the auth hook's metadata and the connection
    /// slot.
    fn admit(&self, req: &ConnectRequest) -> Result<(Value, Option<OwnedSemaphorePermit>), Reject> {
        let s = &self.inner.s;
        let m = &self.inner.metrics;
        if self.is_shutting_down() {
            Metrics::inc(&m.rejected_limit);
            return Err(Reject::new(503, "the server is shutting down").header("retry-after", "1"));
        }
        match (req.origin(), &s.origins) {
            (Some(o), Some(list)) if !list.contains(&normalize_origin(o)) => {
                Metrics::inc(&m.rejected_origin);
                return Err(Reject::new(403, "origin not allowed"));
            }
            (None, _) if s.require_origin => {
                Metrics::inc(&m.rejected_origin);
                return Err(Reject::new(403, "an Origin header is required"));
            }
            _ => {}
        }
        let permit = match &self.inner.slots {
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    Metrics::inc(&m.rejected_limit);
                    return Err(Reject::new(503, "too many connections").header("retry-after", "1"));
                }
            },
            None => None,
        };
        let meta = match &self.inner.auth {
            Some(auth) => match auth(req) {
                Ok(meta) => meta,
                Err(e) => {
                    Metrics::inc(&m.rejected_auth);
                    return Err(match e {
                        AuthError::Unauthorized(msg) => Reject::new(401, msg).header("www-authenticate", "Bearer"),
                        AuthError::Forbidden(msg) => Reject::new(403, msg),
                    });
                }
            },
            None => Value::Null,
        };
        Ok((meta, permit))
    }

    async fn upgrade<S>(
        &self,
        stream: S,
        request: Request<()>,
        leftover: Bytes,
        peer: Option<SocketAddr>,
    ) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The handshake runs boxed and is freed (with the request it holds)
        // before the connection runs.
        let (ws, conn, meta, permit) = Box::pin(self.handshake(stream, request, leftover, peer)).await?;
        crate::conn::run(self, ws, conn, meta, peer, permit).await;
        Ok(())
    }

    /// Policies, the connect hook and the 101; the connection's id, metadata
    /// and slot.
    async fn handshake<S>(
        &self,
        mut stream: S,
        request: Request<()>,
        leftover: Bytes,
        peer: Option<SocketAddr>,
    ) -> Result<(wsx::WebSocket<S>, String, Value, Option<OwnedSemaphorePermit>), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let m = &self.inner.metrics;
        let upgrade = match UpgradeRequest::from_request(request) {
            Ok(u) => u,
            Err(e) => {
                Metrics::inc(&m.rejected_protocol);
                respond(&mut stream, &e.to_response()).await?;
                return Err(HubError::Refused(e.status()));
            }
        };
        let creq = ConnectRequest::new(upgrade.request().clone(), peer);
        let (meta, permit) = match self.admit(&creq) {
            Ok(x) => x,
            Err(reject) => return Err(refuse(stream, reject).await),
        };
        if !upgrade.protocols().iter().any(|p| p == SUBPROTOCOL) {
            Metrics::inc(&m.rejected_protocol);
            let msg = format!("this endpoint speaks the {SUBPROTOCOL} subprotocol: offer it in Sec-WebSocket-Protocol");
            return Err(refuse(stream, Reject::new(400, msg).header("sec-websocket-protocol", SUBPROTOCOL)).await);
        }
        let conn = format!("{}.{}", self.node_id(), self.next_seq());
        if let Some(hook) = &self.inner.on_connect {
            let info = crate::hub::ConnectInfo { conn: conn.clone(), meta: meta.clone(), request: creq };
            let verdict = tokio::time::timeout(self.inner.s.config.handshake_timeout(), hook(info)).await;
            let verdict = verdict.unwrap_or_else(|_| Err(Reject::new(503, "the connect hook timed out")));
            if let Err(reject) = verdict {
                Metrics::inc(&m.rejected_hook);
                return Err(refuse(stream, reject).await);
            }
        }
        let config = &self.inner.s.config;
        // The 101 and permessage-deflate exactly as `wsx::accept_with` does.
        let accept = Accept::new().protocol(SUBPROTOCOL);
        let ws = match wsx::accept_upgrade(stream, &upgrade, &accept, config, &leftover).await {
            Ok(ws) => ws,
            Err(wsx::Error::Handshake(e)) => return Err(HubError::Refused(e.status())),
            Err(e) => return Err(e.into()),
        };
        Ok((ws, conn, meta, permit))
    }
}
