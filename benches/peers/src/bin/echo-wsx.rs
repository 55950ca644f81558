//! wsx echo server: `recv` then `feed`; `recv` writes what is queued before
//! it waits, so a burst of pipelined messages is answered with one write.

use wsx::Message;

fn main() {
    wsx_peers::run(|listener| async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let mut ws = wsx::accept(tcp).await?;
                while let Some(msg) = ws.recv().await {
                    match msg? {
                        m @ (Message::Text(_) | Message::Binary(_)) => ws.feed(m).await?,
                        _ => {}
                    }
                }
                Ok::<_, wsx::Error>(())
            });
        }
    })
}
