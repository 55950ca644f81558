//! # wsx-proto
//!
//! The sans-I/O core of wsx: RFC 6455 framing, masking, UTF-8 validation,
//! close codes, the opening handshake and limits, with no socket, clock or
//! runtime. Bytes go in, messages come out; messages go in, bytes to write
//! come out. The `wsx` crate drives it over tokio; anything else (another
//! runtime, a fuzzer, a test) can drive it the same way.
//!
//! ```
//! use wsx_proto::{Config, Connection, Message, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//! client.send(Message::text("hi")).unwrap();
//! server.feed(&client.take_output());
//! assert_eq!(server.next_message().unwrap(), Some(Message::text("hi")));
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod close;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod limits;
pub mod mask;
pub mod message;
mod spare;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{Chunk, CloseState, Connection, Gather, Incoming, Reader, Role, Writer};
pub use error::{ProtocolError, SendError};
pub use limits::Config;
pub use message::Message;
pub use utf8::Utf8Bytes;
