//! The hub's own policies: the auth hook and what it sees
//! ([`ConnectRequest`]), per-connection rate limits ([`RateLimit`]), and the
//! backoff of reconnecting clients and brokers ([`Backoff`]). Origins,
//! connection limits, slow consumers and keepalive are the server layer's
//! ([`wsx::server`]).

use std::time::{Duration, Instant};

/// An HTTP request to the hub (a WebSocket upgrade or an SSE request) as the
/// auth and connect hooks see it: the request head and the peer, with
/// accessors for the query, cookies and bearer tokens.
///
/// ```
/// use wsx_hub::ConnectRequest;
/// let req = http::Request::get("/ws?token=a%20b").header("authorization", "Bearer t0k").body(()).unwrap();
/// let req = ConnectRequest::new(req, None);
/// assert_eq!(req.query_param("token").as_deref(), Some("a b"));
/// assert_eq!(req.token().as_deref(), Some("t0k"));
/// ```
pub type ConnectRequest = wsx::server::RequestHead;

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
