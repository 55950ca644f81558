//! What permessage-deflate costs a server per connection, and what it
//! gains, for each memory preset (`CompressionPreset`) against the server
//! default (`Shared`: no context takeover). Not timed by criterion: it
//! prints one table of measurements.
//!
//! Run: `cargo bench -p wsx-proto --bench compression` (options after `--`:
//! `--connections N`, default 2000; `--messages N`, default 5000).
//!
//! - bytes per connection: heap held by N server connections after each
//!   has sent and received a few compressed chat messages and gone idle
//!   (`shrink_idle`), counted by this binary's global allocator, divided by
//!   N, minus what a connection without compression holds. The RSS growth
//!   per connection is shown beside it (it adds the allocator's rounding
//!   and headers); each row is measured in a fresh process (this binary
//!   run again with `--row I`), so that no row reuses memory another freed.
//! - ratio: bytes on the wire (frames) for a chat-like stream of JSON
//!   messages sent by the server over one connection, over the bytes of the
//!   same frames uncompressed. The receiving client checks every message.
//! - µs per message: the server's time to compress and frame one message
//!   (the best of three runs).
//!
//! The chat stream is generated deterministically: small JSON objects with
//! id, room, user, text and timestamp, as a chat room broadcasts them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use wsx_proto::deflate::{client_accept_response, server_negotiate, CompressionPreset, DeflateConfig, DeflateParams};
use wsx_proto::fuzzing::parse_extensions;
use wsx_proto::{Config, Connection, Incoming, Message, Mode, Role};

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(new_size, Ordering::Relaxed);
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// VmRSS in bytes (whatever the page size).
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok());
    kib.unwrap_or(0usize) * 1024
}

/// A deterministic chat-like stream: JSON objects of 100-250 bytes.
fn chat_stream(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "hey", "hi", "hello", "anyone", "here", "the", "a", "is", "it", "to", "and", "you", "I", "we", "that", "this",
        "deploy", "build", "failed", "again", "works", "for", "me", "now", "lunch", "today", "meeting", "in", "5",
        "minutes", "thanks", "ok", "sure", "lol", "can", "someone", "review", "my", "PR", "please", "merged", "yes",
        "no", "maybe", "tomorrow", "server", "is", "down", "back", "up", "coffee", "?", "!", "great", "job", "team",
        "release", "notes", "bug", "fixed", "ticket", "link", "docs", "updated", "test", "passing", "on", "main",
    ];
    const ROOMS: &[&str] = &["general", "random", "dev", "ops", "design", "support", "sales", "offtopic"];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    };
    let mut ts = 1_765_000_000_000u64;
    (0..n)
        .map(|i| {
            ts += 200 + next(5000) as u64;
            let words = 3 + next(20);
            let text: Vec<&str> = (0..words).map(|_| WORDS[next(WORDS.len())]).collect();
            format!(
                r#"{{"type":"message","id":{},"room":"{}","user":{{"id":{},"name":"user{}"}},"text":"{}","ts":{}}}"#,
                100_000 + i,
                ROOMS[next(ROOMS.len())],
                next(500),
                next(500),
                text.join(" "),
                ts
            )
        })
        .collect()
}

/// The parameters both ends agree on when a browser-like client (which
/// compresses every message) offers to a server with `server`.
fn negotiate(server: &DeflateConfig) -> (DeflateParams, DeflateParams) {
    let client = DeflateConfig::default().with_threshold(0);
    let (s, header) = server_negotiate(server, &parse_extensions(&client.client_offer()).unwrap()).unwrap();
    let c = client_accept_response(&client, &parse_extensions(&header).unwrap()).unwrap().unwrap();
    (s, c)
}

/// Heap (counted) and RSS per idle server connection after a few messages
/// each way.
fn per_connection(params: Option<(&DeflateParams, &DeflateParams)>, msgs: &[String], n: usize) -> (f64, f64) {
    let config = Config::default();
    let (heap0, rss0) = (IN_USE.load(Ordering::Relaxed), rss());
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut server = Connection::with_deflate(Role::Server, &config, params.map(|p| p.0));
        let mut client = Connection::with_deflate(Role::Client, &config, params.map(|p| p.1));
        for m in &msgs[..4] {
            server.writer.send(Message::text(m.as_str())).unwrap();
            drop(server.writer.take_output());
            client.writer.send(Message::text(m.as_str())).unwrap();
            server.reader.feed(&client.writer.take_output());
            assert!(matches!(server.receive(Mode::Whole), Ok(Some(Incoming::Message(_)))));
        }
        server.reader.shrink_idle();
        server.writer.shrink_idle();
        conns.push(server);
    }
    let heap = IN_USE.load(Ordering::Relaxed).saturating_sub(heap0);
    let rss = rss().saturating_sub(rss0);
    drop(conns);
    (heap as f64 / n as f64, rss as f64 / n as f64)
}

/// Wire bytes, the same uncompressed, and µs per message of the server
/// sending `msgs` over one connection; the client checks each one.
fn ratio(params: (&DeflateParams, &DeflateParams), msgs: &[String]) -> (usize, usize, f64) {
    let config = Config::default();
    let mut server = Connection::with_deflate(Role::Server, &config, Some(params.0));
    let mut client = Connection::with_deflate(Role::Client, &config, Some(params.1));
    let mut plain = Connection::new(Role::Server, &config);
    let (mut wire, mut raw, mut spent) = (0, 0, 0.0);
    for m in msgs {
        let t = Instant::now();
        server.writer.send(Message::text(m.as_str())).unwrap();
        let out = server.writer.take_output();
        spent += t.elapsed().as_secs_f64();
        wire += out.len();
        plain.writer.send(Message::text(m.as_str())).unwrap();
        raw += plain.writer.take_output().len();
        client.reader.feed(&out);
        match client.receive(Mode::Whole) {
            Ok(Some(Incoming::Message(got))) => assert_eq!(got, Message::text(m.as_str())),
            other => panic!("{other:?}"),
        }
    }
    (wire, raw, spent * 1e6 / msgs.len() as f64)
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(default)
}

/// The table's rows: a name and the server's settings (`None`: no
/// compression).
fn rows() -> Vec<(String, Option<DeflateConfig>)> {
    let mut rows: Vec<(String, Option<DeflateConfig>)> = vec![
        ("no compression".into(), None),
        ("`Shared` (the default: no context takeover, threshold 1 KiB)".into(), Some(DeflateConfig::server_default())),
        ("`Shared`, threshold 0".into(), Some(DeflateConfig::server_default().with_threshold(0))),
    ];
    for p in &CompressionPreset::ALL[1..] {
        rows.push((format!("`{p:?}`"), Some(DeflateConfig::preset(*p))));
    }
    // Context takeover without a memLevel: zlib-rs state, of fixed size.
    for bits in [9, 15] {
        let cfg = DeflateConfig::default().with_server_max_window_bits(bits).with_client_max_window_bits(bits);
        rows.push((format!("context takeover, no memLevel (zlib-rs), windows {bits}"), Some(cfg.with_threshold(32))));
    }
    rows
}

/// In a child process: heap and RSS per connection of row `row`, printed
/// as two numbers.
fn measure_row(row: usize, msgs: &[String], connections: usize) {
    // Warm the thread's spare buffers (and, through a compressed exchange,
    // its shared compressors) so that they are not charged to the row.
    let warm = negotiate(&DeflateConfig::server_default().with_threshold(0));
    per_connection(Some((&warm.0, &warm.1)), msgs, 64);
    let (_, cfg) = rows().swap_remove(row);
    let params = cfg.map(|c| negotiate(&c));
    let (heap, rss) = per_connection(params.as_ref().map(|(s, c)| (s, c)), msgs, connections);
    println!("{heap} {rss}");
}

fn main() {
    let connections = arg("--connections", 2000);
    let messages = arg("--messages", 5000);
    let msgs = chat_stream(messages);
    let row = arg("--row", usize::MAX);
    if row != usize::MAX {
        return measure_row(row, &msgs, connections);
    }
    let avg = msgs.iter().map(String::len).sum::<usize>() as f64 / msgs.len() as f64;
    println!("chat stream: {messages} JSON messages of {avg:.0} bytes on average; {connections} idle connections");
    println!("e.g. {}", msgs[0]);
    println!();
    println!("| server setting | window bits, memLevel | compression state per connection (heap) | RSS per connection | ratio (wire / uncompressed) | µs per message |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let exe = std::env::current_exe().unwrap();
    let mut base = None;
    for (i, (name, cfg)) in rows().into_iter().enumerate() {
        let out = std::process::Command::new(&exe)
            .args(["--row", &i.to_string(), "--connections", &connections.to_string(), "--messages", "8"])
            .output()
            .unwrap();
        assert!(out.status.success(), "row {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut nums = text.split_whitespace().map(|n| n.parse::<f64>().unwrap());
        let (heap, rss) = (nums.next().unwrap(), nums.next().unwrap());
        let Some(cfg) = cfg else {
            println!(
                "| {name} | — | — (the connection itself: {heap:.0} B heap, {:.1} KiB RSS) | — | 1 | — |",
                rss / 1024.0
            );
            base = Some((heap, rss));
            continue;
        };
        let (base_heap, base_rss) = base.unwrap();
        let (s, c) = negotiate(&cfg);
        // The time is the best of three runs (the machine is shared).
        let (wire, raw, us) =
            (0..3).map(|_| ratio((&s, &c), &msgs)).reduce(|a, b| if b.2 < a.2 { b } else { a }).unwrap();
        let (w, cw) = (s.server_max_window_bits, s.client_max_window_bits);
        let bits = match (s.server_no_context_takeover, s.mem_level) {
            (true, _) => "— (shared per thread)".to_string(),
            (false, Some(m)) => format!("{w}, {m} (client window {cw})"),
            (false, None) => format!("{w}, — (client window {cw})"),
        };
        println!(
            "| {name} | {bits} | {:.1} KiB | {:.1} KiB | {:.3} | {us:.2} |",
            (heap - base_heap) / 1024.0,
            (rss - base_rss) / 1024.0,
            wire as f64 / raw as f64,
        );
    }
}
