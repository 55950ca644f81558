//! How a client reaches the server of a WebSocket URL: the TCP connection
//! (directly or through a proxy's tunnel) and TLS over it, offering what
//! the HTTP versions allow by ALPN.

#[cfg(feature = "tls")]
use crate::{tls::Offer, MaybeTlsStream};
use crate::{Config, Error, Result};
use std::sync::atomic::AtomicBool;
use tokio::net::TcpStream;

/// Where a WebSocket URL leads.
pub(crate) struct Target {
    /// `wss://` (or `https://`).
    pub(crate) secure: bool,
    /// The host, without the brackets of an IPv6 address.
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// How to reach the server of one `connect_with`: the URL's target, the
/// proxy and the settings.
pub(crate) struct Route<'a> {
    pub(crate) target: &'a Target,
    pub(crate) proxy: Option<&'a crate::proxy::Proxy>,
    pub(crate) config: &'a Config,
    /// Set while the TLS handshake waits for the server's first byte: a
    /// plain server that waits for an HTTP request never sends one.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) tls_unanswered: &'a AtomicBool,
}

impl Route<'_> {
    /// A TCP connection to the server, or a tunnel to it through the proxy.
    pub(crate) async fn tcp(&self) -> Result<TcpStream> {
        let Target { host, port, .. } = self.target;
        match self.proxy {
            None => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|source| Error::Connect { address: host_port(host, *port), source })?;
                tcp.set_nodelay(true)?;
                Ok(tcp)
            }
            Some(p) => crate::proxy::tunnel(p, host, *port, self.config).await,
        }
    }

    /// A TLS connection to the server that offers `offer` by ALPN.
    #[cfg(feature = "tls")]
    pub(crate) async fn tls(&self, offer: Offer) -> Result<MaybeTlsStream> {
        let tcp = self.tcp().await?;
        crate::tls::connect(tcp, &self.target.host, self.config, offer, self.tls_unanswered).await
    }
}

/// host:port as dialled (an IPv6 address in brackets).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A failure of the handshake over TLS: the TLS failure in an I/O error
/// (TLS 1.3 servers refuse a client certificate after the client's TLS
/// handshake is done) becomes a TLS error.
#[cfg(feature = "tls")]
pub(crate) fn tls_failure(e: Error, host: &str) -> Error {
    match e {
        Error::Io(io) => crate::tls::io_error(io, host),
        other => other,
    }
}
