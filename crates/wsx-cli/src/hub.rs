//! `wsx serve --hub`: a [`wsx_hub::Hub`] (rooms, presence, events, acks;
//! protocol `wsx-hub.v1`) on the listener of `wsx serve`, in place of the
//! echo server.
//!
//! One routing per connection: the hub reads the request head
//! ([`Hub::read_request`]) and answers what is its own (WebSocket
//! upgrades, `GET /events` SSE, `GET /metrics`); anything else comes back
//! ([`Handled::NotMine`]) and gets the browser client at [`CLIENT_PATH`],
//! a `--static` file, or 404. The `wsx serve` flags that apply (origins,
//! connection and message limits, compression, TLS, shutdown timeout)
//! arrive in [`Common`]; the hub's own flags are [`HubArgs`].

use crate::serve::{plain, respond, shutdown_signal, static_file};
use crate::{io_phrase, Failure};
use bytes::Bytes;
use clap::Args;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use wsx_hub::broker::{RedisBroker, RedisOptions};
use wsx_hub::{Handled, Hub, HubError, RateLimit};

/// Where the browser client (`wsx_hub::CLIENT_JS`) is served.
pub const CLIENT_PATH: &str = "/wsx-hub.js";

/// The hub's flags of `wsx serve` (under the "Hub" heading of `--help`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Hub (with --hub)")]
pub struct HubArgs {
    /// Serve a wsx-hub instead of the echo server: rooms with presence,
    /// events, acks (subprotocol wsx-hub.v1, see crates/wsx-hub/PROTOCOL.md).
    /// Clients publish to the rooms they joined; the browser client is at
    /// /wsx-hub.js, SSE at /events?room=NAME, Prometheus metrics at /metrics.
    /// Here --max-connections counts WebSocket connections and SSE streams,
    /// --ping-interval pings every SECS, and --idle-timeout (checked at each
    /// ping) must be longer than it.
    #[arg(long, conflicts_with_all = ["broadcast", "subprotocols"])]
    pub hub: bool,
    /// How hub processes share rooms: "memory" (this process only) or
    /// redis://HOST:PORT[/DB] (every `wsx serve --hub` on that Redis is one
    /// hub).
    #[arg(long, value_name = "URL", default_value = "memory", requires = "hub")]
    broker: String,
    /// This process's id in a cluster (default: 8 random hex digits);
    /// connection ids are NODE.N.
    #[arg(long, value_name = "ID", requires = "hub")]
    node_id: Option<String>,
    /// At most N messages per second from each client (bursts of N); past
    /// it the client is closed with 1008.
    #[arg(long, value_name = "N", requires = "hub")]
    rate_limit: Option<f64>,
}

impl HubArgs {
    /// Whether `--hub` was given.
    pub fn enabled(&self) -> bool {
        self.hub
    }
}

/// What `wsx serve` hands over: its flags that apply to the hub, checked.
pub struct Common {
    /// --host
    pub host: String,
    /// --port
    pub port: u16,
    /// --max-message-size (the hub's default, 1 MiB, when not given).
    pub max_message_size: Option<usize>,
    /// --max-connections (WebSocket connections and SSE streams).
    pub max_connections: Option<usize>,
    /// --origin
    pub origins: Vec<String>,
    /// --require-origin
    pub require_origin: bool,
    /// --no-compression
    pub no_compression: bool,
    /// --shutdown-timeout
    pub shutdown_timeout: Duration,
    /// --handshake-timeout (the request head, and TLS).
    pub handshake_timeout: Duration,
    /// --ping-interval (zero: never).
    pub ping_interval: Duration,
    /// --idle-timeout (zero: never).
    pub idle_timeout: Duration,
    /// --tls-cert / --tls-key
    pub tls: Option<wsx::tls::TlsAcceptor>,
    /// --static, canonicalized.
    pub static_root: Option<PathBuf>,
}

/// The hub's default message size limit, as in `wsx_hub`.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Build the hub, listen, serve until Ctrl-C or SIGTERM, then shut the hub
/// down (1001 to every client, wait up to --shutdown-timeout).
pub async fn serve(args: &HubArgs, common: Common) -> Result<(), Failure> {
    let hub = build(args, &common)?;
    let listener = TcpListener::bind((common.host.as_str(), common.port))
        .await
        .map_err(|e| Failure::error(format!("cannot listen on {}:{}: {}", common.host, common.port, io_phrase(&e))))?;
    let addr = listener.local_addr().map_err(|e| Failure::error(e.to_string()))?;
    // Before anyone can connect, so a signal always closes with 1001.
    let signal = shutdown_signal();
    let (ws, http) = if common.tls.is_some() { ("wss", "https") } else { ("ws", "http") };
    println!(
        "wsx serve: hub server listening on {ws}://{addr} (node {}, broker {})",
        hub.node_id(),
        redact(&args.broker)
    );
    println!(
        "wsx serve: browser client at {http}://{addr}{CLIENT_PATH}, SSE at /events?room=NAME, metrics at /metrics"
    );
    if let Some(root) = &common.static_root {
        println!("wsx serve: serving {} at {http}://{addr}/", root.display());
    }
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, node = hub.node_id(), "hub listening");

    let site = Arc::new(Site {
        tls: common.tls,
        handshake_timeout: common.handshake_timeout,
        static_root: common.static_root,
    });
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let (hub, site) = (hub.clone(), site.clone());
                    tokio::spawn(async move {
                        if let Err(e) = connection(&hub, &site, tcp, peer).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = &mut signal => break,
        }
    }
    drop(listener);
    tracing::info!(connections = hub.connections().len(), "shutting down: closing connections with 1001");
    hub.shutdown().await;
    println!("wsx serve: stopped");
    Ok(())
}

/// The hub from the flags.
fn build(args: &HubArgs, common: &Common) -> Result<Hub, Failure> {
    let (ping, idle) = keepalive(common.ping_interval, common.idle_timeout)?;
    let mut b = Hub::builder()
        .config(
            wsx::Config::default()
                .with_compression(!common.no_compression)
                .with_handshake_timeout(common.handshake_timeout),
        )
        .max_message_size(common.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE))
        .ping_interval(ping)
        .idle_timeout(idle)
        .shutdown_timeout(common.shutdown_timeout)
        .require_origin(common.require_origin);
    if !common.origins.is_empty() {
        b = b.allow_origins(&common.origins);
    }
    if let Some(n) = common.max_connections {
        b = b.max_connections(n);
    }
    if let Some(n) = args.rate_limit {
        if !(n.is_finite() && n > 0.0) {
            return Err(Failure::error(format!(
                "--rate-limit must be a positive number of messages per second, not {n}"
            )));
        }
        b = b.rate_limit(RateLimit::per_second(n));
    }
    if let Some(id) = &args.node_id {
        if id.is_empty() || id.contains('.') || id.len() > 64 {
            return Err(Failure::error(format!("--node-id must be 1 to 64 characters without a dot, not {id:?}")));
        }
        b = b.node_id(id);
    }
    match args.broker.as_str() {
        "memory" => {}
        url if url.starts_with("redis://") => {
            let broker = RedisBroker::new(url, RedisOptions::default())
                .map_err(|e| Failure::error(format!("--broker {}: {e}", redact(url))))?;
            b = b.broker(broker);
        }
        other => {
            return Err(Failure::error(format!(
                "--broker must be \"memory\" or redis://HOST:PORT, not {:?}",
                redact(other)
            )))
        }
    }
    Ok(b.build())
}

/// Long enough to mean "never" for the hub's timers (which cannot be off).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The hub's ping interval and idle timeout from `--ping-interval` and
/// `--idle-timeout` (zero: never). The hub pings every interval, and checks
/// the idle timeout at each ping, when the pong to the previous ping is an
/// interval old: so the timeout must be longer than the interval, and
/// without pings there is no idle check.
fn keepalive(ping: Duration, idle: Duration) -> Result<(Duration, Duration), Failure> {
    match (ping.is_zero(), idle.is_zero()) {
        (true, true) => Ok((NEVER, Duration::MAX)),
        (false, true) => Ok((ping.min(NEVER), Duration::MAX)),
        (true, false) => Err(Failure::error(
            "with --hub, --idle-timeout is checked at each ping: give --ping-interval too, or --idle-timeout 0",
        )),
        (false, false) if idle <= ping => Err(Failure::error(format!(
            "with --hub, --idle-timeout ({} s) must be longer than --ping-interval ({} s)",
            idle.as_secs_f64(),
            ping.as_secs_f64()
        ))),
        (false, false) => Ok((ping.min(NEVER), idle)),
    }
}

/// A broker URL for printing: the password (user info) hidden.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

/// What every connection needs besides the hub.
struct Site {
    tls: Option<wsx::tls::TlsAcceptor>,
    handshake_timeout: Duration,
    static_root: Option<PathBuf>,
}

/// One TCP connection: TLS if configured, then one request.
///
/// What only the start or a plain HTTP request needs (TLS handshake, head,
/// static file) runs boxed: a connection's task keeps the size of its
/// largest state for its whole life (see `serve.rs`).
async fn connection(hub: &Hub, site: &Site, tcp: TcpStream, peer: SocketAddr) -> Result<(), HubError> {
    let _ = tcp.set_nodelay(true);
    match &site.tls {
        Some(acceptor) => {
            let tls = Box::pin(tokio::time::timeout(site.handshake_timeout, acceptor.accept(tcp)))
                .await
                .map_err(|_| HubError::HeadTimeout)??;
            Box::pin(route(hub, site, tls, peer)).await
        }
        None => route(hub, site, tcp, peer).await,
    }
}

/// The hub's requests to the hub; the rest to the client module, the
/// static files or 404.
async fn route<S>(hub: &Hub, site: &Site, mut stream: S, peer: SocketAddr) -> Result<(), HubError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (request, leftover) = Box::pin(hub.read_request(&mut stream)).await?;
    let Handled::NotMine { mut stream, request, .. } =
        hub.handle_request(stream, request, leftover, Some(peer)).await?
    else {
        return Ok(());
    };
    let head_only = request.method() == Method::HEAD;
    let resp = if request.uri().path() == CLIENT_PATH && (head_only || request.method() == Method::GET) {
        client_js()
    } else if let Some(root) = &site.static_root {
        Box::pin(static_file(root, &request)).await
    } else {
        not_found(&request)
    };
    Box::pin(respond(&mut stream, resp, !head_only)).await?;
    Ok(())
}

/// `wsx_hub::CLIENT_JS` as an ES module.
fn client_js() -> Response<Bytes> {
    let mut r = Response::new(Bytes::from_static(wsx_hub::CLIENT_JS.as_bytes()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(wsx_hub::CLIENT_JS.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// 404 without --static, with a hint for the one path people try first.
fn not_found(request: &Request<()>) -> Response<Bytes> {
    if request.uri().path() == "/" {
        let hint = "wsx hub: connect a WebSocket with the wsx-hub.v1 subprotocol (or add --static DIR for a page)";
        return plain(StatusCode::NOT_FOUND, hint);
    }
    plain(StatusCode::NOT_FOUND, "not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_flags_map_onto_the_hub() {
        let s = Duration::from_secs;
        assert_eq!(keepalive(s(20), s(60)).unwrap(), (s(20), s(60)));
        assert_eq!(keepalive(s(20), s(0)).unwrap(), (s(20), Duration::MAX));
        assert_eq!(keepalive(s(0), s(0)).unwrap(), (NEVER, Duration::MAX));
        assert!(keepalive(s(0), s(60)).is_err());
        assert!(keepalive(s(60), s(60)).is_err());
    }

    #[test]
    fn broker_passwords_are_not_printed() {
        assert_eq!(redact("redis://:secret@db:6379/0"), "redis://***@db:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("memory"), "memory");
    }
}
