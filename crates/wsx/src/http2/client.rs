//! The client side of RFC 8441: a `wss://` WebSocket as an extended
//! `CONNECT` stream of an HTTP/2 connection that the WebSockets to the same
//! origin share, chosen as a browser chooses ([`crate::connect_with`]).
//!
//! One pool per process holds the HTTP/2 connections that allow extended
//! `CONNECT`, by origin (host, port, proxy and TLS configuration). A new
//! WebSocket takes a place on one with room under the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, or dials another; one dial per origin
//! runs at a time, so the WebSockets that wait for it share it. A
//! connection leaves the pool when it ends, or after [`IDLE_TIMEOUT`]
//! without WebSockets. An origin whose server speaks HTTP/2 without
//! extended `CONNECT` is remembered for [`REMEMBER_HTTP1`]: its WebSockets
//! go straight to HTTP/1.1.

use super::H2Stream;
use crate::client::handshake::{negotiated_websocket, offer_deflate, refused, MAX_REFUSAL_BODY};
use crate::client::route::Route;
use crate::proxy::Proxy;
use crate::tls::Offer;
use crate::{Config, Error, MaybeTls, MaybeTlsStream, Result, WebSocket};
use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::{Request, Response};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use wsx_proto::handshake::{ClientHandshake, HandshakeError};

/// Which HTTP versions a `wss://` client may open its WebSockets over
/// ([`Config::with_http2`]). `ws://` is HTTP/1.1 whatever the mode: wsx
/// speaks HTTP/2 over TLS only (no cleartext h2c).
///
/// ```
/// use wsx::http2::Mode;
/// assert_eq!(wsx::Config::default().http2(), Mode::Auto);
/// let config = wsx::Config::default().with_http2(Mode::Off);
/// assert_eq!(config.http2(), Mode::Off);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// As browsers choose: TLS offers ALPN `h2` and `http/1.1`; the
    /// WebSocket goes over HTTP/2 when the server picks `h2` and allows
    /// extended `CONNECT`, else over HTTP/1.1. The default.
    #[default]
    Auto,
    /// HTTP/2 only: connecting fails with
    /// [`Error::Http2Unavailable`] when the server cannot carry the
    /// WebSocket over HTTP/2.
    Required,
    /// HTTP/1.1 only: TLS offers ALPN `http/1.1` alone.
    Off,
}

/// Why a WebSocket cannot go over HTTP/2 ([`Error::Http2Unavailable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The URL is `ws://`: wsx speaks HTTP/2 over TLS only.
    #[error("ws:// is HTTP/1.1: wsx speaks HTTP/2 over TLS only (use wss://)")]
    NotTls,
    /// The server did not choose `h2` by TLS ALPN: it speaks HTTP/1.1.
    #[error("the server did not choose h2 by TLS ALPN (it speaks HTTP/1.1 only)")]
    NotNegotiated,
    /// The server speaks HTTP/2 without `SETTINGS_ENABLE_CONNECT_PROTOCOL`
    /// = 1 (RFC 8441 §3): it takes no WebSockets over HTTP/2.
    #[error(
        "the server speaks HTTP/2 but takes no WebSockets over it (no SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441 §3)"
    )]
    NoExtendedConnect,
}

/// How long a connection without WebSockets stays in the pool for the next
/// WebSocket to its origin.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an origin whose server speaks HTTP/2 without extended
/// `CONNECT` is remembered (its WebSockets go straight to HTTP/1.1), and
/// one that chose HTTP/1.1 by ALPN (its WebSockets do not wait for one
/// another's dial).
const REMEMBER_HTTP1: Duration = Duration::from_secs(300);

/// The receive window of a stream: what the server may send a WebSocket
/// ahead of its reader (RFC 9113 §6.9.2).
const STREAM_WINDOW: u32 = 1 << 20;

/// The receive window of a connection, shared by its streams: with
/// [`STREAM_WINDOW`], what bounds the memory of unread data.
const CONNECTION_WINDOW: u32 = 4 << 20;

/// Tries of a stream on connections that turned out unable to take it
/// (closing, or a refused stream): each is retried on another.
const MAX_ATTEMPTS: u32 = 3;

/// Close the pooled HTTP/2 connections that carry no WebSocket now,
/// instead of after 30 s without one: each says GOAWAY and ends, and the
/// next WebSocket to their origins dials anew. Connections with WebSockets
/// are left alone. For a program about to exit, or a test that counts the
/// server's connections.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let (mut ws, _) = wsx::connect("wss://example.com/chat").await?;
/// ws.close(wsx::CloseCode::Normal, "bye").await?;
/// while ws.recv().await.is_some() {}
/// drop(ws);
/// wsx::http2::close_idle_connections();
/// # Ok(()) }
/// ```
pub fn close_idle_connections() {
    let mut origins = POOL.lock();
    for o in origins.iter_mut() {
        o.conns.retain(|c| {
            let idle = c.state.live.load(Ordering::Acquire) == 0;
            if idle {
                c.state.closed.store(true, Ordering::Release);
            }
            !idle
        });
    }
    prune(&mut origins);
}

/// What [`open`] did.
pub(crate) enum Opened {
    /// The WebSocket, over HTTP/2, and the server's response.
    WebSocket(Box<(WebSocket<MaybeTlsStream>, Response<()>)>),
    /// The WebSocket goes over HTTP/1.1: on this TLS connection (the
    /// server chose `http/1.1` by ALPN), or on a new one that offers
    /// `http/1.1` alone.
    Http1(Option<MaybeTlsStream>),
}

/// Open the `wss://` WebSocket of `request` over HTTP/2 when the mode and
/// the server allow it; otherwise say how to go on with HTTP/1.1.
pub(crate) async fn open(request: &Request<()>, route: &Route<'_>) -> Result<Opened> {
    let mode = route.config.http2();
    if mode == Mode::Off {
        return Ok(Opened::Http1(None));
    }
    let required = mode == Mode::Required;
    let key = Key::new(route)?;
    let mut attempts = 0;
    loop {
        if let Some((send, place)) = POOL.take(&key) {
            attempts += 1;
            match settle(open_stream(send, place, request, route.config).await, attempts) {
                Some(done) => return done,
                None => continue,
            }
        }
        let remembered = if required { None } else { POOL.remembered(&key) };
        if remembered == Some(Http1::NoExtendedConnect) {
            return Ok(Opened::Http1(None));
        }
        // One dial per origin at a time: the WebSockets that wait for it
        // take places on the connection it opens. An origin that chose
        // HTTP/1.1 is dialled by each WebSocket at once.
        let turn = match remembered {
            Some(Http1::Negotiated) => None,
            _ => Some(POOL.dial_lock(&key).lock_owned().await),
        };
        if turn.is_some() && (POOL.has_room(&key) || (!required && POOL.remembered(&key).is_some())) {
            // The dial waited for made a place, or found HTTP/1.1.
            continue;
        }
        match dial(route).await? {
            Dialed::H2(conn) => {
                let (send, place) = POOL.insert(&key, conn);
                drop(turn);
                attempts += 1;
                match settle(open_stream(send, place, request, route.config).await, attempts) {
                    Some(done) => return done,
                    None => continue,
                }
            }
            Dialed::Http1(tls) => {
                POOL.remember(&key, Http1::Negotiated);
                return match required {
                    true => Err(Error::Http2Unavailable(Unavailable::NotNegotiated)),
                    false => Ok(Opened::Http1(Some(tls))),
                };
            }
            Dialed::NoExtendedConnect => {
                tracing::debug!(host = %key.host, port = key.port, "HTTP/2 without extended CONNECT: HTTP/1.1");
                POOL.remember(&key, Http1::NoExtendedConnect);
                return match required {
                    true => Err(Error::Http2Unavailable(Unavailable::NoExtendedConnect)),
                    false => Ok(Opened::Http1(None)),
                };
            }
        }
    }
}

/// What a new TLS connection to the server turned out to be.
enum Dialed {
    /// HTTP/2 with extended `CONNECT`.
    H2(Conn),
    /// The server chose `http/1.1` (or nothing) by ALPN.
    Http1(MaybeTlsStream),
    /// HTTP/2 without extended `CONNECT` (the connection is closed).
    NoExtendedConnect,
}

/// Open a TLS connection offering `h2` and `http/1.1`; on `h2`, start
/// HTTP/2 and learn the server's settings.
async fn dial(route: &Route<'_>) -> Result<Dialed> {
    let tls = route.tls(Offer::H2AndHttp11).await?;
    if !crate::tls::negotiated_h2(&tls) {
        return Ok(Dialed::Http1(tls));
    }
    let (send, mut connection) = h2::client::Builder::new()
        // RFC 9113 §8.4: a client that takes no pushed responses says so.
        .enable_push(false)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(h2_error)?;
    let ping = connection.ping_pong();
    let state = Arc::new(ConnState::default());
    tokio::spawn(drive(connection, state.clone()));
    // RFC 8441 §3: extended CONNECT only once the server has sent
    // SETTINGS_ENABLE_CONNECT_PROTOCOL = 1. The server's preface is a
    // SETTINGS frame (RFC 9113 §3.4), which h2 applies before it reads the
    // next frame: once a PING sent now is answered, the server's settings
    // are known.
    let Some(mut ping) = ping else {
        return Err(Error::Io(io::Error::other("the HTTP/2 connection's pings were taken")));
    };
    ping.ping(h2::Ping::opaque()).await.map_err(h2_error)?;
    if !send.is_extended_connect_protocol_enabled() {
        // The connection closes (GOAWAY) as its last handle goes.
        return Ok(Dialed::NoExtendedConnect);
    }
    Ok(Dialed::H2(Conn { send, state }))
}

/// Run one HTTP/2 connection until it ends, or until it has been idle for
/// [`IDLE_TIMEOUT`] (then it leaves the pool and closes with GOAWAY once
/// its last handle is gone).
async fn drive(connection: h2::client::Connection<MaybeTlsStream, Bytes>, state: Arc<ConnState>) {
    let _gone = Gone(state.clone());
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "HTTP/2 connection ended");
            }
            return;
        }
        () = idle(&state) => {}
    }
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "HTTP/2 connection ended");
    }
}

/// Resolves when the connection has had no WebSocket for [`IDLE_TIMEOUT`]
/// and has left the pool.
async fn idle(state: &Arc<ConnState>) {
    loop {
        state.idle.notified().await;
        // Each WebSocket that ends in the meantime starts the time again.
        loop {
            tokio::select! {
                () = tokio::time::sleep(IDLE_TIMEOUT) => break,
                () = state.idle.notified() => {}
            }
        }
        if POOL.retire_if_idle(state) {
            return;
        }
    }
}

/// Why a stream could not be opened on a connection.
enum Failed {
    /// That connection cannot take it (it is closing, or the server refused
    /// the stream unprocessed, RFC 9113 §8.7): another one may.
    Retry(Error),
    /// The WebSocket cannot be opened.
    Final(Error),
}

/// Open the WebSocket of `request` as an extended `CONNECT` stream (RFC
/// 8441 §4, §5) on the connection of `send`, in `place`.
/// What the `attempts`-th try of a stream decides: the WebSocket or a
/// final error, or `None` to try another connection.
fn settle(
    tried: std::result::Result<(WebSocket<MaybeTlsStream>, Response<()>), Failed>,
    attempts: u32,
) -> Option<Result<Opened>> {
    match tried {
        Err(Failed::Retry(e)) if attempts >= MAX_ATTEMPTS => Some(Err(e)),
        Err(Failed::Retry(_)) => None,
        Err(Failed::Final(e)) => Some(Err(e)),
        Ok(opened) => Some(Ok(Opened::WebSocket(Box::new(opened)))),
    }
}

async fn open_stream(
    send: SendRequest<Bytes>,
    place: Place,
    request: &Request<()>,
    config: &Config,
) -> Result<(WebSocket<MaybeTlsStream>, Response<()>), Failed> {
    let mut request = request.clone();
    let deflate = offer_deflate(&mut request, config);
    let (mut connect, handshake) = ClientHandshake::extended_connect(request).map_err(|e| Failed::Final(e.into()))?;
    // RFC 8441 §4: `:protocol` names what the stream carries.
    connect.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
    let failed = |e: h2::Error| place.failed(e);
    let mut send = send.ready().await.map_err(failed)?;
    let (response, outgoing) = send.send_request(connect, false).map_err(failed)?;
    drop(send);
    let response = response.await.map_err(failed)?;
    let (parts, incoming) = response.into_parts();
    let head = Response::from_parts(parts, ());
    let negotiated = match handshake.check_response(&head) {
        Ok(n) => n,
        Err(HandshakeError::UnexpectedStatus(_)) => {
            let body = read_refusal(incoming).await;
            return Err(Failed::Final(refused(head, body)));
        }
        // Dropping the stream's handles resets it (RST_STREAM CANCEL).
        Err(e) => return Err(Failed::Final(e.into())),
    };
    let stream = H2Stream::new(outgoing, incoming).holding(Arc::new(place));
    let ws = negotiated_websocket(MaybeTls::H2(Box::new(stream)), config, deflate, negotiated, &head, &[])
        .map_err(Failed::Final)?;
    Ok((ws, head))
}

/// The start of a refusal's body: at most [`MAX_REFUSAL_BODY`] bytes, for
/// at most half a second.
async fn read_refusal(mut body: h2::RecvStream) -> Bytes {
    let mut buf = BytesMut::new();
    let deadline = Instant::now() + Duration::from_millis(500);
    while buf.len() < MAX_REFUSAL_BODY {
        match tokio::time::timeout_at(deadline, body.data()).await {
            Ok(Some(Ok(chunk))) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                buf.extend_from_slice(&chunk);
            }
            _ => break,
        }
    }
    buf.truncate(MAX_REFUSAL_BODY);
    buf.freeze()
}

/// An HTTP/2 failure as the I/O error it is to a WebSocket: a reset stream
/// or a connection going away is `ConnectionReset`.
fn h2_error(e: h2::Error) -> Error {
    if e.is_io() {
        return Error::Io(e.into_io().unwrap_or_else(|| io::Error::other("HTTP/2 I/O error")));
    }
    let kind = if e.is_reset() || e.is_go_away() { io::ErrorKind::ConnectionReset } else { io::ErrorKind::Other };
    Error::Io(io::Error::new(kind, e))
}

// ------------------------------------------------------------------- pool

/// The connections of the process, by origin.
static POOL: Pool = Pool { origins: Mutex::new(Vec::new()) };

struct Pool {
    origins: Mutex<Vec<Origin>>,
}

/// The connections to one origin and what is known of it.
struct Origin {
    key: Key,
    /// Connections with extended `CONNECT`, oldest first.
    conns: Vec<Conn>,
    /// Known to take no WebSockets over HTTP/2, until then.
    http1: Option<(Instant, Http1)>,
    /// Held while a connection to the origin is being dialled.
    dialing: Arc<tokio::sync::Mutex<()>>,
}

/// Why an origin's WebSockets go over HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Http1 {
    /// Its server chose `http/1.1` by ALPN.
    Negotiated,
    /// Its server speaks HTTP/2 without extended `CONNECT`.
    NoExtendedConnect,
}

/// An origin: the host and port of `wss://`, the proxy that leads there,
/// and the TLS configuration (by identity: another trust is another
/// origin).
struct Key {
    host: String,
    port: u16,
    proxy: Option<Proxy>,
    tls: Arc<rustls::ClientConfig>,
}

impl Key {
    fn new(route: &Route<'_>) -> Result<Self> {
        Ok(Key {
            host: route.target.host.to_ascii_lowercase(),
            port: route.target.port,
            proxy: route.proxy.cloned(),
            tls: crate::tls::client_config_for(route.config)?,
        })
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.proxy == other.proxy
            && Arc::ptr_eq(&self.tls, &other.tls)
    }
}

/// An HTTP/2 connection in the pool.
struct Conn {
    send: SendRequest<Bytes>,
    state: Arc<ConnState>,
}

/// What the pool and the connection's task share.
#[derive(Default)]
struct ConnState {
    /// WebSockets on the connection, and those being opened on it.
    live: AtomicUsize,
    /// The connection ended or left the pool: no new stream on it.
    closed: AtomicBool,
    /// Told when `live` falls to 0.
    idle: tokio::sync::Notify,
}

/// A WebSocket's place on a connection, given back when the WebSocket (its
/// stream's halves) is dropped.
struct Place(Arc<ConnState>);

impl Place {
    /// `e` ended the opening of a stream in this place.
    fn failed(&self, e: h2::Error) -> Failed {
        let closing = e.is_go_away() || e.is_io();
        if closing {
            self.0.closed.store(true, Ordering::Release);
        }
        let refused = e.reason() == Some(h2::Reason::REFUSED_STREAM);
        let error = h2_error(e);
        if closing || refused {
            Failed::Retry(error)
        } else {
            Failed::Final(error)
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// Held by a connection's task: when the task ends (or its runtime shuts
/// down), the connection leaves the pool.
struct Gone(Arc<ConnState>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        POOL.remove(&self.0);
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Vec<Origin>> {
        self.origins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place on a connection to `key` with room under the server's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §5.1.2).
    fn take(&self, key: &Key) -> Option<(SendRequest<Bytes>, Place)> {
        let origins = self.lock();
        let origin = origins.iter().find(|o| o.key == *key)?;
        let conn = origin.conns.iter().find(|c| has_room(c))?;
        conn.state.live.fetch_add(1, Ordering::AcqRel);
        Some((conn.send.clone(), Place(conn.state.clone())))
    }

    /// Whether a connection to `key` has room for another WebSocket.
    fn has_room(&self, key: &Key) -> bool {
        self.lock().iter().find(|o| o.key == *key).is_some_and(|o| o.conns.iter().any(has_room))
    }

    /// Add `conn` to the pool of `key`, with a place taken on it.
    fn insert(&self, key: &Key, conn: Conn) -> (SendRequest<Bytes>, Place) {
        conn.state.live.fetch_add(1, Ordering::AcqRel);
        let taken = (conn.send.clone(), Place(conn.state.clone()));
        let mut origins = self.lock();
        origin(&mut origins, key).conns.push(conn);
        taken
    }

    /// Why the WebSockets of `key` go over HTTP/1.1, if that is known.
    fn remembered(&self, key: &Key) -> Option<Http1> {
        let origins = self.lock();
        let (until, why) = origins.iter().find(|o| o.key == *key)?.http1?;
        (Instant::now() < until).then_some(why)
    }

    fn remember(&self, key: &Key, why: Http1) {
        let mut origins = self.lock();
        origin(&mut origins, key).http1 = Some((Instant::now() + REMEMBER_HTTP1, why));
    }

    /// The lock held while dialling `key`.
    fn dial_lock(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        let mut origins = self.lock();
        origin(&mut origins, key).dialing.clone()
    }

    /// Take the connection of `state` out of the pool if no WebSocket is
    /// on it.
    fn retire_if_idle(&self, state: &Arc<ConnState>) -> bool {
        let mut origins = self.lock();
        if state.live.load(Ordering::Acquire) > 0 {
            return false;
        }
        state.closed.store(true, Ordering::Release);
        remove(&mut origins, state);
        true
    }

    fn remove(&self, state: &Arc<ConnState>) {
        remove(&mut self.lock(), state);
    }
}

/// Whether `conn` may take another stream.
fn has_room(conn: &Conn) -> bool {
    !conn.state.closed.load(Ordering::Acquire)
        && conn.state.live.load(Ordering::Acquire) < conn.send.current_max_send_streams()
}

/// The entry of `key`, made if there is none.
fn origin<'a>(origins: &'a mut Vec<Origin>, key: &Key) -> &'a mut Origin {
    let i = match origins.iter().position(|o| o.key == *key) {
        Some(i) => i,
        None => {
            prune(origins);
            let key = Key { host: key.host.clone(), port: key.port, proxy: key.proxy.clone(), tls: key.tls.clone() };
            origins.push(Origin { key, conns: Vec::new(), http1: None, dialing: Arc::default() });
            origins.len() - 1
        }
    };
    &mut origins[i]
}

/// Drop the connection of `state` from the pool.
fn remove(origins: &mut Vec<Origin>, state: &Arc<ConnState>) {
    for o in origins.iter_mut() {
        o.conns.retain(|c| !Arc::ptr_eq(&c.state, state));
    }
    prune(origins);
}

/// Drop the entries of origins with nothing left to know: no connection,
/// nothing remembered, no dial.
fn prune(origins: &mut Vec<Origin>) {
    let now = Instant::now();
    origins.retain(|o| {
        !o.conns.is_empty() || o.http1.is_some_and(|(until, _)| now < until) || Arc::strong_count(&o.dialing) > 1
    });
}
