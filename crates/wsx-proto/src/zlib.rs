//! Stock zlib (through `libz-sys`) for the compressor and decompressor a
//! connection keeps between messages (context takeover).
//!
//! Why not zlib-rs, which the shared per-thread state uses: its compressor
//! has a fixed 64 Ki-entry hash table (128 KiB whatever memLevel says) and
//! its decompressor always allocates a 32 KiB window, so a connection that
//! keeps its state costs ~290 KiB however small the negotiated windows
//! (measured in docs/compression.md). zlib sizes the compressor by window bits and memLevel
//! (`2^(w+2) + 2^(m+9)` bytes of buffers plus ~6 KiB of state) and the
//! decompressor's window by window bits, which is what makes the memory
//! presets of [`crate::deflate::CompressionPreset`] hold.
//!
//! This is a safe wrapper of zlib's init, one step and end for each
//! direction, and the decompressor's reset. Its memory goes through Rust's global allocator, so
//! an application's allocator (and the counting allocator of the memory
//! benchmark) sees it.

use libz_sys as z;
use std::alloc::{alloc, dealloc, Layout};
use std::ffi::{c_int, c_uint, c_void};
use std::ptr::{null_mut, NonNull};

/// Alignment of every zlib allocation, and the size of the header in front
/// of it that records its size (zfree is not told the size). 16 is what
/// malloc guarantees on 64-bit targets, which zlib's structs assume.
const ALIGN: usize = 16;

extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    let Some(bytes) = (items as usize).checked_mul(size as usize).and_then(|n| n.checked_add(ALIGN)) else {
        return null_mut();
    };
    let Ok(layout) = Layout::from_size_align(bytes, ALIGN) else { return null_mut() };
    // SAFETY: the layout's size is at least ALIGN, never zero.
    let base = unsafe { alloc(layout) };
    if base.is_null() {
        return null_mut();
    }
    // SAFETY: `base` is valid for `bytes >= ALIGN` bytes and aligned to
    // ALIGN, so a usize fits at its start and `base + ALIGN` is inside the
    // allocation or one past its end.
    unsafe {
        base.cast::<usize>().write(bytes);
        base.add(ALIGN).cast()
    }
}

extern "C" fn zfree(_opaque: *mut c_void, address: *mut c_void) {
    if address.is_null() {
        return;
    }
    // SAFETY: zlib frees only what `zalloc` returned: ALIGN bytes past the
    // start of an allocation made with `Layout::from_size_align(bytes,
    // ALIGN)`, whose first usize is `bytes`.
    unsafe {
        let base = address.cast::<u8>().sub(ALIGN);
        let bytes = base.cast::<usize>().read();
        dealloc(base, Layout::from_size_align_unchecked(bytes, ALIGN));
    }
}

/// A heap-allocated `z_stream`. zlib keeps a pointer back to it in its
/// state and checks it on every call, so it must never move: it is held
/// as a raw pointer from `Box::leak`, never as a `Box` or a reference
/// that Rust could assume unique while zlib's state aliases it. Dropping
/// it frees it: its owner ends zlib's state first (`deflateEnd`,
/// `inflateEnd`) in its own `Drop`, which runs before its fields'.
struct Stream(NonNull<z::z_stream>);

impl Stream {
    fn new() -> Self {
        let strm = Box::new(z::z_stream {
            next_in: null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: null_mut(),
            state: null_mut(),
            zalloc,
            zfree,
            opaque: null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        });
        Self(NonNull::from(Box::leak(strm)))
    }

    fn ptr(&mut self) -> *mut z::z_stream {
        self.0.as_ptr()
    }

    /// Run `step` (deflate or inflate) over `input` into the spare capacity
    /// of `out`; returns zlib's code and the input bytes consumed.
    fn step(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        step: impl FnOnce(*mut z::z_stream) -> c_int,
    ) -> (c_int, usize) {
        let len = out.len();
        let spare = out.spare_capacity_mut();
        let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
        let avail_out = spare.len().min(c_uint::MAX as usize) as c_uint;
        let p = self.ptr();
        // SAFETY: `p` is our live z_stream (no reference to it exists).
        // zlib reads at most `avail_in` bytes from `input` and writes at most
        // `avail_out` bytes into `out`'s spare capacity, both borrowed for
        // this call only (it never writes through `next_in`, whose `*mut`
        // is zlib's C signature); the pointers are cleared before
        // returning, so zlib keeps none of them.
        let (code, used, written) = unsafe {
            (*p).next_in = input.as_ptr().cast_mut();
            (*p).avail_in = avail_in;
            (*p).next_out = spare.as_mut_ptr().cast();
            (*p).avail_out = avail_out;
            let code = step(p);
            let used = (avail_in - (*p).avail_in) as usize;
            let written = (avail_out - (*p).avail_out) as usize;
            (*p).next_in = null_mut();
            (*p).avail_in = 0;
            (*p).next_out = null_mut();
            (*p).avail_out = 0;
            (code, used, written)
        };
        // SAFETY: zlib initialised the first `written` bytes of the spare
        // capacity.
        unsafe { out.set_len(len + written) };
        (code, used)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::leak` in `new` and is freed
        // here only, once; zlib's state no longer refers to it (ended by the
        // owner, or never initialised).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A raw-DEFLATE compressor with zlib's window bits and memLevel.
pub(crate) struct Deflate(Stream);

// SAFETY: a zlib stream has no thread affinity and this type owns its
// state exclusively; every call that touches it takes `&mut self`.
unsafe impl Send for Deflate {}
// SAFETY: no method reads or writes the stream through `&self`.
unsafe impl Sync for Deflate {}

impl Deflate {
    /// `level` 0-9, `window_bits` 9-15, `mem_level` 1-9 (out-of-range
    /// values are clamped; zlib itself turns 8 window bits into 9).
    pub(crate) fn new(level: u32, window_bits: u8, mem_level: u8) -> Self {
        let mut s = Stream::new();
        let bits = c_int::from(window_bits.clamp(9, 15));
        // SAFETY: a fresh z_stream with our allocator; the version and size
        // are those of the linked zlib and of libz-sys's z_stream.
        let code = unsafe {
            z::deflateInit2_(
                s.ptr(),
                level.min(9) as c_int,
                z::Z_DEFLATED,
                -bits,
                c_int::from(mem_level.clamp(1, 9)),
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        if code != z::Z_OK {
            // Parameters are in range: only out of memory gets here (`s`
            // is freed as it drops).
            panic!("deflateInit2 failed ({code})");
        }
        Self(s)
    }

    /// Compress what fits of `input` into `out`'s spare capacity with a
    /// sync flush; returns the input bytes consumed. Call again with the
    /// rest (and more room) until all is consumed and room is left over.
    pub(crate) fn sync_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        // Z_BUF_ERROR (no room, or nothing to do) is not an error here:
        // the caller's loop gives more room. Nothing else can fail on a
        // stream that initialised.
        // SAFETY: an initialised deflate stream.
        self.0.step(input, out, |p| unsafe { z::deflate(p, z::Z_SYNC_FLUSH) }).1
    }
}

impl Drop for Deflate {
    fn drop(&mut self) {
        // SAFETY: an initialised deflate stream, ended once.
        unsafe { z::deflateEnd(self.0.ptr()) };
    }
}

/// A raw-DEFLATE decompressor whose window is `2^window_bits` bytes,
/// allocated when the first output needs it.
pub(crate) struct Inflate(Stream);

// SAFETY: as for `Deflate`.
unsafe impl Send for Inflate {}
// SAFETY: as for `Deflate`.
unsafe impl Sync for Inflate {}

impl Inflate {
    /// `window_bits` 9-15 (clamped): it must be at least the window the
    /// sender used.
    pub(crate) fn new(window_bits: u8) -> Self {
        let mut s = Stream::new();
        let bits = c_int::from(window_bits.clamp(9, 15));
        // SAFETY: as in `Deflate::new`.
        let code =
            unsafe { z::inflateInit2_(s.ptr(), -bits, z::zlibVersion(), std::mem::size_of::<z::z_stream>() as c_int) };
        if code != z::Z_OK {
            panic!("inflateInit2 failed ({code})");
        }
        Self(s)
    }

    /// Inflate what fits of `input` into `out`'s spare capacity with a sync
    /// flush: the input bytes consumed, and whether the stream ended (a
    /// final block). `Err(())`: the input is not valid DEFLATE data.
    pub(crate) fn sync_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), ()> {
        // SAFETY: an initialised inflate stream.
        let (code, used) = self.0.step(input, out, |p| unsafe { z::inflate(p, z::Z_SYNC_FLUSH) });
        match code {
            // Z_BUF_ERROR: no progress possible (no input or no room); the
            // caller tells that from a stuck stream.
            z::Z_OK | z::Z_BUF_ERROR => Ok((used, false)),
            z::Z_STREAM_END => Ok((used, true)),
            _ => Err(()),
        }
    }

    /// Start a new stream.
    pub(crate) fn reset(&mut self) {
        // SAFETY: an initialised inflate stream.
        unsafe { z::inflateReset(self.0.ptr()) };
    }
}

impl Drop for Inflate {
    fn drop(&mut self) {
        // SAFETY: an initialised inflate stream, ended once.
        unsafe { z::inflateEnd(self.0.ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(d: &mut Deflate, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut done = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            done += d.sync_flush(&input[done..], &mut out);
            if done == input.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    fn inflate(i: &mut Inflate, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut done = 0;
        loop {
            out.reserve(256);
            let (n, end) = i.sync_flush(&input[done..], &mut out).unwrap();
            done += n;
            if end {
                return out;
            }
            if done == input.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    #[test]
    fn every_setting_round_trips_and_is_read_by_zlib_rs() {
        // Stock zlib's output, inflated by stock zlib and by zlib-rs (the
        // peer's decompressor may be either), over two messages that share
        // context, in small output steps.
        let text = br#"{"user":"ana","room":"general","text":"hello there, hello again","ts":1700000000}"#.repeat(40);
        for bits in 9..=15 {
            for mem in 1..=9 {
                let mut d = Deflate::new(6, bits, mem);
                let mut i = Inflate::new(bits);
                let mut peer = flate2::Decompress::new_with_window_bits(false, bits);
                for _ in 0..2 {
                    let wire = compress(&mut d, &text);
                    assert!(wire.len() < text.len() / 4, "bits {bits} mem {mem}: {}", wire.len());
                    assert_eq!(inflate(&mut i, &wire), text, "bits {bits} mem {mem}");
                    let mut out = Vec::with_capacity(text.len() + 64);
                    peer.decompress_vec(&wire, &mut out, flate2::FlushDecompress::Sync).unwrap();
                    assert_eq!(out, text, "bits {bits} mem {mem}");
                }
                i.reset();
                assert_eq!(inflate(&mut i, &compress(&mut Deflate::new(6, bits, mem), b"fresh")), b"fresh");
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let mut i = Inflate::new(15);
        let mut out = Vec::with_capacity(64);
        assert_eq!(i.sync_flush(&[0xff, 0xff, 0xff, 0xff], &mut out), Err(()));
    }

    #[test]
    fn no_room_is_not_an_error() {
        let mut d = Deflate::new(6, 15, 8);
        let mut out = Vec::new();
        assert_eq!(d.sync_flush(b"abc", &mut out), 0);
        let mut i = Inflate::new(15);
        assert!(i.sync_flush(&[0x4a], &mut Vec::new()).is_ok());
    }
}
