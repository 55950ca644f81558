//! The bytes a [`crate::Writer`] has queued for the transport: frozen
//! chunks (large payloads written from the sender's buffer) followed by a
//! tail buffer where headers and small payloads are coalesced.

use crate::frame::{FrameHeader, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// The least room a new write buffer gets (small frames are coalesced in
/// it, and it is kept as the thread's spare when the connection idles).
const MIN_WRITE_BUF: usize = 4096;

/// Bytes waiting to be written.
///
/// Boxed in the writer and held only while something is queued (see
/// [`crate::spare`]).
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    pub(crate) tail: BytesMut,
    /// Bytes queued, all slices together.
    pub(crate) len: usize,
}

/// Append an encoded frame header: copies of a constant length (the usual
/// header lengths) compile to a store or two, a variable one to a call to
/// memcpy.
#[inline(always)]
fn put_header(buf: &mut BytesMut, hb: &[u8; MAX_HEADER_LEN], n: usize) {
    match n {
        2 => buf.extend_from_slice(&hb[..2]),
        4 => buf.extend_from_slice(&hb[..4]),
        6 => buf.extend_from_slice(&hb[..6]),
        8 => buf.extend_from_slice(&hb[..8]),
        _ => buf.extend_from_slice(&hb[..n]),
    }
}

impl OutQueue {
    /// Nothing queued.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held (the queue itself included).
    pub(crate) fn buffer_capacity(&self) -> usize {
        std::mem::size_of::<Self>() + self.tail.capacity() + self.chunks.capacity() * std::mem::size_of::<Bytes>()
    }

    /// Queue one frame: its header, and its payload copied (masked with the
    /// header's key, if any) or, when `owned` is given, unmasked and larger
    /// than `copy_threshold`, shared.
    #[inline]
    pub(crate) fn push_frame(
        &mut self,
        header: &FrameHeader,
        payload: &[u8],
        owned: Option<&Bytes>,
        copy_threshold: usize,
    ) {
        if self.tail.capacity() == 0 {
            // Room to be reused: the queue becomes the thread's spare when
            // the connection idles.
            self.tail.reserve(MIN_WRITE_BUF);
        }
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut hb);
        self.len += n + payload.len();
        match owned {
            Some(bytes) if header.mask.is_none() && payload.len() > copy_threshold => {
                put_header(&mut self.tail, &hb, n);
                self.chunks.push_back(self.tail.split().freeze());
                // Shared, not copied (the only reference count taken here:
                // a small payload is copied below without touching it).
                self.chunks.push_back(bytes.clone());
            }
            _ => {
                self.tail.reserve(n + payload.len());
                put_header(&mut self.tail, &hb, n);
                let start = self.tail.len();
                self.tail.extend_from_slice(payload);
                if let Some(key) = header.mask {
                    apply_mask(&mut self.tail[start..], key);
                }
            }
        }
    }

    /// Queue a frame already encoded (unmasked): copied into the tail when
    /// it is no longer than `copy_threshold`, else shared.
    #[inline]
    pub(crate) fn push_encoded(&mut self, frame: &Bytes, copy_threshold: usize) {
        if self.tail.capacity() == 0 {
            self.tail.reserve(MIN_WRITE_BUF);
        }
        self.len += frame.len();
        if frame.len() > copy_threshold {
            if !self.tail.is_empty() {
                self.chunks.push_back(self.tail.split().freeze());
            }
            self.chunks.push_back(frame.clone());
        } else {
            self.tail.extend_from_slice(frame);
        }
    }

    /// Fill `dst` with the queued slices, in order; how many were filled.
    #[inline]
    pub(crate) fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for c in &self.chunks {
            if n == dst.len() {
                return n;
            }
            dst[n] = IoSlice::new(c);
            n += 1;
        }
        if n < dst.len() && !self.tail.is_empty() {
            dst[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        n
    }

    /// All queued bytes, copied into one buffer.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v.extend_from_slice(&self.tail);
        v
    }

    /// How many slices hold the queued bytes.
    #[inline]
    pub(crate) fn slices(&self) -> usize {
        self.chunks.len() + usize::from(!self.tail.is_empty())
    }

    /// The queued bytes when they are one slice (the tail alone): the
    /// common case, written without building a vector of slices.
    #[inline]
    pub(crate) fn contiguous(&self) -> Option<&[u8]> {
        self.chunks.is_empty().then_some(&self.tail[..])
    }

    /// `n` bytes were written. Inline: all of it (the usual case) is a few
    /// stores; a partial write goes out of line.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        if n >= self.len {
            // All written: the tail restarts at its buffer's beginning
            // (advancing it would move its start and leave the reclaiming
            // to the next reserve).
            if !self.chunks.is_empty() {
                self.chunks.clear();
            }
            self.tail.clear();
            self.len = 0;
        } else {
            self.advance_part(n);
        }
    }

    fn advance_part(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= n => {
                    n -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(n);
                    return;
                }
                None => {
                    let k = n.min(self.tail.len());
                    self.tail.advance(k);
                    return;
                }
            }
        }
    }
}
