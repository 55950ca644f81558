//! The Redis broker: fan-out through Redis pub/sub, presence in sorted sets
//! with expiry.
//!
//! Channels (with the default prefix `wsx-hub`): `wsx-hub:room:<room>` for
//! each room with members on some node (a node subscribes while it has
//! members, SSE streams or SSE history in the room), `wsx-hub:all` for
//! broadcasts to everyone, `wsx-hub:node:<node>` for messages to one node
//! (a connection there, or the answer to one of its requests). Each node
//! publishes through one connection, in order, and skips what it published
//! itself (messages carry the node id), so every other node receives a
//! message once and a sender's messages arrive in order.
//!
//! Presence: `wsx-hub:presence:<room>` is a sorted set of connection ids
//! scored by their expiry time (Unix ms), for counts and expiry;
//! `wsx-hub:names:<room>` holds the same ids, all scored 0, in the order
//! pages list them (`ZRANGEBYLEX`), so that a page reads what it lists, not
//! the room; `wsx-hub:meta:<conn>` holds each connection's metadata (JSON)
//! for twice the TTL. Nodes refresh their own
//! entries every third of the TTL (default 30 s); when a node dies, its
//! members' entries expire, and a surviving node with members in the room
//! removes each and publishes its leave. Node clocks must roughly agree.
//!
//! When Redis goes away the node keeps serving its own clients, logs,
//! reports [`BrokerState::Disconnected`], buffers up to
//! [`RedisOptions::publish_buffer`] messages (dropping the oldest), and
//! reconnects with exponential backoff; once back it subscribes again,
//! records its presence again (Redis may have lost it) and sends what it
//! buffered. Messages other nodes published meanwhile are lost (pub/sub
//! keeps nothing).

use super::{decode_message, encode_message, node_of, BoxFuture, Broker, BrokerMessage, BrokerState, Inbox};
use crate::error::BrokerError;
use crate::policy::Backoff;
use crate::protocol::{self, Member, MembersPage, Packet, PresenceDiff, PresencePacket};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch, Notify};

/// Settings of the Redis broker.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prefix of every key and channel (default `wsx-hub`): hubs with
    /// different prefixes share a Redis without seeing each other.
    pub prefix: String,
    /// How long presence entries live without a refresh (default 30 s).
    pub presence_ttl: Duration,
    /// Reconnect delays (default 100 ms doubling to 10 s, with jitter).
    pub backoff: Backoff,
    /// Time allowed for connecting and for each command (default 2 s).
    pub command_timeout: Duration,
    /// Messages kept while Redis is unreachable (default 10,000).
    pub publish_buffer: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "wsx-hub".into(),
            presence_ttl: Duration::from_secs(30),
            backoff: Backoff::default(),
            command_timeout: Duration::from_secs(2),
            publish_buffer: 10_000,
        }
    }
}

enum Op {
    Publish(BrokerMessage),
    /// The wanted subscription of a room changed; tell `done` when it is
    /// in effect.
    Sync(String, Option<oneshot::Sender<()>>),
    /// Everything queued before it was sent: tell the sender.
    Flush(oneshot::Sender<()>),
}

/// Consecutive publishes sent in one pipeline, at most.
const PUBLISH_BATCH: usize = 256;

struct Shared {
    client: redis::Client,
    opts: RedisOptions,
    node: OnceLock<String>,
    state: Mutex<BrokerState>,
    conn: Mutex<Option<MultiplexedConnection>>,
    ops: Mutex<VecDeque<Op>>,
    ops_ready: Notify,
    rooms: Mutex<HashSet<String>>,
    /// This node's members, to record again after a reconnect.
    presence: Mutex<Members>,
    /// Joins and leaves of this node not written to Redis yet.
    unwritten: Mutex<Unwritten>,
    /// The generation of the last change written.
    written: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    dropped: std::sync::atomic::AtomicU64,
}

/// Presence changes waiting for the session to write them, in one
/// pipeline for every change since the last write: a burst of joins costs
/// Redis (and the node's buffers for its commands) a round trip, not one
/// per member.
#[derive(Default)]
struct Unwritten {
    joins: Members,
    leaves: HashMap<String, HashSet<String>>,
    /// Counts the changes noted.
    generation: u64,
}

/// Members by room, then by connection, with their metadata.
type Members = BTreeMap<String, BTreeMap<String, Value>>;

/// About the most members recorded in one pipeline.
const MEMBERS_PER_PIPELINE: usize = 500;

/// `EVAL` script: remove the ids of ARGV that have no entry in the
/// presence set KEYS[1] from the names set KEYS[2].
const DROP_STALE_NAMES: &str = "for _, id in ipairs(ARGV) do \
    if not redis.call('ZSCORE', KEYS[1], id) then redis.call('ZREM', KEYS[2], id) end end";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Redis broker. See the module documentation.
///
/// ```no_run
/// use wsx_hub::broker::{RedisBroker, RedisOptions};
/// let broker = RedisBroker::new("redis://127.0.0.1:6379/", RedisOptions::default())?;
/// let hub = wsx_hub::Hub::builder().node_id("node-1").broker(broker).build();
/// # Ok::<(), wsx_hub::BrokerError>(())
/// ```
pub struct RedisBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").field("state", &self.state()).finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// A broker for the Redis at `url` (`redis://[:password@]host:port/db`).
    /// Nothing connects until the hub starts it.
    pub fn new(url: &str, opts: RedisOptions) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url).map_err(|e| BrokerError::Config(e.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                opts,
                node: OnceLock::new(),
                state: Mutex::new(BrokerState::Connecting),
                conn: Mutex::new(None),
                ops: Mutex::new(VecDeque::new()),
                ops_ready: Notify::new(),
                rooms: Mutex::new(HashSet::new()),
                presence: Mutex::new(BTreeMap::new()),
                unwritten: Mutex::new(Unwritten::default()),
                written: watch::channel(0).0,
                stop: watch::channel(false).0,
                dropped: Default::default(),
            }),
        })
    }

    /// Messages dropped because Redis was unreachable for too long.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Shared {
    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.opts.prefix)
    }

    fn channel_of(&self, m: &BrokerMessage) -> String {
        match m {
            BrokerMessage::Room { room, .. } => self.key("room", room),
            BrokerMessage::All { .. } | BrokerMessage::Select { .. } => format!("{}:all", self.opts.prefix),
            BrokerMessage::Direct { .. }
            | BrokerMessage::AckReply { .. }
            | BrokerMessage::RecoverAsk { .. }
            | BrokerMessage::RecoverAnswer { .. }
            | BrokerMessage::Answers { .. } => self.key("node", m.target().unwrap_or_default()),
        }
    }

    fn set_state(&self, s: BrokerState) {
        *lock(&self.state) = s;
    }

    fn push_op(&self, op: Op) {
        let mut ops = lock(&self.ops);
        ops.push_back(op);
        let publishes = ops.iter().filter(|o| matches!(o, Op::Publish(_))).count();
        if publishes > self.opts.publish_buffer {
            if let Some(i) = ops.iter().position(|o| matches!(o, Op::Publish(_))) {
                ops.remove(i);
                self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        drop(ops);
        self.ops_ready.notify_one();
    }

    fn conn(&self) -> Option<MultiplexedConnection> {
        lock(&self.conn).clone()
    }

    fn expiry(&self) -> u64 {
        now_ms() + self.opts.presence_ttl.as_millis() as u64
    }

    /// The commands that record `members` of `room`: one `ZADD` for all
    /// in each of its sets.
    fn add_presence(&self, pipe: &mut redis::Pipeline, room: &str, members: &[(&String, &Value)]) {
        if members.is_empty() {
            return;
        }
        let (key, names) = (self.key("presence", room), self.key("names", room));
        let ttl = self.opts.presence_ttl.as_millis() as u64;
        let exp = self.expiry();
        let zadd = pipe.cmd("ZADD").arg(&key);
        for (conn, _) in members {
            zadd.arg(exp).arg(conn);
        }
        zadd.ignore();
        let zadd = pipe.cmd("ZADD").arg(&names);
        for (conn, _) in members {
            zadd.arg(0).arg(conn);
        }
        zadd.ignore();
        for (conn, meta) in members {
            // Twice the TTL: the leave of an expired member carries it.
            pipe.cmd("SET").arg(self.key("meta", conn)).arg(meta.to_string()).arg("PX").arg(ttl * 2).ignore();
        }
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl * 2).ignore();
        pipe.cmd("PEXPIRE").arg(&names).arg(ttl * 2).ignore();
    }

    /// The commands that remove `conns` from `room`'s presence.
    fn remove_presence<'a>(&self, pipe: &mut redis::Pipeline, room: &str, conns: impl IntoIterator<Item = &'a str>) {
        let conns: Vec<&str> = conns.into_iter().collect();
        if conns.is_empty() {
            return;
        }
        pipe.cmd("ZREM").arg(self.key("presence", room)).arg(&conns).ignore();
        pipe.cmd("ZREM").arg(self.key("names", room)).arg(&conns).ignore();
    }

    /// A page of `room`'s live members after `after`, and the room's count
    /// of live members. Ids come from the names set in order, as many as
    /// the page needs; their expiry and metadata in one round trip. An id
    /// past its expiry (left for [`Shared::reap_expired`], which announces
    /// its leave) or gone from the presence set is skipped, and more are
    /// read in its place: the ids still missing, times 2, 4, 8 ... read by
    /// read, so that a run of expired ids costs few round trips. Names
    /// without a presence entry (a removal cut short by a lost connection)
    /// are removed.
    async fn page(
        &self,
        conn: &mut MultiplexedConnection,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> redis::RedisResult<MembersPage> {
        let (key, names) = (self.key("presence", room), self.key("names", room));
        let now = now_ms();
        let want = limit.saturating_add(1);
        let mut cursor = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let mut count = None;
        let mut live: Vec<Member> = Vec::new();
        let mut stale: Vec<String> = Vec::new();
        let mut round = 0;
        while live.len() < want {
            let batch = (want - live.len()).saturating_mul(1 << round.min(20));
            round += 1;
            let mut read = redis::pipe();
            if count.is_none() {
                read.cmd("ZCOUNT").arg(&key).arg(now).arg("+inf");
            }
            let ranged = read.cmd("ZRANGEBYLEX").arg(&names).arg(&cursor).arg("+");
            if let Ok(batch) = i64::try_from(batch) {
                ranged.arg("LIMIT").arg(0).arg(batch);
            }
            let mut replies = read.query_async::<Vec<redis::Value>>(conn).await?.into_iter();
            let mut next = || replies.next().unwrap_or(redis::Value::Nil);
            if count.is_none() {
                count = Some(redis::from_redis_value(next())?);
            }
            let ids: Vec<String> = redis::from_redis_value(next())?;
            let Some(last) = ids.last() else { break };
            cursor = format!("({last}");
            // The metadata, then each id's expiry (`ZSCORE`s in the
            // pipeline, not `ZMSCORE`, which needs Redis 6.2).
            let mut read = redis::pipe();
            read.cmd("MGET").arg(ids.iter().map(|c| self.key("meta", c)).collect::<Vec<_>>());
            for id in &ids {
                read.cmd("ZSCORE").arg(&key).arg(id);
            }
            let mut replies = read.query_async::<Vec<redis::Value>>(conn).await?.into_iter();
            let metas: Vec<Option<String>> = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
            let expiries: Vec<Option<f64>> = replies.map(redis::from_redis_value).collect::<Result<_, _>>()?;
            let exhausted = ids.len() < batch;
            for ((id, expiry), meta) in ids.into_iter().zip(expiries).zip(metas) {
                match expiry {
                    Some(e) if e >= now as f64 => {
                        let meta = meta.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or(Value::Null);
                        live.push(Member { conn: id, meta });
                    }
                    Some(_) => {}
                    None => stale.push(id),
                }
            }
            if exhausted {
                break;
            }
        }
        if !stale.is_empty() {
            // Atomic: a name whose member joined again since the read stays.
            redis::cmd("EVAL")
                .arg(DROP_STALE_NAMES)
                .arg(2)
                .arg(&key)
                .arg(&names)
                .arg(&stale)
                .query_async::<()>(conn)
                .await?;
        }
        let (members, next) = super::paginate(live.into_iter(), limit, |m| &m.conn);
        Ok(MembersPage { count: count.unwrap_or(0), members, next })
    }

    /// Note a change of this node's presence for the session to write;
    /// the future says when it is written (or fails after the command
    /// timeout, or at once while Redis is unreachable: the change is
    /// written after the reconnect).
    fn note(&self, room: &str, conn: &str, joined: Option<Value>) -> BoxFuture<'static, Result<(), BrokerError>> {
        let generation = {
            let mut u = lock(&self.unwritten);
            match joined {
                Some(meta) => {
                    if let Some(l) = u.leaves.get_mut(room) {
                        l.remove(conn);
                    }
                    u.joins.entry(room.to_owned()).or_default().insert(conn.to_owned(), meta);
                }
                None => {
                    if let Some(j) = u.joins.get_mut(room) {
                        j.remove(conn);
                    }
                    u.leaves.entry(room.to_owned()).or_default().insert(conn.to_owned());
                }
            }
            u.generation += 1;
            u.generation
        };
        self.ops_ready.notify_one();
        self.written_up_to(generation)
    }

    /// Every change noted so far, written.
    fn written_now(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        let generation = lock(&self.unwritten).generation;
        self.written_up_to(generation)
    }

    /// When the changes noted up to `generation` are written (or fail
    /// after the command timeout, or at once while Redis is unreachable:
    /// they are written after the reconnect).
    fn written_up_to(&self, generation: u64) -> BoxFuture<'static, Result<(), BrokerError>> {
        // Every join makes one, which the hub mostly drops unpolled: no
        // clone of the connection to learn that there is one.
        let connected = lock(&self.conn).is_some();
        let mut written = self.written.subscribe();
        let timeout = self.opts.command_timeout;
        Box::pin(async move {
            if !connected {
                return Err(unavailable());
            }
            match tokio::time::timeout(timeout, written.wait_for(|w| *w >= generation)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(unavailable()),
                Err(_) => Err(BrokerError::Command("presence not written in time".into())),
            }
        })
    }

    /// Write every presence change noted since the last write, in one
    /// pipeline. Leaves that could not be written are kept for the next
    /// session (joins are recorded again by its first refresh).
    async fn write_presence(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let (joins, leaves, generation) = {
            let mut u = lock(&self.unwritten);
            if u.joins.is_empty() && u.leaves.is_empty() {
                return Ok(());
            }
            (std::mem::take(&mut u.joins), std::mem::take(&mut u.leaves), u.generation)
        };
        let mut pipe = redis::pipe();
        for (room, conns) in &leaves {
            self.remove_presence(&mut pipe, room, conns.iter().map(String::as_str));
        }
        if let Err(e) = self.write_members(conn, &joins, pipe).await {
            let mut u = lock(&self.unwritten);
            let u = &mut *u;
            for (room, conns) in leaves {
                let joined = u.joins.get(&room);
                let kept = conns.into_iter().filter(|c| !joined.is_some_and(|j| j.contains_key(c)));
                u.leaves.entry(room).or_default().extend(kept);
            }
            return Err(e);
        }
        self.written.send_replace(generation);
        Ok(())
    }

    /// Record (again) every local member, a pipeline at a time, each built
    /// from where the last one ended (members that join meanwhile are
    /// written by their join): the node holds one pipeline's commands, not
    /// a copy of its presence.
    async fn refresh_presence(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let mut cursor = None;
        loop {
            let mut pipe = redis::pipe();
            cursor = self.fill(&mut pipe, &lock(&self.presence), cursor.as_ref());
            if cursor.is_none() {
                return Ok(());
            }
            pipe.query_async::<()>(conn).await?;
        }
    }

    /// Send `pipe` and record `members` (room → connection → metadata) in
    /// pipelines of about [`MEMBERS_PER_PIPELINE`] members: the commands
    /// and replies of a burst of joins are held a pipeline at a time, not
    /// for every member at once.
    async fn write_members(
        &self,
        conn: &mut MultiplexedConnection,
        members: &Members,
        mut pipe: redis::Pipeline,
    ) -> redis::RedisResult<()> {
        let mut cursor = None;
        loop {
            cursor = self.fill(&mut pipe, members, cursor.as_ref());
            if !pipe.is_empty() {
                std::mem::replace(&mut pipe, redis::pipe()).query_async::<()>(conn).await?;
            }
            if cursor.is_none() {
                return Ok(());
            }
        }
    }

    /// Add to `pipe` the commands that record up to about
    /// [`MEMBERS_PER_PIPELINE`] members of `members` after `after` (a room
    /// and a connection; from the first without); the last one added, or
    /// `None` when none was left.
    fn fill(
        &self,
        pipe: &mut redis::Pipeline,
        members: &Members,
        after: Option<&(String, String)>,
    ) -> Option<(String, String)> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let rooms = match after {
            Some((room, _)) => members.range::<str, _>((Included(room.as_str()), Unbounded)),
            None => members.range::<str, _>(..),
        };
        let (mut queued, mut last) = (0, None);
        for (room, m) in rooms {
            let from = match after {
                Some((r, c)) if r == room => Excluded(c.as_str()),
                _ => Unbounded,
            };
            let chunk: Vec<(&String, &Value)> =
                m.range::<str, _>((from, Unbounded)).take(MEMBERS_PER_PIPELINE - queued).collect();
            let Some((conn, _)) = chunk.last() else { continue };
            last = Some((room.clone(), (*conn).clone()));
            self.add_presence(pipe, room, &chunk);
            queued += chunk.len();
            if queued >= MEMBERS_PER_PIPELINE {
                break;
            }
        }
        last
    }

    /// Members of other nodes whose entries expired in the rooms this node
    /// has members in (their node stopped refreshing them: it died or lost
    /// Redis): remove each and publish its `presence` leave on the room's
    /// channel, on behalf of its node (so this node receives it too). The
    /// `ZREM` that removes an entry decides which node announces it: one
    /// does, once.
    async fn reap_expired(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let node = self.node.get().cloned().unwrap_or_default();
        let rooms: Vec<String> = lock(&self.presence).keys().cloned().collect();
        let now = now_ms();
        for room in rooms {
            let key = self.key("presence", &room);
            let expired: Vec<String> =
                redis::cmd("ZRANGEBYSCORE").arg(&key).arg("-inf").arg(now).query_async(conn).await?;
            // This node's own are recorded again by the next refresh.
            let mut left: Vec<Member> = Vec::new();
            for id in expired.into_iter().filter(|c| node_of(c) != node) {
                let (removed, _, meta): (i64, i64, Option<String>) = redis::pipe()
                    .cmd("ZREM")
                    .arg(&key)
                    .arg(&id)
                    .cmd("ZREM")
                    .arg(self.key("names", &room))
                    .arg(&id)
                    .cmd("GET")
                    .arg(self.key("meta", &id))
                    .query_async(conn)
                    .await?;
                if removed != 1 {
                    continue; // another node announces it
                }
                let meta = meta.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or(Value::Null);
                left.push(Member { conn: id, meta });
            }
            if left.is_empty() {
                continue;
            }
            // One packet per dead node, on its behalf.
            left.sort_by(|a, b| a.conn.cmp(&b.conn));
            let count: u64 = redis::cmd("ZCOUNT").arg(&key).arg(now).arg("+inf").query_async(conn).await?;
            for dead in left.chunk_by(|a, b| node_of(&a.conn) == node_of(&b.conn)) {
                let leave = Packet::Presence(PresencePacket {
                    room: room.clone(),
                    count,
                    diff: Some(PresenceDiff { joins: Vec::new(), leaves: dead.to_vec() }),
                });
                self.push_op(Op::Publish(BrokerMessage::Room {
                    node: node_of(&dead[0].conn).to_owned(),
                    room: room.clone(),
                    except: None,
                    payload: protocol::encode(&leave),
                }));
            }
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn unavailable() -> BrokerError {
    BrokerError::Unavailable("not connected to Redis".into())
}

fn command(e: redis::RedisError) -> BrokerError {
    BrokerError::Command(e.to_string())
}

/// Connect, subscribe, serve until the connection fails; the reason.
async fn session(shared: &Arc<Shared>, inbox: &Inbox) -> String {
    let node = shared.node.get().cloned().unwrap_or_default();
    let t = shared.opts.command_timeout;
    let config = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(t)).set_response_timeout(Some(t));
    let mut conn = match shared.client.get_multiplexed_async_connection_with_config(&config).await {
        Ok(c) => c,
        Err(e) => return format!("cannot connect: {e}"),
    };
    let pubsub = match tokio::time::timeout(t, shared.client.get_async_pubsub()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return format!("cannot open the pub/sub connection: {e}"),
        Err(_) => return "pub/sub connection timed out".into(),
    };
    let (mut sink, mut stream) = pubsub.split();
    let mut subscribed: HashSet<String> = HashSet::new();
    let wanted: Vec<String> = lock(&shared.rooms).iter().cloned().collect();
    let mut channels = vec![shared.key("node", &node), format!("{}:all", shared.opts.prefix)];
    channels.extend(wanted.iter().map(|r| shared.key("room", r)));
    if let Err(e) = sink.subscribe(&channels).await {
        return format!("subscribe failed: {e}");
    }
    subscribed.extend(wanted);
    if let Err(e) = shared.refresh_presence(&mut conn).await {
        return format!("recording presence failed: {e}");
    }
    *lock(&shared.conn) = Some(conn.clone());
    shared.set_state(BrokerState::Connected);
    tracing::info!(node, "connected to Redis");
    let mut refresh = tokio::time::interval(shared.opts.presence_ttl / 3);
    refresh.tick().await;
    let mut stop = shared.stop.subscribe();
    loop {
        // Send what is queued, in order; consecutive publishes in one
        // pipeline.
        if let Err(e) = shared.write_presence(&mut conn).await {
            return format!("writing presence failed: {e}");
        }
        loop {
            let op = lock(&shared.ops).pop_front();
            let Some(op) = op else { break };
            match op {
                Op::Publish(m) => {
                    let mut batch = vec![m];
                    {
                        let mut ops = lock(&shared.ops);
                        while batch.len() < PUBLISH_BATCH && matches!(ops.front(), Some(Op::Publish(_))) {
                            if let Some(Op::Publish(m)) = ops.pop_front() {
                                batch.push(m);
                            }
                        }
                    }
                    let mut pipe = redis::pipe();
                    for m in &batch {
                        pipe.cmd("PUBLISH").arg(shared.channel_of(m)).arg(encode_message(m)).ignore();
                    }
                    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                        let mut ops = lock(&shared.ops);
                        for m in batch.into_iter().rev() {
                            ops.push_front(Op::Publish(m));
                        }
                        return format!("publish failed: {e}");
                    }
                }
                Op::Sync(room, done) => {
                    let wanted = lock(&shared.rooms).contains(&room);
                    let r = if wanted && !subscribed.contains(&room) {
                        subscribed.insert(room.clone());
                        sink.subscribe(shared.key("room", &room)).await
                    } else if !wanted && subscribed.contains(&room) {
                        subscribed.remove(&room);
                        sink.unsubscribe(shared.key("room", &room)).await
                    } else {
                        Ok(())
                    };
                    if let Err(e) = r {
                        return format!("subscribe failed: {e}");
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Op::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => match decode_message(msg.get_payload_bytes()) {
                    Ok(m) if m.node() != node => inbox.deliver(m),
                    Ok(_) => {} // our own
                    Err(e) => tracing::warn!(error = %e, channel = msg.get_channel_name(), "ignoring a message"),
                },
                None => return "the pub/sub connection closed".into(),
            },
            _ = shared.ops_ready.notified() => {}
            _ = refresh.tick() => {
                if let Err(e) = shared.refresh_presence(&mut conn).await {
                    return format!("refreshing presence failed: {e}");
                }
                if let Err(e) = shared.reap_expired(&mut conn).await {
                    return format!("removing expired presence failed: {e}");
                }
            }
            _ = crate::hub::flag_set(&mut stop) => return "stopped".into(),
        }
    }
}

impl Broker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn start(&self, node: &str, inbox: Inbox) {
        let _ = self.shared.node.set(node.to_owned());
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            let mut stop = shared.stop.subscribe();
            loop {
                shared.set_state(BrokerState::Connecting);
                let started = std::time::Instant::now();
                let reason = session(&shared, &inbox).await;
                *lock(&shared.conn) = None;
                if *shared.stop.borrow() {
                    return;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    attempt = 0;
                }
                tracing::warn!(reason, "Redis unavailable: serving local clients only, reconnecting");
                shared.set_state(BrokerState::Disconnected { error: reason });
                let delay = shared.opts.backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = crate::hub::flag_set(&mut stop) => return,
                }
            }
        });
    }

    fn publish(&self, msg: BrokerMessage) {
        self.shared.push_op(Op::Publish(msg));
    }

    fn subscribe(&self, room: &str) -> BoxFuture<'static, ()> {
        lock(&self.shared.rooms).insert(room.to_owned());
        if *lock(&self.shared.state) != BrokerState::Connected {
            // Subscribed on reconnect; nothing to wait for now.
            self.shared.push_op(Op::Sync(room.to_owned(), None));
            return Box::pin(async {});
        }
        let (tx, rx) = oneshot::channel();
        self.shared.push_op(Op::Sync(room.to_owned(), Some(tx)));
        Box::pin(async move {
            let _ = rx.await;
        })
    }

    fn unsubscribe(&self, room: &str) {
        lock(&self.shared.rooms).remove(room);
        self.shared.push_op(Op::Sync(room.to_owned(), None));
    }

    fn presence_join(&self, room: &str, member: Member) -> BoxFuture<'static, Result<(), BrokerError>> {
        let shared = &self.shared;
        lock(&shared.presence).entry(room.to_owned()).or_default().insert(member.conn.clone(), member.meta.clone());
        shared.note(room, &member.conn, Some(member.meta))
    }

    fn presence_written(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.shared.written_now()
    }

    fn presence_leave(&self, room: &str, conn_id: &str) -> BoxFuture<'static, Result<(), BrokerError>> {
        let shared = &self.shared;
        {
            let mut p = lock(&shared.presence);
            if let Some(m) = p.get_mut(room) {
                m.remove(conn_id);
                if m.is_empty() {
                    p.remove(room);
                }
            }
        }
        shared.note(room, conn_id, None)
    }

    fn presence_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'static, Result<MembersPage, BrokerError>> {
        let shared = self.shared.clone();
        let room = room.to_owned();
        let after = after.map(str::to_owned);
        Box::pin(async move {
            let mut conn = shared.conn().ok_or_else(unavailable)?;
            shared.page(&mut conn, &room, after.as_deref(), limit).await.map_err(command)
        })
    }

    fn presence_count(&self, room: &str) -> BoxFuture<'static, Result<u64, BrokerError>> {
        let shared = self.shared.clone();
        let room = room.to_owned();
        Box::pin(async move {
            let mut conn = shared.conn().ok_or_else(unavailable)?;
            redis::cmd("ZCOUNT")
                .arg(shared.key("presence", &room))
                .arg(now_ms())
                .arg("+inf")
                .query_async(&mut conn)
                .await
                .map_err(command)
        })
    }

    fn state(&self) -> BrokerState {
        lock(&self.shared.state).clone()
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        Box::pin(async move {
            // Send what is queued (the leaves of this node's members among
            // it) before stopping, at most the command timeout.
            let (tx, rx) = oneshot::channel();
            shared.push_op(Op::Flush(tx));
            if tokio::time::timeout(shared.opts.command_timeout, rx).await.is_err() {
                let left = lock(&shared.ops).iter().filter(|o| matches!(o, Op::Publish(_))).count();
                tracing::warn!(left, "stopping before Redis took every queued message");
            }
            // Remove this node's presence while the connection is up.
            let presence = std::mem::take(&mut *lock(&shared.presence));
            if let Some(mut conn) = shared.conn() {
                let mut pipe = redis::pipe();
                for (room, members) in &presence {
                    shared.remove_presence(&mut pipe, room, members.keys().map(String::as_str));
                }
                let _ = pipe.query_async::<()>(&mut conn).await;
            }
            shared.stop.send_replace(true);
            *lock(&shared.conn) = None;
        })
    }
}
