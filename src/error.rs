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
