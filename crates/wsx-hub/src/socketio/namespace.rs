//! A namespace's handlers: middlewares run on CONNECT, the connection
//! hook, one handler per event name, and the disconnection hook. Shared
//! by every socket of the namespace (a socket holds none of its own).

use super::payload::Payload;
use super::socket::{Received, Socket};
use crate::error::HandlerError;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub(crate) type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type EventFn = Arc<dyn Fn(Socket, Received) -> BoxFut<Result<(), HandlerError>> + Send + Sync>;
type MiddlewareFn = Arc<dyn Fn(Arc<Handshake>) -> BoxFut<Result<(), ConnectError>> + Send + Sync>;
type ConnectFn = Arc<dyn Fn(Socket) -> BoxFut<()> + Send + Sync>;
type DisconnectFn = Arc<dyn Fn(&Socket, DisconnectReason) + Send + Sync>;

/// What a client sent to connect to a namespace: the Engine.IO handshake
/// request and the CONNECT packet's auth payload.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The namespace asked for.
    pub namespace: String,
    /// The CONNECT payload (`{}` when there was none).
    pub auth: Value,
    /// The HTTP request that opened the session (query, headers, peer).
    pub request: wsx::server::RequestHead,
}

/// A middleware's refusal: the client gets CONNECT_ERROR with this message
/// and data (`connect_error` in the official client, `err.message` and
/// `err.data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The message.
    pub message: String,
    /// Extra data for the client.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), data: None }
    }

    /// With data for the client.
    pub fn data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// Why a socket left its namespace (the reason strings of Socket.IO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client disconnected from the namespace (`socket.disconnect()`).
    ClientNamespaceDisconnect,
    /// The server disconnected it ([`Socket::disconnect`]).
    ServerNamespaceDisconnect,
    /// The connection was closed (by the client, or lost).
    TransportClose,
    /// The server closed the connection ([`Socket::close`], or no CONNECT
    /// in time).
    ForcedClose,
    /// The connection failed.
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client sent something that is not a packet.
    ParseError,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The client did not read what it was sent.
    SlowConsumer,
}

impl DisconnectReason {
    /// The reason string, as the official server gives it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::SlowConsumer => "slow consumer",
        }
    }

    /// Whether the client may come back and recover its state: it lost
    /// its connection rather than leaving its namespace (the reasons
    /// upstream recovers from, and a slow consumer's).
    pub(crate) fn recoverable(&self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ForcedClose
                | DisconnectReason::ServerShuttingDown
                | DisconnectReason::SlowConsumer
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The handlers of a namespace.
///
/// ```
/// use wsx_hub::socketio::{ConnectError, Namespace, Payload};
/// let chat = Namespace::new()
///     .middleware(|hs| async move {
///         match hs.auth["token"].as_str() {
///             Some("secret") => Ok(()),
///             _ => Err(ConnectError::new("unauthorized")),
///         }
///     })
///     .on_connect(|socket| async move {
///         let _ = socket.emit("welcome", serde_json::json!({"id": socket.id()}));
///     })
///     .on("say", |socket, msg| async move {
///         let room: String = msg.payload().get(0)?;
///         socket.to(&room).emit("said", msg.payload().clone());
///         msg.ack(Payload::from(serde_json::json!(true)));
///         Ok(())
///     });
/// # drop(chat);
/// ```
#[derive(Clone, Default)]
pub struct Namespace {
    pub(crate) middlewares: Vec<MiddlewareFn>,
    pub(crate) on_connect: Option<ConnectFn>,
    pub(crate) handlers: HashMap<String, EventFn>,
    pub(crate) fallback: Option<EventFn>,
    pub(crate) on_disconnect: Option<DisconnectFn>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut events: Vec<&String> = self.handlers.keys().collect();
        events.sort();
        f.debug_struct("Namespace").field("middlewares", &self.middlewares.len()).field("events", &events).finish()
    }
}

impl Namespace {
    /// A namespace without handlers (clients may connect; events are
    /// ignored).
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `f` on every CONNECT to this namespace, in the order added; the
    /// first refusal is the answer (CONNECT_ERROR).
    pub fn middleware<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Arc<Handshake>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.middlewares.push(Arc::new(move |hs| Box::pin(f(hs))));
        self
    }

    /// Run `f` for each socket that connected (after its CONNECT answer).
    pub fn on_connect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// Handle the event `name`. Handlers of one socket start in the order
    /// their events arrived; a handler that awaits lets the next start.
    /// An error is logged (the client's ack, if it asked for one, is not
    /// sent).
    pub fn on<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Socket, Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handlers.insert(name.into(), Arc::new(move |s, r| Box::pin(f(s, r))));
        self
    }

    /// Handle the event `name` as a request: what `f` returns is the ack
    /// (an error answers `{"error": "<message>"}`). A client that asked for
    /// no ack gets nothing.
    ///
    /// ```
    /// use wsx_hub::socketio::{Namespace, Payload};
    /// #[derive(serde::Deserialize)]
    /// struct Sum { a: i64, b: i64 }
    /// let ns = Namespace::new().on_request("sum", |_socket, msg| async move {
    ///     let Sum { a, b } = msg.data()?;
    ///     Ok(Payload::from(serde_json::json!(a + b)))
    /// });
    /// # drop(ns);
    /// ```
    pub fn on_request<F, Fut, P>(self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Socket, Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<P, HandlerError>> + Send + 'static,
        P: Into<Payload> + Send + 'static,
    {
        let f = Arc::new(f);
        self.on(name, move |socket, msg| {
            let f = f.clone();
            async move {
                let ack = msg.acker();
                let answer = match f(socket, msg).await {
                    Ok(p) => p.into(),
                    Err(e) => Payload::from(serde_json::json!({"error": e.to_string()})),
                };
                if let Some(ack) = ack {
                    ack.send(answer);
                }
                Ok(())
            }
        })
    }

    /// Handle the events that have no handler of their own.
    pub fn on_any<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket, Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.fallback = Some(Arc::new(move |s, r| Box::pin(f(s, r))));
        self
    }

    /// Run `f` when a socket leaves the namespace, with why.
    pub fn on_disconnect(mut self, f: impl Fn(&Socket, DisconnectReason) + Send + Sync + 'static) -> Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }

    pub(crate) fn handler(&self, name: &str) -> Option<&EventFn> {
        self.handlers.get(name).or(self.fallback.as_ref())
    }

    pub(crate) async fn admit(&self, hs: &Arc<Handshake>) -> Result<(), ConnectError> {
        for m in &self.middlewares {
            m(hs.clone()).await?;
        }
        Ok(())
    }
}
