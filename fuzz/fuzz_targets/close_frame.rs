//! Random close frame payloads, compared with a plain reading of RFC 6455
//! §5.5.1 and §7.4.
//!
//! Checked: no panic; a payload is accepted exactly when it is empty, or a
//! sendable code (1000-1003, 1007-1014, 3000-4999) followed by UTF-8; an
//! accepted frame encodes back to the same bytes.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use wsx_proto::fuzzing::{encode_close, parse_close};
use wsx_proto::{CloseCode, ProtocolError};

fuzz_target!(|data: &[u8]| {
    let r = parse_close(Bytes::copy_from_slice(data));
    let expected_ok = match data {
        [] => true,
        [_] => false,
        [a, b, rest @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) && std::str::from_utf8(rest).is_ok()
        }
    };
    assert_eq!(r.is_ok(), expected_ok, "{data:?} -> {r:?}");
    match r {
        Ok(None) => assert!(data.is_empty()),
        Ok(Some(f)) => {
            assert!(f.code.is_sendable());
            assert_eq!(f.reason.as_bytes(), &data[2..]);
            let mut out = BytesMut::new();
            encode_close(&f, &mut out);
            assert_eq!(&out[..], data);
            let _ = f.to_string();
        }
        Err(ProtocolError::InvalidClosePayload) => assert_eq!(data.len(), 1),
        Err(ProtocolError::InvalidCloseCode(c)) => {
            assert_eq!(c, u16::from_be_bytes([data[0], data[1]]));
            assert!(!CloseCode::from(c).is_sendable());
        }
        Err(ProtocolError::InvalidCloseReason) => assert!(std::str::from_utf8(&data[2..]).is_err()),
        Err(e) => panic!("a close payload refused as {e:?}"),
    }
});
