//! Server-Sent Events: `GET /events?room=NAME` streams a room's events as
//! `text/event-stream`, with an id per event, heartbeat comments, and
//! `Last-Event-ID` resume from a bounded replay buffer per room.
//!
//! Each event is `id: N`, `event: NAME`, `data: JSON` (the event's payload;
//! attachments are not sent). Presence changes are `event: presence` with
//! `{"kind": "join"|"leave", "member": {...}}`. Ids count per room on each
//! node: resume on the node that served the stream.

use crate::error::HubError;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::replay::SseRoom;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsx::server::Request;

/// A write that takes longer ends the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), HubError> {
    match tokio::time::timeout(WRITE_TIMEOUT, async {
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await
    {
        Ok(r) => Ok(r?),
        Err(_) => Err(HubError::Io(std::io::ErrorKind::TimedOut.into())),
    }
}

/// Stream `room` as the response to `req` until the client goes away, the
/// stream falls too far behind, or the hub shuts down.
pub(crate) async fn serve<S>(hub: &Hub, req: Request<S>, room: String, last_id: Option<u64>) -> Result<(), HubError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(settings) = hub.inner.s.sse.clone() else { return Ok(()) };
    let (replay, mut rx, ready) = {
        let mut st = hub.lock();
        let r = st.rooms.entry(room.clone()).or_default();
        let (replay, rx) =
            r.sse.get_or_insert_with(|| SseRoom::new(settings.replay, settings.retention)).subscribe(last_id);
        (replay, rx, r.sync_subscription(&room, &*hub.inner.broker))
    };
    if let Some(ready) = ready {
        let _ = tokio::time::timeout(Duration::from_secs(2), ready).await;
    }
    Metrics::inc(&hub.inner.metrics.sse_streams);
    let result = async {
        let head = http::Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .header("x-accel-buffering", "no")
            .body(())
            .map_err(|e| HubError::Io(std::io::Error::other(e)))?;
        let (mut rd, mut wr) = tokio::io::split(req.respond_stream(head).await?);
        let mut head = String::from("retry: 2000\n\n");
        for ev in &replay {
            head.push_str(&ev.text);
        }
        write_all(&mut wr, head.as_bytes()).await?;
        let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + settings.heartbeat, settings.heartbeat);
        let stopping = hub.server().stopping();
        tokio::pin!(stopping);
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => write_all(&mut wr, ev.text.as_bytes()).await?,
                    None => break, // too far behind: the client resumes
                },
                _ = hb.tick() => write_all(&mut wr, b": heartbeat\n\n").await?,
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                () = &mut stopping => break,
            }
        }
        let _ = wr.shutdown().await;
        Ok(())
    }
    .await;
    drop(rx);
    hub.inner.metrics.sse_streams.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let mut st = hub.lock();
    if let Some(r) = st.rooms.get_mut(&room) {
        if let Some(s) = &mut r.sse {
            s.subs.retain(|t| !t.is_closed());
            s.touch();
        }
        let _ = r.sync_subscription(&room, &*hub.inner.broker);
    }
    result
}
