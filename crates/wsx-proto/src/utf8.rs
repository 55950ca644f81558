//! UTF-8 for text messages and close reasons (RFC 6455 §5.6, §8.1).
//!
//! [`Utf8Validator`] checks a text message incrementally, as its bytes arrive,
//! so that an invalid byte fails the connection at once (1007), even when the
//! message is fragmented and a code point is split across frames. The bulk of
//! the work is done by `simdutf8`; only the (at most 3) bytes of a code point
//! split across pieces are carried over.
//!
//! [`Utf8Bytes`] is a `Bytes` that is known to hold UTF-8: a text message
//! handed to the user without a copy.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// An incremental UTF-8 validator for one message. Internal (reachable only
/// through the hidden `fuzzing` module).
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// Bytes of an incomplete code point carried over from the last piece.
    partial: [u8; 4],
    partial_len: u8,
}

/// The input is not valid UTF-8 ([`Utf8Bytes::try_from_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Length of the UTF-8 sequence that starts with `first`, or 0 if `first`
/// cannot start a sequence.
#[inline]
fn sequence_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validate the next piece of the message. Fails as soon as the bytes
    /// seen so far cannot be the start of valid UTF-8.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]);
            let take = (need - have).min(input.len());
            self.partial[have..have + take].copy_from_slice(&input[..take]);
            let now = have + take;
            input = &input[take..];
            match simdutf8::compat::from_utf8(&self.partial[..now]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() && now < need => {
                    // Still incomplete but a valid prefix; input is exhausted.
                    self.partial_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        if input.is_ascii() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    // A valid prefix of a code point at the end: carry it over.
                    let tail = &input[e.valid_up_to()..];
                    self.partial[..tail.len()].copy_from_slice(tail);
                    self.partial_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// The message ended: fails if a code point is left incomplete.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.partial_len > 0;
        self.partial_len = 0;
        if incomplete {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

/// Validate a whole buffer (`simdutf8`, fastest path for complete input).
#[inline]
pub fn validate(input: &[u8]) -> Result<&str, InvalidUtf8> {
    simdutf8::basic::from_utf8(input).map_err(|_| InvalidUtf8)
}

/// Immutable bytes that are valid UTF-8: the payload of a text message,
/// shared with the read buffer instead of copied into a `String`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A string from a `&'static str`, without a copy.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Checks that `bytes` is UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        validate(&bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps bytes already known to be UTF-8.
    pub(crate) fn from_bytes_unchecked(bytes: Bytes) -> Self {
        debug_assert!(validate(&bytes).is_ok());
        Self(bytes)
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        debug_assert!(validate(&self.0).is_ok());
        // SAFETY: every constructor of `Utf8Bytes` either validates the bytes
        // (`try_from_bytes`, `TryFrom`) or takes them from a `str`/`String`,
        // or (`from_bytes_unchecked`, crate-private) from a payload that the
        // connection's `Utf8Validator` accepted; the bytes are immutable
        // afterwards. Validating again here would cost a full pass over the
        // text on every access (see the `utf8/as_str` benchmark); the tests
        // `utf8_bytes_constructors_validate` pin the invariant.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    #[inline]
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the bytes.
    #[inline]
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(s: &String) -> Self {
        s.as_str().into()
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(b: Bytes) -> Result<Self, InvalidUtf8> {
        Self::try_from_bytes(b)
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(v: Vec<u8>) -> Result<Self, InvalidUtf8> {
        Self::try_from_bytes(Bytes::from(v))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn code_point_split_across_pieces_is_valid() {
        // RFC 6455 §5.6: text may be split inside a code point across frames.
        let s = "κόσμε€𝄞".as_bytes();
        for cut in 0..=s.len() {
            assert_eq!(feed_all(&[&s[..cut], &s[cut..]]), Ok(()), "cut {cut}");
        }
        let mut v = Utf8Validator::new();
        for b in s {
            v.feed(std::slice::from_ref(b)).unwrap();
        }
        v.finish().unwrap();
    }

    #[test]
    fn fails_fast_at_first_invalid_byte() {
        // RFC 6455 §8.1: invalid data fails the connection; a prefix that can
        // never become valid fails at once, before the message ends.
        let mut v = Utf8Validator::new();
        v.feed(b"hello").unwrap();
        assert_eq!(v.feed(&[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0]), Err(InvalidUtf8));
        // Surrogate prefix split over two pieces.
        let mut v = Utf8Validator::new();
        v.feed(&[0xed]).unwrap();
        assert_eq!(v.feed(&[0xa0]), Err(InvalidUtf8));
        // A code point above U+10FFFF is refused at its first byte.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf5]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        v.feed(&[0xf4]).unwrap();
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn incomplete_code_point_at_end_is_invalid() {
        assert_eq!(feed_all(&[b"ok", &[0xe2, 0x82]]), Err(InvalidUtf8));
    }

    #[test]
    fn utf8_bytes_constructors_validate() {
        assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(&[0xff])).is_err());
        assert!(Utf8Bytes::try_from(vec![0xc3u8]).is_err());
        assert_eq!(Utf8Bytes::try_from(vec![0xc3u8, 0xa9]).unwrap(), "é");
        assert_eq!(Utf8Bytes::from("abc").as_str(), "abc");
        assert_eq!(Utf8Bytes::from(String::from("é")).len(), 2);
    }

    proptest! {
        #[test]
        fn incremental_agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..64),
                                       cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let expected = std::str::from_utf8(&data).is_ok();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts { pieces.push(&data[last..c]); last = c; }
            pieces.push(&data[last..]);
            prop_assert_eq!(feed_all(&pieces).is_ok(), expected);
        }

        #[test]
        fn valid_strings_pass_in_any_pieces(s in "\\PC*", cut in 0usize..200) {
            let b = s.as_bytes();
            let cut = cut.min(b.len());
            prop_assert_eq!(feed_all(&[&b[..cut], &b[cut..]]), Ok(()));
        }
    }
}
