//! A namespace's handlers: middlewares run on CONNECT, the connection
//! hook, one handler per event name, and the disconnection hook. Shared
//! by every socket of the namespace (a socket holds none of its own).

use super::connect::{ConnectError, DisconnectReason, Handshake};
use super::payload::Payload;
use super::socket::{Received, Socket};
use crate::error::HandlerError;
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
