//! # wsx-proto
//!
//! The sans-I/O core of wsx: RFC 6455 framing, masking, UTF-8 validation,
//! close codes, the opening handshake and limits, with no socket, clock or
//! runtime. Bytes go in, messages come out; messages go in, bytes to write
//! come out. The `wsx` crate drives it over tokio; anything else (another
//! runtime, a fuzzer, a test) can drive it the same way.
//!
//! Receiving has one driver, [`Reader::receive`]: it returns what arrived
//! and what that obliges the endpoint to send (a [`Duty`]: a pong, the
//! close reply, the close frame of a failure), which [`Writer::perform`]
//! does. [`Connection`] holds both halves and makes those two calls.
//!
//! ```
//! use wsx_proto::{Config, Connection, Incoming, Message, Mode, Role};
//!
//! let mut client = Connection::new(Role::Client, &Config::default());
//! let mut server = Connection::new(Role::Server, &Config::default());
//! client.writer.send(Message::text("hi")).unwrap();
//! server.reader.feed(&client.writer.take_output());
//! assert_eq!(server.receive(Mode::Whole).unwrap(), Some(Incoming::Message(Message::text("hi"))));
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod close;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod extensions;
pub mod frame;
mod gather;
pub mod handshake;
pub mod limits;
pub mod mask;
pub mod message;
mod out_queue;
mod read_state;
mod reader;
mod role;
mod spare;
pub mod utf8;
mod writer;

pub use close::{CloseCode, CloseFrame};
pub use connection::Connection;
pub use error::{ProtocolError, SendError};
pub use gather::Gather;
pub use limits::Config;
pub use message::Message;
pub use message::{Chunk, Incoming};
pub use reader::{Duty, Mode, Reader, Received, INFLATE_STEP};
pub use role::Role;
pub use utf8::Utf8Bytes;
pub use writer::{CloseState, Writer};
