//! Server-Sent Events: `GET /events?room=NAME` streams a room's events as
//! `text/event-stream`, with an id per event, heartbeat comments, and
//! `Last-Event-ID` resume from a bounded replay buffer per room.
//!
//! Each event is `id: N`, `event: NAME`, `data: JSON` (the event's payload;
//! attachments are not sent). Presence changes are `event: presence` with
//! `{"kind": "join"|"leave", "member": {...}}`. Ids count per room on each
//! node: resume on the node that served the stream.

use crate::error::HubError;
use crate::hub::{Hub, Inner};
use crate::metrics::Metrics;
use crate::protocol::Packet;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// One event as streamed.
#[derive(Debug)]
pub(crate) struct SseEvent {
    id: u64,
    text: String,
}

/// Events sent to a stream that is this far behind end it (the client
/// resumes with `Last-Event-ID`).
const STREAM_BACKLOG: usize = 256;
/// A write that takes longer ends the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A room's SSE state on this node.
pub(crate) struct SseRoom {
    next_id: u64,
    capacity: usize,
    replay: VecDeque<Arc<SseEvent>>,
    subs: Vec<mpsc::Sender<Arc<SseEvent>>>,
    idle_since: Instant,
}

impl SseRoom {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { next_id: 1, capacity, replay: VecDeque::new(), subs: Vec::new(), idle_since: Instant::now() }
    }

    pub(crate) fn has_streams(&self) -> bool {
        self.subs.iter().any(|s| !s.is_closed())
    }

    pub(crate) fn streams(&self) -> usize {
        self.subs.iter().filter(|s| !s.is_closed()).count()
    }

    pub(crate) fn touch(&mut self) {
        self.idle_since = Instant::now();
    }

    pub(crate) fn expired(&self, now: Instant, retention: Duration) -> bool {
        !self.has_streams() && now.saturating_duration_since(self.idle_since) >= retention
    }

    /// Record a room packet: into the replay buffer and to every stream.
    pub(crate) fn record(&mut self, p: &Packet) {
        let (name, data) = match p {
            Packet::Event(e) => (e.event.as_str(), serde_json::to_string(&e.data).unwrap_or_default()),
            Packet::Presence(pr) => ("presence", serde_json::json!({"kind": pr.kind, "member": pr.member}).to_string()),
            _ => return,
        };
        let id = self.next_id;
        self.next_id += 1;
        let name: String = name.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
        let ev = Arc::new(SseEvent { id, text: format!("id: {id}\nevent: {name}\ndata: {data}\n\n") });
        if self.capacity > 0 {
            if self.replay.len() >= self.capacity {
                self.replay.pop_front();
            }
            self.replay.push_back(ev.clone());
        }
        self.subs.retain(|s| s.try_send(ev.clone()).is_ok());
        if self.subs.is_empty() {
            self.touch();
        }
    }

    /// A new stream: the events after `last_id` still buffered, and the
    /// receiver of new ones.
    fn subscribe(&mut self, last_id: Option<u64>) -> (Vec<Arc<SseEvent>>, mpsc::Receiver<Arc<SseEvent>>) {
        let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
        self.subs.push(tx);
        let replay = match last_id {
            Some(last) => self.replay.iter().filter(|e| e.id > last).cloned().collect(),
            None => Vec::new(),
        };
        (replay, rx)
    }
}

/// Remove rooms that have neither members nor streams and whose replay
/// buffers outlived `retention`.
pub(crate) fn spawn_sweeper(hub: Weak<Inner>, retention: Duration) {
    let every = (retention / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(inner) = hub.upgrade() else { return };
            let hub = Hub { inner };
            if hub.is_shutting_down() {
                return;
            }
            let now = Instant::now();
            hub.lock().rooms.retain(|_, r| !r.is_dead(now, retention));
        }
    });
}

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

/// Stream `room` on `stream` until the client goes away, the stream falls
/// too far behind, or the hub shuts down.
pub(crate) async fn serve<S>(hub: &Hub, stream: S, room: String, last_id: Option<u64>) -> Result<(), HubError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(settings) = hub.inner.s.sse.clone() else { return Ok(()) };
    let (replay, mut rx, ready) = {
        let mut st = hub.lock();
        let r = st.rooms.entry(room.clone()).or_default();
        let (replay, rx) = r.sse.get_or_insert_with(|| SseRoom::new(settings.replay)).subscribe(last_id);
        (replay, rx, r.sync_subscription(&room, &*hub.inner.broker))
    };
    if let Some(ready) = ready {
        let _ = tokio::time::timeout(Duration::from_secs(2), ready).await;
    }
    Metrics::inc(&hub.inner.metrics.sse_streams);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let result = async {
        let mut head = String::from(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
             x-accel-buffering: no\r\nconnection: close\r\n\r\nretry: 2000\n\n",
        );
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
