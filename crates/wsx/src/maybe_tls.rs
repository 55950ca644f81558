//! A TCP connection with or without TLS over it, or a stream of an HTTP/2
//! connection: [`MaybeTls`], the type of what [`crate::connect`] returns
//! ([`MaybeTlsStream`]) and of what a [`crate::server::Server`] serves
//! ([`crate::server::ServerStream`]). It exists without the `tls` feature
//! too (then it is always plain).

use crate::stream::SplitIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP connection, plain or with TLS over it, or one stream of an HTTP/2
/// connection: what [`crate::connect`] returns ([`MaybeTlsStream`]) and
/// what a [`crate::server::Server`] serves ([`crate::server::ServerStream`]).
/// `T` is the TLS stream type.
#[derive(Debug)]
pub enum MaybeTls<T> {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://` (boxed: the TLS state is large, and a plain connection
    /// should not pay for it).
    Tls(Box<T>),
    /// A WebSocket over HTTP/2 (RFC 8441): one stream of a connection that
    /// others share.
    #[cfg(feature = "http2")]
    H2(Box<crate::http2::H2Stream>),
}

/// A client connection: plain TCP (`ws://`) or TLS over TCP (`wss://`),
/// either of them possibly tunnelled through a proxy.
pub type MaybeTlsStream = MaybeTls<ClientTls>;

/// The TLS stream of a client connection.
#[cfg(feature = "tls")]
pub type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// The TLS stream of a server connection.
#[cfg(feature = "tls")]
pub type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// Without the `tls` feature there is no TLS stream: a [`MaybeTls`] is
/// always [`MaybeTls::Plain`].
#[cfg(not(feature = "tls"))]
pub type ClientTls = NoTls;

/// See [`ClientTls`].
#[cfg(not(feature = "tls"))]
pub type ServerTls = NoTls;

/// The TLS stream of a build without TLS: it has no values.
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub enum NoTls {}

#[cfg(not(feature = "tls"))]
impl AsyncRead for NoTls {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
}

#[cfg(not(feature = "tls"))]
impl AsyncWrite for NoTls {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        match *self {}
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
}

impl<T> MaybeTls<T> {
    /// Whether this is TLS (an HTTP/2 stream is: wsx speaks HTTP/2 over
    /// TLS only).
    pub fn is_tls(&self) -> bool {
        !matches!(self, MaybeTls::Plain(_))
    }

    /// The HTTP version the WebSocket runs on: 1.1 (an upgraded
    /// connection of its own) or 2 (a stream of a shared connection).
    pub fn http_version(&self) -> http::Version {
        match self {
            #[cfg(feature = "http2")]
            MaybeTls::H2(_) => http::Version::HTTP_2,
            _ => http::Version::HTTP_11,
        }
    }
}

#[cfg(feature = "tls")]
impl MaybeTlsStream {
    /// The TCP stream underneath (to the server, or to the proxy); `None`
    /// for a stream of a shared HTTP/2 connection.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            MaybeTls::Plain(s) => Some(s),
            MaybeTls::Tls(s) => Some(s.get_ref().0),
            #[cfg(feature = "http2")]
            MaybeTls::H2(_) => None,
        }
    }

    /// The TLS session (negotiated protocol version, ALPN, peer
    /// certificates), if this is TLS of its own (not a stream of a shared
    /// HTTP/2 connection).
    pub fn tls_connection(&self) -> Option<&rustls::ClientConnection> {
        match self {
            MaybeTls::Tls(s) => Some(s.get_ref().1),
            _ => None,
        }
    }
}

#[cfg(feature = "tls")]
impl MaybeTls<ServerTls> {
    /// The TCP stream underneath; `None` for a stream of a shared HTTP/2
    /// connection.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            MaybeTls::Plain(s) => Some(s),
            MaybeTls::Tls(s) => Some(s.get_ref().0),
            #[cfg(feature = "http2")]
            MaybeTls::H2(_) => None,
        }
    }

    /// The TLS session (protocol version, ALPN, SNI, client
    /// certificates), if this is TLS of its own.
    pub fn tls_connection(&self) -> Option<&rustls::ServerConnection> {
        match self {
            MaybeTls::Tls(s) => Some(s.get_ref().1),
            _ => None,
        }
    }
}

/// Forward an I/O call to whichever stream `$s` holds (`$v` is a `&mut`
/// to the stream itself, the TLS one unboxed).
macro_rules! either {
    ($s:expr, $v:ident => $e:expr) => {
        match $s {
            MaybeTls::Plain($v) => $e,
            MaybeTls::Tls(b) => {
                let $v = &mut **b;
                $e
            }
            #[cfg(feature = "http2")]
            MaybeTls::H2(b) => {
                let $v = &mut **b;
                $e
            }
        }
    };
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    #[inline]
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    #[inline]
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }
    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
            #[cfg(feature = "http2")]
            MaybeTls::H2(s) => s.is_write_vectored(),
        }
    }
    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The read half of a split [`MaybeTls`]: TCP's own half (no lock) or a
/// half of the TLS stream (`tokio::io::split`).
#[derive(Debug)]
pub enum MaybeTlsReadHalf<T> {
    /// `ws://`.
    Plain(tokio::net::tcp::OwnedReadHalf),
    /// `wss://`.
    Tls(tokio::io::ReadHalf<T>),
    /// An HTTP/2 stream's receiving half.
    #[cfg(feature = "http2")]
    H2(crate::http2::H2Recv),
}

/// The write half of a split [`MaybeTls`].
#[derive(Debug)]
pub enum MaybeTlsWriteHalf<T> {
    /// `ws://`.
    Plain(tokio::net::tcp::OwnedWriteHalf),
    /// `wss://`.
    Tls(tokio::io::WriteHalf<T>),
    /// An HTTP/2 stream's sending half.
    #[cfg(feature = "http2")]
    H2(crate::http2::H2Send),
}

impl<T: AsyncRead + AsyncWrite + Unpin> SplitIo for MaybeTls<T> {
    type Read = MaybeTlsReadHalf<T>;
    type Write = MaybeTlsWriteHalf<T>;
    fn split_io(self) -> (Self::Read, Self::Write) {
        match self {
            MaybeTls::Plain(s) => {
                let (r, w) = s.into_split();
                (MaybeTlsReadHalf::Plain(r), MaybeTlsWriteHalf::Plain(w))
            }
            MaybeTls::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (MaybeTlsReadHalf::Tls(r), MaybeTlsWriteHalf::Tls(w))
            }
            #[cfg(feature = "http2")]
            MaybeTls::H2(s) => {
                let (r, w) = s.split_io();
                (MaybeTlsReadHalf::H2(r), MaybeTlsWriteHalf::H2(w))
            }
        }
    }
}

/// Forward an I/O call to whichever half `$s` holds.
macro_rules! either_half {
    ($s:expr, $ty:ident, $v:ident => $e:expr) => {
        match $s {
            $ty::Plain($v) => $e,
            $ty::Tls($v) => $e,
            #[cfg(feature = "http2")]
            $ty::H2($v) => $e,
        }
    };
}

impl<T: AsyncRead> AsyncRead for MaybeTlsReadHalf<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        either_half!(self.get_mut(), MaybeTlsReadHalf, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl<T: AsyncWrite> AsyncWrite for MaybeTlsWriteHalf<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        either_half!(self.get_mut(), MaybeTlsWriteHalf, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either_half!(self.get_mut(), MaybeTlsWriteHalf, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        either_half!(self, MaybeTlsWriteHalf, s => s.is_write_vectored())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either_half!(self.get_mut(), MaybeTlsWriteHalf, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either_half!(self.get_mut(), MaybeTlsWriteHalf, s => Pin::new(s).poll_shutdown(cx))
    }
}
