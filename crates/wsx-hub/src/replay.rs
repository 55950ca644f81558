//! A room's Server-Sent Events state on this node: the ids, the bounded
//! replay buffer that `Last-Event-ID` resumes from, and the open streams.
//! Kept by the hub's rooms ([`crate::hub`]), streamed by [`crate::sse`].

use crate::protocol::Packet;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One event as streamed.
#[derive(Debug)]
pub(crate) struct SseEvent {
    id: u64,
    pub(crate) text: String,
}

/// Events sent to a stream that is this far behind end it (the client
/// resumes with `Last-Event-ID`).
const STREAM_BACKLOG: usize = 256;

/// A room's SSE state on this node.
pub(crate) struct SseRoom {
    next_id: u64,
    capacity: usize,
    replay: VecDeque<Arc<SseEvent>>,
    pub(crate) subs: Vec<mpsc::Sender<Arc<SseEvent>>>,
    /// How long the state outlives the room's last member and stream here.
    retention: Duration,
    /// When the room last had a member or a stream here.
    idle_since: Instant,
}

impl SseRoom {
    pub(crate) fn new(capacity: usize, retention: Duration) -> Self {
        Self { next_id: 1, capacity, replay: VecDeque::new(), subs: Vec::new(), retention, idle_since: Instant::now() }
    }

    pub(crate) fn has_streams(&self) -> bool {
        self.subs.iter().any(|s| !s.is_closed())
    }

    pub(crate) fn streams(&self) -> usize {
        self.subs.iter().filter(|s| !s.is_closed()).count()
    }

    /// The room's last member or stream here left now: the retention
    /// counts from here. Events recorded later do not extend it.
    pub(crate) fn touch(&mut self) {
        self.idle_since = Instant::now();
    }

    /// No stream is open and the retention since the last one (or the
    /// room's last member) left has passed: nobody can resume any more.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        !self.has_streams() && now.saturating_duration_since(self.idle_since) >= self.retention
    }

    /// Record a room packet: into the replay buffer and to every stream.
    pub(crate) fn record(&mut self, p: &Packet) {
        let (name, data) = match p {
            Packet::Event(e) => (e.event.as_str(), serde_json::to_string(&e.data).unwrap_or_default()),
            Packet::Presence(pr) => {
                let mut data = serde_json::json!({ "count": pr.count });
                if let Some(d) = &pr.diff {
                    data["joins"] = serde_json::json!(d.joins);
                    data["leaves"] = serde_json::json!(d.leaves);
                }
                ("presence", data.to_string())
            }
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
        let had_streams = !self.subs.is_empty();
        self.subs.retain(|s| s.try_send(ev.clone()).is_ok());
        if had_streams && self.subs.is_empty() {
            self.touch();
        }
    }

    /// A new stream: the events after `last_id` still buffered, and the
    /// receiver of new ones.
    pub(crate) fn subscribe(&mut self, last_id: Option<u64>) -> (Vec<Arc<SseEvent>>, mpsc::Receiver<Arc<SseEvent>>) {
        let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
        self.subs.push(tx);
        let replay = match last_id {
            Some(last) => self.replay.iter().filter(|e| e.id > last).cloned().collect(),
            None => Vec::new(),
        };
        (replay, rx)
    }
}
