//! Which end of a connection this is.

/// Which end of the connection this is. Decides masking (§5.1): a client
/// masks every frame it sends and refuses masked frames; a server refuses
/// unmasked frames and never masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that opened the connection.
    Client,
    /// The end that accepted it.
    Server,
}
