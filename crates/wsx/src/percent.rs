//! Percent-decoding where a malformed escape is an error: URL user info
//! (proxy credentials) and request paths (static files). Query strings are
//! decoded as forms are, leniently (`RequestHead::query_param`).

/// Decode `%XX` escapes (RFC 3986 §2.1); `None` if a `%` is not followed
/// by two hex digits, or the result is not UTF-8.
pub(crate) fn decode(s: &str) -> Option<String> {
    let well_formed = s.split('%').skip(1).all(|t| t.len() >= 2 && t.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn escapes_must_be_well_formed_and_utf8() {
        assert_eq!(decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(decode("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(decode("plain+text").as_deref(), Some("plain+text"));
        for bad in ["%", "%4", "%zz", "a%g0", "%ff"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
