//! One test per protocol rule of RFC 6455, through the public API only.
//!
//! Each test is named after the rule it checks and cites the section of
//! RFC 6455 that states it. Frames from a peer are built by hand (any header
//! bits, masked or not), and what the connection writes is decoded here, so
//! that the close code a connection fails with is read from the wire.

use bytes::Bytes;
use wsx_proto::{
    CloseCode, CloseFrame, CloseState, Config, Connection, Duty, Incoming, Message, Mode, ProtocolError, Reader,
    Received, Role, SendError, Writer,
};

// ------------------------------------------------------------------ helpers

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2: u8 = 0x20;
const RSV3: u8 = 0x10;
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The masking key of the example in RFC 6455 §5.7.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame header: first byte `b0` as given (FIN, RSV, opcode), any 64-bit
/// payload length in its minimal form, and an optional masking key.
fn header(b0: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut v = vec![b0];
    if len < 126 {
        v.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        v.push(mask_bit | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(mask_bit | 127);
        v.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(k) = mask {
        v.extend_from_slice(&k);
    }
    v
}

/// A whole frame, the payload masked with `mask` if given.
fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = header(b0, payload.len() as u64, mask);
    let start = v.len();
    v.extend_from_slice(payload);
    if let Some(k) = mask {
        for (i, b) in v[start..].iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    v
}

/// A frame as a client sends it (masked).
fn cf(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, payload, Some(KEY))
}

/// A frame as a server sends it (not masked).
fn sf(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, payload, None)
}

/// A close payload: 2-byte code and reason.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason);
    v
}

/// A frame decoded from what a connection wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    /// Unmasked.
    payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame, if it has one.
    fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        assert_ne!(self.payload.len(), 1, "one-byte close payload sent");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Decode the frames a connection wrote; the bytes must be whole frames.
fn decode_frames(mut buf: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !buf.is_empty() {
        assert!(buf.len() >= 2, "truncated frame header");
        let b0 = buf[0];
        let b1 = buf[1];
        let (len, mut pos) = match b1 & 0x7f {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
            127 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
            n => (n as u64, 2),
        };
        let mask = if b1 & 0x80 != 0 {
            let k = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(k)
        } else {
            None
        };
        let len = len as usize;
        assert!(buf.len() >= pos + len, "truncated frame payload");
        let mut payload = buf[pos..pos + len].to_vec();
        if let Some(k) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        frames.push(Frame { fin: b0 & 0x80 != 0, rsv: b0 & 0x70, opcode: b0 & 0x0f, mask, header_len: pos, payload });
        buf = &buf[pos + len..];
    }
    frames
}

fn server() -> Connection {
    Connection::new(Role::Server, &Config::default())
}

fn client() -> Connection {
    Connection::new(Role::Client, &Config::default())
}

/// Feed `bytes` and read messages until more input is needed or an error.
fn drive(conn: &mut Connection, bytes: &[u8]) -> (Vec<Message>, Option<ProtocolError>) {
    conn.reader.feed(bytes);
    let mut msgs = Vec::new();
    loop {
        match conn.receive(Mode::Whole) {
            Ok(Some(m)) => msgs.push(m.into_message()),
            Ok(None) => return (msgs, None),
            Err(e) => return (msgs, Some(e)),
        }
    }
}

/// The transport ends: what the next receive reports.
fn end_of_stream(conn: &mut Connection) -> Result<Option<Incoming>, ProtocolError> {
    conn.reader.end_of_stream();
    conn.receive(Mode::Whole)
}

/// Everything a writer has to write, including what it held back
/// (a pong delayed by a backlog is queued once the backlog is taken).
fn drain_output(writer: &mut Writer) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let chunk = writer.take_output();
        if chunk.is_empty() {
            return out;
        }
        out.extend(chunk);
    }
}

/// The frames a connection has written so far.
fn output_frames(conn: &mut Connection) -> Vec<Frame> {
    decode_frames(&conn.writer.take_output())
}

/// Feed `bytes` to `conn`, which must fail the connection (§7.1.7). Checks
/// that the error is returned once, that one close frame carrying the
/// error's code was written (and nothing after it), that the state is
/// `Failed` and that later input is ignored. Returns the error and the code
/// read from the wire.
fn expect_failure_on(conn: &mut Connection, bytes: &[u8]) -> (ProtocolError, u16) {
    let (_, err) = drive(conn, bytes);
    let err = err.expect("the connection must fail");
    assert_eq!(conn.writer.close_state(), CloseState::Failed);
    let frames = output_frames(conn);
    let last = frames.last().expect("a close frame must be written");
    let code = last.close_code().expect("the close frame must carry a code");
    assert_eq!(code, u16::from(err.close_code()), "close code on the wire is the error's");
    assert_eq!(frames.iter().filter(|f| f.opcode == CLOSE).count(), 1);
    // The error is returned once; later input is ignored.
    assert_eq!(conn.receive(Mode::Whole), Ok(None));
    let more = if conn.reader.role() == Role::Server { cf(FIN | TEXT, b"x") } else { sf(FIN | TEXT, b"x") };
    assert_eq!(drive(conn, &more), (vec![], None));
    assert!(conn.writer.take_output().is_empty());
    assert!(conn.writer.should_close_transport());
    (err, code)
}

fn expect_failure(role: Role, config: Config, bytes: &[u8]) -> (ProtocolError, u16) {
    let mut conn = Connection::new(role, &config);
    expect_failure_on(&mut conn, bytes)
}

fn server_fails(bytes: &[u8]) -> (ProtocolError, u16) {
    expect_failure(Role::Server, Config::default(), bytes)
}

fn client_fails(bytes: &[u8]) -> (ProtocolError, u16) {
    expect_failure(Role::Client, Config::default(), bytes)
}

fn text(s: &str) -> Message {
    Message::text(s)
}

// ------------------------------------------------------------------ masking

#[test]
fn server_refuses_unmasked_client_frames() {
    // RFC 6455 §5.1: "The server MUST close the connection upon receiving a
    // frame that is not masked ... with a status code of 1002".
    for b0 in [FIN | TEXT, FIN | BINARY, FIN | PING, FIN | CLOSE, TEXT] {
        let (err, code) = server_fails(&sf(b0, b"hi"));
        assert_eq!(err, ProtocolError::UnmaskedFrame);
        assert_eq!(code, 1002);
    }
}

#[test]
fn server_accepts_unmasked_frames_only_when_configured() {
    // RFC 6455 §5.1 (the option relaxes the rule on purpose, e.g. for tests).
    let mut s = Connection::new(Role::Server, &Config::default().with_accept_unmasked_frames(true));
    let (msgs, err) = drive(&mut s, &[sf(FIN | TEXT, b"plain"), cf(FIN | TEXT, b"masked")].concat());
    assert_eq!(err, None);
    assert_eq!(msgs, vec![text("plain"), text("masked")]);
}

#[test]
fn client_refuses_masked_server_frames() {
    // RFC 6455 §5.1: "A client MUST close a connection if it detects a masked
    // frame" (1002).
    for b0 in [FIN | TEXT, FIN | BINARY, FIN | PING, FIN | CLOSE] {
        let (err, code) = client_fails(&cf(b0, b"hi"));
        assert_eq!(err, ProtocolError::MaskedFrame);
        assert_eq!(code, 1002);
    }
}

#[test]
fn client_masks_every_frame_with_a_fresh_key() {
    // RFC 6455 §5.3 / §10.3: every frame from a client is masked, with a new
    // key that the server cannot predict.
    let mut c = client();
    c.writer.send(Message::text("Hello")).unwrap();
    c.writer.send(Message::text("Hello")).unwrap();
    c.writer.send(Message::binary(vec![7u8; 70_000])).unwrap();
    c.writer.send(Message::ping("p")).unwrap();
    c.writer.send_fragment(true, Bytes::from_static(b"a"), false).unwrap();
    c.writer.send_fragment(true, Bytes::from_static(b"b"), true).unwrap();
    c.writer.close(Some(CloseFrame::new(1000, "bye"))).unwrap();
    let frames = output_frames(&mut c);
    assert_eq!(frames.len(), 7);
    let keys: Vec<[u8; 4]> = frames.iter().map(|f| f.mask.expect("client frame without mask bit")).collect();
    // Two sends of the same message use different keys (a repeat has odds
    // of 2^-32 per pair).
    assert_ne!(keys[0], keys[1]);
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b, "masking key reused");
        }
    }
    // The payloads unmask to what was sent.
    assert_eq!(frames[0].payload, b"Hello");
    assert_eq!(frames[1].payload, b"Hello");
    assert_eq!(frames[2].payload, vec![7u8; 70_000]);
    assert_eq!(frames[3].payload, b"p");
    assert_eq!(frames[6].payload, close_payload(1000, b"bye"));
}

#[test]
fn server_never_masks() {
    // RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends".
    let mut s = server();
    s.writer.send(Message::text("Hello")).unwrap();
    s.writer.send(Message::binary(vec![1u8; 70_000])).unwrap();
    s.writer.send(Message::ping("p")).unwrap();
    s.writer.send(Message::pong("q")).unwrap();
    s.writer.send_fragment(false, Bytes::from_static(b"a"), false).unwrap();
    s.writer.send_fragment(false, Bytes::from_static(b"b"), true).unwrap();
    drive(&mut s, &cf(FIN | PING, b"auto")); // an automatic pong too
    s.writer.close(None).unwrap();
    let frames = output_frames(&mut s);
    assert_eq!(frames.len(), 8);
    for f in &frames {
        assert_eq!(f.mask, None, "server frame masked: {f:?}");
    }
    // The RFC 6455 §5.7 unmasked "Hello" is byte-exact.
    let mut s = server();
    s.writer.send(Message::text("Hello")).unwrap();
    assert_eq!(s.writer.take_output(), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
}

// --------------------------------------------------- reserved bits / opcodes

#[test]
fn reserved_bits_without_extension_fail_with_1002() {
    // RFC 6455 §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated
    // that defines meanings for non-zero values ... the receiving endpoint
    // MUST _Fail the WebSocket Connection_".
    for rsv in [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3] {
        for op in [TEXT, BINARY, PING, CLOSE] {
            let (err, code) = server_fails(&cf(FIN | rsv | op, b"x"));
            assert_eq!(err, ProtocolError::ReservedBits, "rsv {rsv:#x} op {op}");
            assert_eq!(code, 1002);
            let (err, code) = client_fails(&sf(FIN | rsv | op, b"x"));
            assert_eq!(err, ProtocolError::ReservedBits);
            assert_eq!(code, 1002);
        }
    }
    // On a continuation too, in the middle of a message.
    let (err, code) = server_fails(&[cf(TEXT, b"a"), cf(FIN | RSV1 | CONT, b"b")].concat());
    assert_eq!(err, ProtocolError::ReservedBits);
    assert_eq!(code, 1002);
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    // RFC 6455 §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved; "If an
    // unknown opcode is received, the receiving endpoint MUST _Fail the
    // WebSocket Connection_".
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        for fin in [FIN, 0] {
            let (err, code) = server_fails(&cf(fin | op, b""));
            assert_eq!(err, ProtocolError::ReservedOpcode(op));
            assert_eq!(code, 1002);
            let (err, code) = client_fails(&sf(fin | op, b"payload"));
            assert_eq!(err, ProtocolError::ReservedOpcode(op));
            assert_eq!(code, 1002);
        }
        // Inside a fragmented message.
        let (err, code) = server_fails(&[cf(TEXT, b"a"), cf(FIN | op, b"b")].concat());
        assert_eq!(err, ProtocolError::ReservedOpcode(op));
        assert_eq!(code, 1002);
    }
}

// ----------------------------------------------------------- control frames

#[test]
fn control_frame_payload_over_125_fails_with_1002() {
    // RFC 6455 §5.5: "All control frames MUST have a payload length of 125
    // bytes or less".
    for op in [PING, PONG, CLOSE] {
        let (err, code) = server_fails(&cf(FIN | op, &[b'a'; 126]));
        assert_eq!(err, ProtocolError::ControlFrameTooLong, "opcode {op}");
        assert_eq!(code, 1002);
        // Refused at the header, before the payload arrives.
        let (err, _) = server_fails(&header(FIN | op, 126, Some(KEY)));
        assert_eq!(err, ProtocolError::ControlFrameTooLong);
        let (err, _) = server_fails(&header(FIN | op, 1 << 40, Some(KEY)));
        assert_eq!(err, ProtocolError::ControlFrameTooLong);
    }
    // 125 is fine.
    let mut s = server();
    let (msgs, err) = drive(&mut s, &cf(FIN | PING, &[b'a'; 125]));
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::ping(vec![b'a'; 125])]);
}

#[test]
fn fragmented_control_frame_fails_with_1002() {
    // RFC 6455 §5.5: "Control frames ... MUST NOT be fragmented".
    for op in [PING, PONG, CLOSE] {
        let (err, code) = server_fails(&cf(op, b"x"));
        assert_eq!(err, ProtocolError::FragmentedControlFrame, "opcode {op}");
        assert_eq!(code, 1002);
    }
    // A FIN=0 ping followed by what would be its continuation.
    let (err, code) = server_fails(&[cf(PING, b"a"), cf(FIN | CONT, b"b")].concat());
    assert_eq!(err, ProtocolError::FragmentedControlFrame);
    assert_eq!(code, 1002);
}

#[test]
fn sending_control_payload_over_125_is_refused() {
    // RFC 6455 §5.5 (the sending side).
    let mut s = server();
    assert_eq!(s.writer.send(Message::ping(vec![0u8; 126])), Err(SendError::ControlPayloadTooLong(126)));
    assert_eq!(s.writer.send(Message::pong(vec![0u8; 126])), Err(SendError::ControlPayloadTooLong(126)));
    assert!(s.writer.take_output().is_empty());
    s.writer.send(Message::ping(vec![0u8; 125])).unwrap();
    assert_eq!(output_frames(&mut s)[0].payload.len(), 125);
}

// -------------------------------------------------------------- fragmentation

#[test]
fn continuation_without_message_fails_with_1002() {
    // RFC 6455 §5.4: a continuation frame continues a fragmented message;
    // there is none here.
    let (err, code) = server_fails(&cf(FIN | CONT, b"x"));
    assert_eq!(err, ProtocolError::UnexpectedContinuation);
    assert_eq!(code, 1002);
    let (err, _) = server_fails(&cf(CONT, b"x"));
    assert_eq!(err, ProtocolError::UnexpectedContinuation);
    // Refused at its header, without waiting for the payload.
    let (err, code) = server_fails(&header(FIN | CONT, 1000, Some(KEY)));
    assert_eq!(err, ProtocolError::UnexpectedContinuation);
    assert_eq!(code, 1002);
    // After a message that is complete.
    let mut s = server();
    let (msgs, err) = drive(&mut s, &[cf(TEXT, b"a"), cf(FIN | CONT, b"b"), cf(FIN | CONT, b"c")].concat());
    assert_eq!(msgs, vec![text("ab")]);
    assert_eq!(err, Some(ProtocolError::UnexpectedContinuation));
    assert_eq!(output_frames(&mut s)[0].close_code(), Some(1002));
    let (err, _) = client_fails(&sf(FIN | CONT, b"x"));
    assert_eq!(err, ProtocolError::UnexpectedContinuation);
}

#[test]
fn new_data_frame_inside_fragmented_message_fails_with_1002() {
    // RFC 6455 §5.4: "the fragments of one message MUST NOT be interleaved
    // between the fragments of another message".
    for first in [TEXT, BINARY] {
        for next in [TEXT, BINARY] {
            for fin in [FIN, 0] {
                let (err, code) = server_fails(&[cf(first, b"a"), cf(fin | next, b"b")].concat());
                assert_eq!(err, ProtocolError::ExpectedContinuation);
                assert_eq!(code, 1002);
                // Refused at its header, without waiting for the payload.
                let (err, _) = server_fails(&[cf(first, b"a"), header(fin | next, 1000, Some(KEY))].concat());
                assert_eq!(err, ProtocolError::ExpectedContinuation);
            }
        }
    }
}

#[test]
fn control_frames_interleaved_in_fragmented_message_are_delivered() {
    // RFC 6455 §5.4: "Control frames MAY be injected in the middle of a
    // fragmented message"; §5.5.2: the ping is answered at once.
    let mut s = server();
    let bytes = [
        cf(TEXT, b"Hel"),
        cf(FIN | PING, b"p1"),
        cf(CONT, b"lo, "),
        cf(FIN | PONG, b"p2"),
        cf(FIN | PING, b""),
        cf(FIN | CONT, b"world"),
    ]
    .concat();
    let (msgs, err) = drive(&mut s, &bytes);
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::ping("p1"), Message::pong("p2"), Message::ping(Bytes::new()), text("Hello, world")]);
    let out = output_frames(&mut s);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].opcode, out[0].payload.as_slice()), (PONG, &b"p1"[..]));
    assert_eq!((out[1].opcode, out[1].payload.as_slice()), (PONG, &b""[..]));
    // Byte by byte, too (the ping arrives while the message is partial).
    let mut s = server();
    let mut msgs = Vec::new();
    for b in &bytes {
        let (m, err) = drive(&mut s, std::slice::from_ref(b));
        assert_eq!(err, None);
        msgs.extend(m);
    }
    assert_eq!(msgs.last(), Some(&text("Hello, world")));
    assert_eq!(msgs.len(), 4);
}

#[test]
fn fragmented_message_reassembles_in_order() {
    // RFC 6455 §5.4: the message is the concatenation of its fragments, in
    // order; empty fragments are allowed.
    let mut s = server();
    let bytes = [cf(BINARY, b""), cf(CONT, b"ab"), cf(CONT, b""), cf(CONT, b"cd"), cf(FIN | CONT, b"")].concat();
    let (msgs, err) = drive(&mut s, &bytes);
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::binary(&b"abcd"[..])]);
    let mut s = server();
    let (msgs, _) = drive(&mut s, &[cf(FIN | TEXT, b""), cf(FIN | BINARY, b"")].concat());
    assert_eq!(msgs, vec![text(""), Message::binary(Bytes::new())]);
}

#[test]
fn sender_refuses_fragments_out_of_order() {
    // RFC 6455 §5.4 (the sending side): fragments of one message are not
    // interleaved with another data message.
    let mut s = server();
    s.writer.send_fragment(true, Bytes::from_static(b"a"), false).unwrap();
    assert_eq!(s.writer.send(Message::text("x")), Err(SendError::FragmentOrder));
    assert_eq!(s.writer.send(Message::binary(&b"x"[..])), Err(SendError::FragmentOrder));
    s.writer.send(Message::ping("p")).unwrap(); // control frames may be injected
    s.writer.send_fragment(true, Bytes::from_static(b"b"), true).unwrap();
    let frames = output_frames(&mut s);
    let ops: Vec<(bool, u8)> = frames.iter().map(|f| (f.fin, f.opcode)).collect();
    assert_eq!(ops, vec![(false, TEXT), (true, PING), (true, CONT)]);
    // The fragments go out as a message the peer reassembles.
    let mut c = client();
    let wire: Vec<u8> = frames.iter().flat_map(|f| sf(((f.fin as u8) << 7) | f.opcode, &f.payload)).collect();
    let (msgs, err) = drive(&mut c, &wire);
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::ping("p"), text("ab")]);
}

// ------------------------------------------------------------------- lengths

#[test]
fn length_with_msb_set_fails_with_1002() {
    // RFC 6455 §5.2: in the 64-bit length "the most significant bit MUST
    // be 0".
    for len in [1u64 << 63, u64::MAX, (1 << 63) | 5] {
        // The header alone, no payload.
        let (err, code) = server_fails(&header(FIN | BINARY, len, Some(KEY)));
        assert_eq!(err, ProtocolError::InvalidLength);
        assert_eq!(code, 1002);
        let (err, code) = client_fails(&header(FIN | TEXT, len, None));
        assert_eq!(err, ProtocolError::InvalidLength);
        assert_eq!(code, 1002);
    }
}

#[test]
fn sender_uses_minimal_length_form() {
    // RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the
    // length".
    for (len, server_header, len7) in
        [(0, 2, 0), (125, 2, 125), (126, 4, 126), (65535, 4, 126), (65536, 10, 127), (70_000, 10, 127)]
    {
        let mut s = server();
        s.writer.send(Message::binary(vec![0xaa; len])).unwrap();
        let out = s.writer.take_output();
        assert_eq!(out.len(), server_header + len, "payload {len}");
        assert_eq!(out[1] & 0x7f, len7);
        let f = &decode_frames(&out)[0];
        assert_eq!(f.header_len, server_header);
        assert_eq!(f.payload.len(), len);
        // A client adds the 4-byte key, nothing else.
        let mut c = client();
        c.writer.send(Message::binary(vec![0xaa; len])).unwrap();
        let f = &output_frames(&mut c)[0];
        assert_eq!(f.header_len, server_header + 4);
        assert_eq!(f.payload, vec![0xaa; len]);
    }
    // Text and control frames the same way.
    let mut s = server();
    s.writer.send(Message::text("a".repeat(126))).unwrap();
    s.writer.send(Message::ping(vec![0; 125])).unwrap();
    let f = output_frames(&mut s);
    assert_eq!((f[0].header_len, f[1].header_len), (4, 2));
}

#[test]
fn extended_lengths_are_parsed() {
    // RFC 6455 §5.2: 126 = 16-bit length follows, 127 = 64-bit length
    // follows (also accepted when not minimal).
    let mut s = server();
    let mut bytes = cf(FIN | BINARY, &[1u8; 126]);
    bytes.extend(cf(FIN | BINARY, &vec![2u8; 65536]));
    // A 64-bit length for a 3-byte payload: not minimal, but readable.
    let mut nonminimal = vec![FIN | TEXT, 0x80 | 127];
    nonminimal.extend_from_slice(&3u64.to_be_bytes());
    nonminimal.extend_from_slice(&[0, 0, 0, 0]);
    nonminimal.extend_from_slice(b"abc");
    bytes.extend(nonminimal);
    let (msgs, err) = drive(&mut s, &bytes);
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::binary(vec![1u8; 126]), Message::binary(vec![2u8; 65536]), text("abc")]);
}

// -------------------------------------------------------------------- UTF-8

#[test]
fn invalid_utf8_in_text_frame_fails_with_1007() {
    // RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as
    // UTF-8 but finds that the byte stream is not, in fact, a valid UTF-8
    // stream, that endpoint MUST _Fail the WebSocket Connection_" (1007,
    // §7.4.1).
    for bad in [&b"\xff"[..], b"abc\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xce"] {
        let (err, code) = server_fails(&cf(FIN | TEXT, bad));
        assert_eq!(err, ProtocolError::InvalidUtf8, "{bad:x?}");
        assert_eq!(code, 1007);
        let (err, code) = client_fails(&sf(FIN | TEXT, bad));
        assert_eq!(err, ProtocolError::InvalidUtf8);
        assert_eq!(code, 1007);
    }
    // Binary messages are not checked.
    let mut s = server();
    assert_eq!(drive(&mut s, &cf(FIN | BINARY, b"\xff")), (vec![Message::binary(&b"\xff"[..])], None));
}

#[test]
fn invalid_utf8_across_fragment_boundary_fails_with_1007() {
    // RFC 6455 §8.1 with §5.4: validity is of the whole message; a code point
    // split across fragments is checked across the boundary.
    // 0xED starts a 3-byte sequence; 0xA0 makes it a surrogate.
    let (err, code) = server_fails(&[cf(TEXT, b"a\xed"), cf(FIN | CONT, b"\xa0\x80")].concat());
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(code, 1007);
    // A 4-byte sequence cut short by the next fragment.
    let (err, code) = server_fails(&[cf(TEXT, b"\xf0\x9d"), cf(FIN | CONT, b"a")].concat());
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(code, 1007);
    // A message ending inside a code point (the last fragment is fine alone).
    let (err, code) = server_fails(&[cf(TEXT, b"ok"), cf(CONT, b"\xe2\x82"), cf(FIN | CONT, b"")].concat());
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(code, 1007);
}

#[test]
fn invalid_utf8_fails_fast_before_frame_is_complete() {
    // RFC 6455 §8.1 (and Autobahn 6.4): the connection fails as soon as the
    // bytes received cannot be the start of valid UTF-8, without waiting for
    // the rest of the frame.
    let mut payload = b"ab\xff".to_vec();
    payload.extend(std::iter::repeat_n(b'a', 997));
    let frame = cf(FIN | TEXT, &payload);
    let header_len = 2 + 2 + 4;
    let (err, code) = server_fails(&frame[..header_len + 3]);
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(code, 1007);
    // And one byte short of the bad byte: no error yet.
    let mut s = server();
    assert_eq!(drive(&mut s, &frame[..header_len + 2]), (vec![], None));
    // In a continuation frame, also before it is complete.
    let mut bytes = cf(TEXT, "κόσμε".as_bytes());
    let cont = cf(FIN | CONT, &payload);
    bytes.extend_from_slice(&cont[..header_len + 3]);
    let (err, code) = server_fails(&bytes);
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(code, 1007);
    // A surrogate split over two feeds fails at its second byte.
    let frame = cf(FIN | TEXT, b"\xed\xa0\x80 and more");
    let mut s = server();
    assert_eq!(drive(&mut s, &frame[..6 + 1]), (vec![], None));
    let (err, code) = expect_failure_on(&mut s, &frame[6 + 1..6 + 2]);
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(code, 1007);
}

#[test]
fn valid_code_point_split_across_fragments_is_accepted() {
    // RFC 6455 §5.6: a text message's fragments need not end on code point
    // boundaries; only the whole message must be UTF-8.
    let s = "aκόσμε€𝄞z";
    let b = s.as_bytes();
    for cut in 0..=b.len() {
        for cut2 in cut..=b.len() {
            let mut srv = server();
            let bytes = [cf(TEXT, &b[..cut]), cf(CONT, &b[cut..cut2]), cf(FIN | CONT, &b[cut2..])].concat();
            let (msgs, err) = drive(&mut srv, &bytes);
            assert_eq!(err, None, "cuts {cut} {cut2}");
            assert_eq!(msgs, vec![text(s)]);
        }
    }
    // One byte per fragment, fed one byte at a time.
    let mut srv = server();
    let mut bytes = Vec::new();
    for (i, byte) in b.iter().enumerate() {
        let op = if i == 0 { TEXT } else { CONT };
        let fin = if i == b.len() - 1 { FIN } else { 0 };
        bytes.extend(cf(fin | op, std::slice::from_ref(byte)));
    }
    let mut msgs = Vec::new();
    for byte in &bytes {
        let (m, err) = drive(&mut srv, std::slice::from_ref(byte));
        assert_eq!(err, None);
        msgs.extend(m);
    }
    assert_eq!(msgs, vec![text(s)]);
}

// -------------------------------------------------------------------- close

#[test]
fn close_with_one_byte_payload_fails_with_1002() {
    // RFC 6455 §5.5.1: if there is a body, "the first two bytes of the body
    // MUST be a 2-byte unsigned integer" (the status code).
    let (err, code) = server_fails(&cf(FIN | CLOSE, &[0x03]));
    assert_eq!(err, ProtocolError::InvalidClosePayload);
    assert_eq!(code, 1002);
    let (err, code) = client_fails(&sf(FIN | CLOSE, &[0x03]));
    assert_eq!(err, ProtocolError::InvalidClosePayload);
    assert_eq!(code, 1002);
}

#[test]
fn close_with_invalid_code_fails_with_1002() {
    // RFC 6455 §7.4.1, §7.4.2 and the IANA registry: 0-999 unused, 1004
    // reserved, 1005/1006/1015 never on the wire, 1016-2999 reserved, above
    // 4999 undefined; such a close frame is a protocol error.
    for bad in [0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        let (err, code) = server_fails(&cf(FIN | CLOSE, &close_payload(bad, b"")));
        assert_eq!(err, ProtocolError::InvalidCloseCode(bad));
        assert_eq!(code, 1002, "code {bad}");
        let (err, code) = client_fails(&sf(FIN | CLOSE, &close_payload(bad, b"why")));
        assert_eq!(err, ProtocolError::InvalidCloseCode(bad));
        assert_eq!(code, 1002);
    }
}

#[test]
fn close_with_valid_code_is_echoed() {
    // RFC 6455 §5.5.1: the endpoint answers a close frame with a close frame,
    // "typically echoing the status code it received"; §7.4.
    let valid = [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
    for code in valid {
        for role in [Role::Server, Role::Client] {
            let mut conn = Connection::new(role, &Config::default());
            let frame = close_payload(code, b"reason");
            let bytes = if role == Role::Server { cf(FIN | CLOSE, &frame) } else { sf(FIN | CLOSE, &frame) };
            let (msgs, err) = drive(&mut conn, &bytes);
            assert_eq!(err, None);
            assert_eq!(msgs, vec![Message::Close(Some(CloseFrame::new(code, "reason")))]);
            assert_eq!(conn.writer.close_state(), CloseState::Closed);
            let out = output_frames(&mut conn);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].close_code(), Some(code), "{role:?}");
            assert!(out[0].fin);
            assert_eq!(out[0].mask.is_some(), role == Role::Client);
            assert!(conn.writer.should_close_transport());
        }
    }
}

#[test]
fn close_reason_invalid_utf8_fails_with_1007() {
    // RFC 6455 §5.5.1: the close reason is UTF-8; §8.1 and §7.4.1: 1007.
    for bad in [&b"\xff"[..], b"ab\xed\xa0\x80", b"\xe2\x82"] {
        let (err, code) = server_fails(&cf(FIN | CLOSE, &close_payload(1000, bad)));
        assert_eq!(err, ProtocolError::InvalidCloseReason);
        assert_eq!(code, 1007);
        let (err, code) = client_fails(&sf(FIN | CLOSE, &close_payload(1000, bad)));
        assert_eq!(err, ProtocolError::InvalidCloseReason);
        assert_eq!(code, 1007);
    }
}

#[test]
fn empty_close_is_answered_with_empty_close() {
    // RFC 6455 §5.5.1 / §7.1.5: no status code received (1005 is reported,
    // never sent); the reply has no body either.
    let mut s = server();
    let (msgs, err) = drive(&mut s, &cf(FIN | CLOSE, b""));
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::Close(None)]);
    let out = output_frames(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].opcode, CLOSE);
    assert_eq!(out[0].payload, b"");
    assert_eq!(s.writer.close_state(), CloseState::Closed);
}

#[test]
fn input_after_close_is_ignored() {
    // RFC 6455 §5.5.1: "after sending a Close frame, the endpoint MUST NOT
    // send any more data frames"; anything the peer sends after its close is
    // discarded, even if invalid.
    let mut s = server();
    let bytes =
        [cf(FIN | TEXT, b"before"), cf(FIN | CLOSE, &close_payload(1000, b"")), cf(FIN | TEXT, b"after")].concat();
    let (msgs, err) = drive(&mut s, &bytes);
    assert_eq!(err, None);
    assert_eq!(msgs, vec![text("before"), Message::Close(Some(CloseFrame::new(1000, "")))]);
    let reply = s.writer.take_output();
    assert_eq!(decode_frames(&reply).len(), 1);
    for later in
        [cf(FIN | TEXT, b"after"), cf(FIN | PING, b"p"), cf(FIN | 0x3, b""), sf(FIN | TEXT, b"\xff"), vec![0xff]]
    {
        assert_eq!(drive(&mut s, &later), (vec![], None));
    }
    assert!(s.writer.take_output().is_empty(), "nothing is answered after the close");
    assert_eq!(s.writer.close_state(), CloseState::Closed);
    assert_eq!(end_of_stream(&mut s), Ok(None));
}

#[test]
fn local_close_then_peer_close_is_closed() {
    // RFC 6455 §7.1.2-§7.1.4: we send a close, the peer answers with one;
    // the closing handshake is complete and no second close is sent.
    let mut s = server();
    s.writer.close(Some(CloseFrame::new(CloseCode::GoingAway, "bye"))).unwrap();
    assert_eq!(s.writer.close_state(), CloseState::CloseSent);
    let out = output_frames(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].close_code(), Some(1001));
    assert_eq!(out[0].payload[2..], *b"bye");
    assert!(!s.writer.should_close_transport());
    // Messages still arrive until the peer's close.
    let (msgs, err) = drive(&mut s, &cf(FIN | TEXT, b"late"));
    assert_eq!((msgs, err), (vec![text("late")], None));
    let (msgs, err) = drive(&mut s, &cf(FIN | CLOSE, &close_payload(1001, b"")));
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::Close(Some(CloseFrame::new(1001, "")))]);
    assert_eq!(s.writer.close_state(), CloseState::Closed);
    assert!(s.writer.take_output().is_empty(), "no second close frame");
    assert!(s.writer.should_close_transport());
    assert_eq!(end_of_stream(&mut s), Ok(None));
    // The client side the same way, answered with an empty close.
    let mut c = client();
    c.writer.close(None).unwrap();
    let out = output_frames(&mut c);
    assert_eq!((out[0].opcode, out[0].payload.len(), out[0].mask.is_some()), (CLOSE, 0, true));
    let (msgs, _) = drive(&mut c, &sf(FIN | CLOSE, b""));
    assert_eq!(msgs, vec![Message::Close(None)]);
    assert_eq!(c.writer.close_state(), CloseState::Closed);
    assert!(c.writer.take_output().is_empty());
}

#[test]
fn peer_close_then_local_close_is_refused() {
    // RFC 6455 §5.5.1: the close reply is sent once (automatically here); the
    // user cannot send a second close.
    let mut s = server();
    drive(&mut s, &cf(FIN | CLOSE, &close_payload(1000, b"")));
    assert_eq!(s.writer.close_state(), CloseState::Closed);
    assert_eq!(s.writer.close(None), Err(SendError::Closed));
    assert_eq!(s.writer.send(Message::Close(Some(CloseFrame::new(1000, "")))), Err(SendError::Closed));
    assert_eq!(output_frames(&mut s).len(), 1);
}

#[test]
fn close_with_invalid_code_from_user_is_refused() {
    // RFC 6455 §7.4.1/§7.4.2: 1005, 1006 and 1015 "MUST NOT be set as a
    // status code in a Close control frame by an endpoint"; 1004 and
    // 0-999/1016-2999 are not defined for use.
    for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let mut s = server();
        assert_eq!(s.writer.close(Some(CloseFrame::new(bad, ""))), Err(SendError::InvalidCloseCode(bad)));
        assert_eq!(
            s.writer.send(Message::Close(Some(CloseFrame::new(bad, "")))),
            Err(SendError::InvalidCloseCode(bad))
        );
        assert!(s.writer.take_output().is_empty());
        assert_eq!(s.writer.close_state(), CloseState::Open);
    }
    for good in [1000u16, 1001, 1003, 1011, 3000, 4999] {
        let mut s = server();
        s.writer.close(Some(CloseFrame::new(good, ""))).unwrap();
        assert_eq!(output_frames(&mut s)[0].close_code(), Some(good));
    }
}

#[test]
fn close_reason_over_123_bytes_is_refused() {
    // RFC 6455 §5.5: a control payload is at most 125 bytes, so the reason
    // is at most 123 (after the 2-byte code).
    let mut s = server();
    let long = "r".repeat(124);
    assert_eq!(s.writer.close(Some(CloseFrame::new(1000, long.as_str()))), Err(SendError::ReasonTooLong(124)));
    assert!(s.writer.take_output().is_empty());
    assert_eq!(s.writer.close_state(), CloseState::Open);
    let max = "é".repeat(61) + "r"; // 123 bytes
    s.writer.close(Some(CloseFrame::new(1000, max.as_str()))).unwrap();
    let out = output_frames(&mut s);
    assert_eq!(out[0].payload.len(), 125);
    assert_eq!(out[0].header_len, 2);
}

#[test]
fn sending_after_close_is_refused() {
    // RFC 6455 §5.5.1: "After sending a Close frame, the endpoint MUST NOT
    // send any more data frames".
    let mut c = client();
    c.writer.send_fragment(false, Bytes::from_static(b"a"), false).unwrap();
    c.writer.close(None).unwrap();
    c.writer.take_output();
    assert_eq!(c.writer.send(Message::text("x")), Err(SendError::Closed));
    assert_eq!(c.writer.send(Message::binary(&b"x"[..])), Err(SendError::Closed));
    assert_eq!(c.writer.send_fragment(false, Bytes::from_static(b"b"), true), Err(SendError::Closed));
    assert_eq!(c.writer.send(Message::ping("p")), Err(SendError::Closed));
    assert_eq!(c.writer.close(None), Err(SendError::Closed));
    assert!(c.writer.take_output().is_empty());
    // Also after the peer's close was received and answered.
    let mut s = server();
    drive(&mut s, &cf(FIN | CLOSE, b""));
    assert_eq!(s.writer.send(Message::text("x")), Err(SendError::Closed));
    // And after a failure.
    let mut s = server();
    drive(&mut s, &cf(FIN | 0x3, b""));
    assert_eq!(s.writer.send(Message::text("x")), Err(SendError::Closed));
}

#[test]
fn close_frame_fails_connection_only_once() {
    // RFC 6455 §7.1.7: failing sends one close frame; if we already sent one
    // (closing handshake started), no second one is sent.
    let mut s = server();
    s.writer.close(None).unwrap();
    s.writer.take_output();
    let (_, err) = drive(&mut s, &cf(FIN | TEXT, b"\xff"));
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    assert_eq!(s.writer.close_state(), CloseState::Failed);
    assert!(s.writer.take_output().is_empty());
    assert!(s.writer.should_close_transport());
}

// ---------------------------------------------------------------- ping/pong

#[test]
fn ping_is_answered_with_pong_carrying_same_payload() {
    // RFC 6455 §5.5.2/§5.5.3: "Upon receipt of a Ping frame, an endpoint MUST
    // send a Pong frame in response ... [with] identical Application data".
    for payload in [&b""[..], b"hello", &[0u8, 255, 1, 254], &[b'x'; 125]] {
        let mut s = server();
        let (msgs, err) = drive(&mut s, &cf(FIN | PING, payload));
        assert_eq!(err, None);
        assert_eq!(msgs, vec![Message::ping(payload.to_vec())], "the ping is returned to the user too");
        let out = output_frames(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].fin, out[0].opcode, out[0].mask), (true, PONG, None));
        assert_eq!(out[0].payload, payload);
        // Client side: the pong is masked.
        let mut c = client();
        let (msgs, _) = drive(&mut c, &sf(FIN | PING, payload));
        assert_eq!(msgs, vec![Message::ping(payload.to_vec())]);
        let out = output_frames(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].opcode, PONG);
        assert!(out[0].mask.is_some());
        assert_eq!(out[0].payload, payload);
    }
}

#[test]
fn no_automatic_pong_when_disabled() {
    // RFC 6455 §5.5.2: the pong is then the application's job.
    let mut s = Connection::new(Role::Server, &Config::default().with_auto_pong(false));
    let (msgs, err) = drive(&mut s, &cf(FIN | PING, b"hi"));
    assert_eq!((msgs, err), (vec![Message::ping("hi")], None));
    assert!(s.writer.take_output().is_empty());
    assert!(!s.writer.wants_write());
    s.writer.send(Message::pong("hi")).unwrap();
    let out = output_frames(&mut s);
    assert_eq!((out[0].opcode, out[0].payload.as_slice()), (PONG, &b"hi"[..]));
}

#[test]
fn several_pings_pongs_answer_the_latest() {
    // RFC 6455 §5.5.3: "If an endpoint receives a Ping frame and has not yet
    // sent Pong frame(s) in response to previous Ping frame(s), the endpoint
    // MAY elect to send a Pong frame for only the most recently processed
    // Ping frame."
    //
    // What this implementation does: while its write queue is small, every
    // ping is answered at once (one pong per ping, in order, even if the
    // output is not taken in between). When more than 64 KiB are queued and
    // unwritten, the answer waits and a newer ping replaces it: only the
    // latest ping is answered. Either way, the last pong echoes the latest
    // ping.
    let mut s = server();
    let bytes = [cf(FIN | PING, b"1"), cf(FIN | PING, b"2"), cf(FIN | PING, b"3")].concat();
    let (msgs, err) = drive(&mut s, &bytes);
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::ping("1"), Message::ping("2"), Message::ping("3")]);
    let pongs: Vec<Vec<u8>> = output_frames(&mut s).into_iter().map(|f| f.payload).collect();
    assert_eq!(pongs.last().map(Vec::as_slice), Some(&b"3"[..]));
    assert_eq!(pongs, vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);

    // With a backlog: only the latest ping is answered.
    let mut s = server();
    s.writer.send(Message::binary(vec![0u8; 100_000])).unwrap();
    let (msgs, err) = drive(&mut s, &bytes);
    assert_eq!((msgs.len(), err), (3, None));
    let out = drain_output(&mut s.writer);
    let frames = decode_frames(&out);
    assert_eq!(frames[0].opcode, BINARY);
    let pongs: Vec<&[u8]> = frames.iter().filter(|f| f.opcode == PONG).map(|f| f.payload.as_slice()).collect();
    assert_eq!(pongs, vec![&b"3"[..]]);
}

#[test]
fn ping_received_before_local_close_is_answered() {
    // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send
    // a Pong frame in response, unless it already received a Close frame."
    // Sending our own close does not excuse the pong, even when the pong was
    // held back because more than 64 KiB were queued: it goes out before the
    // close frame.
    for backlog in [0usize, 100_000] {
        let mut s = server();
        if backlog > 0 {
            s.writer.send(Message::binary(vec![0u8; backlog])).unwrap();
        }
        let (msgs, err) = drive(&mut s, &cf(FIN | PING, b"before close"));
        assert_eq!((msgs.len(), err), (1, None));
        s.writer.close(Some(CloseFrame::new(1000, ""))).unwrap();
        let out = drain_output(&mut s.writer);
        let ops: Vec<(u8, Vec<u8>)> =
            decode_frames(&out).into_iter().filter(|f| f.opcode != BINARY).map(|f| (f.opcode, f.payload)).collect();
        assert_eq!(ops, vec![(PONG, b"before close".to_vec()), (CLOSE, close_payload(1000, b""))], "backlog {backlog}");
    }
    // Once the peer's close is received, a ping that came before it need not
    // be answered; the close reply is the last frame either way.
    let mut s = server();
    s.writer.send(Message::binary(vec![0u8; 100_000])).unwrap();
    drive(&mut s, &[cf(FIN | PING, b"p"), cf(FIN | CLOSE, b"")].concat());
    let out = drain_output(&mut s.writer);
    assert_eq!(decode_frames(&out).last().map(|f| f.opcode), Some(CLOSE));
}

#[test]
fn pong_is_not_answered() {
    // RFC 6455 §5.5.3: "A response to an unsolicited Pong frame is not
    // expected."
    let mut s = server();
    let (msgs, err) = drive(&mut s, &cf(FIN | PONG, b"u"));
    assert_eq!((msgs, err), (vec![Message::pong("u")], None));
    assert!(s.writer.take_output().is_empty());
}

// ------------------------------------------------------------------- limits

#[test]
fn frame_over_max_frame_size_fails_with_1009_at_header() {
    // RFC 6455 §10.4: an implementation limits frame size; §7.4.1: 1009 for
    // a message too big to process. Refused on the header alone, before any
    // of the payload is buffered.
    let config = Config::default().with_max_frame_size(1000);
    for len in [1001u64, 65536, 1 << 40, (1 << 63) - 1] {
        let h = header(FIN | BINARY, len, Some(KEY));
        let (err, code) = expect_failure(Role::Server, config.clone(), &h);
        assert_eq!(err, ProtocolError::FrameTooBig { size: len, max: 1000 });
        assert_eq!(code, 1009);
    }
    let h = header(TEXT, 1001, None);
    let (err, code) = expect_failure(Role::Client, config.clone(), &h);
    assert_eq!(err, ProtocolError::FrameTooBig { size: 1001, max: 1000 });
    assert_eq!(code, 1009);
    // At the limit: accepted.
    let mut s = Connection::new(Role::Server, &config);
    let (msgs, err) = drive(&mut s, &cf(FIN | BINARY, &[5u8; 1000]));
    assert_eq!((msgs, err), (vec![Message::binary(vec![5u8; 1000])], None));
}

#[test]
fn message_over_max_message_size_fails_with_1009_at_crossing_fragment_header() {
    // RFC 6455 §10.4 / §7.4.1 (1009): the total of a fragmented message is
    // limited; the connection fails at the header of the fragment that
    // crosses the limit, before its payload is buffered.
    let config = Config::default().with_max_message_size(1000);
    let mut bytes = [cf(BINARY, &[1u8; 400]), cf(CONT, &[2u8; 400])].concat();
    bytes.extend(header(FIN | CONT, 201, Some(KEY)));
    let (err, code) = expect_failure(Role::Server, config.clone(), &bytes);
    assert_eq!(err, ProtocolError::MessageTooBig { size: 1001, max: 1000 });
    assert_eq!(code, 1009);
    // A single frame over the message limit, too: the frame limit in effect
    // is never over the message limit (`Config::max_frame_size`), whatever
    // the frame limit configured (64 MiB here).
    assert_eq!(config.max_frame_size(), 1000);
    let (err, code) = expect_failure(Role::Server, config.clone(), &header(FIN | TEXT, 1001, Some(KEY)));
    assert_eq!(err, ProtocolError::FrameTooBig { size: 1001, max: 1000 });
    assert_eq!(code, 1009);
    let (err, _) = expect_failure(Role::Server, config.clone(), &header(BINARY, 1001, Some(KEY)));
    assert_eq!(err, ProtocolError::FrameTooBig { size: 1001, max: 1000 });
    // Exactly at the limit, with control frames between fragments (which do
    // not count): accepted.
    let mut s = Connection::new(Role::Server, &config);
    let bytes =
        [cf(BINARY, &[1u8; 400]), cf(FIN | PING, &[0u8; 125]), cf(CONT, &[2u8; 400]), cf(FIN | CONT, &[3u8; 200])]
            .concat();
    let (msgs, err) = drive(&mut s, &bytes);
    assert_eq!(err, None);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1].len(), 1000);
    // The limit is per message: the next message starts from zero.
    let (msgs, err) = drive(&mut s, &cf(FIN | BINARY, &[4u8; 1000]));
    assert_eq!((msgs.len(), err), (1, None));
}

// ---------------------------------------------------------------------- EOF

#[test]
fn eof_without_close_is_abnormal_closure() {
    // RFC 6455 §7.1.5: "If _The WebSocket Connection is Closed_ and no Close
    // control frame was received by the endpoint ... _The WebSocket
    // Connection Close Code_ is considered to be 1006"; 1006 is never sent
    // (§7.4.1).
    let mut s = server();
    assert_eq!(end_of_stream(&mut s), Err(ProtocolError::AbnormalClosure));
    assert_eq!(ProtocolError::AbnormalClosure.close_code(), CloseCode::Abnormal);
    assert!(s.writer.take_output().is_empty(), "no close frame is sent for 1006");
    assert_eq!(s.writer.close_state(), CloseState::Failed);
    // In the middle of a frame.
    let mut s = server();
    let f = cf(FIN | TEXT, b"partial");
    assert_eq!(drive(&mut s, &f[..f.len() - 2]), (vec![], None));
    assert_eq!(end_of_stream(&mut s), Err(ProtocolError::AbnormalClosure));
    assert_eq!(s.receive(Mode::Whole), Ok(None));
    // After our close but before the peer's.
    let mut c = client();
    c.writer.close(None).unwrap();
    c.writer.take_output();
    assert_eq!(end_of_stream(&mut c), Err(ProtocolError::AbnormalClosure));
    // After the closing handshake: clean.
    let mut c = client();
    drive(&mut c, &sf(FIN | CLOSE, b""));
    assert_eq!(end_of_stream(&mut c), Ok(None));
}

// ------------------------------------------------------------------ duties

/// One reader call, without the connection's writer: what it hands out and
/// what it says is owed.
fn receive_alone(reader: &mut Reader, bytes: &[u8]) -> Received {
    reader.feed(bytes);
    reader.receive(Mode::Whole)
}

#[test]
fn the_reader_reports_what_is_owed_as_data() {
    let config = Config::default();
    // §5.5.2: a ping is owed a pong with its payload (automatic pongs on);
    // §5.5.3: a pong is owed nothing; data is owed nothing.
    let mut r = Reader::new(Role::Server, &config);
    let got = receive_alone(&mut r, &cf(FIN | PING, b"hi"));
    assert_eq!(got.result, Ok(Some(Incoming::Message(Message::ping("hi")))));
    assert_eq!(got.duty, Some(Duty::Pong(Box::new(Bytes::from_static(b"hi")))));
    assert_eq!(receive_alone(&mut r, &cf(FIN | PONG, b"hi")).duty, None);
    assert_eq!(receive_alone(&mut r, &cf(FIN | TEXT, b"data")).duty, None);
    // Automatic pongs off: the ping is handed out, nothing is owed.
    let mut quiet = Reader::new(Role::Server, &config.clone().with_auto_pong(false));
    let got = receive_alone(&mut quiet, &cf(FIN | PING, b"hi"));
    assert_eq!((got.result.is_ok(), got.duty), (true, None));
    // §5.5.1: the peer's close is owed a close echoing its code; one
    // without a code, a close without one.
    let got = receive_alone(&mut r, &cf(FIN | CLOSE, &close_payload(1001, b"bye")));
    assert_eq!(got.duty, Some(Duty::CloseReply(Some(CloseCode::GoingAway))));
    assert!(r.is_done());
    let mut r2 = Reader::new(Role::Client, &config);
    assert_eq!(receive_alone(&mut r2, &sf(FIN | CLOSE, b"")).duty, Some(Duty::CloseReply(None)));
    // §7.1.7: a violation is owed the close frame of its code, reported
    // once; later input is ignored.
    let mut r3 = Reader::new(Role::Server, &config);
    let got = receive_alone(&mut r3, &sf(FIN | TEXT, b"unmasked"));
    assert_eq!(got.result, Err(ProtocolError::UnmaskedFrame));
    assert_eq!(got.duty, Some(Duty::Fail(CloseCode::ProtocolError)));
    let again = receive_alone(&mut r3, &cf(FIN | PING, b"x"));
    assert_eq!((again.result, again.duty), (Ok(None), None));
}

#[test]
fn end_of_stream_is_owed_1006_only_before_the_closing_handshake() {
    let config = Config::default();
    // §7.1.5: the transport closed with no close frame received: 1006,
    // which is never sent (§7.4.1).
    let mut r = Reader::new(Role::Client, &config);
    r.end_of_stream();
    let got = r.receive(Mode::Whole);
    assert_eq!(got.result, Err(ProtocolError::AbnormalClosure));
    assert_eq!(got.duty, Some(Duty::Fail(CloseCode::Abnormal)));
    assert!(r.is_done());
    // What is buffered is read first; a frame cut by the end is the 1006.
    let mut r = Reader::new(Role::Client, &config);
    r.feed(&[sf(FIN | TEXT, b"whole"), sf(FIN | TEXT, b"cut")[..3].to_vec()].concat());
    r.end_of_stream();
    assert_eq!(r.receive(Mode::Whole).result, Ok(Some(Incoming::Message(text("whole")))));
    assert_eq!(r.receive(Mode::Whole).duty, Some(Duty::Fail(CloseCode::Abnormal)));
    // After the peer's close frame, or after a failure: nothing is owed.
    let mut r = Reader::new(Role::Client, &config);
    let _ = receive_alone(&mut r, &sf(FIN | CLOSE, b""));
    r.end_of_stream();
    let got = r.receive(Mode::Whole);
    assert_eq!((got.result, got.duty), (Ok(None), None));
    let mut r = Reader::new(Role::Client, &config);
    let _ = receive_alone(&mut r, &sf(FIN | 0x3, b""));
    r.end_of_stream();
    assert_eq!(r.receive(Mode::Whole).duty, None);
    // We sent our close and the peer's never came (CloseSent): still 1006,
    // and the writer fails without sending anything more.
    let mut w = Writer::new(Role::Client, &config);
    w.close(None).unwrap();
    w.take_output();
    let mut r = Reader::new(Role::Client, &config);
    r.end_of_stream();
    let Some(duty) = r.receive(Mode::Whole).duty else { panic!("1006 is owed") };
    w.perform(duty);
    assert_eq!(w.close_state(), CloseState::Failed);
    assert!(w.take_output().is_empty());
}

#[test]
fn performing_a_duty_follows_the_closing_handshake() {
    let config = Config::default();
    // §5.5.1: the close reply echoes the code; after our own close, the
    // peer's completes the handshake without a second close frame.
    let mut w = Writer::new(Role::Server, &config);
    w.perform(Duty::CloseReply(Some(CloseCode::GoingAway)));
    assert_eq!(w.close_state(), CloseState::Closed);
    let frames = decode_frames(&w.take_output());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1001));
    let mut w = Writer::new(Role::Server, &config);
    w.close(None).unwrap();
    w.take_output();
    w.perform(Duty::CloseReply(None));
    assert_eq!(w.close_state(), CloseState::Closed);
    assert!(w.take_output().is_empty(), "no second close frame");
    // §5.5.1: nothing is sent after a close frame, not even a pong.
    w.perform(Duty::Pong(Box::new(Bytes::from_static(b"late"))));
    assert!(w.take_output().is_empty());
    // §7.1.7: after a failure's close frame, nothing; a pong owed before it
    // is dropped.
    let mut w = Writer::new(Role::Server, &config.clone().with_max_write_buffer(0));
    w.send(Message::binary(vec![0u8; 70_000])).unwrap();
    w.perform(Duty::Pong(Box::new(Bytes::from_static(b"owed"))));
    w.perform(Duty::Fail(CloseCode::InvalidPayload));
    let frames = decode_frames(&drain_output(&mut w));
    assert_eq!(frames.iter().map(|f| f.opcode).collect::<Vec<_>>(), [BINARY, CLOSE]);
    assert_eq!(frames[1].close_code(), Some(1007));
}
