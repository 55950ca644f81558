//! What the `hub_decode` fuzz target (fuzz/fuzz_targets/hub_decode.rs)
//! found, kept as tests.

use wsx_hub::protocol::{decode_text, encode, Packet, Wire};

/// Decode a publish whose `data` is `number`, check the number against
/// Rust's (correctly rounded) parser, and check that the hub's encoding of
/// it decodes to the same packet.
fn relay(number: &str) {
    let exact: f64 = number.parse().unwrap();
    let text = format!(r#"{{"t":"publish","room":"r","event":"e","data":[{number}]}}"#);
    let Ok(Packet::Publish(p)) = decode_text(&text) else { panic!("{text} does not decode") };
    let got = p.data[0].as_f64().unwrap();
    assert_eq!(got.to_bits(), exact.to_bits(), "{number} decoded as {got:e}");
    let Wire::Text(out) = encode(&Packet::Publish(p.clone())) else { panic!("no attachments: text") };
    assert_eq!(decode_text(&out), Ok(Packet::Publish(p)), "through {out}");
}

/// `hub_decode`, seed `text-floats`: serde_json's default float parser is
/// best effort, so about one double in four came out of the hub one bit off
/// (a client's `1.0715660391465826e-75` reached the room as
/// `1.0715660391465825e-75`), and `decode(encode(p)) != p`. serde_json's
/// `float_roundtrip` feature reads every number exactly.
#[test]
fn numbers_are_relayed_bit_for_bit() {
    for n in [
        "1.0715660391465826e-75",
        "-1.603964615428183e+143",
        "-1.81996730402717e-179",
        "0.30000000000000004",
        "0.1",
        "5e-324",
        "2.2250738585072014e-308",
        "1.7976931348623157e308",
        "9007199254740993.0",
    ] {
        relay(n);
    }
    // Doubles of every magnitude, written as browsers write them (the
    // shortest form that reads back exactly).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = f64::from_bits(x);
        if f.is_finite() {
            relay(&format!("{f:e}"));
        }
    }
}

/// `hub_decode` (2026-11-27, after 270 s): a binary envelope whose JSON
/// header had an unknown field holding bytes that are not UTF-8
/// (`"da":{"\xeeame":"a"}`) decoded, because serde_json skips the strings
/// it ignores without checking them; the same header could never arrive
/// as a text message. Headers are UTF-8 JSON now, whatever they hold.
#[test]
fn envelope_headers_must_be_utf8() {
    use wsx_hub::protocol::{decode_binary, DecodeError};
    let header: &[u8] = b"{\"t\":\"event\",\"event\":\"e\",\"da\":{\"\xeeame\":\"a\"},\"attachments\":1}";
    let mut env = Vec::new();
    env.extend_from_slice(&(header.len() as u32).to_be_bytes());
    env.extend_from_slice(header);
    env.extend_from_slice(&1u32.to_be_bytes());
    env.push(7);
    let err = decode_binary(env.clone().into()).expect_err("a header that is not UTF-8 is refused");
    assert_eq!(err, DecodeError::Envelope("header is not UTF-8"));
    // The same envelope with the byte made valid decodes.
    let fixed: Vec<u8> = env.iter().map(|&b| if b == 0xee { b'n' } else { b }).collect();
    assert!(decode_binary(fixed.into()).is_ok());
}
