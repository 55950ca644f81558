//! `WebSocket<S>`: a WebSocket connection over any `AsyncRead + AsyncWrite`,
//! as a `Stream` of messages and a `Sink`, and its split halves.
//!
//! Writes are coalesced: [`WebSocket::feed`] (and `Sink::start_send`) only
//! queue; the queue goes out in one vectored write when it is flushed, when
//! it passes the high-water mark, or when [`WebSocket::recv`] has parsed
//! everything it has and is about to wait for the socket. An echo loop
//! (`recv` then `feed`) thus answers a burst of pipelined messages with one
//! write. [`WebSocket::send`] queues and flushes.

use crate::group::Group;
use crate::handle::CloseHandle;
use crate::io::{poll_drain, poll_fill, poll_write_all};
use crate::keepalive::{OwnClock, Settings, Tick, IDLE_CLOSE_WAIT};
use crate::{Config, Error, Result};
use futures_core::Stream;
use futures_sink::Sink;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use wsx_proto::{
    Chunk, CloseCode, CloseFrame, CloseState, Incoming, Message, Mode, ProtocolError, Reader, Received, Role,
    Utf8Bytes, Writer,
};

/// Access to the sending side for the receive loop: direct for a whole
/// connection, through the shared lock for a split one.
trait Io {
    fn poll_fill(&mut self, reader: &mut Reader, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>>;
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    fn with_writer<T>(&mut self, f: impl FnOnce(&mut Writer) -> T) -> T;
    /// Whether the local side has sent its close frame (starts the close timer).
    fn close_sent(&mut self) -> bool;
    /// Release the write buffers if nothing is queued (idle footprint).
    fn shrink_write_idle(&mut self);
}

/// Where the end of a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Writing the last frames (close reply or failure close).
    Flushing,
    /// Half-closing the transport (FIN).
    Shutdown,
    /// Reading until the peer closes, so that nothing we wrote is lost to
    /// a reset.
    Draining,
    Done,
}

/// The receive loop and the end of the connection, shared by the whole
/// connection and the read half.
#[derive(Debug)]
struct RecvCore {
    reader: Reader,
    role: Role,
    /// Milliseconds (u32: held by every connection).
    close_timeout_ms: u32,
    phase: Phase,
    /// The close timer and the error to return once the connection is
    /// closed: created when the closing handshake starts, boxed because
    /// every open connection holds this field.
    closing: Option<Box<Closing>>,
    /// Keepalive ticks since something last arrived (zeroed per read: the
    /// data path reads no clock).
    silent: u16,
    /// Keepalive, group membership and close requests from other tasks:
    /// boxed, and only for connections that use them.
    extra: Option<Box<Extra>>,
}

/// What only some connections need. Small: a server holds one per
/// connection.
#[derive(Debug, Default)]
struct Extra {
    /// The group the connection is a member of (a server's), and its place:
    /// the group's close request, and its clock when `shared`.
    group: Option<Arc<Group>>,
    id: u32,
    /// The group's clock tick last seen.
    seen: u32,
    /// The task the handle, the group and the timer were last registered
    /// with (its waker's data pointer; 0: none): while the connection is
    /// polled by the same task, they are not registered again at every
    /// wait.
    registered: usize,
    /// Keeps alive with the group's settings and clock.
    shared: bool,
    /// Keepalive of its own and a close handle.
    own: Option<Box<Own>>,
}

/// A connection's own keepalive and close handle.
#[derive(Debug, Default)]
struct Own {
    keepalive: Option<(Settings, OwnClock)>,
    handle: Option<CloseHandle>,
}

#[derive(Debug, Default)]
struct Closing {
    timer: Option<Pin<Box<Sleep>>>,
    error: Option<Error>,
}

impl RecvCore {
    fn new(reader: Reader, role: Role, config: &Config) -> Self {
        Self {
            reader,
            role,
            close_timeout_ms: u32::try_from(config.close_timeout().as_millis()).unwrap_or(u32::MAX),
            phase: Phase::Open,
            closing: None,
            silent: 0,
            extra: Settings::new(config).map(|k| {
                let own = Own { keepalive: Some((k, OwnClock::default())), handle: None };
                Box::new(Extra { own: Some(Box::new(own)), ..Extra::default() })
            }),
        }
    }

    /// Make the connection a member of `group` (in place `id`): it closes
    /// when the group does, and ticks with its clock when its keepalive is
    /// the group's.
    fn join_group(&mut self, group: Arc<Group>, id: u32) {
        let extra = self.extra.get_or_insert_default();
        let own = extra.own.as_ref().and_then(|o| o.keepalive.as_ref().map(|(k, _)| *k));
        if own.is_some() && own == group.keepalive() {
            // The group's clock instead of a timer of its own.
            extra.shared = true;
            extra.seen = group.epoch();
            if let Some(o) = extra.own.as_mut() {
                o.keepalive = None;
            }
            if extra.own.as_ref().is_some_and(|o| o.handle.is_none()) {
                extra.own = None;
            }
            group.start_clock();
        }
        extra.group = Some(group);
        extra.id = id;
        extra.registered = 0;
    }

    /// The handle other tasks close this connection with (made at the
    /// first call).
    fn close_handle(&mut self) -> CloseHandle {
        let extra = self.extra.get_or_insert_default();
        let own = extra.own.get_or_insert_default();
        if own.handle.is_none() {
            // A new handle is registered at the next wait.
            extra.registered = 0;
        }
        own.handle.get_or_insert_default().clone()
    }

    /// Whether another task asked this connection to close (an atomic
    /// load, checked for every message).
    #[inline]
    fn close_requested(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| {
            e.group.as_ref().is_some_and(|g| g.is_closing())
                || e.own.as_ref().and_then(|o| o.handle.as_ref()).is_some_and(CloseHandle::is_requested)
        })
    }

    /// Close requests and keepalive, checked while the connection is open:
    /// whether a frame was queued (to be written before waiting).
    fn poll_extra<I: Io>(&mut self, io: &mut I, cx: &mut Context<'_>, waiting: bool) -> bool {
        let Some(extra) = self.extra.as_mut() else { return false };
        let handle = extra.own.as_ref().and_then(|o| o.handle.as_ref());
        if let Some(frame) = handle.filter(|h| h.is_requested()).and_then(CloseHandle::take) {
            self.close_as_asked(io, frame);
            return true;
        }
        if let Some(group) = extra.group.take_if(|g| g.is_closing()) {
            // Acted on once: the connection leaves its group's watch.
            extra.shared = false;
            if let Some(frame) = group.close_frame() {
                self.close_as_asked(io, frame);
                return true;
            }
        }
        if !waiting {
            return false;
        }
        // A waker's data pointer names its task (a tokio task's waker points
        // to the task); a waker with none (null) never counts as the same.
        let task = cx.waker().data() as usize;
        let same_task = task != 0 && extra.registered == task;
        if !same_task {
            if let Some(h) = extra.own.as_ref().and_then(|o| o.handle.as_ref()) {
                h.register(cx.waker());
            }
            if let Some(g) = &extra.group {
                g.register(extra.id, cx.waker());
            }
            extra.registered = task;
        }
        if self.closing.as_ref().is_some_and(|c| c.timer.is_some()) {
            // The closing handshake is under way: its own timer bounds it.
            return false;
        }
        let tick = match (&extra.group, extra.own.as_deref_mut()) {
            (Some(g), _) if extra.shared => {
                let ticks = g.ticks_since(&mut extra.seen);
                ticks.and_then(|t| g.keepalive().and_then(|k| k.after(&mut self.silent, t)))
            }
            (_, Some(Own { keepalive: Some((k, clock)), .. })) => {
                clock.poll(k.period(), cx, same_task).and_then(|t| k.after(&mut self.silent, t))
            }
            _ => None,
        };
        match tick {
            None => false,
            Some(tick) => self.keepalive_tick(io, tick),
        }
    }

    /// Another task asked for this close.
    #[cold]
    fn close_as_asked<I: Io>(&mut self, io: &mut I, frame: CloseFrame) {
        tracing::debug!(code = %frame.code, reason = %frame.reason, "closing as asked");
        let _ = io.with_writer(|w| w.close(Some(frame)));
        self.start_timer();
    }

    /// A ping after silence, or the close of an idle connection: whether a
    /// frame was queued.
    #[cold]
    fn keepalive_tick<I: Io>(&mut self, io: &mut I, tick: Tick) -> bool {
        match tick {
            Tick::Ping => io.with_writer(|w| w.send(Message::Ping(bytes::Bytes::new()))).is_ok(),
            Tick::Idle => {
                tracing::debug!("closing an idle connection");
                let frame = CloseFrame::new(CloseCode::GoingAway, "idle timeout");
                let _ = io.with_writer(|w| w.close(Some(frame)));
                self.closing.get_or_insert_default().error = Some(Error::IdleTimeout);
                // The peer is probably gone: its close frame is waited for
                // a second at most.
                self.start_timer_for(IDLE_CLOSE_WAIT.min(Duration::from_millis(self.close_timeout_ms.into())));
                true
            }
        }
    }

    fn start_timer(&mut self) {
        self.start_timer_for(Duration::from_millis(self.close_timeout_ms.into()));
    }

    /// Start the close timer (unless it runs) with `d`.
    fn start_timer_for(&mut self, d: Duration) {
        let closing = self.closing.get_or_insert_default();
        if closing.timer.is_none() {
            closing.timer = Some(Box::pin(tokio::time::sleep(d)));
        }
    }

    fn timer(&mut self) -> Option<&mut Pin<Box<Sleep>>> {
        self.closing.as_mut().and_then(|c| c.timer.as_mut())
    }

    fn stop_timer(&mut self) {
        if let Some(c) = self.closing.as_mut() {
            c.timer = None;
        }
    }

    fn enter_finish(&mut self) {
        self.phase = Phase::Flushing;
        self.start_timer();
    }

    fn poll_recv<I: Io>(&mut self, io: &mut I, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        // Whole mode hands out messages only.
        self.poll_incoming(io, cx, Mode::Whole).map(|o| o.map(|r| r.map(Incoming::into_message)))
    }

    /// The receive loop: whole messages, or data messages in chunks as they
    /// arrive, as `mode` says. Inline: without the hint it is a call of its
    /// own per message (42 instructions per echo under callgrind,
    /// benches/count-instructions (a) and (c)).
    #[inline]
    fn poll_incoming<I: Io>(&mut self, io: &mut I, cx: &mut Context<'_>, mode: Mode) -> Poll<Option<Result<Incoming>>> {
        loop {
            match self.phase {
                Phase::Open => {}
                Phase::Done => return Poll::Ready(self.closing.as_mut().and_then(|c| c.error.take()).map(Err)),
                _ => {
                    ready!(self.poll_finish(io, cx));
                    continue;
                }
            }
            if self.close_requested() {
                self.poll_extra(io, cx, false);
            }
            let Received { result, duty } = self.reader.receive(mode);
            if let Some(duty) = duty {
                // Only pings, close frames and failures touch the writer (a
                // lock for a split connection), never data.
                io.with_writer(|w| w.perform(duty));
            }
            match result {
                Ok(Some(incoming)) => {
                    if matches!(incoming, Incoming::Message(Message::Close(_))) {
                        self.enter_finish();
                    }
                    return Poll::Ready(Some(Ok(incoming)));
                }
                Ok(None) => {}
                Err(ProtocolError::AbnormalClosure) => {
                    // The transport ended without a closing handshake:
                    // nothing is left to send (1006 is never sent).
                    self.phase = Phase::Done;
                    self.stop_timer();
                    return Poll::Ready(Some(Err(ProtocolError::AbnormalClosure.into())));
                }
                Err(e) => {
                    tracing::debug!(error = %e, code = %e.close_code(), "failing the connection");
                    self.closing.get_or_insert_default().error = Some(e.into());
                    self.enter_finish();
                    continue;
                }
            }
            // Everything buffered is parsed: write what is queued (coalesced
            // replies) before waiting for more input.
            if let Poll::Ready(Err(e)) = io.poll_write_all(cx) {
                self.phase = Phase::Done;
                return Poll::Ready(Some(Err(e.into())));
            }
            match io.poll_fill(&mut self.reader, cx) {
                Poll::Ready(Ok(0)) => {
                    // End of stream: the next receive reports it, with the
                    // failure it is if the closing handshake is not complete.
                    self.reader.end_of_stream();
                    if self.reader.is_done() {
                        self.enter_finish();
                    }
                }
                Poll::Ready(Ok(_)) => self.silent = 0,
                Poll::Ready(Err(e)) => {
                    self.phase = Phase::Done;
                    self.stop_timer();
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending => {
                    if self.extra.is_some() && self.poll_extra(io, cx, true) {
                        // A ping or close frame was queued: write it.
                        continue;
                    }
                    if io.close_sent() {
                        self.start_timer();
                    }
                    if let Some(t) = self.timer() {
                        if t.as_mut().poll(cx).is_ready() {
                            self.phase = Phase::Done;
                            self.stop_timer();
                            // Why the close started (an idle timeout), else the timeout.
                            let e = self.closing.as_mut().and_then(|c| c.error.take());
                            return Poll::Ready(Some(Err(e.unwrap_or(Error::CloseTimeout))));
                        }
                    }
                    self.reader.shrink_idle();
                    io.shrink_write_idle();
                    return Poll::Pending;
                }
            }
        }
    }

    /// Flush the last frames, close the transport (the server first,
    /// §7.1.1), and read until the peer closes, all within the close timeout.
    fn poll_finish<I: Io>(&mut self, io: &mut I, cx: &mut Context<'_>) -> Poll<()> {
        let closes_first = self.role == Role::Server || io.with_writer(|w| w.close_state()) == CloseState::Failed;
        loop {
            if let Some(t) = self.timer() {
                if t.as_mut().poll(cx).is_ready() {
                    self.phase = Phase::Done;
                }
            }
            match self.phase {
                Phase::Flushing => match ready!(io.poll_write_all(cx)) {
                    Ok(()) => self.phase = if closes_first { Phase::Shutdown } else { Phase::Draining },
                    Err(_) => self.phase = Phase::Done,
                },
                Phase::Shutdown => {
                    let _ = ready!(io.poll_shutdown(cx));
                    self.phase = if closes_first { Phase::Draining } else { Phase::Done };
                }
                Phase::Draining => {
                    let _ = ready!(io.poll_drain(cx));
                    self.phase = if closes_first { Phase::Done } else { Phase::Shutdown };
                }
                Phase::Open | Phase::Done => {
                    self.phase = Phase::Done;
                    self.stop_timer();
                    self.reader.stop();
                    io.with_writer(|w| w.shrink_idle());
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// A whole connection's I/O: one stream for both directions.
#[derive(Debug)]
struct Whole<S> {
    io: S,
    writer: Writer,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io for Whole<S> {
    fn poll_fill(&mut self, reader: &mut Reader, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        poll_fill(&mut self.io, reader, cx)
    }
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        poll_drain(&mut self.io, cx)
    }
    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        poll_write_all(&mut self.io, &mut self.writer, cx)
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn with_writer<T>(&mut self, f: impl FnOnce(&mut Writer) -> T) -> T {
        f(&mut self.writer)
    }
    fn close_sent(&mut self) -> bool {
        self.writer.close_state() == CloseState::CloseSent
    }
    fn shrink_write_idle(&mut self) {
        if !self.writer.wants_write() {
            self.writer.shrink_idle()
        }
    }
}

/// A WebSocket connection over a stream `S` (TCP, TLS, a hyper upgrade,
/// an in-memory duplex...), after the opening handshake.
///
/// It is a [`Stream`] of [`Message`]s (ending with `None` once the closing
/// handshake is over) and a [`Sink`] of them, with inherent async methods
/// for the common cases.
///
/// ```no_run
/// # async fn run() -> wsx::Result<()> {
/// let (mut ws, _response) = wsx::connect("ws://127.0.0.1:9001/").await?;
/// ws.send(wsx::Message::text("hello")).await?;
/// while let Some(msg) = ws.recv().await {
///     println!("{:?}", msg?);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebSocket<S> {
    core: RecvCore,
    io: Whole<S>,
    /// Subprotocol and extensions header in one allocation of their size
    /// (`protocol\nextensions`, an empty side for none), not a box of two
    /// strings: a connection that negotiated something (a browser always
    /// offers permessage-deflate) holds one small allocation, one that
    /// negotiated nothing holds none.
    negotiated: Option<Box<str>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wrap a stream on which the opening handshake is already done (for
    /// example a hyper upgrade). `leftover` holds bytes read past the
    /// handshake, which belong to the WebSocket stream.
    pub fn from_raw(io: S, role: Role, config: &Config, leftover: &[u8]) -> Self {
        Self::from_negotiated(io, role, config, leftover, None)
    }

    /// Like [`WebSocket::from_raw`], with permessage-deflate as negotiated in
    /// the handshake (see [`wsx_proto::deflate::server_negotiate`] and
    /// [`wsx_proto::deflate::client_accept_response`]).
    pub fn from_negotiated(
        io: S,
        role: Role,
        config: &Config,
        leftover: &[u8],
        deflate: Option<&wsx_proto::deflate::DeflateParams>,
    ) -> Self {
        let mut reader = Reader::with_deflate(role, config.protocol(), deflate);
        let writer = Writer::with_deflate(role, config.protocol(), deflate);
        reader.feed(leftover);
        Self { core: RecvCore::new(reader, role, config), io: Whole { io, writer }, negotiated: None }
    }

    /// Record what the handshake negotiated (subprotocol, extensions header).
    ///
    /// ```
    /// let (io, _peer) = tokio::io::duplex(64);
    /// let config = wsx::Config::default();
    /// let ws = wsx::WebSocket::from_raw(io, wsx::Role::Server, &config, &[])
    ///     .with_negotiated(None, Some("permessage-deflate".into()));
    /// assert_eq!((ws.protocol(), ws.extensions()), (None, Some("permessage-deflate")));
    /// let ws = ws.with_negotiated(Some("chat".into()), None);
    /// assert_eq!((ws.protocol(), ws.extensions()), (Some("chat"), None));
    /// ```
    pub fn with_negotiated(mut self, protocol: Option<String>, extensions: Option<String>) -> Self {
        // A subprotocol is a token (RFC 6455 §4.1, RFC 7230 §3.2.6) and a
        // header value has no line break: neither holds the separator.
        let (p, e) = (protocol.unwrap_or_default(), extensions.unwrap_or_default());
        debug_assert!(!p.contains('\n') && !e.contains('\n'), "{p:?} {e:?}");
        self.negotiated = (!p.is_empty() || !e.is_empty()).then(|| format!("{p}\n{e}").into_boxed_str());
        self
    }

    /// The subprotocol negotiated in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.negotiated_parts().0
    }

    /// The extensions negotiated in the handshake, as the
    /// `Sec-WebSocket-Extensions` value (e.g. `permessage-deflate`).
    pub fn extensions(&self) -> Option<&str> {
        self.negotiated_parts().1
    }

    fn negotiated_parts(&self) -> (Option<&str>, Option<&str>) {
        let Some((p, e)) = self.negotiated.as_deref().and_then(|n| n.split_once('\n')) else { return (None, None) };
        ((!p.is_empty()).then_some(p), (!e.is_empty()).then_some(e))
    }

    /// Whether messages are compressed (permessage-deflate negotiated).
    pub fn compression_enabled(&self) -> bool {
        self.io.writer.compression_enabled()
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.core.role
    }

    /// Where the closing handshake stands.
    pub fn close_state(&self) -> CloseState {
        self.io.writer.close_state()
    }

    /// Bytes queued and not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.io.writer.buffered_amount()
    }

    /// Heap bytes held by this connection's buffers.
    pub fn buffer_capacity(&self) -> usize {
        self.core.reader.buffer_capacity() + self.io.writer.buffer_capacity()
    }

    /// Give back the read and write buffers when nothing waits in them, as
    /// [`WebSocket::recv`] does before it waits. For a task that waits for
    /// something else between two reads (a database, a broker): without
    /// it, the buffers of the last read stay held through that wait, by
    /// every connection that waits.
    ///
    /// ```no_run
    /// # async fn run(mut ws: wsx::WebSocket<tokio::net::TcpStream>) {
    /// while let Some(Ok(msg)) = ws.recv().await {
    ///     ws.release_buffers();
    ///     // ... a slow lookup for `msg` ...
    /// }
    /// # }
    /// ```
    pub fn release_buffers(&mut self) {
        self.core.reader.shrink_idle();
        self.io.shrink_write_idle();
    }

    /// A handle that other tasks can close this connection with (see
    /// [`CloseHandle`]).
    pub fn close_handle(&mut self) -> CloseHandle {
        self.core.close_handle()
    }

    /// Make the connection a member of `group`, in place `id`.
    pub(crate) fn join_group(&mut self, group: Arc<Group>, id: u32) {
        self.core.join_group(group, id)
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io.io
    }

    /// The underlying stream, mutably. Reading or writing it directly
    /// corrupts the WebSocket stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io.io
    }

    /// Poll for the next message; see [`WebSocket::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        self.core.poll_recv(&mut self.io, cx)
    }

    /// The next message, `None` once the connection is closed. Pings and
    /// pongs are returned too (pings are answered automatically unless
    /// configured otherwise); the peer's close frame is returned as
    /// `Message::Close`, after which the closing handshake is finished and
    /// `None` follows. A protocol violation closes the connection with the
    /// matching close code and is returned as an error, then `None`.
    /// Queued outgoing messages are written before it waits for input.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll for the next chunk; see [`WebSocket::recv_chunk`].
    pub fn poll_recv_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Incoming>>> {
        self.core.poll_incoming(&mut self.io, cx, Mode::Streaming)
    }

    /// Streaming receive: like [`WebSocket::recv`], but a text or binary
    /// message comes out in pieces as its bytes arrive
    /// ([`Incoming::Chunk`], with `first`/`last` flags), under the same
    /// limits and UTF-8 checks; pings, pongs and close frames come whole
    /// ([`Incoming::Message`]). A proxy or an echo can forward a large
    /// message before its last byte is in, e.g. with
    /// [`WebSocket::feed_fragment`]:
    ///
    /// ```no_run
    /// # async fn run(mut ws: wsx::WebSocket<tokio::net::TcpStream>) -> wsx::Result<()> {
    /// use wsx::proto::Incoming;
    /// while let Some(incoming) = ws.recv_chunk().await {
    ///     if let Incoming::Chunk(c) = incoming? {
    ///         ws.feed_fragment(c.text, c.data, c.last).await?; // echo as it arrives
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// Read a message to its last chunk before calling `recv` again.
    pub async fn recv_chunk(&mut self) -> Option<Result<Incoming>> {
        poll_fn(|cx| self.poll_recv_chunk(cx)).await
    }

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.io.writer.write_backpressure() {
            ready!(self.io.poll_write_all(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Room to queue the echo of what is being received: as
    /// [`WebSocket::feed`]'s, except that while a message is being
    /// received and what it produced is covered by what the peer sent plus
    /// the high-water mark, it writes what it can and does not wait. A peer
    /// that sends a large message before it reads the echo keeps being
    /// read (the echo is bounded by the message size limit), while a
    /// decompression bomb, whose output the peer did not send, waits at
    /// the mark.
    pub(crate) fn poll_echo_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.io.writer.write_backpressure() {
            return Poll::Ready(Ok(()));
        }
        let mark = self.io.writer.high_water_mark();
        let progress = self.core.reader.message_progress();
        if progress.is_some_and(|(sent, produced)| produced <= sent.saturating_add(mark)) {
            if let Poll::Ready(Err(e)) = self.io.poll_write_all(cx) {
                return Poll::Ready(Err(e.into()));
            }
            return Poll::Ready(Ok(()));
        }
        self.poll_ready_inner(cx)
    }

    /// Queue a chunk as [`WebSocket::feed_chunk`] does, without waiting.
    pub(crate) fn queue_chunk(&mut self, chunk: Chunk) -> Result<()> {
        if chunk.first && chunk.last {
            self.queue(chunk.into_message())
        } else {
            self.io.writer.send_fragment(chunk.text, chunk.data, chunk.last).map_err(Into::into)
        }
    }

    pub(crate) fn queue(&mut self, msg: Message) -> Result<()> {
        let closing = matches!(msg, Message::Close(_));
        self.io.writer.send(msg)?;
        if closing {
            self.core.start_timer();
        }
        Ok(())
    }

    /// Queue a message without flushing it (it goes out with the next
    /// flush, the next `send`, or when `recv` waits for input). Waits only
    /// when the queue is over its high-water mark.
    pub fn feed(&mut self, msg: impl Into<Message>) -> Feed<'_, S> {
        Feed { ws: self, item: Some(Queued::Message(msg.into())) }
    }

    /// Write everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.io.poll_write_all(cx)).await.map_err(Into::into)
    }

    /// Send a message and flush.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queue a message prepared for many connections (a broadcast) without
    /// flushing it: its frame, encoded once, is queued by reference, and
    /// so is its compressed frame when this connection compresses without
    /// context takeover (see [`crate::PreparedMessage`]). A server's only:
    /// a client gets [`crate::SendError::PreparedByClient`] (its frames
    /// are masked) and sends [`crate::PreparedMessage::to_message`]
    /// instead.
    ///
    /// ```no_run
    /// # async fn run(clients: &mut [wsx::WebSocket<tokio::net::TcpStream>]) -> wsx::Result<()> {
    /// let news = wsx::PreparedMessage::text("{\"headline\":\"...\"}");
    /// for ws in clients.iter_mut() {
    ///     ws.feed_prepared(news.clone()).await?;
    /// }
    /// for ws in clients.iter_mut() {
    ///     ws.flush().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn feed_prepared(&mut self, msg: wsx_proto::PreparedMessage) -> Feed<'_, S> {
        Feed { ws: self, item: Some(Queued::Prepared(msg)) }
    }

    /// Queue a prepared message as [`WebSocket::feed_prepared`] does,
    /// without waiting; a client queues its message instead (masked).
    pub(crate) fn queue_prepared(&mut self, msg: &wsx_proto::PreparedMessage) -> Result<()> {
        match self.io.writer.send_prepared(msg) {
            Err(wsx_proto::SendError::PreparedByClient) => self.queue(msg.to_message()),
            r => r.map_err(Into::into),
        }
    }

    /// Queue a text or binary message uncompressed even when
    /// permessage-deflate is on (for data that does not compress).
    pub fn feed_uncompressed(&mut self, msg: impl Into<Message>) -> Feed<'_, S> {
        Feed { ws: self, item: Some(Queued::Uncompressed(msg.into())) }
    }

    /// Send a ping (at most 125 bytes).
    pub async fn ping(&mut self, payload: impl Into<bytes::Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into())).await
    }

    /// Queue a chunk as [`wsx_proto::Gather`] hands them out, without
    /// flushing: a whole message (`first && last`) as a message, any other
    /// chunk as a fragment ([`WebSocket::feed_fragment`]). With `Gather`,
    /// the streaming echo:
    ///
    /// ```no_run
    /// # async fn run(mut ws: wsx::WebSocket<tokio::net::TcpStream>) -> wsx::Result<()> {
    /// use wsx::proto::{Gather, Incoming};
    /// let mut gather = Gather::default();
    /// while let Some(incoming) = ws.recv_chunk().await {
    ///     if let Incoming::Chunk(c) = incoming? {
    ///         if let Some(out) = gather.push(c) {
    ///             ws.feed_chunk(out).await?;
    ///         }
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn feed_chunk(&mut self, chunk: Chunk) -> Feed<'_, S> {
        let item = if chunk.first && chunk.last {
            Queued::Message(chunk.into_message())
        } else {
            Queued::Fragment { payload: chunk.data, text: chunk.text, fin: chunk.last }
        };
        Feed { ws: self, item: Some(item) }
    }

    /// Send a fragment of a data message (see
    /// [`wsx_proto::Writer::send_fragment`]) without flushing.
    pub fn feed_fragment(&mut self, text: bool, payload: bytes::Bytes, fin: bool) -> Feed<'_, S> {
        Feed { ws: self, item: Some(Queued::Fragment { payload, text, fin }) }
    }

    /// Start the closing handshake with `code` and `reason` and flush. Keep
    /// calling [`WebSocket::recv`] to receive what the peer still sends and
    /// its close frame; it returns `None` when the handshake is over (or
    /// `Error::CloseTimeout` if the peer does not answer in time).
    pub async fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let frame = CloseFrame { code: code.into(), reason: Utf8Bytes::from(reason) };
        self.queue(Message::Close(Some(frame)))?;
        self.flush().await
    }
}

/// The future of [`WebSocket::feed`], [`WebSocket::feed_fragment`] and
/// [`WebSocket::feed_uncompressed`]: small (a reference and what to queue),
/// since it sits in the caller's task, and every byte of a connection's
/// task is held by every idle connection.
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Feed<'a, S> {
    ws: &'a mut WebSocket<S>,
    item: Option<Queued>,
}

#[derive(Debug)]
enum Queued {
    Message(Message),
    Prepared(wsx_proto::PreparedMessage),
    Uncompressed(Message),
    Fragment { payload: bytes::Bytes, text: bool, fin: bool },
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Feed<'_, S> {
    type Output = Result<()>;
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        ready!(this.ws.poll_ready_inner(cx))?;
        Poll::Ready(match this.item.take() {
            Some(Queued::Message(m)) => this.ws.queue(m),
            Some(Queued::Prepared(m)) => this.ws.io.writer.send_prepared(&m).map_err(Into::into),
            Some(Queued::Uncompressed(m)) => this.ws.io.writer.send_uncompressed(m).map_err(Into::into),
            Some(Queued::Fragment { payload, text, fin }) => {
                this.ws.io.writer.send_fragment(text, payload, fin).map_err(Into::into)
            }
            None => Ok(()),
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_ready_inner(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().queue(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().io.poll_write_all(cx).map_err(Into::into)
    }
    /// Sends a normal close frame (1000) unless one was sent, and flushes.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.io.writer.close_state() == CloseState::Open {
            this.queue(Message::Close(Some(CloseFrame::new(CloseCode::Normal, ""))))?;
        }
        this.io.poll_write_all(cx).map_err(Into::into)
    }
}

// ------------------------------------------------------------------- split

/// A stream that can be split into independent read and write halves
/// without a lock between them (e.g. `TcpStream::into_split`).
pub trait SplitIo: AsyncRead + AsyncWrite + Sized {
    /// The read half.
    type Read: AsyncRead + Unpin;
    /// The write half.
    type Write: AsyncWrite + Unpin;
    /// Split.
    fn split_io(self) -> (Self::Read, Self::Write);
}

impl SplitIo for tokio::net::TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn split_io(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

#[cfg(unix)]
impl SplitIo for tokio::net::UnixStream {
    type Read = tokio::net::unix::OwnedReadHalf;
    type Write = tokio::net::unix::OwnedWriteHalf;
    fn split_io(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl SplitIo for tokio::io::DuplexStream {
    type Read = tokio::io::ReadHalf<tokio::io::DuplexStream>;
    type Write = tokio::io::WriteHalf<tokio::io::DuplexStream>;
    fn split_io(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

#[derive(Debug)]
struct WriteSide<W> {
    io: W,
    writer: Writer,
    wakers: Arc<WriteWakers>,
}

/// Which half is waiting for the transport to accept writes.
#[derive(Debug, Clone, Copy)]
enum Half {
    Read = 0,
    Write = 1,
}

/// Both halves write to the transport (the read half flushes pongs, close
/// replies and the queue before it waits for input), possibly from two
/// tasks, but a transport remembers only the last waker that polled it for
/// writing: a write half waiting in `flush` would never be woken once the
/// read half had polled after it (and had written the rest of the queue).
/// So the transport is polled with this waker, which wakes every half that
/// is waiting.
#[derive(Debug, Default)]
struct WriteWakers {
    slots: Mutex<[Option<Waker>; 2]>,
}

impl Wake for WriteWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let slots = std::mem::take(&mut *self.slots.lock().unwrap_or_else(|p| p.into_inner()));
        for w in slots.into_iter().flatten() {
            w.wake();
        }
    }
}

impl<W> WriteSide<W> {
    /// Run a write-side poll of the transport for `half`, so that whichever
    /// half is waiting is woken when the transport is ready.
    fn poll_io<T>(
        &mut self,
        half: Half,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut W, &mut Writer, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        {
            let mut slots = self.wakers.slots.lock().unwrap_or_else(|p| p.into_inner());
            match &mut slots[half as usize] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        let waker = Waker::from(self.wakers.clone());
        let r = f(&mut self.io, &mut self.writer, &mut Context::from_waker(&waker));
        if r.is_ready() {
            self.wakers.slots.lock().unwrap_or_else(|p| p.into_inner())[half as usize] = None;
        }
        r
    }
}

/// What the halves share. The write side sits behind a lock that the write
/// half takes for each operation and the read half takes only to queue and
/// flush control frames (pong, close reply, failure close); two flags let
/// the read half's data path run without taking it at all.
struct SharedState<W> {
    side: Mutex<WriteSide<W>>,
    /// The read half queued a control frame that it has not flushed yet.
    control_pending: AtomicBool,
    /// The write half sent a close frame (the read half starts its timer).
    close_sent: AtomicBool,
}

type Shared<W> = Arc<SharedState<W>>;

fn lock<W>(s: &Shared<W>) -> MutexGuard<'_, WriteSide<W>> {
    // A panic while holding the lock leaves the queue consistent (every
    // Writer method keeps its invariants before it can panic), so a
    // poisoned lock is still usable.
    s.side.lock().unwrap_or_else(|p| p.into_inner())
}

struct ReadSide<'a, R, W> {
    io: &'a mut R,
    shared: &'a Shared<W>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Io for ReadSide<'_, R, W> {
    fn poll_fill(&mut self, reader: &mut Reader, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        poll_fill(self.io, reader, cx)
    }
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        poll_drain(self.io, cx)
    }
    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Data the write half queued is its own to flush; the read half
        // only flushes the control frames it queued itself.
        if !self.shared.control_pending.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let r = lock(self.shared).poll_io(Half::Read, cx, poll_write_all);
        if let Poll::Ready(Ok(())) = r {
            self.shared.control_pending.store(false, Ordering::Release);
        }
        r
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        lock(self.shared).poll_io(Half::Read, cx, |io, _, cx| Pin::new(io).poll_shutdown(cx))
    }
    fn with_writer<T>(&mut self, f: impl FnOnce(&mut Writer) -> T) -> T {
        // Only control events (ping, close, failure, end of stream) come
        // here; any of them may queue a frame for this half to flush.
        let r = f(&mut lock(self.shared).writer);
        self.shared.control_pending.store(true, Ordering::Release);
        r
    }
    fn close_sent(&mut self) -> bool {
        self.shared.close_sent.load(Ordering::Acquire)
    }
    fn shrink_write_idle(&mut self) {
        // The write half releases its own buffers after each flush.
    }
}

/// The receiving half of a split [`WebSocket`]: a `Stream` of messages.
///
/// Its data path takes no lock: it reads, parses and hands out messages on
/// its own. It locks the write side only to answer a ping or a close frame
/// (or to send the close frame of a failure) and to flush that answer.
pub struct WebSocketReader<R, W> {
    core: RecvCore,
    io: R,
    shared: Shared<W>,
}

/// The sending half of a split [`WebSocket`]: a `Sink` of messages.
///
/// Its lock is shared only with the read half's control-frame path, so
/// it is uncontended while data flows. It writes and flushes its own
/// messages (`feed` queues, `flush` or `send` write).
pub struct WebSocketWriter<W> {
    shared: Shared<W>,
}

impl<S: SplitIo + Unpin> WebSocket<S> {
    /// Split into a read half and a write half that can be used from
    /// different tasks.
    ///
    /// ```no_run
    /// # async fn run() -> wsx::Result<()> {
    /// use futures_util::{SinkExt, StreamExt};
    /// let (ws, _) = wsx::connect("ws://127.0.0.1:9001/").await?;
    /// let (mut rx, mut tx) = ws.split();
    /// tokio::spawn(async move { tx.send(wsx::Message::text("hi")).await });
    /// while let Some(msg) = rx.next().await { println!("{:?}", msg?); }
    /// # Ok(()) }
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn split(self) -> (WebSocketReader<S::Read, S::Write>, WebSocketWriter<S::Write>) {
        let (r, w) = self.io.io.split_io();
        let close_sent = self.io.writer.close_state() == CloseState::CloseSent;
        let shared = Arc::new(SharedState {
            side: Mutex::new(WriteSide { io: w, writer: self.io.writer, wakers: Arc::default() }),
            control_pending: AtomicBool::new(true),
            close_sent: AtomicBool::new(close_sent),
        });
        (WebSocketReader { core: self.core, io: r, shared: shared.clone() }, WebSocketWriter { shared })
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> WebSocketReader<R, W> {
    /// A handle that other tasks can close this connection with (see
    /// [`CloseHandle`]); the read half acts on it.
    pub fn close_handle(&mut self) -> CloseHandle {
        self.core.close_handle()
    }

    /// Poll for the next message; see [`WebSocket::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let mut io = ReadSide { io: &mut self.io, shared: &self.shared };
        self.core.poll_recv(&mut io, cx)
    }

    /// The next message; see [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Stream for WebSocketReader<R, W> {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<W: AsyncWrite + Unpin> WebSocketWriter<W> {
    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        lock(&self.shared).writer.buffered_amount()
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut g = lock(&self.shared);
        let r = g.poll_io(Half::Write, cx, poll_write_all);
        if let Poll::Ready(Ok(())) = r {
            // Nothing queued: release the write buffer (idle footprint).
            g.writer.shrink_idle();
        }
        r.map_err(Into::into)
    }

    /// Queue a message without flushing; waits only over the high-water mark.
    pub async fn feed(&mut self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        poll_fn(|cx| Sink::<Message>::poll_ready(Pin::new(&mut *self), cx)).await?;
        Sink::start_send(Pin::new(&mut *self), msg)
    }

    /// Write everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Send a message and flush.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Start the closing handshake and flush; the read half receives the
    /// peer's close frame and then ends.
    pub async fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let frame = CloseFrame { code: code.into(), reason: Utf8Bytes::from(reason) };
        self.send(Message::Close(Some(frame))).await
    }
}

impl<W: AsyncWrite + Unpin> Sink<Message> for WebSocketWriter<W> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut g = lock(&self.shared);
        if g.writer.write_backpressure() {
            ready!(g.poll_io(Half::Write, cx, poll_write_all))?;
        }
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        let closing = matches!(item, Message::Close(_));
        lock(&self.shared).writer.send(item)?;
        if closing {
            self.shared.close_sent.store(true, Ordering::Release);
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        {
            let mut g = lock(&this.shared);
            if g.writer.close_state() == CloseState::Open {
                g.writer.send(Message::Close(Some(CloseFrame::new(CloseCode::Normal, ""))))?;
                this.shared.close_sent.store(true, Ordering::Release);
            }
        }
        this.poll_flush_inner(cx)
    }
}
