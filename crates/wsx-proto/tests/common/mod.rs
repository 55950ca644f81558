//! What several integration tests share.

use wsx_proto::deflate::DeflateParams;

/// permessage-deflate as negotiated in these tests: full windows both ways,
/// every message compressed (threshold 0), level 6, with or without context
/// takeover in both directions.
#[allow(dead_code)] // not every test compresses
pub fn deflate_params(no_context_takeover: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        threshold: 0,
        level: 6,
        mem_level: None,
    }
}

/// A frame header as RFC 6455 §5.2 lays it out, read independently of the
/// crate (the tests check what the writer wrote with it).
#[allow(dead_code)] // not every test reads frames
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: usize,
    /// The header's own length: 2 to 14 bytes.
    pub len: usize,
}

/// The header at the start of `wire`, which holds all of it.
#[allow(dead_code)]
pub fn header(wire: &[u8]) -> Header {
    let (b0, b1) = (wire[0], wire[1]);
    let (payload_len, mut len) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
        127 => (u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize, 10),
        n => (n as usize, 2),
    };
    let mask = (b1 & 0x80 != 0).then(|| {
        let key = [wire[len], wire[len + 1], wire[len + 2], wire[len + 3]];
        len += 4;
        key
    });
    Header { fin: b0 & 0x80 != 0, rsv1: b0 & 0x40 != 0, opcode: b0 & 0x0f, mask, payload_len, len }
}
