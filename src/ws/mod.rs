//! Sans-IO WebSocket protocol: RFC 6455 framing and RFC 7692 permessage-deflate.
//!
//! Nothing in this module touches a socket, a clock or a thread. The caller
//! feeds bytes it read into a [`session::Session`] and writes out the bytes the
//! session hands back; the handshake helpers work on already-parsed HTTP heads.
//! That keeps every protocol rule unit-testable at the byte level and lets the
//! event loop own all I/O decisions (buffering, timeouts, closing the socket).
//!
//! Layout, one concept per file:
//! - `opcode`: the frame opcode, [`OpCode`] (RFC 6455 §5.2).
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
//!
//! This file only declares the modules and re-exports what callers use; each
//! file imports from the files it builds on, so no two files import each
//! other (the same holds inside `deflate/` and `session/`).

#![deny(missing_docs)]

mod buffer;
pub mod close;
pub mod deflate;
pub mod frame;
pub mod handshake;
mod header;
pub mod mask;
mod opcode;
mod random;
pub mod session;
pub mod utf8;

pub use opcode::OpCode;
pub use session::{
    encode_server_frame, Failure, Incoming, Role, SendError, Session, SessionConfig, Spares, State,
};
