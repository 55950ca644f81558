//! wsx echo server, the echo of `wsx serve` (crates/wsx-cli/src/serve.rs):
//! the streaming receive (`recv_chunk`), regrouped by `wsx::proto::Gather`
//! (up to 64 KiB) and queued with `feed_chunk`. A message that ends by then
//! goes back whole; a larger one goes back in fragments of at least 64 KiB
//! as its bytes arrive, so the echo of a 1 MiB message starts before its
//! last byte is in. `recv_chunk` writes what is queued before it waits, so
//! a burst of pipelined messages is answered with one write.

use wsx::proto::{Gather, Incoming};

fn main() {
    wsx_peers::run(|listener| async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            // The (boxed) handshake is made outside the task: what the task
            // captures stays in it for its whole life.
            let handshake = wsx::accept(tcp);
            tokio::spawn(async move {
                let mut ws = handshake.await?;
                let mut gather = Gather::default();
                loop {
                    // Bound at once: what is held across an await is part
                    // of every idle connection's task.
                    let chunk = match ws.recv_chunk().await {
                        Some(Ok(Incoming::Chunk(c))) => c,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e),
                        None => return Ok(()),
                    };
                    // let-else: the pushed result is gone before the await (an
                    // `if let` would keep it in the task across the await).
                    let Some(out) = gather.push(chunk) else { continue };
                    ws.feed_chunk(out).await?;
                }
            });
        }
    })
}
