//! The frame opcode (RFC 6455 §5.2), shared by every layer that reads or
//! writes frames.

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
