//! tokio-tungstenite echo server (`accept_async`, `Stream` + `Sink`).
//!
//! Replies are queued with `feed` while more input is ready and flushed
//! before the server waits, the same coalescing wsx does by itself (the
//! `feed`-per-message / `flush`-when-idle pattern `StreamExt::forward` uses).

use futures_util::{FutureExt, SinkExt, StreamExt};

fn main() {
    wsx_peers::run(|listener| async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let mut ws = tokio_tungstenite::accept_async(tcp).await?;
                loop {
                    let next = match ws.next().now_or_never() {
                        Some(m) => m,
                        None => {
                            ws.flush().await?;
                            ws.next().await
                        }
                    };
                    match next {
                        Some(Ok(m)) if m.is_text() || m.is_binary() => ws.feed(m).await?,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e),
                        None => break,
                    }
                }
                Ok::<_, tokio_tungstenite::tungstenite::Error>(())
            });
        }
    })
}
