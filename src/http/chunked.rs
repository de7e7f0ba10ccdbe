//! Incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).

/// Longest chunk-size line (size, extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// Reading chunk data; bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// The body is complete.
    Done,
}

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Malformed framing or a chunk size that overflows: 400.
    Syntax(&'static str),
    /// The body would exceed the limit: 413.
    TooLarge,
}

/// Decodes a chunked body piece by piece.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    total: u64,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size,
            total: 0,
            trailer_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Whether the final chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing and data from `input`, appending data to `body`.
    /// Returns the bytes consumed; an incomplete line is left unconsumed.
    pub fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max: u64,
    ) -> Result<usize, ChunkError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok(pos),
                State::Size => {
                    let Some(eol) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > MAX_LINE {
                            return Err(ChunkError::Syntax("chunk-size line too long"));
                        }
                        return Ok(pos);
                    };
                    let line = rest[..eol]
                        .strip_suffix(b"\r")
                        .ok_or(ChunkError::Syntax("bare LF"))?;
                    let size_part = match line.iter().position(|&b| b == b';') {
                        Some(i) => &line[..i],
                        None => line,
                    };
                    let size = parse_hex(size_part.trim_ascii_end())?;
                    pos += eol + 1;
                    if size == 0 {
                        self.state = State::Trailers;
                    } else {
                        self.total = self.total.checked_add(size).ok_or(ChunkError::TooLarge)?;
                        if self.total > max {
                            return Err(ChunkError::TooLarge);
                        }
                        self.state = State::Data(size);
                    }
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let n = (rest.len() as u64).min(left) as usize;
                    body.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.state = if left == n as u64 {
                        State::DataEnd
                    } else {
                        State::Data(left - n as u64)
                    };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        if rest.first().is_some_and(|&b| b != b'\r') {
                            return Err(ChunkError::Syntax("missing CRLF after chunk data"));
                        }
                        return Ok(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ChunkError::Syntax("missing CRLF after chunk data"));
                    }
                    pos += 2;
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(eol) = rest.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + rest.len() > MAX_TRAILERS {
                            return Err(ChunkError::Syntax("trailers too large"));
                        }
                        return Ok(pos);
                    };
                    self.trailer_bytes += eol + 1;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(ChunkError::Syntax("trailers too large"));
                    }
                    let line = rest[..eol]
                        .strip_suffix(b"\r")
                        .ok_or(ChunkError::Syntax("bare LF"))?;
                    pos += eol + 1;
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

fn parse_hex(s: &[u8]) -> Result<u64, ChunkError> {
    if s.is_empty() {
        return Err(ChunkError::Syntax("empty chunk size"));
    }
    // 16 hex digits fill a u64; more (beyond leading zeros) is an overflow attack.
    let digits = s.iter().skip_while(|&&b| b == b'0').count();
    if digits > 16 {
        return Err(ChunkError::Syntax("chunk size overflows"));
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char)
            .to_digit(16)
            .ok_or(ChunkError::Syntax("invalid chunk size"))?;
        Ok((acc << 4) | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::default();
        let mut body = Vec::new();
        let mut buf = Vec::new();
        let mut fed = 0;
        for c in input.chunks(piece) {
            buf.extend_from_slice(c);
            let n = d.feed(&buf, &mut body, 1 << 20)?;
            fed += n;
            buf.drain(..n);
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done(), "not done");
        Ok((body, fed))
    }

    #[test]
    fn decodes_at_every_piece_size() {
        let input =
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: v\r\n\r\nNEXT";
        for piece in 1..input.len() {
            let (body, used) = decode_in_pieces(input, piece).unwrap();
            assert_eq!(body, b"Wikipedia in \r\n\r\nchunks.");
            assert_eq!(used, input.len() - 4, "stops before the next request");
        }
    }

    #[test]
    fn refuses_bad_framing() {
        let err = |s: &[u8], max: u64| {
            let mut d = ChunkedDecoder::default();
            d.feed(s, &mut Vec::new(), max).unwrap_err()
        };
        assert_eq!(
            err(b"zz\r\n", 100),
            ChunkError::Syntax("invalid chunk size")
        );
        assert_eq!(
            err(b"10000000000000000\r\n", u64::MAX),
            ChunkError::Syntax("chunk size overflows")
        );
        assert_eq!(
            err(b"ffffffffffffffff\r\n", u64::MAX - 1),
            ChunkError::TooLarge
        );
        assert_eq!(
            err(b"3\r\nabcX", 100),
            ChunkError::Syntax("missing CRLF after chunk data")
        );
        assert_eq!(err(b"65\r\n", 100), ChunkError::TooLarge);
        assert_eq!(err(b"3\n", 100), ChunkError::Syntax("bare LF"));
        assert_eq!(
            err(&[b'1'; 5000], 100),
            ChunkError::Syntax("chunk-size line too long")
        );
        let mut d = ChunkedDecoder::default();
        assert_eq!(
            d.feed(b"0000000000000000000005\r\nhello\r\n", &mut Vec::new(), 100),
            Ok(31)
        );
    }
}
