//! What a session remembers between calls: where it is in the closing
//! handshake, the frame and message being read, what is being sent, and the
//! compression states. The behaviour lives beside it, by direction
//! (`receive`, `message`, `send`); the one frame writer both directions use
//! is here, because reading owes the peer frames too (pongs, close replies).

use super::config::{Role, SessionConfig};
use crate::ws::deflate::{DeflateParams, Deflater, Inflater};
use crate::ws::frame::encode_header;
use crate::ws::mask::apply_mask;
use crate::ws::opcode::OpCode;
use crate::ws::random::MaskKeys;
use crate::ws::utf8::Utf8Validator;

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
    /// We failed the connection (see [`Failure`](super::Failure)): flush `out`,
    /// then close.
    Failed,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameInProgress {
    pub(super) opcode: OpCode,
    pub(super) fin: bool,
    pub(super) mask: Option<[u8; 4]>,
    /// Payload bytes still to come.
    pub(super) remaining: u64,
    /// Payload bytes seen so far, modulo 4: the masking key's phase.
    pub(super) mask_phase: usize,
    /// A data frame of a message being discarded (we sent a Close).
    pub(super) discard: bool,
}

/// The data message being received.
#[derive(Debug, Clone, Copy)]
pub(super) struct MessageInProgress {
    pub(super) text: bool,
    pub(super) compressed: bool,
    /// Bytes of the message so far (decompressed).
    pub(super) size: u64,
    /// Streaming mode: a fragment of it has been delivered.
    pub(super) emitted: bool,
    /// We sent a Close: nothing of it will be delivered.
    pub(super) discard: bool,
    /// Compressed: some compressed payload byte has arrived.
    pub(super) has_compressed_data: bool,
}

/// One WebSocket connection's protocol state. See the [`session`](super)
/// module docs.
#[derive(Debug)]
pub struct Session {
    pub(super) role: Role,
    pub(super) max_frame_size: u64,
    pub(super) max_message_size: u64,
    pub(super) stream_fragments: bool,
    pub(super) compress_threshold: usize,
    pub(super) compression_level: u32,
    pub(super) deflate: Option<DeflateParams>,
    pub(super) state: State,
    pub(super) frame: Option<FrameInProgress>,
    pub(super) message: Option<MessageInProgress>,
    /// The message being assembled (whole-message mode).
    pub(super) buffer: Vec<u8>,
    /// A control frame's payload when it arrives over several reads.
    pub(super) control: Vec<u8>,
    pub(super) incoming_utf8: Utf8Validator,
    // Boxed: the compression states are large and most connections never use them;
    // an idle session should stay small (memory per idle connection).
    pub(super) inflater: Option<Box<Inflater>>,
    pub(super) deflater: Option<Box<Deflater>>,
    /// `Some(text)` while a fragmented message is being sent.
    pub(super) sending: Option<bool>,
    pub(super) outgoing_utf8: Utf8Validator,
    /// Masking keys (client role only).
    pub(super) keys: Option<Box<MaskKeys>>,
    /// Length of the close frame `fail` appended.
    pub(super) failure_frame_len: u16,
    /// Length of the close frame sent in reply to the peer's.
    pub(super) close_reply_len: u16,
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
    pub(super) fn write_frame(
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
