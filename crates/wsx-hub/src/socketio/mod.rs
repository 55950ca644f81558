//! Socket.IO v5 (on Engine.IO v4).

pub mod engine;
pub mod packet;
