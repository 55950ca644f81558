//! Keepalive, for both roles: pings after silence, and a close for a peer
//! from which nothing arrived for the idle timeout
//! ([`crate::Config::with_keepalive`]). The connection's receive loop
//! zeroes a counter of quiet ticks for every read, and looks at its clock
//! when it waits; the data path reads no clock.

use crate::Config;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::Sleep;

/// Keepalive settings: a clock ticks every ping interval (without pings,
/// every quarter of the idle timeout). At a tick, a connection that
/// received nothing since the previous tick is pinged; one that received
/// nothing, not even a pong, for the idle timeout is closed with 1001
/// `idle timeout`, and its reader ends with [`crate::Error::IdleTimeout`].
/// The clock is a timer of the connection's own ([`OwnClock`]), or its
/// group's (a server's connections share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Milliseconds (0: none).
    ping_ms: u32,
    idle_ms: u32,
}

/// How long a connection closed for its idle timeout waits for the peer's
/// close frame (at most the close timeout).
pub(crate) const IDLE_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What a keepalive tick asks for.
pub(crate) enum Tick {
    Ping,
    Idle,
}

impl Settings {
    /// The settings of `config`; `None` when keepalive is off.
    pub(crate) fn new(config: &Config) -> Option<Self> {
        let ms = |d: Option<Duration>| d.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
        let s = Self { ping_ms: ms(config.ping_interval()), idle_ms: ms(config.idle_timeout()) };
        (s.ping_ms > 0 || s.idle_ms > 0).then_some(s)
    }

    /// The clock's period.
    pub(crate) fn period(&self) -> Duration {
        let p = if self.ping_ms > 0 { self.ping_ms } else { self.idle_ms / 4 };
        Duration::from_millis(u64::from(p.max(1)))
    }

    /// `ticks` more ticks of the clock, with `silent` counting the ticks
    /// since something was last heard (the receive loop sets it to 0 for
    /// every read): what to do.
    ///
    /// Ticks this connection missed (its task ran late: a saturated node)
    /// count as one: a peer that only speaks when pinged could not answer
    /// pings that were never sent. So a close for the idle timeout always
    /// follows pings the peer had a whole interval each to answer, however
    /// late the node runs.
    pub(crate) fn after(&self, silent: &mut u16, ticks: u32) -> Option<Tick> {
        *silent = silent.saturating_add(u16::from(ticks > 0));
        // The ticks with nothing heard in the whole interval before them.
        let quiet = u64::from(*silent).saturating_sub(1);
        if quiet == 0 {
            None
        } else if self.idle_ms > 0 && quiet * self.period().as_millis() as u64 >= u64::from(self.idle_ms) {
            Some(Tick::Idle)
        } else if self.ping_ms > 0 {
            Some(Tick::Ping)
        } else {
            None
        }
    }
}

/// A connection's own keepalive timer, made at the first wait.
#[derive(Debug, Default)]
pub(crate) struct OwnClock {
    timer: Option<Pin<Box<Sleep>>>,
    /// Polled since it was set, so it wakes the task that polled it; while
    /// that task waits again, whether it fired is read without polling (a
    /// poll takes the task's budget and swaps wakers).
    armed: bool,
}

impl OwnClock {
    /// One tick when the timer fired (then it is set again). `same_task`:
    /// the timer was last polled by the task `cx` wakes.
    #[inline]
    pub(crate) fn poll(&mut self, period: Duration, cx: &mut Context<'_>, same_task: bool) -> Option<u32> {
        if self.armed && same_task && self.timer.as_ref().is_some_and(|t| !t.is_elapsed()) {
            return None;
        }
        self.poll_timer(period, cx)
    }

    fn poll_timer(&mut self, period: Duration, cx: &mut Context<'_>) -> Option<u32> {
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
        self.armed = true;
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let now = tokio::time::Instant::now();
        timer.as_mut().reset(now.checked_add(period).unwrap_or(now));
        // Registers the new deadline with this task.
        let _ = timer.as_mut().poll(cx);
        Some(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_after_a_whole_quiet_interval_and_a_close_after_the_idle_timeout() {
        let config = Config::default().with_keepalive(Duration::from_secs(10), Duration::from_secs(30));
        let s = Settings::new(&config).unwrap();
        assert_eq!(s.period(), Duration::from_secs(10));
        let mut silent = 0; // something was just heard
        assert!(s.after(&mut silent, 1).is_none(), "heard during the interval");
        assert!(matches!(s.after(&mut silent, 1), Some(Tick::Ping)));
        assert!(matches!(s.after(&mut silent, 1), Some(Tick::Ping)));
        assert!(matches!(s.after(&mut silent, 1), Some(Tick::Idle)), "30 s quiet");
        // Ticks missed while the node ran late count as one: a ping first,
        // whether something was heard or not.
        let mut silent = 0;
        assert!(s.after(&mut silent, 40).is_none(), "heard: not even a ping");
        assert!(matches!(s.after(&mut silent, 40), Some(Tick::Ping)), "late, quiet: a ping, not a close");
        assert!(matches!(s.after(&mut silent, 40), Some(Tick::Ping)));
        assert!(matches!(s.after(&mut silent, 40), Some(Tick::Idle)), "pings unanswered: closed");
        let idle_only = Settings::new(&Config::default().with_idle_timeout(Duration::from_secs(8))).unwrap();
        assert_eq!(idle_only.period(), Duration::from_secs(2));
        let mut silent = 0;
        for _ in 0..4 {
            assert!(idle_only.after(&mut silent, 1).is_none(), "no pings without a ping interval");
        }
        assert!(matches!(idle_only.after(&mut silent, 1), Some(Tick::Idle)));
        assert!(Settings::new(&Config::default()).is_none());
    }
}
