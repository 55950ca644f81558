//! Prepared messages (one frame shared by every recipient of a broadcast):
//! the same bytes on the wire as the per-connection path, whatever each
//! connection negotiated; compressed at most once per compression setting,
//! and only where RFC 7692 §7.1.1.1 allows sharing (no server context
//! takeover); never from a client (RFC 6455 §5.3).

mod common;

use common::deflate_params;
use proptest::prelude::*;
use std::io::IoSlice;
use wsx_proto::deflate::DeflateParams;
use wsx_proto::{Config, Connection, Incoming, Message, Mode, PreparedMessage, Role, SendError, Writer};

/// Every message compressed (threshold 0), `bits` for the server's window,
/// with or without context takeover.
fn params(no_context_takeover: bool, bits: u8) -> DeflateParams {
    DeflateParams { server_max_window_bits: bits, ..deflate_params(no_context_takeover) }
}

fn server(deflate: Option<&DeflateParams>) -> Writer {
    Writer::with_deflate(Role::Server, &Config::default(), deflate)
}

/// What the per-connection path writes for `msgs`, and what the prepared
/// path writes on a connection with the same parameters.
fn both_paths(deflate: Option<&DeflateParams>, msgs: &[(Message, PreparedMessage)]) -> (Vec<u8>, Vec<u8>) {
    let (mut plain, mut shared) = (server(deflate), server(deflate));
    for (m, p) in msgs {
        plain.send(m.clone()).unwrap();
        shared.send_prepared(p).unwrap();
    }
    (plain.take_output(), shared.take_output())
}

fn prepare(m: &Message) -> (Message, PreparedMessage) {
    (m.clone(), PreparedMessage::try_from(m.clone()).unwrap())
}

/// `n` bytes that do not compress, twice: the second copy compresses to a
/// back-reference only with a window over `n` bytes.
fn repeated_noise(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    [noise.clone(), noise].concat()
}

/// A client that negotiated `deflate` reads `wire` as `expected`.
fn client_reads(deflate: Option<&DeflateParams>, wire: &[u8], expected: &[Message]) {
    let mut client = Connection::with_deflate(Role::Client, &Config::default(), deflate);
    client.reader.feed(wire);
    for m in expected {
        assert_eq!(client.receive(Mode::Whole).unwrap(), Some(Incoming::Message(m.clone())));
    }
    assert_eq!(client.receive(Mode::Whole).unwrap(), None, "nothing more on the wire");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Byte for byte what `Writer::send` writes, uncompressed, compressed
    /// with each window size, and with context takeover (a sequence, where
    /// each message depends on the ones before it).
    #[test]
    fn prepared_frames_are_the_per_connection_bytes(
        payloads in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..3000),
                "[a-c ]{0,5000}".prop_map(String::into_bytes),
            ],
            1..4,
        ),
        text in any::<bool>(),
        bits in 9u8..=15,
    ) {
        let msgs: Vec<(Message, PreparedMessage)> = payloads
            .iter()
            .map(|p| match String::from_utf8(p.clone()) {
                Ok(s) if text => prepare(&Message::text(s)),
                _ => prepare(&Message::binary(p.clone())),
            })
            .collect();
        for deflate in [None, Some(params(true, bits)), Some(params(false, bits))] {
            let (plain, shared) = both_paths(deflate.as_ref(), &msgs);
            prop_assert_eq!(&plain, &shared, "deflate {:?}", deflate);
            let expected: Vec<Message> = msgs.iter().map(|(m, _)| m.clone()).collect();
            client_reads(deflate.as_ref(), &shared, &expected);
        }
    }
}

#[test]
fn one_compressed_frame_per_setting_shared_by_reference() {
    // Past the copy threshold (2 KiB) compressed too: queued by reference.
    let payload = repeated_noise(3000);
    let prepared = PreparedMessage::binary(payload.clone());
    let setting = params(true, 15);
    let mut writers: Vec<Writer> = (0..3).map(|_| server(Some(&setting))).collect();
    for w in &mut writers {
        w.send_prepared(&prepared).unwrap();
    }
    assert_eq!(prepared.compressed_encodings(), 1, "compressed once for three connections");
    // Each queue holds the one compressed frame, by reference.
    let frame_of = |w: &mut Writer| {
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(w.write_chunks(&mut slices), 1);
        (slices[0].as_ptr() as usize, slices[0].len())
    };
    let first = frame_of(&mut writers[0]);
    for w in &mut writers[1..] {
        assert_eq!(frame_of(w), first, "the same bytes, not a copy");
    }
    assert!(first.1 < payload.len(), "compressed: {} bytes", first.1);
    client_reads(Some(&setting), &writers[0].take_output(), &[Message::binary(payload)]);
}

#[test]
fn connections_with_other_window_bits_get_their_own_encoding() {
    // A 1,000-byte repeat: out of reach of a 9-bit window (512 bytes).
    let payload = repeated_noise(1000);
    let prepared = PreparedMessage::binary(payload.clone());
    let mut wires = Vec::new();
    for bits in [15, 9, 15, 9] {
        let setting = params(true, bits);
        let mut w = server(Some(&setting));
        w.send_prepared(&prepared).unwrap();
        let wire = w.take_output();
        let (plain, _) = both_paths(Some(&setting), &[prepare(&Message::binary(payload.clone()))]);
        assert_eq!(wire, plain, "window bits {bits}: the connection's own encoding");
        client_reads(Some(&setting), &wire, &[Message::binary(payload.clone())]);
        wires.push(wire);
    }
    assert_ne!(wires[0], wires[1], "the 15-bit window finds the repeat, the 9-bit one cannot");
    assert_eq!(prepared.compressed_encodings(), 2, "one per setting");
}

#[test]
fn other_compression_levels_get_their_own_encoding() {
    let payload = "abcabcabd ".repeat(300).into_bytes();
    let prepared = PreparedMessage::binary(payload.clone());
    for level in [1, 9, 1] {
        let setting = DeflateParams { level, ..params(true, 15) };
        let (plain, shared) = both_paths(Some(&setting), &[(Message::binary(payload.clone()), prepared.clone())]);
        assert_eq!(plain, shared, "level {level}");
    }
    assert_eq!(prepared.compressed_encodings(), 2);
}

#[test]
fn context_takeover_compresses_per_connection() {
    // RFC 7692 §7.1.1.1: with server context takeover the second copy of a
    // message compresses against the first, so no frame can be shared.
    let prepared = PreparedMessage::text("the same broadcast, again and again ".repeat(40));
    let message = prepared.to_message();
    let setting = params(false, 15);
    let mut w = server(Some(&setting));
    w.send_prepared(&prepared).unwrap();
    let first = w.take_output();
    w.send_prepared(&prepared).unwrap();
    let second = w.take_output();
    assert!(second.len() < first.len(), "the second refers to the first: {} then {} bytes", first.len(), second.len());
    assert_eq!(prepared.compressed_encodings(), 0, "nothing shared");
    client_reads(Some(&setting), &[first, second].concat(), &[message.clone(), message]);
}

#[test]
fn uncompressed_below_the_threshold_and_without_deflate() {
    let prepared = PreparedMessage::text("short");
    let setting = DeflateParams { threshold: 1024, ..params(true, 15) };
    for deflate in [None, Some(setting)] {
        let mut w = server(deflate.as_ref());
        w.send_prepared(&prepared).unwrap();
        assert_eq!(w.take_output(), b"\x81\x05short");
    }
    assert_eq!(prepared.compressed_encodings(), 0);
}

#[test]
fn a_client_cannot_send_a_prepared_frame() {
    // RFC 6455 §5.3: a client masks every frame with a fresh key.
    let prepared = PreparedMessage::binary(vec![1u8, 2, 3]);
    let mut client = Writer::new(Role::Client, &Config::default());
    assert_eq!(client.send_prepared(&prepared), Err(SendError::PreparedByClient));
    assert_eq!(client.buffered_amount(), 0, "nothing queued");
}

#[test]
fn the_writer_rules_hold_for_prepared_messages() {
    let prepared = PreparedMessage::text("x");
    let mut w = server(None);
    w.send_fragment(true, "part".into(), false).unwrap();
    assert_eq!(w.send_prepared(&prepared), Err(SendError::FragmentOrder));
    w.send_fragment(true, "end".into(), true).unwrap();
    w.close(None).unwrap();
    assert_eq!(w.send_prepared(&prepared), Err(SendError::Closed));
}

#[test]
fn several_prepared_frames_go_out_in_one_write() {
    // Small frames are coalesced into the tail, large ones follow by
    // reference: one vectored write for all of them.
    let small = PreparedMessage::text("tick");
    let large = PreparedMessage::binary(vec![7u8; 5000]);
    let mut w = server(None);
    for p in [&small, &large, &small, &large, &small] {
        w.send_prepared(p).unwrap();
    }
    let mut slices = [IoSlice::new(&[]); 16];
    let n = w.write_chunks(&mut slices);
    let total: usize = slices[..n].iter().map(|s| s.len()).sum();
    assert_eq!(total, w.buffered_amount(), "every queued byte in one list of {n} slices");
    assert_eq!(n, 5, "tick + large, tick + large, tick");
}
