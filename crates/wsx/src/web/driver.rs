//! The background task of a `wsx::web::WebSocket`: wait for the turn at the
//! host, connect, then move messages between the handles and the
//! connection, and fire the events.

use super::registry::{self, Slot};
use super::{CloseEvent, ErrorEvent, EventType, Pending, ReadyState, Shared};
use crate::server::{OutboxReceiver, Pump};
use crate::{CloseFrame, Config, Message, WebSocket as Connection};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite};

/// Everything the task needs to connect, decided by the constructor.
pub(super) struct Plan {
    pub(super) request: Result<http::Request<()>, String>,
    pub(super) config: Config,
    /// The subprotocols offered, as sent ("" for none).
    pub(super) offered_protocols: String,
    pub(super) host_key: String,
    pub(super) bad_port: bool,
    /// A place under the cap on connections; `None` when it was reached.
    pub(super) slot: Option<Slot>,
}

/// How the connection ended.
struct Outcome {
    /// The close frame received, if one was.
    received: Option<Option<CloseFrame>>,
    /// The connection did not end with a completed closing handshake.
    failed: bool,
    /// Why it was failed, for the `error` event.
    why: Option<String>,
}

impl Outcome {
    fn failed(why: impl Into<String>) -> Self {
        let why = why.into();
        tracing::debug!(error = %why, "WebSocket connection failed");
        Self { received: None, failed: true, why: Some(why) }
    }
}

/// Whichever of two futures finishes first.
enum Either<A, B> {
    Left(A),
    Right(B),
}

async fn first<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(x) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(x));
        }
        if let Poll::Ready(x) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(x));
        }
        Poll::Pending
    })
    .await
}

/// Completes when connecting should stop: `close()` was called, or every
/// handle is gone and nobody listens for events.
async fn cancelled(shared: &Shared, outbox: &OutboxReceiver) {
    let abandoned = async {
        // Nothing is queued while connecting (`send()` fails then): this
        // waits for the last handle to go.
        while poll_fn(|cx| outbox.poll_take(cx)).await.is_some() {}
        if [EventType::Open, EventType::Message, EventType::Error, EventType::Close]
            .into_iter()
            .any(|t| shared.has_handler(t))
        {
            std::future::pending::<()>().await;
        }
    };
    first(shared.abort.notified(), abandoned).await;
}

/// Marks the WebSocket closed if the task is dropped before it finished
/// (its runtime shut down), so that readers do not wait forever.
struct Finish {
    shared: Arc<Shared>,
    slot: Option<Slot>,
    done: bool,
}

impl Finish {
    /// The standard's "the WebSocket connection is closed" task: CLOSED,
    /// then `error` if the connection was failed, then `close`.
    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        let fire_error = outcome.received.is_none();
        let (code, reason, was_clean) = match outcome.received {
            Some(Some(f)) => (u16::from(f.code), f.reason.as_str().to_owned(), !outcome.failed),
            Some(None) => (1005, String::new(), !outcome.failed),
            None => (1006, String::new(), false),
        };
        self.shared.set_state(ReadyState::Closed);
        // The place under the cap is free before the events fire, so their
        // handlers may open a new connection.
        drop(self.slot.take());
        if fire_error {
            let why = outcome.why.unwrap_or_else(|| "the connection was lost without a close frame".into());
            self.shared.dispatch(Pending::Error(ErrorEvent::new(why)));
        }
        self.shared.dispatch(Pending::Close(CloseEvent::new(code, reason, was_clean)));
        self.shared.end();
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.done {
            self.shared.set_state(ReadyState::Closed);
            self.shared.end();
        }
    }
}

/// The task: connect, run the connection, fire the last events.
pub(super) async fn run(shared: Arc<Shared>, outbox: OutboxReceiver, mut plan: Plan) {
    let finish = Finish { shared: shared.clone(), slot: plan.slot.take(), done: false };
    let outcome = if finish.slot.is_none() {
        Outcome::failed(format!(
            "too many WebSocket connections: at most {} may be live (wsx::web::set_max_connections)",
            registry::max_connections()
        ))
    } else {
        session(&shared, outbox, plan).await
    };
    finish.finish(outcome);
}

async fn session(shared: &Shared, outbox: OutboxReceiver, plan: Plan) -> Outcome {
    if plan.bad_port {
        return Outcome::failed(format!("{}: browsers block this port (Fetch's bad ports)", shared.url));
    }
    let request = match plan.request {
        Ok(r) => r,
        Err(e) => return Outcome::failed(format!("{}: the URL cannot be requested: {e}", shared.url)),
    };
    // RFC 6455 §4.1, client requirement 2: one connection per host:port
    // in CONNECTING; the others wait for it to open or fail.
    let turn = match first(registry::wait_turn(plan.host_key), cancelled(shared, &outbox)).await {
        Either::Left(turn) => turn,
        Either::Right(()) => return Outcome::failed(CLOSED_WHILE_CONNECTING),
    };
    let connected = first(crate::connect_with(request, &plan.config), cancelled(shared, &outbox)).await;
    drop(turn);
    match connected {
        Either::Left(Ok((ws, response))) => established(shared, outbox, ws, &response, &plan.offered_protocols).await,
        Either::Left(Err(e)) => Outcome::failed(e.to_string()),
        Either::Right(()) => Outcome::failed(CLOSED_WHILE_CONNECTING),
    }
}

const CLOSED_WHILE_CONNECTING: &str = "close() was called before the connection was established";

/// One turn of the connection loop.
enum Step {
    Received(Option<crate::Result<Message>>),
    /// Every handle is gone.
    Abandoned,
    /// Flagged as full: close the connection.
    Full,
}

async fn established<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    outbox: OutboxReceiver,
    ws: Connection<S>,
    response: &http::Response<()>,
    offered_protocols: &str,
) -> Outcome {
    // WebSockets Standard, "establish a WebSocket connection": a server that
    // selects none of the subprotocols offered fails the connection.
    if !offered_protocols.is_empty() && ws.protocol().is_none() {
        return Outcome::failed(format!("the server selected none of the subprotocols offered ({offered_protocols})"));
    }
    let extensions = response
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    {
        let mut state = super::lock(&shared.state);
        if *state != ReadyState::Connecting {
            // close() was called while the handshake finished.
            return Outcome::failed(CLOSED_WHILE_CONNECTING);
        }
        let _ = shared.protocol.set(ws.protocol().unwrap_or_default().to_owned());
        let _ = shared.extensions.set(extensions);
        *state = ReadyState::Open;
    }
    shared.dispatch(Pending::Open);

    let mut received = None;
    let mut failed = None;
    let mut handles = true;
    let mut full = pin!(shared.abort.notified());
    // What the handles queue moves into the connection as its write queue
    // drains, in order (a close after the data sent before it).
    let mut pump = Pump::new(ws, outbox);
    loop {
        let step = poll_fn(|cx| {
            if full.as_mut().poll(cx).is_ready() || shared.full.load(Ordering::SeqCst) {
                return Poll::Ready(Step::Full);
            }
            // Errors of the transport come back from poll_recv.
            let r = pump.poll_recv(cx);
            let written = pump.take_written();
            if written > 0 {
                shared.buffered.fetch_sub(written, Ordering::SeqCst);
            }
            if r.is_pending() && handles && pump.outbox_abandoned() {
                handles = false;
                return Poll::Ready(Step::Abandoned);
            }
            r.map(Step::Received)
        })
        .await;
        match step {
            Step::Received(Some(Ok(msg))) => match msg {
                Message::Text(_) | Message::Binary(_) => shared.dispatch(Pending::Message(msg)),
                Message::Close(frame) => {
                    received = Some(frame);
                    // The closing handshake is started: CLOSING.
                    let mut state = super::lock(&shared.state);
                    if *state == ReadyState::Open {
                        *state = ReadyState::Closing;
                    }
                }
                Message::Ping(_) | Message::Pong(_) => {}
            },
            Step::Received(Some(Err(e))) => {
                tracing::debug!(url = %shared.url, error = %e, "WebSocket connection failed");
                failed = Some(e.to_string());
                let mut state = super::lock(&shared.state);
                if *state == ReadyState::Open {
                    *state = ReadyState::Closing;
                }
            }
            Step::Received(None) => break,
            Step::Abandoned => {
                // Like a garbage-collected browser WebSocket: with nobody
                // listening, start the closing handshake without a code.
                let listened =
                    [EventType::Message, EventType::Error, EventType::Close].into_iter().any(|t| shared.has_handler(t));
                let mut state = super::lock(&shared.state);
                if !listened && *state == ReadyState::Open {
                    *state = ReadyState::Closing;
                    let _ = pump.websocket().queue(Message::Close(None));
                }
            }
            Step::Full => {
                // "Close the WebSocket connection": drop the transport.
                return Outcome::failed(format!(
                    "bufferedAmount went over its limit of {} bytes (WebOptions::with_max_buffered_amount)",
                    shared.max_buffered
                ));
            }
        }
    }
    Outcome { received, failed: failed.is_some(), why: failed }
}
