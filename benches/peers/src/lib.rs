//! What every echo server of the peer benchmark shares: the command line
//! (`--port P`, `--host H`), the runtime (tokio current_thread: one server
//! thread, so pinning the server to one core is fair to all), and the
//! "ready" line on stdout.

use std::io::Write;

// Every echo server links this library, so each gets the same allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// `--host` (default 127.0.0.1) and `--port` (default 9001, 0 picks one).
pub fn address() -> String {
    let mut host = "127.0.0.1".to_owned();
    let mut port = "9001".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" | "-p" => port = args.next().unwrap_or_else(|| usage()),
            "--host" => host = args.next().unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    format!("{host}:{port}")
}

fn usage() -> ! {
    eprintln!("usage: {} [--host H] [--port P]", std::env::args().next().unwrap_or_default());
    std::process::exit(1)
}

/// Run `server` on a current_thread runtime.
pub fn run<F: std::future::Future<Output = ()>>(server: impl FnOnce(TcpListener) -> F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let addr = address();
        let listener = match TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {addr}: {e}");
                std::process::exit(1)
            }
        };
        ready(listener.local_addr().expect("local address"));
        server(listener).await
    })
}

/// Print the address on stdout: the benchmark script waits for this line.
pub fn ready(addr: SocketAddr) {
    println!("listening on ws://{addr}");
    let _ = std::io::stdout().flush();
}
