//! The sans-I/O connection: bytes in, messages out; messages in, bytes out.
//!
//! A connection after the opening handshake is two halves: a
//! [`Reader`] (the read buffer, the frame being parsed, the message being
//! assembled) and a [`Writer`] (the write queue and the closing
//! handshake). Neither touches a socket or a clock. Receiving has one
//! driver: [`Reader::receive`] returns what arrived and the [`Duty`] it
//! creates (a pong, the close reply, the close frame of a failure), and
//! [`Writer::perform`] does the duty. [`Connection`] is the two halves
//! side by side with that driver, [`Connection::receive`]; an I/O layer that
//! keeps the halves apart (in two tasks) makes the same two calls.

use crate::deflate::DeflateParams;
use crate::error::ProtocolError;
use crate::limits::Config;
use crate::message::Incoming;
use crate::reader::{Mode, Reader, Received};
use crate::role::Role;
use crate::writer::Writer;

#[cfg(doc)]
use crate::reader::Duty;

/// One WebSocket connection after the opening handshake, without I/O: a
/// [`Reader`] and a [`Writer`], and [`Connection::receive`], which hands the
/// writer what the reader says is owed. Feed bytes to `reader`; send with
/// `writer` and take what it has to write from it.
///
/// Use it when one owner drives the whole connection. When the halves live
/// apart (a read task and a write task), keep a [`Reader`] and a [`Writer`]
/// instead and make the two calls of [`Connection::receive`] yourself; on
/// tokio, use `wsx::WebSocket`.
///
/// ```
/// use wsx_proto::{Config, Connection, Incoming, Message, Mode, Role};
/// let mut server = Connection::new(Role::Server, &Config::default());
/// // A masked "Hello" from a client (RFC 6455 §5.7).
/// server.reader.feed(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// let hello = server.receive(Mode::Whole).unwrap();
/// assert_eq!(hello, Some(Incoming::Message(Message::text("Hello"))));
/// server.writer.send(Message::text("Hello")).unwrap();
/// assert_eq!(server.writer.take_output(), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
/// ```
#[derive(Debug)]
pub struct Connection {
    /// The receiving half.
    pub reader: Reader,
    /// The sending half.
    pub writer: Writer,
}

impl Connection {
    /// A connection in the given role, open (the handshake is done).
    pub fn new(role: Role, config: &Config) -> Self {
        Self::with_deflate(role, config, None)
    }

    /// A connection with permessage-deflate as negotiated in the handshake
    /// (see [`crate::deflate`]).
    pub fn with_deflate(role: Role, config: &Config, deflate: Option<&DeflateParams>) -> Self {
        Self {
            reader: Reader::with_deflate(role, config, deflate),
            writer: Writer::with_deflate(role, config, deflate),
        }
    }

    /// The next message or chunk ([`Reader::receive`]), with what it obliges
    /// the connection to send already queued ([`Writer::perform`]).
    #[inline(always)]
    pub fn receive(&mut self, mode: Mode) -> Result<Option<Incoming>, ProtocolError> {
        let Received { result, duty } = self.reader.receive(mode);
        if let Some(duty) = duty {
            self.writer.perform(duty);
        }
        result
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// Every connection holds both halves inline, idle or not (idle memory
    /// per connection is a tracked target): what only some connections
    /// use is boxed, so that the halves do not grow.
    #[test]
    fn the_halves_stay_small() {
        let (reader, writer) = (std::mem::size_of::<Reader>(), std::mem::size_of::<Writer>());
        println!("Reader {reader} bytes, Writer {writer} bytes");
        assert!(reader <= 32, "Reader is {reader} bytes");
        assert!(writer <= 40, "Writer is {writer} bytes");
    }
}
