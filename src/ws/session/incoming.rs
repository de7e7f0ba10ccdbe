//! What reading yields: the peer's messages and control frames, or the
//! reason the session failed the connection.

use crate::ws::close;
use crate::ws::deflate::InflateError;
use std::fmt;

/// Something the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message (default mode). Text is valid UTF-8.
    Message {
        /// A text message (else binary).
        text: bool,
        /// The payload, decompressed.
        data: Vec<u8>,
    },
    /// A piece of a message (streaming mode): each data frame's payload,
    /// decompressed, as it arrives; a frame that arrives over several reads
    /// (or inflates to a lot) comes as several pieces. Pieces of a text
    /// message may split a UTF-8 sequence; their concatenation is valid.
    Fragment {
        /// A text message (else binary).
        text: bool,
        /// This piece.
        data: Vec<u8>,
        /// The first piece of the message.
        first: bool,
        /// The last piece of the message (it may be empty).
        fin: bool,
    },
    /// A ping; the pong has already been appended to `out`.
    Ping(Vec<u8>),
    /// A pong (solicited or not).
    Pong(Vec<u8>),
    /// The peer's Close frame; nothing more will be delivered. If we had not
    /// sent a Close yet, the reply is already in `out`.
    Close {
        /// The status code; 1005 ([`close::NO_STATUS`]) when the frame had
        /// none.
        code: u16,
        /// The UTF-8 reason, possibly empty.
        reason: Vec<u8>,
    },
}

/// Why the session failed the connection (RFC 6455 §7.1.7). The close frame
/// carrying `code` has been appended to `out` (unless we had already sent a
/// Close); the caller flushes `out` and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// 1002 (protocol error), 1007 (invalid payload, e.g. bad UTF-8) or 1009
    /// (too big).
    pub code: u16,
    /// What went wrong, for logs; also the close frame's reason.
    pub reason: &'static str,
}

impl Failure {
    pub(super) const fn protocol(reason: &'static str) -> Self {
        Self {
            code: close::PROTOCOL_ERROR,
            reason,
        }
    }

    pub(super) const fn invalid_utf8() -> Self {
        Self {
            code: close::INVALID_PAYLOAD,
            reason: "invalid UTF-8 in text message",
        }
    }

    pub(super) const fn too_big(reason: &'static str) -> Self {
        Self {
            code: close::MESSAGE_TOO_BIG,
            reason,
        }
    }

    pub(super) const fn inflate(e: InflateError) -> Self {
        match e {
            InflateError::Corrupt => Self {
                code: e.close_code(),
                reason: "invalid compressed data",
            },
            InflateError::TooBig => Self::too_big("message too big"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for Failure {}
