//! The fan-out bench's subscribers (benches/fanout.rs), in client
//! processes of their own: the bench binary again, with the hidden role
//! [`ROLE`] and a [`Plan`] as JSON. A process is capped at 20,000 open
//! files here (a hard limit), so one cannot hold every client socket of a
//! room of 18,000 beside anything else; and one source address has some
//! 28,000 ephemeral ports (`/proc/sys/net/ipv4/ip_local_port_range`), so
//! each process binds its sockets to a loopback address of its own
//! (127.0.0.2, 127.0.0.3, ...) before connecting.
//!
//! A client process connects its subscribers (one raw `wsx` client and
//! task each, on one single-threaded runtime) and then takes commands,
//! one a line on its stdin: `join` (join the room, `Plan::joining` at a
//! time),
//! `report` (print the [`Results`]); it ends when its stdin closes. On its
//! stdout it prints [`Report`]s, one JSON object a line: a [`Status`]
//! every 250 ms, the results when asked, an error before it fails.
//!
//! The bench ([`Clients`]) starts the processes, sums their statuses and
//! collects their results. Times that cross processes (an event's send
//! time, the first connect, the last join ack) are wall-clock nanoseconds
//! ([`now_ns`]): every process of the machine reads the same clock.

use crate::common::{close_reason, field, lock, next_message, proc, raise_nofile, Error, Tally, Ws};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;
use wsx::Message;
use wsx_hub::protocol::{self, Packet, RoomRequest, SUBPROTOCOL};

/// The hidden flag that makes the bench binary a client process.
pub const ROLE: &str = "--clients";
/// The room every subscriber joins.
pub const ROOM: &str = "fanout";
/// Handshakes in flight at once in one client process.
const CONNECTING: usize = 128;
/// Open files a process of the bench needs beside its sockets.
pub const SPARE_FILES: usize = 64;
/// How often a client process prints its status.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// Wall-clock nanoseconds since the Unix epoch: the clock that every
/// process of the bench shares.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// What one client process does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Its number, for messages.
    pub index: usize,
    /// The source address of all its sockets.
    pub source: Ipv4Addr,
    /// The nodes: subscriber `i` of `total` connects to node
    /// `i * nodes.len() / total`.
    pub nodes: Vec<SocketAddr>,
    /// Its subscribers are `first..first + count` of `total`.
    pub first: usize,
    pub count: usize,
    pub total: usize,
    /// Events published (each subscriber expects all of them).
    pub messages: u64,
    /// Offer permessage-deflate.
    pub deflate: bool,
    /// Joins in flight at once; 0: no limit (each subscriber joins when
    /// told).
    pub joining: usize,
}

/// A histogram of delivery latencies in µs (the client processes' and
/// their sum alike: their counts are added up).
pub fn latency_histogram() -> Result<Histogram<u64>, Error> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())
}

/// How long a member waits for its join ack (between two messages) in a
/// room of `room`: two minutes, and more for a larger room (a join may
/// cost the node work in proportion to the room, and thousands may be
/// queued before it).
pub fn join_wait(room: usize) -> Duration {
    Duration::from_secs(120) + Duration::from_millis(10) * room as u32
}

/// What a client process prints, one JSON object a line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Report {
    Status(Status),
    Result(Box<Results>),
    Error { message: String },
}

/// Counters of one client process (or, summed, of all).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Status {
    pub connected: u64,
    pub joined: u64,
    /// Events received.
    pub delivered: u64,
    /// Other packets received once joined (presence).
    pub other: u64,
    /// Subscribers whose connection ended.
    pub disconnected: u64,
}

impl std::ops::AddAssign for Status {
    fn add_assign(&mut self, o: Status) {
        self.connected += o.connected;
        self.joined += o.joined;
        self.delivered += o.delivered;
        self.other += o.other;
        self.disconnected += o.disconnected;
    }
}

/// What one client process measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub status: Status,
    /// [`now_ns`] when the first handshake began, the last ended, the last
    /// join ack arrived, and of the first and last delivery.
    pub first_connect_ns: u64,
    pub last_connected_ns: u64,
    pub last_joined_ns: u64,
    pub first_delivery_ns: u64,
    pub last_delivery_ns: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// The first close frame a subscriber received.
    pub close_reason: Option<String>,
    /// Delivery latency in µs: (value, count) pairs of its histogram.
    pub latency_us: Vec<(u64, u64)>,
    /// The process's VmRSS before connecting and now.
    pub rss_kib: [u64; 2],
}

/// Shared by the subscriber tasks of a client process.
struct Shared {
    connected: AtomicU64,
    joined: AtomicU64,
    delivered: AtomicU64,
    other: AtomicU64,
    disconnected: AtomicU64,
    first_connect_ns: AtomicU64,
    last_connected_ns: AtomicU64,
    last_joined_ns: AtomicU64,
    first_delivery_ns: AtomicU64,
    last_delivery_ns: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    close_reason: Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Result<Shared, Error> {
        Ok(Shared {
            connected: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            other: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            first_connect_ns: AtomicU64::new(u64::MAX),
            last_connected_ns: AtomicU64::new(0),
            last_joined_ns: AtomicU64::new(0),
            first_delivery_ns: AtomicU64::new(u64::MAX),
            last_delivery_ns: AtomicU64::new(0),
            latency: Mutex::new(latency_histogram()?),
            close_reason: Mutex::new(None),
        })
    }

    fn status(&self) -> Status {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Status {
            connected: n(&self.connected),
            joined: n(&self.joined),
            delivered: n(&self.delivered),
            other: n(&self.other),
            disconnected: n(&self.disconnected),
        }
    }
}

// ------------------------------------------------------ a client process

/// The client process's `main`: `--clients PLAN_JSON`. Its error goes to
/// the bench, as a [`Report::Error`].
pub fn serve(args: &[String]) -> Result<(), ()> {
    let result = match args {
        [plan] => serde_json::from_str::<Plan>(plan)
            .map_err(|e| format!("client process: bad plan: {e}"))
            .and_then(|plan| run_clients(&plan).map_err(|e| format!("client process {}: {e}", plan.index))),
        _ => Err(format!("client process: {ROLE} PLAN_JSON")),
    };
    result.map_err(|message| emit(&Report::Error { message }))
}

fn emit(r: &Report) {
    let mut out = std::io::stdout().lock();
    // A broken pipe means the bench is gone; the process ends with stdin.
    let _ = serde_json::to_writer(&mut out, r);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn run_clients(plan: &Plan) -> Result<(), Error> {
    raise_nofile((plan.count + SPARE_FILES) as u64)?;
    let rss_before = proc::rss_kib("self")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let shared = Arc::new(Shared::new()?);
        let tallies: Vec<_> = (0..plan.count).map(|_| Arc::new(Mutex::new(Tally::new(plan.messages)))).collect();
        let (join_now, join_rx) = tokio::sync::watch::channel(false);
        let (err_tx, mut errors) = tokio::sync::mpsc::unbounded_channel::<Error>();
        let connecting = Arc::new(Semaphore::new(CONNECTING));
        let joining = Arc::new(Semaphore::new(match plan.joining {
            0 => plan.count.max(1),
            n => n,
        }));
        let tasks: Vec<_> = tallies
            .iter()
            .enumerate()
            .map(|(k, tally)| {
                let i = plan.first + k;
                let addr = plan.nodes[i * plan.nodes.len() / plan.total];
                let (shared, tally, err_tx) = (shared.clone(), tally.clone(), err_tx.clone());
                let (connecting, joining, mut join_rx) = (connecting.clone(), joining.clone(), join_rx.clone());
                let (source, deflate, join_wait) = (plan.source, plan.deflate, join_wait(plan.total));
                tokio::spawn(async move {
                    let r = async {
                        let mut ws = {
                            let _permit = connecting.acquire().await;
                            shared.first_connect_ns.fetch_min(now_ns(), Ordering::Relaxed);
                            connect(addr, Some(source), deflate).await?
                        };
                        shared.last_connected_ns.fetch_max(now_ns(), Ordering::Relaxed);
                        shared.connected.fetch_add(1, Ordering::Relaxed);
                        // Keep reading while waiting (the hub pings, and
                        // closes connections that stay silent).
                        let _ = reading(&mut ws, join_rx.wait_for(|go| *go)).await?;
                        {
                            let _permit = reading(&mut ws, joining.acquire()).await?;
                            join(&mut ws, join_wait).await?;
                        }
                        shared.last_joined_ns.fetch_max(now_ns(), Ordering::Relaxed);
                        shared.joined.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Error>(ws)
                    };
                    match r.await {
                        Ok(ws) => subscribe(ws, tally, shared).await,
                        Err(e) => {
                            let _ = err_tx.send(format!("subscriber {i}: {e}"));
                        }
                    }
                })
            })
            .collect();
        drop(err_tx);

        // Commands, one a line; the channel closes with stdin.
        let (cmd_tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if cmd_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut tick = tokio::time::interval(STATUS_EVERY);
        let result = loop {
            tokio::select! {
                Some(e) = errors.recv() => break Err(e),
                c = commands.recv() => match c.as_deref().map(str::trim) {
                    Some("join") => {
                        join_now.send_replace(true);
                    }
                    Some("report") => {
                        let results = results(plan, &shared, &tallies, rss_before)?;
                        emit(&Report::Result(Box::new(results)));
                    }
                    Some(other) => break Err(format!("unknown command {other:?}")),
                    None => break Ok(()),
                },
                _ = tick.tick() => emit(&Report::Status(shared.status())),
            }
        };
        for t in &tasks {
            t.abort();
        }
        result
    })
}

fn results(plan: &Plan, shared: &Shared, tallies: &[Arc<Mutex<Tally>>], rss_before: u64) -> Result<Results, Error> {
    let mut r = Results {
        status: shared.status(),
        first_connect_ns: shared.first_connect_ns.load(Ordering::Relaxed),
        last_connected_ns: shared.last_connected_ns.load(Ordering::Relaxed),
        last_joined_ns: shared.last_joined_ns.load(Ordering::Relaxed),
        first_delivery_ns: shared.first_delivery_ns.load(Ordering::Relaxed),
        last_delivery_ns: shared.last_delivery_ns.load(Ordering::Relaxed),
        close_reason: lock(&shared.close_reason).clone(),
        latency_us: lock(&shared.latency)
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect(),
        rss_kib: [rss_before, proc::rss_kib("self")?],
        ..Results::default()
    };
    for t in tallies {
        let t = lock(t);
        r.lost += plan.messages - t.distinct;
        r.duplicated += t.duplicates;
        r.out_of_order += t.out_of_order;
    }
    Ok(r)
}

fn upgrade_request(addr: SocketAddr) -> Result<http::Request<()>, Error> {
    http::Request::get(format!("ws://{addr}/"))
        .header("sec-websocket-protocol", SUBPROTOCOL)
        .body(())
        .map_err(|e| format!("request: {e}"))
}

/// Connect to a node (from `source`, when given, on a port the kernel
/// picks) and read the welcome.
pub async fn connect(addr: SocketAddr, source: Option<Ipv4Addr>, deflate: bool) -> Result<Ws, Error> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket.bind((ip, 0).into()).map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let tcp = socket.connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let config = wsx::Config::default().with_compression(deflate);
    let (mut ws, _) = wsx::client_handshake(wsx::MaybeTls::Plain(tcp), upgrade_request(addr)?, &config)
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    let welcome = next_message(&mut ws, "the welcome", Duration::from_secs(120)).await?;
    match protocol::decode_message(&welcome) {
        Some(Ok(Packet::Welcome(_))) => Ok(ws),
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

/// Join the room and wait (`wait` at most between two messages) for the
/// ack. Presence packets (one a join, or coalesced diffs) are skipped and
/// a successful ack is recognised by its first bytes (the encoder writes
/// `t`, `id`, then `data` or `error`), both without parsing; what the ack
/// carries (the member list, or part of it) is not looked at.
pub async fn join(ws: &mut Ws, wait: Duration) -> Result<(), Error> {
    let join = protocol::encode(&Packet::Join(RoomRequest { room: ROOM.into(), id: Some(1) }));
    ws.send(join.to_message()).await.map_err(|e| format!("join: {e}"))?;
    loop {
        let m = next_message(ws, "the join ack", wait).await?;
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

/// A subscriber after its join: tally events until the connection ends.
async fn subscribe(mut ws: Ws, tally: Arc<Mutex<Tally>>, shared: Arc<Shared>) {
    while let Some(Ok(m)) = ws.recv().await {
        if let Message::Close(f) = &m {
            lock(&shared.close_reason).get_or_insert_with(|| close_reason(f.as_ref()));
        }
        let Message::Text(t) = &m else { continue };
        let t = t.as_str();
        let stamped =
            if t.starts_with(r#"{"t":"event""#) { field(t, r#""seq":"#).zip(field(t, r#""ts":"#)) } else { None };
        let Some((seq, sent)) = stamped else {
            shared.other.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let now = now_ns();
        lock(&tally).record(seq);
        let _ = lock(&shared.latency).record(now.saturating_sub(sent) / 1000);
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        shared.first_delivery_ns.fetch_min(now, Ordering::Relaxed);
        shared.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
    }
    shared.disconnected.fetch_add(1, Ordering::Relaxed);
}

// ------------------------------------------------------------ the bench

/// What the bench last heard from a client process.
#[derive(Default)]
struct Heard {
    status: Status,
    results: Option<Results>,
    error: Option<String>,
    /// Its stdout closed (it ended).
    ended: bool,
}

/// One client process, seen from the bench; on drop its stdin is closed
/// (it ends) and, if it lingers, it is killed.
struct ClientProcess {
    index: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    heard: Arc<Mutex<Heard>>,
}

impl ClientProcess {
    fn start(plan: &Plan) -> Result<ClientProcess, Error> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let json = serde_json::to_string(plan).map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args([ROLE, &json])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start client process {}: {e}", plan.index))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let heard = Arc::new(Mutex::new(Heard::default()));
        let h = heard.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut h = lock(&h);
                match serde_json::from_str::<Report>(&line) {
                    Ok(Report::Status(s)) => h.status = s,
                    Ok(Report::Result(r)) => {
                        h.status = r.status;
                        h.results = Some(*r);
                    }
                    Ok(Report::Error { message }) => h.error = Some(message),
                    Err(e) => h.error = Some(format!("unreadable report {line:?}: {e}")),
                }
            }
            lock(&h).ended = true;
        });
        Ok(ClientProcess { index: plan.index, child, stdin, heard })
    }

    fn send(&mut self, command: &str) -> Result<(), Error> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{command}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("client process {}: {command}: {e}", self.index))
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client processes of one run.
pub struct Clients(Vec<ClientProcess>);

impl Clients {
    /// Start a process for each plan (they connect at once).
    pub fn start(plans: &[Plan]) -> Result<Clients, Error> {
        plans.iter().map(ClientProcess::start).collect::<Result<_, _>>().map(Clients)
    }

    /// Send a command to every process.
    pub fn send(&mut self, command: &str) -> Result<(), Error> {
        self.0.iter_mut().try_for_each(|c| c.send(command))
    }

    /// Their statuses summed; an error when one failed or ended.
    pub fn status(&self) -> Result<Status, Error> {
        let mut sum = Status::default();
        for c in &self.0 {
            let h = lock(&c.heard);
            if let Some(e) = &h.error {
                return Err(e.clone());
            }
            if h.ended {
                return Err(format!("client process {} ended", c.index));
            }
            sum += h.status;
        }
        Ok(sum)
    }

    /// Wait until `done` holds for the summed status, saying every 10 s
    /// how far `count` got of `n`; there is no time limit (a room fills
    /// slowly), but a process that fails or ends fails the wait.
    pub fn wait_for(&self, what: &str, n: u64, count: impl Fn(&Status) -> u64) -> Result<Status, Error> {
        let (since, mut said) = (Instant::now(), Instant::now());
        loop {
            let s = self.status()?;
            if count(&s) >= n {
                return Ok(s);
            }
            if said.elapsed() > Duration::from_secs(10) {
                eprintln!("fanout:   {} of {n} {what} after {:.0} s", count(&s), since.elapsed().as_secs_f64());
                said = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Their utime + stime together, in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64, Error> {
        self.0.iter().map(|c| proc::cpu_total(c.child.id())).sum()
    }

    /// Ask every process for its results and wait for them.
    pub fn results(&mut self) -> Result<Vec<Results>, Error> {
        self.send("report")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        for c in &self.0 {
            loop {
                let mut h = lock(&c.heard);
                if let Some(r) = h.results.take() {
                    out.push(r);
                    break;
                }
                if let Some(e) = &h.error {
                    return Err(e.clone());
                }
                if h.ended || Instant::now() > deadline {
                    return Err(format!("client process {} did not report its results", c.index));
                }
                drop(h);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(out)
    }
}
