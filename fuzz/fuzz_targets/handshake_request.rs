//! Random bytes as an opening handshake request, as a server reads it.
//!
//! Checked: no panic; a head is never longer than the limit nor than the
//! input; `UpgradeRequest::from_request` and every accessor work on what
//! a `HeadReader` returns; an accepted request gets a 101 whose
//! `Sec-WebSocket-Accept` is derived from the key, with the negotiated
//! subprotocol and extensions, and that a `HeadReader` reads back the
//! same; a refused one gets a response with the error's status that
//! reads back too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsx_proto::deflate::{server_negotiate, DeflateConfig};
use wsx_proto::fuzzing::{derive_accept_key, is_token, parse_extensions};
use wsx_proto::handshake::{write_response, Accept, HeadReader, UpgradeRequest, MAX_HEADERS};

/// Serialize a response and read it back: the same status and headers.
fn round_trip<B>(resp: &http::Response<B>, body: &[u8]) {
    let mut bytes = Vec::new();
    write_response(resp, body, &mut bytes);
    let (back, n) = HeadReader::new(bytes.len() + 1).response(&bytes).expect("our response parses").expect("complete");
    assert_eq!(n, bytes.len() - body.len());
    assert_eq!(back.status(), resp.status());
    for (k, v) in resp.headers() {
        assert!(back.headers().get_all(k).iter().any(|w| w == v), "{k}: {v:?} lost");
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit: tiny ones make the 431 path easy to reach.
    let (max, data) = match data.split_first() {
        Some((&b, rest)) if b < 16 => ((b as usize + 1) * 64, rest),
        Some((_, rest)) => (16 << 10, rest),
        None => return,
    };
    let parsed = match HeadReader::new(max).request(data) {
        Ok(Some(p)) => p,
        Ok(None) => {
            assert!(data.len() < max, "incomplete at the limit must be an error");
            return;
        }
        Err(e) => {
            round_trip(&e.to_response(), format!("{e}\n").as_bytes());
            return;
        }
    };
    let (request, head_len) = parsed;
    assert!(head_len <= data.len() && head_len <= max);
    assert!(&data[head_len - 4..head_len] == b"\r\n\r\n");
    assert!(request.headers().len() <= MAX_HEADERS);
    let upgrade = match UpgradeRequest::from_request(request) {
        Ok(u) => u,
        Err(e) => {
            round_trip(&e.to_response(), b"");
            return;
        }
    };
    // Every accessor, on whatever the request holds.
    let _ = (upgrade.path(), upgrade.query(), upgrade.query_param("a"), upgrade.origin(), upgrade.cookie("sid"));
    let _ = (upgrade.headers().len(), upgrade.request().uri().to_string());
    assert!(matches!(upgrade.version(), 13 | 8 | 7));
    assert!(!upgrade.key().is_empty());
    for p in upgrade.protocols() {
        assert!(is_token(p));
    }

    // Accept with the client's first subprotocol and the deflate offer.
    let mut accept = Accept::new().header("x-fuzz", "1");
    if let Some(p) = upgrade.protocols().first() {
        accept = accept.protocol(p.clone());
    }
    for cfg in [DeflateConfig::server_default(), DeflateConfig::default().with_client_max_window_bits(9)] {
        let negotiated = server_negotiate(&cfg, upgrade.extensions());
        let ext = negotiated.as_ref().map(|(_, h)| h.as_str());
        if let Some(h) = ext {
            // What we answer is itself a valid extension header.
            assert_eq!(parse_extensions(h).expect("our header parses").len(), 1);
        }
        let resp = upgrade.accept(&accept, ext).expect("accepting an offered protocol");
        assert_eq!(resp.status(), 101);
        let key = resp.headers().get("sec-websocket-accept").expect("accept key");
        assert_eq!(key.as_bytes(), derive_accept_key(upgrade.key().as_bytes()).as_bytes());
        round_trip(&resp, b"");
    }
    // A subprotocol the client did not offer is refused.
    let bogus = Accept::new().protocol("not-offered-by-anyone\u{7f}");
    assert!(upgrade.accept(&bogus, None).is_err());
});
