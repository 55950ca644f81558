//! The hub's endpoints, on a [`wsx::server::Server`] (which accepts the
//! connections, reads the request heads, and applies the connection limit,
//! keepalive and graceful shutdown): WebSocket upgrades after the hub's
//! policies (origin, auth, the connect hook), `GET /events` (SSE), `GET
//! /metrics`; anything else goes back to the caller ([`Handled::NotMine`]).

use crate::error::HubError;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::policy::{AuthError, ConnectRequest};
use crate::protocol::SUBPROTOCOL;
use bytes::Bytes;
use http::{header, Method, Response};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use wsx::handshake::{Accept, Reject};
use wsx::server::{Request, Server, ServerStream};

/// What [`Hub::handle`] did with a request.
#[derive(Debug)]
pub enum Handled<S = ServerStream> {
    /// The hub answered it (and served the connection to its end).
    Done,
    /// Not a request for the hub (not an upgrade on its path, not SSE, not
    /// metrics): the request, for the caller to answer (static files, a
    /// health check...).
    NotMine(Request<S>),
}

/// Answer `req` with a refusal; the error to return (the refusal, or the
/// I/O error that kept it from being written). Boxed, as every reply here:
/// replies are rare next to a connection's life, and a task is as large as
/// its largest state for as long as it lives.
fn refuse<S>(req: Request<S>, reject: Reject) -> Pin<Box<dyn Future<Output = HubError> + Send>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(async move {
        let status = reject.status();
        match req.respond(reject.into_response()).await {
            Ok(()) => HubError::Refused(status),
            Err(e) => e.into(),
        }
    })
}

impl Hub {
    /// The server the hub's connections are counted, limited and shut down
    /// by ([`crate::HubBuilder::server`]).
    pub fn server(&self) -> &Server {
        &self.inner.server
    }

    /// Accept connections on `listener` and serve each in its own task,
    /// until [`Hub::shutdown`] is called. Requests that are not for the hub
    /// get 404.
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
        let hub = self.clone();
        self.inner.server.serve(listener, move |req| hub.clone().handle_or_404(req)).await
    }

    /// Serve one connection on any stream (a Unix socket, an in-memory
    /// duplex): its request goes to the hub, anything else gets 404.
    ///
    /// ```no_run
    /// # async fn run(hub: wsx_hub::Hub) {
    /// let (client, server) = tokio::io::duplex(64 << 10);
    /// tokio::spawn(async move { hub.serve_stream(server).await });
    /// # drop(client);
    /// # }
    /// ```
    pub async fn serve_stream<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.ensure_started();
        let hub = self.clone();
        self.inner.server.serve_stream(stream, None, &move |req| hub.clone().handle_or_404(req)).await
    }

    /// The hub as a tower (and hyper) service, to mount in a hyper or axum
    /// server: the hub's endpoints (`wsx-hub.v1` upgrades, SSE, metrics)
    /// as [`Hub::serve`] answers them, 404 for anything else. The
    /// requests count against the hub's [`Server`] (its connection limit,
    /// keepalive and [`Hub::shutdown`]); see
    /// [`Server::service`](wsx::server::Server::service).
    ///
    /// ```no_run
    /// use axum::{routing::get, Router};
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let hub = wsx_hub::Hub::builder().build();
    /// let app = Router::new()
    ///     .route("/health", get(|| async { "ok" }))
    ///     .fallback_service(hub.service());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app).with_graceful_shutdown(async move {
    ///     tokio::signal::ctrl_c().await.ok();
    ///     hub.shutdown().await;
    /// }).await
    /// # }
    /// ```
    #[cfg(feature = "hyper")]
    pub fn service(&self) -> wsx::server::ServerService {
        self.ensure_started();
        let hub = self.clone();
        self.inner.server.service(move |req| hub.clone().handle_or_404(req))
    }

    async fn handle_or_404<S>(self, req: Request<S>) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match self.handle(req).await? {
            Handled::Done => Ok(()),
            Handled::NotMine(req) => Err(refuse(req, Reject::new(404, "not found\n")).await),
        }
    }

    /// Route a request of a [`Server`] (for servers that serve other things
    /// on the same port): a WebSocket upgrade on the hub's path, `GET` on
    /// the SSE or metrics path. Anything else comes back as
    /// [`Handled::NotMine`].
    ///
    /// ```no_run
    /// # async fn run(hub: wsx_hub::Hub, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// use wsx_hub::Handled;
    /// let files = wsx::server::StaticFiles::new("./public")?;
    /// hub.server().clone().serve(listener, move |req| {
    ///     let (hub, files) = (hub.clone(), files.clone());
    ///     async move {
    ///         if let Handled::NotMine(req) = hub.handle(req).await? {
    ///             let page = files.response(req.head().request()).await;
    ///             req.respond(page).await?;
    ///         }
    ///         Ok::<_, wsx_hub::HubError>(())
    ///     }
    /// }).await
    /// # }
    /// ```
    pub async fn handle<S>(&self, req: Request<S>) -> Result<Handled<S>, HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.ensure_started();
        let s = &self.inner.s;
        let path = req.path();
        let upgrade = req.is_upgrade();
        if upgrade && s.path.as_deref().is_none_or(|p| p == path) {
            // The handshake runs boxed and is freed (with the request it
            // holds) before the connection runs.
            let (ws, conn, meta, peer) = Box::pin(self.handshake(req)).await?;
            crate::conn::run(self, ws, conn, meta, peer).await;
            return Ok(Handled::Done);
        }
        let get = req.head().method() == Method::GET;
        if get && !upgrade && s.sse.as_ref().is_some_and(|sse| sse.path == path) {
            Box::pin(self.sse(req)).await?;
            return Ok(Handled::Done);
        }
        if get && !upgrade && s.metrics_path.as_deref() == Some(path) {
            let mut resp = Response::new(Bytes::from(self.metrics_text()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            Box::pin(req.respond(resp)).await?;
            return Ok(Handled::Done);
        }
        Ok(Handled::NotMine(req))
    }

    /// `GET /events?room=NAME`.
    async fn sse<S>(&self, req: Request<S>) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let room = req.head().query_param("room").filter(|r| crate::hub::check_name(r).is_ok());
        let Some(room) = room else {
            return Err(refuse(req, Reject::new(400, "a room is needed: /events?room=NAME\n")).await);
        };
        if let Err(reject) = self.admit(req.head()) {
            return Err(refuse(req, reject).await);
        }
        let last = req.head().header("last-event-id").and_then(|v| v.trim().parse::<u64>().ok());
        crate::sse::serve(self, req, room, last).await
    }

    /// The hub's policies for a request: shutdown, origin, auth. Returns
    /// the auth hook's metadata.
    fn admit(&self, req: &ConnectRequest) -> Result<Value, Reject> {
        let s = &self.inner.s;
        let m = &self.inner.metrics;
        if self.is_shutting_down() {
            Metrics::inc(&m.rejected_limit);
            return Err(Reject::new(503, "the server is shutting down\n").header("retry-after", "1"));
        }
        if let Err(reject) = s.origins.check(req.origin()) {
            Metrics::inc(&m.rejected_origin);
            return Err(reject);
        }
        match &self.inner.auth {
            Some(auth) => auth(req).map_err(|e| {
                Metrics::inc(&m.rejected_auth);
                match e {
                    AuthError::Unauthorized(msg) => Reject::new(401, msg).header("www-authenticate", "Bearer"),
                    AuthError::Forbidden(msg) => Reject::new(403, msg),
                }
            }),
            None => Ok(Value::Null),
        }
    }

    /// Policies, the connect hook and the 101; the connection and its id
    /// and metadata.
    #[allow(clippy::type_complexity)]
    async fn handshake<S>(
        &self,
        req: Request<S>,
    ) -> Result<(wsx::WebSocket<S>, String, Value, Option<std::net::SocketAddr>), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let m = &self.inner.metrics;
        let creq = req.head().clone();
        let peer = creq.peer();
        let meta = match self.admit(&creq) {
            Ok(meta) => meta,
            Err(reject) => return Err(refuse(req, reject).await),
        };
        if !req.protocols().iter().any(|p| p == SUBPROTOCOL) {
            Metrics::inc(&m.rejected_protocol);
            let msg =
                format!("this endpoint speaks the {SUBPROTOCOL} subprotocol: offer it in Sec-WebSocket-Protocol\n");
            return Err(refuse(req, Reject::new(400, msg).header("sec-websocket-protocol", SUBPROTOCOL)).await);
        }
        let conn = format!("{}.{}", self.node_id(), self.next_seq());
        if let Some(hook) = &self.inner.on_connect {
            let info = crate::hub::ConnectInfo { conn: conn.clone(), meta: meta.clone(), request: creq };
            let verdict = tokio::time::timeout(self.inner.s.config.handshake_timeout(), hook(info)).await;
            let verdict = verdict.unwrap_or_else(|_| Err(Reject::new(503, "the connect hook timed out\n")));
            if let Err(reject) = verdict {
                Metrics::inc(&m.rejected_hook);
                return Err(refuse(req, reject).await);
            }
        }
        match req.upgrade_with(Accept::new().protocol(SUBPROTOCOL), &self.inner.s.config).await {
            Ok(ws) => Ok((ws, conn, meta, peer)),
            Err(wsx::Error::Handshake(e)) => {
                Metrics::inc(&m.rejected_protocol);
                Err(HubError::Refused(e.status()))
            }
            Err(wsx::Error::Rejected(status)) => {
                Metrics::inc(&m.rejected_limit);
                Err(HubError::Refused(status))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Hub;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the server's task holds for each hub connection, for its whole
    /// life: the future of `handle_or_404` (the connection's own state and
    /// the routing around it). 456 bytes (the test allows 520): with
    /// tokio's header and trailer, a task of 640 (tasks are aligned to 128
    /// bytes).
    #[tokio::test]
    async fn the_future_of_a_hub_connection_stays_small() {
        let hub = Hub::builder().build();
        let size = Arc::new(AtomicUsize::new(0));
        let (mut client, stream) = tokio::io::duplex(4096);
        let (h, seen) = (hub.clone(), size.clone());
        let server = hub.inner.server.clone();
        let serving = tokio::spawn(async move {
            let handler = move |req| {
                let f = h.clone().handle_or_404(req);
                seen.store(std::mem::size_of_val(&f), Ordering::Relaxed);
                f
            };
            server.serve_stream(stream, None, &handler).await
        });
        client.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 404"), "{}", String::from_utf8_lossy(&answer));
        serving.await.unwrap();
        let size = size.load(Ordering::Relaxed);
        assert!(size > 0 && size <= 520, "{size} bytes");
    }
}
