//! wsx echo server, the echo of `wsx serve` (crates/wsx-cli/src/serve.rs):
//! the streaming receive (`recv_chunk`), chunks gathered up to 64 KiB. A
//! message that ends by then goes back whole (`feed`); a larger one goes
//! back in fragments of at least 64 KiB as its bytes arrive
//! (`feed_fragment`), so the echo of a 1 MiB message starts before its last
//! byte is in. `recv_chunk` writes what is queued before it waits, so a
//! burst of pipelined messages is answered with one write.

use wsx::proto::{Chunk, Incoming};

const FORWARD_AT: usize = 64 << 10;

fn main() {
    wsx_peers::run(|listener| async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            // The (boxed) handshake is made outside the task: what the task
            // captures stays in it for its whole life.
            let handshake = wsx::accept(tcp);
            tokio::spawn(async move {
                let mut ws = handshake.await?;
                let mut pending: Vec<u8> = Vec::new(); // 24 bytes (a BytesMut is 32): the task holds it
                let mut forwarding = false;
                loop {
                    // Taken apart at once: what is held across an await is
                    // part of every idle connection's task.
                    let Chunk { text, data, first, last } = match ws.recv_chunk().await {
                        Some(Ok(Incoming::Chunk(c))) => c,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e),
                        None => return Ok(()),
                    };
                    if first {
                        pending.clear();
                        forwarding = false;
                    }
                    let data = if pending.is_empty() && (last || data.len() >= FORWARD_AT) {
                        data
                    } else {
                        pending.extend_from_slice(&data);
                        if !last && pending.len() < FORWARD_AT {
                            continue;
                        }
                        bytes::Bytes::from(std::mem::take(&mut pending))
                    };
                    if last && pending.capacity() > 0 {
                        // After a large message: hold no buffer while idle.
                        pending = Vec::new();
                    }
                    let feed = if last && !forwarding {
                        ws.feed(Chunk { text, data, first: true, last: true }.into_message())
                    } else {
                        forwarding = !last;
                        ws.feed_fragment(text, data, last)
                    };
                    feed.await?;
                }
            });
        }
    })
}
