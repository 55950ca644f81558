//! The browser API for plain threads: [`WebSocket`] needs no runtime in the
//! caller. Every blocking WebSocket (and every `wsx::web::WebSocket`
//! created outside a tokio runtime) runs on one shared background
//! runtime, on a thread named `wsx-web` started on first use; callbacks
//! run on that thread.

use super::{BinaryType, CloseEvent, DomError, Event, EventType, MessageEvent, ReadyState, WebOptions};
use std::fmt;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The shared background runtime, started on first use.
fn background() -> Option<&'static tokio::runtime::Handle> {
    static RT: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let rt = match rt {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the wsx::web background runtime");
                return None;
            }
        };
        let handle = rt.handle().clone();
        let thread =
            std::thread::Builder::new().name("wsx-web".into()).spawn(move || rt.block_on(std::future::pending::<()>()));
        match thread {
            Ok(_) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the wsx::web background thread");
                None
            }
        }
    })
    .as_ref()
}

/// Run a WebSocket's task on the background runtime. If that runtime
/// cannot be started, the task is dropped, which leaves the WebSocket
/// closed without events (and logs why).
pub(super) fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    if let Some(rt) = background() {
        drop(rt.spawn(task));
    }
}

/// `next_event_timeout` gave up waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no event within the timeout")]
pub struct Timeout;

/// [`wsx::web::WebSocket`](super::WebSocket) for code without a tokio
/// runtime: the same API, with a blocking
/// [`next_event`](WebSocket::next_event). The connection runs on the
/// shared background runtime. `Clone + Send + Sync`.
///
/// ```no_run
/// use wsx::web::{blocking::WebSocket, Event};
///
/// # fn run() -> Result<(), wsx::web::DomError> {
/// let ws = WebSocket::new("ws://127.0.0.1:9001/", &[])?;
/// while let Some(event) = ws.next_event() {
///     match event {
///         Event::Open => ws.send("hello")?,
///         Event::Message(m) => {
///             println!("{:?}", m.data());
///             ws.close(None, None)?;
///         }
///         Event::Error(e) => eprintln!("failed: {}", e.message()),
///         Event::Close(c) => println!("closed with {}", c.code()),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebSocket {
    inner: super::WebSocket,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::WebSocket").field(&self.inner).finish()
    }
}

impl WebSocket {
    /// `new WebSocket(url, protocols)`; see
    /// [`wsx::web::WebSocket::new`](super::WebSocket::new). Works from any
    /// thread, with or without a runtime.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), wsx::web::DomError> {
    /// let ws = wsx::web::blocking::WebSocket::new("ws://127.0.0.1:9001/", &["chat"])?;
    /// # Ok(()) }
    /// ```
    pub fn new(url: &str, protocols: &[&str]) -> Result<Self, DomError> {
        Self::with_options(url, protocols, &WebOptions::default())
    }

    /// [`WebSocket::new`] with settings.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), wsx::web::DomError> {
    /// let options = wsx::web::WebOptions::new().with_max_buffered_amount(1 << 20);
    /// let ws = wsx::web::blocking::WebSocket::with_options("ws://127.0.0.1:9001/", &[], &options)?;
    /// # Ok(()) }
    /// ```
    pub fn with_options(url: &str, protocols: &[&str], options: &WebOptions) -> Result<Self, DomError> {
        let (inner, task) = super::WebSocket::create(url, protocols, options)?;
        spawn(task);
        Ok(Self { inner })
    }

    /// The async handle to the same WebSocket.
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// let handle: &wsx::web::WebSocket = ws.as_async();
    /// # }
    /// ```
    pub fn as_async(&self) -> &super::WebSocket {
        &self.inner
    }

    /// The next event that no callback took, blocking until there is one;
    /// `None` after the `close` event. Do not call it from a callback (that
    /// would block the thread the events come from).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// while let Some(event) = ws.next_event() {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    pub fn next_event(&self) -> Option<Event> {
        let shared = &self.inner.shared;
        let mut q = super::lock(&shared.queue);
        loop {
            if let Some(e) = shared.pop_locked(&mut q) {
                return e;
            }
            q = shared.queue_cond.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// [`next_event`](WebSocket::next_event), giving up after `timeout`.
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// match ws.next_event_timeout(std::time::Duration::from_secs(1)) {
    ///     Ok(Some(event)) => println!("{event:?}"),
    ///     Ok(None) => println!("closed"),
    ///     Err(_) => println!("nothing yet"),
    /// }
    /// # }
    /// ```
    pub fn next_event_timeout(&self, timeout: Duration) -> Result<Option<Event>, Timeout> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            // A timeout too far to represent: wait without one.
            return Ok(self.next_event());
        };
        let shared = &self.inner.shared;
        let mut q = super::lock(&shared.queue);
        loop {
            if let Some(e) = shared.pop_locked(&mut q) {
                return Ok(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Timeout);
            }
            q = match shared.queue_cond.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// See [`wsx::web::WebSocket::url`](super::WebSocket::url).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// println!("{}", ws.url());
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        self.inner.url()
    }

    /// See [`wsx::web::WebSocket::ready_state`](super::WebSocket::ready_state).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// println!("{:?}", ws.ready_state());
    /// # }
    /// ```
    pub fn ready_state(&self) -> ReadyState {
        self.inner.ready_state()
    }

    /// See [`wsx::web::WebSocket::buffered_amount`](super::WebSocket::buffered_amount).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// println!("{} bytes not yet sent", ws.buffered_amount());
    /// # }
    /// ```
    pub fn buffered_amount(&self) -> u64 {
        self.inner.buffered_amount()
    }

    /// See [`wsx::web::WebSocket::protocol`](super::WebSocket::protocol).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// println!("{}", ws.protocol());
    /// # }
    /// ```
    pub fn protocol(&self) -> &str {
        self.inner.protocol()
    }

    /// See [`wsx::web::WebSocket::extensions`](super::WebSocket::extensions).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// println!("{}", ws.extensions());
    /// # }
    /// ```
    pub fn extensions(&self) -> &str {
        self.inner.extensions()
    }

    /// See [`wsx::web::WebSocket::binary_type`](super::WebSocket::binary_type).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// println!("{:?}", ws.binary_type());
    /// # }
    /// ```
    pub fn binary_type(&self) -> BinaryType {
        self.inner.binary_type()
    }

    /// See [`wsx::web::WebSocket::set_binary_type`](super::WebSocket::set_binary_type).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// ws.set_binary_type(wsx::web::BinaryType::ArrayBuffer);
    /// # }
    /// ```
    pub fn set_binary_type(&self, t: BinaryType) {
        self.inner.set_binary_type(t)
    }

    /// See [`wsx::web::WebSocket::send`](super::WebSocket::send).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) -> Result<(), wsx::web::DomError> {
    /// ws.send("hello")?;
    /// # Ok(()) }
    /// ```
    pub fn send(&self, data: impl Into<super::Data>) -> Result<(), DomError> {
        self.inner.send(data)
    }

    /// See [`wsx::web::WebSocket::close`](super::WebSocket::close).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) -> Result<(), wsx::web::DomError> {
    /// ws.close(Some(1000), Some("bye"))?;
    /// # Ok(()) }
    /// ```
    pub fn close(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), DomError> {
        self.inner.close(code, reason)
    }

    /// See [`wsx::web::WebSocket::on_open`](super::WebSocket::on_open); it
    /// runs on the background thread.
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// ws.on_open(|| println!("open"));
    /// # }
    /// ```
    pub fn on_open(&self, f: impl FnMut() + Send + 'static) {
        self.inner.on_open(f)
    }

    /// See [`wsx::web::WebSocket::on_message`](super::WebSocket::on_message).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// ws.on_message(|m| println!("{:?}", m.data()));
    /// # }
    /// ```
    pub fn on_message(&self, f: impl FnMut(MessageEvent) + Send + 'static) {
        self.inner.on_message(f)
    }

    /// See [`wsx::web::WebSocket::on_error`](super::WebSocket::on_error).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// ws.on_error(|e| eprintln!("failed: {}", e.message()));
    /// # }
    /// ```
    pub fn on_error(&self, f: impl FnMut(super::ErrorEvent) + Send + 'static) {
        self.inner.on_error(f)
    }

    /// See [`wsx::web::WebSocket::on_close`](super::WebSocket::on_close).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// ws.on_close(|c| println!("closed: {}", c.code()));
    /// # }
    /// ```
    pub fn on_close(&self, f: impl FnMut(CloseEvent) + Send + 'static) {
        self.inner.on_close(f)
    }

    /// See [`wsx::web::WebSocket::clear_handler`](super::WebSocket::clear_handler).
    ///
    /// ```no_run
    /// # fn run(ws: wsx::web::blocking::WebSocket) {
    /// ws.clear_handler(wsx::web::EventType::Open);
    /// # }
    /// ```
    pub fn clear_handler(&self, t: EventType) {
        self.inner.clear_handler(t)
    }
}
