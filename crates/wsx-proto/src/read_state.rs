//! What a [`crate::Reader`] holds while it is receiving: the read buffer,
//! the frame whose payload is arriving and the data message in progress.
//!
//! Boxed in the reader and held only while something is buffered or in
//! progress (an idle connection holds none; see [`crate::spare`]).

use crate::frame::OpCode;
use crate::utf8::Utf8Validator;
use bytes::BytesMut;

/// The frame whose header has been parsed and whose payload is arriving.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameState {
    pub(crate) opcode: OpCode,
    pub(crate) fin: bool,
    /// RSV1: with permessage-deflate, the first frame of a compressed
    /// message (RFC 7692 §6).
    pub(crate) rsv1: bool,
    pub(crate) mask: Option<[u8; 4]>,
    /// Payload bytes of the frame not yet taken from the read buffer (u32:
    /// frames are at most 2 GiB, the limit, and this is held by every
    /// connection that is receiving). Zero while a taken payload still has
    /// inflated output to hand out.
    pub(crate) len: u32,
    /// Of those, how many are in the buffer already unmasked (and, for
    /// uncompressed text, validated).
    pub(crate) processed: u32,
    /// Payload bytes already taken from the read buffer (the masking key's
    /// phase for what remains).
    pub(crate) offset: u32,
}

/// A data message whose first frame has been seen.
#[derive(Debug)]
pub(crate) struct MessageState {
    pub(crate) text: bool,
    /// RSV1 was set on the first frame: the payload is DEFLATE data
    /// (RFC 7692 §6).
    pub(crate) compressed: bool,
    /// Some of it was handed out already (as chunks).
    pub(crate) started: bool,
    /// Payload bytes of its frames so far, as sent: at most
    /// `max_message_size` (at most 2 GiB, so a u32), checked before each
    /// frame is accepted.
    pub(crate) size: u32,
    /// Bytes inflated so far (compressed messages): at most
    /// `max_message_size`, checked as they are inflated.
    pub(crate) inflated: u32,
    pub(crate) utf8: Utf8Validator,
    /// The message gathered so far when it is read whole: the fragments of
    /// an uncompressed message, or the inflated bytes of a compressed one
    /// (inflated straight into it). Empty, without a buffer, otherwise.
    pub(crate) buf: Vec<u8>,
}

impl MessageState {
    /// A message whose first frame, of `size` payload bytes, just arrived.
    #[inline]
    pub(crate) fn new(text: bool, compressed: bool, size: u32) -> Self {
        Self { text, compressed, started: false, size, inflated: 0, utf8: Utf8Validator::new(), buf: Vec::new() }
    }
}

/// The receive state.
#[derive(Debug, Default)]
pub(crate) struct ReadState {
    pub(crate) rbuf: BytesMut,
    pub(crate) frame: Option<FrameState>,
    pub(crate) msg: Option<MessageState>,
}

impl ReadState {
    /// Nothing buffered and nothing in progress.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.rbuf.is_empty() && self.frame.is_none() && self.msg.is_none()
    }

    /// Heap bytes held (the state itself included).
    pub(crate) fn buffer_capacity(&self) -> usize {
        std::mem::size_of::<Self>() + self.rbuf.capacity() + self.msg.as_ref().map_or(0, |m| m.buf.capacity())
    }
}
