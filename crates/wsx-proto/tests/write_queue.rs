//! The write queue as the I/O layer sees it: `write_contiguous` for the
//! usual one-slice case, `write_chunks` for payloads queued by reference,
//! and `advance_write` for what was written.

use bytes::Bytes;
use std::io::IoSlice;
use wsx_proto::{Config, Connection, Incoming, Message, Mode, Role};

fn server() -> Connection {
    Connection::new(Role::Server, &Config::default())
}

/// What `write_chunks` shows, concatenated.
fn chunks(conn: &mut Connection) -> (usize, Vec<u8>) {
    let mut slices = [IoSlice::new(&[]); 8];
    let n = conn.writer.write_chunks(&mut slices);
    (n, slices[..n].iter().flat_map(|s| s.iter().copied()).collect())
}

#[test]
fn small_frames_are_one_slice_and_the_buffer_is_reused_once_written() {
    let mut conn = server();
    assert_eq!(conn.writer.write_contiguous(), None, "nothing queued");
    conn.writer.send(Message::Binary(Bytes::from_static(b"abc"))).unwrap();
    conn.writer.send(Message::text("de")).unwrap();
    // §5.2: unmasked server frames, FIN set, coalesced in order.
    let wire = [0x82, 3, b'a', b'b', b'c', 0x81, 2, b'd', b'e'];
    assert_eq!(conn.writer.write_contiguous(), Some(&wire[..]));
    assert_eq!(chunks(&mut conn), (1, wire.to_vec()));
    assert_eq!(conn.writer.write_slice_count(), 1);

    // A partial write leaves the rest, in order.
    conn.writer.advance_write(4);
    assert_eq!(conn.writer.write_contiguous(), Some(&wire[4..]));
    assert_eq!(conn.writer.buffered_amount(), wire.len() - 4);
    let start = conn.writer.write_contiguous().unwrap().as_ptr();

    // Everything written: the next frame starts where the queue started,
    // not after the bytes just written.
    conn.writer.advance_write(wire.len() - 4);
    assert_eq!(conn.writer.write_contiguous(), None);
    assert_eq!(conn.writer.buffered_amount(), 0);
    conn.writer.send(Message::Binary(Bytes::from_static(b"f"))).unwrap();
    let next = conn.writer.write_contiguous().unwrap();
    assert_eq!(next, &[0x82, 1, b'f']);
    assert_eq!(next.as_ptr(), start, "the written bytes' room is reused from its start");
}

#[test]
fn a_payload_queued_by_reference_needs_write_chunks() {
    let mut conn = server();
    let big = Bytes::from(vec![7u8; 256 << 10]);
    conn.writer.send(Message::Binary(big.clone())).unwrap();
    assert_eq!(conn.writer.write_contiguous(), None, "the payload is not in the tail buffer");
    let (n, bytes) = chunks(&mut conn);
    assert!(n >= 2, "header and payload are separate slices");
    assert_eq!(conn.writer.write_slice_count(), n);
    assert_eq!(bytes.len(), 10 + big.len());
    assert_eq!(&bytes[..2], &[0x82, 127]);
    assert_eq!(&bytes[10..], &big[..]);

    // Written across the boundary between the slices, then the rest.
    conn.writer.advance_write(12);
    let (_, rest) = chunks(&mut conn);
    assert_eq!(rest.len(), big.len() - 2);
    conn.writer.advance_write(rest.len());
    assert_eq!(conn.writer.buffered_amount(), 0);
    assert_eq!(conn.writer.write_contiguous(), None);
    assert_eq!(conn.writer.write_slice_count(), 0);
    // Small frames after it are one slice again.
    conn.writer.send(Message::Binary(Bytes::from_static(b"x"))).unwrap();
    assert_eq!(conn.writer.write_contiguous(), Some(&[0x82, 1, b'x'][..]));
}

#[test]
fn the_pong_owed_to_a_ping_is_in_the_contiguous_view() {
    let mut conn = server();
    // A masked ping from the client (§5.5.2), answered with a pong (§5.5.3).
    let key = [1u8, 2, 3, 4];
    let mut frame = vec![0x89, 0x80 | 2];
    frame.extend_from_slice(&key);
    frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    conn.reader.feed(&frame);
    assert_eq!(conn.receive(Mode::Whole).unwrap(), Some(Incoming::Message(Message::Ping(Bytes::from_static(b"hi")))));
    assert_eq!(conn.writer.write_contiguous(), Some(&[0x8a, 2, b'h', b'i'][..]));
}
