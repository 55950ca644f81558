//! `wsx serve --http3`: the echo over HTTP/3 (RFC 9220) on UDP, beside
//! the TCP listener (feature `http3`, experimental).

use crate::{io_phrase, Failure};
use std::net::SocketAddr;
use std::path::Path;
use wsx::handshake::Accept;
use wsx::http3::quinn::Endpoint;

/// Serve the echo over HTTP/3 on UDP `addr` (the TCP listener's address)
/// with the certificate and key of `--tls-cert` / `--tls-key`, selecting
/// the first of the client's `subprotocols` the server speaks. Returns the
/// endpoint, to close on shutdown.
pub fn serve_echo(
    addr: SocketAddr,
    cert: &Path,
    key: &Path,
    config: &wsx::Config,
    subprotocols: &[String],
) -> Result<Endpoint, Failure> {
    let quic = wsx::http3::server_config_from_pem_files(cert, key).map_err(|e| Failure::error(format!("TLS: {e}")))?;
    let endpoint = Endpoint::server(quic, addr)
        .map_err(|e| Failure::error(format!("cannot listen on UDP {addr}: {}", io_phrase(&e))))?;
    let subprotocols = subprotocols.to_vec();
    tokio::spawn(wsx::http3::serve(endpoint.clone(), config.clone(), move |req| {
        let chosen = req.request().protocols().iter().find(|p| subprotocols.contains(p)).cloned();
        async move {
            let accept = chosen.map_or_else(Accept::new, |p| Accept::new().protocol(p));
            wsx::server::echo(req.upgrade(accept).await?).await
        }
    }));
    if !wsx::http3::websocket_protocol_supported() {
        tracing::warn!("HTTP/3: this build's h3 crate cannot carry :protocol websocket: no client can open a WebSocket over HTTP/3 yet");
    }
    tracing::info!(udp = %addr, "HTTP/3 (experimental) listening");
    Ok(endpoint)
}
