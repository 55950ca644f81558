//! # wsx-proto
//!
//! The sans-I/O core of wsx: RFC 6455 framing, masking, UTF-8 validation,
//! close codes, the opening handshake, permessage-deflate and limits, with
//! no socket, clock or runtime. Bytes go in, messages come out; messages go
//! in, bytes to write come out. The `wsx` crate drives it over tokio;
//! anything else (another runtime, a fuzzer, a test) can drive it the same
//! way.
//!
//! ## Which type drives a connection
//!
//! A connection after the opening handshake is two halves: a [`Reader`]
//! (the read buffer, the frame being parsed, the message being assembled)
//! and a [`Writer`] (the write queue and the closing handshake). Receiving
//! has one driver, [`Reader::receive`]: it returns what arrived and what
//! that obliges the endpoint to send (a [`Duty`]: a pong, the close reply,
//! the close frame of a failure), which [`Writer::perform`] does.
//!
//! - One owner for the whole connection (a loop over one socket, a test, a
//!   fuzzer): [`Connection`], the two halves side by side, whose
//!   [`Connection::receive`] makes both calls.
//! - The halves in different places (a read task and a write task):
//!   [`Reader`] and [`Writer`], with the two calls made by the caller,
//!   passing the [`Duty`] across. This is what `wsx` does.
//! - On tokio: `wsx::WebSocket` (crate `wsx`), which is built on these two
//!   halves and owns the buffers, timers and backpressure. Use it rather
//!   than this crate unless you bring your own I/O.
//!
//! ```
//! use wsx_proto::{Config, Connection, Incoming, Message, Mode, Role};
//!
//! let mut client = Connection::new(Role::Client, &Config::default());
//! let mut server = Connection::new(Role::Server, &Config::default());
//! client.writer.send(Message::text("hi")).unwrap();
//! server.reader.feed(&client.writer.take_output());   // bytes from the socket
//! assert_eq!(server.receive(Mode::Whole).unwrap(), Some(Incoming::Message(Message::text("hi"))));
//! ```
//!
//! Before that, the opening handshake ([`handshake`]) and, when negotiated
//! in it, permessage-deflate ([`deflate`]): their outcome is what
//! [`Connection::with_deflate`] (or [`Reader::with_deflate`] and
//! [`Writer::with_deflate`]) takes.
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `fuzzing` | off | a hidden module of internals (frame header codec, masking loops, the incremental UTF-8 validator, the header grammars) for the fuzz targets and micro benchmarks; not part of the API |

#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

// `close` is a public path only for `wsx` (`wsx_proto::close::MAX_REASON_LEN`
// in its close handle); its items are documented at the crate root.
#[doc(hidden)]
pub mod close;
mod connection;
pub mod deflate;
mod error;
mod extensions;
mod frame;
mod gather;
pub mod handshake;
mod limits;
mod mask;
mod message;
mod out_queue;
mod prepared;
mod read_state;
mod reader;
mod role;
mod spare;
mod utf8;
mod writer;
mod zlib;

pub use close::{CloseCode, CloseFrame, MAX_REASON_LEN};
pub use connection::Connection;
pub use error::{ProtocolError, SendError};
pub use gather::Gather;
pub use limits::Config;
pub use message::{Chunk, Incoming, Message};
pub use prepared::PreparedMessage;
pub use reader::{Duty, Mode, Reader, Received, INFLATE_STEP};
pub use role::Role;
pub use utf8::{InvalidUtf8, Utf8Bytes};
pub use writer::{CloseState, Writer};

/// Internals for the fuzz targets (`fuzz/`) and the micro benchmarks
/// (`benches/proto.rs`, the side-by-side load generator): the frame header
/// codec, the masking loops, the incremental UTF-8 validator, the close
/// payload codec, the `Sec-WebSocket-Extensions` grammar and the accept
/// key. They are fuzzed and measured directly, against reference
/// implementations, which the public path (the [`Reader`] and [`Writer`],
/// the [`handshake`]) would hide. Not part of the API: hidden, compiled
/// only with the `fuzzing` feature, and changed without notice.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::extensions::{format_extensions, is_token, parse_extension_headers, parse_extensions};
    pub use crate::frame::{FrameHeader, HeaderError, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
    pub use crate::mask::{apply_mask, apply_mask_naive, apply_mask_portable};
    pub use crate::utf8::{validate, Utf8Validator};
    use crate::{CloseFrame, ProtocolError};
    use bytes::{Bytes, BytesMut};

    /// A received close frame's payload as the reader reads it (RFC 6455
    /// §5.5.1): empty (no code), or a sendable code and a UTF-8 reason.
    pub fn parse_close(payload: Bytes) -> Result<Option<CloseFrame>, ProtocolError> {
        CloseFrame::parse(payload).map_err(ProtocolError::from_close_payload)
    }

    /// A close frame's payload as the writer writes it.
    pub fn encode_close(frame: &CloseFrame, dst: &mut BytesMut) {
        frame.encode(dst)
    }

    /// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (§4.2.2).
    pub fn derive_accept_key(key: &[u8]) -> String {
        crate::handshake::derive_accept_key(key)
    }
}
