//! Fan-out: one publisher, N subscribers in one room (issue 7, "Measured").
//!
//! 1. `single`: one hub node.
//! 2. `redis`: two nodes joined by Redis pub/sub (a `redis-server` started
//!    on a free loopback port; skipped with a notice when it is not
//!    installed), half of the subscribers on each node, the publisher on
//!    node A.
//!
//! The hub nodes run in child processes (this binary again, with the
//! hidden flag `--serve-node`), each on a single-threaded tokio runtime,
//! so that their memory can be read from `/proc/PID/status` (VmRSS) when
//! idle, once the subscribers connected and once they joined. The
//! subscribers (one raw `wsx` client and task each, on one single-threaded
//! runtime) and the publisher (its own thread) live in this process and
//! talk to the nodes over TCP on 127.0.0.1.
//!
//! The publisher sends `publish` packets at `--rate` per second (0: as
//! fast as it can), each stamped with its send time and a sequence number;
//! each subscriber checks the sequence (lost, duplicated, out of order) and
//! records the delivery latency. Exits non-zero when a message was lost,
//! duplicated or reordered, or when anything fails.
//!
//! The nodes' CPU time (utime + stime from `/proc/PID/stat`) from the
//! publisher's go to the end of the deliveries, divided by the deliveries,
//! is the server's CPU per delivery.
//!
//! Publishing takes `--messages / --rate` seconds (30 s by default), but
//! filling the room takes longer: every join costs the node work in
//! proportion to the room's size (presence to every member, every member
//! in the ack, and a quadratic merge in `Hub::members`); 10,000 joins took
//! some 16 minutes on one node of a 2-core machine (docs/hub-fanout.md).
//!
//! ```sh
//! cargo bench -p wsx-hub --bench fanout                       # both modes, defaults
//! cargo bench -p wsx-hub --bench fanout -- --mode single --subscribers 2000 --rate 100 --messages 500
//! cargo bench -p wsx-hub --bench fanout -- --json
//! ```

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wsx::Message;
use wsx_hub::protocol::{self, Packet, PublishPacket, RoomRequest, SUBPROTOCOL};

const ROOM: &str = "fanout";
const EVENT: &str = "tick";
/// Handshakes in flight at once while subscribers connect.
const CONNECTING: usize = 128;
/// Joins in flight at once: the node serves them one after the other
/// anyway, each at a cost that grows with the room (presence to every
/// member, every member in the ack); a few in flight keep it busy.
const JOINING: usize = 8;
/// How long the run waits for deliveries that stopped coming.
const STALL: Duration = Duration::from_secs(10);

#[path = "common/mod.rs"]
mod common;
use common::{close_reason, field, lock, next_message, raise_nofile, Error, Tally, Ws};

/// How long a subscriber waits for the next message.
const MESSAGE_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Opts {
    subscribers: usize,
    messages: u64,
    rate: f64,
    size: usize,
    modes: Vec<Mode>,
    deflate: bool,
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Single,
    Redis,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Redis => "redis",
        }
    }
}

const USAGE: &str = "\
usage: cargo bench -p wsx-hub --bench fanout -- [options]
  --subscribers N   subscribers in the room (default 10000)
  --messages N      messages published (default 300)
  --rate R          messages per second, 0 for as fast as possible (default 10)
  --size B          bytes of each event's JSON payload (default 64)
  --mode M          single, redis or both (default both)
  --no-deflate      clients do not offer permessage-deflate (by default they
                    do, as browsers do; the hub compresses messages of 1 KiB
                    and more)
  --json            print the results as JSON too";

fn parse_args(args: &[String]) -> Result<Opts, Error> {
    let mut o = Opts {
        subscribers: 10_000,
        messages: 300,
        rate: 10.0,
        size: 64,
        modes: vec![Mode::Single, Mode::Redis],
        deflate: true,
        json: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        let bad = |name: &str, v: &str| format!("{name}: invalid value {v:?}\n{USAGE}");
        match a.as_str() {
            "--subscribers" => {
                let v = value(a)?;
                o.subscribers = v.parse().ok().filter(|n| *n >= 2).ok_or_else(|| bad(a, &v))?;
            }
            "--messages" => {
                let v = value(a)?;
                o.messages = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| bad(a, &v))?;
            }
            "--rate" => {
                let v = value(a)?;
                o.rate = v.parse().ok().filter(|r: &f64| r.is_finite() && *r >= 0.0).ok_or_else(|| bad(a, &v))?;
            }
            "--size" => {
                let v = value(a)?;
                o.size = v.parse().map_err(|_| bad(a, &v))?;
            }
            "--mode" => {
                let v = value(a)?;
                o.modes = match v.as_str() {
                    "single" => vec![Mode::Single],
                    "redis" => vec![Mode::Redis],
                    "both" => vec![Mode::Single, Mode::Redis],
                    _ => return Err(bad(a, &v)),
                };
            }
            "--json" => o.json = true,
            "--no-deflate" => o.deflate = false,
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
    let result = if args.first().map(String::as_str) == Some("--serve-node") {
        serve_node(&args[1..])
    } else {
        parse_args(&args).and_then(|o| run(&o))
    };
    if let Err(e) = result {
        eprintln!("fanout: {e}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------ node

/// Child process: one hub node on 127.0.0.1; prints `listening ADDR`, then
/// serves until its stdin closes.
///
/// `--serve-node NAME MAX_MEMBERS [REDIS_URL PREFIX]`
fn serve_node(args: &[String]) -> Result<(), Error> {
    let (name, max_members) = match args {
        [name, max, ..] => (name.clone(), max.parse::<usize>().map_err(|_| format!("node: bad member count {max:?}"))?),
        _ => return Err("node: --serve-node NAME MAX_MEMBERS [REDIS_URL PREFIX]".into()),
    };
    raise_nofile(max_members as u64 + 64)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("node {name}: runtime: {e}"))?;
    rt.block_on(async move {
        let mut b = wsx_hub::Hub::builder().node_id(name.clone()).max_room_members(max_members);
        if let [_, _, url, prefix] = args {
            let opts = wsx_hub::broker::RedisOptions { prefix: prefix.clone(), ..Default::default() };
            let broker = wsx_hub::broker::RedisBroker::new(url, opts)
                .map_err(|e| format!("node {name}: Redis broker for {url}: {e}"))?;
            b = b.broker(broker);
        }
        let hub = b.build();
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("node {name}: bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("node {name}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while hub.broker_state() != wsx_hub::broker::BrokerState::Connected {
            if Instant::now() > deadline {
                return Err(format!("node {name}: broker not connected after 10 s: {:?}", hub.broker_state()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::spawn(hub.clone().serve(listener));
        println!("listening {addr}");
        let _ = std::io::stdout().flush();
        // Serve until the parent closes our stdin (or goes away).
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        })
        .await;
        Ok(())
    })
}

/// A hub node child process, killed on drop.
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl Node {
    fn start(name: &str, max_members: usize, redis: Option<(&str, &str)>) -> Result<Node, Error> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(["--serve-node", name, &max_members.to_string()]);
        if let Some((url, prefix)) = redis {
            cmd.args([url, prefix]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start node {name}: {e}"))?;
        let stdin = child.stdin.take();
        let mut node = Node { child, stdin, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        let stdout = node.child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        node.addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("node {name} did not start (it said {:?})", line.trim()))?;
        Ok(node)
    }

    fn rss_kib(&self) -> Result<u64, Error> {
        rss_kib(&format!("/proc/{}/status", self.child.id()))
    }

    /// CPU time the node has used, user and system, in clock ticks.
    fn cpu_ticks(&self) -> Result<u64, Error> {
        cpu_ticks(self.child.id())
    }
}

/// utime + stime of a process from `/proc/PID/stat` (fields 14 and 15,
/// counted after the parenthesised command name, which may hold spaces).
fn cpu_ticks(pid: u32) -> Result<u64, Error> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let after = s.rsplit_once(')').map(|(_, a)| a).ok_or_else(|| format!("bad {path}"))?;
    // After the name: field 3 (state) is the first; utime and stime are 14 and 15.
    let f: Vec<u64> = after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    match f[..] {
        [utime, stime] => Ok(utime + stime),
        _ => Err(format!("no utime/stime in {path}")),
    }
}

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`: 100 on
/// Linux everywhere in practice).
const CLK_TCK: f64 = 100.0;

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(status: &str) -> Result<u64, Error> {
    let s = std::fs::read_to_string(status).map_err(|e| format!("cannot read {status}: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no VmRSS in {status}"))
}

/// A `redis-server` on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// `Ok(None)` when `redis-server` is not installed.
    fn start() -> Result<Option<Redis>, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--maxclients", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot start redis-server: {e}")),
        };
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("redis-server did not listen on port {port} within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(redis))
    }

    fn rss_kib(&self) -> Result<u64, Error> {
        rss_kib(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for Redis {
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
    other_packets: AtomicU64,
    /// Subscribers whose connection ended before the run did.
    disconnected: AtomicU64,
    /// The first close frame one of them received.
    close_reason: Mutex<Option<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

fn upgrade_request(addr: SocketAddr) -> Result<http::Request<()>, Error> {
    http::Request::get(format!("ws://{addr}/"))
        .header("sec-websocket-protocol", SUBPROTOCOL)
        .body(())
        .map_err(|e| format!("request: {e}"))
}

/// Connect and read the welcome.
async fn connect(addr: SocketAddr, deflate: bool) -> Result<Ws, Error> {
    let config = wsx::Config::default().with_compression(deflate);
    let (mut ws, _) =
        wsx::connect_with(upgrade_request(addr)?, &config).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    match next_packet(&mut ws, "the welcome").await? {
        Packet::Welcome(_) => Ok(ws),
        other => Err(format!("expected a welcome, got {other:?}")),
    }
}

/// Wait for `f` while reading (and dropping) what arrives on `ws`, so that
/// pings are answered.
async fn reading<T>(ws: &mut Ws, f: impl std::future::Future<Output = T>) -> Result<T, Error> {
    tokio::pin!(f);
    loop {
        tokio::select! {
            t = &mut f => return Ok(t),
            m = ws.recv() => match m {
                Some(Ok(Message::Close(f))) => {
                    return Err(format!("closed by the hub while waiting to join: {}", close_reason(f.as_ref())))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("while waiting to join: {e}")),
                None => return Err("closed while waiting to join".into()),
            },
        }
    }
}

/// Join the room and wait for the ack. The hub answers a join with every
/// member of the room and announces each later join to every member, so
/// this reads a lot: presence packets are skipped and a successful ack is
/// recognised by its first bytes (the encoder writes `t`, `id`, then
/// `data` or `error`), both without parsing.
async fn join(ws: &mut Ws) -> Result<(), Error> {
    let join = protocol::encode(&Packet::Join(RoomRequest { room: ROOM.into(), id: Some(1) }));
    ws.send(join.to_message()).await.map_err(|e| format!("join: {e}"))?;
    loop {
        let m = next_message(ws, "the join ack", MESSAGE_WAIT).await?;
        if let Some(t) = m.as_text() {
            if t.starts_with(r#"{"t":"presence""#) {
                continue;
            }
            if t.starts_with(r#"{"t":"ack","id":1,"data":"#) {
                return Ok(());
            }
        }
        match protocol::decode_message(&m) {
            Some(Ok(Packet::Ack(a))) if a.id == 1 => {
                return Err(match a.result {
                    Err(e) => format!("join refused: {} {}", e.code, e.message),
                    Ok(_) => "unexpected join ack".into(),
                })
            }
            Some(Err(e)) => return Err(format!("bad packet from the hub: {e}")),
            _ => {}
        }
    }
}

/// The next packet (control messages skipped), at most 120 s away.
async fn next_packet(ws: &mut Ws, what: &str) -> Result<Packet, Error> {
    loop {
        if let Some(p) = protocol::decode_message(&next_message(ws, what, MESSAGE_WAIT).await?) {
            return p.map_err(|e| format!("bad packet from the hub: {e}"));
        }
    }
}

/// A subscriber after its join: tally events until the connection ends.
async fn subscribe(mut ws: Ws, tally: Arc<Mutex<Tally>>, shared: Arc<Shared>) {
    while let Some(Ok(m)) = ws.recv().await {
        if let Message::Close(f) = &m {
            lock(&shared.close_reason).get_or_insert_with(|| close_reason(f.as_ref()));
        }
        let Message::Text(t) = &m else { continue };
        let t = t.as_str();
        if !t.starts_with(r#"{"t":"event""#) {
            shared.other_packets.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (Some(seq), Some(sent)) = (field(t, r#""seq":"#), field(t, r#""ts":"#)) else {
            shared.other_packets.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let now = shared.now_ns();
        lock(&tally).record(seq);
        let _ = lock(&shared.latency).record(now.saturating_sub(sent) / 1000);
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        let _ = shared.first_delivery.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        shared.last_delivery.fetch_max(now, Ordering::Relaxed);
    }
    shared.disconnected.fetch_add(1, Ordering::Relaxed);
}

/// The publisher, on its own thread and runtime so that the subscribers'
/// work does not delay its schedule: joins, then publishes `messages`
/// events at `rate` per second, each stamped with its send time.
fn publisher(addr: SocketAddr, o: &Opts, epoch: Instant, signals: Signals) -> Result<(), Error> {
    let Signals { ready, go, published, done } = signals;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("publisher runtime: {e}"))?;
    rt.block_on(async {
        let mut ws = connect(addr, o.deflate).await.map_err(|e| format!("publisher: {e}"))?;
        join(&mut ws).await.map_err(|e| format!("publisher: {e}"))?;
        let (mut rx, mut tx) = ws.split();
        // Read (and drop) what comes: presence, pings.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.recv().await {} });
        // Tell the main thread we are in, and wait for its go.
        let _ = ready.send(());
        tokio::task::spawn_blocking(move || go.recv())
            .await
            .map_err(|e| format!("publisher: {e}"))?
            .map_err(|_| "publisher: the run was abandoned".to_string())?;
        let pad_len = o.size.saturating_sub(r#"{"seq":0000,"ts":00000000000,"pad":""}"#.len());
        let pad = "x".repeat(pad_len);
        let start = Instant::now();
        for seq in 0..o.messages {
            if o.rate > 0.0 {
                tokio::time::sleep_until((start + Duration::from_secs_f64(seq as f64 / o.rate)).into()).await;
            }
            let ts = epoch.elapsed().as_nanos() as u64;
            let p = Packet::Publish(PublishPacket {
                room: ROOM.into(),
                event: EVENT.into(),
                data: json!({"seq": seq, "ts": ts, "pad": pad}),
                id: None,
                echo: false,
                attachments: Vec::new(),
            });
            tx.send(protocol::encode(&p).to_message()).await.map_err(|e| format!("publish: {e}"))?;
        }
        let _ = published.send(start.elapsed());
        // Keep the connection open until the subscribers are done.
        let _ = tokio::task::spawn_blocking(move || done.recv()).await;
        reader.abort();
        Ok(())
    })
}

/// How the main thread and the publisher's meet: `ready` once joined, `go`
/// starts publishing, `published` says how long it took, `done` ends the
/// connection.
struct Signals {
    ready: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
    published: std::sync::mpsc::Sender<Duration>,
    done: std::sync::mpsc::Receiver<()>,
}

// -------------------------------------------------------------------- run

/// Run the subscriber tasks until `count` reaches `n`; fail on the first
/// error a subscriber reports.
fn wait_for_count(
    rt: &tokio::runtime::Runtime,
    count: &AtomicU64,
    n: usize,
    what: &str,
    since: Instant,
    errors: &mut tokio::sync::mpsc::UnboundedReceiver<Error>,
) -> Result<(), Error> {
    rt.block_on(async {
        let mut last_report = Instant::now();
        loop {
            tokio::select! {
                Some(e) = errors.recv() => return Err(e),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            let k = count.load(Ordering::Relaxed) as usize;
            if k >= n {
                return Ok(());
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("fanout:   {k} of {n} {what} after {:.0} s", since.elapsed().as_secs_f64());
                last_report = Instant::now();
            }
        }
    })
}

/// What one mode measured.
struct Outcome {
    mode: Mode,
    nodes: usize,
    subscribers: usize,
    messages: u64,
    rate: f64,
    size: usize,
    deflate: bool,
    connect_s: f64,
    /// Joins, and the presence packets they cause, delivered.
    join_s: f64,
    publish_s: f64,
    delivered: u64,
    /// Deliveries per second, first to last.
    per_s: f64,
    /// The nodes' CPU time (user + system) from the go to the last
    /// delivery, in seconds, and per delivery in microseconds.
    node_cpu_s: f64,
    cpu_us_per_delivery: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    disconnected: u64,
    close_reason: Option<String>,
    connected_kib_per_subscriber: f64,
    joined_kib_per_subscriber: f64,
    client_kib_per_subscriber: f64,
    /// Each node's RSS idle, with the subscribers connected, joined, and
    /// at the end.
    node_rss_kib: [Vec<u64>; 4],
    redis_rss_kib: Option<u64>,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.lost + self.duplicated + self.out_of_order > 0
    }

    fn json(&self) -> Value {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let [idle, connected, joined, end] = &self.node_rss_kib;
        json!({
            "mode": self.mode.name(), "nodes": self.nodes, "subscribers": self.subscribers,
            "messages": self.messages, "rate": self.rate, "size": self.size, "deflate": self.deflate,
            "connect_s": round(self.connect_s), "join_s": round(self.join_s), "publish_s": round(self.publish_s),
            "delivered": self.delivered, "delivered_per_s": self.per_s.round(),
            "node_cpu_s": round(self.node_cpu_s), "node_cpu_us_per_delivery": round(self.cpu_us_per_delivery),
            "latency_us": {"p50": self.p50_us, "p99": self.p99_us, "max": self.max_us},
            "lost": self.lost, "duplicated": self.duplicated, "out_of_order": self.out_of_order,
            "disconnected": self.disconnected, "close_reason": self.close_reason,
            "node_rss_kib": {"idle": idle, "connected": connected, "joined": joined, "end": end},
            "node_kib_per_subscriber": {
                "connected": round(self.connected_kib_per_subscriber),
                "joined": round(self.joined_kib_per_subscriber),
            },
            "client_kib_per_subscriber": round(self.client_kib_per_subscriber),
            "redis_rss_kib": self.redis_rss_kib,
        })
    }
}

fn run(o: &Opts) -> Result<(), Error> {
    // Each subscriber is a socket here and one in a node.
    raise_nofile(o.subscribers as u64 + 256)?;
    let mut outcomes = Vec::new();
    for &mode in &o.modes {
        let redis = match mode {
            Mode::Single => None,
            Mode::Redis => match Redis::start()? {
                Some(r) => Some(r),
                None => {
                    eprintln!("fanout: mode 2 (redis) skipped: redis-server is not installed (scripts/install-redis)");
                    continue;
                }
            },
        };
        eprintln!("fanout: {} mode, {} subscribers ...", mode.name(), o.subscribers);
        outcomes.push(run_mode(o, mode, redis.as_ref())?);
    }
    print_table(&outcomes);
    if o.json {
        println!("{}", Value::Array(outcomes.iter().map(Outcome::json).collect()));
    }
    let bad: Vec<&str> = outcomes.iter().filter(|r| r.failed()).map(|r| r.mode.name()).collect();
    if !bad.is_empty() {
        return Err(format!("messages lost, duplicated or out of order in: {}", bad.join(", ")));
    }
    Ok(())
}

fn run_mode(o: &Opts, mode: Mode, redis: Option<&Redis>) -> Result<Outcome, Error> {
    let n = o.subscribers;
    // Every node may hold all subscribers and the publisher.
    let nodes = match redis {
        None => vec![Node::start("a", n + 1, None)?],
        Some(r) => {
            let url = format!("redis://127.0.0.1:{}/", r.port);
            let prefix = format!("fanout{}", std::process::id());
            vec![Node::start("a", n + 1, Some((&url, &prefix)))?, Node::start("b", n + 1, Some((&url, &prefix)))?]
        }
    };
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    // Let the nodes settle before the first reading.
    std::thread::sleep(Duration::from_millis(300));
    let before: Vec<u64> = nodes.iter().map(Node::rss_kib).collect::<Result<_, _>>()?;
    let client_before = rss_kib("/proc/self/status")?;

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?),
        delivered: AtomicU64::new(0),
        first_delivery: AtomicU64::new(0),
        last_delivery: AtomicU64::new(0),
        other_packets: AtomicU64::new(0),
        disconnected: AtomicU64::new(0),
        close_reason: Mutex::new(None),
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;

    // Subscribers connect (CONNECTING at a time), then join (JOINING at a
    // time) when told,
    // then tally what they receive.
    let connect_start = Instant::now();
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..n).map(|_| Arc::new(Mutex::new(Tally::new(o.messages)))).collect();
    let connected = Arc::new(AtomicU64::new(0));
    let joined = Arc::new(AtomicU64::new(0));
    let (join_now, join_rx) = tokio::sync::watch::channel(false);
    let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel::<Error>();
    let tasks: Vec<_> = rt.block_on(async {
        let gate = Arc::new(Semaphore::new(CONNECTING));
        let join_gate = Arc::new(Semaphore::new(JOINING));
        let mut tasks = Vec::with_capacity(n);
        for (i, tally) in tallies.iter().enumerate() {
            // The first half on node A, the second on node B.
            let addr = addrs[i * addrs.len() / n];
            let (gate, connected, joined, err_tx) = (gate.clone(), connected.clone(), joined.clone(), err_tx.clone());
            let (tally, shared, mut join_rx, deflate) = (tally.clone(), shared.clone(), join_rx.clone(), o.deflate);
            let join_gate = join_gate.clone();
            tasks.push(tokio::spawn(async move {
                let r = async {
                    let mut ws = {
                        let _permit = gate.acquire().await;
                        connect(addr, deflate).await?
                    };
                    connected.fetch_add(1, Ordering::Relaxed);
                    // Keep reading while waiting (the hub pings, and closes
                    // connections that stay silent for 60 s).
                    let _ = reading(&mut ws, join_rx.wait_for(|go| *go)).await?;
                    {
                        let _permit = reading(&mut ws, join_gate.acquire()).await?;
                        join(&mut ws).await?;
                    }
                    joined.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Error>(ws)
                };
                match r.await {
                    Ok(ws) => subscribe(ws, tally, shared).await,
                    Err(e) => {
                        let _ = err_tx.send(format!("subscriber {i}: {e}"));
                    }
                }
            }));
        }
        tasks
    });
    drop(err_tx);
    wait_for_count(&rt, &connected, n, "connected", connect_start, &mut err_rx)?;
    let connect_s = connect_start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let connected_rss: Vec<u64> = nodes.iter().map(Node::rss_kib).collect::<Result<_, _>>()?;
    let join_start = Instant::now();
    join_now.send_replace(true);
    wait_for_count(&rt, &joined, n, "joined", join_start, &mut err_rx)?;

    // The publisher joins last, on node A.
    let (ready, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go) = std::sync::mpsc::channel();
    let (published, published_rx) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel();
    let publisher = {
        let (o, epoch, addr) = (o.clone(), shared.epoch, addrs[0]);
        std::thread::spawn(move || publisher(addr, &o, epoch, Signals { ready, go, published, done }))
    };
    if ready_rx.recv().is_err() {
        return match publisher.join() {
            Ok(Err(e)) => Err(e),
            _ => Err("the publisher failed".into()),
        };
    }
    // Wait until the presence packets of the joins have been delivered.
    rt.block_on(async {
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = shared.other_packets.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
    });
    let join_s = join_start.elapsed().as_secs_f64();
    let joined_rss: Vec<u64> = nodes.iter().map(Node::rss_kib).collect::<Result<_, _>>()?;
    let client_after = rss_kib("/proc/self/status")?;
    let redis_rss_kib = redis.map(Redis::rss_kib).transpose()?;
    let cpu_before: u64 = nodes.iter().map(Node::cpu_ticks).sum::<Result<_, _>>()?;
    if go_tx.send(()).is_err() {
        return match publisher.join() {
            Ok(Err(e)) => Err(e),
            _ => Err("the publisher failed".into()),
        };
    }

    // Publish; wait for every delivery, or for deliveries to stop.
    let expected = n as u64 * o.messages;
    let publish_time = rt.block_on(async {
        let mut last = (0, Instant::now());
        let mut publish_time = None;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match published_rx.try_recv() {
                Ok(t) => publish_time = Some(t),
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                // The publisher failed: its error comes with the join below.
                Err(std::sync::mpsc::TryRecvError::Disconnected) if publish_time.is_none() => return None,
                Err(_) => {}
            }
            let d = shared.delivered.load(Ordering::Relaxed);
            if d >= expected && publish_time.is_some() {
                return publish_time;
            }
            if d != last.0 {
                last = (d, Instant::now());
            } else if last.1.elapsed() > STALL && publish_time.is_some() {
                eprintln!("fanout:   deliveries stopped at {d} of {expected}");
                return publish_time;
            }
        }
    });
    let end_rss: Vec<u64> = nodes.iter().map(Node::rss_kib).collect::<Result<_, _>>()?;
    let node_cpu_s = (nodes.iter().map(Node::cpu_ticks).sum::<Result<u64, _>>()? - cpu_before) as f64 / CLK_TCK;
    for t in &tasks {
        t.abort();
    }
    let _ = done_tx.send(());
    match publisher.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("the publisher panicked".into()),
    }
    let publish_time = publish_time.ok_or("the publisher stopped before publishing everything")?;
    drop(rt);

    let (mut lost, mut duplicated, mut out_of_order) = (0, 0, 0);
    for t in &tallies {
        let t = lock(t);
        lost += o.messages - t.distinct;
        duplicated += t.duplicates;
        out_of_order += t.out_of_order;
    }
    let close_reason = lock(&shared.close_reason).clone();
    let h = lock(&shared.latency);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let span_ns =
        shared.last_delivery.load(Ordering::Relaxed).saturating_sub(shared.first_delivery.load(Ordering::Relaxed));
    let per_subscriber =
        |rss: &[u64]| rss.iter().zip(&before).map(|(a, b)| a.saturating_sub(*b)).sum::<u64>() as f64 / n as f64;
    Ok(Outcome {
        mode,
        nodes: nodes.len(),
        subscribers: n,
        messages: o.messages,
        rate: o.rate,
        size: o.size,
        deflate: o.deflate,
        connect_s,
        join_s,
        publish_s: publish_time.as_secs_f64(),
        delivered,
        per_s: if span_ns > 0 { delivered as f64 / (span_ns as f64 / 1e9) } else { 0.0 },
        node_cpu_s,
        cpu_us_per_delivery: if delivered > 0 { node_cpu_s * 1e6 / delivered as f64 } else { 0.0 },
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
        lost,
        duplicated,
        out_of_order,
        disconnected: shared.disconnected.load(Ordering::Relaxed),
        close_reason,
        connected_kib_per_subscriber: per_subscriber(&connected_rss),
        joined_kib_per_subscriber: per_subscriber(&joined_rss),
        client_kib_per_subscriber: client_after.saturating_sub(client_before) as f64 / n as f64,
        node_rss_kib: [before, connected_rss, joined_rss, end_rss],
        redis_rss_kib,
    })
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn print_table(rs: &[Outcome]) {
    println!();
    println!(
        "| mode | subscribers | published | delivered/s | node CPU per delivery | latency p50 | p99 | max | lost / dup / reordered | \
         node RSS per subscriber: connected / joined | connect, join |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |");
    for r in rs {
        let rate = if r.rate > 0.0 { format!("{}/s", r.rate) } else { "unpaced".into() };
        let mode = match r.mode {
            Mode::Single => "1 node".to_string(),
            Mode::Redis => format!("{} nodes + Redis", r.nodes),
        };
        println!(
            "| {mode} | {} | {} × {} B at {rate} | {:.0} | {:.2} µs | {} | {} | {} | {} / {} / {} | {:.2} / {:.2} KiB | {:.1} s, {:.1} s |",
            r.subscribers,
            r.messages,
            r.size,
            r.per_s,
            r.cpu_us_per_delivery,
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.max_us),
            r.lost,
            r.duplicated,
            r.out_of_order,
            r.connected_kib_per_subscriber,
            r.joined_kib_per_subscriber,
            r.connect_s,
            r.join_s,
        );
    }
    println!();
    for r in rs {
        let [before, connected, joined, end] = &r.node_rss_kib;
        println!(
            "{}: {} of {} deliveries, published in {:.1} s, node CPU {:.2} s; {} subscribers disconnected{}; permessage-deflate {}; \
             node RSS (KiB) {before:?} idle, {connected:?} connected, {joined:?} joined, {end:?} at the end; \
             client RSS {:.2} KiB per subscriber{}",
            r.mode.name(),
            r.delivered,
            r.subscribers as u64 * r.messages,
            r.publish_s,
            r.node_cpu_s,
            r.disconnected,
            r.close_reason.as_ref().map(|c| format!(" (first close: {c})")).unwrap_or_default(),
            if r.deflate { "offered" } else { "off" },
            r.client_kib_per_subscriber,
            r.redis_rss_kib.map(|k| format!("; redis-server RSS {k} KiB")).unwrap_or_default(),
        );
    }
}
