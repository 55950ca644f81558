//! Heap and RSS per idle server connection.
//!
//! Opens N WebSocket connections (default 10,000) from a child process (so
//! that client memory is not counted), lets the server side go idle in
//! `recv()`, and reports the server's heap growth (counted by a global
//! allocator) and RSS growth per connection.
//!
//! With `--deflate`, each client offers permessage-deflate and sends one
//! compressed 4 KiB message that the server echoes (compressed), so the
//! server's compressor and decompressor exist; `--no-context-takeover`
//! asks for no context takeover in both directions, and
//! `--server-context-takeover` makes the server accept with
//! `DeflateConfig::default()` (context takeover both ways) instead of its
//! default (none); `--preset NAME` makes it accept with a memory preset
//! (`dedicated-3k` ... `dedicated-256k`, see docs/compression.md), the
//! client compressing within the window the server asks of it.
//!
//! ```sh
//! cargo bench -p wsx --bench idle                      # 10,000 connections
//! cargo bench -p wsx --bench idle -- 2000              # another count
//! cargo bench -p wsx --bench idle -- --deflate
//! cargo bench -p wsx --bench idle -- --deflate --no-context-takeover
//! cargo bench -p wsx --bench idle -- --deflate --preset dedicated-3k
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Counting;
static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged and only
// adds bookkeeping of the sizes; layouts are passed through as given.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// A masked, compressed binary frame of 4 KiB of text-like data, made with
/// a `2^bits` window.
fn compressed_frame(bits: u8) -> Vec<u8> {
    let text: Vec<u8> = (0..4096u32).map(|i| b"abcdefghij klmnop"[(i * 7 % 17) as usize]).collect();
    let mut c = flate2::Compress::new_with_window_bits(flate2::Compression::new(6), false, bits);
    let mut out = Vec::with_capacity(8192);
    c.compress_vec(&text, &mut out, flate2::FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    let key = [1u8, 2, 3, 4];
    let mut frame = vec![0x82 | 0x40, 0x80 | 126];
    frame.extend_from_slice(&(out.len() as u16).to_be_bytes());
    frame.extend_from_slice(&key);
    frame.extend(out.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Child process: open `n` raw WebSocket connections, print "ready", hold
/// them until stdin closes.
fn client(addr: &str, n: usize, bits: u8, offer: &str) {
    let mut socks = Vec::with_capacity(n);
    let ext = if offer.is_empty() { String::new() } else { format!("Sec-WebSocket-Extensions: {offer}\r\n") };
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    let frame = compressed_frame(bits);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "server closed during handshake");
            got.extend_from_slice(&buf[..k]);
        }
        assert!(got.starts_with(b"HTTP/1.1 101"));
        if !offer.is_empty() {
            assert!(String::from_utf8_lossy(&got).contains("permessage-deflate"), "deflate not negotiated");
            s.write_all(&frame).unwrap();
        }
        socks.push(s);
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn wsx_proto_deflate_default() -> wsx::proto::deflate::DeflateConfig {
    wsx::proto::deflate::DeflateConfig::default()
}

fn main() {
    if let Ok(spec) = std::env::var("WSX_IDLE_CLIENT") {
        let mut it = spec.splitn(4, ',');
        let (addr, n, bits) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        return client(addr, n.parse().unwrap(), bits.parse().unwrap(), it.next().unwrap_or(""));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let deflate = args.iter().any(|a| a == "--deflate");
    let nct = args.iter().any(|a| a == "--no-context-takeover");
    let server_takeover = args.iter().any(|a| a == "--server-context-takeover");
    let preset: Option<wsx::proto::deflate::CompressionPreset> =
        args.iter().position(|a| a == "--preset").map(|i| args[i + 1].parse().unwrap());
    let config = match preset {
        Some(p) => wsx::Config::default().with_compression_preset(p),
        None if server_takeover => wsx::Config::default().with_deflate(wsx_proto_deflate_default()),
        None => wsx::Config::default(),
    };
    // The client's window: what the preset's server asks of it.
    let bits = preset.and_then(|p| p.window_and_mem_level()).map_or(15, |(w, _)| w);
    let config: &'static wsx::Config = Box::leak(Box::new(config));
    let offer = match (deflate, nct) {
        (false, _) => "",
        (true, false) => "permessage-deflate; client_max_window_bits",
        (true, true) => {
            "permessage-deflate; client_max_window_bits; server_no_context_takeover; client_no_context_takeover"
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let counter = open.clone();
        tokio::task::yield_now().await;
        let heap0 = HEAP.load(Ordering::Relaxed);
        let rss0 = rss_kib();
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                // The handshake future (boxed: 8 bytes) is made outside the
                // task: what an async block captures stays in its future for
                // the task's whole life, and a captured TcpStream moved into
                // the handshake would keep 24 dead bytes in every idle task.
                let handshake = wsx::accept_with(tcp, |_: &_| Ok(Default::default()), config);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut ws = handshake.await.unwrap();
                    counter.fetch_add(1, Ordering::Relaxed);
                    while let Some(Ok(m)) = ws.recv().await {
                        if m.is_binary() && ws.feed(m).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env("WSX_IDLE_CLIENT", format!("{addr},{n},{bits},{offer}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        });
        let line = ready.await.unwrap();
        assert_eq!(line.trim(), "ready");
        while open.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let heap = HEAP.load(Ordering::Relaxed) - heap0;
        let rss = rss_kib().saturating_sub(rss0);
        println!(
            "idle connections: {n}, permessage-deflate: {}{}",
            if offer.is_empty() { "off" } else { offer },
            match preset {
                Some(p) => format!(" (server: preset {p})"),
                None if server_takeover => " (server: DeflateConfig::default())".to_owned(),
                None => String::new(),
            }
        );
        println!(
            "server heap per idle connection: {:.2} KiB ({} bytes)",
            heap as f64 / n as f64 / 1024.0,
            heap / n as isize
        );
        println!("server RSS per idle connection:  {:.2} KiB", rss as f64 / n as f64);
        drop(child.stdin.take());
        let _ = child.wait();
        acceptor.abort();
    });
}
