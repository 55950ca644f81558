//! `wsx serve`: an echo (or broadcast) server, or a wsx-hub (`--hub`), with
//! static files on the same port. The flags become a [`wsx::server::Server`]
//! (TLS, origins, connection limit, timeouts, keepalive, graceful shutdown)
//! and a handler; the server layer does the rest.

use crate::{io_phrase, seconds, Failure};
use clap::Args;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use wsx::handshake::{Accept, Reject};
use wsx::proto::deflate::CompressionPreset;
use wsx::server::{Outbox, OutboxConfig, Outgoing, Pump, Request, Server, ServerStream, SlowConsumer, StaticFiles};
use wsx::{CloseCode, Message};

const AFTER_HELP: &str = "\
Origins: browsers always send Origin, other clients usually do not. With
--origin, an upgrade request whose Origin is not in the list gets 403; a
request without Origin is let through (it cannot come from a page on another
site) unless --require-origin is given.

Keepalive: a client from which nothing arrived for --ping-interval is
pinged (within one more interval); one from which nothing, not even a pong,
arrived for --idle-timeout is closed with 1001.

Examples:
  wsx serve --port 9001                              # echo server
  wsx serve --broadcast --static ./public            # chat: page and socket on one port
  wsx serve --origin https://example.com --max-connections 1000
  wsx serve --hub --static examples/chat             # wsx-hub chat demo (two browser tabs)
  wsx serve --hub --broker redis://127.0.0.1:6379    # run several: they act as one hub
  wsx serve --socketio --static examples/socketio-chat  # Socket.IO chat (the official client)";

/// Options of `wsx serve`.
#[derive(Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the first stdout line tells which).
    #[arg(long, short, default_value_t = 9001)]
    port: u16,
    /// Largest message accepted, in bytes (default 64 MiB, 1 MiB with
    /// --hub; at most 2 GiB).
    #[arg(long, value_name = "BYTES")]
    max_message_size: Option<usize>,
    /// Seconds to wait for clients to finish the closing handshake on shutdown.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    shutdown_timeout: f64,
    /// Worker threads (default: one per core; 1 runs everything on the
    /// main thread).
    #[arg(long)]
    threads: Option<usize>,
    /// Send every message to every connected client (the sender included)
    /// instead of echoing it to its sender. A client that falls more than
    /// 1024 messages or 1 MiB behind is closed with 1008.
    #[arg(long)]
    broadcast: bool,
    /// Serve the files of DIR over plain HTTP (GET, HEAD) on the same port,
    /// for requests that are not WebSocket upgrades ("/" is index.html).
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// At most N connections at once, counted from the moment they are
    /// accepted (handshakes in progress and static-file requests included);
    /// connections past it get 503 at once, without their request being read.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Seconds a client has to finish TLS and send its whole request head;
    /// slower ones are disconnected.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Ping a client after SECS seconds in which nothing arrived from it
    /// (0: never; default 20, 25 with --hub as wsx-hub's PROTOCOL.md
    /// says). Its pong keeps it from --idle-timeout.
    #[arg(long, value_name = "SECS")]
    ping_interval: Option<f64>,
    /// Close (1001) a client from which nothing, not even a pong, arrived
    /// for SECS seconds (0: never). Finds peers that vanished without a FIN.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    idle_timeout: f64,
    /// Accept WebSocket upgrades only from this Origin, e.g.
    /// https://example.com (repeatable); others get 403.
    #[arg(long = "origin", value_name = "ORIGIN")]
    origins: Vec<String>,
    /// Refuse (403) upgrade requests that carry no Origin header.
    #[arg(long)]
    require_origin: bool,
    /// Serve wss:// with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also serve the echo over HTTP/3 (RFC 9220) on UDP, same host and
    /// port, with --tls-cert/--tls-key (experimental: no client can open a
    /// WebSocket on it until the h3 crate carries `:protocol websocket`).
    #[cfg(feature = "http3")]
    #[arg(long, requires = "tls_cert")]
    http3: bool,
    /// Refuse permessage-deflate (it is accepted by default, without
    /// context takeover).
    #[arg(long, conflicts_with = "compression")]
    no_compression: bool,
    /// How much permessage-deflate state each connection may keep: shared
    /// (the default: none, no context takeover), or dedicated-3k, -4k, -8k,
    /// -16k, -32k, -64k, -128k, -256k (context takeover with zlib's window
    /// bits and memLevel of that size; ~17 KiB to ~301 KiB per connection
    /// in all, see docs/compression.md).
    #[arg(long, value_name = "PRESET", default_value_t = CompressionPreset::Shared)]
    compression: CompressionPreset,
    /// A subprotocol the server speaks (repeatable); the client's first
    /// preference among them is selected.
    #[arg(long = "subprotocol", value_name = "PROTOCOL")]
    subprotocols: Vec<String>,
    /// `--hub` and its flags (hub.rs).
    #[command(flatten)]
    hub: crate::hub::HubArgs,
}

/// The default largest message, without --hub.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Each connection's write queue high-water mark.
const WRITE_BUFFER: usize = 1 << 20;

/// Run `wsx serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let rt = match args.threads {
        // One thread: everything on this one, without a scheduler's handoffs.
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let rt = rt.map_err(|e| Failure::error(format!("cannot start the runtime: {e}")))?;
    rt.block_on(serve(args))
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed by the call,
/// not at the first poll: a signal sent once a client has been served is
/// never missed (it would end the process without closing handshakes).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        async move {
            match handlers {
                Ok((mut term, mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                Err(_) => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The server and what the handlers share, from the flags.
struct Site {
    server: Server,
    files: Option<StaticFiles>,
    scheme: (&'static str, &'static str),
}

fn site(args: &ServeArgs) -> Result<Site, Failure> {
    let handshake_timeout = seconds("--handshake-timeout", args.handshake_timeout)?;
    if handshake_timeout.is_zero() {
        return Err(Failure::error("--handshake-timeout must be more than 0"));
    }
    if args.max_connections == Some(0) {
        return Err(Failure::error("--max-connections must be at least 1"));
    }
    let ping = args.ping_interval.unwrap_or(if args.hub.enabled() { crate::hub::DEFAULT_PING_INTERVAL } else { 20.0 });
    let (ping, idle) = (seconds("--ping-interval", ping)?, seconds("--idle-timeout", args.idle_timeout)?);
    if !ping.is_zero() && !idle.is_zero() && idle <= ping {
        return Err(Failure::error(format!(
            "--idle-timeout ({} s) must be longer than --ping-interval ({} s): a pinged client needs time to answer",
            idle.as_secs_f64(),
            ping.as_secs_f64()
        )));
    }
    let default_max = if args.hub.enabled() { crate::hub::DEFAULT_MAX_MESSAGE_SIZE } else { DEFAULT_MAX_MESSAGE_SIZE };
    let config = wsx::Config::default()
        .with_max_message_size(args.max_message_size.unwrap_or(default_max))
        // What a client that does not read can make a connection hold:
        // the echo waits beyond it (a larger message still goes whole).
        .with_max_write_buffer(WRITE_BUFFER)
        .with_handshake_timeout(handshake_timeout)
        .with_keepalive(ping, idle);
    let config = match args.no_compression {
        true => config.with_compression(false),
        false => config.with_compression_preset(args.compression),
    };
    let mut builder = Server::builder()
        .config(config)
        .shutdown_timeout(seconds("--shutdown-timeout", args.shutdown_timeout)?)
        .require_origin(args.require_origin);
    if !args.origins.is_empty() {
        builder = builder.allow_origins(&args.origins);
    }
    if let Some(n) = args.max_connections {
        builder = builder.max_connections(n);
    }
    let tls = args.tls_cert.is_some();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let acceptor = wsx::tls::acceptor_from_pem_files(cert, key).map_err(|e| Failure::error(format!("TLS: {e}")))?;
        builder = builder.tls(acceptor);
    }
    let files = match &args.static_dir {
        Some(dir) => Some(
            StaticFiles::new(dir)
                .map_err(|e| Failure::error(format!("--static {}: {}", dir.display(), io_phrase(&e))))?,
        ),
        None => None,
    };
    Ok(Site { server: builder.build(), files, scheme: if tls { ("wss", "https") } else { ("ws", "http") } })
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let site = site(&args)?;
    // The hub's settings are checked before the port is taken: a bad one
    // is refused alike whether the port is free or not.
    let hub = if args.hub.enabled() {
        let hub = crate::hub::build(&args.hub, &site.server)?;
        let config = site.server.config();
        let (ping, max) = (config.ping_interval().unwrap_or_default(), config.protocol().max_message_size());
        let io = crate::hub::socketio(&args.hub, &hub, ping, max, &args.origins)?;
        Some((hub, io))
    } else {
        None
    };
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| Failure::error(format!("cannot listen on {}:{}: {}", args.host, args.port, io_phrase(&e))))?;
    let addr = listener.local_addr().map_err(|e| Failure::error(e.to_string()))?;
    #[cfg(feature = "http3")]
    let http3 = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) if args.http3 => {
            Some(crate::http3::serve_echo(addr, cert, key, site.server.config(), &args.subprotocols)?)
        }
        _ => None,
    };
    // Before anyone can connect, so a signal always closes with 1001.
    let signal = shutdown_signal();
    let server = site.server.clone();
    let (ws, http) = site.scheme;
    let served = if let Some((hub, io)) = hub {
        let hub_for_shutdown = hub.clone();
        println!("wsx serve: hub server listening on {ws}://{addr} {}", crate::hub::describe(&args.hub, &hub));
        println!(
            "wsx serve: browser client at {http}://{addr}{}, SSE at /events?room=NAME, metrics at /metrics",
            crate::hub::CLIENT_PATH
        );
        if io.is_some() {
            println!("wsx serve: Socket.IO at {http}://{addr}/socket.io/ (events join, leave, publish, whoami)");
        }
        announce(&site, addr);
        let files = site.files;
        // On the signal, Socket.IO sessions are told first (polling ones
        // hold no connection the server would close), then the rest.
        let io_for_shutdown = io.clone();
        let signal = async move {
            signal.await;
            if let Some(io) = io_for_shutdown {
                io.shutdown().await;
            }
        };
        let handler = move |req| crate::hub::handle(hub.clone(), io.clone(), files.clone(), req);
        let served = server.serve_until(listener, handler, signal).await;
        // Connections are closed; leave the cluster.
        hub_for_shutdown.shutdown().await;
        served
    } else {
        let kind = if args.broadcast { "broadcast" } else { "echo" };
        println!("wsx serve: {kind} server listening on {ws}://{addr}");
        announce(&site, addr);
        let shared = Arc::new(Shared {
            files: site.files,
            subprotocols: args.subprotocols.clone(),
            room: args.broadcast.then(Room::default),
        });
        server.serve_until(listener, move |req| connection(shared.clone(), req), signal).await
    };
    #[cfg(feature = "http3")]
    if let Some(endpoint) = http3 {
        endpoint.close(0u32.into(), b"shutdown");
    }
    served.map_err(|e| Failure::error(format!("accepting connections failed: {}", io_phrase(&e))))?;
    println!("wsx serve: stopped");
    Ok(())
}

/// The static directory line and the log line of a listening server.
fn announce(site: &Site, addr: std::net::SocketAddr) {
    if let Some(files) = &site.files {
        println!("wsx serve: serving {} at {}://{addr}/", files.root().display(), site.scheme.1);
    }
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, "listening");
}

/// What the echo and broadcast handlers share.
struct Shared {
    files: Option<StaticFiles>,
    subprotocols: Vec<String>,
    /// With --broadcast.
    room: Option<Room>,
}

/// One request: a file (or 404), or a WebSocket to echo or broadcast.
// Not an `async fn`: an async fn keeps its arguments twice in its future
// (as passed, and moved into locals); this block uses its captures in
// place, and the task of an idle connection is mostly this future.
#[allow(clippy::manual_async_fn)]
fn connection(shared: Arc<Shared>, req: Request) -> impl std::future::Future<Output = wsx::Result<()>> + Send {
    async move {
        if !req.is_upgrade() {
            // Boxed: a file's state does not size every connection's task.
            return Box::pin(http(req, shared.files.as_ref())).await;
        }
        let mut accept = Accept::new();
        if let Some(p) = req.protocols().into_iter().find(|p| shared.subprotocols.contains(p)) {
            accept = accept.protocol(p);
        }
        let Some(room) = &shared.room else {
            // Its own statement: the `?` would otherwise keep a second copy
            // of the WebSocket beside the loop.
            let ws = req.upgrade(accept).await?;
            return wsx::server::echo(ws).await;
        };
        Box::pin(broadcast(room, req, accept)).await
    }
}

/// A plain HTTP request: the server's metrics at `/metrics`, a static
/// file, or 404.
async fn http(req: Request, files: Option<&StaticFiles>) -> wsx::Result<()> {
    let resp = if req.path() == "/metrics" {
        let mut resp = http::Response::new(bytes::Bytes::from(req.server().metrics_text()));
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4"));
        resp
    } else {
        match files {
            Some(files) => files.response(req.head().request()).await,
            None => Reject::new(404, "not found: this is a WebSocket server\n").into_response(),
        }
    };
    req.respond(resp).await
}

/// The clients of `--broadcast`, each with its outbox.
#[derive(Default)]
struct Room {
    next: AtomicU64,
    members: Mutex<HashMap<u64, Outbox>>,
}

/// A client's place in the room; it leaves when this is dropped.
struct Member<'a> {
    room: &'a Room,
    id: u64,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.room.members.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl Room {
    /// Join with a new outbox: 1024 messages or 1 MiB waiting, then 1008.
    fn join(&self) -> (Member<'_>, wsx::server::OutboxReceiver) {
        let config = OutboxConfig::default()
            .with_max_messages(1024)
            .with_max_bytes(1 << 20)
            .with_slow_consumer(SlowConsumer::Close(CloseCode::PolicyViolation));
        let (outbox, rx) = Outbox::new(config);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.members.lock().unwrap_or_else(|p| p.into_inner()).insert(id, outbox);
        (Member { room: self, id }, rx)
    }

    /// Send `msg` to every member: one frame, encoded (and compressed) once
    /// and shared by all of them.
    fn send(&self, msg: &Message) {
        let out = Outgoing::prepared(msg.clone());
        for outbox in self.members.lock().unwrap_or_else(|p| p.into_inner()).values() {
            // A full outbox closes its client (1008); a closing one drops.
            let _ = outbox.push(out.clone());
        }
    }
}

/// A `--broadcast` client: everything it sends goes to every member.
async fn broadcast(room: &Room, req: Request<ServerStream>, accept: Accept) -> wsx::Result<()> {
    // Joined before the 101: the client sees every message sent after its
    // handshake completed.
    let (_member, rx) = room.join();
    let mut pump = Pump::new(req.upgrade(accept).await?, rx);
    while let Some(msg) = pump.recv().await {
        if let m @ (Message::Text(_) | Message::Binary(_)) = msg? {
            room.send(&m);
        }
    }
    Ok(())
}

#[cfg(test)]
mod task_size {
    use super::*;

    /// An idle connection's task is mostly the echo loop's future: its size
    /// is paid once per connection (with 10,000 connections, each KiB here
    /// is 10 MiB), and with the server's slot it must stay under about 280
    /// bytes for tokio's 384-byte task cell. Keepalive and close requests
    /// live boxed in the WebSocket, the handshake and files in boxed
    /// futures freed before the loop, and nothing received is held across
    /// the feed; this bound breaks if one of them comes back inline.
    #[tokio::test]
    async fn the_echo_loop_future_stays_small() {
        let (a, _b) = tokio::io::duplex(64);
        let ws = wsx::WebSocket::from_raw(a, wsx::Role::Server, &wsx::Config::default(), &[]);
        let size = std::mem::size_of_val(&wsx::server::echo(ws));
        eprintln!("echo future: {size} bytes");
        assert!(size <= 232, "the echo future is {size} bytes");
    }

    /// The handler's whole future for a plain connection: the request (a
    /// pointer), the shared state, and the echo loop.
    #[test]
    fn a_connection_handler_is_the_echo_loop_and_little_else() {
        fn size_of_future<F: std::future::Future>(_: &dyn Fn(Request) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let shared = Arc::new(Shared { files: None, subprotocols: Vec::new(), room: None });
        let size = size_of_future(&move |req| connection(shared.clone(), req));
        eprintln!("handler future: {size} bytes");
        assert!(size <= 264, "a connection's handler future is {size} bytes");
    }
}

#[cfg(test)]
mod keepalive_defaults {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn ping_of(argv: &[&str]) -> Option<Duration> {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(argv.iter().copied())).unwrap();
        site(&cli.serve).ok().and_then(|s| s.server.config().ping_interval())
    }

    /// `wsx serve --hub` pings as wsx-hub's PROTOCOL.md says (25 s); the
    /// echo server keeps its 20 s; the flag wins over both.
    #[tokio::test]
    async fn the_hub_pings_every_25_s_unless_told() {
        assert_eq!(ping_of(&["--hub"]), Some(Duration::from_secs(25)));
        assert_eq!(ping_of(&[]), Some(Duration::from_secs(20)));
        assert_eq!(ping_of(&["--hub", "--ping-interval", "7"]), Some(Duration::from_secs(7)));
    }
}

#[cfg(test)]
mod compression_flag {
    use super::*;
    use clap::Parser;
    use wsx::proto::deflate::DeflateConfig;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn deflate_of(argv: &[&str]) -> Result<Option<DeflateConfig>, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(argv.iter().copied()))?;
        Ok(site(&cli.serve).ok().unwrap().server.config().deflate(wsx::Role::Server))
    }

    /// `--compression PRESET` sets the server's memory preset; without it
    /// the server shares its compressors (no context takeover).
    #[tokio::test]
    async fn compression_takes_a_preset() {
        assert_eq!(deflate_of(&[]).unwrap(), Some(DeflateConfig::server_default()));
        assert_eq!(
            deflate_of(&["--compression", "dedicated-4k"]).unwrap(),
            Some(DeflateConfig::preset(CompressionPreset::Dedicated4K))
        );
        assert_eq!(deflate_of(&["--no-compression"]).unwrap(), None);
        assert!(deflate_of(&["--compression", "dedicated-5k"]).is_err());
        assert!(deflate_of(&["--no-compression", "--compression", "dedicated-4k"]).is_err());
    }
}
