//! What an idle connection costs: the bytes of a connection's task.
//!
//! A tokio task is one allocation holding the task's future, aligned to
//! 128 bytes with about 104 bytes of header and trailer: a future of at
//! most 280 bytes makes a 384-byte task, at most 408 a 512-byte one. With
//! 10,000 connections every 128 bytes here are 1.25 MiB, so these bounds
//! break when a field or a future grows.

use wsx::proto::{Gather, Incoming};
use wsx::WebSocket;

/// The streaming echo of `wsx serve` and of the peer benchmark's wsx
/// server, as a connection task runs it: the task gets the (boxed, 8-byte)
/// handshake future, not the socket, since what an async block captures
/// stays in it for the task's whole life.
fn echo(tcp: tokio::net::TcpStream) -> impl std::future::Future<Output = wsx::Result<()>> {
    let handshake = wsx::accept(tcp);
    async move {
        let mut ws = handshake.await?;
        let mut gather = Gather::default();
        loop {
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
    }
}

async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}

#[test]
fn a_connection_stays_small() {
    // Rare state (compression, the close timer and pending error, the
    // negotiated subprotocol, gathered fragments) is boxed, and so are the
    // receive state (read buffer, frame and message in progress) and the
    // write queue, which only a connection with something buffered holds.
    // 312 bytes with all of it inline, 248 with the rare state boxed, 144
    // since.
    // Without the socket (24 bytes in release builds; mio adds a field to
    // it in debug builds).
    let size = std::mem::size_of::<WebSocket<tokio::net::TcpStream>>() - std::mem::size_of::<tokio::net::TcpStream>();
    assert!(size <= 120, "WebSocket<TcpStream> is {size} bytes besides the socket");
    let size = std::mem::size_of::<wsx::Error>();
    assert!(size <= 40, "wsx::Error is {size} bytes");
}

#[tokio::test]
async fn the_echo_task_fits_a_384_byte_task() {
    let (server, _client) = tcp_pair().await;
    let task = echo(server);
    let size = std::mem::size_of_val(&task);
    // Release builds (what runs): 272 bytes at the time of writing (392
    // with the receive state and write queue inline, 592 before the rare
    // state was boxed). Debug builds lay futures out less tightly (280
    // then); the bound holds for both.
    let limit = 280;
    assert!(size <= limit, "the echo future is {size} bytes (over {limit}: a 512-byte tokio task)");
}

#[tokio::test]
async fn the_echo_echoes() {
    // The loop measured above works: whole messages, and a message larger
    // than the gathering threshold that goes back in fragments.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { echo(listener.accept().await.unwrap().0).await });
    let (mut ws, _) = wsx::connect(url).await.unwrap();
    let big = vec![7u8; 200 << 10];
    ws.send(wsx::Message::text("hello")).await.unwrap();
    ws.send(wsx::Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), wsx::Message::text("hello"));
    assert_eq!(ws.recv().await.unwrap().unwrap(), wsx::Message::binary(big));
    ws.close(wsx::CloseCode::Normal, "").await.unwrap();
    while ws.recv().await.is_some() {}
    task.await.unwrap().unwrap();
}
