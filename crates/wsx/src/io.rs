//! The two I/O primitives every WebSocket half is built on: write the
//! writer's queue with vectored writes, and read into the reader's buffer.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use wsx_proto::{Reader, Writer};

/// Most slices handed to one vectored write.
const MAX_IOVECS: usize = 64;

/// The list of slices used when the queue holds no more than this many (a
/// large payload or two and the headers): a short list to fill, where the
/// full one costs as much to clear as the rest of the write.
const FEW_IOVECS: usize = 4;

/// Write everything the writer has queued, coalesced into as few writes as
/// the queue allows (one, when it fits in the tail buffer), then flush.
pub(crate) fn poll_write_all<W: AsyncWrite + Unpin>(
    io: &mut W,
    writer: &mut Writer,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while writer.wants_write() {
        let n = if let Some(bytes) = writer.write_contiguous() {
            // One slice (the usual case): no list of slices to build.
            ready!(Pin::new(&mut *io).poll_write(cx, bytes))?
        } else if writer.write_slice_count() <= FEW_IOVECS {
            ready!(poll_write_slices::<W, FEW_IOVECS>(io, writer, cx))?
        } else {
            ready!(poll_write_slices::<W, MAX_IOVECS>(io, writer, cx))?
        };
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        writer.advance_write(n);
    }
    Pin::new(io).poll_flush(cx)
}

/// One vectored write of up to `N` of the queued slices.
fn poll_write_slices<W: AsyncWrite + Unpin, const N: usize>(
    io: &mut W,
    writer: &mut Writer,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut slices = [IoSlice::new(&[]); N];
    let k = writer.write_chunks(&mut slices);
    if k > 1 && io.is_write_vectored() {
        Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k])
    } else {
        Pin::new(&mut *io).poll_write(cx, &slices[0])
    }
}

/// Read once into the reader's buffer, with room for what it expects next.
/// `Ready(Ok(0))` is end of stream.
pub(crate) fn poll_fill<R: AsyncRead + Unpin>(
    io: &mut R,
    reader: &mut Reader,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let hint = reader.read_hint();
    let buf = reader.read_buf();
    if buf.capacity() - buf.len() < hint {
        buf.reserve(Reader::reserve_for(hint));
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// Read and discard (after the closing handshake, until the peer closes).
pub(crate) fn poll_drain<R: AsyncRead + Unpin>(io: &mut R, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut scratch = [0u8; 1024];
    loop {
        let mut rb = tokio::io::ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
        if rb.filled().is_empty() {
            return Poll::Ready(Ok(()));
        }
    }
}
