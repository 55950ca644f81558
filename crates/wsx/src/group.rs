//! A group of connections that share one keepalive clock and one close
//! request: a server's connections. Each member registers its task's waker
//! once (again only if it moves to another task); a tick of the clock, or
//! the group's close, wakes every member. Per connection this costs a slot
//! of the group (a waker and the task's abort handle) instead of a timer
//! and a close handle of its own, and nothing per message but an atomic
//! load.

use crate::keepalive::Settings;
use crate::{CloseCode, CloseFrame, Utf8Bytes};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Waker;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// One member's place.
#[derive(Default)]
struct Member {
    waker: Option<Waker>,
    abort: Option<AbortHandle>,
}

/// Places per chunk of the slab.
const CHUNK: usize = 256;

/// The members, in a slab of fixed-size chunks (a growing vector would
/// hold up to twice the places in use): a freed place is reused by the
/// next member.
#[derive(Default)]
struct Members {
    chunks: Vec<Box<[Member; CHUNK]>>,
    free: Vec<u32>,
    live: usize,
}

impl Members {
    fn get_mut(&mut self, id: u32) -> Option<&mut Member> {
        let id = id as usize;
        self.chunks.get_mut(id / CHUNK).map(|c| &mut c[id % CHUNK])
    }

    /// Every place (a free one holds nothing).
    fn iter(&self) -> impl Iterator<Item = &Member> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

pub(crate) struct Group {
    /// The keepalive of the group's members (none: no clock).
    keepalive: Option<Settings>,
    /// Ticks of the clock so far.
    epoch: AtomicU32,
    /// The group is closing: every member closes with `frame`.
    closing: AtomicBool,
    frame: Mutex<Option<CloseFrame>>,
    members: Mutex<Members>,
    /// The last member left.
    emptied: Notify,
    /// The clock's task was started.
    ticking: AtomicBool,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("keepalive", &self.keepalive)
            .field("members", &self.len())
            .finish_non_exhaustive()
    }
}

impl Group {
    /// A group whose members keep alive as `keepalive` says (its clock
    /// ticks at its period).
    pub(crate) fn new(keepalive: Option<Settings>) -> Arc<Self> {
        Arc::new(Self {
            keepalive,
            epoch: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            frame: Mutex::new(None),
            members: Mutex::new(Members::default()),
            emptied: Notify::new(),
            ticking: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keepalive its members share.
    pub(crate) fn keepalive(&self) -> Option<Settings> {
        self.keepalive
    }

    /// Members now.
    pub(crate) fn len(&self) -> usize {
        self.lock().live
    }

    /// A place for a new member, unless there are `max` already.
    pub(crate) fn join(&self, max: usize) -> Option<u32> {
        let mut m = self.lock();
        if m.live >= max {
            return None;
        }
        m.live += 1;
        let id = match m.free.pop() {
            Some(id) => id,
            None => {
                let next = m.chunks.len() * CHUNK;
                m.chunks.push(Box::new(std::array::from_fn(|_| Member::default())));
                // The new chunk's places, the first taken now.
                m.free.extend((next as u32 + 1..(next + CHUNK) as u32).rev());
                next as u32
            }
        };
        Some(id)
    }

    /// Member `id` is gone (each place is left once: its owner's guard
    /// leaves it when dropped).
    pub(crate) fn leave(&self, id: u32) {
        let mut m = self.lock();
        if let Some(place) = m.get_mut(id) {
            *place = Member::default();
            m.free.push(id);
            m.live -= 1;
            if m.live == 0 {
                self.emptied.notify_waiters();
            }
        }
    }

    /// Member `id`'s task, for [`Group::abort_all`].
    pub(crate) fn set_abort(&self, id: u32, abort: AbortHandle) {
        if let Some(member) = self.lock().get_mut(id) {
            member.abort = Some(abort);
        }
    }

    /// Wake `waker` at each tick and at the group's close.
    pub(crate) fn register(&self, id: u32, waker: &Waker) {
        if let Some(member) = self.lock().get_mut(id) {
            member.waker = Some(waker.clone());
        }
    }

    /// Ticks of the clock so far.
    #[inline]
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Ticks of the clock since `seen`, which moves to the current tick
    /// (read while a member waits).
    #[inline]
    pub(crate) fn ticks_since(&self, seen: &mut u32) -> Option<u32> {
        let epoch = self.epoch();
        if epoch == *seen {
            return None;
        }
        let ticks = epoch.wrapping_sub(*seen);
        *seen = epoch;
        Some(ticks)
    }

    /// Whether the group is closing (read for every message of a member).
    #[inline]
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The group's close frame, once it is closing.
    pub(crate) fn close_frame(&self) -> Option<CloseFrame> {
        self.frame.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Close every member with `code` and `reason`; later members close as
    /// soon as they join.
    pub(crate) fn close_all(&self, code: CloseCode, reason: &str) {
        *self.frame.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(CloseFrame { code, reason: Utf8Bytes::from(reason) });
        self.closing.store(true, Ordering::Release);
        self.wake_all();
    }

    /// Drop every member's task.
    pub(crate) fn abort_all(&self) -> usize {
        let m = self.lock();
        let tasks: Vec<&AbortHandle> = m.iter().filter_map(|s| s.abort.as_ref()).collect();
        for t in &tasks {
            t.abort();
        }
        tasks.len()
    }

    /// Resolves when the group has no member.
    pub(crate) async fn emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn wake_all(&self) {
        for w in self.lock().iter().filter_map(|s| s.waker.as_ref()) {
            w.wake_by_ref();
        }
    }

    /// Start the clock (once): a task that ticks every period, waking every
    /// member, for as long as the group lives and is not closing.
    pub(crate) fn start_clock(self: &Arc<Self>) {
        let Some(keepalive) = self.keepalive else { return };
        if self.ticking.swap(true, Ordering::AcqRel) {
            return;
        }
        let group: Weak<Group> = Arc::downgrade(self);
        let period = keepalive.period();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + period;
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(group) = group.upgrade() else { return };
                if group.is_closing() {
                    return;
                }
                group.epoch.fetch_add(1, Ordering::AcqRel);
                group.wake_all();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_reused_and_counted() {
        let g = Group::new(None);
        let a = g.join(2).unwrap();
        let b = g.join(2).unwrap();
        assert_eq!(g.join(2), None, "full");
        g.leave(a);
        assert_eq!(g.len(), 1);
        assert_eq!(g.join(2), Some(a), "the freed place is reused");
        g.leave(b);
        g.leave(a);
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn closing_wakes_every_member_once_registered() {
        use std::sync::atomic::AtomicUsize;
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let g = Group::new(None);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let (a, b) = (g.join(10).unwrap(), g.join(10).unwrap());
        g.register(a, &waker);
        g.register(b, &waker);
        assert!(!g.is_closing());
        g.close_all(CloseCode::GoingAway, "bye");
        assert!(g.is_closing());
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(g.close_frame().unwrap().reason.as_str(), "bye");
    }
}
