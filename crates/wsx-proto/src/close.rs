//! Close codes and close frames (RFC 6455 §5.5.1, §7.4). Public as
//! `wsx_proto::close` only for `wsx`'s close handle; the items are
//! documented at the crate root.

use crate::utf8::{self, Utf8Bytes};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// A close status code (RFC 6455 §7.4).
///
/// Named codes are those the IANA registry defines; any other value is kept
/// in [`CloseCode::Other`]. Whether a code may be *sent* in a close frame is
/// [`CloseCode::is_sendable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the purpose for which the connection was established is fulfilled.
    Normal,
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    GoingAway,
    /// 1002: protocol error.
    ProtocolError,
    /// 1003: a data type the endpoint cannot accept.
    UnsupportedData,
    /// 1005: no status code was present (never sent on the wire).
    NoStatus,
    /// 1006: the connection closed without a close frame (never sent).
    Abnormal,
    /// 1007: data inconsistent with the message type (e.g. invalid UTF-8).
    InvalidPayload,
    /// 1008: a message violates the endpoint's policy.
    PolicyViolation,
    /// 1009: a message too big to process.
    MessageTooBig,
    /// 1010: the client expected the server to negotiate an extension.
    MandatoryExtension,
    /// 1011: the server met an unexpected condition.
    InternalError,
    /// 1012: the service is restarting.
    ServiceRestart,
    /// 1013: try again later (e.g. overloaded).
    TryAgainLater,
    /// 1014: the gateway got an invalid response from upstream.
    BadGateway,
    /// 1015: the TLS handshake failed (never sent).
    TlsHandshake,
    /// Any other code; 3000–3999 are registered by libraries and frameworks,
    /// 4000–4999 are for private use by applications.
    Other(u16),
}

impl CloseCode {
    /// Whether this code may appear in a close frame on the wire
    /// (RFC 6455 §7.4.1, §7.4.2 and the IANA registry): 1000–1003,
    /// 1007–1014 and 3000–4999. 1004 is reserved, 1005, 1006 and 1015 are
    /// for reporting only, 0–999 are unused and 1016–2999 are reserved for
    /// future revisions of the protocol.
    pub fn is_sendable(self) -> bool {
        matches!(u16::from(self), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether the code is one an application may choose (1000 or
    /// 3000–4999), as the WHATWG `close()` method requires.
    pub fn is_application_code(self) -> bool {
        matches!(u16::from(self), 1000 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        use CloseCode::*;
        match code {
            1000 => Normal,
            1001 => GoingAway,
            1002 => ProtocolError,
            1003 => UnsupportedData,
            1005 => NoStatus,
            1006 => Abnormal,
            1007 => InvalidPayload,
            1008 => PolicyViolation,
            1009 => MessageTooBig,
            1010 => MandatoryExtension,
            1011 => InternalError,
            1012 => ServiceRestart,
            1013 => TryAgainLater,
            1014 => BadGateway,
            1015 => TlsHandshake,
            other => Other(other),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        use CloseCode::*;
        match code {
            Normal => 1000,
            GoingAway => 1001,
            ProtocolError => 1002,
            UnsupportedData => 1003,
            NoStatus => 1005,
            Abnormal => 1006,
            InvalidPayload => 1007,
            PolicyViolation => 1008,
            MessageTooBig => 1009,
            MandatoryExtension => 1010,
            InternalError => 1011,
            ServiceRestart => 1012,
            TryAgainLater => 1013,
            BadGateway => 1014,
            TlsHandshake => 1015,
            Other(c) => c,
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", u16::from(*self))
    }
}

/// The body of a close frame: a status code and a UTF-8 reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8 so the frame fits in 125.
    pub reason: Utf8Bytes,
}

/// The longest reason that fits in a close frame (125 - 2 bytes of code).
pub const MAX_REASON_LEN: usize = 123;

/// Why a close frame payload was refused (the reader reports it as a
/// [`crate::ProtocolError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClosePayloadError {
    /// A payload of exactly one byte cannot hold a status code (§5.5.1).
    OneByte,
    /// The status code may not be sent on the wire (§7.4).
    InvalidCode(u16),
    /// The reason is not UTF-8 (§5.5.1).
    InvalidUtf8,
}

impl CloseFrame {
    /// A close frame with the given code and reason.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<Utf8Bytes>) -> Self {
        Self { code: code.into(), reason: reason.into() }
    }

    /// Parse a received close payload (RFC 6455 §5.5.1): empty (no status),
    /// or a 2-byte big-endian code followed by a UTF-8 reason.
    pub(crate) fn parse(payload: Bytes) -> Result<Option<CloseFrame>, ClosePayloadError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ClosePayloadError::OneByte),
            _ => {
                let raw = u16::from_be_bytes([payload[0], payload[1]]);
                let code = CloseCode::from(raw);
                if !code.is_sendable() {
                    return Err(ClosePayloadError::InvalidCode(raw));
                }
                let reason = payload.slice(2..);
                utf8::validate(&reason).map_err(|_| ClosePayloadError::InvalidUtf8)?;
                Ok(Some(CloseFrame { code, reason: Utf8Bytes::from_bytes_unchecked(reason) }))
            }
        }
    }

    /// Encode as a close payload.
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.put_u16(self.code.into());
        dst.extend_from_slice(self.reason.as_bytes());
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {:?}", self.code, self.reason.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_accepted_and_rejected_on_the_wire() {
        // RFC 6455 §7.4.1/§7.4.2: 1000-1003, 1007-1014 (IANA) and 3000-4999
        // may be sent; 0-999, 1004-1006, 1015 and 1016-2999 may not.
        for code in 0..=u16::MAX {
            let ok = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode::from(code).is_sendable(), ok, "code {code}");
        }
    }

    #[test]
    fn close_code_round_trips_through_u16() {
        for code in 0..=u16::MAX {
            assert_eq!(u16::from(CloseCode::from(code)), code);
        }
    }

    #[test]
    fn close_payload_one_byte_is_invalid() {
        // RFC 6455 §5.5.1: if there is a body, its first two bytes are a code.
        assert_eq!(CloseFrame::parse(Bytes::from_static(&[3])), Err(ClosePayloadError::OneByte));
    }

    #[test]
    fn close_payload_empty_means_no_status() {
        assert_eq!(CloseFrame::parse(Bytes::new()), Ok(None));
    }

    #[test]
    fn close_reason_must_be_utf8() {
        assert_eq!(CloseFrame::parse(Bytes::from_static(&[0x03, 0xe8, 0xff])), Err(ClosePayloadError::InvalidUtf8));
        let f = CloseFrame::parse(Bytes::from_static(b"\x03\xe8bye")).unwrap().unwrap();
        assert_eq!(f.code, CloseCode::Normal);
        assert_eq!(f.reason, "bye");
    }

    #[test]
    fn close_invalid_code_on_the_wire_is_refused() {
        assert_eq!(CloseFrame::parse(Bytes::from_static(&[0x03, 0xed])), Err(ClosePayloadError::InvalidCode(1005)));
    }
}
