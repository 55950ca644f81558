//! The WebSocket transport, and the upgrade from polling to it.

use super::packet::{self, ErrorCode, Packet};
use super::polling::{busy, error, has_room};
use super::session::Session;
use super::{CloseReason, EngineInner, Transport};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use wsx::handshake::Accept;
use wsx::server::{OutboxReceiver, Pump, Request};
use wsx::{CloseCode, Message, WebSocket};

/// How long a closing WebSocket may take to flush and close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A WebSocket request: a new session (no `sid`), or an upgrade.
pub(super) async fn serve<S>(engine: Arc<EngineInner>, req: Request<S>, sid: Option<String>) -> wsx::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The engine's heartbeat, not wsx's keepalive; messages up to the
    // payload limit.
    let config = req
        .server()
        .config()
        .clone()
        .with_keepalive(Duration::ZERO, Duration::ZERO)
        .with_max_message_size(engine.config.max_payload);
    let Some(sid) = sid else {
        if !has_room(&engine) {
            return busy(&engine, req).await;
        }
        let head = req.head().clone();
        let ws = req.upgrade_with(Accept::new(), &config).await?;
        let opened = {
            let mut map = engine.map();
            if engine.stopping.load(std::sync::atomic::Ordering::SeqCst) || map.len() >= engine.config.max_sessions {
                None
            } else {
                let (session, socket) = Session::new(&engine, Transport::WebSocket, head);
                let open = packet::open_packet(&session.sid, false, &engine.config);
                let _ = session.outbox.push(Message::text(open));
                map.insert(session.sid.clone(), session.clone());
                Some((session, socket))
            }
        };
        let Some((session, socket)) = opened else {
            return refuse(ws).await;
        };
        let rx = session.state().rx.take();
        tokio::spawn(session.clone().run(engine.clone()));
        (engine.on_open)(socket);
        let Some(rx) = rx else { return Ok(()) };
        run(engine, session, ws, rx, None).await;
        return Ok(());
    };
    let Some(session) = engine.get(&sid) else {
        return error(&engine, req, ErrorCode::SessionIdUnknown).await;
    };
    let taken = {
        let mut st = session.state();
        if session.is_closed() || st.transport != Transport::Polling || st.probing {
            false
        } else {
            st.probing = true;
            true
        }
    };
    if !taken {
        // Another WebSocket has (or is taking) this session: this one is
        // closed at once.
        let ws = req.upgrade_with(Accept::new(), &config).await?;
        return refuse(ws).await;
    }
    // Undoes the probe however it ends, unless the session moved.
    let _guard = ProbeGuard(&session);
    let ws = req.upgrade_with(Accept::new(), &config).await?;
    let deadline = tokio::time::Instant::now() + engine.config.upgrade_timeout;
    match tokio::time::timeout_at(deadline, probe(&session, ws)).await {
        Ok(Some((ws, rx, pending))) => {
            run(engine, session.clone(), ws, rx, pending).await;
        }
        Ok(None) => {}
        Err(_) => tracing::debug!(sid = %session.sid, "upgrade timed out"),
    }
    Ok(())
}

/// Undoes a probe that did not complete: polling goes on.
struct ProbeGuard<'a>(&'a Session);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state();
        if st.transport == Transport::Polling {
            st.probing = false;
            st.upgrading = false;
            if self.0.is_closed() && !st.get_active {
                st.rx = None;
                st.pending = None;
            }
        }
    }
}

/// Close a WebSocket that gets no session.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) -> wsx::Result<()> {
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(CloseCode::Normal, "")).await;
    Ok(())
}

type Upgraded<S> = (WebSocket<S>, OutboxReceiver, Option<Message>);

/// The probe: `2probe` → `3probe` (GETs get a noop from then on), then
/// `5` moves the session to this WebSocket, with the outbox's receiver
/// and what a polling response left. `None`: the WebSocket failed, broke
/// the protocol, or the session closed.
async fn probe<S>(session: &Session, mut ws: WebSocket<S>) -> Option<Upgraded<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut closed = session.closed.subscribe();
    loop {
        let msg = tokio::select! {
            m = ws.recv() => m,
            _ = closed.wait_for(Option::is_some) => None,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) | Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
            _ => break,
        };
        match packet::parse_text(&text) {
            Some(Packet::Ping(data)) if data.as_ref() == b"probe" => {
                if ws.send(Message::text("3probe")).await.is_err() {
                    return None;
                }
                let mut st = session.state();
                st.upgrading = true;
                let waker = st.get_waker.take();
                drop(st);
                if let Some(w) = waker {
                    w.wake();
                }
            }
            Some(Packet::Upgrade) => {
                let mut st = session.state();
                if session.is_closed() {
                    break;
                }
                let Some(rx) = st.rx.take() else { break };
                st.transport = Transport::WebSocket;
                st.probing = false;
                st.upgrading = false;
                let pending = st.pending.take();
                let waker = st.get_waker.take();
                drop(st);
                if let Some(w) = waker {
                    w.wake();
                }
                tracing::debug!(sid = %session.sid, "upgraded to websocket");
                return Some((ws, rx, pending));
            }
            Some(Packet::Noop) => {}
            _ => break,
        }
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(CloseCode::Normal, "")).await;
    None
}

/// The WebSocket transport until the session ends: the outbox pumped to
/// the WebSocket, the client's packets handled.
async fn run<S>(
    engine: Arc<EngineInner>,
    session: Arc<Session>,
    mut ws: WebSocket<S>,
    rx: OutboxReceiver,
    pending: Option<Message>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(m) = pending {
        if ws.send(m).await.is_err() {
            session.close(CloseReason::TransportError);
            return;
        }
    }
    let mut pump = Pump::new(ws, rx);
    let mut closed = session.closed.subscribe();
    let ended = loop {
        if closed.borrow().is_some() {
            break None;
        }
        let msg = tokio::select! {
            biased;
            _ = closed.changed() => continue,
            m = pump.recv() => m,
        };
        let msg = match msg {
            None if session.outbox.is_overflowed() => break Some(CloseReason::SlowConsumer),
            None => break Some(CloseReason::TransportClose),
            Some(Err(wsx::Error::Protocol(e))) if e.close_code() == CloseCode::MessageTooBig => {
                break Some(CloseReason::PayloadTooLarge)
            }
            // The connection went away without a close frame: a close, as
            // upstream says, not an error.
            Some(Err(e)) if went_away(&e) => break Some(CloseReason::TransportClose),
            Some(Err(_)) => break Some(CloseReason::TransportError),
            Some(Ok(m)) => m,
        };
        match msg {
            Message::Text(t) => match packet::parse_text(&t) {
                Some(Packet::Message(m)) => {
                    // False once closed: the loop's check ends it.
                    session.deliver(m).await;
                }
                Some(Packet::Pong) => session.on_pong(&engine),
                Some(Packet::Ping(data)) => {
                    let mut pong = Vec::with_capacity(1 + data.len());
                    pong.push(b'3');
                    pong.extend_from_slice(&data);
                    if let Ok(t) = wsx::Utf8Bytes::try_from_bytes(pong.into()) {
                        let _ = session.outbox.push(Message::Text(t));
                    }
                }
                Some(Packet::Close) => break Some(CloseReason::ClientClose),
                Some(Packet::Upgrade) | Some(Packet::Noop) => {}
                None => break Some(CloseReason::ParseError),
            },
            Message::Binary(b) => {
                session.deliver(super::Incoming::Binary(b)).await;
            }
            _ => {}
        }
    };
    if let Some(reason) = ended {
        session.close(reason);
    }
    let (mut ws, mut rx) = pump.into_parts();
    if matches!(ended, Some(CloseReason::TransportClose) | Some(CloseReason::TransportError)) {
        return;
    }
    // Flush what is queued (the close packet last), then close.
    let flush = async {
        if ended != Some(CloseReason::SlowConsumer) {
            while let Some(m) = rx.try_recv() {
                ws.feed(m).await?;
            }
            ws.flush().await?;
        }
        ws.close(CloseCode::Normal, "").await
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, flush).await;
}

/// Whether a receive error means the peer's connection is gone (closed or
/// reset without a closing handshake), rather than that it broke a rule.
fn went_away(e: &wsx::Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        wsx::Error::ConnectionClosed => true,
        wsx::Error::Protocol(p) => p.close_code() == CloseCode::Abnormal,
        wsx::Error::Io(io) => matches!(io.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe),
        _ => false,
    }
}
