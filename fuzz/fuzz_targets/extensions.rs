//! Random `Sec-WebSocket-Extensions` values through the grammar and both
//! sides of the permessage-deflate negotiation.
//!
//! Checked: no panic; a parsed list formats and parses back to itself;
//! whatever the server answers to an offer is a valid header that the
//! client accepts; the negotiation is consistent end to end: a client
//! configured by the fuzzer offers, the server answers, and both derive
//! the same parameters.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wsx_proto::deflate::{client_accept_response, server_negotiate, DeflateConfig, DeflateParams};
use wsx_proto::fuzzing::{format_extensions, parse_extension_headers, parse_extensions};

#[derive(Arbitrary, Debug)]
struct Side {
    server_nct: bool,
    client_nct: bool,
    server_bits: u8,
    client_bits: u8,
}

impl Side {
    fn config(&self) -> DeflateConfig {
        DeflateConfig::default()
            .with_server_no_context_takeover(self.server_nct)
            .with_client_no_context_takeover(self.client_nct)
            .with_server_max_window_bits(8 + self.server_bits % 8)
            .with_client_max_window_bits(8 + self.client_bits % 8)
    }
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    client: Side,
    server: Side,
    header: &'a [u8],
}

fn same(a: &DeflateParams, b: &DeflateParams) -> bool {
    a.server_no_context_takeover == b.server_no_context_takeover
        && a.client_no_context_takeover == b.client_no_context_takeover
        && a.server_max_window_bits == b.server_max_window_bits
        && a.client_max_window_bits == b.client_max_window_bits
}

fuzz_target!(|input: Input<'_>| {
    let client = input.client.config();
    let server = input.server.config();

    // A configured client and a configured server agree.
    let offer = parse_extensions(&client.client_offer()).expect("our offer parses");
    let (sp, answer) = server_negotiate(&server, &offer).expect("our offer is acceptable");
    let answer = parse_extensions(&answer).expect("our answer parses");
    let cp = client_accept_response(&client, &answer)
        .unwrap_or_else(|e| panic!("client refused {answer:?} to {offer:?}: {e}"))
        .expect("accepted");
    assert!(same(&sp, &cp), "server {sp:?} client {cp:?}");

    // Random header values.
    let Ok(exts) = parse_extension_headers([input.header]) else { return };
    let formatted = format_extensions(&exts);
    assert_eq!(parse_extensions(&formatted).expect("formatted list parses"), exts, "{formatted}");
    // The server answers any offer with something its client side accepts.
    if let Some((p, h)) = server_negotiate(&server, &exts) {
        assert!((8..=15).contains(&p.server_max_window_bits) && (8..=15).contains(&p.client_max_window_bits));
        let parsed = parse_extensions(&h).expect("our answer parses");
        assert_eq!(parsed.len(), 1);
    }
    // The client side on a random answer: refuses it or stays within its offer.
    if let Ok(Some(p)) = client_accept_response(&client, &exts) {
        assert!(p.server_max_window_bits <= client.server_max_window_bits());
        assert!(p.client_max_window_bits <= client.client_max_window_bits());
        assert!(!client.server_no_context_takeover() || p.server_no_context_takeover);
    }
});
