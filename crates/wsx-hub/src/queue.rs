//! The bounded outgoing queue of one connection. Producers (broadcasts,
//! acks, presence) push encoded messages; the connection task moves them
//! into the WebSocket's write buffer as fast as the socket drains. When the
//! queue is full the [`SlowConsumer`] policy decides: drop the oldest
//! broadcast, or close the connection.

use crate::policy::SlowConsumer;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use wsx::{CloseCode, Message};

/// What [`OutQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued.
    Queued,
    /// Queued, and this many older broadcasts were dropped to make room (or
    /// the new broadcast itself was dropped).
    Dropped(u64),
    /// Full: the connection is being closed (policy `Disconnect`).
    Overflow,
    /// The connection is gone.
    Closed,
}

/// What the connection task takes next.
#[derive(Debug)]
pub(crate) enum Next {
    Msg(Message),
    Close(CloseCode, String),
}

#[derive(Debug)]
struct Item {
    msg: Message,
    /// Broadcasts may be dropped under [`SlowConsumer::DropOldest`]; acks,
    /// presence and direct messages may not.
    droppable: bool,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    waker: Option<Waker>,
    close: Option<(CloseCode, String)>,
    close_taken: bool,
    ended: bool,
}

/// A connection's outgoing queue.
#[derive(Debug)]
pub(crate) struct OutQueue {
    state: Mutex<State>,
    capacity: usize,
    policy: SlowConsumer,
}

impl OutQueue {
    pub(crate) fn new(capacity: usize, policy: SlowConsumer) -> Self {
        Self { state: Mutex::new(State::default()), capacity: capacity.max(1), policy }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a message.
    pub(crate) fn push(&self, msg: Message, droppable: bool) -> Push {
        let mut s = self.lock();
        if s.ended || s.close.is_some() {
            return Push::Closed;
        }
        let mut dropped = 0;
        if s.items.len() >= self.capacity {
            match self.policy {
                SlowConsumer::DropOldest => {
                    if let Some(i) = s.items.iter().position(|it| it.droppable) {
                        s.items.remove(i);
                        dropped = 1;
                    } else if droppable {
                        return Push::Dropped(1);
                    } else if s.items.len() >= self.capacity.saturating_mul(2) {
                        // Only acks and direct messages, twice over: the
                        // client does not read at all.
                        s.close = Some((CloseCode::PolicyViolation, "slow consumer".into()));
                        wake(&mut s);
                        return Push::Overflow;
                    }
                }
                SlowConsumer::Disconnect | SlowConsumer::DisconnectTryAgain => {
                    let code = if self.policy == SlowConsumer::Disconnect {
                        CloseCode::PolicyViolation
                    } else {
                        CloseCode::TryAgainLater
                    };
                    s.close = Some((code, "slow consumer".into()));
                    s.items.clear();
                    wake(&mut s);
                    return Push::Overflow;
                }
            }
        }
        s.items.push_back(Item { msg, droppable });
        wake(&mut s);
        if dropped > 0 {
            Push::Dropped(dropped)
        } else {
            Push::Queued
        }
    }

    /// Ask the connection task to close with `code` (the first request
    /// wins). Returns whether this request was the first.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> bool {
        let mut s = self.lock();
        if s.close.is_some() || s.ended {
            return false;
        }
        s.close = Some((code, reason.to_owned()));
        wake(&mut s);
        true
    }

    /// The next thing to do: a close request first, then a message when
    /// `take` allows.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>, take: bool) -> Poll<Next> {
        let mut s = self.lock();
        if !s.close_taken {
            if let Some((code, reason)) = s.close.clone() {
                s.close_taken = true;
                return Poll::Ready(Next::Close(code, reason));
            }
        }
        if take && !s.close_taken {
            if let Some(it) = s.items.pop_front() {
                return Poll::Ready(Next::Msg(it.msg));
            }
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The connection ended: refuse further pushes and free the queue.
    pub(crate) fn end(&self) {
        let mut s = self.lock();
        s.ended = true;
        s.items = VecDeque::new();
        s.waker = None;
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

fn wake(s: &mut State) {
    if let Some(w) = s.waker.take() {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn next(q: &OutQueue) -> Option<Next> {
        match q.poll_next(&mut Context::from_waker(Waker::noop()), true) {
            Poll::Ready(n) => Some(n),
            Poll::Pending => None,
        }
    }

    #[test]
    fn drop_oldest_keeps_acks() {
        let q = OutQueue::new(2, SlowConsumer::DropOldest);
        assert_eq!(q.push(Message::text("ack"), false), Push::Queued);
        assert_eq!(q.push(Message::text("b1"), true), Push::Queued);
        assert_eq!(q.push(Message::text("b2"), true), Push::Dropped(1));
        assert!(matches!(next(&q), Some(Next::Msg(m)) if m.as_text() == Some("ack")));
        assert!(matches!(next(&q), Some(Next::Msg(m)) if m.as_text() == Some("b2")));
        assert!(next(&q).is_none());
    }

    #[test]
    fn disconnect_policy_closes() {
        let q = OutQueue::new(1, SlowConsumer::Disconnect);
        assert_eq!(q.push(Message::text("1"), true), Push::Queued);
        assert_eq!(q.push(Message::text("2"), true), Push::Overflow);
        assert!(matches!(next(&q), Some(Next::Close(CloseCode::PolicyViolation, _))));
        assert_eq!(q.push(Message::text("3"), true), Push::Closed);
    }
}
