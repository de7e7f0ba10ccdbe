//! Compressing and inflating messages (RFC 7692 §7.2): raw DEFLATE with the
//! sync flush's `00 00 ff ff` stripped by the sender and re-appended by the
//! receiver, inflation bounded by the caller's size limits.

use super::window::{clamp_bits, MAX_WINDOW_BITS};
use crate::ws::buffer::reserve_capped;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::fmt;

/// The octets a sync flush ends with, stripped by the sender and appended by
/// the receiver (RFC 7692 §7.2.1, §7.2.2).
pub(super) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The outgoing direction: one compressor per connection.
pub struct Deflater {
    inner: Compress,
    no_context_takeover: bool,
    /// Compressed output, reused between messages (kept here, with the rest of the
    /// compression state, so that sessions that never compress stay small).
    pub scratch: Vec<u8>,
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

/// Compression failed inside zlib. Never expected with valid parameters; the
/// compressor has been reset and the message can be sent uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressError;

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deflate compression failed")
    }
}

impl std::error::Error for CompressError {}

impl Deflater {
    /// A compressor whose window never exceeds 2^`max_window_bits` bytes.
    ///
    /// zlib cannot produce a raw DEFLATE stream with an 8-bit window: it
    /// silently uses 9 bits (and flate2 refuses 8 outright), which would break
    /// a peer that asked for `server_max_window_bits=8`. At 8 bits we compress
    /// at level 0 instead: stored blocks contain no back-references at all, so
    /// they honour any window size. The peer still gets a valid
    /// permessage-deflate stream, just not a smaller one.
    pub fn new(level: u32, max_window_bits: u8, no_context_takeover: bool) -> Self {
        let bits = clamp_bits(max_window_bits);
        let (level, bits) = if bits < 9 {
            (0, 9)
        } else {
            (level.min(9), bits)
        };
        Self {
            inner: Compress::new_with_window_bits(Compression::new(level), false, bits),
            no_context_takeover,
            scratch: Vec::new(),
        }
    }

    /// Whether the compressor forgets its window after each message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Appends the compressed form of one whole message to `out`: raw
    /// DEFLATE, ending with a sync flush whose `00 00 ff ff` is stripped.
    ///
    /// On error `out` is left as it was and the compressor is reset, which is
    /// always safe: a fresh stream never refers back to earlier messages.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        if message.is_empty() {
            // RFC 7692 §7.2.3.6: an empty message is the single byte 0x00 (an
            // empty stored block once the tail is re-appended). zlib cannot
            // be asked for it: a sync flush with nothing new to flush emits
            // nothing at all.
            out.push(0x00);
            return Ok(());
        }
        let start = out.len();
        let result = self.compress_inner(message, out);
        if result.is_err() || !out[start..].ends_with(&TAIL) {
            out.truncate(start);
            self.inner.reset();
            return Err(CompressError);
        }
        out.truncate(out.len() - TAIL.len());
        if self.no_context_takeover {
            self.inner.reset();
        }
        Ok(())
    }

    fn compress_inner(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        let mut rest = message;
        loop {
            // Room for the whole input plus block and flush overhead, so one
            // round usually suffices. Output beyond that (incompressible data
            // can grow by up to 1/8 when the window is smaller than a block
            // and zlib cannot fall back to a stored block) takes more rounds.
            out.reserve(rest.len() + rest.len() / 4096 + 64);
            let before_in = self.inner.total_in();
            let before_out = self.inner.total_out();
            self.inner
                .compress_vec(rest, out, FlushCompress::Sync)
                .map_err(|_| CompressError)?;
            let used = usize::try_from(self.inner.total_in().wrapping_sub(before_in))
                .unwrap_or(usize::MAX);
            let made = self.inner.total_out().wrapping_sub(before_out);
            rest = rest.get(used..).ok_or(CompressError)?;
            let stalled = used == 0 && made == 0;
            // zlib's contract: the flush is complete once a call consumed all
            // input and still left output space unused. If the output was
            // filled exactly, one more call tells: it either emits the rest
            // of the flush or makes no progress because nothing is pending.
            if rest.is_empty() && (out.len() < out.capacity() || stalled) {
                return Ok(());
            }
            if stalled {
                return Err(CompressError);
            }
        }
    }
}

/// Why inflating a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not a valid DEFLATE stream (or data after a final block).
    Corrupt,
    /// The message inflates to more than the allowed size.
    TooBig,
}

impl InflateError {
    /// The close code to fail the connection with: 1009 for a message too
    /// big to process, 1007 (data inconsistent with the message type) for a
    /// broken stream — RFC 7692 §8 only says "MUST _Fail the WebSocket
    /// Connection_".
    pub const fn close_code(self) -> u16 {
        match self {
            Self::Corrupt => crate::ws::close::INVALID_PAYLOAD,
            Self::TooBig => crate::ws::close::MESSAGE_TOO_BIG,
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Corrupt => "invalid compressed data",
            Self::TooBig => "decompressed message too big",
        })
    }
}

impl std::error::Error for InflateError {}

/// The first output chunk offered to zlib, and its upper bound. Output goes
/// straight into the caller's buffer; chunks start small so that a short
/// message costs little zero-filling, and double while zlib fills them.
const MIN_CHUNK: usize = 256;
const MAX_CHUNK: usize = 256 * 1024;

/// The incoming direction: one decompressor per connection.
///
/// Compressed bytes are fed as they arrive, so text can be validated as it
/// inflates and memory is bounded by the caller's limits, never by what the
/// peer announces or what a "decompression bomb" would expand to.
pub struct Inflater {
    inner: Decompress,
    no_context_takeover: bool,
    /// How much of [`TAIL`] the current message has been given.
    tail_fed: usize,
    /// The peer ended its stream with a BFINAL block (RFC 7692 §7.2.3.3
    /// allows that); the window is gone and a reset is due.
    stream_ended: bool,
    /// The last call stopped because its output room was used up.
    output_pending: bool,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("output_pending", &self.output_pending)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A decompressor. It always uses a 15-bit window, which inflates streams
    /// made with any smaller window; `no_context_takeover` resets it after
    /// each message, as the peer resets its compressor.
    pub fn new(no_context_takeover: bool) -> Self {
        Self {
            inner: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            no_context_takeover,
            tail_fed: 0,
            stream_ended: false,
            output_pending: false,
        }
    }

    /// Inflates the next piece of a compressed message, appending at most
    /// `room` bytes to `out`, and returns how many bytes of `input` it used.
    ///
    /// Set `end_of_message` on the piece that ends the message (it may be
    /// empty): the stripped `00 00 ff ff` is then appended internally.
    ///
    /// The call stops early when `room` is used up; [`has_pending_output`]
    /// then says so, and the caller calls again with the rest of the input
    /// (possibly none) and more room. Otherwise all of `input` was used.
    ///
    /// [`has_pending_output`]: Self::has_pending_output
    pub fn inflate(
        &mut self,
        input: &[u8],
        end_of_message: bool,
        out: &mut Vec<u8>,
        room: usize,
    ) -> Result<usize, InflateError> {
        let limit = out.len().saturating_add(room);
        let mut consumed = 0;
        let mut chunk = input.len().saturating_mul(4).clamp(MIN_CHUNK, MAX_CHUNK);
        loop {
            let peer = input.get(consumed..).unwrap_or_default();
            let from_peer = !peer.is_empty();
            let src: &[u8] = if from_peer {
                if self.stream_ended {
                    // Bytes after the final block belong to no stream.
                    return Err(InflateError::Corrupt);
                }
                peer
            } else if end_of_message && !self.stream_ended {
                TAIL.get(self.tail_fed..).unwrap_or_default()
            } else {
                &[]
            };
            let Some(space) = limit.checked_sub(out.len()).filter(|&s| s > 0) else {
                self.output_pending = true;
                return Ok(consumed);
            };
            let want = chunk.min(space);
            let (used, made) = self.step(src, out, want, limit)?;
            if from_peer {
                consumed += used;
            } else {
                self.tail_fed += used;
            }
            if used == 0 && made == 0 {
                if from_peer {
                    // Input and output space but no progress: zlib is stuck.
                    return Err(InflateError::Corrupt);
                }
                break;
            }
            if made == want {
                chunk = chunk.saturating_mul(2).min(MAX_CHUNK);
            }
        }
        self.output_pending = false;
        if end_of_message && (self.stream_ended || self.tail_fed >= TAIL.len()) {
            self.end_message();
        }
        Ok(consumed)
    }

    /// Inflates `input` into `out` in one go, failing with
    /// [`InflateError::TooBig`] as soon as the output would exceed `budget`
    /// bytes. `out` then holds at most `budget + 1` new bytes and its
    /// capacity never grows beyond that (plus what it already had).
    pub fn inflate_capped(
        &mut self,
        input: &[u8],
        end_of_message: bool,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Result<(), InflateError> {
        let start = out.len();
        self.inflate(input, end_of_message, out, budget.saturating_add(1))?;
        if out.len() - start > budget {
            return Err(InflateError::TooBig);
        }
        Ok(())
    }

    /// Whether the last [`inflate`](Self::inflate) call ran out of room with
    /// output possibly still to come.
    pub fn has_pending_output(&self) -> bool {
        self.output_pending
    }

    /// Drops the state of a message that will not be finished (e.g. the
    /// connection failed): the next message starts a fresh stream.
    pub fn reset(&mut self) {
        self.inner.reset(false);
        self.tail_fed = 0;
        self.stream_ended = false;
        self.output_pending = false;
    }

    fn end_message(&mut self) {
        if self.no_context_takeover || self.stream_ended {
            self.inner.reset(false);
        }
        self.tail_fed = 0;
        self.stream_ended = false;
    }

    /// One zlib call: inflates from `src` into up to `want` new bytes of
    /// `out`, whose capacity stays within `limit`. Returns (used, made).
    fn step(
        &mut self,
        src: &[u8],
        out: &mut Vec<u8>,
        want: usize,
        limit: usize,
    ) -> Result<(usize, usize), InflateError> {
        let start = out.len();
        reserve_capped(out, want, limit);
        out.resize(start + want, 0);
        let before_in = self.inner.total_in();
        let before_out = self.inner.total_out();
        let status = self
            .inner
            .decompress(src, &mut out[start..], FlushDecompress::Sync);
        let used = usize::try_from(self.inner.total_in().wrapping_sub(before_in))
            .unwrap_or(usize::MAX)
            .min(src.len());
        let made = usize::try_from(self.inner.total_out().wrapping_sub(before_out))
            .unwrap_or(usize::MAX)
            .min(want);
        out.truncate(start + made);
        match status {
            Ok(Status::StreamEnd) => self.stream_ended = true,
            Ok(Status::Ok | Status::BufError) => {}
            Err(_) => return Err(InflateError::Corrupt),
        }
        Ok((used, made))
    }
}
