//! Settings of a connection in the tokio layer: the protocol limits of
//! `wsx-proto` plus the timers that only an I/O layer can run.

use std::time::Duration;
use wsx_proto::deflate::DeflateConfig;
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
    deflate: Deflate,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: wsx_proto::Config::default(),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_handshake_size: wsx_proto::handshake::DEFAULT_MAX_REQUEST_SIZE,
            deflate: Deflate::RoleDefault,
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

    /// See [`wsx_proto::Config::with_max_frame_size`] (default 64 MiB).
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

    /// Use permessage-deflate (RFC 7692) with these settings. By default a
    /// client offers [`DeflateConfig::default`] and a server accepts offers
    /// with [`DeflateConfig::server_default`] (no server context takeover).
    pub fn with_deflate(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = Deflate::Custom(deflate);
        self
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
