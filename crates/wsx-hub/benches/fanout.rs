//! Fan-out: one publisher, N subscribers per node in one room (issue 7,
//! "Measured"; issue 20, point 11: as many connections as the machine
//! allows).
//!
//! 1. `single`: one hub node with N subscribers.
//! 2. `redis`: two nodes joined by Redis pub/sub (a `redis-server` started
//!    on a free loopback port; skipped with a notice when it is not
//!    installed), N subscribers on each node (2 x N in the room), the
//!    publisher on node A.
//!
//! Every process here may hold at most 20,000 open files (a hard limit),
//! so no process holds every socket: the hub nodes run in child processes
//! (this binary again, with the hidden flag `--serve-node`), each on a
//! single-threaded tokio runtime, and the subscribers in client processes
//! (this binary again, `--clients`, see `common/clients.rs`) of at most
//! `--clients-per-process` sockets each, every one from a loopback source
//! address of its own (127.0.0.2, 127.0.0.3, ...), so that no address
//! runs out of ephemeral ports. This process coordinates them over their
//! stdin and stdout (JSON lines), publishes (its own thread, from
//! 127.0.0.1, on node A) and reads the nodes' memory (VmRSS, from
//! `/proc/PID/status`: idle, with the subscribers connected, once they
//! joined, and the most it was until then, VmHWM, the peak of the fill)
//! and CPU time (utime + stime, from `/proc/PID/stat`, while
//! publishing).
//!
//! The publisher sends `publish` packets at `--rate` per second (0: as
//! fast as it can), each stamped with its send time (wall clock, which
//! every process reads alike) and a sequence number; each subscriber
//! checks the sequence (lost, duplicated, out of order) and records the
//! delivery latency. Exits non-zero when a message was lost beyond what
//! the nodes' slow-consumer policy dropped (they say how many: unpaced, a
//! subscriber slower than the publisher loses the oldest broadcasts of a
//! full queue, as the hub promises), duplicated or reordered, or when
//! anything fails. From the measured memory per
//! connection and CPU time per delivery it projects, linearly, what
//! 100,000 and 1,000,000 connections would cost.
//!
//! Publishing takes `--messages / --rate` seconds (30 s by default).
//! Filling the room may take longer, the more so the slower it fills
//! (`--joining`: every presence interval sends each member a diff while
//! the room changes; docs/hub-fanout.md), so there is no time limit on
//! connecting and joining; progress is printed every 10 s.
//!
//! ```sh
//! cargo bench -p wsx-hub --bench fanout                       # both modes, defaults
//! cargo bench -p wsx-hub --bench fanout -- --mode single --subscribers 3000 --clients-per-process 1500
//! cargo bench -p wsx-hub --bench fanout -- --mode redis --joining 8      # a room that fills slowly
//! cargo bench -p wsx-hub --bench fanout -- --json
//! ```
//!
//! To profile a node, set `WSX_FANOUT_NODE_WRAPPER` to a program that
//! runs the node's command line given to it (a heap profiler:
//! `WSX_FANOUT_NODE_WRAPPER=heaptrack`); the node's RSS and CPU time are
//! then the wrapper's, so the node figures mean nothing in that run.

use clients::{Clients, Plan, Results, ROOM, SPARE_FILES};
use common::{ms, proc, raise_nofile, Error};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use wsx_hub::protocol::{self, Packet, PublishPacket};

const EVENT: &str = "tick";

/// The node RSS readings of an [`Outcome`], by place.
const IDLE: usize = 0;
const CONNECTED: usize = 1;
const JOINED: usize = 2;
const FILL_PEAK: usize = 4;
/// The first source address of the client processes; each takes the next.
const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The client processes (their role, and the bench's handle on them).
#[path = "common/clients.rs"]
mod clients;
#[path = "common/mod.rs"]
mod common;

#[derive(Debug, Clone)]
struct Opts {
    /// Per node.
    subscribers: usize,
    clients_per_process: usize,
    joining: usize,
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

    fn nodes(self) -> usize {
        match self {
            Mode::Single => 1,
            Mode::Redis => 2,
        }
    }
}

const USAGE: &str = "\
usage: cargo bench -p wsx-hub --bench fanout -- [options]
  --subscribers N   subscribers on each node: N in the room with one node,
                    2 x N with two (default 18000)
  --clients-per-process N
                    client sockets per client process, each process with a
                    source address of its own (default 15000; a process may
                    hold 20,000 open files here)
  --joining N       joins in flight at once in each client process; 0 (the
                    default): every subscriber joins when told, a burst as
                    after a restart; a few (8, as before 2026-12-06) make
                    the room fill slowly, a join after the other
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
        subscribers: 18_000,
        clients_per_process: 15_000,
        joining: 0,
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
                o.subscribers = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| bad(a, &v))?;
            }
            "--clients-per-process" => {
                let v = value(a)?;
                o.clients_per_process = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| bad(a, &v))?;
            }
            "--joining" => {
                let v = value(a)?;
                o.joining = v.parse().map_err(|_| bad(a, &v))?;
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
    let result = match args.first().map(String::as_str) {
        Some("--serve-node") => serve_node(&args[1..]),
        // A client process tells its error to the bench, which says it.
        Some(clients::ROLE) => std::process::exit(clients::serve(&args[1..]).map_or(1, |()| 0)),
        _ => parse_args(&args).and_then(|o| run(&o)),
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
/// `--serve-node NAME MAX_MEMBERS CONNECTIONS [REDIS_URL PREFIX]`
fn serve_node(args: &[String]) -> Result<(), Error> {
    const ARGS: &str = "node: --serve-node NAME MAX_MEMBERS CONNECTIONS [REDIS_URL PREFIX]";
    let (name, max_members, connections) = match args {
        [name, max, conns, ..] => {
            (name.clone(), max.parse::<usize>().map_err(|_| ARGS)?, conns.parse::<u64>().map_err(|_| ARGS)?)
        }
        _ => return Err(ARGS.into()),
    };
    raise_nofile(connections + SPARE_FILES as u64)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("node {name}: runtime: {e}"))?;
    rt.block_on(async move {
        let mut b = wsx_hub::Hub::builder().node_id(name.clone()).max_room_members(max_members);
        if let [_, _, _, url, prefix] = args {
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
        // Serve until the parent closes our stdin (or goes away); answer
        // `dropped` with the broadcasts the slow-consumer policy dropped.
        let _ = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.trim() == "dropped" {
                    println!("dropped {}", hub.metrics().dropped);
                    let _ = std::io::stdout().flush();
                }
                line.clear();
            }
        })
        .await;
        Ok(())
    })
}

/// A hub node child process, killed on drop.
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Node {
    /// A node for at most `max_members` members in a room and
    /// `connections` connections.
    fn start(name: &str, max_members: usize, connections: usize, redis: Option<(&str, &str)>) -> Result<Node, Error> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let mut cmd = match std::env::var_os("WSX_FANOUT_NODE_WRAPPER") {
            Some(wrapper) => {
                let mut c = Command::new(wrapper);
                c.arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["--serve-node", name, &max_members.to_string(), &connections.to_string()]);
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
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut node = Node { child, stdin, stdout, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        let addr = node.said("listening ").map_err(|e| format!("node {name} did not start: {e}"))?;
        node.addr = addr.parse().map_err(|_| format!("node {name} listens on {addr:?}"))?;
        Ok(node)
    }

    /// What follows `prefix` on the node's next line that starts with it
    /// (a wrapper may print lines of its own).
    fn said(&mut self, prefix: &str) -> Result<String, Error> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line) {
                Ok(0) => return Err(format!("it ended before a line {prefix:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("reading it: {e}")),
            }
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                return Ok(rest.to_owned());
            }
        }
    }

    fn rss_kib(&self) -> Result<u64, Error> {
        proc::rss_kib(self.child.id())
    }

    fn peak_rss_kib(&self) -> Result<u64, Error> {
        proc::peak_rss_kib(self.child.id())
    }

    /// utime + stime, in clock ticks.
    fn cpu_ticks(&self) -> Result<u64, Error> {
        proc::cpu_total(self.child.id())
    }

    /// Broadcasts the node's slow-consumer policy dropped so far (lines a
    /// wrapper printed meanwhile are skipped).
    fn dropped(&mut self) -> Result<u64, Error> {
        let stdin = self.stdin.as_mut().ok_or("the node's stdin is closed")?;
        writeln!(stdin, "dropped").and_then(|()| stdin.flush()).map_err(|e| format!("asking a node: {e}"))?;
        let n = self.said("dropped ").map_err(|e| format!("a node's drops: {e}"))?;
        n.parse().map_err(|_| format!("a node answered {n:?} for its drops"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        proc::rss_kib(self.child.id())
    }

    fn cpu_ticks(&self) -> Result<u64, Error> {
        proc::cpu_total(self.child.id())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ publisher

/// The publisher, on its own thread and runtime so that nothing else
/// delays its schedule: joins, then publishes `messages` events at `rate`
/// per second, each stamped with its send time.
fn publisher(addr: SocketAddr, o: &Opts, room: usize, signals: Signals) -> Result<(), Error> {
    let Signals { ready, go, published, done } = signals;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("publisher runtime: {e}"))?;
    rt.block_on(async {
        let mut ws = clients::connect(addr, None, o.deflate).await.map_err(|e| format!("publisher: {e}"))?;
        clients::join(&mut ws, clients::join_wait(room)).await.map_err(|e| format!("publisher: {e}"))?;
        let (mut rx, mut tx) = ws.split();
        // Read (and drop) what comes: presence, pings.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.recv().await {} });
        // Tell the main thread we are in, and wait for its go.
        let _ = ready.send(());
        tokio::task::spawn_blocking(move || go.recv())
            .await
            .map_err(|e| format!("publisher: {e}"))?
            .map_err(|_| "publisher: the run was abandoned".to_string())?;
        let pad_len = o.size.saturating_sub(r#"{"seq":0000,"ts":0000000000000000000,"pad":""}"#.len());
        let pad = "x".repeat(pad_len);
        let start = Instant::now();
        for seq in 0..o.messages {
            if o.rate > 0.0 {
                tokio::time::sleep_until((start + Duration::from_secs_f64(seq as f64 / o.rate)).into()).await;
            }
            let p = Packet::Publish(PublishPacket {
                room: ROOM.into(),
                event: EVENT.into(),
                data: json!({"seq": seq, "ts": clients::now_ns(), "pad": pad}),
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

/// What one mode measured.
struct Outcome {
    mode: Mode,
    /// In the room (the publisher aside): `per_node` on each node.
    subscribers: usize,
    per_node: usize,
    client_processes: usize,
    messages: u64,
    rate: f64,
    size: usize,
    deflate: bool,
    /// The join command to the last join ack.
    join_s: f64,
    publish_s: f64,
    /// Each node's RSS idle, with the subscribers connected, joined, at
    /// the end, and the most it was until they joined (VmHWM: the peak of
    /// the fill), in that order ([`IDLE`] ... [`FILL_PEAK`]).
    node_rss_kib: [Vec<u64>; 5],
    redis_rss_kib: Option<u64>,
    /// CPU time (utime + stime) while publishing: the nodes' (summed),
    /// redis-server's and the client processes' (summed).
    node_cpu_s: f64,
    redis_cpu_s: Option<f64>,
    client_cpu_s: f64,
    /// The nodes' CPU time from the join command until presence went
    /// quiet.
    node_join_cpu_s: f64,
    seen: Seen,
}

/// What the subscribers saw, over all client processes.
struct Seen {
    /// First handshake begun to last ended; first handshake to last join
    /// ack (with the bench's pause of 0.3 s to read the nodes' memory
    /// between connecting and joining).
    connect_s: f64,
    fill_s: f64,
    /// [`clients::now_ns`] of the last join ack.
    last_joined_ns: u64,
    delivered: u64,
    /// Deliveries per second, first to last.
    per_s: f64,
    /// p50, p90, p99, p99.9, max.
    latency_us: [u64; 5],
    lost: u64,
    /// Of the lost, how many the nodes' slow-consumer policy dropped (the
    /// nodes' count).
    dropped: u64,
    duplicated: u64,
    out_of_order: u64,
    disconnected: u64,
    close_reason: Option<String>,
    /// The client processes' RSS growth, summed.
    client_rss_kib: u64,
}

impl Outcome {
    /// A message lost that the slow-consumer policy did not drop, or one
    /// duplicated or out of order. (Unpaced, subscribers that read slower
    /// than the publisher sends lose what the policy drops: the hub's
    /// contract, not a fault.)
    fn failed(&self) -> bool {
        self.seen.lost > self.seen.dropped || self.seen.duplicated + self.seen.out_of_order > 0
    }

    /// The nodes' RSS growth from idle, per connection, at a reading
    /// ([`CONNECTED`], [`JOINED`], [`FILL_PEAK`]).
    fn node_kib_per_connection(&self, at: usize) -> f64 {
        let grown: u64 =
            self.node_rss_kib[at].iter().zip(&self.node_rss_kib[IDLE]).map(|(a, b)| a.saturating_sub(*b)).sum();
        grown as f64 / self.subscribers as f64
    }

    fn cpu_us_per_delivery(&self) -> f64 {
        if self.seen.delivered == 0 {
            return 0.0;
        }
        self.node_cpu_s * 1e6 / self.seen.delivered as f64
    }

    /// Events per second: the rate asked for, or, unpaced, the one
    /// measured.
    fn events_per_s(&self) -> f64 {
        if self.rate == 0.0 && self.publish_s > 0.0 {
            self.messages as f64 / self.publish_s
        } else {
            self.rate
        }
    }

    fn json(&self) -> Value {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let [idle, connected, joined, end, peak] = &self.node_rss_kib;
        let [p50, p90, p99, p999, max] = self.seen.latency_us;
        json!({
            "mode": self.mode.name(), "nodes": self.mode.nodes(), "subscribers": self.subscribers,
            "subscribers_per_node": self.per_node, "client_processes": self.client_processes,
            "messages": self.messages, "rate": self.rate, "size": self.size, "deflate": self.deflate,
            "connect_s": round(self.seen.connect_s), "join_s": round(self.join_s), "fill_s": round(self.seen.fill_s),
            "publish_s": round(self.publish_s),
            "delivered": self.seen.delivered, "delivered_per_s": self.seen.per_s.round(),
            "latency_us": {"p50": p50, "p90": p90, "p99": p99, "p999": p999, "max": max},
            "lost": self.seen.lost, "dropped": self.seen.dropped, "duplicated": self.seen.duplicated, "out_of_order": self.seen.out_of_order,
            "disconnected": self.seen.disconnected, "close_reason": self.seen.close_reason,
            "node_rss_kib": {"idle": idle, "connected": connected, "joined": joined, "end": end, "fill_peak": peak},
            "node_kib_per_subscriber": {
                "connected": round(self.node_kib_per_connection(CONNECTED)),
                "joined": round(self.node_kib_per_connection(JOINED)),
                "fill_peak": round(self.node_kib_per_connection(FILL_PEAK)),
            },
            "client_kib_per_subscriber": round(self.seen.client_rss_kib as f64 / self.subscribers as f64),
            "redis_rss_kib": self.redis_rss_kib,
            "node_cpu_s": round(self.node_cpu_s), "redis_cpu_s": self.redis_cpu_s.map(round),
            "client_cpu_s": round(self.client_cpu_s), "node_join_cpu_s": round(self.node_join_cpu_s),
            "node_cpu_us_per_delivery": round(self.cpu_us_per_delivery()),
            "projection": PROJECTED.iter().map(|&c| projection(self, c).json()).collect::<Vec<_>>(),
        })
    }
}

fn run(o: &Opts) -> Result<(), Error> {
    // Each node holds `--subscribers` sockets (and the publisher's), each
    // client process `--clients-per-process`.
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(|e| format!("RLIMIT_NOFILE: {e}"))?.1;
    for (what, n) in [("--subscribers", o.subscribers + 1), ("--clients-per-process", o.clients_per_process)] {
        if (n + SPARE_FILES) as u64 > hard {
            return Err(format!(
                "{what}: {n} sockets and {SPARE_FILES} files more than the {hard} open files a process may hold"
            ));
        }
    }
    raise_nofile(SPARE_FILES as u64)?;
    let ticks = proc::clock_ticks();
    let mut next_source = 0;
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
        eprintln!(
            "fanout: {} mode, {} subscribers on each of {} node(s) ...",
            mode.name(),
            o.subscribers,
            mode.nodes()
        );
        outcomes.push(run_mode(o, mode, redis.as_ref(), ticks, &mut next_source)?);
    }
    print_table(&outcomes);
    if o.json {
        println!("{}", Value::Array(outcomes.iter().map(Outcome::json).collect()));
    }
    let bad: Vec<&str> = outcomes.iter().filter(|r| r.failed()).map(|r| r.mode.name()).collect();
    if !bad.is_empty() {
        return Err(format!(
            "messages lost (beyond the slow-consumer drops), duplicated or out of order in: {}",
            bad.join(", ")
        ));
    }
    Ok(())
}

/// The client processes' plans: `total` subscribers over as few processes
/// of at most `per_process` as hold them, evenly; each process takes the
/// next source address after `next_source` (a fresh one for every mode,
/// so that no address meets the sockets a former run left in TIME_WAIT).
fn plans(o: &Opts, nodes: &[SocketAddr], total: usize, next_source: &mut u32) -> Vec<Plan> {
    let processes = total.div_ceil(o.clients_per_process);
    let plans = (0..processes)
        .map(|k| {
            let (first, end) = (k * total / processes, (k + 1) * total / processes);
            Plan {
                index: k,
                source: Ipv4Addr::from(u32::from(FIRST_SOURCE) + *next_source + k as u32),
                nodes: nodes.to_vec(),
                first,
                count: end - first,
                total,
                messages: o.messages,
                deflate: o.deflate,
                joining: o.joining,
            }
        })
        .collect();
    *next_source += processes as u32;
    plans
}

fn run_mode(o: &Opts, mode: Mode, redis: Option<&Redis>, ticks: f64, next_source: &mut u32) -> Result<Outcome, Error> {
    let per_node = o.subscribers;
    let total = per_node * mode.nodes();
    // A node may hold all of the room; it has its subscribers and the
    // publisher as connections.
    let mut nodes = match redis {
        None => vec![Node::start("a", total + 1, per_node + 1, None)?],
        Some(r) => {
            let url = format!("redis://127.0.0.1:{}/", r.port);
            let prefix = format!("fanout{}", std::process::id());
            let redis = Some((url.as_str(), prefix.as_str()));
            vec![Node::start("a", total + 1, per_node + 1, redis)?, Node::start("b", total + 1, per_node + 1, redis)?]
        }
    };
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let node_rss = || nodes.iter().map(Node::rss_kib).collect::<Result<Vec<_>, _>>();
    let node_cpu = || nodes.iter().map(Node::cpu_ticks).sum::<Result<u64, _>>();
    // Let the nodes settle before the first reading.
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = node_rss()?;

    // The subscribers connect, then join (when told) and tally what they
    // receive.
    let plans = plans(o, &addrs, total, next_source);
    eprintln!(
        "fanout:   {} client processes, from {} to {}",
        plans.len(),
        plans[0].source,
        plans[plans.len() - 1].source
    );
    let mut clients = Clients::start(&plans)?;
    clients.wait_for("connected", total as u64, |s| s.connected)?;
    std::thread::sleep(Duration::from_millis(300));
    let connected_rss = node_rss()?;
    let join_ns = clients::now_ns();
    let join_cpu_start = node_cpu()?;
    clients.send("join")?;
    clients.wait_for("joined", total as u64, |s| s.joined)?;

    // The publisher joins last, on node A.
    let (ready, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go) = std::sync::mpsc::channel();
    let (published, published_rx) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel();
    let publisher = {
        let (o, addr) = (o.clone(), addrs[0]);
        std::thread::spawn(move || publisher(addr, &o, total, Signals { ready, go, published, done }))
    };
    let publisher_failed = |p: std::thread::JoinHandle<Result<(), Error>>| match p.join() {
        Ok(Err(e)) => e,
        _ => "the publisher failed".into(),
    };
    if ready_rx.recv().is_err() {
        return Err(publisher_failed(publisher));
    }
    // Wait until the presence packets of the joins have been delivered:
    // none for a second.
    let mut other = clients.status()?.other;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = clients.status()?.other;
        if now == other {
            break;
        }
        other = now;
    }
    let joined_rss = node_rss()?;
    let peak_rss = nodes.iter().map(Node::peak_rss_kib).collect::<Result<Vec<_>, _>>()?;
    let redis_rss_kib = redis.map(Redis::rss_kib).transpose()?;
    let cpu_start = (node_cpu()?, redis.map(Redis::cpu_ticks).transpose()?, clients.cpu_ticks()?);
    if go_tx.send(()).is_err() {
        return Err(publisher_failed(publisher));
    }

    // Publish; wait for every delivery, or for deliveries to stop (for
    // longer in a larger room).
    let stall = Duration::from_secs(10) + Duration::from_millis(1) * total as u32;
    let expected = total as u64 * o.messages;
    let publish_time = loop {
        match published_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(t) => break t,
            // A client process that failed fails the run now.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                clients.status()?;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(publisher_failed(publisher)),
        }
    };
    let mut last = (clients.status()?.delivered, Instant::now());
    while last.0 < expected {
        std::thread::sleep(Duration::from_millis(20));
        let d = clients.status()?.delivered;
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > stall {
            eprintln!("fanout:   deliveries stopped at {d} of {expected}");
            break;
        }
    }
    let cpu_end = (node_cpu()?, redis.map(Redis::cpu_ticks).transpose()?, clients.cpu_ticks()?);
    let end_rss = node_rss()?;
    let dropped = nodes.iter_mut().map(Node::dropped).sum::<Result<u64, _>>()?;
    let results = clients.results()?;
    let _ = done_tx.send(());
    publisher.join().map_err(|_| "the publisher panicked".to_string())??;
    // The nodes go first, so that the client sockets are closed by their
    // peer and leave no TIME_WAIT on the client addresses.
    drop(nodes);
    drop(clients);
    let seen = seen(&results, dropped)?;
    Ok(Outcome {
        mode,
        subscribers: total,
        per_node,
        client_processes: plans.len(),
        messages: o.messages,
        rate: o.rate,
        size: o.size,
        deflate: o.deflate,
        join_s: seen.last_joined_ns.saturating_sub(join_ns) as f64 / 1e9,
        publish_s: publish_time.as_secs_f64(),
        node_rss_kib: [idle_rss, connected_rss, joined_rss, end_rss, peak_rss],
        redis_rss_kib,
        node_cpu_s: cpu_end.0.saturating_sub(cpu_start.0) as f64 / ticks,
        redis_cpu_s: cpu_start.1.zip(cpu_end.1).map(|(a, b)| b.saturating_sub(a) as f64 / ticks),
        client_cpu_s: cpu_end.2.saturating_sub(cpu_start.2) as f64 / ticks,
        node_join_cpu_s: cpu_start.0.saturating_sub(join_cpu_start) as f64 / ticks,
        seen,
    })
}

/// The client processes' results together, with the drops the nodes counted.
fn seen(results: &[Results], dropped: u64) -> Result<Seen, Error> {
    let mut h = clients::latency_histogram()?;
    for r in results {
        for &(v, n) in &r.latency_us {
            h.record_n(v, n).map_err(|e| format!("latency {v} µs: {e}"))?;
        }
    }
    let sum = |f: fn(&Results) -> u64| results.iter().map(f).sum::<u64>();
    let min = |f: fn(&Results) -> u64| results.iter().map(f).min().unwrap_or(0);
    let max = |f: fn(&Results) -> u64| results.iter().map(f).max().unwrap_or(0);
    let delivered = sum(|r| r.status.delivered);
    let first_connect = min(|r| r.first_connect_ns);
    let span_s = max(|r| r.last_delivery_ns).saturating_sub(min(|r| r.first_delivery_ns)) as f64 / 1e9;
    Ok(Seen {
        connect_s: max(|r| r.last_connected_ns).saturating_sub(first_connect) as f64 / 1e9,
        fill_s: max(|r| r.last_joined_ns).saturating_sub(first_connect) as f64 / 1e9,
        last_joined_ns: max(|r| r.last_joined_ns),
        delivered,
        per_s: if span_s > 0.0 { delivered as f64 / span_s } else { 0.0 },
        latency_us: [0.5, 0.9, 0.99, 0.999, 1.0].map(|q| h.value_at_quantile(q)),
        lost: sum(|r| r.lost),
        dropped,
        duplicated: sum(|r| r.duplicated),
        out_of_order: sum(|r| r.out_of_order),
        disconnected: sum(|r| r.status.disconnected),
        close_reason: results.iter().find_map(|r| r.close_reason.clone()),
        client_rss_kib: sum(|r| r.rss_kib[1].saturating_sub(r.rss_kib[0])),
    })
}

// ---------------------------------------------------------------- output

/// The room sizes the projection speaks of.
const PROJECTED: [u64; 2] = [100_000, 1_000_000];

/// What `connections` members of one room would cost, linearly from one
/// run's figures.
struct Projection {
    connections: u64,
    /// The nodes' RSS: connected, joined.
    gib: [f64; 2],
    /// Deliveries per second at the run's event rate, and the node cores
    /// they take.
    deliveries_per_s: f64,
    cores: f64,
    /// Events per second one node core delivers to all of them.
    events_per_core_s: f64,
    /// Node processes at 20,000 open files each, and source addresses for
    /// the clients of one node address.
    processes: u64,
    source_addresses: u64,
}

impl Projection {
    fn json(&self) -> Value {
        json!({
            "connections": self.connections,
            "node_gib": {"connected": self.gib[0], "joined": self.gib[1]},
            "deliveries_per_s": self.deliveries_per_s, "node_cores": self.cores,
            "events_per_s_per_core": self.events_per_core_s,
            "node_processes": self.processes, "client_source_addresses": self.source_addresses,
        })
    }
}

/// Ephemeral ports of one source address (`ip_local_port_range`).
fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u64>().ok());
            Some(it.next()??.abs_diff(it.next()??) + 1)
        })
        .unwrap_or(28_232)
}

fn projection(r: &Outcome, connections: u64) -> Projection {
    let gib = |kib: f64| kib * connections as f64 / (1024.0 * 1024.0);
    let deliveries_per_s = r.events_per_s() * connections as f64;
    let per_process = 20_000 - SPARE_FILES as u64;
    Projection {
        connections,
        gib: [gib(r.node_kib_per_connection(CONNECTED)), gib(r.node_kib_per_connection(JOINED))],
        deliveries_per_s,
        cores: deliveries_per_s * r.cpu_us_per_delivery() / 1e6,
        events_per_core_s: 1e6 / (r.cpu_us_per_delivery() * connections as f64),
        processes: connections.div_ceil(per_process),
        source_addresses: connections.div_ceil(ephemeral_ports()),
    }
}

fn print_table(rs: &[Outcome]) {
    println!();
    println!(
        "| mode | subscribers | client processes | published | delivered/s | latency p50 | p90 | p99 | max | \
         lost (dropped by policy) / dup / reordered | node RSS per subscriber: connected / joined / peak of the fill | node CPU per delivery | \
         connect, join, first connect to last join ack |"
    );
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |");
    for r in rs {
        let rate = if r.rate > 0.0 { format!("{}/s", r.rate) } else { "unpaced".into() };
        let mode = match r.mode {
            Mode::Single => "1 node".to_string(),
            Mode::Redis => format!("{} nodes + Redis", r.mode.nodes()),
        };
        let [p50, p90, p99, _, max] = r.seen.latency_us;
        println!(
            "| {mode} | {} | {} | {} × {} B at {rate} | {:.0} | {} | {} | {} | {} | {} ({}) / {} / {} | {:.2} / {:.2} / {:.2} KiB | \
             {:.2} µs | {:.1} s, {:.1} s, {:.1} s |",
            r.subscribers,
            r.client_processes,
            r.messages,
            r.size,
            r.seen.per_s,
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            r.seen.lost,
            r.seen.dropped,
            r.seen.duplicated,
            r.seen.out_of_order,
            r.node_kib_per_connection(CONNECTED),
            r.node_kib_per_connection(JOINED),
            r.node_kib_per_connection(FILL_PEAK),
            r.cpu_us_per_delivery(),
            r.seen.connect_s,
            r.join_s,
            r.seen.fill_s,
        );
    }
    println!();
    for r in rs {
        let [before, connected, joined, end, peak] = &r.node_rss_kib;
        println!(
            "{}: {} of {} deliveries, published in {:.1} s; {} subscribers disconnected{}; permessage-deflate {}; \
             node RSS (KiB) {before:?} idle, {connected:?} connected, {joined:?} joined, {end:?} at the end, \
             {peak:?} at most until joined; \
             node CPU {:.2} s joining (until presence was quiet), {:.2} s publishing; client processes' CPU \
             {:.2} s publishing, RSS {:.2} KiB per subscriber{}",
            r.mode.name(),
            r.seen.delivered,
            r.subscribers as u64 * r.messages,
            r.publish_s,
            r.seen.disconnected,
            r.seen.close_reason.as_ref().map(|c| format!(" (first close: {c})")).unwrap_or_default(),
            if r.deflate { "offered" } else { "off" },
            r.node_join_cpu_s,
            r.node_cpu_s,
            r.client_cpu_s,
            r.seen.client_rss_kib as f64 / r.subscribers as f64,
            r.redis_rss_kib
                .map(|k| format!("; redis-server RSS {k} KiB, CPU {:.2} s", r.redis_cpu_s.unwrap_or(0.0)))
                .unwrap_or_default(),
        );
    }
    println!();
    println!("Linear projection from the measured figures (not a measurement):");
    for r in rs {
        for c in PROJECTED {
            let p = projection(r, c);
            // Unpaced, the run's event rate is a burst's: say what a core
            // sustains instead.
            let cpu = if r.rate > 0.0 {
                format!(
                    "at {:.1} events/s, {:.0} deliveries/s: {:.1} cores",
                    r.events_per_s(),
                    p.deliveries_per_s,
                    p.cores
                )
            } else {
                format!("one node core delivers {:.1} events/s to them", p.events_per_core_s)
            };
            println!(
                "  {}: {c} connections in one room: node RSS {:.1} GiB connected, {:.1} GiB joined; \
                 {cpu}; >= {} node processes, >= {} client source addresses",
                r.mode.name(),
                p.gib[0],
                p.gib[1],
                p.processes,
                p.source_addresses,
            );
        }
    }
    println!(
        "  Assumptions: memory per connection and CPU time per delivery stay what they were at the measured size \
         (no cost that grows with the room, same event size, rate and compression); RSS does not include the \
         kernel's socket buffers; cores are fully busy, without headroom, and count the nodes only (not Redis, \
         not the clients); a process holds at most 20,000 open files, a source address has {} ephemeral ports per \
         destination.",
        ephemeral_ports()
    );
}
