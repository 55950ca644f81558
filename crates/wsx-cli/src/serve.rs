//! `wsx serve`: an echo server with graceful shutdown.

use clap::Args;
use std::io::Write;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use wsx::{CloseCode, Message};

/// Options of `wsx serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, short, default_value_t = 9001)]
    port: u16,
    /// Largest message accepted, in bytes (default 64 MiB, at most 2 GiB).
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Seconds to wait for clients to finish the closing handshake on shutdown.
    #[arg(long, default_value_t = 5.0)]
    shutdown_timeout: f64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(serve(args))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("wsx serve: echo server listening on ws://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, "listening");

    let config =
        wsx::Config::default().with_max_message_size(args.max_message_size).with_max_frame_size(args.max_message_size);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let config = config.clone();
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        if let Err(e) = echo(tcp, config, stop).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = &mut signal => break,
        }
    }
    drop(listener);
    let open = tasks.len();
    tracing::info!(connections = open, "shutting down: closing connections with 1001");
    let _ = stop_tx.send(true);
    let deadline = Duration::from_secs_f64(args.shutdown_timeout.max(0.0));
    let drained = tokio::time::timeout(deadline, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(left = tasks.len(), "shutdown timeout: dropping connections still open");
        tasks.abort_all();
    }
    println!("wsx serve: stopped");
    Ok(())
}

#[allow(clippy::result_large_err)]
async fn echo(tcp: TcpStream, config: wsx::Config, mut stop: watch::Receiver<bool>) -> wsx::Result<()> {
    tcp.set_nodelay(true)?;
    let mut ws = wsx::accept_with(tcp, |_: &wsx::handshake::UpgradeRequest| Ok(Default::default()), &config).await?;
    loop {
        tokio::select! {
            msg = ws.recv() => match msg {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => ws.feed(m).await?,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            _ = stop.changed() => break,
        }
    }
    // Graceful shutdown: 1001 Going Away, then finish the closing handshake.
    ws.close(CloseCode::GoingAway, "server shutting down").await?;
    while let Some(m) = ws.recv().await {
        m?;
    }
    Ok(())
}
