//! Socket.IO fan-out: N Socket.IO clients in one room, one publisher
//! emitting events at a fixed rate, against several Socket.IO servers in
//! the same harness on the same machine.
//!
//! Servers (each a child process on a free loopback port, one after the
//! other), all serving the relay contract on namespace `/`:
//!
//! - `join(room, ack)`: join the room, `ack(true)`;
//! - `leave(room, ack)`: leave it, `ack(true)`;
//! - `publish(room, event, ...args[, ack])`: `socket.to(room).emit(event,
//!   ...args)` (everyone in the room but the sender), then `ack(true)` when
//!   an ack was asked.
//!
//! | name | server |
//! | --- | --- |
//! | `node` | the official `socket.io` 4.8 on Node (`benches/socketio/node/server.mjs`) |
//! | `socketioxide` | socketioxide 0.18 on one tokio thread (`benches/socketio/socketioxide`) |
//! | `wsx` | `wsx serve --socketio --threads 1 --port P` |
//!
//! The clients live in this process and speak Engine.IO v4 and Socket.IO
//! v5 over a websocket themselves (`/socket.io/?EIO=4&transport=websocket`,
//! `40`, `420["join","bench"]`, pings `2` answered with `3`), with wsx's
//! client and `wsx_hub::socketio::packet`: N subscribers (one task each,
//! on one single-threaded runtime) join the room `bench`; the publisher
//! (its own thread) emits `publish("bench","tick",{"seq":n,"t":NS,...})`
//! at `--rate` per second for `--seconds`, `t` the send time in ns since
//! the run's start and the payload padded to `--size` bytes of JSON.
//!
//! Measured per server: its CPU time (utime + stime of its process, from
//! `/proc/PID/stat`) from the first event published to the last one
//! delivered, divided by the deliveries; deliveries per second (first to
//! last delivery); delivery latency (send to receive, hdrhistogram
//! p50/p90/p99/max); lost and duplicated events (every subscriber must
//! see each event once: the run fails otherwise); the server's RSS
//! (`/proc/PID/status` VmRSS) once all N clients are connected and joined,
//! minus the RSS before, per client.
//!
//! ```sh
//! benches/run-socketio                                   # builds the servers, then runs this
//! cargo bench -p wsx-hub --bench socketio_fanout -- --servers node,socketioxide --subscribers 1000 --rate 100 --seconds 10
//! ```

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wsx::Message;
use wsx_hub::socketio::packet::{Decoder, Packet, PacketType};

const ROOM: &str = "bench";
const EVENT: &str = "tick";
/// Handshakes in flight at once while subscribers connect.
const CONNECTING: usize = 64;
/// How long the run waits for deliveries that stopped coming.
const STALL: Duration = Duration::from_secs(10);
/// How long a server may take to listen.
const START: Duration = Duration::from_secs(30);

#[path = "common/mod.rs"]
mod common;
use common::{close_reason, field, lock, ms, next_message, proc, raise_nofile, Error, Tally, Ws};

/// How long a subscriber waits for the next message.
const MESSAGE_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Opts {
    subscribers: usize,
    rate: f64,
    seconds: f64,
    size: usize,
    servers: Vec<String>,
    reps: usize,
    node_dir: PathBuf,
    socketioxide_bin: PathBuf,
    wsx_bin: PathBuf,
    /// Clients offer permessage-deflate (a browser always does).
    compression: bool,
    json: bool,
}

impl Opts {
    fn messages(&self) -> u64 {
        ((self.rate * self.seconds).round() as u64).max(1)
    }
}

const USAGE: &str = "\
usage: cargo bench -p wsx-hub --bench socketio_fanout -- [options]
  --subscribers N        clients in the room (default 1000)
  --rate R               events per second (default 100)
  --seconds S            seconds of publishing (default 10)
  --size B               bytes of each event's JSON payload, e.g. 64 or 1024 (default 64)
  --servers LIST         among node,socketioxide,wsx (default all three)
  --reps N               run each server N times, interleaved (default 1)
  --node-dir DIR         the Node server's folder (default benches/socketio/node)
  --socketioxide-bin F   (default benches/socketio/socketioxide/target/release/bench-socketioxide)
  --wsx-bin F            (default $CARGO_TARGET_DIR/release/wsx, else target/release/wsx)
  --compression          clients offer permessage-deflate, as browsers do (default: they don't)
  --json                 print the results as JSON too";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse_args(args: &[String]) -> Result<Opts, Error> {
    let root = root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let mut o = Opts {
        subscribers: 1000,
        rate: 100.0,
        seconds: 10.0,
        size: 64,
        servers: vec!["node".into(), "socketioxide".into(), "wsx".into()],
        reps: 1,
        node_dir: root.join("benches/socketio/node"),
        socketioxide_bin: root.join("benches/socketio/socketioxide/target/release/bench-socketioxide"),
        wsx_bin: target.join("release/wsx"),
        compression: false,
        json: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        let bad = |name: &str, v: &str| format!("{name}: invalid value {v:?}\n{USAGE}");
        match a.as_str() {
            "--subscribers" => {
                let v = value(a)?;
                o.subscribers = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| bad(a, &v))?;
            }
            "--rate" => {
                let v = value(a)?;
                o.rate = v.parse().ok().filter(|r: &f64| r.is_finite() && *r > 0.0).ok_or_else(|| bad(a, &v))?;
            }
            "--seconds" => {
                let v = value(a)?;
                o.seconds = v.parse().ok().filter(|r: &f64| r.is_finite() && *r > 0.0).ok_or_else(|| bad(a, &v))?;
            }
            "--size" => {
                let v = value(a)?;
                o.size = v.parse().map_err(|_| bad(a, &v))?;
            }
            "--servers" => {
                let v = value(a)?;
                o.servers = v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if o.servers.is_empty()
                    || o.servers.iter().any(|s| !["node", "socketioxide", "wsx"].contains(&s.as_str()))
                {
                    return Err(bad(a, &v));
                }
            }
            "--reps" => {
                let v = value(a)?;
                o.reps = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| bad(a, &v))?;
            }
            "--node-dir" => o.node_dir = value(a)?.into(),
            "--socketioxide-bin" => o.socketioxide_bin = value(a)?.into(),
            "--wsx-bin" => o.wsx_bin = value(a)?.into(),
            "--compression" => o.compression = true,
            "--json" => o.json = true,
            // cargo passes `--bench` to bench binaries.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = parse_args(&args).and_then(|o| run(&o)) {
        eprintln!("socketio_fanout: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- servers

/// A server child process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Start server `name`, or `Ok(None)` (with the reason) when it cannot
    /// run here.
    fn start(name: &str, o: &Opts) -> Result<Result<Server, String>, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut cmd = match name {
            "node" => {
                if !o.node_dir.join("node_modules/socket.io").is_dir() {
                    return Ok(Err(format!(
                        "{} has no node_modules/socket.io: run `npm ci` there (benches/run-socketio does)",
                        o.node_dir.display()
                    )));
                }
                let mut c = Command::new("node");
                c.arg("server.mjs").arg(port.to_string()).current_dir(&o.node_dir);
                c
            }
            "socketioxide" => {
                if !o.socketioxide_bin.is_file() {
                    return Ok(Err(format!(
                        "{} does not exist: build benches/socketio/socketioxide in release (benches/run-socketio does)",
                        o.socketioxide_bin.display()
                    )));
                }
                let mut c = Command::new(&o.socketioxide_bin);
                c.arg(port.to_string());
                c
            }
            "wsx" => {
                if !o.wsx_bin.is_file() {
                    return Ok(Err(format!(
                        "{} does not exist: cargo build --release -p wsx-cli",
                        o.wsx_bin.display()
                    )));
                }
                // One thread, as the others (Node's one, socketioxide's
                // current-thread runtime).
                let mut c = Command::new(&o.wsx_bin);
                c.args(["serve", "--socketio", "--threads", "1", "--port", &port.to_string()]);
                c
            }
            other => return Err(format!("unknown server {other:?}")),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut server = Server { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let deadline = Instant::now() + START;
        while std::net::TcpStream::connect(server.addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("{name} exited before listening: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("{name} did not listen on {} within {START:?}", server.addr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Ok(server))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kib(&self) -> Result<u64, Error> {
        proc::rss_kib(self.pid())
    }

    /// utime + stime of the process (all its threads), in clock ticks.
    fn cpu_ticks(&self) -> Result<(u64, u64), Error> {
        proc::cpu_ticks(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- clients

/// Shared by the subscriber tasks.
struct Shared {
    epoch: Instant,
    latency: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    first_delivery: AtomicU64,
    last_delivery: AtomicU64,
    /// Subscribers whose connection ended before the run did, and why.
    disconnected: AtomicU64,
    close_reason: Mutex<Option<String>>,
    /// Subscribers whose server accepted permessage-deflate.
    compressed: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// Read Engine.IO packets until a Socket.IO packet arrives (answering
/// pings), and decode it.
async fn next_packet(ws: &mut Ws, decoder: &mut Decoder, what: &str) -> Result<Packet, Error> {
    loop {
        match next_message(ws, what, MESSAGE_WAIT).await? {
            Message::Text(t) => match t.as_str().split_at_checked(1) {
                Some(("2", "")) => ws.send(Message::text("3")).await.map_err(|e| format!("pong: {e}"))?,
                Some(("4", sio)) => {
                    if let Some(p) = decoder.decode_text(sio).map_err(|e| format!("bad packet {sio:?}: {e}"))? {
                        return Ok(p);
                    }
                }
                _ => {}
            },
            Message::Binary(b) => {
                if let Some(p) = decoder.decode_binary(b).map_err(|e| format!("bad attachment: {e}"))? {
                    return Ok(p);
                }
            }
            _ => {}
        }
    }
}

/// Open an Engine.IO websocket (offering permessage-deflate or not) and
/// connect to namespace `/`; whether the server accepted compression.
async fn connect(addr: SocketAddr, compression: bool) -> Result<(Ws, Decoder, bool), Error> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let config = wsx::Config::default().with_compression(compression);
    let (mut ws, response) =
        wsx::connect_with(url.as_str(), &config).await.map_err(|e| format!("connect to {url}: {e}"))?;
    let compressed = response.headers().contains_key("sec-websocket-extensions");
    match next_message(&mut ws, "the Engine.IO open packet", MESSAGE_WAIT).await? {
        Message::Text(t) if t.as_str().starts_with("0{") => {}
        other => return Err(format!("expected the Engine.IO open packet, got {other:?}")),
    }
    ws.send(Message::text("40")).await.map_err(|e| format!("CONNECT: {e}"))?;
    let mut decoder = Decoder::default();
    let p = next_packet(&mut ws, &mut decoder, "the CONNECT answer").await?;
    if p.kind != PacketType::Connect || p.nsp != "/" {
        return Err(format!("CONNECT refused: {}", p.encode_text()));
    }
    Ok((ws, decoder, compressed))
}

/// `join("bench", ack)` and wait for the ack.
async fn join(ws: &mut Ws, decoder: &mut Decoder) -> Result<(), Error> {
    let join = Packet::event("/", vec![json!("join"), json!(ROOM)], vec![]).with_id(0);
    for f in join.to_frames() {
        ws.send(f).await.map_err(|e| format!("join: {e}"))?;
    }
    loop {
        let p = next_packet(ws, decoder, "the join ack").await?;
        if p.kind == PacketType::Ack && p.id == Some(0) {
            return match p.data {
                Some(Value::Array(a)) if a.first() == Some(&Value::Bool(true)) => Ok(()),
                other => Err(format!("join refused: {other:?}")),
            };
        }
    }
}

/// A subscriber after its join: tally events until the connection ends.
async fn subscribe(mut ws: Ws, mut decoder: Decoder, tally: Arc<Mutex<Tally>>, shared: Arc<Shared>) {
    let prefix = format!("42[\"{EVENT}\",");
    let end = loop {
        let m = match ws.recv().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => break Some(e.to_string()),
            None => break Some("closed".into()),
        };
        let text = match &m {
            Message::Text(t) => t.as_str(),
            Message::Close(f) => break Some(close_reason(f.as_ref())),
            Message::Binary(b) => {
                if let Err(e) = decoder.decode_binary(b.clone()) {
                    break Some(format!("bad attachment: {e}"));
                }
                continue;
            }
            _ => continue,
        };
        if text.starts_with(&prefix) {
            let now = shared.now_ns();
            match (field(text, "\"seq\":"), field(text, "\"t\":")) {
                (Some(seq), Some(t)) => {
                    lock(&tally).record(seq);
                    let _ = lock(&shared.latency).record((now.saturating_sub(t) / 1000).max(1));
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                    let _ = shared.first_delivery.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                    shared.last_delivery.fetch_max(now, Ordering::Relaxed);
                }
                _ => break Some(format!("event without seq and t: {text:?}")),
            }
        } else if text == "2" {
            if let Err(e) = ws.send(Message::text("3")).await {
                break Some(format!("pong: {e}"));
            }
        } else if let Some(sio) = text.strip_prefix('4') {
            if let Err(e) = decoder.decode_text(sio) {
                break Some(format!("bad packet {sio:?}: {e}"));
            }
        }
    };
    if let Some(reason) = end {
        shared.disconnected.fetch_add(1, Ordering::Relaxed);
        lock(&shared.close_reason).get_or_insert(reason);
    }
}

/// The publisher: connect, wait for `go`, then emit `messages` events at
/// `rate`; sends back when it started and how long publishing took.
fn publisher(
    addr: SocketAddr,
    o: &Opts,
    epoch: Instant,
    ready: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
    done: std::sync::mpsc::Receiver<()>,
) -> Result<Duration, Error> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let (mut ws, mut decoder, _) = connect(addr, o.compression).await.map_err(|e| format!("publisher: {e}"))?;
        let _ = ready.send(());
        // Answer pings while waiting for the subscribers.
        loop {
            match go.try_recv() {
                Ok(()) => break,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(_) => return Err("stopped before publishing".to_string()),
            }
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(20), ws.recv()).await {
                if matches!(&m, Ok(Message::Text(t)) if t.as_str() == "2") {
                    ws.send(Message::text("3")).await.map_err(|e| format!("publisher pong: {e}"))?;
                }
            }
        }
        let messages = o.messages();
        let pad = "x".repeat(o.size);
        let period = Duration::from_secs_f64(1.0 / o.rate);
        let start = Instant::now();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut seq = 0;
        while seq < messages {
            tokio::select! {
                _ = tick.tick() => {
                    let t = epoch.elapsed().as_nanos() as u64;
                    // `seq` and `t` first: the subscribers search for them.
                    // The payload is `--size` bytes of JSON (or the least
                    // it can be, 25 bytes and more).
                    let bare = format!(r#"{{"seq":{seq},"t":{t},"pad":""}}"#).len();
                    let pad = &pad[..o.size.saturating_sub(bare)];
                    let text = format!(
                        r#"42["publish","{ROOM}","{EVENT}",{{"seq":{seq},"t":{t},"pad":"{pad}"}}]"#
                    );
                    ws.send(Message::text(text)).await.map_err(|e| format!("publish: {e}"))?;
                    seq += 1;
                }
                m = ws.recv() => match m {
                    Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                        ws.send(Message::text("3")).await.map_err(|e| format!("publisher pong: {e}"))?;
                    }
                    Some(Ok(Message::Text(t))) => {
                        if let Some(sio) = t.as_str().strip_prefix('4') {
                            decoder.decode_text(sio).map_err(|e| format!("publisher: bad packet {sio:?}: {e}"))?;
                        }
                    }
                    Some(Ok(Message::Close(f))) => return Err(format!("publisher closed: {}", close_reason(f.as_ref()))),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("publisher: {e}")),
                    None => return Err("publisher: closed".into()),
                }
            }
        }
        let took = start.elapsed();
        // Stay connected (answering pings) until the run is over.
        loop {
            match done.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                _ => return Ok(took),
            }
            if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(20), ws.recv()).await {
                if t.as_str() == "2" {
                    let _ = ws.send(Message::text("3")).await;
                }
            }
        }
    })
}

// ---------------------------------------------------------------- runs

/// What one server measured.
struct Outcome {
    server: String,
    subscribers: usize,
    messages: u64,
    rate: f64,
    size: usize,
    connect_s: f64,
    publish_s: f64,
    delivered: u64,
    per_s: f64,
    /// The server's CPU time from the first event published to the last
    /// one delivered (`window_s`), of which in user space, and this
    /// process's.
    cpu_s: f64,
    cpu_user_s: f64,
    client_cpu_s: f64,
    window_s: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    lost: u64,
    duplicated: u64,
    disconnected: u64,
    close_reason: Option<String>,
    /// Subscribers that compress (permessage-deflate accepted).
    compressed: u64,
    rss_before_kib: u64,
    rss_joined_kib: u64,
    rss_end_kib: u64,
    /// `/proc/loadavg` (1, 5, 15 minutes) when publishing ended: the
    /// machine's other work.
    loadavg: String,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.lost + self.duplicated > 0
    }

    fn cpu_us_per_delivery(&self) -> f64 {
        if self.delivered == 0 {
            0.0
        } else {
            self.cpu_s * 1e6 / self.delivered as f64
        }
    }

    fn kib_per_client(&self) -> f64 {
        self.rss_joined_kib.saturating_sub(self.rss_before_kib) as f64 / self.subscribers as f64
    }

    fn json(&self) -> Value {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        json!({
            "server": self.server, "subscribers": self.subscribers, "messages": self.messages,
            "rate": self.rate, "size": self.size, "connect_s": round(self.connect_s),
            "publish_s": round(self.publish_s), "delivered": self.delivered,
            "delivered_per_s": self.per_s.round(), "server_cpu_s": round(self.cpu_s),
            "server_user_cpu_s": round(self.cpu_user_s),
            "client_cpu_s": round(self.client_cpu_s), "window_s": round(self.window_s),
            "loadavg": self.loadavg, "compressed": self.compressed,
            "server_cpu_us_per_delivery": round(self.cpu_us_per_delivery()),
            "latency_us": {"p50": self.p50_us, "p90": self.p90_us, "p99": self.p99_us, "max": self.max_us},
            "lost": self.lost, "duplicated": self.duplicated,
            "disconnected": self.disconnected, "close_reason": self.close_reason,
            "server_rss_kib": {"before": self.rss_before_kib, "joined": self.rss_joined_kib, "end": self.rss_end_kib},
            "server_kib_per_client": round(self.kib_per_client()),
        })
    }
}

fn run(o: &Opts) -> Result<(), Error> {
    // Each subscriber is a socket here and one in the server.
    raise_nofile(2 * o.subscribers as u64 + 256)?;
    let ticks = proc::clock_ticks();
    let mut outcomes = Vec::new();
    let mut skipped = Vec::new();
    // Repetitions interleave the servers (A, B, A, B), so that a change in
    // the machine's load falls on all of them.
    for rep in 1..=o.reps {
        for name in &o.servers {
            if skipped.contains(name) {
                continue;
            }
            let server = match Server::start(name, o)? {
                Ok(s) => s,
                Err(why) => {
                    eprintln!("socketio_fanout: {name} skipped: {why}");
                    skipped.push(name.clone());
                    continue;
                }
            };
            eprintln!(
                "socketio_fanout: {name} (run {rep} of {}): {} subscribers, {} events at {}/s ...",
                o.reps,
                o.subscribers,
                o.messages(),
                o.rate
            );
            outcomes.push(run_server(o, name, &server, ticks)?);
        }
    }
    print_table(&outcomes);
    if o.json {
        println!("{}", Value::Array(outcomes.iter().map(Outcome::json).collect()));
    }
    let bad: Vec<&str> = outcomes.iter().filter(|r| r.failed()).map(|r| r.server.as_str()).collect();
    if !bad.is_empty() {
        return Err(format!("events lost or duplicated with: {}", bad.join(", ")));
    }
    Ok(())
}

fn run_server(o: &Opts, name: &str, server: &Server, ticks: f64) -> Result<Outcome, Error> {
    let n = o.subscribers;
    let messages = o.messages();
    // Let the server settle before the first reading.
    std::thread::sleep(Duration::from_millis(500));
    let rss_before_kib = server.rss_kib()?;
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?),
        delivered: AtomicU64::new(0),
        first_delivery: AtomicU64::new(0),
        last_delivery: AtomicU64::new(0),
        disconnected: AtomicU64::new(0),
        close_reason: Mutex::new(None),
        compressed: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;

    // Subscribers connect and join (CONNECTING at a time), then tally.
    let connect_start = Instant::now();
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..n).map(|_| Arc::new(Mutex::new(Tally::new(messages)))).collect();
    let joined = Arc::new(AtomicU64::new(0));
    let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel::<Error>();
    let tasks: Vec<_> = rt.block_on(async {
        let gate = Arc::new(Semaphore::new(CONNECTING));
        tallies
            .iter()
            .enumerate()
            .map(|(i, tally)| {
                let (gate, joined, err_tx, tally, shared) =
                    (gate.clone(), joined.clone(), err_tx.clone(), tally.clone(), shared.clone());
                let (addr, compression) = (server.addr, o.compression);
                tokio::spawn(async move {
                    let r = async {
                        let _permit = gate.acquire().await;
                        let (mut ws, mut decoder, compressed) = connect(addr, compression).await?;
                        join(&mut ws, &mut decoder).await?;
                        shared.compressed.fetch_add(compressed.into(), Ordering::Relaxed);
                        Ok::<_, Error>((ws, decoder))
                    };
                    match r.await {
                        Ok((ws, decoder)) => {
                            joined.fetch_add(1, Ordering::Relaxed);
                            subscribe(ws, decoder, tally, shared).await
                        }
                        Err(e) => {
                            let _ = err_tx.send(format!("subscriber {i}: {e}"));
                        }
                    }
                })
            })
            .collect()
    });
    drop(err_tx);
    rt.block_on(async {
        let mut last_report = Instant::now();
        loop {
            tokio::select! {
                Some(e) = err_rx.recv() => return Err(e),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            let k = joined.load(Ordering::Relaxed) as usize;
            if k >= n {
                return Ok(());
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("socketio_fanout:   {k} of {n} joined after {:.0} s", connect_start.elapsed().as_secs_f64());
                last_report = Instant::now();
            }
        }
    })?;
    let connect_s = connect_start.elapsed().as_secs_f64();
    // Let the server settle (and the runtime read what is left) before the
    // reading.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
    let rss_joined_kib = server.rss_kib()?;

    // The publisher, on its own thread.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let publisher = {
        let (o, epoch, addr) = (o.clone(), shared.epoch, server.addr);
        std::thread::spawn(move || publisher(addr, &o, epoch, ready_tx, go_rx, done_rx))
    };
    let publisher_failed = |publisher: std::thread::JoinHandle<Result<Duration, Error>>| match publisher.join() {
        Ok(Err(e)) => e,
        _ => "the publisher failed".into(),
    };
    if ready_rx.recv().is_err() {
        return Err(publisher_failed(publisher));
    }
    let cpu_start = server.cpu_ticks()?;
    let client_cpu_start = proc::cpu_ticks("self")?;
    if go_tx.send(()).is_err() {
        return Err(publisher_failed(publisher));
    }

    // Wait for every delivery, or for deliveries to stop.
    let expected = n as u64 * messages;
    let publish_for = Duration::from_secs_f64(o.seconds);
    let publish_start = Instant::now();
    rt.block_on(async {
        let mut last = (0, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let d = shared.delivered.load(Ordering::Relaxed);
            if d >= expected {
                return;
            }
            if d != last.0 {
                last = (d, Instant::now());
            } else if last.1.elapsed() > STALL && publish_start.elapsed() > publish_for {
                eprintln!("socketio_fanout:   deliveries stopped at {d} of {expected}");
                return;
            }
        }
    });
    let cpu_end = server.cpu_ticks()?;
    let client_cpu_end = proc::cpu_ticks("self")?;
    let window_s = publish_start.elapsed().as_secs_f64();
    let rss_end_kib = server.rss_kib()?;
    for t in &tasks {
        t.abort();
    }
    let _ = done_tx.send(());
    let publish_s = match publisher.join() {
        Ok(Ok(d)) => d.as_secs_f64(),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("the publisher panicked".into()),
    };
    drop(rt);

    let (mut lost, mut duplicated) = (0, 0);
    for t in &tallies {
        let t = lock(t);
        lost += messages - t.distinct;
        duplicated += t.duplicates;
    }
    let close_reason = lock(&shared.close_reason).clone();
    let h = lock(&shared.latency);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let span_ns =
        shared.last_delivery.load(Ordering::Relaxed).saturating_sub(shared.first_delivery.load(Ordering::Relaxed));
    Ok(Outcome {
        server: name.to_owned(),
        subscribers: n,
        messages,
        rate: o.rate,
        size: o.size,
        connect_s,
        publish_s,
        delivered,
        per_s: if span_ns > 0 { delivered as f64 / (span_ns as f64 / 1e9) } else { 0.0 },
        cpu_s: (cpu_end.0 + cpu_end.1).saturating_sub(cpu_start.0 + cpu_start.1) as f64 / ticks,
        cpu_user_s: cpu_end.0.saturating_sub(cpu_start.0) as f64 / ticks,
        client_cpu_s: (client_cpu_end.0 + client_cpu_end.1).saturating_sub(client_cpu_start.0 + client_cpu_start.1)
            as f64
            / ticks,
        window_s,
        loadavg: std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
        lost,
        duplicated,
        disconnected: shared.disconnected.load(Ordering::Relaxed),
        compressed: shared.compressed.load(Ordering::Relaxed),
        close_reason,
        rss_before_kib,
        rss_joined_kib,
        rss_end_kib,
    })
}

fn print_table(rs: &[Outcome]) {
    println!();
    println!(
        "| server | clients | events | delivered/s | server CPU per delivery (user space) | latency p50 | p90 | p99 | max | \
         lost / dup | server RSS per client |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    for r in rs {
        println!(
            "| {} | {} | {} × {} B at {}/s | {:.0} | {:.2} µs ({:.2}) | {} | {} | {} | {} | {} / {} | {:.1} KiB |",
            r.server,
            r.subscribers,
            r.messages,
            r.size,
            r.rate,
            r.per_s,
            r.cpu_us_per_delivery(),
            r.cpu_user_s * 1e6 / r.delivered.max(1) as f64,
            ms(r.p50_us),
            ms(r.p90_us),
            ms(r.p99_us),
            ms(r.max_us),
            r.lost,
            r.duplicated,
            r.kib_per_client(),
        );
    }
    println!();
    for r in rs {
        println!(
            "{}: {} of {} deliveries, published in {:.1} s; CPU over those {:.1} s: server {:.2} s, \
             clients (this process) {:.2} s; connect + join {:.1} s; \
             {} clients disconnected{}; {} compressing; server RSS {} KiB idle, {} KiB joined, {} KiB at the end; \
             load average {}",
            r.server,
            r.delivered,
            r.subscribers as u64 * r.messages,
            r.publish_s,
            r.window_s,
            r.cpu_s,
            r.client_cpu_s,
            r.connect_s,
            r.disconnected,
            r.close_reason.as_ref().map(|c| format!(" (first: {c})")).unwrap_or_default(),
            r.compressed,
            r.rss_before_kib,
            r.rss_joined_kib,
            r.rss_end_kib,
            r.loadavg,
        );
    }
}
