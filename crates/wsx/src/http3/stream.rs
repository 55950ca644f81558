//! [`H3Stream`]: the bytes of one HTTP/3 request stream.

use crate::stream::SplitIo;
use bytes::{Buf, Bytes, BytesMut};
use h3::error::StreamError;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::ReusableBoxFuture;

type ServerRecv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;
type ServerSend = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type ClientRecv = h3::client::RequestStream<h3_quinn::RecvStream, Bytes>;
type ClientSend = h3::client::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// What keeps a client stream's connection open while the stream lives
/// (the client's handle on the connection).
pub(crate) type Keep = Arc<dyn std::any::Any + Send + Sync>;

/// The most one write takes: one DATA frame, which is what the stream
/// holds beyond quinn's send buffer while it is handed over.
const MAX_WRITE: usize = 64 * 1024;

/// The bytes of one HTTP/3 request stream (its DATA frames, RFC 9114
/// §7.2.1), as [`AsyncRead`] + [`AsyncWrite`]: what a WebSocket over
/// HTTP/3 runs on. Its halves split without a lock.
///
/// Backpressure is QUIC's, per stream: reading takes the next DATA frame
/// from h3 only once the WebSocket has consumed the previous one, and quinn
/// gives the peer more window as it is read; a write waits until quinn has
/// taken the previous one (at most 64 KiB waits here).
pub struct H3Stream {
    recv: H3Recv,
    send: H3Send,
}

/// The receiving half of an [`H3Stream`].
pub struct H3Recv {
    half: RecvHalf,
    /// A DATA frame's bytes not read yet.
    pending: Bytes,
    /// The peer finished its side.
    eof: bool,
    _connection: Option<Keep>,
}

/// The sending half of an [`H3Stream`].
pub struct H3Send {
    /// The stream, when no send is in flight.
    half: Option<SendHalf>,
    /// The send in flight (it owns the stream meanwhile): h3 sends with
    /// `async fn`s that borrow the stream, so the future is kept here,
    /// boxed once and reused.
    op: Option<ReusableBoxFuture<'static, (SendHalf, Result<(), StreamError>)>>,
    busy: bool,
    ended: bool,
    id: u64,
    _connection: Option<Keep>,
}

enum RecvHalf {
    Server(ServerRecv),
    Client(ClientRecv),
}

enum SendHalf {
    Server(ServerSend),
    Client(ClientSend),
}

/// What a send does: one DATA frame, or the end of the stream (QUIC FIN).
enum Op {
    Data(Bytes),
    Finish,
}

async fn run(mut half: SendHalf, op: Op) -> (SendHalf, Result<(), StreamError>) {
    let result = match (&mut half, op) {
        (SendHalf::Server(s), Op::Data(d)) => s.send_data(d).await,
        (SendHalf::Client(s), Op::Data(d)) => s.send_data(d).await,
        (SendHalf::Server(s), Op::Finish) => s.finish().await,
        (SendHalf::Client(s), Op::Finish) => s.finish().await,
    };
    (half, result)
}

impl H3Stream {
    /// The stream of a request the server accepted (its response sent).
    pub(crate) fn server(stream: h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>) -> Self {
        let id = stream.id().into_inner();
        let (send, recv) = stream.split();
        Self::new(SendHalf::Server(send), RecvHalf::Server(recv), id, None)
    }

    /// The stream of a client's request (its response received); `keep`
    /// keeps the connection open while the stream lives.
    pub(crate) fn client(stream: h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>, keep: Keep) -> Self {
        let id = stream.id().into_inner();
        let (send, recv) = stream.split();
        Self::new(SendHalf::Client(send), RecvHalf::Client(recv), id, Some(keep))
    }

    fn new(send: SendHalf, recv: RecvHalf, id: u64, keep: Option<Keep>) -> Self {
        Self {
            recv: H3Recv { half: recv, pending: Bytes::new(), eof: false, _connection: keep.clone() },
            send: H3Send { half: Some(send), op: None, busy: false, ended: false, id, _connection: keep },
        }
    }

    /// The QUIC stream id of the request stream.
    pub fn stream_id(&self) -> u64 {
        self.send.id
    }
}

impl std::fmt::Debug for H3Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Stream").field("stream_id", &self.send.id).finish()
    }
}

impl std::fmt::Debug for H3Recv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Recv").field("pending", &self.pending.len()).field("eof", &self.eof).finish()
    }
}

impl std::fmt::Debug for H3Send {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Send")
            .field("stream_id", &self.id)
            .field("busy", &self.busy)
            .field("ended", &self.ended)
            .finish()
    }
}

/// An HTTP/3 stream error as an I/O error: the peer's reset or STOP_SENDING
/// and the end of the connection are `ConnectionReset` (a WebSocket on the
/// stream ends with 1006).
fn io_error(e: StreamError) -> io::Error {
    let reset = matches!(
        e,
        StreamError::RemoteTerminate { .. } | StreamError::ConnectionError { .. } | StreamError::RemoteClosing { .. }
    );
    io::Error::new(if reset { io::ErrorKind::ConnectionReset } else { io::ErrorKind::Other }, e)
}

impl RecvHalf {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamError>> {
        let data = match self {
            RecvHalf::Server(s) => ready!(s.poll_recv_data(cx)).map(|d| d.map(|mut b| b.copy_to_bytes(b.remaining()))),
            RecvHalf::Client(s) => ready!(s.poll_recv_data(cx)).map(|d| d.map(|mut b| b.copy_to_bytes(b.remaining()))),
        };
        Poll::Ready(data)
    }
}

impl AsyncRead for H3Recv {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The next frame is taken only when the last is consumed: quinn
        // opens the peer's window as h3 reads, so a reader that stops
        // stops its peer.
        while this.pending.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.half.poll_data(cx)) {
                Ok(Some(data)) => this.pending = data,
                // FIN: the peer's side is done.
                Ok(None) => this.eof = true,
                Err(e) => return Poll::Ready(Err(io_error(e))),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl H3Send {
    /// Start `op` on the idle stream.
    fn start(&mut self, op: Op) -> io::Result<()> {
        let half = self.half.take().ok_or(io::ErrorKind::BrokenPipe)?;
        let fut = run(half, op);
        match &mut self.op {
            Some(slot) => slot.set(fut),
            None => self.op = Some(ReusableBoxFuture::new(fut)),
        }
        self.busy = true;
        Ok(())
    }

    /// Finish the send in flight, if any; its error, if it failed.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.busy {
            return Poll::Ready(Ok(()));
        }
        let Some(op) = self.op.as_mut() else {
            self.busy = false;
            return Poll::Ready(Ok(()));
        };
        let (half, result) = ready!(op.poll(cx));
        self.half = Some(half);
        self.busy = false;
        Poll::Ready(result.map_err(io_error))
    }

    /// Send `data` (at most [`MAX_WRITE`] bytes, owned) as one DATA frame.
    fn send(&mut self, cx: &mut Context<'_>, data: Bytes) -> Poll<io::Result<usize>> {
        let n = data.len();
        self.start(Op::Data(data))?;
        // Started at once, so that the bytes go out while the caller
        // prepares more; they are this stream's now, and a failure shows
        // here or at the next call.
        if let Poll::Ready(Err(e)) = self.poll_idle(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn check_open(&self) -> io::Result<()> {
        if self.ended {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }
}

impl AsyncWrite for H3Send {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_idle(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.check_open()?;
        let n = buf.len().min(MAX_WRITE);
        this.send(cx, Bytes::copy_from_slice(&buf[..n]))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_idle(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        this.check_open()?;
        // A frame's header and payload as one DATA frame, not two.
        let mut data = BytesMut::with_capacity(total.min(MAX_WRITE));
        for b in bufs {
            let room = MAX_WRITE - data.len();
            if room == 0 {
                break;
            }
            data.extend_from_slice(&b[..b.len().min(room)]);
        }
        this.send(cx, data.freeze())
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Handed to quinn is as far as a flush goes: its connection task
        // sends the packets.
        self.get_mut().poll_idle(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_idle(cx))?;
        if !this.ended {
            this.ended = true;
            // FIN: RFC 9220 §3 maps the orderly close of RFC 6455's TCP
            // connection to the stream's FIN.
            this.start(Op::Finish)?;
        }
        this.poll_idle(cx)
    }
}

/// A sending half dropped before its end resets the stream with
/// H3_REQUEST_CANCELLED: RFC 9220 §3 maps the abrupt end of RFC 6455's TCP
/// connection to that stream error (a WebSocket ends its stream with a FIN
/// once closed, and nothing is reset then).
impl Drop for H3Send {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        match &mut self.half {
            Some(SendHalf::Server(s)) => s.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED),
            Some(SendHalf::Client(s)) => s.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED),
            None => {}
        }
    }
}

impl AsyncRead for H3Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for H3Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().send).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().send).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().send).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().send).poll_shutdown(cx)
    }
}

impl SplitIo for H3Stream {
    type Read = H3Recv;
    type Write = H3Send;
    fn split_io(self) -> (H3Recv, H3Send) {
        (self.recv, self.send)
    }
}
