//! Frame headers (RFC 6455 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! Parsing here is purely syntactic: whether a reserved bit, an opcode or a
//! missing mask is acceptable depends on the connection (negotiated
//! extensions, role) and is decided by the session.

use crate::ws::opcode::OpCode;
use std::fmt;

/// The longest possible frame header: 2 fixed bytes, an 8-byte extended
/// length and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry. RFC 6455 §5.5: "All
/// control frames MUST have a payload length of 125 bytes or less and MUST
/// NOT be fragmented."
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1: used by permessage-deflate to mark a compressed message.
    pub rsv1: bool,
    /// RSV2: no extension we support defines it.
    pub rsv2: bool,
    /// RSV3: no extension we support defines it.
    pub rsv3: bool,
    /// The raw 4-bit opcode; may be a reserved value, see [`OpCode::from_u8`].
    pub opcode: u8,
    /// The masking key, present when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// A header that can never be valid, whatever the connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// A 64-bit extended length with its most significant bit set. RFC 6455
    /// §5.2: "the most significant bit MUST be 0".
    LengthOverflow,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LengthOverflow => f.write_str("64-bit payload length with the top bit set"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl FrameHeader {
    /// Parses the header at the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header (at
    /// most [`MAX_HEADER_LEN`] bytes are ever needed); nothing is consumed, so
    /// the caller retries with more bytes. Otherwise returns the header and
    /// its length in bytes; the payload starts right after it.
    ///
    /// Non-minimal length encodings (e.g. a 16-bit length of 5) are accepted.
    /// RFC 6455 §5.2 says "the minimal number of bytes MUST be used to encode
    /// the length", but that constrains the sender and the RFC names no
    /// receiver action for it, unlike the cases where it says "MUST _Fail the
    /// WebSocket Connection_". The decoded value is unambiguous, every limit
    /// is checked against it, and rejecting would only break lenient senders.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, HeaderError> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(None);
        };
        let (payload_len, rest, ext_len) = match b1 & 0x7f {
            126 => match rest {
                [a, b, rest @ ..] => (u64::from(u16::from_be_bytes([*a, *b])), rest, 2),
                _ => return Ok(None),
            },
            127 => match rest {
                [a, b, c, d, e, f, g, h, rest @ ..] => {
                    let len = u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
                    if len >> 63 != 0 {
                        return Err(HeaderError::LengthOverflow);
                    }
                    (len, rest, 8)
                }
                _ => return Ok(None),
            },
            short => (u64::from(short), rest, 0),
        };
        let mask = if b1 & 0x80 != 0 {
            match rest {
                [a, b, c, d, ..] => Some([*a, *b, *c, *d]),
                _ => return Ok(None),
            }
        } else {
            None
        };
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode: b0 & 0x0f,
            mask,
            payload_len,
        };
        let mask_len = if mask.is_some() { 4 } else { 0 };
        Ok(Some((header, 2 + ext_len + mask_len)))
    }

    /// Appends this header, in its minimal encoding, to `out`. Only the low 4
    /// bits of `opcode` and the low 63 bits of `payload_len` are used, so the
    /// output is always a syntactically valid header.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.encode().as_bytes());
    }

    /// The header of a frame we send: RSV2 and RSV3 clear (no extension of ours sets
    /// them); `mask` is `Some` for client-to-server frames.
    #[inline]
    pub fn outgoing(
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        payload_len: u64,
    ) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode: opcode.as_u8(),
            mask,
            payload_len,
        }
    }

    /// The header's bytes, made on the stack (minimal length encoding).
    #[inline]
    pub fn encode(&self) -> HeaderBytes {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | (self.opcode & 0x0f);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.payload_len & (u64::MAX >> 1);
        let mut n = if len <= 125 {
            // In range: at most 125.
            bytes[1] = mask_bit | len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&len.to_be_bytes());
            10
        };
        if let Some(key) = self.mask {
            bytes[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        HeaderBytes { bytes, len: n }
    }
}

/// An encoded frame header, on the stack.
#[derive(Debug, Clone, Copy)]
pub struct HeaderBytes {
    bytes: [u8; MAX_HEADER_LEN],
    len: usize,
}

impl HeaderBytes {
    /// The header's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        // In bounds: `encode` writes at most MAX_HEADER_LEN bytes.
        &self.bytes[..self.len]
    }
}

/// Appends the header of a frame we send: RSV2 and RSV3 clear, minimal length
/// encoding. `mask` is `Some` for client-to-server frames (RFC 6455 §5.3), and
/// the caller then masks the payload with the same key.
pub fn encode_header(
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
    out: &mut Vec<u8>,
) {
    FrameHeader::outgoing(fin, rsv1, opcode, mask, payload_len).write(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::parse(bytes).unwrap().unwrap()
    }

    #[test]
    fn rfc6455_unmasked_hello() {
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, len) = header(&frame);
        assert_eq!(len, 2);
        assert!(h.fin && !h.rsv1 && !h.rsv2 && !h.rsv3);
        assert_eq!(h.opcode, OpCode::Text.as_u8());
        assert_eq!(h.mask, None);
        assert_eq!(h.payload_len, 5);
        assert_eq!(&frame[len..], b"Hello");
        let mut out = Vec::new();
        encode_header(true, false, OpCode::Text, None, 5, &mut out);
        assert_eq!(out, frame[..2]);
    }

    #[test]
    fn rfc6455_masked_hello() {
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, len) = header(&frame);
        assert_eq!(len, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.payload_len, 5);
        let mut out = Vec::new();
        encode_header(true, false, OpCode::Text, h.mask, 5, &mut out);
        assert_eq!(out, frame[..6]);
    }

    #[test]
    fn rfc6455_fragmented_hello() {
        // "A fragmented unmasked text message": 0x01 0x03 "Hel", 0x80 0x02 "lo".
        let (h, _) = header(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h.fin);
        assert_eq!(h.opcode, 1);
        let (h, _) = header(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(h.fin);
        assert_eq!(h.opcode, 0);
    }

    #[test]
    fn rfc6455_ping_and_pong() {
        let (h, len) = header(&[0x89, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!((h.opcode, h.payload_len, len), (9, 5, 2));
        let (h, len) = header(&[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!((h.opcode, h.payload_len, len), (10, 5, 6));
        let mut out = Vec::new();
        encode_header(true, false, OpCode::Ping, None, 5, &mut out);
        assert_eq!(out, [0x89, 0x05]);
    }

    #[test]
    fn rfc6455_256_byte_and_64k_binary() {
        let (h, len) = header(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.opcode, h.payload_len, len), (2, 256, 4));
        let mut out = Vec::new();
        encode_header(true, false, OpCode::Binary, None, 256, &mut out);
        assert_eq!(out, [0x82, 0x7e, 0x01, 0x00]);

        let bytes = [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        let (h, len) = header(&bytes);
        assert_eq!((h.opcode, h.payload_len, len), (2, 65536, 10));
        out.clear();
        encode_header(true, false, OpCode::Binary, None, 65536, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn length_encoding_boundaries_round_trip() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 32, (1 << 63) - 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = Vec::new();
                encode_header(false, true, OpCode::Continuation, mask, len, &mut out);
                let expected_len =
                    2 + match len {
                        0..=125 => 0,
                        126..=65535 => 2,
                        _ => 8,
                    } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(out.len(), expected_len);
                let (h, n) = header(&out);
                assert_eq!(n, out.len());
                assert_eq!(h.payload_len, len);
                assert_eq!(h.mask, mask);
                assert!(!h.fin && h.rsv1 && !h.rsv2 && !h.rsv3);
            }
        }
    }

    #[test]
    fn incomplete_input_consumes_nothing() {
        let mut full = Vec::new();
        encode_header(
            true,
            false,
            OpCode::Binary,
            Some([5, 6, 7, 8]),
            70_000,
            &mut full,
        );
        assert_eq!(full.len(), MAX_HEADER_LEN);
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(
            FrameHeader::parse(&full).unwrap().unwrap().1,
            MAX_HEADER_LEN
        );
    }

    #[test]
    fn top_bit_of_64_bit_length_is_rejected() {
        let bytes = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&bytes), Err(HeaderError::LengthOverflow));
    }

    #[test]
    fn encoded_headers_parse_back_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader {
                    fin: true,
                    rsv1: false,
                    rsv2: false,
                    rsv3: false,
                    opcode: OpCode::Binary.as_u8(),
                    mask,
                    payload_len: len,
                };
                let bytes = h.encode();
                assert_eq!(
                    header(bytes.as_bytes()),
                    (h, bytes.as_bytes().len()),
                    "{len}"
                );
            }
        }
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let (h, len) = header(&[0x82, 0x7e, 0x00, 0x05]);
        assert_eq!((h.payload_len, len), (5, 4));
        let (h, len) = header(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!((h.payload_len, len), (5, 10));
    }

    #[test]
    fn reserved_bits_and_opcodes_are_reported_raw() {
        let (h, _) = header(&[0x7b, 0x00]);
        assert!(!h.fin && h.rsv1 && h.rsv2 && h.rsv3);
        assert_eq!(h.opcode, 0xb);
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out, [0x7b, 0x00]);
    }
}
