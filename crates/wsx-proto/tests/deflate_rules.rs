//! permessage-deflate rules on the wire (RFC 7692 §6).

mod common;

use common::deflate_params;
use wsx_proto::{CloseState, Config, Connection, Incoming, Message, Mode, ProtocolError, Role};

/// A masked client frame with the given first byte and payload.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut f = vec![b0, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

fn fails_with_1002(wire: &[u8]) {
    let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&deflate_params(false)));
    server.reader.feed(wire);
    let mut r = server.receive(Mode::Whole);
    while let Ok(Some(_)) = r {
        r = server.receive(Mode::Whole);
    }
    assert_eq!(r, Err(ProtocolError::ReservedBits));
    assert_eq!(server.writer.close_state(), CloseState::Failed);
    let out = server.writer.take_output();
    assert_eq!(&out[2..4], &1002u16.to_be_bytes());
}

#[test]
fn rsv1_on_a_control_frame_fails_with_1002() {
    // RFC 7692 §6.1: RSV1 is only for the first frame of a data message.
    fails_with_1002(&frame(0x80 | 0x40 | 0x9, b"ping"));
}

#[test]
fn rsv1_on_a_continuation_frame_fails_with_1002() {
    let mut wire = frame(0x02, b"part one"); // binary, FIN=0
    wire.extend(frame(0x80 | 0x40, b"part two")); // continuation with RSV1
    fails_with_1002(&wire);
}

#[test]
fn rsv1_without_negotiated_deflate_fails_with_1002() {
    let mut server = Connection::new(Role::Server, &Config::default());
    server.reader.feed(&frame(0x80 | 0x40 | 0x2, b"x"));
    assert_eq!(server.receive(Mode::Whole), Err(ProtocolError::ReservedBits));
}

#[test]
fn compressed_message_round_trips_and_sets_rsv1_only_on_the_first_frame() {
    let mut client = Connection::with_deflate(Role::Client, &Config::default(), Some(&deflate_params(false)));
    let text = "abc ".repeat(1000);
    client.writer.send(Message::text(text.clone())).unwrap();
    let wire = client.writer.take_output();
    assert_eq!(wire[0] & 0x40, 0x40, "RSV1 marks a compressed message");
    assert!(wire.len() < text.len() / 4, "compressed: {} bytes", wire.len());
    let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&deflate_params(false)));
    server.reader.feed(&wire);
    assert_eq!(server.receive(Mode::Whole).unwrap(), Some(Incoming::Message(Message::text(text))));
}

#[test]
fn send_uncompressed_clears_rsv1() {
    let mut client = Connection::with_deflate(Role::Client, &Config::default(), Some(&deflate_params(false)));
    client.writer.send_uncompressed(Message::binary(vec![0u8; 4096])).unwrap();
    let wire = client.writer.take_output();
    assert_eq!(wire[0] & 0x40, 0);
}

#[test]
fn inflated_size_over_the_limit_fails_with_1009() {
    // A decompression bomb: a small frame that inflates past the limit.
    let mut client = Connection::with_deflate(Role::Client, &Config::default(), Some(&deflate_params(false)));
    client.writer.send(Message::binary(vec![0u8; 4 << 20])).unwrap();
    let wire = client.writer.take_output();
    assert!(wire.len() < 64 << 10);
    let mut server = Connection::with_deflate(
        Role::Server,
        &Config::default().with_max_message_size(1 << 20),
        Some(&deflate_params(false)),
    );
    server.reader.feed(&wire);
    assert!(matches!(server.receive(Mode::Whole), Err(ProtocolError::MessageTooBig { .. })));
    assert_eq!(&server.writer.take_output()[2..4], &1009u16.to_be_bytes());
}
