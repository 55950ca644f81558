//! [`H2Stream`]: one HTTP/2 stream as a byte stream.

use crate::stream::SplitIo;
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The bytes of one HTTP/2 stream, as [`AsyncRead`] + [`AsyncWrite`]: what
/// a WebSocket over HTTP/2 runs on. Made from the two halves the HTTP/2
/// library gives (the request's or response's body, and the stream to send
/// on); its own halves split without a lock.
///
/// Not a half-close: once the whole stream has been shut down (its
/// END_STREAM sent), reading it ends at once, whatever the peer still
/// sends, since a WebSocket is over when its closing side ends its stream.
/// The halves of [`SplitIo::split_io`] keep reading until the peer ends.
#[derive(Debug)]
pub struct H2Stream {
    recv: H2Recv,
    send: H2Send,
}

/// The receiving half of an [`H2Stream`].
#[derive(Debug)]
pub struct H2Recv {
    body: h2::RecvStream,
    /// A DATA frame's bytes not read yet.
    pending: Bytes,
    _held: Held,
}

/// The sending half of an [`H2Stream`].
#[derive(Debug)]
pub struct H2Send {
    stream: h2::SendStream<Bytes>,
    ended: bool,
    _held: Held,
}

/// What the stream keeps alive while either half lives (a client's place
/// on a shared connection, given back when the WebSocket is gone).
type Held = Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>;

impl H2Stream {
    /// The two halves, to use apart.
    pub(crate) fn halves(&mut self) -> (&mut H2Recv, &mut H2Send) {
        (&mut self.recv, &mut self.send)
    }

    /// The stream of `send` and `recv`: on a server, what
    /// `SendResponse::send_response` returned and the request's body; on a
    /// client, the request's send stream and the response's body.
    pub fn new(send: h2::SendStream<Bytes>, recv: h2::RecvStream) -> Self {
        Self {
            recv: H2Recv { body: recv, pending: Bytes::new(), _held: None },
            send: H2Send { stream: send, ended: false, _held: None },
        }
    }

    /// The stream, keeping `held` alive until both of its halves are
    /// dropped.
    pub(crate) fn holding(mut self, held: std::sync::Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self.recv._held = Some(held.clone());
        self.send._held = Some(held);
        self
    }

    /// The stream's id on its connection.
    pub fn stream_id(&self) -> u32 {
        self.send.stream.stream_id().into()
    }
}

/// An HTTP/2 error as an I/O error: a reset of the stream or the end of the
/// connection is `ConnectionReset` (a WebSocket on it ends with 1006).
fn io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::Error::other("HTTP/2 I/O error"));
    }
    let kind = if e.is_reset() || e.is_go_away() { io::ErrorKind::ConnectionReset } else { io::ErrorKind::Other };
    io::Error::new(kind, e)
}

impl AsyncRead for H2Recv {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.body.poll_data(cx)) {
                Some(Ok(data)) => this.pending = data,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                // END_STREAM: the peer's side is done.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        // The window goes back to the peer as the bytes are consumed, not
        // as they arrive: a reader that stops stops its peer.
        let _ = this.body.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Send {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.ended {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Ask for window for all of `buf` (beyond what is buffered), and
        // send what is granted: at most HTTP/2's send buffer waits per
        // stream.
        this.stream.reserve_capacity(buf.len());
        loop {
            let granted = this.stream.capacity();
            if granted > 0 {
                let n = granted.min(buf.len());
                this.stream.send_data(Bytes::copy_from_slice(&buf[..n]), false).map_err(io_error)?;
                return Poll::Ready(Ok(n));
            }
            match ready!(this.stream.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Err(this.reset_error(cx))),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what the streams queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ended {
            this.ended = true;
            // END_STREAM: the WebSocket's end is the stream's.
            this.stream.send_data(Bytes::new(), true).map_err(io_error)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl H2Send {
    /// Send `bytes` as the stream's last data, as the peer's window allows
    /// (a whole response body: queued by reference, not copied).
    pub(crate) async fn send_last(&mut self, mut bytes: Bytes) -> io::Result<()> {
        if bytes.is_empty() {
            self.stream.send_data(Bytes::new(), true).map_err(io_error)?;
        }
        while !bytes.is_empty() {
            self.stream.reserve_capacity(bytes.len());
            let granted = std::future::poll_fn(|cx| {
                let granted = self.stream.capacity();
                if granted > 0 {
                    return Poll::Ready(Ok(granted));
                }
                match ready!(self.stream.poll_capacity(cx)) {
                    Some(Ok(_)) => Poll::Ready(Ok(self.stream.capacity())),
                    Some(Err(e)) => Poll::Ready(Err(io_error(e))),
                    None => Poll::Ready(Err(self.reset_error(cx))),
                }
            })
            .await?;
            let chunk = bytes.split_to(granted.min(bytes.len()));
            self.stream.send_data(chunk, bytes.is_empty()).map_err(io_error)?;
        }
        self.ended = true;
        Ok(())
    }

    /// Resolves when the peer resets the stream (a client that went away).
    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.stream.poll_reset(cx).map(|_| ())
    }

    /// Why the stream can no longer send (its reset, if the peer sent one).
    fn reset_error(&mut self, cx: &mut Context<'_>) -> io::Error {
        match self.stream.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => io::Error::new(io::ErrorKind::ConnectionReset, h2::Error::from(reason)),
            Poll::Ready(Err(e)) => io_error(e),
            Poll::Pending => io::ErrorKind::BrokenPipe.into(),
        }
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.send.ended {
            // Our END_STREAM is sent: what the peer still sends is not read
            // (a WebSocket server closes first, RFC 6455 §7.1.1, and then
            // reads to the end of a TCP connection so that its close frame
            // is not lost to a reset; a stream has no such loss, and a peer
            // may never end its side: Chromium does not). Dropping the
            // stream then resets it, after what is queued.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().send).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().send).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().send).poll_shutdown(cx)
    }
}

impl SplitIo for H2Stream {
    type Read = H2Recv;
    type Write = H2Send;
    fn split_io(self) -> (H2Recv, H2Send) {
        (self.recv, self.send)
    }
}
