//! The LZ77 window sizes RFC 7692 lets the two ends agree on (§7.1.2).

/// The smallest LZ77 window (2^8 bytes) RFC 7692 lets a peer ask for.
pub const MIN_WINDOW_BITS: u8 = 8;

/// The largest LZ77 window (2^15 bytes), the DEFLATE maximum.
pub const MAX_WINDOW_BITS: u8 = 15;

/// Clamps a configured window size into the range the RFC allows.
pub(super) fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}
