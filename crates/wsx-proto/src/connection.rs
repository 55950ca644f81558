//! The sans-I/O connection: bytes in, messages out; messages in, bytes out.
//!
//! [`Connection`] holds the state of one WebSocket connection after the
//! opening handshake: the read buffer and the frame being parsed, the
//! fragmented message being assembled with its UTF-8 validator, the close
//! handshake, and the queue of bytes to write. It never touches a socket or
//! a clock; the I/O layer reads into [`Connection::read_buf`] (or calls
//! [`Connection::feed`]), takes messages from [`Connection::next_message`],
//! and writes out what [`Connection::write_chunks`] shows, reporting progress
//! with [`Connection::advance_write`].
//!
//! Received payloads are unmasked in place in the read buffer and handed out
//! as `Bytes` slices of it (no copy, §5.3); a text payload is validated as its
//! bytes arrive, so invalid UTF-8 fails the connection at the first bad byte
//! (§8.1), even in a frame that is not complete yet.
//!
//! ```
//! use wsx_proto::{Connection, Config, Message, Role};
//! let mut server = Connection::new(Role::Server, Config::default());
//! // A masked "Hello" from a client (RFC 6455 §5.7).
//! server.feed(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
//! assert_eq!(server.next_message().unwrap(), Some(Message::text("Hello")));
//! server.send(Message::text("Hello")).unwrap();
//! assert_eq!(server.take_output(), vec![0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
//! ```

use crate::close::{CloseFrame, ClosePayloadError, MAX_REASON_LEN};
use crate::deflate::{DeflateParams, Deflater, Inflater};
use crate::error::{ProtocolError, SendError};
use crate::frame::{FrameHeader, HeaderError, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::limits::{Config, MAX_SIZE_LIMIT};
use crate::mask::{apply_mask, apply_mask_offset};
use crate::message::Message;
use crate::spare;
use crate::utf8::{Utf8Bytes, Utf8Validator};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Which end of the connection this is. Decides masking (§5.1): a client
/// masks every frame it sends and refuses masked frames; a server refuses
/// unmasked frames and never masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that opened the connection.
    Client,
    /// The end that accepted it.
    Server,
}

/// Where the closing handshake (§7) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseState {
    /// No close frame sent or received.
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// Both close frames exchanged: the transport may be closed (by the
    /// server first, §7.1.1).
    Closed,
    /// The connection was failed (§7.1.7): a close frame with the error's
    /// code is queued; the transport should be closed once it is written.
    Failed,
}

/// Whether the bytes received are still interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Open,
    /// The peer's close frame arrived (or we failed): later bytes are dropped.
    Done,
}

/// The frame whose header has been parsed and whose payload is arriving.
#[derive(Debug, Clone, Copy)]
struct FrameState {
    opcode: OpCode,
    fin: bool,
    /// RSV1 (permessage-deflate: the first frame of a compressed message).
    rsv1: bool,
    mask: Option<[u8; 4]>,
    // u32: frames are at most 2 GiB (the limit), and this is held by every
    // connection.
    len: u32,
    /// Payload bytes already unmasked (and validated, for text).
    processed: u32,
    /// Payload bytes of this frame already handed out as chunks (the
    /// masking key's phase for what remains).
    offset: u32,
}

/// A piece of a data message as it arrives ([`Reader::next_chunk`]).
///
/// The chunks of a message are in order; the first has `first`, the last
/// has `last` (one chunk can be both). For a text message the chunks
/// together are valid UTF-8, checked as they arrive, but one chunk may end
/// inside a code point; an invalid byte fails the connection (1007) before
/// it is handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// A text message (else binary).
    pub text: bool,
    /// The bytes (a slice of the read buffer, or inflated data).
    pub data: Bytes,
    /// The first chunk of its message.
    pub first: bool,
    /// The last chunk of its message.
    pub last: bool,
}

impl Chunk {
    /// The chunk as a message. A text chunk is checked once more (its
    /// fields are public, so `first && last` proves nothing about where
    /// the bytes came from, and `Utf8Bytes` must only ever hold UTF-8);
    /// one that is not valid UTF-8 on its own (a piece that begins or ends
    /// inside a code point) is returned as binary: its bytes are never
    /// dropped.
    #[inline]
    pub fn into_message(self) -> Message {
        if self.text {
            match Utf8Bytes::try_from_bytes(self.data.clone()) {
                Ok(t) => Message::Text(t),
                Err(_) => Message::Binary(self.data),
            }
        } else {
            Message::Binary(self.data)
        }
    }
}

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

/// What [`Reader::next_chunk`] yields: pieces of data messages, and whole
/// control messages (ping, pong, close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A piece of a text or binary message.
    Chunk(Chunk),
    /// A whole message (control messages when reading chunks).
    Message(Message),
}

/// A data message whose first frame has been seen.
#[derive(Debug)]
struct MessageState {
    text: bool,
    /// RSV1 was set on the first frame: the payload is DEFLATE data
    /// (RFC 7692 §6), inflated into the inflater's output buffer.
    compressed: bool,
    /// Fragments received so far (none for a single-frame message). Boxed:
    /// fragmented messages are rare, and this state is held by every
    /// connection that is receiving.
    data: Option<Box<BytesMut>>,
    /// Bytes received so far, all fragments. u32 (this is held by every
    /// connection that is receiving): at most `max_message_size`, which
    /// is at most 4 GiB, checked before each frame is accepted.
    size: u32,
    /// Some of it was handed out as chunks.
    started: bool,
    /// Inflated bytes handed out as chunks (compressed messages): at most
    /// `max_message_size`, so a u32.
    delivered: u32,
    utf8: Utf8Validator,
}

/// Bytes waiting to be written: frozen chunks (large payloads written from
/// the sender's buffer) followed by a tail buffer where headers and small
/// payloads are coalesced.
///
/// Boxed in the [`Writer`] and held only while something is queued (see
/// [`crate::spare`]).
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    pub(crate) tail: BytesMut,
    len: usize,
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
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held (the queue itself included).
    pub(crate) fn buffer_capacity(&self) -> usize {
        std::mem::size_of::<Self>() + self.tail.capacity() + self.chunks.capacity() * std::mem::size_of::<Bytes>()
    }

    fn push_frame(&mut self, header: &FrameHeader, payload: &[u8], owned: Option<&Bytes>, copy_threshold: usize) {
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

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
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

    /// How many slices hold the queued bytes.
    fn slices(&self) -> usize {
        self.chunks.len() + usize::from(!self.tail.is_empty())
    }

    /// The queued bytes when they are one slice (the tail alone): the
    /// common case, written without building a vector of slices.
    fn contiguous(&self) -> Option<&[u8]> {
        self.chunks.is_empty().then_some(&self.tail[..])
    }

    /// `n` bytes were written. Inline: all of it (the usual case) is a few
    /// stores; a partial write goes out of line.
    #[inline]
    fn advance(&mut self, n: usize) {
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

/// Above this many queued bytes, an automatic pong waits (replaced by newer
/// ones) instead of growing a queue that the peer is not reading.
const CONTROL_BACKLOG: usize = 64 << 10;

/// Read size when nothing is known about what comes next.
const MIN_READ: usize = 4096;

/// The least room a new write buffer gets (small frames are coalesced in
/// it, and it is kept as the thread's spare when the connection idles).
const MIN_WRITE_BUF: usize = 4096;

/// Largest single read reservation.
const MAX_READ: usize = 1 << 20;

/// The receiving half of a connection: the read buffer, the frame being
/// parsed and the message being assembled. It decides nothing about what to
/// send: the caller hands pings, close frames and errors to the [`Writer`]
/// (as [`Connection`] does), which lets the two halves live in different
/// tasks without sharing state on the data path.
#[derive(Debug)]
pub struct Reader {
    role: Role,
    config: Config,
    /// The read buffer and the frame and message in progress: boxed, and
    /// held only while something is buffered or in progress (an idle
    /// connection holds none; see [`crate::spare`]).
    st: Option<Box<ReadState>>,
    recv: Recv,
    /// Payload size of the last frame header parsed (sizes the next read).
    last_frame_len: u32,
    /// Boxed: most connections never negotiate compression, and an inline
    /// zlib stream would double the size of every connection.
    inflater: Option<Box<Inflater>>,
}

/// What a [`Reader`] holds while it is receiving.
#[derive(Debug, Default)]
pub(crate) struct ReadState {
    pub(crate) rbuf: BytesMut,
    frame: Option<FrameState>,
    msg: Option<MessageState>,
}

impl ReadState {
    /// Nothing buffered and nothing in progress.
    pub(crate) fn is_empty(&self) -> bool {
        self.rbuf.is_empty() && self.frame.is_none() && self.msg.is_none()
    }

    /// Heap bytes held (the state itself included).
    pub(crate) fn buffer_capacity(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.rbuf.capacity()
            + self
                .msg
                .as_ref()
                .and_then(|m| m.data.as_ref())
                .map_or(0, |d| std::mem::size_of::<BytesMut>() + d.capacity())
    }
}

impl Reader {
    /// A reader in the given role.
    pub fn new(role: Role, config: Config) -> Self {
        Self { role, config, st: None, recv: Recv::Open, last_frame_len: 0, inflater: None }
    }

    /// A reader that accepts permessage-deflate messages as negotiated.
    pub fn with_deflate(role: Role, config: Config, deflate: Option<&DeflateParams>) -> Self {
        let mut r = Self::new(role, config);
        r.inflater = deflate.map(|d| Box::new(d.for_role(role).1));
        r
    }

    /// The settings.
    #[inline]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Copy received bytes into the read buffer.
    pub fn feed(&mut self, data: &[u8]) {
        if self.recv == Recv::Open && !data.is_empty() {
            self.state().rbuf.extend_from_slice(data);
        }
    }

    /// The receive state, created (from the thread's spare) if the
    /// connection was idle.
    #[inline]
    fn state(&mut self) -> &mut ReadState {
        self.st.get_or_insert_with(spare::take_read)
    }

    /// The read buffer, for the I/O layer to read into directly (after
    /// making room for [`Reader::read_hint`] bytes, see
    /// [`Reader::reserve_for`]).
    #[inline]
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.state().rbuf
    }

    /// How many bytes to make room for before the next read: the rest of
    /// the current frame when its header is known, else the size of the
    /// last frame (peers tend to send alike messages, so one read takes a
    /// whole frame), at least 4 KiB and at most 1 MiB.
    #[inline]
    pub fn read_hint(&self) -> usize {
        match self.st.as_deref() {
            Some(ReadState { frame: Some(f), rbuf, .. }) => {
                (f.len as usize - rbuf.len().min(f.len as usize)).clamp(MIN_READ, MAX_READ)
            }
            _ => (self.last_frame_len as usize + MAX_HEADER_LEN).clamp(MIN_READ, MAX_READ),
        }
    }

    /// How much to reserve in the read buffer when it has less than `hint`
    /// ([`Reader::read_hint`]) bytes free: for a small read (at most the
    /// 4 KiB minimum), twice the minimum, else `hint`. Messages leave the
    /// buffer from its front; with only the minimum reserved, the buffer
    /// would be moved back to its start (a `BytesMut::reserve` that
    /// reclaims) before every read, with twice the minimum once every few
    /// kilobytes of messages.
    ///
    /// ```
    /// use wsx_proto::{Config, Reader, Role};
    /// let mut reader = Reader::new(Role::Server, Config::default());
    /// // Before each read:
    /// let hint = reader.read_hint();
    /// let buf = reader.read_buf();
    /// if buf.capacity() - buf.len() < hint {
    ///     buf.reserve(Reader::reserve_for(hint));
    /// }
    /// assert!(buf.capacity() - buf.len() >= hint);
    /// ```
    #[inline]
    pub fn reserve_for(hint: usize) -> usize {
        if hint <= MIN_READ {
            2 * MIN_READ
        } else {
            hint
        }
    }

    /// Whether the reader has stopped interpreting input (the peer's close
    /// frame arrived, or the connection failed).
    #[inline]
    pub fn is_done(&self) -> bool {
        self.recv == Recv::Done
    }

    /// Release what an idle connection does not need: the whole receive
    /// state when nothing is buffered or in progress (to the thread's
    /// spare), else an empty read buffer.
    #[inline]
    pub fn shrink_idle(&mut self) {
        let Some(st) = self.st.as_mut() else { return };
        if st.is_empty() {
            if let Some(st) = self.st.take() {
                spare::give_read(st);
            }
        } else if st.rbuf.is_empty() && st.rbuf.capacity() > 0 {
            st.rbuf = BytesMut::new();
        }
    }

    /// Heap bytes held by the read side.
    pub fn buffer_capacity(&self) -> usize {
        self.st.as_ref().map_or(0, |st| st.buffer_capacity()) + self.inflater.as_ref().map_or(0, |i| i.out.capacity())
    }

    /// Stop interpreting input (after a failure reported elsewhere).
    pub fn stop(&mut self) {
        self.recv = Recv::Done;
        self.st = None;
    }

    /// Parse the next message from the read buffer, or `Ok(None)` if more
    /// bytes are needed or input is no longer interpreted. After a close
    /// frame or an error, later input is ignored. The caller must pass
    /// pings, close frames and errors to the [`Writer`].
    #[inline]
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        if self.nothing_buffered() {
            return Ok(None);
        }
        let r = self.parse(false);
        if r.is_err() {
            self.stop();
        }
        match r? {
            Some(Incoming::Message(m)) => Ok(Some(m)),
            // Only a message that was already being read in chunks: its
            // remainder comes as one message (see `next_chunk`).
            Some(Incoming::Chunk(c)) => Ok(Some(c.into_message())),
            None => Ok(None),
        }
    }

    /// Like [`Reader::next_message`], but data messages come out in pieces
    /// as their bytes arrive ([`Incoming::Chunk`]), under the same limits
    /// and UTF-8 checks: a proxy or an echo can forward a large message
    /// before its last byte is in. Control messages come whole
    /// ([`Incoming::Message`]). Read a message to its last chunk before
    /// switching back to `next_message`, which would otherwise return only
    /// the rest of that message.
    #[inline]
    pub fn next_chunk(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        if self.nothing_buffered() {
            return Ok(None);
        }
        let r = self.parse(true);
        if r.is_err() {
            self.stop();
        }
        r
    }

    /// No byte waits to be parsed: parsing would return `Ok(None)` (a frame
    /// in progress needs more bytes; an empty frame is never left in
    /// progress). Checked inline, as every wait for input starts with a
    /// parse of what is buffered.
    #[inline]
    fn nothing_buffered(&self) -> bool {
        self.st.as_ref().is_none_or(|st| st.rbuf.is_empty())
    }

    fn parse(&mut self, streaming: bool) -> Result<Option<Incoming>, ProtocolError> {
        if self.recv == Recv::Done {
            self.st = None;
            return Ok(None);
        }
        // Taken out while parsing (the helpers borrow the rest of `self`);
        // not put back once input is no longer interpreted (a close frame
        // was parsed, which stops the reader).
        let Some(mut st) = self.st.take() else { return Ok(None) };
        let r = self.parse_in(&mut st, streaming);
        if self.recv == Recv::Open {
            self.st = Some(st);
        }
        r
    }

    fn parse_in(&mut self, st: &mut ReadState, streaming: bool) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            if self.recv == Recv::Done {
                st.rbuf.clear();
                return Ok(None);
            }
            let mut f = match st.frame {
                Some(f) => f,
                None => {
                    let Some((f, n)) = self.parse_header(st)? else { return Ok(None) };
                    // A final frame, all of it buffered.
                    if f.fin && st.rbuf.len() - n >= f.len as usize {
                        if let Some(whole) = Self::whole_message(st, f, n, streaming)? {
                            return Ok(Some(whole));
                        }
                    }
                    st.rbuf.advance(n);
                    f
                }
            };
            let (len, processed) = (f.len as usize, f.processed as usize);
            if st.msg.is_none() && matches!(f.opcode, OpCode::Text | OpCode::Binary) {
                // The first frame of a message that is not handled whole.
                st.msg = Some(MessageState {
                    text: f.opcode == OpCode::Text,
                    compressed: f.rsv1,
                    started: false,
                    delivered: 0,
                    data: None,
                    size: 0,
                    utf8: Utf8Validator::new(),
                });
            }
            let avail = st.rbuf.len().min(len);
            if avail > processed {
                let new = &mut st.rbuf[processed..avail];
                if let Some(key) = f.mask {
                    apply_mask_offset(new, key, f.offset as usize + processed);
                }
                if !f.opcode.is_control() {
                    if let Some(m) = st.msg.as_mut() {
                        // §8.1: fail at the first byte that cannot be UTF-8,
                        // even before the frame is complete.
                        if m.text && !m.compressed && m.utf8.feed(new).is_err() {
                            return Err(ProtocolError::InvalidUtf8);
                        }
                    }
                }
                f.processed = avail as u32;
            }
            if avail < len {
                // Streaming: hand out what has arrived of an uncompressed
                // data frame (compressed frames are inflated whole).
                if streaming && avail > 0 && !f.opcode.is_control() {
                    if let Some(m) = st.msg.as_mut().filter(|m| !m.compressed) {
                        let data = st.rbuf.split_to(avail).freeze();
                        f.len -= avail as u32;
                        f.offset += avail as u32;
                        f.processed = 0;
                        st.frame = Some(f);
                        m.size += avail as u32;
                        let first = !m.started;
                        m.started = true;
                        return Ok(Some(Incoming::Chunk(Chunk { text: m.text, data, first, last: false })));
                    }
                }
                st.frame = Some(f);
                return Ok(None);
            }
            st.frame = None;
            let payload = st.rbuf.split_to(len).freeze();
            let streamed = st.msg.as_ref().is_some_and(|m| m.started);
            if (streaming || streamed) && !f.opcode.is_control() {
                if let Some(c) = self.complete_chunk(st, f, payload)? {
                    return Ok(Some(Incoming::Chunk(c)));
                }
            } else if let Some(m) = self.complete_frame(st, f, payload)? {
                return Ok(Some(Incoming::Message(m)));
            }
        }
    }

    /// The common case, before the general path: a text or binary message
    /// in one frame (FIN set, uncompressed), all of it buffered after its
    /// header (`header_len` bytes, checked by `parse_header`). Unmasked
    /// and (text) validated in one pass each, without the incremental
    /// bookkeeping; the same rules and the same result as the general path.
    /// `None`: not that case.
    #[inline]
    fn whole_message(
        st: &mut ReadState,
        f: FrameState,
        header_len: usize,
        streaming: bool,
    ) -> Result<Option<Incoming>, ProtocolError> {
        // A text or binary opcode starts a message (`parse_header` refuses
        // one inside a fragmented message), so this frame is all of it.
        // RSV1 on the first frame: compressed (inflated by the general path).
        if !matches!(f.opcode, OpCode::Text | OpCode::Binary) || f.rsv1 {
            return Ok(None);
        }
        let text = f.opcode == OpCode::Text;
        let len = f.len as usize;
        let payload = &mut st.rbuf[header_len..header_len + len];
        if let Some(key) = f.mask {
            apply_mask(payload, key);
        }
        // §8.1: a text message must be UTF-8 (checked whole: it is all here).
        if text && crate::utf8::validate(payload).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        // The header and the payload leave the buffer together (one split;
        // dropping the header from the shared bytes is a pointer move).
        let mut data = st.rbuf.split_to(header_len + len).freeze();
        data.advance(header_len);
        Ok(Some(if streaming {
            Incoming::Chunk(Chunk { text, data, first: true, last: true })
        } else if text {
            Incoming::Message(Message::Text(Utf8Bytes::from_bytes_unchecked(data)))
        } else {
            Incoming::Message(Message::Binary(data))
        }))
    }

    /// A data frame's payload is complete, in chunk mode: hand it out (or
    /// its inflated bytes) as the next chunk of its message.
    fn complete_chunk(
        &mut self,
        st: &mut ReadState,
        f: FrameState,
        payload: Bytes,
    ) -> Result<Option<Chunk>, ProtocolError> {
        let Some(m) = st.msg.as_mut() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        m.size += payload.len() as u32;
        let data = if m.compressed {
            let Some(inflater) = self.inflater.as_mut() else {
                return Err(ProtocolError::ReservedBits);
            };
            let limit = self.config.max_message_size().saturating_sub(m.delivered as usize);
            let mut out = Vec::new();
            inflate_frame(inflater, m, &payload, f.fin, &mut out, limit)?;
            // At most `limit`: inflate_frame fails past it.
            m.delivered += out.len() as u32;
            Bytes::from(out)
        } else {
            payload
        };
        if data.is_empty() && !f.fin {
            return Ok(None);
        }
        let first = !m.started;
        m.started = true;
        let text = m.text;
        if f.fin {
            let complete = m.utf8.finish();
            st.msg = None;
            if text {
                complete.map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        Ok(Some(Chunk { text, data, first, last: f.fin }))
    }

    /// Parse and check a frame header at the start of the read buffer.
    /// The frame and its header's length; the header stays in the buffer.
    fn parse_header(&mut self, st: &mut ReadState) -> Result<Option<(FrameState, usize)>, ProtocolError> {
        let (h, n) = match FrameHeader::parse(&st.rbuf) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(None),
            Err(HeaderError::LengthMsbSet) => return Err(ProtocolError::InvalidLength),
        };
        // §5.2: RSV bits MUST be 0 unless an extension defines them.
        if h.rsv2 || h.rsv3 {
            return Err(ProtocolError::ReservedBits);
        }
        let opcode = OpCode::from_u8(h.opcode).ok_or(ProtocolError::ReservedOpcode(h.opcode))?;
        // RFC 7692 §6: with permessage-deflate, RSV1 marks the first frame of
        // a compressed message; on a control or continuation frame it is an
        // error, and without the extension it is reserved.
        let compressed = h.rsv1;
        if compressed && (self.inflater.is_none() || !matches!(opcode, OpCode::Text | OpCode::Binary)) {
            return Err(ProtocolError::ReservedBits);
        }
        // §5.1: clients mask, servers do not.
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) if !self.config.accept_unmasked_frames() => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if opcode.is_control() {
            // §5.5: control frames are not fragmented and carry <= 125 bytes.
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        } else {
            let max_frame = self.config.max_frame_size();
            if h.payload_len > max_frame as u64 {
                return Err(ProtocolError::FrameTooBig { size: h.payload_len, max: max_frame });
            }
            // §5.4: continuation only inside a message; no new message inside one.
            // (A text or binary frame starts a message; its state is made by
            // the caller, unless the message is handled whole at once.)
            match (opcode, st.msg.is_some()) {
                (OpCode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
                (OpCode::Text | OpCode::Binary, true) => return Err(ProtocolError::ExpectedContinuation),
                _ => {}
            }
            let max_msg = self.config.max_message_size();
            let total = st.msg.as_ref().map_or(0, |m| m.size as u64) + h.payload_len;
            if total > max_msg as u64 {
                return Err(ProtocolError::MessageTooBig { size: total, max: max_msg });
            }
        }
        // The length fits in usize: it is at most the 2 GiB limit, or 125.
        // Fits in u32: at most the 2 GiB limit, or 125 for control frames.
        let len = u32::try_from(h.payload_len)
            .map_err(|_| ProtocolError::FrameTooBig { size: h.payload_len, max: self.config.max_frame_size() })?;
        if !opcode.is_control() {
            self.last_frame_len = len;
        }
        Ok(Some((FrameState { opcode, fin: h.fin, rsv1: compressed, mask: h.mask, len, processed: 0, offset: 0 }, n)))
    }

    /// A frame's payload is complete (unmasked, text validated so far).
    fn complete_frame(
        &mut self,
        st: &mut ReadState,
        f: FrameState,
        payload: Bytes,
    ) -> Result<Option<Message>, ProtocolError> {
        match f.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload))),
            OpCode::Pong => Ok(Some(Message::Pong(payload))),
            OpCode::Close => {
                let frame = CloseFrame::parse(payload).map_err(|e| match e {
                    ClosePayloadError::OneByte => ProtocolError::InvalidClosePayload,
                    ClosePayloadError::InvalidCode(c) => ProtocolError::InvalidCloseCode(c),
                    ClosePayloadError::InvalidUtf8 => ProtocolError::InvalidCloseReason,
                })?;
                // §5.5.1: nothing follows a close frame; later bytes are dropped.
                self.stop();
                Ok(Some(Message::Close(frame)))
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let Some(m) = st.msg.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                m.size += payload.len() as u32;
                if m.compressed {
                    let Some(inflater) = self.inflater.as_mut() else {
                        return Err(ProtocolError::ReservedBits);
                    };
                    let mut out = std::mem::take(&mut inflater.out);
                    let r = inflate_frame(inflater, m, &payload, f.fin, &mut out, self.config.max_message_size());
                    inflater.out = out;
                    r?;
                    if !f.fin {
                        return Ok(None);
                    }
                    let data = Bytes::from(std::mem::take(&mut inflater.out));
                    return finish_message(st, data).map(Some);
                }
                if !f.fin {
                    m.data.get_or_insert_default().extend_from_slice(&payload);
                    return Ok(None);
                }
                let data = match m.data.take() {
                    None => payload,
                    Some(gathered) => {
                        let mut gathered = *gathered;
                        gathered.extend_from_slice(&payload);
                        gathered.freeze()
                    }
                };
                finish_message(st, data).map(Some)
            }
        }
    }
}

/// The last frame of the message in progress is in: check that its text
/// ended on a code point boundary and hand it out.
fn finish_message(st: &mut ReadState, data: Bytes) -> Result<Message, ProtocolError> {
    let Some(mut m) = st.msg.take() else {
        return Err(ProtocolError::UnexpectedContinuation);
    };
    if m.text {
        m.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        Ok(Message::Text(Utf8Bytes::from_bytes_unchecked(data)))
    } else {
        Ok(Message::Binary(data))
    }
}

/// Inflate one frame of a compressed message into `out`, never past
/// `limit` bytes in all, and validate inflated text as it comes (§8.1
/// applies to the inflated data, RFC 7692 §6.2).
fn inflate_frame(
    inflater: &mut Inflater,
    m: &mut MessageState,
    payload: &[u8],
    fin: bool,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ProtocolError> {
    let before = out.len();
    inflater.inflate(payload, fin, out, limit)?;
    if m.text && m.utf8.feed(&out[before..]).is_err() {
        return Err(ProtocolError::InvalidUtf8);
    }
    Ok(())
}

/// The sending half of a connection: the write queue and the closing
/// handshake. One close path for both roles and both directions: a close
/// the user starts ([`Writer::close`]), the answer to the peer's close
/// ([`Writer::receive_close`]) and the close that fails the connection
/// ([`Writer::fail`]) all go through here.
#[derive(Debug)]
pub struct Writer {
    role: Role,
    copy_threshold: u32,
    max_write_buffer: u32,
    close: CloseState,
    /// The latest ping's payload, waiting to be answered (§5.5.3: a pong
    /// answers the most recent ping; older ones may go unanswered).
    /// Boxed: pings are rare and every connection holds this field.
    pending_pong: Option<Box<Bytes>>,
    /// A data message being sent in fragments by the user.
    sending_fragmented: bool,
    /// What is queued: boxed, and held only while something is (an idle
    /// connection holds none; see [`crate::spare`]).
    out: Option<Box<OutQueue>>,
    /// Boxed, as the reader's inflater.
    deflater: Option<Box<Deflater>>,
}

/// A whole message's payload, compressed (out of line: the uncompressed
/// send path is inlined into its callers).
#[inline(never)]
fn compress_message(d: &mut Deflater, payload: &[u8]) -> Bytes {
    let mut buf = Vec::new();
    d.compress(payload, &mut buf);
    Bytes::from(buf)
}

impl Writer {
    /// A writer in the given role.
    pub fn new(role: Role, config: &Config) -> Self {
        Self {
            role,
            copy_threshold: u32::try_from(config.copy_threshold()).unwrap_or(u32::MAX),
            max_write_buffer: u32::try_from(config.max_write_buffer()).unwrap_or(u32::MAX),
            close: CloseState::Open,
            pending_pong: None,
            sending_fragmented: false,
            out: None,
            deflater: None,
        }
    }

    /// A writer that compresses messages as negotiated (permessage-deflate).
    pub fn with_deflate(role: Role, config: &Config, deflate: Option<&DeflateParams>) -> Self {
        let mut w = Self::new(role, config);
        w.deflater = deflate.map(|d| Box::new(d.for_role(role).0));
        w
    }

    /// Whether permessage-deflate was negotiated.
    pub fn compression_enabled(&self) -> bool {
        self.deflater.is_some()
    }

    /// Queue a text or binary message without compressing it, even when
    /// permessage-deflate is on (e.g. data that is already compressed).
    /// Other messages are sent as by [`Writer::send`].
    pub fn send_uncompressed(&mut self, msg: Message) -> Result<(), SendError> {
        match msg {
            Message::Text(t) => self.send_data_with(OpCode::Text, t.into_bytes(), true, false),
            Message::Binary(b) => self.send_data_with(OpCode::Binary, b, true, false),
            other => self.send(other),
        }
    }

    /// Where the closing handshake stands.
    #[inline]
    pub fn close_state(&self) -> CloseState {
        self.close
    }

    /// Whether the transport should now be closed: both close frames were
    /// exchanged or the connection failed, and nothing is left to write.
    pub fn should_close_transport(&self) -> bool {
        matches!(self.close, CloseState::Closed | CloseState::Failed) && self.queued() == 0
    }

    /// Queue a message. Text and binary messages go out as one frame; pings
    /// and pongs must be at most 125 bytes; a close starts the closing
    /// handshake, see [`Writer::close`].
    #[inline]
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        match msg {
            Message::Text(t) => self.send_data(OpCode::Text, t.into_bytes(), true),
            Message::Binary(b) => self.send_data(OpCode::Binary, b, true),
            Message::Ping(b) => self.send_control(OpCode::Ping, b),
            Message::Pong(b) => self.send_control(OpCode::Pong, b),
            Message::Close(f) => self.close(f),
        }
    }

    /// Queue one fragment of a data message (§5.4): the first fragment with
    /// `text` saying the message type, later ones as continuations, the last
    /// with `fin`. Control messages may be sent between fragments.
    pub fn send_fragment(&mut self, text: bool, payload: Bytes, fin: bool) -> Result<(), SendError> {
        let opcode = match (self.sending_fragmented, text) {
            (true, _) => OpCode::Continuation,
            (false, true) => OpCode::Text,
            (false, false) => OpCode::Binary,
        };
        self.send_data(opcode, payload, fin)
    }

    #[inline]
    fn send_data(&mut self, opcode: OpCode, payload: Bytes, fin: bool) -> Result<(), SendError> {
        self.send_data_with(opcode, payload, fin, true)
    }

    #[inline]
    fn send_data_with(&mut self, opcode: OpCode, payload: Bytes, fin: bool, compress: bool) -> Result<(), SendError> {
        if self.close != CloseState::Open {
            return Err(SendError::Closed);
        }
        if payload.len() > MAX_SIZE_LIMIT {
            return Err(SendError::MessageTooLarge(payload.len()));
        }
        // §5.4: a whole message may not start inside a fragmented one.
        if opcode != OpCode::Continuation && self.sending_fragmented {
            return Err(SendError::FragmentOrder);
        }
        self.sending_fragmented = !fin;
        // RFC 7692 §7.2.1: a whole message is compressed into one frame with
        // RSV1; fragmented sends and small messages go uncompressed.
        let whole = fin && opcode != OpCode::Continuation;
        if let Some(d) = self.deflater.as_mut().filter(|d| compress && whole && d.wants(payload.len())) {
            let compressed = compress_message(d, &payload);
            self.write_frame_rsv(opcode, true, true, &compressed, Some(&compressed));
            return Ok(());
        }
        self.write_frame(opcode, fin, &payload, Some(&payload));
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), SendError> {
        if self.close != CloseState::Open {
            return Err(SendError::Closed);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        if opcode == OpCode::Pong {
            // A pong sent by the user supersedes the automatic one.
            self.pending_pong = None;
        }
        self.write_frame(opcode, true, &payload, None);
        Ok(())
    }

    /// Start the closing handshake (§7.1.2). The code must be one that may
    /// be sent (§7.4); the reason at most 123 bytes. `None` sends a close
    /// frame without a body. After this, no data may be sent; received
    /// messages still arrive until the peer's close frame.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        if let Some(f) = &frame {
            if !f.code.is_sendable() {
                return Err(SendError::InvalidCloseCode(f.code.into()));
            }
            if f.reason.len() > MAX_REASON_LEN {
                return Err(SendError::ReasonTooLong(f.reason.len()));
            }
        }
        match self.close {
            CloseState::Open => {
                // §5.5.2: a ping received before our close is still answered
                // (only a received close excuses the pong); it goes first.
                if let Some(p) = self.pending_pong.take() {
                    self.write_frame(OpCode::Pong, true, &p, None);
                }
                self.queue_close(frame.as_ref());
                self.close = CloseState::CloseSent;
                Ok(())
            }
            _ => Err(SendError::Closed),
        }
    }

    /// The peer pinged: queue a pong with the same payload (§5.5.2),
    /// replacing a pong not yet written.
    pub fn answer_ping(&mut self, payload: Bytes) {
        if self.close == CloseState::Open {
            self.pending_pong = Some(Box::new(payload));
            self.flush_pong();
        }
    }

    /// Answer what the reader handed out, as the protocol requires: a ping
    /// with a pong when `auto_pong` (§5.5.2), the peer's close frame with
    /// ours (§5.5.1). Other messages need no answer. Whoever drives a
    /// [`Reader`] calls this for every message it yields (only pings and
    /// close frames do anything, so a caller that has to lock the writer
    /// can check [`Writer::needs_answer`] first).
    pub fn answer(&mut self, msg: &Message, auto_pong: bool) {
        match msg {
            Message::Ping(p) if auto_pong => self.answer_ping(p.clone()),
            Message::Close(f) => self.receive_close(f.as_ref()),
            _ => {}
        }
    }

    /// Whether [`Writer::answer`] would do anything for `msg`.
    #[inline]
    pub fn needs_answer(msg: &Message, auto_pong: bool) -> bool {
        match msg {
            Message::Ping(_) => auto_pong,
            Message::Close(_) => true,
            _ => false,
        }
    }

    /// The peer's close frame arrived: answer it (§5.5.1, echoing the code)
    /// unless we sent ours already; either way the handshake is complete.
    pub fn receive_close(&mut self, frame: Option<&CloseFrame>) {
        if self.close == CloseState::Open {
            self.pending_pong = None;
            let reply = frame.map(|f| CloseFrame { code: f.code, reason: Utf8Bytes::new() });
            self.queue_close(reply.as_ref());
        }
        if self.close != CloseState::Failed {
            self.close = CloseState::Closed;
        }
    }

    /// Fail the connection (§7.1.7): queue a close frame with the error's
    /// code (§7.4.1) unless one was sent, and send nothing else.
    pub fn fail(&mut self, e: &ProtocolError) {
        self.pending_pong = None;
        if self.close == CloseState::Open && *e != ProtocolError::AbnormalClosure {
            let frame = CloseFrame { code: e.close_code(), reason: Utf8Bytes::new() };
            self.queue_close(Some(&frame));
        }
        self.close = CloseState::Failed;
    }

    /// The transport reached end of stream. An error if the closing
    /// handshake had not completed (§7.1.5: the close code is then 1006).
    pub fn receive_eof(&mut self) -> Result<(), ProtocolError> {
        match self.close {
            CloseState::Closed | CloseState::Failed => Ok(()),
            CloseState::Open | CloseState::CloseSent => {
                self.fail(&ProtocolError::AbnormalClosure);
                Err(ProtocolError::AbnormalClosure)
            }
        }
    }

    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        let mut body = BytesMut::new();
        if let Some(f) = frame {
            f.encode(&mut body);
        }
        self.write_frame(OpCode::Close, true, &body, None);
    }

    fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8], owned: Option<&Bytes>) {
        self.write_frame_rsv(opcode, fin, false, payload, owned)
    }

    fn write_frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8], owned: Option<&Bytes>) {
        let mask = match self.role {
            // §5.3 / §10.3: a fresh, unpredictable key for every frame.
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode: opcode.as_u8(),
            mask,
            payload_len: payload.len() as u64,
        };
        // The queue, created (from the thread's spare) if nothing was queued.
        let out = self.out.get_or_insert_with(spare::take_write);
        out.push_frame(&header, payload, owned, self.copy_threshold as usize);
    }

    /// Queue the pong owed to a ping, if any (checked before every write:
    /// inline, the rare case out of line).
    #[inline]
    fn flush_pong(&mut self) {
        if self.pending_pong.is_some() {
            self.flush_pong_slow();
        }
    }

    /// Queue the pending pong unless the peer has left a backlog unread.
    #[cold]
    fn flush_pong_slow(&mut self) {
        if self.queued() < CONTROL_BACKLOG {
            if let Some(p) = self.pending_pong.take() {
                self.write_frame(OpCode::Pong, true, &p, None);
            }
        }
    }

    /// Bytes queued to be written (the `bufferedAmount`).
    #[inline]
    pub fn buffered_amount(&self) -> usize {
        self.queued()
    }

    #[inline]
    fn queued(&self) -> usize {
        self.out.as_ref().map_or(0, |o| o.len)
    }

    /// Whether anything is waiting to be written.
    #[inline]
    pub fn wants_write(&mut self) -> bool {
        self.flush_pong();
        self.queued() > 0
    }

    /// Whether the write queue is above the configured high-water mark: the
    /// I/O layer should write before accepting more messages.
    #[inline]
    pub fn write_backpressure(&self) -> bool {
        self.queued() >= self.max_write_buffer as usize
    }

    /// Fill `dst` with the queued bytes, in order; returns how many slices
    /// were filled. Write them with one vectored write, then call
    /// [`Writer::advance_write`] with the number of bytes written.
    pub fn write_chunks<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.flush_pong();
        match self.out.as_deref() {
            Some(out) => out.chunks_vectored(dst),
            None => 0,
        }
    }

    /// The queued bytes, when they are one contiguous slice (small frames
    /// coalesced in the tail buffer): the common case, written with a plain
    /// write. `None` when nothing is queued or when [`Writer::write_chunks`]
    /// is needed (payloads queued by reference).
    #[inline]
    pub fn write_contiguous(&mut self) -> Option<&[u8]> {
        self.flush_pong();
        self.out.as_deref().and_then(OutQueue::contiguous).filter(|b| !b.is_empty())
    }

    /// How many slices [`Writer::write_chunks`] would fill given room for
    /// all: a vectored write can size its list of slices by it.
    #[inline]
    pub fn write_slice_count(&mut self) -> usize {
        self.flush_pong();
        self.out.as_deref().map_or(0, OutQueue::slices)
    }

    /// `n` bytes from the front of the queue were written.
    #[inline]
    pub fn advance_write(&mut self, n: usize) {
        if let Some(out) = self.out.as_mut() {
            out.advance(n);
            if out.len == 0 && out.tail.capacity() > 64 << 10 {
                out.tail = BytesMut::new();
            }
        }
    }

    /// Release the write queue when nothing is queued (to the thread's
    /// spare), so that an idle connection holds none.
    #[inline]
    pub fn shrink_idle(&mut self) {
        if self.queued() == 0 {
            if let Some(out) = self.out.take() {
                spare::give_write(out);
            }
        }
    }

    /// Heap bytes held by the write side.
    pub fn buffer_capacity(&self) -> usize {
        self.out.as_ref().map_or(0, |o| o.buffer_capacity())
    }

    /// Take all queued bytes as one buffer (for tests and simple transports).
    pub fn take_output(&mut self) -> Vec<u8> {
        self.flush_pong();
        let Some(out) = self.out.as_ref() else { return Vec::new() };
        let mut v = Vec::with_capacity(out.len);
        for c in &out.chunks {
            v.extend_from_slice(c);
        }
        v.extend_from_slice(&out.tail);
        let n = out.len;
        self.advance_write(n);
        v
    }
}

/// One WebSocket connection after the opening handshake, without I/O: a
/// [`Reader`] and a [`Writer`] wired together (pings answered, close frames
/// replied to, errors turned into the close frame that fails the connection).
#[derive(Debug)]
pub struct Connection {
    reader: Reader,
    writer: Writer,
}

impl Connection {
    /// A connection in the given role, open (the handshake is done).
    pub fn new(role: Role, config: Config) -> Self {
        Self::with_deflate(role, config, None)
    }

    /// A connection with permessage-deflate as negotiated in the handshake
    /// (see [`crate::deflate`]).
    pub fn with_deflate(role: Role, config: Config, deflate: Option<&DeflateParams>) -> Self {
        let writer = Writer::with_deflate(role, &config, deflate);
        Self { reader: Reader::with_deflate(role, config, deflate), writer }
    }

    /// Split into the receiving and sending halves. Whoever drives the
    /// reader must hand pings, close frames and errors to the writer the
    /// way [`Connection::next_message`] does.
    pub fn into_parts(self) -> (Reader, Writer) {
        (self.reader, self.writer)
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.reader.role
    }

    /// The settings.
    #[inline]
    pub fn config(&self) -> &Config {
        &self.reader.config
    }

    /// Where the closing handshake stands.
    #[inline]
    pub fn close_state(&self) -> CloseState {
        self.writer.close
    }

    /// Whether the transport should now be closed: both close frames were
    /// exchanged or the connection failed, and nothing is left to write.
    pub fn should_close_transport(&self) -> bool {
        self.writer.should_close_transport()
    }

    /// Copy received bytes into the read buffer.
    pub fn feed(&mut self, data: &[u8]) {
        self.reader.feed(data)
    }

    /// The read buffer, to read into directly (see [`Reader::read_buf`]).
    #[inline]
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.reader.read_buf()
    }

    /// See [`Reader::read_hint`].
    #[inline]
    pub fn read_hint(&self) -> usize {
        self.reader.read_hint()
    }

    /// Release buffers that hold no data, so that an idle connection holds
    /// (almost) no heap. The I/O layer calls this when it has nothing to do.
    #[inline]
    pub fn shrink_idle(&mut self) {
        self.reader.shrink_idle();
        self.writer.shrink_idle();
    }

    /// Heap bytes held by this connection's buffers (for footprint reports).
    pub fn buffer_capacity(&self) -> usize {
        self.reader.buffer_capacity() + self.writer.buffer_capacity()
    }

    /// The transport reached end of stream. An error if the closing
    /// handshake had not completed (§7.1.5: the close code is then 1006).
    pub fn receive_eof(&mut self) -> Result<(), ProtocolError> {
        self.reader.stop();
        self.writer.receive_eof()
    }

    /// Parse what the read buffer holds and return the next message, or
    /// `Ok(None)` if more bytes are needed (or the peer's close frame was
    /// already received). Pings and pongs are returned too; with automatic
    /// pongs on, a ping's answer is queued before it is returned.
    ///
    /// A protocol violation fails the connection: a close frame with the
    /// error's code (§7.4.1) is queued, later input is ignored, and the
    /// error is returned once.
    #[inline]
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        let r = self.reader.next_message();
        match &r {
            Ok(Some(m)) => self.writer.answer(m, self.reader.config.auto_pong()),
            Err(e) => self.writer.fail(e),
            Ok(None) => {}
        }
        r
    }

    /// Like [`Connection::next_message`], with data messages in pieces as
    /// they arrive; see [`Reader::next_chunk`]. Pings and close frames are
    /// handled as by `next_message`.
    #[inline]
    pub fn next_chunk(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        let r = self.reader.next_chunk();
        match &r {
            Ok(Some(Incoming::Message(m))) => self.writer.answer(m, self.reader.config.auto_pong()),
            Err(e) => self.writer.fail(e),
            Ok(_) => {}
        }
        r
    }

    /// See [`Writer::send`].
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.writer.send(msg)
    }

    /// See [`Writer::send_uncompressed`].
    pub fn send_uncompressed(&mut self, msg: Message) -> Result<(), SendError> {
        self.writer.send_uncompressed(msg)
    }

    /// See [`Writer::send_fragment`].
    pub fn send_fragment(&mut self, text: bool, payload: Bytes, fin: bool) -> Result<(), SendError> {
        self.writer.send_fragment(text, payload, fin)
    }

    /// See [`Writer::close`].
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        self.writer.close(frame)
    }

    /// Bytes queued to be written (the `bufferedAmount`).
    #[inline]
    pub fn buffered_amount(&self) -> usize {
        self.writer.buffered_amount()
    }

    /// Whether anything is waiting to be written.
    #[inline]
    pub fn wants_write(&mut self) -> bool {
        self.writer.wants_write()
    }

    /// See [`Writer::write_backpressure`].
    #[inline]
    pub fn write_backpressure(&self) -> bool {
        self.writer.write_backpressure()
    }

    /// See [`Writer::write_chunks`].
    pub fn write_chunks<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.writer.write_chunks(dst)
    }

    /// See [`Writer::write_slice_count`].
    #[inline]
    pub fn write_slice_count(&mut self) -> usize {
        self.writer.write_slice_count()
    }

    /// See [`Writer::write_contiguous`].
    #[inline]
    pub fn write_contiguous(&mut self) -> Option<&[u8]> {
        self.writer.write_contiguous()
    }

    /// `n` bytes from the front of the write queue were written.
    #[inline]
    pub fn advance_write(&mut self, n: usize) {
        self.writer.advance_write(n)
    }

    /// Take all queued bytes as one buffer (for tests and simple transports).
    pub fn take_output(&mut self) -> Vec<u8> {
        self.writer.take_output()
    }

    /// The receiving half.
    pub fn reader(&mut self) -> &mut Reader {
        &mut self.reader
    }

    /// The sending half.
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.writer
    }
}
