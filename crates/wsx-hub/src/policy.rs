//! Policies applied to requests and connections: the origin allowlist, the
//! auth hook and what it sees ([`ConnectRequest`]), per-connection rate
//! limits ([`RateLimit`]) and what to do with slow consumers
//! ([`SlowConsumer`]).

use http::header;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An HTTP request to the hub (a WebSocket upgrade or an SSE request) as the
/// auth and connect hooks see it.
///
/// ```
/// use wsx_hub::ConnectRequest;
/// let req = http::Request::get("/ws?token=a%20b")
///     .header("cookie", "session=s1; theme=dark")
///     .header("authorization", "Bearer t0k")
///     .body(()).unwrap();
/// let req = ConnectRequest::new(req, None);
/// assert_eq!(req.query_param("token").as_deref(), Some("a b"));
/// assert_eq!(req.cookie("session"), Some("s1"));
/// assert_eq!(req.bearer_token(), Some("t0k"));
/// assert_eq!(req.token().as_deref(), Some("t0k"));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    request: http::Request<()>,
    peer: Option<SocketAddr>,
}

impl ConnectRequest {
    /// Wrap a request head and the peer's address.
    pub fn new(request: http::Request<()>, peer: Option<SocketAddr>) -> Self {
        Self { request, peer }
    }

    /// The request head.
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// The peer's address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The path.
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// A header's value, when present and visible ASCII.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.request.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Origin` header.
    pub fn origin(&self) -> Option<&str> {
        self.header(header::ORIGIN)
    }

    /// A query parameter, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.request.uri().query()?, name)
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        wsx::handshake::cookie(self.request.headers(), name)
    }

    /// The token of an `Authorization: Bearer TOKEN` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let v = self.header(header::AUTHORIZATION)?;
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
    }

    /// A token from the first place that has one: the `Authorization:
    /// Bearer` header, the `token` query parameter (browsers cannot set
    /// headers on a WebSocket), or the `token` cookie.
    pub fn token(&self) -> Option<String> {
        self.bearer_token()
            .map(str::to_owned)
            .or_else(|| self.query_param("token"))
            .or_else(|| self.cookie("token").map(str::to_owned))
    }
}

/// Percent-decode a query component (`+` is a space); invalid escapes stay
/// as they are, invalid UTF-8 is replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// An origin as compared: lower case, without a trailing slash.
pub(crate) fn normalize_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Why the auth hook refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or invalid credentials: 401 with `WWW-Authenticate: Bearer`.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Valid credentials that may not connect: 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

/// What to do when a connection's outgoing queue is full (the client reads
/// more slowly than messages arrive for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumer {
    /// Drop the oldest broadcast message in the queue (counted in
    /// `wsx_hub_dropped_messages_total`). Acks, presence and direct
    /// messages are not dropped.
    #[default]
    DropOldest,
    /// Close the connection with 1008 (policy violation), reason
    /// `slow consumer`.
    Disconnect,
    /// Close the connection with 1013 (try again later).
    DisconnectTryAgain,
}

/// A per-connection rate limit on incoming messages: a token bucket of
/// `burst` messages refilled at `per_second`. A connection past it is closed
/// with 1008.
///
/// ```
/// let limit = wsx_hub::RateLimit::per_second(50.0).burst(100);
/// assert_eq!(limit.burst_size(), 100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: u32,
}

impl RateLimit {
    /// `n` messages per second, with a burst of `n` (at least 1).
    pub fn per_second(n: f64) -> Self {
        let n = if n.is_finite() && n > 0.0 { n } else { 1.0 };
        Self { per_second: n, burst: (n.ceil() as u32).max(1) }
    }

    /// Allow bursts of `n` messages (at least 1).
    pub fn burst(mut self, n: u32) -> Self {
        self.burst = n.max(1);
        self
    }

    /// The burst size.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The refill rate.
    pub fn rate(&self) -> f64 {
        self.per_second
    }
}

/// A token bucket.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self { limit, tokens: limit.burst as f64, last: Instant::now() }
    }

    /// Take a token; `false` when the bucket is empty.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.limit.per_second).min(self.limit.burst as f64);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Exponential backoff with full jitter, shared by the Redis broker and the
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { min: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

impl Backoff {
    /// The delay before attempt `n` (0-based): a random duration between
    /// half and all of `min * 2^n`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.min.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        let half = base / 2;
        let jitter = rand::random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(query_param("room=a%2Fb&x", "room").as_deref(), Some("a/b"));
        assert_eq!(query_param("x", "x").as_deref(), Some(""));
    }

    #[test]
    fn token_bucket_refills() {
        let mut b = TokenBucket::new(RateLimit::per_second(10.0).burst(2));
        let t = Instant::now();
        assert!(b.take(t) && b.take(t));
        assert!(!b.take(t));
        assert!(b.take(t + Duration::from_millis(150)));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff { min: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert!(b.delay(0) <= Duration::from_millis(100));
        assert!(b.delay(3) >= Duration::from_millis(400));
        assert!(b.delay(30) <= Duration::from_secs(1));
    }
}
