//! Request bodies: [`Request::body`](super::Request::body) reads a
//! `Content-Length` or `Transfer-Encoding: chunked` body on HTTP/1.1, or
//! the DATA of an HTTP/2 stream, up to a size limit and within a time
//! limit, into one buffer.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than the limit (answer 413).
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The body did not arrive within the time limit (answer 408, or drop
    /// the connection).
    #[error("request body timed out")]
    Timeout,
    /// The framing is broken: an invalid `Content-Length`, a malformed
    /// chunk, an unsupported `Transfer-Encoding` (answer 400).
    #[error("malformed request body: {0}")]
    Malformed(&'static str),
    /// The client went away before the whole body arrived.
    #[error("the connection ended inside the request body")]
    Incomplete,
    /// The transport failed.
    #[error("I/O error reading the request body: {0}")]
    Io(#[from] std::io::Error),
}

impl BodyError {
    /// The HTTP status that answers it: 413, 408 or 400.
    ///
    /// ```
    /// use wsx::server::BodyError;
    /// assert_eq!(BodyError::TooLarge(10).status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    /// ```
    pub fn status(&self) -> http::StatusCode {
        match self {
            BodyError::TooLarge(_) => http::StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => http::StatusCode::REQUEST_TIMEOUT,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// How an HTTP/1.1 body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked,
}

/// The framing of `headers`' body: chunked when `Transfer-Encoding` ends
/// with `chunked` (any other coding is refused), else the
/// `Content-Length` (all copies equal), else none (empty).
pub(super) fn framing(headers: &http::HeaderMap) -> Result<Framing, BodyError> {
    let mut te = headers.get_all(http::header::TRANSFER_ENCODING).iter().peekable();
    if te.peek().is_some() {
        let mut last = None;
        for v in te {
            let v = v.to_str().map_err(|_| BodyError::Malformed("transfer-encoding"))?;
            for coding in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                last = Some(coding.to_ascii_lowercase());
            }
        }
        return match last.as_deref() {
            Some("chunked") => Ok(Framing::Chunked),
            _ => Err(BodyError::Malformed("unsupported transfer-encoding")),
        };
    }
    let mut len = None;
    for v in headers.get_all(http::header::CONTENT_LENGTH) {
        let v = v.to_str().map_err(|_| BodyError::Malformed("content-length"))?;
        for part in v.split(',').map(str::trim) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BodyError::Malformed("content-length"));
            }
            let n: u64 = part.parse().map_err(|_| BodyError::Malformed("content-length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(BodyError::Malformed("conflicting content-length"));
            }
            len = Some(n);
        }
    }
    Ok(Framing::Length(len.unwrap_or(0)))
}

/// Bytes of an HTTP/1.1 connection: first what was read past the head,
/// then the stream.
pub(super) struct Source<'a, S> {
    pub(super) leftover: &'a mut Bytes,
    pub(super) stream: &'a mut S,
    pub(super) buf: BytesMut,
}

impl<S: AsyncRead + Unpin> Source<'_, S> {
    /// At least one byte in `buf`, or `Incomplete`.
    async fn fill(&mut self) -> Result<(), BodyError> {
        if !self.buf.is_empty() {
            return Ok(());
        }
        if !self.leftover.is_empty() {
            self.buf.extend_from_slice(self.leftover);
            *self.leftover = Bytes::new();
            return Ok(());
        }
        self.buf.reserve(8192);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(BodyError::Incomplete);
        }
        Ok(())
    }

    /// Up to `n` bytes, appended to `out`.
    async fn take_into(&mut self, out: &mut BytesMut, mut n: u64) -> Result<(), BodyError> {
        while n > 0 {
            self.fill().await?;
            let k = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
            out.extend_from_slice(&self.buf[..k]);
            self.buf.advance(k);
            n -= k as u64;
        }
        Ok(())
    }

    /// One CRLF-ended line (without it), at most `max` bytes long.
    async fn line(&mut self, max: usize) -> Result<BytesMut, BodyError> {
        let mut line = BytesMut::new();
        loop {
            self.fill().await?;
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&self.buf[..i]);
                self.buf.advance(i + 1);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                return Ok(line);
            }
            line.extend_from_slice(&self.buf);
            self.buf.clear();
            // (+1: the line's CR may come alone, its LF in the next read.)
            if line.len() > max.saturating_add(1) {
                return Err(BodyError::Malformed("chunk line too long"));
            }
        }
    }

    /// The whole body as `framing` says, at most `max` bytes.
    pub(super) async fn read(mut self, framing: Framing, max: usize) -> Result<(Bytes, Bytes), BodyError> {
        let mut out = BytesMut::new();
        match framing {
            Framing::Length(n) => {
                if n > max as u64 {
                    return Err(BodyError::TooLarge(max));
                }
                out.reserve(n as usize);
                self.take_into(&mut out, n).await?;
            }
            Framing::Chunked => loop {
                let line = self.line(1024).await?;
                let size = line[..].split(|&b| b == b';').next().unwrap_or(&[]);
                let size = std::str::from_utf8(size).map_err(|_| BodyError::Malformed("chunk size"))?.trim();
                if size.is_empty() || size.len() > 15 {
                    return Err(BodyError::Malformed("chunk size"));
                }
                let size = u64::from_str_radix(size, 16).map_err(|_| BodyError::Malformed("chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    let mut trailers = 0usize;
                    while !self.line(8192).await?.is_empty() {
                        trailers += 1;
                        if trailers > 64 {
                            return Err(BodyError::Malformed("too many trailers"));
                        }
                    }
                    break;
                }
                if (out.len() as u64).saturating_add(size) > max as u64 {
                    return Err(BodyError::TooLarge(max));
                }
                self.take_into(&mut out, size).await?;
                if !self.line(0).await?.is_empty() {
                    return Err(BodyError::Malformed("chunk not followed by CRLF"));
                }
            },
        }
        Ok((out.freeze(), self.buf.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body, however the wire is split between what came with the
    /// head and the stream (every split must agree).
    async fn read(head: &[(&str, &str)], wire: &[u8], max: usize) -> Result<Bytes, BodyError> {
        let whole = read_split(head, wire, max, wire.len() / 2).await;
        for at in 0..=wire.len() {
            let other = read_split(head, wire, max, at).await;
            assert_eq!(format!("{other:?}"), format!("{whole:?}"), "split at {at}");
        }
        whole
    }

    async fn read_split(head: &[(&str, &str)], wire: &[u8], max: usize, at: usize) -> Result<Bytes, BodyError> {
        let mut headers = http::HeaderMap::new();
        for (k, v) in head {
            headers.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let framing = framing(&headers)?;
        // Part of it already read with the head, the rest on the stream,
        // which gives a byte per read.
        let (a, b) = wire.split_at(at);
        let mut leftover = Bytes::copy_from_slice(a);
        let mut stream = tokio_util::io::StreamReader::new(futures_util::stream::iter(
            b.iter().map(|&byte| Ok::<_, std::io::Error>(Bytes::copy_from_slice(&[byte]))),
        ));
        let source = Source { leftover: &mut leftover, stream: &mut stream, buf: BytesMut::new() };
        source.read(framing, max).await.map(|(body, _)| body)
    }

    #[tokio::test]
    async fn content_length_and_chunked_bodies_are_read_whole() {
        assert_eq!(read(&[("content-length", "5")], b"hello", 10).await.unwrap(), "hello");
        assert_eq!(read(&[], b"", 10).await.unwrap(), "");
        let chunked = b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nx-trailer: 1\r\n\r\n";
        assert_eq!(read(&[("transfer-encoding", "chunked")], chunked, 10).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn bodies_past_the_limit_are_refused() {
        let e = read(&[("content-length", "11")], b"hello world", 10).await.unwrap_err();
        assert!(matches!(e, BodyError::TooLarge(10)), "{e:?}");
        assert_eq!(e.status(), 413);
        let chunked = b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
        let e = read(&[("transfer-encoding", "chunked")], chunked, 10).await.unwrap_err();
        assert!(matches!(e, BodyError::TooLarge(10)), "{e:?}");
    }

    #[tokio::test]
    async fn malformed_and_truncated_bodies_are_errors() {
        for head in [[("content-length", "x")], [("content-length", "-1")], [("transfer-encoding", "gzip")]] {
            assert!(matches!(read(&head, b"", 10).await, Err(BodyError::Malformed(_))));
        }
        let e = read(&[("content-length", "5"), ("content-length", "6")], b"hello", 10).await.unwrap_err();
        assert!(matches!(e, BodyError::Malformed(_)));
        let e = read(&[("transfer-encoding", "chunked")], b"zz\r\n", 10).await.unwrap_err();
        assert!(matches!(e, BodyError::Malformed(_)));
        let e = read(&[("content-length", "9")], b"hello", 10).await.unwrap_err();
        assert!(matches!(e, BodyError::Incomplete));
    }

    proptest::proptest! {
        #[test]
        fn chunked_bodies_decode_whatever_their_chunks(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            sizes in proptest::collection::vec(1usize..40, 1..10),
            at in 0usize..300,
        ) {
            let mut wire = Vec::new();
            let mut rest = &data[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = sizes[i % sizes.len()].min(rest.len());
                wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[n..];
                i += 1;
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let head = [("transfer-encoding", "chunked")];
            let got = rt.block_on(read_split(&head, &wire, 1 << 20, at.min(wire.len()))).unwrap();
            proptest::prop_assert_eq!(&got[..], &data[..]);
        }

        #[test]
        fn garbage_is_refused_without_panic(wire in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = rt.block_on(read_split(&[("transfer-encoding", "chunked")], &wire, 64, wire.len() / 2));
        }
    }
}
