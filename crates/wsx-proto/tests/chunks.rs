//! Streaming receive: `Mode::Streaming` hands out a data message's bytes as
//! they arrive, under the same limits and checks as `Mode::Whole`.

use bytes::Bytes;
use proptest::prelude::*;
mod common;

use common::deflate_params;
use wsx_proto::{Chunk, Config, Connection, Incoming, Message, Mode, ProtocolError, Role, INFLATE_STEP};

fn client_bytes(msgs: Vec<Message>) -> Vec<u8> {
    let mut c = Connection::new(Role::Client, &Config::default());
    for m in msgs {
        c.writer.send(m).unwrap();
    }
    c.writer.take_output()
}

/// Feed `wire` in pieces of `step` bytes, collecting everything streaming receive yields.
fn chunks(server: &mut Connection, wire: &[u8], step: usize) -> Vec<Incoming> {
    let mut out = Vec::new();
    for piece in wire.chunks(step.max(1)) {
        server.reader.feed(piece);
        while let Some(i) = server.receive(Mode::Streaming).unwrap() {
            out.push(i);
        }
    }
    out
}

#[test]
fn large_frame_is_handed_out_before_it_is_complete() {
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let wire = client_bytes(vec![Message::binary(payload.clone())]);
    let mut server = Connection::new(Role::Server, &Config::default());
    // Only the first half of the frame: some bytes must already come out.
    server.reader.feed(&wire[..wire.len() / 2]);
    let first = server.receive(Mode::Streaming).unwrap().expect("a chunk before the frame is complete");
    let Incoming::Chunk(c) = first else { panic!("expected a chunk") };
    assert!(c.first && !c.last && !c.text);
    assert!(!c.data.is_empty());
    let mut got = c.data.to_vec();
    for i in chunks(&mut server, &wire[wire.len() / 2..], 7_000) {
        let Incoming::Chunk(c) = i else { panic!("expected chunks only") };
        assert!(!c.first);
        got.extend_from_slice(&c.data);
        if c.last {
            break;
        }
    }
    assert_eq!(got, payload);
}

#[test]
fn fragmented_message_chunks_with_interleaved_ping() {
    // RFC 6455 §5.4: control frames may be injected between fragments.
    let mut c = Connection::new(Role::Client, &Config::default());
    c.writer.send_fragment(true, Bytes::from_static("héllo ".as_bytes()), false).unwrap();
    c.writer.send(Message::ping("p")).unwrap();
    c.writer.send_fragment(true, Bytes::from_static(b"wor"), false).unwrap();
    c.writer.send_fragment(true, Bytes::from_static(b"ld"), true).unwrap();
    let wire = c.writer.take_output();
    let mut server = Connection::new(Role::Server, &Config::default());
    let got = chunks(&mut server, &wire, wire.len());
    let mut text = Vec::new();
    let mut saw_ping = false;
    let mut lasts = 0;
    for i in got {
        match i {
            Incoming::Message(Message::Ping(p)) => saw_ping = p == "p",
            Incoming::Chunk(c) => {
                assert!(c.text);
                text.extend_from_slice(&c.data);
                lasts += c.last as usize;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_ping);
    assert_eq!(lasts, 1);
    assert_eq!(String::from_utf8(text).unwrap(), "héllo world");
    // The ping was answered.
    assert!(!server.writer.take_output().is_empty());
}

#[test]
fn invalid_utf8_fails_before_the_bad_bytes_are_handed_out() {
    // RFC 6455 §8.1: fail at the first invalid byte, also when streaming.
    let mut payload = "κόσμε".repeat(1000).into_bytes();
    let bad_at = payload.len() - 100;
    payload[bad_at] = 0xff;
    let mut c = Connection::new(Role::Client, &Config::default());
    // Send as binary then flip the opcode to text, to put invalid UTF-8 on the wire.
    c.writer.send(Message::binary(payload.clone())).unwrap();
    let mut wire = c.writer.take_output();
    wire[0] = 0x81;
    let mut server = Connection::new(Role::Server, &Config::default());
    let mut handed_out = 0;
    let mut err = None;
    for piece in wire.chunks(1000) {
        server.reader.feed(piece);
        loop {
            match server.receive(Mode::Streaming) {
                Ok(Some(Incoming::Chunk(c))) => handed_out += c.data.len(),
                Ok(Some(other)) => panic!("unexpected {other:?}"),
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if err.is_some() {
            break;
        }
    }
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    assert!(handed_out <= bad_at, "handed out {handed_out} bytes, invalid byte at {bad_at}");
    let out = server.writer.take_output();
    assert_eq!(&out[2..4], &1007u16.to_be_bytes());
}

#[test]
fn message_over_the_limit_fails_at_the_header_in_chunk_mode() {
    let wire = client_bytes(vec![Message::binary(vec![0u8; 5000])]);
    let mut server = Connection::new(Role::Server, &Config::default().with_max_message_size(4096));
    server.reader.feed(&wire[..8]);
    assert!(matches!(
        server.receive(Mode::Streaming),
        Err(ProtocolError::MessageTooBig { .. } | ProtocolError::FrameTooBig { .. })
    ));
}

#[test]
fn compressed_message_is_inflated_in_chunks() {
    let params = deflate_params(false);
    let text = "the quick brown fox jumps over the lazy dog ".repeat(5000);
    let mut c = Connection::with_deflate(Role::Client, &Config::default(), Some(&params));
    c.writer.send(Message::text(text.clone())).unwrap();
    c.writer.send(Message::text(text.clone())).unwrap();
    let wire = c.writer.take_output();
    let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&params));
    let mut msgs = vec![Vec::new()];
    for i in chunks(&mut server, &wire, 333) {
        let Incoming::Chunk(c) = i else { panic!("expected chunks") };
        msgs.last_mut().unwrap().extend_from_slice(&c.data);
        if c.last {
            msgs.push(Vec::new());
        }
    }
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0], text.as_bytes());
    assert_eq!(msgs[1], text.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn chunks_reassemble_to_the_messages(sizes in proptest::collection::vec(0usize..70_000, 1..5), step in 1usize..20_000, text: bool) {
        let msgs: Vec<Message> = sizes.iter().enumerate().map(|(i, n)| {
            if text { Message::text("é".repeat(n / 2) + &"x".repeat(i)) } else { Message::binary(vec![i as u8; *n]) }
        }).collect();
        let wire = client_bytes(msgs.clone());
        let mut server = Connection::new(Role::Server, &Config::default());
        let mut got: Vec<Message> = Vec::new();
        let mut cur = Vec::new();
        for i in chunks(&mut server, &wire, step) {
            let Incoming::Chunk(c) = i else { panic!("expected chunks") };
            prop_assert_eq!(c.first, cur.is_empty());
            cur.extend_from_slice(&c.data);
            if c.last {
                let data = std::mem::take(&mut cur);
                got.push(if c.text { Message::text(String::from_utf8(data).unwrap()) } else { Message::binary(data) });
            }
        }
        prop_assert_eq!(got, msgs);
    }
}

#[test]
fn chunk_into_message_never_drops_bytes() {
    // A whole text message keeps its type.
    let whole = wsx_proto::Chunk { text: true, data: Bytes::from_static("é".as_bytes()), first: true, last: true };
    assert_eq!(whole.into_message(), Message::text("é"));
    // The tail of a text message cut inside a code point comes back as its bytes.
    let tail = wsx_proto::Chunk { text: true, data: Bytes::from_static(&[0xa9, b'x']), first: false, last: true };
    assert_eq!(tail.into_message(), Message::binary(vec![0xa9, b'x']));
}

#[test]
fn a_text_chunk_built_by_hand_is_checked_before_it_becomes_text() {
    // `first && last` is only a claim: invalid bytes never become `Text`.
    let forged = Chunk { text: true, data: bytes::Bytes::from_static(&[0xff, b'a']), first: true, last: true };
    assert_eq!(forged.into_message(), Message::binary(vec![0xff, b'a']));
}

#[test]
fn gather_hands_out_small_messages_whole_and_large_ones_in_large_pieces() {
    use wsx_proto::Gather;
    let piece =
        |data: &[u8], first, last| Chunk { text: false, data: bytes::Bytes::copy_from_slice(data), first, last };
    let mut gather = Gather::default();
    // A small message in three pieces: one whole chunk at the end.
    assert_eq!(gather.push(piece(b"ab", true, false)), None);
    assert_eq!(gather.push(piece(b"cd", false, false)), None);
    assert_eq!(gather.push(piece(b"e", false, true)), Some(piece(b"abcde", true, true)));
    // 200 KiB in 4 KiB pieces: pieces of at least FORWARD_AT while it
    // arrives, `first` on the first only, the bytes in order and complete.
    let message: Vec<u8> = (0..200 << 10).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<_> = message.chunks(4096).collect();
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if let Some(c) = gather.push(piece(p, i == 0, i == pieces.len() - 1)) {
            out.push(c);
        }
    }
    assert_eq!(out.len(), 4);
    assert!(out[..3].iter().all(|c| c.data.len() >= Gather::FORWARD_AT && !c.last));
    assert_eq!(out.iter().map(|c| c.first).collect::<Vec<_>>(), [true, false, false, false]);
    assert!(out[3].last);
    assert_eq!(out.iter().flat_map(|c| c.data.iter().copied()).collect::<Vec<_>>(), message);
    // A piece of at least FORWARD_AT goes on as it is, without a copy.
    let big = bytes::Bytes::from(vec![1u8; Gather::FORWARD_AT]);
    let c = gather.push(Chunk { text: false, data: big.clone(), first: true, last: false }).unwrap();
    assert_eq!(c.data.as_ptr(), big.as_ptr());
}

/// A client's compressed frames for `msgs`.
fn compressed_client_bytes(msgs: Vec<Message>) -> Vec<u8> {
    let mut c = Connection::with_deflate(Role::Client, &Config::default(), Some(&deflate_params(false)));
    for m in msgs {
        c.writer.send(m).unwrap();
    }
    c.writer.take_output()
}

/// Stream what `server` makes of `wire` (fed at once): the chunks' bytes,
/// checking that none is over `INFLATE_STEP` and that the reader holds at
/// most the compressed input and one step; then the error, if any.
fn stream_bounded(server: &mut Connection, wire: &[u8]) -> (Vec<u8>, usize, Option<ProtocolError>) {
    server.reader.feed(wire);
    let (mut got, mut chunks) = (Vec::new(), 0);
    loop {
        let held = server.reader.buffer_capacity();
        assert!(held <= wire.len() + 2 * INFLATE_STEP + 4096, "the reader holds {held} bytes");
        match server.receive(Mode::Streaming) {
            Ok(Some(Incoming::Chunk(c))) => {
                assert!(c.data.len() <= INFLATE_STEP, "a chunk of {} bytes", c.data.len());
                assert_eq!(c.first, chunks == 0);
                chunks += 1;
                got.extend_from_slice(&c.data);
                if c.last {
                    return (got, chunks, None);
                }
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => return (got, chunks, Some(e)),
        }
    }
}

#[test]
fn a_compressed_message_streams_in_bounded_steps() {
    // 8 MiB that compresses to a few KiB, in one frame: handed out in steps
    // of at most 64 KiB, the rest of the frame kept compressed; what the
    // reader holds is bounded by the step, not by the message (RFC 7692
    // §6.2 gives the inflated size no bound but the endpoint's limit).
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i / 1000 % 251) as u8).collect();
    let wire = compressed_client_bytes(vec![Message::binary(data.clone())]);
    assert!(wire.len() < 1 << 20, "{} bytes", wire.len());
    let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&deflate_params(false)));
    let (got, chunks, err) = stream_bounded(&mut server, &wire);
    assert_eq!(err, None);
    assert!(chunks >= data.len() / INFLATE_STEP, "{chunks} chunks");
    assert!(got == data, "the streamed bytes differ");
    // Whole, the same bytes in one message.
    let mut whole = Connection::with_deflate(Role::Server, &Config::default(), Some(&deflate_params(false)));
    whole.reader.feed(&wire);
    assert_eq!(whole.receive(Mode::Whole).unwrap(), Some(Incoming::Message(Message::binary(data))));
}

#[test]
fn a_streamed_decompression_bomb_fails_with_1009_at_the_limit() {
    // §7.4.1 (1009): the limit is on the message's inflated size, across
    // steps: what is handed out stays within it, then the connection fails.
    let wire = compressed_client_bytes(vec![Message::binary(vec![0u8; 16 << 20])]);
    let config = Config::default().with_max_message_size(1 << 20);
    let mut server = Connection::with_deflate(Role::Server, &config, Some(&deflate_params(false)));
    let (got, _, err) = stream_bounded(&mut server, &wire);
    assert!(got.len() <= 1 << 20, "{} bytes handed out", got.len());
    assert!(matches!(err, Some(ProtocolError::MessageTooBig { size, max: 0x10_0000 }) if size > 1 << 20), "{err:?}");
    assert_eq!(&server.writer.take_output()[2..4], &1009u16.to_be_bytes());
}

#[test]
fn invalid_utf8_deep_in_a_compressed_text_fails_across_steps() {
    // §8.1 on the inflated text (RFC 7692 §6.2): checked as each step comes
    // out, so an invalid byte past the first steps fails with 1007 before
    // it is handed out; a code point cut between two steps is fine.
    let mut text = "κόσμε ".repeat(60_000).into_bytes();
    let bad_at = 300_000 + 1;
    text[bad_at] = 0xff;
    // Sent as binary, then marked text: invalid UTF-8 on the wire.
    let mut wire = compressed_client_bytes(vec![Message::binary(text.clone())]);
    wire[0] = (wire[0] & 0xf0) | 0x1;
    let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&deflate_params(false)));
    let (got, chunks, err) = stream_bounded(&mut server, &wire);
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    assert!(chunks >= 4 && got.len() <= bad_at, "{chunks} chunks, {} bytes", got.len());
    assert_eq!(&server.writer.take_output()[2..4], &1007u16.to_be_bytes());
    // The same text, valid: whole again from its steps.
    text[bad_at] = b'x';
    text[bad_at - 1] = b'x';
    let mut wire = compressed_client_bytes(vec![Message::binary(text.clone())]);
    wire[0] = (wire[0] & 0xf0) | 0x1;
    let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&deflate_params(false)));
    let (got, _, err) = stream_bounded(&mut server, &wire);
    assert_eq!((err, got == text), (None, true));
}

#[test]
fn switching_modes_inside_a_message_loses_nothing() {
    // Whole, then streaming: what was gathered goes out with the next chunk.
    // Streaming, then whole: the rest comes out as one message.
    for compressed in [false, true] {
        let mut c = Connection::with_deflate(Role::Client, &Config::default(), Some(&deflate_params(false)));
        let payload: Vec<u8> = (0..30_000u32).map(|i| (i % 7) as u8).collect();
        if compressed {
            c.writer.send(Message::binary(payload.clone())).unwrap();
        } else {
            c.writer.send_fragment(false, Bytes::copy_from_slice(&payload[..10_000]), false).unwrap();
            c.writer.send_fragment(false, Bytes::copy_from_slice(&payload[10_000..]), true).unwrap();
        }
        let wire = c.writer.take_output();
        let cut = wire.len() / 2;
        let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&deflate_params(false)));
        server.reader.feed(&wire[..cut]);
        assert_eq!(server.receive(Mode::Whole), Ok(None), "compressed={compressed}");
        server.reader.feed(&wire[cut..]);
        let Ok(Some(Incoming::Chunk(chunk))) = server.receive(Mode::Streaming) else { panic!("a chunk") };
        assert!(chunk.first && chunk.last && chunk.data == payload, "compressed={compressed}");

        let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&deflate_params(false)));
        server.reader.feed(&wire[..cut]);
        let Ok(Some(Incoming::Chunk(head))) = server.receive(Mode::Streaming) else { panic!("a chunk") };
        assert!(head.first && !head.last);
        server.reader.feed(&wire[cut..]);
        let Ok(Some(Incoming::Message(Message::Binary(rest)))) = server.receive(Mode::Whole) else {
            panic!("the rest")
        };
        assert_eq!([&head.data[..], &rest[..]].concat(), payload, "compressed={compressed}");
    }
}
