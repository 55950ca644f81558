//! The read buffer as the I/O layer sees it: before every read, room for
//! `read_hint` bytes, made with `Reader::reserve_for`.

use bytes::{Bytes, BytesMut};
use wsx_proto::{Config, Connection, Incoming, Message, Mode, Reader, Role};

/// The read buffer with room for the next read, made as `wsx`'s I/O layer
/// makes it (`crates/wsx/src/io.rs`, `poll_fill`).
fn buf_with_room(conn: &mut Connection) -> &mut BytesMut {
    let hint = conn.reader.read_hint();
    let buf = conn.reader.read_buf();
    if buf.capacity() - buf.len() < hint {
        buf.reserve(Reader::reserve_for(hint));
    }
    buf
}

/// `n` masked client frames of `size` bytes each, one `Vec` per frame.
fn client_frames(n: usize, size: usize) -> Vec<Vec<u8>> {
    let mut client = Connection::new(Role::Client, &Config::default());
    (0..n)
        .map(|i| {
            client.writer.send(Message::Binary(Bytes::from(vec![i as u8; size]))).unwrap();
            client.writer.take_output()
        })
        .collect()
}

#[test]
fn room_for_the_next_read_is_always_made() {
    let mut server = Connection::new(Role::Server, &Config::default());
    // Small messages, then one large one arriving in pieces.
    let mut wire: Vec<Vec<u8>> = client_frames(50, 20);
    let big = client_frames(1, 200_000).remove(0);
    wire.extend(big.chunks(7_000).map(<[u8]>::to_vec));
    let mut got = 0;
    for piece in wire {
        let hint = server.reader.read_hint();
        let buf = buf_with_room(&mut server);
        assert!(buf.capacity() - buf.len() >= hint, "less room than the hint");
        // A read of at most the room there is.
        assert!(piece.len() <= buf.capacity() - buf.len() || piece.len() > hint);
        buf.extend_from_slice(&piece);
        while let Some(m) = server.receive(Mode::Whole).unwrap() {
            assert!(matches!(m, Incoming::Message(Message::Binary(_))));
            got += 1;
        }
    }
    assert_eq!(got, 51);
}

#[test]
fn a_buffer_emptied_message_by_message_is_moved_back_rarely() {
    // Each small message leaves from the buffer's front; the buffer is
    // moved back to its start (its pointer goes down) only when the room
    // left is under the hint. With twice the minimum read reserved, that is
    // once every few kilobytes of messages, not before every read.
    let mut server = Connection::new(Role::Server, &Config::default());
    let frames = client_frames(1000, 20);
    let mut moved_back = 0;
    // Where the next read goes if the buffer was not moved: right after
    // the previous frame, which was consumed whole.
    let mut expected = None;
    for frame in &frames {
        let buf = buf_with_room(&mut server);
        let at = buf.as_ptr() as usize + buf.len();
        if expected.is_some_and(|e| at != e) {
            moved_back += 1;
        }
        expected = Some(at + frame.len());
        buf.extend_from_slice(frame);
        let m = server.receive(Mode::Whole).unwrap().expect("a whole frame");
        // Dropped before the next read (as an echo does): the buffer is
        // not shared when it is moved back.
        drop(m);
    }
    let bytes: usize = frames.iter().map(Vec::len).sum();
    assert!(moved_back <= bytes / 4096 + 1, "moved back {moved_back} times for {bytes} bytes");
    assert!(moved_back >= 1, "never moved back: the test does not exercise the reclaim");
}
