//! Helpers shared by the fuzz targets: driving a [`Connection`] with input
//! in chunks, checking that what it buffers stays within its limits, and
//! checking that every byte it writes is a well-formed frame that a peer
//! accepts.
//!
//! A connection is driven through [`Connection::receive`], which is
//! `Reader::receive` and `Writer::perform`: the two calls `wsx` makes on the
//! halves it keeps (`RecvCore::poll_incoming`), so the routing fuzzed here
//! is the routing that runs.

use arbitrary::Arbitrary;
use bytes::Bytes;
use wsx_proto::deflate::DeflateParams;
use wsx_proto::fuzzing::{apply_mask, parse_close, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use wsx_proto::{CloseState, Config, Connection, Incoming, Message, Mode, ProtocolError, Role, INFLATE_STEP};

/// What a connection reported, in order: messages, then at most one error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message (data, ping, pong or close).
    Msg(Message),
    /// The error that failed the connection.
    Err(ProtocolError),
}

/// Limits small enough for a fuzzer to cross them with a few bytes, or the
/// defaults.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Limits {
    /// Max frame size: `None` keeps the default (64 MiB).
    pub frame: Option<u16>,
    /// Max message size: `None` keeps the default (64 MiB).
    pub message: Option<u16>,
    /// Automatic pongs.
    pub auto_pong: bool,
    /// Accept unmasked frames from clients.
    pub accept_unmasked: bool,
    /// High-water mark of the write queue, in 64-byte units.
    pub write_buffer: u8,
}

impl Limits {
    /// The protocol config.
    pub fn config(&self) -> Config {
        let mut c = Config::default()
            .with_auto_pong(self.auto_pong)
            .with_accept_unmasked_frames(self.accept_unmasked)
            .with_max_write_buffer(self.write_buffer as usize * 64);
        if let Some(f) = self.frame {
            c = c.with_max_frame_size(f as usize);
        }
        if let Some(m) = self.message {
            c = c.with_max_message_size(m as usize);
        }
        c
    }
}

/// permessage-deflate parameters as a fuzzer picks them.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct DeflateIn {
    /// server_no_context_takeover.
    pub server_nct: bool,
    /// client_no_context_takeover.
    pub client_nct: bool,
    /// Server window bits, mapped to 8..=15.
    pub server_bits: u8,
    /// Client window bits, mapped to 8..=15.
    pub client_bits: u8,
    /// Compression threshold, in bytes.
    pub threshold: u8,
    /// Compression level, mapped to 0..=9.
    pub level: u8,
}

impl DeflateIn {
    /// The negotiated parameters.
    pub fn params(&self) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: self.server_nct,
            client_no_context_takeover: self.client_nct,
            server_max_window_bits: 8 + self.server_bits % 8,
            client_max_window_bits: 8 + self.client_bits % 8,
            threshold: self.threshold as usize,
            level: (self.level % 10) as u32,
            mem_level: (self.level >= 10).then_some(1 + self.level / 10 % 9),
        }
    }
}

/// The other end.
pub fn opposite(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

/// Take every message the connection (made with `config`) can give from
/// what it has, reading whole messages, checking each against the limits.
/// Returns `true` once the connection failed.
pub fn drain(conn: &mut Connection, config: &Config, events: &mut Vec<Event>) -> bool {
    // Each iteration consumes input or ends, but bound it anyway so that a
    // loop that makes no progress shows as a crash, not a timeout.
    for _ in 0..1_000_000 {
        match conn.receive(Mode::Whole) {
            Ok(Some(Incoming::Message(m))) => {
                check_message(config, &m);
                events.push(Event::Msg(m));
            }
            Ok(Some(Incoming::Chunk(c))) => panic!("a chunk when reading whole messages: {c:?}"),
            Ok(None) => return false,
            Err(e) => {
                assert_eq!(conn.writer.close_state(), CloseState::Failed, "{e:?}");
                // Once failed, nothing more is reported.
                assert_eq!(conn.receive(Mode::Whole), Ok(None));
                events.push(Event::Err(e));
                return true;
            }
        }
    }
    panic!("receive made no progress");
}

/// Like [`drain`], reading in [`Mode::Streaming`] and putting the chunks of
/// each message back together (`partial` holds a message's chunks so far),
/// so that the events compare with those of [`drain`]. Checks that the
/// chunks are in order and within the limits, and (the callers feed less
/// than that at a time) that none is over [`INFLATE_STEP`]: inflation goes
/// in bounded steps.
pub fn drain_chunks(
    conn: &mut Connection,
    config: &Config,
    events: &mut Vec<Event>,
    partial: &mut Option<(bool, Vec<u8>)>,
) -> bool {
    for _ in 0..1_000_000 {
        match conn.receive(Mode::Streaming) {
            Ok(Some(Incoming::Message(m))) => {
                assert!(m.is_control(), "a whole data message when streaming: {m:?}");
                check_message(config, &m);
                events.push(Event::Msg(m));
            }
            Ok(Some(Incoming::Chunk(c))) => {
                assert_eq!(c.first, partial.is_none(), "first flag of {c:?}");
                assert!(c.data.len() <= INFLATE_STEP, "a chunk of {} bytes", c.data.len());
                let (text, acc) = partial.get_or_insert_with(|| (c.text, Vec::new()));
                assert_eq!(*text, c.text);
                acc.extend_from_slice(&c.data);
                assert!(acc.len() <= config.max_message_size(), "chunks past the message limit");
                if c.last {
                    let (text, acc) = partial.take().unwrap();
                    let m = if text {
                        Message::text(String::from_utf8(acc).expect("a text message in chunks is UTF-8"))
                    } else {
                        Message::binary(acc)
                    };
                    events.push(Event::Msg(m));
                }
            }
            Ok(None) => return false,
            Err(e) => {
                assert_eq!(conn.writer.close_state(), CloseState::Failed, "{e:?}");
                assert_eq!(conn.receive(Mode::Streaming), Ok(None));
                events.push(Event::Err(e));
                return true;
            }
        }
    }
    panic!("receive made no progress");
}

/// Whether two event lists are the same; with `loose`, errors need only be
/// of the same kind (the sizes in `MessageTooBig` depend on how far
/// inflation got, which differs between whole and streaming reading).
pub fn same_events(a: &[Event], b: &[Event], loose: bool) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Event::Err(x), Event::Err(y)) if loose => std::mem::discriminant(x) == std::mem::discriminant(y),
            (x, y) => x == y,
        })
}

/// A received message respects the limits and the protocol.
pub fn check_message(config: &Config, m: &Message) {
    match m {
        Message::Text(t) => {
            assert!(t.len() <= config.max_message_size());
            assert!(std::str::from_utf8(t.as_bytes()).is_ok());
        }
        Message::Binary(b) => assert!(b.len() <= config.max_message_size()),
        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
        Message::Close(Some(f)) => {
            assert!(f.code.is_sendable(), "{f:?}");
            assert!(f.reason.len() <= MAX_CONTROL_PAYLOAD - 2);
        }
        Message::Close(None) => {}
    }
}

/// What the connection may hold in its buffers after `drain`, given the
/// largest chunk fed at once: a partial frame (at most the frame limit plus
/// a header), the chunk, the room reserved for the next read (the rest of
/// the frame, at least 4 KiB), the fragments of a message (at most the
/// message limit) and its inflated form (at most the message limit plus
/// one byte), each at most doubled by buffer growth.
pub fn buffer_bound(config: &Config, chunk: usize) -> usize {
    let frame = config.max_frame_size().max(MAX_CONTROL_PAYLOAD) + MAX_HEADER_LEN;
    4 * (2 * frame + chunk + 4096) + 3 * (config.max_message_size() + 1) + 4096
}

/// Check that the bytes a connection of `role` wrote are well-formed
/// frames: masked by a client only, RSV1 only on the first frame of a
/// message and only with compression, control frames short and whole, and
/// nothing after a close frame. Returns the frames' count.
pub fn check_output(role: Role, compression: bool, out: &[u8], state: &mut OutState) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < out.len() {
        let (h, len) = FrameHeader::parse(&out[at..]).expect("valid header").expect("whole header");
        assert_eq!(h.mask.is_some(), role == Role::Client, "{h:?}");
        assert!(!h.rsv2 && !h.rsv3);
        let op = OpCode::from_u8(h.opcode).expect("known opcode");
        assert!(!state.closed, "a frame after the close frame: {h:?}");
        if op.is_control() {
            assert!(h.fin && !h.rsv1 && h.payload_len as usize <= MAX_CONTROL_PAYLOAD, "{h:?}");
        } else {
            match op {
                OpCode::Continuation => assert!(state.in_message && !h.rsv1, "{h:?}"),
                _ => assert!(!state.in_message && (!h.rsv1 || compression), "{h:?}"),
            }
            state.in_message = !h.fin;
        }
        let end = at + len + h.payload_len as usize;
        assert!(end <= out.len(), "frame longer than the output");
        if op == OpCode::Close {
            let mut body = out[at + len..end].to_vec();
            if let Some(k) = h.mask {
                apply_mask(&mut body, k);
            }
            let f = parse_close(Bytes::from(body)).expect("a valid close body");
            state.close = Some(f.map(|f| u16::from(f.code)));
            state.closed = true;
        }
        at = end;
        n += 1;
    }
    n
}

/// Where a stream of output frames stands.
#[derive(Debug, Default)]
pub struct OutState {
    /// A fragmented message is being sent.
    pub in_message: bool,
    /// A close frame was written.
    pub closed: bool,
    /// The close frame's code (`Some(None)`: no code).
    pub close: Option<Option<u16>>,
}

/// Write `payload` as one frame from `role` (masked with `key` by a client).
pub fn frame(role: Role, fin: bool, rsv1: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mask = (role == Role::Client).then_some(key);
    let h = FrameHeader { fin, rsv1, rsv2: false, rsv3: false, opcode, mask, payload_len: payload.len() as u64 };
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut hb);
    let mut out = hb[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k);
    }
    out
}

/// Split one frame written by `role` into its header and (unmasked) payload.
pub fn unframe(bytes: &[u8]) -> (FrameHeader, Vec<u8>, usize) {
    let (h, len) = FrameHeader::parse(bytes).expect("valid header").expect("whole header");
    let end = len + h.payload_len as usize;
    let mut payload = bytes[len..end].to_vec();
    if let Some(k) = h.mask {
        apply_mask(&mut payload, k);
    }
    (h, payload, end)
}
