//! Random bytes to the wsx-hub wire decoder (`wsx_hub::protocol`, see
//! `crates/wsx-hub/PROTOCOL.md`) and to the codec of messages between
//! nodes (`wsx_hub::broker`).
//!
//! Each input is read four ways:
//! 1. as a text message (when it is UTF-8): `decode_text`, `salvage_id`;
//! 2. as a binary message as it is: `decode_binary` (the envelope, length
//!    prefixes and all);
//! 3. split at NUL bytes into a JSON header and attachments, wrapped in an
//!    envelope with the right lengths, so that the fuzzer reaches the
//!    header and the attachment count without solving length prefixes
//!    (JSON text never holds a raw NUL);
//! 4. as a message from another node: `broker::decode_message`.
//!
//! Checked: no panic; `decode_message` agrees with `decode_text` and
//! `decode_binary`; a decoded packet is within the protocol's bounds
//! (names 1 to 200 bytes, ids at most 2^53 - 1, attachments only on events
//! and publishes, 1 to 64 of them from a binary message and none from a
//! text one, their bytes exactly those of the input); it encodes to text
//! exactly when it has no attachments, starting with `{"t":"<type>"` (the
//! hub's presence check relies on that), decodes back to the same packet
//! and encodes again to the same bytes; the encoding is at most a constant
//! factor larger than the input (numbers such as `1e15` come back longer).
//! A header that decodes inside an envelope is refused as a text message
//! (it counts attachments), and the other way round. A broker message that
//! decodes encodes and decodes back to itself.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wsx_hub::broker;
use wsx_hub::protocol::{
    decode_binary, decode_message, decode_text, encode, salvage_id, DecodeError, Packet, Wire, MAX_ATTACHMENTS, MAX_ID,
    MAX_NAME_LEN, MAX_PAGE,
};

/// The type name a packet has on the wire.
fn type_name(p: &Packet) -> &'static str {
    match p {
        Packet::Welcome(_) => "welcome",
        Packet::Event(_) => "event",
        Packet::Publish(_) => "publish",
        Packet::Ack(_) => "ack",
        Packet::Join(_) => "join",
        Packet::Leave(_) => "leave",
        Packet::Members(_) => "members",
        Packet::Presence(_) => "presence",
        Packet::Error(_) => "error",
    }
}

fn check_name(n: &str) {
    assert!(!n.is_empty() && n.len() <= MAX_NAME_LEN, "name of {} bytes", n.len());
}

fn attachments(p: &Packet) -> &[Bytes] {
    match p {
        Packet::Event(e) => &e.attachments,
        Packet::Publish(pb) => &pb.attachments,
        _ => &[],
    }
}

/// The protocol's bounds on a decoded packet.
fn check_bounds(p: &Packet) {
    assert!(p.id().is_none_or(|id| id <= MAX_ID), "id {:?}", p.id());
    match p {
        Packet::Event(e) => {
            check_name(&e.event);
            if let Some(r) = &e.room {
                check_name(r);
            }
        }
        Packet::Publish(pb) => {
            check_name(&pb.event);
            check_name(&pb.room);
        }
        Packet::Join(r) | Packet::Leave(r) => check_name(&r.room),
        Packet::Members(m) => {
            check_name(&m.room);
            assert!(m.limit.is_none_or(|n| (1..=MAX_PAGE).contains(&n)), "limit {:?}", m.limit);
        }
        Packet::Presence(pr) => check_name(&pr.room),
        Packet::Welcome(_) | Packet::Ack(_) | Packet::Error(_) => {}
    }
    assert!(attachments(p).len() <= MAX_ATTACHMENTS);
}

/// The JSON of an encoded packet, and its attachments.
fn split_wire(w: &Wire) -> (Vec<u8>, Vec<Bytes>) {
    match w {
        Wire::Text(s) => (s.as_bytes().to_vec(), Vec::new()),
        Wire::Binary(b) => {
            let h = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let json = b[4..4 + h].to_vec();
            let mut at = 4 + h;
            let mut att = Vec::new();
            while at < b.len() {
                let n = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
                att.push(b.slice(at + 4..at + 4 + n));
                at += 4 + n;
            }
            assert_eq!(at, b.len());
            (json, att)
        }
    }
}

fn decode_wire(w: &Wire) -> Result<Packet, DecodeError> {
    match w {
        Wire::Text(s) => decode_text(s),
        Wire::Binary(b) => decode_binary(b.clone()),
    }
}

/// A packet decoded from `json_len` bytes of JSON: its bounds, and the
/// encode / decode round trip.
fn check_packet(p: &Packet, json_len: usize) {
    check_bounds(p);
    let wire = encode(p);
    assert_eq!(matches!(wire, Wire::Text(_)), attachments(p).is_empty(), "{p:?} -> {wire:?}");
    let (json, att) = split_wire(&wire);
    let prefix = format!(r#"{{"t":"{}""#, type_name(p));
    assert!(json.starts_with(prefix.as_bytes()), "{:?}", String::from_utf8_lossy(&json));
    assert_eq!(att, attachments(p));
    // Defaults written out (`"data":null`, `"message":""`) and numbers
    // in full (`1e15` -> `1000000000000000.0`) make the encoding longer.
    assert!(json.len() <= 5 * json_len + 64, "{json_len} bytes of JSON encode to {}", json.len());
    let back = decode_wire(&wire).unwrap_or_else(|e| panic!("{p:?} encodes to {wire:?}, which fails: {e}"));
    assert_eq!(&back, p, "through {wire:?}");
    assert_eq!(encode(&back), wire, "encoding is not stable");
    // Through the WebSocket message too.
    let again = decode_message(&wire.to_message()).expect("a data message");
    assert_eq!(again.as_ref(), Ok(p));
}

/// Build an envelope from a JSON header and attachments.
fn envelope(header: &[u8], parts: &[&[u8]]) -> Bytes {
    let mut out = Vec::with_capacity(4 + header.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    Bytes::from(out)
}

fuzz_target!(|data: &[u8]| {
    // 1. A text message.
    if let Ok(text) = std::str::from_utf8(data) {
        let r = decode_text(text);
        assert_eq!(decode_message(&wsx::Message::text(text)).as_ref(), Some(&r));
        if let Ok(p) = &r {
            assert!(attachments(p).is_empty());
            check_packet(p, text.len());
        }
        assert!(salvage_id(text).is_none_or(|id| id <= MAX_ID));
    }

    // 2. A binary message as it is.
    let bytes = Bytes::copy_from_slice(data);
    let r = decode_binary(bytes.clone());
    assert_eq!(decode_message(&wsx::Message::Binary(bytes.clone())).as_ref(), Some(&r));
    if let Ok(p) = &r {
        let att = attachments(p);
        assert!((1..=MAX_ATTACHMENTS).contains(&att.len()), "{} attachments", att.len());
        let total: usize = att.iter().map(|a| 4 + a.len()).sum();
        let header = data.len() - 4 - total;
        assert_eq!(u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize, header);
        // Attachments are the input's bytes, in order, without gaps.
        let mut at = 4 + header;
        for a in att {
            assert_eq!(&data[at + 4..at + 4 + a.len()], &a[..]);
            at += 4 + a.len();
        }
        check_packet(p, header);
    }

    // 3. An envelope made from the input: header, then NUL-separated
    //    attachments.
    let mut pieces = data.split(|&b| b == 0);
    let header = pieces.next().unwrap_or_default();
    let parts: Vec<&[u8]> = if data.contains(&0) { pieces.collect() } else { Vec::new() };
    if parts.len() <= 2 * MAX_ATTACHMENTS {
        let as_text = std::str::from_utf8(header).ok().map(decode_text);
        if let Ok(p) = decode_binary(envelope(header, &parts)) {
            let att = attachments(&p);
            assert_eq!(att.len(), parts.len());
            assert!(att.iter().zip(&parts).all(|(a, b)| &a[..] == *b));
            check_packet(&p, header.len());
            // The same header as a text message counts attachments (JSON
            // that parsed is UTF-8).
            assert_eq!(as_text, Some(Err(DecodeError::AttachmentsInText)));
        } else if let Some(Ok(p)) = as_text {
            // The header alone as a text message (it has no attachment
            // count, which is why the envelope around it was refused).
            check_packet(&p, header.len());
        }
    }

    // 4. A message from another node.
    if let Ok(m) = broker::decode_message(data) {
        let encoded = broker::encode_message(&m);
        let back = broker::decode_message(&encoded).unwrap_or_else(|e| panic!("{m:?} -> {e}"));
        assert_eq!(back, m);
        assert_eq!(broker::encode_message(&back), encoded);
    }
});
