//! Incremental, fail-fast UTF-8 validation of text messages.
//!
//! RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8
//! but finds that the byte stream is not, in fact, a valid UTF-8 stream, that
//! endpoint MUST _Fail the WebSocket Connection_." A text message reaches us
//! in pieces (frames, and partial reads of one frame), and a code point may
//! straddle two pieces. The validator therefore carries the unfinished tail
//! of one piece into the next.
//!
//! It also fails *fast*: a piece whose unfinished tail can already never
//! become valid (`F4 90`, `ED A0`, `C0`, ...) is rejected at once instead of
//! at the end of the message, so a peer cannot make us buffer a message that
//! is already known to be invalid (Autobahn cases 6.4.x check exactly this).
//!
//! The bulk of every piece is checked by `simdutf8`; only the up-to-3-byte
//! tail is looked at byte by byte.

use std::fmt;

/// The error of a byte stream that is not, and cannot become, valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a byte stream fed in arbitrary pieces.
///
/// After [`feed`](Self::feed) returns an error the state is meaningless;
/// [`reset`](Self::reset) before reusing the validator.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The started but unfinished code point at the end of the last piece,
    /// always a valid prefix of some code point.
    pending: [u8; 4],
    pending_len: u8,
}

/// What a (short) byte sequence is, relative to one UTF-8 code point.
#[derive(Debug, PartialEq, Eq)]
enum Prefix {
    /// No code point starts like this.
    Invalid,
    /// A proper prefix of at least one valid code point.
    Incomplete,
    /// Exactly one valid code point.
    Complete,
}

/// Classifies `seq` (1 to 4 bytes) against the exact well-formed table of
/// Unicode §3.9 (Table 3-7), which excludes overlong forms (`C0`, `C1`,
/// `E0 80..9F`, `F0 80..8F`), surrogates (`ED A0..BF`) and code points above
/// U+10FFFF (`F4 90..`, `F5..FF`).
fn classify(seq: &[u8]) -> Prefix {
    let Some((&lead, rest)) = seq.split_first() else {
        return Prefix::Incomplete;
    };
    let (width, second) = match lead {
        0x00..=0x7f => (1, 0x80..=0xbf),
        0xc2..=0xdf => (2, 0x80..=0xbf),
        0xe0 => (3, 0xa0..=0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80..=0xbf),
        0xed => (3, 0x80..=0x9f),
        0xf0 => (4, 0x90..=0xbf),
        0xf1..=0xf3 => (4, 0x80..=0xbf),
        0xf4 => (4, 0x80..=0x8f),
        _ => return Prefix::Invalid,
    };
    if seq.len() > width {
        return Prefix::Invalid;
    }
    for (i, byte) in rest.iter().enumerate() {
        let allowed = if i == 0 { second.clone() } else { 0x80..=0xbf };
        if !allowed.contains(byte) {
            return Prefix::Invalid;
        }
    }
    if seq.len() == width {
        Prefix::Complete
    } else {
        Prefix::Incomplete
    }
}

impl Utf8Validator {
    /// A validator at the start of a stream.
    pub const fn new() -> Self {
        Self {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Validates the next piece of the stream. Fails as soon as the bytes
    /// seen so far cannot be the start of valid UTF-8, including when the
    /// piece ends inside a sequence that can no longer be completed.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), Utf8Error> {
        let mut piece = piece;
        if self.pending_len != 0 {
            // Complete the code point left over from the previous piece one
            // byte at a time; `classify` rejects a bad byte immediately.
            loop {
                let Some((&byte, rest)) = piece.split_first() else {
                    return Ok(());
                };
                piece = rest;
                let len = usize::from(self.pending_len);
                let Some(slot) = self.pending.get_mut(len) else {
                    return Err(Utf8Error);
                };
                *slot = byte;
                self.pending_len += 1;
                match classify(&self.pending[..=len]) {
                    Prefix::Invalid => return Err(Utf8Error),
                    Prefix::Incomplete => {}
                    Prefix::Complete => break,
                }
            }
            self.pending_len = 0;
        }
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            // `error_len() == Some(_)`: an invalid sequence inside the piece.
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            // `None`: the piece ends inside a sequence. simdutf8 (like std)
            // only says so for a valid prefix, but the tail is at most three
            // bytes and checking it ourselves keeps this exact by
            // construction rather than by another crate's contract.
            Err(e) => {
                let tail = piece.get(e.valid_up_to()..).unwrap_or_default();
                if tail.len() >= self.pending.len() || classify(tail) != Prefix::Incomplete {
                    return Err(Utf8Error);
                }
                self.pending[..tail.len()].copy_from_slice(tail);
                // Fits: `tail.len() < 4` was checked above.
                self.pending_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the stream: fails if it stopped inside a code point. Resets the
    /// validator for the next stream either way.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.pending_len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    /// Forgets any unfinished code point, ready for a new stream.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Whether the stream fed so far ends on a code point boundary.
    pub fn is_at_boundary(&self) -> bool {
        self.pending_len == 0
    }
}

/// Validates a complete byte string in one call.
pub fn validate(bytes: &[u8]) -> Result<(), Utf8Error> {
    simdutf8::basic::from_utf8(bytes)
        .map(drop)
        .map_err(|_| Utf8Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What std says about a prefix: can it still be extended to valid UTF-8?
    fn valid_prefix(bytes: &[u8]) -> bool {
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }

    /// Feeds `pieces` one after another and checks after each that the
    /// validator agrees with std on the prefix so far (fail-fast), then that
    /// `finish` agrees on the whole.
    fn check_pieces(pieces: &[&[u8]]) {
        let mut v = Utf8Validator::new();
        let mut seen = Vec::new();
        for piece in pieces {
            seen.extend_from_slice(piece);
            let ok = v.feed(piece).is_ok();
            assert_eq!(
                ok,
                valid_prefix(&seen),
                "prefix {seen:02x?} of {pieces:02x?}"
            );
            if !ok {
                return;
            }
        }
        assert_eq!(
            v.finish().is_ok(),
            std::str::from_utf8(&seen).is_ok(),
            "{seen:02x?}"
        );
        assert!(v.is_at_boundary());
    }

    fn check_all_splits(bytes: &[u8]) {
        check_pieces(&[bytes]);
        for i in 0..=bytes.len() {
            check_pieces(&[&bytes[..i], &bytes[i..]]);
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        check_pieces(&singles);
        if bytes.len() <= 24 {
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    check_pieces(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                }
            }
        }
        assert_eq!(validate(bytes).is_ok(), std::str::from_utf8(bytes).is_ok());
    }

    #[test]
    fn classify_table() {
        assert_eq!(classify(b"a"), Prefix::Complete);
        assert_eq!(classify(&[0xc2]), Prefix::Incomplete);
        assert_eq!(classify(&[0xc2, 0x80]), Prefix::Complete);
        assert_eq!(classify(&[0xc0]), Prefix::Invalid);
        assert_eq!(classify(&[0xc1]), Prefix::Invalid);
        assert_eq!(classify(&[0xe0, 0x9f]), Prefix::Invalid);
        assert_eq!(classify(&[0xed, 0xa0]), Prefix::Invalid);
        assert_eq!(classify(&[0xed, 0x9f, 0xbf]), Prefix::Complete);
        assert_eq!(classify(&[0xf0, 0x8f]), Prefix::Invalid);
        assert_eq!(classify(&[0xf4, 0x8f, 0xbf]), Prefix::Incomplete);
        assert_eq!(classify(&[0xf4, 0x90]), Prefix::Invalid);
        assert_eq!(classify(&[0xf5]), Prefix::Invalid);
        assert_eq!(classify(&[0x80]), Prefix::Invalid);
        assert_eq!(classify(&[0xe2, 0x82, 0xac, 0x80]), Prefix::Invalid);
    }

    #[test]
    fn autobahn_style_sequences() {
        let invalid: &[&[u8]] = &[
            &[0xed, 0xa0, 0x80],                   // surrogate U+D800
            &[0xed, 0xbf, 0xbf],                   // surrogate U+DFFF
            &[0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80], // surrogate pair
            &[0xc0, 0x80],                         // overlong NUL
            &[0xc1, 0xbf],                         // overlong
            &[0xe0, 0x80, 0x80],                   // overlong
            &[0xe0, 0x9f, 0xbf],                   // overlong
            &[0xf0, 0x80, 0x80, 0x80],             // overlong
            &[0xf0, 0x8f, 0xbf, 0xbf],             // overlong
            &[0xf4, 0x90, 0x80, 0x80],             // U+110000
            &[0xf7, 0xbf, 0xbf, 0xbf],             // 4-byte form above U+10FFFF
            &[0xf8, 0x88, 0x80, 0x80, 0x80],       // 5-byte form
            &[0xfc, 0x84, 0x80, 0x80, 0x80, 0x80], // 6-byte form
            &[0xfe],
            &[0xff],
            &[0x80], // lone continuation
            &[0xbf],
            &[0xc2], // truncated at the end
            &[0xe2, 0x82],
            &[0xf0, 0x9f, 0x98],
            &[0xc2, 0x41], // missing continuation
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", // 6.4.x-like
        ];
        for bytes in invalid {
            assert!(std::str::from_utf8(bytes).is_err());
            check_all_splits(bytes);
        }
        let valid: &[&[u8]] = &[
            b"",
            b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
            "κόσμε".as_bytes(),
            &[0xed, 0x9f, 0xbf],       // U+D7FF
            &[0xee, 0x80, 0x80],       // U+E000
            &[0xef, 0xbf, 0xbd],       // U+FFFD
            &[0xf4, 0x8f, 0xbf, 0xbf], // U+10FFFF
            &[0xf0, 0x90, 0x80, 0x80], // U+10000
            &[0x00, 0x7f, 0xc2, 0x80, 0xdf, 0xbf, 0xe0, 0xa0, 0x80],
        ];
        for bytes in valid {
            assert!(std::str::from_utf8(bytes).is_ok());
            check_all_splits(bytes);
        }
    }

    #[test]
    fn fails_fast_on_an_invalid_unfinished_tail() {
        for bad in [
            &[0xf4, 0x90][..],
            &[0xed, 0xa0],
            &[0xc0],
            &[0xe0, 0x80],
            &[0xf5],
        ] {
            let mut v = Utf8Validator::new();
            let mut piece = b"valid text ".to_vec();
            piece.extend_from_slice(bad);
            assert_eq!(v.feed(&piece), Err(Utf8Error), "{bad:02x?}");
            // And when the bad second byte arrives alone, after a valid lead
            // byte held over from the previous piece.
            if let [lead, second] = bad {
                let mut v = Utf8Validator::new();
                v.feed(&[b'x', *lead]).unwrap();
                assert_eq!(v.feed(&[*second, 0x80, 0x80]), Err(Utf8Error), "{bad:02x?}");
            }
        }
    }

    #[test]
    fn random_byte_strings_match_std_at_every_split() {
        // xorshift64*: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        // Biased alphabet so that valid multi-byte sequences are common.
        let atoms: &[&[u8]] = &[
            b"a",
            b"Z",
            b"\x00",
            b"\x7f",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            "\u{10ffff}".as_bytes(),
            "\u{d7ff}".as_bytes(),
            "\u{e000}".as_bytes(),
            &[0x80],
            &[0xbf],
            &[0xc0],
            &[0xc2],
            &[0xe0],
            &[0xe0, 0xa0],
            &[0xed],
            &[0xed, 0xa0],
            &[0xf0],
            &[0xf0, 0x90],
            &[0xf4],
            &[0xf4, 0x90],
            &[0xf8],
            &[0xff],
        ];
        for round in 0..3000 {
            let atoms_len = (next() % 10) as usize;
            let mut bytes = Vec::new();
            for _ in 0..atoms_len {
                if round % 3 == 0 {
                    bytes.push(next() as u8);
                } else {
                    bytes.extend_from_slice(atoms[(next() % atoms.len() as u64) as usize]);
                }
            }
            check_all_splits(&bytes);
        }
    }

    #[test]
    fn long_valid_text_in_odd_pieces() {
        let text = "Hello κόσμε 😀 \u{10ffff} ".repeat(500);
        let bytes = text.as_bytes();
        for step in [1, 2, 3, 5, 7, 64, 4093] {
            let mut v = Utf8Validator::new();
            for piece in bytes.chunks(step) {
                v.feed(piece).unwrap();
            }
            v.finish().unwrap();
        }
    }

    #[test]
    fn finish_resets_for_the_next_stream() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert!(!v.is_at_boundary());
        assert_eq!(v.finish(), Err(Utf8Error));
        v.feed(b"ok").unwrap();
        v.finish().unwrap();
    }
}
