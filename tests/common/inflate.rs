//! The reference inflater: what every test that checks permessage-deflate output
//! (RFC 7692) decodes it with, in the unit tests of `src/ws/deflate/` and in the
//! integration tests alike.
//!
//! It is `miniz_oxide`, not the library's own zlib-rs backend, so that a fault in the
//! backend cannot hide itself by decoding its own output. It also plays a peer that
//! agreed to a window of 2^bits bytes, which zlib-rs cannot: its decompressor keeps a
//! 32 KiB window whatever it is told. Two decoders run side by side on every message:
//!
//! - one writes into a ring of exactly 2^bits bytes, and `miniz_oxide` refuses any
//!   back-reference longer than the ring: the sender went beyond the agreed window;
//! - one keeps the whole stream since its start in a flat buffer, where a reference to
//!   before the start is refused: the sender relied on context it had promised to drop
//!   (no context takeover), or on a message the decoder never saw. Its output is what
//!   `message` returns.

use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
};
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// The four octets a sync flush ends with, stripped by the sender (RFC 7692 §7.2.1) and
/// appended again by the receiver (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The farthest a DEFLATE back-reference can reach: the flat buffer never needs more.
const MAX_DISTANCE: usize = 32 * 1024;

/// Output beyond this for one message is refused (a runaway peer, not a test).
const MAX_MESSAGE: usize = 128 << 20;

/// The decompressor of one direction of a connection, as a peer that agreed to a window
/// of 2^`window_bits` bytes and, unless `context_takeover`, to a fresh stream for every
/// message.
pub struct Inflate {
    window_bits: u8,
    context_takeover: bool,
    ring: Vec<u8>,
    ring_pos: usize,
    ring_state: Box<DecompressorOxide>,
    flat: Vec<u8>,
    flat_state: Box<DecompressorOxide>,
}

impl Inflate {
    pub fn new(window_bits: u8, context_takeover: bool) -> Self {
        assert!((8..=15).contains(&window_bits), "window bits {window_bits}");
        Inflate {
            window_bits,
            context_takeover,
            ring: vec![0; 1 << window_bits],
            ring_pos: 0,
            ring_state: Box::default(),
            flat: Vec::new(),
            flat_state: Box::default(),
        }
    }

    /// Inflates one message's payload (the stripped tail appended again). `Err` says why
    /// a peer could not decode it: corrupt data, a reference before the stream's start,
    /// or one beyond the agreed window.
    pub fn message(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let start = self.flat.len();
        let flat_end = self.inflate_flat(&input);
        let ring_end = self.inflate_ring(&input);
        let data = match (flat_end, ring_end) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(_)) => Err(format!(
                "a back-reference reaches beyond the {}-byte window",
                1 << self.window_bits
            )),
            (Ok(stream_ended), Ok(_)) => {
                let data = self.flat[start..].to_vec();
                if stream_ended {
                    // A final block (RFC 7692 §7.2.3.3 allows one): the next message
                    // starts a new stream whatever was agreed.
                    self.reset();
                }
                Ok(data)
            }
        };
        if !self.context_takeover || data.is_err() {
            self.reset();
        }
        if self.flat.len() > 16 * MAX_DISTANCE {
            self.flat.drain(..self.flat.len() - MAX_DISTANCE);
        }
        data
    }

    fn reset(&mut self) {
        self.flat.clear();
        *self.flat_state = DecompressorOxide::new();
        self.ring.fill(0);
        self.ring_pos = 0;
        *self.ring_state = DecompressorOxide::new();
    }

    /// Feeds `input` to the flat decoder; Ok(true) when the stream ended in it.
    fn inflate_flat(&mut self, mut input: &[u8]) -> Result<bool, String> {
        let flags = TINFL_FLAG_HAS_MORE_INPUT | TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        let first = self.flat.len();
        loop {
            let pos = self.flat.len();
            self.flat.resize(pos + 64 * 1024, 0);
            let (status, used, made) =
                decompress(&mut self.flat_state, input, &mut self.flat, pos, flags);
            self.flat.truncate(pos + made);
            input = &input[used..];
            if self.flat.len() - first > MAX_MESSAGE {
                return Err("inflated message over 128 MiB".into());
            }
            match status {
                TINFLStatus::Done => return Ok(true),
                TINFLStatus::NeedsMoreInput => return Ok(false),
                TINFLStatus::HasMoreOutput => {}
                other => {
                    return Err(format!(
                        "corrupt data or a reference before the stream's start ({other:?})"
                    ))
                }
            }
        }
    }

    /// Feeds `input` to the ring decoder, whose output is only a window.
    fn inflate_ring(&mut self, mut input: &[u8]) -> Result<(), TINFLStatus> {
        let mask = self.ring.len() - 1;
        loop {
            let (status, used, made) = decompress(
                &mut self.ring_state,
                input,
                &mut self.ring,
                self.ring_pos,
                TINFL_FLAG_HAS_MORE_INPUT,
            );
            self.ring_pos = (self.ring_pos + made) & mask;
            input = &input[used..];
            match status {
                TINFLStatus::Done | TINFLStatus::NeedsMoreInput => return Ok(()),
                TINFLStatus::HasMoreOutput => {}
                other => return Err(other),
            }
        }
    }
}
