//! Settings of a connection in the tokio layer: the protocol limits of
//! `wsx-proto` plus the timers that only an I/O layer can run.

use crate::proxy::{Proxy, ProxyEnv, ProxyMode};
#[cfg(feature = "tls")]
use crate::tls::TlsRoots;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;
use wsx_proto::deflate::{CompressionPreset, DeflateConfig};
use wsx_proto::Role;

/// Whether and how to use permessage-deflate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Deflate {
    /// Clients offer [`DeflateConfig::default`], servers accept with
    /// [`DeflateConfig::server_default`].
    RoleDefault,
    Custom(DeflateConfig),
    Off,
}

/// Settings of a WebSocket connection.
///
/// ```
/// use std::time::Duration;
/// let config = wsx::Config::default()
///     .with_max_message_size(1 << 20)
///     .with_handshake_timeout(Duration::from_secs(5));
/// assert_eq!(config.protocol().max_message_size(), 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    protocol: wsx_proto::Config,
    handshake_timeout: Duration,
    close_timeout: Duration,
    max_handshake_size: usize,
    /// Keepalive, in milliseconds (0: off).
    ping_interval_ms: u32,
    idle_timeout_ms: u32,
    deflate: Deflate,
    /// Client only: how `connect` reaches the server (TLS, proxy).
    client: ClientSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: wsx_proto::Config::default(),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_handshake_size: wsx_proto::handshake::DEFAULT_MAX_REQUEST_SIZE,
            ping_interval_ms: 0,
            idle_timeout_ms: 0,
            deflate: Deflate::RoleDefault,
            client: ClientSettings::default(),
        }
    }
}

impl Config {
    /// Replace the protocol settings (limits, automatic pong, ...).
    pub fn with_protocol(mut self, protocol: wsx_proto::Config) -> Self {
        self.protocol = protocol;
        self
    }

    /// See [`wsx_proto::Config::with_max_message_size`] (default 64 MiB).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.protocol = self.protocol.with_max_message_size(bytes);
        self
    }

    /// See [`wsx_proto::Config::with_max_frame_size`] (default: the message
    /// limit).
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.protocol = self.protocol.with_max_frame_size(bytes);
        self
    }

    /// See [`wsx_proto::Config::with_max_write_buffer`] (default 16 MiB).
    pub fn with_max_write_buffer(mut self, bytes: usize) -> Self {
        self.protocol = self.protocol.with_max_write_buffer(bytes);
        self
    }

    /// See [`wsx_proto::Config::with_auto_pong`] (default on).
    pub fn with_auto_pong(mut self, on: bool) -> Self {
        self.protocol = self.protocol.with_auto_pong(on);
        self
    }

    /// Time allowed for the opening handshake (default 10 s).
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Time allowed for the closing handshake: for the peer to answer our
    /// close frame, and for the transport to close after it (default 5 s).
    pub fn with_close_timeout(mut self, t: Duration) -> Self {
        self.close_timeout = t;
        self
    }

    /// Largest handshake request or response head (default 16 KiB); a
    /// larger request is answered with 431.
    pub fn with_max_handshake_size(mut self, bytes: usize) -> Self {
        self.max_handshake_size = bytes;
        self
    }

    /// Keepalive, for both roles (off by default): ping the peer after
    /// `ping_interval` in which nothing arrived from it, and close the
    /// connection (1001 `idle timeout`; the reader ends with
    /// [`crate::Error::IdleTimeout`]) when nothing, not even a pong, arrived
    /// for `idle_timeout`. Checked on a timer that ticks every ping interval
    /// (without pings, every quarter of the idle timeout), so a ping goes
    /// out one to two intervals into a silence. Zero turns either off. It
    /// runs while the connection is being read (`recv`, the `Stream`, a
    /// [`crate::server::Pump`]), as answering pings does; ticks missed while
    /// the connection was not read (a busy task, a saturated node) count as
    /// one, so the close always follows pings the peer had a whole interval
    /// each to answer.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = wsx::Config::default().with_keepalive(Duration::from_secs(20), Duration::from_secs(60));
    /// assert_eq!(config.ping_interval(), Some(Duration::from_secs(20)));
    /// ```
    pub fn with_keepalive(self, ping_interval: Duration, idle_timeout: Duration) -> Self {
        self.with_ping_interval(ping_interval).with_idle_timeout(idle_timeout)
    }

    /// The ping interval of [`Config::with_keepalive`] (zero: no pings).
    pub fn with_ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval_ms = millis(d);
        self
    }

    /// The idle timeout of [`Config::with_keepalive`] (zero: none).
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout_ms = millis(d);
        self
    }

    /// See [`Config::with_keepalive`].
    pub fn ping_interval(&self) -> Option<Duration> {
        (self.ping_interval_ms > 0).then(|| Duration::from_millis(self.ping_interval_ms.into()))
    }

    /// See [`Config::with_keepalive`].
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms.into()))
    }

    /// Use permessage-deflate (RFC 7692) with these settings. By default a
    /// client offers [`DeflateConfig::default`] and a server accepts offers
    /// with [`DeflateConfig::server_default`] (no server context takeover).
    pub fn with_deflate(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = Deflate::Custom(deflate);
        self
    }

    /// Use permessage-deflate with a memory preset: how much compression
    /// state each connection may keep, and so how well streams of small
    /// messages compress ([`CompressionPreset`];
    /// [`DeflateConfig::preset`]). For servers: the default,
    /// [`CompressionPreset::Shared`], keeps none per connection.
    ///
    /// ```
    /// use wsx::proto::deflate::CompressionPreset;
    /// use wsx::Role;
    /// let config = wsx::Config::default().with_compression_preset(CompressionPreset::Dedicated4K);
    /// let deflate = config.deflate(Role::Server).unwrap();
    /// assert_eq!((deflate.server_max_window_bits(), deflate.mem_level()), (9, Some(2)));
    /// ```
    pub fn with_compression_preset(self, preset: CompressionPreset) -> Self {
        self.with_deflate(DeflateConfig::preset(preset))
    }

    /// Turn permessage-deflate on (the role's default settings) or off.
    pub fn with_compression(mut self, on: bool) -> Self {
        self.deflate = if on { Deflate::RoleDefault } else { Deflate::Off };
        self
    }

    /// The permessage-deflate settings for `role`, `None` when off.
    pub fn deflate(&self, role: Role) -> Option<DeflateConfig> {
        match (&self.deflate, role) {
            (Deflate::Off, _) => None,
            (Deflate::Custom(c), _) => Some(c.clone()),
            (Deflate::RoleDefault, Role::Client) => Some(DeflateConfig::default()),
            (Deflate::RoleDefault, Role::Server) => Some(DeflateConfig::server_default()),
        }
    }

    /// The protocol settings.
    pub fn protocol(&self) -> &wsx_proto::Config {
        &self.protocol
    }

    /// See [`Config::with_handshake_timeout`].
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// See [`Config::with_close_timeout`].
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// See [`Config::with_max_handshake_size`].
    pub fn max_handshake_size(&self) -> usize {
        self.max_handshake_size
    }
}

/// A duration as nonzero milliseconds (a nonzero duration stays on: at
/// least 1 ms; past 49 days, 49 days), or 0.
fn millis(d: Duration) -> u32 {
    if d.is_zero() {
        0
    } else {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
    }
}

/// How [`crate::connect_with`] reaches the server: TLS settings for
/// `wss://` and the proxy.
#[derive(Debug, Clone, Default)]
struct ClientSettings {
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    #[cfg(feature = "tls")]
    tls_roots: TlsRoots,
    #[cfg(feature = "tls")]
    tls_options: crate::tls::ClientTlsOptions,
    proxy: ProxyMode,
    #[cfg(feature = "http2")]
    http2: crate::http2::Mode,
}

/// Client settings: TLS for `wss://` and proxies. Servers ignore them.
impl Config {
    #[cfg(feature = "tls")]
    /// Use this rustls configuration for `wss://` (e.g. to trust a private
    /// CA, or to present a client certificate). Its ALPN protocols are not
    /// used: each connection offers those its HTTP versions allow (`h2`
    /// and `http/1.1`, or `http/1.1` alone; see `Config::with_http2`). It
    /// takes the place of
    /// every other TLS setting; without it, wsx builds one from them
    /// ([`Config::with_tls_ca`], [`Config::with_tls_insecure`],
    /// [`Config::with_tls_client_cert`], [`Config::with_tls_roots`]...).
    ///
    /// ```no_run
    /// # async fn run(ca_der: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut roots = wsx::tls::rustls::RootCertStore::empty();
    /// roots.add(ca_der.into())?;
    /// let tls = wsx::tls::client_config_with_roots(roots)?;
    /// let config = wsx::Config::default().with_tls_config(tls);
    /// let (ws, _) = wsx::connect_with("wss://internal.example/", &config).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.client.tls = Some(crate::tls::with_alpn(tls));
        self
    }

    #[cfg(feature = "tls")]
    /// Which root certificates `wss://` trusts when no configuration is
    /// given with [`Config::with_tls_config`] (default: Mozilla's, compiled
    /// in; the platform's with the `native-roots` feature).
    pub fn with_tls_roots(mut self, roots: TlsRoots) -> Self {
        self.client.tls_roots = roots;
        self
    }

    #[cfg(feature = "tls")]
    /// Trust the certificates of this PEM file instead of the default
    /// roots, as curl's `--cacert` does (call it again to add another
    /// file): a private CA, or a server's own self-signed certificate,
    /// which is then trusted as it is, even when it is marked as a CA as
    /// the first certificate `openssl req -x509` makes is (its name is
    /// checked, its dates are not). The file is read when a `wss://`
    /// connection needs it: [`Config::tls_client_config`] reads it now.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = wsx::Config::default().with_tls_ca("dev-cert.pem");
    /// let (ws, _) = wsx::connect_with("wss://localhost:9443/", &config).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_tls_ca(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.client.tls_options.add_ca_file(pem_file.into());
        self
    }

    #[cfg(feature = "tls")]
    /// Read `SSL_CERT_FILE` (a PEM file) and `SSL_CERT_DIR` (directories
    /// of PEM files, `:`-separated) as OpenSSL-based tools do: when either
    /// is set, trust their certificates instead of the default roots.
    /// [`Config::with_tls_ca`] files come first: with them, the
    /// environment is not read.
    ///
    /// ```
    /// let config = wsx::Config::default().with_tls_roots_from_env();
    /// # let _ = config;
    /// ```
    pub fn with_tls_roots_from_env(mut self) -> Self {
        self.client.tls_options.set_roots_from_env(true);
        self
    }

    #[cfg(feature = "tls")]
    /// Do not check the server's certificate at all (curl's `-k`): any
    /// certificate, for any name, is accepted. For development only: the
    /// connection is encrypted, but to whoever answers.
    ///
    /// ```
    /// let config = wsx::Config::default().with_tls_insecure(true);
    /// assert!(config.tls_insecure());
    /// ```
    pub fn with_tls_insecure(mut self, on: bool) -> Self {
        self.client.tls_options.set_insecure(on);
        self
    }

    #[cfg(feature = "tls")]
    /// Present this client certificate (PEM chain, leaf first) with its
    /// private key (PEM PKCS#8, PKCS#1 or SEC1) to servers that ask for
    /// one.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = wsx::Config::default().with_tls_ca("ca.pem").with_tls_client_cert("client.pem", "client-key.pem");
    /// let (ws, _) = wsx::connect_with("wss://internal.example/", &config).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_tls_client_cert(
        mut self,
        cert_pem_file: impl Into<std::path::PathBuf>,
        key_pem_file: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.client.tls_options.set_client_cert(cert_pem_file.into(), key_pem_file.into());
        self
    }

    #[cfg(feature = "tls")]
    /// The rustls configuration `wss://` connections use: the one given
    /// with [`Config::with_tls_config`], else one built from the other TLS
    /// settings, reading their files now (to report a missing or invalid
    /// file before connecting).
    ///
    /// ```
    /// let err = wsx::Config::default().with_tls_ca("/nonexistent/ca.pem").tls_client_config().unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/ca.pem"));
    /// ```
    pub fn tls_client_config(&self) -> Result<Arc<rustls::ClientConfig>, crate::tls::TlsError> {
        crate::tls::client_config_for(self)
    }

    #[cfg(feature = "tls")]
    /// See [`Config::with_tls_insecure`].
    pub fn tls_insecure(&self) -> bool {
        self.client.tls_options.insecure()
    }

    #[cfg(feature = "tls")]
    pub(crate) fn tls_options(&self) -> &crate::tls::ClientTlsOptions {
        &self.client.tls_options
    }

    /// Connect through this proxy ([`ProxyMode::Fixed`]).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use wsx::proxy::Proxy;
    /// let config = wsx::Config::default().with_proxy(Proxy::parse("http://user:pw@proxy.example:3128")?);
    /// let (ws, _) = wsx::connect_with("wss://example.com/", &config).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_proxy(self, proxy: Proxy) -> Self {
        self.with_proxy_mode(ProxyMode::Fixed(proxy))
    }

    /// Pick the proxy from the process environment as curl does
    /// (`https_proxy`, `http_proxy`, `all_proxy`, `no_proxy`; see
    /// [`crate::proxy::ProxyEnv::proxy_for`]). Not the default: without
    /// it, the environment is not read.
    pub fn with_proxy_from_env(self) -> Self {
        self.with_proxy_mode(ProxyMode::Env(ProxyEnv::process()))
    }

    /// How to reach the server: directly (the default), through a given
    /// proxy, or as an environment says.
    pub fn with_proxy_mode(mut self, mode: ProxyMode) -> Self {
        self.client.proxy = mode;
        self
    }

    #[cfg(feature = "tls")]
    /// See [`Config::with_tls_config`].
    pub fn tls_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.client.tls.as_ref()
    }

    #[cfg(feature = "tls")]
    /// See [`Config::with_tls_roots`].
    pub fn tls_roots(&self) -> TlsRoots {
        self.client.tls_roots
    }

    /// See [`Config::with_proxy_mode`].
    pub fn proxy_mode(&self) -> &ProxyMode {
        &self.client.proxy
    }

    #[cfg(feature = "http2")]
    /// Which HTTP versions `wss://` may open a WebSocket over (RFC 8441):
    /// [`Mode::Auto`](crate::http2::Mode::Auto) (the default) chooses as
    /// browsers do, HTTP/2 when the server takes WebSockets over it, else
    /// HTTP/1.1; [`Mode::Required`](crate::http2::Mode::Required) fails
    /// with [`Error::Http2Unavailable`](crate::Error::Http2Unavailable)
    /// when the server cannot; [`Mode::Off`](crate::http2::Mode::Off) is
    /// HTTP/1.1 alone. `ws://` is always HTTP/1.1 (wsx speaks HTTP/2 over
    /// TLS only, not as cleartext h2c): `Required` refuses it.
    ///
    /// ```no_run
    /// # async fn run() -> wsx::Result<()> {
    /// use wsx::http2::Mode;
    /// let config = wsx::Config::default().with_http2(Mode::Required);
    /// let (ws, response) = wsx::connect_with("wss://example.com/chat", &config).await?;
    /// assert_eq!(response.version(), http::Version::HTTP_2);
    /// assert_eq!(ws.get_ref().http_version(), http::Version::HTTP_2);
    /// # Ok(()) }
    /// ```
    pub fn with_http2(mut self, mode: crate::http2::Mode) -> Self {
        self.client.http2 = mode;
        self
    }

    #[cfg(feature = "http2")]
    /// See [`Config::with_http2`].
    pub fn http2(&self) -> crate::http2::Mode {
        self.client.http2
    }
}
