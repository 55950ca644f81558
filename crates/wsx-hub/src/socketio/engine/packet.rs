//! Engine.IO v4 packets: parsing what the client sends, encoding polling
//! payloads, and the JSON of handshakes and errors.

use super::Incoming;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

/// Base64 as clients write it: with or without padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The polling payload separator.
pub(super) const SEPARATOR: u8 = 0x1e;

/// A packet from the client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Packet {
    Message(Incoming),
    /// `2` with its payload (`probe`).
    Ping(Bytes),
    Pong,
    Close,
    Upgrade,
    Noop,
}

/// Parse one text packet (a WebSocket text frame, or one record of a
/// polling payload); `None` when it is not Engine.IO.
pub(super) fn parse_text(packet: &wsx::Utf8Bytes) -> Option<Packet> {
    let s = packet.as_str();
    let kind = *s.as_bytes().first()?;
    let payload = || packet.as_bytes().slice(1..);
    Some(match kind {
        b'4' => Packet::Message(Incoming::Text(wsx::Utf8Bytes::try_from_bytes(payload()).ok()?)),
        b'b' => Packet::Message(Incoming::Binary(Bytes::from(LENIENT.decode(&s[1..]).ok()?))),
        b'2' => Packet::Ping(payload()),
        b'3' => Packet::Pong,
        b'1' if s.len() == 1 => Packet::Close,
        b'5' if s.len() == 1 => Packet::Upgrade,
        b'6' if s.len() == 1 => Packet::Noop,
        _ => return None,
    })
}

/// Split a polling POST body into packets; `None` if any is invalid.
pub(super) fn parse_payload(body: Bytes) -> Option<Vec<Packet>> {
    let body = wsx::Utf8Bytes::try_from_bytes(body).ok()?;
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    for end in memchr_all(bytes).chain(std::iter::once(bytes.len())) {
        // Slices at the separator (ASCII): still UTF-8.
        let record = wsx::Utf8Bytes::try_from_bytes(bytes.slice(start..end)).ok()?;
        match parse_text(&record)? {
            // A client on polling does not ping (v4) nor upgrade here.
            Packet::Ping(_) | Packet::Upgrade => return None,
            p => out.push(p),
        }
        start = end + 1;
    }
    Some(out)
}

fn memchr_all(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes.iter().enumerate().filter(|(_, &b)| b == SEPARATOR).map(|(i, _)| i)
}

/// The length of `msg` in a polling payload.
pub(super) fn encoded_len(msg: &wsx::Message) -> usize {
    match msg {
        wsx::Message::Binary(b) => 1 + b.len().div_ceil(3) * 4,
        m => m.len(),
    }
}

/// Append `msg` to a polling payload (with the separator if it is not the
/// first).
pub(super) fn encode_into(out: &mut BytesMut, msg: &wsx::Message) {
    if !out.is_empty() {
        out.put_u8(SEPARATOR);
    }
    match msg {
        wsx::Message::Binary(b) => {
            out.put_u8(b'b');
            out.extend_from_slice(STANDARD.encode(b).as_bytes());
        }
        m => out.extend_from_slice(m.as_bytes()),
    }
}

/// The handshake packet.
pub(super) fn open_packet(sid: &str, upgrades: bool, config: &super::EngineConfig) -> String {
    format!(
        r#"0{{"sid":"{sid}","upgrades":[{}],"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
        if upgrades { r#""websocket""# } else { "" },
        config.ping_interval.as_millis(),
        config.ping_timeout.as_millis(),
        config.max_payload,
    )
}

/// Engine.IO's request errors (the `code` of its JSON error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorCode {
    TransportUnknown = 0,
    SessionIdUnknown = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    pub(super) fn message(self) -> &'static str {
        match self {
            ErrorCode::TransportUnknown => "Transport unknown",
            ErrorCode::SessionIdUnknown => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    pub(super) fn json(self) -> String {
        format!(r#"{{"code":{},"message":"{}"}}"#, self as u8, self.message())
    }
}

/// A new session id: 120 random bits, URL-safe base64 (20 characters).
pub(super) fn new_sid() -> String {
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn payloads_split_into_packets() {
        let p = parse_payload(Bytes::from_static(b"4hello\x1ebAQIDBA==\x1e3\x1e1")).unwrap();
        assert_eq!(
            p,
            vec![
                Packet::Message(Incoming::Text("hello".into())),
                Packet::Message(Incoming::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                Packet::Pong,
                Packet::Close,
            ]
        );
        for bad in [&b"abc"[..], b"", b"4a\x1e", b"b!!", b"2", b"\xff", b"7"] {
            assert!(parse_payload(Bytes::copy_from_slice(bad)).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn binary_is_base64_in_payloads() {
        let mut out = BytesMut::new();
        let msgs = [wsx::Message::text("4hello"), wsx::Message::binary(vec![1u8, 2, 3, 4])];
        for m in &msgs {
            encode_into(&mut out, m);
        }
        assert_eq!(&out[..], b"4hello\x1ebAQIDBA==");
        assert_eq!(msgs.iter().map(encoded_len).sum::<usize>() + 1, out.len());
    }

    #[test]
    fn sids_are_url_safe_and_unique() {
        let (a, b) = (new_sid(), new_sid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    proptest! {
        #[test]
        fn any_body_parses_or_is_refused_without_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse_payload(Bytes::from(body));
        }

        #[test]
        fn encoded_messages_parse_back(msgs in proptest::collection::vec(
            proptest::prop_oneof![
                "[^\x1e]{0,12}".prop_map(|t| wsx::Message::text(format!("4{t}"))),
                proptest::collection::vec(proptest::num::u8::ANY, 0..12).prop_map(wsx::Message::binary),
            ],
            1..6,
        )) {
            let mut out = BytesMut::new();
            for m in &msgs {
                encode_into(&mut out, m);
            }
            let expected: Vec<Packet> = msgs
                .iter()
                .map(|m| match m {
                    wsx::Message::Text(t) => Packet::Message(Incoming::Text(t.as_str()[1..].into())),
                    m => Packet::Message(Incoming::Binary(Bytes::copy_from_slice(m.as_bytes()))),
                })
                .collect();
            prop_assert_eq!(parse_payload(out.freeze()), Some(expected));
        }
    }
}
