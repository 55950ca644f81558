//! Keepalive, for both roles: pings after silence, and a close for a peer
//! from which nothing arrived for the idle timeout
//! ([`crate::Config::with_keepalive`]). The connection's receive loop sets a
//! flag for every read and polls [`Keepalive::poll_tick`] when it waits;
//! the data path reads no clock.

use crate::Config;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::Sleep;

/// The keepalive state of one connection: a timer ticks every ping
/// interval (without pings, every quarter of the idle timeout). At a tick,
/// a connection that received nothing since the previous tick is pinged;
/// one that received nothing, not even a pong, for the idle timeout is
/// closed with 1001 `idle timeout`, and its reader ends with
/// [`crate::Error::IdleTimeout`].
#[derive(Debug)]
pub(crate) struct Keepalive {
    ping: Option<Duration>,
    idle: Option<Duration>,
    /// Made at the first wait (a timer needs the runtime).
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer was polled since it was set: it wakes the task that
    /// polled it, and while that task waits again, whether it fired is read
    /// from it without polling (a poll takes the task's budget and swaps
    /// wakers, per wait of every connection).
    armed: bool,
    last_heard: tokio::time::Instant,
}

/// How long a connection closed for its idle timeout waits for the peer's
/// close frame (at most the close timeout).
pub(crate) const IDLE_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What a keepalive tick asks for.
pub(crate) enum Tick {
    Ping,
    Idle,
}

impl Keepalive {
    pub(crate) fn new(config: &Config) -> Option<Self> {
        let (ping, idle) = (config.ping_interval(), config.idle_timeout());
        (ping.is_some() || idle.is_some()).then(|| Self {
            ping,
            idle,
            timer: None,
            armed: false,
            last_heard: tokio::time::Instant::now(),
        })
    }

    /// The timer's period.
    fn period(&self) -> Duration {
        self.ping.or(self.idle.map(|d| d / 4)).unwrap_or(Duration::MAX).max(Duration::from_millis(1))
    }

    /// Check the timer; at a tick, what to do. `heard` is taken.
    /// `same_task`: the timer was last polled by the task `cx` wakes.
    #[inline]
    pub(crate) fn poll_tick(&mut self, heard: &mut bool, cx: &mut Context<'_>, same_task: bool) -> Option<Tick> {
        if self.armed && same_task && self.timer.as_ref().is_some_and(|t| !t.is_elapsed()) {
            return None;
        }
        self.poll_timer(heard, cx)
    }

    /// Poll the timer (registering this task); at a tick, reset it.
    fn poll_timer(&mut self, heard: &mut bool, cx: &mut Context<'_>) -> Option<Tick> {
        let period = self.period();
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
        let fired = timer.as_mut().poll(cx).is_ready();
        self.armed = true;
        if !fired {
            return None;
        }
        let now = tokio::time::Instant::now();
        timer.as_mut().reset(now.checked_add(period).unwrap_or(now));
        // Registers the new deadline with this task.
        let _ = timer.as_mut().poll(cx);
        if std::mem::take(heard) {
            self.last_heard = now;
            return None;
        }
        match self.idle {
            Some(idle) if now.duration_since(self.last_heard) >= idle => Some(Tick::Idle),
            _ if self.ping.is_some() => Some(Tick::Ping),
            _ => None,
        }
    }
}
