//! `wsx bench URL`: round-trip load against an echo server.
//!
//! Closed loop (default): every connection keeps `--depth` messages in
//! flight, queued with `feed` so that a burst goes out in one write, and
//! sends the next one when an echo comes back; latency is measured from the
//! send. Open loop (`--rate R`): messages leave on a fixed schedule of R per
//! second across all connections whatever the server does, and latency is
//! measured from the *intended* send time, so a stalled server shows up in
//! the percentiles instead of slowing the load down (no coordinated
//! omission).
//!
//! Every echo is checked: each payload starts with its sequence number (16
//! hex digits) and continues with a fixed pattern, so a lost, reordered,
//! truncated or corrupted echo is counted as an error.
//!
//! `--idle N` opens N connections, reports, and holds them open (for memory
//! measurements of a server).

use crate::{connect_failure, io_phrase, parse_url, seconds, status, Failure};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use wsx::proto::Incoming;
use wsx::{CloseCode, MaybeTlsStream, Message, Utf8Bytes, WebSocket};

const AFTER_HELP: &str = "\
Exit status: 0 no errors; 1 bad arguments; 2 no connection could be opened;
3 errors were counted (failed connections, lost, reordered or corrupted
echoes, protocol errors, unexpected closes).

Examples:
  wsx bench ws://127.0.0.1:9001/ -c 100 -s 20 --duration 5
  wsx bench ws://127.0.0.1:9001/ -c 100 -s 20 --depth 16 --threads 1 --json
  wsx bench ws://127.0.0.1:9001/ -c 10 --rate 20000 --duration 30   # open loop
  wsx bench ws://127.0.0.1:9001/ --idle 10000 --duration 60
  wsx bench wss://localhost:9443/ --ca cert.pem --http2 -c 100   # 100 streams, shared connections";

/// Options of `wsx bench`.
#[derive(Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct BenchArgs {
    /// The echo server's URL (ws://host:port/path).
    url: String,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 10)]
    connections: usize,
    /// Payload size of each message, in bytes.
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 64)]
    size: usize,
    /// Messages in flight per connection (closed loop), sent in one write.
    #[arg(short = 'd', long, default_value_t = 1)]
    depth: usize,
    /// Offer permessage-deflate (off by default: the bench measures framing).
    #[arg(long)]
    compression: bool,
    /// Seconds measured (after the warm-up).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    warmup: f64,
    /// Open loop: send R messages per second in total, spread evenly over
    /// the connections; latency counts from the intended send time.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Send binary messages (the default).
    #[arg(long, conflicts_with = "text")]
    binary: bool,
    /// Send text messages.
    #[arg(long)]
    text: bool,
    /// Worker threads of the load generator (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the report as one JSON object (no progress bar).
    #[arg(long)]
    json: bool,
    /// Open N idle connections, print how many opened, and hold them for
    /// --duration seconds (for measuring a server's memory per connection).
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// Connections being opened at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds to wait for outstanding echoes after the end before counting
    /// them as lost.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    drain_timeout: f64,
    /// wss://: run every WebSocket over HTTP/2 (RFC 8441), many on each
    /// connection, or fail. By default HTTP/2 is used when the server takes
    /// WebSockets over it.
    #[arg(long, conflicts_with = "http1")]
    http2: bool,
    /// wss://: HTTP/1.1 only, one connection per WebSocket.
    #[arg(long)]
    http1: bool,
    /// wss://: trust the PEM certificates of FILE instead of the default
    /// roots (repeatable): a private CA, or the server's own certificate.
    #[arg(long = "ca", value_name = "FILE")]
    ca: Vec<std::path::PathBuf>,
    /// wss://: do not check the server's certificate at all (development
    /// only).
    #[arg(short = 'k', long)]
    insecure: bool,
}

/// Run `wsx bench`; returns the exit status.
pub fn run(args: BenchArgs) -> Result<u8, Failure> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().map_err(|e| Failure::error(format!("cannot start the runtime: {e}")))?;
    match args.idle {
        Some(n) => rt.block_on(idle(args.clone(), n)),
        None => rt.block_on(bench(args)),
    }
}

// ----------------------------------------------------------------- payload

/// The bytes of the sequence-number header (16 hex digits, or fewer for
/// smaller messages).
const HEADER: usize = 16;

/// Builds and checks payloads: `seq` in hex, then a fixed pattern (ASCII for
/// text, every byte value for binary).
#[derive(Clone)]
struct Payload {
    pattern: Bytes,
    text: bool,
}

impl Payload {
    fn new(size: usize, text: bool) -> Self {
        let pattern: Vec<u8> = (0..size)
            .map(|i| if text { b'a' + (i % 26) as u8 } else { (i.wrapping_mul(7).wrapping_add(13) % 256) as u8 })
            .collect();
        Self { pattern: pattern.into(), text }
    }

    fn header_len(&self) -> usize {
        self.pattern.len().min(HEADER)
    }

    fn header(&self, seq: u64) -> [u8; HEADER] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut h = [0u8; HEADER];
        for (i, b) in h.iter_mut().enumerate() {
            *b = DIGITS[((seq >> (60 - 4 * i)) & 0xf) as usize];
        }
        h
    }

    fn message(&self, seq: u64) -> Message {
        let n = self.header_len();
        let mut v = Vec::with_capacity(self.pattern.len());
        v.extend_from_slice(&self.header(seq)[HEADER - n..]);
        v.extend_from_slice(&self.pattern[n..]);
        if self.text {
            // ASCII by construction; the conversion validates (SIMD).
            match Utf8Bytes::try_from(Bytes::from(v)) {
                Ok(t) => Message::Text(t),
                Err(_) => Message::text(""),
            }
        } else {
            Message::Binary(v.into())
        }
    }

    /// What is wrong with `part`, the bytes at `offset` of an echo of
    /// message `seq`, if anything: echoes are checked piece by piece as
    /// they arrive, never reassembled.
    fn check_part(&self, part: &[u8], offset: usize, seq: u64) -> Result<(), &'static str> {
        let end = offset + part.len();
        if end > self.pattern.len() {
            return Err("wrong length");
        }
        let n = self.header_len();
        if offset < n {
            let h = end.min(n);
            if part[..h - offset] != self.header(seq)[HEADER - n + offset..HEADER - n + h] {
                return Err("out of order or corrupt header");
            }
        }
        let from = offset.max(n);
        if from < end && part[from - offset..] != self.pattern[from..end] {
            return Err("corrupt payload");
        }
        Ok(())
    }
}

/// The echo being received, checked chunk by chunk (the streaming
/// receive): an echo that comes back in fragments is not copied together,
/// so a server that forwards large messages as they arrive does not make
/// the load generator the bottleneck.
#[derive(Default)]
struct EchoCheck {
    /// Bytes of the current echo checked so far.
    offset: usize,
    /// The first thing found wrong with it.
    fault: Option<&'static str>,
}

// ------------------------------------------------------------------ report

/// Latency percentiles, in microseconds.
#[derive(Debug, Serialize, Default)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
    mean: f64,
}

/// The result of a run (`--json` prints it as is).
#[derive(Debug, Serialize)]
struct Report {
    url: String,
    connections: usize,
    size: usize,
    depth: usize,
    mode: &'static str,
    /// Open-loop rate, messages per second in total; `null` for closed loop.
    rate: Option<f64>,
    warmup_s: f64,
    duration_s: f64,
    /// Echoes received in the measured window.
    messages: u64,
    messages_per_sec: f64,
    /// Echoed payload bytes received per second (one direction).
    bytes_per_sec: f64,
    mb_per_sec: f64,
    latency_us: Latency,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    /// Echoes received over the whole run, warm-up and drain included
    /// (divide a server's CPU time by this).
    total_messages: u64,
    /// Connections that could not be opened (also counted in `errors`).
    connect_errors: usize,
    /// WebSockets opened over HTTP/2 (streams of shared connections); the
    /// others are HTTP/1.1 connections of their own.
    over_http2: usize,
}

/// What one connection measured.
struct ConnStats {
    hist: Histogram<u64>,
    measured: u64,
    total: u64,
    errors: BTreeMap<String, u64>,
}

impl ConnStats {
    fn new() -> Self {
        Self {
            hist: Histogram::new(3).expect("3 significant figures is valid"),
            measured: 0,
            total: 0,
            errors: BTreeMap::new(),
        }
    }

    fn error(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.errors.entry(kind.to_owned()).or_default() += n;
        }
    }
}

fn error_kind(e: &wsx::Error) -> String {
    match e {
        wsx::Error::Io(io) => format!("i/o: {}", io_phrase(io)),
        wsx::Error::Protocol(p) => format!("protocol: {p}"),
        wsx::Error::CloseTimeout => "close timeout".into(),
        other => other.to_string(),
    }
}

// ------------------------------------------------------------------- plan

/// The timeline and shape of a run, shared by every connection.
struct Plan {
    payload: Payload,
    depth: usize,
    /// Open loop: time between two messages of one connection.
    interval: Option<Duration>,
    start: Instant,
    measure_start: Instant,
    end: Instant,
    drain: Duration,
    /// Echoes received so far, for the progress bar.
    done: AtomicU64,
    errors: AtomicU64,
}

/// The client settings: messages up to `size`; no compression unless
/// `--compression` (by default a load test of the framing); the HTTP
/// version and TLS trust of the flags, TLS files read now (a missing one is
/// a bad argument).
fn config_for(args: &BenchArgs, size: usize) -> Result<wsx::Config, Failure> {
    let max = size.max(64 << 20);
    let config = wsx::Config::default().with_max_message_size(max).with_compression(args.compression);
    crate::client_transport(config, &args.url, &args.ca, args.insecure, args.http2, args.http1)
}

/// Open `n` connections, `concurrency` at a time.
async fn open_all(
    url: &str,
    n: usize,
    concurrency: usize,
    config: &wsx::Config,
) -> (Vec<WebSocket<MaybeTlsStream>>, Vec<wsx::Error>) {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (gate, url, config) = (gate.clone(), url.to_owned(), config.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            wsx::connect_with(url.as_str(), &config).await.map(|(ws, _)| ws)
        });
    }
    let (mut open, mut failed) = (Vec::with_capacity(n), Vec::new());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(ws)) => open.push(ws),
            Ok(Err(e)) => failed.push(e),
            Err(e) => failed.push(wsx::Error::Io(std::io::Error::other(e.to_string()))),
        }
    }
    (open, failed)
}

// ------------------------------------------------------------------ bench

async fn bench(args: BenchArgs) -> Result<u8, Failure> {
    parse_url(&args.url)?;
    let duration = seconds("--duration", args.duration)?;
    let warmup = seconds("--warmup", args.warmup)?;
    let drain = seconds("--drain-timeout", args.drain_timeout)?;
    if duration.is_zero() {
        return Err(Failure::error("--duration must be more than 0"));
    }
    if args.connections == 0 || args.depth == 0 {
        return Err(Failure::error("--connections and --depth must be at least 1"));
    }
    if args.size > 1 << 30 {
        return Err(Failure::error("--size must be at most 1 GiB"));
    }
    let interval = match args.rate {
        Some(r) if r.is_finite() && r > 0.0 => Some(
            Duration::try_from_secs_f64(args.connections as f64 / r)
                .map_err(|_| Failure::error(format!("--rate {r} is out of range")))?,
        ),
        Some(r) => return Err(Failure::error(format!("--rate must be a positive number, not {r}"))),
        None => None,
    };
    let text = args.text;

    let config = config_for(&args, args.size)?;
    let (sockets, failed) = open_all(&args.url, args.connections, args.connect_concurrency, &config).await;
    let over_http2 = sockets.iter().filter(|ws| ws.get_ref().http_version() == http::Version::HTTP_2).count();
    if sockets.is_empty() {
        let e = failed.first().map(|e| connect_failure(&args.url, e));
        return Err(e.unwrap_or_else(|| Failure::error("no connection")));
    }
    if let Some(e) = failed.first() {
        tracing::warn!(
            failed = failed.len(),
            "some connections could not be opened: {}",
            connect_failure(&args.url, e)
        );
    }

    let start = Instant::now();
    let plan = Arc::new(Plan {
        payload: Payload::new(args.size, text),
        depth: args.depth,
        interval,
        start,
        measure_start: start + warmup,
        end: start + warmup + duration,
        drain,
        done: AtomicU64::new(0),
        errors: AtomicU64::new(failed.len() as u64),
    });
    let n = sockets.len();
    let mut tasks = JoinSet::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let plan = plan.clone();
        tasks.spawn(async move {
            match plan.interval {
                Some(every) => open_loop(ws, &plan, every.mul_f64(i as f64 / n as f64)).await,
                None => closed_loop(ws, &plan).await,
            }
        });
    }

    let progress = (!args.json && std::io::stdout().is_terminal()).then(|| spawn_progress(plan.clone()));

    let mut hist: Histogram<u64> = Histogram::new(3).expect("valid histogram");
    let (mut measured, mut total) = (0u64, 0u64);
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    if !failed.is_empty() {
        error_kinds.insert("connect".into(), failed.len() as u64);
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(s) => {
                let _ = hist.add(&s.hist);
                measured += s.measured;
                total += s.total;
                for (k, v) in s.errors {
                    *error_kinds.entry(k).or_default() += v;
                }
            }
            Err(e) => *error_kinds.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    if let Some((bar, task)) = progress {
        task.abort();
        bar.finish_and_clear();
    }

    let secs = duration.as_secs_f64();
    let us = |v: u64| v as f64 / 1000.0;
    let latency = if hist.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50: us(hist.value_at_quantile(0.50)),
            p90: us(hist.value_at_quantile(0.90)),
            p99: us(hist.value_at_quantile(0.99)),
            p99_9: us(hist.value_at_quantile(0.999)),
            max: us(hist.max()),
            mean: hist.mean() / 1000.0,
        }
    };
    let errors = error_kinds.values().sum();
    let bytes_per_sec = measured as f64 * args.size as f64 / secs;
    let report = Report {
        url: args.url.clone(),
        connections: args.connections,
        size: args.size,
        depth: args.depth,
        mode: if text { "text" } else { "binary" },
        rate: args.rate,
        warmup_s: warmup.as_secs_f64(),
        duration_s: secs,
        messages: measured,
        messages_per_sec: measured as f64 / secs,
        bytes_per_sec,
        mb_per_sec: bytes_per_sec / 1e6,
        latency_us: latency,
        errors,
        error_kinds,
        total_messages: total,
        connect_errors: failed.len(),
        over_http2,
    };
    if args.json {
        let line = serde_json::to_string(&report).map_err(|e| Failure::error(e.to_string()))?;
        println!("{line}");
    } else {
        print_table(&report);
    }
    let _ = std::io::stdout().flush();
    Ok(if errors == 0 { status::OK } else { status::ABNORMAL })
}

/// Close cleanly (bounded by the close timeout), counting a failure.
async fn finish(mut ws: WebSocket<MaybeTlsStream>, stats: &mut ConnStats) {
    if ws.close(CloseCode::Normal, "").await.is_err() {
        return;
    }
    while let Some(m) = ws.recv().await {
        if let Err(e) = m {
            stats.error(&format!("closing: {}", error_kind(&e)), 1);
            return;
        }
    }
}

/// Count one error on this connection and in the run's live total.
fn count_error(plan: &Plan, stats: &mut ConnStats, kind: &str, n: u64) {
    stats.error(kind, n);
    plan.errors.fetch_add(n, Ordering::Relaxed);
}

/// What a `recv_chunk` of a load loop gave.
enum Received {
    /// The last chunk of an echo: whether it was intact.
    Echo(Result<(), &'static str>),
    /// A chunk before the last, or a control frame: nothing to count yet.
    Other,
    /// The connection ended (counted as an error).
    End,
}

/// Sort what `recv_chunk` gave, checking an echo's chunks against message
/// `expected` (the oldest in flight); an end of the connection is counted
/// as an error.
fn received(
    plan: &Plan,
    stats: &mut ConnStats,
    echo: &mut EchoCheck,
    incoming: Option<wsx::Result<Incoming>>,
    expected: Option<u64>,
) -> Received {
    match incoming {
        Some(Ok(Incoming::Chunk(c))) => {
            if c.first {
                *echo = EchoCheck::default();
                if c.text != plan.payload.text {
                    echo.fault = Some("wrong message type");
                }
            }
            if echo.fault.is_none() {
                if let Some(seq) = expected {
                    echo.fault = plan.payload.check_part(&c.data, echo.offset, seq).err();
                }
            }
            echo.offset += c.data.len();
            if !c.last {
                return Received::Other;
            }
            if echo.fault.is_none() && echo.offset != plan.payload.pattern.len() {
                echo.fault = Some("wrong length");
            }
            Received::Echo(echo.fault.map_or(Ok(()), Err))
        }
        Some(Ok(Incoming::Message(Message::Close(_)))) | None => {
            count_error(plan, stats, "closed by the server", 1);
            Received::End
        }
        Some(Ok(Incoming::Message(_))) => Received::Other,
        Some(Err(e)) => {
            count_error(plan, stats, &error_kind(&e), 1);
            Received::End
        }
    }
}

/// The drain timeout passed with `n` echoes outstanding.
fn count_lost(plan: &Plan, stats: &mut ConnStats, n: usize) {
    count_error(plan, stats, "lost (no echo before the drain timeout)", n as u64);
}

/// One echo arrived: check it, time it, count it.
fn on_echo(
    plan: &Plan,
    stats: &mut ConnStats,
    verdict: Result<(), &'static str>,
    sent: Option<(u64, Instant)>,
    now: Instant,
) {
    let Some((_, at)) = sent else {
        count_error(plan, stats, "unexpected message", 1);
        return;
    };
    if let Err(kind) = verdict {
        count_error(plan, stats, kind, 1);
    }
    stats.total += 1;
    plan.done.fetch_add(1, Ordering::Relaxed);
    if now >= plan.measure_start && now < plan.end {
        let _ = stats.hist.record(now.saturating_duration_since(at).as_nanos().max(1) as u64);
        stats.measured += 1;
    }
}

/// Keep `depth` messages in flight until the end, then collect the last
/// echoes and close.
async fn closed_loop(mut ws: WebSocket<MaybeTlsStream>, plan: &Plan) -> ConnStats {
    let mut stats = ConnStats::new();
    let mut echo = EchoCheck::default();
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(plan.depth);
    let mut seq = 0u64;
    for _ in 0..plan.depth {
        if let Err(e) = ws.feed(plan.payload.message(seq)).await {
            count_error(plan, &mut stats, &error_kind(&e), 1);
            return stats;
        }
        inflight.push_back((seq, Instant::now()));
        seq += 1;
    }
    let give_up = tokio::time::sleep_until(plan.end + plan.drain);
    tokio::pin!(give_up);
    while !inflight.is_empty() {
        // `recv_chunk` writes what `feed` queued before it waits.
        let incoming = tokio::select! {
            biased;
            i = ws.recv_chunk() => i,
            _ = &mut give_up => {
                count_lost(plan, &mut stats, inflight.len());
                return stats;
            }
        };
        match received(plan, &mut stats, &mut echo, incoming, inflight.front().map(|f| f.0)) {
            Received::Echo(verdict) => {
                let now = Instant::now();
                on_echo(plan, &mut stats, verdict, inflight.pop_front(), now);
                if now < plan.end {
                    if let Err(e) = ws.feed(plan.payload.message(seq)).await {
                        count_error(plan, &mut stats, &error_kind(&e), 1);
                        return stats;
                    }
                    inflight.push_back((seq, now));
                    seq += 1;
                }
            }
            Received::Other => {}
            Received::End => return stats,
        }
    }
    finish(ws, &mut stats).await;
    stats
}

/// Send on a fixed schedule (`interval`, starting at `offset`) until the
/// end, whatever the echoes do; latency counts from the intended time.
async fn open_loop(mut ws: WebSocket<MaybeTlsStream>, plan: &Plan, offset: Duration) -> ConnStats {
    let mut stats = ConnStats::new();
    let mut echo = EchoCheck::default();
    let interval = plan.interval.unwrap_or(Duration::from_millis(1));
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut seq = 0u64;
    let mut next = plan.start + offset;
    let ticker = tokio::time::sleep_until(next);
    tokio::pin!(ticker);
    let give_up = tokio::time::sleep_until(plan.end + plan.drain);
    tokio::pin!(give_up);
    loop {
        let sending = next < plan.end;
        if !sending && inflight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            incoming = ws.recv_chunk() => {
                match received(plan, &mut stats, &mut echo, incoming, inflight.front().map(|f| f.0)) {
                    Received::Echo(verdict) => on_echo(plan, &mut stats, verdict, inflight.pop_front(), Instant::now()),
                    Received::Other => {}
                    Received::End => return stats,
                }
            }
            _ = &mut ticker, if sending => {
                // Everything due, each with its own intended time (a late
                // timer or a full socket delays the send, not the clock).
                let now = Instant::now();
                while next <= now && next < plan.end {
                    if let Err(e) = ws.feed(plan.payload.message(seq)).await {
                        count_error(plan, &mut stats, &error_kind(&e), 1);
                        return stats;
                    }
                    inflight.push_back((seq, next));
                    seq += 1;
                    next += interval;
                }
                ticker.as_mut().reset(next);
            }
            _ = &mut give_up => {
                count_lost(plan, &mut stats, inflight.len());
                return stats;
            }
        }
    }
    finish(ws, &mut stats).await;
    stats
}

/// A progress bar on stdout with the live rate, updated 5 times a second.
fn spawn_progress(plan: Arc<Plan>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let total_ms = (plan.end - plan.start).as_millis() as u64;
    let bar = progress_bar(plan.end - plan.start, ProgressDrawTarget::stdout());
    let b = bar.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let (mut last_n, mut last_t) = (0u64, Instant::now());
        loop {
            tick.tick().await;
            let now = Instant::now();
            let n = plan.done.load(Ordering::Relaxed);
            let dt = now.duration_since(last_t).as_secs_f64();
            let rate = if dt > 0.0 { (n - last_n) as f64 / dt } else { 0.0 };
            (last_n, last_t) = (n, now);
            b.set_position(now.duration_since(plan.start).as_millis().min(total_ms as u128) as u64);
            let phase = if now < plan.measure_start { "warming up, " } else { "" };
            let errors = plan.errors.load(Ordering::Relaxed);
            b.set_message(format!("{phase}{} msg/s, {errors} errors", group(rate as u64)));
        }
    });
    (bar, task)
}

/// A bar over `total` (warm-up and measurement; its position in
/// milliseconds) that shows the time elapsed and the total.
fn progress_bar(total: Duration, target: ProgressDrawTarget) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), target);
    // `{elapsed}` is compact ("3s"); the total is written the same way.
    let template = format!("{{spinner}} [{{bar:30}}] {{elapsed:>4}} / {:#}  {{msg}}", indicatif::HumanDuration(total));
    let style =
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// 1234567 → "1,234,567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in µs with a fitting unit.
fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

fn human_size(b: usize) -> String {
    match b {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn print_table(r: &Report) {
    let shape = match r.rate {
        Some(rate) => format!("open loop at {} msg/s", group(rate as u64)),
        None => format!("depth {}", r.depth),
    };
    let over = match r.over_http2 {
        0 => String::new(),
        n if n + r.connect_errors == r.connections => " over HTTP/2".to_owned(),
        n => format!(" ({n} over HTTP/2)"),
    };
    println!(
        "wsx bench {}: {} connections{over} × {} {}, {}, {} s measured after {} s warm-up",
        r.url,
        r.connections,
        human_size(r.size),
        r.mode,
        shape,
        r.duration_s,
        r.warmup_s
    );
    println!();
    let rows = [
        ("messages/s", group(r.messages_per_sec.round() as u64)),
        ("MB/s", format!("{:.2}", r.mb_per_sec)),
        ("latency p50", human_us(r.latency_us.p50)),
        ("latency p90", human_us(r.latency_us.p90)),
        ("latency p99", human_us(r.latency_us.p99)),
        ("latency p99.9", human_us(r.latency_us.p99_9)),
        ("latency max", human_us(r.latency_us.max)),
        ("messages", group(r.messages)),
        ("errors", group(r.errors)),
    ];
    println!("| {:<13} | {:>14} |", "metric", "value");
    println!("| {:-<13} | {:->14} |", "", "");
    for (k, v) in rows {
        println!("| {k:<13} | {v:>14} |");
    }
    for (k, v) in &r.error_kinds {
        println!("  {v} × {k}");
    }
    if r.rate.is_some() {
        println!("\nLatency is measured from each message's intended send time (open loop).");
    }
    println!("MB/s counts echoed payload bytes received.");
}

// ------------------------------------------------------------------- idle

#[derive(Serialize)]
struct IdleReport {
    idle: usize,
    opened: usize,
    failed: usize,
}

/// Open `n` connections and hold them for `--duration` seconds.
async fn idle(args: BenchArgs, n: usize) -> Result<u8, Failure> {
    parse_url(&args.url)?;
    let hold = seconds("--duration", args.duration)?;
    let (sockets, failed) = open_all(&args.url, n, args.connect_concurrency, &config_for(&args, 0)?).await;
    if sockets.is_empty() && n > 0 {
        let e = failed.first().map(|e| connect_failure(&args.url, e));
        return Err(e.unwrap_or_else(|| Failure::error("no connection")));
    }
    let report = IdleReport { idle: n, opened: sockets.len(), failed: failed.len() };
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| Failure::error(e.to_string()))?);
    } else {
        println!(
            "wsx bench: {} idle connections open ({} failed); holding them for {} s",
            report.opened, report.failed, args.duration
        );
    }
    let _ = std::io::stdout().flush();
    let mut set = JoinSet::new();
    for mut ws in sockets {
        // Reading keeps the connection alive: pings are answered, a close
        // is finished.
        set.spawn(async move { while let Some(Ok(_)) = ws.recv().await {} });
    }
    let closed_early = tokio::select! {
        _ = tokio::time::sleep(hold) => false,
        _ = tokio::signal::ctrl_c() => false,
        _ = async { while set.join_next().await.is_some() {} } => true,
    };
    Ok(if failed.is_empty() && !closed_early { status::OK } else { status::ABNORMAL })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_progress_bar_shows_the_total_time() {
        let screen = Screen::default();
        let bar = progress_bar(Duration::from_secs(6), ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.set_position(1500);
        bar.finish();
        let shown = screen.0.lock().unwrap().clone();
        assert!(shown.contains(" / 6s"), "{shown:?}");
    }

    /// Message `seq` checked in pieces split at every pair of positions.
    fn check_split(p: &Payload, bytes: &[u8], seq: u64) -> Result<(), &'static str> {
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                for (part, offset) in [(&bytes[..a], 0), (&bytes[a..b], a), (&bytes[b..], b)] {
                    p.check_part(part, offset, seq)?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn an_intact_echo_passes_however_it_is_split() {
        for (size, text) in [(0, false), (5, true), (20, false), (40, true)] {
            let p = Payload::new(size, text);
            let m = p.message(0x1234_5678_9abc_def0);
            assert_eq!(check_split(&p, m.as_bytes(), 0x1234_5678_9abc_def0), Ok(()), "size {size}");
        }
    }

    #[test]
    fn every_corrupted_byte_is_found_in_any_piece() {
        let p = Payload::new(40, false);
        let seq = 77;
        let good = p.message(seq).as_bytes().to_vec();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            for cut in 0..=bad.len() {
                let first = p.check_part(&bad[..cut], 0, seq);
                let second = p.check_part(&bad[cut..], cut, seq);
                let want = if i < HEADER { "out of order or corrupt header" } else { "corrupt payload" };
                assert_eq!(first.and(second), Err(want), "byte {i}, cut at {cut}");
            }
        }
    }

    #[test]
    fn another_sequence_number_or_extra_bytes_are_errors() {
        let p = Payload::new(20, true);
        let m = p.message(8);
        assert_eq!(p.check_part(m.as_bytes(), 0, 9), Err("out of order or corrupt header"));
        assert_eq!(p.check_part(b"x", 20, 8), Err("wrong length"));
    }
}
