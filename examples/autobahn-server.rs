//! Echo server for the Autobahn TestSuite's fuzzing client.
//!
//! ```sh
//! cargo run --release -p wsx --example autobahn-server -- 127.0.0.1:9002
//! ../shared/autobahn/fuzzingclient ws://127.0.0.1:9002 out/ab-server
//! ```
//!
//! An optional second argument is the server's compression memory preset
//! (`shared`, the default, or `dedicated-3k` ... `dedicated-256k`), to run
//! the compression cases (12.*, 13.*) against it: `scripts/autobahn
//! --compression dedicated-3k`.

use tokio::net::{TcpListener, TcpStream};
use wsx::handshake::{Accept, UpgradeRequest};
use wsx::proto::deflate::CompressionPreset;
use wsx::{Config, Message};

async fn echo(tcp: TcpStream, config: &Config) -> wsx::Result<()> {
    tcp.set_nodelay(true)?;
    let mut ws = wsx::accept_with(tcp, |_: &UpgradeRequest| Ok(Accept::new()), config).await?;
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
    let preset = match std::env::args().nth(2) {
        Some(name) => name.parse().map_err(std::io::Error::other)?,
        None => CompressionPreset::Shared,
    };
    let config = std::sync::Arc::new(Config::default().with_compression_preset(preset));
    let listener = TcpListener::bind(&addr).await?;
    println!("autobahn echo server on ws://{} (compression: {preset})", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = echo(tcp, &config).await {
                eprintln!("connection: {e}");
            }
        });
    }
}
