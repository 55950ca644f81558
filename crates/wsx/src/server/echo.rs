//! The echo of `wsx serve`, for servers and tests of clients.

use crate::proto::{Gather, Incoming};
use crate::{Result, WebSocket};
use std::future::{poll_fn, Future};
use tokio::io::{AsyncRead, AsyncWrite};

/// Send every text and binary message back to its sender until the
/// connection ends. Pings are answered and closes returned as always.
///
/// Messages stream through: a message that ends within 64 KiB goes back
/// whole (compressed if negotiated); a larger one goes back in fragments
/// of at least 64 KiB as its bytes arrive ([`Gather`]), so its echo starts
/// before its last byte is in. Backpressure: between messages the echo
/// waits for the write queue's high-water mark, as [`WebSocket::feed`]
/// does. While a message is being received it keeps reading as long as
/// the echo queued beyond the mark is covered by what the peer sent, so a
/// peer that sends a large message before it reads the echo is not
/// deadlocked; what a decompression bomb produces waits at the mark. An
/// idle connection's task holds nothing but the WebSocket and the
/// regrouping state.
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let server = wsx::server::Server::builder().build();
/// server.serve(listener, |req| async move { wsx::server::echo(req.upgrade(Default::default()).await?).await }).await
/// # }
/// ```
// Not an `async fn`, which would keep the WebSocket twice in its future.
#[allow(clippy::manual_async_fn)]
pub fn echo<S: AsyncRead + AsyncWrite + Unpin + Send>(mut ws: WebSocket<S>) -> impl Future<Output = Result<()>> + Send {
    async move {
        let mut gather = Gather::default();
        loop {
            // Nothing received is held across an await: the task is the
            // WebSocket, the regrouping state, and the future awaited.
            poll_fn(|cx| ws.poll_echo_ready(cx)).await?;
            let chunk = match ws.recv_chunk().await {
                Some(Ok(Incoming::Chunk(chunk))) => chunk,
                Some(Ok(Incoming::Message(_))) => continue,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            };
            if let Some(out) = gather.push(chunk) {
                ws.queue_chunk(out)?;
            }
        }
    }
}
