//! Socket.IO v5 over Engine.IO v4: the transport layer ([`engine`]).

pub mod engine;
