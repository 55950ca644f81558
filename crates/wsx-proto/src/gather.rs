//! Regrouping received chunks for forwarding.

use crate::message::Chunk;
use bytes::Bytes;

/// Regroups the chunks of data messages for forwarding (an echo, a proxy):
/// a message that ends within [`Gather::FORWARD_AT`] bytes comes out whole
/// (one chunk with `first` and `last`); a larger one comes out in pieces of
/// at least that size while it is still arriving, so its forwarding starts
/// before its last byte is in and at most that much is held. Queue what
/// comes out with `wsx::WebSocket::feed_chunk` (a whole message as a
/// message, a piece as a fragment).
///
/// ```
/// use wsx_proto::{Chunk, Gather};
/// let mut gather = Gather::default();
/// let piece = |data: &'static [u8], first, last| Chunk { text: false, data: data.into(), first, last };
/// assert_eq!(gather.push(piece(b"he", true, false)), None);
/// assert_eq!(gather.push(piece(b"llo", false, true)), Some(piece(b"hello", true, true)));
/// ```
#[derive(Debug, Default)]
pub struct Gather {
    /// Bytes of the current message not forwarded yet (a `Vec`: 24 bytes,
    /// held by every connection task that forwards).
    pending: Vec<u8>,
    /// Part of the current message went out already (as a fragment).
    forwarding: bool,
}

impl Gather {
    /// How much of a message is gathered before it is forwarded in pieces.
    pub const FORWARD_AT: usize = 64 << 10;

    /// Take the next chunk of a message; what to forward now, if anything.
    #[inline]
    pub fn push(&mut self, chunk: Chunk) -> Option<Chunk> {
        if chunk.first && chunk.last {
            // A whole message (the common case): passed through as it is.
            self.pending.clear();
            self.forwarding = false;
            return Some(chunk);
        }
        self.push_piece(chunk)
    }

    fn push_piece(&mut self, chunk: Chunk) -> Option<Chunk> {
        let Chunk { text, data, first, last } = chunk;
        if first {
            self.pending.clear();
            self.forwarding = false;
        }
        let data = if self.pending.is_empty() && (last || data.len() >= Self::FORWARD_AT) {
            data
        } else {
            self.pending.extend_from_slice(&data);
            if !last && self.pending.len() < Self::FORWARD_AT {
                return None;
            }
            // Taken, not cleared: no buffer is held between messages.
            Bytes::from(std::mem::take(&mut self.pending))
        };
        let out = Chunk { text, data, first: !self.forwarding, last };
        self.forwarding = !last;
        Some(out)
    }
}
