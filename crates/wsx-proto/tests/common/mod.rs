//! What several integration tests share.

use wsx_proto::deflate::DeflateParams;

/// permessage-deflate as negotiated in these tests: full windows both ways,
/// every message compressed (threshold 0), level 6, with or without context
/// takeover in both directions.
pub fn deflate_params(no_context_takeover: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        threshold: 0,
        level: 6,
    }
}
