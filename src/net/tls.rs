//! TLS for the server (and its outgoing client connections), built on rustls with the ring
//! crypto provider.
//!
//! Two halves:
//!
//! * configuration: [`server_config`] and [`client_config`] turn user-facing options (PEM paths
//!   or inline PEM text) into shareable rustls configs. Every problem the user can cause — a
//!   missing file, a key that does not belong to its certificate, an unusable CA bundle — is
//!   found here, when the listener is opened, and reported as a [`ConfigError`] that names the
//!   file and the reason.
//! * the connection: [`TlsStream`] drives one rustls connection over a non-blocking socket for
//!   an edge-triggered event loop.
//!
//! # Driving a [`TlsStream`] from an edge-triggered loop
//!
//! Register the socket for READABLE | WRITABLE, edge-triggered, then:
//!
//! * on READABLE: call [`TlsStream::read`] until it returns `Err(WouldBlock)`, `Ok(0)` or another
//!   error. `read` also sends the handshake messages rustls produces in response, so a handshake
//!   progresses purely through this loop. It returns `WouldBlock` only when no decrypted
//!   plaintext is left *and* the socket itself said `WouldBlock`, so nothing is stranded until
//!   the next edge.
//! * on WRITABLE: call [`TlsStream::flush`], then [`TlsStream::write`] the application's pending
//!   plaintext. After the handshake, `write` returns `WouldBlock` only when its bounded output
//!   buffer is full *and* the socket said `WouldBlock`, so a WRITABLE edge will follow.
//! * During the handshake, `write` buffers up to [`SEND_BUFFER_LIMIT`] bytes of plaintext and
//!   sends them as soon as the handshake completes. When that buffer is full it returns
//!   `WouldBlock` *without* a socket edge behind it: retry pending writes after `read` calls
//!   (the handshake finishes inside `read`), e.g. whenever [`TlsStream::is_handshaking`] turns
//!   false.
//! * To close: [`TlsStream::send_close_notify`], then `flush` until it returns `Ok(true)` (or
//!   give up after a timeout), then close the socket.

// The main crate warns on missing docs globally; this keeps the standalone build equally strict.
#![warn(missing_docs)]

mod config;
mod pem;
mod sni;
mod stream;
mod x509;

pub use config::{
    client_config, server_config, ClientOptions, ConfigError, ServerOptions, Versions,
};
pub use stream::{TlsStream, SEND_BUFFER_LIMIT};
