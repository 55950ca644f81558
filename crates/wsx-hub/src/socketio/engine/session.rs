//! A session's shared state: its outbox and receiver, the heartbeat, the
//! transport in use, and how it closes.

use super::{CloseReason, EngineInner, EngineSocket, Incoming, Transport, INCOMING_CAPACITY};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Waker;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use wsx::server::{Outbox, OutboxReceiver, RequestHead};
use wsx::Message;

/// How long a session the client closed over polling waits for a GET
/// that raced the close (it gets a noop).
const CLIENT_CLOSE_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

pub(crate) struct Session {
    pub(super) sid: Arc<str>,
    engine: Weak<EngineInner>,
    pub(super) outbox: Outbox,
    incoming: mpsc::Sender<Incoming>,
    pub(super) closed: watch::Sender<Option<CloseReason>>,
    /// Wakes the session's task: a pong, a close, a drained linger.
    wake: Notify,
    state: Mutex<State>,
}

pub(super) struct State {
    pub(super) transport: Transport,
    /// The outbox's receiver while polling (a WebSocket's pump owns it).
    pub(super) rx: Option<OutboxReceiver>,
    /// A message taken from the outbox that did not fit in a polling
    /// response: it goes first next time.
    pub(super) pending: Option<Message>,
    /// A polling GET is waiting, and its waker.
    pub(super) get_active: bool,
    pub(super) get_waker: Option<Waker>,
    /// A polling POST is being read.
    pub(super) post_active: bool,
    /// A WebSocket is upgrading this session.
    pub(super) probing: bool,
    /// It answered the probe: GETs get a noop at once.
    pub(super) upgrading: bool,
    /// When the next ping is due (nominally); the pong is due within the
    /// ping timeout after it.
    pub(super) ping_due: Instant,
    pub(super) awaiting_pong: bool,
    /// Closed on polling with no GET waiting: kept until a GET takes the
    /// close packet (closed by the server) or a noop (closed by the
    /// client, whose last GET may race its close), or a while passes.
    pub(super) linger: bool,
}

impl Session {
    /// A new session and the socket for `on_open`.
    pub(super) fn new(
        engine: &Arc<EngineInner>,
        transport: Transport,
        head: RequestHead,
    ) -> (Arc<Session>, EngineSocket) {
        let config = &engine.config;
        let (outbox, rx) = Outbox::new(config.outbox);
        let (tx, incoming) = mpsc::channel(INCOMING_CAPACITY);
        let (closed, closed_rx) = watch::channel(None);
        let sid: Arc<str> = super::packet::new_sid().into();
        let session = Arc::new(Session {
            sid,
            engine: Arc::downgrade(engine),
            outbox,
            incoming: tx,
            closed,
            wake: Notify::new(),
            state: Mutex::new(State {
                transport,
                rx: Some(rx),
                pending: None,
                get_active: false,
                get_waker: None,
                post_active: false,
                probing: false,
                upgrading: false,
                ping_due: Instant::now() + config.ping_interval,
                awaiting_pong: false,
                linger: false,
            }),
        });
        let socket = EngineSocket { session: session.clone(), head, incoming, closed: closed_rx };
        (session, socket)
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn transport(&self) -> Transport {
        self.state().transport
    }

    pub(super) fn close_reason(&self) -> Option<CloseReason> {
        *self.closed.borrow()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    /// Whether the pong deadline (nominal: ping due + ping timeout) has
    /// passed, whether or not the timer has fired yet.
    pub(super) fn deadline_passed(&self, engine: &EngineInner) -> bool {
        Instant::now() >= self.state().ping_due + engine.config.ping_timeout
    }

    /// A pong came: the next ping is an interval from now.
    pub(super) fn on_pong(&self, engine: &EngineInner) {
        let mut st = self.state();
        if st.awaiting_pong {
            st.awaiting_pong = false;
            st.ping_due = Instant::now() + engine.config.ping_interval;
            drop(st);
            self.wake.notify_one();
        }
    }

    /// Hand a message to the app, waiting for room; false once the
    /// session is closed (or the app dropped its socket: that closes it).
    pub(super) async fn deliver(&self, msg: Incoming) -> bool {
        let mut closed = self.closed.subscribe();
        if closed.borrow().is_some() {
            return false;
        }
        tokio::select! {
            r = self.incoming.send(msg) => {
                if r.is_err() {
                    self.close(CloseReason::ServerClose);
                    return false;
                }
                true
            }
            _ = closed.wait_for(Option::is_some) => false,
        }
    }

    /// End the session (the first reason wins): the close packet `1` is
    /// queued (unless the client closed or left, or the outbox
    /// overflowed), waiting requests and tasks are woken, and the session
    /// leaves the engine's map (a polling one closed by the server with
    /// no GET waiting stays until a GET takes the `1`, or a while).
    pub(super) fn close(&self, reason: CloseReason) -> bool {
        // All under the state lock, which every request takes to look at
        // the session: none sees the session closed without its close
        // packet queued or its linger decided.
        let mut st = self.state();
        let mut first = false;
        self.closed.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                first = true;
            }
            first
        });
        if !first {
            return false;
        }
        let close_packet =
            !matches!(reason, CloseReason::ClientClose | CloseReason::TransportClose | CloseReason::SlowConsumer);
        if close_packet {
            let _ = self.outbox.push(Message::text("1"));
        }
        st.linger = st.transport == Transport::Polling
            && !st.get_active
            && !st.upgrading
            && matches!(reason, CloseReason::ServerClose | CloseReason::ServerShutdown | CloseReason::ClientClose);
        let linger = st.linger;
        let waker = st.get_waker.take();
        drop(st);
        tracing::debug!(sid = %self.sid, %reason, "engine.io session closed");
        if let Some(w) = waker {
            w.wake();
        }
        if !linger {
            self.leave();
        }
        self.wake.notify_one();
        true
    }

    /// Leave the engine's map.
    pub(super) fn leave(&self) {
        if let Some(engine) = self.engine.upgrade() {
            engine.remove(&self.sid);
        }
    }

    /// Wake whatever waits on this session (a forced end).
    pub(super) fn wake_all(&self) {
        self.close(CloseReason::ServerShutdown);
        let waker = self.state().get_waker.take();
        if let Some(w) = waker {
            w.wake();
        }
        self.wake.notify_one();
    }

    /// A GET took what a lingering session had left: it may go.
    pub(super) fn drained(&self) {
        let mut st = self.state();
        if st.linger {
            st.linger = false;
            drop(st);
            self.leave();
            self.wake.notify_one();
        }
    }

    /// The session's task: pings every interval, closes the session when a
    /// pong is late or the outbox overflows, and removes a lingering
    /// session after a while. Ends with the session.
    pub(super) async fn run(self: Arc<Self>, engine: Arc<EngineInner>) {
        let (interval, timeout) = (engine.config.ping_interval, engine.config.ping_timeout);
        drop(engine);
        let mut closed = self.closed.subscribe();
        loop {
            if closed.borrow().is_some() {
                break;
            }
            let wake_at = {
                let st = self.state();
                if st.awaiting_pong {
                    st.ping_due + timeout
                } else {
                    st.ping_due
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {
                    let now = Instant::now();
                    let mut st = self.state();
                    if now >= st.ping_due + timeout {
                        drop(st);
                        self.close(CloseReason::PingTimeout);
                        break;
                    }
                    if !st.awaiting_pong && now >= st.ping_due {
                        st.awaiting_pong = true;
                        drop(st);
                        let _ = self.outbox.push(Message::text("2"));
                    }
                }
                () = self.wake.notified() => {}
                _ = closed.changed() => {}
                () = self.outbox.overflowed() => {
                    self.close(CloseReason::SlowConsumer);
                    break;
                }
            }
        }
        // A lingering session waits for a GET to take its close packet
        // (for the client's own close, only for the GET it sent with it).
        let linger = match self.close_reason() {
            Some(CloseReason::ClientClose) => CLIENT_CLOSE_LINGER.min(interval + timeout),
            _ => interval + timeout,
        };
        let until = Instant::now() + linger;
        while self.state().linger {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {
                    self.drained();
                    break;
                }
                () = self.wake.notified() => {}
            }
        }
        // Unless a GET still takes its last packets, the outbox of a
        // polling session takes nothing more (pushes get `Closed`).
        let mut st = self.state();
        if !st.get_active && st.transport == Transport::Polling && !st.probing {
            st.rx = None;
            st.pending = None;
        }
    }
}
