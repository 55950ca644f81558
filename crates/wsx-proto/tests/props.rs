//! Property tests of the protocol core, through the public API only:
//!
//! 1. any sequence of messages (text, binary, ping, pong; sizes across the
//!    7/16/64-bit length boundaries; random fragmentation with pings between
//!    fragments) round-trips exactly, client to server and server to client,
//!    with the output written in random pieces;
//! 2. a byte stream fed in arbitrary chunks (down to one byte) gives exactly
//!    what it gives fed whole: messages, error, bytes written, close state;
//! 3. arbitrary bytes never make a connection panic, and what it buffers
//!    stays bounded by its limits;
//! 4. streaming and whole reading are one path: with or without
//!    permessage-deflate (any parameters), for any split of the input, the
//!    chunks put together are the whole messages, and no chunk that
//!    inflation produces is over `INFLATE_STEP`.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use std::io::IoSlice;
use wsx_proto::deflate::DeflateParams;
use wsx_proto::{
    CloseFrame, CloseState, Config, Connection, Incoming, Message, Mode, ProtocolError, Role, INFLATE_STEP,
};

// ------------------------------------------------------------------ helpers

/// A deterministic generator for large payloads (cheaper and easier to
/// shrink than a strategy producing 70 000 random bytes).
fn next(state: &mut u64) -> u64 {
    // xorshift64*; the state must not be 0.
    let mut x = *state | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn binary_payload(size: usize, mut seed: u64) -> Bytes {
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&next(&mut seed).to_le_bytes());
    }
    v.truncate(size);
    v.into()
}

/// Text of exactly `size` bytes, with 1- to 4-byte code points.
fn text_payload(size: usize, mut seed: u64) -> String {
    const PIECES: [&str; 8] = ["a", "Z", " ", "é", "κ", "€", "ᾶ", "𝄞"];
    let mut s = String::with_capacity(size);
    while s.len() < size {
        let p = PIECES[(next(&mut seed) % PIECES.len() as u64) as usize];
        if s.len() + p.len() <= size {
            s.push_str(p);
        } else {
            s.push('a');
        }
    }
    s
}

/// One thing the sending side does.
#[derive(Debug, Clone)]
enum Item {
    /// A text or binary message; with `cuts`, sent in fragments split at
    /// those offsets (empty fragments included), with a ping after fragment
    /// `i` when `pings[i]`.
    Data {
        text: bool,
        size: usize,
        seed: u64,
        cuts: Vec<usize>,
        pings: Vec<bool>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn item_strategy(size: BoxedStrategy<usize>) -> impl Strategy<Value = Item> {
    let data = (any::<bool>(), size, any::<u64>(), vec(any::<Index>(), 0..4), vec(any::<bool>(), 0..4)).prop_map(
        |(text, size, seed, cuts, pings)| {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(size + 1)).collect();
            cuts.sort_unstable();
            Item::Data { text, size, seed, cuts, pings }
        },
    );
    prop_oneof![
        6 => data,
        1 => vec(any::<u8>(), 0..=125).prop_map(Item::Ping),
        1 => vec(any::<u8>(), 0..=125).prop_map(Item::Pong),
    ]
}

/// Sizes across the length forms: 0-125 (7 bits), 126-65535 (16 bits),
/// 65536+ (64 bits), with the boundaries themselves weighted in.
fn size_full() -> BoxedStrategy<usize> {
    prop_oneof![
        3 => 0usize..300,
        2 => 120usize..=131,
        2 => 65530usize..=65541,
        1 => 0usize..70_000,
    ]
    .boxed()
}

/// Smaller sizes for streams that are fed one byte at a time, still with
/// every length form.
fn size_small() -> BoxedStrategy<usize> {
    prop_oneof![
        6 => 0usize..200,
        3 => 123usize..=129,
        1 => 65535usize..=65537,
    ]
    .boxed()
}

/// Send `item` on `conn`; push to `expected` what the peer must receive.
fn send_item(conn: &mut Connection, item: &Item, expected: &mut Vec<Message>) {
    match item {
        Item::Ping(p) => {
            conn.writer.send(Message::ping(p.clone())).unwrap();
            expected.push(Message::ping(p.clone()));
        }
        Item::Pong(p) => {
            conn.writer.send(Message::pong(p.clone())).unwrap();
            expected.push(Message::pong(p.clone()));
        }
        Item::Data { text, size, seed, cuts, pings } => {
            let (payload, whole) = if *text {
                let s = text_payload(*size, *seed);
                (Bytes::from(s.clone()), Message::text(s))
            } else {
                let b = binary_payload(*size, *seed);
                (b.clone(), Message::Binary(b))
            };
            if cuts.is_empty() {
                conn.writer.send(whole.clone()).unwrap();
            } else {
                let mut bounds = vec![0];
                bounds.extend_from_slice(cuts);
                bounds.push(payload.len());
                let n = bounds.len() - 1;
                for i in 0..n {
                    let last = i == n - 1;
                    conn.writer.send_fragment(*text, payload.slice(bounds[i]..bounds[i + 1]), last).unwrap();
                    if !last && pings.get(i).copied().unwrap_or(false) {
                        let p = vec![i as u8; i];
                        conn.writer.send(Message::ping(p.clone())).unwrap();
                        expected.push(Message::ping(p));
                    }
                }
            }
            expected.push(whole);
        }
    }
}

/// Read every message `conn` has, up to an error.
fn drain_messages(conn: &mut Connection, got: &mut Vec<Message>) -> Option<ProtocolError> {
    loop {
        match conn.receive(Mode::Whole) {
            Ok(Some(m)) => got.push(m.into_message()),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

/// The transport ends: what the next receive reports.
fn end_of_stream(conn: &mut Connection) -> Result<Option<Incoming>, ProtocolError> {
    conn.reader.end_of_stream();
    conn.receive(Mode::Whole)
}

/// Move everything `from` has to write into `to`, written in pieces of the
/// sizes in `writes` (cycled) through `write_chunks`/`advance_write`, reading
/// `to`'s messages after every piece; `write_contiguous` is checked against
/// `write_chunks` on the way.
fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    writes: &[usize],
    k: &mut usize,
    got: &mut Vec<Message>,
) -> Option<ProtocolError> {
    loop {
        let want = writes[*k % writes.len()];
        *k += 1;
        let mut piece = Vec::new();
        // The one-slice view, when offered, is exactly what the slices hold.
        let contiguous = from.writer.write_contiguous().map(<[u8]>::to_vec);
        let count = from.writer.write_slice_count();
        {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = from.writer.write_chunks(&mut slices);
            assert!(count == n || (n == slices.len() && count > n), "write_slice_count {count}, slices filled {n}");
            if n == 0 {
                assert_eq!(contiguous, None, "write_contiguous offered bytes with nothing queued");
                return None;
            }
            if let Some(c) = &contiguous {
                assert_eq!(n, 1, "write_contiguous offered bytes while several slices are queued");
                assert_eq!(c[..], slices[0][..], "write_contiguous differs from write_chunks");
            }
            for s in &slices[..n] {
                let take = (want - piece.len()).min(s.len());
                piece.extend_from_slice(&s[..take]);
                if piece.len() == want {
                    break;
                }
            }
        }
        assert!(!piece.is_empty(), "write_chunks returned empty slices");
        from.writer.advance_write(piece.len());
        to.reader.feed(&piece);
        if let Some(e) = drain_messages(to, got) {
            return Some(e);
        }
    }
}

fn write_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1usize..=1, 2usize..16, 16usize..4096, 4096usize..100_000], 1..8)
}

/// How a stream is cut before it is fed.
#[derive(Debug, Clone)]
enum Chunking {
    /// One byte at a time.
    Bytes1,
    /// Pieces of these lengths, cycled.
    Lengths(Vec<usize>),
}

fn chunking() -> impl Strategy<Value = Chunking> {
    prop_oneof![
        1 => Just(Chunking::Bytes1),
        3 => vec(prop_oneof![1usize..=1, 1usize..8, 8usize..300, 300usize..100_000], 1..12).prop_map(Chunking::Lengths),
    ]
}

fn chunks<'a>(bytes: &'a [u8], how: &Chunking) -> Vec<&'a [u8]> {
    match how {
        Chunking::Bytes1 => bytes.chunks(1).collect(),
        Chunking::Lengths(lens) => {
            let mut out = Vec::new();
            let mut rest = bytes;
            let mut i = 0;
            while !rest.is_empty() {
                let n = lens[i % lens.len()].min(rest.len());
                i += 1;
                out.push(&rest[..n]);
                rest = &rest[n..];
            }
            out
        }
    }
}

/// Everything observable after feeding `pieces` to a fresh connection.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<ProtocolError>,
    output: Vec<u8>,
    state: CloseState,
}

/// permessage-deflate with any parameters, or none.
fn deflate_params() -> impl Strategy<Value = Option<DeflateParams>> {
    proptest::option::weighted(
        0.8,
        (any::<(bool, bool)>(), 8u8..=15, 8u8..=15, 0usize..2000, 0u32..=9, proptest::option::of(1u8..=9)).prop_map(
            |((server_nct, client_nct), server_bits, client_bits, threshold, level, mem_level)| DeflateParams {
                server_no_context_takeover: server_nct,
                client_no_context_takeover: client_nct,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
                threshold,
                level,
                mem_level,
            },
        ),
    )
}

/// What a receiver makes of `pieces` in `mode`: the messages (chunks put
/// back together when streaming) and the error, checking each chunk's
/// flags and size (the pieces are at most `INFLATE_STEP` long, so a chunk
/// over it can only come from inflation).
fn read_in_mode(
    role: Role,
    deflate: Option<&DeflateParams>,
    pieces: &[&[u8]],
    mode: Mode,
) -> (Vec<Message>, Option<ProtocolError>) {
    let mut conn = Connection::with_deflate(role, &Config::default(), deflate);
    let mut messages = Vec::new();
    let mut partial: Option<(bool, Vec<u8>)> = None;
    for p in pieces {
        assert!(p.len() <= INFLATE_STEP);
        conn.reader.feed(p);
        loop {
            match conn.receive(mode) {
                Ok(Some(Incoming::Chunk(c))) => {
                    assert_eq!(mode, Mode::Streaming, "a chunk when reading whole messages");
                    assert!(c.data.len() <= INFLATE_STEP, "a chunk of {} bytes", c.data.len());
                    assert_eq!(c.first, partial.is_none());
                    let (text, acc) = partial.get_or_insert_with(|| (c.text, Vec::new()));
                    acc.extend_from_slice(&c.data);
                    if c.last {
                        let (text, acc) = (*text, std::mem::take(acc));
                        partial = None;
                        messages.push(if text {
                            Message::text(String::from_utf8(acc).unwrap())
                        } else {
                            Message::binary(acc)
                        });
                    }
                }
                Ok(Some(Incoming::Message(m))) => {
                    assert!(mode == Mode::Whole || m.is_control(), "a whole data message when streaming");
                    messages.push(m);
                }
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            }
        }
    }
    (messages, None)
}

fn feed_pieces(role: Role, config: Config, pieces: &[&[u8]]) -> Outcome {
    let mut conn = Connection::new(role, &config);
    let mut messages = Vec::new();
    let mut error = None;
    for p in pieces {
        conn.reader.feed(p);
        if let Some(e) = drain_messages(&mut conn, &mut messages) {
            assert!(error.is_none(), "an error is returned once");
            error = Some(e);
        }
    }
    // Nothing is left to say once the input is exhausted.
    assert_eq!(conn.receive(Mode::Whole), Ok(None));
    let mut output = Vec::new();
    loop {
        let o = conn.writer.take_output();
        if o.is_empty() {
            break;
        }
        output.extend(o);
    }
    Outcome { messages, error, output, state: conn.writer.close_state() }
}

/// A frame from a client, with any header bits (the payload masked with a
/// key derived from the payload so the stream is deterministic).
#[derive(Debug, Clone)]
struct RawFrame {
    b0: u8,
    masked: bool,
    payload: Vec<u8>,
}

impl RawFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let len = self.payload.len();
        out.push(self.b0);
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= 0xffff {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let key = [0x5a, len as u8, self.b0, 0xc3];
        if self.masked {
            out.extend_from_slice(&key);
        }
        out.extend(self.payload.iter().enumerate().map(|(i, b)| if self.masked { b ^ key[i % 4] } else { *b }));
    }
}

/// Frames that are mostly well-formed, some not: any opcode (reserved
/// ones rarely), RSV bits rarely, unmasked rarely, payloads that are text,
/// random bytes or close bodies with any code.
fn raw_frame() -> impl Strategy<Value = RawFrame> {
    let opcode = prop_oneof![
        3 => Just(0x0u8), 4 => Just(0x1u8), 4 => Just(0x2u8), 1 => Just(0x8u8),
        2 => Just(0x9u8), 1 => Just(0xAu8), 1 => 0u8..16,
    ];
    let rsv = prop_oneof![12 => Just(0u8), 1 => (1u8..8).prop_map(|r| r << 4)];
    let payload = prop_oneof![
        4 => "\\PC{0,40}".prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..200),
        1 => (any::<u16>(), "\\PC{0,10}").prop_map(|(c, r)| [c.to_be_bytes().to_vec(), r.into_bytes()].concat()),
        1 => (prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..5000], "\\PC{0,10}")
            .prop_map(|(c, r)| [c.to_be_bytes().to_vec(), r.into_bytes()].concat()),
        1 => (126usize..300, any::<u64>()).prop_map(|(n, s)| binary_payload(n, s).to_vec()),
    ];
    (prop::bool::weighted(0.7), rsv, opcode, prop::bool::weighted(0.95), payload)
        .prop_map(|(fin, rsv, op, masked, payload)| RawFrame { b0: ((fin as u8) << 7) | rsv | op, masked, payload })
}

const MIB: usize = 1 << 20;

// --------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// (1) Messages round-trip exactly in both directions, whatever their
    /// sizes and fragmentation, whatever the write sizes; the closing
    /// handshake then completes on both ends.
    #[test]
    fn messages_round_trip(items in vec(item_strategy(size_full()), 0..8),
                           writes in write_sizes(),
                           client_sends in any::<bool>()) {
        let (sender_role, receiver_role) =
            if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let mut tx = Connection::new(sender_role, &Config::default());
        let mut rx = Connection::new(receiver_role, &Config::default());
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut k = 0;
        for item in &items {
            send_item(&mut tx, item, &mut expected);
            let err = transfer(&mut tx, &mut rx, &writes, &mut k, &mut got);
            prop_assert_eq!(err, None);
        }
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(rx.writer.close_state(), CloseState::Open);

        // Close: the receiver answers, both ends end up Closed.
        tx.writer.close(Some(CloseFrame::new(1000, "done"))).unwrap();
        let mut got = Vec::new();
        prop_assert_eq!(transfer(&mut tx, &mut rx, &writes, &mut k, &mut got), None);
        prop_assert_eq!(got, vec![Message::Close(Some(CloseFrame::new(1000, "done")))]);
        let mut back = Vec::new();
        // Anything the receiver still had to say (pongs) comes before its close.
        prop_assert_eq!(transfer(&mut rx, &mut tx, &writes, &mut k, &mut back), None);
        let close = back.pop();
        prop_assert_eq!(close, Some(Message::Close(Some(CloseFrame::new(1000, "")))));
        prop_assert!(back.iter().all(|m| matches!(m, Message::Pong(_))));
        prop_assert_eq!(tx.writer.close_state(), CloseState::Closed);
        prop_assert_eq!(rx.writer.close_state(), CloseState::Closed);
        prop_assert!(tx.writer.should_close_transport() && rx.writer.should_close_transport());
        prop_assert_eq!(end_of_stream(&mut tx), Ok(None));
        prop_assert_eq!(end_of_stream(&mut rx), Ok(None));
    }

    /// (2) A valid stream gives the same messages fed whole or in any
    /// chunks, and those are the messages that were sent.
    #[test]
    fn valid_stream_in_chunks_equals_whole(items in vec(item_strategy(size_small()), 0..6),
                                           how in chunking(),
                                           client_sends in any::<bool>()) {
        let (sender_role, receiver_role) =
            if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let mut tx = Connection::new(sender_role, &Config::default());
        let mut expected = Vec::new();
        for item in &items {
            send_item(&mut tx, item, &mut expected);
        }
        let stream = tx.writer.take_output();
        let whole = feed_pieces(receiver_role, Config::default(), &[&stream]);
        let chunked = feed_pieces(receiver_role, Config::default(), &chunks(&stream, &how));
        prop_assert_eq!(&whole.messages, &expected);
        prop_assert_eq!(&whole.error, &None);
        if receiver_role == Role::Server {
            // A client's output is masked with random keys; a server's is
            // deterministic and must match too.
            prop_assert_eq!(&whole, &chunked);
        } else {
            prop_assert_eq!(&whole.messages, &chunked.messages);
            prop_assert_eq!(&whole.error, &chunked.error);
            prop_assert_eq!(whole.state, chunked.state);
        }
    }

    /// (2b) Any stream of frames, valid or not, gives the same messages, the
    /// same error, the same bytes written and the same close state, fed
    /// whole or in any chunks.
    #[test]
    fn any_stream_in_chunks_equals_whole(frames in vec(raw_frame(), 0..16), how in chunking(),
                                         small_limits in any::<bool>()) {
        let mut stream = Vec::new();
        for f in &frames {
            f.encode(&mut stream);
        }
        let config = if small_limits {
            Config::default().with_max_frame_size(150).with_max_message_size(400)
        } else {
            Config::default()
        };
        let whole = feed_pieces(Role::Server, config.clone(), &[&stream]);
        let chunked = feed_pieces(Role::Server, config, &chunks(&stream, &how));
        prop_assert_eq!(whole, chunked);
    }

    /// (3) Arbitrary bytes, in arbitrary chunks, never make a server panic;
    /// the read buffer never holds more than one frame's worth (bounded by
    /// the 1 MiB message limit) once the messages are read.
    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        pieces in vec(prop_oneof![
            3 => vec(any::<u8>(), 0..600),
            // A plausible masked header first, so that random payloads and
            // later headers are parsed too.
            2 => (0u8..16, any::<bool>(), 0u64..(2 * MIB as u64), vec(any::<u8>(), 0..600)).prop_map(
                |(op, fin, len, tail)| {
                    let mut v = vec![((fin as u8) << 7) | op, 0x80 | 127];
                    v.extend_from_slice(&len.to_be_bytes());
                    v.extend_from_slice(&[1, 2, 3, 4]);
                    v.extend(tail);
                    v
                }),
            1 => vec(raw_frame(), 0..4).prop_map(|fs| {
                let mut v = Vec::new();
                for f in &fs { f.encode(&mut v); }
                v
            }),
        ], 0..24),
        auto_pong in any::<bool>(),
    ) {
        let config = Config::default().with_max_message_size(MIB).with_auto_pong(auto_pong);
        let mut conn = Connection::new(Role::Server, &config);
        let mut failed = false;
        for p in &pieces {
            conn.reader.feed(p);
            loop {
                match conn.receive(Mode::Whole) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!(!failed, "error returned twice");
                        prop_assert_eq!(conn.writer.close_state(), CloseState::Failed);
                        let _ = e.close_code();
                        failed = true;
                    }
                }
            }
            let _ = conn.writer.take_output();
            prop_assert!(conn.reader.read_buf().len() <= MIB + 14, "read buffer {} bytes", conn.reader.read_buf().len());
            prop_assert!(conn.reader.buffer_capacity() <= 8 * MIB, "buffers hold {} bytes", conn.reader.buffer_capacity());
            if failed {
                prop_assert!(conn.reader.read_buf().is_empty());
            }
        }
        let eof = end_of_stream(&mut conn);
        prop_assert!(eof == Ok(None) || eof == Err(ProtocolError::AbnormalClosure));
        prop_assert!(conn.reader.read_buf().is_empty());
    }

    /// (4) Streaming and whole reading give the same messages for any split
    /// of the input, compressed or not, and inflation hands out chunks of at
    /// most `INFLATE_STEP`; the messages are those sent.
    #[test]
    fn streaming_equals_whole_for_any_split_and_compression(
        items in vec(item_strategy(size_full()), 0..6),
        large in proptest::option::weighted(0.3, (any::<bool>(), 65_000usize..300_000, any::<u64>())),
        deflate in deflate_params(),
        lens in vec(prop_oneof![1usize..8, 8usize..300, 300usize..=INFLATE_STEP], 1..12),
        client_sends in any::<bool>(),
    ) {
        let (sender_role, receiver_role) =
            if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let mut tx = Connection::with_deflate(sender_role, &Config::default(), deflate.as_ref());
        let mut expected = Vec::new();
        for item in &items {
            send_item(&mut tx, item, &mut expected);
        }
        if let Some((text, size, seed)) = large {
            // Several steps of inflated output, from text that compresses.
            let m = if text { Message::text(text_payload(size, seed)) } else { Message::binary(vec![seed as u8; size]) };
            tx.writer.send(m.clone()).unwrap();
            expected.push(m);
        }
        let stream = tx.writer.take_output();
        let pieces = chunks(&stream, &Chunking::Lengths(lens));
        let whole = read_in_mode(receiver_role, deflate.as_ref(), &pieces, Mode::Whole);
        let streamed = read_in_mode(receiver_role, deflate.as_ref(), &pieces, Mode::Streaming);
        prop_assert_eq!(&whole, &(expected, None));
        prop_assert_eq!(&streamed, &whole);
    }

    /// (3b) A peer that sends large fragments: the read buffer and the
    /// message being assembled stay within the message limit (the message
    /// fails with 1009 at the header that crosses it).
    #[test]
    fn large_fragments_stay_bounded(sizes in vec(0usize..40_000, 1..8), lens in vec(1usize..50_000, 1..6)) {
        const LIMIT: usize = 64 << 10;
        let config = Config::default().with_max_message_size(LIMIT);
        let mut stream = Vec::new();
        let n = sizes.len();
        for (i, &size) in sizes.iter().enumerate() {
            let op = if i == 0 { 0x2 } else { 0x0 };
            let fin = if i == n - 1 { 0x80 } else { 0 };
            RawFrame { b0: fin | op, masked: true, payload: binary_payload(size, i as u64).to_vec() }.encode(&mut stream);
        }
        let total: usize = sizes.iter().sum();
        let mut conn = Connection::new(Role::Server, &config);
        let mut got = Vec::new();
        let mut err = None;
        for piece in chunks(&stream, &Chunking::Lengths(lens)) {
            conn.reader.feed(piece);
            if let Some(e) = drain_messages(&mut conn, &mut got) {
                err = Some(e);
            }
            prop_assert!(conn.reader.read_buf().len() <= LIMIT + 14);
            prop_assert!(conn.reader.buffer_capacity() <= 8 * LIMIT + 2 * 50_000);
        }
        if total <= LIMIT {
            prop_assert_eq!(err, None);
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(got[0].len(), total);
        } else {
            prop_assert!(got.is_empty());
            prop_assert!(matches!(err, Some(ProtocolError::MessageTooBig { max: LIMIT, .. })), "{:?}", err);
        }
    }
}
