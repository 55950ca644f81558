//! Echo server for the Autobahn TestSuite's fuzzing client.
//!
//! ```sh
//! cargo run --release -p wsx --example autobahn-server -- 127.0.0.1:9002
//! ../shared/autobahn/fuzzingclient ws://127.0.0.1:9002 out/ab-server
//! ```

use tokio::net::{TcpListener, TcpStream};
use wsx::Message;

async fn echo(tcp: TcpStream) -> wsx::Result<()> {
    tcp.set_nodelay(true)?;
    let mut ws = wsx::accept(tcp).await?;
    while let Some(msg) = ws.recv().await {
        if let m @ (Message::Text(_) | Message::Binary(_)) = msg? {
            ws.feed(m).await?;
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9002".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("autobahn echo server on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = echo(tcp).await {
                eprintln!("connection: {e}");
            }
        });
    }
}
