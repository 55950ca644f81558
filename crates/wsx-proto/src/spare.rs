//! Spare buffers: one empty read buffer and one empty write buffer per
//! thread, handed from a connection that goes idle to the next connection
//! on that thread that needs one.
//!
//! An idle connection holds no buffer (its footprint is its state alone),
//! so without this a connection that receives a message, answers and waits
//! again allocates and frees a read buffer and a write buffer per message.
//! On a thread that serves many such connections, the buffer one releases
//! is the one the next takes.
//!
//! Bounded: at most one buffer of each kind per thread, of at most
//! [`MAX_KEPT`] bytes, so at most 128 KiB per thread whatever the number of
//! connections. A kept buffer is empty (length 0): no byte passes from one
//! connection to another.

use bytes::BytesMut;
use std::cell::Cell;
use std::thread::LocalKey;

/// Larger buffers are freed, not kept.
pub(crate) const MAX_KEPT: usize = 64 << 10;

thread_local! {
    static READ: Cell<Option<BytesMut>> = const { Cell::new(None) };
    static WRITE: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// Which spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
}

fn slot(kind: Kind) -> &'static LocalKey<Cell<Option<BytesMut>>> {
    match kind {
        Kind::Read => &READ,
        Kind::Write => &WRITE,
    }
}

/// The thread's spare buffer of this kind, or a new empty one.
pub(crate) fn take(kind: Kind) -> BytesMut {
    // `try_with`: during thread teardown the slot may be gone.
    slot(kind).try_with(Cell::take).ok().flatten().unwrap_or_default()
}

/// Keep `buf` as the thread's spare if it is empty and at most
/// [`MAX_KEPT`] bytes; otherwise (or if a spare is already kept) it is
/// freed.
pub(crate) fn give(kind: Kind, buf: BytesMut) {
    if !buf.is_empty() || buf.capacity() == 0 || buf.capacity() > MAX_KEPT {
        return;
    }
    let _ = slot(kind).try_with(|s| {
        let kept = s.take();
        s.set(Some(kept.unwrap_or(buf)));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_buffer_is_the_next_one_taken() {
        std::thread::spawn(|| {
            let mut buf = take(Kind::Read);
            buf.reserve(4096);
            let ptr = buf.as_ptr();
            give(Kind::Read, buf);
            let again = take(Kind::Read);
            assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
            assert!(again.is_empty() && again.capacity() >= 4096);
            // Taken: the slot is empty until it is given back.
            assert_eq!(take(Kind::Read).capacity(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn only_empty_buffers_of_a_useful_size_are_kept() {
        std::thread::spawn(|| {
            let mut data = BytesMut::with_capacity(4096);
            data.extend_from_slice(b"not empty");
            give(Kind::Write, data);
            assert_eq!(take(Kind::Write).capacity(), 0, "a buffer holding bytes is never kept");
            give(Kind::Write, BytesMut::with_capacity(MAX_KEPT + 1));
            assert_eq!(take(Kind::Write).capacity(), 0, "a large buffer is freed");
            // One per kind and thread: a second is freed, the first stays.
            let first = BytesMut::with_capacity(4096);
            let ptr = first.as_ptr();
            give(Kind::Write, first);
            give(Kind::Write, BytesMut::with_capacity(8192));
            assert_eq!(take(Kind::Write).as_ptr(), ptr);
            assert_eq!(take(Kind::Write).capacity(), 0);
            // The kinds are separate.
            give(Kind::Read, BytesMut::with_capacity(4096));
            assert_eq!(take(Kind::Write).capacity(), 0);
            assert!(take(Kind::Read).capacity() >= 4096);
        })
        .join()
        .unwrap();
    }
}
