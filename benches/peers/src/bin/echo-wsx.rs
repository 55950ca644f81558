//! wsx echo server, the echo of `wsx serve` (crates/wsx-cli/src/serve.rs):
//! the streaming receive (`recv_chunk`), chunks gathered up to 64 KiB. A
//! message that ends by then goes back whole (`feed`); a larger one goes
//! back in fragments of at least 64 KiB as its bytes arrive
//! (`feed_fragment`), so the echo of a 1 MiB message starts before its last
//! byte is in. `recv_chunk` writes what is queued before it waits, so a
//! burst of pipelined messages is answered with one write.

use bytes::BytesMut;
use wsx::proto::{Chunk, Incoming};

const FORWARD_AT: usize = 64 << 10;

fn main() {
    wsx_peers::run(|listener| async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let mut ws = wsx::accept(tcp).await?;
                let mut pending = BytesMut::new();
                let mut forwarding = false;
                while let Some(incoming) = ws.recv_chunk().await {
                    let Incoming::Chunk(c) = incoming? else { continue };
                    if c.first {
                        pending.clear();
                        forwarding = false;
                    }
                    let data = if pending.is_empty() && (c.last || c.data.len() >= FORWARD_AT) {
                        c.data
                    } else {
                        pending.extend_from_slice(&c.data);
                        if !c.last && pending.len() < FORWARD_AT {
                            continue;
                        }
                        pending.split().freeze()
                    };
                    if c.last && !forwarding {
                        let whole = Chunk { text: c.text, data, first: true, last: true };
                        ws.feed(whole.into_message()).await?;
                    } else {
                        forwarding = !c.last;
                        ws.feed_fragment(c.text, data, c.last).await?;
                    }
                }
                Ok::<_, wsx::Error>(())
            });
        }
    })
}
