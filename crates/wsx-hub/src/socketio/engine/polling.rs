//! The polling transport: the handshake, GET and POST, the CORS preflight,
//! and the error answers.

use super::packet::{self, ErrorCode, Packet};
use super::session::Session;
use super::{CloseReason, EngineInner, Transport};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Response, StatusCode};
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite};
use wsx::server::{BodyError, Request};
use wsx::Message;

/// A response with the engine's CORS headers for `req`'s origin.
fn response<S>(
    engine: &EngineInner,
    req: &Request<S>,
    status: StatusCode,
    ctype: &'static str,
    body: Bytes,
) -> Response<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if !ctype.is_empty() {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The server answers one request per HTTP/1.1 connection: say so, so
    // that clients do not reuse it (HTTP/2 drops the field).
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(cors) = &engine.config.cors {
        cors.apply(req.head().origin(), resp.headers_mut());
    }
    resp
}

const TEXT: &str = "text/plain; charset=UTF-8";

/// 400 (403 for `Forbidden`) with Engine.IO's JSON error.
pub(super) async fn error<S>(engine: &EngineInner, req: Request<S>, code: ErrorCode) -> wsx::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let status = if code == ErrorCode::Forbidden { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    tracing::debug!(?code, method = %req.head().method(), query = ?req.head().request().uri().query(), "engine.io request refused");
    let resp = response(engine, &req, status, "application/json", Bytes::from(code.json()));
    req.respond(resp).await
}

/// 503: too many sessions, or shutting down.
pub(super) async fn busy<S>(engine: &EngineInner, req: Request<S>) -> wsx::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut resp = response(engine, &req, StatusCode::SERVICE_UNAVAILABLE, TEXT, Bytes::from_static(b"busy"));
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    req.respond(resp).await
}

/// Whether a new session may open now.
pub(super) fn has_room(engine: &EngineInner) -> bool {
    !engine.stopping.load(Ordering::SeqCst) && engine.map().len() < engine.config.max_sessions
}

/// A CORS preflight: 204 with the allowed methods and the requested
/// headers (and the origin headers for an allowed origin).
pub(super) async fn preflight<S>(engine: &EngineInner, req: Request<S>) -> wsx::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if engine.config.cors.is_none() {
        return error(engine, req, ErrorCode::BadHandshakeMethod).await;
    }
    let mut resp = response(engine, &req, StatusCode::NO_CONTENT, "", Bytes::new());
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    if let Some(asked) = req.head().request().headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        h.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    req.respond(resp).await
}

/// A polling handshake: a new session, its open packet as the answer.
pub(super) async fn handshake<S>(engine: Arc<EngineInner>, req: Request<S>) -> wsx::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let session = {
        let mut map = engine.map();
        if engine.stopping.load(Ordering::SeqCst) || map.len() >= engine.config.max_sessions {
            None
        } else {
            let (session, socket) = Session::new(&engine, Transport::Polling, req.head().clone());
            let open = packet::open_packet(&session.sid, engine.config.websocket, &engine.config);
            let _ = session.outbox.push(Message::text(open));
            map.insert(session.sid.clone(), session.clone());
            Some((session, socket))
        }
    };
    let Some((session, socket)) = session else {
        return busy(&engine, req).await;
    };
    tokio::spawn(session.clone().run(engine.clone()));
    (engine.on_open)(socket);
    get(engine, session, req).await
}

/// Resets the GET flag when the request ends, however it ends.
struct GetGuard<'a>(&'a Session);

impl Drop for GetGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.get_active = false;
        st.get_waker = None;
        if self.0.is_closed() {
            // The last GET: the outbox takes nothing more.
            st.rx = None;
            st.pending = None;
            drop(st);
            self.0.drained();
        }
    }
}

/// A polling GET: wait for packets, answer with those queued.
pub(super) async fn get<S>(engine: Arc<EngineInner>, session: Arc<Session>, mut req: Request<S>) -> wsx::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !session.is_closed() && session.deadline_passed(&engine) {
        session.close(CloseReason::PingTimeout);
        return error(&engine, req, ErrorCode::SessionIdUnknown).await;
    }
    // During an upgrade, the outcome first (the GET may race the
    // WebSocket's probe and upgrade packets).
    let transitional = {
        let st = session.state();
        st.probing || st.upgrading
    };
    if transitional {
        let answer = match upgrade_outcome(&session).await {
            Outcome::Upgraded => Some(Err(ErrorCode::BadRequest)),
            Outcome::Closed => Some(Err(ErrorCode::SessionIdUnknown)),
            Outcome::Upgrading => Some(Ok(())),
            Outcome::Polling => None,
        };
        match answer {
            Some(Err(code)) => return error(&engine, req, code).await,
            Some(Ok(())) => {
                let resp = response(&engine, &req, StatusCode::OK, TEXT, Bytes::from_static(b"6"));
                return req.respond(resp).await;
            }
            None => {}
        }
    }
    // Decided under the lock, answered after it.
    let mut upgrading = false;
    let refused = {
        let mut st = session.state();
        if session.is_closed() && !st.linger {
            Some((ErrorCode::SessionIdUnknown, false))
        } else if st.transport != Transport::Polling {
            Some((ErrorCode::BadRequest, false))
        } else if st.get_active {
            Some((ErrorCode::BadRequest, true))
        } else if st.upgrading {
            upgrading = true;
            None
        } else {
            st.get_active = true;
            None
        }
    };
    if let Some((code, overlap)) = refused {
        if overlap {
            session.close(CloseReason::TransportError);
        }
        return error(&engine, req, code).await;
    }
    if upgrading {
        // (Upgrading again since the check above.)
        let resp = response(&engine, &req, StatusCode::OK, TEXT, Bytes::from_static(b"6"));
        return req.respond(resp).await;
    }
    let guard = GetGuard(&session);
    let max = engine.config.max_payload;
    let packets = poll_fn(|cx| {
        let mut st = session.state();
        let reason = session.close_reason();
        if reason == Some(CloseReason::ClientClose)
            || (reason.is_none() && (st.upgrading || st.transport != Transport::Polling))
        {
            return Poll::Ready(Bytes::from_static(b"6"));
        }
        let st = &mut *st;
        let first = match st.pending.take() {
            Some(m) => m,
            None => {
                let Some(rx) = st.rx.as_mut() else { return Poll::Ready(Bytes::from_static(b"6")) };
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(m)) => m,
                    Poll::Ready(None) => return Poll::Ready(Bytes::from_static(b"1")),
                    Poll::Pending if reason.is_some() => return Poll::Ready(Bytes::from_static(b"1")),
                    Poll::Pending => {
                        st.get_waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                }
            }
        };
        let mut out = BytesMut::with_capacity(packet::encoded_len(&first).min(max));
        packet::encode_into(&mut out, &first);
        if let Some(rx) = st.rx.as_mut() {
            while let Some(m) = rx.try_recv() {
                if out.len() + 1 + packet::encoded_len(&m) > max {
                    st.pending = Some(m);
                    break;
                }
                packet::encode_into(&mut out, &m);
            }
        }
        Poll::Ready(out.freeze())
    });
    let body = tokio::select! {
        biased;
        body = packets => body,
        // The client went away (or half-closed) while nothing was queued:
        // a noop ends this GET and frees its place for the next one, and
        // no packet is taken for a response no one may read.
        () = req.client_gone() => {
            drop(guard);
            let resp = response(&engine, &req, StatusCode::OK, TEXT, Bytes::from_static(b"6"));
            return req.respond(resp).await;
        }
    };
    // The next GET may come the moment this response is read: this one
    // is over before it is written.
    drop(guard);
    let resp = response(&engine, &req, StatusCode::OK, TEXT, body);
    let sent = req.respond(resp).await;
    if sent.is_err() {
        // What it carried is lost: the session cannot go on in order.
        session.close(CloseReason::TransportError);
    }
    sent
}

/// How long a GET that comes during an upgrade waits for its outcome.
const UPGRADE_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Where an upgrade stands for a GET that came during it.
enum Outcome {
    /// Done: the session moved (400).
    Upgraded,
    /// The session closed (400).
    Closed,
    /// Still upgrading after the grace: a noop ends the GET.
    Upgrading,
    /// No upgrade (it failed, or no probe came yet): serve the GET.
    Polling,
}

/// Wait up to [`UPGRADE_GRACE`] for an upgrade under way to complete: a
/// client sends its last GET as it probes and upgrades, and the GET may
/// arrive first.
async fn upgrade_outcome(session: &Session) -> Outcome {
    let until = tokio::time::Instant::now() + UPGRADE_GRACE;
    loop {
        let (transport, probing, upgrading) = {
            let st = session.state();
            (st.transport, st.probing, st.upgrading)
        };
        if session.is_closed() {
            return Outcome::Closed;
        }
        if transport != Transport::Polling {
            return Outcome::Upgraded;
        }
        if !probing && !upgrading {
            return Outcome::Polling;
        }
        if tokio::time::Instant::now() >= until {
            return if upgrading { Outcome::Upgrading } else { Outcome::Polling };
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Resets the POST flag when the request ends.
struct PostGuard<'a>(&'a Session);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.state().post_active = false;
    }
}

/// A polling POST: the client's packets, delivered in order.
pub(super) async fn post<S>(engine: Arc<EngineInner>, session: Arc<Session>, mut req: Request<S>) -> wsx::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !session.is_closed() && session.deadline_passed(&engine) {
        session.close(CloseReason::PingTimeout);
    }
    let refused = {
        let mut st = session.state();
        if session.is_closed() {
            Some((ErrorCode::SessionIdUnknown, false))
        } else if st.transport != Transport::Polling {
            Some((ErrorCode::BadRequest, false))
        } else if st.post_active {
            Some((ErrorCode::BadRequest, true))
        } else {
            st.post_active = true;
            None
        }
    };
    if let Some((code, overlap)) = refused {
        if overlap {
            session.close(CloseReason::TransportError);
        }
        return error(&engine, req, code).await;
    }
    let guard = PostGuard(&session);
    let body = match req.body(engine.config.max_payload).await {
        Ok(b) => b,
        Err(e) => {
            let reason = match e {
                BodyError::TooLarge(_) => CloseReason::PayloadTooLarge,
                _ => CloseReason::TransportError,
            };
            session.close(reason);
            let resp = response(&engine, &req, e.status(), TEXT, Bytes::from(e.to_string()));
            return req.respond(resp).await;
        }
    };
    let Some(packets) = packet::parse_payload(body) else {
        session.close(CloseReason::ParseError);
        return error(&engine, req, ErrorCode::BadRequest).await;
    };
    for p in packets {
        match p {
            Packet::Message(m) => {
                if !session.deliver(m).await {
                    break;
                }
            }
            Packet::Pong => session.on_pong(&engine),
            Packet::Close => {
                session.close(CloseReason::ClientClose);
                break;
            }
            Packet::Noop | Packet::Ping(_) | Packet::Upgrade => {}
        }
    }
    // As for a GET: the client's next POST may follow the moment it reads
    // this answer.
    drop(guard);
    let resp = response(&engine, &req, StatusCode::OK, TEXT, Bytes::from_static(b"ok"));
    req.respond(resp).await
}

#[cfg(test)]
mod tests {
    use super::super::{Engine, EngineConfig};
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;
    use wsx::server::RequestHead;

    /// One GET through the server layer over an in-memory stream; the
    /// response.
    async fn get_over_duplex(engine: &Engine, sid: &str) -> String {
        let server = wsx::server::Server::builder().build();
        let (mut client, stream) = tokio::io::duplex(4096);
        let e = engine.clone();
        let handler = move |req: Request<tokio::io::DuplexStream>| {
            let e = e.clone();
            async move { e.handle(req).await }
        };
        tokio::spawn(async move { server.serve_stream(stream, None, &handler).await });
        let req = format!("GET /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
        client.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out)).await.unwrap().unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A session without its task: no timer runs, only the check a
    /// request makes.
    fn timerless_session(engine: &Engine, since_ping_due: Duration) -> (Arc<Session>, super::super::EngineSocket) {
        let inner = engine.inner.clone();
        let (session, socket) =
            Session::new(&inner, Transport::Polling, RequestHead::new(http::Request::new(()), None));
        inner.map().insert(session.sid.clone(), session.clone());
        session.state().ping_due = Instant::now() - since_ping_due;
        let _ = session.outbox.push(wsx::Message::text("4queued"));
        (session, socket)
    }

    /// A GET (and a POST) is over for the session before its response is
    /// written: the client's next request, sent the moment it reads the
    /// response, is never taken for an overlapping one.
    #[tokio::test]
    async fn a_request_is_over_before_its_response_is_written() {
        let engine = Engine::new(EngineConfig::default(), |_| {});
        let (session, _socket) = timerless_session(&engine, Duration::ZERO);
        for (method, body) in [("GET", ""), ("POST", "4hi")] {
            let server = wsx::server::Server::builder().build();
            // Room for the request, not for the response: it cannot be
            // written until the client reads.
            let (mut client, stream) = tokio::io::duplex(8);
            let e = engine.clone();
            let handler = move |req: Request<tokio::io::DuplexStream>| {
                let e = e.clone();
                async move { e.handle(req).await }
            };
            tokio::spawn(async move { server.serve_stream(stream, None, &handler).await });
            let req = format!(
                "{method} /engine.io/?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                session.sid,
                body.len()
            );
            client.write_all(req.as_bytes()).await.unwrap();
            // The response is being written (its first bytes are here).
            let mut first = [0u8; 8];
            client.read_exact(&mut first).await.unwrap();
            assert_eq!(&first, b"HTTP/1.1");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let st = session.state();
            assert!(!st.get_active && !st.post_active, "{method} still counted while its response is written");
        }
    }

    #[tokio::test]
    async fn a_get_past_the_pong_deadline_gets_400_though_no_timer_fired() {
        let config =
            EngineConfig::default().ping_interval(Duration::from_millis(300)).ping_timeout(Duration::from_millis(200));
        let engine = Engine::new(config, |_| {});
        // The deadline (ping due + 200 ms) is just past.
        let (session, socket) = timerless_session(&engine, Duration::from_millis(200));
        let r = get_over_duplex(&engine, &session.sid).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        assert_eq!(socket.close_reason(), Some(CloseReason::PingTimeout));
        assert_eq!(engine.sessions(), 0);
        // 50 ms before it, the same GET is served.
        let (session, socket) = timerless_session(&engine, Duration::from_millis(150));
        let r = get_over_duplex(&engine, &session.sid).await;
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("4queued"), "{r}");
        assert_eq!(socket.close_reason(), None);
    }
}
