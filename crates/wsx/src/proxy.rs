//! Client proxies: HTTP `CONNECT` (with basic authentication from the
//! proxy URL's user info) and SOCKS5 (no authentication, or username and
//! password, RFC 1928 / RFC 1929), chosen explicitly or read from the
//! environment the way curl reads it.
//!
//! The client uses a proxy only when [`Config`] says so ([`ProxyMode`]; the
//! default is [`ProxyMode::Direct`]):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wsx::proxy::Proxy;
//! // Explicitly:
//! let config = wsx::Config::default().with_proxy(Proxy::parse("socks5://user:pw@127.0.0.1:1080")?);
//! let (ws, _) = wsx::connect_with("wss://example.com/chat", &config).await?;
//! // From https_proxy / http_proxy / all_proxy / no_proxy, like curl:
//! let config = wsx::Config::default().with_proxy_from_env();
//! let (ws, _) = wsx::connect_with("wss://example.com/chat", &config).await?;
//! # Ok(()) }
//! ```
//!
//! Both kinds of proxy tunnel the connection (an HTTP proxy is asked to
//! `CONNECT` for `ws://` too, since it could not forward an upgrade
//! otherwise); TLS for `wss://` runs end to end through the tunnel.

use crate::{Config, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::BytesMut;
use http::{StatusCode, Uri};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx_proto::handshake::HeadReader;

/// What went wrong with a proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL cannot be parsed (its password, if any, is not shown).
    #[error("invalid proxy URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any user info replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A proxy scheme other than `http`, `socks5` and `socks5h`.
    #[error("unsupported proxy scheme {0:?} (supported: http, socks5, socks5h)")]
    UnsupportedScheme(String),
    /// The TCP connection to the proxy failed.
    #[error("cannot connect to proxy {proxy}: {source}")]
    Connect {
        /// The proxy (without password).
        proxy: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The HTTP proxy answered `CONNECT` with another status than 2xx (407:
    /// missing or wrong credentials).
    #[error("HTTP proxy answered CONNECT with {0}{hint}", hint = status_hint(*.0))]
    HttpStatus(StatusCode),
    /// The proxy's reply is not what its protocol says.
    #[error("invalid reply from the proxy: {0}")]
    InvalidReply(String),
    /// The proxy closed the connection before the tunnel was set up.
    #[error("the proxy closed the connection before the tunnel was set up")]
    Closed,
    /// The SOCKS5 proxy accepts none of the authentication methods offered.
    #[error("SOCKS5 proxy accepts none of the offered authentication methods ({0})")]
    NoAcceptableAuth(&'static str),
    /// The SOCKS5 proxy refused the username or password.
    #[error("SOCKS5 proxy rejected the username or password")]
    AuthFailed,
    /// The SOCKS5 proxy could not open the connection (the reply code).
    #[error("SOCKS5 proxy could not connect to the server: {why} (reply {0})", why = socks_reply(*.0))]
    SocksRefused(u8),
    /// A SOCKS5 username, password or host name longer than 255 bytes.
    #[error("SOCKS5 {0} is longer than 255 bytes")]
    TooLong(&'static str),
}

fn status_hint(s: StatusCode) -> &'static str {
    match s.as_u16() {
        407 => " (missing or wrong credentials in the proxy URL)",
        403 => " (the proxy does not allow this destination)",
        _ => "",
    }
}

fn socks_reply(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

/// The protocol spoken to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyKind {
    /// An HTTP proxy, asked to `CONNECT` (`http://`).
    Http,
    /// SOCKS5, the client resolving the host name (`socks5://`, as curl).
    Socks5,
    /// SOCKS5, the proxy resolving the host name (`socks5h://`).
    Socks5h,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }
}

/// A proxy server: its kind, address and optional credentials.
///
/// ```
/// use wsx::proxy::{Proxy, ProxyKind};
/// let p = Proxy::parse("http://alice:s%40cret@proxy.example:3128")?;
/// assert_eq!(p.kind(), ProxyKind::Http);
/// assert_eq!((p.host(), p.port()), ("proxy.example", 3128));
/// assert_eq!(p.username(), Some("alice"));
/// assert_eq!(p.to_string(), "http://alice@proxy.example:3128"); // no password
/// # Ok::<(), wsx::proxy::ProxyError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

/// The port of a proxy URL without one (curl's default).
pub(crate) const DEFAULT_PROXY_PORT: u16 = 1080;

impl Proxy {
    /// A proxy of `kind` at `host:port`, without credentials.
    pub fn new(kind: ProxyKind, host: impl Into<String>, port: u16) -> Self {
        let host = host.into();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Self { kind, host, port, credentials: None }
    }

    /// An HTTP `CONNECT` proxy.
    pub fn http(host: impl Into<String>, port: u16) -> Self {
        Self::new(ProxyKind::Http, host, port)
    }

    /// A SOCKS5 proxy (host names resolved by the client).
    pub fn socks5(host: impl Into<String>, port: u16) -> Self {
        Self::new(ProxyKind::Socks5, host, port)
    }

    /// With a username and password (basic authentication for HTTP,
    /// RFC 1929 for SOCKS5).
    pub fn with_credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// Parse a proxy URL as curl does: `http://`, `socks5://` or
    /// `socks5h://` (no scheme means `http://`), optional percent-encoded
    /// `user:password@`, a host (IPv6 in brackets) and a port (default
    /// 1080). A path is ignored.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let invalid = |reason: &str| ProxyError::InvalidUrl { url: redact(url), reason: reason.to_owned() };
        let url_t = url.trim();
        let (scheme, rest) = match url_t.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("http".to_owned(), url_t),
        };
        let kind = match scheme.as_str() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            _ => return Err(ProxyError::UnsupportedScheme(scheme)),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let credentials = match userinfo {
            None => None,
            Some(ui) => {
                let (u, p) = ui.split_once(':').unwrap_or((ui, ""));
                let u = crate::percent::decode(u).ok_or_else(|| invalid("bad percent-encoding in the user name"))?;
                let p = crate::percent::decode(p).ok_or_else(|| invalid("bad percent-encoding in the password"))?;
                Some((u, p))
            }
        };
        let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
            let (h, tail) = after.split_once(']').ok_or_else(|| invalid("unclosed '[' in the host"))?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| invalid("invalid IPv6 address"))?;
            match tail {
                "" => (h, None),
                t => (h, Some(t.strip_prefix(':').ok_or_else(|| invalid("junk after the IPv6 address"))?)),
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("invalid host"));
        }
        let port = match port {
            None | Some("") => DEFAULT_PROXY_PORT,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| invalid("invalid port"))?,
        };
        Ok(Self { kind, host: host.to_ascii_lowercase(), port, credentials })
    }

    /// The protocol spoken to the proxy.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The username, if credentials are set.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(u, _)| u.as_str())
    }
}

/// `scheme://user@host:port`, never the password.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        if let Some(u) = self.username() {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username())
            .field("password", &self.credentials.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A URL with its user info replaced by `***`.
fn redact(url: &str) -> String {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[start..].find(['/', '?', '#']).map(|i| start + i).unwrap_or(url.len());
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------- no_proxy

/// A `no_proxy` list ([`ProxyEnv::proxy_for`] says how it matches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    all: bool,
    entries: Vec<NoProxyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    Domain { name: String, port: Option<u16> },
    Ip { ip: IpAddr, port: Option<u16> },
    Cidr { net: IpAddr, prefix: u8 },
}

fn normalize_host(host: &str) -> String {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    h.to_ascii_lowercase()
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl NoProxy {
    /// Parse a list. Entries that cannot be understood are ignored (they
    /// match nothing).
    pub(crate) fn parse(list: &str) -> Self {
        let mut out = NoProxy::default();
        for raw in list.split(|c: char| c == ',' || c.is_whitespace()) {
            let e = raw.trim().to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                out.all = true;
                continue;
            }
            if let Some(entry) = Self::parse_entry(&e) {
                out.entries.push(entry);
            }
        }
        out
    }

    fn parse_entry(e: &str) -> Option<NoProxyEntry> {
        if let Some((net, prefix)) = e.split_once('/') {
            let net: IpAddr = net.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            return (prefix <= max).then_some(NoProxyEntry::Cidr { net, prefix });
        }
        if let Some(after) = e.strip_prefix('[') {
            let (ip, tail) = after.split_once(']')?;
            let ip: IpAddr = ip.parse().ok()?;
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None if tail.is_empty() => None,
                None => return None,
            };
            return Some(NoProxyEntry::Ip { ip, port });
        }
        if let Ok(ip) = e.parse::<IpAddr>() {
            return Some(NoProxyEntry::Ip { ip, port: None });
        }
        let (host, port) = match e.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (e, None),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(NoProxyEntry::Ip { ip, port });
        }
        let name = host.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.');
        (!name.is_empty()).then(|| NoProxyEntry::Domain { name: name.to_owned(), port })
    }

    /// Whether a connection to `host:port` bypasses the proxy.
    pub(crate) fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = normalize_host(host);
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| match e {
            NoProxyEntry::Domain { name, port: p } => {
                // An IP address is matched as an address, never as a suffix.
                ip.is_none()
                    && p.is_none_or(|p| p == port)
                    && (host == *name
                        || (host.len() > name.len()
                            && host.ends_with(name.as_str())
                            && host.as_bytes()[host.len() - name.len() - 1] == b'.'))
            }
            NoProxyEntry::Ip { ip: want, port: p } => p.is_none_or(|p| p == port) && ip == Some(*want),
            NoProxyEntry::Cidr { net, prefix } => ip.is_some_and(|ip| in_cidr(ip, *net, *prefix)),
        })
    }
}

// ------------------------------------------------------------- environment

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where proxy settings are read from: the process environment, or a
/// function standing for it (so tests need not change the process's
/// environment).
///
/// ```
/// use wsx::proxy::{ProxyEnv, ProxyKind};
/// let env = ProxyEnv::from_fn(|name| match name {
///     "https_proxy" => Some("socks5h://127.0.0.1:1080".into()),
///     "no_proxy" => Some("localhost,.internal".into()),
///     _ => None,
/// });
/// let p = env.proxy_for(&"wss://example.com/".parse().unwrap())?.unwrap();
/// assert_eq!(p.kind(), ProxyKind::Socks5h);
/// assert!(env.proxy_for(&"wss://db.internal/".parse().unwrap())?.is_none());
/// assert!(env.proxy_for(&"ws://example.com/".parse().unwrap())?.is_none()); // http_proxy unset
/// # Ok::<(), wsx::proxy::ProxyError>(())
/// ```
#[derive(Clone, Default)]
pub struct ProxyEnv {
    lookup: Option<Lookup>,
}

impl fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.lookup.is_some() { "ProxyEnv(custom)" } else { "ProxyEnv(process)" })
    }
}

impl ProxyEnv {
    /// The process environment (`std::env::var`).
    pub fn process() -> Self {
        Self { lookup: None }
    }

    /// A function from variable name to value.
    pub fn from_fn(f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self { lookup: Some(Arc::new(f)) }
    }

    /// A variable's value, if set and not empty.
    fn var(&self, name: &str) -> Option<String> {
        let v = match &self.lookup {
            Some(f) => f(name),
            None => std::env::var(name).ok(),
        };
        v.filter(|v| !v.trim().is_empty())
    }

    fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.var(n))
    }

    /// The proxy for `target` as curl picks it: `no_proxy` (then
    /// `NO_PROXY`) first; then `https_proxy` / `HTTPS_PROXY` for `wss://`,
    /// `http_proxy` for `ws://` (lowercase only, as curl, since
    /// `HTTP_PROXY` can be set by a CGI request header); then `all_proxy` /
    /// `ALL_PROXY`. `None` means a direct connection.
    ///
    /// `no_proxy` is matched as curl does: comma- (or space-) separated
    /// entries; `*` matches every host; a host name matches itself and its
    /// subdomains (`example.com` and `.example.com` both match
    /// `example.com` and `a.example.com`, not `notexample.com`); IP
    /// addresses match exactly, CIDR blocks (`10.0.0.0/8`, `fd00::/8`)
    /// match the addresses inside; an entry with a port
    /// (`example.com:8080`, `[::1]:8080`) matches only that port.
    /// Case-insensitive; a trailing dot is ignored; entries that cannot be
    /// understood match nothing.
    ///
    /// ```
    /// use wsx::proxy::ProxyEnv;
    /// let env = ProxyEnv::from_fn(|name| match name {
    ///     "all_proxy" => Some("http://proxy.example:3128".into()),
    ///     "no_proxy" => Some("localhost, .internal.example, 10.0.0.0/8, api.example.com:8443".into()),
    ///     _ => None,
    /// });
    /// let direct = |url: &str| env.proxy_for(&url.parse().unwrap()).unwrap().is_none();
    /// assert!(direct("ws://localhost/"));
    /// assert!(direct("wss://db.internal.example/"));
    /// assert!(direct("ws://10.1.2.3/"));
    /// assert!(direct("wss://api.example.com:8443/"));
    /// assert!(!direct("wss://api.example.com/"));
    /// assert!(!direct("wss://example.org/"));
    /// ```
    pub fn proxy_for(&self, target: &Uri) -> Result<Option<Proxy>, ProxyError> {
        let secure = matches!(target.scheme_str().map(str::to_ascii_lowercase).as_deref(), Some("wss" | "https"));
        let host = target.host().unwrap_or("");
        let port = target.port_u16().unwrap_or(if secure { 443 } else { 80 });
        if let Some(list) = self.first(&["no_proxy", "NO_PROXY"]) {
            if NoProxy::parse(&list).matches(host, port) {
                return Ok(None);
            }
        }
        let scheme_vars: &[&str] = if secure { &["https_proxy", "HTTPS_PROXY"] } else { &["http_proxy"] };
        match self.first(scheme_vars).or_else(|| self.first(&["all_proxy", "ALL_PROXY"])) {
            Some(url) => Proxy::parse(&url).map(Some),
            None => Ok(None),
        }
    }
}

/// How the client reaches the server ([`Config::with_proxy_mode`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum ProxyMode {
    /// Connect directly, whatever the environment says (the default).
    #[default]
    Direct,
    /// Always through this proxy.
    Fixed(Proxy),
    /// As the environment says ([`ProxyEnv::proxy_for`]).
    Env(ProxyEnv),
}

impl ProxyMode {
    /// The proxy to use for `target`, if any.
    pub(crate) fn proxy_for(&self, target: &Uri) -> Result<Option<Proxy>, ProxyError> {
        match self {
            ProxyMode::Direct => Ok(None),
            ProxyMode::Fixed(p) => Ok(Some(p.clone())),
            ProxyMode::Env(env) => env.proxy_for(target),
        }
    }
}

// ------------------------------------------------------------------ tunnel

/// Open a TCP connection to `host:port` through `proxy`.
pub(crate) async fn tunnel(proxy: &Proxy, host: &str, port: u16, config: &Config) -> Result<TcpStream> {
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| ProxyError::Connect { proxy: proxy.to_string(), source })?;
    tcp.set_nodelay(true)?;
    match proxy.kind {
        ProxyKind::Http => http_connect(&mut tcp, proxy, host, port, config.max_handshake_size()).await?,
        ProxyKind::Socks5 | ProxyKind::Socks5h => socks5_connect(&mut tcp, proxy, host, port).await?,
    }
    tracing::debug!(%proxy, host, port, "proxy tunnel open");
    Ok(tcp)
}

async fn http_connect(tcp: &mut TcpStream, proxy: &Proxy, host: &str, port: u16, max: usize) -> Result<()> {
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((u, p)) = &proxy.credentials {
        let token = BASE64.encode(format!("{u}:{p}"));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await?;
    tcp.flush().await?;
    let mut buf = BytesMut::with_capacity(512);
    let mut reader = HeadReader::new(max);
    let (response, head_len) = loop {
        match reader.response(&buf) {
            Ok(Some(r)) => break r,
            Ok(None) => {}
            Err(e) => return Err(ProxyError::InvalidReply(e.to_string()).into()),
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(ProxyError::Closed.into());
        }
    };
    if !response.status().is_success() {
        return Err(ProxyError::HttpStatus(response.status()).into());
    }
    if head_len < buf.len() {
        return Err(ProxyError::InvalidReply("data after the CONNECT response".into()).into());
    }
    Ok(())
}

async fn read_exact(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<()> {
    match tcp.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ProxyError::Closed.into()),
        Err(e) => Err(e.into()),
    }
}

fn push_short(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), ProxyError> {
    let len = u8::try_from(s.len()).map_err(|_| ProxyError::TooLong(what))?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

async fn socks5_connect(tcp: &mut TcpStream, proxy: &Proxy, host: &str, port: u16) -> Result<()> {
    // Greeting: the methods we can do (RFC 1928 §3).
    let greeting: &[u8] = if proxy.credentials.is_some() { &[5, 2, 0x00, 0x02] } else { &[5, 1, 0x00] };
    tcp.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    read_exact(tcp, &mut choice).await?;
    if choice[0] != 5 {
        return Err(ProxyError::InvalidReply(format!("not a SOCKS5 proxy (version {})", choice[0])).into());
    }
    match (choice[1], &proxy.credentials) {
        (0x00, _) => {}
        (0x02, Some((u, p))) => {
            // Username/password (RFC 1929).
            let mut auth = vec![1u8];
            push_short(&mut auth, u, "username")?;
            push_short(&mut auth, p, "password")?;
            tcp.write_all(&auth).await?;
            let mut status = [0u8; 2];
            read_exact(tcp, &mut status).await?;
            if status[1] != 0 {
                return Err(ProxyError::AuthFailed.into());
            }
        }
        (0xff, None) => return Err(ProxyError::NoAcceptableAuth("it needs credentials; offered none").into()),
        (0xff, Some(_)) => return Err(ProxyError::NoAcceptableAuth("offered none and username/password").into()),
        (m, _) => return Err(ProxyError::InvalidReply(format!("chose a method that was not offered ({m})")).into()),
    }
    // CONNECT (RFC 1928 §4).
    let mut req = vec![5u8, 1, 0];
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if proxy.kind == ProxyKind::Socks5 => {
            let addr = tokio::net::lookup_host((host, port)).await?.next();
            Some(addr.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address")))?.ip())
        }
        Err(_) => None,
    };
    match ip {
        Some(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        None => {
            req.push(3);
            push_short(&mut req, host, "host name")?;
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    tcp.write_all(&req).await?;
    let mut head = [0u8; 4];
    read_exact(tcp, &mut head).await?;
    if head[0] != 5 {
        return Err(ProxyError::InvalidReply(format!("reply version {}", head[0])).into());
    }
    if head[1] != 0 {
        return Err(ProxyError::SocksRefused(head[1]).into());
    }
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut n = [0u8; 1];
            read_exact(tcp, &mut n).await?;
            n[0] as usize
        }
        t => return Err(ProxyError::InvalidReply(format!("address type {t}")).into()),
    };
    let mut rest = vec![0u8; addr_len + 2];
    read_exact(tcp, &mut rest).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parse_proxy_urls() {
        let p = Proxy::parse("socks5://user:p%3Aw@127.0.0.1:1080").unwrap();
        assert_eq!(p.kind(), ProxyKind::Socks5);
        assert_eq!(p.credentials, Some(("user".into(), "p:w".into())));
        let p = Proxy::parse("proxy.example").unwrap();
        assert_eq!((p.kind(), p.host(), p.port()), (ProxyKind::Http, "proxy.example", 1080));
        let p = Proxy::parse("HTTP://[::1]:3128/").unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 3128));
        assert_eq!(p.to_string(), "http://[::1]:3128");
        assert_eq!(Proxy::parse("socks5h://h:9").unwrap().kind(), ProxyKind::Socks5h);
        assert!(matches!(Proxy::parse("https://h:1"), Err(ProxyError::UnsupportedScheme(s)) if s == "https"));
        assert!(matches!(Proxy::parse("socks4://h:1"), Err(ProxyError::UnsupportedScheme(_))));
        for bad in ["http://", "http://h:99999", "http://h:x", "http://[::1", "http://u:%zz@h:1", "http://h:0"] {
            assert!(matches!(Proxy::parse(bad), Err(ProxyError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn passwords_are_never_shown() {
        let p = Proxy::parse("http://alice:secret@h:1").unwrap();
        assert!(!format!("{p} {p:?}").contains("secret"));
        let e = Proxy::parse("http://alice:secret@h:bad").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("http://***@h:bad"), "{e}");
    }

    #[test]
    fn no_proxy_host_and_domain_suffixes() {
        let no = NoProxy::parse("example.com, .internal ,*.corp");
        assert!(no.matches("example.com", 443));
        assert!(no.matches("EXAMPLE.com.", 443));
        assert!(no.matches("www.example.com", 80));
        assert!(!no.matches("notexample.com", 80));
        assert!(!no.matches("example.org", 80));
        assert!(no.matches("internal", 80));
        assert!(no.matches("db.internal", 80));
        assert!(no.matches("a.b.corp", 80));
        assert!(!no.matches("xinternal", 80));
    }

    #[test]
    fn no_proxy_star_matches_everything() {
        assert!(NoProxy::parse("*").matches("anything.example", 1));
        assert!(NoProxy::parse("a.example, *").matches("b.example", 1));
        assert!(!NoProxy::parse("").matches("a", 1));
        assert!(!NoProxy::parse(" , ,").matches("a", 1));
    }

    #[test]
    fn no_proxy_ports_are_optional() {
        let no = NoProxy::parse("example.com:8080,127.0.0.1:9001,[::1]:9002,10.0.0.1");
        assert!(no.matches("example.com", 8080));
        assert!(no.matches("sub.example.com", 8080));
        assert!(!no.matches("example.com", 443));
        assert!(no.matches("127.0.0.1", 9001));
        assert!(!no.matches("127.0.0.1", 9000));
        assert!(no.matches("[::1]", 9002));
        assert!(no.matches("::1", 9002));
        assert!(!no.matches("::1", 9001));
        assert!(no.matches("10.0.0.1", 1));
    }

    #[test]
    fn no_proxy_ip_addresses_and_cidr() {
        let no = NoProxy::parse("192.168.0.0/16, ::1, fd00::/8, 127.0.0.1");
        assert!(no.matches("192.168.1.20", 80));
        assert!(!no.matches("192.169.0.1", 80));
        assert!(no.matches("[::1]", 80));
        assert!(no.matches("fd12::5", 80));
        assert!(!no.matches("fe80::1", 80));
        assert!(no.matches("127.0.0.1", 80));
        assert!(!no.matches("127.0.0.2", 80));
        // An IP entry is not a domain suffix.
        assert!(!NoProxy::parse("0.0.1").matches("10.0.0.1", 80));
        assert!(NoProxy::parse("0.0.0.0/0").matches("8.8.8.8", 80));
    }

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ProxyEnv::from_fn(move |k| map.get(k).cloned())
    }

    fn pick(env: &ProxyEnv, url: &str) -> Option<String> {
        env.proxy_for(&url.parse().unwrap()).unwrap().map(|p| p.to_string())
    }

    #[test]
    fn env_variables_as_curl_reads_them() {
        let e = env(&[("https_proxy", "http://s:1"), ("http_proxy", "http://p:2"), ("all_proxy", "socks5://a:3")]);
        assert_eq!(pick(&e, "wss://x/").as_deref(), Some("http://s:1"));
        assert_eq!(pick(&e, "ws://x/").as_deref(), Some("http://p:2"));
        // Uppercase HTTPS_PROXY counts, uppercase HTTP_PROXY does not.
        let e = env(&[("HTTPS_PROXY", "http://s:1"), ("HTTP_PROXY", "http://p:2")]);
        assert_eq!(pick(&e, "wss://x/").as_deref(), Some("http://s:1"));
        assert_eq!(pick(&e, "ws://x/"), None);
        // Lowercase first.
        let e = env(&[("https_proxy", "http://low:1"), ("HTTPS_PROXY", "http://up:1")]);
        assert_eq!(pick(&e, "wss://x/").as_deref(), Some("http://low:1"));
        // all_proxy / ALL_PROXY fallback; an empty value is unset.
        let e = env(&[("https_proxy", ""), ("ALL_PROXY", "socks5h://a:3")]);
        assert_eq!(pick(&e, "wss://x/").as_deref(), Some("socks5h://a:3"));
        assert_eq!(pick(&e, "ws://x/").as_deref(), Some("socks5h://a:3"));
        assert_eq!(pick(&env(&[]), "ws://x/"), None);
    }

    #[test]
    fn env_no_proxy_bypasses() {
        let e = env(&[("all_proxy", "http://p:1"), ("NO_PROXY", "localhost,example.com:8443")]);
        assert_eq!(pick(&e, "ws://localhost:9001/"), None);
        assert_eq!(pick(&e, "wss://example.com:8443/"), None);
        assert_eq!(pick(&e, "wss://example.com/").as_deref(), Some("http://p:1")); // port 443
        let e = env(&[("all_proxy", "http://p:1"), ("no_proxy", "other"), ("NO_PROXY", "*")]);
        assert_eq!(pick(&e, "ws://x/").as_deref(), Some("http://p:1")); // lowercase wins
        let e = env(&[("all_proxy", "http://p:1"), ("no_proxy", "*")]);
        assert_eq!(pick(&e, "ws://x/"), None);
    }

    #[test]
    fn env_invalid_proxy_is_an_error() {
        let e = env(&[("https_proxy", "ftp://p:1")]);
        assert!(e.proxy_for(&"wss://x/".parse().unwrap()).is_err());
    }

    #[test]
    fn direct_mode_ignores_everything() {
        assert!(ProxyMode::Direct.proxy_for(&"wss://x/".parse().unwrap()).unwrap().is_none());
    }
}
