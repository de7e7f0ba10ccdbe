//! The library's internal error type. The C boundary maps each variant to a stable
//! `wss_result` number and keeps the `Display` text as the manager's last error.

use std::fmt;
use std::io;

/// What went wrong in a call made by the application.
#[derive(Debug)]
pub enum Error {
    /// An argument has a value the function does not accept.
    InvalidArgument(String),
    /// The id names no live connection, listener or timer.
    NotFound(u64),
    /// Something looked up by name or index is absent.
    Missing(String),
    /// The operation does not apply to this kind of connection.
    WrongKind(&'static str),
    /// The caller's buffer is too small; the size needed.
    InsufficientSize(usize),
    /// A URL that cannot be parsed or has an unsupported scheme.
    BadUrl(String),
    /// The address is already bound by another socket.
    AddressInUse(String),
    /// An operating-system error, with what was being done.
    Io(String, io::Error),
    /// A TLS certificate, key or CA problem.
    TlsConfig(String),
    /// A limit was reached (send buffer, connection count, ...).
    Limit(String),
    /// The connection is closing or closed.
    Closed(u64),
    /// The connection is not in a state that allows the call.
    InvalidState(String),
    /// The peer's request broke the protocol (and was answered accordingly).
    Protocol(String),
}

impl Error {
    /// Wraps an `io::Error` with what was being done, picking `AddressInUse` where it applies.
    pub fn io(context: impl Into<String>, e: io::Error) -> Error {
        let context = context.into();
        if e.kind() == io::ErrorKind::AddrInUse {
            Error::AddressInUse(format!("{context}: {e}"))
        } else {
            Error::Io(context, e)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            Error::NotFound(id) => write!(f, "no connection, listener or timer with id {id}"),
            Error::Missing(s) => f.write_str(s),
            Error::WrongKind(s) => write!(f, "wrong kind of connection: {s}"),
            Error::InsufficientSize(n) => write!(f, "output buffer too small: {n} bytes needed"),
            Error::BadUrl(s) => write!(f, "bad URL: {s}"),
            Error::AddressInUse(s) => write!(f, "address in use: {s}"),
            Error::Io(ctx, e) => write!(f, "{ctx}: {e}"),
            Error::TlsConfig(s) => write!(f, "TLS configuration: {s}"),
            Error::Limit(s) => write!(f, "limit reached: {s}"),
            Error::Closed(id) => write!(f, "connection {id} is closing or closed"),
            Error::InvalidState(s) => write!(f, "invalid state: {s}"),
            Error::Protocol(s) => write!(f, "protocol: {s}"),
        }
    }
}

impl std::error::Error for Error {}

/// Longest excerpt of an offending value that a message quotes.
pub const EXCERPT_MAX: usize = 64;

/// An offending value as a message quotes it: `{:?}`-quoted, at most [`EXCERPT_MAX`]
/// bytes of it, with its full length when cut. A megabyte of bad input must not become
/// a megabyte of error text (the last error, an event, a Lua error message).
pub fn excerpt(value: &[u8]) -> String {
    if value.len() <= EXCERPT_MAX {
        return format!("{:?}", String::from_utf8_lossy(value));
    }
    let mut end = EXCERPT_MAX;
    // Cut on a character boundary when the value is UTF-8 there.
    while end > EXCERPT_MAX - 3 && std::str::from_utf8(&value[..end]).is_err() {
        end -= 1;
    }
    format!(
        "{:?}... ({} bytes)",
        String::from_utf8_lossy(&value[..end]),
        value.len()
    )
}

/// Result of a call made by the application.
pub type Result<T> = std::result::Result<T, Error>;

/// The numbers of `wss_result` that error events carry in their `code` (the C enum in
/// `ffi/result.rs` is the reference; a test there checks these match).
pub mod code {
    /// `WSS_RESULT_IO`.
    pub(crate) const IO: i32 = 1007;
    /// `WSS_RESULT_TLS`.
    pub(crate) const TLS: i32 = 1015;
    /// `WSS_RESULT_LIMIT`.
    pub(crate) const LIMIT: i32 = 1009;
    /// `WSS_RESULT_PROTOCOL`.
    pub(crate) const PROTOCOL: i32 = 1017;
    /// `WSS_RESULT_TIMEOUT`.
    pub(crate) const TIMEOUT: i32 = 1016;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_say_how_long_the_value_was() {
        assert_eq!(excerpt(b"abc"), "\"abc\"");
        let long = vec![b'x'; 1 << 20];
        let e = excerpt(&long);
        assert!(e.len() < EXCERPT_MAX + 32, "{e}");
        assert!(e.ends_with("... (1048576 bytes)"), "{e}");
        let mut utf8 = vec![b'a'; EXCERPT_MAX - 1];
        utf8.extend_from_slice("\u{e9}".as_bytes());
        utf8.extend_from_slice(b"zzzz");
        assert!(!excerpt(&utf8).contains('\u{fffd}'), "{}", excerpt(&utf8));
    }
}
