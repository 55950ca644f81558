//! `wsx serve --hub`: a [`wsx_hub::Hub`] (rooms, presence, events, acks;
//! protocol `wsx-hub.v1`) on the server of `wsx serve`, in place of the
//! echo handler; with `--socketio`, also Socket.IO clients at
//! `/socket.io/`, in the same rooms ([`wsx_hub::socketio::relay`]).
//!
//! The hub answers what is its own (WebSocket upgrades, `GET /events` SSE,
//! `GET /metrics`); anything else comes back ([`Handled::NotMine`]) and gets
//! the browser client at [`CLIENT_PATH`], a `--static` file, or 404. The
//! `wsx serve` flags that apply (origins, limits, keepalive, compression,
//! TLS, shutdown) are the server's; the hub's own flags are [`HubArgs`].

use crate::Failure;
use bytes::Bytes;
use clap::{ArgGroup, Args};
use http::header::{self, HeaderValue};
use http::{Method, Response};
use std::time::Duration;
use wsx::handshake::Reject;
use wsx::server::{Request, Server, StaticFiles};
use wsx_hub::broker::{RedisBroker, RedisOptions};
use wsx_hub::socketio::engine::{Cors, EngineConfig};
use wsx_hub::socketio::{relay, SocketIo};
use wsx_hub::{Handled, Hub, HubError, RateLimit};

/// Where the browser client (`wsx_hub::CLIENT_JS`) is served.
pub const CLIENT_PATH: &str = "/wsx-hub.js";

/// The hub's flags of `wsx serve` (under the "Hub" heading of `--help`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Hub (with --hub or --socketio)")]
#[command(group(ArgGroup::new("hub_mode").args(["hub", "socketio"]).multiple(true)))]
pub struct HubArgs {
    /// Serve a wsx-hub instead of the echo server: rooms with presence,
    /// events, acks (subprotocol wsx-hub.v1, see crates/wsx-hub/PROTOCOL.md).
    /// Clients publish to the rooms they joined; the browser client is at
    /// /wsx-hub.js, SSE at /events?room=NAME, Prometheus metrics at /metrics.
    #[arg(long, conflicts_with_all = ["broadcast", "subprotocols"])]
    pub hub: bool,
    /// Serve Socket.IO clients (socket.io-client 3 and 4, python-socketio...)
    /// at /socket.io/, on the hub (implies --hub): they join rooms and
    /// publish to them with the events join(room), leave(room),
    /// publish(room, event, ...args) and whoami(), and share the rooms with
    /// the hub's wsx-hub.v1 clients (docs/socketio.md).
    #[arg(long, conflicts_with_all = ["broadcast", "subprotocols"])]
    pub socketio: bool,
    /// Socket.IO connection state recovery: a client that lost its
    /// connection and comes back within SECS (to any node of the cluster)
    /// gets its id, rooms and the events it missed.
    #[arg(long, value_name = "SECS", requires = "socketio")]
    socketio_recovery: Option<f64>,
    /// How hub processes share rooms: "memory" (this process only) or
    /// redis://HOST:PORT[/DB] (every `wsx serve --hub` on that Redis is one
    /// hub).
    #[arg(long, value_name = "URL", default_value = "memory", requires = "hub_mode")]
    broker: String,
    /// This process's id in a cluster (default: 8 random hex digits);
    /// connection ids are NODE.N.
    #[arg(long, value_name = "ID", requires = "hub_mode")]
    node_id: Option<String>,
    /// At most N messages per second from each client (bursts of N); past
    /// it the client is closed with 1008.
    #[arg(long, value_name = "N", requires = "hub_mode")]
    rate_limit: Option<f64>,
}

impl HubArgs {
    /// Whether `--hub` (or `--socketio`, which implies it) was given.
    pub fn enabled(&self) -> bool {
        self.hub || self.socketio
    }
}

/// The hub's default message size limit, as in `wsx_hub`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// The hub's default ping interval in seconds, as in `wsx_hub` and its
/// PROTOCOL.md ("Keepalive").
pub const DEFAULT_PING_INTERVAL: f64 = 25.0;

/// The hub from its flags, on `server` (whose config, keepalive included,
/// its WebSockets get).
pub fn build(args: &HubArgs, server: &Server) -> Result<Hub, Failure> {
    let mut b = Hub::builder().server(server.clone()).config(server.config().clone());
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

/// The Socket.IO relay of `--socketio` on `hub`: Engine.IO pings every
/// `ping` (the server's ping interval), messages up to `max_payload`, and
/// CORS for the allowed origins (any, without `--origin`).
pub fn socketio(
    args: &HubArgs,
    hub: &Hub,
    ping: Duration,
    max_payload: usize,
    origins: &[String],
) -> Result<Option<SocketIo>, Failure> {
    if !args.socketio {
        return Ok(None);
    }
    let cors = if origins.is_empty() { Cors::any() } else { Cors::allow(origins).credentials(true) };
    let mut engine = EngineConfig::default().max_payload(max_payload).cors(cors);
    if !ping.is_zero() {
        engine = engine.ping_interval(ping);
    }
    let mut b = SocketIo::builder().hub(hub.clone()).engine(engine).namespace("/", relay());
    if let Some(secs) = args.socketio_recovery {
        let window = Duration::try_from_secs_f64(secs).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            Failure::error(format!("--socketio-recovery must be a positive number of seconds, not {secs}"))
        })?;
        b = b.connection_state_recovery(window);
    }
    Ok(Some(b.build()))
}

/// "(node ID, broker URL)" for the listening line.
pub fn describe(args: &HubArgs, hub: &Hub) -> String {
    format!("(node {}, broker {})", hub.node_id(), redact(&args.broker))
}

/// One request: Socket.IO's, the hub's, or the browser client, a static
/// file, 404.
pub async fn handle(hub: Hub, io: Option<SocketIo>, files: Option<StaticFiles>, req: Request) -> Result<(), HubError> {
    let req = match &io {
        Some(io) => match io.handle(req).await? {
            Handled::Done => return Ok(()),
            Handled::NotMine(req) => req,
        },
        None => req,
    };
    let Handled::NotMine(req) = hub.handle(req).await? else { return Ok(()) };
    let head = req.head();
    // An upgrade the hub did not take is on another path: 404, as
    // PROTOCOL.md says, never a file.
    let resp = if req.is_upgrade() {
        Reject::new(404, "not found: the hub's WebSocket endpoint is /\n").into_response()
    } else if head.path() == CLIENT_PATH && matches!(*head.method(), Method::GET | Method::HEAD) {
        client_js()
    } else if let Some(files) = &files {
        files.response(head.request()).await
    } else if head.path() == "/" {
        let hint = "wsx hub: connect a WebSocket with the wsx-hub.v1 subprotocol (or add --static DIR for a page)\n";
        Reject::new(404, hint).into_response()
    } else {
        Reject::new(404, "not found\n").into_response()
    };
    Ok(req.respond(resp).await?)
}

/// A broker URL for printing: the password (user info) hidden.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_passwords_are_not_printed() {
        assert_eq!(redact("redis://:secret@db:6379/0"), "redis://***@db:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("memory"), "memory");
    }
}
