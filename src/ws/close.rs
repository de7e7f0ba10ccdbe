//! Close codes and Close frame payloads (RFC 6455 §5.5.1, §7.4).
//!
//! "If there is a body, the first two bytes of the body MUST be a 2-byte
//! unsigned integer (in network byte order) representing a status code with
//! value /code/ defined in Section 7.4. Following the 2-byte integer, the
//! body MAY contain UTF-8-encoded data with value /reason/."

use crate::ws::frame::MAX_CONTROL_PAYLOAD;
use crate::ws::utf8;
use std::fmt;

/// 1000: normal closure.
pub const NORMAL: u16 = 1000;
/// 1001: the endpoint is going away (server shutdown, page navigation).
pub const GOING_AWAY: u16 = 1001;
/// 1002: protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1003: a data type the endpoint cannot accept.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// 1005: no status code was present. Reported to the application for a Close
/// frame without a body; "MUST NOT be set as a status code in a Close control
/// frame by an endpoint" (§7.4.1).
pub const NO_STATUS: u16 = 1005;
/// 1006: the connection closed without a Close frame. Never sent on the wire.
pub const ABNORMAL: u16 = 1006;
/// 1007: data inconsistent with the message type (e.g. invalid UTF-8 text).
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: a policy violation.
pub const POLICY_VIOLATION: u16 = 1008;
/// 1009: a message too big to process.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1010: the client expected the server to negotiate an extension.
pub const MANDATORY_EXTENSION: u16 = 1010;
/// 1011: an unexpected condition on the server.
pub const INTERNAL_ERROR: u16 = 1011;

/// The longest reason: a control frame payload holds at most 125 bytes, two
/// of which are the code.
pub const MAX_REASON_LEN: usize = MAX_CONTROL_PAYLOAD - 2;

/// Whether `code` may appear in a Close frame, received or sent.
///
/// From §7.4.1/§7.4.2 and the IANA "WebSocket Close Code Number Registry":
/// 0–999 are "not used"; 1004 is reserved; 1005, 1006 and 1015 "MUST NOT be
/// set as a status code in a Close control frame"; 1000–1003 and 1007–1014
/// are registered; 1016–2999 are reserved for future protocol revisions and
/// extensions (none of which we negotiate); 3000–3999 are registered for
/// libraries and frameworks and 4000–4999 are private use; 5000 and above are
/// undefined. A peer sending an invalid code is failed with 1002.
pub const fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a received Close payload is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// A one-byte body: too short for a status code.
    Truncated,
    /// A status code outside [`is_valid_code`].
    InvalidCode(u16),
    /// A reason longer than [`MAX_REASON_LEN`] (only when building one).
    ReasonTooLong,
    /// A reason that is not valid UTF-8.
    InvalidUtf8,
}

impl CloseError {
    /// The close code to fail the connection with: 1007 for bad UTF-8 (§8.1),
    /// 1002 (protocol error) for everything else.
    pub const fn close_code(self) -> u16 {
        match self {
            Self::InvalidUtf8 => INVALID_PAYLOAD,
            _ => PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("one-byte close payload"),
            Self::InvalidCode(code) => write!(f, "invalid close code {code}"),
            Self::ReasonTooLong => write!(f, "close reason longer than {MAX_REASON_LEN} bytes"),
            Self::InvalidUtf8 => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for CloseError {}

/// A decoded Close frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseBody<'a> {
    /// The status code; `None` for an empty body (report [`NO_STATUS`]).
    pub code: Option<u16>,
    /// The UTF-8 reason; empty when absent.
    pub reason: &'a [u8],
}

/// Parses and validates the payload of a received Close frame.
pub fn parse_payload(payload: &[u8]) -> Result<CloseBody<'_>, CloseError> {
    match payload {
        [] => Ok(CloseBody {
            code: None,
            reason: &[],
        }),
        [_] => Err(CloseError::Truncated),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_code(code) {
                return Err(CloseError::InvalidCode(code));
            }
            // §5.5.1: the reason is "UTF-8-encoded data"; §8.1 applies.
            utf8::validate(reason).map_err(|_| CloseError::InvalidUtf8)?;
            Ok(CloseBody {
                code: Some(code),
                reason,
            })
        }
    }
}

/// Checks a code and reason the application wants to send.
pub fn check_outgoing(code: u16, reason: &[u8]) -> Result<(), CloseError> {
    if !is_valid_code(code) {
        return Err(CloseError::InvalidCode(code));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(CloseError::ReasonTooLong);
    }
    utf8::validate(reason).map_err(|_| CloseError::InvalidUtf8)
}

/// Appends a Close payload (code then reason) to `out`, after
/// [`check_outgoing`].
pub fn encode_payload(code: u16, reason: &[u8], out: &mut Vec<u8>) -> Result<(), CloseError> {
    check_outgoing(code, reason)?;
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_table() {
        let valid: Vec<u16> = (0..=u16::MAX).filter(|&c| is_valid_code(c)).collect();
        assert_eq!(valid.len(), 4 + 8 + 2000);
        // Autobahn 7.7.x: valid codes it sends.
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_code(c), "{c}");
        }
        // Autobahn 7.9.x: invalid codes it sends, plus the other edges.
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_code(c), "{c}");
        }
        for c in [1012, 1013, 1014] {
            assert!(is_valid_code(c), "{c}");
        }
    }

    #[test]
    fn parse_bodies() {
        assert_eq!(
            parse_payload(&[]),
            Ok(CloseBody {
                code: None,
                reason: &[]
            })
        );
        assert_eq!(parse_payload(&[0x03]), Err(CloseError::Truncated));
        assert_eq!(
            parse_payload(&[0x03, 0xe8, b'b', b'y', b'e']),
            Ok(CloseBody {
                code: Some(1000),
                reason: b"bye"
            })
        );
        assert_eq!(
            parse_payload(&[0x03, 0xed]),
            Err(CloseError::InvalidCode(1005))
        );
        assert_eq!(
            parse_payload(&[0x03, 0xe8, 0xed, 0xa0, 0x80]),
            Err(CloseError::InvalidUtf8)
        );
        assert_eq!(CloseError::InvalidUtf8.close_code(), 1007);
        assert_eq!(CloseError::Truncated.close_code(), 1002);
        assert_eq!(CloseError::InvalidCode(0).close_code(), 1002);
    }

    #[test]
    fn every_invalid_code_is_rejected_on_receive() {
        for code in 0..=u16::MAX {
            let body = code.to_be_bytes();
            assert_eq!(parse_payload(&body).is_ok(), is_valid_code(code), "{code}");
        }
    }

    #[test]
    fn outgoing_checks() {
        let mut out = Vec::new();
        encode_payload(1000, b"done", &mut out).unwrap();
        assert_eq!(out, [0x03, 0xe8, b'd', b'o', b'n', b'e']);
        for code in [1005, 1006, 1015, 999, 5000] {
            assert_eq!(
                check_outgoing(code, b""),
                Err(CloseError::InvalidCode(code))
            );
        }
        assert_eq!(check_outgoing(1000, &[b'a'; 123]), Ok(()));
        assert_eq!(
            check_outgoing(1000, &[b'a'; 124]),
            Err(CloseError::ReasonTooLong)
        );
        assert_eq!(check_outgoing(4000, &[0xff]), Err(CloseError::InvalidUtf8));
    }
}
