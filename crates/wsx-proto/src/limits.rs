//! Limits and settings of a connection, with safe defaults.
//!
//! Every buffer a peer can make the connection fill is bounded here: a frame,
//! a message (after inflation too, once compression is negotiated), the
//! outgoing queue that builds up when a peer does not read, and the control
//! frames it can make us answer.
//!
//! It also says where the randomness a connection needs comes from (the
//! masking keys of a client, RFC 6455 §5.3): the thread's CSPRNG, unless a
//! seed is given to make runs replayable.

/// The largest message or frame size that can be configured: 2 GiB.
pub(crate) const MAX_SIZE_LIMIT: usize = 1 << 31;

/// Default max frame and message size: 64 MiB.
pub(crate) const DEFAULT_MAX_SIZE: usize = 64 << 20;

/// Settings of a connection: the limits on every buffer a peer can make
/// it fill (a frame, a message, after inflation too, the outgoing queue
/// when the peer does not read), whether pings are answered, and where a
/// client's masking keys come from. Build one from [`Config::default`] with
/// the `with_*` methods.
///
/// ```
/// use wsx_proto::Config;
/// let config = Config::default()
///     .with_max_message_size(1 << 20)
///     .with_auto_pong(false);
/// assert_eq!(config.max_message_size(), 1 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    // Stored as u32 (every limit is at most 2 GiB, or clamped to 4 GiB):
    // small to copy. A connection keeps only the fields it uses, not this.
    max_frame_size: u32,
    max_message_size: u32,
    max_write_buffer: u32,
    copy_threshold: u32,
    auto_pong: bool,
    accept_unmasked_frames: bool,
    rng_seed: Option<u64>,
}

fn clamp_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Unset: the message limit (see `max_frame_size`).
            max_frame_size: u32::MAX,
            max_message_size: DEFAULT_MAX_SIZE as u32,
            max_write_buffer: 16 << 20,
            copy_threshold: 2 << 10,
            auto_pong: true,
            accept_unmasked_frames: false,
            rng_seed: None,
        }
    }
}

impl Config {
    /// Largest frame payload accepted; a larger frame closes the connection
    /// with 1009 before its payload is buffered. Default: the message limit
    /// ([`Config::with_max_message_size`]), which also bounds a limit set
    /// here (a frame is part of a message); clamped to 2 GiB. See
    /// [`Config::max_frame_size`].
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = clamp_u32(bytes.min(MAX_SIZE_LIMIT));
        self
    }

    /// Largest message accepted (all fragments together, and the inflated
    /// size when compressed); a larger one closes with 1009 as soon as its
    /// declared size passes the limit. Default 64 MiB, clamped to 2 GiB.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = clamp_u32(bytes.min(MAX_SIZE_LIMIT));
        self
    }

    /// High-water mark of the outgoing queue: above it, the I/O layer
    /// applies backpressure (a `Sink` is not ready, `send` waits). Default
    /// 16 MiB.
    pub fn with_max_write_buffer(mut self, bytes: usize) -> Self {
        self.max_write_buffer = clamp_u32(bytes);
        self
    }

    /// Answer pings with pongs automatically (default: on). Pings are handed
    /// to the user either way.
    pub fn with_auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// Accept unmasked frames from clients (server role). Off by default;
    /// RFC 6455 §5.1 requires the server to fail such connections.
    pub fn with_accept_unmasked_frames(mut self, on: bool) -> Self {
        self.accept_unmasked_frames = on;
        self
    }

    /// Payloads up to this size are copied into the write buffer, so that
    /// many small messages go out in one write; larger ones are written from
    /// the caller's buffer with a vectored write. Default 2 KiB.
    pub fn with_copy_threshold(mut self, bytes: usize) -> Self {
        self.copy_threshold = clamp_u32(bytes);
        self
    }

    /// The largest frame accepted: the message limit, or the frame limit
    /// set with [`Config::with_max_frame_size`] if that is lower (a frame
    /// larger than a message can never be accepted; its payload is refused
    /// at its header, before it is buffered). One limit, the message's,
    /// is all most users set.
    ///
    /// ```
    /// use wsx_proto::Config;
    /// assert_eq!(Config::default().max_frame_size(), 64 << 20);
    /// assert_eq!(Config::default().with_max_message_size(1000).max_frame_size(), 1000);
    /// assert_eq!(Config::default().with_max_message_size(1 << 30).max_frame_size(), 1 << 30);
    /// assert_eq!(Config::default().with_max_frame_size(10).with_max_message_size(1000).max_frame_size(), 10);
    /// ```
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size.min(self.max_message_size) as usize
    }

    /// See [`Config::with_max_message_size`].
    pub fn max_message_size(&self) -> usize {
        self.max_message_size as usize
    }

    /// See [`Config::with_max_write_buffer`].
    pub fn max_write_buffer(&self) -> usize {
        self.max_write_buffer as usize
    }

    /// See [`Config::with_auto_pong`].
    pub fn auto_pong(&self) -> bool {
        self.auto_pong
    }

    /// See [`Config::with_accept_unmasked_frames`].
    pub fn accept_unmasked_frames(&self) -> bool {
        self.accept_unmasked_frames
    }

    /// See [`Config::with_copy_threshold`].
    pub fn copy_threshold(&self) -> usize {
        self.copy_threshold as usize
    }

    /// Draw a client's masking keys (§5.3) from a pseudo-random generator
    /// seeded with `seed` (`rand`'s `StdRng`), one per connection, instead
    /// of the thread's CSPRNG: two connections made with the same seed
    /// write the same bytes for the same sends, so a run can be replayed.
    /// For tests and simulations: keys a peer can predict defeat the
    /// masking's purpose against proxies (§10.3). A server never masks, so
    /// this changes nothing for it.
    ///
    /// ```
    /// use wsx_proto::{Config, Message, Role, Writer};
    /// let config = Config::default().with_rng_seed(7);
    /// let mut a = Writer::new(Role::Client, &config);
    /// let mut b = Writer::new(Role::Client, &config);
    /// a.send(Message::text("hi")).unwrap();
    /// b.send(Message::text("hi")).unwrap();
    /// assert_eq!(a.take_output(), b.take_output());
    /// ```
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// See [`Config::with_rng_seed`]; `None`: the thread's CSPRNG.
    pub fn rng_seed(&self) -> Option<u64> {
        self.rng_seed
    }
}
