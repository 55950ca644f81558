//! Soak: `wsx serve` under many connections for a long time, with mixed
//! traffic and churn, watching its memory and every message.
//!
//! ```text
//! cargo bench -p wsx-cli --bench soak -- --connections 10000 --duration 600 --out docs/soak
//! scripts/plot-soak docs/soak/soak.csv docs/soak/soak-rss.png
//! ```
//!
//! The server is the release `wsx serve` binary in a child process (one
//! worker thread, keepalive on); this process runs the clients on one
//! thread. Each of the N client slots keeps one connection open: it sends a
//! message at random intervals (mean `--interval`), waits for its echo and
//! compares it byte for byte, answers pings meanwhile, and after a random
//! lifetime (mean `--lifetime`) closes with 1000 and opens a new connection
//! (churn). A quarter of the slots negotiate permessage-deflate. Messages:
//! 70 % small JSON-like text (16–256 B), 20 % binary (1–4 KiB), 9 % text of
//! 16 KiB, 1 % binary of 256 KiB.
//!
//! Every `--sample` seconds a CSV row records the server's resident set
//! (VmRSS), its CPU time, the open connections and the message counters.
//! At the end: the totals, lost (sent, never echoed) and corrupted
//! messages, and the resident set after the warm-up (the first fifth of
//! the run) against its end and its maximum, with the least-squares slope
//! over the rest of the run. Exit status 1 if a message was lost or
//! corrupted.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsx::{CloseCode, Message};

struct Args {
    connections: usize,
    duration: Duration,
    interval: Duration,
    lifetime: Duration,
    sample: Duration,
    out: std::path::PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        connections: 10_000,
        duration: Duration::from_secs(600),
        interval: Duration::from_secs(10),
        lifetime: Duration::from_secs(60),
        sample: Duration::from_secs(5),
        out: std::path::PathBuf::from("target/soak"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue; // cargo bench passes it
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let secs = |v: String| {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{flag}: {v:?} is not a positive number of seconds"))
        };
        match flag.as_str() {
            "--connections" => {
                a.connections = value()?.parse().map_err(|_| "--connections: not a number".to_string())?;
            }
            "--duration" => a.duration = secs(value()?)?,
            "--interval" => a.interval = secs(value()?)?,
            "--lifetime" => a.lifetime = secs(value()?)?,
            "--sample" => a.sample = secs(value()?)?,
            "--out" => a.out = value()?.into(),
            other => return Err(format!("unknown argument {other:?} (see the top of benches/soak.rs)")),
        }
    }
    Ok(a)
}

/// Counters shared by every client slot.
#[derive(Default)]
struct Counters {
    open: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    sent: AtomicU64,
    echoed: AtomicU64,
    bytes: AtomicU64,
    corrupted: AtomicU64,
    lost: AtomicU64,
    unexpected: AtomicU64,
    clean_closes: AtomicU64,
    unclean_closes: AtomicU64,
    pings: AtomicU64,
}

/// xorshift64*: cheap, deterministic per slot.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in [0, 2 × mean): mean `mean`.
    fn around(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(2.0 * (self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// The next message of a slot, a pure function of its random state.
fn message(rng: &mut Rng, serial: u64) -> Message {
    let pick = rng.below(100);
    let fill = |len: usize, rng: &mut Rng| {
        let seed = rng.next();
        (0..len).map(|i| (seed.rotate_left(i as u32 % 64) as u8) ^ (i as u8)).collect::<Vec<u8>>()
    };
    if pick < 70 {
        let len = 16 + rng.below(240) as usize;
        let mut s = format!("{{\"serial\":{serial},\"text\":\"");
        let seed = rng.next();
        while s.len() < len - 2 {
            s.push(char::from(b'a' + ((seed >> (s.len() % 60)) % 26) as u8));
        }
        s.push_str("\"}");
        Message::text(s)
    } else if pick < 90 {
        let len = 1024 + rng.below(3073) as usize;
        Message::binary(fill(len, rng))
    } else if pick < 99 {
        let seed = rng.next();
        Message::text((0..16 << 10).map(|i| char::from(b'a' + ((seed >> (i % 60)) % 26) as u8)).collect::<String>())
    } else {
        Message::binary(fill(256 << 10, rng))
    }
}

fn payload_len(m: &Message) -> u64 {
    match m {
        Message::Text(t) => t.len() as u64,
        Message::Binary(b) => b.len() as u64,
        _ => 0,
    }
}

/// One slot: connections one after another until `stop`.
async fn slot(id: usize, url: String, args: Arc<Args>, c: Arc<Counters>, stop: Arc<AtomicBool>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) * 0x1000_0000_01b3));
    // Spread the first connections and messages over the first interval.
    tokio::time::sleep(rng.around(args.interval) / 2).await;
    let compress = id.is_multiple_of(4);
    let mut serial = 0u64;
    while !stop.load(Relaxed) {
        let config = wsx::Config::default().with_compression(compress);
        let mut ws = match wsx::connect_with(url.as_str(), &config).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                if c.connect_failures.fetch_add(1, Relaxed) < 5 {
                    eprintln!("soak: slot {id}: connect failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        c.connects.fetch_add(1, Relaxed);
        c.open.fetch_add(1, Relaxed);
        let end = Instant::now() + rng.around(args.lifetime);
        let clean = 'conn: loop {
            // Wait, answering pings (recv answers them), then send one.
            let wait = tokio::time::sleep(rng.around(args.interval));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    m = ws.recv() => match m {
                        Some(Ok(Message::Ping(_))) => { c.pings.fetch_add(1, Relaxed); }
                        Some(Ok(Message::Pong(_))) => {}
                        Some(Ok(other)) => {
                            c.unexpected.fetch_add(1, Relaxed);
                            eprintln!("soak: slot {id}: unexpected {:?}", other.len());
                            break 'conn false;
                        }
                        Some(Err(e)) => {
                            eprintln!("soak: slot {id}: error while idle: {e}");
                            break 'conn false;
                        }
                        None => break 'conn false,
                    },
                }
            }
            if stop.load(Relaxed) || Instant::now() >= end {
                break true;
            }
            serial += 1;
            let msg = message(&mut rng, serial);
            let len = payload_len(&msg);
            if let Err(e) = ws.send(msg.clone()).await {
                c.lost.fetch_add(1, Relaxed);
                eprintln!("soak: slot {id}: send failed: {e}");
                break false;
            }
            c.sent.fetch_add(1, Relaxed);
            let echo = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    match ws.recv().await {
                        Some(Ok(Message::Ping(_))) => {
                            c.pings.fetch_add(1, Relaxed);
                        }
                        Some(Ok(Message::Pong(_))) => {}
                        other => return other,
                    }
                }
            })
            .await;
            match echo {
                Ok(Some(Ok(m))) if m == msg => {
                    c.echoed.fetch_add(1, Relaxed);
                    c.bytes.fetch_add(len, Relaxed);
                }
                Ok(Some(Ok(_))) => {
                    c.corrupted.fetch_add(1, Relaxed);
                    eprintln!("soak: slot {id}: the echo of message {serial} differs");
                    break false;
                }
                Ok(other) => {
                    c.lost.fetch_add(1, Relaxed);
                    eprintln!("soak: slot {id}: no echo of message {serial}: {other:?}");
                    break false;
                }
                Err(_) => {
                    c.lost.fetch_add(1, Relaxed);
                    eprintln!("soak: slot {id}: no echo of message {serial} in 30 s");
                    break false;
                }
            }
        };
        if clean && ws.close(CloseCode::Normal, "").await.is_ok() {
            let done = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match ws.recv().await {
                        Some(Ok(Message::Close(_))) | None => return true,
                        Some(Ok(_)) => {}
                        Some(Err(_)) => return false,
                    }
                }
            })
            .await;
            if done == Ok(true) {
                c.clean_closes.fetch_add(1, Relaxed);
            } else {
                c.unclean_closes.fetch_add(1, Relaxed);
            }
        } else {
            c.unclean_closes.fetch_add(1, Relaxed);
        }
        c.open.fetch_sub(1, Relaxed);
    }
}

/// `wsx serve` in a child process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Result<Server, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsx"))
        .args(["serve", "--port", "0", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start wsx serve: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.as_mut().ok_or("no stdout")?;
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .ok_or_else(|| format!("wsx serve said {line:?}"))?
        .to_owned();
    Ok(Server { child, url })
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let tck = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tck)
        })
        .unwrap_or(0.0)
}

struct Sample {
    t: f64,
    rss_kib: u64,
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx).powi(2)));
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    match run(args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    }
}

fn run(args: Arc<Args>) -> Result<bool, String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let server = start_server()?;
    let pid = server.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let csv_path = args.out.join("soak.csv");
    let mut csv = std::fs::File::create(&csv_path).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    writeln!(
        csv,
        "seconds,server_rss_kib,server_cpu_s,open,connects,sent,echoed,lost,corrupted,clean_closes,unclean_closes"
    )
    .map_err(|e| e.to_string())?;
    let rss_idle = rss_kib(pid);
    eprintln!(
        "soak: {} connections for {:?} against {} (pid {pid}, {rss_idle} KiB before the first client)",
        args.connections, args.duration, server.url
    );
    let start = Instant::now();
    let mut samples = Vec::new();
    rt.block_on(async {
        let mut slots = tokio::task::JoinSet::new();
        for id in 0..args.connections {
            slots.spawn(slot(id, server.url.clone(), args.clone(), counters.clone(), stop.clone()));
        }
        let mut tick = tokio::time::interval(args.sample);
        loop {
            tick.tick().await;
            let t = start.elapsed().as_secs_f64();
            let rss = rss_kib(pid);
            let c = &counters;
            let row = format!(
                "{t:.1},{rss},{:.2},{},{},{},{},{},{},{},{}",
                cpu_secs(pid),
                c.open.load(Relaxed),
                c.connects.load(Relaxed),
                c.sent.load(Relaxed),
                c.echoed.load(Relaxed),
                c.lost.load(Relaxed),
                c.corrupted.load(Relaxed),
                c.clean_closes.load(Relaxed),
                c.unclean_closes.load(Relaxed),
            );
            let _ = writeln!(csv, "{row}");
            eprintln!(
                "soak: {t:>6.0} s  rss {:>7} KiB  open {:>6}  sent {:>9}  echoed {:>9}  lost {}  corrupted {}",
                rss,
                c.open.load(Relaxed),
                c.sent.load(Relaxed),
                c.echoed.load(Relaxed),
                c.lost.load(Relaxed),
                c.corrupted.load(Relaxed)
            );
            samples.push(Sample { t, rss_kib: rss });
            if start.elapsed() >= args.duration {
                break;
            }
        }
        stop.store(true, Relaxed);
        // Each slot finishes its round trip, waits out its interval and closes.
        let drained = tokio::time::timeout(args.interval * 2 + Duration::from_secs(40), async {
            while slots.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            eprintln!("soak: {} slots did not finish in time", slots.len());
            slots.abort_all();
        }
    });
    let c = &counters;
    let warm = args.duration.as_secs_f64() / 5.0;
    let after: Vec<(f64, f64)> =
        samples.iter().filter(|s| s.t >= warm).map(|s| (s.t / 60.0, s.rss_kib as f64)).collect();
    let first = after.first().map(|p| p.1).unwrap_or(0.0);
    let last = after.last().map(|p| p.1).unwrap_or(0.0);
    let max = after.iter().map(|p| p.1).fold(0.0, f64::max);
    let per_min = slope(&after);
    let (sent, echoed, lost, corrupted) =
        (c.sent.load(Relaxed), c.echoed.load(Relaxed), c.lost.load(Relaxed), c.corrupted.load(Relaxed));
    let secs = start.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "connections": args.connections,
        "duration_s": args.duration.as_secs_f64(),
        "connects": c.connects.load(Relaxed),
        "connect_failures": c.connect_failures.load(Relaxed),
        "sent": sent,
        "echoed": echoed,
        "echoed_bytes": c.bytes.load(Relaxed),
        "lost": lost,
        "corrupted": corrupted,
        "unexpected": c.unexpected.load(Relaxed),
        "clean_closes": c.clean_closes.load(Relaxed),
        "unclean_closes": c.unclean_closes.load(Relaxed),
        "pings_answered": c.pings.load(Relaxed),
        "server_rss_idle_kib": rss_idle,
        "server_rss_after_warmup_kib": first,
        "server_rss_end_kib": last,
        "server_rss_max_after_warmup_kib": max,
        "server_rss_slope_kib_per_min": per_min,
        "server_cpu_s": cpu_secs(pid),
    });
    let json_path = args.out.join("soak.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).unwrap_or_default())
        .map_err(|e| format!("{}: {e}", json_path.display()))?;
    println!("| soak: {} connections, {:.0} s | |", args.connections, secs);
    println!("|---|---|");
    println!(
        "| connections opened (churn) | {} ({} failed) |",
        c.connects.load(Relaxed),
        c.connect_failures.load(Relaxed)
    );
    println!("| messages sent / echoed intact | {sent} / {echoed} ({:.0} msg/s) |", echoed as f64 / secs);
    println!("| lost / corrupted | {lost} / {corrupted} |");
    println!("| closes clean / unclean | {} / {} |", c.clean_closes.load(Relaxed), c.unclean_closes.load(Relaxed));
    println!("| server RSS: idle / after warm-up / end / max | {rss_idle} / {first:.0} / {last:.0} / {max:.0} KiB |");
    println!("| server RSS slope after warm-up | {per_min:+.0} KiB/min |");
    println!("\nCSV: {}  JSON: {}", csv_path.display(), json_path.display());
    Ok(lost == 0 && corrupted == 0 && c.unexpected.load(Relaxed) == 0)
}
