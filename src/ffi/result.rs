//! `wss_result`: the stable result numbers of the C API.

use std::ffi::c_char;

/// Result of a fallible call. The numbers are stable: never renumbered, and a retired
/// number stays reserved. `WSS_RESULT_OK` is 0; errors start at 1000. Error events
/// (`WSS_EV_ERROR`) carry one of these in `code`, or an HTTP status (400-599) when a
/// request was refused, or a WebSocket close code (1000-4999) on protocol failures.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wss_result {
    /// Success.
    WSS_RESULT_OK = 0,
    /// A required pointer argument was NULL.
    WSS_RESULT_NULL_PARAMETER = 1000,
    /// An argument has a value the function does not accept (see the last error).
    WSS_RESULT_INVALID_ARGUMENT = 1001,
    /// The id names no live connection, listener or timer of this manager.
    WSS_RESULT_NOT_FOUND = 1002,
    /// The call does not apply to this kind of connection (e.g. a WebSocket send on tcp://).
    WSS_RESULT_WRONG_KIND = 1003,
    /// The output buffer is too small; the size needed was written to the length out-parameter.
    WSS_RESULT_INSUFFICIENT_SIZE = 1004,
    /// The URL cannot be parsed or its scheme is not supported here.
    WSS_RESULT_BAD_URL = 1005,
    /// The address is already in use.
    WSS_RESULT_ADDRESS_IN_USE = 1006,
    /// An operating-system error (see the last error).
    WSS_RESULT_IO = 1007,
    /// A TLS certificate, key or CA could not be used (see the last error).
    WSS_RESULT_TLS_CONFIG = 1008,
    /// A limit was reached: send buffer full, too many connections or timers.
    WSS_RESULT_LIMIT = 1009,
    /// The connection is closing or closed.
    WSS_RESULT_CLOSED = 1010,
    /// A bug inside the library was caught; the call had no effect or a partial one.
    WSS_RESULT_PANIC = 1011,
    /// The connection is not in a state that allows the call (e.g. no request to reply to).
    WSS_RESULT_INVALID_STATE = 1012,
    /// Another thread is inside a call on this manager (only the thread-safe functions
    /// may be called concurrently).
    WSS_RESULT_CONCURRENT_USE = 1013,
    /// The manager was freed.
    WSS_RESULT_FREED = 1014,
    /// A TLS handshake or record failed (error events only).
    WSS_RESULT_TLS = 1015,
    /// A timeout expired (error events only).
    WSS_RESULT_TIMEOUT = 1016,
    /// The peer broke the protocol (error events only).
    WSS_RESULT_PROTOCOL = 1017,
}

impl wss_result {
    fn text(self) -> &'static str {
        use wss_result::*;
        match self {
            WSS_RESULT_OK => "ok\0",
            WSS_RESULT_NULL_PARAMETER => "a required pointer argument was NULL\0",
            WSS_RESULT_INVALID_ARGUMENT => "invalid argument\0",
            WSS_RESULT_NOT_FOUND => "no such connection, listener or timer\0",
            WSS_RESULT_WRONG_KIND => "wrong kind of connection for this call\0",
            WSS_RESULT_INSUFFICIENT_SIZE => "output buffer too small\0",
            WSS_RESULT_BAD_URL => "bad URL\0",
            WSS_RESULT_ADDRESS_IN_USE => "address in use\0",
            WSS_RESULT_IO => "I/O error\0",
            WSS_RESULT_TLS_CONFIG => "TLS configuration error\0",
            WSS_RESULT_LIMIT => "limit reached\0",
            WSS_RESULT_CLOSED => "connection closed\0",
            WSS_RESULT_PANIC => "internal error (panic caught)\0",
            WSS_RESULT_INVALID_STATE => "invalid state for this call\0",
            WSS_RESULT_CONCURRENT_USE => "manager used from two threads at once\0",
            WSS_RESULT_FREED => "manager already freed\0",
            WSS_RESULT_TLS => "TLS error\0",
            WSS_RESULT_TIMEOUT => "timeout\0",
            WSS_RESULT_PROTOCOL => "protocol error\0",
        }
    }

    /// All values, for tests.
    #[cfg(test)]
    pub const ALL: [wss_result; 19] = {
        use wss_result::*;
        [
            WSS_RESULT_OK,
            WSS_RESULT_NULL_PARAMETER,
            WSS_RESULT_INVALID_ARGUMENT,
            WSS_RESULT_NOT_FOUND,
            WSS_RESULT_WRONG_KIND,
            WSS_RESULT_INSUFFICIENT_SIZE,
            WSS_RESULT_BAD_URL,
            WSS_RESULT_ADDRESS_IN_USE,
            WSS_RESULT_IO,
            WSS_RESULT_TLS_CONFIG,
            WSS_RESULT_LIMIT,
            WSS_RESULT_CLOSED,
            WSS_RESULT_PANIC,
            WSS_RESULT_INVALID_STATE,
            WSS_RESULT_CONCURRENT_USE,
            WSS_RESULT_FREED,
            WSS_RESULT_TLS,
            WSS_RESULT_TIMEOUT,
            WSS_RESULT_PROTOCOL,
        ]
    };
}

impl From<&crate::error::Error> for wss_result {
    fn from(e: &crate::error::Error) -> Self {
        use crate::error::Error::*;
        use wss_result::*;
        match e {
            InvalidArgument(_) => WSS_RESULT_INVALID_ARGUMENT,
            NotFound(_) | Missing(_) => WSS_RESULT_NOT_FOUND,
            WrongKind(_) => WSS_RESULT_WRONG_KIND,
            InsufficientSize(_) => WSS_RESULT_INSUFFICIENT_SIZE,
            BadUrl(_) => WSS_RESULT_BAD_URL,
            AddressInUse(_) => WSS_RESULT_ADDRESS_IN_USE,
            Io(..) => WSS_RESULT_IO,
            TlsConfig(_) => WSS_RESULT_TLS_CONFIG,
            Limit(_) => WSS_RESULT_LIMIT,
            Closed(_) => WSS_RESULT_CLOSED,
            InvalidState(_) => WSS_RESULT_INVALID_STATE,
            Protocol(_) => WSS_RESULT_PROTOCOL,
        }
    }
}

/// A static, NUL-terminated description of a result code.
///
/// Returns: text that lives as long as the program (never free it); for a number that is
/// not a `wss_result`, "unknown result code". Thread-safe.
#[no_mangle]
pub extern "C" fn wss_result_str(result: u32) -> *const c_char {
    super::boundary::boundary(|| {
        let text = wss_result::from_u32(result).map_or("unknown result code\0", wss_result::text);
        text.as_ptr().cast()
    })
}

impl wss_result {
    /// The variant with this number.
    pub fn from_u32(n: u32) -> Option<wss_result> {
        use wss_result::*;
        Some(match n {
            0 => WSS_RESULT_OK,
            1000 => WSS_RESULT_NULL_PARAMETER,
            1001 => WSS_RESULT_INVALID_ARGUMENT,
            1002 => WSS_RESULT_NOT_FOUND,
            1003 => WSS_RESULT_WRONG_KIND,
            1004 => WSS_RESULT_INSUFFICIENT_SIZE,
            1005 => WSS_RESULT_BAD_URL,
            1006 => WSS_RESULT_ADDRESS_IN_USE,
            1007 => WSS_RESULT_IO,
            1008 => WSS_RESULT_TLS_CONFIG,
            1009 => WSS_RESULT_LIMIT,
            1010 => WSS_RESULT_CLOSED,
            1011 => WSS_RESULT_PANIC,
            1012 => WSS_RESULT_INVALID_STATE,
            1013 => WSS_RESULT_CONCURRENT_USE,
            1014 => WSS_RESULT_FREED,
            1015 => WSS_RESULT_TLS,
            1016 => WSS_RESULT_TIMEOUT,
            1017 => WSS_RESULT_PROTOCOL,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    #[test]
    fn numbers_round_trip_and_have_text() {
        for r in wss_result::ALL {
            assert_eq!(wss_result::from_u32(r as u32), Some(r));
            assert!(r.text().ends_with('\0') && r.text().len() > 1);
        }
        assert_eq!(wss_result::from_u32(999), None);
    }

    #[test]
    fn error_event_codes_match() {
        assert_eq!(code::IO, wss_result::WSS_RESULT_IO as i32);
        assert_eq!(code::TLS, wss_result::WSS_RESULT_TLS as i32);
        assert_eq!(code::PROTOCOL, wss_result::WSS_RESULT_PROTOCOL as i32);
        assert_eq!(code::LIMIT, wss_result::WSS_RESULT_LIMIT as i32);
        assert_eq!(code::TIMEOUT, wss_result::WSS_RESULT_TIMEOUT as i32);
    }
}
