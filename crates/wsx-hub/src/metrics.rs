//! Counters and gauges of a hub, rendered in the Prometheus text exposition
//! format (version 0.0.4) for `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The hub's counters. Read them with [`crate::Hub::metrics`].
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) rejected_origin: AtomicU64,
    pub(crate) rejected_auth: AtomicU64,
    pub(crate) rejected_limit: AtomicU64,
    pub(crate) rejected_hook: AtomicU64,
    pub(crate) rejected_protocol: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) acks_timed_out: AtomicU64,
    pub(crate) sse_streams: AtomicU64,
    pub(crate) broker_published: AtomicU64,
    pub(crate) broker_received: AtomicU64,
}

/// A snapshot of the main counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Messages written to clients.
    pub messages_out: u64,
    /// Bytes received in data messages.
    pub bytes_in: u64,
    /// Bytes of messages written to clients.
    pub bytes_out: u64,
    /// Broadcasts dropped for slow consumers.
    pub dropped: u64,
    /// Requests whose ack did not come in time.
    pub acks_timed_out: u64,
    /// Connections closed for reading too slowly.
    pub slow_disconnects: u64,
    /// Connections closed for sending too fast.
    pub rate_limited: u64,
}

impl Metrics {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connections: self.connections.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            acks_timed_out: self.acks_timed_out.load(Relaxed),
            slow_disconnects: self.slow_disconnects.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
        }
    }

    /// Render in the text exposition format. `rooms` and the broker's
    /// state come from the hub; `refused`, the connections its server
    /// refused for the connection limit.
    pub(crate) fn render(
        &self,
        rooms: usize,
        broker: &crate::broker::BrokerState,
        broker_kind: &str,
        refused: u64,
    ) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let g = |c: &AtomicU64| c.load(Relaxed);
        metric("wsx_hub_connections", "gauge", "Open WebSocket connections.", &[("", g(&self.connections))]);
        metric(
            "wsx_hub_connections_total",
            "counter",
            "WebSocket connections accepted.",
            &[("", g(&self.connections_total))],
        );
        metric(
            "wsx_hub_rejected_total",
            "counter",
            "Requests refused before the upgrade, by reason.",
            &[
                ("{reason=\"origin\"}", g(&self.rejected_origin)),
                ("{reason=\"auth\"}", g(&self.rejected_auth)),
                ("{reason=\"limit\"}", g(&self.rejected_limit) + refused),
                ("{reason=\"hook\"}", g(&self.rejected_hook)),
                ("{reason=\"protocol\"}", g(&self.rejected_protocol)),
            ],
        );
        metric("wsx_hub_rooms", "gauge", "Rooms with members, SSE streams or SSE history here.", &[("", rooms as u64)]);
        metric("wsx_hub_messages_in_total", "counter", "Data messages received.", &[("", g(&self.messages_in))]);
        metric("wsx_hub_messages_out_total", "counter", "Messages written to clients.", &[("", g(&self.messages_out))]);
        metric("wsx_hub_bytes_in_total", "counter", "Bytes of data messages received.", &[("", g(&self.bytes_in))]);
        metric(
            "wsx_hub_bytes_out_total",
            "counter",
            "Bytes of messages written to clients.",
            &[("", g(&self.bytes_out))],
        );
        metric(
            "wsx_hub_dropped_messages_total",
            "counter",
            "Broadcasts dropped from the queues of slow consumers.",
            &[("", g(&self.dropped))],
        );
        metric(
            "wsx_hub_disconnects_total",
            "counter",
            "Connections closed by a policy, by reason.",
            &[
                ("{reason=\"slow_consumer\"}", g(&self.slow_disconnects)),
                ("{reason=\"rate_limit\"}", g(&self.rate_limited)),
            ],
        );
        metric(
            "wsx_hub_bad_frames_total",
            "counter",
            "Frames that were not valid packets.",
            &[("", g(&self.bad_frames))],
        );
        metric(
            "wsx_hub_acks_timed_out_total",
            "counter",
            "Requests to clients whose ack did not come in time.",
            &[("", g(&self.acks_timed_out))],
        );
        metric("wsx_hub_sse_streams", "gauge", "Open Server-Sent Events streams.", &[("", g(&self.sse_streams))]);
        let up = u64::from(matches!(broker, crate::broker::BrokerState::Connected));
        let _ = writeln!(out, "# HELP wsx_hub_broker_up Whether the broker is connected (1) or not (0).");
        let _ = writeln!(out, "# TYPE wsx_hub_broker_up gauge\nwsx_hub_broker_up{{broker=\"{broker_kind}\"}} {up}");
        let _ = writeln!(out, "# HELP wsx_hub_broker_state The broker's state (1 for the current one).");
        let _ = writeln!(out, "# TYPE wsx_hub_broker_state gauge");
        for s in ["connected", "connecting", "disconnected"] {
            let _ = writeln!(out, "wsx_hub_broker_state{{state=\"{s}\"}} {}", u64::from(broker.name() == s));
        }
        let mut metric = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        metric("wsx_hub_broker_published_total", "Messages published to the broker.", g(&self.broker_published));
        metric("wsx_hub_broker_received_total", "Messages received from other nodes.", g(&self.broker_received));
        out
    }
}
