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
//! - `receive`: bytes to frames, the protocol checks, control frames, failing.
//! - `message`: data payload to messages (UTF-8, inflating, size limits).
//! - `incoming`: what reading yields, [`Incoming`] or a [`Failure`].
//! - `send`: messages, fragments and the closing handshake to frames.
//!
//! This file holds the [`Session`] itself and the one frame writer both
//! directions use (reading owes the peer pongs and close replies).

mod config;
mod incoming;
mod message;
mod receive;
mod send;

pub use config::{Role, SessionConfig};
pub use incoming::{Failure, Incoming};
pub use message::Spares;
pub use receive::BULK_MIN;
pub use send::{encode_server_frame, SendError};

use crate::ws::deflate::{DeflateParams, Deflater, Inflater};
use crate::ws::frame::encode_header;
use crate::ws::mask::apply_mask;
use crate::ws::random::MaskKeys;
use crate::ws::utf8::Utf8Validator;
use crate::ws::OpCode;
use message::MessageInProgress;
use receive::FrameInProgress;

/// Where the session is in the closing handshake (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a Close and wait for the peer's; incoming data frames are
    /// discarded, control frames still handled.
    CloseSent,
    /// The peer sent a Close and we replied: the handshake is complete. A
    /// server now closes the connection (§7.1.1: "the server SHOULD close
    /// it first"); a client waits a moment for the server to do so.
    CloseReceived,
    /// We sent a Close and the peer replied: close the connection.
    Closed,
    /// We failed the connection (see [`Failure`]): flush `out`, then close.
    Failed,
}

/// One WebSocket connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct Session {
    role: Role,
    max_frame_size: u64,
    max_message_size: u64,
    stream_fragments: bool,
    compress_threshold: usize,
    compression_level: u32,
    deflate: Option<DeflateParams>,
    state: State,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    /// The message being assembled (whole-message mode).
    buffer: Vec<u8>,
    /// A control frame's payload when it arrives over several reads.
    control: Vec<u8>,
    incoming_utf8: Utf8Validator,
    // Boxed: the compression states are large and most connections never use them;
    // an idle session should stay small (memory per idle connection).
    inflater: Option<Box<Inflater>>,
    deflater: Option<Box<Deflater>>,
    /// `Some(text)` while a fragmented message is being sent.
    sending: Option<bool>,
    outgoing_utf8: Utf8Validator,
    /// Masking keys (client role only).
    keys: Option<Box<MaskKeys>>,
    /// Length of the close frame `fail` appended.
    failure_frame_len: u16,
    /// Length of the close frame sent in reply to the peer's.
    close_reply_len: u16,
}

impl Session {
    /// A session for a connection whose handshake has completed.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            role: config.role,
            max_frame_size: config.max_frame_size,
            max_message_size: config.max_message_size,
            stream_fragments: config.stream_fragments,
            compress_threshold: config.compress_threshold,
            compression_level: config.compression_level,
            deflate: config.deflate,
            state: State::Open,
            frame: None,
            message: None,
            buffer: Vec::new(),
            control: Vec::new(),
            incoming_utf8: Utf8Validator::new(),
            inflater: None,
            deflater: None,
            sending: None,
            outgoing_utf8: Utf8Validator::new(),
            keys: None,
            failure_frame_len: 0,
            close_reply_len: 0,
        }
    }

    /// Where the session is in the closing handshake.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our end of the connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether a fragmented message is being sent (other data frames must wait).
    pub fn is_sending_fragmented(&self) -> bool {
        self.sending.is_some()
    }

    /// The negotiated permessage-deflate parameters, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// Appends one frame, masked with a fresh key in the client role.
    fn write_frame(
        &mut self,
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        // Widening: a slice length always fits in u64.
        let len = payload.len() as u64;
        match self.role {
            Role::Server => {
                encode_header(fin, rsv1, opcode, None, len, out);
                out.extend_from_slice(payload);
            }
            Role::Client => {
                let key = self
                    .keys
                    .get_or_insert_with(|| Box::new(MaskKeys::new()))
                    .next_key();
                encode_header(fin, rsv1, opcode, Some(key), len, out);
                let start = out.len();
                out.extend_from_slice(payload);
                apply_mask(&mut out[start..], key, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests;
