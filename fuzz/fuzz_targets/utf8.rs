//! The incremental UTF-8 validator of text messages against the standard
//! library, with the input cut where the fuzzer says.
//!
//! Checked: no panic; after each piece the validator refuses exactly when
//! the bytes so far cannot be the start of valid UTF-8 (fail fast, §8.1,
//! and never too early); `finish` refuses exactly an incomplete code point
//! at the end.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wsx_proto::fuzzing::{validate, Utf8Validator};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    cuts: Vec<u8>,
    data: &'a [u8],
}

/// Whether `prefix` can be the start of valid UTF-8.
fn viable(prefix: &[u8]) -> bool {
    match std::str::from_utf8(prefix) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fuzz_target!(|input: Input<'_>| {
    let data = input.data;
    assert_eq!(validate(data).is_ok(), std::str::from_utf8(data).is_ok());
    let mut v = Utf8Validator::new();
    let mut at = 0;
    let mut cuts = input.cuts.iter();
    while at < data.len() {
        let n = cuts.next().map_or(data.len() - at, |&c| (c as usize % 8).min(data.len() - at));
        let end = at + n;
        let ok = v.feed(&data[at..end]).is_ok();
        assert_eq!(ok, viable(&data[..end]), "after {end} bytes of {data:?}");
        if !ok {
            return;
        }
        at = end;
    }
    assert_eq!(v.finish().is_ok(), std::str::from_utf8(data).is_ok(), "{data:?}");
});
