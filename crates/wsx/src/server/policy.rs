//! Who may open a WebSocket: the origin allowlist.
//!
//! Browsers send `Origin` with every WebSocket request (RFC 6455 §4.1 item
//! 8, §10.2); other clients usually do not. A server that relies on cookies
//! must check it, or any page on any site can open a socket with the user's
//! cookies (cross-site WebSocket hijacking).

use wsx_proto::handshake::Reject;

/// Which `Origin`s may upgrade: any (the default), or a list. A request
/// without `Origin` cannot come from a page on another site and is let
/// through unless [`OriginPolicy::require_origin`] is set.
///
/// ```
/// use wsx::server::OriginPolicy;
/// let policy = OriginPolicy::allow(["https://example.com"]);
/// assert!(policy.check(Some("https://EXAMPLE.com/")).is_ok());
/// assert_eq!(policy.check(Some("https://evil.example")).unwrap_err().status(), 403);
/// assert!(policy.check(None).is_ok());
/// assert!(policy.require_origin(true).check(None).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Normalized origins; `None` allows any.
    allowed: Option<Vec<String>>,
    require: bool,
}

/// An origin as compared: without surrounding space or a trailing slash,
/// in lower case (scheme and host are case-insensitive, RFC 6454 §4).
fn normalize(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl OriginPolicy {
    /// Any origin (and none) may connect.
    pub fn any() -> Self {
        Self::default()
    }

    /// Only these origins (e.g. `https://example.com`), compared without
    /// case or a trailing slash.
    pub fn allow<I: IntoIterator<Item = S>, S: AsRef<str>>(origins: I) -> Self {
        Self { allowed: Some(origins.into_iter().map(|o| normalize(o.as_ref())).collect()), require: false }
    }

    /// Refuse requests that carry no `Origin` header.
    pub fn require_origin(mut self, on: bool) -> Self {
        self.require = on;
        self
    }

    /// Whether requests without `Origin` are refused.
    pub fn requires_origin(&self) -> bool {
        self.require
    }

    /// Whether any origin may connect (no allowlist).
    ///
    /// ```
    /// use wsx::server::OriginPolicy;
    /// assert!(OriginPolicy::any().allows_any());
    /// assert!(!OriginPolicy::allow(["https://example.com"]).allows_any());
    /// ```
    pub fn allows_any(&self) -> bool {
        self.allowed.is_none()
    }

    /// Check a request's `Origin`: the 403 to send if it may not connect.
    pub fn check(&self, origin: Option<&str>) -> Result<(), Reject> {
        match (origin, &self.allowed) {
            (None, _) if self.require => Err(Reject::new(403, "an Origin header is required\n")),
            (Some(o), Some(list)) if !list.contains(&normalize(o)) => {
                Err(Reject::new(403, format!("origin {o:?} is not allowed\n")))
            }
            _ => Ok(()),
        }
    }
}
