//! A minimal load generator for pipelined echo traffic: the second
//! instrument of `benches/run-peers` (`--generator raw`), beside `wsx bench`.
//!
//! `wsx bench` is a full WebSocket client (it parses every frame with the
//! protocol core and checks each echo piece by piece); on one core it tops
//! out near 1.5 M small messages per second here, below what some of the
//! servers can echo, so it measures itself instead of the server. This one
//! does the least a checking client can do per message, so the server is
//! the bottleneck:
//!
//! - each message is a masked binary frame (a fresh random key per frame,
//!   RFC 6455 §5.3) carrying a sequence number in hex and a fixed pattern,
//!   the same payload as `wsx bench`;
//! - every byte the server sends is compared with the echo it must be
//!   (the unmasked frame header, the sequence number of the oldest message
//!   in flight, the pattern), as it arrives: content, order, framing, and
//!   nothing extra;
//! - one clock read per read and per write, not per message.
//!
//! Echoes must come back as single frames, which every server here does up
//! to 64 KiB (the largest size this generator accepts). Closed loop: each
//! connection keeps `--depth` messages in flight.
//!
//! Output (`--json`): the fields of `wsx bench --json` that the script
//! reads: `messages_per_sec`, `total_messages`, `latency_us`, `errors`,
//! `error_kinds`. With `--progress`, a line `progress SECONDS ECHOES` on
//! standard error every second (time since the first message, echoes
//! completed so far), for `benches/kernel-work`'s one-second slices.

use hdrhistogram::Histogram;
use rand::{RngCore, SeedableRng};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx::proto::handshake::{ClientHandshake, HeadReader};
use wsx::IntoClientRequest;
use wsx_proto::fuzzing::{apply_mask, FrameHeader, MAX_HEADER_LEN};

struct Args {
    url: String,
    connections: usize,
    size: usize,
    depth: usize,
    duration: Duration,
    warmup: Duration,
    progress: bool,
}

fn usage() -> ! {
    eprintln!("usage: load-raw ws://HOST:PORT/PATH [-c N] [-s BYTES] [--depth D] [--duration S] [--warmup S] [--json] [--progress]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let url = it.next().filter(|u| u.starts_with("ws://")).unwrap_or_else(|| usage());
    let mut a = Args {
        url,
        connections: 100,
        size: 20,
        depth: 1,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        progress: false,
    };
    let secs = |v: Option<String>| Duration::from_secs_f64(v.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()));
    let num = |v: Option<String>| v.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-c" | "--connections" => a.connections = num(it.next()),
            "-s" | "--size" => a.size = num(it.next()),
            "--depth" => a.depth = num(it.next()),
            "--duration" => a.duration = secs(it.next()),
            "--warmup" => a.warmup = secs(it.next()),
            "--json" => {}
            "--progress" => a.progress = true,
            // Accepted for the script's sake: this generator is one thread.
            "--threads" => {
                it.next();
            }
            _ => usage(),
        }
    }
    if a.size >= 1 << 16 || a.connections == 0 || a.depth == 0 {
        usage();
    }
    a
}

/// Sequence number in hex, then a pattern (as `wsx bench` sends).
struct Payload {
    pattern: Vec<u8>,
}

const HEADER: usize = 16;

impl Payload {
    /// The sequence number's part of the payload (its last `n` hex digits).
    fn seq_digits(&self, seq: u64) -> ([u8; HEADER], usize) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let n = self.pattern.len().min(HEADER);
        let mut d = [0u8; HEADER];
        for (i, b) in d[..n].iter_mut().enumerate() {
            *b = DIGITS[((seq >> (4 * (n - 1 - i))) & 0xf) as usize];
        }
        (d, n)
    }

    /// Append the payload of message `seq` to `out`; returns the first
    /// bytes of its echo: the unmasked frame header `head`, then the
    /// sequence number (the rest of the echo is the pattern).
    fn write(&self, seq: u64, head: &[u8], out: &mut Vec<u8>) -> Prefix {
        let (d, n) = self.seq_digits(seq);
        out.extend_from_slice(&d[..n]);
        out.extend_from_slice(&self.pattern[n..]);
        let mut bytes = [0u8; MAX_HEADER_LEN + HEADER];
        bytes[..head.len()].copy_from_slice(head);
        bytes[head.len()..head.len() + n].copy_from_slice(&d[..n]);
        Prefix { bytes, len: (head.len() + n) as u8 }
    }

    /// Whether `got` is bytes `pos..` of the echo whose prefix is `prefix`
    /// (after a `head_len`-byte frame header).
    fn echo_matches(&self, prefix: &Prefix, head_len: usize, pos: usize, got: &[u8]) -> bool {
        let prefix_len = prefix.len as usize;
        let end = pos + got.len();
        if pos < prefix_len {
            let k = end.min(prefix_len);
            if got[..k - pos] != prefix.bytes[pos..k] {
                return false;
            }
        }
        let from = pos.max(prefix_len);
        from >= end || got[from - pos..] == self.pattern[from - head_len..end - head_len]
    }
}

/// The start of an expected echo (frame header and sequence number).
struct Prefix {
    bytes: [u8; MAX_HEADER_LEN + HEADER],
    len: u8,
}

/// The header of a final binary frame of `len` bytes, masked with `mask`.
fn header(len: usize, mask: Option<[u8; 4]>, dst: &mut [u8; MAX_HEADER_LEN]) -> usize {
    let h =
        FrameHeader { fin: true, rsv1: false, rsv2: false, rsv3: false, opcode: 0x2, mask, payload_len: len as u64 };
    h.encode(dst)
}

struct Plan {
    payload: Payload,
    depth: usize,
    measure_start: Instant,
    end: Instant,
    /// Echoes completed by all connections, counted only with `--progress`.
    echoed: Option<AtomicU64>,
}

#[derive(Default)]
struct Stats {
    measured: u64,
    total: u64,
    error: Option<String>,
}

/// Connect and make the opening handshake with the protocol core's client
/// side (a fresh key, the response checked as `wsx::connect` checks it).
async fn handshake(url: &str) -> Result<TcpStream, Box<dyn std::error::Error>> {
    let request = url.into_client_request()?;
    let addr = request.uri().authority().ok_or("no host in the URL")?.to_string();
    let (head, client) = ClientHandshake::new(request)?;
    let mut s = TcpStream::connect(&addr).await?;
    s.set_nodelay(true)?;
    s.write_all(&head).await?;
    let mut buf = Vec::new();
    let mut reader = HeadReader::new(16 << 10);
    loop {
        if s.read_buf(&mut buf).await? == 0 {
            return Err("closed during the handshake".into());
        }
        if let Some((response, used)) = reader.response(&buf)? {
            client.check_response(&response)?;
            if used != buf.len() {
                return Err("bytes after the handshake response".into());
            }
            return Ok(s);
        }
    }
}

/// One connection's closed loop. Histogram values are nanoseconds.
async fn run(mut s: TcpStream, plan: &Plan, hist: &mut Histogram<u64>) -> Stats {
    let mut st = Stats::default();
    let size = plan.payload.pattern.len();
    let mut echo_head = [0u8; MAX_HEADER_LEN];
    let eh = header(size, None, &mut echo_head);
    let echo_len = eh + size;
    let mut out = Vec::with_capacity(plan.depth * (echo_len + 4));
    // The echoes owed, oldest first (their first bytes; the rest is the
    // pattern), and `pos` bytes of the oldest seen so far.
    let mut owed: VecDeque<Prefix> = VecDeque::with_capacity(plan.depth);
    let mut pos = 0usize;
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(plan.depth);
    let mut keys = vec![[0u8; 4]; plan.depth];
    let mut rbuf = vec![0u8; 64 << 10];
    let mut seq = 0u64;
    let mut to_send = plan.depth;
    // A CSPRNG seeded from the OS (ChaCha12), one per connection.
    let mut rng = rand::rngs::StdRng::from_os_rng();
    loop {
        if to_send > 0 {
            // A fresh key for every frame (§5.3), drawn for the batch at once.
            rng.fill_bytes(keys[..to_send].as_flattened_mut());
            out.clear();
            for key in &keys[..to_send] {
                let mut hb = [0u8; MAX_HEADER_LEN];
                let n = header(size, Some(*key), &mut hb);
                out.extend_from_slice(&hb[..n]);
                let start = out.len();
                owed.push_back(plan.payload.write(seq, &echo_head[..eh], &mut out));
                apply_mask(&mut out[start..], *key);
                seq += 1;
            }
            if let Err(e) = s.write_all(&out).await {
                st.error = Some(format!("write: {e}"));
                return st;
            }
            let now = Instant::now();
            sent_at.extend(std::iter::repeat_n(now, to_send));
            to_send = 0;
        }
        if sent_at.is_empty() {
            return st;
        }
        let n = match tokio::time::timeout_at((plan.end + Duration::from_secs(5)).into(), s.read(&mut rbuf)).await {
            Ok(Ok(0)) => {
                st.error = Some("closed by the server".into());
                return st;
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                st.error = Some(format!("read: {e}"));
                return st;
            }
            Err(_) => {
                st.error = Some("lost (no echo before the drain timeout)".into());
                return st;
            }
        };
        let now = Instant::now();
        // Every byte is compared with the echo it must be: this message's
        // unmasked frame header, sequence number and pattern.
        let mut got = &rbuf[..n];
        let mut done = 0;
        while !got.is_empty() {
            let Some(prefix) = owed.get(done) else {
                st.error = Some("more bytes than the echoes of the messages sent".into());
                return st;
            };
            let take = got.len().min(echo_len - pos);
            if !plan.payload.echo_matches(prefix, eh, pos, &got[..take]) {
                st.error = Some("echo differs from what was sent (content, order or framing)".into());
                return st;
            }
            got = &got[take..];
            pos += take;
            if pos == echo_len {
                pos = 0;
                done += 1;
            }
        }
        if done > 0 {
            if let Some(echoed) = &plan.echoed {
                echoed.fetch_add(done as u64, Ordering::Relaxed);
            }
            owed.drain(..done);
            for at in sent_at.drain(..done) {
                st.total += 1;
                if now >= plan.measure_start && now < plan.end {
                    let _ = hist.record(now.saturating_duration_since(at).as_nanos().max(1) as u64);
                    st.measured += 1;
                }
            }
            if now < plan.end {
                to_send = done;
            }
        }
    }
}

fn main() {
    let a = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let mut sockets = Vec::with_capacity(a.connections);
        for _ in 0..a.connections {
            match handshake(&a.url).await {
                Ok(s) => sockets.push(s),
                Err(e) => {
                    eprintln!("load-raw: cannot connect to {}: {e}", a.url);
                    std::process::exit(1);
                }
            }
        }
        let pattern = (0..a.size).map(|i| (i.wrapping_mul(7).wrapping_add(13) % 256) as u8).collect();
        let start = Instant::now();
        let plan: &'static Plan = Box::leak(Box::new(Plan {
            payload: Payload { pattern },
            depth: a.depth,
            measure_start: start + a.warmup,
            end: start + a.warmup + a.duration,
            echoed: a.progress.then(|| AtomicU64::new(0)),
        }));
        if let Some(echoed) = &plan.echoed {
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval_at((start + Duration::from_secs(1)).into(), Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let n = echoed.load(Ordering::Relaxed);
                    eprintln!("progress {:.6} {n}", start.elapsed().as_secs_f64());
                }
            });
        }
        let mut tasks = tokio::task::JoinSet::new();
        for s in sockets {
            tasks.spawn(async move {
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let st = run(s, plan, &mut hist).await;
                (st, hist)
            });
        }
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        let (mut measured, mut total) = (0u64, 0u64);
        let mut kinds = std::collections::BTreeMap::<String, u64>::new();
        while let Some(r) = tasks.join_next().await {
            let (st, h) = r.expect("connection task");
            let _ = hist.add(&h);
            measured += st.measured;
            total += st.total;
            if let Some(e) = st.error {
                *kinds.entry(e).or_default() += 1;
            }
        }
        let us = |v: u64| v as f64 / 1000.0;
        let secs = a.duration.as_secs_f64();
        let report = serde_json::json!({
            "generator": "load-raw",
            "connections": a.connections,
            "size": a.size,
            "depth": a.depth,
            "messages": measured,
            "messages_per_sec": measured as f64 / secs,
            "total_messages": total,
            "latency_us": {
                "p50": us(hist.value_at_quantile(0.5)),
                "p90": us(hist.value_at_quantile(0.9)),
                "p99": us(hist.value_at_quantile(0.99)),
                "p99_9": us(hist.value_at_quantile(0.999)),
                "max": us(hist.max()),
                "mean": hist.mean() / 1000.0,
            },
            "errors": kinds.values().sum::<u64>(),
            "error_kinds": kinds,
        });
        println!("{report}");
    });
}
