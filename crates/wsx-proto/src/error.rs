//! Errors of the protocol core. Each protocol violation is a variant of
//! [`ProtocolError`] and maps to the close code RFC 6455 §7.4.1 gives it.

use crate::close::{CloseCode, ClosePayloadError};

/// The peer broke a rule of RFC 6455; the connection is failed with the
/// close code of [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 set without an extension that defines it (§5.2).
    #[error("reserved bit set without a negotiated extension")]
    ReservedBits,
    /// An opcode reserved for future use (§5.2).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A client sent an unmasked frame (§5.1).
    #[error("frame from client is not masked")]
    UnmaskedFrame,
    /// A server sent a masked frame (§5.1).
    #[error("frame from server is masked")]
    MaskedFrame,
    /// A control frame with more than 125 bytes of payload (§5.5).
    #[error("control frame payload longer than 125 bytes")]
    ControlFrameTooLong,
    /// A control frame without FIN (§5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A continuation frame with no message to continue (§5.4).
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is unfinished (§5.4).
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A 64-bit payload length with its most significant bit set (§5.2).
    #[error("payload length with the most significant bit set")]
    InvalidLength,
    /// A close frame with a one-byte payload (§5.5.1).
    #[error("close frame with a one-byte payload")]
    InvalidClosePayload,
    /// A close code that may not be sent on the wire (§7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// Invalid UTF-8 in a text message (§8.1).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// Invalid UTF-8 in the reason of a close frame (§5.5.1).
    #[error("invalid UTF-8 in a close reason")]
    InvalidCloseReason,
    /// A frame larger than the configured limit.
    #[error("frame of {size} bytes is over the limit of {max}")]
    FrameTooBig {
        /// The declared payload size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A message larger than the configured limit.
    #[error("message of at least {size} bytes is over the limit of {max}")]
    MessageTooBig {
        /// The size reached so far (declared, or inflated).
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A compressed message that does not inflate (RFC 7692 §6.2).
    #[error("invalid compressed data")]
    InvalidCompressedData,
    /// The transport ended in the middle of a frame or without a close frame.
    #[error("connection closed without a closing handshake")]
    AbnormalClosure,
}

impl ProtocolError {
    /// The close code that the connection is failed with (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        use ProtocolError::*;
        match self {
            InvalidUtf8 | InvalidCloseReason => CloseCode::InvalidPayload,
            FrameTooBig { .. } | MessageTooBig { .. } => CloseCode::MessageTooBig,
            AbnormalClosure => CloseCode::Abnormal,
            InvalidCompressedData => CloseCode::InvalidPayload,
            _ => CloseCode::ProtocolError,
        }
    }

    /// The error that a refused close frame payload fails the connection
    /// with.
    pub(crate) fn from_close_payload(e: ClosePayloadError) -> Self {
        match e {
            ClosePayloadError::OneByte => ProtocolError::InvalidClosePayload,
            ClosePayloadError::InvalidCode(c) => ProtocolError::InvalidCloseCode(c),
            ClosePayloadError::InvalidUtf8 => ProtocolError::InvalidCloseReason,
        }
    }
}

/// What can go wrong when the local side sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent; no more messages may follow (§5.5.1).
    #[error("the connection is closing or closed")]
    Closed,
    /// The close code may not be sent (§7.4): 1000–1003, 1007–1014 and
    /// 3000–4999 only.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// The close reason is longer than 123 bytes.
    #[error("close reason of {0} bytes is longer than 123")]
    ReasonTooLong(usize),
    /// A ping or pong payload is longer than 125 bytes (§5.5).
    #[error("control frame payload of {0} bytes is longer than 125")]
    ControlPayloadTooLong(usize),
    /// The message is larger than the 2 GiB the protocol core supports.
    #[error("message of {0} bytes is too large to send")]
    MessageTooLarge(usize),
    /// A fragment sent out of order (a continuation without a start, or a
    /// new message before the last one's final fragment).
    #[error("fragment out of order")]
    FragmentOrder,
    /// A prepared (shared, unmasked) frame sent by a client, which must
    /// mask every frame with a fresh key (§5.3): send its message instead
    /// ([`PreparedMessage::to_message`](crate::PreparedMessage::to_message)).
    #[error("a prepared frame can only be sent by a server")]
    PreparedByClient,
}
