//! Reading: bytes from the peer become frames, frames become [`Incoming`]
//! items, and every protocol rule of RFC 6455 §5 is checked on the way. Data
//! payload is handed on to the message assembly in `message.rs`; control
//! frames are answered here (pong, close reply).

use super::config::Role;
use super::incoming::{Failure, Incoming};
use super::message::{check_utf8, Spares};
use super::state::{FrameInProgress, MessageInProgress, Session, State};
use crate::bufpool::BufPool;
use crate::ws::buffer::reserve_capped;
use crate::ws::close;
use crate::ws::frame::{FrameHeader, MAX_CONTROL_PAYLOAD};
use crate::ws::mask::{apply_mask, extend_unmasked};
use crate::ws::opcode::OpCode;
use crate::ws::utf8;

impl FrameInProgress {
    /// Takes the next `chunk` of this frame's payload (at most `remaining`): unmasks
    /// it unless the frame is discarded, moves the mask phase and the count on.
    /// True when the payload is complete.
    fn advance(&mut self, chunk: &mut [u8]) -> bool {
        if let (Some(key), false) = (self.mask, self.discard) {
            apply_mask(chunk, key, self.mask_phase);
        }
        self.mask_phase = (self.mask_phase + chunk.len()) & 3;
        // Widening: the chunk is at most `remaining`.
        self.remaining -= chunk.len() as u64;
        self.remaining == 0
    }
}

/// A data frame with at least this much payload still to come is read straight into
/// its message buffer (see [`Session::wants_bulk`]).
pub const BULK_MIN: u64 = 64 * 1024;

impl Session {
    /// Consumes as much of `input` as possible and returns how many bytes it
    /// consumed; the caller drops those and keeps the rest for the next call.
    ///
    /// Only an incomplete frame header (under 14 bytes) is ever left
    /// unconsumed: partial payloads are consumed, unmasked in place (hence
    /// `&mut`) and kept inside the session, so the caller never buffers a
    /// large frame. Decoded items are pushed to `items`; bytes owed to the
    /// peer (a pong, the reply to a Close) are appended to `out` as frames.
    ///
    /// On a protocol violation the close frame of the failure is appended to
    /// `out`, the session becomes [`State::Failed`] and the [`Failure`] is
    /// returned; items pushed before it are valid. Once the session is
    /// failed or the closing handshake is complete, later input is ignored:
    /// all of it is reported consumed and nothing is delivered.
    pub fn read(
        &mut self,
        input: &mut [u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
    ) -> Result<usize, Failure> {
        let (mut large, mut small) = (BufPool::none(), BufPool::none());
        let spares = Spares {
            large: &mut large,
            small: &mut small,
        };
        self.read_pooled(input, items, out, spares)
    }

    /// [`read`](Self::read), with empty buffers to lend: a message that does not arrive
    /// whole in one piece is assembled in a large one instead of a fresh allocation, so
    /// large messages reuse memory that is already mapped; a message that arrives whole is
    /// copied into a small one of a fitting size, so the echo path allocates nothing.
    pub fn read_pooled(
        &mut self,
        input: &mut [u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
        mut spares: Spares<'_>,
    ) -> Result<usize, Failure> {
        if !self.is_reading() {
            return Ok(input.len());
        }
        match self.read_frames(input, items, out, &mut spares) {
            Ok(consumed) => Ok(consumed),
            Err(failure) => {
                self.fail(failure, out);
                Err(failure)
            }
        }
    }

    /// Whether the rest of the current frame should come through [`Session::read_bulk`]:
    /// a large part of an uncompressed data frame is still to come, and the message
    /// is being assembled whole. Reading it straight into the message buffer saves
    /// the copy out of the connection's read buffer and most of the reads (a 1 MiB
    /// message took sixteen 64 KiB reads and sixteen copies).
    pub fn wants_bulk(&self) -> bool {
        let (Some(frame), Some(message)) = (self.frame, self.message) else {
            return false;
        };
        self.is_reading()
            && !self.stream_fragments
            && !frame.opcode.is_control()
            && !frame.discard
            && !message.discard
            && !message.compressed
            && frame.remaining >= BULK_MIN
    }

    /// Reads payload of the current frame straight into the message buffer, when
    /// [`Session::wants_bulk`] says so (otherwise reads nothing and returns 0).
    /// `read(buf, max)` appends at most `max` bytes to `buf` and returns how many
    /// (0 at end of stream). The bytes are then taken like any payload: unmasked,
    /// checked as UTF-8 in a text message, and the message delivered into `items`
    /// when this completes it. Returns the bytes read and the protocol outcome; on a
    /// failure the Close frame is in `out`, as with [`Session::read_pooled`].
    ///
    /// The buffer grows with what has arrived (at least [`BULK_MIN`] at a time, or
    /// into capacity it already has), so a header announcing a large frame does not
    /// by itself make the session allocate it.
    pub fn read_bulk(
        &mut self,
        read: impl FnOnce(&mut Vec<u8>, usize) -> std::io::Result<usize>,
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
        spares: Spares<'_>,
    ) -> std::io::Result<(usize, Result<(), Failure>)> {
        if !self.wants_bulk() {
            return Ok((0, Ok(())));
        }
        let Some(frame) = self.frame else {
            return Ok((0, Ok(())));
        };
        if self.buffer.capacity() == 0 {
            if let Some(b) = spares.large.pop_at_least(0) {
                self.buffer = b;
            }
        }
        let len = self.buffer.len();
        let room = (self.buffer.capacity() - len)
            .max(len)
            .max(BULK_MIN as usize);
        let want = usize::try_from(frame.remaining).map_or(room, |r| r.min(room));
        let cap = usize::try_from(self.max_message_size).unwrap_or(usize::MAX);
        reserve_capped(&mut self.buffer, want, cap);
        let n = read(&mut self.buffer, want)?;
        assert!(
            n <= want && self.buffer.len() == len + n,
            "read_bulk: the reader appended other than it returned"
        );
        if n == 0 {
            return Ok((0, Ok(())));
        }
        let r = self.on_bulk_payload(len, items);
        if let Err(failure) = r {
            self.fail(failure, out);
        }
        Ok((n, r))
    }

    /// Takes the payload bytes [`Session::read_bulk`] appended to the message buffer
    /// from `start` on: the steps of [`Session::read_frames`] and `on_plain` for them.
    fn on_bulk_payload(&mut self, start: usize, items: &mut Vec<Incoming>) -> Result<(), Failure> {
        let (Some(mut frame), Some(mut message)) = (self.frame, self.message) else {
            return Ok(());
        };
        let chunk = self.buffer.get_mut(start..).unwrap_or_default();
        // At most `remaining` (checked by read_bulk).
        let complete = frame.advance(chunk);
        message.size += chunk.len() as u64;
        let end = complete && frame.fin;
        if message.text {
            check_utf8(&mut self.incoming_utf8, chunk, end)?;
        }
        self.frame = if complete { None } else { Some(frame) };
        if end {
            self.message = None;
            items.push(Incoming::Message {
                text: message.text,
                data: std::mem::take(&mut self.buffer),
            });
        } else {
            self.message = Some(message);
        }
        Ok(())
    }

    fn is_reading(&self) -> bool {
        matches!(self.state, State::Open | State::CloseSent)
    }

    fn read_frames(
        &mut self,
        input: &mut [u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
        spares: &mut Spares<'_>,
    ) -> Result<usize, Failure> {
        let mut pos = 0;
        loop {
            if self.frame.is_none() && self.takes_whole_frames() {
                // In bounds: pos <= input.len().
                if let Some(used) = self.take_whole_frame(&input[pos..], items, spares) {
                    pos += used;
                    continue;
                }
            }
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => {
                    let rest = input.get(pos..).unwrap_or_default();
                    // A length with the top bit set breaks RFC 6455 §5.2, and it is also
                    // beyond any frame limit: answer 1009 like every oversized frame, so
                    // "announces 2^63 bytes" and "announces 2^63 - 1" get the same answer.
                    let Some((header, header_len)) = FrameHeader::parse(rest).map_err(|_| {
                        Failure::too_big("64-bit payload length with the top bit set")
                    })?
                    else {
                        break;
                    };
                    pos += header_len;
                    self.begin_frame(&header)?
                }
            };
            let available = input.len() - pos;
            let n = usize::try_from(frame.remaining).map_or(available, |r| r.min(available));
            // In bounds: n <= input.len() - pos.
            let chunk = &mut input[pos..pos + n];
            pos += n;
            let complete = frame.advance(chunk);
            self.frame = if complete { None } else { Some(frame) };
            if n > 0 || complete {
                self.on_payload(&frame, chunk, complete, items, out, spares)?;
            }
            if !complete {
                // All input used, the frame goes on in the next read.
                break;
            }
            if !self.is_reading() {
                // The closing handshake is done: nothing after the Close
                // frame is delivered.
                return Ok(input.len());
            }
        }
        Ok(pos)
    }

    /// Whether the next frame may take [`Session::take_whole_frame`]: a server between
    /// messages, in whole-message mode, not closing.
    fn takes_whole_frames(&self) -> bool {
        self.message.is_none()
            && self.state == State::Open
            && self.role == Role::Server
            && !self.stream_fragments
    }

    /// The common case in one step: `input` starts with a whole client frame that is a
    /// whole message (FIN, Text or Binary, RSV clear: not compressed, masked) within the
    /// size limits. Its payload is unmasked as it is copied into a pooled buffer (one
    /// pass; `input` is left as it was) and delivered; returns the bytes it used.
    /// `None` leaves the frame to the general path, which gives every error its answer:
    /// a text message that is not valid UTF-8 is left to it as well.
    fn take_whole_frame(
        &mut self,
        input: &[u8],
        items: &mut Vec<Incoming>,
        spares: &mut Spares<'_>,
    ) -> Option<usize> {
        let (h, header_len) = FrameHeader::parse(input).ok()??;
        let data_opcode = h.opcode == OpCode::Text.as_u8() || h.opcode == OpCode::Binary.as_u8();
        if !h.fin || h.rsv1 || h.rsv2 || h.rsv3 || !data_opcode {
            return None;
        }
        let key = h.mask?;
        if h.payload_len > self.max_frame_size || h.payload_len > self.max_message_size {
            return None;
        }
        let len = usize::try_from(h.payload_len).ok()?;
        let payload = input.get(header_len..header_len.checked_add(len)?)?;
        let text = h.opcode == OpCode::Text.as_u8();
        let mut data = spares.small_for(len);
        extend_unmasked(&mut data, payload, key);
        if text && utf8::validate(&data).is_err() {
            spares.small.push(data);
            return None;
        }
        items.push(Incoming::Message { text, data });
        Some(header_len + len)
    }

    /// Checks a new frame's header against the connection state (RFC 6455
    /// §5.2–§5.5) and sets up the frame (and, for a first data frame, the
    /// message).
    fn begin_frame(&mut self, header: &FrameHeader) -> Result<FrameInProgress, Failure> {
        // §5.2: "MUST be 0 unless an extension is negotiated that defines
        // meanings for non-zero values. If a nonzero value is received and
        // none of the negotiated extensions defines the meaning of such a
        // nonzero value, the receiving endpoint MUST _Fail the WebSocket
        // Connection_."
        if header.rsv2 || header.rsv3 {
            return Err(Failure::protocol("reserved bit set"));
        }
        let opcode = OpCode::from_u8(header.opcode).ok_or(Failure::protocol("reserved opcode"))?;
        match (self.role, header.mask.is_some()) {
            // §5.1: "The server MUST close the connection upon receiving a
            // frame that is not masked."
            (Role::Server, false) => return Err(Failure::protocol("unmasked client frame")),
            // §5.1: "A client MUST close a connection if it detects a masked
            // frame."
            (Role::Client, true) => return Err(Failure::protocol("masked server frame")),
            _ => {}
        }
        let mut discard = false;
        if opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125
            // bytes or less and MUST NOT be fragmented."
            if !header.fin {
                return Err(Failure::protocol("fragmented control frame"));
            }
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(Failure::protocol("control frame payload over 125 bytes"));
            }
            // RFC 7692 §6: RSV1 marks a compressed *message*; control frames
            // are never compressed.
            if header.rsv1 {
                return Err(Failure::protocol("RSV1 set on a control frame"));
            }
        } else {
            if header.payload_len > self.max_frame_size {
                return Err(Failure::too_big("frame too big"));
            }
            let message = match (opcode, self.message) {
                (OpCode::Continuation, None) => {
                    return Err(Failure::protocol("continuation frame without a message"))
                }
                (OpCode::Continuation, Some(message)) => {
                    // RFC 7692 §6.1: RSV1 is set "on the first frame of a
                    // message" only.
                    if header.rsv1 {
                        return Err(Failure::protocol("RSV1 set on a continuation frame"));
                    }
                    message
                }
                // §5.4: fragments of one message must not be interleaved
                // with another data message.
                (_, Some(_)) => {
                    return Err(Failure::protocol(
                        "new message before the previous one ended",
                    ))
                }
                (_, None) => {
                    if header.rsv1 && self.deflate.is_none() {
                        return Err(Failure::protocol("RSV1 set without permessage-deflate"));
                    }
                    self.incoming_utf8.reset();
                    let message = MessageInProgress {
                        text: opcode == OpCode::Text,
                        compressed: header.rsv1,
                        size: 0,
                        emitted: false,
                        discard: self.state == State::CloseSent,
                        has_compressed_data: false,
                    };
                    self.message = Some(message);
                    message
                }
            };
            discard = message.discard;
            // Uncompressed sizes are known up front: refuse before storing.
            if !message.compressed
                && !discard
                && message.size.saturating_add(header.payload_len) > self.max_message_size
            {
                return Err(Failure::too_big("message too big"));
            }
        }
        Ok(FrameInProgress {
            opcode,
            fin: header.fin,
            mask: header.mask,
            remaining: header.payload_len,
            mask_phase: 0,
            discard,
        })
    }

    /// Handles the next (unmasked) piece of the current frame's payload.
    fn on_payload(
        &mut self,
        frame: &FrameInProgress,
        chunk: &[u8],
        complete: bool,
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
        spares: &mut Spares<'_>,
    ) -> Result<(), Failure> {
        if frame.opcode.is_control() {
            if !complete {
                // At most 125 bytes (checked in the header).
                self.control.extend_from_slice(chunk);
                return Ok(());
            }
            if self.control.is_empty() {
                return self.on_control(frame.opcode, chunk, items, out);
            }
            let mut payload = std::mem::take(&mut self.control);
            payload.extend_from_slice(chunk);
            let result = self.on_control(frame.opcode, &payload, items, out);
            payload.clear();
            self.control = payload;
            return result;
        }
        let Some(mut message) = self.message else {
            return Ok(());
        };
        let end = complete && frame.fin;
        if !message.discard {
            if message.compressed {
                self.on_compressed(&mut message, chunk, end, items)?;
            } else {
                self.on_plain(&mut message, chunk, end, items, spares)?;
            }
        }
        self.message = if end { None } else { Some(message) };
        Ok(())
    }

    fn on_control(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        match opcode {
            OpCode::Ping => {
                // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send
                // a Pong frame in response, unless it already received a
                // Close frame." We are still reading, so we have not.
                self.write_frame(true, false, OpCode::Pong, payload, out);
                items.push(Incoming::Ping(payload.to_vec()));
            }
            // §5.5.3: "A response to an unsolicited Pong frame is not
            // expected."
            OpCode::Pong => items.push(Incoming::Pong(payload.to_vec())),
            OpCode::Close => self.on_close(payload, items, out)?,
            OpCode::Continuation | OpCode::Text | OpCode::Binary => {}
        }
        Ok(())
    }

    fn on_close(
        &mut self,
        payload: &[u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let body = close::parse_payload(payload).map_err(|e| Failure {
            code: e.close_code(),
            reason: match e {
                close::CloseError::InvalidUtf8 => "invalid UTF-8 in close reason",
                close::CloseError::Truncated => "one-byte close payload",
                _ => "invalid close code",
            },
        })?;
        if self.state == State::Open {
            // §5.5.1: "If an endpoint receives a Close frame and did not
            // previously send a Close frame, the endpoint MUST send a Close
            // frame in response. (When sending a Close frame in response,
            // the endpoint typically echos the status code it received.)"
            let echoed = body.code.map(u16::to_be_bytes);
            let before = out.len();
            self.write_frame(
                true,
                false,
                OpCode::Close,
                echoed.as_ref().map_or(&[][..], |c| &c[..]),
                out,
            );
            self.close_reply_len = u16::try_from(out.len() - before).unwrap_or(0);
            self.state = State::CloseReceived;
        } else {
            self.state = State::Closed;
        }
        items.push(Incoming::Close {
            code: body.code.unwrap_or(close::NO_STATUS),
            reason: body.reason.to_vec(),
        });
        self.release_read_state();
        Ok(())
    }

    /// §7.1.7 _Fail the WebSocket Connection_: send a Close with the reason
    /// unless one was already sent, and stop processing input.
    fn fail(&mut self, failure: Failure, out: &mut Vec<u8>) {
        let before = out.len();
        if self.state == State::Open {
            let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
            let reason = failure.reason.as_bytes();
            let reason = reason.get(..close::MAX_REASON_LEN).unwrap_or(reason);
            if close::encode_payload(failure.code, reason, &mut payload).is_ok() {
                self.write_frame(true, false, OpCode::Close, &payload, out);
            }
        }
        self.failure_frame_len = u16::try_from(out.len() - before).unwrap_or(0);
        self.state = State::Failed;
        self.release_read_state();
        self.deflater = None;
    }

    /// After a failed `read`: how many bytes at the end of `out` are the failure's close
    /// frame (0 when none was sent, because a close had already gone out). A caller may
    /// hold those bytes back until the application has answered the messages that came
    /// before the bad frame.
    pub fn failure_frame_len(&self) -> usize {
        usize::from(self.failure_frame_len)
    }

    /// After a `read` that received the peer's close (state `CloseReceived`): how many
    /// bytes at the end of `out` are our reply. A caller may hold them back until the
    /// application has answered the messages that came before the close.
    pub fn close_reply_len(&self) -> usize {
        usize::from(self.close_reply_len)
    }

    /// Frees everything kept for reading once no more input will be read.
    fn release_read_state(&mut self) {
        self.frame = None;
        self.message = None;
        self.buffer = Vec::new();
        self.control = Vec::new();
        self.inflater = None;
    }

    /// From now on incoming data is discarded (we sent a Close), including the
    /// rest of a message already under way; control frames are still handled.
    pub(super) fn discard_incoming(&mut self) {
        if let Some(message) = &mut self.message {
            message.discard = true;
        }
        if let Some(frame) = self.frame.as_mut().filter(|f| !f.opcode.is_control()) {
            frame.discard = true;
        }
        self.buffer = Vec::new();
    }
}
