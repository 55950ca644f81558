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
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use wsx::handshake::{self, Accept, HandshakeError, UpgradeRequest};
use wsx::proto::Incoming;
use wsx::{CloseCode, Message, WebSocket};

const AFTER_HELP: &str = "\
Origins: browsers always send Origin, other clients usually do not. With
--origin, an upgrade request whose Origin is not in the list gets 403; a
request without Origin is let through (it cannot come from a page on another
site) unless --require-origin is given.

Examples:
  wsx serve --port 9001                              # echo server
  wsx serve --broadcast --static ./public            # chat: page and socket on one port
  wsx serve --origin https://example.com --max-connections 1000";

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
    /// Largest message accepted, in bytes (default 64 MiB, at most 2 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_message_size: usize,
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
    /// At most N WebSocket connections at once; upgrade requests past it get 503.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
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

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// An origin as compared: lower case, without a trailing slash.
fn normalize_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let shutdown_timeout = seconds("--shutdown-timeout", args.shutdown_timeout)?;
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
            .with_max_message_size(args.max_message_size)
            .with_max_frame_size(args.max_message_size)
            .with_compression(!args.no_compression),
        tls,
        static_root,
        origins: args.origins.iter().map(|o| normalize_origin(o)).collect(),
        require_origin: args.require_origin,
        subprotocols: args.subprotocols.clone(),
        slots: args.max_connections.map(|n| Arc::new(Semaphore::new(n))),
        broadcast: args.broadcast.then(|| broadcast::channel(BROADCAST_BACKLOG).0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let shared = shared.clone();
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        if let Err(e) = handle(tcp, &shared, stop).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
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

/// Read a request head; `None` if the peer closed before sending one.
async fn read_head<S: AsyncRead + Unpin>(
    tcp: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> wsx::Result<Option<Result<(Request<()>, usize), HandshakeError>>> {
    loop {
        match handshake::parse_request(buf, max) {
            Ok(Some(r)) => return Ok(Some(Ok(r))),
            Ok(None) => {}
            Err(e) => return Ok(Some(Err(e))),
        }
        if tcp.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Write a complete HTTP response and close the connection.
async fn respond<S: AsyncWrite + Unpin>(tcp: &mut S, resp: Response<Bytes>, send_body: bool) -> wsx::Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body().len());
    let body: &[u8] = if send_body { resp.body() } else { &[] };
    handshake::write_response(&resp, body, &mut out);
    tcp.write_all(&out).await?;
    tcp.flush().await?;
    let _ = tcp.shutdown().await;
    Ok(())
}

/// A short plain-text response that closes the connection.
fn plain(status: StatusCode, text: &str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// One TCP connection: read the request head, then serve a file, refuse,
/// or upgrade and run the echo / broadcast loop.
async fn handle(tcp: TcpStream, shared: &Shared, stop: watch::Receiver<bool>) -> wsx::Result<()> {
    tcp.set_nodelay(true)?;
    match &shared.tls {
        Some(acceptor) => {
            let tls = tokio::time::timeout(shared.config.handshake_timeout(), acceptor.accept(tcp))
                .await
                .map_err(|_| wsx::Error::HandshakeTimeout)??;
            handle_stream(tls, shared, stop).await
        }
        None => handle_stream(tcp, shared, stop).await,
    }
}

/// The connection after TCP (and TLS): HTTP, then WebSocket.
async fn handle_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut tcp: S,
    shared: &Shared,
    stop: watch::Receiver<bool>,
) -> wsx::Result<()> {
    let config = &shared.config;
    let mut buf = BytesMut::with_capacity(1024);
    let head =
        tokio::time::timeout(config.handshake_timeout(), read_head(&mut tcp, &mut buf, config.max_handshake_size()))
            .await
            .map_err(|_| wsx::Error::HandshakeTimeout)??;
    let (request, head_len) = match head {
        None => return Ok(()),
        Some(Ok(r)) => r,
        Some(Err(e)) => return respond(&mut tcp, e.to_response(), true).await,
    };
    let is_upgrade = handshake::header_has_token(request.headers(), header::UPGRADE, "websocket");
    if !is_upgrade {
        if let Some(root) = &shared.static_root {
            let head_only = request.method() == Method::HEAD;
            let resp = static_file(root, &request).await;
            return respond(&mut tcp, resp, !head_only).await;
        }
    }
    let upgrade = match UpgradeRequest::from_request(request) {
        Ok(u) => u,
        Err(e) => return respond(&mut tcp, e.to_response(), true).await,
    };
    if let Err(why) = check_origin(shared, upgrade.origin()) {
        tracing::debug!(origin = ?upgrade.origin(), "refused: {why}");
        return respond(&mut tcp, plain(StatusCode::FORBIDDEN, &why), true).await;
    }
    let permit: Option<OwnedSemaphorePermit> = match &shared.slots {
        Some(slots) => match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let mut resp = plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return respond(&mut tcp, resp, true).await;
            }
        },
        None => None,
    };
    let mut accept = Accept::new();
    if let Some(p) = upgrade.protocols().iter().find(|p| shared.subprotocols.contains(p)) {
        accept = accept.protocol(p.clone());
    }
    // Subscribe before the 101 goes out, so that a client sees every
    // message broadcast after its handshake completed.
    let subscription = shared.broadcast.as_ref().map(|tx| (tx.clone(), tx.subscribe()));
    // The 101 and permessage-deflate exactly as `wsx::accept_with` does.
    let ws = wsx::accept_upgrade(tcp, &upgrade, &accept, config, &buf[head_len..]).await?;
    drop(buf);
    let result = match subscription {
        Some((tx, rx)) => broadcast_loop(ws, tx, rx, stop).await,
        None => echo(ws, stop).await,
    };
    drop(permit);
    result
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

/// Echo with the streaming receive. Chunks are gathered until 64 KiB or
/// the end of the message: a message that ends by then goes back whole
/// (compressed if negotiated); a larger one goes back in fragments of at
/// least 64 KiB as its bytes arrive, so the echo of a large message starts
/// before its last byte is in, with at most 64 KiB held per connection.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    mut stop: watch::Receiver<bool>,
) -> wsx::Result<()> {
    const FORWARD_AT: usize = 64 << 10;
    let mut pending = BytesMut::new();
    let mut forwarding = false;
    loop {
        tokio::select! {
            incoming = ws.recv_chunk() => match incoming {
                Some(Ok(Incoming::Chunk(c))) => {
                    if c.first {
                        pending.clear();
                        forwarding = false;
                    }
                    let data = if pending.is_empty() && (c.last || c.data.len() >= FORWARD_AT) {
                        c.data
                    } else {
                        pending.extend_from_slice(&c.data);
                        if !c.last && pending.len() < FORWARD_AT {
                            continue;
                        }
                        pending.split().freeze()
                    };
                    if c.last && !forwarding {
                        // The whole message: validated once, as it arrived.
                        let whole = wsx::proto::Chunk { text: c.text, data, first: true, last: true };
                        ws.feed(whole.into_message()).await?;
                    } else {
                        forwarding = !c.last;
                        ws.feed_fragment(c.text, data, c.last).await?;
                    }
                }
                Some(Ok(Incoming::Message(_))) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            _ = stop.changed() => break,
        }
    }
    going_away(ws, CloseCode::GoingAway, "server shutting down").await
}

async fn broadcast_loop<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    tx: broadcast::Sender<Message>,
    mut rx: broadcast::Receiver<Message>,
    mut stop: watch::Receiver<bool>,
) -> wsx::Result<()> {
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
                    let _ = tx.send(m);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
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
async fn static_file(root: &Path, request: &Request<()>) -> Response<Bytes> {
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
