//! Socket.IO v5 (on Engine.IO v4): the packet codec.

pub mod packet;
