//! The per-connection WebSocket state machine (RFC 6455 §5–§7).
//!
//! A [`Session`] turns the bytes read from a connection into [`Incoming`]
//! items, and the application's messages into bytes to write. It owns no
//! socket: the caller reads into a buffer, hands it to [`Session::read`],
//! drops the consumed prefix, and writes whatever the session appended to
//! `out` (pongs, close replies, the close frame of a failure, sent messages).
//!
//! Reading is incremental at every level: a frame's payload is consumed as
//! it arrives (only an incomplete header is ever left in the caller's
//! buffer), text is UTF-8-validated as it arrives, compressed data is
//! inflated as it arrives, and every size limit is enforced before the bytes
//! it limits are stored.
//!
//! Layout, one concept per file:
//! - `config`: [`Role`] and [`SessionConfig`].
//! - `state`: the [`Session`] and everything it remembers between calls.
//! - `receive`: bytes to frames, the protocol checks, control frames, failing.
//! - `message`: data payload to messages (UTF-8, inflating, size limits).
//! - `incoming`: what reading yields, [`Incoming`] or a [`Failure`].
//! - `send`: messages, fragments and the closing handshake to frames.
//!
//! Each file imports from the ones it builds on, never from this one, so the
//! files depend on each other in one direction only.

mod config;
mod incoming;
mod message;
mod receive;
mod send;
mod state;

pub use config::{Role, SessionConfig};
pub use incoming::{Failure, Incoming};
pub use message::Spares;
pub use receive::BULK_MIN;
pub use send::{encode_server_frame, SendError};
pub use state::{Session, State};

#[cfg(test)]
mod tests;
