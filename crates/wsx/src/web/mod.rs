//! `wsx::web`: the browser's `WebSocket` interface, with the semantics of
//! the WHATWG WebSockets Standard (<https://websockets.spec.whatwg.org/>):
//! the constructor's URL and subprotocol checks, `readyState`,
//! `bufferedAmount`, `protocol`, `extensions`, `binaryType`, `send()` and
//! `close()` with their exceptions, and the `open` / `message` / `error` /
//! `close` events in the standard's order. On top of the protocol it
//! applies the connection rules of browsers: one connection per host:port
//! in CONNECTING at a time, Fetch's bad ports, and a cap on live
//! connections ([`set_max_connections`]).
//!
//! A [`WebSocket`] is a handle (`Clone + Send + Sync`) to a connection run
//! by a background task. Events are read with [`WebSocket::next_event`] or
//! handled by callbacks ([`WebSocket::on_message`] and friends).
//! [`blocking::WebSocket`] is the same API for plain threads.
//!
//! Against `wsx serve` (an echo server on 127.0.0.1:9001):
//!
//! ```no_run
//! use wsx::web::{Event, WebSocket};
//!
//! # async fn run() -> Result<(), wsx::web::DomError> {
//! let ws = WebSocket::new("ws://127.0.0.1:9001/", &[])?; // state: Connecting
//! while let Some(event) = ws.next_event().await {
//!     match event {
//!         Event::Open => ws.send("hello")?,
//!         Event::Message(m) => {
//!             println!("got {:?}", m.data());
//!             ws.close(Some(1000), Some("bye"))?;
//!         }
//!         Event::Error(e) => eprintln!("connection failed: {}", e.message()),
//!         Event::Close(c) => println!("closed: {} {}", c.code(), c.reason()),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Offering subprotocols (`&["chat"]`) needs a server that selects one of
//! them (`wsx serve --subprotocol chat`): when it selects none, the
//! connection fails, and the `error` event says so.
//!
//! Where Rust and the standard's JavaScript differ: there is no event
//! loop, so `readyState`, `protocol` and `bufferedAmount` change when the
//! network event happens rather than when a task runs; events wait in a
//! queue until read (or go to a callback at once). A message waiting in
//! the queue when `close()` is called is dropped, as the standard's
//! "if readyState is not OPEN, return" does to message tasks not yet run.

pub mod blocking;
mod driver;
mod event;
mod registry;

pub use event::{BinaryType, CloseEvent, Data, DomError, ErrorEvent, Event, EventType, MessageEvent, ReadyState};
pub use registry::{live_connections, max_connections, set_max_connections};

use crate::server::{Outbox, OutboxConfig};
use crate::{CloseCode, CloseFrame, Config, Message, Utf8Bytes};
use futures_core::Stream;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// The longest close reason, in UTF-8 bytes (a close frame's payload is at
/// most 125 bytes, two of which are the code).
const MAX_REASON_BYTES: usize = 123;

/// Settings of a [`WebSocket`] beyond the standard's arguments.
///
/// ```
/// use std::time::Duration;
/// let options = wsx::web::WebOptions::new()
///     .with_config(wsx::Config::default().with_handshake_timeout(Duration::from_secs(5)))
///     .with_max_buffered_amount(64 << 20);
/// assert_eq!(options.max_buffered_amount(), 64 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct WebOptions {
    config: Config,
    max_buffered_amount: u64,
}

impl Default for WebOptions {
    fn default() -> Self {
        Self { config: Config::default(), max_buffered_amount: 1 << 30 }
    }
}

impl WebOptions {
    /// The defaults: [`Config::default`] and a `bufferedAmount` limit of
    /// 1 GiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection's settings (limits, handshake and close timeouts).
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The most bytes `send()` may have queued (`bufferedAmount`). A
    /// `send()` that would go past it flags the WebSocket as full, as the
    /// standard says when "the buffer is full": the connection is closed
    /// at once and fires `error`, then `close` with 1006. Default 1 GiB.
    pub fn with_max_buffered_amount(mut self, bytes: u64) -> Self {
        self.max_buffered_amount = bytes;
        self
    }

    /// See [`WebOptions::with_config`].
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// See [`WebOptions::with_max_buffered_amount`].
    pub fn max_buffered_amount(&self) -> u64 {
        self.max_buffered_amount
    }
}

/// An event handler: a callback set with `on_open` and friends.
type Handler = Arc<Mutex<Box<dyn FnMut(Event) + Send>>>;

/// An event on its way to a handler or to `next_event`. Binary messages
/// keep their bytes until delivery, where `binaryType` decides their form.
#[derive(Debug)]
enum Pending {
    Open,
    Message(Message),
    Error(ErrorEvent),
    Close(CloseEvent),
}

impl Pending {
    fn event_type(&self) -> EventType {
        match self {
            Pending::Open => EventType::Open,
            Pending::Message(_) => EventType::Message,
            Pending::Error(_) => EventType::Error,
            Pending::Close(_) => EventType::Close,
        }
    }
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Pending>,
    /// The close event has been delivered or queued: nothing follows it.
    ended: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent; a panicking event
    // handler never runs under these locks.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the handles and the background task share.
struct Shared {
    url: String,
    origin: Arc<str>,
    state: Mutex<ReadyState>,
    /// `close()` was called: messages not yet delivered are dropped.
    close_called: AtomicBool,
    binary_type: AtomicU8,
    buffered: AtomicU64,
    max_buffered: u64,
    /// Flagged as full: the task closes the connection.
    full: AtomicBool,
    /// Wakes the task to fail the connection (close while connecting, full).
    abort: Notify,
    protocol: OnceLock<String>,
    extensions: OnceLock<String>,
    handlers: Mutex<[Option<Handler>; 4]>,
    queue: Mutex<Queue>,
    queue_cond: Condvar,
    queue_notify: Notify,
}

fn slot(t: EventType) -> usize {
    match t {
        EventType::Open => 0,
        EventType::Message => 1,
        EventType::Error => 2,
        EventType::Close => 3,
    }
}

impl Shared {
    fn ready_state(&self) -> ReadyState {
        *lock(&self.state)
    }

    fn set_state(&self, s: ReadyState) {
        *lock(&self.state) = s;
    }

    fn binary_type(&self) -> BinaryType {
        match self.binary_type.load(Ordering::SeqCst) {
            0 => BinaryType::Blob,
            _ => BinaryType::ArrayBuffer,
        }
    }

    fn has_handler(&self, t: EventType) -> bool {
        lock(&self.handlers)[slot(t)].is_some()
    }

    /// The `message` event for `msg`, with the data in the form
    /// `binaryType` asks for now.
    fn message_event(&self, msg: Message) -> Option<Event> {
        let data = match msg {
            Message::Text(t) => Data::Text(t.as_str().to_owned()),
            Message::Binary(b) => match self.binary_type() {
                BinaryType::Blob => Data::Blob(b),
                BinaryType::ArrayBuffer => Data::ArrayBuffer(b),
            },
            _ => return None,
        };
        Some(Event::Message(MessageEvent::new(data, self.origin.clone())))
    }

    /// Fire an event: to its handler if one is set, else into the queue
    /// that `next_event` reads.
    fn dispatch(&self, p: Pending) {
        let t = p.event_type();
        // The standard's message task: "if readyState is not OPEN, return".
        if t == EventType::Message && self.ready_state() != ReadyState::Open {
            return;
        }
        let handler = lock(&self.handlers)[slot(t)].clone();
        match handler {
            Some(h) => {
                let event = match p {
                    Pending::Open => Some(Event::Open),
                    Pending::Message(m) => self.message_event(m),
                    Pending::Error(e) => Some(Event::Error(e)),
                    Pending::Close(c) => Some(Event::Close(c)),
                };
                if let Some(event) = event {
                    call(&h, event);
                }
                if t == EventType::Close {
                    self.push(None);
                }
            }
            None => self.push(Some(p)),
        }
    }

    /// Queue an event (`None`: only mark the end after a close delivered
    /// to its handler) and wake the readers.
    fn push(&self, p: Option<Pending>) {
        {
            let mut q = lock(&self.queue);
            if let Some(p) = p {
                if matches!(p, Pending::Close(_)) {
                    q.ended = true;
                }
                q.events.push_back(p);
            } else {
                q.ended = true;
            }
        }
        self.queue_notify.notify_waiters();
        self.queue_cond.notify_all();
    }

    /// The next queued event: `Some(None)` once the close event has been
    /// delivered, `None` if there is none yet.
    fn pop_locked(&self, q: &mut Queue) -> Option<Option<Event>> {
        while let Some(p) = q.events.pop_front() {
            let event = match p {
                Pending::Open => Some(Event::Open),
                // Dropped if close() was called since it arrived (its task
                // would find readyState CLOSING).
                Pending::Message(m) if !self.close_called.load(Ordering::SeqCst) => self.message_event(m),
                Pending::Message(_) => None,
                Pending::Error(e) => Some(Event::Error(e)),
                Pending::Close(c) => Some(Event::Close(c)),
            };
            if let Some(e) = event {
                return Some(Some(e));
            }
        }
        q.ended.then_some(None)
    }

    fn try_pop(&self) -> Option<Option<Event>> {
        self.pop_locked(&mut lock(&self.queue))
    }

    /// After the close event: drop the handlers (they may hold handles to
    /// this WebSocket) and wake every reader.
    fn end(&self) {
        *lock(&self.handlers) = Default::default();
        self.push(None);
    }
}

/// Run a handler. A panic in it is reported and does not affect the
/// connection, like an exception in a browser's event listener.
fn call(h: &Handler, event: Event) {
    let mut f = lock(h);
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (*f)(event))).is_err() {
        tracing::error!("a wsx::web event handler panicked");
    }
}

/// A WebSocket with the browser's API (the WHATWG `WebSocket` interface).
///
/// Created with [`WebSocket::new`], which returns at once in
/// [`ReadyState::Connecting`] and connects in the background on the
/// current tokio runtime (it must be called from within one; without one,
/// it uses the shared background runtime of [`blocking`]). The handle is
/// `Clone + Send + Sync`: every clone is the same WebSocket, usable from
/// any thread or task.
///
/// Events are delivered to the callback set for their type
/// ([`on_open`](WebSocket::on_open), [`on_message`](WebSocket::on_message),
/// [`on_error`](WebSocket::on_error), [`on_close`](WebSocket::on_close)),
/// or, when none is set, queued for [`next_event`](WebSocket::next_event).
///
/// When every handle is dropped and no callback is set, the connection is
/// abandoned like a garbage-collected browser WebSocket: a connecting one
/// is dropped, an open one starts the closing handshake without a status
/// code.
///
/// ```no_run
/// use wsx::web::{ReadyState, WebSocket};
///
/// # async fn run() -> Result<(), wsx::web::DomError> {
/// let ws = WebSocket::new("ws://127.0.0.1:9001/", &[])?;
/// assert_eq!(ws.ready_state(), ReadyState::Connecting);
/// let sender = ws.clone();
/// ws.on_open(move || sender.send("hello").unwrap());
/// ws.on_message(|m| println!("{:?}", m.data()));
/// ws.on_close(|c| println!("closed: {}", c.code()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebSocket {
    shared: Arc<Shared>,
    /// What `send()` and `close()` queue, in order, for the task.
    outbox: Outbox,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("url", &self.url())
            .field("ready_state", &self.ready_state())
            .field("buffered_amount", &self.buffered_amount())
            .field("protocol", &self.protocol())
            .finish()
    }
}

/// The constructor's checks (steps 1–9 of `new WebSocket(url, protocols)`).
fn parse(url: &str, protocols: &[&str]) -> Result<url::Url, DomError> {
    let mut record = url::Url::parse(url).map_err(|_| DomError::Syntax)?;
    let renamed = match record.scheme() {
        "http" => record.set_scheme("ws"),
        "https" => record.set_scheme("wss"),
        _ => Ok(()),
    };
    renamed.map_err(|_| DomError::Syntax)?;
    if !matches!(record.scheme(), "ws" | "wss") || record.fragment().is_some() || record.host_str().is_none() {
        return Err(DomError::Syntax);
    }
    for (i, p) in protocols.iter().enumerate() {
        if !wsx_proto::handshake::is_token(p) || protocols[..i].contains(p) {
            return Err(DomError::Syntax);
        }
    }
    Ok(record)
}

/// The opening handshake's request for `url`: the path and query as the
/// URL serializer wrote them, the host without credentials, and the
/// subprotocols.
fn handshake_request(url: &url::Url, protocols: &[&str]) -> Result<http::Request<()>, http::Error> {
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let scheme = url.scheme();
    let uri = match format!("{scheme}://{authority}{target}").parse::<http::Uri>() {
        Ok(uri) => uri,
        // Characters the URL serializer leaves but `http` refuses.
        Err(_) => format!("{scheme}://{authority}{}", escape_target(&target)).parse::<http::Uri>()?,
    };
    let mut request = http::Request::get(uri);
    if !protocols.is_empty() {
        request = request.header(http::header::SEC_WEBSOCKET_PROTOCOL, protocols.join(", "));
    }
    request.body(())
}

/// Percent-encode every byte outside RFC 3986's path and query characters.
fn escape_target(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl WebSocket {
    /// `new WebSocket(url, protocols)`: check the arguments and start
    /// connecting in the background; returns at once, in
    /// [`ReadyState::Connecting`].
    ///
    /// Fails with [`DomError::Syntax`] when `url` does not parse (WHATWG
    /// URL parser; there is no base URL, so it must be absolute), its
    /// scheme is not `ws`, `wss`, `http` or `https` (`http` becomes `ws`,
    /// `https` becomes `wss`), it has a fragment, or a subprotocol is
    /// repeated or not an RFC 7230 token. Everything else that goes wrong
    /// (DNS, refused connection, TLS, handshake, a bad port, the cap on
    /// connections) is reported by events: `error`, then `close` with 1006.
    ///
    /// Spawns its task on the current tokio runtime: call it from within
    /// one. Outside any runtime it uses the shared background runtime of
    /// [`blocking`] instead.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), wsx::web::DomError> {
    /// let ws = wsx::web::WebSocket::new("wss://example.com/socket", &["v2.chat", "chat"])?;
    /// assert_eq!(ws.url(), "wss://example.com/socket");
    /// assert_eq!(
    ///     wsx::web::WebSocket::new("wss://example.com/#x", &[]).unwrap_err(),
    ///     wsx::web::DomError::Syntax
    /// );
    /// # Ok(()) }
    /// ```
    pub fn new(url: &str, protocols: &[&str]) -> Result<Self, DomError> {
        Self::with_options(url, protocols, &WebOptions::default())
    }

    /// [`WebSocket::new`] with settings: the connection's [`Config`] and
    /// the `bufferedAmount` limit.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), wsx::web::DomError> {
    /// let options = wsx::web::WebOptions::new().with_max_buffered_amount(1 << 20);
    /// let ws = wsx::web::WebSocket::with_options("ws://127.0.0.1:9001/", &[], &options)?;
    /// # Ok(()) }
    /// ```
    pub fn with_options(url: &str, protocols: &[&str], options: &WebOptions) -> Result<Self, DomError> {
        let (ws, task) = Self::create(url, protocols, options)?;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(task)),
            Err(_) => blocking::spawn(task),
        }
        Ok(ws)
    }

    /// Check the arguments and build the handle and its background task.
    fn create(
        url: &str,
        protocols: &[&str],
        options: &WebOptions,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static), DomError> {
        let record = parse(url, protocols)?;
        let host = record.host_str().unwrap_or_default();
        let port = record.port_or_known_default().unwrap_or(80);
        let plan = driver::Plan {
            request: handshake_request(&record, protocols).map_err(|e| e.to_string()),
            config: options.config.clone(),
            offered_protocols: protocols.join(", "),
            host_key: format!("{host}:{port}"),
            bad_port: registry::is_bad_port(port),
            slot: registry::Slot::reserve(),
        };
        let shared = Arc::new(Shared {
            url: record.as_str().to_owned(),
            origin: record.origin().ascii_serialization().into(),
            state: Mutex::new(ReadyState::Connecting),
            close_called: AtomicBool::new(false),
            binary_type: AtomicU8::new(0),
            buffered: AtomicU64::new(0),
            max_buffered: options.max_buffered_amount,
            full: AtomicBool::new(false),
            abort: Notify::new(),
            protocol: OnceLock::new(),
            extensions: OnceLock::new(),
            handlers: Mutex::new(Default::default()),
            queue: Mutex::new(Queue::default()),
            queue_cond: Condvar::new(),
            queue_notify: Notify::new(),
        });
        // Unbounded: `bufferedAmount` and its limit bound what is queued.
        let (outbox, rx) = Outbox::new(OutboxConfig::unbounded());
        let task = driver::run(shared.clone(), rx, plan);
        Ok((Self { shared, outbox }, task))
    }

    /// `url`: the URL, serialized (after `http`→`ws` and `https`→`wss`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), wsx::web::DomError> {
    /// let ws = wsx::web::WebSocket::new("HTTP://Example.COM:80/a b", &[])?;
    /// assert_eq!(ws.url(), "ws://example.com/a%20b");
    /// # Ok(()) }
    /// ```
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// `readyState`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), wsx::web::DomError> {
    /// let ws = wsx::web::WebSocket::new("ws://127.0.0.1:9001/", &[])?;
    /// assert_eq!(ws.ready_state(), wsx::web::ReadyState::Connecting);
    /// # Ok(()) }
    /// ```
    pub fn ready_state(&self) -> ReadyState {
        self.shared.ready_state()
    }

    /// `bufferedAmount`: the bytes of application data (UTF-8 text and
    /// binary data, without framing) queued by [`send`](WebSocket::send)
    /// and not yet handed to the network. A message counts until the whole
    /// write queue it joined has been written to the socket. Data sent
    /// while closing or closed is discarded but still counted, so the value
    /// only grows then, as the standard says.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) -> Result<(), wsx::web::DomError> {
    /// if ws.buffered_amount() == 0 {
    ///     ws.send("next update")?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn buffered_amount(&self) -> u64 {
        self.shared.buffered.load(Ordering::SeqCst)
    }

    /// `protocol`: the subprotocol the server selected; empty until the
    /// connection is open, and when none was selected.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), wsx::web::DomError> {
    /// let ws = wsx::web::WebSocket::new("ws://127.0.0.1:9001/", &["chat"])?;
    /// if let Some(wsx::web::Event::Open) = ws.next_event().await {
    ///     assert_eq!(ws.protocol(), "chat");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn protocol(&self) -> &str {
        self.shared.protocol.get().map_or("", String::as_str)
    }

    /// `extensions`: the extensions the server selected
    /// (`Sec-WebSocket-Extensions` of its response); empty until open.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// println!("extensions: {:?}", ws.extensions());
    /// # }
    /// ```
    pub fn extensions(&self) -> &str {
        self.shared.extensions.get().map_or("", String::as_str)
    }

    /// `binaryType`: how binary messages are delivered (default
    /// [`BinaryType::Blob`]). It applies to every binary message delivered
    /// after it is set, including those already queued.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// assert_eq!(ws.binary_type(), wsx::web::BinaryType::Blob);
    /// # }
    /// ```
    pub fn binary_type(&self) -> BinaryType {
        self.shared.binary_type()
    }

    /// Set `binaryType`.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// ws.set_binary_type(wsx::web::BinaryType::ArrayBuffer);
    /// # }
    /// ```
    pub fn set_binary_type(&self, t: BinaryType) {
        let v = match t {
            BinaryType::Blob => 0,
            BinaryType::ArrayBuffer => 1,
        };
        self.shared.binary_type.store(v, Ordering::SeqCst);
    }

    /// `send(data)`: queue a text message (`&str`, `String`) or a binary
    /// one (`Vec<u8>`, `&[u8]`, [`Bytes`](crate::Bytes), [`Data`]) and add
    /// its size to `bufferedAmount`. Never waits.
    ///
    /// Fails with [`DomError::InvalidState`] while connecting. While
    /// closing or closed the data is discarded (and still counted in
    /// `bufferedAmount`). Past [`WebOptions::with_max_buffered_amount`] the
    /// WebSocket is flagged as full and its connection closed.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) -> Result<(), wsx::web::DomError> {
    /// ws.send("text")?;
    /// ws.send(vec![0u8, 1, 2])?;
    /// # Ok(()) }
    /// ```
    pub fn send(&self, data: impl Into<Data>) -> Result<(), DomError> {
        let data = data.into();
        let n = data.len() as u64;
        let state = lock(&self.shared.state);
        if *state == ReadyState::Connecting {
            return Err(DomError::InvalidState);
        }
        let total = self.shared.buffered.fetch_add(n, Ordering::SeqCst).saturating_add(n);
        if *state != ReadyState::Open || self.shared.full.load(Ordering::SeqCst) {
            return Ok(());
        }
        if total > self.shared.max_buffered {
            self.shared.full.store(true, Ordering::SeqCst);
            self.shared.abort.notify_one();
            return Ok(());
        }
        let msg = match data {
            Data::Text(s) => Message::Text(Utf8Bytes::from(s)),
            Data::Blob(b) | Data::ArrayBuffer(b) => Message::Binary(b),
        };
        // Under the state lock, so nothing follows a close() in the queue.
        // If the task has ended, the data is discarded.
        let _ = self.outbox.push(msg);
        Ok(())
    }

    /// `close(code, reason)`: start the closing handshake.
    ///
    /// `code` must be 1000 or in 3000–4999, else [`DomError::InvalidAccess`];
    /// `reason` at most 123 bytes of UTF-8, else [`DomError::Syntax`]. A
    /// non-empty reason without a code is [`DomError::InvalidAccess`] (a
    /// deviation: the standard does not throw there; see docs/web.md).
    /// `close(None, None)` sends a close frame without a body.
    ///
    /// While connecting, the connection is failed instead (`error`, then
    /// `close` with 1006). While closing or closed it does nothing. Data
    /// sent before `close()` goes out before the close frame.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) -> Result<(), wsx::web::DomError> {
    /// ws.close(Some(4000), Some("done"))?;
    /// assert_eq!(ws.close(Some(1001), None), Err(wsx::web::DomError::InvalidAccess));
    /// # Ok(()) }
    /// ```
    pub fn close(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), DomError> {
        if let Some(c) = code {
            if c != 1000 && !(3000..=4999).contains(&c) {
                return Err(DomError::InvalidAccess);
            }
        }
        let reason = reason.unwrap_or("");
        if code.is_none() && !reason.is_empty() {
            return Err(DomError::InvalidAccess);
        }
        if reason.len() > MAX_REASON_BYTES {
            return Err(DomError::Syntax);
        }
        let mut state = lock(&self.shared.state);
        match *state {
            ReadyState::Closing | ReadyState::Closed => {}
            ReadyState::Connecting => {
                *state = ReadyState::Closing;
                self.shared.close_called.store(true, Ordering::SeqCst);
                self.shared.abort.notify_one();
            }
            ReadyState::Open => {
                *state = ReadyState::Closing;
                self.shared.close_called.store(true, Ordering::SeqCst);
                let frame = code.map(|c| CloseFrame { code: CloseCode::from(c), reason: Utf8Bytes::from(reason) });
                let _ = self.outbox.push(Message::Close(frame));
            }
        }
        Ok(())
    }

    fn set_handler(&self, t: EventType, h: Box<dyn FnMut(Event) + Send>) {
        lock(&self.shared.handlers)[slot(t)] = Some(Arc::new(Mutex::new(h)));
    }

    /// `onopen`: call `f` when the connection opens. Replaces the previous
    /// callback; may be set at any time (events already queued for
    /// [`next_event`](WebSocket::next_event) stay there). Callbacks run on
    /// the connection's task, one at a time and in order: they should not
    /// block.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// let sender = ws.clone();
    /// ws.on_open(move || sender.send("hello").unwrap());
    /// # }
    /// ```
    pub fn on_open(&self, mut f: impl FnMut() + Send + 'static) {
        self.set_handler(EventType::Open, Box::new(move |_| f()));
    }

    /// `onmessage`: call `f` with every message; see
    /// [`on_open`](WebSocket::on_open).
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// ws.on_message(|m| println!("{:?}", m.data()));
    /// # }
    /// ```
    pub fn on_message(&self, mut f: impl FnMut(MessageEvent) + Send + 'static) {
        self.set_handler(
            EventType::Message,
            Box::new(move |e| {
                if let Event::Message(m) = e {
                    f(m)
                }
            }),
        );
    }

    /// `onerror`: call `f` when the connection is failed, with why; see
    /// [`on_open`](WebSocket::on_open).
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// ws.on_error(|e| eprintln!("connection failed: {}", e.message()));
    /// # }
    /// ```
    pub fn on_error(&self, mut f: impl FnMut(ErrorEvent) + Send + 'static) {
        self.set_handler(
            EventType::Error,
            Box::new(move |e| {
                if let Event::Error(e) = e {
                    f(e)
                }
            }),
        );
    }

    /// `onclose`: call `f` when the connection is closed; see
    /// [`on_open`](WebSocket::on_open). All callbacks are dropped after it
    /// ran.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// ws.on_close(|c| println!("closed: {} {:?} clean={}", c.code(), c.reason(), c.was_clean()));
    /// # }
    /// ```
    pub fn on_close(&self, mut f: impl FnMut(CloseEvent) + Send + 'static) {
        self.set_handler(
            EventType::Close,
            Box::new(move |e| {
                if let Event::Close(c) = e {
                    f(c)
                }
            }),
        );
    }

    /// Remove the callback of an event type (`ws.onmessage = null`): its
    /// events go to [`next_event`](WebSocket::next_event) again.
    ///
    /// ```no_run
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// ws.clear_handler(wsx::web::EventType::Message);
    /// # }
    /// ```
    pub fn clear_handler(&self, t: EventType) {
        lock(&self.shared.handlers)[slot(t)] = None;
    }

    /// The next event that no callback took, waiting for it; `None` after
    /// the `close` event (the last one) has been delivered. Each event goes
    /// to one reader: clones of a handle share the queue.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), wsx::web::DomError> {
    /// let ws = wsx::web::WebSocket::new("ws://127.0.0.1:9001/", &[])?;
    /// while let Some(event) = ws.next_event().await {
    ///     println!("{event:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_event(&self) -> Option<Event> {
        loop {
            let mut notified = pin!(self.shared.queue_notify.notified());
            notified.as_mut().enable();
            if let Some(e) = self.shared.try_pop() {
                return e;
            }
            notified.await;
        }
    }

    /// The events as a [`Stream`]: [`next_event`](WebSocket::next_event)
    /// until it returns `None`.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// # async fn run(ws: wsx::web::WebSocket) {
    /// let mut events = ws.events();
    /// while let Some(event) = events.next().await {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> Events {
        Events { ws: self.clone(), next: None }
    }
}

type NextEvent = Pin<Box<dyn Future<Output = Option<Event>> + Send>>;

/// The events of a [`WebSocket`] as a [`Stream`]; see [`WebSocket::events`].
pub struct Events {
    ws: WebSocket,
    next: Option<NextEvent>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").field("ws", &self.ws).finish()
    }
}

impl Stream for Events {
    type Item = Event;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        let ws = &this.ws;
        let next = this.next.get_or_insert_with(|| {
            let ws = ws.clone();
            Box::pin(async move { ws.next_event().await })
        });
        let item = std::task::ready!(next.as_mut().poll(cx));
        this.next = None;
        Poll::Ready(item)
    }
}
