//! Frame headers (RFC 6455 §5.2): opcodes, the 7/16/64-bit payload length,
//! the mask bit and key, and the FIN/RSV bits. Internal: what is `pub` here
//! is reachable only through the hidden `fuzzing` module.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

/// The longest possible frame header: 2 + 8 (length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for the reserved values
    /// 0x3–0x7 and 0xB–0xF.
    #[inline]
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    #[inline]
    pub(crate) fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (opcodes with the high bit set).
    #[inline]
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final fragment of a message.
    pub fin: bool,
    /// RSV1 (used by permessage-deflate).
    pub rsv1: bool,
    /// RSV2.
    pub rsv2: bool,
    /// RSV3.
    pub rsv3: bool,
    /// The raw 4-bit opcode (reserved values included; the connection
    /// decides what to do with them).
    pub opcode: u8,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// A header that can never be valid, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The most significant bit of a 64-bit length is set (§5.2).
    LengthMsbSet,
}

impl FrameHeader {
    /// Parse a header from the start of `buf`. Returns the header and its
    /// length in bytes, or `Ok(None)` if `buf` does not hold the whole header
    /// yet. Never reads past `buf`.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, HeaderError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        let (payload_len, mut pos) = match len7 {
            126 => match buf.get(2..4) {
                Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    let len = u64::from_be_bytes(a);
                    if len >> 63 != 0 {
                        return Err(HeaderError::LengthMsbSet);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (n as u64, 2),
        };
        let mask = if masked {
            match buf.get(pos..pos + 4) {
                Some(k) => {
                    pos += 4;
                    Some([k[0], k[1], k[2], k[3]])
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                rsv1: b0 & 0x40 != 0,
                rsv2: b0 & 0x20 != 0,
                rsv3: b0 & 0x10 != 0,
                opcode: b0 & 0x0f,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// Encode into `dst`, using the minimal length form (§5.2: "the minimal
    /// number of bytes MUST be used to encode the length"). Returns the
    /// number of bytes written (2 to 14).
    #[inline]
    pub fn encode(&self, dst: &mut [u8; MAX_HEADER_LEN]) -> usize {
        dst[0] = (self.fin as u8) << 7
            | (self.rsv1 as u8) << 6
            | (self.rsv2 as u8) << 5
            | (self.rsv3 as u8) << 4
            | (self.opcode & 0x0f);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = if self.payload_len < 126 {
            dst[1] = mask_bit | self.payload_len as u8;
            2
        } else if self.payload_len <= u16::MAX as u64 {
            dst[1] = mask_bit | 126;
            dst[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            4
        } else {
            dst[1] = mask_bit | 127;
            dst[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            10
        };
        if let Some(key) = self.mask {
            dst[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader { fin: true, rsv1: false, rsv2: false, rsv3: false, opcode: 2, mask, payload_len: len }
    }

    /// The encoded length of a header: the minimal length form (§5.2) and
    /// the key.
    fn encoded_len(h: &FrameHeader) -> usize {
        let len = match h.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        len + if h.mask.is_some() { 4 } else { 0 }
    }

    #[test]
    fn senders_use_minimal_length_form() {
        // RFC 6455 §5.2: 0-125 in 7 bits, 126-65535 in 16 bits, else 64 bits.
        let mut b = [0u8; MAX_HEADER_LEN];
        assert_eq!(header(125, None).encode(&mut b), 2);
        assert_eq!(b[1], 125);
        assert_eq!(header(126, None).encode(&mut b), 4);
        assert_eq!(b[1], 126);
        assert_eq!(header(65535, None).encode(&mut b), 4);
        assert_eq!(header(65536, None).encode(&mut b), 10);
        assert_eq!(b[1], 127);
        assert_eq!(header(65536, Some([1, 2, 3, 4])).encode(&mut b), 14);
    }

    #[test]
    fn length_with_msb_set_is_refused() {
        // RFC 6455 §5.2: "the most significant bit MUST be 0".
        let buf = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&buf), Err(HeaderError::LengthMsbSet));
    }

    #[test]
    fn incomplete_header_asks_for_more() {
        let mut b = [0u8; MAX_HEADER_LEN];
        let n = header(70000, Some([9, 9, 9, 9])).encode(&mut b);
        for cut in 0..n {
            assert_eq!(FrameHeader::parse(&b[..cut]), Ok(None), "cut {cut}");
        }
        assert!(FrameHeader::parse(&b[..n]).unwrap().is_some());
    }

    #[test]
    fn reserved_opcodes_are_not_opcodes() {
        for v in 0u8..16 {
            let known = matches!(v, 0 | 1 | 2 | 8 | 9 | 10);
            assert_eq!(OpCode::from_u8(v).is_some(), known);
            if let Some(op) = OpCode::from_u8(v) {
                assert_eq!(op.as_u8(), v);
                assert_eq!(op.is_control(), v >= 8);
            }
        }
    }

    proptest! {
        #[test]
        fn header_round_trips(fin: bool, rsv1: bool, rsv2: bool, rsv3: bool, opcode in 0u8..16,
                              mask: Option<[u8; 4]>, len in prop_oneof![0u64..300, 60000u64..70000, 0u64..(1u64 << 63)]) {
            let h = FrameHeader { fin, rsv1, rsv2, rsv3, opcode, mask, payload_len: len };
            let mut b = [0u8; MAX_HEADER_LEN];
            let n = h.encode(&mut b);
            prop_assert_eq!(n, encoded_len(&h));
            prop_assert_eq!(FrameHeader::parse(&b[..n]), Ok(Some((h, n))));
        }
    }
}
