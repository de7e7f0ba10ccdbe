//! Sending: the application's messages, fragments, pings and close become
//! frames appended to `out`, compressed when permessage-deflate pays.

use super::config::Role;
use super::state::{Session, State};
use crate::ws::close;
use crate::ws::deflate::Deflater;
use crate::ws::frame::{encode_header, FrameHeader, HeaderBytes, MAX_CONTROL_PAYLOAD};
use crate::ws::opcode::OpCode;
use crate::ws::utf8::{self, Utf8Validator};
use std::fmt;

/// Why the application cannot send something right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session is not [`State::Open`]: after a Close (sent or received)
    /// no data frames may follow (RFC 6455 §5.5.1).
    NotOpen,
    /// A control frame payload above 125 bytes (§5.5).
    ControlTooLong,
    /// The opcode cannot be used with this call (`Close` goes through
    /// [`Session::close`]; `Continuation` through [`Session::send_fragment`]).
    WrongOpcode,
    /// A new message while a fragmented one is being sent (§5.4: fragments
    /// of different messages must not interleave).
    MessageInProgress,
    /// A continuation without a fragmented message being sent.
    NoMessageInProgress,
    /// Text that is not valid UTF-8 (the peer would fail the connection).
    InvalidUtf8,
    /// An invalid close code or reason.
    InvalidClose(close::CloseError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOpen => f.write_str("the connection is closing or closed"),
            Self::ControlTooLong => f.write_str("control frame payload longer than 125 bytes"),
            Self::WrongOpcode => f.write_str("opcode not allowed here"),
            Self::MessageInProgress => f.write_str("a fragmented message is still being sent"),
            Self::NoMessageInProgress => f.write_str("no fragmented message is being sent"),
            Self::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
            Self::InvalidClose(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {}

/// Compression output buffers above this size are not kept between messages.
const SCRATCH_KEEP: usize = 64 * 1024;

impl Session {
    /// Appends a whole message (`Text` or `Binary`) or a control frame
    /// (`Ping` or `Pong`; use [`close`](Self::close) for Close) to `out`.
    ///
    /// With permessage-deflate, messages of at least the configured threshold
    /// are compressed. Control frames may be sent while a fragmented message
    /// is open; data messages may not.
    pub fn send(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        match opcode {
            OpCode::Ping | OpCode::Pong => {
                if payload.len() > MAX_CONTROL_PAYLOAD {
                    return Err(SendError::ControlTooLong);
                }
                self.write_frame(true, false, opcode, payload, out);
                Ok(())
            }
            OpCode::Text | OpCode::Binary => {
                if self.sending.is_some() {
                    return Err(SendError::MessageInProgress);
                }
                if opcode == OpCode::Text && utf8::validate(payload).is_err() {
                    return Err(SendError::InvalidUtf8);
                }
                self.write_message(opcode, payload, out);
                Ok(())
            }
            OpCode::Close | OpCode::Continuation => Err(SendError::WrongOpcode),
        }
    }

    /// Like [`send`](Self::send), but where the frame goes out as it is (server role,
    /// not compressed) only its header is made, returned as `Ok(Some(header))`: the
    /// caller sends `payload` right after it, sparing a copy of the payload. Otherwise
    /// the whole frame is appended to `out` and the answer is `Ok(None)`.
    pub fn send_header(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<HeaderBytes>, SendError> {
        let plain = self.role == Role::Server
            && matches!(opcode, OpCode::Text | OpCode::Binary)
            && (self.deflate.is_none() || payload.len() < self.compress_threshold);
        if !plain {
            return self.send(opcode, payload, out).map(|()| None);
        }
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        if self.sending.is_some() {
            return Err(SendError::MessageInProgress);
        }
        if opcode == OpCode::Text && utf8::validate(payload).is_err() {
            return Err(SendError::InvalidUtf8);
        }
        // Widening.
        let len = payload.len() as u64;
        Ok(Some(
            FrameHeader::outgoing(true, false, opcode, None, len).encode(),
        ))
    }

    fn write_message(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
        let Some(params) = self
            .deflate
            .filter(|_| payload.len() >= self.compress_threshold)
        else {
            self.write_frame(true, false, opcode, payload, out);
            return;
        };
        let (bits, no_context_takeover) = match self.role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
        };
        let level = self.compression_level;
        let deflater = self
            .deflater
            .get_or_insert_with(|| Box::new(Deflater::new(level, bits, no_context_takeover)));
        let mut scratch = std::mem::take(&mut deflater.scratch);
        scratch.clear();
        // Without context takeover nothing depends on this message having
        // gone through the compressor, so an incompressible message can go
        // out as it is. With it, the peer's window must see what ours saw.
        let compressed = deflater.compress(payload, &mut scratch).is_ok()
            && !(deflater.no_context_takeover() && scratch.len() >= payload.len());
        if compressed {
            // RFC 7692 §6: RSV1 on the first (here: only) frame.
            self.write_frame(true, true, opcode, &scratch, out);
        } else {
            self.write_frame(true, false, opcode, payload, out);
        }
        if scratch.capacity() > SCRATCH_KEEP {
            scratch = Vec::new();
        }
        if let Some(d) = self.deflater.as_mut() {
            d.scratch = scratch;
        }
    }

    /// Appends one frame of a fragmented message: `Text` or `Binary` for the
    /// first, `Continuation` for the rest, `fin` on the last (a single
    /// `fin` first frame is a whole message).
    ///
    /// Fragmented messages are sent uncompressed: compressing them would need
    /// the whole message to decide whether compression pays, or a flush per
    /// fragment, and a message is fragmented precisely because it is
    /// produced piece by piece (typically large, often already compressed
    /// data). Text is UTF-8-checked across fragments.
    pub fn send_fragment(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        let text = match (opcode, self.sending) {
            (OpCode::Text | OpCode::Binary, None) => opcode == OpCode::Text,
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(SendError::MessageInProgress),
            (OpCode::Continuation, Some(text)) => text,
            (OpCode::Continuation, None) => return Err(SendError::NoMessageInProgress),
            _ => return Err(SendError::WrongOpcode),
        };
        if text {
            // Check on a copy so that a refused piece leaves the message's
            // validation state as it was.
            let mut validator = if self.sending.is_some() {
                self.outgoing_utf8.clone()
            } else {
                Utf8Validator::new()
            };
            validator
                .feed(payload)
                .map_err(|_| SendError::InvalidUtf8)?;
            if fin {
                validator.finish().map_err(|_| SendError::InvalidUtf8)?;
            }
            self.outgoing_utf8 = validator;
        }
        self.write_frame(fin, false, opcode, payload, out);
        self.sending = if fin { None } else { Some(text) };
        Ok(())
    }

    /// Starts the closing handshake: appends a Close frame with `code` and
    /// `reason` (UTF-8, at most 123 bytes) and moves to
    /// [`State::CloseSent`]. Codes 1005, 1006 and 1015 and the other codes
    /// [`close::is_valid_code`] refuses cannot be sent.
    pub fn close(&mut self, code: u16, reason: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
        close::encode_payload(code, reason, &mut payload).map_err(SendError::InvalidClose)?;
        self.write_frame(true, false, OpCode::Close, &payload, out);
        self.state = State::CloseSent;
        self.sending = None;
        self.deflater = None;
        self.discard_incoming();
        Ok(())
    }
}

/// Appends one unmasked, uncompressed, unfragmented frame: what a server
/// sends, encoded once and written to many connections (broadcast). The
/// payload is taken as is: text is not UTF-8-checked and control payloads are
/// not length-checked, so callers pass valid text and at most 125 bytes for
/// control frames.
pub fn encode_server_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    encode_header(true, false, opcode, None, payload.len() as u64, out);
    out.extend_from_slice(payload);
}
