//! `wsx serve`: an echo (or broadcast) server with graceful shutdown, which
//! can also serve static files over plain HTTP on the same port so that a
//! browser page can connect to it.
//!
//! Each connection's request head is read here: a non-upgrade GET goes to
//! the static file handler (`--static`), an upgrade request is checked
//! (`--origin`, `--max-connections`), answered with 101 and handed to
//! [`wsx::WebSocket::from_raw`].

use crate::{io_phrase, seconds, Failure};
use bytes::{Bytes, BytesMut};
use clap::Args;
use futures_util::future::Either;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinSet;
use wsx::handshake::{self, Accept, UpgradeRequest};
use wsx::proto::{Gather, Incoming};
use wsx::{CloseCode, Message, WebSocket};

const AFTER_HELP: &str = "\
Origins: browsers always send Origin, other clients usually do not. With
--origin, an upgrade request whose Origin is not in the list gets 403; a
request without Origin is let through (it cannot come from a page on another
site) unless --require-origin is given.

Examples:
  wsx serve --port 9001                              # echo server
  wsx serve --broadcast --static ./public            # chat: page and socket on one port
  wsx serve --origin https://example.com --max-connections 1000
  wsx serve --hub --static examples/chat             # wsx-hub chat demo (two browser tabs)
  wsx serve --hub --broker redis://127.0.0.1:6379    # run several: they act as one hub";

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
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Send every message to every connected client (the sender included)
    /// instead of echoing it to its sender. A client that falls more than
    /// 1024 messages behind, or leaves more than 1 MiB unread, is closed
    /// with 1008.
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
    /// Seconds a client has to send its whole request head (and finish TLS);
    /// slower ones are disconnected.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Ping a client after SECS seconds in which nothing arrived from it
    /// (0: never). Its pong keeps it from --idle-timeout.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    ping_interval: f64,
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
    /// Refuse permessage-deflate (it is accepted by default, without
    /// context takeover).
    #[arg(long)]
    no_compression: bool,
    /// A subprotocol the server speaks (repeatable); the client's first
    /// preference among them is selected.
    #[arg(long = "subprotocol", value_name = "PROTOCOL")]
    subprotocols: Vec<String>,
    /// `--hub` and its flags (hub.rs).
    #[command(flatten)]
    hub: crate::hub::HubArgs,
    // TLS (--tls-cert / --tls-key) wraps the accepted TcpStream before
    // `handle` reads the request head; compression flags go into the
    // `wsx::Config` built in `serve`.
}

/// Bytes queued for a broadcast client that does not read before it is
/// closed with 1008.
const SLOW_CONSUMER_BYTES: usize = 1 << 20;

/// Bounded broadcast backlog per client.
const BROADCAST_BACKLOG: usize = 1024;

/// What every connection task needs to know.
struct Shared {
    config: wsx::Config,
    tls: Option<wsx::tls::TlsAcceptor>,
    static_root: Option<PathBuf>,
    origins: Vec<String>,
    require_origin: bool,
    subprotocols: Vec<String>,
    slots: Option<Arc<Semaphore>>,
    broadcast: Option<broadcast::Sender<Message>>,
    keepalive: Keepalive,
}

/// Run `wsx serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().map_err(|e| Failure::error(format!("cannot start the runtime: {e}")))?;
    rt.block_on(serve(args))
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed by the call,
/// not at the first poll: a signal sent once a client has been served is
/// never missed (it would end the process without closing handshakes).
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
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

/// An origin as compared: lower case, without a trailing slash.
fn normalize_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let shutdown_timeout = seconds("--shutdown-timeout", args.shutdown_timeout)?;
    let handshake_timeout = seconds("--handshake-timeout", args.handshake_timeout)?;
    if handshake_timeout.is_zero() {
        return Err(Failure::error("--handshake-timeout must be more than 0"));
    }
    let keepalive =
        Keepalive::new(seconds("--ping-interval", args.ping_interval)?, seconds("--idle-timeout", args.idle_timeout)?);
    let static_root = match &args.static_dir {
        Some(dir) => {
            let root = std::fs::canonicalize(dir)
                .map_err(|e| Failure::error(format!("--static {}: {}", dir.display(), io_phrase(&e))))?;
            if !root.is_dir() {
                return Err(Failure::error(format!("--static {}: not a directory", dir.display())));
            }
            Some(root)
        }
        None => None,
    };
    if args.max_connections == Some(0) {
        return Err(Failure::error("--max-connections must be at least 1"));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(wsx::tls::acceptor_from_pem_files(cert, key).map_err(|e| Failure::error(format!("TLS: {e}")))?)
        }
        _ => None,
    };
    if args.hub.enabled() {
        let common = crate::hub::Common {
            host: args.host.clone(),
            port: args.port,
            max_message_size: args.max_message_size,
            max_connections: args.max_connections,
            origins: args.origins.clone(),
            require_origin: args.require_origin,
            no_compression: args.no_compression,
            shutdown_timeout,
            handshake_timeout,
            ping_interval: seconds("--ping-interval", args.ping_interval)?,
            idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
            tls,
            static_root,
        };
        return crate::hub::serve(&args.hub, common).await;
    }
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| Failure::error(format!("cannot listen on {}:{}: {}", args.host, args.port, io_phrase(&e))))?;
    let addr = listener.local_addr().map_err(|e| Failure::error(e.to_string()))?;
    let kind = if args.broadcast { "broadcast" } else { "echo" };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!("wsx serve: {kind} server listening on {scheme}://{addr}");
    if let Some(root) = &static_root {
        println!("wsx serve: serving {} at http://{addr}/", root.display());
    }
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, kind, "listening");

    let shared = Arc::new(Shared {
        config: wsx::Config::default()
            .with_max_message_size(args.max_message_size.unwrap_or(64 << 20))
            .with_max_frame_size(args.max_message_size.unwrap_or(64 << 20))
            .with_compression(!args.no_compression)
            .with_handshake_timeout(handshake_timeout),
        tls,
        static_root,
        origins: args.origins.iter().map(|o| normalize_origin(o)).collect(),
        require_origin: args.require_origin,
        subprotocols: args.subprotocols.clone(),
        slots: args.max_connections.map(|n| Arc::new(Semaphore::new(n))),
        broadcast: args.broadcast.then(|| broadcast::channel(BROADCAST_BACKLOG).0),
        keepalive,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // The slot is taken here, before a byte is read, so that
                    // handshakes in progress count against --max-connections.
                    let permit = match &shared.slots {
                        None => Ok(None),
                        Some(slots) => slots.clone().try_acquire_owned().map(Some),
                    };
                    match permit {
                        // A task of its own (sized for its 4 KiB drain
                        // buffer), which lives about a second.
                        Err(_) => {
                            tasks.spawn(refuse_busy(tcp));
                        }
                        Ok(permit) => {
                            tasks.spawn(connection(tcp, peer, shared.clone(), stop_rx.clone(), permit));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = &mut signal => break,
        }
    }
    drop(listener);
    let open = tasks.len();
    tracing::info!(connections = open, "shutting down: closing connections with 1001");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(shutdown_timeout, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(left = tasks.len(), "shutdown timeout: dropping connections still open");
        tasks.abort_all();
    }
    println!("wsx serve: stopped");
    Ok(())
}

/// Write a complete HTTP response and close the connection.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    tcp: &mut S,
    resp: Response<Bytes>,
    send_body: bool,
) -> wsx::Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body().len());
    let body: &[u8] = if send_body { resp.body() } else { &[] };
    handshake::write_response(&resp, body, &mut out);
    tcp.write_all(&out).await?;
    tcp.flush().await?;
    let _ = tcp.shutdown().await;
    Ok(())
}

/// A short plain-text response that closes the connection.
pub(crate) fn plain(status: StatusCode, text: &str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// One TCP connection's task: read the request head, then serve a file,
/// refuse, or upgrade and run the echo / broadcast loop.
///
/// A task lives as long as its connection, and its size is that of its
/// largest state plus everything its async block captured (captures stay
/// for the task's whole life). So everything up to the upgrade (the TLS
/// handshake, the request, static files, the 101) runs in one boxed future
/// made here, which the socket goes into and which is freed once the
/// connection is upgraded; the task captures only what the connection
/// needs to its end (the slot, the shutdown signal, the peer for the log).
/// An idle plain connection's task holds the echo loop and little else
/// (13.6 KiB of RSS per idle connection when the task carried the
/// handshake and TLS states, 2.6 KiB while the loop sat under three nested
/// `async fn`s that each kept their arguments twice; `wsx bench --idle`).
fn connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> impl std::future::Future<Output = ()> {
    let keepalive = shared.keepalive;
    let opening = Box::pin(open(tcp, shared));
    async move {
        // The loop's future is made in a `let` (the matched value is gone
        // at its end) and then awaited: a value matched in place around
        // the await would stay in the task beside the loop for its life.
        let looping = match opening.await {
            Ok(Some(upgraded)) => run_upgraded(upgraded, stop, keepalive),
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
                return;
            }
        };
        if let Err(e) = looping.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        drop(permit);
    }
}

type ServerTls = wsx::tls::tokio_rustls::server::TlsStream<TcpStream>;

/// An upgraded connection and, with --broadcast, its subscription.
// Plain is the large variant on purpose: it is moved once, into the loop.
#[allow(clippy::large_enum_variant)]
enum Upgraded {
    Plain(WebSocket<TcpStream>, Option<Subscription>),
    /// Boxed: the TLS state is large, and plain connections' tasks are
    /// not sized for it.
    Tls(Box<WebSocket<ServerTls>>, Option<Subscription>),
}

/// The loop of an upgraded connection: the echo inline (the common case,
/// whose state is the task's), the others boxed. Not an async fn: its
/// future is the loop's own, without a copy of `upgraded` beside it.
fn run_upgraded(
    upgraded: Upgraded,
    stop: watch::Receiver<bool>,
    keepalive: Keepalive,
) -> Either<impl std::future::Future<Output = wsx::Result<()>>, BoxedLoop> {
    match upgraded {
        Upgraded::Plain(ws, None) => Either::Left(echo(ws, stop, keepalive)),
        Upgraded::Plain(ws, Some((tx, rx))) => Either::Right(Box::pin(broadcast_loop(ws, tx, rx, stop, keepalive))),
        Upgraded::Tls(ws, None) => Either::Right(Box::pin(echo(*ws, stop, keepalive))),
        Upgraded::Tls(ws, Some((tx, rx))) => Either::Right(Box::pin(broadcast_loop(*ws, tx, rx, stop, keepalive))),
    }
}

type BoxedLoop = std::pin::Pin<Box<dyn std::future::Future<Output = wsx::Result<()>> + Send>>;

/// Everything up to the upgrade: TLS, the request head, then a static
/// file or a refusal (`None`), or the upgraded connection.
async fn open(tcp: TcpStream, shared: Arc<Shared>) -> wsx::Result<Option<Upgraded>> {
    tcp.set_nodelay(true)?;
    match &shared.tls {
        Some(acceptor) => {
            let tls = tokio::time::timeout(shared.config.handshake_timeout(), acceptor.accept(tcp))
                .await
                .map_err(|_| wsx::Error::HandshakeTimeout)??;
            Ok(upgrade(tls, &shared).await?.map(|(ws, sub)| Upgraded::Tls(Box::new(ws), sub)))
        }
        None => Ok(upgrade(tcp, &shared).await?.map(|(ws, sub)| Upgraded::Plain(ws, sub))),
    }
}

/// A broadcast client's ends of the channel.
type Subscription = (broadcast::Sender<Message>, broadcast::Receiver<Message>);

/// HTTP up to the 101: a static file or a refusal (`None`), or the
/// upgraded connection.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut tcp: S,
    shared: &Shared,
) -> wsx::Result<Option<(WebSocket<S>, Option<Subscription>)>> {
    let config = &shared.config;
    let mut buf = BytesMut::with_capacity(1024);
    let head = tokio::time::timeout(
        config.handshake_timeout(),
        wsx::read_request_head(&mut tcp, &mut buf, config.max_handshake_size()),
    )
    .await
    .map_err(|_| wsx::Error::HandshakeTimeout)??;
    let (request, head_len) = match head {
        None => return Ok(None),
        Some(Ok(r)) => r,
        Some(Err(e)) => return respond(&mut tcp, e.to_response(), true).await.map(|()| None),
    };
    let is_upgrade = handshake::header_has_token(request.headers(), header::UPGRADE, "websocket");
    if !is_upgrade {
        if let Some(root) = &shared.static_root {
            let head_only = request.method() == Method::HEAD;
            let resp = static_file(root, &request).await;
            return respond(&mut tcp, resp, !head_only).await.map(|()| None);
        }
    }
    let upgrade = match UpgradeRequest::from_request(request) {
        Ok(u) => u,
        Err(e) => return respond(&mut tcp, e.to_response(), true).await.map(|()| None),
    };
    if let Err(why) = check_origin(shared, upgrade.origin()) {
        tracing::debug!(origin = ?upgrade.origin(), "refused: {why}");
        return respond(&mut tcp, plain(StatusCode::FORBIDDEN, &why), true).await.map(|()| None);
    }
    let mut accept = Accept::new();
    if let Some(p) = upgrade.protocols().iter().find(|p| shared.subprotocols.contains(p)) {
        accept = accept.protocol(p.clone());
    }
    // Subscribe before the 101 goes out, so that a client sees every
    // message broadcast after its handshake completed.
    let subscription = shared.broadcast.as_ref().map(|tx| (tx.clone(), tx.subscribe()));
    // The 101 and permessage-deflate exactly as `wsx::accept_with` does.
    let ws = wsx::accept_upgrade(tcp, &upgrade, &accept, config, &buf[head_len..]).await?;
    Ok(Some((ws, subscription)))
}

/// Past --max-connections: 503 at once. The request is not read; what the
/// client sends is drained for up to a second (at most 64 KiB) after the
/// response, so that it reads the 503 rather than a reset.
async fn refuse_busy(mut tcp: TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut resp = plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    if respond(&mut tcp, resp, true).await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = 64usize << 10;
        while left > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

/// Keepalive of one connection (--ping-interval, --idle-timeout), checked
/// on a timer that ticks every `tick`: a connection that was heard from
/// since the last tick (any frame: data, ping, pong, close) is alive; one
/// that was not gets a ping; one not heard from for `idle` is closed.
/// Being heard is a flag set per frame, so the data path reads no clock.
#[derive(Debug, Clone, Copy)]
struct Keepalive {
    /// Ping after this many milliseconds without a frame (0: never). u32
    /// milliseconds: every connection's task holds this.
    ping_ms: u32,
    /// Close after this many milliseconds without a frame (0: never).
    idle_ms: u32,
}

impl Keepalive {
    /// From the flags: 0 is off.
    fn new(ping: std::time::Duration, idle: std::time::Duration) -> Self {
        // A nonzero interval stays on (at least 1 ms); past 49 days, 49 days.
        let ms = |d: std::time::Duration| match d.as_millis() {
            0 if d.is_zero() => 0,
            n => u32::try_from(n).unwrap_or(u32::MAX).max(1),
        };
        Keepalive { ping_ms: ms(ping), idle_ms: ms(idle) }
    }

    fn ping(self) -> Option<std::time::Duration> {
        (self.ping_ms > 0).then(|| std::time::Duration::from_millis(self.ping_ms.into()))
    }

    fn idle(self) -> Option<std::time::Duration> {
        (self.idle_ms > 0).then(|| std::time::Duration::from_millis(self.idle_ms.into()))
    }

    /// The timer's period: the ping interval, or without pings a quarter
    /// of the idle timeout; `None` when keepalive is off.
    fn tick(self) -> Option<std::time::Duration> {
        self.ping().or(self.idle().map(|d| d / 4))
    }

    fn start(self) -> KeepaliveState {
        let now = tokio::time::Instant::now();
        KeepaliveState {
            config: self,
            heard: false,
            last_heard: now,
            timer: self.tick().map(|period| Box::pin(tokio::time::sleep_until(now + period))),
        }
    }
}

struct KeepaliveState {
    config: Keepalive,
    heard: bool,
    last_heard: tokio::time::Instant,
    /// `None` when keepalive is off.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// What a keepalive tick asks for.
enum Tick {
    Nothing,
    Ping,
    Idle,
}

impl KeepaliveState {
    /// Wait for the next tick (forever when keepalive is off) and say what
    /// to do.
    async fn tick(&mut self) -> Tick {
        let (Some(period), Some(timer)) = (self.config.tick(), self.timer.as_mut()) else {
            return std::future::pending().await;
        };
        timer.as_mut().await;
        let now = tokio::time::Instant::now();
        timer.as_mut().reset(now + period);
        if std::mem::take(&mut self.heard) {
            self.last_heard = now;
            return Tick::Nothing;
        }
        match self.config.idle() {
            Some(idle) if now.duration_since(self.last_heard) >= idle => Tick::Idle,
            _ if self.config.ping_ms > 0 => Tick::Ping,
            _ => Tick::Nothing,
        }
    }
}

/// Whether an upgrade request's Origin may connect; the reason if not.
fn check_origin(shared: &Shared, origin: Option<&str>) -> Result<(), String> {
    match origin {
        None if shared.require_origin => Err("an Origin header is required".into()),
        None => Ok(()),
        Some(_) if shared.origins.is_empty() => Ok(()),
        Some(o) if shared.origins.contains(&normalize_origin(o)) => Ok(()),
        Some(o) => Err(format!("origin {o:?} is not allowed")),
    }
}

/// Echo with the streaming receive, regrouped by `Gather`: chunks are
/// gathered until 64 KiB or the end of the message; a message that ends by
/// then goes back whole
/// (compressed if negotiated); a larger one goes back in fragments of at
/// least 64 KiB as its bytes arrive, so the echo of a large message starts
/// before its last byte is in, with at most 64 KiB held per connection.
// Not an `async fn`: an async fn keeps its arguments twice in its future
// (as passed, and moved into locals), and the WebSocket is most of it. An
// `async move` block uses what it captured in place.
#[allow(clippy::manual_async_fn)]
fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    mut stop: watch::Receiver<bool>,
    keepalive: Keepalive,
) -> impl std::future::Future<Output = wsx::Result<()>> {
    async move {
        let mut gather = Gather::default();
        let mut alive = keepalive.start();
        loop {
            tokio::select! {
                incoming = ws.recv_chunk() => match incoming {
                    Some(Ok(Incoming::Chunk(chunk))) => {
                        alive.heard = true;
                        // The future awaited is `Feed` (a reference and
                        // the payload).
                        // let-else: the pushed result is gone before the await (an
                        // `if let` would keep it in the task across the await).
                        let Some(out) = gather.push(chunk) else { continue };
                        ws.feed_chunk(out).await?;
                    }
                    Some(Ok(Incoming::Message(_))) => alive.heard = true,
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                },
                tick = alive.tick() => match tick {
                    Tick::Nothing => {}
                    Tick::Ping => Box::pin(ws.ping(Bytes::new())).await?,
                    Tick::Idle => return Box::pin(close_idle(ws)).await,
                },
                _ = stop.changed() => break,
            }
        }
        Box::pin(going_away(ws, CloseCode::GoingAway, "server shutting down")).await
    }
}

/// Close a connection that went silent for --idle-timeout: 1001, and at
/// most a second for the peer's close frame (it is probably gone).
async fn close_idle<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocket<S>) -> wsx::Result<()> {
    tracing::debug!("closing an idle connection");
    let closing = going_away(ws, CloseCode::GoingAway, "idle timeout");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), closing).await;
    Ok(())
}

async fn broadcast_loop<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    tx: broadcast::Sender<Message>,
    mut rx: broadcast::Receiver<Message>,
    mut stop: watch::Receiver<bool>,
    keepalive: Keepalive,
) -> wsx::Result<()> {
    let mut alive = keepalive.start();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            b = rx.recv() => match b {
                // Queued; `recv` below writes everything queued before it waits.
                Ok(m) => {
                    // A client that does not read: `feed` would wait at the
                    // high-water mark (16 MiB) without ever seeing that it lags.
                    if ws.buffered_amount() > SLOW_CONSUMER_BYTES {
                        tracing::debug!(queued = ws.buffered_amount(), "closing a client that does not read");
                        // Bounded: such a peer may never take the close frame.
                        let closing = going_away(ws, CloseCode::PolicyViolation, "too slow: not reading");
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), closing).await;
                        return Ok(());
                    }
                    ws.feed(m).await?
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "closing a client that fell behind");
                    return going_away(ws, CloseCode::PolicyViolation, "too slow: missed messages").await;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            msg = ws.recv() => match msg {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    alive.heard = true;
                    let _ = tx.send(m);
                }
                Some(Ok(_)) => alive.heard = true,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            tick = alive.tick() => match tick {
                Tick::Nothing => {}
                Tick::Ping => ws.ping(Bytes::new()).await?,
                Tick::Idle => return close_idle(ws).await,
            },
        }
    }
    going_away(ws, CloseCode::GoingAway, "server shutting down").await
}

/// Close with `code` and finish the closing handshake.
async fn going_away<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    code: CloseCode,
    reason: &str,
) -> wsx::Result<()> {
    ws.close(code, reason).await?;
    while let Some(m) = ws.recv().await {
        m?;
    }
    Ok(())
}

// ------------------------------------------------------------ static files

/// The response to a plain HTTP request under `--static`: the file, 404,
/// 403 for paths that try to leave the directory, 405 for other methods.
pub(crate) async fn static_file(root: &Path, request: &Request<()>) -> Response<Bytes> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(relative) = safe_relative_path(request.uri().path()) else {
        return plain(StatusCode::FORBIDDEN, "forbidden");
    };
    let mut path = root.join(relative);
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
    }
    // Symbolic links may point anywhere: serve only what resolves inside root.
    let resolved = match tokio::fs::canonicalize(&path).await {
        Ok(p) => p,
        Err(_) => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    if !resolved.starts_with(root) {
        return plain(StatusCode::FORBIDDEN, "forbidden");
    }
    let body = match tokio::fs::read(&resolved).await {
        Ok(b) => b,
        Err(_) => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    let mut r = Response::new(Bytes::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&resolved)));
    let len = r.body().len();
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The percent-decoded request path as a relative path with only normal
/// components; `None` for `..`, backslashes, NUL, or non-UTF-8.
fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    if decoded.contains('\\') || decoded.contains('\0') {
        return None;
    }
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => {
                // A segment must be one plain name (no drive prefix, no root).
                let mut c = Path::new(s).components();
                match (c.next(), c.next()) {
                    (Some(Component::Normal(n)), None) => out.push(n),
                    _ => return None,
                }
            }
        }
    }
    Some(out)
}

/// Decode `%XX` escapes; `None` if malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The Content-Type for a file, from its extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("txt") => "text/plain; charset=utf-8",
        Some("ico") => "image/x-icon",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        assert_eq!(safe_relative_path("/a/b.html"), Some(PathBuf::from("a/b.html")));
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative_path("/./a//b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative_path("/%61.txt"), Some(PathBuf::from("a.txt")));
        for bad in
            ["/../etc/passwd", "/a/../../x", "/%2e%2e/x", "/a%2f..%2f..%2fx", "/a\\..\\x", "/%00", "/%zz", "/%ff"]
        {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("a.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("a.svg")), "image/svg+xml");
        assert_eq!(content_type(Path::new("a")), "application/octet-stream");
    }

    #[test]
    fn origins_compare_without_case_or_trailing_slash() {
        assert_eq!(normalize_origin("HTTPS://Example.com/"), "https://example.com");
    }
}

#[cfg(test)]
mod task_size {
    use super::*;

    /// An idle connection's task is the echo loop's future: its size is
    /// paid once per connection (with 10,000 connections, each KiB here is
    /// 10 MiB). The rare states (pings, closing) are boxed so that they do
    /// not size it; this bound breaks if one is inlined again (it was 2080
    /// bytes with them inline, 896 while `echo` was an `async fn` keeping
    /// its WebSocket twice and `feed_fragment` had a future of its own, 648
    /// with the keepalive settings as two `Option<Duration>`, 600 with the
    /// receive state and write queue inline in every WebSocket, 488 since).
    #[tokio::test]
    async fn the_echo_loop_future_stays_small() {
        let (a, _b) = tokio::io::duplex(64);
        let ws = WebSocket::from_raw(a, wsx::Role::Server, &wsx::Config::default(), &[]);
        let (_tx, rx) = watch::channel(false);
        let keepalive = Keepalive::new(std::time::Duration::from_secs(1), std::time::Duration::from_secs(2));
        let echo = echo(ws, rx, keepalive);
        let size = std::mem::size_of_val(&echo);
        assert!(size <= 512, "the echo future is {size} bytes");
    }

    /// The whole task of a plain connection: its captures (slot, shutdown
    /// signal, peer, the boxed opening) and the echo loop. The handshake
    /// and TLS states live in the boxed opening, freed at the upgrade; this
    /// bound breaks if they, or a second copy of the loop's arguments,
    /// come back into the task.
    #[tokio::test]
    async fn a_connection_task_is_the_echo_loop_and_little_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let shared = Arc::new(Shared {
            config: wsx::Config::default(),
            tls: None,
            static_root: None,
            origins: Vec::new(),
            require_origin: false,
            subprotocols: Vec::new(),
            slots: None,
            broadcast: None,
            keepalive: Keepalive::new(std::time::Duration::from_secs(1), std::time::Duration::from_secs(2)),
        });
        let (_tx, rx) = watch::channel(false);
        let task = connection(tcp, peer, shared, rx, None);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 640, "a connection's task future is {size} bytes");
    }
}
