//! The outgoing pump: messages that other tasks send to a connection
//! (broadcasts, acks, a browser API's `send()`) wait in the connection's
//! [`Outbox`] and move into its write queue as fast as the socket drains.
//!
//! One slow-consumer rule for every server and client built on it: the
//! pump moves messages from the outbox to the WebSocket while the
//! WebSocket's write queue holds less than the high-water mark
//! ([`Pump::with_high_water_mark`], 64 KiB by default), and writes as soon as
//! the socket takes bytes. Beyond the mark, messages wait in the outbox,
//! whose limits ([`OutboxConfig`]) decide what a full outbox does
//! ([`SlowConsumer`]): refuse and let the producer wait, drop the oldest
//! droppable message, or close the connection with 1008 or 1013. So what a
//! connection holds for a reader that does not read is bounded by its
//! outbox limits plus the high-water mark.
//!
//! A broadcast is pushed to every recipient's outbox as one
//! [`PreparedMessage`] ([`Outgoing::Prepared`]): framed once, compressed at
//! most once per compression setting, and queued by reference with the
//! connection's other pending output, which goes out in one (vectored)
//! write.

use crate::handle::CloseHandle;
use crate::{CloseCode, Message, PreparedMessage, Result, WebSocket};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

/// What a full [`Outbox`] does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumer {
    /// Refuse it: [`Outbox::push`] returns [`Push::Full`], and
    /// [`Outbox::send`] waits for room (the producer slows down to the
    /// reader's pace).
    Wait,
    /// Make room by dropping the oldest message pushed as droppable
    /// ([`Outbox::push_droppable`]: broadcasts); with none to drop, drop
    /// the new one if it is droppable, else queue it. Once the outbox holds
    /// twice its limit of undroppable messages, the reader does not read at
    /// all: close with 1008.
    DropOldest,
    /// Close the connection with this code (1008 policy violation, or 1013
    /// try again later) and the reason `slow consumer`; queued messages are
    /// dropped.
    Close(CloseCode),
}

/// The limits of an [`Outbox`] and what happens past them.
///
/// ```
/// use wsx::server::{OutboxConfig, SlowConsumer};
/// let config = OutboxConfig::default()
///     .with_max_messages(256)
///     .with_max_bytes(1 << 20)
///     .with_slow_consumer(SlowConsumer::DropOldest);
/// assert_eq!(config.max_messages(), 256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    max_messages: usize,
    max_bytes: usize,
    slow_consumer: SlowConsumer,
}

impl Default for OutboxConfig {
    /// 1024 messages, 16 MiB, then close with 1008.
    fn default() -> Self {
        Self { max_messages: 1024, max_bytes: 16 << 20, slow_consumer: SlowConsumer::Close(CloseCode::PolicyViolation) }
    }
}

impl OutboxConfig {
    /// No limits (the producer bounds what it sends, as the browser API
    /// does with `bufferedAmount`).
    pub fn unbounded() -> Self {
        Self { max_messages: usize::MAX, max_bytes: usize::MAX, slow_consumer: SlowConsumer::Wait }
    }

    /// At most `n` messages waiting (at least 1).
    pub fn with_max_messages(mut self, n: usize) -> Self {
        self.max_messages = n.max(1);
        self
    }

    /// At most `bytes` of payload waiting (a message larger than that is
    /// still queued when the outbox is empty).
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// What a full outbox does.
    pub fn with_slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// See [`OutboxConfig::with_max_messages`].
    pub fn max_messages(&self) -> usize {
        self.max_messages
    }

    /// See [`OutboxConfig::with_max_bytes`].
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// See [`OutboxConfig::with_slow_consumer`].
    pub fn slow_consumer(&self) -> SlowConsumer {
        self.slow_consumer
    }
}

/// What [`Outbox::push`] did with a message.
#[must_use = "a message may have been dropped or refused"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued.
    Queued,
    /// Queued, after dropping this many older droppable messages.
    Dropped(u64),
    /// Not queued: the outbox is full of messages that may not be dropped,
    /// and this one may ([`SlowConsumer::DropOldest`]).
    Discarded,
    /// Not queued: the outbox is full and its policy is
    /// [`SlowConsumer::Wait`].
    Full,
    /// Not queued: the outbox was full and the connection is being closed.
    Overflow,
    /// Not queued: the connection is closing or gone.
    Closed,
}

/// What an [`Outbox`] holds: a message, or a message prepared once for
/// many connections (a broadcast), which a server connection writes as
/// encoded ([`crate::WebSocket::feed_prepared`]) and a client connection
/// sends as its message (masked, RFC 6455 §5.3).
///
/// ```
/// use wsx::server::{Outbox, OutboxConfig, Outgoing, Push};
/// let (a, _ra) = Outbox::new(OutboxConfig::default());
/// let (b, _rb) = Outbox::new(OutboxConfig::default());
/// let broadcast = wsx::PreparedMessage::text("to everyone");
/// for outbox in [&a, &b] {
///     assert_eq!(outbox.push_droppable(broadcast.clone()), Push::Queued);
/// }
/// assert_eq!(a.push(wsx::Message::text("to a")), Push::Queued);
/// assert_eq!(Outgoing::from(broadcast).len(), 11);
/// ```
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A message, encoded by the connection that sends it.
    Message(Message),
    /// A message encoded once for every connection it goes to.
    Prepared(PreparedMessage),
}

impl Outgoing {
    /// A text or binary message prepared for many connections
    /// ([`PreparedMessage`]); any other message as it is.
    ///
    /// ```
    /// use wsx::server::Outgoing;
    /// assert!(matches!(Outgoing::prepared(wsx::Message::text("all")), Outgoing::Prepared(_)));
    /// assert!(matches!(Outgoing::prepared(wsx::Message::ping("p")), Outgoing::Message(_)));
    /// ```
    pub fn prepared(msg: Message) -> Self {
        PreparedMessage::try_from(msg).map_or_else(Outgoing::Message, Outgoing::Prepared)
    }

    /// Payload length in bytes (what the outbox's byte limit counts).
    pub fn len(&self) -> usize {
        match self {
            Outgoing::Message(m) => m.len(),
            Outgoing::Prepared(p) => p.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes of a text or binary message (0 for control
    /// messages): what `bufferedAmount` counts.
    fn data_len(&self) -> u64 {
        match self {
            Outgoing::Message(m) if m.is_text() || m.is_binary() => m.len() as u64,
            Outgoing::Message(_) => 0,
            Outgoing::Prepared(p) => p.len() as u64,
        }
    }

    /// The message, for a transport that frames it itself (HTTP
    /// long-polling) or a client, which masks what it sends.
    ///
    /// ```
    /// use wsx::server::Outgoing;
    /// let out = Outgoing::from(wsx::PreparedMessage::text("hi"));
    /// assert_eq!(out.into_message(), wsx::Message::text("hi"));
    /// ```
    pub fn into_message(self) -> Message {
        match self {
            Outgoing::Message(m) => m,
            Outgoing::Prepared(p) => p.to_message(),
        }
    }
}

impl From<Message> for Outgoing {
    fn from(m: Message) -> Self {
        Outgoing::Message(m)
    }
}

impl From<PreparedMessage> for Outgoing {
    fn from(p: PreparedMessage) -> Self {
        Outgoing::Prepared(p)
    }
}

#[derive(Debug)]
struct Item {
    msg: Outgoing,
    droppable: bool,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    bytes: usize,
    /// The receiver's waker, while it waits for a message.
    waker: Option<Waker>,
    /// Producers wait for room ([`SlowConsumer::Wait`]).
    waiting: bool,
    /// No more messages are taken: the connection closes or is gone.
    ended: bool,
    /// How to close the connection; until the pump attaches it, a close
    /// for overflow is kept in `overflow`.
    handle: Option<CloseHandle>,
    overflow: Option<CloseCode>,
    /// The outbox ended for overflow (kept after the close is applied).
    overflowed: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    config: OutboxConfig,
    /// Live [`Outbox`] handles.
    senders: AtomicUsize,
    /// Room was made (producers of [`SlowConsumer::Wait`] wait for it).
    room: Notify,
    /// The outbox overflowed ([`Outbox::overflowed`] waits for it).
    overflow: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side of a connection's outgoing queue: any task can push
/// to it; the connection's [`Pump`] writes what it holds. Cheap to clone;
/// when every clone is gone, [`Pump::outbox_abandoned`] says so.
///
/// ```no_run
/// # async fn run(ws: wsx::WebSocket<tokio::net::TcpStream>) {
/// use wsx::server::{Outbox, OutboxConfig, Pump};
/// let (outbox, receiver) = Outbox::new(OutboxConfig::default());
/// let mut pump = Pump::new(ws, receiver);
/// let ticker = outbox.clone();
/// tokio::spawn(async move {
///     loop {
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///         if ticker.push(wsx::Message::text("tick")) == wsx::server::Push::Closed { break }
///     }
/// });
/// while let Some(Ok(msg)) = pump.recv().await {
///     let _ = outbox.push(msg); // echo, in order with the ticks
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The receiving side of an [`Outbox`], for [`Pump::new`].
#[derive(Debug)]
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self { shared: self.shared.clone() }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(w) = self.shared.lock().waker.take() {
                w.wake();
            }
        }
    }
}

impl Outbox {
    /// A new outbox and its receiver.
    pub fn new(config: OutboxConfig) -> (Outbox, OutboxReceiver) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            config,
            senders: AtomicUsize::new(1),
            room: Notify::new(),
            overflow: Notify::new(),
        });
        (Outbox { shared: shared.clone() }, OutboxReceiver { shared })
    }

    /// Queue a message that must not be dropped (an ack, a direct message,
    /// a close frame): a [`Message`], or a [`PreparedMessage`] shared with
    /// other connections.
    pub fn push(&self, msg: impl Into<Outgoing>) -> Push {
        self.push_item(Item { msg: msg.into(), droppable: false })
    }

    /// Queue a message that [`SlowConsumer::DropOldest`] may drop (a
    /// broadcast, best as a [`PreparedMessage`]).
    pub fn push_droppable(&self, msg: impl Into<Outgoing>) -> Push {
        self.push_item(Item { msg: msg.into(), droppable: true })
    }

    /// Queue a message, waiting for room while the outbox is full (with
    /// [`SlowConsumer::Wait`]; other policies never wait). `Err` gives the
    /// message back when the connection is closing or gone, or was closed
    /// for overflow.
    pub async fn send(&self, msg: Message) -> std::result::Result<(), Message> {
        let mut item = Item { msg: Outgoing::Message(msg), droppable: false };
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Registered before the attempt, so room made in between wakes it.
            room.as_mut().enable();
            match self.try_push(item) {
                Ok(_) => return Ok(()),
                Err((it, Push::Full)) => item = it,
                Err((it, _)) => return Err(it.msg.into_message()),
            }
            room.await;
        }
    }

    fn push_item(&self, item: Item) -> Push {
        match self.try_push(item) {
            Ok(p) => p,
            Err((_, p)) => p,
        }
    }

    /// Queue `item`, or give it back with why not.
    fn try_push(&self, item: Item) -> std::result::Result<Push, (Item, Push)> {
        let mut s = self.shared.lock();
        let pushed = self.push_locked(&mut s, item);
        if pushed.is_ok() {
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
        pushed
    }

    /// Queue messages that may not be dropped, one after the other with
    /// nothing from other senders between them (a message and the parts
    /// that go with it), up to the first that is not queued: what happened
    /// to that one, else [`Push::Queued`] (or [`Push::Dropped`] with how
    /// many older droppable messages made room).
    ///
    /// ```
    /// use wsx::server::{Outbox, OutboxConfig, Push};
    /// let (outbox, _receiver) = Outbox::new(OutboxConfig::default());
    /// let parts = [wsx::Message::text("header"), wsx::Message::binary(vec![1u8, 2])];
    /// assert_eq!(outbox.push_all(parts), Push::Queued);
    /// assert_eq!(outbox.len(), 2);
    /// ```
    pub fn push_all<M: Into<Outgoing>>(&self, msgs: impl IntoIterator<Item = M>) -> Push {
        let mut s = self.shared.lock();
        let mut dropped = 0u64;
        let mut result = Push::Queued;
        for msg in msgs {
            match self.push_locked(&mut s, Item { msg: msg.into(), droppable: false }) {
                Ok(Push::Dropped(n)) => dropped += n,
                Ok(_) => {}
                Err((_, p)) => {
                    result = p;
                    break;
                }
            }
        }
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        match result {
            Push::Queued if dropped > 0 => Push::Dropped(dropped),
            p => p,
        }
    }

    /// [`Outbox::try_push`] with the state locked (the receiver is not
    /// woken).
    fn push_locked(&self, s: &mut State, item: Item) -> std::result::Result<Push, (Item, Push)> {
        let config = &self.shared.config;
        if s.ended {
            return Err((item, Push::Closed));
        }
        let len = item.msg.len();
        let full = |s: &State| {
            !s.items.is_empty()
                && (s.items.len() >= config.max_messages || s.bytes.saturating_add(len) > config.max_bytes)
        };
        let mut dropped = 0u64;
        if full(s) {
            match config.slow_consumer {
                SlowConsumer::Wait => {
                    s.waiting = true;
                    return Err((item, Push::Full));
                }
                SlowConsumer::Close(code) => {
                    overflow(s, code, &self.shared.overflow);
                    return Err((item, Push::Overflow));
                }
                SlowConsumer::DropOldest => {
                    while full(s) {
                        let Some(i) = s.items.iter().position(|it| it.droppable) else { break };
                        if let Some(old) = s.items.remove(i) {
                            s.bytes -= old.msg.len();
                            dropped += 1;
                        }
                    }
                    if full(s) {
                        if item.droppable {
                            return Err((item, Push::Discarded));
                        }
                        if s.items.len() >= config.max_messages.saturating_mul(2) {
                            overflow(s, CloseCode::PolicyViolation, &self.shared.overflow);
                            return Err((item, Push::Overflow));
                        }
                    }
                }
            }
        }
        s.bytes += len;
        if s.items.capacity() == 0 {
            // Most outboxes hold one message at a time (an ack, a
            // broadcast) and free it once written: room for one, not the
            // four a growing queue makes room for.
            s.items.reserve_exact(1);
        }
        s.items.push_back(item);
        Ok(if dropped > 0 { Push::Dropped(dropped) } else { Push::Queued })
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes waiting.
    pub fn bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Whether the connection no longer takes messages (it is closing or
    /// gone).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().ended
    }

    /// Whether the outbox ended because it overflowed (a
    /// [`SlowConsumer::Close`] outbox that was full, or a
    /// [`SlowConsumer::DropOldest`] one full of undroppable messages).
    pub fn is_overflowed(&self) -> bool {
        self.shared.lock().overflowed
    }

    /// Resolves once the outbox has overflowed ([`Outbox::is_overflowed`]):
    /// what a transport without a WebSocket to close (HTTP long-polling)
    /// waits for to end its session.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use wsx::server::{Outbox, OutboxConfig, Push, SlowConsumer};
    /// let config = OutboxConfig::default().with_max_messages(1).with_slow_consumer(SlowConsumer::Close(wsx::CloseCode::TryAgainLater));
    /// let (outbox, _receiver) = Outbox::new(config);
    /// let _ = outbox.push(wsx::Message::text("a"));
    /// assert_eq!(outbox.push(wsx::Message::text("b")), Push::Overflow);
    /// outbox.overflowed().await; // at once
    /// # });
    /// ```
    pub async fn overflowed(&self) {
        loop {
            let notified = self.shared.overflow.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_overflowed() {
                return;
            }
            notified.await;
        }
    }
}

/// The connection closes for overflow: drop what waits, ask it to close.
fn overflow(s: &mut State, code: CloseCode, notify: &Notify) {
    s.items.clear();
    s.bytes = 0;
    s.ended = true;
    s.overflowed = true;
    notify.notify_waiters();
    match &s.handle {
        Some(h) => {
            h.close(code, "slow consumer");
        }
        None => s.overflow = Some(code),
    }
    if let Some(w) = s.waker.take() {
        w.wake();
    }
}

impl OutboxReceiver {
    /// Attach the connection's close handle (a close for overflow that
    /// came before is applied now).
    fn attach(&self, handle: CloseHandle) {
        let mut s = self.shared.lock();
        if let Some(code) = s.overflow.take() {
            handle.close(code, "slow consumer");
        }
        s.handle = Some(handle);
    }

    /// The next message (`None` once the outbox ended: closed, overflowed,
    /// or every [`Outbox`] gone and nothing left), for a transport that
    /// writes without a [`Pump`] (HTTP long-polling takes the queued
    /// messages as a response body).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use wsx::server::{Outbox, OutboxConfig};
    /// let (outbox, mut receiver) = Outbox::new(OutboxConfig::default());
    /// let _ = outbox.push(wsx::Message::text("a"));
    /// let _ = outbox.push(wsx::Message::text("b"));
    /// assert_eq!(receiver.recv().await, Some(wsx::Message::text("a")));
    /// assert_eq!(receiver.try_recv(), Some(wsx::Message::text("b")));
    /// assert_eq!(receiver.try_recv(), None);
    /// drop(outbox);
    /// assert_eq!(receiver.recv().await, None);
    /// # });
    /// ```
    pub async fn recv(&mut self) -> Option<Message> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll for the next message; see [`OutboxReceiver::recv`]. Only the
    /// last task that polled is woken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.poll_take(cx).map(|o| o.map(Outgoing::into_message))
    }

    /// The next message if one waits, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        let mut s = self.shared.lock();
        let it = s.items.pop_front()?;
        s.bytes -= it.msg.len();
        if std::mem::take(&mut s.waiting) {
            self.shared.room.notify_waiters();
        }
        Some(it.msg.into_message())
    }

    /// Whether the outbox ended because it overflowed; see
    /// [`Outbox::is_overflowed`].
    pub fn is_overflowed(&self) -> bool {
        self.shared.lock().overflowed
    }

    /// The next message, if one waits; else registers `cx` to be woken by
    /// the next push (or by the last sender going away).
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        let mut s = self.shared.lock();
        match s.items.pop_front() {
            Some(it) => {
                s.bytes -= it.msg.len();
                if std::mem::take(&mut s.waiting) {
                    self.shared.room.notify_waiters();
                }
                Poll::Ready(Some(it.msg))
            }
            None if s.ended || self.shared.senders.load(Ordering::Acquire) == 0 => Poll::Ready(None),
            None => {
                // Waiting: an idle connection keeps no queue buffer (the
                // next push allocates one again; next to its write, that
                // costs little, and idle connections are most of them).
                if s.items.capacity() > 0 {
                    s.items = VecDeque::new();
                }
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// No more messages are taken: later pushes return [`Push::Closed`].
    fn end(&self) {
        let mut s = self.shared.lock();
        s.ended = true;
        s.items = VecDeque::new();
        s.bytes = 0;
        s.waker = None;
        drop(s);
        self.shared.room.notify_waiters();
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.end();
    }
}

/// A WebSocket and its [`Outbox`], driven together: [`Pump::recv`] moves
/// messages from the outbox into the WebSocket's write queue under the
/// high-water mark, writes them as the socket takes them, and returns what
/// the peer sends. Keepalive, close requests and the closing handshake are
/// the WebSocket's own.
///
/// ```no_run
/// # async fn run(ws: wsx::WebSocket<tokio::net::TcpStream>) {
/// use wsx::server::{Outbox, OutboxConfig, Pump};
/// let (outbox, receiver) = Outbox::new(OutboxConfig::default());
/// let mut pump = Pump::new(ws, receiver);
/// // Hand `outbox` to whoever sends to this client (a room, a registry).
/// while let Some(Ok(msg)) = pump.recv().await {
///     println!("got {msg:?}");
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Pump<S> {
    ws: WebSocket<S>,
    rx: OutboxReceiver,
    high_water_mark: usize,
    /// Payload bytes of data messages moved into the write queue and not
    /// yet known to be written.
    in_flight: u64,
    /// Payload bytes known written since [`Pump::take_written`] last ran.
    written: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pump<S> {
    /// Drive `ws` with the messages of `outbox`. A full outbox's close
    /// ([`SlowConsumer::Close`]) closes `ws`.
    pub fn new(mut ws: WebSocket<S>, outbox: OutboxReceiver) -> Self {
        outbox.attach(ws.close_handle());
        Self { ws, rx: outbox, high_water_mark: 64 << 10, in_flight: 0, written: 0 }
    }

    /// Move messages into the write queue only while it holds less than
    /// `bytes` (default 64 KiB).
    pub fn with_high_water_mark(mut self, bytes: usize) -> Self {
        self.high_water_mark = bytes.max(1);
        self
    }

    /// The WebSocket (to send directly, ask its state...).
    pub fn websocket(&mut self) -> &mut WebSocket<S> {
        &mut self.ws
    }

    /// The WebSocket; the outbox takes no more messages.
    pub fn into_inner(self) -> WebSocket<S> {
        self.ws
    }

    /// The WebSocket and the outbox's receiver, which keeps what waits in
    /// it (to write it out before a close of one's own, say). An overflow
    /// still closes the WebSocket.
    pub fn into_parts(self) -> (WebSocket<S>, OutboxReceiver) {
        (self.ws, self.rx)
    }

    /// Whether every [`Outbox`] handle is gone (and nothing waits in it).
    pub fn outbox_abandoned(&self) -> bool {
        self.rx.shared.senders.load(Ordering::Acquire) == 0 && self.rx.shared.lock().items.is_empty()
    }

    /// Payload bytes of text and binary messages taken from the outbox and
    /// written to the socket since the last call (a browser API's
    /// `bufferedAmount` goes down by this).
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }

    /// Poll for the next message from the peer; see [`Pump::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            let at_mark = self.fill(cx);
            // Writes what is queued before it waits for input.
            let r = self.ws.poll_recv(cx);
            if self.in_flight > 0 && self.ws.buffered_amount() == 0 {
                self.written += std::mem::take(&mut self.in_flight);
            }
            // The mark stopped the filling, so the outbox will not wake
            // this task; and once the write has made room, the socket may
            // not either (it took every byte). Fill again: it moves what
            // waits, or finds the outbox empty and registers with it. This
            // holds with no message left too: the next push, after the
            // outbox emptied at the mark, would otherwise wake no one.
            if r.is_pending() && at_mark && self.ws.buffered_amount() < self.high_water_mark {
                continue;
            }
            return r;
        }
    }

    /// The next message from the peer (`None` once the connection is
    /// closed), moving and writing outgoing messages meanwhile.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Move messages from the outbox into the write queue while it is under
    /// the high-water mark. Whether the mark stopped it: then the outbox
    /// does not wake this task (only an outbox found empty registers `cx`),
    /// whether messages are left in it or not.
    fn fill(&mut self, cx: &mut Context<'_>) -> bool {
        if self.ws.close_state() != crate::CloseState::Open {
            self.rx.end();
            return false;
        }
        while self.ws.buffered_amount() < self.high_water_mark {
            match self.rx.poll_take(cx) {
                Poll::Ready(Some(out)) => {
                    let data = out.data_len();
                    let queued = match out {
                        Outgoing::Message(msg) => self.ws.queue(msg),
                        Outgoing::Prepared(p) => self.ws.queue_prepared(&p),
                    };
                    if let Err(e) = queued {
                        // Only a close already under way refuses a message.
                        tracing::trace!(error = %e, "message from the outbox discarded");
                        self.rx.end();
                        return false;
                    }
                    self.in_flight += data;
                }
                Poll::Ready(None) | Poll::Pending => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_outbox_keeps_no_buffer() {
        let (outbox, rx) = Outbox::new(OutboxConfig::default());
        for i in 0..8 {
            let _ = outbox.push(Message::text(format!("m{i}")));
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut got = 0;
        while let Poll::Ready(Some(_)) = rx.poll_take(&mut cx) {
            got += 1;
        }
        assert_eq!(got, 8);
        assert_eq!(rx.shared.lock().items.capacity(), 0, "the drained queue's buffer is freed");
        let _ = outbox.push(Message::text("again"));
        assert_eq!(rx.shared.lock().items.capacity(), 1, "room for the one message it holds");
        assert!(matches!(rx.poll_take(&mut cx), Poll::Ready(Some(_))), "and allocated again");
    }
}
