//! The sending half of a connection: messages in, bytes to write out, and
//! the closing handshake.
//!
//! One close path for both roles and both directions: a close the user
//! starts ([`Writer::close`]), the reply to the peer's close and the close
//! frame that fails the connection (both [`Writer::perform`]ing a
//! [`Duty`] the reader reported) all go through here.

use crate::close::{CloseFrame, MAX_REASON_LEN};
use crate::deflate::{DeflateParams, Deflater};
use crate::error::SendError;
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use crate::limits::{Config, MAX_SIZE_LIMIT};
use crate::message::Message;
use crate::out_queue::OutQueue;
use crate::prepared::PreparedMessage;
use crate::reader::Duty;
use crate::role::Role;
use crate::spare;
use crate::utf8::Utf8Bytes;
use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::IoSlice;

/// Above this many queued bytes, an automatic pong waits (replaced by newer
/// ones) instead of growing a queue that the peer is not reading.
const CONTROL_BACKLOG: usize = 64 << 10;

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

/// What few connections use, behind one pointer so that the others do not
/// pay for it.
#[derive(Debug, Default)]
struct Extras {
    /// permessage-deflate was negotiated.
    deflater: Option<Deflater>,
    /// Masking keys from a seeded generator ([`Config::with_rng_seed`])
    /// instead of the thread's CSPRNG. Boxed: a compressing connection
    /// does not carry its (~300-byte) state.
    rng: Option<Box<StdRng>>,
}

/// The sending half of a connection: the write queue and the closing
/// handshake, including the close frames the reader says are owed (see the
/// [crate documentation](crate)).
///
/// ```
/// use wsx_proto::{Config, Message, Role, Writer};
/// let mut server = Writer::new(Role::Server, &Config::default());
/// server.send(Message::text("Hello")).unwrap();
/// // An unmasked text frame (RFC 6455 §5.7), to write to the transport.
/// assert_eq!(server.take_output(), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
/// ```
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
    /// The compressor and a seeded generator, when there are.
    extras: Option<Box<Extras>>,
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
            // A seed matters only to a client: a server never masks.
            extras: config
                .rng_seed()
                .filter(|_| role == Role::Client)
                .map(|seed| Box::new(Extras { deflater: None, rng: Some(Box::new(StdRng::seed_from_u64(seed))) })),
        }
    }

    /// A writer that compresses messages as negotiated (permessage-deflate).
    pub fn with_deflate(role: Role, config: &Config, deflate: Option<&DeflateParams>) -> Self {
        let mut w = Self::new(role, config);
        if let Some(d) = deflate {
            w.extras.get_or_insert_default().deflater = Some(d.for_role(role).0);
        }
        w
    }

    /// Whether permessage-deflate was negotiated.
    pub fn compression_enabled(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| e.deflater.is_some())
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

    /// Queue a prepared message ([`PreparedMessage`]): its frame, encoded
    /// once for every connection, is queued by reference, as is its
    /// compressed frame when this connection compresses the message and
    /// does so without context takeover (RFC 7692 §7.1.1.1; the frame is
    /// then compressed by the first connection with the same setting and
    /// shared). With server context takeover the connection compresses
    /// the message itself, as [`Writer::send`] does. The bytes written are
    /// those [`Writer::send`] writes for the same message.
    ///
    /// A server's only: a client gets [`SendError::PreparedByClient`], its
    /// frames being masked (RFC 6455 §5.3).
    ///
    /// ```
    /// use wsx_proto::{Config, PreparedMessage, Role, SendError, Writer};
    /// let prepared = PreparedMessage::binary(vec![1u8, 2]);
    /// let mut server = Writer::new(Role::Server, &Config::default());
    /// server.send_prepared(&prepared).unwrap();
    /// assert_eq!(server.take_output(), [0x82, 0x02, 1, 2]);
    /// let mut client = Writer::new(Role::Client, &Config::default());
    /// assert_eq!(client.send_prepared(&prepared), Err(SendError::PreparedByClient));
    /// client.send(prepared.to_message()).unwrap(); // masked, per frame
    /// ```
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), SendError> {
        if self.role != Role::Server {
            return Err(SendError::PreparedByClient);
        }
        let opcode = if msg.is_text() { OpCode::Text } else { OpCode::Binary };
        self.start_data(opcode, msg.len(), true)?;
        let copy_threshold = self.copy_threshold as usize;
        let deflater = self.extras.as_mut().and_then(|e| e.deflater.as_mut());
        let frame = match deflater.filter(|d| d.wants(msg.len())) {
            None => msg.frame().clone(),
            Some(d) => match d.shared_key() {
                Some(key) => msg.compressed_frame(key, |payload| compress_message(d, payload)),
                // Context takeover: this connection's own compressor.
                None => {
                    let compressed = compress_message(d, &msg.payload());
                    self.write_frame_rsv(opcode, true, true, &compressed, Some(&compressed));
                    return Ok(());
                }
            },
        };
        self.out.get_or_insert_with(spare::take_write).push_encoded(&frame, copy_threshold);
        Ok(())
    }

    /// Check that a data frame of `len` bytes may be sent now, and note
    /// whether it leaves a fragmented message open.
    #[inline]
    fn start_data(&mut self, opcode: OpCode, len: usize, fin: bool) -> Result<(), SendError> {
        if self.close != CloseState::Open {
            return Err(SendError::Closed);
        }
        if len > MAX_SIZE_LIMIT {
            return Err(SendError::MessageTooLarge(len));
        }
        // §5.4: a whole message may not start inside a fragmented one.
        if opcode != OpCode::Continuation && self.sending_fragmented {
            return Err(SendError::FragmentOrder);
        }
        self.sending_fragmented = !fin;
        Ok(())
    }

    #[inline]
    fn send_data_with(&mut self, opcode: OpCode, payload: Bytes, fin: bool, compress: bool) -> Result<(), SendError> {
        self.start_data(opcode, payload.len(), fin)?;
        // RFC 7692 §7.2.1: a whole message is compressed into one frame with
        // RSV1; fragmented sends and small messages go uncompressed.
        let whole = fin && opcode != OpCode::Continuation;
        let deflater = self.extras.as_mut().and_then(|e| e.deflater.as_mut());
        if let Some(d) = deflater.filter(|d| compress && whole && d.wants(payload.len())) {
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

    /// Do what the protocol requires because of what the reader received
    /// (see [`Duty`]; whoever drives a [`crate::Reader`] hands every duty
    /// it reports to this, and nothing else does):
    ///
    /// - a pong for the latest ping (§5.5.2, §5.5.3), replacing one not yet
    ///   written, unless a close frame was sent;
    /// - the reply to the peer's close frame, echoing its code (§5.5.1),
    ///   unless ours was sent; either way the handshake is then complete;
    /// - the close frame of a failure (§7.1.7) with its code, unless one was
    ///   sent or the code may not be sent (1006, §7.4.1); nothing is sent
    ///   after it, not even an owed pong.
    ///
    /// ```
    /// use wsx_proto::{CloseCode, CloseState, Config, Duty, Role, Writer};
    /// let mut writer = Writer::new(Role::Server, &Config::default());
    /// writer.perform(Duty::Fail(CloseCode::ProtocolError));
    /// assert_eq!(writer.close_state(), CloseState::Failed);
    /// assert_eq!(writer.take_output(), [0x88, 0x02, 0x03, 0xea]); // close, 1002
    /// ```
    pub fn perform(&mut self, duty: Duty) {
        match duty {
            Duty::Pong(payload) => {
                if self.close == CloseState::Open {
                    self.pending_pong = Some(payload);
                    self.flush_pong();
                }
            }
            Duty::CloseReply(code) => {
                if self.close == CloseState::Open {
                    self.pending_pong = None;
                    self.queue_close(code.map(|code| CloseFrame { code, reason: Utf8Bytes::new() }).as_ref());
                }
                if self.close != CloseState::Failed {
                    self.close = CloseState::Closed;
                }
            }
            Duty::Fail(code) => {
                self.pending_pong = None;
                if self.close == CloseState::Open && code.is_sendable() {
                    self.queue_close(Some(&CloseFrame { code, reason: Utf8Bytes::new() }));
                }
                self.close = CloseState::Failed;
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
            Role::Client => Some(self.masking_key()),
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

    /// §5.3 / §10.3: a fresh key for every frame, unpredictable (the
    /// thread's CSPRNG) unless the config asked for a seeded generator.
    #[inline]
    fn masking_key(&mut self) -> [u8; 4] {
        match self.extras.as_mut().and_then(|e| e.rng.as_mut()) {
            Some(rng) => rng.random(),
            None => rand::random(),
        }
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

    /// The write queue's high-water mark
    /// ([`Config::with_max_write_buffer`](crate::Config::with_max_write_buffer)).
    #[inline]
    pub fn high_water_mark(&self) -> usize {
        self.max_write_buffer as usize
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
        let v = out.to_vec();
        self.advance_write(v.len());
        v
    }
}
