//! The receiving half of a connection: bytes in; messages, or chunks of
//! them, out; and what each obliges the endpoint to send, as data.
//!
//! [`Reader::receive`] is the one receive driver. It parses what the read
//! buffer holds and returns a [`Received`]: what arrived (a message, a
//! chunk, nothing yet, or the error that fails the connection) and the
//! [`Duty`] it creates (a pong, the close reply, the close frame of a
//! failure), which the caller hands to [`crate::Writer::perform`]. The
//! reader never touches the writer, so the two halves can live in
//! different tasks without sharing state on the data path.
//!
//! One assembly path for every data message: a frame's payload becomes
//! pieces (the unmasked payload, or what inflating it produced), and the
//! [`Mode`] only decides whether a piece may be handed out before its
//! frame is complete (and inflation goes in bounded steps), or pieces are
//! gathered into one message. Every message and chunk is finished by
//! [`finish`], the one place that checks that a text message ends on a
//! code point boundary and builds what is handed out.
//!
//! Received payloads are unmasked in place in the read buffer and handed
//! out as `Bytes` slices of it (no copy, §5.3); a text payload is validated
//! as its bytes arrive, so invalid UTF-8 fails the connection at the first
//! bad byte (§8.1), even in a frame that is not complete yet.

use crate::close::{CloseCode, CloseFrame};
use crate::deflate::{DeflateParams, Inflater};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, HeaderError, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::limits::Config;
use crate::mask::{apply_mask, apply_mask_offset};
use crate::message::{Chunk, Incoming, Message};
use crate::read_state::{FrameState, MessageState, ReadState};
use crate::role::Role;
use crate::spare;
use crate::utf8::{self, Utf8Bytes};
use bytes::{Buf, Bytes, BytesMut};

/// Read size when nothing is known about what comes next.
const MIN_READ: usize = 4096;

/// Largest single read reservation.
const MAX_READ: usize = 1 << 20;

/// Most bytes one step of inflation produces in [`Mode::Streaming`]: what
/// a streaming reader holds of a compressed message at a time, whatever
/// the message's size.
pub const INFLATE_STEP: usize = 64 << 10;

/// How [`Reader::receive`] hands out text and binary messages. Control
/// messages (ping, pong, close) come whole either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each message whole, as [`Incoming::Message`], once its last byte is
    /// in. A message begun in [`Mode::Streaming`] is finished as a message
    /// of its remaining bytes.
    Whole,
    /// Pieces as they arrive, as [`Incoming::Chunk`]: what has arrived of a
    /// frame, and a compressed message inflated in steps of at most
    /// [`INFLATE_STEP`] bytes (the rest of its input stays in the reader
    /// until the next call). A proxy or an echo can forward a large message
    /// before its last byte is in, and holds at most one step of it.
    Streaming,
}

/// What the protocol obliges this endpoint to send because of what it
/// received. [`Reader::receive`] reports it; [`crate::Writer::perform`]
/// does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duty {
    /// The peer pinged: answer with a pong carrying the same payload
    /// (§5.5.2, §5.5.3). Only reported with automatic pongs on
    /// ([`Config::with_auto_pong`]). Boxed: pings are rare, and every
    /// [`Received`] has room for a duty (the writer keeps the box).
    Pong(Box<Bytes>),
    /// The peer's close frame arrived: reply with a close frame echoing its
    /// code (§5.5.1; `None` when it carried none), unless ours was sent. The
    /// closing handshake is then complete.
    CloseReply(Option<CloseCode>),
    /// The connection failed (§7.1.7): send a close frame with this code
    /// unless one was sent or the code may not be sent (1006 after an end
    /// of stream without a closing handshake, §7.1.5, §7.4.1), and nothing
    /// else.
    Fail(CloseCode),
}

/// The outcome of one [`Reader::receive`]: what arrived, and what it
/// obliges the endpoint to send.
#[derive(Debug)]
#[must_use = "a duty must be handed to the writer (`Writer::perform`)"]
pub struct Received {
    /// The next message or chunk; `Ok(None)` when more bytes are needed (or
    /// input is no longer interpreted); the error that failed the
    /// connection, reported once.
    pub result: Result<Option<Incoming>, ProtocolError>,
    /// For [`crate::Writer::perform`]: set for pings (with automatic
    /// pongs), close frames and failures; `None` for data.
    pub duty: Option<Duty>,
}

/// Whether the bytes received are still interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Open,
    /// The transport ended: what is buffered is still parsed, then the end
    /// is reported (1006: the closing handshake was not completed).
    EndOfStream,
    /// The peer's close frame arrived, the connection failed (the end of
    /// stream reported), or the reader was stopped: later bytes are
    /// dropped.
    Done,
}

/// The receiving half of a connection: the read buffer, the frame being
/// parsed and the message being assembled. See the [crate documentation](crate)
/// for the driver.
///
/// ```
/// use wsx_proto::{Config, Duty, Incoming, Message, Mode, Reader, Role};
/// let mut server = Reader::new(Role::Server, &Config::default());
/// // A masked ping "Hello" from a client (RFC 6455 §5.7).
/// server.feed(&[0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// let received = server.receive(Mode::Whole);
/// assert_eq!(received.result, Ok(Some(Incoming::Message(Message::ping("Hello")))));
/// // The pong it is owed, for the writer.
/// assert_eq!(received.duty, Some(Duty::Pong(Box::new("Hello".into()))));
/// ```
#[derive(Debug)]
pub struct Reader {
    role: Role,
    recv: Recv,
    auto_pong: bool,
    accept_unmasked_frames: bool,
    // The limits it applies (u32: at most 2 GiB; held by every connection,
    // which keeps these rather than its whole `Config`).
    /// The frame limit in effect ([`Config::max_frame_size`]).
    max_frame_size: u32,
    max_message_size: u32,
    /// Payload size of the last frame header parsed (sizes the next read).
    last_frame_len: u32,
    /// The read buffer and the frame and message in progress: boxed, and
    /// held only while something is buffered or in progress (an idle
    /// connection holds none; see [`crate::spare`]).
    st: Option<Box<ReadState>>,
    /// Boxed: most connections never negotiate compression, and an inline
    /// zlib stream would double the size of every connection.
    inflater: Option<Box<Inflater>>,
}

impl Reader {
    /// A reader in the given role, with the limits of `config`.
    pub fn new(role: Role, config: &Config) -> Self {
        Self {
            role,
            recv: Recv::Open,
            auto_pong: config.auto_pong(),
            accept_unmasked_frames: config.accept_unmasked_frames(),
            // At most 2 GiB (`MAX_SIZE_LIMIT`): they fit.
            max_frame_size: config.max_frame_size() as u32,
            max_message_size: config.max_message_size() as u32,
            last_frame_len: 0,
            st: None,
            inflater: None,
        }
    }

    /// A reader that accepts permessage-deflate messages as negotiated.
    pub fn with_deflate(role: Role, config: &Config, deflate: Option<&DeflateParams>) -> Self {
        let mut r = Self::new(role, config);
        r.inflater = deflate.map(|d| Box::new(d.for_role(role).1));
        r
    }

    /// The role.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
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
    /// let mut reader = Reader::new(Role::Server, &Config::default());
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
    /// frame arrived, the connection failed, or the end of stream was
    /// reported).
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

    /// The message being received, if one is under way: the payload bytes
    /// its frames declared so far (as sent) and the bytes it has produced
    /// so far (inflated, for a compressed message; else as sent). An echo
    /// compares them to tell a large message from a decompression bomb.
    ///
    /// ```
    /// use wsx_proto::{Config, Mode, Reader, Role};
    /// let mut reader = Reader::new(Role::Client, &Config::default());
    /// assert_eq!(reader.message_progress(), None);
    /// reader.feed(&[0x02, 0x03, b'a', b'b', b'c']); // the first fragment of a binary message
    /// let _ = reader.receive(Mode::Streaming);
    /// assert_eq!(reader.message_progress(), Some((3, 3)));
    /// ```
    pub fn message_progress(&self) -> Option<(usize, usize)> {
        let m = self.st.as_ref()?.msg.as_ref()?;
        let produced = if m.compressed { m.inflated } else { m.size };
        Some((m.size as usize, produced as usize))
    }

    /// Heap bytes held by the read side.
    pub fn buffer_capacity(&self) -> usize {
        self.st.as_ref().map_or(0, |st| st.buffer_capacity())
    }

    /// Stop interpreting input and drop what is buffered (the connection
    /// is being torn down). Owes nothing: a later end of stream is not
    /// reported.
    pub fn stop(&mut self) {
        self.recv = Recv::Done;
        self.st = None;
    }

    /// The transport reached end of stream. What is buffered is still
    /// parsed by [`Reader::receive`], which then reports the end: if the
    /// closing handshake was not completed (no close frame received, and
    /// the connection did not fail), as [`ProtocolError::AbnormalClosure`]
    /// with [`Duty::Fail`] of 1006 (§7.1.5), which sends nothing;
    /// otherwise as nothing (`Ok(None)`), and [`Reader::is_done`] is true.
    ///
    /// ```
    /// use wsx_proto::{CloseCode, Config, Duty, Mode, ProtocolError, Reader, Role};
    /// let mut reader = Reader::new(Role::Client, &Config::default());
    /// reader.end_of_stream();
    /// let received = reader.receive(Mode::Whole);
    /// assert_eq!(received.result, Err(ProtocolError::AbnormalClosure));
    /// assert_eq!(received.duty, Some(Duty::Fail(CloseCode::Abnormal)));
    /// ```
    pub fn end_of_stream(&mut self) {
        if self.recv == Recv::Open {
            self.recv = Recv::EndOfStream;
        }
    }

    /// Parse what the read buffer holds: the next message (or chunk, in
    /// [`Mode::Streaming`]) and what it obliges the endpoint to send. Pings
    /// and pongs are handed out too. A protocol violation fails the
    /// connection: the error is returned once, with [`Duty::Fail`], and
    /// later input is ignored; so is input after the peer's close frame.
    ///
    /// The mode may change between calls. In the middle of a message, a
    /// switch to `Whole` finishes it as a message of the bytes not handed
    /// out yet; a switch to `Streaming` hands out what was gathered with the
    /// next chunk.
    #[inline(always)]
    pub fn receive(&mut self, mode: Mode) -> Received {
        if self.nothing_to_parse() {
            return self.nothing_more();
        }
        self.parse(mode)
    }

    /// Nothing to hand out: report the end of stream if it came.
    #[inline]
    fn nothing_more(&mut self) -> Received {
        if self.recv == Recv::EndOfStream {
            return self.fail(ProtocolError::AbnormalClosure);
        }
        Received { result: Ok(None), duty: None }
    }

    /// Fail the connection: nothing more is interpreted.
    #[cold]
    fn fail(&mut self, e: ProtocolError) -> Received {
        self.stop();
        Received { duty: Some(Duty::Fail(e.close_code())), result: Err(e) }
    }

    /// Parsing would give nothing: no byte is buffered, and no frame in
    /// progress has output left to hand out (a frame whose payload has all
    /// left the buffer but whose inflation is not finished). Checked inline,
    /// as every wait for input starts with a parse of what is buffered.
    #[inline]
    fn nothing_to_parse(&self) -> bool {
        self.st.as_ref().is_none_or(|st| st.rbuf.is_empty() && st.frame.is_none_or(|f| f.len > 0))
    }

    /// Parse, and say what is owed. The [`Received`] is built here, where
    /// the parse is inlined, so that it is written once, in the caller's
    /// place (a whole message of a few bytes costs about as much to move
    /// around as to parse).
    fn parse(&mut self, mode: Mode) -> Received {
        // Taken out while parsing (the helpers borrow the rest of `self`);
        // not put back once input is no longer interpreted (a close frame
        // was parsed).
        let Some(mut st) = self.st.take() else { return self.nothing_more() };
        let mut duty = None;
        let result = self.parse_in(&mut st, mode, &mut duty);
        if self.recv != Recv::Done {
            self.st = Some(st);
        }
        match result {
            Err(e) => self.fail(e),
            Ok(None) => self.nothing_more(),
            // Moved whole, not taken apart: data is handed out as parsed.
            result => Received { result, duty },
        }
    }

    /// The parse loop; `duty` is set by a control frame that creates one.
    #[inline(always)]
    fn parse_in(
        &mut self,
        st: &mut ReadState,
        mode: Mode,
        duty: &mut Option<Duty>,
    ) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            let f = match st.frame {
                Some(f) => f,
                None => {
                    let Some((f, n)) = self.parse_header(st)? else { return Ok(None) };
                    // The common case first: a whole uncompressed message in
                    // one frame, all of it buffered. (A text or binary opcode
                    // starts a message: `parse_header` refuses one inside a
                    // fragmented message.)
                    if f.fin
                        && !f.rsv1
                        && matches!(f.opcode, OpCode::Text | OpCode::Binary)
                        && st.rbuf.len() - n >= f.len as usize
                    {
                        return whole_frame(st, f, n, mode).map(Some);
                    }
                    st.rbuf.advance(n);
                    if !f.opcode.is_control() {
                        // The frame joins its message (checked against the
                        // limit by `parse_header`), or starts one.
                        match st.msg.as_mut() {
                            Some(m) => m.size += f.len,
                            None => {
                                st.msg = Some(MessageState::new(f.opcode == OpCode::Text, f.rsv1, f.len));
                            }
                        }
                    }
                    f
                }
            };
            if f.opcode.is_control() {
                // §5.5: at most 125 bytes, handed out whole.
                let len = f.len as usize;
                if st.rbuf.len() < len {
                    st.frame = Some(f);
                    return Ok(None);
                }
                st.frame = None;
                let mut payload = st.rbuf.split_to(len);
                if let Some(key) = f.mask {
                    apply_mask(&mut payload, key);
                }
                return self.control(f.opcode, payload.freeze(), duty).map(Some);
            }
            if let Some(out) = self.data_frame(st, f, mode)? {
                return Ok(Some(out));
            }
            if st.frame.is_some() {
                // The frame waits for more bytes.
                return Ok(None);
            }
        }
    }

    /// Take what has arrived of a data frame's payload: unmask and (text)
    /// validate the new bytes, turn them into a piece (the payload, or what
    /// inflating it gave), and hand it out or gather it as `mode` says.
    /// `None`: nothing to hand out yet; the frame is put back in `st` if it
    /// waits for more bytes, else the next frame follows.
    fn data_frame(
        &mut self,
        st: &mut ReadState,
        mut f: FrameState,
        mode: Mode,
    ) -> Result<Option<Incoming>, ProtocolError> {
        let Some(m) = st.msg.as_mut() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        let len = f.len as usize;
        let avail = st.rbuf.len().min(len);
        let processed = f.processed as usize;
        if avail > processed {
            let new = &mut st.rbuf[processed..avail];
            if let Some(key) = f.mask {
                apply_mask_offset(new, key, f.offset as usize + processed);
            }
            // §8.1: fail at the first byte that cannot be UTF-8, even
            // before the frame is complete.
            if m.text && !m.compressed && m.utf8.feed(new).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            f.processed = avail as u32;
        }
        let complete = avail == len;
        // What this call takes from the frame: a piece, and whether the
        // frame is finished with it.
        let (piece, frame_done) = if m.compressed {
            // Inflated as its bytes arrive (RFC 7692 §6.2), whatever the
            // mode: straight into the message when it is read whole, in
            // bounded steps when streaming.
            if avail == 0 && !complete {
                st.frame = Some(f);
                return Ok(None);
            }
            let Some(inflater) = self.inflater.as_deref_mut() else {
                return Err(ProtocolError::ReservedBits);
            };
            let mut step = Vec::new();
            let (out, max_out) = match mode {
                Mode::Whole => (&mut m.buf, usize::MAX),
                Mode::Streaming => (&mut step, INFLATE_STEP),
            };
            // The limit applies to all the message's inflated bytes, `out`
            // holding those since `before`.
            let before = out.len();
            let max = self.max_message_size as usize;
            let earlier = m.inflated as usize - before;
            let last = f.fin && complete;
            let limit = max - earlier;
            let r = inflater.inflate(&st.rbuf[..avail], last, out, limit, max_out);
            // §8.1 applies to the inflated data (RFC 7692 §6.2). Checked
            // before any error the inflation met, on what it gave within the
            // limit: the first violation in the stream is the one reported,
            // however the input was split (bytes that come out in one call
            // when fed whole come out over several when fed in pieces).
            if m.text && m.utf8.feed(&out[before..out.len().min(limit)]).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            let r = r.map_err(|e| match e {
                ProtocolError::MessageTooBig { size, .. } => {
                    ProtocolError::MessageTooBig { size: size + earlier as u64, max }
                }
                e => e,
            })?;
            // At most the message limit: `inflate` fails past it.
            m.inflated += (out.len() - before) as u32;
            let used = r.consumed as u32;
            st.rbuf.advance(r.consumed);
            f.len -= used;
            f.offset += used;
            f.processed -= used;
            (Bytes::from(step), complete && r.done)
        } else {
            match mode {
                // What has arrived, handed out before the frame is complete.
                Mode::Streaming if avail > 0 || complete => {
                    let data = st.rbuf.split_to(avail).freeze();
                    f.len -= avail as u32;
                    f.offset += avail as u32;
                    f.processed = 0;
                    (data, complete)
                }
                Mode::Whole if complete => (st.rbuf.split_to(len).freeze(), true),
                _ => {
                    st.frame = Some(f);
                    return Ok(None);
                }
            }
        };
        st.frame = (!frame_done).then_some(f);
        let last = frame_done && f.fin;
        let data = match mode {
            // Gathered before the caller switched to streaming: it goes first.
            Mode::Streaming if !m.buf.is_empty() => {
                m.buf.extend_from_slice(&piece);
                Bytes::from(std::mem::take(&mut m.buf))
            }
            Mode::Streaming if piece.is_empty() && !last => return Ok(None),
            Mode::Streaming => piece,
            Mode::Whole if !last => {
                // Gathered (inflated data is in the message already).
                m.buf.extend_from_slice(&piece);
                return Ok(None);
            }
            // A message in one piece: handed out as it is (no copy).
            Mode::Whole if m.buf.is_empty() => piece,
            Mode::Whole => {
                m.buf.extend_from_slice(&piece);
                Bytes::from(std::mem::take(&mut m.buf))
            }
        };
        let out = finish(m, data, last, mode);
        if last {
            st.msg = None;
        }
        out.map(Some)
    }

    /// A control frame's payload is complete (and unmasked): the message,
    /// and in `duty` what it obliges the endpoint to send.
    #[cold]
    fn control(&mut self, opcode: OpCode, payload: Bytes, duty: &mut Option<Duty>) -> Result<Incoming, ProtocolError> {
        Ok(Incoming::Message(match opcode {
            OpCode::Ping => {
                // §5.5.2: a pong with the same payload.
                if self.auto_pong {
                    *duty = Some(Duty::Pong(Box::new(payload.clone())));
                }
                Message::Ping(payload)
            }
            OpCode::Pong => Message::Pong(payload),
            _ => {
                let frame = CloseFrame::parse(payload).map_err(ProtocolError::from_close_payload)?;
                // §5.5.1: nothing follows a close frame; later bytes are
                // dropped. Its sender is owed a close echoing its code.
                self.recv = Recv::Done;
                *duty = Some(Duty::CloseReply(frame.as_ref().map(|f| f.code)));
                Message::Close(frame)
            }
        }))
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
        if h.rsv1 && (self.inflater.is_none() || !matches!(opcode, OpCode::Text | OpCode::Binary)) {
            return Err(ProtocolError::ReservedBits);
        }
        // §5.1: clients mask, servers do not.
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) if !self.accept_unmasked_frames => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let max_frame = self.max_frame_size as usize;
        if opcode.is_control() {
            // §5.5: control frames are not fragmented and carry <= 125 bytes.
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        } else {
            if h.payload_len > max_frame as u64 {
                return Err(ProtocolError::FrameTooBig { size: h.payload_len, max: max_frame });
            }
            // §5.4: continuation only inside a message; no new message inside one.
            match (opcode, st.msg.is_some()) {
                (OpCode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
                (OpCode::Text | OpCode::Binary, true) => return Err(ProtocolError::ExpectedContinuation),
                _ => {}
            }
            let max_msg = self.max_message_size as usize;
            let total = st.msg.as_ref().map_or(0, |m| m.size as u64) + h.payload_len;
            if total > max_msg as u64 {
                return Err(ProtocolError::MessageTooBig { size: total, max: max_msg });
            }
        }
        // Fits in u32: at most the 2 GiB limit, or 125 for control frames.
        let len = u32::try_from(h.payload_len)
            .map_err(|_| ProtocolError::FrameTooBig { size: h.payload_len, max: max_frame })?;
        if !opcode.is_control() {
            self.last_frame_len = len;
        }
        let f = FrameState { opcode, fin: h.fin, rsv1: h.rsv1, mask: h.mask, len, processed: 0, offset: 0 };
        Ok(Some((f, n)))
    }
}

/// The common case, before the general path: a text or binary message in
/// one frame (FIN set, uncompressed), all of it buffered after its header
/// (`header_len` bytes, checked by `parse_header`). Unmasked and (text)
/// validated in one pass each, without the incremental bookkeeping, and
/// handed out as a slice of the read buffer; finished as every message is.
#[inline(always)]
fn whole_frame(st: &mut ReadState, f: FrameState, header_len: usize, mode: Mode) -> Result<Incoming, ProtocolError> {
    let text = f.opcode == OpCode::Text;
    let len = f.len as usize;
    let payload = &mut st.rbuf[header_len..header_len + len];
    if let Some(key) = f.mask {
        apply_mask(payload, key);
    }
    // §8.1: a text message must be UTF-8 (checked whole: it is all here, so
    // the message's validator below has nothing carried over to finish).
    if text && utf8::validate(payload).is_err() {
        return Err(ProtocolError::InvalidUtf8);
    }
    // The header and the payload leave the buffer together (one split;
    // dropping the header from the shared bytes is a pointer move).
    let mut data = st.rbuf.split_to(header_len + len).freeze();
    data.advance(header_len);
    finish(&mut MessageState::new(text, false, f.len), data, true, mode)
}

/// Hand out `data`, the next piece of message `m` (`last`: its end; in
/// [`Mode::Whole`] only the end is handed out): the one place where a text
/// message is checked to end on a code point boundary (§8.1) and a message
/// or chunk is built.
#[inline(always)]
fn finish(m: &mut MessageState, data: Bytes, last: bool, mode: Mode) -> Result<Incoming, ProtocolError> {
    if last && m.text && m.utf8.finish().is_err() {
        return Err(ProtocolError::InvalidUtf8);
    }
    let first = !m.started;
    m.started = true;
    Ok(match mode {
        Mode::Streaming => Incoming::Chunk(Chunk { text: m.text, data, first, last }),
        // Every byte was validated as it arrived and the end checked above.
        Mode::Whole if first && m.text => Incoming::Message(Message::Text(Utf8Bytes::from_bytes_unchecked(data))),
        Mode::Whole if first => Incoming::Message(Message::Binary(data)),
        // The rest of a message begun in streaming mode.
        Mode::Whole => Incoming::Message(Chunk { text: m.text, data, first, last }.into_message()),
    })
}
