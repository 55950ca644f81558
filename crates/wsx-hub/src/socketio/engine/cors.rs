//! CORS for the polling transport (browsers read its responses from other
//! origins) and the origin check of its WebSocket upgrades.

use http::{HeaderMap, HeaderValue};

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
    /// `None`: any origin.
    origins: Option<Vec<String>>,
    credentials: bool,
}

impl Cors {
    /// Any origin: `Access-Control-Allow-Origin: *` (with
    /// [`Cors::credentials`], the request's origin is echoed instead, as
    /// browsers refuse `*` with credentials).
    pub fn any() -> Self {
        Self { origins: None, credentials: false }
    }

    /// Only these origins (`scheme://host[:port]`, compared without regard
    /// to ASCII case): theirs is echoed with `Vary: Origin`; others get no
    /// CORS headers, and their WebSocket upgrades get 403.
    pub fn allow<I: IntoIterator<Item = S>, S: AsRef<str>>(origins: I) -> Self {
        let origins = origins.into_iter().map(|o| o.as_ref().trim_end_matches('/').to_ascii_lowercase()).collect();
        Self { origins: Some(origins), credentials: false }
    }

    /// Allow credentials (cookies): `Access-Control-Allow-Credentials: true`.
    pub fn credentials(mut self, on: bool) -> Self {
        self.credentials = on;
        self
    }

    /// Whether a request from `origin` is allowed (one without an `Origin`
    /// header, from no browser, always is).
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match (&self.origins, origin) {
            (None, _) | (_, None) => true,
            (Some(list), Some(o)) => list.iter().any(|a| a.eq_ignore_ascii_case(o.trim_end_matches('/'))),
        }
    }

    /// Add the CORS response headers for a request from `origin`.
    pub(super) fn apply(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        let echo = self.origins.is_some() || self.credentials;
        if echo {
            headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
        }
        if !self.allows(origin) {
            return;
        }
        let value = match origin.and_then(|o| HeaderValue::from_str(o).ok()) {
            Some(v) if echo => v,
            _ if self.origins.is_none() => HeaderValue::from_static("*"),
            _ => return,
        };
        headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.credentials {
            headers.insert(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}
