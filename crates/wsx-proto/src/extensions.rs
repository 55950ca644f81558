//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1, with the
//! token and quoted-string rules of RFC 7230 §3.2.6).
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A quoted value must be a token once unquoted (§9.1).
//!
//! Internal: [`Extension`], [`ExtensionParam`] and [`ExtensionParseError`]
//! are public as `wsx_proto::handshake::*` (the handshake hands them out);
//! the grammar's functions are reachable only through the hidden `fuzzing`
//! module.

use std::fmt;

/// One extension offered or accepted, with its parameters in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Its parameters.
    pub params: Vec<ExtensionParam>,
}

/// An extension parameter: `name` or `name=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionParam {
    /// The parameter token.
    pub name: String,
    /// The value, unquoted.
    pub value: Option<String>,
}

/// The header does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Sec-WebSocket-Extensions header at byte {position}: {what}")]
pub struct ExtensionParseError {
    /// Byte offset where parsing failed.
    pub position: usize,
    /// What was expected.
    pub what: &'static str,
}

/// Whether `b` is a `tchar` (RFC 7230 §3.2.6).
#[inline]
fn is_tchar(b: u8) -> bool {
    matches!(b, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
        || b.is_ascii_alphanumeric()
}

/// Whether `s` is a non-empty token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> ExtensionParseError {
        ExtensionParseError { position: self.pos, what }
    }
    fn ows(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn token(&mut self) -> Result<String, ExtensionParseError> {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if is_tchar(b)) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a token"));
        }
        // tchars are ASCII.
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }
    fn quoted(&mut self) -> Result<String, ExtensionParseError> {
        // Opening quote already seen.
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated quoted-string")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80 => {
                            out.push(b);
                            self.pos += 1;
                        }
                        _ => return Err(self.err("invalid quoted-pair")),
                    }
                }
                Some(b)
                    if b == b'\t'
                        || b == b' '
                        || b == 0x21
                        || (0x23..=0x5b).contains(&b)
                        || (0x5d..=0x7e).contains(&b)
                        || b >= 0x80 =>
                {
                    out.push(b);
                    self.pos += 1;
                }
                Some(_) => return Err(self.err("invalid character in quoted-string")),
            }
        }
        let v = String::from_utf8_lossy(&out).into_owned();
        if !is_token(&v) {
            return Err(self.err("quoted value is not a token (RFC 6455 §9.1)"));
        }
        Ok(v)
    }
}

/// Parse one `Sec-WebSocket-Extensions` header value. Empty list elements
/// (`a, , b`) are allowed, as RFC 7230 §7 asks of recipients.
pub fn parse_extensions(value: &str) -> Result<Vec<Extension>, ExtensionParseError> {
    let mut p = Parser { s: value.as_bytes(), pos: 0 };
    let mut out = Vec::new();
    loop {
        p.ows();
        match p.peek() {
            None => break,
            Some(b',') => {
                p.pos += 1;
                continue;
            }
            _ => {}
        }
        let name = p.token()?;
        let mut params = Vec::new();
        loop {
            p.ows();
            match p.peek() {
                Some(b';') => {
                    p.pos += 1;
                    p.ows();
                    let pname = p.token()?;
                    p.ows();
                    let value = if p.peek() == Some(b'=') {
                        p.pos += 1;
                        p.ows();
                        Some(if p.peek() == Some(b'"') { p.quoted()? } else { p.token()? })
                    } else {
                        None
                    };
                    params.push(ExtensionParam { name: pname, value });
                }
                Some(b',') | None => break,
                Some(_) => return Err(p.err("expected ';' or ','")),
            }
        }
        out.push(Extension { name, params });
    }
    Ok(out)
}

/// Parse every `Sec-WebSocket-Extensions` header of a request or response,
/// in order (several headers form one list, RFC 7230 §3.2.2).
pub fn parse_extension_headers<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Extension>, ExtensionParseError> {
    let mut out = Vec::new();
    for v in values {
        let s = std::str::from_utf8(v)
            .map_err(|e| ExtensionParseError { position: e.valid_up_to(), what: "non-ASCII byte" })?;
        out.extend(parse_extensions(s)?);
    }
    Ok(out)
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for p in &self.params {
            write!(f, "; {}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

/// Format a list of extensions as a header value.
#[cfg(any(test, feature = "fuzzing"))]
pub fn format_extensions(exts: &[Extension]) -> String {
    exts.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(name: &str, value: Option<&str>) -> ExtensionParam {
        ExtensionParam { name: name.into(), value: value.map(Into::into) }
    }

    #[test]
    fn two_offers_one_with_a_quoted_value() {
        let exts = parse_extensions(
            r#"permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits="10""#,
        )
        .unwrap();
        assert_eq!(exts.len(), 2);
        assert_eq!(exts[1].params[0].value.as_deref(), Some("10"));
    }

    #[test]
    fn extension_list_with_params_and_ows() {
        let e = parse_extensions("foo ;  a=1 ; b,bar,\tbaz;c=\"x\"").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "foo");
        assert_eq!(e[0].params, vec![p("a", Some("1")), p("b", None)]);
        assert_eq!(e[1].params, vec![]);
        assert_eq!(e[2].params, vec![p("c", Some("x"))]);
    }

    #[test]
    fn extension_quoted_value_must_be_a_token() {
        // RFC 6455 §9.1: the unescaped quoted-string must conform to token.
        assert!(parse_extensions("foo; a=\"x y\"").is_err());
        assert_eq!(parse_extensions("foo; a=\"\\1\\0\"").unwrap()[0].params[0].value.as_deref(), Some("10"));
    }

    #[test]
    fn extension_grammar_errors() {
        for bad in ["foo;", "foo; =1", "fo o", "foo; a=", "foo; a=\"1", "@", "foo bar", "foo; a b"] {
            assert!(parse_extensions(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_extensions("").unwrap(), vec![]);
        assert_eq!(parse_extensions(" , ,foo").unwrap().len(), 1);
    }

    proptest! {
        #[test]
        fn extension_format_parse_round_trip(
            exts in proptest::collection::vec(("[a-z][a-z0-9_-]{0,10}", proptest::collection::vec(("[a-z_]{1,8}", proptest::option::of("[0-9a-z]{1,4}")), 0..4)), 1..4)
        ) {
            let exts: Vec<Extension> = exts.into_iter().map(|(name, ps)| Extension {
                name, params: ps.into_iter().map(|(n, v)| ExtensionParam { name: n, value: v }).collect() }).collect();
            prop_assert_eq!(parse_extensions(&format_extensions(&exts)).unwrap(), exts);
        }

        #[test]
        fn extension_parser_never_panics(s in "\\PC{0,40}") {
            let _ = parse_extensions(&s);
        }
    }
}
