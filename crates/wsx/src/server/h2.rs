//! HTTP/2 on the server's side (RFC 9113) with WebSockets on its streams
//! (RFC 8441): a TLS connection that chose `h2` by ALPN carries many
//! requests at once, and each is served as the request of an HTTP/1.1
//! connection is: a [`Request`] for the same handler, the same policies,
//! the same slots, keepalive and shutdown.
//!
//! What HTTP/2 adds is bounded here: at most [`MAX_STREAMS`] streams at
//! once, a receive window per stream that a WebSocket which stops reading
//! holds alone (the connection's window is every stream's together, so
//! that one stalled stream never starves the others), a send buffer per
//! stream no larger than that window, heads within the handshake size
//! limit, at most [`MAX_LIVE`] requests served at once (handlers that
//! outlive their reset streams included), a GOAWAY that must be taken
//! within [`GOAWAY_GRACE`], and the HTTP/2 library's own bounds against
//! rapid resets and CONTINUATION, SETTINGS and PING floods. Shutdown
//! closes each WebSocket with 1001, then, once this connection's streams
//! are done, sends GOAWAY.

use super::{stopped, Handler, Io, Request, RequestHead, RequestInner, Server, ServerStream};
use crate::http2::H2Stream;
use crate::maybe_tls::{MaybeTls, ServerTls};
use crate::Result;
use bytes::Bytes;
use h2::server::SendResponse;
use http::{Method, Response};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use wsx_proto::handshake::HandshakeError;

/// Most streams a client may have open at once on one connection
/// (`SETTINGS_MAX_CONCURRENT_STREAMS`, RFC 9113 §6.5.2).
pub(super) const MAX_STREAMS: u32 = 128;

/// Each stream's receive window: what a client may send ahead of a
/// WebSocket (or handler) that does not read. A message larger than it
/// waits a WINDOW_UPDATE round trip per window (benches/run-http2 (d)):
/// 256 KiB is most of what 1 MiB would gain, for a quarter of what a
/// stalled stream may hold.
const STREAM_WINDOW: u32 = 256 << 10;

/// Most requests of one connection being served at once: its open
/// streams, and handlers that go on after the client reset their stream
/// (a reset ends the stream for HTTP/2 at once, not the handler's work).
/// Past it, new streams are refused (REFUSED_STREAM, before any handler
/// runs): a client that opens and resets streams as fast as they are
/// answered cannot pile up tasks and slots (CVE-2023-44487 paced to get
/// past the `h2` crate's count of streams reset before they were
/// accepted).
const MAX_LIVE: usize = 2 * MAX_STREAMS as usize;

/// How long a connection without streams stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a connection going away (idle, or at shutdown) may take to
/// end once it has no streams left: a client that stopped reading (after
/// a PING or SETTINGS flood, say) never takes the GOAWAY, and would hold
/// the connection and its socket buffers for ever.
const GOAWAY_GRACE: Duration = Duration::from_secs(10);

/// A request that came on an HTTP/2 stream: where its response goes, its
/// body, and how its stream becomes the server's stream type.
pub(super) struct H2Io<S> {
    respond: SendResponse<Bytes>,
    body: h2::RecvStream,
    wrap: Wrap<S>,
}

/// How a stream becomes the server's stream type.
type Wrap<S> = fn(H2Stream) -> S;

impl<S> H2Io<S> {
    /// Answer with a whole response (its body unless `head_only`), as the
    /// client's window allows, and end the stream.
    pub(super) async fn respond(self, response: &Response<Bytes>, head_only: bool) -> Result<()> {
        let body = if head_only { Bytes::new() } else { response.body().clone() };
        let (mut stream, _) = self.send_head(response, body.is_empty())?;
        if !body.is_empty() {
            stream.halves().1.send_last(body).await?;
        }
        Ok(())
    }

    /// Resolves when the client resets the stream (or the connection
    /// fails).
    pub(super) async fn reset(&mut self) {
        let _ = std::future::poll_fn(|cx| self.respond.poll_reset(cx)).await;
    }

    /// Read the request's body (its DATA frames, returning their flow
    /// control credit as they are taken), at most `max` bytes.
    pub(super) async fn read_body(&mut self, max: usize) -> std::result::Result<Bytes, super::BodyError> {
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = self.body.data().await {
            let chunk = chunk.map_err(|e| super::BodyError::Io(std::io::Error::other(e)))?;
            let _ = self.body.flow_control().release_capacity(chunk.len());
            if out.len().saturating_add(chunk.len()) > max {
                return Err(super::BodyError::TooLarge(max));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Send the 200 of an accepted WebSocket (RFC 8441 §5); its stream.
    pub(super) fn accept(self, response: &Response<()>) -> Result<S> {
        let (stream, wrap) = self.send_head(response, false)?;
        Ok(wrap(stream))
    }

    /// Send a response's head, leaving the stream open for its body.
    pub(super) fn respond_stream(self, response: &Response<()>) -> Result<H2Stream> {
        Ok(self.send_head(response, false)?.0)
    }

    /// Send `response`'s status and headers (`end`: and end the stream).
    fn send_head<B>(self, response: &Response<B>, end: bool) -> Result<(H2Stream, Wrap<S>)> {
        let H2Io { mut respond, body, wrap } = self;
        let send = respond.send_response(h2_head(response), end).map_err(h2_io)?;
        Ok((H2Stream::new(send, body), wrap))
    }
}

/// `response`'s status and headers without the fields HTTP/2 forbids
/// (RFC 9113 §8.2.2: `Connection` and the connection-specific fields),
/// which the HTTP/1.1 answers of the handshake carry.
fn h2_head<B>(response: &Response<B>) -> Response<()> {
    let mut head = Response::new(());
    *head.status_mut() = response.status();
    *head.headers_mut() = response.headers().clone();
    super::head::remove_connection_fields(head.headers_mut());
    head
}

/// An HTTP/2 error as the server's error type.
fn h2_io(e: h2::Error) -> crate::Error {
    crate::Error::Io(std::io::Error::other(e))
}

/// The streams of one connection that are still being served: shutdown
/// waits for them before its GOAWAY, and a connection without any closes
/// after [`IDLE_TIMEOUT`].
#[derive(Default)]
struct Live {
    count: AtomicUsize,
    changed: Notify,
}

/// One stream being served; counted in [`Live`] until dropped.
struct LiveGuard(Arc<Live>);

impl Live {
    fn enter(self: &Arc<Self>) -> LiveGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        LiveGuard(self.clone())
    }
    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

/// Serve an HTTP/2 connection (TLS chose `h2`) until it ends: each stream
/// a task of its own with `handler`.
pub(super) async fn serve<H: Handler<ServerStream>>(
    server: Server,
    tls: ServerTls,
    peer: SocketAddr,
    handler: Arc<H>,
    deadline: tokio::time::Instant,
) {
    let inner = &server.inner;
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(MAX_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        // h2 returns connection window as a stream's data is read: with
        // room for every stream's window, a stream that stops reading
        // keeps its own window closed and no one else's.
        .initial_connection_window_size(STREAM_WINDOW * MAX_STREAMS)
        .max_send_buffer_size(STREAM_WINDOW as usize)
        .max_header_list_size(u32::try_from(inner.config.max_handshake_size()).unwrap_or(u32::MAX));
    let mut conn = match tokio::time::timeout_at(deadline, builder.handshake::<_, Bytes>(tls)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    let live = Arc::new(Live::default());
    let mut stopping = inner.stopping.subscribe();
    let mut going_away = false;
    let mut idle_since = Some(tokio::time::Instant::now());
    let mut give_up = None;
    loop {
        let idle_deadline = idle_since.map(|t| t + IDLE_TIMEOUT);
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    stream(&server, peer, &handler, &live, request, respond);
                    idle_since = None;
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTP/2 connection failed");
                    break;
                }
                None => break,
            },
            () = live.changed.notified() => {
                if live.count() == 0 {
                    idle_since.get_or_insert_with(tokio::time::Instant::now);
                }
            }
            () = stopped(&mut stopping), if !inner.is_stopping() => {}
            () = sleep_until(idle_deadline), if idle_deadline.is_some() && !going_away => {
                tracing::debug!(%peer, "HTTP/2 connection idle: closing");
                going_away = true;
                give_up = Some(tokio::time::Instant::now() + GOAWAY_GRACE);
                conn.graceful_shutdown();
            }
            () = sleep_until(give_up), if give_up.is_some() => {
                if live.count() > 0 {
                    // Streams still served: the connection ends after them.
                    give_up = Some(tokio::time::Instant::now() + GOAWAY_GRACE);
                } else {
                    tracing::debug!(%peer, "HTTP/2 connection did not take its GOAWAY: dropped");
                    break;
                }
            }
        }
        // Shutdown: the WebSockets got their 1001 from the server's group;
        // once this connection's streams have ended, GOAWAY.
        if inner.is_stopping() && !going_away && live.count() == 0 {
            going_away = true;
            give_up = Some(tokio::time::Instant::now() + GOAWAY_GRACE);
            conn.graceful_shutdown();
        }
    }
}

/// Resolves at `deadline`, or never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One stream's request: refused here if it is a `CONNECT` for anything
/// but a WebSocket, the connection has [`MAX_LIVE`] requests being served
/// or the server is full, else served in its own task.
fn stream<H: Handler<ServerStream>>(
    server: &Server,
    peer: SocketAddr,
    handler: &Arc<H>,
    live: &Arc<Live>,
    request: http::Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (parts, body) = request.into_parts();
    let head = http::Request::from_parts(parts, ());
    let head = RequestHead::new(head, Some(peer));
    if head.method() == Method::CONNECT && !head.is_upgrade() {
        // RFC 8441 §4 and RFC 9113 §8.5: a plain CONNECT asks for a tunnel
        // (this server is no proxy), another :protocol is not served. The
        // stream alone is refused; the connection goes on.
        let refusal = match head.connect_protocol() {
            None => HandshakeError::ConnectWithoutProtocol,
            Some(p) => HandshakeError::UnsupportedProtocol(p.to_owned()),
        };
        tracing::debug!(%peer, error = %refusal, "CONNECT refused");
        answer_now(&mut respond, &refusal.to_response());
        return;
    }
    if live.count() >= MAX_LIVE {
        tracing::debug!(%peer, "HTTP/2 stream refused: too many requests of the connection still served");
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    }
    let Some(slot) = server.take_slot() else {
        let busy = wsx_proto::handshake::Reject::new(503, "too many connections\n").header("retry-after", "1");
        answer_now(&mut respond, busy.response());
        return;
    };
    let id = slot.id;
    let io = Io::H2(H2Io { respond, body, wrap: |s| MaybeTls::H2(Box::new(s)) });
    let request = Request(Box::new(RequestInner { head, io, server: server.clone(), slot: id, body_read: false }));
    let task = super::HandlerTask { serving: handler.handle(request), _held: (slot, live.enter()) };
    let task = tokio::spawn(task);
    server.inner.group.set_abort(id, task.abort_handle());
}

/// A short response sent without waiting: queued whole (refusals are a
/// few bytes), and the stream ended.
fn answer_now(respond: &mut SendResponse<Bytes>, response: &Response<Bytes>) {
    let body = response.body().clone();
    if let Ok(mut send) = respond.send_response(h2_head(response), body.is_empty()) {
        if !body.is_empty() {
            let _ = send.send_data(body, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{HandlerTask, Slot};

    fn task_size<F>(_: &F) -> usize {
        std::mem::size_of::<HandlerTask<F, (Slot, LiveGuard)>>()
    }

    /// A stream's task is the handler's future, held once, beside its
    /// slot and live guard: what an idle WebSocket over HTTP/2 costs in
    /// tokio's task cell.
    #[test]
    fn a_stream_task_holds_the_handler_future_once() {
        let serving = async {
            let state = [7u8; 256];
            tokio::task::yield_now().await;
            std::hint::black_box(&state);
            Ok::<(), std::io::Error>(())
        };
        let beside = std::mem::size_of::<Slot>() + std::mem::size_of::<LiveGuard>();
        let size = task_size(&serving);
        assert!(size <= std::mem::size_of_val(&serving) + beside, "the stream task is {size} bytes");
    }
}
