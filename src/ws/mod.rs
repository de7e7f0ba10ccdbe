//! Sans-IO WebSocket protocol: RFC 6455 framing and RFC 7692 permessage-deflate.
//!
//! Nothing in this module touches a socket, a clock or a thread. The caller
//! feeds bytes it read into a [`session::Session`] and writes out the bytes the
//! session hands back; the handshake helpers work on already-parsed HTTP heads.
//! That keeps every protocol rule unit-testable at the byte level and lets the
//! event loop own all I/O decisions (buffering, timeouts, closing the socket).
//!
//! Layout, one concept per file:
//! - [`frame`]: frame header parsing and encoding (RFC 6455 §5.2).
//! - [`mask`]: client-to-server payload masking (RFC 6455 §5.3).
//! - [`utf8`]: incremental, fail-fast UTF-8 validation of text messages.
//! - [`close`]: close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).
//! - [`deflate`]: permessage-deflate negotiation and (de)compression (RFC 7692).
//! - [`handshake`]: the opening handshake, server and client side (RFC 6455 §4).
//! - [`session`]: the per-connection state machine tying the above together.
//!
//! Internal helpers: `buffer` (growth capped by a limit), `header` (HTTP
//! token, list and quoted-string syntax) and `random` (masking keys, nonces).

#![deny(missing_docs)]

mod buffer;
pub mod close;
pub mod deflate;
pub mod frame;
pub mod handshake;
mod header;
pub mod mask;
mod random;
pub mod session;
pub mod utf8;

pub use session::{
    encode_server_frame, Failure, Incoming, Role, SendError, Session, SessionConfig, Spares, State,
};

/// A WebSocket frame opcode (RFC 6455 §5.2, "Opcode: 4 bits").
///
/// Only the opcodes defined by RFC 6455 are representable: the reserved
/// values (%x3-7 for data, %xB-F for control) have no meaning without an
/// extension that defines them, and "If an unknown opcode is received, the
/// receiving endpoint MUST _Fail the WebSocket Connection_" (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// %x0: a continuation frame of a fragmented message.
    Continuation = 0x0,
    /// %x1: the first frame of a text (UTF-8) message.
    Text = 0x1,
    /// %x2: the first frame of a binary message.
    Binary = 0x2,
    /// %x8: connection close.
    Close = 0x8,
    /// %x9: ping.
    Ping = 0x9,
    /// %xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Maps the 4-bit wire value to an opcode; `None` for reserved values
    /// (and for anything above 15, which cannot come from a frame header).
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this is a control frame opcode. RFC 6455 §5.5: "Control frames
    /// are identified by opcodes where the most significant bit of the opcode
    /// is 1."
    pub const fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::OpCode;

    #[test]
    fn opcode_round_trip_and_reserved_values() {
        for v in 0u8..=255 {
            match OpCode::from_u8(v) {
                Some(op) => {
                    assert_eq!(op.as_u8(), v);
                    assert_eq!(op.is_control(), v >= 8);
                }
                None => assert!(matches!(v, 3..=7 | 11..), "{v}"),
            }
        }
    }
}
