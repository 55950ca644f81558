//! Socket.IO v5 packets (`wsx_hub::socketio::packet`): one connection's
//! messages, text and binary interleaved, through one `Decoder`.
//!
//! Input: the first byte chooses the limits (bit 0: 3 attachments and 16
//! bytes per packet, small enough to cross; otherwise the defaults); the
//! rest is split at NUL bytes into messages (JSON text never holds a raw
//! NUL): a message that begins with byte 1 is a binary message of the
//! bytes after it, any other a text message (invalid UTF-8 replaced).
//!
//! Checked: no panic; `is_waiting` exactly after `Ok(None)` from a text
//! message and until the packet completes or an error; a decoded packet is
//! within the limits, has attachments only as an event or an ack, and
//! exactly the bytes of the binary messages that followed its text, with
//! its namespace beginning with `/` and holding no `,`; its placeholders
//! number its attachments; it encodes to text that decodes (attachments
//! fed back) to the same packet and encodes again to the same text, and
//! `to_frames` is `4` + that text and the attachments.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wsx::Message;
use wsx_hub::socketio::packet::{placeholders, DecodeLimits, Decoder, Packet, PacketType};

fn check(p: &Packet, limits: &DecodeLimits, binaries: &[Bytes]) {
    assert!(p.nsp.starts_with('/') && !p.nsp.contains(','), "{:?}", p.nsp);
    assert!(p.attachments.len() <= limits.max_attachments);
    assert!(p.attachments.iter().map(Bytes::len).sum::<usize>() <= limits.max_attachment_bytes);
    assert_eq!(p.attachments, binaries);
    if !p.attachments.is_empty() {
        assert!(matches!(p.kind, PacketType::Event | PacketType::Ack));
        assert!(p.data.as_ref().is_some_and(|d| placeholders(d) >= p.attachments.len()));
    }

    let text = p.encode_text();
    let frames = p.to_frames();
    assert_eq!(frames[0].as_text().and_then(|t| t.strip_prefix('4')), Some(text.as_str()));
    assert_eq!(frames.len(), 1 + p.attachments.len());
    for (f, a) in frames[1..].iter().zip(&p.attachments) {
        assert_eq!(f, &Message::Binary(a.clone()));
    }

    let mut d = Decoder::new(*limits);
    let mut back = d.decode_text(&text);
    for a in &p.attachments {
        assert_eq!(back, Ok(None), "{text}");
        back = d.decode_binary(a.clone());
    }
    let back = back.unwrap_or_else(|e| panic!("{p:?} encodes to {text:?}, which fails: {e}"));
    assert_eq!(back.as_ref(), Some(p), "through {text:?}");
    assert_eq!(back.map(|b| b.encode_text()), Some(text));
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let limits = if first & 1 == 1 {
        DecodeLimits { max_attachments: 3, max_attachment_bytes: 16 }
    } else {
        DecodeLimits::default()
    };
    let mut d = Decoder::new(limits);
    // The binary messages since the last text message.
    let mut binaries: Vec<Bytes> = Vec::new();
    for m in rest.split(|&b| b == 0) {
        let r = match m.split_first() {
            Some((1, bytes)) => {
                let was_waiting = d.is_waiting();
                let b = Bytes::copy_from_slice(bytes);
                binaries.push(b.clone());
                let r = d.decode_binary(b);
                if !was_waiting {
                    assert!(r.is_err());
                }
                r
            }
            _ => {
                binaries.clear();
                let text = String::from_utf8_lossy(m);
                let r = d.decode_text(&text);
                assert_eq!(d.is_waiting(), r == Ok(None));
                r
            }
        };
        match &r {
            Ok(Some(p)) => {
                assert!(!d.is_waiting());
                check(p, &limits, &binaries);
            }
            Ok(None) => assert!(d.is_waiting()),
            Err(e) => {
                assert!(!d.is_waiting());
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
