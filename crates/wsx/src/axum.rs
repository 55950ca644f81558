//! An axum 0.8 extractor for WebSocket upgrades (feature `axum`), over
//! HTTP/1.1 and HTTP/2.
//!
//! [`WebSocketUpgrade`] checks the request with the same handshake code as
//! [`crate::accept`]; a request that is not a valid upgrade is refused with
//! the same responses (400, 405, 426 with `Sec-WebSocket-Version: 13, 8,
//! 7`, 431). [`WebSocketUpgrade::on_upgrade`] returns the response and runs
//! your handler on the [`WebSocket`] in a task of its own.
//!
//! # HTTP/2: route with `any`
//!
//! On HTTP/1.1 a WebSocket opens with a `GET` (RFC 6455 §4.1), on HTTP/2
//! with an extended `CONNECT` carrying `:protocol websocket` (RFC 8441 §4),
//! which this extractor accepts too (answering 200, no
//! `Sec-WebSocket-Accept`; the WebSocket then runs on that stream). A
//! route made with `get` answers the `CONNECT` with 405 before the
//! extractor sees it: route WebSockets with [`any`], as axum's own
//! `WebSocketUpgrade` asks (or with `get(h).connect(h)`).
//!
//! `axum::serve` speaks HTTP/2 when axum's `http2` feature is on, and then
//! advertises the extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC
//! 8441 §3). On a plain `TcpListener` it takes HTTP/2 with prior knowledge
//! (h2c) beside HTTP/1.1; browsers use HTTP/2 over TLS only, chosen by ALPN
//! `h2`, which needs a TLS listener (see `examples/axum.rs`).
//!
//! [`any`]: https://docs.rs/axum/0.8/axum/routing/method_routing/fn.any.html
//!
//! ```no_run
//! use axum::{routing::any, Router};
//! use wsx::axum::WebSocketUpgrade;
//!
//! async fn ws_handler(ws: WebSocketUpgrade) -> axum::response::Response {
//!     ws.protocols(["chat"]).on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_text() || msg.is_binary() {
//!                 if ws.send(msg).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! // `any`: GET on HTTP/1.1, CONNECT on HTTP/2.
//! let app = Router::new().route("/ws", any(ws_handler));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use crate::server::Accepted;
use crate::upgrade::{check_head, check_limits, fit_to_version, UpgradeError, UpgradedIo, Upgrading};
use crate::{Config, Error, WebSocket};
use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use std::fmt;
use std::future::Future;
use wsx_proto::handshake::{Accept, HandshakeError, UpgradeRequest};

/// The extractor: a checked WebSocket upgrade request, not yet answered.
/// Configure it, then call [`WebSocketUpgrade::on_upgrade`] and return
/// the response it gives.
///
/// On HTTP/1.1 the request is a `GET`, on HTTP/2 a `CONNECT` (RFC 8441):
/// route it with axum's `any` to take both (see the [module
/// docs](self)).
pub struct WebSocketUpgrade {
    request: UpgradeRequest,
    on_upgrade: OnUpgrade,
    config: Config,
    protocols: Vec<String>,
    accept: Accept,
    on_failed: Option<Box<dyn FnOnce(Error) + Send>>,
}

impl fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .field("config", &self.config)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

impl WebSocketUpgrade {
    /// The subprotocols this server speaks. The one selected is the first
    /// of the client's offers (in the client's order of preference) that is
    /// in this list; none if there is no such offer.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The connection's settings (limits, timeouts, compression), as for
    /// [`crate::accept_with`]. Default: `Config::default()`.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Add a header to the response that accepts the WebSocket (e.g.
    /// `Set-Cookie`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.accept = std::mem::take(&mut self.accept).header(name, value);
        self
    }

    /// The checked request: path, query, headers, cookies, origin and the
    /// offered subprotocols.
    pub fn request(&self) -> &UpgradeRequest {
        &self.request
    }

    /// The subprotocol that will be selected, given
    /// [`WebSocketUpgrade::protocols`].
    pub fn selected_protocol(&self) -> Option<&str> {
        self.request.protocols().iter().find(|p| self.protocols.contains(p)).map(String::as_str)
    }

    /// Called with the error if the connection cannot be handed over
    /// after the response (by default the error is logged at debug level).
    pub fn on_failed_upgrade(mut self, f: impl FnOnce(Error) + Send + 'static) -> Self {
        self.on_failed = Some(Box::new(f));
        self
    }

    /// Answer 101 (on HTTP/2, 200: RFC 8441 §5) and run `handler` on the
    /// WebSocket in a task of its own once axum has sent the response.
    ///
    /// ```no_run
    /// # async fn handler(ws: wsx::axum::WebSocketUpgrade) -> axum::response::Response {
    /// ws.on_upgrade(|mut ws| async move {
    ///     let _ = ws.send(wsx::Message::text("hello")).await;
    /// })
    /// # }
    /// ```
    pub fn on_upgrade<F, Fut>(self, handler: F) -> Response
    where
        F: FnOnce(WebSocket<UpgradedIo>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // The limits of the final settings (extraction used the defaults).
        let head = self.request.request();
        let version = head.version();
        if let Err(e) = check_limits(head.method(), head.uri(), head.headers(), &self.config) {
            return WebSocketUpgradeRejection { kind: Kind::Handshake(e), version }.into_response();
        }
        let mut accept = self.accept;
        if let Some(p) = self.request.protocols().iter().find(|p| self.protocols.contains(p)) {
            accept = accept.protocol(p.clone());
        }
        let accepted = match Accepted::new(&self.request, &accept, &self.config) {
            Ok(a) => a,
            Err(e) => return fit_to_version(e.to_response().map(Body::from), version),
        };
        // On HTTP/2 the 200 has no body: hyper hands the stream over once
        // its HEADERS are sent.
        let response = fit_to_version(accepted.response.clone(), version).map(|()| Body::empty());
        let protocol = accept.selected_protocol().map(str::to_owned);
        let upgrading = Upgrading::new(self.on_upgrade, accepted, protocol, &self.config);
        let on_failed = self.on_failed;
        tokio::spawn(async move {
            match upgrading.await {
                Ok(ws) => handler(ws).await,
                Err(e) => match on_failed {
                    Some(f) => f(e),
                    None => tracing::debug!(error = %e, "WebSocket upgrade failed"),
                },
            }
        });
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Checked with the default limits; `config` cannot be known yet.
        let config = Config::default();
        let version = parts.version;
        let request = check_head(&parts.method, &parts.uri, version, &parts.headers, &parts.extensions, &config)
            .map_err(|e| WebSocketUpgradeRejection { kind: Kind::Handshake(e), version })?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(WebSocketUpgradeRejection { kind: Kind::NotUpgradable, version })?;
        Ok(Self { request, on_upgrade, config, protocols: Vec::new(), accept: Accept::new(), on_failed: None })
    }
}

/// Why [`WebSocketUpgrade`] refused a request; its response is the one
/// [`crate::accept`] would send (400, 405, 426, 431; on HTTP/2 also 405
/// for a `CONNECT` without `:protocol` and 501 for another protocol, with
/// no connection-specific field, RFC 9113 §8.2.2), or 500 when the
/// connection cannot be upgraded (not served by hyper with upgrades).
#[derive(Debug)]
pub struct WebSocketUpgradeRejection {
    kind: Kind,
    /// The request's HTTP version, which the response is shaped for.
    version: Version,
}

#[derive(Debug)]
enum Kind {
    Handshake(HandshakeError),
    NotUpgradable,
}

impl WebSocketUpgradeRejection {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        match &self.kind {
            Kind::Handshake(e) => e.status(),
            Kind::NotUpgradable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The handshake error, if the request is not a valid upgrade.
    pub fn handshake_error(&self) -> Option<&HandshakeError> {
        match &self.kind {
            Kind::Handshake(e) => Some(e),
            Kind::NotUpgradable => None,
        }
    }
}

impl fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Handshake(e) => write!(f, "invalid WebSocket upgrade request: {e}"),
            Kind::NotUpgradable => write!(f, "{}", UpgradeError::NotUpgradable),
        }
    }
}

impl std::error::Error for WebSocketUpgradeRejection {}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        match self.kind {
            Kind::Handshake(e) => {
                tracing::debug!(error = %e, "refusing upgrade request");
                fit_to_version(e.to_response().map(Body::from), self.version)
            }
            Kind::NotUpgradable => {
                (StatusCode::INTERNAL_SERVER_ERROR, "this connection cannot be upgraded to a WebSocket\n")
                    .into_response()
            }
        }
    }
}
