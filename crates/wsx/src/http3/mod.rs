//! WebSockets over HTTP/3 (RFC 9220), experimental (feature `http3`, off
//! by default): one WebSocket per request stream of a QUIC connection,
//! opened by an extended `CONNECT` with `:protocol websocket`, on
//! [quinn](https://docs.rs/quinn) and the [h3](https://docs.rs/h3) crate.
//!
//! Both roles run the handshake code of HTTP/1.1 and HTTP/2:
//! [`UpgradeRequest::from_extended_connect`](crate::handshake::UpgradeRequest::from_extended_connect)
//! checks the request, the server's subprotocol and permessage-deflate
//! policy is decided where it is for the other versions, and the answer is
//! 200 without upgrade headers (RFC 9220 §3, as RFC 8441 §5). The
//! WebSocket then runs the unchanged protocol core over [`H3Stream`], the
//! bytes of the request stream (HTTP/3 DATA frames).
//!
//! - Server: [`serve`] accepts QUIC connections on a [`quinn::Endpoint`]
//!   made with [`server_config_from_pem_files`] (ALPN `h3`, TLS 1.3 with
//!   the *ring* provider), sends `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`
//!   (RFC 9220 §3) and hands each WebSocket request to the handler as a
//!   [`Request`]. A `CONNECT` without `:protocol` is refused with 405, one
//!   with another protocol with 501, on that stream alone.
//! - Client: [`connect`] / [`connect_with`] open a `wss://` URL over QUIC
//!   with ALPN `h3`; a [`Connection`] carries several WebSockets.
//!
//! **Blocked on the h3 crate.** h3 0.0.8, its newest release, knows only
//! the `:protocol` values `webtransport` and `connect-udp`
//! (`h3::ext::Protocol`): it can neither send `websocket` nor accept a
//! request that carries it (such a request is malformed to it and reset
//! with H3_MESSAGE_ERROR before wsx sees it). Until a release adds it, a
//! client fails with [`Http3Error::WebSocketProtocolUnsupported`] and a
//! server never sees a WebSocket request. Everything else (the stream
//! adapter, both handshakes, refusals, several sockets on one connection)
//! works and is tested with a stand-in token; wsx takes `websocket` up by
//! itself once the h3 in the build can parse it. See docs/http3.md.

mod client;
mod server;
mod stream;
#[cfg(test)]
mod tests;

pub use client::{connect, connect_with, Connection};
pub use server::{serve, Request};
pub use stream::{H3Recv, H3Send, H3Stream};

/// The crates underneath, at the versions wsx uses: a
/// [`quinn::Endpoint`] for [`serve`], h3 and h3-quinn to speak HTTP/3 by
/// hand.
pub use {h3, h3_quinn, quinn};

use crate::tls::TlsError;
use std::path::Path;
use std::sync::Arc;

/// The ALPN protocol of HTTP/3 (RFC 9114 §3.1).
pub(crate) const ALPN_H3: &[u8] = b"h3";

/// What went wrong on the HTTP/3 path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Http3Error {
    /// The h3 crate of this build cannot send or receive the `:protocol`
    /// value `websocket` (RFC 9220 §3): h3 0.0.8 knows only
    /// `webtransport` and `connect-udp`.
    #[error(
        "the h3 crate of this build cannot send or receive the :protocol value \"websocket\" (RFC 9220 §3): \
         WebSockets over HTTP/3 wait for an h3 release that has it"
    )]
    WebSocketProtocolUnsupported,
    /// A QUIC connection could not be started (e.g. an invalid server
    /// name).
    #[error("cannot connect over QUIC: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed or was closed (TLS failures included).
    #[error("QUIC connection failed: {0}")]
    Quic(#[from] quinn::ConnectionError),
    /// The HTTP/3 connection failed (its control streams, SETTINGS).
    #[error("HTTP/3 connection failed: {0}")]
    Connection(#[from] h3::error::ConnectionError),
    /// The request stream failed before the WebSocket was open.
    #[error("HTTP/3 stream failed: {0}")]
    Stream(#[from] h3::error::StreamError),
    /// The TLS configuration has no TLS 1.3 cipher suite QUIC can start
    /// with (TLS_AES_128_GCM_SHA256).
    #[error("the TLS configuration cannot be used for QUIC: {0}")]
    TlsConfig(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

impl From<Http3Error> for crate::Error {
    fn from(e: Http3Error) -> Self {
        crate::Error::Http3(Box::new(e))
    }
}

/// The `:protocol` token a WebSocket request carries on the wire: RFC 9220
/// §3's `websocket`, when the h3 crate can represent it (`None` with h3
/// 0.0.8). Tests of the transport use another token in its place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireToken(Option<h3::ext::Protocol>);

impl WireToken {
    /// `websocket`, if this build's h3 parses it.
    pub(crate) fn websocket() -> Self {
        Self("websocket".parse().ok())
    }

    /// Another token in place of `websocket`, for tests of everything
    /// around it.
    #[cfg(test)]
    pub(crate) fn stand_in(p: h3::ext::Protocol) -> Self {
        Self(Some(p))
    }

    /// The token to send, or why there is none.
    pub(crate) fn to_send(self) -> Result<h3::ext::Protocol, Http3Error> {
        self.0.ok_or(Http3Error::WebSocketProtocolUnsupported)
    }

    /// The protocol a request asked for, as the handshake reads it: the
    /// wire token stands for `websocket`.
    pub(crate) fn name_of(self, p: &h3::ext::Protocol) -> &str {
        if Some(*p) == self.0 {
            "websocket"
        } else {
            p.as_str()
        }
    }
}

/// Whether this build's h3 crate can carry WebSockets: whether it knows the
/// `:protocol` value `websocket` (RFC 9220 §3). False with h3 0.0.8.
///
/// ```
/// if !wsx::http3::websocket_protocol_supported() {
///     eprintln!("HTTP/3 WebSockets need a newer h3 crate");
/// }
/// ```
pub fn websocket_protocol_supported() -> bool {
    WireToken::websocket().0.is_some()
}

/// A QUIC server configuration from PEM files: the certificate chain (leaf
/// first) and its private key, ALPN `h3`, TLS 1.3 with the *ring*
/// provider. Give it to [`quinn::Endpoint::server`], then the endpoint to
/// [`serve`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = wsx::http3::server_config_from_pem_files("cert.pem", "key.pem")?;
/// let endpoint = wsx::http3::quinn::Endpoint::server(config, "127.0.0.1:9443".parse()?)?;
/// wsx::http3::serve(endpoint, wsx::Config::default(), |req| async move {
///     wsx::server::echo(req.upgrade(Default::default()).await?).await
/// })
/// .await;
/// # Ok(()) }
/// ```
pub fn server_config_from_pem_files(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> crate::Result<quinn::ServerConfig> {
    let tls = crate::tls::server_config_from_pem_files(cert, key)?;
    server_config((*tls).clone())
}

/// A QUIC server configuration from a rustls one (its certificate, client
/// authentication, provider): ALPN set to `h3`. The provider must have
/// TLS 1.3's TLS_AES_128_GCM_SHA256, which QUIC starts with.
///
/// ```no_run
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = wsx::tls::server_config_from_pem_files("cert.pem", "key.pem")?;
/// let config = wsx::http3::server_config((*tls).clone())?;
/// # let _ = config;
/// # Ok(()) }
/// ```
pub fn server_config(mut tls: rustls::ServerConfig) -> crate::Result<quinn::ServerConfig> {
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    // QUIC takes early data as all or nothing; wsx takes none (a replayed
    // CONNECT would open a second WebSocket).
    tls.max_early_data_size = 0;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(Http3Error::from)?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// The QUIC client configuration for `config`'s TLS settings (roots, CA
/// files, client certificate, `with_tls_insecure`), with ALPN `h3`.
pub(crate) fn client_quic_config(config: &crate::Config) -> crate::Result<quinn::ClientConfig> {
    let tls = crate::tls::client_config_for(config).map_err(|e: TlsError| crate::Error::from(e))?;
    let mut tls = (*tls).clone();
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(Http3Error::from)?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    // A WebSocket may be quiet for longer than QUIC's idle timeout (30 s
    // by default): the client keeps the connection alive.
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(10)));
    client.transport_config(Arc::new(transport));
    Ok(client)
}
