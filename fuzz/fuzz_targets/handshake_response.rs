//! Random bytes as the server's answer to a client's opening handshake.
//!
//! The input's `@ACCEPT@` is replaced by the right `Sec-WebSocket-Accept`
//! for the request's (random) key, so that the fuzzer gets past that check
//! and into the subprotocol and extension checks.
//!
//! Checked: no panic; a head is never longer than the limit nor than the
//! input; a response `check_response` accepts has status 101, the right
//! accept key, a subprotocol that was offered and only offered extensions;
//! `client_accept_response` on its extensions either refuses them or gives
//! parameters within what was offered.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsx_proto::deflate::{client_accept_response, DeflateConfig};
use wsx_proto::fuzzing::derive_accept_key;
use wsx_proto::handshake::{ClientHandshake, HeadReader, Negotiated};

const MARK: &[u8] = b"@ACCEPT@";

fn replace_mark(data: &[u8], accept: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(MARK) {
            out.extend_from_slice(accept);
            i += MARK.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else { return };
    let offers = [
        DeflateConfig::default(),
        DeflateConfig::server_default().with_server_max_window_bits(10).with_client_max_window_bits(12),
    ];
    let deflate = &offers[(sel & 1) as usize];
    let max = if sel & 2 == 0 { 16 << 10 } else { 256 };
    let req = http::Request::get("ws://example.com/chat")
        .header("Sec-WebSocket-Protocol", "chat, superchat")
        .header("Sec-WebSocket-Extensions", deflate.client_offer())
        .body(())
        .unwrap();
    let (request_bytes, client) = ClientHandshake::new(req).expect("a valid request");
    assert!(request_bytes.ends_with(b"\r\n\r\n"));
    // The accept key for this run's key.
    let (sent, _) = HeadReader::new(1 << 16).request(&request_bytes).unwrap().unwrap();
    let key = sent.headers().get("sec-websocket-key").unwrap().as_bytes().to_vec();
    let accept = derive_accept_key(&key);
    let data = replace_mark(data, accept.as_bytes());

    let (resp, head_len) = match HeadReader::new(max).response(&data) {
        Ok(Some(r)) => r,
        Ok(None) => {
            assert!(data.len() < max);
            return;
        }
        Err(_) => return,
    };
    assert!(head_len <= data.len() && head_len <= max);
    let Ok(Negotiated { protocol, extensions }) = client.check_response(&resp) else { return };
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers().get("sec-websocket-accept").unwrap().as_bytes(), accept.as_bytes());
    if let Some(p) = &protocol {
        assert!(p == "chat" || p == "superchat", "{p}");
    }
    for e in &extensions {
        assert!(e.name == "permessage-deflate", "{e}");
    }
    if let Ok(Some(p)) = client_accept_response(deflate, &extensions) {
        assert!((8..=15).contains(&p.server_max_window_bits));
        assert!((8..=15).contains(&p.client_max_window_bits));
        assert!(p.server_max_window_bits <= deflate.server_max_window_bits());
        assert!(p.client_max_window_bits <= deflate.client_max_window_bits());
        if deflate.server_no_context_takeover() {
            assert!(p.server_no_context_takeover);
        }
        if deflate.client_no_context_takeover() {
            assert!(p.client_no_context_takeover);
        }
    }
});
