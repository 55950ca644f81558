//! Spare receive and send states: one of each per thread, handed from a
//! connection that goes idle to the next connection on that thread that
//! needs one.
//!
//! An idle connection holds neither: the read buffer with the frame and
//! message in progress ([`ReadState`]) and the write queue ([`OutQueue`])
//! are boxed, created when bytes arrive or a frame is queued, and released
//! when the connection has nothing buffered, so an idle connection's
//! footprint is its settings and flags alone. Without the spares a
//! connection that receives a message, answers and waits again would
//! allocate and free both (and their buffers) per message; on a thread
//! that serves many such connections, the state one releases is the one
//! the next takes.
//!
//! Bounded: at most one of each per thread, with a buffer of at most
//! [`MAX_KEPT`] bytes, so at most about 128 KiB per thread whatever the
//! number of connections. A kept state is empty: no byte passes from one
//! connection to another.

use crate::out_queue::OutQueue;
use crate::read_state::ReadState;
use std::cell::Cell;
use std::thread::LocalKey;

/// States whose buffer is larger are freed, not kept.
pub(crate) const MAX_KEPT: usize = 64 << 10;

thread_local! {
    static READ: Cell<Option<Box<ReadState>>> = const { Cell::new(None) };
    static WRITE: Cell<Option<Box<OutQueue>>> = const { Cell::new(None) };
}

type Slot<T> = LocalKey<Cell<Option<Box<T>>>>;

/// The thread's spare in `slot`, or a new empty one.
fn take<T: Default>(slot: &'static Slot<T>) -> Box<T> {
    // `try_with`: during thread teardown the slot may be gone.
    slot.try_with(Cell::take).ok().flatten().unwrap_or_default()
}

/// Keep `spare` in `slot` if `keep` and the slot is empty; otherwise it is
/// freed.
fn give<T>(slot: &'static Slot<T>, spare: Box<T>, keep: bool) {
    if keep {
        let _ = slot.try_with(|s| {
            let kept = s.take();
            s.set(Some(kept.unwrap_or(spare)));
        });
    }
}

/// The thread's spare receive state, or a new empty one.
pub(crate) fn take_read() -> Box<ReadState> {
    take(&READ)
}

/// Keep `st` as the thread's spare if it is empty (no byte buffered, no
/// frame or message in progress) and its buffer is at most [`MAX_KEPT`];
/// otherwise, or if a spare is already kept, it is freed.
pub(crate) fn give_read(st: Box<ReadState>) {
    let keep = st.is_empty() && st.buffer_capacity() <= MAX_KEPT;
    give(&READ, st, keep);
}

/// The thread's spare write queue, or a new empty one.
pub(crate) fn take_write() -> Box<OutQueue> {
    take(&WRITE)
}

/// Keep `q` as the thread's spare if nothing is queued in it and its
/// buffer is at most [`MAX_KEPT`]; otherwise it is freed.
pub(crate) fn give_write(q: Box<OutQueue>) {
    let keep = q.is_empty() && q.buffer_capacity() <= MAX_KEPT;
    give(&WRITE, q, keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_state_is_the_next_one_taken() {
        std::thread::spawn(|| {
            let mut st = take_read();
            st.rbuf.reserve(4096);
            let ptr = st.rbuf.as_ptr();
            give_read(st);
            let again = take_read();
            assert_eq!(again.rbuf.as_ptr(), ptr, "the same buffer comes back");
            assert!(again.is_empty() && again.rbuf.capacity() >= 4096);
            // Taken: the slot is empty until it is given back.
            assert_eq!(take_read().rbuf.capacity(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn only_empty_states_with_small_buffers_are_kept() {
        std::thread::spawn(|| {
            let mut st = take_read();
            st.rbuf.extend_from_slice(b"not empty");
            give_read(st);
            assert_eq!(take_read().rbuf.capacity(), 0, "a state holding bytes is never kept");
            let mut st = take_read();
            st.rbuf.reserve(MAX_KEPT + 1);
            give_read(st);
            assert_eq!(take_read().rbuf.capacity(), 0, "a large buffer is freed");
            // One per kind and thread: a second is freed, the first stays.
            let mut first = take_write();
            first.tail.reserve(4096);
            let ptr = first.tail.as_ptr();
            give_write(first);
            let mut second = Box::<OutQueue>::default();
            second.tail.reserve(8192);
            give_write(second);
            assert_eq!(take_write().tail.as_ptr(), ptr);
            assert_eq!(take_write().tail.capacity(), 0);
            // The kinds are separate.
            let mut st = take_read();
            st.rbuf.reserve(4096);
            give_read(st);
            assert_eq!(take_write().tail.capacity(), 0);
            assert!(take_read().rbuf.capacity() >= 4096);
        })
        .join()
        .unwrap();
    }
}
