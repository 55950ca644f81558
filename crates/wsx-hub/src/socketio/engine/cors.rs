//! CORS for the polling transport (browsers read its responses from other
//! origins) and the origin check of its WebSocket upgrades.

use http::{HeaderMap, HeaderValue};
use wsx::server::OriginPolicy;

/// Which origins may use the engine from a browser: the CORS headers of
/// polling responses and preflights, and the origins allowed to upgrade.
///
/// ```
/// use wsx_hub::socketio::engine::Cors;
/// let anyone = Cors::any();
/// let ours = Cors::allow(["https://app.example"]).credentials(true);
/// assert!(ours.allows(Some("https://app.example")));
/// assert!(!ours.allows(Some("https://evil.example")));
/// assert!(anyone.allows(Some("https://evil.example")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Which origins (the server layer's allowlist, compared as it does).
    policy: OriginPolicy,
    credentials: bool,
}

impl Cors {
    /// Any origin: `Access-Control-Allow-Origin: *` (with
    /// [`Cors::credentials`], the request's origin is echoed instead, as
    /// browsers refuse `*` with credentials).
    pub fn any() -> Self {
        Self { policy: OriginPolicy::any(), credentials: false }
    }

    /// Only these origins (`scheme://host[:port]`, compared as
    /// [`OriginPolicy::allow`] does): theirs is echoed with `Vary: Origin`;
    /// others get no CORS headers, and their WebSocket upgrades get 403.
    pub fn allow<I: IntoIterator<Item = S>, S: AsRef<str>>(origins: I) -> Self {
        Self { policy: OriginPolicy::allow(origins), credentials: false }
    }

    /// Allow credentials (cookies): `Access-Control-Allow-Credentials: true`.
    pub fn credentials(mut self, on: bool) -> Self {
        self.credentials = on;
        self
    }

    /// Whether a request from `origin` is allowed (one without an `Origin`
    /// header, from no browser, always is).
    pub fn allows(&self, origin: Option<&str>) -> bool {
        origin.is_none() || self.policy.check(origin).is_ok()
    }

    /// Add the CORS response headers for a request from `origin`.
    pub(super) fn apply(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        let echo = !self.policy.allows_any() || self.credentials;
        if echo {
            headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
        }
        if !self.allows(origin) {
            return;
        }
        let value = match origin.and_then(|o| HeaderValue::from_str(o).ok()) {
            Some(v) if echo => v,
            _ if self.policy.allows_any() => HeaderValue::from_static("*"),
            _ => return,
        };
        headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.credentials {
            headers.insert(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}
